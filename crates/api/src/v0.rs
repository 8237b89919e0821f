//! The v0 JSON model (`/state`, `/master/state`) of tasks, resources and attributes, shared
//! by the master and the agent.

use crate::mesos::{Attribute, Task};
use crate::resources::{coalesce, fixed, format_ranges, format_set, Range, Resource, ValueType};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// A resource list as the v0 map: `{"cpus":1.0,"ports":"[31000-32000]"}`.
pub fn resources(list: &[Resource]) -> Value {
    json!(V0Resources::of(list))
}

/// A resource list as the v0 model's map: each name's amount summed over all its
/// reservations and allocations, with cpus, gpus, mem and disk always there (zero when
/// absent). Written as a JSON object with its names in order, built without a
/// `serde_json::Map` (views write one for every agent and framework).
#[derive(Clone, Debug, PartialEq)]
pub struct V0Resources(Vec<(Cow<'static, str>, V0Amount)>);

#[derive(Clone, Debug, PartialEq)]
enum V0Amount {
    Scalar(f64),
    /// Ranges (`[1-2, 4-5]`) and sets (`{a,b}`).
    Text(String),
}

/// One name's resources summed, as they are added.
enum Sum<'a> {
    Scalar(f64),
    Ranges(Vec<Range>),
    Set(BTreeSet<&'a str>),
}

impl<'a> Sum<'a> {
    /// The amount of `r`, or `None` for a type that has none (TEXT).
    fn of(r: &'a Resource) -> Option<Sum<'a>> {
        let mut sum = match r.kind {
            ValueType::Scalar => Sum::Scalar(r.scalar.map_or(0.0, |s| s.value)),
            ValueType::Ranges => Sum::Ranges(Vec::new()),
            ValueType::Set => Sum::Set(BTreeSet::new()),
            ValueType::Text => return None,
        };
        if !matches!(sum, Sum::Scalar(_)) {
            sum.add(r);
        }
        Some(sum)
    }

    fn add(&mut self, r: &'a Resource) {
        match self {
            Sum::Scalar(total) => *total = fixed(*total + r.scalar.map_or(0.0, |s| s.value)),
            Sum::Ranges(all) => all.extend(r.ranges.iter().flat_map(|r| r.range.iter().copied())),
            Sum::Set(all) => all.extend(r.set.iter().flat_map(|s| s.item.iter().map(|i| &**i))),
        }
    }

    fn amount(self) -> V0Amount {
        match self {
            Sum::Scalar(total) => V0Amount::Scalar(total),
            Sum::Ranges(all) => V0Amount::Text(format_ranges(&coalesce(all))),
            Sum::Set(all) => V0Amount::Text(format_set(all)),
        }
    }
}

/// A resource name, not copied when it is one of the usual ones.
fn name(name: &str) -> Cow<'static, str> {
    match name {
        "cpus" => Cow::Borrowed("cpus"),
        "gpus" => Cow::Borrowed("gpus"),
        "mem" => Cow::Borrowed("mem"),
        "disk" => Cow::Borrowed("disk"),
        "ports" => Cow::Borrowed("ports"),
        other => Cow::Owned(other.to_string()),
    }
}

impl V0Resources {
    pub fn of<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> V0Resources {
        let mut sums: Vec<(&str, ValueType, Sum)> = Vec::new();
        for r in resources.into_iter().filter(|r| !r.is_empty()) {
            match sums
                .iter_mut()
                .find(|(n, k, _)| *n == r.name && *k == r.kind)
            {
                Some((_, _, sum)) => sum.add(r),
                None => sums.extend(Sum::of(r).map(|sum| (&*r.name, r.kind, sum))),
            }
        }
        let mut entries: Vec<(Cow<'static, str>, V0Amount)> = ["cpus", "gpus", "mem", "disk"]
            .into_iter()
            .map(|n| (Cow::Borrowed(n), V0Amount::Scalar(0.0)))
            .collect();
        for (n, _, sum) in sums {
            let amount = sum.amount();
            match entries.iter_mut().find(|(have, _)| have == n) {
                Some((_, have)) => *have = amount,
                None => entries.push((name(n), amount)),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        V0Resources(entries)
    }
}

impl Serialize for V0Resources {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, amount) in &self.0 {
            match amount {
                V0Amount::Scalar(v) => map.serialize_entry(name, v)?,
                V0Amount::Text(t) => map.serialize_entry(name, t)?,
            }
        }
        map.end()
    }
}

/// The v0 attributes map: `{"rack":"a","zone":1,"ports":"[1-3]"}`.
pub fn attributes(attributes: &[Attribute]) -> Value {
    let mut map = Map::new();
    for a in attributes {
        let value = match a.kind {
            ValueType::Scalar => json!(a.scalar.map_or(0.0, |s| s.value)),
            ValueType::Ranges => json!(format_ranges(a.ranges.as_ref().map_or(&[], |r| &r.range))),
            ValueType::Set => json!(format_set(
                a.set.iter().flat_map(|s| s.item.iter().map(String::as_str))
            )),
            ValueType::Text => json!(a.text.as_ref().map(|t| t.value.clone()).unwrap_or_default()),
        };
        map.insert(a.name.clone(), value);
    }
    Value::Object(map)
}

/// A task in the v0 model (`/state` of master and agent).
pub fn task(task: &Task) -> Value {
    let statuses: Vec<Value> = task
        .statuses
        .iter()
        .map(|s| {
            let mut o = json!({"state": s.state, "timestamp": s.timestamp.unwrap_or(0.0)});
            if let Some(h) = s.healthy {
                o["healthy"] = json!(h);
            }
            if let Some(c) = &s.container_status {
                o["container_status"] = c.clone();
            }
            o
        })
        .collect();
    let mut o = json!({
        "id": task.task_id.value,
        "name": task.name,
        "framework_id": task.framework_id.value,
        "executor_id": task.executor_id.as_ref().map(|e| e.value.clone()).unwrap_or_default(),
        "slave_id": task.agent_id.value,
        "state": task.state,
        "resources": resources(&task.resources),
        "statuses": statuses,
    });
    if let Some(labels) = task.labels.as_ref().and_then(|l| l.get("labels")) {
        o["labels"] = labels.clone();
    }
    for (key, value) in [
        ("discovery", &task.discovery),
        ("container", &task.container),
    ] {
        if let Some(v) = value {
            o[key] = v.clone();
        }
    }
    if let Some(user) = &task.user {
        o["user"] = json!(user);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    #[test]
    fn the_resource_map_lists_the_standard_scalars() {
        let r = Resources::parse("cpus:2;ports:[1-2,4-5]").unwrap();
        let text = serde_json::to_string(&r.v0_map()).unwrap();
        assert_eq!(
            text,
            r#"{"cpus":2.0,"disk":0.0,"gpus":0.0,"mem":0.0,"ports":"[1-2, 4-5]"}"#
        );
    }

    #[test]
    fn the_resource_map_sums_each_name_over_reservations_and_allocations() {
        let mut r = Resources::parse(
            "cpus(web):1.5;cpus:2;ports(web):[1-2];ports:[3-4,9-9];zones(web):{b,a};zones:{c,a}",
        )
        .unwrap()
        .allocated_to(Some("web"));
        r.add(&Resource::scalar("mem", 64.0));
        let map = json!(r.v0_map());
        assert_eq!(
            map,
            json!({"cpus": 3.5, "gpus": 0.0, "mem": 64.0, "disk": 0.0,
                   "ports": "[1-4, 9-9]", "zones": "{a,b,c}"})
        );
        assert_eq!(json!(Resources::new().v0_map())["cpus"], json!(0.0));
    }

    #[test]
    fn attributes_are_written_as_mesos_writes_their_values_in_text() {
        let list: Vec<Attribute> = serde_json::from_value(json!([
            {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
            {"name": "zone", "type": "SCALAR", "scalar": {"value": 1}},
            {"name": "slots", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 3}, {"begin": 7, "end": 7}]}},
            {"name": "disks", "type": "SET", "set": {"item": ["ssd", "hdd"]}}
        ]))
        .unwrap();
        assert_eq!(
            attributes(&list),
            json!({"rack": "r1", "zone": 1.0, "slots": "[1-3, 7-7]", "disks": "{ssd,hdd}"})
        );
    }
}
