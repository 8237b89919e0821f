//! `Resource` and resource arithmetic: scalars (kept to three decimals, as Mesos does),
//! ranges and sets, keyed by everything but their value (name, reservations, allocation,
//! disk, revocable, shared), and the agent's `--resources` text and JSON forms.
//!
//! Reservation formats: inside Meseta every resource is in the RESERVATION_REFINEMENT
//! format (a `reservations` stack of STATIC/DYNAMIC entries, unreserved = empty stack);
//! [`Resource::validate`] upgrades the old format (`role` plus `reservation` for a dynamic
//! reservation) on the way in, and [`Resources::in_format`] writes either format (or
//! Mesos's endpoint format, which carries both) on the way out. Persistent volumes (disk
//! with `disk.persistence`) are never split or merged: each one is kept, contained and
//! subtracted whole.

use crate::json;
use crate::mesos::AllocationInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use thiserror::Error;

/// `Value.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueType {
    Scalar,
    Ranges,
    Set,
    Text,
}

/// `Value.Scalar`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scalar {
    #[serde(deserialize_with = "json::f64_lenient")]
    pub value: f64,
}

/// `Value.Range`, inclusive on both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range {
    #[serde(deserialize_with = "lenient_u64")]
    pub begin: u64,
    #[serde(deserialize_with = "lenient_u64")]
    pub end: u64,
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = json::i64_lenient(d)?;
    u64::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is negative")))
}

/// `Value.Ranges`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges {
    #[serde(default)]
    pub range: Vec<Range>,
}

/// `Value.Set`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    #[serde(default)]
    pub item: Vec<String>,
}

/// `Resource.ReservationInfo.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationType {
    Static,
    Dynamic,
}

/// `Resource.ReservationInfo`: an entry of the refinement format's stack, or (without
/// `type` and `role`) the old format's `reservation` (principal and labels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationInfo {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ReservationType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
}

impl ReservationInfo {
    /// A dynamic reservation for `role` by `principal`.
    pub fn dynamic(role: &str, principal: Option<&str>) -> ReservationInfo {
        ReservationInfo {
            kind: Some(ReservationType::Dynamic),
            role: Some(role.to_string()),
            principal: principal.map(str::to_string),
            labels: None,
        }
    }

    pub fn is_dynamic(&self) -> bool {
        self.kind == Some(ReservationType::Dynamic)
    }
}

/// `Resource.DiskInfo.Persistence`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Persistence {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// `Volume.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeMode {
    #[serde(rename = "RW")]
    Rw,
    #[serde(rename = "RO")]
    Ro,
}

/// `Volume`, as a persistent volume's mount point in the container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VolumeMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
}

/// `Resource.DiskInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
}

/// How reservations are written on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceFormat {
    /// The `reservations` stack only (frameworks with RESERVATION_REFINEMENT).
    Refinement,
    /// `role` (`*` when unreserved) and `reservation`; resources with refined
    /// reservations cannot be written so and are left out.
    PreRefinement,
    /// Mesos's endpoint format: the stack, plus `role`/`reservation` where they can say it.
    Endpoint,
}

/// `Resource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Set>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<ReservationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocable: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<Value>,
}

/// Why a resource is malformed.
#[derive(Debug, Error, PartialEq)]
pub enum ResourceError {
    #[error("resource '{0}' has type {1:?} but no matching value")]
    MissingValue(String, ValueType),
    #[error("resource '{0}' has a negative or non-finite scalar value {1}")]
    BadScalar(String, f64),
    #[error("resource '{0}' has an invalid range [{1}-{2}]")]
    BadRange(String, u64, u64),
    #[error("resource '{0}' has type TEXT, which resources cannot have")]
    TextResource(String),
    #[error("cannot parse resources '{0}': {1}")]
    Parse(String, String),
    #[error("resource '{0}' has an invalid reservation: {1}")]
    BadReservation(String, String),
    #[error("resource '{0}' has an invalid disk: {1}")]
    BadDisk(String, String),
}

/// Rounds to Mesos's fixed-point precision (three decimals).
pub(crate) fn fixed(v: f64) -> f64 {
    // `+ 0.0` turns a negative zero (an empty float sum is -0.0) into 0.0.
    (v * 1000.0).round() / 1000.0 + 0.0
}

impl Resource {
    /// An unreserved scalar resource.
    pub fn scalar(name: &str, value: f64) -> Resource {
        Resource::with_value(
            name,
            ValueType::Scalar,
            Some(Scalar {
                value: fixed(value),
            }),
            None,
            None,
        )
    }

    /// An unreserved ranges resource.
    pub fn ranges(name: &str, ranges: &[(u64, u64)]) -> Resource {
        let ranges = Ranges {
            range: ranges
                .iter()
                .map(|&(begin, end)| Range { begin, end })
                .collect(),
        };
        Resource::with_value(name, ValueType::Ranges, None, Some(ranges), None)
    }

    /// An unreserved set resource.
    pub fn set(name: &str, items: &[&str]) -> Resource {
        let set = Set {
            item: items.iter().map(|s| s.to_string()).collect(),
        };
        Resource::with_value(name, ValueType::Set, None, None, Some(set))
    }

    fn with_value(
        name: &str,
        kind: ValueType,
        scalar: Option<Scalar>,
        ranges: Option<Ranges>,
        set: Option<Set>,
    ) -> Resource {
        Resource {
            name: name.to_string(),
            kind,
            scalar,
            ranges,
            set,
            role: None,
            allocation_info: None,
            reservation: None,
            reservations: Vec::new(),
            disk: None,
            revocable: None,
            shared: None,
            provider_id: None,
        }
    }

    /// The role this resource is reserved for, or `*` when unreserved (either format).
    pub fn reservation_role(&self) -> &str {
        if let Some(last) = self.reservations.last() {
            return last.role.as_deref().unwrap_or("*");
        }
        self.role.as_deref().unwrap_or("*")
    }

    pub fn is_unreserved(&self) -> bool {
        self.reservation_role() == "*"
    }

    /// Whether the innermost reservation is dynamic (RESERVE made it).
    pub fn is_dynamically_reserved(&self) -> bool {
        self.reservations
            .last()
            .is_some_and(ReservationInfo::is_dynamic)
    }

    /// Whether the reservation refines another (a stack of more than one).
    pub fn has_refined_reservation(&self) -> bool {
        self.reservations.len() > 1
    }

    /// Whether this is a persistent volume (disk with `disk.persistence`).
    pub fn is_persistent_volume(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.persistence.is_some())
    }

    /// The persistent volume's id, if this is one.
    pub fn persistence_id(&self) -> Option<&str> {
        self.disk
            .as_ref()
            .and_then(|d| d.persistence.as_ref())
            .map(|p| p.id.as_str())
    }

    /// The same resource with its innermost reservation removed (what UNRESERVE gives back).
    pub fn popped_reservation(&self) -> Resource {
        let mut r = self.clone();
        r.reservations.pop();
        r
    }

    /// Whether it is a shared resource (`shared: {}`, persistent volumes only): offered
    /// again while tasks use it, to frameworks with SHARED_RESOURCES.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The same disk without its persistence, volume and sharing (what DESTROY gives
    /// back).
    pub fn without_volume(&self) -> Resource {
        let mut r = self.clone();
        r.shared = None;
        r.disk = r.disk.take().and_then(|d| {
            d.source.map(|source| DiskInfo {
                persistence: None,
                volume: None,
                source: Some(source),
            })
        });
        r
    }

    /// Whether `other` is the same kind of resource (everything equal but the value).
    pub fn same_kind(&self, other: &Resource) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.reservation_role() == other.reservation_role()
            && self.reservations == other.reservations
            && self.allocation_info == other.allocation_info
            && same_disk(self.disk.as_ref(), other.disk.as_ref())
            && self.revocable == other.revocable
            && self.shared == other.shared
            && self.provider_id == other.provider_id
    }

    /// Checks the value matches the type and is well-formed, normalizes it, and brings
    /// the reservation to the refinement format.
    pub fn validate(&mut self) -> Result<(), ResourceError> {
        match self.kind {
            ValueType::Scalar => {
                let s = self
                    .scalar
                    .as_mut()
                    .ok_or_else(|| ResourceError::MissingValue(self.name.clone(), self.kind))?;
                if !s.value.is_finite() || s.value < 0.0 {
                    return Err(ResourceError::BadScalar(self.name.clone(), s.value));
                }
                s.value = fixed(s.value);
            }
            ValueType::Ranges => {
                let r = self
                    .ranges
                    .as_mut()
                    .ok_or_else(|| ResourceError::MissingValue(self.name.clone(), self.kind))?;
                if let Some(bad) = r.range.iter().find(|r| r.begin > r.end) {
                    return Err(ResourceError::BadRange(
                        self.name.clone(),
                        bad.begin,
                        bad.end,
                    ));
                }
                r.range = coalesce(r.range.clone());
            }
            ValueType::Set => {
                let s = self
                    .set
                    .as_mut()
                    .ok_or_else(|| ResourceError::MissingValue(self.name.clone(), self.kind))?;
                let unique: BTreeSet<String> = s.item.drain(..).collect();
                s.item = unique.into_iter().collect();
            }
            ValueType::Text => return Err(ResourceError::TextResource(self.name.clone())),
        }
        self.upgrade_reservation()
            .map_err(|why| ResourceError::BadReservation(self.name.clone(), why))?;
        self.check_disk()
            .map_err(|why| ResourceError::BadDisk(self.name.clone(), why))
    }

    /// Moves `role`/`reservation` into the `reservations` stack and checks the stack:
    /// every entry has a type and a role, only the bottom one may be static, and each
    /// refinement is a sub-role of the one below.
    fn upgrade_reservation(&mut self) -> Result<(), String> {
        let legacy_role = self.role.take().filter(|r| r != "*");
        let legacy = self.reservation.take();
        if self.reservations.is_empty() {
            match (legacy_role, legacy) {
                (None, Some(_)) => {
                    return Err("an unreserved resource cannot have 'reservation'".into())
                }
                (None, None) => {}
                (Some(role), reservation) => self.reservations.push(ReservationInfo {
                    kind: Some(match reservation {
                        Some(_) => ReservationType::Dynamic,
                        None => ReservationType::Static,
                    }),
                    role: Some(role),
                    principal: reservation.as_ref().and_then(|r| r.principal.clone()),
                    labels: reservation.and_then(|r| r.labels),
                }),
            }
        } else if let Some(role) = legacy_role {
            // The endpoint format carries both; they must agree.
            if Some(&role) != self.reservations.last().and_then(|r| r.role.as_ref()) {
                return Err(format!(
                    "'role' {role} disagrees with the innermost of 'reservations'"
                ));
            }
        }
        let mut below: Option<&str> = None;
        for (i, r) in self.reservations.iter().enumerate() {
            let role = match r.role.as_deref() {
                None | Some("") | Some("*") => {
                    return Err("every reservation needs a role other than '*'".into())
                }
                Some(role) => role,
            };
            match r.kind {
                None => return Err(format!("the reservation for role '{role}' has no type")),
                Some(ReservationType::Static) if i > 0 => {
                    return Err(format!(
                        "the reservation for role '{role}' refines another, so it must be DYNAMIC"
                    ))
                }
                _ => {}
            }
            if let Some(parent) = below {
                if !role.starts_with(parent) || !role[parent.len()..].starts_with('/') {
                    return Err(format!(
                        "role '{role}' does not refine '{parent}' (it must be a sub-role)"
                    ));
                }
            }
            below = Some(role);
        }
        Ok(())
    }

    fn check_disk(&self) -> Result<(), String> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        if self.name != "disk" || self.kind != ValueType::Scalar {
            return Err("only scalar 'disk' resources can have disk info".into());
        }
        if let Some(p) = &disk.persistence {
            if p.id.is_empty() {
                return Err("the persistence id must not be empty".into());
            }
        }
        Ok(())
    }

    /// This resource as written in `format`, or `None` when the format cannot say it.
    pub fn in_format(&self, format: ResourceFormat) -> Option<Resource> {
        let mut r = self.clone();
        if format == ResourceFormat::Refinement {
            return Some(r);
        }
        if r.has_refined_reservation() {
            return match format {
                ResourceFormat::PreRefinement => None,
                _ => Some(r),
            };
        }
        let top = r.reservations.last().cloned();
        r.role = Some(
            top.as_ref()
                .and_then(|t| t.role.clone())
                .unwrap_or_else(|| "*".to_string()),
        );
        r.reservation = top
            .filter(ReservationInfo::is_dynamic)
            .map(|t| ReservationInfo {
                kind: None,
                role: None,
                principal: t.principal,
                labels: t.labels,
            });
        if format == ResourceFormat::PreRefinement {
            r.reservations.clear();
        }
        Some(r)
    }

    /// Whether the value is empty (zero scalar, no ranges, no items).
    pub fn is_empty(&self) -> bool {
        match self.kind {
            ValueType::Scalar => self.scalar.is_none_or(|s| s.value <= 0.0),
            ValueType::Ranges => self.ranges.as_ref().is_none_or(|r| r.range.is_empty()),
            ValueType::Set => self.set.as_ref().is_none_or(|s| s.item.is_empty()),
            ValueType::Text => true,
        }
    }

    fn add_value(&mut self, other: &Resource) {
        match self.kind {
            ValueType::Scalar => {
                let s = self.scalar.get_or_insert(Scalar { value: 0.0 });
                s.value = fixed(s.value + other.scalar.map_or(0.0, |o| o.value));
            }
            ValueType::Ranges => {
                let r = self.ranges.get_or_insert_with(Ranges::default);
                let mut all = r.range.clone();
                all.extend(other.ranges.iter().flat_map(|o| o.range.iter().copied()));
                r.range = coalesce(all);
            }
            ValueType::Set => {
                let s = self.set.get_or_insert_with(Set::default);
                let mut all: BTreeSet<String> = s.item.drain(..).collect();
                all.extend(other.set.iter().flat_map(|o| o.item.iter().cloned()));
                s.item = all.into_iter().collect();
            }
            ValueType::Text => {}
        }
    }

    fn subtract_value(&mut self, other: &Resource) {
        match self.kind {
            ValueType::Scalar => {
                if let Some(s) = self.scalar.as_mut() {
                    s.value = fixed((s.value - other.scalar.map_or(0.0, |o| o.value)).max(0.0));
                }
            }
            ValueType::Ranges => {
                if let Some(r) = self.ranges.as_mut() {
                    let minus = other
                        .ranges
                        .as_ref()
                        .map(|o| o.range.as_slice())
                        .unwrap_or(&[]);
                    r.range = subtract_ranges(&r.range, minus);
                }
            }
            ValueType::Set => {
                if let Some(s) = self.set.as_mut() {
                    let minus: BTreeSet<&String> =
                        other.set.iter().flat_map(|o| o.item.iter()).collect();
                    s.item.retain(|i| !minus.contains(i));
                }
            }
            ValueType::Text => {}
        }
    }

    fn contains_value(&self, other: &Resource) -> bool {
        match self.kind {
            ValueType::Scalar => {
                self.scalar.map_or(0.0, |s| s.value) + 1e-9 >= other.scalar.map_or(0.0, |o| o.value)
            }
            ValueType::Ranges => {
                let mine = self
                    .ranges
                    .as_ref()
                    .map(|r| r.range.as_slice())
                    .unwrap_or(&[]);
                other
                    .ranges
                    .iter()
                    .flat_map(|o| o.range.iter())
                    .all(|want| {
                        mine.iter()
                            .any(|have| have.begin <= want.begin && want.end <= have.end)
                    })
            }
            ValueType::Set => {
                let mine: BTreeSet<&String> = self.set.iter().flat_map(|s| s.item.iter()).collect();
                other
                    .set
                    .iter()
                    .flat_map(|o| o.item.iter())
                    .all(|i| mine.contains(i))
            }
            ValueType::Text => false,
        }
    }
}

/// Whether two disks are the same resource, as Mesos compares them: the same source and
/// persistence id. Their `volume` (where and how a task mounts it, RW or RO) and the
/// persistence's principal are not part of it, so a task may use a volume read-only.
fn same_disk(a: Option<&DiskInfo>, b: Option<&DiskInfo>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let id = |d: &DiskInfo| d.persistence.as_ref().map(|p| p.id.clone());
            a.source == b.source && id(a) == id(b)
        }
        _ => false,
    }
}

/// Whether two resources are the same persistent volume (same kind and size).
fn same_volume(a: &Resource, b: &Resource) -> bool {
    a.same_kind(b) && a.scalar == b.scalar
}

/// Sorts and merges overlapping or adjacent ranges.
pub(crate) fn coalesce(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.begin <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn subtract_ranges(have: &[Range], minus: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    for h in have {
        let mut pieces = vec![*h];
        for m in minus {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    if m.end < p.begin || m.begin > p.end {
                        return vec![p];
                    }
                    let mut keep = Vec::new();
                    if m.begin > p.begin {
                        keep.push(Range {
                            begin: p.begin,
                            end: m.begin - 1,
                        });
                    }
                    if m.end < p.end {
                        keep.push(Range {
                            begin: m.end + 1,
                            end: p.end,
                        });
                    }
                    keep
                })
                .collect();
        }
        out.extend(pieces);
    }
    coalesce(out)
}

/// A normalized collection of resources: one entry per kind, no empty entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resources(Vec<Resource>);

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates and merges a list of resources.
    pub fn from_list(list: Vec<Resource>) -> Result<Resources, ResourceError> {
        let mut out = Resources::new();
        for mut r in list {
            r.validate()?;
            out.add(&r);
        }
        Ok(out)
    }

    /// Parses the agent's `--resources` flag: JSON (a list of `Resource`) or the text form
    /// `cpus:4;mem:8192;ports:[31000-32000];disks:{a,b};cpus(role):2`.
    pub fn parse(text: &str) -> Result<Resources, ResourceError> {
        let trimmed = text.trim();
        if trimmed.starts_with('[') {
            let list: Vec<Resource> = serde_json::from_str(trimmed)
                .map_err(|e| ResourceError::Parse(text.to_string(), e.to_string()))?;
            return Resources::from_list(list);
        }
        let mut out = Resources::new();
        for part in trimmed.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let mut r = parse_text_resource(part)
                .map_err(|why| ResourceError::Parse(part.to_string(), why))?;
            r.validate()?;
            out.add(&r);
        }
        Ok(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<Resource> {
        self.0
    }

    pub fn as_slice(&self) -> &[Resource] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds one resource, merging it with an entry of the same kind (a persistent volume
    /// is never merged).
    pub fn add(&mut self, r: &Resource) {
        if r.is_empty() {
            return;
        }
        if r.is_persistent_volume() {
            self.0.push(r.clone());
            return;
        }
        match self.0.iter_mut().find(|have| have.same_kind(r)) {
            Some(have) => have.add_value(r),
            None => self.0.push(r.clone()),
        }
    }

    pub fn add_all(&mut self, other: &Resources) {
        for r in other.iter() {
            self.add(r);
        }
    }

    /// Subtracts one resource (saturating), dropping entries that become empty. A
    /// persistent volume is only subtracted whole.
    pub fn subtract(&mut self, r: &Resource) {
        if r.is_persistent_volume() {
            if let Some(pos) = self.0.iter().position(|have| same_volume(have, r)) {
                self.0.remove(pos);
            }
            return;
        }
        if let Some(pos) = self.0.iter().position(|have| have.same_kind(r)) {
            self.0[pos].subtract_value(r);
            if self.0[pos].is_empty() {
                self.0.remove(pos);
            }
        }
    }

    pub fn subtract_all(&mut self, other: &Resources) {
        for r in other.iter() {
            self.subtract(r);
        }
    }

    /// Whether every resource of `other` is available here.
    pub fn contains(&self, other: &Resources) -> bool {
        other.iter().all(|want| {
            if want.is_persistent_volume() {
                return self.0.iter().any(|have| same_volume(have, want));
            }
            self.0
                .iter()
                .find(|have| have.same_kind(want))
                .is_some_and(|have| have.contains_value(want))
        })
    }

    /// The total scalar quantity of `name`, across roles.
    pub fn scalar(&self, name: &str) -> f64 {
        fixed(
            self.0
                .iter()
                .filter(|r| r.name == name)
                .filter_map(|r| r.scalar.map(|s| s.value))
                .sum(),
        )
    }

    /// The same resources with `allocation_info` set (or cleared) on each.
    pub fn allocated_to(&self, role: Option<&str>) -> Resources {
        Resources(
            self.0
                .iter()
                .map(|r| Resource {
                    allocation_info: role.map(|role| AllocationInfo {
                        role: Some(role.to_string()),
                    }),
                    ..r.clone()
                })
                .collect(),
        )
    }

    /// The resources as written in `format` (those it cannot say are left out).
    pub fn in_format(&self, format: ResourceFormat) -> Vec<Resource> {
        self.0.iter().filter_map(|r| r.in_format(format)).collect()
    }

    /// The unreserved resources.
    pub fn unreserved(&self) -> Resources {
        Resources(
            self.0
                .iter()
                .filter(|r| r.is_unreserved())
                .cloned()
                .collect(),
        )
    }

    /// The reserved resources by the role of their innermost reservation.
    pub fn reserved_by_role(&self) -> BTreeMap<String, Resources> {
        let mut by_role: BTreeMap<String, Resources> = BTreeMap::new();
        for r in self.0.iter().filter(|r| !r.is_unreserved()) {
            by_role
                .entry(r.reservation_role().to_string())
                .or_default()
                .add(r);
        }
        by_role
    }

    /// What an agent must remember beyond its `--resources`: the resources with a
    /// dynamic reservation, and the persistent volumes.
    pub fn checkpointed(&self) -> Resources {
        Resources(
            self.0
                .iter()
                .filter(|r| {
                    r.reservations.iter().any(ReservationInfo::is_dynamic)
                        || r.is_persistent_volume()
                })
                .cloned()
                .collect(),
        )
    }

    /// An agent's total: its static resources with the checkpointed ones (dynamic
    /// reservations, volumes) carved out of what they were made from.
    pub fn apply_checkpointed(&self, checkpointed: &Resources) -> Result<Resources, String> {
        let mut total = self.clone();
        for r in checkpointed.iter() {
            let mut origin = r.without_volume();
            while origin.is_dynamically_reserved() {
                origin = origin.popped_reservation();
            }
            let origin = Resources(vec![origin]);
            if !total.contains(&origin) {
                return Err(format!(
                    "checkpointed resource {} is not part of the agent's resources {total}",
                    Resources(vec![r.clone()])
                ));
            }
            total.subtract_all(&origin);
            total.add(r);
        }
        Ok(total)
    }

    /// The v0 JSON model's resource map: `{"cpus":1.0,"ports":"[31000-32000]"}`.
    pub fn v0_map(&self) -> crate::v0::V0Resources {
        crate::v0::V0Resources::of(self.iter())
    }
}

/// A set as Mesos writes it in text: `{a,b}`.
pub(crate) fn format_set<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    format!("{{{}}}", Vec::from_iter(items).join(","))
}

/// Ranges as Mesos writes them in text: `[31000-31999, 32001-32100]`.
pub(crate) fn format_ranges(ranges: &[Range]) -> String {
    let inner: Vec<String> = ranges
        .iter()
        .map(|r| format!("{}-{}", r.begin, r.end))
        .collect();
    format!("[{}]", inner.join(", "))
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| {
                let role = r.reservation_role();
                let mut name = if role == "*" {
                    r.name.clone()
                } else {
                    format!("{}({})", r.name, role)
                };
                if let Some(id) = r.persistence_id() {
                    let path = r.disk.as_ref().and_then(|d| d.volume.as_ref());
                    let path = path.map_or("", |v| v.container_path.as_str());
                    name.push_str(&format!("[{id}:{path}]"));
                }
                let value = match r.kind {
                    ValueType::Scalar => r.scalar.map_or(0.0, |s| s.value).to_string(),
                    ValueType::Ranges => format_ranges(r.ranges.as_ref().map_or(&[], |r| &r.range)),
                    ValueType::Set => {
                        format_set(r.set.iter().flat_map(|s| s.item.iter().map(String::as_str)))
                    }
                    ValueType::Text => String::new(),
                };
                format!("{name}:{value}")
            })
            .collect();
        f.write_str(&parts.join(";"))
    }
}

impl From<Resources> for Vec<Resource> {
    fn from(r: Resources) -> Self {
        r.0
    }
}

fn parse_text_resource(part: &str) -> Result<Resource, String> {
    let (key, value) = part
        .split_once(':')
        .ok_or_else(|| "expected NAME:VALUE".to_string())?;
    let key = key.trim();
    let (name, role) = match key.split_once('(') {
        Some((name, rest)) => {
            let role = rest
                .strip_suffix(')')
                .ok_or_else(|| "unclosed '(' in role".to_string())?;
            (name.trim(), Some(role.trim()))
        }
        None => (key, None),
    };
    if name.is_empty() {
        return Err("empty resource name".into());
    }
    let value = value.trim();
    let mut r = if let Some(inner) = value.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("unclosed '['")?;
        let mut ranges = Vec::new();
        for piece in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (b, e) = piece
                .split_once('-')
                .ok_or(format!("bad range '{piece}'"))?;
            let begin = b
                .trim()
                .parse()
                .map_err(|_| format!("bad range '{piece}'"))?;
            let end = e
                .trim()
                .parse()
                .map_err(|_| format!("bad range '{piece}'"))?;
            ranges.push((begin, end));
        }
        Resource::ranges(name, &ranges)
    } else if let Some(inner) = value.strip_prefix('{') {
        let inner = inner.strip_suffix('}').ok_or("unclosed '{'")?;
        let items: Vec<&str> = inner
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        Resource::set(name, &items)
    } else {
        let v: f64 = value
            .parse()
            .map_err(|_| format!("'{value}' is not a number"))?;
        Resource::scalar(name, v)
    };
    if let Some(role) = role.filter(|r| *r != "*") {
        if role.is_empty() {
            return Err("empty role".into());
        }
        r.role = Some(role.to_string());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_text_form() {
        let r = Resources::parse("cpus:4;mem:8192;ports:[31000-32000];disks:{a,b};cpus(web):2")
            .unwrap();
        assert_eq!(r.scalar("cpus"), 6.0);
        assert_eq!(r.scalar("mem"), 8192.0);
        assert_eq!(r.iter().count(), 5);
        assert_eq!(
            r.to_string(),
            "cpus:4;mem:8192;ports:[31000-32000];disks:{a,b};cpus(web):2"
        );
    }

    #[test]
    fn parses_json_form() {
        let r = Resources::parse(
            r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":"2.5"}},{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":3}]}}]"#,
        )
        .unwrap();
        assert_eq!(r.scalar("cpus"), 2.5);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Resources::parse("cpus").is_err());
        assert!(Resources::parse("cpus:x").is_err());
        assert!(Resources::parse("cpus:-1").is_err());
        assert!(Resources::parse("ports:[5-3]").is_err());
        assert!(Resources::parse("cpus(:1").is_err());
        assert!(Resources::parse("[{\"name\":\"cpus\",\"type\":\"SCALAR\"}]").is_err());
    }

    #[test]
    fn range_arithmetic() {
        let mut have = Resources::parse("ports:[31000-32000]").unwrap();
        let take = Resources::parse("ports:[31000-31000,31500-31600]").unwrap();
        assert!(have.contains(&take));
        have.subtract_all(&take);
        assert_eq!(have.to_string(), "ports:[31001-31499, 31601-32000]");
        assert!(!have.contains(&take));
        have.add_all(&take);
        assert_eq!(have.to_string(), "ports:[31000-32000]");
    }

    #[test]
    fn roles_are_distinct_kinds() {
        let have = Resources::parse("cpus:1;cpus(web):1").unwrap();
        assert!(!have.contains(&Resources::parse("cpus:2").unwrap()));
        assert!(have.contains(&Resources::parse("cpus(web):1").unwrap()));
        let mut unreserved = Resource::scalar("cpus", 1.0);
        unreserved.role = Some("*".into());
        assert!(unreserved.same_kind(&Resource::scalar("cpus", 2.0)));
    }

    #[test]
    fn scalar_precision_is_fixed_point() {
        let mut r = Resources::parse("cpus:1").unwrap();
        for _ in 0..10 {
            r.subtract(&Resource::scalar("cpus", 0.1));
        }
        assert!(r.is_empty(), "{r:?}");
    }

    fn one(json: serde_json::Value) -> Result<Resource, ResourceError> {
        let mut r: Resource = serde_json::from_value(json).unwrap();
        r.validate()?;
        Ok(r)
    }

    #[test]
    fn old_format_upgrades_to_the_stack() {
        let dynamic = one(
            serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
            "role":"web","reservation":{"principal":"ops"}}),
        )
        .unwrap();
        assert_eq!(dynamic.role, None);
        assert_eq!(dynamic.reservation, None);
        assert_eq!(
            dynamic.reservations,
            vec![ReservationInfo::dynamic("web", Some("ops"))]
        );
        let fixed = Resources::parse("cpus(web):1").unwrap();
        let fixed = fixed.iter().next().unwrap();
        assert_eq!(fixed.reservations[0].kind, Some(ReservationType::Static));
        assert!(
            !fixed.same_kind(&dynamic),
            "static and dynamic are different kinds"
        );
        // Back to the old format for frameworks without RESERVATION_REFINEMENT.
        let old = dynamic.in_format(ResourceFormat::PreRefinement).unwrap();
        assert_eq!(old.role.as_deref(), Some("web"));
        assert_eq!(
            old.reservation.as_ref().unwrap().principal.as_deref(),
            Some("ops")
        );
        assert!(old.reservations.is_empty());
        let unreserved = Resource::scalar("mem", 1.0);
        let old = unreserved.in_format(ResourceFormat::PreRefinement).unwrap();
        assert_eq!(old.role.as_deref(), Some("*"));
        assert!(old.reservation.is_none());
        let endpoint = dynamic.in_format(ResourceFormat::Endpoint).unwrap();
        assert_eq!(endpoint.role.as_deref(), Some("web"));
        assert_eq!(endpoint.reservations.len(), 1);
        // The endpoint format reads back as what it was written from.
        let mut again = endpoint.clone();
        again.validate().unwrap();
        assert_eq!(again, dynamic);
    }

    #[test]
    fn refined_reservations_are_checked_and_hidden_from_the_old_format() {
        let refined = one(serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
            "reservations":[{"type":"STATIC","role":"a"},{"type":"DYNAMIC","role":"a/b","principal":"p"}]}))
        .unwrap();
        assert!(refined.has_refined_reservation());
        assert_eq!(refined.reservation_role(), "a/b");
        assert!(refined.in_format(ResourceFormat::PreRefinement).is_none());
        assert!(refined
            .in_format(ResourceFormat::Endpoint)
            .unwrap()
            .role
            .is_none());
        let bad = [
            serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
                "reservations":[{"type":"DYNAMIC","role":"a"},{"type":"DYNAMIC","role":"b"}]}),
            serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
                "reservations":[{"type":"DYNAMIC","role":"a"},{"type":"STATIC","role":"a/b"}]}),
            serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
                "reservations":[{"role":"a"}]}),
            serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
                "reservation":{"principal":"p"}}),
            serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
                "role":"x","reservations":[{"type":"DYNAMIC","role":"a"}]}),
            serde_json::json!({"name":"cpus","type":"SCALAR","scalar":{"value":1},
                "disk":{"persistence":{"id":"v"}}}),
        ];
        for json in bad {
            assert!(
                matches!(
                    one(json.clone()),
                    Err(ResourceError::BadReservation(..) | ResourceError::BadDisk(..))
                ),
                "{json}"
            );
        }
    }

    fn volume(id: &str, size: f64) -> Resource {
        one(serde_json::json!({"name":"disk","type":"SCALAR","scalar":{"value":size},
            "reservations":[{"type":"DYNAMIC","role":"r","principal":"p"}],
            "disk":{"persistence":{"id":id,"principal":"p"},"volume":{"container_path":"data","mode":"RW"}}}))
        .unwrap()
    }

    #[test]
    fn volumes_are_whole() {
        let mut have = Resources::new();
        have.add(&volume("v1", 64.0));
        have.add(&volume("v2", 64.0));
        assert_eq!(have.iter().count(), 2, "volumes are never merged");
        assert!(have.contains(&Resources::from_list(vec![volume("v1", 64.0)]).unwrap()));
        assert!(!have.contains(&Resources::from_list(vec![volume("v1", 32.0)]).unwrap()));
        assert!(!have.contains(&Resources::from_list(vec![volume("v3", 64.0)]).unwrap()));
        have.subtract(&volume("v1", 32.0));
        assert_eq!(
            have.iter().count(),
            2,
            "a part of a volume is not subtracted"
        );
        have.subtract(&volume("v1", 64.0));
        assert_eq!(have.iter().count(), 1);
        assert_eq!(have.iter().next().unwrap().persistence_id(), Some("v2"));
        assert_eq!(have.to_string(), "disk(r)[v2:data]:64");
    }

    #[test]
    fn a_volume_is_the_same_whatever_mount_a_task_asks_for() {
        let mut have = Resources::new();
        have.add(&volume("v1", 64.0));
        let mut read_only = volume("v1", 64.0);
        let disk = read_only.disk.as_mut().unwrap();
        disk.volume = Some(Volume {
            container_path: "elsewhere".into(),
            mode: Some(VolumeMode::Ro),
            host_path: None,
        });
        disk.persistence.as_mut().unwrap().principal = None;
        let wanted = Resources::from_list(vec![read_only.clone()]).unwrap();
        assert!(
            have.contains(&wanted),
            "as Mesos: volume and principal are not compared"
        );
        have.subtract(&read_only);
        assert!(have.is_empty());
        let mut other_source = volume("v1", 64.0);
        other_source.disk.as_mut().unwrap().source = Some(serde_json::json!({"type": "PATH"}));
        assert!(!other_source.same_kind(&volume("v1", 64.0)));
    }

    #[test]
    fn checkpointed_resources_apply_to_the_static_ones() {
        let base = Resources::parse("cpus:4;disk:1000").unwrap();
        let mut reserved_cpus = Resource::scalar("cpus", 1.0);
        reserved_cpus.reservations = vec![ReservationInfo::dynamic("r", Some("p"))];
        let checkpointed =
            Resources::from_list(vec![reserved_cpus.clone(), volume("v1", 100.0)]).unwrap();
        let total = base.apply_checkpointed(&checkpointed).unwrap();
        assert_eq!(total.scalar("cpus"), 4.0);
        assert_eq!(total.scalar("disk"), 1000.0);
        assert_eq!(total.unreserved().to_string(), "cpus:3;disk:900");
        assert_eq!(total.checkpointed(), checkpointed);
        assert_eq!(total.reserved_by_role()["r"].scalar("disk"), 100.0);
        let too_much = Resources::from_list(vec![volume("v2", 5000.0)]).unwrap();
        assert!(base.apply_checkpointed(&too_much).is_err());
    }

    fn arb_resources() -> impl Strategy<Value = Resources> {
        (
            0u32..8000,
            0u32..4000,
            proptest::collection::vec((0u64..200, 0u64..20), 0..5),
        )
            .prop_map(|(cpus, mem, ranges)| {
                let ranges: Vec<(u64, u64)> = ranges.into_iter().map(|(b, l)| (b, b + l)).collect();
                let mut r = Resources::new();
                r.add(&Resource::scalar("cpus", cpus as f64 / 1000.0));
                r.add(&Resource::scalar("mem", mem as f64));
                let mut ports = Resource::ranges("ports", &ranges);
                ports.validate().unwrap();
                r.add(&ports);
                r
            })
    }

    proptest! {
        #[test]
        fn add_then_subtract_is_identity(a in arb_resources(), b in arb_resources()) {
            let mut sum = a.clone();
            sum.add_all(&b);
            prop_assert!(sum.contains(&a));
            prop_assert!(sum.contains(&b));
            // Subtracting b gives back at least what a had that b did not share.
            let mut back = sum.clone();
            back.subtract_all(&b);
            prop_assert!(sum.contains(&back));
            prop_assert!((back.scalar("cpus") - a.scalar("cpus")).abs() < 1e-6);
            prop_assert!((back.scalar("mem") - a.scalar("mem")).abs() < 1e-6);
        }

        #[test]
        fn contains_is_reflexive_and_subtraction_shrinks(a in arb_resources(), b in arb_resources()) {
            prop_assert!(a.contains(&a));
            let mut c = a.clone();
            c.subtract_all(&b);
            prop_assert!(a.contains(&c));
        }
    }
}
