//! Starting the kernel's wait before a container's first cgroup migration, so that the
//! container does not wait for it alone.
//!
//! Moving a process into a cgroup by writing its pid to `cgroup.procs` (v1 and v2
//! alike) takes the kernel's global `cgroup_threadgroup_rwsem` for writing. Unless the
//! host mounted a hierarchy with `favordynmods`, that lock is in its fast mode while no
//! one migrates, and the first writer after a quiet spell waits an RCU grace period
//! (5–20 ms on the hosts measured) to switch it over; writers that come while it is
//! switched (it switches back a grace period after the last one) do not wait. Every
//! container's set-up writes its own pid to `cgroup.procs` early (libcontainer's
//! intermediate process), so a container started on a quiet host paid one grace period
//! on its critical path.
//!
//! [`MigrationPrimer::prime`], called as a launch begins, has a thread of the agent's
//! start that wait and then hold the lock in its no-wait mode for [`HOLD`], by
//! migrating the agent into the cgroup it is already in (a move that changes nothing)
//! every [`PERIOD`], shorter than a grace period. The wait thus overlaps the writing of
//! the run directory and the supervisor's start, and the container's own migration
//! finds it over. Each holding write costs about 0.05 ms of CPU. Priming is best
//! effort: when the agent's own cgroup cannot be found or written, nothing is primed and
//! a launch pays the wait as before.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long after the last [`MigrationPrimer::prime`] the lock is held in its no-wait
/// mode: longer than a launch takes from its start to its container's migration.
const HOLD: Duration = Duration::from_millis(50);

/// How often the holding write is repeated: shorter than a grace period, after which
/// the kernel switches the lock back once no one has written.
const PERIOD: Duration = Duration::from_millis(3);

/// Starts the grace period of the next cgroup migration early; see the module docs.
pub struct MigrationPrimer {
    /// Shared with the priming thread; `None` when this process's cgroup was not found
    /// or the thread could not start.
    hold: Option<Arc<Hold>>,
}

/// Until when the priming thread holds the lock in its no-wait mode.
#[derive(Default)]
struct Hold {
    until: Mutex<Option<Instant>>,
    changed: Condvar,
}

impl MigrationPrimer {
    /// A primer for this process, whose cgroup is read from `/proc/self/cgroup`; starts
    /// its thread.
    pub fn new(memory_root: Option<PathBuf>, v2: bool) -> MigrationPrimer {
        let own_procs = memory_root.and_then(|root| {
            let table = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let relative = own_cgroup(&table, v2)?;
            Some(
                root.join(relative.trim_start_matches('/'))
                    .join("cgroup.procs"),
            )
        });
        let hold = own_procs.and_then(|procs| {
            let hold = Arc::new(Hold::default());
            let shared = Arc::clone(&hold);
            std::thread::Builder::new()
                .name("cgroup-primer".into())
                .spawn(move || {
                    if let Err(e) = hold_when_asked(&procs, &shared) {
                        tracing::debug!(
                            "priming cgroup migrations through {}: {e}",
                            procs.display()
                        );
                    }
                })
                .ok()
                .map(|_| hold)
        });
        MigrationPrimer { hold }
    }

    /// Has the lock switched to (or kept in) its no-wait mode for the next [`HOLD`];
    /// does not wait.
    pub fn prime(&self) {
        if let Some(hold) = &self.hold {
            *hold.until.lock().expect("primer lock") = Some(Instant::now() + HOLD);
            hold.changed.notify_one();
        }
    }
}

/// The priming thread: whenever asked, writes this process's pid to `procs` (the
/// `cgroup.procs` of the cgroup it is in) every [`PERIOD`] until the hold ends. Returns
/// only on an error, after which priming stops.
fn hold_when_asked(procs: &Path, hold: &Hold) -> std::io::Result<()> {
    let mut file = File::options().write(true).open(procs)?;
    let pid = std::process::id().to_string();
    let mut until = hold.until.lock().expect("primer lock");
    loop {
        while until.is_none() {
            until = hold.changed.wait(until).expect("primer lock");
        }
        drop(until);
        migrate_self(&mut file, &pid)?;
        until = hold.until.lock().expect("primer lock");
        if until.is_some_and(|end| Instant::now() >= end) {
            *until = None;
        } else {
            drop(until);
            std::thread::sleep(PERIOD);
            until = hold.until.lock().expect("primer lock");
        }
    }
}

/// Moves this process (`pid`) into the cgroup whose `cgroup.procs` is open as `file`.
fn migrate_self(file: &mut File, pid: &str) -> std::io::Result<()> {
    file.write_all(pid.as_bytes())
}

/// This process's cgroup path in the memory hierarchy (v1) or the unified one (v2),
/// from the text of `/proc/self/cgroup` (`ID:CONTROLLERS:PATH` lines).
fn own_cgroup(table: &str, v2: bool) -> Option<&str> {
    table.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let wanted = if v2 {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "memory")
        };
        wanted.then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "12:pids:/user.slice\n\
                          9:cpu,cpuacct:/\n\
                          4:memory:/agents/a1\n\
                          1:name=systemd:/init.scope\n\
                          0::/init.scope\n";

    #[test]
    fn finds_the_memory_hierarchys_path_on_v1_and_the_unified_one_on_v2() {
        assert_eq!(own_cgroup(HYBRID, false), Some("/agents/a1"));
        assert_eq!(own_cgroup(HYBRID, true), Some("/init.scope"));
        assert_eq!(own_cgroup("0::/a/b:c\n", true), Some("/a/b:c"));
        assert_eq!(own_cgroup("3:cpu:/\n", false), None);
        assert_eq!(own_cgroup("", true), None);
    }

    #[test]
    fn holding_writes_leave_the_process_in_its_cgroup() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: writing cgroup.procs needs root");
            return;
        }
        let v2 = super::super::cgroup::is_v2();
        let root = super::super::cgroup::memory_root().expect("a memory hierarchy");
        let table = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let procs = root
            .join(own_cgroup(&table, v2).unwrap().trim_start_matches('/'))
            .join("cgroup.procs");
        let mut file = File::options().write(true).open(procs).unwrap();
        let pid = std::process::id().to_string();
        for _ in 0..3 {
            migrate_self(&mut file, &pid).expect("the no-op migration is allowed");
        }
        assert_eq!(std::fs::read_to_string("/proc/self/cgroup").unwrap(), table);
    }

    #[test]
    fn a_prime_ends_its_hold() {
        let Some(root) = super::super::cgroup::memory_root() else {
            eprintln!("skipped: no memory hierarchy");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: writing cgroup.procs needs root");
            return;
        }
        let primer = MigrationPrimer::new(Some(root), super::super::cgroup::is_v2());
        let hold = primer.hold.as_ref().expect("the priming thread started");
        primer.prime();
        assert!(hold.until.lock().unwrap().is_some());
        let deadline = Instant::now() + Duration::from_secs(10);
        while hold.until.lock().unwrap().is_some() {
            assert!(Instant::now() < deadline, "the hold never ended");
            std::thread::sleep(PERIOD);
        }
    }
}
