//! `--reconfiguration-policy`: whether an agent restarted with a different configuration
//! may keep its identity (and its tasks), as in Mesos 1.5. With `equal` (the default)
//! its hostname, resources and attributes must be as before; with `additive` resources may
//! grow and attributes may be added, but nothing may shrink, change or disappear. The
//! check is pure: the agent compares the info it checkpointed at registration with the
//! one it starts with, and refuses to start when the change is not allowed.

use meseta_api::{AgentInfo, Resources};
use std::str::FromStr;
use thiserror::Error;

/// What may change across an agent restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReconfigurationPolicy {
    /// Nothing.
    #[default]
    Equal,
    /// Resources may grow and attributes may be added.
    Additive,
}

impl FromStr for ReconfigurationPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "equal" => Ok(ReconfigurationPolicy::Equal),
            "additive" => Ok(ReconfigurationPolicy::Additive),
            other => Err(format!(
                "unknown reconfiguration policy '{other}' (use 'equal' or 'additive')"
            )),
        }
    }
}

impl std::fmt::Display for ReconfigurationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReconfigurationPolicy::Equal => "equal",
            ReconfigurationPolicy::Additive => "additive",
        })
    }
}

/// A change the policy does not allow.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the agent's configuration changed in a way --reconfiguration-policy={policy} does not allow: {what}; restart it as before, or remove its work directory's meta/ to register as a new agent"
)]
pub struct Incompatible {
    pub policy: ReconfigurationPolicy,
    pub what: String,
}

/// Checks the info the agent starts with against the one it registered with.
pub fn check(
    before: &AgentInfo,
    now: &AgentInfo,
    policy: ReconfigurationPolicy,
) -> Result<(), Incompatible> {
    let refuse = |what: String| Err(Incompatible { policy, what });
    if before.hostname != now.hostname {
        return refuse(format!(
            "hostname '{}' became '{}'",
            before.hostname, now.hostname
        ));
    }
    let old = Resources::from_list(before.resources.clone()).unwrap_or_default();
    let new = Resources::from_list(now.resources.clone()).unwrap_or_default();
    match policy {
        ReconfigurationPolicy::Equal if !(new.contains(&old) && old.contains(&new)) => {
            return refuse(format!("resources '{old}' became '{new}'"));
        }
        ReconfigurationPolicy::Additive if !new.contains(&old) => {
            return refuse(format!("resources '{old}' shrank to '{new}'"));
        }
        _ => {}
    }
    for attribute in &before.attributes {
        match now.attributes.iter().find(|a| a.name == attribute.name) {
            None => return refuse(format!("attribute '{}' was removed", attribute.name)),
            Some(a) if a != attribute => {
                return refuse(format!("attribute '{}' changed", attribute.name));
            }
            Some(_) => {}
        }
    }
    if policy == ReconfigurationPolicy::Equal && now.attributes.len() != before.attributes.len() {
        return refuse("attributes were added".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReconfigurationPolicy::*;

    fn info(resources: &str, attributes: &str) -> AgentInfo {
        AgentInfo {
            hostname: "h".into(),
            port: 5051,
            resources: Resources::parse(resources).unwrap().into_vec(),
            attributes: crate::detect::parse_attributes(attributes).unwrap(),
            id: None,
            domain: None,
        }
    }

    #[test]
    fn equal_allows_only_the_same() {
        let before = info("cpus:2;mem:100", "rack:a");
        assert_eq!(
            check(&before, &info("mem:100;cpus:2", "rack:a"), Equal),
            Ok(())
        );
        for now in [
            info("cpus:3;mem:100", "rack:a"),
            info("cpus:2;mem:100", "rack:a;zone:z"),
            info("cpus:2;mem:100", ""),
        ] {
            assert!(check(&before, &now, Equal).is_err(), "{now:?}");
        }
    }

    #[test]
    fn additive_allows_growth_and_new_attributes_only() {
        let before = info("cpus:2;mem:100;ports:[31000-31010]", "rack:a");
        let grown = info("cpus:4;mem:100;ports:[31000-31020]", "rack:a;zone:z");
        assert_eq!(check(&before, &grown, Additive), Ok(()));
        let shrunk = check(
            &before,
            &info("cpus:1;mem:100;ports:[31000-31010]", "rack:a"),
            Additive,
        )
        .unwrap_err();
        assert!(shrunk.to_string().contains("shrank"), "{shrunk}");
        assert!(shrunk
            .to_string()
            .contains("--reconfiguration-policy=additive"));
        let changed = info("cpus:2;mem:100;ports:[31000-31010]", "rack:b");
        assert!(check(&before, &changed, Additive).is_err());
        let removed = info("cpus:2;mem:100;ports:[31000-31010]", "");
        assert!(check(&before, &removed, Additive).is_err());
    }

    #[test]
    fn hostname_may_never_change() {
        let before = info("cpus:1", "");
        let mut now = before.clone();
        now.hostname = "other".into();
        assert!(check(&before, &now, Additive).is_err());
    }

    #[test]
    fn policies_parse() {
        assert_eq!("additive".parse(), Ok(Additive));
        assert_eq!("equal".parse(), Ok(Equal));
        assert!("bigger".parse::<ReconfigurationPolicy>().is_err());
    }
}
