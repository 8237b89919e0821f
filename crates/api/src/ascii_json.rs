//! The serializer behind [`crate::json::to_ascii_vec`] and [`crate::json::write_chunked`]:
//! compact JSON, ASCII only (a non-ASCII character is written as `\uXXXX`, its UTF-16
//! units, as mesoshttp needs), otherwise byte for byte what serde_json writes. Strings
//! (ids, names, keys: most of a state view) are checked eight bytes at a time, and copied
//! whole when plain (most are) or escaped run by run, where serde_json looks each byte
//! up. Numbers are written by serde_json's formatter, and a `serde_json::value::RawValue`
//! is written as its text, as serde_json does (a resource list that thousands of tasks
//! share is written once).

use serde::ser::{self, Impossible, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::Error;
use std::io::Write;

/// The struct name and field under which serde_json's `RawValue` hands over its text.
pub const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Writes JSON to `W`.
pub struct AsciiSerializer<W> {
    out: W,
}

impl<W: Write> AsciiSerializer<W> {
    pub fn new(out: W) -> Self {
        AsciiSerializer { out }
    }

    #[inline]
    fn raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes).map_err(Error::io)
    }

    /// Writes what serde_json's formatter writes (numbers, byte arrays).
    fn formatted(
        &mut self,
        write: impl FnOnce(&mut W) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        write(&mut self.out).map_err(Error::io)
    }

    /// Starts a list or object (`open`), inside `{"variant":` for an enum's variant.
    fn open(
        &mut self,
        variant: Option<&str>,
        open: &[u8],
        close: &'static [u8],
    ) -> Result<Compound<'_, W>, Error> {
        if let Some(variant) = variant {
            self.raw(b"{")?;
            self.string(variant)?;
            self.raw(b":")?;
        }
        self.raw(open)?;
        Ok(Compound {
            ser: self,
            first: true,
            close,
        })
    }

    /// A quoted, escaped string.
    #[inline]
    fn string(&mut self, text: &str) -> Result<(), Error> {
        write_string(&mut self.out, text).map_err(Error::io)
    }
}

/// Writes `text` as a quoted JSON string, escaped as [`AsciiSerializer`] escapes it.
#[inline]
pub fn write_string<W: Write>(out: &mut W, text: &str) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    if is_plain_text(text.as_bytes()) {
        out.write_all(text.as_bytes())?;
    } else {
        write_escaped(out, text)?;
    }
    out.write_all(b"\"")
}

/// Whether no byte of `bytes` needs escaping: most texts (ids, names, keys) are plain. Read
/// eight bytes at a time, the last eight (or four) overlapping the ones before.
#[inline]
fn is_plain_text(bytes: &[u8]) -> bool {
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    // Four bytes with four spaces above them.
    let half = |at: usize| {
        let low = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        u64::from(low) | (u64::from(u32::from_le_bytes([b' '; 4])) << 32)
    };
    let len = bytes.len();
    if len >= 8 {
        (0..len / 8).all(|i| !needs_escape(word(i * 8))) && !needs_escape(word(len - 8))
    } else if len >= 4 {
        !needs_escape(half(0)) && !needs_escape(half(len - 4))
    } else {
        bytes.iter().all(|&b| is_plain(b))
    }
}

/// Whether any of the eight bytes of `word` needs escaping or is not ASCII: a control
/// character, `"`, `\` or a byte from 0x80.
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (control
        | has_zero(word ^ (ONES * b'"' as u64))
        | has_zero(word ^ (ONES * b'\\' as u64))
        | (word & HIGH))
        != 0
}

#[inline]
fn is_plain(byte: u8) -> bool {
    (0x20..0x80).contains(&byte) && byte != b'"' && byte != b'\\'
}

/// Writes `text` escaped (without quotes), copying each plain run whole.
#[inline]
fn write_escaped<W: Write>(out: &mut W, text: &str) -> std::io::Result<()> {
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        if is_plain(byte) {
            i += 1;
            continue;
        }
        out.write_all(&bytes[start..i])?;
        if byte < 0x80 {
            write_ascii_escape(out, byte)?;
            i += 1;
        } else {
            let c = text[i..].chars().next().expect("a character starts here");
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(out, "\\u{unit:04x}")?;
            }
            i += c.len_utf8();
        }
        start = i;
    }
    out.write_all(&bytes[start..])
}

/// The escape of a control character, `"` or `\`, as serde_json writes it.
#[cold]
fn write_ascii_escape<W: Write>(out: &mut W, byte: u8) -> std::io::Result<()> {
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        _ => return write!(out, "\\u{byte:04x}"),
    };
    out.write_all(&[b'\\', short])
}

/// A list or object being written: whether an element was written yet.
pub struct Compound<'a, W> {
    ser: &'a mut AsciiSerializer<W>,
    first: bool,
    /// The closing text: `]`, `}`, or `]}` / `}}` for a variant.
    close: &'static [u8],
}

impl<W: Write> Compound<'_, W> {
    #[inline]
    fn separate(&mut self) -> Result<(), Error> {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.ser.raw(b",")
        }
    }

    #[inline]
    fn key(&mut self, key: &str) -> Result<(), Error> {
        self.separate()?;
        self.ser.string(key)?;
        self.ser.raw(b":")
    }

    fn finish(self) -> Result<(), Error> {
        self.ser.raw(self.close)
    }
}

/// A `RawValue` being written: its one field is its text.
pub struct Raw<'a, W> {
    ser: &'a mut AsciiSerializer<W>,
}

/// The `serialize_` methods of the integer types, each writing its number with serde_json's
/// formatter through `$write` (as it is, or quoted as a map key).
macro_rules! integers {
    ($write:ident) => {
        integers!($write: serialize_i8 i8 write_i8, serialize_i16 i16 write_i16,
            serialize_i32 i32 write_i32, serialize_i64 i64 write_i64,
            serialize_i128 i128 write_i128, serialize_u8 u8 write_u8,
            serialize_u16 u16 write_u16, serialize_u32 u32 write_u32,
            serialize_u64 u64 write_u64, serialize_u128 u128 write_u128);
    };
    ($write:ident: $($method:ident $ty:ident $formatter_write:ident),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Error> {
            self.$write(|w| CompactFormatter.$formatter_write(w, v)).map(drop)
        }
    )*};
}

impl<'a, W: Write> ser::Serializer for &'a mut AsciiSerializer<W> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, W>;
    type SerializeTuple = Compound<'a, W>;
    type SerializeTupleStruct = Compound<'a, W>;
    type SerializeTupleVariant = Compound<'a, W>;
    type SerializeMap = Compound<'a, W>;
    type SerializeStruct = StructWriter<'a, W>;
    type SerializeStructVariant = Compound<'a, W>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.raw(if v { b"true" } else { b"false" })
    }
    integers!(formatted);
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if !v.is_finite() {
            return self.raw(b"null");
        }
        self.formatted(|w| CompactFormatter.write_f32(w, v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if !v.is_finite() {
            return self.raw(b"null");
        }
        self.formatted(|w| CompactFormatter.write_f64(w, v))
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.string(v.encode_utf8(&mut [0u8; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.string(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.formatted(|w| CompactFormatter.write_byte_array(w, v))
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.raw(b"{")?;
        self.string(variant)?;
        self.raw(b":")?;
        value.serialize(&mut *self)?;
        self.raw(b"}")
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, W>, Error> {
        self.open(None, b"[", b"]")
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, W>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, W>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, W>, Error> {
        self.open(Some(variant), b"[", b"]}")
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, W>, Error> {
        self.open(None, b"{", b"}")
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<StructWriter<'a, W>, Error> {
        if name == RAW_VALUE_TOKEN {
            return Ok(StructWriter::Raw(Raw { ser: self }));
        }
        Ok(StructWriter::Fields(self.serialize_map(Some(len))?))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, W>, Error> {
        self.open(Some(variant), b"{", b"}}")
    }
}

impl<W: Write> ser::SerializeSeq for Compound<'_, W> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.separate()?;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// Tuples, tuple structs and tuple variants are written as lists.
macro_rules! written_as_a_list {
    ($($kind:ident :: $add:ident),*) => {$(
        impl<W: Write> ser::$kind for Compound<'_, W> {
            type Ok = ();
            type Error = Error;
            fn $add<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
                ser::SerializeSeq::serialize_element(self, value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )*};
}

written_as_a_list!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<W: Write> ser::SerializeMap for Compound<'_, W> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        self.separate()?;
        key.serialize(Text {
            ser: &mut *self.ser,
            raw: false,
        })?;
        self.ser.raw(b":")
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl<W: Write> ser::SerializeStructVariant for Compound<'_, W> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.key(key)?;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// A struct being written: its fields as an object, or a `RawValue`'s text.
pub enum StructWriter<'a, W> {
    Fields(Compound<'a, W>),
    Raw(Raw<'a, W>),
}

impl<W: Write> ser::SerializeStruct for StructWriter<'_, W> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        match self {
            StructWriter::Fields(fields) => {
                ser::SerializeStructVariant::serialize_field(fields, key, value)
            }
            StructWriter::Raw(raw) => value.serialize(Text {
                ser: &mut *raw.ser,
                raw: true,
            }),
        }
    }
    fn end(self) -> Result<(), Error> {
        match self {
            StructWriter::Fields(fields) => fields.finish(),
            StructWriter::Raw(_) => Ok(()),
        }
    }
}

fn key_must_be_a_string() -> Error {
    ser::Error::custom("key must be a string")
}

/// Writes a map key (a string, or a number or boolean in quotes, as serde_json does), or
/// with `raw` a `RawValue`'s text as it is (a `RawValue` hands it over as a string).
struct Text<'a, W> {
    ser: &'a mut AsciiSerializer<W>,
    raw: bool,
}

impl<W: Write> Text<'_, W> {
    fn quoted(self, write: impl FnOnce(&mut W) -> std::io::Result<()>) -> Result<Self, Error> {
        let this = self.key()?;
        this.ser.raw(b"\"")?;
        this.ser.formatted(write)?;
        this.ser.raw(b"\"")?;
        Ok(this)
    }

    /// Itself when it writes a key; an error for anything but a string when it writes raw.
    fn key(self) -> Result<Self, Error> {
        if self.raw {
            Err(ser::Error::custom(
                "a RawValue hands over its text as a string",
            ))
        } else {
            Ok(self)
        }
    }
}

impl<W: Write> ser::Serializer for Text<'_, W> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        if self.raw {
            self.ser.raw(v.as_bytes())
        } else {
            self.ser.string(v)
        }
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.key()?.ser.string(v.encode_utf8(&mut [0u8; 4]))
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.key()?
            .ser
            .raw(if v { b"\"true\"" } else { b"\"false\"" })
    }
    integers!(quoted);
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(ser::Error::custom("float key must be finite"));
        }
        self.quoted(|w| CompactFormatter.write_f32(w, v)).map(drop)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(ser::Error::custom("float key must be finite"));
        }
        self.quoted(|w| CompactFormatter.write_f64(w, v)).map(drop)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.key()?.ser.string(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self.key()?)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
        value.serialize(self.key()?)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    fn ours<T: Serialize + ?Sized>(value: &T) -> String {
        let mut out = Vec::new();
        value
            .serialize(&mut AsciiSerializer::new(&mut out))
            .unwrap();
        String::from_utf8(out).expect("ASCII")
    }

    /// serde_json's compact text with each non-ASCII character as its `\uXXXX` units.
    fn reference<T: Serialize + ?Sized>(value: &T) -> String {
        let mut out = String::new();
        for c in serde_json::to_string(value).unwrap().chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0u16; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }

    fn text() -> impl Strategy<Value = String> {
        let chars = prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => proptest::char::range('\u{0}', '\u{7f}'),
            1 => prop::sample::select(vec!['"', '\\', '\u{8}', '\u{c}', '\n', '\r', '\t', '\u{1f}']),
            1 => any::<char>(),
        ];
        // Up to 100 characters, some all plain (copied whole, the others escaped).
        prop_oneof![
            proptest::collection::vec(chars, 0..100).prop_map(String::from_iter),
            "[a-zA-Z0-9_ .-]{0,100}",
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                proptest::collection::btree_map(text(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_value_is_written_as_serde_json_writes_it_in_ascii(v in value()) {
            prop_assert_eq!(ours(&v), reference(&v));
        }

        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(s in text()) {
            prop_assert_eq!(ours(&s), reference(&s));
        }
    }

    #[derive(Serialize)]
    enum Kind {
        Unit,
        Newtype(u8),
        Tuple(i32, f32),
        Fields { a: Option<char>, b: () },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Everything<'a> {
        kinds: Vec<Kind>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        #[serde(rename = "type")]
        renamed: &'a str,
        bytes: &'a [u8],
        tuple: (i8, u128, i128),
        numbers_as_keys: BTreeMap<i64, bool>,
        bools_as_keys: BTreeMap<bool, Unit>,
        not_finite: [f64; 3],
        raw: Box<serde_json::value::RawValue>,
    }

    #[test]
    fn every_serde_shape_is_written_as_serde_json_writes_it() {
        let raw = serde_json::value::RawValue::from_string(r#"{"kept": [1, "as is"]}"#.into());
        let everything = Everything {
            kinds: vec![
                Kind::Unit,
                Kind::Newtype(7),
                Kind::Tuple(-3, 0.5),
                Kind::Fields {
                    a: Some('é'),
                    b: (),
                },
            ],
            skipped: None,
            renamed: "naïve \"quoted\"\n",
            bytes: &[0, 255],
            tuple: (-1, u128::MAX, i128::MIN),
            numbers_as_keys: BTreeMap::from([(-5, true), (12, false)]),
            bools_as_keys: BTreeMap::from([(true, Unit)]),
            not_finite: [f64::NAN, f64::INFINITY, 1e300],
            raw: raw.unwrap(),
        };
        let text = ours(&everything);
        assert_eq!(text, reference(&everything));
        assert!(text.contains(r#""raw":{"kept": [1, "as is"]}"#), "{text}");
    }

    #[test]
    fn keys_that_are_not_strings_or_numbers_are_refused() {
        let mut out = Vec::new();
        let map = BTreeMap::from([(vec![1], 2)]);
        let err = map
            .serialize(&mut AsciiSerializer::new(&mut out))
            .unwrap_err();
        assert!(err.to_string().contains("key must be a string"), "{err}");
        assert_eq!(
            ours(&json!({"a": {"b": [1, 2.5, null]}})),
            r#"{"a":{"b":[1,2.5,null]}}"#
        );
    }
}
