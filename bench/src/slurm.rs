//! Slurm as a peer: runs the launch benchmark's jobs through a private,
//! single-node Slurm cluster that this module configures and starts itself.
//!
//! [`SlurmPeer::start`] builds a throw-away cluster inside a fresh directory:
//!
//! * its own MUNGE daemon (`munged`) with a freshly generated key and a
//!   private socket, so neither `/etc/munge` nor a system `munged` is needed
//!   (Debian's package starts munged only through the init system, which a
//!   container or a bare VM may not run);
//! * a generated `slurm.conf` ([`SlurmConfig::render`]): one node (this host,
//!   its CPU count and memory), one partition, free TCP ports well away from
//!   Meseta's 5050/5051 and the kernel's ephemeral range, every state, spool
//!   and log path inside the directory, and no cgroup dependence
//!   (`proctrack/linuxproc`, `task/none`);
//! * `slurmctld -D` and `slurmd -D` as child processes; it returns once
//!   `sinfo` reports the node idle.
//!
//! [`SlurmPeer::run_jobs`] submits `n` jobs with `sbatch --wrap true` (from a
//! few submitter threads, as fast as the machine allows) and measures from the
//! first submission until Slurm has recorded every job as finished. Completion
//! is read from the job-completion log (`jobcomp/filetxt`), which slurmctld
//! appends to as each job ends, so the measurement sends no polling RPCs to
//! slurmctld. The result is a [`PeerResult`].
//!
//! Dropping the peer shuts the daemons down (`scontrol shutdown`, then kill)
//! and removes the directory. When [`SlurmPeer::start`] fails, the directory
//! (configuration and daemon logs) is kept and named in the error.
//!
//! Requirements: root (Slurm's daemons run as root here), and Debian's Slurm
//! packages installed (see [`INSTALL_HINT`]). Only the packages are assumed;
//! everything else is set up at run time.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

/// How to install what this module needs, on Debian or Ubuntu.
pub const INSTALL_HINT: &str = "install Slurm and MUNGE from Debian's packages: \
     `apt-get update && apt-get install -y slurmctld slurmd slurm-client munge` \
     (the `slurm-wlm` metapackage also works, with many more plugins)";

/// Programs the peer runs; all are looked up before anything is started.
const PROGRAMS: [&str; 7] = [
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "sinfo",
    "squeue",
    "scontrol",
];

/// Name of the one partition (and the cluster's name prefix).
const PARTITION: &str = "bench";

/// How long to wait for the daemons to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Knobs of the generated configuration that a caller may want to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// How many jobs may share one CPU (`OverSubscribe=FORCE:<n>`). Each job
    /// asks for one CPU, so at most `cpus * jobs_per_cpu` jobs run at once.
    pub jobs_per_cpu: u32,
    /// Value of `SchedulerParameters`.
    pub scheduler_parameters: String,
    /// Number of ports slurmctld listens on (`SlurmctldPort=a-b`); Slurm's
    /// high-throughput guide suggests 2 to 10 for bursts of requests.
    pub slurmctld_port_count: u16,
    /// `munged --num-threads` (the guide suggests 10 instead of 2).
    pub munge_threads: u32,
    /// Keep the directory (config, logs, job output) after the peer is dropped.
    pub keep_files: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            jobs_per_cpu: 64,
            scheduler_parameters: "batch_sched_delay=0".to_string(),
            slurmctld_port_count: 4,
            munge_threads: 10,
            keep_files: false,
        }
    }
}

/// Everything that goes into `slurm.conf`. [`SlurmConfig::detect`] fills it
/// from this machine; [`SlurmConfig::render`] writes the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmConfig {
    pub cluster_name: String,
    /// Short host name (`hostname -s`): slurmctld refuses to start unless
    /// `SlurmctldHost` names this host.
    pub hostname: String,
    /// CPUs of the node (what `nproc` says).
    pub cpus: usize,
    /// `RealMemory` in MiB (`MemTotal` of `/proc/meminfo`).
    pub real_memory_mb: u64,
    /// First slurmctld port; it listens on `slurmctld_port_count` ports from here.
    pub slurmctld_port: u16,
    pub slurmctld_port_count: u16,
    pub slurmd_port: u16,
    /// The peer's directory; every path in the configuration lies inside it.
    pub dir: PathBuf,
    pub munge_socket: PathBuf,
    pub jobs_per_cpu: u32,
    pub scheduler_parameters: String,
    pub max_job_count: u32,
    pub min_job_age_s: u32,
}

impl SlurmConfig {
    /// Reads host name, CPU count and memory from this machine and picks free
    /// ports.
    pub fn detect(dir: &Path, tuning: &Tuning) -> Result<SlurmConfig> {
        let hostname = short_hostname()?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let real_memory_mb =
            mem_total_mb(&meminfo).ok_or_else(|| anyhow!("no MemTotal in /proc/meminfo"))?;
        let count = tuning.slurmctld_port_count.max(1);
        // slurmctld's ports, then slurmd's, in one free run of ports.
        let base = find_free_port_run(count + 1)?;
        Ok(SlurmConfig {
            cluster_name: format!("meseta{PARTITION}"),
            hostname,
            cpus,
            real_memory_mb,
            slurmctld_port: base,
            slurmctld_port_count: count,
            slurmd_port: base + count,
            dir: dir.to_path_buf(),
            munge_socket: dir.join("munge").join("munge.socket"),
            jobs_per_cpu: tuning.jobs_per_cpu.max(1),
            scheduler_parameters: tuning.scheduler_parameters.clone(),
            max_job_count: 100_000,
            min_job_age_s: 2,
        })
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }
    /// Working directory of the jobs (their `slurm-<id>.out` files land here).
    pub fn jobs_dir(&self) -> PathBuf {
        self.dir.join("jobs")
    }
    /// Job completion log written by `jobcomp/filetxt`.
    pub fn jobcomp_path(&self) -> PathBuf {
        self.dir.join("jobcomp.txt")
    }
    pub fn plugstack_path(&self) -> PathBuf {
        self.dir.join("plugstack.conf")
    }

    /// The `slurm.conf` text. See bench/README.md, "Slurm peer", for why each
    /// setting is there.
    pub fn render(&self) -> String {
        let p = |path: PathBuf| path.display().to_string();
        let ctld_ports = if self.slurmctld_port_count > 1 {
            format!(
                "{}-{}",
                self.slurmctld_port,
                self.slurmctld_port + self.slurmctld_port_count - 1
            )
        } else {
            self.slurmctld_port.to_string()
        };
        let mut s = String::new();
        let mut line = |k: &str, v: &str| {
            let _ = writeln!(s, "{k}={v}");
        };
        line("ClusterName", &self.cluster_name);
        line("SlurmctldHost", &format!("{}(127.0.0.1)", self.hostname));
        line("SlurmctldPort", &ctld_ports);
        line("SlurmdPort", &self.slurmd_port.to_string());
        line("SlurmUser", "root");
        line("SlurmdUser", "root");
        // Authentication through our private munged.
        line("AuthType", "auth/munge");
        line("CredType", "cred/munge");
        line(
            "AuthInfo",
            &format!("socket={}", self.munge_socket.display()),
        );
        // All state inside the peer's directory.
        line("StateSaveLocation", &p(self.state_dir()));
        line("SlurmdSpoolDir", &p(self.spool_dir()));
        line("SlurmctldPidFile", &p(self.dir.join("slurmctld.pid")));
        line("SlurmdPidFile", &p(self.dir.join("slurmd.pid")));
        line("SlurmctldLogFile", &p(self.log_dir().join("slurmctld.log")));
        line("SlurmdLogFile", &p(self.log_dir().join("slurmd.log")));
        line("SlurmctldDebug", "info");
        line("SlurmdDebug", "info");
        line("PlugStackConfig", &p(self.plugstack_path()));
        // No cgroups, no accounting daemon.
        line("ProctrackType", "proctrack/linuxproc");
        line("TaskPlugin", "task/none");
        line("JobAcctGatherType", "jobacct_gather/none");
        line("AccountingStorageType", "accounting_storage/none");
        line("JobCompType", "jobcomp/filetxt");
        line("JobCompLoc", &p(self.jobcomp_path()));
        line("SwitchType", "switch/none");
        line("MpiDefault", "none");
        line("ReturnToService", "2");
        line("MailProg", "/bin/true");
        // High-throughput settings.
        line("SchedulerType", "sched/builtin");
        line("PriorityType", "priority/basic");
        line("SelectType", "select/cons_tres");
        line("SelectTypeParameters", "CR_CPU");
        line("MaxJobCount", &self.max_job_count.to_string());
        line("MinJobAge", &self.min_job_age_s.to_string());
        line("MessageTimeout", "30");
        if !self.scheduler_parameters.is_empty() {
            line("SchedulerParameters", &self.scheduler_parameters);
        }
        line(
            "NodeName",
            &format!(
                "{} NodeAddr=127.0.0.1 CPUs={} RealMemory={} State=UNKNOWN",
                self.hostname, self.cpus, self.real_memory_mb
            ),
        );
        line(
            "PartitionName",
            &format!(
                "{PARTITION} Nodes={} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:{}",
                self.hostname, self.jobs_per_cpu
            ),
        );
        s
    }
}

/// Options of one [`SlurmPeer::run_jobs_with`] run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Threads running `sbatch` at the same time.
    pub submitters: usize,
    /// Give up when the jobs have not all finished after this long.
    pub timeout: Duration,
    /// How often the completion log is read.
    pub poll_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            submitters: 4,
            timeout: Duration::from_secs(600),
            poll_interval: Duration::from_millis(10),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerResult {
    /// Jobs submitted (and finished).
    pub jobs: usize,
    /// From the first `sbatch` to the last job recorded as finished.
    pub seconds: f64,
    /// `jobs / seconds`.
    pub jobs_per_s: f64,
    /// From the first `sbatch` until the last `sbatch` returned.
    pub submit_seconds: f64,
    /// Jobs that finished in a state other than COMPLETED.
    pub failed: usize,
}

/// A running single-node Slurm cluster: owns the `munged`, `slurmctld` and
/// `slurmd` processes it started and the directory it made.
pub struct SlurmPeer {
    config: SlurmConfig,
    programs: Programs,
    munged: Option<Child>,
    slurmctld: Option<Child>,
    slurmd: Option<Child>,
    keep_files: bool,
}

impl SlurmPeer {
    /// Starts a cluster with the default [`Tuning`] in a new directory under
    /// `work_dir` (created if missing).
    pub fn start(work_dir: &Path) -> Result<SlurmPeer> {
        Self::start_with(work_dir, Tuning::default())
    }

    /// Starts a cluster: writes the MUNGE key, `slurm.conf` and directories,
    /// starts `munged`, `slurmctld -D` and `slurmd -D`, and waits until the
    /// node is idle.
    pub fn start_with(work_dir: &Path, tuning: Tuning) -> Result<SlurmPeer> {
        if !is_root() {
            bail!("the Slurm peer must run as root (its slurmd launches jobs as root)");
        }
        let programs = Programs::find()?;
        fs::create_dir_all(work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
        let work_dir = fs::canonicalize(work_dir)?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let dir = work_dir.join(format!("slurm-peer-{}-{stamp}", std::process::id()));
        check_conf_path(&dir)?;
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = SlurmConfig::detect(&dir, &tuning)?;
        let mut peer = SlurmPeer {
            config,
            programs,
            munged: None,
            slurmctld: None,
            slurmd: None,
            keep_files: tuning.keep_files,
        };
        let started = peer
            .write_files()
            .and_then(|()| peer.start_munged(tuning.munge_threads))
            .and_then(|()| peer.start_slurm());
        match started {
            Ok(()) => Ok(peer),
            Err(e) => {
                // Dropping `peer` stops whatever was started; its directory
                // (config and logs) stays for a look at what went wrong.
                peer.keep_files = true;
                Err(e)
            }
        }
    }

    /// Submits `n` jobs `sbatch --wrap true` with the default [`RunOptions`]
    /// and waits for all of them to finish.
    pub fn run_jobs(&self, n: usize) -> Result<PeerResult> {
        self.run_jobs_with(n, &RunOptions::default())
    }

    /// Submits `n` jobs `sbatch --wrap true` from `opts.submitters` threads
    /// and measures from the first submission until the completion log holds
    /// all `n` jobs. Then waits (outside the measurement) until `squeue` is
    /// empty, so that a following run starts from an idle cluster.
    pub fn run_jobs_with(&self, n: usize, opts: &RunOptions) -> Result<PeerResult> {
        let jobcomp = self.config.jobcomp_path();
        let mut log = CompletionLog::open_at_end(&jobcomp)?;
        let next = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let ids: Mutex<Vec<u32>> = Mutex::new(Vec::with_capacity(n));
        let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let submitters = opts.submitters.clamp(1, n.max(1));

        let start = Instant::now();
        let mut submit_done: Option<Duration> = None;
        let mut finished: Vec<(u32, String)> = Vec::with_capacity(n);
        let wait_result: Result<Duration> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..submitters)
                .map(|_| {
                    scope.spawn(|| {
                        while !abort.load(Ordering::Relaxed) {
                            if next.fetch_add(1, Ordering::Relaxed) >= n {
                                break;
                            }
                            match self.submit_one() {
                                Ok(id) => ids.lock().unwrap().push(id),
                                Err(e) => {
                                    abort.store(true, Ordering::Relaxed);
                                    error.lock().unwrap().get_or_insert(e);
                                    break;
                                }
                            }
                        }
                    })
                })
                .collect();
            // Known once every sbatch has returned.
            let mut our_ids: Option<HashSet<u32>> = None;
            let result = loop {
                if submit_done.is_none() && handles.iter().all(|h| h.is_finished()) {
                    submit_done = Some(start.elapsed());
                    our_ids = Some(ids.lock().unwrap().iter().copied().collect());
                }
                if abort.load(Ordering::Relaxed) {
                    break Err(anyhow!("submission failed"));
                }
                match log.read_new() {
                    Ok(records) => finished.extend(records),
                    Err(e) => break Err(e),
                }
                if let Some(our_ids) = &our_ids {
                    let done = finished
                        .iter()
                        .filter(|(id, _)| our_ids.contains(id))
                        .count();
                    if done >= n {
                        break Ok(start.elapsed());
                    }
                }
                if start.elapsed() > opts.timeout {
                    break Err(anyhow!(
                        "only {} of {n} jobs finished within {:?}",
                        finished.len(),
                        opts.timeout
                    ));
                }
                std::thread::sleep(opts.poll_interval);
            };
            if result.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            for h in handles {
                let _ = h.join();
            }
            if submit_done.is_none() {
                submit_done = Some(start.elapsed());
            }
            result
        });
        if let Some(e) = error.into_inner().unwrap() {
            let _ = self.cancel_all();
            bail!("{e:#}{}", self.log_excerpt());
        }
        let elapsed = match wait_result {
            Ok(d) => d,
            Err(e) => {
                let _ = self.cancel_all();
                bail!("{e:#}{}", self.log_excerpt());
            }
        };

        let ids: HashSet<u32> = ids.into_inner().unwrap().into_iter().collect();
        let ours: Vec<&(u32, String)> =
            finished.iter().filter(|(id, _)| ids.contains(id)).collect();
        if ours.len() != n || ids.len() != n {
            bail!(
                "bookkeeping mismatch: submitted {} distinct jobs, {} finished records of ours, {} records in all",
                ids.len(),
                ours.len(),
                finished.len()
            );
        }
        let failed = ours
            .iter()
            .filter(|(_, state)| state != "COMPLETED")
            .count();
        let seconds = elapsed.as_secs_f64();
        let result = PeerResult {
            jobs: n,
            seconds,
            jobs_per_s: if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            },
            submit_seconds: submit_done.unwrap_or(elapsed).as_secs_f64(),
            failed,
        };
        tracing::info!(?result, "slurm peer run finished");
        self.wait_queue_empty(Duration::from_secs(60))?;
        Ok(result)
    }

    /// One `sbatch`, retried a few times on failure (slurmctld can time out
    /// under a burst). Returns the job id.
    fn submit_one(&self) -> Result<u32> {
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
            let out = self
                .command(&self.programs.sbatch)
                .args(["--parsable", "--job-name=meseta-bench", "--wrap", "true"])
                .current_dir(self.config.jobs_dir())
                .stdin(Stdio::null())
                .output()
                .context("running sbatch")?;
            if out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                return parse_sbatch_parsable(&stdout)
                    .ok_or_else(|| anyhow!("unexpected sbatch output: {stdout:?}"));
            }
            last = format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            tracing::warn!(attempt, error = %last, "sbatch failed");
        }
        bail!("sbatch failed 3 times, last: {last}")
    }

    /// A command for a Slurm client program, pointed at our configuration and
    /// cleaned of Slurm variables that might come from the caller's
    /// environment (e.g. when run inside another Slurm job).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if [
                "SLURM_",
                "SBATCH_",
                "SQUEUE_",
                "SINFO_",
                "SCONTROL_",
                "SCANCEL_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("SLURM_CONF", self.config.conf_path());
        cmd
    }

    fn run_quiet(&self, program: &Path, args: &[&str]) -> Result<Output> {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", program.display()))
    }

    fn write_files(&self) -> Result<()> {
        let c = &self.config;
        // Everything runs as root; munged insists that its socket's directory
        // and all above it be world-searchable (see start_munged for --force).
        fs::set_permissions(&c.dir, fs::Permissions::from_mode(0o755))?;
        for d in [c.state_dir(), c.spool_dir(), c.log_dir(), c.jobs_dir()] {
            fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let munge_dir = c.munge_socket.parent().expect("socket has a parent");
        fs::create_dir(munge_dir)?;
        fs::set_permissions(munge_dir, fs::Permissions::from_mode(0o755))?;
        // A fresh 1024-bit key, as `mungekey` would make; munged wants 0600.
        let mut key = [0u8; 128];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .context("reading /dev/urandom")?;
        let key_path = munge_dir.join("munge.key");
        fs::write(&key_path, key)?;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
        // No SPANK plugins: an empty plugin stack instead of /etc/slurm's.
        fs::write(c.plugstack_path(), "")?;
        fs::write(c.jobcomp_path(), "")?;
        fs::write(c.conf_path(), c.render())?;
        Ok(())
    }

    fn log_file(&self, name: &str) -> Result<fs::File> {
        let path = self.config.log_dir().join(name);
        fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
    }

    fn spawn(&self, program: &Path, args: &[OsString], log: &str) -> Result<Child> {
        let out = self.log_file(log)?;
        let err = out.try_clone()?;
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))
    }

    fn start_munged(&mut self, threads: u32) -> Result<()> {
        let munge_dir = self.config.munge_socket.parent().unwrap().to_path_buf();
        let opt = |k: &str, v: &Path| OsString::from(format!("--{k}={}", v.display()));
        let args = vec![
            OsString::from("--foreground"),
            // Downgrades munged's checks of the directories above ours (the
            // caller's work dir may be 0700 or group-writable) to warnings.
            OsString::from("--force"),
            OsString::from(format!("--num-threads={}", threads.max(1))),
            opt("socket", &self.config.munge_socket),
            opt("key-file", &munge_dir.join("munge.key")),
            opt("pid-file", &munge_dir.join("munged.pid")),
            opt("seed-file", &munge_dir.join("munged.seed")),
            opt("log-file", &munge_dir.join("munged.log")),
        ];
        self.munged = Some(self.spawn(&self.programs.munged, &args, "munged.out")?);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.config.munge_socket.exists() {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("munged did not create its socket{}", self.log_excerpt());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn start_slurm(&mut self) -> Result<()> {
        let conf = self.config.conf_path().into_os_string();
        let ctld_args = vec!["-D".into(), "-f".into(), conf.clone()];
        self.slurmctld = Some(self.spawn(&self.programs.slurmctld, &ctld_args, "slurmctld.out")?);
        let d_args = vec![
            "-D".into(),
            "-f".into(),
            conf,
            "-N".into(),
            self.config.hostname.clone().into(),
        ];
        self.slurmd = Some(self.spawn(&self.programs.slurmd, &d_args, "slurmd.out")?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive()?;
            let out = self.run_quiet(
                &self.programs.sinfo,
                &["-h", "-N", "-n", &self.config.hostname, "-o", "%T"],
            )?;
            let last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if out.status.success() && last == "idle" {
                tracing::info!(dir = %self.config.dir.display(), "slurm peer is up");
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Slurm node not idle after {START_TIMEOUT:?} (sinfo: {last:?}){}",
                    self.log_excerpt()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails if a daemon we started has exited.
    fn check_alive(&mut self) -> Result<()> {
        let mut dead = Vec::new();
        for (name, child) in [
            ("munged", &mut self.munged),
            ("slurmctld", &mut self.slurmctld),
            ("slurmd", &mut self.slurmd),
        ] {
            if let Some(c) = child {
                if let Ok(Some(status)) = c.try_wait() {
                    dead.push(format!("{name} exited ({status})"));
                    *child = None;
                }
            }
        }
        if dead.is_empty() {
            Ok(())
        } else {
            bail!("{}{}", dead.join(", "), self.log_excerpt())
        }
    }

    fn wait_queue_empty(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.run_quiet(&self.programs.squeue, &["-h", "-o", "%i"])?;
            if out.status.success() && out.stdout.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("Slurm queue not empty after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cancel_all(&self) -> Result<()> {
        if let Some(scancel) = find_program("scancel") {
            self.run_quiet(&scancel, &["--quiet", &format!("--partition={PARTITION}")])?;
        }
        Ok(())
    }

    /// The last lines of the daemons' output, for error messages.
    fn log_excerpt(&self) -> String {
        let mut s = format!("\n(Slurm peer directory: {})", self.config.dir.display());
        for name in ["munged.out", "slurmctld.out", "slurmd.out"] {
            let path = self.config.log_dir().join(name);
            if let Ok(text) = fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(8)..];
                if !tail.is_empty() {
                    let _ = write!(s, "\n--- {name}:\n{}", tail.join("\n"));
                }
            }
        }
        s
    }

    fn stop(&mut self) {
        let _ = self.cancel_all();
        // Graceful: slurmctld and slurmd exit on `scontrol shutdown`.
        if self.slurmctld.is_some() {
            let _ = self.run_quiet(&self.programs.scontrol, &["shutdown"]);
        }
        for child in [&mut self.slurmd, &mut self.slurmctld] {
            if let Some(mut c) = child.take() {
                if !wait_child(&mut c, Duration::from_secs(10)) {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        // munged last, as the commands above authenticate through it.
        // `munged --stop` sends SIGTERM to the daemon bound to our socket and
        // waits until that process is gone, which it never is while it is
        // our unreaped child: so reap it (wait_child) while --stop runs.
        if let Some(mut c) = self.munged.take() {
            let stopper = Command::new(&self.programs.munged)
                .arg("--stop")
                .arg(format!("--socket={}", self.config.munge_socket.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if !wait_child(&mut c, Duration::from_secs(5)) {
                let _ = c.kill();
                let _ = c.wait();
            }
            if let Ok(mut s) = stopper {
                if !wait_child(&mut s, Duration::from_secs(5)) {
                    let _ = s.kill();
                    let _ = s.wait();
                }
            }
        }
    }
}

impl Drop for SlurmPeer {
    /// Stops the daemons and removes the directory (unless kept).
    fn drop(&mut self) {
        self.stop();
        if !self.keep_files {
            let _ = fs::remove_dir_all(&self.config.dir);
        }
    }
}

/// Waits up to `timeout` for `child` to exit; true if it did.
fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

/// Paths of the programs the peer runs.
#[derive(Debug, Clone)]
struct Programs {
    munged: PathBuf,
    slurmctld: PathBuf,
    slurmd: PathBuf,
    sbatch: PathBuf,
    sinfo: PathBuf,
    squeue: PathBuf,
    scontrol: PathBuf,
}

impl Programs {
    fn find() -> Result<Programs> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for name in PROGRAMS {
            match find_program(name) {
                Some(p) => found.push(p),
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            bail!(
                "Slurm peer: {} not found; {INSTALL_HINT}",
                missing.join(", ")
            );
        }
        let mut it = found.into_iter();
        let mut next = || it.next().unwrap();
        Ok(Programs {
            munged: next(),
            slurmctld: next(),
            slurmd: next(),
            sbatch: next(),
            sinfo: next(),
            squeue: next(),
            scontrol: next(),
        })
    }
}

/// Looks `name` up in `PATH` and in the sbin/bin directories (the daemons live
/// in /usr/sbin, which is not on every user's PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
                "/usr/local/sbin",
                "/usr/local/bin",
            ]
            .iter()
            .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The short host name, as `hostname -s` prints it.
fn short_hostname() -> Result<String> {
    let full = match Command::new("hostname").arg("-s").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?,
    };
    let short = full.trim().split('.').next().unwrap_or("").to_string();
    if short.is_empty() {
        bail!("empty host name");
    }
    Ok(short)
}

/// `MemTotal` of /proc/meminfo text, in MiB.
pub fn mem_total_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next().unwrap_or("kB") {
        "kB" => Some(value / 1024),
        _ => None,
    }
}

/// The job id in `sbatch --parsable` output (`<id>` or `<id>;<cluster>`).
pub fn parse_sbatch_parsable(stdout: &str) -> Option<u32> {
    stdout.trim().split(';').next()?.trim().parse().ok()
}

/// Job id and state of one `jobcomp/filetxt` line
/// (`JobId=12 UserId=root(0) ... JobState=COMPLETED ...`).
pub fn parse_jobcomp_line(line: &str) -> Option<(u32, String)> {
    let mut id = None;
    let mut state = None;
    for field in line.split_whitespace() {
        if let Some(v) = field.strip_prefix("JobId=") {
            id = v.parse().ok();
        } else if let Some(v) = field.strip_prefix("JobState=") {
            state = Some(v.to_string());
        }
    }
    Some((id?, state?))
}

/// slurm.conf has no quoting for paths: refuse ones it would misread.
fn check_conf_path(path: &Path) -> Result<()> {
    let s = path
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", path.display()))?;
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '#' | '=' | ',' | '"' | '\''))
    {
        bail!("Slurm peer directory {s:?} has characters slurm.conf cannot hold");
    }
    Ok(())
}

/// Finds `count` consecutive TCP ports that are free now, in 20000..32000:
/// above well-known and Meseta's ports, below Linux's default ephemeral range
/// (32768-60999) so outgoing connections do not take them meanwhile.
fn find_free_port_run(count: u16) -> Result<u16> {
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_000;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let span = HIGH - LOW - u32::from(count);
    for attempt in 0..200u32 {
        let base = LOW + (seed.wrapping_add(attempt.wrapping_mul(7919))) % span;
        let base = base as u16;
        let ok = (0..count).all(|i| TcpListener::bind(("0.0.0.0", base + i)).is_ok());
        if ok {
            return Ok(base);
        }
    }
    bail!("no run of {count} free TCP ports found in {LOW}..{HIGH}")
}

/// Reads the lines slurmctld appends to the completion log.
struct CompletionLog {
    file: fs::File,
    pending: String,
}

impl CompletionLog {
    fn open_at_end(path: &Path) -> Result<CompletionLog> {
        let mut file =
            fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::End(0))?;
        Ok(CompletionLog {
            file,
            pending: String::new(),
        })
    }

    /// The records of the lines completed since the last call.
    fn read_new(&mut self) -> Result<Vec<(u32, String)>> {
        let mut buf = String::new();
        self.file.read_to_string(&mut buf)?;
        self.pending.push_str(&buf);
        let mut records = Vec::new();
        while let Some(pos) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=pos).collect();
            if let Some(r) = parse_jobcomp_line(&line) {
                records.push(r);
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_config() -> SlurmConfig {
        SlurmConfig {
            cluster_name: "mesetabench".into(),
            hostname: "vm".into(),
            cpus: 2,
            real_memory_mb: 24105,
            slurmctld_port: 21000,
            slurmctld_port_count: 4,
            slurmd_port: 21004,
            dir: PathBuf::from("/tmp/peer"),
            munge_socket: PathBuf::from("/tmp/peer/munge/munge.socket"),
            jobs_per_cpu: 64,
            scheduler_parameters: "batch_sched_delay=0".into(),
            max_job_count: 100_000,
            min_job_age_s: 2,
        }
    }

    fn value<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
        conf.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    #[test]
    fn config_text_has_node_ports_and_private_paths() {
        let conf = sample_config().render();
        assert_eq!(value(&conf, "SlurmctldHost"), Some("vm(127.0.0.1)"));
        assert_eq!(value(&conf, "SlurmctldPort"), Some("21000-21003"));
        assert_eq!(value(&conf, "SlurmdPort"), Some("21004"));
        assert_eq!(
            value(&conf, "NodeName"),
            Some("vm NodeAddr=127.0.0.1 CPUs=2 RealMemory=24105 State=UNKNOWN")
        );
        assert_eq!(
            value(&conf, "PartitionName"),
            Some("bench Nodes=vm Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:64")
        );
        assert_eq!(
            value(&conf, "AuthInfo"),
            Some("socket=/tmp/peer/munge/munge.socket")
        );
        assert_eq!(value(&conf, "JobCompLoc"), Some("/tmp/peer/jobcomp.txt"));
        assert_eq!(
            value(&conf, "SchedulerParameters"),
            Some("batch_sched_delay=0")
        );
        // Every path-valued setting points inside the peer's directory.
        for key in [
            "StateSaveLocation",
            "SlurmdSpoolDir",
            "SlurmctldPidFile",
            "SlurmdPidFile",
            "SlurmctldLogFile",
            "SlurmdLogFile",
            "PlugStackConfig",
        ] {
            assert!(
                value(&conf, key).unwrap().starts_with("/tmp/peer/"),
                "{key}"
            );
        }
        // No cgroup plugins anywhere, and keys appear once.
        assert!(!conf.contains("cgroup"));
        let mut keys: Vec<&str> = conf.lines().map(|l| l.split('=').next().unwrap()).collect();
        let total = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), total);
    }

    #[test]
    fn config_text_single_port_and_no_scheduler_parameters() {
        let mut c = sample_config();
        c.slurmctld_port_count = 1;
        c.scheduler_parameters.clear();
        let conf = c.render();
        assert_eq!(value(&conf, "SlurmctldPort"), Some("21000"));
        assert_eq!(value(&conf, "SchedulerParameters"), None);
    }

    #[test]
    fn parses_meminfo_sbatch_and_jobcomp() {
        let meminfo = "MemTotal:       24684200 kB\nMemFree:        23630936 kB\n";
        assert_eq!(mem_total_mb(meminfo), Some(24105));
        assert_eq!(mem_total_mb("MemFree: 1 kB\n"), None);

        assert_eq!(parse_sbatch_parsable("1234\n"), Some(1234));
        assert_eq!(parse_sbatch_parsable("77;mesetabench\n"), Some(77));
        assert_eq!(parse_sbatch_parsable("sbatch: error\n"), None);

        let line = "JobId=6 UserId=root(0) GroupId=root(0) Name=meseta-bench \
                    JobState=COMPLETED Partition=bench TimeLimit=UNLIMITED \
                    ExitCode=0:0 \n";
        assert_eq!(parse_jobcomp_line(line), Some((6, "COMPLETED".into())));
        assert_eq!(
            parse_jobcomp_line("JobId=7 JobState=FAILED ExitCode=1:0"),
            Some((7, "FAILED".into()))
        );
        assert_eq!(parse_jobcomp_line("garbage"), None);
    }

    #[test]
    fn completion_log_counts_only_whole_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobcomp.txt");
        fs::write(&path, "JobId=1 JobState=COMPLETED\n").unwrap();
        let mut log = CompletionLog::open_at_end(&path).unwrap();
        assert!(log.read_new().unwrap().is_empty());
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        use std::io::Write;
        f.write_all(b"JobId=2 JobState=COMPLETED\nJobId=3 JobSt")
            .unwrap();
        assert_eq!(log.read_new().unwrap(), vec![(2, "COMPLETED".into())]);
        f.write_all(b"ate=FAILED\n").unwrap();
        assert_eq!(log.read_new().unwrap(), vec![(3, "FAILED".into())]);
    }

    #[test]
    fn refuses_paths_slurm_conf_cannot_hold() {
        assert!(check_conf_path(Path::new("/tmp/ok-dir_1/x")).is_ok());
        assert!(check_conf_path(Path::new("/tmp/has space")).is_err());
        assert!(check_conf_path(Path::new("/tmp/a#b")).is_err());
    }

    #[test]
    fn free_port_run_is_in_range() {
        let base = find_free_port_run(5).unwrap();
        assert!((20_000..32_000 - 5).contains(&base));
    }

    /// Starts a real cluster and runs a few jobs. Needs root and Slurm
    /// installed: `cargo test -p meseta-bench -- --ignored slurm`.
    #[test]
    #[ignore]
    fn real_slurm_runs_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let peer = SlurmPeer::start(dir.path()).unwrap();
        let r = peer.run_jobs(20).unwrap();
        assert_eq!(r.jobs, 20);
        assert_eq!(r.failed, 0);
        assert!(r.jobs_per_s > 0.0);
        let peer_dir = peer.config.dir.clone();
        drop(peer);
        assert!(!peer_dir.exists());
    }
}
