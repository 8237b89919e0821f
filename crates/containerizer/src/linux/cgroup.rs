//! A container's cgroup, read and acted on from outside the container, on v1 and v2
//! alike: signalling every process in it, its usage and limits (through libcgroups),
//! its memory files for OOM detection, and removing it.
//!
//! Where the hierarchies are mounted is looked up once per process. A libcgroups
//! manager looks it up again for each of its dozen controllers, reading
//! `/proc/self/mountinfo` each time, too slow to repeat every few milliseconds while a
//! container is killed; only usage statistics still build one.

use crate::launcher::Usage;
use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, CgroupConfig, CgroupManager,
    CgroupSetup, DEFAULT_CGROUP_ROOT,
};
use nix::sys::signal::{kill, Signal};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The cgroup path (relative to each hierarchy's root) of a container.
pub fn path_of(container_id: &str) -> String {
    format!("/meseta/{container_id}")
}

/// Whether this host runs the unified (v2) hierarchy only.
pub fn is_v2() -> bool {
    matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified))
}

/// Where this host's cgroup hierarchies are mounted.
struct Hierarchies {
    /// Every hierarchy's root (the unified one alone on v2).
    roots: Vec<PathBuf>,
    /// The root of the hierarchy with the memory controller.
    memory: Option<PathBuf>,
}

fn hierarchies() -> &'static Hierarchies {
    static HIERARCHIES: OnceLock<Hierarchies> = OnceLock::new();
    HIERARCHIES.get_or_init(|| {
        if is_v2() {
            let root = PathBuf::from(DEFAULT_CGROUP_ROOT);
            return Hierarchies {
                roots: vec![root.clone()],
                memory: Some(root),
            };
        }
        use libcgroups::v1::{util, ControllerType};
        Hierarchies {
            roots: util::list_subsystem_mount_points().unwrap_or_default(),
            memory: util::get_subsystem_mount_point(&ControllerType::Memory).ok(),
        }
    })
}

/// The cgroup's directories that exist, one per hierarchy it is in.
fn dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let relative = cgroups_path.trim_start_matches('/');
    hierarchies()
        .roots
        .iter()
        .map(|root| root.join(relative))
        .filter(|dir| dir.is_dir())
        .collect()
}

fn manager(cgroups_path: &str) -> Option<AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: PathBuf::from(cgroups_path),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .ok()
}

/// The live processes in the cgroup (empty when it is gone), from every hierarchy: a
/// process being moved in may be in some of them only.
pub fn pids(cgroups_path: &str) -> Vec<nix::unistd::Pid> {
    let mut pids = BTreeSet::new();
    for dir in dirs(cgroups_path) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids.into_iter().map(nix::unistd::Pid::from_raw).collect()
}

/// Sends `signal` to every process in the cgroup; returns how many there were.
pub fn signal_all(cgroups_path: &str, signal: Signal) -> Result<usize, String> {
    let pids = pids(cgroups_path);
    for pid in &pids {
        match kill(*pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("signalling process {pid}: {e}")),
        }
    }
    Ok(pids.len())
}

/// Kills every process in the cgroup until it is empty (processes may fork while
/// being killed), giving up after about `patience`. Returns whether it is empty.
pub fn kill_all(cgroups_path: &str, patience: Duration) -> bool {
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    loop {
        match signal_all(cgroups_path, Signal::SIGKILL) {
            Ok(0) => return true,
            Ok(_) | Err(_) if waited >= patience => return false,
            _ => {}
        }
        std::thread::sleep(step);
        waited += step;
    }
}

/// Removes the cgroup (from every hierarchy); it must be empty. A cgroup whose last
/// process was just killed can stay busy for a moment, so each removal is retried for
/// up to about a second.
pub fn remove(cgroups_path: &str) -> Result<(), String> {
    for dir in dirs(cgroups_path) {
        let mut delay = Duration::from_millis(5);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if delay > Duration::from_millis(500) => {
                    return Err(format!("removing {}: {e}", dir.display()));
                }
                Err(_) => {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
    }
    Ok(())
}

/// The root of the hierarchy with the memory controller (the unified one on v2).
pub fn memory_root() -> Option<PathBuf> {
    hierarchies().memory.clone()
}

/// The directory of the cgroup's memory controller files.
pub fn memory_dir(cgroups_path: &str) -> Option<PathBuf> {
    let relative = cgroups_path.trim_start_matches('/');
    memory_root().map(|root| root.join(relative))
}

/// The cgroup's usage and limits; `None` when it is gone.
pub fn usage(cgroups_path: &str) -> Option<Usage> {
    let manager = manager(cgroups_path)?;
    let pids = manager.get_all_pids().ok()?;
    let stats = manager.stats().ok()?;
    let nanos = 1e9;
    let memory = &stats.memory;
    // v1 reports the resident anonymous memory as `total_rss`, v2 as `anon`.
    let rss = ["total_rss", "rss", "anon"]
        .iter()
        .find_map(|k| memory.stats.get(*k).copied())
        .unwrap_or(memory.memory.usage);
    let limit = memory.memory.limit;
    Some(Usage {
        cpus_user_time_secs: stats.cpu.usage.usage_user as f64 / nanos,
        cpus_system_time_secs: stats.cpu.usage.usage_kernel as f64 / nanos,
        mem_rss_bytes: rss,
        processes: pids.len() as u32,
        // The kernel's "unlimited" is a huge number (v1) or 0 when unreadable.
        mem_limit_bytes: (limit > 0 && limit < i64::MAX as u64 / 2).then_some(limit),
        cpus_limit: None,
    })
}
