//! The agent's side of container images: which image an executor's `ContainerInfo` asks
//! for (a DOCKER container's `docker.image`, a MESOS container's DOCKER `image`; APPC is
//! refused), provisioning it off the actor (pulled when missing, or always when
//! `cached` is false), releasing root filesystems of containers that ended, and of
//! containers no executor owns after a restart, and the PRUNE_IMAGES call.

use meseta_api::container::ContainerInfo;
use meseta_api::ExecutorInfo;
use meseta_containerizer::image::{ImageService, Provisioned};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// An image an executor's container asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRequest {
    pub name: String,
    /// `image.cached: false`: pull even when the store has it.
    pub force_pull: bool,
}

/// The image `info` asks for; `None` without one.
pub fn requested(info: &ContainerInfo) -> Result<Option<ImageRequest>, String> {
    let mesos_image = info.mesos.as_ref().and_then(|m| m.image.as_ref());
    if let Some(kind) = mesos_image.and_then(|i| i.kind.as_deref()) {
        if kind != "DOCKER" {
            return Err(format!(
                "{kind} images are not supported by this agent (only DOCKER images)"
            ));
        }
    }
    Ok(info.image_name().map(|name| ImageRequest {
        name: name.to_string(),
        force_pull: mesos_image.and_then(|i| i.cached) == Some(false),
    }))
}

/// The image an executor's container asks for; `None` without one.
pub fn requested_by(executor: &ExecutorInfo) -> Result<Option<ImageRequest>, String> {
    match &executor.container {
        None => Ok(None),
        Some(raw) => requested(&ContainerInfo::parse(raw)?),
    }
}

/// Pulls (when needed) and provisions `request` as the root filesystem of `container_id`.
pub async fn provision(
    images: &ImageService,
    container_id: &str,
    request: &ImageRequest,
) -> Result<Provisioned, String> {
    let failed = |e| format!("Failed to provision image '{}': {e}", request.name);
    if request.force_pull {
        images.pull(&request.name).await.map_err(failed)?;
    }
    images
        .provision(container_id, &request.name)
        .await
        .map_err(failed)
}

/// Releases the root filesystem of `container_id`, if it has one, in the background.
pub fn release(images: &Arc<ImageService>, container_id: &str) {
    let (images, container_id) = (images.clone(), container_id.to_string());
    tokio::spawn(async move {
        if let Err(e) = images.release(&container_id).await {
            tracing::warn!("releasing the root filesystem of container {container_id}: {e}");
        }
    });
}

/// Releases, in the background, the root filesystems of containers not in `known`
/// (left by containers that ended while the agent was down).
pub fn release_orphans(images: &Arc<ImageService>, known: HashSet<String>) {
    let images = images.clone();
    tokio::spawn(async move {
        let store = images.store().clone();
        let used = tokio::task::spawn_blocking(move || {
            meseta_containerizer::image::provision::in_use(&store)
        })
        .await
        .expect("listing does not panic");
        match used {
            Ok(used) => {
                for (container_id, _) in used.into_iter().filter(|(c, _)| !known.contains(c)) {
                    tracing::info!(
                        "releasing the root filesystem of ended container {container_id}"
                    );
                    if let Err(e) = images.release(&container_id).await {
                        tracing::warn!("releasing container {container_id}: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("listing provisioned containers: {e}"),
        }
    });
}

/// Prunes the images no container uses, but `excluded`, every `interval` until `stop`
/// turns true (`--image-gc-interval`).
pub async fn collect_periodically(
    images: Arc<ImageService>,
    interval: Duration,
    excluded: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match images.prune(&excluded).await {
            Ok(pruned) if pruned.images.is_empty() && pruned.files == 0 => {}
            Ok(pruned) => tracing::info!(
                "image GC removed {:?} ({} files)",
                pruned.images,
                pruned.files
            ),
            Err(e) => tracing::warn!("image GC: {e}"),
        }
    }
}

/// The DOCKER names in PRUNE_IMAGES's `excluded_images` (APPC entries name no image of
/// ours and are skipped).
pub fn excluded_images(call: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(list) = call.and_then(|c| c.get("excluded_images")) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or("'prune_images.excluded_images' must be an array of images")?;
    let mut names = Vec::new();
    for image in list {
        let kind = image
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("DOCKER");
        if kind != "DOCKER" {
            continue;
        }
        let name = image
            .get("docker")
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            .ok_or("a DOCKER image in 'excluded_images' needs 'docker.name'")?;
        names.push(name.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(value: Value) -> ContainerInfo {
        ContainerInfo::parse(&value).unwrap()
    }

    #[test]
    fn images_of_mesos_and_docker_containers() {
        let mesos = info(
            json!({"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}}),
        );
        assert_eq!(
            requested(&mesos).unwrap(),
            Some(ImageRequest {
                name: "busybox".into(),
                force_pull: false
            })
        );
        let fresh = info(
            json!({"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "cached": false, "docker": {"name": "b"}}}}),
        );
        assert!(requested(&fresh).unwrap().unwrap().force_pull);
        let docker = info(json!({"type": "DOCKER", "docker": {"image": "library/busybox:1"}}));
        assert_eq!(
            requested(&docker).unwrap().unwrap().name,
            "library/busybox:1"
        );
        assert_eq!(requested(&info(json!({"type": "MESOS"}))).unwrap(), None);
        let appc = info(
            json!({"type": "MESOS", "mesos": {"image": {"type": "APPC", "appc": {"name": "x"}}}}),
        );
        assert!(requested(&appc)
            .unwrap_err()
            .contains("APPC images are not supported"));
    }

    #[test]
    fn excluded_images_of_prune() {
        let call = json!({"excluded_images": [
            {"type": "DOCKER", "docker": {"name": "busybox"}},
            {"type": "APPC", "appc": {"name": "x"}},
        ]});
        assert_eq!(excluded_images(Some(&call)).unwrap(), ["busybox"]);
        assert!(excluded_images(None).unwrap().is_empty());
        assert!(excluded_images(Some(&json!({"excluded_images": 1}))).is_err());
        assert!(excluded_images(Some(&json!({"excluded_images": [{"type": "DOCKER"}]}))).is_err());
    }
}
