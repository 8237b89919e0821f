//! The agent's image service: one store, one registry client, and the rules that tie them
//! together: an image missing from the store is pulled, concurrent requests for one image
//! share one pull (a lock per image name), and garbage collection never runs while a pull
//! or provision is under way.

use super::gc::{self, Pruned};
use super::provision::{self, Backend, Provisioned};
use super::registry::{Registry, RegistryConfig};
use super::{ImageError, ImageRecord, ImageStore, Reference};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::RwLock;

pub struct ImageService {
    store: ImageStore,
    registry: Registry,
    backend: Backend,
    /// One lock per normalized image name: holders pull, later ones find it stored.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Read by pulls and provisions, written by garbage collection.
    gc: RwLock<()>,
}

impl ImageService {
    pub fn new(store: ImageStore, registry: RegistryConfig, backend: Backend) -> ImageService {
        ImageService {
            store,
            registry: Registry::new(registry),
            backend,
            pulls: Mutex::new(HashMap::new()),
            gc: RwLock::new(()),
        }
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    pub fn backend(&self) -> Backend {
        self.backend
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
        let lock = self.pull_lock(&reference);
        let _pulling = lock.lock().await;
        self.registry.pull(&self.store, &reference).await
    }

    async fn image_unlocked(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let reference = self.reference(name)?;
        let key = reference.to_string();
        if let Some(record) = self.store.get(&key)? {
            return Ok(record);
        }
        let lock = self.pull_lock(&reference);
        let _pulling = lock.lock().await;
        if let Some(record) = self.store.get(&key)? {
            return Ok(record);
        }
        tracing::info!(image = %key, "pulling");
        let record = self.registry.pull(&self.store, &reference).await?;
        tracing::info!(image = %key, manifest = %record.manifest, "pulled");
        Ok(record)
    }

    fn pull_lock(&self, reference: &Reference) -> Arc<tokio::sync::Mutex<()>> {
        let mut pulls = self.pulls.lock().expect("pull locks poisoned");
        pulls.entry(reference.to_string()).or_default().clone()
    }

    /// The root filesystem of `container_id`, from `name` (pulled when missing).
    pub async fn provision(
        &self,
        container_id: &str,
        name: &str,
    ) -> Result<Provisioned, ImageError> {
        let _gc = self.gc.read().await;
        let record = self.image_unlocked(name).await?;
        let (store, backend, id) = (self.store.clone(), self.backend, container_id.to_string());
        tokio::task::spawn_blocking(move || provision::provision(&store, &id, &record, backend))
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
