//! The zygote: a pre-started, single-threaded copy of the meseta binary that forks the
//! processes the agent would otherwise start by executing that same binary again
//! (command executors). A fork of a small, already-loaded process costs a fraction of an
//! exec of a large one (no loading, no relocation, no start-up of the C and Rust
//! runtimes), and every task needs one such process.
//!
//! The agent's [`PosixLauncher`](crate::PosixLauncher) owns a [`Zygote`] client. It starts
//! `meseta zygote` on first use with two Unix sockets: requests (one JSON line each, answered by
//! one JSON line with the pid or the error) and exits (a JSON line per child the zygote
//! reaped, with its wait status). The zygote exits when the agent's end of the request
//! socket closes; its children live on (reparented) and a restarted agent recovers them
//! by pid and start time, like any other container process.
//!
//! [`serve`] is the zygote's side; the child it forks runs the entry function the binary
//! gives it, with the arguments, environment, working directory, output files, process
//! group and user of the request, as if it had been executed.

use crate::launcher::{ExitFuture, LaunchError, ProcessRef};
use crate::posix::Credentials;
use crate::procfs;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The file descriptors the zygote finds its sockets on.
pub const REQUESTS_FD: RawFd = 3;
pub const EXITS_FD: RawFd = 4;

/// What to fork: a subcommand of the binary, with everything an exec would have set.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The whole argv, `args[0]` included.
    args: Vec<String>,
    /// The complete environment.
    env: Vec<(String, String)>,
    cwd: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Switch to this identity (in a new session); `None` keeps the zygote's.
    user: Option<UserIds>,
    /// Start a new session even without a user to switch to (else a new process group).
    session: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserIds {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Forked { pid: i32, start_time: u64 },
    Failed(String),
}

/// A child the zygote reaped: its raw wait status.
#[derive(Debug, Serialize, Deserialize)]
struct Exit {
    pid: i32,
    status: i32,
}

/// The zygote's loop: forks a child per request and reports every child it reaps, until
/// the agent closes the request socket. `entry` runs in each child with the request's
/// argv and returns its exit code.
pub fn serve(entry: fn(Vec<String>) -> i32) -> Result<(), ZygoteError> {
    detect_cpu_features();
    // SAFETY: the agent passes these descriptors, open, to this process only.
    let requests = unsafe { OwnedFd::from_raw_fd(REQUESTS_FD) };
    let exits = unsafe { OwnedFd::from_raw_fd(EXITS_FD) };
    let mut children = SigSet::empty();
    children.add(Signal::SIGCHLD);
    children.thread_block()?;
    let reaped = SignalFd::with_flags(&children, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let mut exits = File::from(exits);
    let mut replies = File::from(requests.try_clone()?);
    let mut requests = BufReader::new(File::from(requests));
    let mut line = String::new();
    loop {
        if requests.buffer().is_empty() {
            let mut fds = [
                nix::poll::PollFd::new(requests.get_ref().as_fd(), nix::poll::PollFlags::POLLIN),
                nix::poll::PollFd::new(reaped.as_fd(), nix::poll::PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |fd: &nix::poll::PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let (request_ready, reap_ready) = (ready(&fds[0]), ready(&fds[1]));
            if reap_ready {
                while let Ok(Some(_)) = reaped.read_signal() {}
                report_exits(&mut exits)?;
            }
            if !request_ready {
                continue;
            }
        }
        line.clear();
        if requests.read_line(&mut line)? == 0 {
            // The agent is gone: so is the reason to fork. Children live on.
            return Ok(());
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let zygote_fds = [
                    requests.get_ref().as_raw_fd(),
                    replies.as_raw_fd(),
                    exits.as_raw_fd(),
                    reaped.as_raw_fd(),
                ];
                fork_child(&request, &children, entry, &zygote_fds)
            }
            Err(e) => Reply::Failed(format!("a request the zygote cannot read: {e}")),
        };
        let mut text = serde_json::to_string(&reply).expect("replies serialize");
        text.push('\n');
        replies.write_all(text.as_bytes())?;
    }
}

/// Runs the standard library's CPU feature detection once, here, so that every child
/// inherits its answers: otherwise each child's first SIMD string search runs `cpuid`
/// again, which traps to the hypervisor on a virtual machine (about 3% of a command
/// executor's CPU time on ours).
fn detect_cpu_features() {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    let _ = std::arch::is_x86_feature_detected!("avx2");
}

/// Why the zygote stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    #[error("zygote I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("zygote system call: {0}")]
    Sys(#[from] nix::errno::Errno),
}

/// Reaps every exited child and reports it.
fn report_exits(exits: &mut File) -> std::io::Result<()> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return Ok(());
        }
        let mut text = serde_json::to_string(&Exit { pid, status }).expect("exits serialize");
        text.push('\n');
        exits.write_all(text.as_bytes())?;
    }
}

/// Opens the output files (so that failures are reported, not lost in the child), forks,
/// and answers with the child's pid and start time.
fn fork_child(
    request: &Request,
    blocked: &SigSet,
    entry: fn(Vec<String>) -> i32,
    zygote_fds: &[RawFd],
) -> Reply {
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))
    };
    let (stdout, stderr) = match (open(&request.stdout), open(&request.stderr)) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => return Reply::Failed(e),
    };
    if let Some(user) = &request.user {
        for path in [&request.cwd, &request.stdout, &request.stderr] {
            if let Err(e) = std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)) {
                return Reply::Failed(format!("chown {}: {e}", path.display()));
            }
        }
    }
    // SAFETY: the zygote is single-threaded, so the child may go on running Rust code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Reply::Failed(format!("fork: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            for fd in zygote_fds {
                // SAFETY: the child never uses the zygote's descriptors again.
                unsafe { libc::close(*fd) };
            }
            let code = match become_child(request, blocked, &stdout, &stderr) {
                Ok(()) => entry(request.args.clone()),
                Err(e) => {
                    let _ = writeln!(&stderr, "the zygote could not set up this process: {e}");
                    127
                }
            };
            std::process::exit(code)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let pid = child.as_raw();
            // The child stays a zombie until this loop reaps it, so its stat is there.
            let start_time = procfs::read_stat(pid).map_or(0, |s| s.start_time);
            Reply::Forked { pid, start_time }
        }
    }
}

/// In the child: what an exec with the request's settings would have given it.
fn become_child(
    request: &Request,
    blocked: &SigSet,
    stdout: &File,
    stderr: &File,
) -> Result<(), std::io::Error> {
    blocked.thread_unblock()?;
    // As root still: the user may not be able to traverse the directories above its
    // sandbox (an exec'd program changes directory before it switches user, too).
    std::env::set_current_dir(&request.cwd)?;
    let null = File::open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    nix::unistd::dup2(stdout.as_raw_fd(), 1)?;
    nix::unistd::dup2(stderr.as_raw_fd(), 2)?;
    match &request.user {
        None if request.session => {
            nix::unistd::setsid()?;
        }
        None => nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))?,
        Some(user) => {
            nix::unistd::setsid()?;
            let groups: Vec<_> = user
                .groups
                .iter()
                .map(|g| nix::unistd::Gid::from_raw(*g))
                .collect();
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(user.gid))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(user.uid))?;
            // A set-id change without an exec leaves the process undumpable: its /proc
            // entries would stay root's. An exec'd program is dumpable again; so is this.
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    replace_environment(&request.env)
}

/// Makes `env` the process's whole environment in one step: `environ` pointed at its
/// entries, written into one buffer (both kept for the process's life). Clearing the
/// zygote's environment and setting each variable in turn cost a forked child hundreds
/// of allocations, each a likely copy-on-write fault on the zygote's heap.
fn replace_environment(env: &[(String, String)]) -> Result<(), std::io::Error> {
    let text = environment_text(env)?.leak();
    let mut pointers: Vec<*mut libc::c_char> = text
        .split_inclusive_mut(|b| *b == 0)
        .map(|entry| entry.as_mut_ptr().cast())
        .collect();
    pointers.push(std::ptr::null_mut());
    // SAFETY: the forked child is single-threaded, so nothing reads `environ` meanwhile;
    // the array and its strings are NUL-terminated and never freed.
    unsafe { libc::environ = pointers.leak().as_mut_ptr() };
    Ok(())
}

/// `env` as an environment block: `NAME=value` entries, each ended by a NUL.
fn environment_text(env: &[(String, String)]) -> Result<Vec<u8>, std::io::Error> {
    let mut text = Vec::with_capacity(env.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "environment variable {key:?}: a name must be non-empty, without '=' or \
                     NUL, and a value without NUL"
                ),
            ));
        }
        text.extend_from_slice(key.as_bytes());
        text.push(b'=');
        text.extend_from_slice(value.as_bytes());
        text.push(0);
    }
    Ok(text)
}

/// How a launched child's exit reaches its waiter.
enum Waiter {
    Waiting(oneshot::Sender<i32>),
    /// Reaped before its launch was registered (it exited at once).
    Exited(i32),
}

/// What to fork: a whole argv of the binary and what an exec would have set.
pub(crate) struct Child<'a> {
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub stdout: &'a Path,
    pub stderr: &'a Path,
    /// Switch to this user (in a session of its own).
    pub creds: Option<&'a Credentials>,
    /// A session of its own even without a user to switch to (else a process group).
    pub session: bool,
}

/// The agent's end: starts the zygote on first use and forks children through it.
pub struct Zygote {
    binary: PathBuf,
    connection: Mutex<Link>,
    waiters: Arc<Mutex<HashMap<i32, Waiter>>>,
}

/// The zygote as the agent knows it.
enum Link {
    /// Not started yet, or dead after this many failures in a row.
    Down {
        failures: u32,
    },
    Up(Connection),
    /// It failed [`MAX_FAILURES`] times in a row: programs are executed instead.
    GaveUp,
}

/// Consecutive failures to start or reach the zygote before it is given up on.
const MAX_FAILURES: u32 = 3;

struct Connection {
    requests: UnixStream,
    replies: BufReader<UnixStream>,
    process: std::process::Child,
}

impl Zygote {
    /// A zygote of `binary` (which must have the `zygote` subcommand), not started yet.
    pub fn new(binary: PathBuf) -> Zygote {
        Zygote {
            binary,
            connection: Mutex::new(Link::Down { failures: 0 }),
            waiters: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The binary whose children this zygote forks.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Forks `child`. Errors starting or talking to the zygote are `Spawn` errors; the
    /// caller may fall back to exec.
    pub(crate) fn fork(&self, child: &Child) -> Result<(ProcessRef, ExitFuture), LaunchError> {
        let args = child.args;
        let request = Request {
            args: args.to_vec(),
            env: child.env.to_vec(),
            cwd: child.cwd.to_path_buf(),
            stdout: child.stdout.to_path_buf(),
            stderr: child.stderr.to_path_buf(),
            user: child.creds.map(|c| UserIds {
                uid: c.uid.as_raw(),
                gid: c.gid.as_raw(),
                groups: c.groups.iter().map(|g| g.as_raw()).collect(),
            }),
            session: child.session,
        };
        let mut text = serde_json::to_string(&request).expect("requests serialize");
        text.push('\n');
        let reply = self.call(&text).map_err(|e| self.error(e))?;
        match reply {
            Reply::Failed(why) => Err(LaunchError::Spawn(
                args.join(" "),
                std::io::Error::other(why),
            )),
            Reply::Forked { pid, start_time } => {
                let process = ProcessRef { pid, start_time };
                let (tx, rx) = oneshot::channel();
                let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                let early = match waiters.remove(&pid) {
                    Some(Waiter::Exited(status)) => Some(status),
                    _ => None,
                };
                match early {
                    Some(status) => {
                        let _ = tx.send(status);
                    }
                    None => {
                        waiters.insert(pid, Waiter::Waiting(tx));
                    }
                }
                drop(waiters);
                let exited: ExitFuture = Box::pin(async move {
                    match rx.await {
                        Ok(status) => Some(status),
                        // The zygote died before reaping it: watch it like a recovered one.
                        Err(_) => crate::posix::wait_until_gone(process).await,
                    }
                });
                Ok((process, exited))
            }
        }
    }

    /// Sends one request, starting the zygote first when it is not running. A zygote
    /// found dead is replaced at once; after [`MAX_FAILURES`] failures in a row to start
    /// or reach one, it is given up on.
    fn call(&self, request: &str) -> std::io::Result<Reply> {
        let mut link = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let failures = match &mut *link {
            Link::GaveUp => return Err(std::io::Error::other("it failed before")),
            Link::Up(connection) => match connection.call(request) {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    tracing::warn!("the zygote of {} died: {e}", self.binary.display());
                    0
                }
            },
            Link::Down { failures } => *failures,
        };
        bury(std::mem::replace(&mut *link, Link::Down { failures }));
        let started = self.start().and_then(|mut connection| {
            let reply = connection.call(request);
            *link = Link::Up(connection);
            reply
        });
        started.inspect_err(|_| {
            let failures = failures + 1;
            let next = match failures < MAX_FAILURES {
                true => Link::Down { failures },
                false => Link::GaveUp,
            };
            bury(std::mem::replace(&mut *link, next));
        })
    }

    fn error(&self, e: std::io::Error) -> LaunchError {
        LaunchError::Spawn(format!("the zygote of {}", self.binary.display()), e)
    }

    /// Starts `binary zygote` with its two sockets, and the thread that reads its exits.
    fn start(&self) -> std::io::Result<Connection> {
        let (requests, zygote_requests) = UnixStream::pair()?;
        let (exits, zygote_exits) = UnixStream::pair()?;
        let (theirs_requests, theirs_exits) =
            (zygote_requests.as_raw_fd(), zygote_exits.as_raw_fd());
        let mut command = std::process::Command::new(&self.binary);
        command.arg("zygote").stdin(std::process::Stdio::null());
        // SAFETY: between fork and exec the closure only makes async-signal-safe system
        // calls (dup2, setpgid) on descriptors that are open.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::dup2(theirs_requests, REQUESTS_FD)?;
                nix::unistd::dup2(theirs_exits, EXITS_FD)?;
                nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))?;
                Ok(())
            });
        }
        let process = command.spawn()?;
        drop((zygote_requests, zygote_exits));
        let waiters = Arc::clone(&self.waiters);
        std::thread::Builder::new()
            .name("zygote-exits".into())
            .spawn(move || read_exits(exits, &waiters))?;
        Ok(Connection {
            replies: BufReader::new(requests.try_clone()?),
            requests,
            process,
        })
    }
}

impl Connection {
    fn call(&mut self, request: &str) -> std::io::Result<Reply> {
        self.requests.write_all(request.as_bytes())?;
        let mut line = String::new();
        if self.replies.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the zygote exited",
            ));
        }
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let link = self.connection.get_mut().unwrap_or_else(|e| e.into_inner());
        bury(std::mem::replace(link, Link::GaveUp));
    }
}

/// Ends a zygote that is up. Its children are in their own process groups and live on.
fn bury(link: Link) {
    if let Link::Up(mut connection) = link {
        let _ = connection.process.kill();
        let _ = connection.process.wait();
    }
}

/// Hands each reaped child's status to its waiter, until the zygote exits; then drops the
/// waiters that are left, which makes them watch their processes by pid instead.
fn read_exits(exits: UnixStream, waiters: &Mutex<HashMap<i32, Waiter>>) {
    for line in BufReader::new(exits).lines() {
        let Ok(line) = line else { break };
        let Ok(exit) = serde_json::from_str::<Exit>(&line) else {
            tracing::warn!("ignoring an exit report the zygote garbled: {line}");
            continue;
        };
        let mut waiters = waiters.lock().unwrap_or_else(|e| e.into_inner());
        match waiters.remove(&exit.pid) {
            Some(Waiter::Waiting(tx)) => {
                let _ = tx.send(exit.status);
            }
            _ => {
                waiters.insert(exit.pid, Waiter::Exited(exit.status));
            }
        }
    }
    let mut waiters = waiters.lock().unwrap_or_else(|e| e.into_inner());
    waiters.retain(|_, w| matches!(w, Waiter::Exited(_)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_environment_block_holds_each_entry_once_in_order() {
        let env = pairs(&[("PATH", "/bin:/usr/bin"), ("EMPTY", ""), ("EQ", "a=b")]);
        let text = environment_text(&env).unwrap();
        assert_eq!(text, b"PATH=/bin:/usr/bin\0EMPTY=\0EQ=a=b\0");
        assert_eq!(environment_text(&[]).unwrap(), b"");
    }

    #[test]
    fn names_and_values_an_environment_cannot_hold_are_refused() {
        for (key, value) in [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0y")] {
            let err = environment_text(&pairs(&[("OK", "1"), (key, value)])).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::InvalidInput,
                "{key:?}={value:?}"
            );
            assert!(err.to_string().contains(&format!("{key:?}")), "{err}");
        }
    }
}
