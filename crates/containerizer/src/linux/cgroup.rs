//! A container's cgroup, read and acted on from outside the container (through
//! libcgroups, on v1 and v2 alike): signalling every process in it, its usage and
//! limits, its memory files for OOM detection, and removing it.

use crate::launcher::Usage;
use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, CgroupConfig, CgroupManager,
    CgroupSetup, DEFAULT_CGROUP_ROOT,
};
use nix::sys::signal::{kill, Signal};
use std::path::PathBuf;
use std::time::Duration;

/// The cgroup path (relative to each hierarchy's root) of a container.
pub fn path_of(container_id: &str) -> String {
    format!("/meseta/{container_id}")
}

/// Whether this host runs the unified (v2) hierarchy only.
pub fn is_v2() -> bool {
    matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified))
}

fn manager(cgroups_path: &str) -> Option<AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: PathBuf::from(cgroups_path),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .ok()
}

/// The live processes in the cgroup (empty when it is gone).
pub fn pids(cgroups_path: &str) -> Vec<nix::unistd::Pid> {
    manager(cgroups_path)
        .and_then(|m| m.get_all_pids().ok())
        .unwrap_or_default()
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

/// Removes the cgroup (from every hierarchy); it must be empty.
pub fn remove(cgroups_path: &str) -> Result<(), String> {
    match manager(cgroups_path) {
        Some(m) => m.remove().map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// The directory of the cgroup's memory controller files.
pub fn memory_dir(cgroups_path: &str) -> Option<PathBuf> {
    let relative = cgroups_path.trim_start_matches('/');
    if is_v2() {
        return Some(PathBuf::from(DEFAULT_CGROUP_ROOT).join(relative));
    }
    let mount =
        libcgroups::v1::util::get_subsystem_mount_point(&libcgroups::v1::ControllerType::Memory)
            .ok()?;
    Some(mount.join(relative))
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
