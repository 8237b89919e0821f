//! Applying one tar layer (plain, gzip or zstd, detected from its first bytes) to a
//! directory, in one of two modes:
//!
//! - [`Mode::Merge`]: onto a root filesystem built bottom-up: a whiteout `.wh.NAME`
//!   deletes `NAME` from the layers below, `.wh..wh..opq` empties its directory of what the
//!   layers below put there (the copy backend, `meseta image unpack`).
//! - [`Mode::Overlay`]: into an empty layer directory for overlayfs: whiteouts become
//!   0:0 character devices and opaque directories get `trusted.overlay.opaque=y`.
//!
//! No entry may leave the root: `..` components refuse the layer, and tar's own checks
//! refuse writing through a symlink that leads outside it. The uncompressed stream is
//! hashed and checked against the config's `diff_id` when one is given.

use super::digest::HashingReader;
use super::{Digest, ImageError};
use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Merge,
    Overlay,
}

/// What a layer entry's path means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Write this path (relative to the root; empty for the root itself).
    Write(PathBuf),
    /// Delete this path from the layers below.
    Whiteout(PathBuf),
    /// Hide what the layers below have in this directory.
    Opaque(PathBuf),
}

/// Classifies an entry path, normalizing `./` and leading `/`, refusing `..`.
pub(crate) fn classify(path: &Path) -> Result<Entry, ImageError> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::UnsafePath(path.into(), "has a '..' component"))
            }
        }
    }
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return Ok(Entry::Write(rel));
    };
    let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    if name == OPAQUE {
        return Ok(Entry::Opaque(parent));
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        Some("") | Some(".") | Some("..") => Err(ImageError::UnsafePath(
            path.into(),
            "is a whiteout of nothing",
        )),
        Some(hidden) => Ok(Entry::Whiteout(parent.join(hidden))),
        None => Ok(Entry::Write(rel)),
    }
}

/// Opens a layer stream, undoing gzip or zstd compression.
pub(crate) fn decompressed<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ImageError> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let magic = reader
        .fill_buf()
        .map_err(|e| ImageError::io("reading a layer", e))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
            .map_err(|e| ImageError::Invalid(format!("zstd layer: {e}")))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(reader))
    }
}

/// Applies the layer read from `reader` to `dest` (which must exist).
pub fn apply(
    reader: impl Read,
    dest: &Path,
    mode: Mode,
    diff_id: Option<&Digest>,
) -> Result<(), ImageError> {
    let mut stream = HashingReader::new(decompressed(reader)?);
    apply_entries(&mut stream, dest, mode)?;
    let (actual, _) = stream
        .finish()
        .map_err(|e| ImageError::io("reading the end of a layer", e))?;
    if let Some(expected) = diff_id {
        expected.verify(&actual, "uncompressed layer (diff_id)")?;
    }
    Ok(())
}

/// Unpacks the entries of an (uncompressed) tar stream.
fn apply_entries(reader: impl Read, dest: &Path, mode: Mode) -> Result<(), ImageError> {
    let root = nix::unistd::geteuid().is_root();
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(root);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut written: HashSet<PathBuf> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|e| ImageError::Invalid(format!("layer is not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ImageError::Invalid(format!("reading a layer entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| ImageError::Invalid(format!("layer entry path: {e}")))?
            .into_owned();
        match classify(&path)? {
            Entry::Write(rel) if rel.as_os_str().is_empty() => {}
            Entry::Write(rel) => {
                let kind = entry.header().entry_type();
                if kind.is_hard_link() {
                    let target = entry.link_name().ok().flatten().ok_or_else(|| {
                        ImageError::UnsafePath(path.clone(), "is a hard link to nothing")
                    })?;
                    if !matches!(classify(&target)?, Entry::Write(_)) {
                        return Err(ImageError::UnsafePath(path, "is a hard link to a whiteout"));
                    }
                }
                if (kind.is_character_special() || kind.is_block_special()) && !root {
                    tracing::debug!(path = %rel.display(), "device node skipped (not root)");
                    continue;
                }
                let target = inside(dest, &rel)?;
                replace_mismatched(&target, kind.is_dir())?;
                entry.unpack_in(dest).map_err(|e| {
                    ImageError::Invalid(format!("unpacking '{}': {}", rel.display(), chain(&e)))
                })?;
                written.insert(rel);
            }
            Entry::Whiteout(rel) => {
                let target = inside(dest, &rel)?;
                match mode {
                    Mode::Merge if !written.contains(&rel) => remove(&target)?,
                    Mode::Merge => {}
                    Mode::Overlay => overlay_whiteout(&target)?,
                }
            }
            Entry::Opaque(dir) => {
                let target = inside(dest, &dir)?;
                match mode {
                    Mode::Merge => hide_lower(&target, &dir, &written)?,
                    Mode::Overlay => overlay_opaque(&target)?,
                }
            }
        }
    }
    Ok(())
}

/// An error with its causes, `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `dest/rel`, refused when an existing directory on the way is a symlink (which could
/// lead outside `dest`).
fn inside(dest: &Path, rel: &Path) -> Result<PathBuf, ImageError> {
    let mut path = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if i + 1 < parts.len() {
            if let Ok(meta) = fs::symlink_metadata(&path) {
                if meta.file_type().is_symlink() {
                    return Err(ImageError::UnsafePath(
                        rel.into(),
                        "passes through a symlink",
                    ));
                }
            }
        }
    }
    Ok(path)
}

/// Removes what is at `target` when its kind (directory or not) differs from the entry
/// about to be written there, so a directory replaces a file or symlink and vice versa.
fn replace_mismatched(target: &Path, entry_is_dir: bool) -> Result<(), ImageError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() != entry_is_dir => remove(target),
        _ => Ok(()),
    }
}

fn remove(target: &Path) -> Result<(), ImageError> {
    let result = match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(target),
        Ok(_) => fs::remove_file(target),
        Err(_) => Ok(()),
    };
    result.map_err(|e| ImageError::io(format!("removing {}", target.display()), e))
}

/// Removes every child of `target` that this layer did not write.
fn hide_lower(target: &Path, dir: &Path, written: &HashSet<PathBuf>) -> Result<(), ImageError> {
    let children = match fs::read_dir(target) {
        Ok(children) => children,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io(format!("listing {}", target.display()), e)),
    };
    for child in children {
        let child =
            child.map_err(|e| ImageError::io(format!("listing {}", target.display()), e))?;
        if !written.contains(&dir.join(child.file_name())) {
            remove(&child.path())?;
        }
    }
    Ok(())
}

fn create_parent(target: &Path) -> Result<(), ImageError> {
    let parent = target.parent().expect("a path below the layer root");
    fs::create_dir_all(parent)
        .map_err(|e| ImageError::io(format!("creating {}", parent.display()), e))
}

fn overlay_whiteout(target: &Path) -> Result<(), ImageError> {
    use nix::sys::stat::{makedev, mknod, Mode as Perm, SFlag};
    create_parent(target)?;
    remove(target)?;
    mknod(target, SFlag::S_IFCHR, Perm::empty(), makedev(0, 0)).map_err(|e| {
        ImageError::io(
            format!("making the whiteout {}", target.display()),
            e.into(),
        )
    })
}

fn overlay_opaque(target: &Path) -> Result<(), ImageError> {
    use std::os::unix::ffi::OsStrExt;
    fs::create_dir_all(target)
        .map_err(|e| ImageError::io(format!("creating {}", target.display()), e))?;
    let path = std::ffi::CString::new(target.as_os_str().as_bytes())
        .map_err(|_| ImageError::UnsafePath(target.into(), "contains a NUL byte"))?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and outlive the call; the value is 1 byte.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ImageError::io(
            format!("marking {} opaque for overlayfs", target.display()),
            std::io::Error::last_os_error(),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar built in memory: (path, Some(content)) is a file, None a directory.
    pub(crate) fn tar_of(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            match content {
                Some(text) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(text.len() as u64);
                    header.set_mode(0o644);
                    append_raw(&mut builder, header, path, text.as_bytes());
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    append_raw(&mut builder, header, path, &[]);
                }
            }
        }
        builder.into_inner().unwrap()
    }

    /// Appends with the path written verbatim (tar's own setters refuse `..`).
    fn append_raw(
        builder: &mut tar::Builder<Vec<u8>>,
        mut header: tar::Header,
        path: &str,
        data: &[u8],
    ) {
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    fn symlink_tar(link: &str, target: &str, then_file: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder.append_link(&mut header, link, target).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, then_file, &b"x"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn classify_whiteouts_and_refuses_traversal() {
        assert_eq!(
            classify(Path::new("./etc/passwd")).unwrap(),
            Entry::Write("etc/passwd".into())
        );
        assert_eq!(
            classify(Path::new("/etc/.wh.x")).unwrap(),
            Entry::Whiteout("etc/x".into())
        );
        assert_eq!(
            classify(Path::new("etc/.wh..wh..opq")).unwrap(),
            Entry::Opaque("etc".into())
        );
        assert_eq!(classify(Path::new("./")).unwrap(), Entry::Write("".into()));
        for bad in ["../x", "a/../../x", "a/.wh..", "a/.wh."] {
            assert!(
                matches!(classify(Path::new(bad)), Err(ImageError::UnsafePath(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn merge_applies_whiteouts_and_opaque_dirs() {
        let root = tempfile::tempdir().unwrap();
        let lower = tar_of(&[
            ("etc/", None),
            ("etc/keep", Some("1")),
            ("etc/gone", Some("2")),
            ("data/", None),
            ("data/old", Some("3")),
            ("data/sub/", None),
            ("data/sub/deep", Some("4")),
        ]);
        apply(
            &lower[..],
            root.path(),
            Mode::Merge,
            Some(&Digest::of(&lower)),
        )
        .unwrap();
        // The opaque marker comes after one new child, which must survive it.
        let upper = tar_of(&[
            ("etc/.wh.gone", Some("")),
            ("data/new", Some("5")),
            ("data/.wh..wh..opq", Some("")),
            ("data/later", Some("6")),
        ]);
        apply(&upper[..], root.path(), Mode::Merge, None).unwrap();
        let r = root.path();
        assert_eq!(read(&r.join("etc/keep")), "1");
        assert!(!r.join("etc/gone").exists());
        assert!(!r.join("etc/.wh.gone").exists());
        let mut data: Vec<String> = fs::read_dir(r.join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        data.sort();
        assert_eq!(data, ["later", "new"]);
    }

    #[test]
    fn compressed_layers_and_diff_id_check() {
        use std::io::Write;
        let plain = tar_of(&[("f", Some("gz"))]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let root = tempfile::tempdir().unwrap();
        apply(&gz[..], root.path(), Mode::Merge, Some(&Digest::of(&plain))).unwrap();
        assert_eq!(read(&root.path().join("f")), "gz");

        let zst = ruzstd::encoding::compress_to_vec(
            &plain[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let root = tempfile::tempdir().unwrap();
        apply(
            &zst[..],
            root.path(),
            Mode::Merge,
            Some(&Digest::of(&plain)),
        )
        .unwrap();
        assert_eq!(read(&root.path().join("f")), "gz");

        let err = apply(
            &gz[..],
            root.path(),
            Mode::Merge,
            Some(&Digest::of(b"other")),
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn traversal_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir(&root).unwrap();
        let evil = tar_of(&[("../escaped", Some("x"))]);
        let err = apply(&evil[..], &root, Mode::Merge, None).unwrap_err();
        assert!(matches!(err, ImageError::UnsafePath(..)), "{err}");
        assert!(!outer.path().join("escaped").exists());

        // A symlink to outside, then a file through it.
        let evil = symlink_tar("link", outer.path().to_str().unwrap(), "link/escaped");
        assert!(apply(&evil[..], &root, Mode::Merge, None).is_err());
        assert!(!outer.path().join("escaped").exists());

        // A whiteout through that symlink must not delete outside either.
        fs::write(outer.path().join("victim"), "keep").unwrap();
        let evil = tar_of(&[("link/.wh.victim", Some(""))]);
        let err = apply(&evil[..], &root, Mode::Merge, None).unwrap_err();
        assert!(matches!(err, ImageError::UnsafePath(..)), "{err}");
        assert!(outer.path().join("victim").exists());
    }

    #[test]
    fn a_directory_replaces_a_symlink_instead_of_following_it() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir(&root).unwrap();
        let lower = symlink_tar("d", outer.path().to_str().unwrap(), "other");
        apply(&lower[..], &root, Mode::Merge, None).unwrap();
        let upper = tar_of(&[("d/", None), ("d/f", Some("inside"))]);
        apply(&upper[..], &root, Mode::Merge, None).unwrap();
        assert!(fs::symlink_metadata(root.join("d")).unwrap().is_dir());
        assert!(!outer.path().join("f").exists());
    }

    #[test]
    fn overlay_mode_makes_overlay_whiteouts() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: overlay whiteouts need root (mknod, trusted xattrs)");
            return;
        }
        use std::os::unix::fs::FileTypeExt;
        let root = tempfile::tempdir().unwrap();
        let layer = tar_of(&[("etc/.wh.gone", Some("")), ("data/.wh..wh..opq", Some(""))]);
        apply(&layer[..], root.path(), Mode::Overlay, None).unwrap();
        let meta = fs::symlink_metadata(root.path().join("etc/gone")).unwrap();
        assert!(meta.file_type().is_char_device());
        let path = std::ffi::CString::new(root.path().join("data").to_str().unwrap()).unwrap();
        let mut value = [0u8; 4];
        // SAFETY: valid C strings and a buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                value.as_mut_ptr().cast(),
                4,
            )
        };
        assert_eq!(&value[..n as usize], b"y");
    }
}
