//! Identifier messages, written as `{"value":"…"}` on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        pub struct $name {
            pub value: Arc<str>,
        }

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self { value: value.into().into() }
            }
            pub fn as_str(&self) -> &str {
                &self.value
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }
    )*};
}

id_type!(
    /// `FrameworkID`: `<master id>-<nnnn>`.
    FrameworkId,
    /// `AgentID`: `<master id>-S<n>`.
    AgentId,
    /// `OfferID`: `<master id>-O<n>`.
    OfferId,
    /// `TaskID`: chosen by the framework.
    TaskId,
    /// `ExecutorID`: chosen by the framework (the task id for command tasks).
    ExecutorId,
    /// `ContainerID` (the optional parent is not used yet).
    ContainerId,
    /// `OperationID`: chosen by the framework for an offer operation it wants feedback on.
    OperationId,
);
