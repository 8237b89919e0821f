//! A task's process: started in its own process group in its sandbox with the computed
//! environment (writing to its own `stdout` and `stderr` files when it has its own
//! sandbox), signalled as a group, and reaped by a background task.

use crate::machine::{LaunchSpec, Signal};
use meseta_api::CommandInfo;
use nix::sys::signal::{kill, killpg, Signal as NixSignal};
use nix::unistd::Pid;
use std::path::Path;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// The `sh` Mesos runs shell commands with.
const SHELL: &str = "/bin/sh";

/// Builds the command for a `CommandInfo`: `sh -c value` for shell commands, else
/// `value` executed with `arguments` as its argv (argv[0] included, as in Mesos).
pub fn command_for(info: &CommandInfo, environment: &[(String, String)], cwd: &Path) -> Command {
    let value = info.value.clone().unwrap_or_default();
    let mut command = if info.shell {
        let mut c = Command::new(SHELL);
        c.arg0("sh").arg("-c").arg(value);
        c
    } else {
        let mut c = Command::new(&value);
        if let Some((argv0, rest)) = info.arguments.split_first() {
            c.arg0(argv0).args(rest);
        }
        c
    };
    command
        .env_clear()
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(Stdio::null());
    // The executor already runs in the sandbox; changing into it again by its absolute
    // path can fail for a switched user whose work dir's parents are closed to it.
    let already_there = std::env::current_dir().is_ok_and(|here| same_dir(&here, cwd));
    if !already_there {
        command.current_dir(cwd);
    }
    command
}

fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => a == b,
    }
}

/// A running task.
#[derive(Debug)]
pub struct TaskProcess {
    pid: Pid,
}

impl TaskProcess {
    /// Starts the task; the returned child is to be awaited for its exit.
    pub fn spawn(spec: &LaunchSpec) -> std::io::Result<(TaskProcess, Child)> {
        let context = |path: &Path, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("creating {}: {e}", path.display()))
        };
        // An image's WorkingDir that the image lacks is made, as Mesos does. (A switched
        // user may be unable to look at the sandbox's path: that is not "missing".)
        let missing =
            std::fs::metadata(&spec.cwd).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if missing {
            std::fs::create_dir_all(&spec.cwd).map_err(|e| context(&spec.cwd, e))?;
        }
        let mut command = command_for(&spec.command, &spec.environment, &spec.cwd);
        if let Some(dir) = &spec.output_dir {
            std::fs::create_dir_all(dir).map_err(|e| context(dir, e))?;
            let output = |name: &str| {
                let path = dir.join(name);
                std::fs::File::create(&path).map_err(|e| context(&path, e))
            };
            command.stdout(output("stdout")?).stderr(output("stderr")?);
        }
        let child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the task exited before it could be watched"))?;
        let pid = Pid::from_raw(pid as i32);
        tracing::info!("forked command at {pid}");
        Ok((TaskProcess { pid }, child))
    }

    /// Signals the task's process group (and the task itself, should it have left it).
    pub fn signal(&self, signal: Signal) {
        let signal = match signal {
            Signal::Terminate => NixSignal::SIGTERM,
            Signal::Kill => NixSignal::SIGKILL,
        };
        tracing::info!("sending {signal} to process group {}", self.pid);
        if let Err(e) = killpg(self.pid, signal) {
            tracing::debug!("killpg({}, {signal}): {e}", self.pid);
        }
        if let Err(e) = kill(self.pid, signal) {
            tracing::debug!("kill({}, {signal}): {e}", self.pid);
        }
    }
}
