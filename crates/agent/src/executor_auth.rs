//! Executor authentication, as Mesos's `--authenticate_http_executors` with
//! `--executor_secret_key`: every executor launched gets a [`jwt`] token in
//! `MESOS_EXECUTOR_AUTHENTICATION_TOKEN` whose claims name its framework, executor and
//! container (`fid`, `eid`, `cid`). When authentication is required, `/api/v1/executor`
//! calls must carry it as `Authorization: Bearer <token>`: without one, or with one that
//! does not verify, they are answered 401 with a `WWW-Authenticate` challenge for the
//! realm `mesos-agent-executor`; with a token of another executor (or of an earlier run
//! of this one) 403. Pure: the caller reads the key file and passes the time.

use crate::jwt;
use meseta_api::{ContainerId, ExecutorId, FrameworkId};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The variable that carries an executor's token.
pub const TOKEN_VARIABLE: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";
/// The authentication realm of the executor API.
pub const REALM: &str = "mesos-agent-executor";

/// The claims of an authenticated executor.
pub type Claims = Map<String, Value>;

/// Why the executor secret cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the executor secret key file {0} is empty")]
    Empty(PathBuf),
}

/// A 401's `WWW-Authenticate` challenge (RFC 6750: without error details when the
/// request carried no credentials).
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge(pub String);

/// The agent's executor tokens: how they are signed, and whether calls must carry one.
#[derive(Debug)]
pub struct ExecutorAuth {
    key: jwt::Key,
    key_file: PathBuf,
    required: bool,
}

impl ExecutorAuth {
    /// Signs with `secret` (the bytes of `key_file`, as they are); `required` is
    /// `--authenticate_http_executors`.
    pub fn new(secret: &[u8], key_file: PathBuf, required: bool) -> Result<Self, SecretError> {
        if secret.is_empty() {
            return Err(SecretError::Empty(key_file));
        }
        Ok(ExecutorAuth {
            key: jwt::Key::new(secret),
            key_file,
            required,
        })
    }

    /// Whether executor calls must be authenticated.
    pub fn required(&self) -> bool {
        self.required
    }

    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The token of one executor run.
    pub fn token(&self, fid: &FrameworkId, eid: &ExecutorId, cid: &ContainerId) -> String {
        let claims = json!({"fid": fid.as_str(), "eid": eid.as_str(), "cid": cid.value});
        jwt::encode(&self.key, claims.as_object().expect("an object"))
    }

    /// The claims of the bearer token in `authorization` (the header's value), verified
    /// at `now` (seconds since the epoch), or the challenge to answer with.
    pub fn authenticate(&self, authorization: Option<&str>, now: f64) -> Result<Claims, Challenge> {
        let invalid = |description: String| {
            Challenge(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
            ))
        };
        let Some(authorization) = authorization else {
            return Err(Challenge(format!("Bearer realm=\"{REALM}\"")));
        };
        let parts: Vec<&str> = authorization.split(' ').collect();
        let [scheme, token] = parts[..] else {
            return Err(invalid("Malformed 'Authorization' header".into()));
        };
        if scheme != "Bearer" {
            return Err(invalid(format!("Scheme '{scheme}' unsupported")));
        }
        let claims =
            jwt::decode(&self.key, token, now).map_err(|e| invalid(format!("Invalid JWT: {e}")))?;
        if claims.is_empty() {
            return Err(invalid("JWT claims missing".into()));
        }
        Ok(claims)
    }
}

/// Whether an authenticated executor may make a call for `fid`/`eid` whose current run
/// is `cid`; the 403's message when not.
pub fn verify_claims(
    claims: &Claims,
    fid: &FrameworkId,
    eid: &ExecutorId,
    cid: &ContainerId,
) -> Result<(), String> {
    let holds = |name: &str, value: &str| claims.get(name).and_then(Value::as_str) == Some(value);
    let principal = Value::Object(claims.clone());
    if !holds("fid", &fid.value) {
        return Err(format!(
            "Authenticated principal '{principal}' does not contain an 'fid' claim with the framework ID {fid}, which is set in the call"
        ));
    }
    if !holds("eid", &eid.value) {
        return Err(format!(
            "Authenticated principal '{principal}' does not contain an 'eid' claim with the executor ID {eid}, which is set in the call"
        ));
    }
    if !holds("cid", &cid.value) {
        return Err(format!(
            "Authenticated principal '{principal}' does not contain a 'cid' claim with the correct active ContainerID"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> ExecutorAuth {
        ExecutorAuth::new(b"s3cret", PathBuf::from("/etc/key"), true).unwrap()
    }

    fn ids(f: &str, e: &str, c: &str) -> (FrameworkId, ExecutorId, ContainerId) {
        (FrameworkId::new(f), ExecutorId::new(e), ContainerId::new(c))
    }

    #[test]
    fn an_executors_token_authenticates_it_only() {
        let auth = auth();
        let (f, e, c) = ids("F", "E", "C");
        let token = auth.token(&f, &e, &c);
        let claims = auth
            .authenticate(Some(&format!("Bearer {token}")), 0.0)
            .unwrap();
        assert_eq!(verify_claims(&claims, &f, &e, &c), Ok(()));
        let (f2, e2, c2) = ids("F2", "E2", "C2");
        let fid = verify_claims(&claims, &f2, &e, &c).unwrap_err();
        assert!(
            fid.contains("'fid' claim with the framework ID F2"),
            "{fid}"
        );
        let eid = verify_claims(&claims, &f, &e2, &c).unwrap_err();
        assert!(eid.contains("'eid' claim with the executor ID E2"), "{eid}");
        let cid = verify_claims(&claims, &f, &e, &c2).unwrap_err();
        assert!(
            cid.contains("'cid' claim with the correct active ContainerID"),
            "{cid}"
        );
    }

    #[test]
    fn challenges() {
        let auth = auth();
        assert_eq!(
            auth.authenticate(None, 0.0),
            Err(Challenge("Bearer realm=\"mesos-agent-executor\"".into()))
        );
        let described = |header: &str| match auth.authenticate(Some(header), 0.0) {
            Err(Challenge(c)) => {
                assert!(
                    c.starts_with("Bearer realm=\"mesos-agent-executor\", error=\"invalid_token\""),
                    "{c}"
                );
                c
            }
            Ok(claims) => panic!("{header} authenticated as {claims:?}"),
        };
        assert!(described("Bearer").contains("Malformed"));
        assert!(described("Basic dXNlcjpwYXNz").contains("Scheme 'Basic' unsupported"));
        assert!(described("Bearer a.b.c").contains("Invalid JWT"));
        let other = ExecutorAuth::new(b"other", PathBuf::from("/k"), true).unwrap();
        let (f, e, c) = ids("F", "E", "C");
        let foreign = other.token(&f, &e, &c);
        assert!(described(&format!("Bearer {foreign}")).contains("signature does not match"));
        let empty = jwt::encode(&auth.key, &Map::new());
        assert!(described(&format!("Bearer {empty}")).contains("JWT claims missing"));
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert_eq!(
            ExecutorAuth::new(b"", PathBuf::from("/k"), false).unwrap_err(),
            SecretError::Empty(PathBuf::from("/k"))
        );
    }
}
