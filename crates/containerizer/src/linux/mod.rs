//! The Linux launcher: each container runs under its own `meseta launch` supervisor
//! ([`supervisor`]), which creates it with libcontainer in namespaces and cgroups chosen
//! by the agent's isolators ([`isolation`], [`spec`]) and records how it ended in the
//! container's run directory ([`rundir`], [`exit`]). The agent side ([`LinuxLauncher`])
//! writes the run directory, spawns the supervisor detached, and later reads the exit
//! record, also after an agent restart; signals and usage go straight to the
//! container's cgroup ([`cgroup`]).

mod cgroup;
mod exit;
mod isolation;
mod migration_primer;
mod rundir;
mod spec;
mod start_slots;
mod supervisor;
mod workdir;

pub use isolation::{Isolation, IsolationError, Isolator};
pub use spec::IMAGE_SANDBOX;
pub use supervisor::run as supervise;

use crate::image::Rootfs;
use crate::launcher::{
    ContainerTermination, ExitFuture, LaunchError, LaunchSpec, Launched, Launcher, ProcessRef,
    Program, Signal, Usage,
};
use crate::posix::{chown, credentials, give_volumes};
use crate::procfs;
use crate::zygote::{Child, Zygote};
use migration_primer::MigrationPrimer;
use rundir::{write_json, DiskWatch, Plan, RootMount, RunDir, WorkingDir};
use start_slots::StartSlots;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The supervisor's logging: libcontainer logs from inside the container too, where
/// stderr is the task's, so keep it to errors.
const SUPERVISOR_LOG: &str = "info,libcontainer=error,libcgroups=error";

/// How often a recovered supervisor (not our child) is checked for exit.
const RECOVERED_POLL: Duration = Duration::from_millis(250);

/// How the Linux launcher runs containers (from the agent's flags).
#[derive(Clone, Debug)]
pub struct LinuxConfig {
    /// Where run directories live (under the agent's work dir).
    pub root: PathBuf,
    /// The `meseta` binary, run as `meseta launch`.
    pub meseta_binary: PathBuf,
    pub isolation: Isolation,
    /// `--cgroups-enable-cfs`.
    pub cgroups_enable_cfs: bool,
    /// `--enforce-container-disk-quota`.
    pub enforce_disk_quota: bool,
    /// `--container-disk-watch-interval`.
    pub disk_watch_interval: Duration,
}

/// Launches containers through `meseta launch` supervisors.
pub struct LinuxLauncher {
    config: LinuxConfig,
    cgroup_v2: bool,
    /// Which container each supervisor runs (filled at launch, and from the run
    /// directories on a miss after a restart).
    index: Mutex<HashMap<ProcessRef, String>>,
    /// Forks supervisors: cheaper than executing the large `meseta` binary for each.
    zygote: Zygote,
    /// Starts the kernel's wait before a container's cgroup migration as its launch
    /// begins.
    primer: MigrationPrimer,
    /// How many supervisors create their containers at once.
    start_slots: StartSlots,
    /// The masked paths that are directories on this host (see `spec::MASKED_PATHS`).
    masked_dirs: Vec<PathBuf>,
}

impl LinuxLauncher {
    /// A launcher; fails when not root (namespaces and cgroups need it).
    pub fn new(config: LinuxConfig) -> Result<LinuxLauncher, LaunchError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(LaunchError::Unsupported(format!(
                "--isolation={} needs the Linux launcher, which must run as root; run the agent as root or use --isolation=posix/cpu,posix/mem",
                config.isolation
            )));
        }
        std::fs::create_dir_all(&config.root)
            .map_err(|e| LaunchError::Prepare(config.root.display().to_string(), e.to_string()))?;
        let cgroup_v2 = cgroup::is_v2();
        Ok(LinuxLauncher {
            cgroup_v2,
            primer: MigrationPrimer::new(cgroup::memory_root(), cgroup_v2),
            zygote: Zygote::new(config.meseta_binary.clone()),
            start_slots: StartSlots::for_host(&config.root),
            masked_dirs: spec::MASKED_PATHS
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.is_dir())
                .collect(),
            config,
            index: Mutex::new(HashMap::new()),
        })
    }

    fn run_dir(&self, container_id: &str) -> RunDir {
        RunDir::new(&self.config.root, container_id)
    }

    /// The run directory of the container `process` supervises, if known.
    fn find(&self, process: ProcessRef) -> Option<RunDir> {
        let mut index = self.index.lock().expect("index lock");
        if !index.contains_key(&process) {
            for dir in self.run_dirs() {
                if let Some(p) = dir.read_supervisor() {
                    index.insert(p, dir.container_id());
                }
            }
        }
        index.get(&process).map(|id| self.run_dir(id))
    }

    fn run_dirs(&self) -> Vec<RunDir> {
        let Ok(entries) = std::fs::read_dir(&self.config.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| RunDir::at(&e.path()))
            .collect()
    }

    /// Writes the run directory of `spec`'s container.
    fn prepare(&self, spec: &LaunchSpec) -> Result<RunDir, LaunchError> {
        let prepare = |e: String| LaunchError::Prepare(spec.container_id.clone(), e);
        let creds = credentials(spec.user.as_deref())?;
        if let Some(creds) = &creds {
            for path in [&spec.working_dir, &spec.stdout, &spec.stderr] {
                if !path.exists() {
                    std::fs::File::create(path)
                        .map_err(|e| LaunchError::Sandbox(path.to_path_buf(), e))?;
                }
                chown(path, creds)?;
            }
            give_volumes(&spec.volumes, creds)?;
        }
        let ids = match &creds {
            Some(c) => spec::Ids {
                uid: c.uid.as_raw(),
                gid: c.gid.as_raw(),
                groups: c.groups.iter().map(|g| g.as_raw()).collect(),
            },
            None => spec::Ids {
                uid: nix::unistd::geteuid().as_raw(),
                gid: nix::unistd::getegid().as_raw(),
                groups: Vec::new(),
            },
        };
        if spec.rootfs.is_none() {
            // On the host's root a missing mount point would be created on the host.
            let missing = spec
                .volumes
                .iter()
                .find(|v| v.container_path.is_absolute() && !v.container_path.exists());
            if let Some(v) = missing {
                return Err(LaunchError::Unsupported(format!(
                    "volume container path '{}' does not exist on the host; without an image it must exist, or be relative to the sandbox",
                    v.container_path.display()
                )));
            }
        }
        let dir = self.run_dir(&spec.container_id);
        let cgroups_path = cgroup::path_of(&spec.container_id);
        let rootfs = spec
            .rootfs
            .as_ref()
            .map_or_else(|| dir.rootfs(), |r| r.path.clone());
        let input = spec::SpecInput {
            launch: spec,
            isolation: &self.config.isolation,
            cfs: self.config.cgroups_enable_cfs,
            cgroup_v2: self.cgroup_v2,
            ids,
            rootfs: &rootfs,
            cgroups_path: &cgroups_path,
            meseta_binary: &self.config.meseta_binary,
            masked_dirs: &self.masked_dirs,
            empty_dir: &dir.empty(),
        };
        let oci = spec::build(&input).map_err(|e| LaunchError::Unsupported(e.to_string()))?;
        let working_dir = spec::image_working_dir(&input).map(|path| WorkingDir {
            root: rootfs.clone(),
            path,
        });
        let isolation = &self.config.isolation;
        let disk = match (isolation.has(Isolator::DiskDu), spec.limits.disk_bytes) {
            (true, Some(limit)) => Some(DiskWatch {
                sandbox: spec.working_dir.clone(),
                limit_bytes: limit,
                enforce: self.config.enforce_disk_quota,
                interval: self.config.disk_watch_interval,
            }),
            _ => None,
        };
        let plan = Plan {
            container_id: spec.container_id.clone(),
            cgroups_path,
            in_process: match &spec.program {
                Program::Argv { path, args } if Path::new(path) == self.config.meseta_binary => {
                    Some(args.clone())
                }
                _ => None,
            },
            working_dir,
            root: match &spec.rootfs {
                None => RootMount::Host,
                Some(Rootfs {
                    path,
                    overlay: Some(overlay),
                }) => RootMount::Overlay {
                    path: path.clone(),
                    overlay: overlay.clone(),
                },
                Some(_) => RootMount::Ready,
            },
            stdout: spec.stdout.clone(),
            stderr: spec.stderr.clone(),
            mem_limit_bytes: spec
                .limits
                .mem_bytes
                .filter(|_| isolation.has(Isolator::CgroupsMem))
                .map(|m| m.max(spec::MIN_MEMORY_BYTES)),
            cpus_limit: spec
                .limits
                .cpus
                .filter(|_| isolation.has(Isolator::CgroupsCpu)),
            disk,
            start_slots: Some(self.start_slots.clone()),
        };
        let image_user = spec.image.as_ref().and_then(crate::runtime::ignored_user);
        if let (None, Some(user)) = (&plan.in_process, image_user) {
            // The command executor says so for its task.
            tracing::warn!(
                "the image's user '{user}' is not supported (as in Mesos); container {} runs as {}",
                spec.container_id,
                spec.user.as_deref().unwrap_or("the agent's user")
            );
        }
        std::fs::create_dir_all(dir.empty()).map_err(|e| prepare(e.to_string()))?;
        write_json(&dir.config(), &oci).map_err(|e| prepare(e.to_string()))?;
        write_json(&dir.plan(), &plan).map_err(|e| prepare(e.to_string()))?;
        Ok(dir)
    }

    /// Starts `dir`'s supervisor, forked by the zygote (see [`crate::zygote`]), or
    /// executed when the zygote cannot fork it.
    fn start_supervisor(&self, dir: &RunDir) -> Result<(ProcessRef, ExitFuture), LaunchError> {
        let binary = &self.config.meseta_binary;
        let args = [binary.to_str(), Some("launch"), dir.path().to_str()];
        if let Some(args) = args
            .iter()
            .map(|a| a.map(str::to_string))
            .collect::<Option<Vec<String>>>()
        {
            let env = [("MESETA_LOG".to_string(), SUPERVISOR_LOG.to_string())];
            let log = dir.log();
            let child = Child {
                args: &args,
                env: &env,
                cwd: dir.path(),
                stdout: &log,
                stderr: &log,
                creds: None,
                session: true,
            };
            match self.zygote.fork(&child) {
                Ok(forked) => return Ok(forked),
                Err(e) => tracing::warn!("{e}; executing the supervisor instead"),
            }
        }
        let prepare = |e: std::io::Error| LaunchError::Prepare(dir.container_id(), e.to_string());
        let log = std::fs::File::create(dir.log()).map_err(prepare)?;
        let log2 = log.try_clone().map_err(prepare)?;
        let mut command = std::process::Command::new(binary);
        command
            .arg("launch")
            .arg(dir.path())
            .env_clear()
            .env("MESETA_LOG", SUPERVISOR_LOG)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        // No pre-exec hook (the supervisor starts its own session): without one the
        // standard library spawns with posix_spawn, which does not copy the agent's
        // page tables as fork does, a cost that grows with the agent's memory.
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| LaunchError::Spawn("meseta launch".into(), e))?;
        let pid = child.id().expect("a just-spawned child has a pid") as i32;
        let start_time = procfs::read_stat(pid).map_or(0, |s| s.start_time);
        let exited: ExitFuture = Box::pin(async move {
            use std::os::unix::process::ExitStatusExt;
            child.wait().await.ok().map(|s| s.into_raw())
        });
        Ok((ProcessRef { pid, start_time }, exited))
    }
}

/// The wait status recorded in `dir`, once its supervisor is gone.
fn recorded_status(dir: &RunDir) -> Option<i32> {
    dir.read_exit().and_then(|r| r.wait_status)
}

impl Launcher for LinuxLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError> {
        self.primer.prime();
        let dir = self.prepare(spec)?;
        let (process, supervisor_exited) = self.start_supervisor(&dir)?;
        write_json(&dir.supervisor(), &process)
            .map_err(|e| LaunchError::Prepare(spec.container_id.clone(), e.to_string()))?;
        self.index
            .lock()
            .expect("index lock")
            .insert(process, spec.container_id.clone());
        Ok(Launched {
            process,
            exited: Box::pin(async move {
                supervisor_exited.await;
                recorded_status(&dir)
            }),
        })
    }

    fn mounts_persistent_volumes(&self) -> bool {
        self.config.isolation.has(Isolator::FilesystemLinux)
    }

    fn recover(&self, process: ProcessRef) -> Option<Launched> {
        let dir = self.find(process)?;
        if !procfs::is_same_live_process(process.pid, process.start_time)
            && dir.read_exit().is_none()
        {
            // The supervisor died without a record (killed): nothing can tell how the
            // container ended, so make sure it is gone.
            let plan = rundir::read_json::<Plan>(&dir.plan());
            if let Some(plan) = plan {
                cgroup::kill_all(&plan.cgroups_path, Duration::from_secs(5));
                let _ = cgroup::remove(&plan.cgroups_path);
            }
            return None;
        }
        Some(Launched {
            process,
            exited: Box::pin(async move {
                while procfs::is_same_live_process(process.pid, process.start_time) {
                    tokio::time::sleep(RECOVERED_POLL).await;
                }
                recorded_status(&dir)
            }),
        })
    }

    fn signal(&self, process: ProcessRef, signal: Signal) -> Result<(), LaunchError> {
        let Some(dir) = self.find(process) else {
            return Ok(());
        };
        let signal = match signal {
            Signal::Terminate => nix::sys::signal::Signal::SIGTERM,
            Signal::Kill => nix::sys::signal::Signal::SIGKILL,
        };
        // Before the cgroup: a supervisor still waiting to create the container sees
        // this and does not start it; one that created it already has its processes in
        // the cgroup, signalled next.
        match std::fs::write(dir.cancelled(), b"") {
            Ok(()) => {}
            // Its run directory is gone, and so is the container.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LaunchError::Signal(process.pid, format!("cancelling: {e}"))),
        }
        cgroup::signal_all(&cgroup::path_of(&dir.container_id()), signal)
            .map(|_| ())
            .map_err(|e| LaunchError::Signal(process.pid, e))
    }

    fn usage(&self, process: ProcessRef) -> Option<Usage> {
        let dir = self.find(process)?;
        let usage = cgroup::usage(&cgroup::path_of(&dir.container_id()))?;
        let plan = rundir::read_json::<Plan>(&dir.plan());
        Some(Usage {
            cpus_limit: plan.as_ref().and_then(|p| p.cpus_limit),
            mem_limit_bytes: plan
                .as_ref()
                .and_then(|p| p.mem_limit_bytes)
                .or(usage.mem_limit_bytes),
            ..usage
        })
    }

    fn termination(&self, process: ProcessRef) -> Option<ContainerTermination> {
        let dir = self.find(process)?;
        let record = dir.read_exit();
        self.index.lock().expect("index lock").remove(&process);
        remove_run_dir(&dir);
        record?.termination
    }

    fn destroy_unknown(&self, known: &[ProcessRef]) {
        for dir in self.run_dirs() {
            let supervisor = dir.read_supervisor();
            if supervisor.is_some_and(|p| known.contains(&p)) {
                continue;
            }
            let id = dir.container_id();
            tracing::info!("destroying container {id}, which belongs to no known executor");
            // A supervisor still waiting for a start slot then never starts it.
            let _ = std::fs::write(dir.cancelled(), b"");
            let path = cgroup::path_of(&id);
            cgroup::kill_all(&path, Duration::from_secs(5));
            // The supervisor, seeing its container gone, cleans up and exits.
            let alive =
                || supervisor.is_some_and(|p| procfs::is_same_live_process(p.pid, p.start_time));
            for _ in 0..200 {
                if !alive() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !alive() {
                let _ = cgroup::remove(&path);
                remove_run_dir(&dir);
            }
        }
    }
}

/// Removes a run directory whose supervisor is gone (its mount namespace, and so the
/// bind of `/` in it, went with it).
fn remove_run_dir(dir: &RunDir) {
    let rootfs = dir.rootfs();
    // Never recurse into a root that is still a bind of the host's `/`.
    if rootfs.exists() && std::fs::remove_dir(&rootfs).is_err() {
        tracing::warn!("{} is still in use; leaving it", rootfs.display());
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir.path()) {
        tracing::warn!("removing {}: {e}", dir.path().display());
    }
}
