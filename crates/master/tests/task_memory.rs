//! How much heap the master's core keeps per task, counted by a global allocator: agents
//! and load-like frameworks (command tasks of `cpus:0.1;mem:16`, as the state benchmark's)
//! fill a core with running tasks and as many completed ones (acknowledged TASK_FINISHED).

mod common;

use common::{core_with_agents, live_heap, offers, T0};
use meseta_api::internal::StatusUpdate;
use meseta_api::scheduler::{Accept, Acknowledge};
use meseta_api::{
    AgentId, CommandInfo, FrameworkId, FrameworkInfo, Resources, StatusSource, TaskId, TaskInfo,
    TaskState, TaskStatus,
};
use meseta_master::core::Core;

/// What one task may cost the core (heap bytes; the goal is 2,000 of resident
/// memory per task for the whole master).
const BUDGET_PER_TASK: isize = 600;

const AGENTS: usize = 50;
const FRAMEWORKS: usize = 4;
const TASKS_PER_FRAMEWORK: usize = 500;

fn update(
    framework_id: &FrameworkId,
    agent_id: &AgentId,
    task: &TaskId,
    state: TaskState,
) -> StatusUpdate {
    let mut status = TaskStatus::new(task.clone(), state);
    status.source = Some(StatusSource::SourceExecutor);
    status.agent_id = Some(agent_id.clone());
    status.executor_id = Some(meseta_api::ExecutorId::new(task.as_str()));
    status.timestamp = Some(T0 + 1.0);
    status.uuid = Some(meseta_api::json::new_uuid_bytes());
    StatusUpdate {
        framework_id: framework_id.clone(),
        status,
        latest_state: None,
    }
}

/// Launches `count` tasks of each framework (finished and acknowledged when `finish`).
fn fill(
    core: &mut Core,
    frameworks: &[(String, FrameworkId)],
    count: usize,
    finish: bool,
    prefix: &str,
) {
    let per_task = Resources::parse("cpus:0.1;mem:16").unwrap();
    let mut launched = vec![0usize; frameworks.len()];
    let mut now = T0;
    while launched.iter().any(|&n| n < count) {
        now += 10.0;
        core.tick(now);
        core.allocate(now);
        for (stream, offer) in offers(&core.drain_effects()) {
            let index = frameworks.iter().position(|(s, _)| *s == stream).unwrap();
            let framework_id = &frameworks[index].1;
            let mut free = Resources::from_list(offer.resources.clone())
                .unwrap()
                .allocated_to(None);
            let mut tasks = Vec::new();
            while launched[index] < count && free.contains(&per_task) {
                free.subtract_all(&per_task);
                let id = format!("{prefix}-{index}-{}", launched[index]);
                launched[index] += 1;
                tasks.push(TaskInfo::command_task(
                    id.clone(),
                    TaskId::new(id),
                    offer.agent_id.clone(),
                    per_task.allocated_to(Some("*")).into_vec(),
                    CommandInfo::shell("sleep 86400"),
                ));
            }
            let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id.clone()).collect();
            // Read from text, as the master reads a request's body (a `Value` tree would
            // size every list exactly; reading text grows them as it goes).
            let accept: Accept = serde_json::from_str(
                &serde_json::json!({
                    "offer_ids": [offer.id],
                    "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                    "filters": {"refuse_seconds": 0.0},
                })
                .to_string(),
            )
            .unwrap();
            core.accept(now, framework_id, accept);
            for task in &ids {
                core.status_update(
                    &offer.agent_id,
                    update(framework_id, &offer.agent_id, task, TaskState::TaskRunning),
                );
                if finish {
                    let done = update(framework_id, &offer.agent_id, task, TaskState::TaskFinished);
                    let uuid = done.status.uuid.clone().unwrap();
                    core.status_update(&offer.agent_id, done);
                    core.acknowledge(
                        framework_id,
                        Acknowledge {
                            agent_id: offer.agent_id.clone(),
                            task_id: task.clone(),
                            uuid,
                        },
                    )
                    .unwrap();
                }
            }
            core.drain_effects();
        }
    }
}

#[test]
fn a_task_costs_the_core_at_most_its_budget() {
    let mut core = core_with_agents(AGENTS);
    let frameworks: Vec<(String, FrameworkId)> = (0..FRAMEWORKS)
        .map(|i| {
            let info: FrameworkInfo = serde_json::from_value(serde_json::json!({
                "user": "root", "name": format!("load-{i}"), "failover_timeout": 0.0
            }))
            .unwrap();
            let stream = format!("S{i}");
            (
                stream.clone(),
                core.subscribe(T0, stream, info, vec![]).unwrap(),
            )
        })
        .collect();
    core.drain_effects();
    let before = live_heap();
    fill(&mut core, &frameworks, TASKS_PER_FRAMEWORK, true, "done");
    fill(&mut core, &frameworks, TASKS_PER_FRAMEWORK, false, "run");
    let tasks = (2 * FRAMEWORKS * TASKS_PER_FRAMEWORK) as isize;
    let per_task = (live_heap() - before) / tasks;
    eprintln!("heap bytes per task: {per_task}");
    let running: usize = core.agents.values().map(|a| a.tasks.len()).sum();
    let completed: usize = core
        .frameworks
        .values()
        .map(|f| f.completed_tasks.len())
        .sum();
    assert_eq!(
        (running, completed),
        (tasks as usize / 2, tasks as usize / 2)
    );
    assert!(
        per_task <= BUDGET_PER_TASK,
        "{per_task} heap bytes per task"
    );
}
