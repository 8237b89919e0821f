//! Sandbox garbage collection (Mesos's `--gc_delay`, `--gc_disk_headroom`,
//! `--disk_watch_interval`). When an executor run is done (its process gone and its
//! tasks' terminal updates acknowledged) the actor hands its sandbox to the collector,
//! which touches it and removes it once [`schedule`] says it is due: the run directory,
//! the executor's `runs/latest` link when it names that run, then the `runs`, executor,
//! `executors` and framework directories when they are left empty. Schedules are not
//! checkpointed: as in Mesos, a starting agent schedules every run directory that no
//! executor it knows owns by its modification time, so the delay counts from the run's
//! end across restarts. Live executors' sandboxes are never handed over. Counts go to
//! `/metrics/snapshot` as `gc/path_removals_{succeeded,failed,pending}`.

pub mod schedule;

use schedule::{Policy, Schedule};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};

/// The collector's flags.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GcOptions {
    pub policy: Policy,
    /// `--disk_watch_interval`: how often the disk's usage is checked.
    pub disk_watch_interval: Duration,
}

impl Default for GcOptions {
    /// Mesos's defaults: one week, 10% headroom, checked every minute.
    fn default() -> Self {
        GcOptions {
            policy: Policy {
                delay: Duration::from_secs(7 * 24 * 3600),
                disk_headroom: 0.1,
            },
            disk_watch_interval: Duration::from_secs(60),
        }
    }
}

/// The collector's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub pending: AtomicU64,
}

/// A run directory to schedule, and the time its delay counts from.
#[derive(Debug)]
struct Request {
    run: PathBuf,
    /// `None`: the run just ended; the directory is touched and counts from now.
    modified: Option<SystemTime>,
}

/// The actor's handle on the collector task.
#[derive(Clone, Debug)]
pub struct Gc {
    requests: mpsc::UnboundedSender<Request>,
    metrics: Arc<Metrics>,
}

impl Gc {
    /// Starts the collector for the sandboxes under `work_dir`; it stops with `stop`.
    pub fn spawn(options: GcOptions, work_dir: PathBuf, stop: watch::Receiver<bool>) -> Gc {
        let (requests, received) = mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::default());
        tokio::spawn(collect(options, work_dir, received, metrics.clone(), stop));
        Gc { requests, metrics }
    }

    /// Schedules the sandbox of a run that just ended.
    pub fn finished(&self, run: PathBuf) {
        let _ = self.requests.send(Request {
            run,
            modified: None,
        });
    }

    /// At start: schedules every run directory under `work_dir` that is not in `known`
    /// (the sandboxes of the executors the agent recovered), by its modification time.
    pub fn recover(&self, work_dir: &Path, known: &HashSet<PathBuf>) {
        for (run, modified) in run_directories(work_dir) {
            if !known.contains(&run) {
                let modified = Some(modified);
                let _ = self.requests.send(Request { run, modified });
            }
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Every run directory, `slaves/*/frameworks/*/executors/*/runs/*` (not `latest`), with
/// its modification time.
fn run_directories(work_dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut level = vec![work_dir.join("slaves")];
    for name in ["frameworks", "executors", "runs"] {
        level = level
            .iter()
            .flat_map(|dir| subdirectories(dir))
            .map(|dir| dir.join(name))
            .collect();
    }
    level
        .iter()
        .flat_map(|runs| subdirectories(runs))
        .filter_map(|run| {
            let modified = std::fs::symlink_metadata(&run).ok()?.modified().ok()?;
            Some((run, modified))
        })
        .collect()
}

/// The real directories (no symlinks) in `dir`.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

async fn collect(
    options: GcOptions,
    work_dir: PathBuf,
    mut requests: mpsc::UnboundedReceiver<Request>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let policy = options.policy;
    let mut schedule = Schedule::default();
    let mut disk_watch = tokio::time::interval(options.disk_watch_interval);
    disk_watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        metrics
            .pending
            .store(schedule.len() as u64, Ordering::Relaxed);
        let lookahead = tokio::select! {
            request = requests.recv() => {
                let Some(Request { run, modified }) = request else { return };
                let modified = match modified {
                    Some(time) => time,
                    None => match touch(&run) {
                        Ok(now) => now,
                        Err(e) => {
                            tracing::debug!("not collecting {}: {e}", run.display());
                            continue;
                        }
                    },
                };
                schedule.schedule(run, modified, policy.delay);
                continue;
            }
            _ = sleep_until(schedule.next_due()) => Duration::ZERO,
            _ = disk_watch.tick() => match disk_usage(&work_dir) {
                Ok(usage) => {
                    let lookahead = policy.lookahead(usage);
                    tracing::debug!(
                        "disk usage {:.1}%: sandboxes older than {} are removed",
                        usage * 100.0,
                        meseta_api::duration::format(policy.max_age(usage))
                    );
                    lookahead
                }
                Err(e) => {
                    tracing::warn!("cannot read the disk usage of {}: {e}", work_dir.display());
                    continue;
                }
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let due = schedule.take_due(SystemTime::now(), lookahead);
        if due.is_empty() {
            continue;
        }
        let pending = (schedule.len() + due.len()) as u64;
        metrics.pending.store(pending, Ordering::Relaxed);
        let removed = tokio::task::spawn_blocking(move || {
            due.into_iter()
                .map(|run| {
                    let result = remove_run(&run);
                    (run, result)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (run, result) in removed {
            match result {
                Ok(()) => {
                    tracing::info!("removed the sandbox {}", run.display());
                    metrics.succeeded.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!("failed to remove the sandbox {}: {e}", run.display());
                    metrics.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<SystemTime>) {
    match at {
        Some(at) => {
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(wait).await
        }
        None => std::future::pending().await,
    }
}

/// Sets the directory's modification time to now, as Mesos does before scheduling;
/// returns that time.
fn touch(dir: &Path) -> std::io::Result<SystemTime> {
    let now = SystemTime::now();
    std::fs::File::open(dir)?.set_modified(now)?;
    Ok(now)
}

/// The share (0 to 1) of the work directory's filesystem in use.
fn disk_usage(work_dir: &Path) -> nix::Result<f64> {
    let stat = nix::sys::statvfs::statvfs(work_dir)?;
    let blocks = stat.blocks() as f64;
    Ok(match blocks > 0.0 {
        true => (blocks - stat.blocks_free() as f64) / blocks,
        false => 0.0,
    })
}

/// Removes a run directory, the `latest` link that names it, and the directories above
/// it up to its framework's that it leaves empty. A run already gone is no error.
fn remove_run(run: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(run) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let Some(runs) = run.parent() else {
        return Ok(());
    };
    let latest = runs.join("latest");
    if std::fs::read_link(&latest).is_ok_and(|target| Some(target.as_os_str()) == run.file_name()) {
        std::fs::remove_file(&latest)?;
    }
    // runs/, the executor's directory, executors/, the framework's directory.
    for dir in runs.ancestors().take(4) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths;

    #[test]
    fn a_run_goes_with_its_latest_link_and_the_parents_it_empties() {
        let work = tempfile::tempdir().unwrap();
        let sandbox = |e: &str, c: &str| paths::sandbox(work.path(), "S0", "F", e, c);
        let (old, new, other) = (
            sandbox("e1", "c1"),
            sandbox("e1", "c2"),
            sandbox("e2", "c3"),
        );
        for run in [&old, &new, &other] {
            paths::create_sandbox(run).unwrap();
            std::fs::write(run.join("stdout"), "x").unwrap();
        }
        let latest = |run: &Path| run.parent().unwrap().join("latest");

        // Not the latest run: the link and the executor's directory stay.
        remove_run(&old).unwrap();
        assert!(!old.exists() && new.exists());
        assert!(std::fs::read_link(latest(&new)).is_ok());

        remove_run(&new).unwrap();
        assert!(std::fs::symlink_metadata(latest(&new)).is_err());
        let executor = new.parent().unwrap().parent().unwrap();
        assert!(!executor.exists(), "the empty executor directory goes");
        let framework = executor.parent().unwrap().parent().unwrap();
        assert!(framework.exists(), "another executor is left");

        remove_run(&other).unwrap();
        assert!(!framework.exists(), "the empty framework directory goes");
        assert!(
            work.path().join("slaves/S0/frameworks").exists(),
            "not above it"
        );
        remove_run(&other).unwrap();
    }

    #[test]
    fn recovery_finds_the_runs_no_executor_owns() {
        let work = tempfile::tempdir().unwrap();
        let live = paths::sandbox(work.path(), "S0", "F", "e1", "c1");
        let done = paths::sandbox(work.path(), "S0", "F", "e1", "c2");
        let old_agent = paths::sandbox(work.path(), "S-1", "G", "e9", "c9");
        for run in [&live, &done, &old_agent] {
            paths::create_sandbox(run).unwrap();
        }
        let mut found: Vec<PathBuf> = run_directories(work.path())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        found.sort();
        let mut expected = vec![live.clone(), done.clone(), old_agent.clone()];
        expected.sort();
        assert_eq!(found, expected, "`latest` links are not runs");

        let (requests, mut received) = mpsc::unbounded_channel();
        let gc = Gc {
            requests,
            metrics: Arc::default(),
        };
        gc.recover(work.path(), &HashSet::from([live.clone()]));
        let mut scheduled = Vec::new();
        while let Ok(request) = received.try_recv() {
            assert!(request.modified.is_some());
            scheduled.push(request.run);
        }
        scheduled.sort();
        let mut expected = vec![done, old_agent];
        expected.sort();
        assert_eq!(scheduled, expected);
    }

    #[test]
    fn touching_restarts_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::open(dir.path())
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let now = touch(dir.path()).unwrap();
        let modified = std::fs::metadata(dir.path()).unwrap().modified().unwrap();
        assert!(now > long_ago && modified == now, "{now:?} {modified:?}");
        assert!(touch(&dir.path().join("gone")).is_err());
    }

    #[test]
    fn disk_usage_is_a_share() {
        let usage = disk_usage(Path::new("/")).unwrap();
        assert!((0.0..=1.0).contains(&usage), "{usage}");
    }
}
