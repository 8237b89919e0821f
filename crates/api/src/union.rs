//! The `tagged_union!` macro: protobuf "union" messages in Mesos JSON.
//!
//! Mesos writes a union as `{"type":"OFFERS","offers":{…}}`: the `type` names the variant
//! and the payload sits under the variant's name in lower case. A variant may carry a
//! required payload (`Name(T) = "NAME" in "name"`, absent → error), an optional payload
//! (`Name(opt T) = …`, absent → `None`), or none (`Name = "NAME"`). Extra top-level fields
//! (such as `framework_id`) belong to the enclosing struct, not to the union.

/// Decodes the `type` field of a union object, with Mesos-like messages.
#[doc(hidden)]
pub fn union_type<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<&'a str, String> {
    match object.get("type") {
        Some(serde_json::Value::String(t)) => Ok(t),
        Some(other) => Err(format!(
            "Expecting 'type' of {what} to be a string, found {other}"
        )),
        None => Err(format!("Expecting 'type' to be present in {what}")),
    }
}

/// Decodes a required or optional payload of a union variant.
#[doc(hidden)]
pub fn union_payload<T: serde::de::DeserializeOwned>(
    object: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    type_name: &str,
    required: bool,
) -> Result<Option<T>, String> {
    match object.get(field) {
        None | Some(serde_json::Value::Null) if required => Err(format!(
            "Expecting '{field}' to be present for type {type_name}"
        )),
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| format!("Invalid '{field}': {e}")),
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

            /// Reads the variant named by `type` and its payload from `object`.
            pub fn read_from(object: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
                let tag = crate::union::union_type(object, $what)?;
                match tag {
                    $( $tag => Ok(tagged_union!(@read object $name $variant $tag $(, $field)? $(, $($payload)+)?)), )*
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
                let object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
                Self::read_from(&object).map_err(serde::de::Error::custom)
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

    (@read $object:ident $name:ident $variant:ident $tag:literal) => { $name::$variant };
    (@read $object:ident $name:ident $variant:ident $tag:literal, $field:literal, opt $t:ty) => {
        $name::$variant(crate::union::union_payload::<$t>($object, $field, $tag, false)?)
    };
    (@read $object:ident $name:ident $variant:ident $tag:literal, $field:literal, $t:ty) => {
        $name::$variant(crate::union::union_payload::<$t>($object, $field, $tag, true)?
            .expect("required payload checked"))
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
}
