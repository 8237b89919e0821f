//! The state benchmark: how fast a big master answers state queries, and how much state
//! readers slow down everything else it does.
//!
//! A real `meseta master` and `meseta sim agents` are filled by load frameworks
//! (`meseta_sim::load`) with `--tasks` running tasks and as many completed ones (the
//! completed ones spread over frameworks of 1,000 tasks each, the number a master keeps per
//! framework). Then it times operator GET_STATE and v0 `/master/state` one at a time, and
//! the latency of a small operator call (GET_MASTER, answered by the same state owner)
//! alone and while 20 readers fetch GET_STATE without pause, timed from a thread and a
//! connection of its own (see [`Prober`]). The master's resident memory
//! growth while it was filled, per task it holds, is `bytes_per_task`. The peer is a
//! published figure: Mesos 1.7 answered `/master/state` of a cluster this size in 1.86 s.

use crate::cluster::meseta_binary;
use crate::hollow::{in_work_dir, HollowCluster};
use crate::process::{cpu_seconds, resident_bytes};
use crate::stats::percentile;
use anyhow::{bail, Result};
use meseta_api::Resources;
use meseta_sim::load::{run_framework, LoadPlan, LoadStats};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Mesos 1.7's published `/master/state` latency at this scale (ms).
const MESOS_PUBLISHED_STATE_MS: f64 = 1860.0;

/// Completed tasks the master keeps per framework.
const COMPLETED_PER_FRAMEWORK: usize = 1000;

#[derive(clap::Args)]
pub struct StateArgs {
    /// Hollow agents.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Running tasks, and as many completed ones.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Timed requests of each kind.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Concurrent state readers in the slowdown phase.
    #[arg(long, default_value_t = 20)]
    readers: usize,
    /// Timed small calls alone, and again while the readers read.
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// Each hollow agent's resources.
    #[arg(
        long,
        default_value = "cpus:24;mem:4096;disk:100000;ports:[31000-32000]"
    )]
    agent_resources: String,
    /// Where state and logs go (a fresh temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(Serialize)]
pub struct StateReport {
    agents: usize,
    running_tasks: usize,
    completed_tasks: usize,
    get_state_bytes: usize,
    v0_state_bytes: usize,
    p50_get_state_ms: f64,
    p99_get_state_ms: f64,
    p50_v0_state_ms: f64,
    p99_v0_state_ms: f64,
    /// How long the filled master took to settle (its CPU use below 100 ms per second)
    /// before the answers were timed.
    settle_s: f64,
    /// CPU time per answer while the answers were timed, less what the same time used with
    /// no request in flight (`*_idle_cpu_ms_per_s`, the last second before): the master's
    /// and this process's (reading the answer; the idle load frameworks run here too).
    master_cpu_ms_per_get_state: f64,
    client_cpu_ms_per_get_state: f64,
    master_cpu_ms_per_v0_state: f64,
    client_cpu_ms_per_v0_state: f64,
    master_idle_cpu_ms_per_s: f64,
    client_idle_cpu_ms_per_s: f64,
    p50_probe_idle_ms: f64,
    p99_probe_idle_ms: f64,
    p50_probe_loaded_ms: f64,
    p99_probe_loaded_ms: f64,
    reader_slowdown_ms: f64,
    master_rss_agents_bytes: u64,
    /// The master's resident memory as the last task was placed, and once it settled.
    master_rss_filled_bytes: u64,
    master_rss_settled_bytes: u64,
    /// Its growth since the agents alone, per task: as the fill ended (with what was
    /// still in flight), and settled, which is the figure the goal is about.
    bytes_per_task_at_fill_end: f64,
    bytes_per_task: f64,
    peer: &'static str,
    peer_v0_state_ms: f64,
    ratio: f64,
}

pub async fn run(args: StateArgs) -> Result<StateReport> {
    let binary = meseta_binary()?;
    let args = &args;
    in_work_dir(args.work_dir.as_deref(), "state", |work_dir| async move {
        measure(&binary, &work_dir, args).await
    })
    .await
}

async fn measure(binary: &Path, work_dir: &Path, args: &StateArgs) -> Result<StateReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut cluster = HollowCluster::start(binary, work_dir, deadline).await?;
    cluster
        .add_agents(
            binary,
            work_dir,
            args.agents,
            &args.agent_resources,
            deadline,
        )
        .await?;
    let address = cluster.address.clone();
    let http = reqwest::Client::new();
    let rss_agents = resident_bytes(cluster.master.pid())?;

    let stats = Arc::new(LoadStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut frameworks = tokio::task::JoinSet::new();
    let per_task = Resources::parse("cpus:0.1;mem:16")?;
    let groups = args.tasks.div_ceil(COMPLETED_PER_FRAMEWORK);
    for i in 0..groups {
        let tasks = COMPLETED_PER_FRAMEWORK.min(args.tasks - i * COMPLETED_PER_FRAMEWORK);
        for (kind, command) in [("done", "sleep 0"), ("run", "sleep 86400")] {
            let plan = LoadPlan {
                name: format!("{kind}-{i}"),
                role: kind.into(),
                per_task: per_task.clone(),
                tasks,
                command: command.into(),
            };
            frameworks.spawn(run_framework(
                address.clone(),
                plan,
                stats.clone(),
                stop_rx.clone(),
            ));
        }
    }
    let target = args.tasks as u64;
    loop {
        let finished = stats.finished.load(Ordering::Relaxed);
        if finished >= target && stats.running() >= 2 * target {
            break;
        }
        if stats.failed() > 0 {
            bail!("tasks failed: {}", stats.line());
        }
        if Instant::now() > deadline {
            bail!("timed out filling the master: {}", stats.line());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("state: master filled: {}", stats.line());
    let rss_filled = resident_bytes(cluster.master.pid())?;

    let api = format!("http://{address}/api/v1");
    let v0 = format!("http://{address}/master/state");
    let get_state = || operator_call(&http, &api, "GET_STATE");
    let master_pid = cluster.master.pid();
    let (idle, settle_s) = settle(master_pid).await?;
    let rss_settled = resident_bytes(master_pid)?;
    let cpu = CpuClock::start(master_pid)?;
    let (get_state_ms, get_state_bytes) = timed(args.samples, get_state).await?;
    let get_state_cpu = cpu.per_request(args.samples, idle)?;
    let cpu = CpuClock::start(master_pid)?;
    let (v0_ms, v0_bytes) = timed(args.samples, || async {
        body_size(http.get(&v0).send().await?.error_for_status()?).await
    })
    .await?;
    let v0_cpu = cpu.per_request(args.samples, idle)?;

    let prober = Prober::start(api.clone())?;
    let idle_ms = prober.latencies(args.probes).await?;
    let reading = Arc::new(AtomicBool::new(true));
    let mut readers: tokio::task::JoinSet<Result<()>> = tokio::task::JoinSet::new();
    for _ in 0..args.readers {
        let (http, api, reading) = (http.clone(), api.clone(), reading.clone());
        readers.spawn(async move {
            while reading.load(Ordering::Relaxed) {
                operator_call(&http, &api, "GET_STATE").await?;
            }
            Ok(())
        });
    }
    // Let every reader have a request in flight first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = prober.latencies(args.probes).await;
    reading.store(false, Ordering::Relaxed);
    while let Some(done) = readers.join_next().await {
        done??;
    }
    let loaded_ms = loaded?;
    stop_tx.send_replace(true);
    while frameworks.join_next().await.is_some() {}
    drop(cluster);

    let p = |v: &[f64], q| percentile(v, q).unwrap_or(f64::NAN);
    let per_task =
        |rss: u64| rss.saturating_sub(rss_agents) as f64 / (2 * args.tasks).max(1) as f64;
    let p50_v0 = p(&v0_ms, 50.0);
    Ok(StateReport {
        agents: args.agents,
        running_tasks: args.tasks,
        completed_tasks: args.tasks,
        get_state_bytes,
        v0_state_bytes: v0_bytes,
        p50_get_state_ms: p(&get_state_ms, 50.0),
        p99_get_state_ms: p(&get_state_ms, 99.0),
        p50_v0_state_ms: p50_v0,
        p99_v0_state_ms: p(&v0_ms, 99.0),
        master_cpu_ms_per_get_state: get_state_cpu.master_ms,
        client_cpu_ms_per_get_state: get_state_cpu.client_ms,
        master_cpu_ms_per_v0_state: v0_cpu.master_ms,
        client_cpu_ms_per_v0_state: v0_cpu.client_ms,
        settle_s,
        master_idle_cpu_ms_per_s: idle.master_ms,
        client_idle_cpu_ms_per_s: idle.client_ms,
        p50_probe_idle_ms: p(&idle_ms, 50.0),
        p99_probe_idle_ms: p(&idle_ms, 99.0),
        p50_probe_loaded_ms: p(&loaded_ms, 50.0),
        p99_probe_loaded_ms: p(&loaded_ms, 99.0),
        reader_slowdown_ms: p(&loaded_ms, 50.0) - p(&idle_ms, 50.0),
        master_rss_agents_bytes: rss_agents,
        master_rss_filled_bytes: rss_filled,
        master_rss_settled_bytes: rss_settled,
        bytes_per_task_at_fill_end: per_task(rss_filled),
        bytes_per_task: per_task(rss_settled),
        peer: "mesos-1.7-published",
        peer_v0_state_ms: MESOS_PUBLISHED_STATE_MS,
        ratio: p50_v0 / MESOS_PUBLISHED_STATE_MS,
    })
}

/// How long the master's and this process's CPU use is sampled with no request in flight.
const IDLE_WINDOW: Duration = Duration::from_secs(1);

/// The master counts as settled after filling below this CPU use (ms per second).
const SETTLED_MASTER_CPU_MS_PER_S: f64 = 100.0;

/// How long to wait for the master to settle before timing anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until the master, filled, has finished its own work (CPU below
/// [`SETTLED_MASTER_CPU_MS_PER_S`] over an [`IDLE_WINDOW`]), or [`SETTLE_TIMEOUT`] passed:
/// answers timed before would share the cores with the fill's tail (acknowledgements,
/// completions, offers). The CPU use of the last window, and the seconds waited.
async fn settle(master_pid: u32) -> Result<(CpuUse, f64)> {
    let started = Instant::now();
    loop {
        let window = CpuClock::start(master_pid)?;
        tokio::time::sleep(IDLE_WINDOW).await;
        let idle = window.per_second()?;
        let waited = started.elapsed();
        if idle.master_ms < SETTLED_MASTER_CPU_MS_PER_S || waited > SETTLE_TIMEOUT {
            if idle.master_ms >= SETTLED_MASTER_CPU_MS_PER_S {
                tracing::warn!(
                    "the master still used {:.0} ms of CPU per second after {waited:?}",
                    idle.master_ms
                );
            }
            return Ok((idle, waited.as_secs_f64()));
        }
    }
}

/// CPU seconds of the master and of this process at a start.
struct CpuClock {
    master_pid: u32,
    started: Instant,
    master: f64,
    client: f64,
}

/// CPU milliseconds of the master and of this process: per second, or per request.
#[derive(Clone, Copy)]
struct CpuUse {
    master_ms: f64,
    client_ms: f64,
}

impl CpuClock {
    fn start(master_pid: u32) -> Result<CpuClock> {
        Ok(CpuClock {
            master_pid,
            started: Instant::now(),
            master: cpu_seconds(master_pid)?,
            client: cpu_seconds(std::process::id())?,
        })
    }

    /// CPU milliseconds used since the start, and the seconds elapsed.
    fn used(&self) -> Result<(CpuUse, f64)> {
        let used = CpuUse {
            master_ms: (cpu_seconds(self.master_pid)? - self.master) * 1000.0,
            client_ms: (cpu_seconds(std::process::id())? - self.client) * 1000.0,
        };
        Ok((used, self.started.elapsed().as_secs_f64()))
    }

    /// CPU milliseconds per second since the start.
    fn per_second(&self) -> Result<CpuUse> {
        let (used, seconds) = self.used()?;
        Ok(CpuUse {
            master_ms: used.master_ms / seconds,
            client_ms: used.client_ms / seconds,
        })
    }

    /// CPU milliseconds per request since the start, less what `idle` would have used
    /// in that time.
    fn per_request(&self, requests: usize, idle: CpuUse) -> Result<CpuUse> {
        let (used, seconds) = self.used()?;
        let per =
            |ms: f64, idle_ms_per_s: f64| (ms - idle_ms_per_s * seconds) / requests.max(1) as f64;
        Ok(CpuUse {
            master_ms: per(used.master_ms, idle.master_ms),
            client_ms: per(used.client_ms, idle.client_ms),
        })
    }
}

/// One operator call with an empty payload; the answer's size.
async fn operator_call(http: &reqwest::Client, url: &str, kind: &str) -> Result<usize> {
    let response = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(format!(r#"{{"type":"{kind}"}}"#))
        .send()
        .await?
        .error_for_status()?;
    body_size(response).await
}

/// Times the small operator call (GET_MASTER) from a thread, runtime and connection of
/// its own. Timed on the bench's runtime, whose workers are busy taking in the 20
/// readers' gigabytes, a probe's latency also held its wait for one of those workers, a
/// delay of the bench's, not the master's.
struct Prober {
    requests: std::sync::mpsc::Sender<ProbeRequest>,
}

/// How many probes to time, and where their latencies go.
type ProbeRequest = (usize, tokio::sync::oneshot::Sender<Result<Vec<f64>>>);

impl Prober {
    fn start(api: String) -> Result<Prober> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (requests, incoming) = std::sync::mpsc::channel::<ProbeRequest>();
        std::thread::Builder::new()
            .name("state-probe".into())
            .spawn(move || {
                let http = reqwest::Client::new();
                for (samples, reply) in incoming {
                    let probe = || operator_call(&http, &api, "GET_MASTER");
                    let latencies = runtime.block_on(timed(samples, probe));
                    let _ = reply.send(latencies.map(|(ms, _)| ms));
                }
            })?;
        Ok(Prober { requests })
    }

    /// The latencies (ms) of `samples` probes, one at a time.
    async fn latencies(&self, samples: usize) -> Result<Vec<f64>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests.send((samples, reply))?;
        answer.await?
    }
}

/// Reads an answer to its end, as `curl -o /dev/null` does: its size. The bench shares
/// the cores with the master, so it does not gather hundreds of megabytes it throws away.
async fn body_size(mut response: reqwest::Response) -> Result<usize> {
    let mut size = 0;
    while let Some(chunk) = response.chunk().await? {
        size += chunk.len();
    }
    Ok(size)
}

/// Runs `request` `samples` times, one at a time; the latencies (ms) and the last size.
async fn timed<F, Fut>(samples: usize, mut request: F) -> Result<(Vec<f64>, usize)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let mut latencies = Vec::with_capacity(samples);
    let mut size = 0;
    for _ in 0..samples {
        let started = Instant::now();
        size = request().await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((latencies, size))
}
