//! `ContainerInfo`, typed: what a task or executor asks of its container (Mesos or Docker
//! type, image, volumes, hostname, Linux capabilities, rlimits).
//!
//! The wire messages keep `container` as raw JSON so that every field round-trips
//! exactly; [`ContainerInfo::parse`] reads the typed view the containerizer needs and
//! says what is wrong when it cannot.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `ContainerInfo.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContainerType {
    #[default]
    Mesos,
    Docker,
}

/// `Volume.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeMode {
    #[default]
    #[serde(rename = "RW")]
    ReadWrite,
    #[serde(rename = "RO")]
    ReadOnly,
}

/// `Volume.Source.SandboxPath`: a path in this container's sandbox (`SELF`) or its
/// parent's (`PARENT`, for nested containers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPath {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub path: String,
}

/// `Volume.Source.HostPath`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPathSource {
    pub path: String,
}

/// `Volume.Source`: where a volume's content comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSource {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_path: Option<SandboxPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathSource>,
}

/// `Volume`: `host_path` (the legacy form) or a `source`, mounted at `container_path`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default)]
    pub mode: VolumeMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<VolumeSource>,
}

/// Where a volume comes from, resolved from its legacy and `source` forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeOrigin<'a> {
    /// A path on the agent's host.
    HostPath(&'a str),
    /// A path relative to the container's own sandbox.
    SandboxPath(&'a str),
}

impl Volume {
    /// The volume's origin; an error names a source we cannot provide.
    pub fn origin(&self) -> Result<VolumeOrigin<'_>, String> {
        match (&self.source, &self.host_path) {
            (None, Some(host)) => Ok(VolumeOrigin::HostPath(host)),
            (None, None) => Err(format!(
                "Volume '{}' has neither 'host_path' nor 'source'",
                self.container_path
            )),
            (Some(source), _) => match (source.kind.as_deref(), source) {
                (
                    Some("HOST_PATH"),
                    VolumeSource {
                        host_path: Some(h), ..
                    },
                ) => Ok(VolumeOrigin::HostPath(&h.path)),
                (
                    Some("SANDBOX_PATH"),
                    VolumeSource {
                        sandbox_path: Some(s),
                        ..
                    },
                ) if s.kind.as_deref().is_none_or(|k| k == "SELF") => {
                    Ok(VolumeOrigin::SandboxPath(&s.path))
                }
                (kind, _) => Err(format!(
                    "Volume '{}': source type {} is not supported",
                    self.container_path,
                    kind.unwrap_or("(none)")
                )),
            },
        }
    }
}

/// `Image.Docker`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerImageName {
    pub name: String,
}

/// `Image` (of a MESOS container).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerImageName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
}

/// `ContainerInfo.MesosInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MesosInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
}

/// `ContainerInfo.DockerInfo` (the parts our containerizer uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerInfo {
    pub image: String,
}

/// `CapabilityInfo`: capability names as Mesos spells them (`NET_ADMIN`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityInfo {
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// `LinuxInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_capabilities: Option<CapabilityInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounding_capabilities: Option<CapabilityInfo>,
    /// The deprecated form of `effective_capabilities`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_info: Option<CapabilityInfo>,
}

/// `RLimitInfo.RLimit`: `type` is `RLMT_NOFILE` and the like; absent limits are unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RLimit {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft: Option<u64>,
}

/// `RLimitInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RLimitInfo {
    #[serde(default)]
    pub rlimits: Vec<RLimit>,
}

/// `ContainerInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    #[serde(rename = "type", default)]
    pub kind: ContainerType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos: Option<MesosInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_info: Option<LinuxInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlimit_info: Option<RLimitInfo>,
}

impl ContainerInfo {
    /// The typed view of a raw `container` field, or a message saying what is wrong.
    pub fn parse(raw: &Value) -> Result<ContainerInfo, String> {
        let info =
            ContainerInfo::deserialize(raw).map_err(|e| format!("Invalid ContainerInfo: {e}"))?;
        if info.kind == ContainerType::Docker && info.docker.is_none() {
            return Err("ContainerInfo of type DOCKER needs 'docker.image'".to_string());
        }
        Ok(info)
    }

    /// The image the container runs in, if any: `docker.image` for DOCKER containers,
    /// `mesos.image.docker.name` for MESOS ones.
    pub fn image_name(&self) -> Option<&str> {
        match self.kind {
            ContainerType::Docker => self.docker.as_ref().map(|d| d.image.as_str()),
            ContainerType::Mesos => self
                .mesos
                .as_ref()?
                .image
                .as_ref()?
                .docker
                .as_ref()
                .map(|d| d.name.as_str()),
        }
    }

    /// The effective capabilities asked for, from `effective_capabilities` or the
    /// deprecated `capability_info`.
    pub fn effective_capabilities(&self) -> Option<&[String]> {
        let linux = self.linux_info.as_ref()?;
        linux
            .effective_capabilities
            .as_ref()
            .or(linux.capability_info.as_ref())
            .map(|c| c.capabilities.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_volumes_image_and_capabilities() {
        let raw = json!({"type":"MESOS","hostname":"box",
            "mesos":{"image":{"type":"DOCKER","docker":{"name":"busybox:latest"}}},
            "volumes":[{"container_path":"/data","host_path":"/srv","mode":"RO"},
                {"container_path":"out","mode":"RW","source":{"type":"SANDBOX_PATH",
                    "sandbox_path":{"type":"SELF","path":"shared"}}},
                {"container_path":"/x","mode":"RW","source":{"type":"DOCKER_VOLUME"}}],
            "linux_info":{"capability_info":{"capabilities":["NET_RAW"]}},
            "network_infos":[{"name":"kept"}]});
        let info = ContainerInfo::parse(&raw).unwrap();
        assert_eq!(info.hostname.as_deref(), Some("box"));
        assert_eq!(info.image_name(), Some("busybox:latest"));
        assert_eq!(info.volumes[0].mode, VolumeMode::ReadOnly);
        assert_eq!(info.volumes[0].origin(), Ok(VolumeOrigin::HostPath("/srv")));
        assert_eq!(
            info.volumes[1].origin(),
            Ok(VolumeOrigin::SandboxPath("shared"))
        );
        let err = info.volumes[2].origin().unwrap_err();
        assert!(err.contains("DOCKER_VOLUME"), "{err}");
        assert_eq!(
            info.effective_capabilities(),
            Some(&["NET_RAW".to_string()][..])
        );
    }

    #[test]
    fn docker_containers_name_their_image() {
        let info =
            ContainerInfo::parse(&json!({"type":"DOCKER","docker":{"image":"alpine"}})).unwrap();
        assert_eq!(info.image_name(), Some("alpine"));
        let err = ContainerInfo::parse(&json!({"type":"DOCKER"})).unwrap_err();
        assert!(err.contains("docker.image"), "{err}");
        let err = ContainerInfo::parse(&json!({"type":"APPC"})).unwrap_err();
        assert!(err.contains("Invalid ContainerInfo"), "{err}");
        assert_eq!(ContainerInfo::parse(&json!({})).unwrap().image_name(), None);
    }
}
