//! The placements benchmark: a real `meseta master`, `meseta sim agents` (hollow agents
//! speaking the real internal protocol, in their own process) and load-generating
//! frameworks (`meseta_sim::load`, real schedulers over loopback HTTP, in this process).
//! It measures sustained placements per second, offer → ACCEPT → TASK_RUNNING at the
//! framework, and the master's resident memory per agent and per task at that scale.
//!
//! The peer is a published figure, not a run: Nomad's "million container challenge"
//! placed 1,000,000 containers at an average of 3,750 per second on five servers.

use crate::cluster::meseta_binary;
use crate::hollow::{in_work_dir, HollowCluster};
use crate::process::resident_bytes;
use anyhow::{bail, Context, Result};
use meseta_api::Resources;
use meseta_sim::load::{run_framework, LoadPlan, LoadStats};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nomad's published average placement rate (tasks per second).
const NOMAD_PUBLISHED_PER_S: f64 = 3750.0;
/// How often the progress of the placements is printed (stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct PlacementsArgs {
    /// Hollow agents.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Tasks placed in all.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Load frameworks sharing the tasks.
    #[arg(long, default_value_t = 10)]
    frameworks: usize,
    /// Each hollow agent's resources.
    #[arg(
        long,
        default_value = "cpus:24;mem:4096;disk:100000;ports:[31000-32000]"
    )]
    agent_resources: String,
    /// Each task's resources.
    #[arg(long, default_value = "cpus:0.1;mem:16")]
    task_resources: String,
    /// Where state and logs go (a fresh temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Serialize)]
pub struct PlacementsReport {
    agents: usize,
    tasks: usize,
    frameworks: usize,
    seconds: f64,
    placements_per_s: f64,
    /// The rate between 10 % and 90 % of the tasks running (the sustained rate).
    sustained_placements_per_s: f64,
    failed: u64,
    master_rss_idle_bytes: u64,
    bytes_per_agent: f64,
    bytes_per_task: f64,
    peer: &'static str,
    peer_placements_per_s: f64,
    ratio: f64,
}

pub async fn run(args: PlacementsArgs) -> Result<PlacementsReport> {
    let per_task = Resources::parse(&args.task_resources).context("--task-resources")?;
    if args.frameworks == 0 {
        bail!("--frameworks must be at least 1");
    }
    let binary = meseta_binary()?;
    let args = &args;
    in_work_dir(args.work_dir.as_deref(), "place", |work_dir| async move {
        measure(&binary, &work_dir, args, per_task).await
    })
    .await
}

async fn measure(
    binary: &Path,
    work_dir: &Path,
    args: &PlacementsArgs,
    per_task: Resources,
) -> Result<PlacementsReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut cluster = HollowCluster::start(binary, work_dir, deadline).await?;
    let rss_idle = resident_bytes(cluster.master.pid())?;
    let started = Instant::now();
    cluster
        .add_agents(
            binary,
            work_dir,
            args.agents,
            &args.agent_resources,
            deadline,
        )
        .await?;
    eprintln!(
        "placements: {} hollow agents registered in {:.1} s",
        args.agents,
        started.elapsed().as_secs_f64()
    );
    let rss_agents = resident_bytes(cluster.master.pid())?;

    let stats = Arc::new(LoadStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut frameworks = tokio::task::JoinSet::new();
    let share = args.tasks.div_ceil(args.frameworks);
    for i in 0..args.frameworks {
        let tasks = share.min(args.tasks.saturating_sub(i * share));
        let plan = LoadPlan {
            name: format!("load-{i}"),
            role: format!("load-{i}"),
            per_task: per_task.clone(),
            tasks,
            command: "sleep 86400".into(),
        };
        frameworks.spawn(run_framework(
            cluster.address.clone(),
            plan,
            stats.clone(),
            stop_rx.clone(),
        ));
    }
    let started = Instant::now();
    let target = args.tasks as u64;
    let (mut at_10, mut at_90) = (None, None);
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let running = stats.running();
        if started.elapsed() >= next_progress {
            eprintln!("placements: after {next_progress:?}: {running} running");
            next_progress += PROGRESS_EVERY;
        }
        if at_10.is_none() && running * 10 >= target {
            at_10 = Some(started.elapsed());
        }
        if at_90.is_none() && running * 10 >= target * 9 {
            at_90 = Some(started.elapsed());
        }
        if running + stats.failed() >= target {
            break;
        }
        if Instant::now() > deadline {
            bail!("timed out: {}", stats.line());
        }
        if let Some(Ok(Err(e))) = frameworks.try_join_next() {
            bail!("a load framework failed: {e}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("placements: {}", stats.line());
    let rss_tasks = resident_bytes(cluster.master.pid())?;
    stop_tx.send_replace(true);
    while frameworks.join_next().await.is_some() {}

    let placements_per_s = target as f64 / seconds.max(1e-9);
    let sustained = match (at_10, at_90) {
        (Some(a), Some(b)) if b > a => 0.8 * target as f64 / (b - a).as_secs_f64(),
        _ => placements_per_s,
    };
    Ok(PlacementsReport {
        agents: args.agents,
        tasks: args.tasks,
        frameworks: args.frameworks,
        seconds,
        placements_per_s,
        sustained_placements_per_s: sustained,
        failed: stats.failed(),
        master_rss_idle_bytes: rss_idle,
        bytes_per_agent: rss_agents.saturating_sub(rss_idle) as f64 / args.agents.max(1) as f64,
        bytes_per_task: rss_tasks.saturating_sub(rss_agents) as f64 / args.tasks.max(1) as f64,
        peer: "nomad-published",
        peer_placements_per_s: NOMAD_PUBLISHED_PER_S,
        ratio: placements_per_s / NOMAD_PUBLISHED_PER_S,
    })
}
