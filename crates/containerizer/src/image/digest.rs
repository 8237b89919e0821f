//! sha256 digests (`sha256:<hex>`), the names of everything in the store, and a writer
//! that hashes what passes through it so content is verified as it is stored.

use super::ImageError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

/// A content digest. Only sha256 is accepted (the algorithm every registry uses).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        let hex = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest { hex }
    }

    /// The 64 hex digits, used as file names in the store.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Fails with [`ImageError::DigestMismatch`] unless `actual` is this digest.
    pub fn verify(&self, actual: &Digest, what: impl fmt::Display) -> Result<(), ImageError> {
        if self == actual {
            Ok(())
        } else {
            Err(ImageError::DigestMismatch {
                what: what.to_string(),
                expected: self.clone(),
                actual: actual.clone(),
            })
        }
    }
}

impl FromStr for Digest {
    type Err = ImageError;
    fn from_str(text: &str) -> Result<Digest, ImageError> {
        let hex = text
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| ImageError::InvalidDigest(text.to_string()))?;
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes everything read through it; [`HashingReader::finish`] gives the digest.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads what is left (so the digest covers the whole stream) and returns the digest
    /// and the number of bytes read.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// An incremental sha256 over chunks (for streamed downloads).
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_known_content() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        let mut hasher = Hasher::default();
        hasher.update(b"ab");
        hasher.update(b"c");
        assert_eq!(hasher.finish(), Digest::of(b"abc"));
    }

    #[test]
    fn parse_accepts_only_sha256_lowercase_hex() {
        assert_eq!(EMPTY.parse::<Digest>().unwrap().to_string(), EMPTY);
        for bad in [
            "sha512:e3b0",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "sha256:../../../../etc/passwd0000000000000000000000000000000000000000",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(ImageError::InvalidDigest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn verify_reports_both_digests() {
        let expected = Digest::of(b"layer");
        let err = expected
            .verify(&Digest::of(b"tampered"), "layer 1")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("layer 1") && text.contains(&expected.to_string()),
            "{text}"
        );
        expected.verify(&Digest::of(b"layer"), "layer 1").unwrap();
    }

    #[test]
    fn hashing_reader_covers_unread_tail() {
        let mut reader = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        reader.read_exact(&mut first).unwrap();
        let (digest, bytes) = reader.finish().unwrap();
        assert_eq!(digest, Digest::of(b"hello world"));
        assert_eq!(bytes, 11);
    }
}
