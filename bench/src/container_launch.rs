//! The container launch benchmark: tasks in a busybox image (built here from Debian's
//! `busybox-static`, imported into the agent's store) through the scheduler API of a
//! `meseta local` with Linux isolators. First the latency from ACCEPT to TASK_RUNNING of
//! containers launched one at a time (the command executor started in its container,
//! subscribed, and its task forked); then `--burst` containers launched at once, timed
//! until all have run. The peer is `runc run --detach` of the same rootfs with the same
//! namespaces and cgroup limits, timed until it returns (its process started).

use crate::cluster::{meseta_binary, LocalCluster};
use crate::scratch::default_work_root;
use crate::stats::percentile;
use anyhow::{bail, Context, Result};
use meseta_api::scheduler::Event;
use meseta_api::{Filters, FrameworkInfo, Resources, TaskId, TaskState};
use meseta_sim::load::pack;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The isolators our containers get; the runc peer gets the same namespaces and limits.
const ISOLATION: &str = "cgroups/cpu,cgroups/mem,namespaces/pid,namespaces/ipc,filesystem/linux";
const BUSYBOX: &str = "/bin/busybox";
const TASK_CPUS: f64 = 0.01;
const TASK_MEM_MB: f64 = 8.0;

#[derive(clap::Args)]
pub struct ContainerLaunchArgs {
    /// Containers launched one at a time, for the launch latency.
    #[arg(long, default_value_t = 200)]
    containers: usize,
    /// Containers launched at once afterwards (0: none).
    #[arg(long, default_value_t = 0)]
    burst: usize,
    /// The peer to compare with: `runc` or `none`.
    #[arg(long, default_value = "runc")]
    peer: String,
    /// Where state, images and logs go, for Meseta and runc alike (by default a fresh
    /// directory in /dev/shm when it is a tmpfs, else in the temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(Serialize)]
pub struct ContainerLaunchReport {
    containers: usize,
    failed: usize,
    p50_launch_ms: f64,
    p99_launch_ms: f64,
    peer: String,
    peer_p50_launch_ms: Option<f64>,
    peer_p99_launch_ms: Option<f64>,
    /// Ours / the peer's, at p50.
    ratio: Option<f64>,
    burst: usize,
    burst_s: Option<f64>,
}

pub async fn run(args: ContainerLaunchArgs) -> Result<ContainerLaunchReport> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the container launch benchmark needs root (Linux isolators, runc)");
    }
    let work_dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => default_work_root().join(format!("meseta-bench-containers-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work_dir)?;
    let binary = meseta_binary()?;
    let rootfs = work_dir.join("rootfs");
    write_busybox_rootfs(&rootfs)?;
    let layout = work_dir.join("layout");
    write_oci_layout(&rootfs, &layout)?;

    // `meseta local` keeps the agent's state (and image store) in `meseta/state/agent`.
    let agent_dir = work_dir.join("meseta/state/agent");
    std::fs::create_dir_all(&agent_dir)?;
    import_image(&binary, &layout, &agent_dir)?;
    // Room for the burst: each container is a task plus the command executor's share.
    let containers = args.containers.max(args.burst) as f64 + 1.0;
    let resources = format!(
        "cpus:{};mem:{};disk:1024",
        (containers * (TASK_CPUS + 0.1)).ceil(),
        (containers * (TASK_MEM_MB + 32.0)).ceil()
    );
    let cluster = LocalCluster::start_with(
        &binary,
        &work_dir.join("meseta"),
        &["--isolation", ISOLATION, "--resources", &resources],
    )
    .await?;
    let ours = measure(&cluster.master, &args).await;
    // The framework is torn down: let the agent destroy its containers (and release
    // their root filesystems) before it is stopped.
    wait_for_no_containers(&cluster.master).await;
    drop(cluster);
    let ours = ours?;
    eprintln!(
        "meseta: one container at a time, ACCEPT→RUNNING p50 {:.2} ms, p99 {:.2} ms ({} failed)",
        ours.p50_launch_ms, ours.p99_launch_ms, ours.failed
    );
    if let Some(s) = ours.burst_s {
        eprintln!(
            "meseta: {} containers at once, all run in {s:.2} s",
            args.burst
        );
    }
    let (peer_p50, peer_p99) = match args.peer.as_str() {
        "none" => (None, None),
        "runc" => {
            let samples = runc_launches(&rootfs, &work_dir.join("runc"), args.containers)?;
            let p50 = percentile(&samples, 50.0);
            let p99 = percentile(&samples, 99.0);
            eprintln!(
                "runc: run --detach p50 {:.2} ms, p99 {:.2} ms",
                p50.unwrap_or(f64::NAN),
                p99.unwrap_or(f64::NAN)
            );
            (p50, p99)
        }
        other => bail!("unknown peer '{other}' (use runc or none)"),
    };
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(ContainerLaunchReport {
        peer: args.peer,
        ratio: peer_p50.map(|p| ours.p50_launch_ms / p),
        peer_p50_launch_ms: peer_p50,
        peer_p99_launch_ms: peer_p99,
        ..ours
    })
}

/// Waits (up to a minute) until the agent of the `meseta local` whose master is
/// `master` (`127.0.0.1:port`; the agent listens on the next port) runs no container.
async fn wait_for_no_containers(master: &str) {
    let Some(port) = master
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
    else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/containers", port + 1);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let containers = match http.get(&url).send().await {
            Ok(r) => r.json::<Vec<serde_json::Value>>().await.ok(),
            Err(_) => None,
        };
        if containers.is_some_and(|c| c.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("the agent still runs containers after a minute; stopping it anyway");
}

/// A busybox root: the static binary and the applets the tasks use.
fn write_busybox_rootfs(root: &Path) -> Result<()> {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    for dir in ["proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    std::fs::copy(BUSYBOX, bin.join("busybox"))
        .with_context(|| format!("copying {BUSYBOX} (install busybox-static)"))?;
    for applet in ["sh", "true", "sleep", "echo"] {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    Ok(())
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `root` as a one-layer OCI image layout at `layout`.
fn write_oci_layout(root: &Path, layout: &Path) -> Result<()> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", root)?;
    let layer = builder.into_inner()?;
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |data: &[u8], media_type: &str| -> Result<serde_json::Value> {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data)?;
        Ok(
            serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": data.len()}),
        )
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer))]},
    });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": put(&serde_json::to_vec(&config)?, "application/vnd.oci.image.config.v1+json")?,
        "layers": [put(&layer, "application/vnd.oci.image.layer.v1.tar")?],
    });
    let mut top = put(
        &serde_json::to_vec(&manifest)?,
        "application/vnd.oci.image.manifest.v1+json",
    )?;
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "latest"});
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

fn import_image(binary: &Path, layout: &Path, agent_dir: &Path) -> Result<()> {
    let out = Command::new(binary)
        .args(["image", "import"])
        .arg(layout)
        .args(["--name", "busybox:latest", "--work-dir"])
        .arg(agent_dir)
        .output()
        .context("running meseta image import")?;
    if !out.status.success() {
        bail!(
            "meseta image import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The latency phase, then the burst, on one subscription.
async fn measure(master: &str, args: &ContainerLaunchArgs) -> Result<ContainerLaunchReport> {
    let info: FrameworkInfo = serde_json::from_value(serde_json::json!({
        "user": "root", "name": "meseta-bench-containers", "failover_timeout": 0.0,
    }))?;
    let (scheduler, events) =
        meseta_scheduler::subscribe(meseta_scheduler::Config::new(master, info))?;
    let per_task = Resources::parse(&format!("cpus:{TASK_CPUS};mem:{TASK_MEM_MB}"))?;
    let mut run = Run {
        scheduler: &scheduler,
        events,
        per_task,
        deadline: Instant::now() + Duration::from_secs(args.timeout_secs),
        next_task: 0,
        suppressed: false,
    };
    let mut samples = Vec::with_capacity(args.containers);
    let mut failed = 0;
    for _ in 0..args.containers {
        let wave = run.launch(1, 1).await?;
        samples.extend(wave.launch_ms);
        failed += wave.failed;
    }
    let burst_s = match args.burst {
        0 => None,
        n => {
            let wave = run.launch(n, usize::MAX).await?;
            failed += wave.failed;
            Some(wave.seconds)
        }
    };
    let _ = scheduler.teardown().await;
    scheduler.close();
    Ok(ContainerLaunchReport {
        containers: args.containers,
        failed,
        p50_launch_ms: percentile(&samples, 50.0).unwrap_or(f64::NAN),
        p99_launch_ms: percentile(&samples, 99.0).unwrap_or(f64::NAN),
        peer: String::new(),
        peer_p50_launch_ms: None,
        peer_p99_launch_ms: None,
        ratio: None,
        burst: args.burst,
        burst_s,
    })
}

/// A subscription launching numbered containers.
struct Run<'a> {
    scheduler: &'a meseta_scheduler::Scheduler,
    events: meseta_scheduler::Events,
    per_task: Resources,
    deadline: Instant,
    next_task: usize,
    /// Offers are suppressed (the last wave is all launched).
    suppressed: bool,
}

/// What one wave of launches measured.
struct Wave {
    /// From the first ACCEPT until every container ran (or failed).
    seconds: f64,
    failed: usize,
    launch_ms: Vec<f64>,
}

impl Run<'_> {
    /// Launches `count` containers, at most `per_offer` on each offer, and waits until
    /// each has reported TASK_RUNNING or failed, and then until all are terminal.
    ///
    /// Offers are revived for the wave and suppressed once all of it is launched, as a
    /// framework with nothing left to launch does: declining each offer for 0 s instead
    /// makes the master offer the same resources again at once, a loop that kept about
    /// a core of this 2-core machine busy while the containers were starting.
    async fn launch(&mut self, count: usize, per_offer: usize) -> Result<Wave> {
        let end = self.next_task + count;
        if self.suppressed {
            self.scheduler.revive(Vec::new()).await?;
            self.suppressed = false;
        }
        let mut accepted_at: HashMap<TaskId, Instant> = HashMap::new();
        let mut wave = Wave {
            seconds: 0.0,
            failed: 0,
            launch_ms: Vec::with_capacity(count),
        };
        let (mut started, mut ran, mut terminal) = (None::<Instant>, 0, 0);
        while terminal < count {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(remaining, self.events.next())
                .await
                .context("timed out waiting for the containers")?
                .context("the subscription ended")??;
            match event {
                Event::Offers(offers) => {
                    for offer in offers.offers {
                        let limit = end.min(self.next_task.saturating_add(per_offer));
                        let mut tasks = pack(
                            &offer,
                            &self.per_task,
                            "true",
                            "container",
                            &mut self.next_task,
                            limit,
                        );
                        let filters = Some(Filters {
                            refuse_seconds: 0.0,
                        });
                        if tasks.is_empty() {
                            self.scheduler.decline(vec![offer.id], filters).await?;
                            continue;
                        }
                        let now = Instant::now();
                        started.get_or_insert(now);
                        for t in &mut tasks {
                            t.container = Some(serde_json::json!({"type": "MESOS",
                                "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}}));
                            accepted_at.insert(t.task_id.clone(), now);
                        }
                        self.scheduler
                            .launch(vec![offer.id], tasks, filters)
                            .await?;
                        if self.next_task == end {
                            self.scheduler.suppress(Vec::new()).await?;
                            self.suppressed = true;
                        }
                    }
                }
                Event::Update(update) => {
                    let status = update.status;
                    if status.state == TaskState::TaskRunning {
                        if let Some(at) = accepted_at.get(&status.task_id) {
                            wave.launch_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                            ran += 1;
                        }
                    } else if status.state.is_terminal() {
                        terminal += 1;
                        if status.state != TaskState::TaskFinished {
                            wave.failed += 1;
                            eprintln!(
                                "container {} ended {:?}: {}",
                                status.task_id,
                                status.state,
                                status.message.unwrap_or_default()
                            );
                        }
                    }
                    if ran + wave.failed == count && wave.seconds == 0.0 {
                        wave.seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                    }
                }
                Event::Error(e) => bail!("the master sent ERROR: {}", e.message),
                _ => {}
            }
        }
        Ok(wave)
    }
}

/// `runc run --detach` of `rootfs` with our namespaces and limits, `count` times; the
/// milliseconds each took (the container's process started when it returns).
fn runc_launches(rootfs: &Path, dir: &Path, count: usize) -> Result<Vec<f64>> {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": rootfs, "readonly": false},
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sleep", "1000"],
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        ],
        "linux": {
            "namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "ipc"}],
            "resources": {"memory": {"limit": ((TASK_MEM_MB + 32.0) as u64) << 20},
                "cpu": {"shares": ((TASK_CPUS + 0.1) * 1024.0) as u64}},
        },
    });
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
    let root = dir.join("state");
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("meseta-bench-{}-{i}", std::process::id());
        let started = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .context("running runc (install Debian's runc)")?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &id])
            .status();
        if !status.success() {
            bail!("runc run failed ({status})");
        }
    }
    Ok(samples)
}
