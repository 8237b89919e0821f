//! RecordIO framing of event streams: `<decimal length>\n<payload>`, repeated.

use serde::Serialize;
use thiserror::Error;

/// Largest record we accept from a peer (a full GET_STATE can be large).
pub const MAX_RECORD_LEN: usize = 256 * 1024 * 1024;

/// Encodes one record: compact ASCII JSON behind its byte length.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let payload = crate::json::to_ascii_vec(value);
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&payload);
    out
}

/// Why a RecordIO stream could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordIoError {
    /// The length prefix is not a decimal number.
    #[error("invalid RecordIO length prefix {0:?}")]
    BadLength(String),
    /// The length prefix is zero or beyond [`MAX_RECORD_LEN`].
    #[error("RecordIO record length {0} is out of range")]
    LengthOutOfRange(usize),
}

/// Incremental decoder: feed bytes as they arrive, take whole records out.
#[derive(Default, Debug)]
pub struct Decoder {
    buffer: Vec<u8>,
    start: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Takes the next whole record, if one has arrived.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, RecordIoError> {
        let pending = &self.buffer[self.start..];
        let Some(newline) = pending.iter().position(|&b| b == b'\n') else {
            if pending.len() > 20 {
                return Err(RecordIoError::BadLength(
                    String::from_utf8_lossy(&pending[..20]).into_owned(),
                ));
            }
            return Ok(None);
        };
        let prefix = &pending[..newline];
        let text = std::str::from_utf8(prefix)
            .map_err(|_| RecordIoError::BadLength(String::from_utf8_lossy(prefix).into_owned()))?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RecordIoError::BadLength(text.to_string()));
        }
        let len: usize = text
            .parse()
            .map_err(|_| RecordIoError::BadLength(text.to_string()))?;
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(RecordIoError::LengthOutOfRange(len));
        }
        let body_start = newline + 1;
        if pending.len() < body_start + len {
            return Ok(None);
        }
        let record = pending[body_start..body_start + len].to_vec();
        self.start += body_start + len;
        if self.start > 64 * 1024 && self.start * 2 > self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(record))
    }
}

/// A record read as a `T`: the value, or why a well-framed JSON record is not one (for
/// example an event type this version does not know, which readers skip as Mesos does).
#[derive(Debug)]
pub enum Typed<T> {
    Value(T),
    Unknown(String),
}

/// Why a typed stream cannot be read on: bad framing, or a record that is not JSON.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error(transparent)]
    Framing(#[from] RecordIoError),
    #[error("a record is not JSON: {0}")]
    NotJson(String),
}

/// Incremental decoder of a RecordIO stream of JSON `T`s.
#[derive(Debug)]
pub struct TypedDecoder<T> {
    decoder: Decoder,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T> Default for TypedDecoder<T> {
    fn default() -> Self {
        TypedDecoder {
            decoder: Decoder::new(),
            _records: std::marker::PhantomData,
        }
    }
}

impl<T: serde::de::DeserializeOwned> TypedDecoder<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.decoder.feed(bytes);
    }

    /// Takes the next whole record, if one has arrived.
    pub fn next_record(&mut self) -> Result<Option<Typed<T>>, StreamError> {
        let Some(record) = self.decoder.next_record()? else {
            return Ok(None);
        };
        match serde_json::from_slice::<T>(&record) {
            Ok(value) => Ok(Some(Typed::Value(value))),
            // Decoded straight to `T` (a `Value` tree first cost as much again); a record
            // that is not a `T` is an unknown one only if it is JSON at all, which the
            // typed reading, stopped at its first mismatch, may not have seen.
            Err(mismatch) => match serde_json::from_slice::<serde::de::IgnoredAny>(&record) {
                Ok(_) => Ok(Some(Typed::Unknown(mismatch.to_string()))),
                Err(e) => Err(StreamError::NotJson(e.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_length_prefix() {
        assert_eq!(
            encode(&serde_json::json!({"type":"HEARTBEAT"})),
            b"20\n{\"type\":\"HEARTBEAT\"}".to_vec()
        );
    }

    #[test]
    fn typed_records_and_unknown_ones() {
        let mut d = TypedDecoder::<crate::scheduler::Event>::new();
        d.feed(&encode(&serde_json::json!({"type":"HEARTBEAT"})));
        d.feed(&encode(&serde_json::json!({"type":"NEW_THING"})));
        d.feed(b"3\nabc");
        // Not an event from its first field, and not JSON further on.
        d.feed(b"10\n{\"type\":5,");
        assert!(matches!(
            d.next_record(),
            Ok(Some(Typed::Value(crate::scheduler::Event::Heartbeat)))
        ));
        assert!(matches!(d.next_record(), Ok(Some(Typed::Unknown(_)))));
        assert!(matches!(d.next_record(), Err(StreamError::NotJson(_))));
        assert!(matches!(d.next_record(), Err(StreamError::NotJson(_))));
        assert!(matches!(d.next_record(), Ok(None)));
    }

    #[test]
    fn rejects_garbage_and_zero() {
        let mut d = Decoder::new();
        d.feed(b"x\n");
        assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
        let mut d = Decoder::new();
        d.feed(b"0\n");
        assert_eq!(d.next_record(), Err(RecordIoError::LengthOutOfRange(0)));
        let mut d = Decoder::new();
        d.feed(b"123456789012345678901234");
        assert!(d.next_record().is_err());
    }

    proptest! {
        #[test]
        fn split_anywhere_round_trips(records in proptest::collection::vec("[ -~]{1,40}", 1..20), cut in 1usize..50) {
            let mut wire = Vec::new();
            for r in &records {
                wire.extend_from_slice(&encode(r));
            }
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for chunk in wire.chunks(cut) {
                d.feed(chunk);
                while let Some(rec) = d.next_record().unwrap() {
                    out.push(serde_json::from_slice::<String>(&rec).unwrap());
                }
            }
            prop_assert_eq!(out, records);
        }
    }
}
