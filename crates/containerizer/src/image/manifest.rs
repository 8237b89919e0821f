//! The OCI / Docker v2 JSON documents that describe an image: image manifests, image
//! indexes (manifest lists) and the descriptors they hold, and choosing the linux/amd64
//! build from an index.

use super::{Digest, ImageError};
use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest media types we ask registries for, best first.
pub const ACCEPTED: [&str; 4] = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];

/// The platform we run.
pub const OS: &str = "linux";
pub const ARCHITECTURE: &str = "amd64";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A reference to content: its media type, digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An image manifest: the config blob and the layers, bottom first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list: one manifest per platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A manifest document as fetched: either an image manifest or an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Parses a manifest document, using the media type from the HTTP `Content-Type` (or the
/// descriptor) when given, else the document's own `mediaType`, else its shape.
pub fn parse_document(bytes: &[u8], media_type: Option<&str>) -> Result<Document, ImageError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ImageError::Json("image manifest".into(), e))?;
    let declared = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string);
    let media_type = media_type
        .map(|m| m.split(';').next().unwrap_or(m).trim().to_string())
        .filter(|m| ACCEPTED.contains(&m.as_str()))
        .or(declared);
    let is_index = match media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) if other.contains("manifest.v1") => {
            return Err(ImageError::Unsupported(format!(
                "schema 1 manifests ({other}) are not supported"
            )))
        }
        _ => value.get("manifests").is_some(),
    };
    if is_index {
        serde_json::from_value(value)
            .map(Document::Index)
            .map_err(|e| ImageError::Json("image index".into(), e))
    } else {
        serde_json::from_value(value)
            .map(Document::Manifest)
            .map_err(|e| ImageError::Json("image manifest".into(), e))
    }
}

/// The index entry for linux/amd64, or an error listing the platforms there are.
pub fn select_platform(index: &Index) -> Result<&Descriptor, ImageError> {
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == OS && p.architecture == ARCHITECTURE)
        })
        .ok_or_else(|| {
            let platforms: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            ImageError::Unsupported(format!(
                "no {OS}/{ARCHITECTURE} image in the index (it has: {})",
                if platforms.is_empty() {
                    "no platforms".to_string()
                } else {
                    platforms.join(", ")
                }
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(platform: Option<(&str, &str)>, content: &[u8]) -> serde_json::Value {
        let mut d = serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": Digest::of(content).to_string(), "size": 1,
        });
        if let Some((os, arch)) = platform {
            d["platform"] = serde_json::json!({"os": os, "architecture": arch});
        }
        d
    }

    #[test]
    fn index_resolves_to_linux_amd64() {
        let doc = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_LIST,
            "manifests": [descriptor(Some(("linux", "arm64")), b"arm"),
                          descriptor(Some(("linux", "amd64")), b"amd")],
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let Document::Index(index) = parse_document(&bytes, None).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(select_platform(&index).unwrap().digest, Digest::of(b"amd"));
    }

    #[test]
    fn index_without_amd64_names_what_it_has() {
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                serde_json::from_value(descriptor(Some(("linux", "s390x")), b"s")).unwrap(),
            ],
        };
        let err = select_platform(&index).unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
    }

    #[test]
    fn manifest_detected_from_content_type_or_shape() {
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "config": descriptor(None, b"c"),
            "layers": [descriptor(None, b"l")],
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        for content_type in [
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            None,
        ] {
            let Document::Manifest(m) = parse_document(&bytes, content_type).unwrap() else {
                panic!("not a manifest")
            };
            assert_eq!(m.layers[0].digest, Digest::of(b"l"));
        }
        let v1 = serde_json::json!({"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"});
        let err = parse_document(&serde_json::to_vec(&v1).unwrap(), None).unwrap_err();
        assert!(matches!(err, ImageError::Unsupported(_)), "{err}");
        assert!(matches!(
            parse_document(b"{", None),
            Err(ImageError::Json(..))
        ));
    }
}
