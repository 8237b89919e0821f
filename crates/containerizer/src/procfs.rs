//! Reading `/proc`: one process's `stat` line (parsed purely, so it is unit-tested), and
//! the set of processes that make up a container (its process group or session, plus
//! their descendants).

use std::collections::{BTreeSet, HashMap};

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// User and system time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Start time after boot, in clock ticks.
    pub start_time: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

impl Stat {
    /// Whether the process is gone for our purposes (a zombie or dead).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses a `stat` line. The command name (field 2) may hold spaces and parentheses,
/// so the fields after it are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    // `rest[0]` is field 3 (state); field N is `rest[N - 3]`.
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        pid,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        utime: num(14)?,
        stime: num(15)?,
        start_time: num(22)?,
        rss_pages: field(24)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// Reads one process's stat, `None` when it does not exist.
pub fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Whether `pid` is alive and is the process that started at `start_time`.
pub fn is_same_live_process(pid: i32, start_time: u64) -> bool {
    read_stat(pid).is_some_and(|s| s.start_time == start_time && !s.is_dead())
}

/// Every live process on the machine.
fn all_stats() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .filter(|s| !s.is_dead())
        .collect()
}

/// The processes of the container whose first process is `root`: those in its process
/// group or session (the launcher makes `root` the leader of one of them) and their
/// descendants (which may have started groups or sessions of their own).
pub fn container_processes(root: i32, stats: &[Stat]) -> Vec<Stat> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for s in stats {
        children.entry(s.ppid).or_default().push(s.pid);
    }
    let mut members: BTreeSet<i32> = stats
        .iter()
        .filter(|s| s.pgrp == root || s.session == root || s.pid == root)
        .map(|s| s.pid)
        .collect();
    let mut frontier: Vec<i32> = members.iter().copied().collect();
    while let Some(pid) = frontier.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if members.insert(*child) {
                frontier.push(*child);
            }
        }
    }
    stats
        .iter()
        .filter(|s| members.contains(&s.pid))
        .copied()
        .collect()
}

/// [`container_processes`] over the live machine.
pub fn live_container_processes(root: i32) -> Vec<Stat> {
    container_processes(root, &all_stats())
}

/// Clock ticks per second and the page size, for turning stat fields into units.
pub fn clock_ticks_and_page_size() -> (f64, u64) {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (
        if ticks > 0 { ticks as f64 } else { 100.0 },
        if page > 0 { page as u64 } else { 4096 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pid: i32, comm: &str, state: char, ppid: i32, session: i32) -> String {
        format!(
            "{pid} ({comm}) {state} {ppid} {pid} {session} 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 12345 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        )
    }

    #[test]
    fn parses_fields_after_a_tricky_name() {
        let s = parse_stat(&line(42, "a) (b c", 'S', 1, 42)).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 42,
                state: 'S',
                ppid: 1,
                pgrp: 42,
                session: 42,
                utime: 7,
                stime: 3,
                start_time: 12345,
                rss_pages: 250
            }
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn container_includes_its_process_group() {
        // The agent's session is 1; the executor leads process group 10.
        let in_group = |pid: i32, ppid: i32| {
            format!("{pid} (p) S {ppid} 10 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 1 1 0")
        };
        let stats: Vec<Stat> = [
            in_group(10, 1),
            in_group(11, 1),
            line(30, "agent", 'S', 1, 1),
        ]
        .iter()
        .map(|l| parse_stat(l).unwrap())
        .collect();
        let pids: Vec<i32> = container_processes(10, &stats)
            .iter()
            .map(|s| s.pid)
            .collect();
        assert_eq!(pids, vec![10, 11]);
    }

    #[test]
    fn zombies_are_dead() {
        assert!(parse_stat(&line(5, "z", 'Z', 1, 5)).unwrap().is_dead());
        assert!(!parse_stat(&line(5, "r", 'R', 1, 5)).unwrap().is_dead());
    }

    #[test]
    fn container_is_session_plus_descendants() {
        let stats: Vec<Stat> = [
            line(10, "executor", 'S', 1, 10),
            line(11, "task", 'S', 10, 10),
            line(12, "own-session", 'S', 11, 12),
            line(13, "grandchild", 'S', 12, 12),
            line(20, "unrelated", 'S', 1, 20),
            line(21, "orphan-in-session", 'S', 1, 10),
        ]
        .iter()
        .map(|l| parse_stat(l).unwrap())
        .collect();
        let pids: Vec<i32> = container_processes(10, &stats)
            .iter()
            .map(|s| s.pid)
            .collect();
        assert_eq!(pids, vec![10, 11, 12, 13, 21]);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let s = read_stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(is_same_live_process(me, s.start_time));
        assert!(!is_same_live_process(me, s.start_time + 1));
    }
}
