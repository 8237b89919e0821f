//! `meseta launch RUN_DIR`: the single-threaded supervisor of one container. The agent
//! spawns it in its own session, so it outlives the agent. Once it has a start slot
//! ([`super::start_slots`]) and unless the agent cancelled the container meanwhile, it
//! creates the container with libcontainer from the run directory's OCI spec (in a
//! private mount namespace where it mounts the root: the image's overlay, or the host's
//! `/` bound when there is no image), waits for it while watching for OOM (and disk
//! usage with `disk/du`), kills what is left of it, removes its cgroup and state, and
//! writes how it ended to the run directory's `exit.json`.

use super::cgroup;
use super::exit::{self, Observed};
use super::rundir::{read_json, write_json, ExitRecord, Plan, RootMount, RunDir, WorkingDir};
use super::start_slots::Slot;
use super::workdir;
use crate::launcher::{ContainerTermination, Limitation};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::mount::{mount, MsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the supervisor keeps killing a container's processes before giving up.
const KILL_PATIENCE: Duration = Duration::from_secs(10);

/// A subcommand of the meseta binary run in place, given its whole argv; returns the
/// process exit code.
pub type Entry = fn(Vec<String>) -> i32;

/// Runs the supervisor for the container in `run_dir`; returns the process exit code.
/// `entry` runs the plan's in-process subcommand in the container's first process.
pub fn run(run_dir: &Path, entry: Entry) -> i32 {
    // A session of its own, so that nothing aimed at the agent's process group or
    // terminal reaches it. The agent spawns it without a pre-exec hook, which lets the
    // spawn avoid copying the agent's address space.
    let _ = nix::unistd::setsid();
    let dir = RunDir::at(run_dir);
    let Some(plan) = read_json::<Plan>(&dir.plan()) else {
        tracing::error!("no readable plan in {}", dir.plan().display());
        return 2;
    };
    let record = match supervise(&dir, &plan, entry) {
        Ok(record) => record,
        Err(message) => {
            tracing::error!("container {}: {message}", plan.container_id);
            ExitRecord {
                wait_status: None,
                termination: Some(ContainerTermination {
                    limitation: Limitation::LaunchFailed,
                    message,
                }),
            }
        }
    };
    if let Some(status) = record.wait_status {
        let how = exit::describe_wait_status(status);
        tracing::info!("container {} {how}", plan.container_id);
    }
    match write_json(&dir.exit(), &record) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("writing {}: {e}", dir.exit().display());
            1
        }
    }
}

/// What a container the agent cancelled before it started ends with: it never ran.
const NEVER_STARTED: ExitRecord = ExitRecord {
    wait_status: None,
    termination: None,
};

fn supervise(dir: &RunDir, plan: &Plan, entry: Entry) -> Result<ExitRecord, String> {
    // Slots only pace creations: without one (a file system without record locks), the
    // container is created anyway.
    let slot = plan.start_slots.as_ref().and_then(|slots| {
        slots
            .take()
            .inspect_err(|e| {
                let lock = slots.lock.display();
                tracing::warn!("no start slot in {lock} ({e}); creating the container without one");
            })
            .ok()
    });
    if cancelled(dir, plan) {
        return Ok(NEVER_STARTED);
    }
    mount_root(dir, &plan.root)?;
    // libpathrs caches a handle on a private procfs instance per process; made here,
    // before libcontainer forks, it is the one its intermediate and init processes
    // inherit instead of each mounting one (a new procfs superblock each).
    if let Err(e) = pathrs::procfs::ProcfsHandle::new() {
        tracing::warn!("opening a procfs handle: {e}");
    }
    if let Some(WorkingDir { root, path }) = &plan.working_dir {
        workdir::make_in_root(root, path).map_err(|e| {
            format!(
                "making the image's working directory {}: {e}",
                path.display()
            )
        })?;
    }
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))
    };
    let (stdout, stderr) = (open(&plan.stdout)?, open(&plan.stderr)?);
    let stdin = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let built = ContainerBuilder::new(plan.container_id.clone(), SyscallType::default())
        .with_root_path(dir.state())
        .map_err(|e| format!("container state directory: {e}"))?
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .with_executor(Workload {
            in_process: plan.in_process.clone(),
            entry,
        })
        .as_init(dir.path())
        .with_systemd(false)
        .with_detach(true)
        .build();
    let mut container = match built {
        Ok(container) => container,
        Err(e) => {
            cleanup(plan);
            return Err(format!("creating the container: {e}"));
        }
    };
    let result = run_container(&mut container, plan, dir, slot);
    let observed = result.as_ref().map(|(_, o)| *o).unwrap_or_default();
    let observed = finish_observing(plan, observed);
    cleanup(plan);
    let (status, _) = result?;
    Ok(ExitRecord {
        wait_status: status,
        termination: exit::decide(&observed),
    })
}

/// Whether the agent cancelled the container (see `LinuxLauncher::signal`).
fn cancelled(dir: &RunDir, plan: &Plan) -> bool {
    let cancelled = dir.cancelled().exists();
    if cancelled {
        tracing::info!(
            "container {} was cancelled before it started",
            plan.container_id
        );
    }
    cancelled
}

/// Starts the created container, unless the agent cancelled it meanwhile, gives back
/// its start slot, and waits for its first process, watching for OOM and disk usage.
/// Returns its wait status (`None` when cancelled) and what was observed.
fn run_container(
    container: &mut Container,
    plan: &Plan,
    dir: &RunDir,
    slot: Option<Slot>,
) -> Result<(Option<i32>, Observed), String> {
    let init = container
        .pid()
        .ok_or("the created container has no process")?;
    if cancelled(dir, plan) {
        // Its processes are in the cgroup: the cleanup that follows kills them.
        return Ok((None, Observed::default()));
    }
    let oom = match plan.mem_limit_bytes {
        Some(_) if !cgroup::is_v2() => Some(OomEvents::open(&plan.cgroups_path)?),
        _ => None,
    };
    let pidfd = pidfd_open(init.as_raw())?;
    container
        .start()
        .map_err(|e| format!("starting the container: {e}"))?;
    drop(slot);
    let mut observed = Observed {
        mem_limit_bytes: plan.mem_limit_bytes,
        ..Observed::default()
    };
    let mut next_disk_check = plan.disk.as_ref().map(|d| Instant::now() + d.interval);
    loop {
        let timeout = next_disk_check.map(|at| at.saturating_duration_since(Instant::now()));
        let ready = wait_readable(&pidfd, oom.as_ref().map(|o| &o.event), timeout)?;
        if ready.oom {
            oom.as_ref().expect("polled").drain();
            if !observed.oom_event {
                tracing::warn!(
                    "container {} ran out of memory; killing it",
                    plan.container_id
                );
                observed.oom_event = true;
                cgroup::kill_all(&plan.cgroups_path, KILL_PATIENCE);
            }
        }
        if ready.exited {
            break;
        }
        if let (Some(at), Some(disk)) = (next_disk_check, &plan.disk) {
            if Instant::now() >= at {
                let used = disk_usage(&disk.sandbox);
                if disk.enforce && used > disk.limit_bytes && observed.disk_over.is_none() {
                    tracing::warn!(
                        "container {} uses {used} bytes of disk, over its {}; killing it",
                        plan.container_id,
                        disk.limit_bytes
                    );
                    observed.disk_over = Some((used, disk.limit_bytes));
                    cgroup::kill_all(&plan.cgroups_path, KILL_PATIENCE);
                }
                next_disk_check = Some(Instant::now() + disk.interval);
            }
        }
    }
    let status = match waitpid(init, None) {
        Ok(WaitStatus::Exited(_, code)) => Some(code << 8),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(signal as i32),
        other => return Err(format!("waiting for the container: {other:?}")),
    };
    Ok((status, observed))
}

/// Adds what the cgroup says after the exit (OOM kills on v2, peak usage) to `observed`.
fn finish_observing(plan: &Plan, mut observed: Observed) -> Observed {
    if plan.mem_limit_bytes.is_none() {
        return observed;
    }
    let Some(memory) = cgroup::memory_dir(&plan.cgroups_path) else {
        return observed;
    };
    let read = |name: &str| std::fs::read_to_string(memory.join(name)).ok();
    let events = read("memory.events").or_else(|| read("memory.oom_control"));
    observed.oom_kills = events.as_deref().map_or(0, exit::oom_kills);
    observed.mem_max_used_bytes = read("memory.max_usage_in_bytes")
        .or_else(|| read("memory.peak"))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    observed
}

/// Kills what is left of the container and removes its cgroup. Its libcontainer state
/// goes with the run directory, which the agent removes once it has read the exit.
fn cleanup(plan: &Plan) {
    if !cgroup::kill_all(&plan.cgroups_path, KILL_PATIENCE) {
        tracing::error!("container {}: processes survive SIGKILL", plan.container_id);
    }
    if let Err(e) = cgroup::remove(&plan.cgroups_path) {
        tracing::warn!("removing container {}: {e}", plan.container_id);
    }
}

/// The container's first process: the OCI spec's process executed, or the plan's
/// in-process subcommand run in place.
#[derive(Clone)]
struct Workload {
    in_process: Option<Vec<String>>,
    entry: Entry,
}

impl Executor for Workload {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let Some(argv) = &self.in_process else {
            return DefaultExecutor {}.exec(spec);
        };
        // An exec would have closed what libcontainer marked close-on-exec: the
        // supervisor's files (its log, its end of libcontainer's channels).
        // SAFETY: closes descriptors above stderr, which nothing here uses any more.
        unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) };
        // Not dumpable, so that no process of the container can open this one's
        // /proc/PID/exe, which is the host's meseta binary (an exec'd program's would
        // be the read-only copy bound into the container).
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        // Named as an exec would have named it (`ps`, `top`), at most 15 bytes.
        if let Some(subcommand) = argv.get(1) {
            let name = format!("meseta {subcommand}");
            let name = std::ffi::CString::new(&name.as_bytes()[..name.len().min(15)]);
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
            if let Ok(name) = name {
                unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
            }
        }
        std::process::exit((self.entry)(argv.clone()))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        match self.in_process {
            // Nothing is executed: the spec names the host's binary, which an image
            // does not have.
            Some(_) => Ok(()),
            None => DefaultExecutor {}.validate(spec),
        }
    }
}

/// Mounts the container's root in a mount namespace of this process's own, so that
/// neither the root nor anything mounted for the container reaches the host's table.
/// The v1 cgroup hierarchies that containers do not join are unmounted there first,
/// before the host's `/` is bound as a root, so that libcontainer does not find them.
fn mount_root(dir: &RunDir, root: &RootMount) -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unsharing the mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    cgroup::leave_unjoined_hierarchies();
    match root {
        RootMount::Host => {
            let rootfs = dir.rootfs();
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| format!("creating {}: {e}", rootfs.display()))?;
            mount(
                Some("/"),
                &rootfs,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| format!("binding / at {}: {e}", rootfs.display()))
        }
        RootMount::Overlay { path, overlay } => overlay.mount(path).map_err(|e| e.to_string()),
        RootMount::Ready => Ok(()),
    }
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A v1 memory cgroup's OOM notifications, through an eventfd registered with
/// `cgroup.event_control`.
struct OomEvents {
    event: OwnedFd,
}

impl OomEvents {
    fn open(cgroups_path: &str) -> Result<OomEvents, String> {
        let dir = cgroup::memory_dir(cgroups_path).ok_or("no memory cgroup hierarchy")?;
        let control = std::fs::File::open(dir.join("memory.oom_control"))
            .map_err(|e| format!("opening memory.oom_control: {e}"))?;
        // SAFETY: eventfd takes an initial value and flags and returns a new descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the descriptor was just created and is owned by nobody else.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        let registration = format!("{} {}", event.as_raw_fd(), control.as_raw_fd());
        std::fs::write(dir.join("cgroup.event_control"), registration)
            .map_err(|e| format!("registering for OOM events: {e}"))?;
        Ok(OomEvents { event })
    }

    fn drain(&self) {
        let mut counter = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer from our own descriptor.
        let _ = unsafe { libc::read(self.event.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
    }
}

struct Ready {
    exited: bool,
    oom: bool,
}

/// Waits until the container's first process exits, an OOM event arrives, or `timeout`.
fn wait_readable(
    pidfd: &OwnedFd,
    oom: Option<&OwnedFd>,
    timeout: Option<Duration>,
) -> Result<Ready, String> {
    let mut fds = vec![libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(oom) = oom {
        fds.push(libc::pollfd {
            fd: oom.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    let timeout_ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    loop {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("poll: {err}"));
        }
    }
    Ok(Ready {
        exited: fds[0].revents != 0,
        oom: fds.get(1).is_some_and(|f| f.revents != 0),
    })
}

/// The disk space used under `root` (allocated blocks, not following symlinks, staying
/// on its file system), as `du` counts it.
fn disk_usage(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    let device = top.dev();
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() && meta.dev() == device {
                pending.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_allocated_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let before = disk_usage(dir.path());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/data"), vec![7u8; 256 * 1024]).unwrap();
        let after = disk_usage(dir.path());
        assert!(after >= before + 256 * 1024, "{before} -> {after}");
    }
}
