//! Pulling images over the Docker Registry HTTP API v2 / OCI distribution: the manifest
//! (an index resolves to linux/amd64), the config and each missing layer, every one
//! verified against its digest as it streams into the store. Blobs are fetched once per
//! digest across concurrent pulls through one [`Registry`] (a lock per digest: a pull
//! that finds another fetching a blob it needs waits for it, then finds it stored);
//! separate processes sharing a store may both fetch one, and each lands it by rename
//! once verified, so either copy is whole. A 401 is answered once per
//! pull with what the registry asks for: a Bearer token from its realm (with our login
//! for that registry when we have one) or Basic auth.

use super::auth::{parse_challenge, Challenge, Credentials};
use super::keyed::KeyedLocks;
use super::manifest::{self, Document, Manifest};
use super::{config, Digest, ImageError, ImageRecord, ImageStore, Reference};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

/// Manifests and configs larger than this are refused.
const MAX_DOCUMENT: usize = 4 << 20;

/// Where images come from and how to log in (`--docker-registry`, `--docker-config`,
/// `--docker-insecure-registries`).
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// The registry of names that do not name one (`docker.io` by default).
    pub default_registry: String,
    /// Registries (`host:port`) spoken to over plain http.
    pub insecure: Vec<String>,
    pub credentials: Credentials,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            default_registry: super::reference::DOCKER_HUB.to_string(),
            insecure: Vec::new(),
            credentials: Credentials::default(),
        }
    }
}

impl RegistryConfig {
    /// Parses a `--docker-registry` value: `host[:port]`, or a URL whose `http://` scheme
    /// also marks the registry insecure.
    pub fn set_default_registry(&mut self, value: &str) {
        let (scheme, rest) = value.split_once("://").unwrap_or(("https", value));
        let host = rest.trim_end_matches('/').to_string();
        if scheme == "http" && !self.insecure.contains(&host) {
            self.insecure.push(host.clone());
        }
        self.default_registry = match host.as_str() {
            "registry-1.docker.io" | "index.docker.io" => super::reference::DOCKER_HUB.to_string(),
            _ => host,
        };
    }
}

/// A registry client (one HTTP connection pool for every pull; its clones share it and
/// the blob fetches under way).
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    config: RegistryConfig,
    fetching: Arc<KeyedLocks<Digest>>,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Registry {
        let http = reqwest::Client::builder()
            .user_agent(concat!("meseta/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("an HTTP client with default settings builds");
        Registry {
            http,
            config,
            fetching: Arc::new(KeyedLocks::new()),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Pulls `reference` into `store` and names it there; returns its record.
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &Reference,
    ) -> Result<ImageRecord, ImageError> {
        let pinning = store.clone();
        let _pin = tokio::task::spawn_blocking(move || pinning.pin())
            .await
            .expect("pinning does not panic")?;
        let mut session = Session {
            http: &self.http,
            credentials: &self.config.credentials,
            reference,
            base: format!(
                "{}://{}/v2/{}",
                if self.config.insecure.contains(&reference.registry) {
                    "http"
                } else {
                    "https"
                },
                reference.api_host(),
                reference.repository
            ),
            authorization: None,
        };
        let accept = manifest::ACCEPTED.join(", ");
        let mut target = reference.manifest_reference();
        let mut expected = reference.digest.clone();
        let (manifest_digest, manifest): (Digest, Manifest) = loop {
            let response = session.get(&format!("manifests/{target}"), &accept).await?;
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = session.body(response, "manifest").await?;
            let digest = Digest::of(&bytes);
            if let Some(expected) = &expected {
                expected.verify(&digest, format!("manifest of {reference}"))?;
            }
            match manifest::parse_document(&bytes, content_type.as_deref())? {
                Document::Index(index) => {
                    let chosen = manifest::select_platform(&index)?;
                    target = chosen.digest.to_string();
                    expected = Some(chosen.digest.clone());
                }
                Document::Manifest(m) => {
                    store.put_blob(&bytes, Some(&digest), "image manifest")?;
                    break (digest, m);
                }
            }
        };
        let config_digest = &manifest.config.digest;
        let fetching = self.fetching.lock(config_digest.clone()).await;
        if !store.has_blob(config_digest) {
            let response = session
                .get(&format!("blobs/{config_digest}"), "*/*")
                .await?;
            let bytes = session.body(response, "image config").await?;
            store.put_blob(&bytes, Some(config_digest), "image config")?;
        }
        drop(fetching);
        config::parse(&store.read_blob(&manifest.config.digest)?)?;
        for (i, layer) in manifest.layers.iter().enumerate() {
            let _fetching = self.fetching.lock(layer.digest.clone()).await;
            if store.has_blob(&layer.digest) {
                continue;
            }
            let mut response = session
                .get(&format!("blobs/{}", layer.digest), "*/*")
                .await?;
            let mut writer = store.blob_writer()?;
            while let Some(chunk) = response.chunk().await.map_err(|e| session.transport(e))? {
                writer.write(&chunk)?;
            }
            writer.commit(&layer.digest, &format!("layer {i} of {reference}"))?;
        }
        let record = ImageRecord {
            name: reference.to_string(),
            manifest: manifest_digest,
            config: manifest.config.digest.clone(),
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            size: manifest.layers.iter().map(|l| l.size).sum(),
        };
        store.tag(record.clone())?;
        Ok(record)
    }
}

/// One pull's requests, with the authorization it earned.
struct Session<'a> {
    http: &'a reqwest::Client,
    credentials: &'a Credentials,
    reference: &'a Reference,
    base: String,
    authorization: Option<HeaderValue>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Session<'_> {
    fn registry_error(&self, message: String) -> ImageError {
        ImageError::Registry {
            registry: self.reference.registry.clone(),
            message,
        }
    }

    fn unauthorized(&self, message: String) -> ImageError {
        ImageError::Unauthorized {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
            message,
        }
    }

    fn transport(&self, error: reqwest::Error) -> ImageError {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        self.registry_error(message)
    }

    /// GETs `path` under the repository, authenticating once on a 401.
    async fn get(&mut self, path: &str, accept: &str) -> Result<Response, ImageError> {
        let url = format!("{}/{path}", self.base);
        let mut authenticated = false;
        loop {
            let mut request = self.http.get(&url).header(ACCEPT, accept);
            if let Some(auth) = &self.authorization {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let response = request.send().await.map_err(|e| self.transport(e))?;
            match response.status() {
                status if status.is_success() => return Ok(response),
                StatusCode::UNAUTHORIZED if !authenticated => {
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge)
                        .ok_or_else(|| {
                            self.unauthorized("HTTP 401 without a challenge we understand".into())
                        })?;
                    self.authenticate(challenge).await?;
                    authenticated = true;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let body = response.text().await.unwrap_or_default();
                    let login = match self.credentials.login(&self.reference.registry) {
                        Some(login) => format!("the login of '{}' was refused", login.username),
                        None => {
                            "no login is configured for this registry (--docker-config)".to_string()
                        }
                    };
                    return Err(self.unauthorized(format!("{login}: {}", snippet(&body))));
                }
                StatusCode::NOT_FOUND => {
                    let body = response.text().await.unwrap_or_default();
                    return Err(self.registry_error(format!(
                        "{} not found in {} (HTTP 404): {}",
                        path,
                        self.reference.repository,
                        snippet(&body)
                    )));
                }
                status => {
                    let body = response.text().await.unwrap_or_default();
                    return Err(self
                        .registry_error(format!("GET {url}: HTTP {status}: {}", snippet(&body))));
                }
            }
        }
    }

    async fn authenticate(&mut self, challenge: Challenge) -> Result<(), ImageError> {
        let login = self.credentials.login(&self.reference.registry);
        let value = match challenge {
            Challenge::Basic => login
                .ok_or_else(|| {
                    self.unauthorized(
                        "it asks for Basic auth and no login is configured (--docker-config)"
                            .into(),
                    )
                })?
                .basic(),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope
                    .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let mut query = vec![("scope", scope)];
                if let Some(service) = service {
                    query.push(("service", service));
                }
                let mut request = self.http.get(&realm).query(&query);
                if let Some(login) = login {
                    request = request.header(AUTHORIZATION, login.basic());
                }
                let response = request.send().await.map_err(|e| self.transport(e))?;
                if !response.status().is_success() {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    return Err(self.unauthorized(format!(
                        "the token service {realm} answered HTTP {status}: {}",
                        snippet(&body)
                    )));
                }
                let bytes = self.body(response, "token").await?;
                let answer: TokenAnswer = serde_json::from_slice(&bytes)
                    .map_err(|e| ImageError::Json("registry token".into(), e))?;
                let token = answer
                    .token
                    .or(answer.access_token)
                    .ok_or_else(|| self.unauthorized("the token service gave no token".into()))?;
                format!("Bearer {token}")
            }
        };
        let value = HeaderValue::from_str(&value)
            .map_err(|_| self.unauthorized("the credentials are not a valid header".into()))?;
        self.authorization = Some(value);
        Ok(())
    }

    /// A whole (small) response body.
    async fn body(&self, mut response: Response, what: &str) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_DOCUMENT {
                return Err(
                    self.registry_error(format!("the {what} is larger than {MAX_DOCUMENT} bytes"))
                );
            }
        }
        Ok(bytes)
    }
}

/// The start of an error body, for messages.
fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(300) {
        Some((end, _)) => format!("{}...", &body[..end]),
        None => body.to_string(),
    }
}
