//! Making an image's WorkingDir in a container's root before the container starts
//! (`docker/runtime`: Mesos makes it when the image lacks it), resolved as the container
//! will see it: symlinks and `..` met on the way stay inside the root.

use nix::errno::Errno;
use nix::sys::stat::{mkdirat, Mode};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Makes `path` (as the container sees it) and what is missing above it in `root`;
/// what exists is kept, and must be a directory.
pub fn make_in_root(root: &Path, path: &Path) -> io::Result<()> {
    let root_fd = open_in_root(None, root)?;
    let mut prefix = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => {
                let parent = open_in_root(Some(&root_fd), &prefix)?;
                match mkdirat(
                    Some(parent.as_raw_fd()),
                    name,
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                prefix.push(name);
            }
            Component::ParentDir => prefix.push(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    // What was there already (a file, a dangling link) is not a directory.
    open_in_root(Some(&root_fd), &prefix).map(drop)
}

/// A directory opened with `openat2`: `path` resolved with `root` as its `/` (absolute
/// symlinks and `..` cannot leave it) when there is a root, else as given.
fn open_in_root(root: Option<&OwnedFd>, path: &Path) -> io::Result<OwnedFd> {
    let path = match path.as_os_str().is_empty() {
        true => Path::new("."),
        false => path,
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    if root.is_some() {
        how.resolve = libc::RESOLVE_IN_ROOT;
    }
    let dir = root.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    // SAFETY: the path and `how` outlive the call, whose size argument is `how`'s.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_working_dir_is_made_with_what_is_missing_above_it() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("usr")).unwrap();
        make_in_root(root.path(), Path::new("/usr/src/app")).unwrap();
        assert!(root.path().join("usr/src/app").is_dir());
        // Already there: nothing to do.
        make_in_root(root.path(), Path::new("/usr/src/app")).unwrap();
        make_in_root(root.path(), Path::new("/")).unwrap();
    }

    #[test]
    fn links_and_dot_dots_resolve_inside_the_root() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let mirrored = root.join(outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&mirrored).unwrap();
        // An absolute link means the container's path, not the host's.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("rel")).unwrap();
        make_in_root(&root, Path::new("/abs/made")).unwrap();
        make_in_root(&root, Path::new("/rel/linked")).unwrap();
        make_in_root(&root, Path::new("/../../up")).unwrap();
        assert!(mirrored.join("made").is_dir());
        assert!(root.join("real/linked").is_dir());
        assert!(root.join("up").is_dir());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(!base.path().join("up").exists());
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("file"), "x").unwrap();
        let err = make_in_root(root.path(), Path::new("/file")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
        let err = make_in_root(root.path(), Path::new("/file/below")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    }
}
