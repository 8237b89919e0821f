//! What `/proc` says about a process: its resident memory and the CPU time it used, alone
//! or with every process it started.

use anyhow::{Context, Result};

/// A process's resident memory (`VmRSS` in `/proc/<pid>/status`).
pub fn resident_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("VmRSS in /proc/<pid>/status")?;
    Ok(kib * 1024)
}

/// The CPU time (user and system, all threads) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = cpu_ticks(&stat).context("utime and stime in /proc/<pid>/stat")?;
    let per_second =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("the clock tick rate")?;
    Ok(ticks as f64 / per_second as f64)
}

/// The CPU time (user and system) used so far by `root` and every process it started,
/// directly or not, in seconds: those still running count their own time, those that
/// ended were counted into their parent's when it reaped them (a child an ancestor has
/// not reaped yet, a zombie, counts too).
pub fn tree_cpu_seconds(root: u32) -> Result<f64> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read.
        if let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(proc_stat)
        {
            processes.push(stat);
        }
    }
    let ticks = tree_ticks(&processes, root).context("the process is gone")?;
    let per_second =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("the clock tick rate")?;
    Ok(ticks as f64 / per_second as f64)
}

/// What one `/proc/<pid>/stat` says about CPU time and parentage.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ProcStat {
    pid: u32,
    ppid: u32,
    /// utime + stime.
    own: u64,
    /// cutime + cstime: the children it reaped.
    reaped: u64,
}

/// The ticks of `root`'s tree among `processes`; `None` when `root` is not among them.
fn tree_ticks(processes: &[ProcStat], root: u32) -> Option<u64> {
    let mut children: std::collections::HashMap<u32, Vec<&ProcStat>> = Default::default();
    for p in processes {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut total = 0;
    let mut todo = vec![processes.iter().find(|p| p.pid == root)?];
    while let Some(p) = todo.pop() {
        total += p.own + p.reaped;
        todo.extend(children.get(&p.pid).into_iter().flatten());
    }
    Some(total)
}

/// The fields after the command name, which is in parentheses and may hold spaces and
/// parentheses: field 3 of `/proc/<pid>/stat` (the state) first.
fn after_name(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// utime + stime from the text of `/proc/<pid>/stat`: its 14th and 15th fields.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields = after_name(stat)?;
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Parentage and CPU time from the text of `/proc/<pid>/stat` (pid, ppid the 4th field,
/// cutime and cstime the 16th and 17th).
fn proc_stat(stat: &str) -> Option<ProcStat> {
    let fields = after_name(stat)?;
    let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(ProcStat {
        pid: stat.split_whitespace().next()?.parse().ok()?,
        ppid: number(1)? as u32,
        own: cpu_ticks(stat)?,
        reaped: number(13)? + number(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4428 (tokio (rt) worker) S 1 4428 4428 0 -1 4194560 2091 0 0 0 \
                    731 268 0 0 20 0 9 0 4230 2262884352 48000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(731 + 268));
        assert_eq!(cpu_ticks("12 (x) S 1 2"), None, "too few fields");
        assert_eq!(cpu_ticks("no name here"), None);
    }

    #[test]
    fn a_tree_counts_live_descendants_and_what_each_reaped() {
        let stat = "4428 (tokio (rt) worker) S 17 4428 4428 0 -1 4194560 2091 0 0 0 \
                    731 268 40 2 20 0 9 0 4230 2262884352 48000 18446744073709551615";
        let parsed = proc_stat(stat).unwrap();
        assert_eq!(
            parsed,
            ProcStat {
                pid: 4428,
                ppid: 17,
                own: 999,
                reaped: 42
            }
        );
        let p = |pid, ppid, own, reaped| ProcStat {
            pid,
            ppid,
            own,
            reaped,
        };
        let processes = [
            p(1, 0, 1000, 0),
            p(10, 1, 5, 100), // the root, which reaped children worth 100
            p(11, 10, 7, 30), // a live child, which reaped 30
            p(12, 11, 3, 0),  // a live grandchild
            p(13, 1, 500, 0), // a sibling of the root: not counted
        ];
        assert_eq!(tree_ticks(&processes, 10), Some(5 + 100 + 7 + 30 + 3));
        assert_eq!(tree_ticks(&processes, 12), Some(3));
        assert_eq!(tree_ticks(&processes, 99), None);
    }

    #[test]
    fn a_child_s_cpu_time_is_in_its_parent_s_tree() {
        let me = std::process::id();
        let before = tree_cpu_seconds(me).unwrap();
        // A child that spins for at least two clock ticks, reaped by this process.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = tree_cpu_seconds(me).unwrap();
        assert!(after >= before + 0.02, "{before} -> {after}");
    }

    #[test]
    fn a_busy_process_cpu_time_grows() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let started = std::time::Instant::now();
        let mut now = before;
        // Clock ticks are 10 ms apart: spin until one passes (or fail after 10 s).
        while now <= before && started.elapsed().as_secs() < 10 {
            std::hint::black_box((0..100_000u64).sum::<u64>());
            now = cpu_seconds(std::process::id()).unwrap();
        }
        assert!(now > before, "{before} -> {now}");
    }
}
