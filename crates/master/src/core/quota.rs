//! Role quotas (Mesos 1.9+): UPDATE_QUOTA, GET_QUOTA, the deprecated SET_QUOTA and
//! REMOVE_QUOTA, and what each role consumes.
//!
//! An update is all or nothing and is stored in the registry before it is answered. It is
//! refused (400) when a role is invalid or `*`, a resource is not a scalar (`ports`, or a
//! name the agents offer as ranges or sets) or a quantity is negative or not finite, a
//! guarantee exceeds its limit, a child role's limit exceeds its nearest configured
//! ancestor's, or the children's guarantees add up to more than that ancestor's. Unless
//! `force` is set, it is also refused when the guarantees of the topmost roles add up to
//! more than the cluster has, or a limit is below what the role consumes now. A config
//! with neither guarantees nor limits removes the role's quota.

use super::*;
use crate::allocator::quota::consumption;
use crate::allocator::{Quantities, RoleQuota};
use meseta_api::quota::{QuotaConfig, QuotaRequest, ScalarMap, UpdateQuota};
use serde_json::{json, Value};

/// The allocator's view of a config.
pub fn role_quota(config: &QuotaConfig) -> RoleQuota {
    let quantities = |m: &ScalarMap| m.iter().map(|(n, s)| (n.clone(), s.value)).collect();
    RoleQuota {
        guarantees: quantities(&config.guarantees),
        limits: quantities(&config.limits),
    }
}

fn quota_error(role: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid QuotaConfig for role '{role}': {why}"))
}

/// Checks one config on its own; `non_scalar` holds the names agents have as ranges or
/// sets.
fn validate_config(config: &QuotaConfig, non_scalar: &BTreeSet<String>) -> Result<(), ApiError> {
    let role = &config.role;
    validate_role(role).map_err(|e| quota_error(role, e.message))?;
    if role == "*" {
        return Err(quota_error(
            role,
            "quota cannot be set for the default role '*'",
        ));
    }
    for (kind, map) in [("guarantee", &config.guarantees), ("limit", &config.limits)] {
        for (name, scalar) in map {
            let bad_name = name.is_empty()
                || name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "()[]{}:;,/".contains(c));
            if bad_name {
                return Err(quota_error(role, format!("invalid resource name '{name}'")));
            }
            if name == "ports" || non_scalar.contains(name) {
                return Err(quota_error(
                    role,
                    format!(
                        "'{name}' is not a scalar resource; quota covers scalar resources only"
                    ),
                ));
            }
            if !(scalar.value.is_finite() && scalar.value >= 0.0) {
                return Err(quota_error(
                    role,
                    format!(
                        "{kind} of '{name}' must be a non-negative number, got {}",
                        scalar.value
                    ),
                ));
            }
        }
    }
    for (name, guarantee) in &config.guarantees {
        if let Some(limit) = config.limits.get(name) {
            if guarantee.value > limit.value {
                return Err(quota_error(
                    role,
                    format!(
                        "the guarantee of '{name}' ({}) is larger than its limit ({})",
                        guarantee.value, limit.value
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The nearest ancestor of `role` with a config.
fn configured_parent<'a>(
    quotas: &'a BTreeMap<String, QuotaConfig>,
    role: &str,
) -> Option<&'a QuotaConfig> {
    let mut at = crate::allocator::sorter::parent_role(role);
    while let Some(parent) = at {
        if let Some(config) = quotas.get(parent) {
            return Some(config);
        }
        at = crate::allocator::sorter::parent_role(parent);
    }
    None
}

/// Checks the configs together: children within their nearest configured ancestor.
fn validate_hierarchy(quotas: &BTreeMap<String, QuotaConfig>) -> Result<(), ApiError> {
    let mut children_guarantees: BTreeMap<&str, Quantities> = BTreeMap::new();
    for (role, config) in quotas {
        let Some(parent) = configured_parent(quotas, role) else {
            continue;
        };
        for (name, limit) in &parent.limits {
            let Some(child) = config.limits.get(name) else {
                continue;
            };
            if child.value > limit.value {
                return Err(quota_error(
                    role,
                    format!(
                        "its limit of '{name}' ({}) is larger than the limit of its parent role '{}' ({})",
                        child.value, parent.role, limit.value
                    ),
                ));
            }
        }
        let sums = children_guarantees.entry(parent.role.as_str()).or_default();
        for (name, g) in &config.guarantees {
            *sums.entry(name.clone()).or_insert(0.0) += g.value;
        }
    }
    for (parent, sums) in children_guarantees {
        let config = &quotas[parent];
        if config.guarantees.is_empty() {
            continue;
        }
        for (name, sum) in sums {
            let own = config.guarantees.get(&name).map_or(0.0, |s| s.value);
            if sum > own + 1e-9 {
                return Err(quota_error(
                    parent,
                    format!(
                        "its guarantee of '{name}' ({own}) is smaller than the sum of its child roles' guarantees ({sum})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Core {
    /// The quotas as the allocator takes them.
    pub fn role_quotas(&self) -> BTreeMap<String, RoleQuota> {
        self.quotas
            .iter()
            .map(|(role, config)| (role.clone(), role_quota(config)))
            .collect()
    }

    fn consumption_of(&self, quotas: &BTreeMap<String, RoleQuota>) -> BTreeMap<String, Quantities> {
        let held = self.role_allocations();
        let pool = self.free_pool();
        consumption(
            quotas,
            held.iter().map(|(role, r)| (role.as_str(), r)),
            &pool.reserved,
        )
    }

    /// UPDATE_QUOTA: all or nothing; stored in the registry before it is answered.
    pub fn update_quota(&mut self, update: &UpdateQuota) -> Result<(), ApiError> {
        let non_scalar: BTreeSet<String> = self
            .agents
            .values()
            .flat_map(|a| a.total().iter())
            .filter(|r| r.scalar.is_none())
            .map(|r| r.name.clone())
            .collect();
        let mut roles = BTreeSet::new();
        for config in &update.quota_configs {
            validate_config(config, &non_scalar)?;
            if !roles.insert(config.role.as_str()) {
                return Err(quota_error(&config.role, "the role appears more than once"));
            }
        }
        let mut after = self.quotas.clone();
        for config in &update.quota_configs {
            if config.is_default() {
                after.remove(&config.role);
            } else {
                after.insert(config.role.clone(), config.clone());
            }
        }
        validate_hierarchy(&after)?;
        if !update.force {
            self.check_capacity(&after, &update.quota_configs)?;
        }
        if update.quota_configs.is_empty() {
            return Ok(());
        }
        self.quotas = after;
        self.emit(Effect::Persist(RegistryChange::PutQuotas(
            update.quota_configs.clone(),
        )));
        self.rescind_offers_breaking_quota();
        Ok(())
    }

    /// The checks `force` skips: the topmost guarantees fit in the cluster, and no new
    /// limit is below what its role consumes now.
    fn check_capacity(
        &self,
        after: &BTreeMap<String, QuotaConfig>,
        updated: &[QuotaConfig],
    ) -> Result<(), ApiError> {
        let mut total = Resources::new();
        for agent in self
            .agents
            .values()
            .filter(|a| a.link == AgentLink::Connected)
        {
            total.add_all(agent.total());
        }
        let mut guaranteed = Quantities::new();
        for (role, config) in after {
            for (name, g) in &config.guarantees {
                let nested =
                    configured_parent(after, role).is_some_and(|p| p.guarantees.contains_key(name));
                if !nested {
                    *guaranteed.entry(name.clone()).or_insert(0.0) += g.value;
                }
            }
        }
        for (name, sum) in &guaranteed {
            let have = total.scalar(name);
            if *sum > have + 1e-9 {
                return Err(ApiError::bad_request(format!(
                    "Invalid QuotaConfig: the total quota guarantees of '{name}' ({sum}) exceed the cluster's capacity ({have}); use 'force' to set them anyway"
                )));
            }
        }
        let consumed = self.consumption_of(
            &updated
                .iter()
                .map(|c| (c.role.clone(), role_quota(c)))
                .collect(),
        );
        for config in updated {
            for (name, limit) in &config.limits {
                let now = consumed
                    .get(&config.role)
                    .and_then(|q| q.get(name))
                    .copied()
                    .unwrap_or(0.0);
                if limit.value < now {
                    return Err(quota_error(
                        &config.role,
                        format!(
                            "its limit of '{name}' ({}) is below what the role consumes now ({now}); use 'force' to set it anyway",
                            limit.value
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deprecated SET_QUOTA: the guarantee becomes both guarantees and limits (as in
    /// Mesos 1.9+).
    pub fn set_quota(&mut self, request: &QuotaRequest) -> Result<(), ApiError> {
        let mut quantities = ScalarMap::new();
        for r in &request.guarantee {
            let Some(scalar) = r.scalar else {
                return Err(quota_error(
                    &request.role,
                    format!(
                        "'{}' is not a scalar resource; quota covers scalar resources only",
                        r.name
                    ),
                ));
            };
            quantities
                .entry(r.name.clone())
                .or_insert(meseta_api::resources::Scalar { value: 0.0 })
                .value += scalar.value;
        }
        if quantities.is_empty() {
            return Err(quota_error(&request.role, "the guarantee is empty"));
        }
        self.update_quota(&UpdateQuota {
            force: request.force,
            quota_configs: vec![QuotaConfig {
                role: request.role.clone(),
                guarantees: quantities.clone(),
                limits: quantities,
            }],
        })
    }

    /// Deprecated REMOVE_QUOTA: 400 when the role has no quota.
    pub fn remove_quota(&mut self, role: &str) -> Result<(), ApiError> {
        if !self.quotas.contains_key(role) {
            return Err(ApiError::bad_request(format!(
                "Failed to remove quota: role '{role}' has no quota set"
            )));
        }
        self.update_quota(&UpdateQuota {
            force: true,
            quota_configs: vec![QuotaConfig {
                role: role.to_string(),
                ..Default::default()
            }],
        })
    }

    /// GET_QUOTA's `status` (and v0 `/quota`): the configs, and the deprecated `infos`
    /// (each role's guarantee as resources).
    pub fn quota_status(&self) -> Value {
        let infos: Vec<Value> = self
            .quotas
            .values()
            .filter(|c| !c.guarantees.is_empty())
            .map(|c| {
                let guarantee: Vec<Resource> = c
                    .guarantees
                    .iter()
                    .map(|(name, s)| Resource::scalar(name, s.value))
                    .collect();
                json!({"role": c.role, "guarantee": guarantee})
            })
            .collect();
        let configs: Vec<&QuotaConfig> = self.quotas.values().collect();
        json!({"infos": infos, "configs": configs})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryState;
    use meseta_api::internal::RegisterAgent;

    /// A core with one agent of 4 cpus, 2 of them reserved for `dev` (unheld).
    fn core() -> Core {
        let info: MasterInfo =
            serde_json::from_value(json!({"id":"m","ip":16777343,"port":5050})).unwrap();
        let config = CoreConfig {
            offer_timeout: None,
            agent_ping_timeout: 75.0,
            agent_reregister_timeout: 600.0,
            min_allocatable: crate::allocator::default_min_allocatable(),
        };
        let mut core = Core::new(info, config, RegistryState::default(), 0.0);
        let resources = Resources::parse("cpus:2;cpus(dev):2;mem:1024;ports:[1-9]").unwrap();
        let register: RegisterAgent = serde_json::from_value(json!({
            "version": meseta_api::internal::LINK_VERSION,
            "agent_info": {"hostname": "h", "port": 5051, "resources": resources},
            "endpoint": "127.0.0.1:5051",
        }))
        .unwrap();
        core.register_agent(0.0, "L".into(), register).unwrap();
        core.drain_effects();
        core
    }

    fn update(core: &mut Core, configs: Value, force: bool) -> Result<(), ApiError> {
        let update: UpdateQuota =
            serde_json::from_value(json!({"force": force, "quota_configs": configs})).unwrap();
        core.update_quota(&update)
    }

    fn persisted(core: &mut Core) -> Vec<RegistryChange> {
        core.drain_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Persist(change @ RegistryChange::PutQuotas(_)) => Some(change),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn valid_updates_are_stored_and_reported() {
        let mut c = core();
        let configs = json!([
            {"role": "dev", "guarantees": {"cpus": {"value": 1}}, "limits": {"cpus": {"value": 3}}},
            {"role": "dev/web", "limits": {"cpus": {"value": 2}}},
        ]);
        update(&mut c, configs, false).unwrap();
        assert_eq!(persisted(&mut c).len(), 1);
        let status = c.quota_status();
        assert_eq!(status["configs"].as_array().unwrap().len(), 2);
        assert_eq!(status["infos"][0]["role"], "dev");
        assert_eq!(c.role_quotas()["dev/web"].limits["cpus"], 2.0);
        // The unheld reservation counts toward dev's consumption.
        assert_eq!(c.consumption_of(&c.role_quotas())["dev"]["cpus"], 2.0);
        // A default config removes the quota.
        update(&mut c, json!([{"role": "dev/web"}]), false).unwrap();
        assert!(!c.quotas.contains_key("dev/web"));
        assert_eq!(persisted(&mut c).len(), 1);
    }

    #[test]
    fn invalid_updates_are_refused_and_change_nothing() {
        let cases = [
            (
                json!([{"role": "*", "limits": {"cpus": {"value": 1}}}]),
                "'*'",
            ),
            (
                json!([{"role": "a/../b", "limits": {"cpus": {"value": 1}}}]),
                "a/../b",
            ),
            (
                json!([{"role": "x", "limits": {"ports": {"value": 1}}}]),
                "not a scalar",
            ),
            (
                json!([{"role": "x", "limits": {"cpu s": {"value": 1}}}]),
                "invalid resource name",
            ),
            (
                json!([{"role": "x", "limits": {"cpus": {"value": -1}}}]),
                "non-negative",
            ),
            (
                json!([{"role": "x", "guarantees": {"cpus": {"value": 2}}, "limits": {"cpus": {"value": 1}}}]),
                "larger than its limit",
            ),
            (
                json!([{"role": "p", "limits": {"cpus": {"value": 1}}}, {"role": "p/c", "limits": {"cpus": {"value": 2}}}]),
                "parent role 'p'",
            ),
            (
                json!([{"role": "p", "guarantees": {"cpus": {"value": 1}}}, {"role": "p/c", "guarantees": {"cpus": {"value": 2}}}]),
                "child roles' guarantees",
            ),
            (
                json!([{"role": "x", "limits": {"cpus": {"value": 1}}}, {"role": "x"}]),
                "more than once",
            ),
            (
                json!([{"role": "x", "guarantees": {"cpus": {"value": 5}}}]),
                "capacity",
            ),
            (
                json!([{"role": "dev", "limits": {"cpus": {"value": 1}}}]),
                "consumes now",
            ),
        ];
        for (configs, message) in cases {
            let mut c = core();
            update(
                &mut c,
                json!([{"role": "kept", "limits": {"mem": {"value": 1}}}]),
                false,
            )
            .unwrap();
            c.drain_effects();
            let error = update(&mut c, configs.clone(), false).unwrap_err();
            assert_eq!(error.status, 400, "{configs}");
            assert!(
                error.message.contains(message),
                "{configs}: {}",
                error.message
            );
            assert_eq!(c.quotas.keys().collect::<Vec<_>>(), ["kept"], "{configs}");
            assert!(persisted(&mut c).is_empty(), "{configs}");
        }
    }

    #[test]
    fn force_skips_the_capacity_checks_only() {
        let mut c = core();
        update(
            &mut c,
            json!([{"role": "x", "guarantees": {"cpus": {"value": 5}}}]),
            true,
        )
        .unwrap();
        update(
            &mut c,
            json!([{"role": "dev", "limits": {"cpus": {"value": 1}}}]),
            true,
        )
        .unwrap();
        let bad = json!([{"role": "x", "guarantees": {"cpus": {"value": 2}}, "limits": {"cpus": {"value": 1}}}]);
        assert_eq!(update(&mut c, bad, true).unwrap_err().status, 400);
    }

    #[test]
    fn deprecated_set_and_remove() {
        let mut c = core();
        let request: QuotaRequest = serde_json::from_value(json!({
            "role": "old",
            "guarantee": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}],
        }))
        .unwrap();
        c.set_quota(&request).unwrap();
        assert_eq!(c.role_quotas()["old"].limits["cpus"], 1.0);
        assert_eq!(c.role_quotas()["old"].guarantees["cpus"], 1.0);
        c.remove_quota("old").unwrap();
        assert!(c.quotas.is_empty());
        assert_eq!(c.remove_quota("old").unwrap_err().status, 400);
    }
}
