//! The v0 JSON model (`/state`, `/master/state`) of tasks, resources and attributes, shared
//! by the master and the agent.

use crate::mesos::{Attribute, Task};
use crate::resources::{Resource, Resources, ValueType};
use serde_json::{json, Map, Value};

/// A resource list as the v0 map: `{"cpus":1.0,"ports":"[31000-32000]"}`.
pub fn resources(list: &[Resource]) -> Value {
    let mut r = Resources::new();
    for res in list {
        r.add(res);
    }
    Value::Object(r.to_v0_map())
}

/// The v0 attributes map: `{"rack":"a","zone":1,"ports":"[1-3]"}`.
pub fn attributes(attributes: &[Attribute]) -> Value {
    let mut map = Map::new();
    for a in attributes {
        let value = match a.kind {
            ValueType::Scalar => json!(a.scalar.map_or(0.0, |s| s.value)),
            ValueType::Ranges => {
                let parts: Vec<String> = a
                    .ranges
                    .iter()
                    .flat_map(|r| r.range.iter().map(|r| format!("{}-{}", r.begin, r.end)))
                    .collect();
                json!(format!("[{}]", parts.join(", ")))
            }
            ValueType::Set => json!(format!(
                "{{{}}}",
                a.set.as_ref().map(|s| s.item.join(",")).unwrap_or_default()
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
