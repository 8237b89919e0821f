//! Garbage collection: untagging images no container uses (PRUNE_IMAGES) and removing
//! blobs and extracted layers that no image name and no container refers to.

use super::provision::in_use;
use super::store::StoreLock;
use super::{Digest, ImageError, ImageRecord, ImageStore};
use std::collections::HashSet;
use std::fs;
use std::path::Path;

/// What a collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Image names removed from the index.
    pub images: Vec<String>,
    /// Blobs and extracted layers removed.
    pub files: usize,
}

/// Removes every image that no container uses, except those named in `excluded`
/// (normalized names), then the content only they referred to.
pub fn prune(store: &ImageStore, excluded: &[String]) -> Result<Pruned, ImageError> {
    let _writers = store.exclude_writers()?;
    let lock = store.lock()?;
    let used: HashSet<Digest> = in_use(store)?
        .into_iter()
        .map(|(_, r)| r.manifest)
        .collect();
    let images: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|r| !used.contains(&r.manifest) && !excluded.contains(&r.name))
        .map(|r| r.name)
        .collect();
    store.untag_locked(&images, &lock)?;
    let files = sweep(store, &lock)?;
    Ok(Pruned { images, files })
}

/// Removes the name `name`, then the content no other name or container refers to;
/// returns the removed record and how many files went.
pub fn remove(store: &ImageStore, name: &str) -> Result<(ImageRecord, usize), ImageError> {
    let _writers = store.exclude_writers()?;
    let lock = store.lock()?;
    let record = store
        .get(name)?
        .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
    store.untag_locked(&[name.to_string()], &lock)?;
    Ok((record, sweep(store, &lock)?))
}

/// Removes blobs and extracted layers that no image name or container refers to;
/// returns how many. The caller holds the lock and keeps writers out.
fn sweep(store: &ImageStore, _lock: &StoreLock) -> Result<usize, ImageError> {
    let mut live: HashSet<Digest> = HashSet::new();
    let mut keep = |r: &ImageRecord| {
        live.insert(r.manifest.clone());
        live.insert(r.config.clone());
        live.extend(r.layers.iter().cloned());
    };
    store.list()?.iter().for_each(&mut keep);
    in_use(store)?.iter().for_each(|(_, r)| keep(r));
    let mut removed = 0;
    for dir in ["blobs/sha256", "layers/sha256"] {
        removed += remove_unlisted(&store.root().join(dir), &live)?;
    }
    Ok(removed)
}

fn remove_unlisted(dir: &Path, live: &HashSet<Digest>) -> Result<usize, ImageError> {
    let mut removed = 0;
    let entries =
        fs::read_dir(dir).map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let digest = format!("sha256:{}", name.to_string_lossy())
            .parse::<Digest>()
            .ok();
        if digest.is_some_and(|d| live.contains(&d)) {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(|e| ImageError::io(format!("removing {}", path.display()), e))?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::archive::{import, tests::docker_archive};
    use crate::image::provision::{provision, release, Backend};

    #[test]
    fn prune_keeps_used_and_excluded_images() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let archive = docker_archive(dir.path());
        let image = import(&store, &archive, None, "docker.io")
            .unwrap()
            .remove(0);
        import(&store, &archive, Some("other/name"), "docker.io").unwrap();
        provision(&store, "c1", &image, Backend::Copy).unwrap();

        // In use by c1 (both names point at the manifest c1 runs): nothing goes.
        let pruned = prune(&store, &[]).unwrap();
        assert_eq!(pruned, Pruned::default());

        release(&store, "c1").unwrap();
        let pruned = prune(&store, &["docker.io/test/app:1".to_string()]).unwrap();
        assert_eq!(pruned.images, ["docker.io/other/name:latest"]);
        assert_eq!(
            pruned.files, 0,
            "both names share one manifest, still named"
        );
        assert!(store.has_blob(&image.layers[0]));

        let pruned = prune(&store, &[]).unwrap();
        assert_eq!(pruned.images, ["docker.io/test/app:1"]);
        assert_eq!(pruned.files, 4, "manifest, config and two layers");
        assert_eq!(
            fs::read_dir(store.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn remove_untags_and_sweeps() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let image = import(&store, &docker_archive(dir.path()), None, "docker.io")
            .unwrap()
            .remove(0);
        let (removed, files) = remove(&store, &image.name).unwrap();
        assert_eq!((removed, files), (image.clone(), 4));
        assert!(matches!(
            remove(&store, &image.name),
            Err(ImageError::NotFound(_))
        ));
    }

    #[test]
    fn collection_waits_for_pinned_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let template = import(&store, &docker_archive(dir.path()), None, "docker.io")
            .unwrap()
            .remove(0);
        store.untag(&template.name).unwrap();
        // A writer pins the store, adds content it has not named yet...
        let pin = store.pin().unwrap();
        let manifest = store
            .put_blob(b"a manifest being pulled", None, "manifest")
            .unwrap();
        let collector = {
            let store = store.clone();
            std::thread::spawn(move || prune(&store, &[]).unwrap())
        };
        // ...and names it a while later: a collection that did not wait would have
        // removed the unnamed blobs meanwhile, and the naming would fail.
        std::thread::sleep(std::time::Duration::from_millis(200));
        store
            .tag(ImageRecord {
                name: "late/name:1".into(),
                manifest,
                ..template.clone()
            })
            .unwrap();
        drop(pin);
        let pruned = collector.join().unwrap();
        assert_eq!(
            pruned.images,
            ["late/name:1"],
            "collected once the writer was done"
        );
    }
}
