//! Tests of the whole-state views on a core with running, completed and unreachable tasks,
//! an executor, an outstanding offer and a completed framework.

use super::*;
use crate::core::tests::{core, framework_info, launch, offers, register, status, T0};
use crate::core::Snapshot;
use meseta_api::scheduler::Acknowledge;
use meseta_api::{AgentId, FrameworkId, TaskId, TaskInfo, TaskState};

fn task_json(id: &str, agent: &AgentId, extra: Value) -> TaskInfo {
    let mut v = json!({
        "name": id, "task_id": {"value": id}, "agent_id": agent,
        "resources": [{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}},
                      {"name":"mem","type":"SCALAR","scalar":{"value":32}}]
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

/// Two agents (the second unreachable), one framework with tasks on both, one torn down.
fn busy() -> (Core, AgentId, AgentId, FrameworkId) {
    let mut c = core();
    let a1 = register(&mut c, "L1", None, vec![]);
    let a2 = register(&mut c, "L2", None, vec![]);
    let info = framework_info(json!({
        "capabilities": [{"type": "PARTITION_AWARE"}],
        "webui_url": "http://ui", "principal": "p", "hostname": "fh"
    }));
    let fid = c.subscribe(T0, "S1".into(), info, vec![]).unwrap();
    c.drain_effects();
    c.allocate(T0);
    let made = offers(&c.drain_effects(), "S1");
    for offer in &made {
        let agent = offer.agent_id.clone();
        let tasks = if agent == a1 {
            vec![
                task_json(
                    "t1",
                    &agent,
                    json!({"command": {"value": "true"}, "labels": {"labels": [{"key": "k", "value": "v"}]}}),
                ),
                task_json("done", &agent, json!({"command": {"value": "true"}})),
                task_json(
                    "e1",
                    &agent,
                    json!({
                        "executor": {"executor_id": {"value": "x"}, "name": "ex", "command": {"value": "run"},
                                     "resources": [{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}}]},
                        "discovery": {"visibility": "FRAMEWORK"}
                    }),
                ),
            ]
        } else {
            vec![task_json(
                "u1",
                &agent,
                json!({"command": {"value": "true"}}),
            )]
        };
        c.accept(T0, &fid, launch(offer, tasks));
    }
    let mut running = status("t1", TaskState::TaskRunning, 1);
    running.status.healthy = Some(true);
    running.status.timestamp = Some(T0 + 1.0);
    running.status.container_status = Some(json!({"executor_pid": 7}));
    c.status_update(&a1, running);
    c.status_update(&a1, status("e1", TaskState::TaskRunning, 2));
    c.status_update(&a1, status("done", TaskState::TaskRunning, 3));
    c.status_update(&a1, status("done", TaskState::TaskFinished, 4));
    c.acknowledge(
        &fid,
        Acknowledge {
            agent_id: a1.clone(),
            task_id: TaskId::new("done"),
            uuid: meseta_api::json::Bytes(vec![4; 16]),
        },
    )
    .unwrap();
    c.status_update(&a2, status("u1", TaskState::TaskRunning, 5));
    let gone = c
        .subscribe(
            T0,
            "S2".into(),
            framework_info(json!({"name": "g"})),
            vec![],
        )
        .unwrap();
    c.teardown(T0 + 2.0, &gone).unwrap();
    c.link_closed(T0 + 3.0, &a2, "L2");
    c.tick(T0 + 100.0);
    c.allocate(T0 + 100.0);
    c.drain_effects();
    (c, a1, a2, fid)
}

fn value(view: &impl serde::Serialize) -> Value {
    serde_json::to_value(view).unwrap()
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t[key]["value"]
                .as_str()
                .or(t[key].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn get_state_lists_tasks_by_where_they_are() {
    let (c, a1, a2, fid) = busy();
    let state = value(&get_state(&c.snapshot()));
    let tasks = &state["get_tasks"];
    assert_eq!(ids(&tasks["tasks"], "task_id"), ["e1", "t1"]);
    assert_eq!(ids(&tasks["unreachable_tasks"], "task_id"), ["u1"]);
    assert_eq!(tasks["unreachable_tasks"][0]["state"], "TASK_UNREACHABLE");
    assert_eq!(ids(&tasks["completed_tasks"], "task_id"), ["done"]);
    assert_eq!(tasks["pending_tasks"], json!([]));
    assert_eq!(tasks["orphan_tasks"], json!([]));
    let executors = &state["get_executors"]["executors"];
    assert_eq!(executors[0]["executor_info"]["executor_id"]["value"], "x");
    assert_eq!(executors[0]["agent_id"]["value"], a1.as_str());
    let frameworks = &state["get_frameworks"];
    let f = &frameworks["frameworks"][0];
    assert_eq!(f["framework_info"]["id"]["value"], fid.as_str());
    assert_eq!(
        f["registered_time"],
        json!({"nanoseconds": 1_000_000_000_000_000i64})
    );
    assert_eq!(
        f["offers"].as_array().unwrap().len(),
        1,
        "the offer made after the tick"
    );
    let allocated: f64 = f["allocated_resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "cpus")
        .map(|r| r["scalar"]["value"].as_f64().unwrap())
        .sum();
    assert_eq!(
        allocated, 1.6,
        "t1, e1 and its executor on the reachable agent, u1 on the other"
    );
    assert_eq!(
        frameworks["completed_frameworks"][0]["framework_info"]["name"],
        "g"
    );
    let agents = &state["get_agents"]["agents"];
    let listed: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent_info"]["id"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [a1.as_str()], "the unreachable agent is not listed");
    assert!(!listed.contains(&a2.as_str()));
}

#[test]
fn a_snapshot_keeps_the_state_it_was_taken_at() {
    let (mut c, a1, _, _) = busy();
    let before = c.snapshot();
    c.status_update(&a1, status("t1", TaskState::TaskFinished, 9));
    let state_of_t1 = |s: &Snapshot| {
        let tasks = value(&get_tasks(s))["tasks"].clone();
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task_id"]["value"] == "t1")
            .map(|t| t["state"].clone())
    };
    assert_eq!(state_of_t1(&before), Some(json!("TASK_RUNNING")));
    assert_eq!(state_of_t1(&c.snapshot()), Some(json!("TASK_FINISHED")));
}

#[test]
fn v0_tasks_are_the_v0_model_of_the_operator_api_tasks() {
    let (c, ..) = busy();
    let s = c.snapshot();
    let operator = value(&get_tasks(&s));
    let v0 = value(&v0_state(&s, &json!({}), "L"));
    let mut compared = 0;
    for framework in v0["frameworks"].as_array().unwrap() {
        for listed in ["tasks", "completed_tasks"] {
            for task in framework[listed].as_array().unwrap() {
                let id = task["id"].as_str().unwrap();
                let api: meseta_api::Task = ["tasks", "unreachable_tasks", "completed_tasks"]
                    .iter()
                    .flat_map(|l| operator[*l].as_array().unwrap())
                    .find(|t| t["task_id"]["value"] == id)
                    .map(|t| serde_json::from_value(t.clone()).unwrap())
                    .unwrap();
                assert_eq!(task, &meseta_api::v0::task(&api), "{id}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 4, "t1, e1, u1 and done");
}

#[test]
fn an_offer_copies_the_agent_and_framework_a_snapshot_shares_but_not_their_tasks() {
    let (mut c, a1, _, fid) = busy();
    let offer_id = c.offers.keys().next().cloned().unwrap();
    let before = c.snapshot();
    let no_filter: meseta_api::Filters =
        serde_json::from_value(json!({"refuse_seconds": 0.0})).unwrap();
    c.decline(T0 + 101.0, &fid, &[offer_id], Some(&no_filter));
    c.allocate(T0 + 101.0);
    assert_eq!(c.offers.len(), 1, "offered again");
    let (then, now) = (&before.agents[&a1], &c.agents[&a1]);
    assert!(!Shared::ptr_eq(then, now), "the agent was copied");
    assert!(Shared::ptr_eq(&then.tasks, &now.tasks));
    let (then, now) = (&before.frameworks[&fid], &c.frameworks[&fid]);
    assert!(!Shared::ptr_eq(then, now), "the framework was copied");
    assert!(Shared::ptr_eq(&then.tasks, &now.tasks));
    assert!(Shared::ptr_eq(&then.completed_tasks, &now.completed_tasks));
}
