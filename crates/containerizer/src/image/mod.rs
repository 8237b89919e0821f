//! Container images: a content-addressed store under the agent's work dir, filled by
//! importing archives (docker-archive, OCI layouts) or pulling from registries, and root
//! filesystems provisioned from it for containers.
//!
//! - [`reference`]: image names (`registry/repo:tag@digest`), normalized.
//! - [`digest`]: sha256 digests and verified writes.
//! - [`manifest`] and [`config`]: the OCI/Docker JSON documents.
//! - [`store`]: `<work_dir>/images/`: blobs by digest, extracted layers, the name index.
//! - [`layer`]: applying tar layers (whiteouts, opaque directories, no escapes).
//! - [`archive`]: importing `docker save` tarballs and OCI layouts.
//! - [`auth`] and [`registry`]: pulling over the Docker Registry HTTP API v2.
//! - [`provision`]: per-container root filesystems (overlayfs, or copies).
//! - [`gc`]: removing images no container uses.
//! - [`service`]: the agent's entry point: pull once per image, then provision.
//! - `keyed`: one lock per image name or blob digest, so that concurrent work on one runs
//!   once.

pub mod archive;
pub mod auth;
pub mod config;
pub mod digest;
pub mod gc;
mod keyed;
pub mod layer;
pub mod manifest;
pub mod provision;
pub mod reference;
pub mod registry;
pub mod service;
pub mod store;

pub use digest::Digest;
pub use provision::{Backend, Overlay, Provisioned, Rootfs};
pub use reference::Reference;
pub use registry::RegistryConfig;
pub use service::ImageService;
pub use store::{ImageRecord, ImageStore};

use std::path::PathBuf;
use thiserror::Error;

/// Why an image operation failed. Every message names what was wrong.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The image name does not parse.
    #[error("invalid image reference '{0}': {1}")]
    InvalidReference(String, String),
    /// A digest string does not parse.
    #[error("invalid digest '{0}': expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    /// The named image is not in the store.
    #[error("image '{0}' is not in the image store")]
    NotFound(String),
    /// Content does not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A JSON document is malformed.
    #[error("malformed {0}: {1}")]
    Json(String, #[source] serde_json::Error),
    /// An archive, manifest or layer is not a valid image.
    #[error("invalid image: {0}")]
    Invalid(String),
    /// A layer entry would be written outside the root filesystem.
    #[error("unsafe path in layer: '{0}' {1}")]
    UnsafePath(PathBuf, &'static str),
    /// The image uses something we do not support (a media type, no linux/amd64 build).
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The registry could not be reached or answered with an error.
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    /// The registry refused our credentials (or we had none and it wants some).
    #[error("registry {registry} refused access to '{repository}': {message}")]
    Unauthorized {
        registry: String,
        repository: String,
        message: String,
    },
    /// Mounting or unmounting a root filesystem failed.
    #[error("{0}")]
    Mount(String),
}

impl ImageError {
    /// An [`ImageError::Io`] with what was being done.
    pub(crate) fn io(context: impl std::fmt::Display, error: std::io::Error) -> Self {
        ImageError::Io(context.to_string(), error)
    }
}
