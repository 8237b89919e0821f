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

            /// Writes `type` and the payload into `object`.
            pub fn write_into(&self, object: &mut serde_json::Map<String, serde_json::Value>) {
                object.insert("type".into(), serde_json::Value::String(self.type_name().into()));
                #[allow(unused_variables)]
                match self {
                    $( tagged_union!(@bind $name $variant payload $( ( $($payload)+ ) )?) => {
                        $( tagged_union!(@write object $field, payload, $($payload)+); )?
                    } ),*
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

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut object = serde_json::Map::new();
                self.write_into(&mut object);
                object.serialize(s)
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

    (@write $object:ident $field:literal, $payload:ident, opt $t:ty) => {
        if let Some(p) = $payload {
            $object.insert($field.into(), serde_json::to_value(p).expect("serializable"));
        }
    };
    (@write $object:ident $field:literal, $payload:ident, $t:ty) => {
        $object.insert($field.into(), serde_json::to_value($payload).expect("serializable"));
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
