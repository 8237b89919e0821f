//! The launch benchmark: trivial tasks (`true`) through the scheduler API of a
//! `meseta local`. First the latency from ACCEPT to TASK_RUNNING of tasks launched one at
//! a time on an idle cluster; then N tasks launched as fast as offers allow, measuring
//! tasks per second to TASK_FINISHED (and the ACCEPT→RUNNING latency under that burst,
//! and the CPU time per task of Meseta's processes and of the framework); then the same N
//! jobs through Slurm (`sbatch --wrap true`).

use crate::cluster::{meseta_binary, LocalCluster};
use crate::process::{cpu_seconds, tree_cpu_seconds};
use crate::scratch::default_work_root;
use crate::slurm::SlurmPeer;
use crate::stats::percentile;
use anyhow::{bail, Context, Result};
use meseta_api::scheduler::Event;
use meseta_api::{Filters, FrameworkInfo, Resources, TaskId, TaskState};
use meseta_sim::load::pack;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct LaunchArgs {
    /// How many tasks to launch.
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// The peer to compare with: `slurm` or `none`.
    #[arg(long, default_value = "slurm")]
    peer: String,
    /// Tasks launched one at a time first, to measure launch latency on an idle cluster.
    #[arg(long, default_value_t = 100)]
    latency_samples: usize,
    /// CPUs each task asks for.
    #[arg(long, default_value_t = 0.01)]
    task_cpus: f64,
    /// Memory (MB) each task asks for.
    #[arg(long, default_value_t = 8.0)]
    task_mem: f64,
    /// Where state and logs go, for Meseta and the peer alike (by default a fresh
    /// directory in /dev/shm when it is a tmpfs, else in the temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Serialize)]
pub struct LaunchReport {
    tasks: usize,
    seconds: f64,
    tasks_per_s: f64,
    p50_launch_ms: f64,
    p99_launch_ms: f64,
    burst_p50_launch_ms: f64,
    burst_p99_launch_ms: f64,
    /// CPU time (user and system) per task of `meseta local` and every process it
    /// started (zygote, executors, tasks) during the burst: steadier than `tasks_per_s` on
    /// a host whose speed drifts.
    cpu_ms_per_task: f64,
    /// The same for the framework (this process).
    framework_cpu_ms_per_task: f64,
    failed: usize,
    peer: String,
    peer_tasks_per_s: Option<f64>,
    ratio: Option<f64>,
}

pub async fn run(args: LaunchArgs) -> Result<LaunchReport> {
    let work_dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => default_work_root().join(format!("meseta-bench-launch-{}", std::process::id())),
    };
    let binary = meseta_binary()?;
    let ours = {
        let cluster = LocalCluster::start(&binary, &work_dir.join("meseta")).await?;
        let result = measure(&cluster, &args).await;
        drop(cluster);
        result?
    };
    eprintln!(
        "meseta: one at a time, ACCEPT→RUNNING p50 {:.2} ms, p99 {:.2} ms",
        ours.p50_launch_ms, ours.p99_launch_ms
    );
    eprintln!(
        "meseta: {} tasks in {:.2} s = {:.1} tasks/s; under that burst ACCEPT→RUNNING p50 {:.2} ms, p99 {:.2} ms; CPU per task {:.2} ms (framework {:.2} ms)",
        args.tasks,
        ours.seconds,
        ours.tasks_per_s,
        ours.burst_p50_launch_ms,
        ours.burst_p99_launch_ms,
        ours.cpu_ms_per_task,
        ours.framework_cpu_ms_per_task
    );
    let (peer_tasks_per_s, ratio) = match args.peer.as_str() {
        "none" => (None, None),
        "slurm" => {
            let tasks = args.tasks;
            let slurm_dir = work_dir.join("slurm");
            std::fs::create_dir_all(&slurm_dir)?;
            let peer = tokio::task::spawn_blocking(move || -> Result<_> {
                let peer = SlurmPeer::start(&slurm_dir)?;
                peer.run_jobs(tasks)
            })
            .await??;
            eprintln!(
                "slurm: {} jobs in {:.2} s = {:.1} jobs/s",
                peer.jobs, peer.seconds, peer.jobs_per_s
            );
            (
                Some(peer.jobs_per_s),
                Some(ours.tasks_per_s / peer.jobs_per_s),
            )
        }
        other => bail!("unknown peer '{other}' (use slurm or none)"),
    };
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(LaunchReport {
        peer: args.peer,
        peer_tasks_per_s,
        ratio,
        ..ours
    })
}

/// The latency phase, then the throughput phase, on one subscription.
async fn measure(cluster: &LocalCluster, args: &LaunchArgs) -> Result<LaunchReport> {
    let master = cluster.master.as_str();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let info: FrameworkInfo = serde_json::from_value(serde_json::json!({
        "user": user, "name": "meseta-bench-launch", "failover_timeout": 0.0,
    }))?;
    let (scheduler, events) =
        meseta_scheduler::subscribe(meseta_scheduler::Config::new(master, info))?;
    let per_task = Resources::parse(&format!("cpus:{};mem:{}", args.task_cpus, args.task_mem))?;
    let mut run = Run {
        scheduler: &scheduler,
        events,
        per_task,
        deadline: Instant::now() + Duration::from_secs(args.timeout_secs),
        next_task: 0,
    };
    let mut idle_ms = Vec::with_capacity(args.latency_samples);
    for _ in 0..args.latency_samples {
        let phase = run.launch_batch(1, 1).await?;
        if phase.failed > 0 {
            bail!("a latency-phase task failed");
        }
        idle_ms.extend(phase.launch_ms);
    }
    let cpu_before = (
        tree_cpu_seconds(cluster.pid())?,
        cpu_seconds(std::process::id())?,
    );
    let burst = run.launch_batch(args.tasks, usize::MAX).await?;
    let cpu_after = (
        tree_cpu_seconds(cluster.pid())?,
        cpu_seconds(std::process::id())?,
    );
    let per_task_ms = |before: f64, after: f64| (after - before) * 1000.0 / args.tasks as f64;
    let _ = scheduler.teardown().await;
    scheduler.close();
    Ok(LaunchReport {
        tasks: args.tasks,
        seconds: burst.seconds,
        tasks_per_s: burst.finished as f64 / burst.seconds.max(1e-9),
        p50_launch_ms: percentile(&idle_ms, 50.0).unwrap_or(f64::NAN),
        p99_launch_ms: percentile(&idle_ms, 99.0).unwrap_or(f64::NAN),
        burst_p50_launch_ms: percentile(&burst.launch_ms, 50.0).unwrap_or(f64::NAN),
        burst_p99_launch_ms: percentile(&burst.launch_ms, 99.0).unwrap_or(f64::NAN),
        cpu_ms_per_task: per_task_ms(cpu_before.0, cpu_after.0),
        framework_cpu_ms_per_task: per_task_ms(cpu_before.1, cpu_after.1),
        failed: burst.failed,
        peer: String::new(),
        peer_tasks_per_s: None,
        ratio: None,
    })
}

/// A subscription launching numbered tasks.
struct Run<'a> {
    scheduler: &'a meseta_scheduler::Scheduler,
    events: meseta_scheduler::Events,
    per_task: Resources,
    deadline: Instant,
    next_task: usize,
}

/// What one batch measured.
struct Batch {
    seconds: f64,
    finished: usize,
    failed: usize,
    launch_ms: Vec<f64>,
}

impl Run<'_> {
    /// Launches `count` tasks, at most `per_offer` on each offer, and waits until all are
    /// terminal.
    async fn launch_batch(&mut self, count: usize, per_offer: usize) -> Result<Batch> {
        let end = self.next_task + count;
        let mut accepted_at: HashMap<TaskId, Instant> = HashMap::new();
        let mut batch = Batch {
            seconds: 0.0,
            finished: 0,
            failed: 0,
            launch_ms: Vec::with_capacity(count),
        };
        let mut started: Option<Instant> = None;
        while batch.finished + batch.failed < count {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(remaining, self.events.next())
                .await
                .context("timed out waiting for the tasks")?
                .context("the subscription ended")??;
            match event {
                Event::Offers(offers) => {
                    for offer in offers.offers {
                        let limit = end.min(self.next_task.saturating_add(per_offer));
                        let tasks = pack(
                            &offer,
                            &self.per_task,
                            "true",
                            "bench",
                            &mut self.next_task,
                            limit,
                        );
                        if tasks.is_empty() {
                            // Refused briefly: the next batch revives nothing, it waits.
                            self.scheduler
                                .decline(
                                    vec![offer.id],
                                    Some(Filters {
                                        refuse_seconds: 0.0,
                                    }),
                                )
                                .await?;
                            continue;
                        }
                        let now = Instant::now();
                        started.get_or_insert(now);
                        for t in &tasks {
                            accepted_at.insert(t.task_id.clone(), now);
                        }
                        self.scheduler
                            .launch(
                                vec![offer.id],
                                tasks,
                                Some(Filters {
                                    refuse_seconds: 0.0,
                                }),
                            )
                            .await?;
                    }
                }
                Event::Update(update) => {
                    let status = update.status;
                    match status.state {
                        TaskState::TaskRunning => {
                            if let Some(at) = accepted_at.get(&status.task_id) {
                                batch.launch_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                        TaskState::TaskFinished => batch.finished += 1,
                        s if s.is_terminal() => {
                            batch.failed += 1;
                            eprintln!(
                                "task {} ended {:?}: {}",
                                status.task_id,
                                s,
                                status.message.unwrap_or_default()
                            );
                        }
                        _ => {}
                    }
                }
                Event::Error(e) => bail!("the master sent ERROR: {}", e.message),
                _ => {}
            }
        }
        batch.seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        Ok(batch)
    }
}
