//! The `tagged_union!` macro: protobuf "union" messages in Mesos JSON.
//!
//! Mesos writes a union as `{"type":"OFFERS","offers":{…}}`: the `type` names the variant
//! and the payload sits under the variant's name in lower case. A variant may carry a
//! required payload (`Name(T) = "NAME" in "name"`, absent → error), an optional payload
//! (`Name(opt T) = …`, absent → `None`), or none (`Name = "NAME"`). Extra top-level fields
//! (such as `framework_id`) belong to the enclosing struct, not to the union.

use serde::de::{self, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// What [`deserialize_union`] needs of a union: written by `tagged_union!`.
#[doc(hidden)]
pub trait UnionRead: Union + Sized {
    /// What the union is called in messages (`"scheduler call"`).
    const WHAT: &'static str;
    /// When `key` is the payload field of one of the variants (each has its own),
    /// reads the value and returns that variant with it; reads nothing otherwise.
    fn read_payload<'de, A: MapAccess<'de>>(
        key: &str,
        map: &mut A,
    ) -> Result<Option<Self>, A::Error>;
    /// The variant named `tag` when its payload is absent: itself when it has none or
    /// an optional one, an error when its payload is required or `tag` is unknown.
    fn without_payload(tag: &str) -> Result<Self, String>;
}

/// Reads a union object in one pass, each payload straight into its type (no tree of
/// `serde_json::Value`s first: that cost more than the typed decoding): `type`, the
/// payload fields (of any variant, as Mesos parses every field of a message; the one of
/// the variant `type` names is kept), and the `{"value": …}` ids of the message around
/// the union, named in `ids` and returned in their order. Other keys are skipped.
#[doc(hidden)]
pub fn deserialize_union<'de, D: Deserializer<'de>, U: UnionRead>(
    d: D,
    ids: &'static [&'static str],
) -> Result<(U, Vec<Option<String>>), D::Error> {
    d.deserialize_map(UnionVisitor {
        ids,
        union: PhantomData,
    })
}

struct UnionVisitor<U> {
    ids: &'static [&'static str],
    union: PhantomData<U>,
}

impl<'de, U: UnionRead> Visitor<'de> for UnionVisitor<U> {
    type Value = (U, Vec<Option<String>>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} object", U::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        #[derive(serde::Deserialize)]
        struct Id {
            value: String,
        }
        let mut tag = None;
        let mut ids = vec![None; self.ids.len()];
        let mut payloads: Vec<U> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if key == "type" {
                match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(t) => tag = Some(t),
                    other => {
                        return Err(A::Error::custom(format!(
                            "Expecting 'type' of {} to be a string, found {other}",
                            U::WHAT
                        )))
                    }
                }
            } else if let Some(i) = self.ids.iter().position(|id| *id == key) {
                let id = map
                    .next_value::<Option<Id>>()
                    .map_err(|e| A::Error::custom(format!("Invalid '{key}': {e}")))?;
                ids[i] = id.map(|id| id.value);
            } else if let Some(payload) = U::read_payload(&key, &mut map)
                .map_err(|e| A::Error::custom(format!("Invalid '{key}': {e}")))?
            {
                payloads.push(payload);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let Some(tag) = tag else {
            return Err(A::Error::custom(format!(
                "Expecting 'type' to be present in {}",
                U::WHAT
            )));
        };
        let union = match payloads.into_iter().rev().find(|p| p.type_name() == tag) {
            Some(payload) => payload,
            None => U::without_payload(&tag).map_err(A::Error::custom)?,
        };
        Ok((union, ids))
    }
}

/// An object's key, borrowed from the input where it can be.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// What [`serialize_union`] needs of a union: written by `tagged_union!`.
#[doc(hidden)]
pub trait Union {
    fn type_name(&self) -> &'static str;
    /// The field holding the payload, when there is one to write.
    fn payload_field(&self) -> Option<&'static str>;
    /// Writes the payload's entry (under [`Union::payload_field`]).
    fn serialize_payload<M: serde::ser::SerializeMap>(&self, map: &mut M) -> Result<(), M::Error>;
}

/// Writes a union as one JSON object: `type`, the payload, and the `ids` of the message
/// around it (written `{"value": …}`), with the keys in sorted order, as a
/// `serde_json::Map` writes them. Straight to the serializer: building a `Value` tree
/// of every payload first cost more than the writing.
#[doc(hidden)]
pub fn serialize_union<S: serde::Serializer, U: Union>(
    s: S,
    union: &U,
    ids: &[(&'static str, &str)],
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    #[derive(serde::Serialize)]
    struct Id<'a> {
        value: &'a str,
    }
    enum Entry<'a> {
        Id(&'a str),
        Type,
        Payload,
    }
    let mut entries: Vec<(&str, Entry)> = ids.iter().map(|(k, v)| (*k, Entry::Id(v))).collect();
    entries.push(("type", Entry::Type));
    if let Some(field) = union.payload_field() {
        entries.push((field, Entry::Payload));
    }
    entries.sort_by_key(|(key, _)| *key);
    let mut map = s.serialize_map(Some(entries.len()))?;
    for (key, entry) in entries {
        match entry {
            Entry::Id(value) => map.serialize_entry(key, &Id { value })?,
            Entry::Type => map.serialize_entry(key, union.type_name())?,
            Entry::Payload => union.serialize_payload(&mut map)?,
        }
    }
    map.end()
}

macro_rules! tagged_union {
    (
        $(#[$doc:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vdoc:meta])* $variant:ident $( ( $($payload:tt)+ ) )? = $tag:literal $(in $field:literal)? ),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $name {
            $( $(#[$vdoc])* $variant $( ( tagged_union!(@ty $($payload)+) ) )? ),*
        }

        impl $name {
            /// The Mesos name of this variant (`"SUBSCRIBE"`, …).
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( tagged_union!(@pat $name $variant $( ( $($payload)+ ) )?) => $tag ),*
                }
            }
        }

        impl crate::union::UnionRead for $name {
            const WHAT: &'static str = $what;

            #[allow(unused_variables)]
            fn read_payload<'de, A: serde::de::MapAccess<'de>>(
                key: &str,
                map: &mut A,
            ) -> Result<Option<Self>, A::Error> {
                match key {
                    $( $( $field => Ok(Some($name::$variant(map.next_value()?))), )? )*
                    _ => Ok(None),
                }
            }

            fn without_payload(tag: &str) -> Result<Self, String> {
                match tag {
                    $( $tag => tagged_union!(@absent $name $variant $tag $(, $field)? $(, $($payload)+)?), )*
                    other => Err(format!("Unknown {} type '{}'", $what, other)),
                }
            }
        }

        impl crate::union::Union for $name {
            fn type_name(&self) -> &'static str {
                $name::type_name(self)
            }

            #[allow(unused_variables)]
            fn payload_field(&self) -> Option<&'static str> {
                match self {
                    $( tagged_union!(@bind $name $variant payload $( ( $($payload)+ ) )?) => {
                        None $( .or(tagged_union!(@field $field, payload, $($payload)+)) )?
                    } ),*
                }
            }

            #[allow(unused_variables)]
            fn serialize_payload<M: serde::ser::SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $( tagged_union!(@bind $name $variant payload $( ( $($payload)+ ) )?) => {
                        $( tagged_union!(@write map $field, payload, $($payload)+); )?
                    } ),*
                }
                Ok(())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::union::serialize_union(s, self, &[])
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::union::deserialize_union(d, &[]).map(|(union, _)| union)
            }
        }
    };

    (@ty opt $t:ty) => { Option<$t> };
    (@ty $t:ty) => { $t };

    (@pat $name:ident $variant:ident ( $($p:tt)+ )) => { $name::$variant(_) };
    (@pat $name:ident $variant:ident) => { $name::$variant };

    (@bind $name:ident $variant:ident $bind:ident ( $($p:tt)+ )) => { $name::$variant($bind) };
    (@bind $name:ident $variant:ident $bind:ident) => { $name::$variant };

    (@field $field:literal, $payload:ident, opt $t:ty) => { $payload.as_ref().map(|_| $field) };
    (@field $field:literal, $payload:ident, $t:ty) => { Some($field) };

    (@write $map:ident $field:literal, $payload:ident, opt $t:ty) => {
        if let Some(p) = $payload {
            $map.serialize_entry($field, p)?;
        }
    };
    (@write $map:ident $field:literal, $payload:ident, $t:ty) => {
        $map.serialize_entry($field, $payload)?;
    };

    (@absent $name:ident $variant:ident $tag:literal) => { Ok($name::$variant) };
    (@absent $name:ident $variant:ident $tag:literal, $field:literal, opt $t:ty) => {
        Ok($name::$variant(None))
    };
    (@absent $name:ident $variant:ident $tag:literal, $field:literal, $t:ty) => {
        Err(format!("Expecting '{}' to be present for type {}", $field, $tag))
    };
}

#[cfg(test)]
mod tests {
    use serde::{de::DeserializeOwned, Serialize};

    /// Written straight to bytes, a message is the JSON it was read from (with its
    /// defaults filled in) and reads back the same.
    fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(json: &str) {
        let message: T = serde_json::from_str(json).expect(json);
        let written = serde_json::to_string(&message).unwrap();
        let read: serde_json::Value = serde_json::from_str(json).unwrap();
        let written_value: serde_json::Value = serde_json::from_str(&written).unwrap();
        for (key, value) in read.as_object().unwrap() {
            assert_eq!(
                written_value.get(key).map(|_| ()),
                Some(()),
                "{key} lost: {written}"
            );
            if !value.is_object() {
                assert_eq!(&written_value[key], value, "{json} -> {written}");
            }
        }
        assert_eq!(
            written_value.as_object().unwrap().len(),
            read.as_object().unwrap().len()
        );
        assert_eq!(
            serde_json::from_str::<T>(&written).unwrap(),
            message,
            "{json}"
        );
    }

    #[test]
    fn unions_are_written_whole_and_read_back() {
        use crate::{executor, internal, scheduler};
        // Payloads with ids around them, optional and absent, and none at all.
        check::<scheduler::Call>(
            r#"{"framework_id":{"value":"f"},"type":"ACCEPT","accept":{"offer_ids":[{"value":"o"}],"operations":[]}}"#,
        );
        check::<scheduler::Call>(
            r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}"#,
        );
        check::<scheduler::Call>(r#"{"framework_id":{"value":"f"},"type":"REVIVE"}"#);
        check::<scheduler::Call>(r#"{"framework_id":{"value":"f"},"type":"TEARDOWN"}"#);
        check::<scheduler::Event>(r#"{"type":"HEARTBEAT"}"#);
        check::<scheduler::Event>(r#"{"type":"ERROR","error":{"message":"m"}}"#);
        check::<executor::Call>(
            r#"{"executor_id":{"value":"e"},"framework_id":{"value":"f"},"type":"UPDATE","update":{"status":{"task_id":{"value":"t"},"state":"TASK_RUNNING","uuid":"AAAA"}}}"#,
        );
        check::<executor::Call>(
            r#"{"executor_id":{"value":"e"},"framework_id":{"value":"f"},"type":"SUBSCRIBE","subscribe":{}}"#,
        );
        check::<executor::Event>(
            r#"{"type":"ACKNOWLEDGED","acknowledged":{"task_id":{"value":"t"},"uuid":"AAAA"}}"#,
        );
        check::<internal::ToMaster>(
            r#"{"type":"EXITED_EXECUTOR","exited_executor":{"framework_id":{"value":"f"},"executor_id":{"value":"e"},"status":0}}"#,
        );
    }

    #[test]
    fn the_type_picks_its_payload_wherever_the_keys_stand() {
        use crate::scheduler::{Call, CallKind};
        let decline = r#"{"offer_ids":[{"value":"o"}]}"#;
        let accept = r#"{"offer_ids":[{"value":"p"}],"operations":[]}"#;
        for text in [
            format!(r#"{{"type":"DECLINE","decline":{decline},"framework_id":{{"value":"f"}}}}"#),
            format!(r#"{{"decline":{decline},"framework_id":{{"value":"f"}},"type":"DECLINE"}}"#),
            // Another variant's payload is read (as Mesos parses every field) and dropped.
            format!(r#"{{"accept":{accept},"type":"DECLINE","decline":{decline},"x":[1,{{}}]}}"#),
        ] {
            let call: Call = serde_json::from_str(&text).expect(&text);
            let CallKind::Decline(decline) = call.kind else {
                panic!("{text} read as {:?}", call.kind)
            };
            assert_eq!(decline.offer_ids[0].as_str(), "o", "{text}");
        }
        let e = serde_json::from_str::<Call>(&format!(r#"{{"accept":{accept},"type":"DECLINE"}}"#))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("Expecting 'decline' to be present for type DECLINE"),
            "{e}"
        );
        let e = serde_json::from_str::<Call>(r#"{"type":"DECLINE","decline":{"offer_ids":3}}"#)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Invalid 'decline': invalid type: integer"),
            "{e}"
        );
    }

    #[test]
    fn type_and_ids_are_checked() {
        use crate::{executor, scheduler};
        let e = serde_json::from_str::<scheduler::Call>(r#"{"type":3}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("Expecting 'type' of scheduler call to be a string, found 3"),
            "{e}"
        );
        let e = serde_json::from_str::<scheduler::Call>(
            r#"{"framework_id":{"value":1},"type":"REVIVE"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("Invalid 'framework_id'"), "{e}");
        let call: scheduler::Call =
            serde_json::from_str(r#"{"framework_id":null,"type":"TEARDOWN"}"#).unwrap();
        assert_eq!(call.framework_id, None);
        let e = serde_json::from_str::<scheduler::Call>("[1]").unwrap_err();
        assert!(
            e.to_string().contains("expected a scheduler call object"),
            "{e}"
        );
        let e = serde_json::from_str::<executor::Call>(
            r#"{"framework_id":{"value":"f"},"type":"SUBSCRIBE","subscribe":{}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("Expecting 'executor_id' to be present"),
            "{e}"
        );
    }

    #[test]
    fn read_from_a_value_tree_too() {
        // Keys and strings that cannot be borrowed from the input.
        let text = r#"{"framework_id":{"value":"f"},"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAAA"}}"#;
        let from_text: crate::scheduler::Call = serde_json::from_str(text).unwrap();
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::from_value::<crate::scheduler::Call>(value).unwrap(),
            from_text
        );
        let escaped = text.replace(r#""type""#, r#""\u0074ype""#);
        assert_eq!(
            serde_json::from_str::<crate::scheduler::Call>(&escaped).unwrap(),
            from_text
        );
    }
}
