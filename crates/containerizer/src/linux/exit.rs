//! Why a container ended: the supervisor's observations (OOM events and kill counters,
//! disk usage) decoded into a [`ContainerTermination`] with Mesos's messages. Pure.

use crate::launcher::{ContainerTermination, Limitation};

/// What the supervisor saw while the container ran and just after it exited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The memory cgroup signalled an OOM (v1 event, the kernel paused the container).
    pub oom_event: bool,
    /// The kernel's OOM-kill counter of the cgroup.
    pub oom_kills: u64,
    pub mem_limit_bytes: Option<u64>,
    pub mem_max_used_bytes: u64,
    /// The sandbox's usage and quota when the supervisor killed it for going over.
    pub disk_over: Option<(u64, u64)>,
}

/// The `oom_kill` counter in a cgroup's `memory.oom_control` (v1) or `memory.events`
/// (v2) text; 0 when absent (old kernels).
pub fn oom_kills(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == "oom_kill")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn megabytes(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

/// The limitation that ended the container, if any.
pub fn decide(observed: &Observed) -> Option<ContainerTermination> {
    if observed.oom_event || observed.oom_kills > 0 {
        let requested = observed
            .mem_limit_bytes
            .map_or("unknown".to_string(), |l| format!("{}MB", megabytes(l)));
        return Some(ContainerTermination {
            limitation: Limitation::Memory,
            message: format!(
                "Memory limit exceeded: Requested: {requested} Maximum Used: {}MB",
                megabytes(observed.mem_max_used_bytes)
            ),
        });
    }
    observed
        .disk_over
        .map(|(used, limit)| ContainerTermination {
            limitation: Limitation::Disk,
            message: format!(
                "Disk usage ({}MB) exceeds quota ({}MB)",
                megabytes(used),
                megabytes(limit)
            ),
        })
}

/// A wait status in words (`exited with status 3`, `terminated by signal 9`).
pub fn describe_wait_status(status: i32) -> String {
    match status & 0x7f {
        0 => format!("exited with status {}", (status >> 8) & 0xff),
        signal => format!("terminated by signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_oom_kill_counter_of_either_cgroup_version() {
        assert_eq!(
            oom_kills("oom_kill_disable 1\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(oom_kills("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n"), 1);
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }

    #[test]
    fn an_oom_is_a_memory_limitation_naming_the_limit() {
        let t = decide(&Observed {
            oom_event: true,
            mem_limit_bytes: Some(64 << 20),
            mem_max_used_bytes: 64 << 20,
            ..Observed::default()
        })
        .unwrap();
        assert_eq!(t.limitation, Limitation::Memory);
        assert_eq!(
            t.message,
            "Memory limit exceeded: Requested: 64MB Maximum Used: 64MB"
        );
        let by_kill = decide(&Observed {
            oom_kills: 1,
            ..Observed::default()
        })
        .unwrap();
        assert_eq!(by_kill.limitation, Limitation::Memory);
    }

    #[test]
    fn disk_over_quota_and_plain_exits() {
        let t = decide(&Observed {
            disk_over: Some((20 << 20, 10 << 20)),
            ..Observed::default()
        })
        .unwrap();
        assert_eq!(t.limitation, Limitation::Disk);
        assert_eq!(t.message, "Disk usage (20MB) exceeds quota (10MB)");
        assert_eq!(decide(&Observed::default()), None);
        assert_eq!(describe_wait_status(3 << 8), "exited with status 3");
        assert_eq!(describe_wait_status(9), "terminated by signal 9");
    }
}
