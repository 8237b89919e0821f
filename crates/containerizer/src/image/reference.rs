//! Image references, `[registry[:port]/]repository[:tag][@digest]`, parsed and
//! normalized the way Docker does: a name without a registry belongs to the default
//! registry, Docker Hub's one-component names live under `library/`, and no tag means
//! `latest`. The normalized text is the image's name in the store.

use super::{Digest, ImageError};
use std::fmt;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, e.g. `docker.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses `text`; a name without a registry gets `default_registry`.
    pub fn parse(text: &str, default_registry: &str) -> Result<Reference, ImageError> {
        let invalid = |why: &str| ImageError::InvalidReference(text.to_string(), why.to_string());
        let (name, digest) = match text.rsplit_once('@') {
            Some((name, digest)) => (
                name,
                Some(
                    digest
                        .parse::<Digest>()
                        .map_err(|e| invalid(&e.to_string()))?,
                ),
            ),
            None => (text, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest)
            }
            _ => (default_registry.to_string(), name),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (path, None),
        };
        if repository.is_empty() {
            return Err(invalid("the repository name is empty"));
        }
        for component in repository.split('/') {
            let valid = !component.is_empty()
                && component
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
                && component.as_bytes()[0].is_ascii_alphanumeric();
            if !valid {
                return Err(invalid(
                    "repository components must be lowercase letters, digits, '.', '_' or '-'",
                ));
            }
        }
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(invalid("a tag is 1-128 letters, digits, '.', '_' or '-'"));
            }
        }
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if registry.is_empty() {
            return Err(invalid("the registry name is empty"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest URL names: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host that serves the registry API (Docker Hub's API is not at `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        Reference::parse(text, DOCKER_HUB).unwrap().to_string()
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            Reference::parse("busybox", DOCKER_HUB).unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn registries_with_ports_and_digests() {
        let digest = Digest::of(b"m");
        let r = Reference::parse(&format!("127.0.0.1:5000/a/b:v1@{digest}"), DOCKER_HUB).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_reference(), digest.to_string());
        let r = Reference::parse(&format!("localhost/app@{digest}"), DOCKER_HUB).unwrap();
        assert_eq!((r.registry.as_str(), r.tag.as_deref()), ("localhost", None));
        assert_eq!(r.api_host(), "localhost");
    }

    #[test]
    fn default_registry_applies_without_library_prefix() {
        assert_eq!(
            Reference::parse("busybox", "127.0.0.1:5000")
                .unwrap()
                .to_string(),
            "127.0.0.1:5000/busybox:latest"
        );
        // A first component without '.', ':' or "localhost" is a path, not a host.
        assert_eq!(
            Reference::parse("team/busybox:x", "reg.example:443")
                .unwrap()
                .to_string(),
            "reg.example:443/team/busybox:x"
        );
    }

    #[test]
    fn invalid_references_are_refused_with_a_reason() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "busybox@sha256:12",
            "/x",
        ] {
            let err = Reference::parse(bad, DOCKER_HUB).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidReference(..)),
                "{bad}: {err}"
            );
        }
    }
}
