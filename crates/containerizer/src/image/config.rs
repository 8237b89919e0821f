//! The image configuration blob: what the launcher needs from it (the launcher's
//! [`ImageConfig`]: Entrypoint, Cmd, Env, WorkingDir, User) and the layers' uncompressed
//! digests.

use super::{Digest, ImageError};
use crate::ImageConfig;
use serde::Deserialize;

/// A parsed config blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedConfig {
    pub runtime: ImageConfig,
    /// sha256 of each layer's uncompressed tar, bottom first.
    pub diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    config: Option<RawRuntime>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRuntime {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// Parses an image config blob.
pub fn parse(bytes: &[u8]) -> Result<ParsedConfig, ImageError> {
    let raw: Raw =
        serde_json::from_slice(bytes).map_err(|e| ImageError::Json("image config".into(), e))?;
    let runtime = raw
        .config
        .map(|c| ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
        })
        .unwrap_or_default();
    Ok(ParsedConfig {
        runtime,
        diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_fields_and_diff_ids() {
        let diff = Digest::of(b"tar");
        let blob = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": null,
                       "Env": ["PATH=/bin", "EMPTY=", "ODD"], "WorkingDir": "", "User": "1000:1000"},
            "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
        });
        let parsed = parse(&serde_json::to_vec(&blob).unwrap()).unwrap();
        assert_eq!(parsed.runtime.entrypoint, ["/bin/sh", "-c"]);
        assert!(parsed.runtime.cmd.is_empty());
        assert_eq!(parsed.runtime.env, ["PATH=/bin", "EMPTY=", "ODD"]);
        assert_eq!(parsed.runtime.working_dir, None);
        assert_eq!(parsed.runtime.user.as_deref(), Some("1000:1000"));
        assert_eq!(parsed.diff_ids, [diff]);
    }

    #[test]
    fn bad_diff_id_is_an_error() {
        let blob = br#"{"rootfs": {"diff_ids": ["md5:abc"]}}"#;
        assert!(matches!(parse(blob), Err(ImageError::Json(..))));
    }
}
