//! How much heap the master's core keeps per task, counted by a global allocator: agents
//! and load-like frameworks (command tasks of `cpus:0.1;mem:16`, as the state benchmark's)
//! fill a core with running tasks and as many completed ones (acknowledged TASK_FINISHED).

use meseta_api::internal::{RegisterAgent, StatusUpdate, LINK_VERSION};
use meseta_api::scheduler::{Accept, Acknowledge, Event};
use meseta_api::{
    AgentId, AgentInfo, CommandInfo, FrameworkId, FrameworkInfo, MasterInfo, Offer, Resources,
    StatusSource, TaskId, TaskInfo, TaskState, TaskStatus,
};
use meseta_master::core::{Core, CoreConfig, Effect};
use meseta_master::registry::RegistryState;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one task may cost the core (heap bytes; the goal is 2,000 of resident
/// memory per task for the whole master).
const BUDGET_PER_TASK: isize = 1_000;

const T0: f64 = 1_000_000.0;
const AGENTS: usize = 50;
const FRAMEWORKS: usize = 4;
const TASKS_PER_FRAMEWORK: usize = 500;

fn new_core() -> Core {
    let info: MasterInfo = serde_json::from_value(serde_json::json!({
        "id": "0b5c8d2e-5e0e-4a4f-9e57-6d1f7e2a9c11", "ip": 16777343, "port": 5050
    }))
    .unwrap();
    let config = CoreConfig {
        offer_timeout: None,
        agent_ping_timeout: 75.0,
        agent_reregister_timeout: 600.0,
        min_allocatable: meseta_master::allocator::default_min_allocatable(),
    };
    Core::new(info, config, RegistryState::default(), T0)
}

fn offers(effects: &[Effect]) -> Vec<(String, Offer)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToStream(stream, Event::Offers(o)) => Some((stream.clone(), o.offers.clone())),
            _ => None,
        })
        .flat_map(|(stream, offers)| offers.into_iter().map(move |o| (stream.clone(), o)))
        .collect()
}

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
            let accept: Accept = serde_json::from_value(serde_json::json!({
                "offer_ids": [offer.id],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                "filters": {"refuse_seconds": 0.0},
            }))
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
    let mut core = new_core();
    for i in 0..AGENTS {
        let mut info: AgentInfo = serde_json::from_value(
            serde_json::json!({"hostname": format!("host-{i}"), "port": 5051}),
        )
        .unwrap();
        info.resources = Resources::parse("cpus:24;mem:4096;disk:100000;ports:[31000-32000]")
            .unwrap()
            .into_vec();
        let register = RegisterAgent {
            version: LINK_VERSION,
            agent_info: info,
            endpoint: format!("127.0.0.{i}:5051"),
            tasks: vec![],
            executors: vec![],
            frameworks: vec![],
            capabilities: vec![],
            checkpointed_resources: vec![],
        };
        core.register_agent(T0, format!("L{i}"), register).unwrap();
    }
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
    let before = LIVE.load(Ordering::Relaxed);
    fill(&mut core, &frameworks, TASKS_PER_FRAMEWORK, true, "done");
    fill(&mut core, &frameworks, TASKS_PER_FRAMEWORK, false, "run");
    let tasks = (2 * FRAMEWORKS * TASKS_PER_FRAMEWORK) as isize;
    let per_task = (LIVE.load(Ordering::Relaxed) - before) / tasks;
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
