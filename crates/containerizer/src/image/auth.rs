//! Registry authentication: parsing `WWW-Authenticate` challenges (Bearer token or Basic)
//! and reading credentials from a docker `config.json` (`auths`).

use super::reference::DOCKER_HUB;
use super::ImageError;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What a registry asked for in its 401.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm` (for `service` and `scope`).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Send a user and password with every request.
    Basic,
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// `key="value", key=value` pairs; quoted values may hold commas.
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = next.trim_start().trim_start_matches(',');
    }
    params
}

/// A user and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, <password>)", self.username)
    }
}

impl Login {
    /// The `Authorization` header value for Basic auth.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// Logins by registry (`host[:port]`, Docker Hub as `docker.io`).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    logins: BTreeMap<String, Login>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// Reads the `auths` of a docker `config.json`.
    pub fn from_docker_config(path: &Path) -> Result<Credentials, ImageError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
        Credentials::parse(&bytes).map_err(|e| match e {
            ImageError::Json(_, e) => ImageError::Json(path.display().to_string(), e),
            other => other,
        })
    }

    fn parse(bytes: &[u8]) -> Result<Credentials, ImageError> {
        let config: DockerConfig = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Json("docker config".into(), e))?;
        let mut logins = BTreeMap::new();
        for (key, auth) in config.auths {
            let login = match (auth.auth, auth.username, auth.password) {
                (Some(encoded), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
                        .ok_or_else(|| {
                            ImageError::Invalid(format!("the docker config's auth for '{key}' is not base64 of user:password"))
                        })?;
                    Login {
                        username: decoded.0,
                        password: decoded.1,
                    }
                }
                (None, Some(username), Some(password)) => Login { username, password },
                _ => continue,
            };
            logins.insert(registry_key(&key), login);
        }
        Ok(Credentials { logins })
    }

    /// The login for `registry`, if any.
    pub fn login(&self, registry: &str) -> Option<&Login> {
        self.logins.get(&registry_key(registry))
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`.
fn registry_key(key: &str) -> String {
    let host = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "a bearer challenge needs a realm"
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config_logins_by_registry() {
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("hub:secret")},
            "127.0.0.1:5000": {"username": "u", "password": "p:w"},
            "empty.example": {},
        }});
        let creds = Credentials::parse(&serde_json::to_vec(&config).unwrap()).unwrap();
        assert_eq!(creds.login("docker.io").unwrap().username, "hub");
        let local = creds.login("127.0.0.1:5000").unwrap();
        assert_eq!(
            local.basic(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("u:p:w")
            )
        );
        assert!(creds.login("empty.example").is_none());
        assert!(
            !format!("{local:?}").contains("p:w"),
            "passwords stay out of logs"
        );

        let bad = br#"{"auths": {"x": {"auth": "!!"}}}"#;
        assert!(matches!(
            Credentials::parse(bad),
            Err(ImageError::Invalid(_))
        ));
    }
}
