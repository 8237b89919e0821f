//! The `posix` launcher: each container is a plain process in its own process group (its
//! own session when it switches user), optionally running as another user, with no
//! isolation beyond that.

use crate::launcher::{
    LaunchError, LaunchSpec, Launched, Launcher, ProcessRef, Program, Signal, Usage, Volume,
};
use crate::procfs;
use crate::runtime;
use crate::zygote::{Child, Zygote};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often a recovered container (not our child) is checked for exit.
const RECOVERED_POLL: Duration = Duration::from_millis(250);

/// Launches containers as plain processes.
#[derive(Clone, Default)]
pub struct PosixLauncher {
    /// Forks the programs that are this binary itself (command executors) instead of
    /// executing it again.
    zygote: Option<Arc<Zygote>>,
}

impl PosixLauncher {
    pub fn new() -> Self {
        PosixLauncher { zygote: None }
    }

    /// A launcher that starts programs which are `binary` itself (it must have the
    /// `zygote` subcommand, see [`crate::zygote`]) by forking a pre-started copy of it.
    pub fn with_zygote(binary: PathBuf) -> Self {
        PosixLauncher {
            zygote: Some(Arc::new(Zygote::new(binary))),
        }
    }

    /// The zygote that can start `program`, if there is one.
    fn zygote_for<'a>(&'a self, program: &'a Program) -> Option<(&'a Zygote, &'a [String])> {
        let zygote = self.zygote.as_deref()?;
        match program {
            Program::Argv { path, args }
                if Path::new(path) == zygote.binary() && !args.is_empty() =>
            {
                Some((zygote, args))
            }
            _ => None,
        }
    }
}

impl std::fmt::Debug for PosixLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixLauncher")
            .field("zygote", &self.zygote.as_ref().map(|z| z.binary()))
            .finish()
    }
}

/// Resolves once `process` is gone, polling: for processes that are not our children.
pub(crate) async fn wait_until_gone(process: ProcessRef) -> Option<i32> {
    while procfs::is_same_live_process(process.pid, process.start_time) {
        tokio::time::sleep(RECOVERED_POLL).await;
    }
    None
}

/// The identity a process switches to before it runs.
pub(crate) struct Credentials {
    pub uid: nix::unistd::Uid,
    pub gid: nix::unistd::Gid,
    pub groups: Vec<nix::unistd::Gid>,
}

/// Looks `user` up when we are root; otherwise, or when it is who we already are, there
/// is nothing to switch to.
pub(crate) fn credentials(user: Option<&str>) -> Result<Option<Credentials>, LaunchError> {
    let Some(name) = user else { return Ok(None) };
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let found = nix::unistd::User::from_name(name)
        .map_err(|e| LaunchError::UserLookup(name.to_string(), e.to_string()))?
        .ok_or_else(|| LaunchError::UnknownUser(name.to_string()))?;
    if found.uid == nix::unistd::geteuid() && found.gid == nix::unistd::getegid() {
        return Ok(None);
    }
    let cname =
        CString::new(name).map_err(|e| LaunchError::UserLookup(name.to_string(), e.to_string()))?;
    let groups = nix::unistd::getgrouplist(&cname, found.gid)
        .map_err(|e| LaunchError::UserLookup(name.to_string(), e.to_string()))?;
    Ok(Some(Credentials {
        uid: found.uid,
        gid: found.gid,
        groups,
    }))
}

fn open_output(path: &Path) -> Result<File, LaunchError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LaunchError::Sandbox(path.to_path_buf(), e))
}

pub(crate) fn chown(path: &Path, creds: &Credentials) -> Result<(), LaunchError> {
    nix::unistd::chown(path, Some(creds.uid), Some(creds.gid))
        .map_err(|e| LaunchError::Sandbox(path.to_path_buf(), e.into()))
}

/// Gives the volumes marked `to_user` (each directory itself, not what it holds) to the
/// user of `creds` when that user is not root, as Mesos's `volume/sandbox_path` and
/// `filesystem/linux|posix` isolators do; a symlink is never followed.
pub(crate) fn give_volumes(volumes: &[Volume], creds: &Credentials) -> Result<(), LaunchError> {
    if creds.uid.is_root() {
        return Ok(());
    }
    for volume in volumes.iter().filter(|v| v.to_user) {
        let path = &volume.host_path;
        tracing::info!(
            "changing the owner of volume {} to uid {} gid {}",
            path.display(),
            creds.uid,
            creds.gid
        );
        std::os::unix::fs::lchown(path, Some(creds.uid.as_raw()), Some(creds.gid.as_raw()))
            .map_err(|e| LaunchError::VolumeOwner(path.clone(), e))?;
    }
    Ok(())
}

fn describe(program: &Program) -> String {
    match program {
        Program::Shell(command) => format!("sh -c '{command}'"),
        Program::Argv { path, .. } => path.clone(),
        Program::Image { .. } => "the image's entrypoint".to_string(),
    }
}

impl Launcher for PosixLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError> {
        if let Some(what) = spec.needs_isolation() {
            return Err(LaunchError::Unsupported(format!(
                "the posix launcher cannot give a container {what}; start the agent with --isolation=filesystem/linux (as root)"
            )));
        }
        let creds = credentials(spec.user.as_deref())?;
        if let Some(creds) = &creds {
            give_volumes(&spec.volumes, creds)?;
        }
        if let Some((zygote, args)) = self.zygote_for(&spec.program) {
            let forked = zygote.fork(&Child {
                args,
                env: &spec.env,
                cwd: &spec.working_dir,
                stdout: &spec.stdout,
                stderr: &spec.stderr,
                creds: creds.as_ref(),
                session: false,
            });
            match forked {
                Ok((process, exited)) => return Ok(Launched { process, exited }),
                Err(e) => tracing::warn!("{e}; executing the program instead"),
            }
        }
        let stdout = open_output(&spec.stdout)?;
        let stderr = open_output(&spec.stderr)?;
        if let Some(creds) = &creds {
            for path in [&spec.working_dir, &spec.stdout, &spec.stderr] {
                chown(path, creds)?;
            }
        }
        let exec = runtime::exec(&spec.program, None)
            .map_err(|e| LaunchError::Unsupported(e.to_string()))?;
        let mut command = std::process::Command::new(&exec.path);
        if let Some((first, rest)) = exec.argv.split_first() {
            command.arg0(first).args(rest);
        }
        command
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.working_dir)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        match creds {
            // Without a user to switch to, std spawns with posix_spawn (no fork of this
            // large, multi-threaded process); a new process group keeps the child out of
            // the agent's terminal signals.
            None => {
                command.process_group(0);
            }
            Some(Credentials { uid, gid, groups }) => {
                // SAFETY: the closure runs between fork and exec and only makes system
                // calls (setsid, setgroups, setgid, setuid), which are async-signal-safe;
                // it allocates nothing (the group list was built before the fork).
                unsafe {
                    command.pre_exec(move || {
                        nix::unistd::setsid()?;
                        nix::unistd::setgroups(&groups)?;
                        nix::unistd::setgid(gid)?;
                        nix::unistd::setuid(uid)?;
                        Ok(())
                    });
                }
            }
        }
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| LaunchError::Spawn(describe(&spec.program), e))?;
        let pid = child.id().expect("a just-spawned child has a pid") as i32;
        // The child exists until we reap it, so its stat is there (even as a zombie).
        let start_time = procfs::read_stat(pid).map_or(0, |s| s.start_time);
        Ok(Launched {
            process: ProcessRef { pid, start_time },
            exited: Box::pin(async move { child.wait().await.ok().map(|s| s.into_raw()) }),
        })
    }

    fn recover(&self, process: ProcessRef) -> Option<Launched> {
        if !procfs::is_same_live_process(process.pid, process.start_time) {
            return None;
        }
        Some(Launched {
            process,
            exited: Box::pin(wait_until_gone(process)),
        })
    }

    fn signal(&self, process: ProcessRef, signal: Signal) -> Result<(), LaunchError> {
        let root = procfs::read_stat(process.pid);
        if root.is_some_and(|s| s.start_time != process.start_time) {
            // The pid was recycled: the container's first process is long gone.
            return Ok(());
        }
        let signal = match signal {
            Signal::Terminate => nix::sys::signal::Signal::SIGTERM,
            Signal::Kill => nix::sys::signal::Signal::SIGKILL,
        };
        for member in procfs::live_container_processes(process.pid) {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(member.pid), signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(LaunchError::Signal(member.pid, e.to_string())),
            }
        }
        Ok(())
    }

    fn usage(&self, process: ProcessRef) -> Option<Usage> {
        if !procfs::is_same_live_process(process.pid, process.start_time) {
            return None;
        }
        let (ticks, page) = procfs::clock_ticks_and_page_size();
        let members = procfs::live_container_processes(process.pid);
        Some(Usage {
            cpus_user_time_secs: members.iter().map(|s| s.utime).sum::<u64>() as f64 / ticks,
            cpus_system_time_secs: members.iter().map(|s| s.stime).sum::<u64>() as f64 / ticks,
            mem_rss_bytes: members.iter().map(|s| s.rss_pages).sum::<u64>() * page,
            processes: members.len() as u32,
            ..Usage::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, program: Program) -> LaunchSpec {
        LaunchSpec {
            env: vec![
                ("GREETING".into(), "hello".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
            ],
            ..LaunchSpec::new("c1", program, dir)
        }
    }

    #[tokio::test]
    async fn runs_a_shell_command_in_its_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let launched = PosixLauncher::new()
            .launch(&spec(
                dir.path(),
                Program::Shell("echo $GREETING; pwd; echo oops >&2; exit 3".into()),
            ))
            .unwrap();
        assert_eq!(launched.exited.await, Some(3 << 8));
        let out = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(out, format!("hello\n{}\n", cwd.display()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("stderr")).unwrap(),
            "oops\n"
        );
    }

    #[tokio::test]
    async fn runs_argv_in_its_own_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let launched = PosixLauncher::new()
            .launch(&spec(
                dir.path(),
                Program::Argv {
                    path: "/bin/sh".into(),
                    args: vec![
                        "my-shell".into(),
                        "-c".into(),
                        "echo $0; ps -o pgid= -p $$".into(),
                    ],
                },
            ))
            .unwrap();
        let pid = launched.process.pid;
        assert_eq!(launched.exited.await, Some(0));
        let out = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("my-shell"));
        let pgid = lines.next().expect("ps prints the process group");
        assert_eq!(
            pgid.trim(),
            pid.to_string(),
            "the process leads its own process group"
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = PosixLauncher::new()
            .launch(&spec(
                dir.path(),
                Program::Argv {
                    path: "/nonexistent/x".into(),
                    args: vec![],
                },
            ))
            .unwrap_err();
        assert!(matches!(err, LaunchError::Spawn(..)), "{err}");
    }

    #[tokio::test]
    async fn terminate_kills_the_whole_container_and_usage_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let launcher = PosixLauncher::new();
        let launched = launcher
            .launch(&spec(
                dir.path(),
                Program::Shell("sleep 30 & sleep 30; wait".into()),
            ))
            .unwrap();
        let process = launched.process;
        // Both sleeps are forked from the shell; wait until they show up.
        let mut usage = launcher.usage(process).unwrap();
        for _ in 0..200 {
            if usage.processes >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            usage = launcher.usage(process).unwrap();
        }
        assert!(usage.processes >= 3, "{usage:?}");
        assert!(usage.mem_rss_bytes > 0);
        let recovered = launcher.recover(process).expect("alive");
        launcher.signal(process, Signal::Kill).unwrap();
        assert_eq!(launched.exited.await, Some(libc::SIGKILL));
        assert_eq!(recovered.exited.await, None);
        assert!(launcher.usage(process).is_none());
        assert!(launcher.recover(process).is_none());
    }

    #[test]
    fn refuses_what_needs_isolation() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path(), Program::Shell("true".into()));
        spec.hostname = Some("box".into());
        let err = PosixLauncher::new().launch(&spec).unwrap_err();
        assert!(err.to_string().contains("a hostname"), "{err}");
        // No value and no image to take an entrypoint from: nothing to run.
        let spec = self::spec(dir.path(), Program::Image { arguments: vec![] });
        let err = PosixLauncher::new().launch(&spec).unwrap_err();
        assert!(err.to_string().contains("no 'value'"), "{err}");
    }

    #[test]
    fn recover_rejects_a_recycled_pid() {
        let me = std::process::id() as i32;
        let start = procfs::read_stat(me).unwrap().start_time;
        let launcher = PosixLauncher::new();
        assert!(launcher
            .recover(ProcessRef {
                pid: me,
                start_time: start + 7
            })
            .is_none());
        // Signalling a recycled pid is a no-op rather than a stray kill.
        launcher
            .signal(
                ProcessRef {
                    pid: me,
                    start_time: start + 7,
                },
                Signal::Kill,
            )
            .unwrap();
    }

    #[test]
    fn marked_volumes_go_to_a_user_other_than_root() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: changing owners needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for name in ["given", "kept"] {
            std::fs::create_dir(path(name)).unwrap();
        }
        std::os::unix::fs::symlink(path("kept"), path("link")).unwrap();
        let volume = |name: &str, to_user: bool| Volume {
            host_path: path(name),
            container_path: name.into(),
            read_only: false,
            source: crate::VolumeSource::Persistent,
            to_user,
        };
        let volumes = [
            volume("given", true),
            volume("kept", false),
            volume("link", true),
        ];
        let creds = |uid: u32| Credentials {
            uid: nix::unistd::Uid::from_raw(uid),
            gid: nix::unistd::Gid::from_raw(uid),
            groups: Vec::new(),
        };
        let owner = |name: &str| std::fs::symlink_metadata(path(name)).unwrap().uid();
        give_volumes(&volumes, &creds(65534)).unwrap();
        assert_eq!(owner("given"), 65534);
        assert_eq!(owner("kept"), 0, "not marked");
        assert_eq!(owner("link"), 65534, "the link itself, not what it names");
        // Root takes nothing back: its tasks can use whatever the volume holds.
        give_volumes(&volumes, &creds(0)).unwrap();
        assert_eq!(owner("given"), 65534);
        // A volume that is gone is an error that names it.
        let gone = [volume("gone", true)];
        let err = give_volumes(&gone, &creds(65534)).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }

    #[test]
    fn unknown_user_is_reported_when_root() {
        match credentials(Some("no-such-user-meseta")) {
            Err(LaunchError::UnknownUser(name)) => assert_eq!(name, "no-such-user-meseta"),
            Ok(None) => assert!(!nix::unistd::geteuid().is_root()),
            other => panic!("{:?}", other.map(|c| c.map(|c| c.uid))),
        }
        assert!(credentials(None).unwrap().is_none());
    }
}
