//! Read-only JSON views of the agent's state: the v0 `/state` model (as Mesos's agent
//! writes it), the v1 operator payloads (GET_STATE, GET_TASKS, …) and `/metrics/snapshot`.

use crate::agent::Agent;
use crate::book::{Executor, ExecutorState, Framework};
use crate::command::View;
use meseta_api::v0;
use meseta_api::{TaskState, MESETA_VERSION, MESOS_VERSION};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// Renders a view.
pub fn render(agent: &Agent, view: View) -> Value {
    match view {
        View::StateV0 => state_v0(agent),
        View::Metrics => metrics(agent),
        View::GetState => json!({
            "get_tasks": get_tasks(agent),
            "get_executors": get_executors(agent),
            "get_frameworks": get_frameworks(agent),
        }),
        View::GetFrameworks => get_frameworks(agent),
        View::GetExecutors => get_executors(agent),
        View::GetTasks => get_tasks(agent),
        View::GetAgent => json!({"agent_info": agent.agent_info}),
    }
}

fn executor_v0(framework: &Framework, e: &Executor) -> Value {
    let (mut tasks, mut queued) = (Vec::new(), Vec::new());
    for task in e.live_and_unacked_tasks(&framework.info) {
        let queued_task = e.queued.iter().any(|q| q.task_id == task.task_id);
        if queued_task { &mut queued } else { &mut tasks }.push(v0::task(&task));
    }
    json!({
        "id": e.info.executor_id.value,
        "name": e.info.name.clone().unwrap_or_default(),
        "source": e.info.source.clone().unwrap_or_default(),
        "container": e.container_id.value,
        "directory": e.directory.display().to_string(),
        "resources": v0::resources(&e.used_resources().into_vec()),
        "type": executor_type(e),
        "tasks": tasks,
        "queued_tasks": queued,
        "completed_tasks": e.completed.iter().map(v0::task).collect::<Vec<_>>(),
    })
}

/// The v0 `type` of an executor: COMMAND, DEFAULT (a task group's) or CUSTOM.
fn executor_type(e: &Executor) -> &'static str {
    match (e.command_executor, e.info.kind) {
        (true, _) => "COMMAND",
        (false, Some(meseta_api::ExecutorType::Default)) => "DEFAULT",
        (false, _) => "CUSTOM",
    }
}

fn framework_v0(f: &Framework) -> Value {
    let info = &f.info;
    json!({
        "id": info.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
        "name": info.name,
        "user": info.user,
        "failover_timeout": info.failover_timeout,
        "checkpoint": info.checkpoint,
        "hostname": info.hostname.clone().unwrap_or_default(),
        "role": info.role.clone().unwrap_or_else(|| "*".to_string()),
        "roles": info.effective_roles(),
        "capabilities": info.capabilities.iter().filter_map(|c| c.kind).collect::<Vec<_>>(),
        "executors": f.executors.values().map(|e| executor_v0(f, e)).collect::<Vec<_>>(),
        "completed_executors": f.completed_executors.iter().map(|e| executor_v0(f, e)).collect::<Vec<_>>(),
    })
}

fn flags_map(agent: &Agent) -> Value {
    let map: Map<String, Value> = agent
        .flags
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    Value::Object(map)
}

/// `/flags`.
pub fn flags_v0(flags: &[(String, String)]) -> Value {
    let map: Map<String, Value> = flags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({"flags": map})
}

fn state_v0(agent: &Agent) -> Value {
    let master_hostname = agent.master.as_ref().and_then(|m| m.hostname.clone());
    let mut state = json!({
        "version": MESOS_VERSION,
        "meseta_version": MESETA_VERSION,
        "start_time": agent.start_time,
        "id": agent.agent_info.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
        "pid": format!("slave(1)@{}", agent.endpoint),
        "hostname": agent.agent_info.hostname,
        "port": agent.agent_info.port,
        "capabilities": [],
        "resources": json!(agent.total.v0_map()),
        "unreserved_resources": json!(agent.total.v0_map()),
        "reserved_resources": {},
        "attributes": v0::attributes(&agent.agent_info.attributes),
        "master_hostname": master_hostname,
        "flags": flags_map(agent),
        "frameworks": agent.book.frameworks.values().map(framework_v0).collect::<Vec<_>>(),
        "completed_frameworks": agent.book.completed_frameworks.iter().map(framework_v0).collect::<Vec<_>>(),
    });
    for (name, value) in meseta_api::version::build_fields() {
        state[name] = value;
    }
    state
}

fn get_frameworks(agent: &Agent) -> Value {
    let entry = |f: &Framework| json!({"framework_info": f.info});
    json!({
        "frameworks": agent.book.frameworks.values().map(entry).collect::<Vec<_>>(),
        "completed_frameworks": agent.book.completed_frameworks.iter().map(entry).collect::<Vec<_>>(),
    })
}

fn get_executors(agent: &Agent) -> Value {
    let entry = |f: &Framework, e: &Executor| {
        let info = meseta_api::ExecutorInfo {
            framework_id: f.info.id.clone(),
            ..e.info.clone()
        };
        json!({"executor_info": info})
    };
    let (mut live, mut done) = (Vec::new(), Vec::new());
    for f in agent.book.frameworks.values() {
        live.extend(f.executors.values().map(|e| entry(f, e)));
        done.extend(f.completed_executors.iter().map(|e| entry(f, e)));
    }
    for f in &agent.book.completed_frameworks {
        done.extend(f.completed_executors.iter().map(|e| entry(f, e)));
    }
    json!({"executors": live, "completed_executors": done})
}

fn get_tasks(agent: &Agent) -> Value {
    let (mut queued, mut launched, mut terminated, mut completed) =
        (vec![], vec![], vec![], vec![]);
    let frameworks = agent
        .book
        .frameworks
        .values()
        .chain(agent.book.completed_frameworks.iter());
    for f in frameworks {
        for e in f.executors.values().chain(f.completed_executors.iter()) {
            for task in e.live_and_unacked_tasks(&f.info) {
                if e.queued.iter().any(|q| q.task_id == task.task_id) {
                    queued.push(task);
                } else if task.state.is_terminal() {
                    terminated.push(task);
                } else {
                    launched.push(task);
                }
            }
            completed.extend(e.completed.iter().cloned());
        }
    }
    json!({
        "pending_tasks": [],
        "queued_tasks": queued,
        "launched_tasks": launched,
        "terminated_tasks": terminated,
        "completed_tasks": completed,
    })
}

fn metrics(agent: &Agent) -> Value {
    let mut by_state = std::collections::HashMap::new();
    let mut executors = [0u64; 3];
    for f in agent.book.frameworks.values() {
        for e in f.executors.values() {
            match e.state {
                ExecutorState::Registering => executors[0] += 1,
                ExecutorState::Running => executors[1] += 1,
                ExecutorState::Terminating => executors[2] += 1,
                ExecutorState::Terminated => {}
            }
            for task in e.live_and_unacked_tasks(&f.info) {
                *by_state.entry(task.state).or_insert(0u64) += 1;
            }
        }
    }
    let count = |s: TaskState| by_state.get(&s).copied().unwrap_or(0);
    let used = agent.book.used_resources();
    let c = &agent.counters;
    let mut m = json!({
        "slave/uptime_secs": crate::agent::now_secs() - agent.start_time,
        "slave/registered": if agent.registered { 1 } else { 0 },
        "slave/recovery_errors": c.recovery_errors,
        "slave/frameworks_active": agent.book.frameworks.len(),
        "slave/executors_registering": executors[0],
        "slave/executors_running": executors[1],
        "slave/executors_terminating": executors[2],
        "slave/executors_terminated": c.executors_terminated,
        "slave/container_launch_errors": c.container_launch_errors,
        "slave/tasks_staging": count(TaskState::TaskStaging),
        "slave/tasks_starting": count(TaskState::TaskStarting),
        "slave/tasks_running": count(TaskState::TaskRunning),
        "slave/tasks_killing": count(TaskState::TaskKilling),
        "slave/tasks_finished": c.tasks_finished,
        "slave/tasks_failed": c.tasks_failed,
        "slave/tasks_killed": c.tasks_killed,
        "slave/tasks_lost": c.tasks_lost,
        "slave/tasks_dropped": c.tasks_dropped,
        "slave/tasks_gone": c.tasks_gone,
        "slave/tasks_error": c.tasks_error,
        "slave/valid_status_updates": c.valid_status_updates,
        "slave/invalid_status_updates": c.invalid_status_updates,
        "slave/valid_framework_messages": c.valid_framework_messages,
        "slave/invalid_framework_messages": c.invalid_framework_messages,
        "slave/status_updates_pending": agent.updates.pending_count(),
    });
    let gc = agent.gc.metrics();
    for (name, counter) in [
        ("succeeded", &gc.succeeded),
        ("failed", &gc.failed),
        ("pending", &gc.pending),
    ] {
        m[format!("gc/path_removals_{name}")] = json!(counter.load(Ordering::Relaxed));
    }
    for name in ["cpus", "mem", "disk", "gpus"] {
        let total = agent.total.scalar(name);
        let in_use = used.scalar(name);
        m[format!("slave/{name}_total")] = json!(total);
        m[format!("slave/{name}_used")] = json!(in_use);
        m[format!("slave/{name}_percent")] = json!(if total > 0.0 { in_use / total } else { 0.0 });
    }
    m
}
