//! Start slots: how many of an agent's containers are being created at once.
//!
//! Creating a container (mounting its root, libcontainer's intermediate and init
//! processes, its cgroups) is CPU work with costs that grow with how many are under
//! way: `pivot_root` walks every thread on the host, the kernel's cgroup mutex is
//! spun on, and every live superblock is walked when a memory cgroup goes. With a
//! thousand supervisors creating at once on two cores, a good part of both went to
//! that. So a supervisor first takes one of a few slots, and gives it back once its
//! container has started; the others wait their turn, asleep. A waiter queues on one
//! slot, so near the end of a burst a slot can stay free while another has waiters.
//!
//! A slot is a POSIX record lock on one byte of a lock file shared by the agent's
//! supervisors: the kernel gives it back when its holder ends however it ends, and a
//! process's record locks are not inherited by the children it forks (libcontainer's
//! processes). The lock file is not a run directory: the agent's scans of the run
//! directories skip files.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// How many containers may be created at once per available CPU: one each would leave a
/// CPU idle while a creation waits on the kernel.
const SLOTS_PER_CPU: u32 = 2;

/// The slots of one agent's supervisors: `count` bytes of the file at `lock`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartSlots {
    pub lock: PathBuf,
    pub count: u32,
}

impl StartSlots {
    /// The slots of the launcher whose run directories are in `root`, sized for this
    /// host's CPUs.
    pub fn for_host(root: &Path) -> StartSlots {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        StartSlots {
            lock: root.join("start.lock"),
            count: cpus * SLOTS_PER_CPU,
        }
    }

    /// Takes a free slot, or waits for one; the slot is held until the returned
    /// [`Slot`] is dropped or this process ends.
    pub fn take(&self) -> std::io::Result<Slot> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)?;
        let count = self.count.max(1);
        for slot in 0..count {
            match lock_byte(&file, slot, libc::F_SETLK) {
                Ok(()) => return Ok(Slot { _file: file }),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {}
                Err(e) => return Err(e),
            }
        }
        // All taken: queue on one of them, spread by pid.
        let slot = std::process::id() % count;
        loop {
            match lock_byte(&file, slot, libc::F_SETLKW) {
                Ok(()) => return Ok(Slot { _file: file }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A held slot: closing its file gives it back.
pub struct Slot {
    _file: File,
}

/// Write-locks byte `index` of `file` with `command` (`F_SETLK` or `F_SETLKW`).
fn lock_byte(file: &File, index: u32, command: libc::c_int) -> std::io::Result<()> {
    // SAFETY: an all-zero flock is a valid value of this plain C struct.
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = libc::F_WRLCK as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    range.l_start = index as libc::off_t;
    range.l_len = 1;
    // SAFETY: fcntl on an open descriptor with a pointer to an initialized flock.
    if unsafe { libc::fcntl(file.as_raw_fd(), command, &range) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn slots(dir: &Path, count: u32) -> StartSlots {
        StartSlots {
            lock: dir.join("start.lock"),
            count,
        }
    }

    /// Forks a child that runs `body` and exits; returns its pid. Record locks belong to
    /// processes, so holders must be processes of their own.
    fn fork_child(body: impl FnOnce()) -> libc::pid_t {
        // SAFETY: the child only locks, writes to a pipe, sleeps and exits.
        match unsafe { libc::fork() } {
            0 => {
                body();
                // SAFETY: ends the child without running the test harness's exit.
                unsafe { libc::_exit(0) }
            }
            pid => {
                assert!(pid > 0, "fork failed");
                pid
            }
        }
    }

    fn wait_child(pid: libc::pid_t) {
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }

    #[test]
    fn at_most_count_holders_at_once_and_every_taker_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let slots = slots(dir.path(), 2);
        let (mut reader, writer) = std::io::pipe().unwrap();
        let children: Vec<_> = (0..5)
            .map(|_| {
                let slots = slots.clone();
                let mut writer = writer.try_clone().unwrap();
                fork_child(move || {
                    let slot = slots.take().unwrap();
                    writer.write_all(b"+").unwrap();
                    std::thread::sleep(Duration::from_millis(100));
                    writer.write_all(b"-").unwrap();
                    drop(slot);
                })
            })
            .collect();
        drop(writer);
        let mut events = String::new();
        reader.read_to_string(&mut events).unwrap();
        children.into_iter().for_each(wait_child);
        let (mut holders, mut most) = (0, 0);
        for event in events.chars() {
            holders += if event == '+' { 1 } else { -1 };
            most = most.max(holders);
        }
        assert_eq!(events.matches('+').count(), 5, "{events}");
        assert_eq!(most, 2, "two slots, both used at once: {events}");
    }

    #[test]
    fn a_killed_holder_gives_its_slot_back() {
        let dir = tempfile::tempdir().unwrap();
        let slots = slots(dir.path(), 1);
        let (mut reader, mut writer) = std::io::pipe().unwrap();
        let holder = {
            let slots = slots.clone();
            fork_child(move || {
                let _slot = slots.take().unwrap();
                writer.write_all(b"held").unwrap();
                std::thread::sleep(Duration::from_secs(60));
            })
        };
        let mut held = [0; 4];
        reader.read_exact(&mut held).unwrap();
        let (taken_tx, taken_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let slot = slots.take();
            let _ = taken_tx.send(slot.map(|_| ()).map_err(|e| e.to_string()));
        });
        assert!(
            taken_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the only slot is held"
        );
        // SAFETY: kills our own child.
        unsafe { libc::kill(holder, libc::SIGKILL) };
        wait_child(holder);
        let taken = taken_rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(
            taken,
            Ok(Ok(())),
            "the slot came back with its holder's end"
        );
    }
}
