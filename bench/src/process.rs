//! What `/proc` says about a process: its resident memory and the CPU time it used.

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

/// utime + stime from the text of `/proc/<pid>/stat`: its 14th and 15th fields, counted
/// after the command name, which is in parentheses and may hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
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
