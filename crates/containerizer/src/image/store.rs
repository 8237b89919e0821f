//! The content-addressed image store under `<work_dir>/images/`:
//!
//! ```text
//! blobs/sha256/<hex>     manifests, configs and layer tars, verified against their digest
//! layers/sha256/<hex>/   a layer extracted for overlayfs (made on first use)
//! containers/<id>/       per-container root filesystems (see `provision`)
//! index.json             image name -> manifest, config and layer digests
//! tmp/                   partial downloads and extractions, renamed into place when complete
//! lock                   flock held while the index or the set of blobs changes
//! writers.lock           flock held shared while content is added and not yet named
//!                        (pulls, imports, provisions), exclusively by garbage collection
//! ```
//!
//! Everything lands by rename, so a crash leaves at most garbage in `tmp/`, and the agent
//! and `meseta image` can share one store.

use super::{Digest, ImageError};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One named image in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalized reference (`registry/repository:tag`).
    pub name: String,
    pub manifest: Digest,
    pub config: Digest,
    /// Layer blobs, bottom first.
    pub layers: Vec<Digest>,
    /// Total size of the layer blobs in bytes.
    pub size: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, ImageRecord>,
}

/// The store rooted at a directory (the agent's `<work_dir>/images`).
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
}

/// Held while the index or the set of blobs changes (an exclusive `flock`).
pub struct StoreLock {
    _flock: Flock<File>,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let store = ImageStore { root: root.into() };
        for dir in ["blobs/sha256", "layers/sha256", "containers", "tmp"] {
            let path = store.root.join(dir);
            fs::create_dir_all(&path)
                .map_err(|e| ImageError::io(format!("creating {}", path.display()), e))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn layer_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(digest.hex())
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A fresh path under `tmp/` for something that will be renamed into place.
    pub(crate) fn temp_path(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{}", std::process::id(), unique()))
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| ImageError::io(format!("reading blob {digest}"), e))
    }

    /// Stores `bytes`, checking them against `expected` when given; returns their digest.
    pub fn put_blob(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<Digest, ImageError> {
        let mut writer = self.blob_writer()?;
        writer.write(bytes)?;
        match expected {
            Some(expected) => writer.commit(expected, what).map(|()| expected.clone()),
            None => {
                let digest = Digest::of(bytes);
                writer.commit(&digest, what)?;
                Ok(digest)
            }
        }
    }

    /// A writer for a blob whose content arrives in pieces.
    pub fn blob_writer(&self) -> Result<BlobWriter, ImageError> {
        let path = self.temp_path("blob");
        let file = File::create(&path)
            .map_err(|e| ImageError::io(format!("creating {}", path.display()), e))?;
        Ok(BlobWriter {
            store: self.clone(),
            path,
            file: Some(file),
            hasher: Default::default(),
            size: 0,
        })
    }

    /// Takes the store's lock (blocking until other holders let go).
    pub fn lock(&self) -> Result<StoreLock, ImageError> {
        self.flock("lock", FlockArg::LockExclusive)
    }

    /// Pins the store's content while this process adds content it has not named yet
    /// (any number of pins at once; garbage collection waits for all of them).
    pub fn pin(&self) -> Result<StoreLock, ImageError> {
        self.flock("writers.lock", FlockArg::LockShared)
    }

    /// Waits until no pin is held and keeps new ones out (garbage collection).
    pub(crate) fn exclude_writers(&self) -> Result<StoreLock, ImageError> {
        self.flock("writers.lock", FlockArg::LockExclusive)
    }

    fn flock(&self, name: &str, kind: FlockArg) -> Result<StoreLock, ImageError> {
        let path = self.root.join(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
        Flock::lock(file, kind)
            .map(|flock| StoreLock { _flock: flock })
            .map_err(|(_, e)| ImageError::io(format!("locking {}", path.display()), e.into()))
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Json(path.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::io(format!("reading {}", path.display()), e)),
        }
    }

    fn write_index(&self, index: &Index, _lock: &StoreLock) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(index).expect("the index serializes");
        let tmp = self.temp_path("index");
        let path = self.root.join("index.json");
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| ImageError::io(format!("writing {}", path.display()), e))
    }

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.read_index()?.images.into_values().collect())
    }

    /// The image called `name` (a normalized reference), if stored.
    pub fn get(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        Ok(self.read_index()?.images.remove(name))
    }

    /// Names `record.name` as this image, replacing what had that name. Every blob it
    /// names must be in the store already.
    pub fn tag(&self, record: ImageRecord) -> Result<(), ImageError> {
        for digest in [&record.manifest, &record.config]
            .into_iter()
            .chain(&record.layers)
        {
            if !self.has_blob(digest) {
                return Err(ImageError::Invalid(format!(
                    "image '{}' names blob {digest}, which is not in the store",
                    record.name
                )));
            }
        }
        let lock = self.lock()?;
        let mut index = self.read_index()?;
        index.images.insert(record.name.clone(), record);
        self.write_index(&index, &lock)
    }

    /// Removes the name `name`; its blobs stay until [`super::gc`] finds them unused.
    pub fn untag(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let lock = self.lock()?;
        let mut index = self.read_index()?;
        let record = index
            .images
            .remove(name)
            .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        self.write_index(&index, &lock)?;
        Ok(record)
    }

    /// Removes the names in `names` (under a lock already held).
    pub(crate) fn untag_locked(
        &self,
        names: &[String],
        lock: &StoreLock,
    ) -> Result<(), ImageError> {
        let mut index = self.read_index()?;
        for name in names {
            index.images.remove(name);
        }
        self.write_index(&index, lock)
    }
}

/// A blob being written: hashed as it is written, renamed into the store by
/// [`BlobWriter::commit`] only if it matches its digest; removed if dropped.
pub struct BlobWriter {
    store: ImageStore,
    path: PathBuf,
    file: Option<File>,
    hasher: super::digest::Hasher,
    size: u64,
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.file
            .as_mut()
            .expect("not committed")
            .write_all(bytes)
            .map_err(|e| ImageError::io(format!("writing {}", self.path.display()), e))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies the content against `expected` and moves it into the store.
    pub fn commit(mut self, expected: &Digest, what: &str) -> Result<(), ImageError> {
        let actual = std::mem::take(&mut self.hasher).finish();
        expected.verify(&actual, what)?;
        let file = self.file.take().expect("committed once");
        file.sync_all()
            .map_err(|e| ImageError::io(format!("writing {}", self.path.display()), e))?;
        let dest = self.store.blob_path(expected);
        fs::rename(&self.path, &dest)
            .map_err(|e| ImageError::io(format!("storing blob {expected}"), e))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A number no other call in this process returns.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(store: &ImageStore, name: &str) -> ImageRecord {
        let manifest = store.put_blob(name.as_bytes(), None, "manifest").unwrap();
        let config = store.put_blob(b"{}", None, "config").unwrap();
        let layer = store.put_blob(b"layer", None, "layer").unwrap();
        ImageRecord {
            name: name.into(),
            manifest,
            config,
            layers: vec![layer],
            size: 5,
        }
    }

    #[test]
    fn blobs_are_verified_before_they_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let wrong = Digest::of(b"something else");
        let err = store
            .put_blob(b"content", Some(&wrong), "layer 0")
            .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!store.has_blob(&wrong));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let digest = store
            .put_blob(b"content", Some(&Digest::of(b"content")), "x")
            .unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), b"content");
    }

    #[test]
    fn index_tags_lists_and_untags() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = record(&store, "r/a:1");
        store.tag(a.clone()).unwrap();
        store.tag(record(&store, "r/b:1")).unwrap();
        let reopened = ImageStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("r/a:1").unwrap(), Some(a.clone()));
        assert_eq!(reopened.list().unwrap().len(), 2);
        assert_eq!(reopened.untag("r/a:1").unwrap(), a);
        assert!(matches!(
            reopened.untag("r/a:1"),
            Err(ImageError::NotFound(_))
        ));
        assert_eq!(reopened.list().unwrap().len(), 1);
    }

    #[test]
    fn tag_refuses_records_with_missing_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let mut r = record(&store, "r/a:1");
        r.layers.push(Digest::of(b"never stored"));
        assert!(matches!(store.tag(r), Err(ImageError::Invalid(_))));
        assert!(store.list().unwrap().is_empty());
    }
}
