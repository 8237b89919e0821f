//! JSON Web Tokens signed with HMAC-SHA256 (RFC 7519, `HS256`), as Mesos's executor
//! secret generator makes them and its JWT authenticator reads them: a
//! `{"alg":"HS256","typ":"JWT"}` header and a claims object, base64url without padding,
//! then the signature of `header.claims`. Pure: the caller passes the key and the time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{json, Map, Value};
use thiserror::Error;

/// Why a token was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not `header.claims.signature`.
    #[error("Expected 3 dot-separated parts, found {0}")]
    Parts(usize),
    /// A part is not base64url or not a JSON object.
    #[error("Failed to decode the token's {0}")]
    Encoding(&'static str),
    /// The header names another type or algorithm (`none` included).
    #[error("Token header must be {{\"alg\":\"HS256\",\"typ\":\"JWT\"}}, found {0}")]
    Header(String),
    /// The signature is not the key's.
    #[error("Token signature does not match")]
    Signature,
    /// The `exp` claim is past.
    #[error("Token has expired")]
    Expired,
}

/// A signing key: the secret's bytes exactly as given.
pub struct Key(hmac::Key);

impl Key {
    pub fn new(secret: &[u8]) -> Key {
        Key(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

/// A signed token carrying `claims`.
pub fn encode(key: &Key, claims: &Map<String, Value>) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    let signature = hmac::sign(&key.0, signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// The claims of a token signed with `key` that has not expired at `now` (seconds since
/// the epoch; a token without `exp` does not expire).
pub fn decode(key: &Key, token: &str, now: f64) -> Result<Map<String, Value>, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_part, claims_part, signature] = parts[..] else {
        return Err(JwtError::Parts(parts.len()));
    };
    let header = object(header_part, "header")?;
    let expected = (Some("HS256"), Some("JWT"));
    let found = (
        header.get("alg").and_then(Value::as_str),
        header.get("typ").and_then(Value::as_str),
    );
    if found != expected {
        return Err(JwtError::Header(Value::Object(header).to_string()));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Encoding("signature"))?;
    let signed = &token[..header_part.len() + 1 + claims_part.len()];
    hmac::verify(&key.0, signed.as_bytes(), &signature).map_err(|_| JwtError::Signature)?;
    let claims = object(claims_part, "claims")?;
    match claims.get("exp").map(Value::as_f64) {
        None => Ok(claims),
        Some(Some(exp)) if exp > now => Ok(claims),
        Some(_) => Err(JwtError::Expired),
    }
}

fn object(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Encoding(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Encoding(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn round_trip() {
        let key = Key::new(b"secret");
        let c = claims(json!({"fid": "F", "eid": "E", "cid": "C"}));
        let token = encode(&key, &c);
        assert_eq!(token.matches('.').count(), 2);
        assert!(!token.contains('='), "no padding: {token}");
        assert_eq!(decode(&key, &token, 0.0), Ok(c));
    }

    #[test]
    fn matches_an_independent_hs256_token() {
        // The example token jwt.io shows: HS256 with the key "your-256-bit-secret".
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
            eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
            SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let c = decode(&Key::new(b"your-256-bit-secret"), token, 0.0).unwrap();
        assert_eq!(c["name"], "John Doe");
        assert_eq!(
            decode(&Key::new(b"another secret"), token, 0.0),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn refuses_tampering_and_other_algorithms() {
        let key = Key::new(b"k");
        let token = encode(&key, &claims(json!({"eid": "mine"})));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"eid":"theirs"}"#);
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(decode(&key, &tampered, 0.0), Err(JwtError::Signature));
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none}.{}.", parts[1]);
        assert!(matches!(
            decode(&key, &unsigned, 0.0),
            Err(JwtError::Header(_))
        ));
        assert_eq!(decode(&key, "abc", 0.0), Err(JwtError::Parts(1)));
        assert_eq!(
            decode(&key, "!!.e30.sig", 0.0),
            Err(JwtError::Encoding("header"))
        );
        let bad_signature = format!("{}.{}.@@", parts[0], parts[1]);
        assert_eq!(
            decode(&key, &bad_signature, 0.0),
            Err(JwtError::Encoding("signature"))
        );
    }

    #[test]
    fn expiry() {
        let key = Key::new(b"k");
        let token = encode(&key, &claims(json!({"exp": 100})));
        assert!(decode(&key, &token, 99.5).is_ok());
        assert_eq!(decode(&key, &token, 100.0), Err(JwtError::Expired));
        let token = encode(&key, &claims(json!({"exp": "soon"})));
        assert_eq!(decode(&key, &token, 0.0), Err(JwtError::Expired));
    }
}
