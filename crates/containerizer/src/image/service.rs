//! The agent's image service: one store, one registry client, and the rules that tie them
//! together: an image missing from the store is pulled, concurrent requests for one image
//! share one pull (a lock per image name; concurrent pulls of different images share
//! the blobs they have in common, see [`Registry`]), and garbage collection never runs
//! while a pull or provision is under way.

use super::gc::{self, Pruned};
use super::keyed::KeyedLocks;
use super::provision::{self, Backend, Provisioned};
use super::registry::{Registry, RegistryConfig};
use super::{ImageError, ImageRecord, ImageStore, Reference};
use std::sync::{Arc, OnceLock};
use tokio::sync::RwLock;

pub struct ImageService {
    store: ImageStore,
    registry: Registry,
    backend: Backend,
    /// Whether a failed overlay mount falls back to copies (the backend was detected,
    /// not chosen).
    fallback: bool,
    /// Whether overlays of this store mount, tried once on the first overlay provisioned
    /// (the supervisors mount them later, where a failure could not fall back).
    overlay_mounts: Arc<OnceLock<Result<(), String>>>,
    /// One lock per normalized image name: holders pull, later ones find it stored.
    pulls: KeyedLocks<String>,
    /// Read by pulls and provisions, written by garbage collection.
    gc: RwLock<()>,
}

impl ImageService {
    /// A service over `store`. `backend` is the one chosen; `None` detects it (overlay
    /// when possible) and falls back to copies when an overlay mount fails.
    pub fn new(
        store: ImageStore,
        registry: RegistryConfig,
        backend: Option<Backend>,
    ) -> ImageService {
        ImageService {
            store,
            registry: Registry::new(registry),
            backend: backend.unwrap_or_else(Backend::detect),
            fallback: backend.is_none(),
            overlay_mounts: Arc::new(OnceLock::new()),
            pulls: KeyedLocks::new(),
            gc: RwLock::new(()),
        }
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// Normalizes `name` with the default registry.
    pub fn reference(&self, name: &str) -> Result<Reference, ImageError> {
        Reference::parse(name, &self.registry.config().default_registry)
    }

    /// The image called `name`, pulled first when the store lacks it.
    pub async fn image(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let _gc = self.gc.read().await;
        self.image_unlocked(name).await
    }

    /// Pulls `name` even when the store has it (a newer tag, say).
    pub async fn pull(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let _gc = self.gc.read().await;
        let reference = self.reference(name)?;
        let _pulling = self.pulls.lock(reference.to_string()).await;
        self.registry.pull(&self.store, &reference).await
    }

    async fn image_unlocked(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let reference = self.reference(name)?;
        let key = reference.to_string();
        if let Some(record) = self.store.get(&key)? {
            return Ok(record);
        }
        let _pulling = self.pulls.lock(key.clone()).await;
        if let Some(record) = self.store.get(&key)? {
            return Ok(record);
        }
        tracing::info!(image = %key, "pulling");
        let record = self.registry.pull(&self.store, &reference).await?;
        tracing::info!(image = %key, manifest = %record.manifest, "pulled");
        Ok(record)
    }

    /// The root filesystem of `container_id`, from `name` (pulled when missing).
    pub async fn provision(
        &self,
        container_id: &str,
        name: &str,
    ) -> Result<Provisioned, ImageError> {
        let _gc = self.gc.read().await;
        let record = self.image_unlocked(name).await?;
        let (store, id) = (self.store.clone(), container_id.to_string());
        let (fallback, probe) = (self.fallback, self.overlay_mounts.clone());
        let backend = match self.overlay_mounts.get() {
            Some(Err(_)) if fallback => Backend::Copy,
            _ => self.backend,
        };
        tokio::task::spawn_blocking(move || {
            let provisioned = provision::provision(&store, &id, &record, backend).and_then(|p| {
                let Some(overlay) = &p.rootfs.overlay else {
                    return Ok(p);
                };
                match probe.get_or_init(|| try_mount(overlay, &p.rootfs.path)) {
                    Ok(()) => Ok(p),
                    Err(message) => {
                        let _ = provision::release(&store, &id);
                        Err(ImageError::Mount(message.clone()))
                    }
                }
            });
            match provisioned {
                Err(ImageError::Mount(message)) if fallback && backend == Backend::Overlay => {
                    tracing::warn!("{message}; provisioning containers with copies instead");
                    provision::provision(&store, &id, &record, Backend::Copy)
                }
                other => other,
            }
        })
        .await
        .expect("provisioning does not panic")
    }

    /// Removes the root filesystem of `container_id` (nothing when it has none).
    pub async fn release(&self, container_id: &str) -> Result<(), ImageError> {
        let (store, id) = (self.store.clone(), container_id.to_string());
        tokio::task::spawn_blocking(move || provision::release(&store, &id))
            .await
            .expect("releasing does not panic")
    }

    /// Removes the images no container uses, except `excluded` (names as users write them).
    pub async fn prune(&self, excluded: &[String]) -> Result<Pruned, ImageError> {
        let excluded = excluded
            .iter()
            .map(|name| self.reference(name).map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let _gc = self.gc.write().await;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || gc::prune(&store, &excluded))
            .await
            .expect("pruning does not panic")
    }
}

/// Mounts `overlay` at `at` and unmounts it again.
fn try_mount(overlay: &provision::Overlay, at: &std::path::Path) -> Result<(), String> {
    overlay.mount(at).map_err(|e| e.to_string())?;
    nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| format!("unmounting {}: {e}", at.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::archive::{import, tests::docker_archive};

    /// A store whose path holds a ':' cannot be an overlay lower dir (the mount option
    /// splits there), which makes the overlay mount fail for real.
    fn unmountable_store(dir: &std::path::Path) -> ImageStore {
        let store = ImageStore::open(dir.join("a:b").join("images")).unwrap();
        import(&store, &docker_archive(dir), None, "docker.io").unwrap();
        store
    }

    #[tokio::test]
    async fn a_detected_overlay_falls_back_to_copies() {
        if Backend::detect() != Backend::Overlay {
            eprintln!("skipped: overlayfs needs root and kernel support");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let service = ImageService::new(
            unmountable_store(dir.path()),
            RegistryConfig::default(),
            None,
        );
        let provisioned = service.provision("c1", "test/app:1").await.unwrap();
        assert_eq!(provisioned.rootfs.overlay, None);
        assert_eq!(
            std::fs::read_to_string(provisioned.rootfs.path.join("bin/tool")).unwrap(),
            "v2"
        );
        service.release("c1").await.unwrap();
        // Later containers get copies at once.
        let later = service.provision("c2", "test/app:1").await.unwrap();
        assert_eq!(later.rootfs.overlay, None);

        // A backend chosen by the operator is kept, and its failure reported.
        let chosen = ImageService::new(
            unmountable_store(&dir.path().join("second")),
            RegistryConfig::default(),
            Some(Backend::Overlay),
        );
        let err = chosen.provision("c1", "test/app:1").await.unwrap_err();
        assert!(matches!(err, ImageError::Mount(_)), "{err}");
    }
}
