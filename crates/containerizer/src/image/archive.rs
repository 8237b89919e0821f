//! Importing images from files: `docker save` / docker-archive tarballs (`manifest.json`
//! with `Config`, `RepoTags`, `Layers`) and OCI image layouts (`oci-layout`, `index.json`,
//! `blobs/`), as a directory or a tar of one. Every blob is verified and copied into the
//! store; a docker-archive gets an OCI manifest written for it.

use super::config;
use super::digest::HashingReader;
use super::manifest::{self, Descriptor, Document, Manifest};
use super::{Digest, ImageError, ImageRecord, ImageStore, Reference};
use serde::Deserialize;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Imports every image in `path` (a tar file or a directory). `name`, when given, names
/// the image (a tag from the archive completes it when it has none); archives that name
/// no image need it. Names are normalized with `default_registry`.
pub fn import(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
    default_registry: &str,
) -> Result<Vec<ImageRecord>, ImageError> {
    let _pin = store.pin()?;
    let meta =
        fs::metadata(path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    let unpacked;
    let dir = if meta.is_dir() {
        path.to_path_buf()
    } else {
        unpacked = TempDir(store.temp_path("import"));
        fs::create_dir(&unpacked.0)
            .map_err(|e| ImageError::io(format!("creating {}", unpacked.0.display()), e))?;
        let file = File::open(path)
            .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
        let mut archive = tar::Archive::new(file);
        archive.unpack(&unpacked.0).map_err(|e| {
            ImageError::Invalid(format!("{} is not a tar archive: {e}", path.display()))
        })?;
        unpacked.0.clone()
    };
    let records = if dir.join("manifest.json").is_file() {
        import_docker_archive(store, &dir, name, default_registry)?
    } else if dir.join("index.json").is_file() {
        import_oci_layout(store, &dir, name, default_registry)?
    } else {
        return Err(ImageError::Invalid(format!(
            "{} is neither a docker-archive (no manifest.json) nor an OCI layout (no index.json)",
            path.display()
        )));
    };
    for record in &records {
        store.tag(record.clone())?;
    }
    Ok(records)
}

/// Removes a directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A path inside the archive, refusing anything that leaves it.
fn member(dir: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    match super::layer::classify(Path::new(rel))? {
        super::layer::Entry::Write(rel) if !rel.as_os_str().is_empty() => Ok(dir.join(rel)),
        _ => Err(ImageError::UnsafePath(
            rel.into(),
            "is not a file of the archive",
        )),
    }
}

/// Streams `path` into the store, verified against `expected` when given.
fn copy_blob(
    store: &ImageStore,
    path: &Path,
    expected: Option<&Digest>,
    what: &str,
) -> Result<(Digest, u64), ImageError> {
    let mut file = File::open(path)
        .map_err(|e| ImageError::io(format!("opening {what} {}", path.display()), e))?;
    let mut writer = store.blob_writer()?;
    let mut hasher = super::digest::Hasher::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ImageError::io(format!("reading {what}"), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        writer.write(&buf[..n])?;
    }
    let size = writer.size();
    let digest = match expected {
        Some(expected) => expected.clone(),
        None => hasher.finish(),
    };
    writer.commit(&digest, what)?;
    Ok((digest, size))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker_archive(
    store: &ImageStore,
    dir: &Path,
    name: Option<&str>,
    default_registry: &str,
) -> Result<Vec<ImageRecord>, ImageError> {
    let bytes = fs::read(dir.join("manifest.json"))
        .map_err(|e| ImageError::io("reading manifest.json", e))?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Json("manifest.json".into(), e))?;
    let mut records = Vec::new();
    for entry in entries {
        let (config_digest, config_size) =
            copy_blob(store, &member(dir, &entry.config)?, None, "image config")?;
        let parsed = config::parse(&store.read_blob(&config_digest)?)?;
        if parsed.diff_ids.len() != entry.layers.len() {
            return Err(ImageError::Invalid(format!(
                "the config lists {} layers, manifest.json {}",
                parsed.diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (i, (layer, diff_id)) in entry.layers.iter().zip(&parsed.diff_ids).enumerate() {
            let (digest, size) = copy_blob(store, &member(dir, layer)?, None, "layer")?;
            if &digest != diff_id {
                // A compressed layer: its content must still be the config's diff_id.
                let blob = File::open(store.blob_path(&digest))
                    .map_err(|e| ImageError::io("reopening a layer", e))?;
                let (actual, _) = HashingReader::new(super::layer::decompressed(blob)?)
                    .finish()
                    .map_err(|e| ImageError::io("reading a layer", e))?;
                diff_id.verify(&actual, format!("layer {i} ({layer})"))?;
            }
            layers.push(Descriptor {
                media_type: manifest::OCI_LAYER.to_string(),
                digest,
                size,
                platform: None,
                annotations: None,
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(manifest::OCI_MANIFEST.to_string()),
            config: Descriptor {
                media_type: manifest::OCI_CONFIG.to_string(),
                digest: config_digest,
                size: config_size,
                platform: None,
                annotations: None,
            },
            layers,
        };
        let tags = entry.repo_tags.unwrap_or_default();
        let names: Vec<String> = match name {
            Some(name) => vec![name.to_string()],
            None if tags.is_empty() => {
                return Err(ImageError::Invalid(
                    "the archive names no image (no RepoTags): give a name".into(),
                ))
            }
            None => tags,
        };
        for name in names {
            let reference = Reference::parse(&name, default_registry)?;
            records.push(record_for(store, &manifest, reference.to_string())?);
        }
    }
    Ok(records)
}

/// Stores `manifest` and makes the index record naming it.
fn record_for(
    store: &ImageStore,
    manifest: &Manifest,
    name: String,
) -> Result<ImageRecord, ImageError> {
    let bytes = serde_json::to_vec(manifest).expect("a manifest serializes");
    let digest = store.put_blob(&bytes, None, "image manifest")?;
    Ok(ImageRecord {
        name,
        manifest: digest,
        config: manifest.config.digest.clone(),
        layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        size: manifest.layers.iter().map(|l| l.size).sum(),
    })
}

fn import_oci_layout(
    store: &ImageStore,
    dir: &Path,
    name: Option<&str>,
    default_registry: &str,
) -> Result<Vec<ImageRecord>, ImageError> {
    if !dir.join("oci-layout").is_file() {
        return Err(ImageError::Invalid(
            "an OCI layout needs an oci-layout file".into(),
        ));
    }
    let blob = |digest: &Digest| dir.join("blobs/sha256").join(digest.hex());
    let bytes =
        fs::read(dir.join("index.json")).map_err(|e| ImageError::io("reading index.json", e))?;
    let Document::Index(index) = manifest::parse_document(&bytes, Some(manifest::OCI_INDEX))?
    else {
        unreachable!("parsed as an index")
    };
    let mut records = Vec::new();
    for top in &index.manifests {
        let tag = top
            .annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .and_then(|v| v.as_str());
        let full_name = match (name, tag) {
            (Some(name), Some(tag)) if !name.contains(':') && !tag.contains([':', '/']) => {
                format!("{name}:{tag}")
            }
            (Some(name), _) => name.to_string(),
            (None, Some(tag)) if tag.contains([':', '/']) => tag.to_string(),
            (None, _) => {
                return Err(ImageError::Invalid(format!(
                    "the OCI layout names its image only by tag '{}': give a name",
                    tag.unwrap_or("")
                )))
            }
        };
        let reference = Reference::parse(&full_name, default_registry)?;
        let mut descriptor = top.clone();
        let manifest = loop {
            let bytes = fs::read(blob(&descriptor.digest))
                .map_err(|e| ImageError::io(format!("reading blob {}", descriptor.digest), e))?;
            descriptor
                .digest
                .verify(&Digest::of(&bytes), "image manifest")?;
            match manifest::parse_document(&bytes, Some(&descriptor.media_type))? {
                Document::Index(nested) => descriptor = manifest::select_platform(&nested)?.clone(),
                Document::Manifest(m) => {
                    store.put_blob(&bytes, Some(&descriptor.digest), "image manifest")?;
                    break m;
                }
            }
        };
        copy_blob(
            store,
            &blob(&manifest.config.digest),
            Some(&manifest.config.digest),
            "image config",
        )?;
        for layer in &manifest.layers {
            if !store.has_blob(&layer.digest) {
                copy_blob(store, &blob(&layer.digest), Some(&layer.digest), "layer")?;
            }
        }
        records.push(ImageRecord {
            name: reference.to_string(),
            manifest: descriptor.digest.clone(),
            config: manifest.config.digest.clone(),
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            size: manifest.layers.iter().map(|l| l.size).sum(),
        });
    }
    Ok(records)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::layer::tests::tar_of;

    /// Writes a two-layer docker-archive (`test/app:1`) under `dir`: layer 2 replaces
    /// `bin/tool` and whites out `etc/removed`.
    pub(crate) fn docker_archive(dir: &Path) -> PathBuf {
        let l1 = tar_of(&[
            ("bin/", None),
            ("bin/tool", Some("v1")),
            ("etc/", None),
            ("etc/removed", Some("x")),
            ("etc/kept", Some("y")),
        ]);
        let l2 = tar_of(&[("bin/tool", Some("v2")), ("etc/.wh.removed", Some(""))]);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["GREETING=hello"], "Cmd": ["/bin/tool"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&l1).to_string(), Digest::of(&l2).to_string()]},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::json!([{
            "Config": "config.json", "RepoTags": ["test/app:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"],
        }]);
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            ("config.json", config),
            ("l1/layer.tar", l1),
            ("l2/layer.tar", l2),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            builder.append_data(&mut header, path, &data[..]).unwrap();
        }
        let path = dir.join("app.tar");
        fs::write(&path, builder.into_inner().unwrap()).unwrap();
        path
    }

    #[test]
    fn docker_archive_import_names_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let archive = docker_archive(dir.path());
        let records = import(&store, &archive, None, "docker.io").unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].name, "docker.io/test/app:1");
        assert_eq!(
            store.get("docker.io/test/app:1").unwrap().as_ref(),
            Some(&records[0])
        );
        let named = import(&store, &archive, Some("127.0.0.1:5000/other"), "docker.io").unwrap();
        assert_eq!(named[0].name, "127.0.0.1:5000/other:latest");
        assert_eq!(named[0].manifest, records[0].manifest);
        // Nothing is left behind in tmp/.
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn import_refuses_other_files_and_tampered_layers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let not_tar = dir.path().join("x");
        fs::write(&not_tar, "hello").unwrap();
        assert!(matches!(
            import(&store, &not_tar, None, "docker.io"),
            Err(ImageError::Invalid(_))
        ));

        let unpacked = dir.path().join("unpacked");
        tar::Archive::new(File::open(docker_archive(dir.path())).unwrap())
            .unpack(&unpacked)
            .unwrap();
        fs::write(
            unpacked.join("l2/layer.tar"),
            tar_of(&[("evil", Some("!"))]),
        )
        .unwrap();
        let err = import(&store, &unpacked, None, "docker.io").unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(store.list().unwrap().is_empty());
    }
}
