//! A container's cgroup, read and acted on from outside the container, on v1 and v2
//! alike: which v1 hierarchies it joins, signalling every process in it, its usage and
//! limits, its memory files for OOM detection, and removing it.
//!
//! Where the hierarchies are mounted is read from one `/proc/self/mountinfo` per
//! process. A libcgroups manager reads that table again for each of its dozen
//! controllers, too slow to repeat every few milliseconds while a container is killed
//! or its usage is read.

use crate::launcher::Usage;
use libcgroups::common::{get_cgroup_setup, CgroupSetup, DEFAULT_CGROUP_ROOT};
use nix::sys::signal::{kill, Signal};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The cgroup path (relative to each hierarchy's root) of a container.
pub fn path_of(container_id: &str) -> String {
    format!("/meseta/{container_id}")
}

/// The v1 controllers a container joins: those its limits and usage statistics use,
/// and `devices`, which libcontainer always sets up. libcontainer puts a container in
/// every v1 hierarchy it finds mounted, so its supervisor unmounts the others
/// ([`unjoined_hierarchies`]) in its own mount namespace first: a cgroup in each of
/// them (cpuset, blkio, freezer, ...) cost the kernel a creation, a migration and a
/// teardown per container for nothing, cpuset's the dearest.
const JOINED_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "devices", "pids"];

/// Every v1 controller the kernel may have.
const V1_CONTROLLERS: [&str; 14] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// A v1 hierarchy's mount, from a `/proc/self/mountinfo` line.
struct V1Mount {
    path: PathBuf,
    /// Its controllers; none for a named hierarchy (`name=systemd`).
    controllers: Vec<String>,
}

/// The v1 hierarchies' mounts in a `/proc/self/mountinfo` table (not the unified one).
fn v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            let (mount_point, fs_type, options) = (
                fields.get(4)?,
                fields.get(separator + 1)?,
                fields.get(separator + 3)?,
            );
            (*fs_type == "cgroup").then(|| V1Mount {
                path: PathBuf::from(unescape_mountinfo(mount_point)),
                controllers: options
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Where the v1 hierarchies that no container joins are mounted, from a
/// `/proc/self/mountinfo` table: those with controllers, none of them joined. Named
/// hierarchies (`name=systemd`) and the unified one are not among them.
fn unjoined_hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    v1_mounts(mountinfo)
        .into_iter()
        .filter(|m| {
            !m.controllers.is_empty()
                && !m
                    .controllers
                    .iter()
                    .any(|c| JOINED_CONTROLLERS.contains(&c.as_str()))
        })
        .map(|m| m.path)
        .collect()
}

/// A mountinfo field as it was before the kernel escaped its spaces, tabs, newlines
/// and backslashes as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    /// The root of the hierarchy with the cpuacct controller (v1).
    cpuacct: Option<PathBuf>,
}

/// This process's [`Hierarchies`], looked up on first use.
static HIERARCHIES: OnceLock<Hierarchies> = OnceLock::new();

fn hierarchies() -> &'static Hierarchies {
    HIERARCHIES.get_or_init(|| {
        if is_v2() {
            let root = PathBuf::from(DEFAULT_CGROUP_ROOT);
            return Hierarchies {
                roots: vec![root.clone()],
                memory: Some(root.clone()),
                cpuacct: Some(root),
            };
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Hierarchies::v1(&mountinfo)
    })
}

/// Unmounts, in the calling process's own mount namespace, the v1 hierarchies no
/// container joins ([`unjoined_hierarchies`]), and notes where the others are, from one
/// read of the mount table. One that stays mounted is only joined for nothing, so a
/// failure is logged (and the hierarchy kept in the lookup, to be cleaned up).
pub fn leave_unjoined_hierarchies() {
    if is_v2() {
        return;
    }
    let mountinfo = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => text,
        Err(e) => return tracing::warn!("reading /proc/self/mountinfo: {e}"),
    };
    let mut left = Hierarchies::v1(&mountinfo);
    for path in unjoined_hierarchies(&mountinfo) {
        match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => left.roots.retain(|root| *root != path),
            Err(e) => tracing::warn!("unmounting {} for the container: {e}", path.display()),
        }
    }
    let _ = HIERARCHIES.set(left);
}

impl Hierarchies {
    /// A v1 (or hybrid) host's hierarchies, from its `/proc/self/mountinfo` table.
    fn v1(mountinfo: &str) -> Hierarchies {
        let mounts = v1_mounts(mountinfo);
        let with = |controller: &str| {
            mounts
                .iter()
                .find(|m| m.controllers.iter().any(|c| c == controller))
                .map(|m| m.path.clone())
        };
        Hierarchies {
            memory: with("memory"),
            cpuacct: with("cpuacct"),
            roots: mounts.iter().map(|m| m.path.clone()).collect(),
        }
    }
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
    let relative = cgroups_path.trim_start_matches('/');
    let hierarchies = hierarchies();
    let memory = hierarchies.memory.as_ref()?.join(relative);
    let cpu = hierarchies.cpuacct.as_ref()?.join(relative);
    let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let files = if is_v2() {
        UsageFiles {
            cpu_stat: read(&cpu, "cpu.stat")?,
            cpu_user_sys_ns: None,
            memory_stat: read(&memory, "memory.stat")?,
            memory_usage: read(&memory, "memory.current"),
            memory_limit: read(&memory, "memory.max"),
        }
    } else {
        let user = read(&cpu, "cpuacct.usage_user")?;
        let sys = read(&cpu, "cpuacct.usage_sys")?;
        UsageFiles {
            cpu_stat: String::new(),
            cpu_user_sys_ns: Some((user, sys)),
            memory_stat: read(&memory, "memory.stat")?,
            memory_usage: read(&memory, "memory.usage_in_bytes"),
            memory_limit: read(&memory, "memory.limit_in_bytes"),
        }
    };
    Some(files.usage(pids(cgroups_path).len() as u32))
}

/// What [`usage`] reads from a cgroup's files, v1's or v2's.
struct UsageFiles {
    /// v2's `cpu.stat` (microseconds).
    cpu_stat: String,
    /// v1's `cpuacct.usage_user` and `cpuacct.usage_sys` (nanoseconds).
    cpu_user_sys_ns: Option<(String, String)>,
    memory_stat: String,
    /// `memory.usage_in_bytes` (v1) or `memory.current` (v2).
    memory_usage: Option<String>,
    /// `memory.limit_in_bytes` (v1) or `memory.max` (v2).
    memory_limit: Option<String>,
}

impl UsageFiles {
    fn usage(&self, processes: u32) -> Usage {
        let number = |text: &str| text.trim().parse::<u64>().ok();
        let (user_secs, system_secs) = match &self.cpu_user_sys_ns {
            Some((user, sys)) => (number(user), number(sys)),
            None => (
                keyed(&self.cpu_stat, "user_usec").map(|us| us * 1000),
                keyed(&self.cpu_stat, "system_usec").map(|us| us * 1000),
            ),
        };
        let seconds = |ns: Option<u64>| ns.unwrap_or(0) as f64 / 1e9;
        // v1 reports the resident anonymous memory as `total_rss`, v2 as `anon`.
        let rss = keyed(&self.memory_stat, "total_rss")
            .or_else(|| keyed(&self.memory_stat, "anon"))
            .or_else(|| self.memory_usage.as_deref().and_then(number))
            .unwrap_or(0);
        // "max" on v2 and a huge number on v1 mean no limit.
        let limit = self.memory_limit.as_deref().and_then(number);
        Usage {
            cpus_user_time_secs: seconds(user_secs),
            cpus_system_time_secs: seconds(system_secs),
            mem_rss_bytes: rss,
            processes,
            mem_limit_bytes: limit.filter(|l| *l > 0 && *l < i64::MAX as u64 / 2),
            cpus_limit: None,
        }
    }
}

/// The value of `key` in a flat keyed file (`key value` lines: `memory.stat`, `cpu.stat`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime shared:10 - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
42 31 0:39 / /mnt/odd\\040place rw,relatime - cgroup cgroup rw,blkio
43 23 0:40 / /srv/blkio rw,relatime - tmpfs blkio rw
";

    #[test]
    fn unjoined_hierarchies_are_those_with_only_unused_controllers() {
        let paths: Vec<String> = unjoined_hierarchies(HYBRID)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/net_cls,net_prio",
                "/mnt/odd place",
            ]
        );
    }

    #[test]
    fn v1_hierarchies_are_every_cgroup_mount_and_those_of_memory_and_cpuacct() {
        let hierarchies = Hierarchies::v1(HYBRID);
        assert_eq!(hierarchies.roots.len(), 9, "{:?}", hierarchies.roots);
        assert!(hierarchies
            .roots
            .contains(&PathBuf::from("/sys/fs/cgroup/systemd")));
        assert!(!hierarchies
            .roots
            .contains(&PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            hierarchies.memory,
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            hierarchies.cpuacct,
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        let none = Hierarchies::v1("");
        assert!(none.roots.is_empty() && none.memory.is_none() && none.cpuacct.is_none());
    }

    #[test]
    fn a_pure_v2_host_has_no_unjoined_hierarchy() {
        let v2 = "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert!(unjoined_hierarchies(v2).is_empty());
        assert!(unjoined_hierarchies("garbage\n\n1 2 3\n").is_empty());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b\011c\134d"), "/a b\tc\\d");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
        assert_eq!(unescape_mountinfo(r"/not\999octal"), r"/not\999octal");
    }

    #[test]
    fn v1_usage_reads_nanoseconds_and_total_rss() {
        let files = UsageFiles {
            cpu_stat: String::new(),
            cpu_user_sys_ns: Some(("1500000000\n".into(), "250000000\n".into())),
            memory_stat: "cache 4096\nrss 1000\ntotal_cache 4096\ntotal_rss 8192\n".into(),
            memory_usage: Some("12288\n".into()),
            memory_limit: Some("134217728\n".into()),
        };
        let usage = files.usage(3);
        assert_eq!(usage.cpus_user_time_secs, 1.5);
        assert_eq!(usage.cpus_system_time_secs, 0.25);
        assert_eq!(usage.mem_rss_bytes, 8192);
        assert_eq!(usage.mem_limit_bytes, Some(134_217_728));
        assert_eq!(usage.processes, 3);
    }

    #[test]
    fn v2_usage_reads_microseconds_and_anon() {
        let files = UsageFiles {
            cpu_stat: "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n".into(),
            cpu_user_sys_ns: None,
            memory_stat: "anon 4096\nfile 100\n".into(),
            memory_usage: Some("5000\n".into()),
            memory_limit: Some("max\n".into()),
        };
        let usage = files.usage(1);
        assert_eq!(usage.cpus_user_time_secs, 2.0);
        assert_eq!(usage.cpus_system_time_secs, 1.0);
        assert_eq!(usage.mem_rss_bytes, 4096);
        assert_eq!(usage.mem_limit_bytes, None);
    }

    #[test]
    fn usage_without_rss_falls_back_to_the_charge_and_v1_unlimited_is_none() {
        let files = UsageFiles {
            cpu_stat: String::new(),
            cpu_user_sys_ns: Some(("0".into(), "0".into())),
            memory_stat: "cache 0\n".into(),
            memory_usage: Some("777\n".into()),
            memory_limit: Some("9223372036854771712\n".into()),
        };
        let usage = files.usage(0);
        assert_eq!(usage.mem_rss_bytes, 777);
        assert_eq!(usage.mem_limit_bytes, None);
    }
}
