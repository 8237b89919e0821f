//! The `--isolation` flag: which isolators the agent runs containers with, parsed and
//! checked against the ones Meseta has (Mesos's names).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// One isolator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isolator {
    PosixCpu,
    PosixMem,
    FilesystemPosix,
    PosixRlimits,
    CgroupsCpu,
    CgroupsMem,
    CgroupsPids,
    CgroupsDevices,
    NamespacesPid,
    NamespacesIpc,
    FilesystemLinux,
    DockerRuntime,
    VolumeSandboxPath,
    VolumeHostPath,
    LinuxCapabilities,
    LinuxNnp,
    DiskDu,
}

impl Isolator {
    /// Every isolator, with its Mesos name.
    pub const ALL: [(Isolator, &'static str); 17] = [
        (Isolator::PosixCpu, "posix/cpu"),
        (Isolator::PosixMem, "posix/mem"),
        (Isolator::FilesystemPosix, "filesystem/posix"),
        (Isolator::PosixRlimits, "posix/rlimits"),
        (Isolator::CgroupsCpu, "cgroups/cpu"),
        (Isolator::CgroupsMem, "cgroups/mem"),
        (Isolator::CgroupsPids, "cgroups/pids"),
        (Isolator::CgroupsDevices, "cgroups/devices"),
        (Isolator::NamespacesPid, "namespaces/pid"),
        (Isolator::NamespacesIpc, "namespaces/ipc"),
        (Isolator::FilesystemLinux, "filesystem/linux"),
        (Isolator::DockerRuntime, "docker/runtime"),
        (Isolator::VolumeSandboxPath, "volume/sandbox_path"),
        (Isolator::VolumeHostPath, "volume/host_path"),
        (Isolator::LinuxCapabilities, "linux/capabilities"),
        (Isolator::LinuxNnp, "linux/nnp"),
        (Isolator::DiskDu, "disk/du"),
    ];

    pub fn name(self) -> &'static str {
        Isolator::ALL
            .iter()
            .find(|(i, _)| *i == self)
            .map(|(_, n)| *n)
            .expect("every isolator is listed")
    }

    /// Whether the posix launcher provides it (plain processes, usage from /proc).
    fn is_posix(self) -> bool {
        matches!(
            self,
            Isolator::PosixCpu | Isolator::PosixMem | Isolator::FilesystemPosix
        )
    }
}

/// A bad `--isolation`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IsolationError {
    #[error("--isolation: unknown isolator '{0}' (known: {known})", known = known_names())]
    Unknown(String),
}

fn known_names() -> String {
    Isolator::ALL
        .iter()
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The isolators the agent was started with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isolation(BTreeSet<Isolator>);

impl Isolation {
    pub fn has(&self, isolator: Isolator) -> bool {
        self.0.contains(&isolator)
    }

    /// Whether containers need the Linux launcher (anything beyond the posix isolators).
    pub fn needs_linux_launcher(&self) -> bool {
        self.0.iter().any(|i| !i.is_posix())
    }

    /// The isolators, in a stable order.
    pub fn isolators(&self) -> impl Iterator<Item = Isolator> + '_ {
        self.0.iter().copied()
    }
}

impl FromStr for Isolation {
    type Err = IsolationError;

    fn from_str(flag: &str) -> Result<Isolation, IsolationError> {
        let mut set = BTreeSet::new();
        for name in flag.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let (isolator, _) = Isolator::ALL
                .iter()
                .find(|(_, n)| *n == name)
                .ok_or_else(|| IsolationError::Unknown(name.to_string()))?;
            set.insert(*isolator);
        }
        Ok(Isolation(set))
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|i| i.name()).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_posix() {
        let isolation: Isolation = "posix/cpu,posix/mem".parse().unwrap();
        assert!(!isolation.needs_linux_launcher());
        assert!(isolation.has(Isolator::PosixMem));
        assert!(!"".parse::<Isolation>().unwrap().needs_linux_launcher());
    }

    #[test]
    fn linux_isolators_select_the_linux_launcher() {
        let isolation: Isolation = " cgroups/mem, namespaces/pid ,filesystem/linux"
            .parse()
            .unwrap();
        assert!(isolation.needs_linux_launcher());
        assert!(isolation.has(Isolator::NamespacesPid));
        assert!(!isolation.has(Isolator::CgroupsCpu));
        assert_eq!(
            isolation.to_string(),
            "cgroups/mem,namespaces/pid,filesystem/linux"
        );
    }

    #[test]
    fn unknown_isolators_are_named_with_the_known_ones() {
        let err = "cgroups/cpu,network/cni".parse::<Isolation>().unwrap_err();
        assert_eq!(err, IsolationError::Unknown("network/cni".into()));
        let message = err.to_string();
        assert!(message.contains("'network/cni'"), "{message}");
        assert!(message.contains("disk/du"), "{message}");
    }

    #[test]
    fn every_name_parses_to_its_isolator() {
        for (isolator, name) in Isolator::ALL {
            let parsed: Isolation = name.parse().unwrap();
            assert!(parsed.has(isolator));
            assert_eq!(isolator.name(), name);
        }
    }
}
