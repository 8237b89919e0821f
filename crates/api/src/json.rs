//! The JSON conventions of Mesos that serde does not give for free: numbers that arrive as
//! strings, enum names that are dropped when unknown, base64 `bytes`, and compact
//! ASCII-only output (mesoshttp slices RecordIO frames by character count).

use crate::ascii_json::{write_string, AsciiSerializer, RAW_VALUE_TOKEN};
use base64::Engine;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Serializes `value` as compact JSON with every non-ASCII character written as `\uXXXX`.
pub fn to_ascii_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    value
        .serialize(&mut AsciiSerializer::new(&mut out))
        .expect("serializing to a Vec cannot fail for our types");
    out
}

/// Appends `value` to `out` as [`to_ascii_vec`] writes it.
pub fn append_ascii<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    value
        .serialize(&mut AsciiSerializer::new(out))
        .expect("serializing to a Vec cannot fail for our types");
}

/// Appends `text` to `out` as a quoted JSON string, as [`to_ascii_vec`] writes strings.
#[inline]
pub fn append_string(out: &mut Vec<u8>, text: &str) {
    write_string(out, text).expect("writing to a Vec cannot fail");
}

/// JSON text written by hand (a view's hot part), serialized as it is, as serde_json
/// serializes its `RawValue`, without being parsed again. The writer must have written
/// one JSON value, in ASCII as [`to_ascii_vec`] writes.
pub struct JsonText<'a>(pub &'a str);

impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut raw = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        raw.serialize_field(RAW_VALUE_TOKEN, self.0)?;
        raw.end()
    }
}

/// Writes `value` as [`to_ascii_vec`] does, in pieces: each time the text written reaches
/// `chunk_size` bytes it is handed to `emit` (cut anywhere, even inside a string), and the
/// rest at the end. Long texts are sent while they are being written, and never held whole.
pub fn write_chunked<T: Serialize + ?Sized>(
    value: &T,
    chunk_size: usize,
    emit: &mut dyn FnMut(Vec<u8>),
) -> Result<(), serde_json::Error> {
    let mut chunks = Chunks {
        chunk: Vec::with_capacity(chunk_size + CHUNK_SLACK),
        chunk_size,
        emit,
    };
    value.serialize(&mut AsciiSerializer::new(&mut chunks))?;
    if !chunks.chunk.is_empty() {
        (chunks.emit)(chunks.chunk);
    }
    Ok(())
}

/// Room past a chunk's size for the write that fills it, so that it is not grown.
const CHUNK_SLACK: usize = 4096;

/// An `io::Write` that hands over its bytes a chunk at a time.
struct Chunks<'a> {
    chunk: Vec<u8>,
    chunk_size: usize,
    emit: &'a mut dyn FnMut(Vec<u8>),
}

impl Chunks<'_> {
    /// Hands the full chunk over and starts the next.
    #[cold]
    fn hand_over(&mut self) {
        let fresh = Vec::with_capacity(self.chunk_size + CHUNK_SLACK);
        (self.emit)(std::mem::replace(&mut self.chunk, fresh));
    }
}

// A view is written as millions of writes of a few bytes (a quote, a key, a colon):
// inlined, each is a copy into the chunk and a length check.
impl std::io::Write for Chunks<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.chunk.extend_from_slice(bytes);
        if self.chunk.len() >= self.chunk_size {
            self.hand_over();
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a JSON body, turning serde's error into a message that names the problem.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("Failed to parse JSON: {e}"))
}

/// A number that Mesos also accepts as a string (`"0.5"`).
pub fn f64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number or a numeric string")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("'{v}' is not a number")))
        }
    }
    d.deserialize_any(V)
}

/// An integer that Mesos also accepts as a string.
pub fn i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = f64_lenient(d)?;
    if v.fract() != 0.0 {
        return Err(de::Error::custom(format!("{v} is not an integer")));
    }
    Ok(v as i64)
}

/// Optional form of [`f64_lenient`].
pub fn opt_f64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "f64_lenient")] f64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// An integer that may arrive as a string (proto int64 fields).
pub fn opt_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(opt_f64_lenient(d)?.map(|v| v as i64))
}

/// An optional enum whose unknown names are dropped (read as absent), as Mesos does.
pub fn lenient_enum<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Ok(Option::<Lenient<T>>::deserialize(d)?.and_then(|l| l.0))
}

/// A list of enums whose unknown names are dropped.
pub fn lenient_enum_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let read = Option::<Vec<Lenient<T>>>::deserialize(d)?.unwrap_or_default();
    Ok(read.into_iter().filter_map(|l| l.0).collect())
}

/// An enum's name read as the enum, or `None` for an unknown name or any other value
/// (read and dropped).
struct Lenient<T>(Option<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: DeserializeOwned> de::Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an enum's name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient<T>, E> {
                use de::IntoDeserializer;
                let name: de::value::StrDeserializer<de::value::Error> = v.into_deserializer();
                Ok(Lenient(T::deserialize(name).ok()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient<T>, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Lenient<T>, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Protobuf `bytes`: base64 in JSON, raw bytes in memory.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({})", self.to_base64())
    }
}

impl Bytes {
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    pub fn from_base64(text: &str) -> Result<Bytes, String> {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Bytes)
            .map_err(|e| format!("'{text}' is not valid base64: {e}"))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Bytes::from_base64(&text).map_err(de::Error::custom)
    }
}

/// A 16-byte status-update UUID.
pub fn new_uuid_bytes() -> Bytes {
    Bytes(uuid::Uuid::new_v4().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_text_is_the_whole_text_in_pieces_of_about_the_size() {
        let value = serde_json::json!({
            "tasks": (0..100).map(|i| serde_json::json!({"id": i, "name": "t\u{e9}"})).collect::<Vec<_>>()
        });
        let whole = to_ascii_vec(&value);
        for chunk_size in [1, 10, 100, 1000, 100_000] {
            let mut chunks = Vec::new();
            write_chunked(&value, chunk_size, &mut |c| chunks.push(c)).unwrap();
            assert_eq!(chunks.concat(), whole, "{chunk_size}");
            let (last, full) = chunks.split_last().unwrap();
            assert!(!last.is_empty() && last.len() < chunk_size.max(20));
            // Each full chunk ends with the write that reached the size; writes are short.
            assert!(full
                .iter()
                .all(|c| c.len() >= chunk_size && c.len() < chunk_size + 20));
            assert_eq!(full.is_empty(), chunk_size > whole.len(), "{chunk_size}");
        }
    }

    #[test]
    fn ascii_output_escapes_non_ascii() {
        let out = to_ascii_vec(&serde_json::json!({"name": "héllo 😀"}));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"name":"h\u00e9llo \ud83d\ude00"}"#
        );
    }

    #[test]
    fn numbers_as_strings() {
        #[derive(Deserialize)]
        struct S {
            #[serde(deserialize_with = "f64_lenient")]
            v: f64,
        }
        let s: S = serde_json::from_str(r#"{"v":"0.5"}"#).unwrap();
        assert_eq!(s.v, 0.5);
        let s: S = serde_json::from_str(r#"{"v":3}"#).unwrap();
        assert_eq!(s.v, 3.0);
        assert!(serde_json::from_str::<S>(r#"{"v":"x"}"#).is_err());
    }

    #[test]
    fn unknown_enum_names_and_other_values_are_dropped() {
        #[derive(Debug, PartialEq, Deserialize)]
        enum E {
            A,
            B,
        }
        #[derive(Deserialize)]
        struct S {
            #[serde(default, deserialize_with = "lenient_enum")]
            e: Option<E>,
            #[serde(default, deserialize_with = "lenient_enum_vec")]
            v: Vec<E>,
            after: u8,
        }
        let s: S =
            serde_json::from_str(r#"{"e":"B","v":["A","C",1,{"x":[1]},null,"B"],"after":7}"#)
                .unwrap();
        assert_eq!((s.e, s.v, s.after), (Some(E::B), vec![E::A, E::B], 7));
        for other in [
            r#""C""#,
            "1",
            "-1",
            "0.5",
            "true",
            "null",
            "[1,[2]]",
            r#"{"a":{}}"#,
        ] {
            let text = format!(r#"{{"e":{other},"v":[{other}],"after":7}}"#);
            let s: S = serde_json::from_str(&text).expect(&text);
            assert_eq!((s.e, s.v, s.after), (None, vec![], 7), "{text}");
        }
    }

    #[test]
    fn bytes_round_trip() {
        let b = Bytes(vec![1, 2, 3, 255]);
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(j, "\"AQID/w==\"");
        assert_eq!(serde_json::from_str::<Bytes>(&j).unwrap(), b);
        assert!(serde_json::from_str::<Bytes>("\"***\"").is_err());
    }
}
