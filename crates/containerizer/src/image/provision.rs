//! Root filesystems for containers, under `containers/<container id>/` in the store:
//!
//! - [`Backend::Overlay`]: each layer extracted once (overlay format) under `layers/`,
//!   shared read-only as overlayfs lower dirs; the container writes to its own `upper/`.
//!   The provisioner only describes the mount ([`Overlay`]): the container's supervisor
//!   mounts it in its own mount namespace, so the host's mount table does not grow with
//!   every running container (each process that reads `/proc/self/mountinfo`, as
//!   libcgroups does several times per container, would pay for all of them).
//! - [`Backend::Copy`]: the layers applied one by one into the container's own `rootfs/`
//!   (no overlayfs needed; slower and uses more disk).
//!
//! `containers/<id>/image.json` records which image a container uses, which is how
//! [`super::gc`] knows what is in use. [`release`] undoes a provision.

use super::config;
use super::layer::{self, Mode};
use super::{Digest, ImageError, ImageRecord, ImageStore};
use crate::ImageConfig;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How root filesystems are made (`--image-provisioner-backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Overlay,
    Copy,
}

impl Backend {
    /// Overlay when we are root and the kernel has overlayfs, else copy.
    pub fn detect() -> Backend {
        let overlay = fs::read_to_string("/proc/filesystems")
            .map(|text| {
                text.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            })
            .unwrap_or(false);
        if overlay && nix::unistd::geteuid().is_root() {
            Backend::Overlay
        } else {
            Backend::Copy
        }
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(text: &str) -> Result<Backend, String> {
        match text {
            "overlay" => Ok(Backend::Overlay),
            "copy" => Ok(Backend::Copy),
            other => Err(format!(
                "the image provisioner backend must be 'overlay' or 'copy', not '{other}'"
            )),
        }
    }
}

/// A container's root filesystem, ready for the launcher.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub rootfs: Rootfs,
    pub config: ImageConfig,
    pub image: ImageRecord,
}

/// Where a container's root filesystem is, and the overlayfs mount that fills that
/// directory (`None` when the directory holds the files itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rootfs {
    pub path: PathBuf,
    pub overlay: Option<Overlay>,
}

impl From<PathBuf> for Rootfs {
    fn from(path: PathBuf) -> Rootfs {
        Rootfs {
            path,
            overlay: None,
        }
    }
}

impl From<&str> for Rootfs {
    fn from(path: &str) -> Rootfs {
        Rootfs::from(PathBuf::from(path))
    }
}

/// An overlayfs mount: read-only layers (topmost first) under a writable upper dir.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Overlay {
    /// The mount's option string; the kernel takes at most a page of it.
    fn options(&self) -> Result<String, ImageError> {
        let lowerdir: Vec<String> = self.lower.iter().map(|p| p.display().to_string()).collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowerdir.join(":"),
            self.upper.display(),
            self.work.display()
        );
        if options.len() >= 4096 {
            return Err(ImageError::Mount(format!(
                "overlay mount options for {} layers exceed a page; use --image-provisioner-backend=copy",
                self.lower.len()
            )));
        }
        Ok(options)
    }

    /// Mounts the overlay at `at` (in the caller's mount namespace).
    pub fn mount(&self, at: &Path) -> Result<(), ImageError> {
        use nix::mount::{mount, MsFlags};
        let options = self.options()?;
        mount(
            Some("overlay"),
            at,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| ImageError::Mount(format!("mounting overlayfs at {}: {e}", at.display())))
    }
}

fn container_dir(store: &ImageStore, container_id: &str) -> Result<PathBuf, ImageError> {
    if container_id.is_empty()
        || container_id.contains('/')
        || container_id == "."
        || container_id == ".."
    {
        return Err(ImageError::Invalid(format!(
            "'{container_id}' cannot name a container directory"
        )));
    }
    Ok(store.containers_dir().join(container_id))
}

/// Makes the root filesystem of `container_id` from `image` (releasing an earlier one of
/// that container first).
pub fn provision(
    store: &ImageStore,
    container_id: &str,
    image: &ImageRecord,
    backend: Backend,
) -> Result<Provisioned, ImageError> {
    let dir = container_dir(store, container_id)?;
    let _pin = store.pin()?;
    release(store, container_id)?;
    let io = |what: &str, path: &Path, e| ImageError::io(format!("{what} {}", path.display()), e);
    fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
    let record = serde_json::to_vec(image).expect("a record serializes");
    fs::write(dir.join("image.json"), record).map_err(|e| io("writing", &dir, e))?;
    let result = (|| {
        let parsed = config::parse(&store.read_blob(&image.config)?)?;
        if !parsed.diff_ids.is_empty() && parsed.diff_ids.len() != image.layers.len() {
            return Err(ImageError::Invalid(format!(
                "image '{}' has {} layers but its config lists {}",
                image.name,
                image.layers.len(),
                parsed.diff_ids.len()
            )));
        }
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(|e| io("creating", &rootfs, e))?;
        let overlay = match backend {
            Backend::Copy => {
                unpack_layers(store, image, &parsed.diff_ids, &rootfs)?;
                None
            }
            Backend::Overlay => {
                let mut lower = Vec::new();
                for (i, digest) in image.layers.iter().enumerate().rev() {
                    lower.push(extracted_layer(store, digest, parsed.diff_ids.get(i))?);
                }
                if lower.is_empty() {
                    let empty = dir.join("empty");
                    fs::create_dir_all(&empty).map_err(|e| io("creating", &empty, e))?;
                    lower.push(empty);
                }
                Some(overlay(&dir, lower)?)
            }
        };
        Ok(Provisioned {
            rootfs: Rootfs {
                path: rootfs,
                overlay,
            },
            config: parsed.runtime,
            image: image.clone(),
        })
    })();
    if result.is_err() {
        let _ = release(store, container_id);
    }
    result
}

/// Applies the layers of `image` bottom-up into the existing directory `dest`.
pub fn unpack(store: &ImageStore, image: &ImageRecord, dest: &Path) -> Result<(), ImageError> {
    let parsed = config::parse(&store.read_blob(&image.config)?)?;
    unpack_layers(store, image, &parsed.diff_ids, dest)
}

fn unpack_layers(
    store: &ImageStore,
    image: &ImageRecord,
    diff_ids: &[Digest],
    dest: &Path,
) -> Result<(), ImageError> {
    for (i, digest) in image.layers.iter().enumerate() {
        layer::apply(
            open_blob(store, digest)?,
            dest,
            Mode::Merge,
            diff_ids.get(i),
        )?;
    }
    Ok(())
}

fn open_blob(store: &ImageStore, digest: &Digest) -> Result<File, ImageError> {
    File::open(store.blob_path(digest))
        .map_err(|e| ImageError::io(format!("opening layer {digest}"), e))
}

/// The overlay-format extraction of a layer, made on first use.
fn extracted_layer(
    store: &ImageStore,
    digest: &Digest,
    diff_id: Option<&Digest>,
) -> Result<PathBuf, ImageError> {
    let path = store.layer_path(digest);
    if path.is_dir() {
        return Ok(path);
    }
    let tmp = store.temp_path("layer");
    fs::create_dir(&tmp).map_err(|e| ImageError::io(format!("creating {}", tmp.display()), e))?;
    let applied = layer::apply(open_blob(store, digest)?, &tmp, Mode::Overlay, diff_id);
    let placed = applied.and_then(|()| match fs::rename(&tmp, &path) {
        Ok(()) => Ok(()),
        // Someone else extracted it meanwhile: theirs is as good as ours.
        Err(_) if path.is_dir() => Ok(()),
        Err(e) => Err(ImageError::io(format!("storing layer {digest}"), e)),
    });
    if tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    placed.map(|()| path)
}

/// The overlay of `lower` with the container's own upper and work dirs under `dir`
/// (created here; the mount is the supervisor's).
fn overlay(dir: &Path, lower: Vec<PathBuf>) -> Result<Overlay, ImageError> {
    let overlay = Overlay {
        lower,
        upper: dir.join("upper"),
        work: dir.join("work"),
    };
    for d in [&overlay.upper, &overlay.work] {
        fs::create_dir_all(d)
            .map_err(|e| ImageError::io(format!("creating {}", d.display()), e))?;
    }
    overlay.options()?;
    Ok(overlay)
}

/// Removes a container's root filesystem (unmounting it first, for one mounted in the
/// agent's namespace by an earlier version); nothing to do when it has none.
pub fn release(store: &ImageStore, container_id: &str) -> Result<(), ImageError> {
    use nix::mount::{umount2, MntFlags};
    let dir = container_dir(store, container_id)?;
    if !dir.exists() {
        return Ok(());
    }
    let rootfs = dir.join("rootfs");
    match umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(nix::errno::Errno::EPERM) if !nix::unistd::geteuid().is_root() => {}
        Err(e) => {
            return Err(ImageError::Mount(format!(
                "unmounting {}: {e}",
                rootfs.display()
            )));
        }
    }
    fs::remove_dir_all(&dir).map_err(|e| ImageError::io(format!("removing {}", dir.display()), e))
}

/// The images containers use now, by container id.
pub fn in_use(store: &ImageStore) -> Result<Vec<(String, ImageRecord)>, ImageError> {
    let dir = store.containers_dir();
    let mut used = Vec::new();
    let entries =
        fs::read_dir(&dir).map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let Ok(bytes) = fs::read(entry.path().join("image.json")) else {
            continue;
        };
        let record: ImageRecord = serde_json::from_slice(&bytes).map_err(|e| {
            ImageError::Json(entry.path().join("image.json").display().to_string(), e)
        })?;
        used.push((entry.file_name().to_string_lossy().into_owned(), record));
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::archive::tests::docker_archive;

    #[test]
    fn copy_backend_flattens_layers_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let archive = docker_archive(dir.path());
        let records = crate::image::archive::import(&store, &archive, None, "docker.io").unwrap();
        let image = &records[0];
        let p = provision(&store, "c1", image, Backend::Copy).unwrap();
        assert_eq!(p.rootfs.overlay, None);
        let rootfs = &p.rootfs.path;
        assert_eq!(fs::read_to_string(rootfs.join("bin/tool")).unwrap(), "v2");
        assert!(!rootfs.join("etc/removed").exists());
        assert!(rootfs.join("etc/kept").exists());
        assert_eq!(p.config.env, ["GREETING=hello"]);
        assert_eq!(in_use(&store).unwrap().len(), 1);
        release(&store, "c1").unwrap();
        assert!(in_use(&store).unwrap().is_empty());
        release(&store, "c1").unwrap();
        assert!(matches!(
            provision(&store, "../x", image, Backend::Copy),
            Err(ImageError::Invalid(_))
        ));
    }

    #[test]
    fn overlay_backend_describes_a_mount_that_release_undoes() {
        if Backend::detect() != Backend::Overlay {
            eprintln!("skipped: overlayfs needs root and kernel support");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let archive = docker_archive(dir.path());
        let image = crate::image::archive::import(&store, &archive, None, "docker.io")
            .unwrap()
            .remove(0);
        let p = provision(&store, "c1", &image, Backend::Overlay).unwrap();
        let rootfs = &p.rootfs.path;
        // Nothing is mounted in this namespace until the supervisor mounts it.
        assert!(!rootfs.join("bin/tool").exists());
        let overlay = p
            .rootfs
            .overlay
            .as_ref()
            .expect("an overlay backend mounts");
        assert_eq!(overlay.lower.len(), image.layers.len());
        overlay.mount(rootfs).unwrap();
        assert_eq!(fs::read_to_string(rootfs.join("bin/tool")).unwrap(), "v2");
        assert!(!rootfs.join("etc/removed").exists());
        fs::write(rootfs.join("scratch"), "x").unwrap();
        // Writes land in the container's upper dir, never in the shared layers.
        assert!(overlay.upper.join("scratch").exists());
        assert!(!store.layer_path(&image.layers[1]).join("scratch").exists());
        release(&store, "c1").unwrap();
        assert!(!rootfs.exists());
    }
}
