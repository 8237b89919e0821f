//! `meseta` processes started and stopped by a benchmark: a [`Daemon`] is any child that
//! is asked to stop (SIGTERM, then SIGKILL) when dropped; [`LocalCluster`] is `meseta
//! local` on free loopback ports.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, logging to a file, stopped when dropped.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `binary args…` with `MESETA_LOG=warn` (or the filter in `MESETA_DAEMON_LOG`),
    /// stderr to `log`.
    pub fn start(binary: &Path, args: &[&str], log: PathBuf) -> Result<Daemon> {
        let filter = std::env::var("MESETA_DAEMON_LOG").unwrap_or_else(|_| "warn".into());
        let child = Command::new(binary)
            .args(args)
            .env("MESETA_LOG", filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Daemon { child, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM lets it shut down cleanly; then make sure it is gone.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `meseta local`.
pub struct LocalCluster {
    daemon: Daemon,
    pub master: String,
}

/// The `meseta` binary: `$MESETA_BIN`, else the release build of this workspace (built
/// first, which is a no-op when it is fresh).
pub fn meseta_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("MESETA_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "meseta"])
        .current_dir(workspace)
        .status()
        .context("running cargo build --release -p meseta")?;
    if !status.success() {
        bail!("cargo build --release -p meseta failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target.join("release/meseta"))
}

/// A free TCP port on 127.0.0.1 and the one after it.
pub fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = a.local_addr()?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no two consecutive free ports on 127.0.0.1")
}

impl LocalCluster {
    /// The `meseta local` process's id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Starts `meseta local` with its state under `work_dir` and waits for its agent.
    pub async fn start(binary: &Path, work_dir: &Path) -> Result<LocalCluster> {
        LocalCluster::start_with(binary, work_dir, &[]).await
    }

    /// [`LocalCluster::start`] with more flags for `meseta local`.
    pub async fn start_with(
        binary: &Path,
        work_dir: &Path,
        extra_args: &[&str],
    ) -> Result<LocalCluster> {
        let port = free_port_pair()?;
        std::fs::create_dir_all(work_dir)?;
        let state = work_dir.join("state");
        let port_text = port.to_string();
        let mut args = vec![
            "local",
            "--port",
            &port_text,
            "--work-dir",
            state.to_str().context("a UTF-8 work dir")?,
        ];
        args.extend_from_slice(extra_args);
        let daemon = Daemon::start(binary, &args, work_dir.join("meseta-local.log"))?;
        let cluster = LocalCluster {
            daemon,
            master: format!("127.0.0.1:{port}"),
        };
        cluster.wait_for_agent().await?;
        Ok(cluster)
    }

    async fn wait_for_agent(&self) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{}/api/v1", self.master);
        while Instant::now() < deadline {
            let answer = http
                .post(&url)
                .header("Content-Type", "application/json")
                .body(r#"{"type":"GET_AGENTS"}"#)
                .send()
                .await;
            if let Ok(response) = answer {
                if let Ok(body) = response.json::<serde_json::Value>().await {
                    if body["get_agents"]["agents"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
                    {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "meseta local did not register its agent within 30 s; see {}",
            self.daemon.log.display()
        )
    }
}
