//! A `meseta master` filled with hollow agents (`meseta sim agents`, their own process), on
//! free loopback ports: the cluster of the placements and state benchmarks.

use crate::cluster::{free_port_pair, Daemon};
use anyhow::{bail, Context, Result};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running master and, once [`HollowCluster::add_agents`] ran, its hollow agents.
pub struct HollowCluster {
    pub master: Daemon,
    /// `127.0.0.1:<port>` of the master.
    pub address: String,
    http: reqwest::Client,
    agents: Option<Daemon>,
}

impl HollowCluster {
    /// Starts `meseta master` with its state under `work_dir` and waits until it leads.
    /// Lifts the open files limit it and the hollow agents inherit first: each hollow
    /// agent holds two connections to the master.
    pub async fn start(binary: &Path, work_dir: &Path, deadline: Instant) -> Result<HollowCluster> {
        raise_open_files_limit();
        let port = free_port_pair()?.to_string();
        let state = work_dir.join("master");
        let args = [
            "master",
            "--port",
            &port,
            "--work-dir",
            state.to_str().context("a UTF-8 work dir")?,
        ];
        let cluster = HollowCluster {
            master: Daemon::start(binary, &args, work_dir.join("master.log"))?,
            address: format!("127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            agents: None,
        };
        cluster
            .wait_for_metric("master/elected", 1, deadline)
            .await?;
        Ok(cluster)
    }

    /// Starts `count` hollow agents of `resources` (tasks last a day unless their
    /// command is `sleep N`) and waits until the master has them all active.
    pub async fn add_agents(
        &mut self,
        binary: &Path,
        work_dir: &Path,
        count: usize,
        resources: &str,
        deadline: Instant,
    ) -> Result<()> {
        let count_text = count.to_string();
        let args = [
            "sim",
            "agents",
            "--count",
            &count_text,
            "--master",
            &self.address,
            "--resources",
            resources,
            "--task-duration",
            "1days",
            "--summary-interval",
            "3600",
        ];
        self.agents = Some(Daemon::start(binary, &args, work_dir.join("sim.log"))?);
        self.wait_for_metric("master/slaves_active", count as u64, deadline)
            .await
    }

    /// Polls `/metrics/snapshot` until `key` reaches `at_least`.
    async fn wait_for_metric(&self, key: &str, at_least: u64, deadline: Instant) -> Result<()> {
        let url = format!("http://{}/metrics/snapshot", self.address);
        let mut last = 0.0;
        while Instant::now() < deadline {
            if let Ok(response) = self.http.get(&url).send().await {
                if let Ok(body) = response.json::<serde_json::Value>().await {
                    last = body[key].as_f64().unwrap_or(0.0);
                    if last >= at_least as f64 {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "timed out waiting for {key} ≥ {at_least} (last {last}); see {}",
            self.master.log.display()
        )
    }
}

/// Raises this process's open files limit (soft and, when allowed, hard) to the kernel's
/// `fs.nr_open`, so that children started after it inherit room for one or two sockets per
/// hollow agent. Failing that, the limits stay as they are.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let most = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let wanted = most.unwrap_or(hard).max(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_err() && soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Runs `measure` in `given`, or in a fresh temporary directory `meseta-bench-<name>-<pid>`
/// that is removed afterwards.
pub async fn in_work_dir<T, F, Fut>(given: Option<&Path>, name: &str, measure: F) -> Result<T>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let work_dir = match given {
        Some(dir) => dir.to_path_buf(),
        None => std::env::temp_dir().join(format!("meseta-bench-{name}-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work_dir)?;
    let result = measure(work_dir.clone()).await;
    if given.is_none() {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    result
}
