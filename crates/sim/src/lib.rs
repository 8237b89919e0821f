//! Hollow agents and load generators for scale tests and benchmarks.
//!
//! `meseta sim agents` runs many simulated agents in one process. Each speaks the real
//! internal link protocol (`meseta_api::internal`) with the master, as `meseta agent`
//! does, but runs its tasks without any process: see [`hollow::HollowAgent`], the pure
//! bookkeeping, and [`link`], the I/O around it. `meseta sim frameworks` runs load-generating
//! frameworks ([`load`]) that place tasks through the scheduler API.

pub mod hollow;
pub mod link;
pub mod load;

use clap::{Args, Subcommand};
use meseta_api::{AgentInfo, Resources};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `meseta sim …`.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run N hollow agents (no processes, tasks finish after --task-duration) in one process.
    Agents(AgentsFlags),
    /// Run N load-generating frameworks that each place --tasks tasks as fast as offers allow.
    Frameworks(FrameworksFlags),
}

/// `meseta sim frameworks` flags.
#[derive(Debug, Args)]
pub struct FrameworksFlags {
    /// How many frameworks to run.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// The master, HOST:PORT.
    #[arg(long)]
    pub master: String,
    /// Tasks each framework places.
    #[arg(long, default_value_t = 1000)]
    pub tasks: usize,
    /// Each task's resources (`--resources` syntax).
    #[arg(long, default_value = "cpus:0.1;mem:32")]
    pub task_resources: String,
    /// The tasks' shell command.
    #[arg(long, default_value = "sleep 3600")]
    pub command: String,
    /// Framework i subscribes in role `<role-prefix>-<i mod roles>`.
    #[arg(long, default_value = "load")]
    pub role_prefix: String,
    /// How many distinct roles the frameworks spread over.
    #[arg(long, default_value_t = 1)]
    pub roles: usize,
    /// Seconds between summary lines on stderr.
    #[arg(long, default_value_t = 5)]
    pub summary_interval: u64,
}

impl FrameworksFlags {
    /// Each framework's plan.
    pub fn plans(&self) -> anyhow::Result<Vec<load::LoadPlan>> {
        let per_task = Resources::parse(&self.task_resources)
            .map_err(|e| anyhow::anyhow!("--task-resources: {e}"))?;
        if self.roles == 0 {
            anyhow::bail!("--roles must be at least 1");
        }
        Ok((0..self.count)
            .map(|i| load::LoadPlan {
                name: format!("load-{i}"),
                role: format!("{}-{}", self.role_prefix, i % self.roles),
                per_task: per_task.clone(),
                tasks: self.tasks,
                command: self.command.clone(),
            })
            .collect())
    }
}

/// `meseta sim agents` flags.
#[derive(Debug, Args)]
pub struct AgentsFlags {
    /// How many hollow agents to run.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// The master, HOST:PORT.
    #[arg(long)]
    pub master: String,
    /// Each agent's resources (`--resources` syntax of `meseta agent`).
    #[arg(
        long,
        default_value = "cpus:8;mem:16384;disk:100000;ports:[31000-32000]"
    )]
    pub resources: String,
    /// Each agent's attributes (`name:value;…`).
    #[arg(long)]
    pub attributes: Option<String>,
    /// How long a task runs before TASK_FINISHED (a Mesos duration: 500ms, 1secs, 2mins).
    #[arg(long, default_value = "1secs")]
    pub task_duration: String,
    /// Agent hostnames are `<prefix>-<i>`.
    #[arg(long, default_value = "sim")]
    pub hostname_prefix: String,
    /// Agent i announces the fake endpoint 127.0.0.1:<first-port + i> (nothing listens).
    #[arg(long, default_value_t = 40000)]
    pub first_port: u16,
    /// Seconds between summary lines on stderr.
    #[arg(long, default_value_t = 5)]
    pub summary_interval: u64,
}

/// Process-wide counters, fed by every hollow agent.
#[derive(Debug, Default)]
pub struct Stats {
    pub registered: AtomicU64,
    pub launched: AtomicU64,
    pub running: AtomicU64,
    pub finished: AtomicU64,
    pub failed_or_killed: AtomicU64,
    pub stopped: AtomicU64,
}

impl Stats {
    /// The summary line.
    pub fn line(&self, count: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "sim: {}/{} agents registered ({} shut down); tasks: {} launched, {} running, {} finished, {} killed/failed",
            get(&self.registered),
            count,
            get(&self.stopped),
            get(&self.launched),
            get(&self.running),
            get(&self.finished),
            get(&self.failed_or_killed),
        )
    }
}

/// Runs a `sim` command until `shutdown` resolves; returns the exit code.
pub async fn run(command: SimCommand, shutdown: impl Future<Output = ()>) -> anyhow::Result<i32> {
    match command {
        SimCommand::Agents(flags) => run_agents(flags, shutdown).await,
        SimCommand::Frameworks(flags) => run_frameworks(flags, shutdown).await,
    }
}

/// Prints `line()` on stderr every `interval` seconds, forever.
async fn summarize(interval: u64, line: impl Fn() -> String) {
    let mut ticks = tokio::time::interval(Duration::from_secs(interval.max(1)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        eprintln!("{}", line());
    }
}

async fn run_frameworks(
    flags: FrameworksFlags,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<i32> {
    let stats = Arc::new(load::LoadStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut frameworks = tokio::task::JoinSet::new();
    for plan in flags.plans()? {
        frameworks.spawn(load::run_framework(
            flags.master.clone(),
            plan,
            stats.clone(),
            stop_rx.clone(),
        ));
    }
    eprintln!(
        "sim: started {} load frameworks against {}",
        flags.count, flags.master
    );
    let mut failed = false;
    tokio::select! {
        _ = shutdown => {}
        _ = summarize(flags.summary_interval, || stats.line()) => {}
        _ = async {
            while let Some(done) = frameworks.join_next().await {
                if let Ok(Err(e)) = done {
                    eprintln!("sim: {e}");
                    failed = true;
                }
            }
        } => {}
    }
    stop_tx.send_replace(true);
    while frameworks.join_next().await.is_some() {}
    eprintln!("{}", stats.line());
    Ok(i32::from(failed))
}

async fn run_agents(flags: AgentsFlags, shutdown: impl Future<Output = ()>) -> anyhow::Result<i32> {
    let resources = Resources::parse(&flags.resources)
        .map_err(|e| anyhow::anyhow!("--resources: {e}"))?
        .into_vec();
    let attributes = match &flags.attributes {
        Some(text) => meseta_agent::detect::parse_attributes(text)
            .map_err(|e| anyhow::anyhow!("--attributes: {e}"))?,
        None => Vec::new(),
    };
    let task_duration = meseta_api::duration::parse(&flags.task_duration)
        .map_err(|e| anyhow::anyhow!("--task-duration: {e}"))?;
    if usize::from(flags.first_port) + flags.count > 65536 {
        anyhow::bail!("--first-port + --count must stay below 65536");
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| anyhow::anyhow!("building an HTTP client: {e}"))?;
    let posts = link::Posts::new().map_err(|e| anyhow::anyhow!("building an HTTP client: {e}"))?;
    let base = meseta_api::internal::master_url(&flags.master);
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    for i in 0..flags.count {
        let port = flags.first_port + i as u16;
        let info = AgentInfo {
            hostname: format!("{}-{i}", flags.hostname_prefix),
            port,
            resources: resources.clone(),
            attributes: attributes.clone(),
            id: None,
            domain: None,
        };
        let agent = hollow::HollowAgent::new(info, format!("127.0.0.1:{port}"), task_duration);
        agents.spawn(link::run(
            agent,
            base.clone(),
            client.clone(),
            posts.clone(),
            stats.clone(),
            stop_rx.clone(),
        ));
    }
    eprintln!("sim: started {} hollow agents against {base}", flags.count);
    tokio::select! {
        _ = shutdown => {}
        _ = summarize(flags.summary_interval, || stats.line(flags.count)) => {}
        _ = async { while agents.join_next().await.is_some() {} } => {
            eprintln!("sim: every hollow agent was shut down by the master");
        }
    }
    stop_tx.send_replace(true);
    while agents.join_next().await.is_some() {}
    eprintln!("{}", stats.line(flags.count));
    Ok(0)
}
