//! Where a benchmark's run directory goes by default: a tmpfs when there is one.
//!
//! Each launched task creates files (a sandbox's directories, a symlink, output files,
//! checkpoints, a container's run directory) and each peer its own, so the filesystem
//! takes part in both sides of a comparison. On an ext4 without a journal (this
//! project's VMs) every inode allocation scans past the inodes deleted in the last 30
//! seconds (`recently_deleted`), which builds and earlier runs leave by the thousand;
//! that scan, not the launch path, then dominates. A tmpfs keeps the comparison about
//! launching, and both peers share it; `--work-dir` puts a run anywhere else.

use std::path::{Path, PathBuf};

/// `/dev/shm` when it is a writable tmpfs, else the temporary directory.
pub fn default_work_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let is_tmpfs = nix::sys::statfs::statfs(shm)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    let writable = nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok();
    match is_tmpfs && writable {
        true => shm.to_path_buf(),
        false => std::env::temp_dir(),
    }
}
