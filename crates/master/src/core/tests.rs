//! Unit tests of the pure master core: events in, effects out.

use super::*;
use crate::registry::RegistryState;
use meseta_api::internal::{ExitedExecutor, RegisterAgent, StatusUpdate, LINK_VERSION};
use meseta_api::scheduler::{Accept, Acknowledge, Kill, ReconcileTask};
use serde_json::json;

pub(crate) const T0: f64 = 1_000_000.0;

pub(crate) fn core() -> Core {
    let info: MasterInfo =
        serde_json::from_value(json!({"id":"m","ip":16777343,"port":5050})).unwrap();
    let config = CoreConfig {
        offer_timeout: Some(30.0),
        agent_ping_timeout: 75.0,
        agent_reregister_timeout: 600.0,
        min_allocatable: crate::allocator::default_min_allocatable(),
    };
    Core::new(info, config, RegistryState::default(), T0)
}

pub(crate) fn framework_info(extra: serde_json::Value) -> FrameworkInfo {
    let mut v = json!({"user":"u","name":"f","failover_timeout":10.0});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

pub(crate) fn register(core: &mut Core, link: &str, id: Option<&str>, tasks: Vec<Task>) -> AgentId {
    register_with(core, link, id, tasks, "cpus:4;mem:1024;ports:[31000-31010]")
}

pub(crate) fn register_with(
    core: &mut Core,
    link: &str,
    id: Option<&str>,
    tasks: Vec<Task>,
    resources: &str,
) -> AgentId {
    let mut info: AgentInfo = serde_json::from_value(json!({"hostname":"h","port":5051})).unwrap();
    info.resources = Resources::parse(resources).unwrap().into_vec();
    info.id = id.map(AgentId::new);
    let reg = RegisterAgent {
        version: LINK_VERSION,
        agent_info: info,
        endpoint: "127.0.0.1:5051".into(),
        tasks,
        executors: vec![],
        frameworks: vec![],
        capabilities: vec![],
        checkpointed_resources: vec![],
    };
    core.register_agent(T0, link.into(), reg).unwrap()
}

/// A registry that has admitted `agent` as `c` knows it (what a restarted master reads).
pub(crate) fn registry_admitting(c: &Core, agent: &AgentId) -> RegistryState {
    let mut state = RegistryState::default();
    state.apply(&RegistryChange::PutAgent(
        agent.clone(),
        crate::registry::AdmittedAgent {
            info: c.agents[agent].info.clone(),
            endpoint: "127.0.0.1:5051".into(),
            deactivated: false,
            drain: None,
        },
    ));
    state
}

pub(crate) fn stream_events(effects: &[Effect], stream: &str) -> Vec<Event> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToStream(s, ev) if s == stream => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn link_messages(effects: &[Effect], link: &str) -> Vec<ToAgent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToLink(l, m) if l == link => Some(m.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn offers(effects: &[Effect], stream: &str) -> Vec<Offer> {
    stream_events(effects, stream)
        .into_iter()
        .flat_map(|e| match e {
            Event::Offers(o) => o.offers,
            _ => vec![],
        })
        .collect()
}

pub(crate) fn updates(effects: &[Effect], stream: &str) -> Vec<TaskStatus> {
    stream_events(effects, stream)
        .into_iter()
        .filter_map(|e| match e {
            Event::Update(u) => Some(u.status),
            _ => None,
        })
        .collect()
}

pub(crate) fn task(id: &str, agent: &AgentId, cpus: f64) -> TaskInfo {
    serde_json::from_value(json!({
        "name": id, "task_id": {"value": id}, "agent_id": agent,
        "command": {"value": "true"},
        "resources": [{"name":"cpus","type":"SCALAR","scalar":{"value":cpus}},{"name":"mem","type":"SCALAR","scalar":{"value":32}}]
    }))
    .unwrap()
}

pub(crate) fn launch(offer: &Offer, tasks: Vec<TaskInfo>) -> Accept {
    serde_json::from_value(json!({
        "offer_ids": [offer.id],
        "operations": [{"type":"LAUNCH","launch":{"task_infos": tasks}}],
    }))
    .unwrap()
}

/// A core with one agent and one subscribed framework holding one offer.
pub(crate) fn with_offer(extra: serde_json::Value) -> (Core, AgentId, FrameworkId, Offer) {
    let mut c = core();
    let agent = register(&mut c, "L1", None, vec![]);
    let fid = c
        .subscribe(T0, "S1".into(), framework_info(extra), vec![])
        .unwrap();
    c.drain_effects();
    c.allocate(T0);
    let fx = c.drain_effects();
    let offer = offers(&fx, "S1").pop().expect("one offer");
    (c, agent, fid, offer)
}

#[test]
fn subscribe_persists_then_answers_subscribed_and_heartbeat() {
    let mut c = core();
    let id = c
        .subscribe(T0, "S1".into(), framework_info(json!({})), vec![])
        .unwrap();
    assert_eq!(id.as_str(), "m-0000");
    let fx = c.drain_effects();
    assert!(matches!(&fx[0], Effect::Persist(RegistryChange::PutFramework(f, _)) if f == &id));
    let events = stream_events(&fx, "S1");
    assert!(matches!(&events[0], Event::Subscribed(s) if s.framework_id == id));
    assert_eq!(events[1], Event::Heartbeat);
}

#[test]
fn resubscribe_fails_over_the_old_stream() {
    let mut c = core();
    let id = c
        .subscribe(T0, "S1".into(), framework_info(json!({})), vec![])
        .unwrap();
    c.drain_effects();
    let mut info = framework_info(json!({}));
    info.id = Some(id.clone());
    assert_eq!(
        c.subscribe(T0 + 1.0, "S2".into(), info, vec![]).unwrap(),
        id
    );
    let fx = c.drain_effects();
    assert!(
        matches!(&stream_events(&fx, "S1")[0], Event::Error(e) if e.message == "Framework failed over")
    );
    assert!(fx.contains(&Effect::CloseStream("S1".into())));
    assert!(matches!(&stream_events(&fx, "S2")[0], Event::Subscribed(_)));
}

#[test]
fn offers_go_out_and_launch_reaches_the_agent() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    assert_eq!(
        offer
            .resources
            .iter()
            .find(|r| r.name == "cpus")
            .unwrap()
            .role
            .as_deref(),
        Some("*")
    );
    c.accept(T0, &fid, launch(&offer, vec![task("t1", &agent, 1.0)]));
    let fx = c.drain_effects();
    let msgs = link_messages(&fx, "L1");
    assert!(matches!(&msgs[0], ToAgent::RunTask(r) if r.task.task_id.as_str() == "t1"));
    assert!(c.offers.is_empty());
    // The rest of the offer is filtered for the default 5 seconds.
    c.allocate(T0 + 1.0);
    assert!(offers(&c.drain_effects(), "S1").is_empty());
    c.tick(T0 + 6.0);
    c.allocate(T0 + 6.0);
    let again = offers(&c.drain_effects(), "S1");
    assert_eq!(
        Resources::from_list(again[0].resources.clone())
            .unwrap()
            .scalar("cpus"),
        3.0
    );
}

#[test]
fn invalid_launches_end_in_task_error_without_launching() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    let mut both = task("both", &agent, 0.1);
    both.executor = Some(
        serde_json::from_value(json!({"executor_id":{"value":"e"},"command":{"value":"x"}}))
            .unwrap(),
    );
    let mut neither = task("neither", &agent, 0.1);
    neither.command = None;
    let tasks = vec![
        task("ok", &agent, 1.0),
        task("ok", &agent, 1.0),
        task("big", &agent, 100.0),
        task("wrong-agent", &AgentId::new("other"), 0.1),
        both,
        neither,
    ];
    c.accept(T0, &fid, launch(&offer, tasks));
    let fx = c.drain_effects();
    assert_eq!(link_messages(&fx, "L1").len(), 1);
    let errs = updates(&fx, "S1");
    assert_eq!(errs.len(), 5);
    for s in &errs {
        assert_eq!(s.state, TaskState::TaskError);
        assert_eq!(s.reason, Some(Reason::ReasonTaskInvalid));
        assert_eq!(s.source, Some(StatusSource::SourceMaster));
        assert!(s.uuid.is_none());
    }
    assert!(errs[0].message.as_ref().unwrap().contains("duplicate ID"));
    assert!(errs[1].message.as_ref().unwrap().contains("more resources"));
    assert!(errs[2].message.as_ref().unwrap().contains("invalid agent"));
    assert!(errs[3].message.as_ref().unwrap().contains("not both"));
}

fn launch_group(offer: &Offer, executor: serde_json::Value, tasks: Vec<TaskInfo>) -> Accept {
    serde_json::from_value(json!({
        "offer_ids": [offer.id],
        "operations": [{"type": "LAUNCH_GROUP",
            "launch_group": {"executor": executor, "task_group": {"tasks": tasks}}}],
    }))
    .unwrap()
}

fn default_executor(id: &str) -> serde_json::Value {
    json!({"type": "DEFAULT", "executor_id": {"value": id}, "resources": [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
        {"name": "disk", "type": "SCALAR", "scalar": {"value": 10}}]})
}

/// A core whose agent has disk, with one subscribed framework holding one offer.
fn with_group_offer() -> (Core, AgentId, FrameworkId, Offer) {
    let mut c = core();
    let agent = register_with(&mut c, "L1", None, vec![], "cpus:4;mem:1024;disk:100");
    let fid = c
        .subscribe(T0, "S1".into(), framework_info(json!({})), vec![])
        .unwrap();
    c.drain_effects();
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S1").pop().expect("one offer");
    (c, agent, fid, offer)
}

#[test]
fn a_task_group_reaches_the_agent_with_its_executor_counted_once() {
    let (mut c, agent, fid, offer) = with_group_offer();
    let tasks = vec![task("a", &agent, 1.0), task("b", &agent, 1.0)];
    c.accept(T0, &fid, launch_group(&offer, default_executor("g"), tasks));
    let fx = c.drain_effects();
    assert!(updates(&fx, "S1").is_empty(), "{:?}", updates(&fx, "S1"));
    let msgs = link_messages(&fx, "L1");
    let [ToAgent::RunTaskGroup(run)] = &msgs[..] else {
        panic!("{msgs:?}")
    };
    assert_eq!(run.task_group.tasks.len(), 2);
    assert_eq!(run.executor.framework_id.as_ref(), Some(&fid));
    let used = c.agents[&agent].holdings.used()[&fid].scalar("cpus");
    assert!((used - 2.5).abs() < 1e-9, "the executor's 0.5 once: {used}");
    let stored = &c.agents[&agent].tasks[&(fid.clone(), TaskId::new("a"))];
    assert_eq!(stored.executor_id, Some(ExecutorId::new("g")));
    // A second group for the running executor does not pay for it again.
    c.tick(T0 + 6.0);
    c.allocate(T0 + 6.0);
    let offer = offers(&c.drain_effects(), "S1").pop().expect("the rest");
    let more = vec![task("c", &agent, 1.0)];
    c.accept(
        T0 + 6.0,
        &fid,
        launch_group(&offer, default_executor("g"), more),
    );
    let fx = c.drain_effects();
    assert!(matches!(
        &link_messages(&fx, "L1")[..],
        [ToAgent::RunTaskGroup(_)]
    ));
    let used = c.agents[&agent].holdings.used()[&fid].scalar("cpus");
    assert!((used - 3.5).abs() < 1e-9, "{used}");
}

#[test]
fn invalid_task_groups_end_in_task_error_without_launching() {
    let cases: Vec<(serde_json::Value, Vec<serde_json::Value>, &str)> = vec![
        (
            json!({"type": "CUSTOM", "command": {"value": "x"}}),
            vec![],
            "must be 'DEFAULT'",
        ),
        (json!({"resources": []}), vec![], "uses less CPUs"),
        (
            json!({}),
            vec![json!({"executor": {"executor_id": {"value": "own"}, "command": {"value": "x"}}})],
            "is different from executor 'g'",
        ),
        (
            json!({}),
            vec![json!({"cpus": 100})],
            "Task 'a' is invalid: Task uses more resources",
        ),
    ];
    for (executor_extra, task_extras, expected) in cases {
        let (mut c, agent, fid, offer) = with_group_offer();
        let mut executor = default_executor("g");
        executor
            .as_object_mut()
            .unwrap()
            .extend(executor_extra.as_object().unwrap().clone());
        let mut a = task("a", &agent, 1.0);
        for extra in task_extras {
            if let Some(cpus) = extra.get("cpus") {
                a = task("a", &agent, cpus.as_f64().unwrap());
            }
            if let Some(own) = extra.get("executor") {
                a.executor = Some(serde_json::from_value(own.clone()).unwrap());
            }
        }
        let tasks = vec![a, task("b", &agent, 1.0)];
        c.accept(T0, &fid, launch_group(&offer, executor, tasks));
        let fx = c.drain_effects();
        assert!(link_messages(&fx, "L1").is_empty(), "{expected}");
        let errors = updates(&fx, "S1");
        assert_eq!(errors.len(), 2, "{expected}");
        for s in &errors {
            assert_eq!(s.state, TaskState::TaskError);
            assert_eq!(s.reason, Some(Reason::ReasonTaskGroupInvalid));
            let message = s.message.as_deref().unwrap();
            assert!(
                message.contains(expected),
                "{message} should say {expected}"
            );
        }
        assert!(c.agents[&agent]
            .holdings
            .used()
            .get(&fid)
            .is_none_or(|u| u.is_empty()));
    }
}

#[test]
fn an_empty_task_group_launches_nothing() {
    let (mut c, _agent, fid, offer) = with_group_offer();
    c.accept(
        T0,
        &fid,
        launch_group(&offer, default_executor("g"), vec![]),
    );
    let fx = c.drain_effects();
    assert!(link_messages(&fx, "L1").is_empty());
    assert!(updates(&fx, "S1").is_empty());
}

#[test]
fn a_launch_with_a_default_executor_is_refused() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    let mut t = task("t", &agent, 0.1);
    t.command = None;
    t.executor = Some(serde_json::from_value(default_executor("g")).unwrap());
    c.accept(T0, &fid, launch(&offer, vec![t]));
    let fx = c.drain_effects();
    assert!(link_messages(&fx, "L1").is_empty());
    let errors = updates(&fx, "S1");
    assert_eq!(
        errors[0].message.as_deref(),
        Some("'ExecutorInfo.type' must be 'CUSTOM'")
    );
}

#[test]
fn unknown_or_reused_offer_drops_or_loses_the_tasks() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("a", &agent, 0.1)]));
    c.drain_effects();
    c.accept(T0, &fid, launch(&offer, vec![task("b", &agent, 0.1)]));
    let lost = updates(&c.drain_effects(), "S1");
    assert_eq!(lost[0].state, TaskState::TaskLost);
    assert_eq!(lost[0].reason, Some(Reason::ReasonInvalidOffers));

    let (mut c, agent, fid, offer) =
        with_offer(json!({"capabilities":[{"type":"PARTITION_AWARE"}]}));
    c.decline(T0, &fid, std::slice::from_ref(&offer.id), None);
    c.accept(T0, &fid, launch(&offer, vec![task("b", &agent, 0.1)]));
    assert_eq!(
        updates(&c.drain_effects(), "S1")[0].state,
        TaskState::TaskDropped
    );
}

pub(crate) fn status(task: &str, state: TaskState, uuid: u8) -> StatusUpdate {
    let mut s = TaskStatus::new(TaskId::new(task), state);
    s.uuid = Some(meseta_api::json::Bytes(vec![uuid; 16]));
    s.source = Some(StatusSource::SourceExecutor);
    StatusUpdate {
        framework_id: FrameworkId::new("m-0000"),
        status: s,
        latest_state: None,
    }
}

#[test]
fn updates_flow_and_terminal_ack_completes_the_task() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t", &agent, 1.0)]));
    c.drain_effects();
    assert_eq!(c.agents[&agent].used_total().scalar("cpus"), 1.0);
    c.status_update(&agent, status("t", TaskState::TaskRunning, 1));
    c.status_update(&agent, status("t", TaskState::TaskFinished, 2));
    let fx = c.drain_effects();
    let ups = updates(&fx, "S1");
    assert_eq!(
        ups.iter().map(|s| s.state).collect::<Vec<_>>(),
        vec![TaskState::TaskRunning, TaskState::TaskFinished]
    );
    assert_eq!(ups[0].agent_id.as_ref(), Some(&agent));
    // Resources are free when the terminal update arrives; the task stays until acked.
    assert_eq!(c.agents[&agent].used_total().scalar("cpus"), 0.0);
    assert!(c.frameworks[&fid].tasks.contains_key(&TaskId::new("t")));
    c.acknowledge(
        &fid,
        Acknowledge {
            agent_id: agent.clone(),
            task_id: TaskId::new("t"),
            uuid: meseta_api::json::Bytes(vec![2; 16]),
        },
    )
    .unwrap();
    let fx = c.drain_effects();
    assert!(
        matches!(&link_messages(&fx, "L1")[0], ToAgent::Acknowledge(a) if a.task_id.as_str() == "t")
    );
    assert!(!c.frameworks[&fid].tasks.contains_key(&TaskId::new("t")));
    assert_eq!(c.frameworks[&fid].completed_tasks.len(), 1);
}

#[test]
fn reconciliation_answers() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t", &agent, 1.0)]));
    c.status_update(&agent, status("t", TaskState::TaskRunning, 1));
    c.drain_effects();
    c.reconcile(T0, &fid, vec![]);
    let implicit = updates(&c.drain_effects(), "S1");
    assert_eq!(implicit.len(), 1);
    assert_eq!(implicit[0].state, TaskState::TaskRunning);
    assert_eq!(implicit[0].reason, Some(Reason::ReasonReconciliation));
    assert!(implicit[0].uuid.is_none());

    let ask = |t: &str, a: Option<&str>| ReconcileTask {
        task_id: TaskId::new(t),
        agent_id: a.map(AgentId::new),
    };
    c.reconcile(
        T0,
        &fid,
        vec![
            ask("t", None),
            ask("x", Some(agent.as_str())),
            ask("y", Some("nope")),
            ask("z", None),
        ],
    );
    let explicit = updates(&c.drain_effects(), "S1");
    let states: Vec<TaskState> = explicit.iter().map(|s| s.state).collect();
    // Not partition aware: GONE and UNKNOWN are reported as LOST.
    assert_eq!(
        states,
        vec![
            TaskState::TaskRunning,
            TaskState::TaskLost,
            TaskState::TaskLost,
            TaskState::TaskLost
        ]
    );
}

#[test]
fn partition_aware_reconciliation_states() {
    let (mut c, agent, fid, _) = with_offer(json!({"capabilities":[{"type":"PARTITION_AWARE"}]}));
    let ask = |t: &str, a: Option<&str>| ReconcileTask {
        task_id: TaskId::new(t),
        agent_id: a.map(AgentId::new),
    };
    c.reconcile(
        T0,
        &fid,
        vec![ask("x", Some(agent.as_str())), ask("y", Some("nope"))],
    );
    let states: Vec<TaskState> = updates(&c.drain_effects(), "S1")
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, vec![TaskState::TaskGone, TaskState::TaskUnknown]);
}

#[test]
fn kill_is_relayed_and_unknown_kill_is_reconciled() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t", &agent, 1.0)]));
    c.drain_effects();
    c.kill(
        T0,
        &fid,
        Kill {
            task_id: TaskId::new("t"),
            agent_id: None,
            kill_policy: None,
        },
    );
    assert!(
        matches!(&link_messages(&c.drain_effects(), "L1")[0], ToAgent::KillTask(k) if k.task_id.as_str() == "t")
    );
    c.kill(
        T0,
        &fid,
        Kill {
            task_id: TaskId::new("nope"),
            agent_id: None,
            kill_policy: None,
        },
    );
    assert_eq!(
        updates(&c.drain_effects(), "S1")[0].state,
        TaskState::TaskLost
    );
}

#[test]
fn disconnect_then_failover_timeout_removes_the_framework() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t", &agent, 1.0)]));
    c.drain_effects();
    c.stream_closed(T0, &fid, "S1");
    assert!(!c.frameworks[&fid].connected());
    c.tick(T0 + 5.0);
    assert!(
        c.frameworks.contains_key(&fid),
        "kept within failover_timeout"
    );
    c.tick(T0 + 10.5);
    let fx = c.drain_effects();
    assert!(!c.frameworks.contains_key(&fid));
    assert!(c.removed_frameworks.contains(&fid));
    assert!(matches!(
        &link_messages(&fx, "L1")[0],
        ToAgent::ShutdownFramework(_)
    ));
    assert!(
        fx.contains(&Effect::Persist(RegistryChange::RemoveFramework(
            fid.clone()
        )))
    );
    assert_eq!(c.agents[&agent].used_total().scalar("cpus"), 0.0);
    // A removed framework may not come back.
    let mut info = framework_info(json!({}));
    info.id = Some(fid);
    assert_eq!(
        c.subscribe(T0 + 20.0, "S9".into(), info, vec![])
            .unwrap_err()
            .status,
        403
    );
}

#[test]
fn agent_reregistration_keeps_tasks_and_reconciles_missing_ones() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(
        T0,
        &fid,
        launch(
            &offer,
            vec![task("kept", &agent, 1.0), task("lost", &agent, 1.0)],
        ),
    );
    c.drain_effects();
    c.link_closed(T0, &agent, "L1");
    let kept = &c.agents[&agent].tasks[&(fid.clone(), TaskId::new("kept"))];
    let kept: Task = serde_json::from_value(serde_json::to_value(&**kept).unwrap()).unwrap();
    let id = register(&mut c, "L2", Some(agent.as_str()), vec![kept]);
    assert_eq!(id, agent);
    let fx = c.drain_effects();
    let msgs = link_messages(&fx, "L2");
    assert!(matches!(&msgs[0], ToAgent::Registered(r) if r.agent_id == agent));
    assert!(
        matches!(&msgs[1], ToAgent::ReconcileTasks(r) if r.task_ids == vec![TaskId::new("lost")])
    );
    assert_eq!(c.agents[&agent].used_total().scalar("cpus"), 2.0);
}

#[test]
fn unreachable_agent_and_mark_gone() {
    let (mut c, agent, fid, offer) =
        with_offer(json!({"capabilities":[{"type":"PARTITION_AWARE"}]}));
    c.accept(T0, &fid, launch(&offer, vec![task("t", &agent, 1.0)]));
    c.drain_effects();
    c.link_closed(T0, &agent, "L1");
    c.tick(T0 + 76.0);
    let fx = c.drain_effects();
    let ups = updates(&fx, "S1");
    assert_eq!(ups[0].state, TaskState::TaskUnreachable);
    assert!(stream_events(&fx, "S1")
        .iter()
        .any(|e| matches!(e, Event::Failure(f) if f.agent_id.as_ref() == Some(&agent))));
    c.mark_agent_gone(T0 + 80.0, &agent).unwrap();
    let fx = c.drain_effects();
    assert_eq!(updates(&fx, "S1")[0].state, TaskState::TaskGoneByOperator);
    assert!(fx.contains(&Effect::Persist(RegistryChange::MarkAgentGone(
        agent.clone()
    ))));
    let err = c.register_agent(
        T0,
        "L3".into(),
        RegisterAgent {
            version: LINK_VERSION,
            agent_info: serde_json::from_value(json!({"hostname":"h","id":agent})).unwrap(),
            endpoint: "x".into(),
            tasks: vec![],
            executors: vec![],
            frameworks: vec![],
            capabilities: vec![],
            checkpointed_resources: vec![],
        },
    );
    assert_eq!(err.unwrap_err().status, 403);
}

#[test]
fn executor_exit_frees_resources_and_reports_failure() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    let mut t = task("t", &agent, 1.0);
    t.command = None;
    t.executor = Some(
        serde_json::from_value(json!({
            "executor_id":{"value":"e"},"command":{"value":"x"},
            "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}]
        }))
        .unwrap(),
    );
    c.accept(T0, &fid, launch(&offer, vec![t]));
    c.drain_effects();
    assert_eq!(c.agents[&agent].used_total().scalar("cpus"), 1.5);
    c.executor_exited(
        &agent,
        ExitedExecutor {
            framework_id: fid.clone(),
            executor_id: ExecutorId::new("e"),
            status: Some(256),
            resources: vec![],
        },
    );
    let fx = c.drain_effects();
    assert!(stream_events(&fx, "S1")
        .iter()
        .any(|e| matches!(e, Event::Failure(f) if f.status == Some(256))));
    assert_eq!(c.agents[&agent].used_total().scalar("cpus"), 1.0);
}

#[test]
fn registry_recovery_marks_agents_recovering_and_expires_them() {
    let mut state = RegistryState::default();
    let info: AgentInfo =
        serde_json::from_value(json!({"hostname":"h","id":{"value":"old-S0"}})).unwrap();
    state.apply(&RegistryChange::PutAgent(
        AgentId::new("old-S0"),
        crate::registry::AdmittedAgent {
            info,
            endpoint: "e".into(),
            deactivated: false,
            drain: None,
        },
    ));
    let fi = framework_info(json!({"id":{"value":"old-0000"}}));
    state.apply(&RegistryChange::PutFramework(
        FrameworkId::new("old-0000"),
        fi.clone(),
    ));
    let master: MasterInfo = serde_json::from_value(json!({"id":"m2","ip":1,"port":1})).unwrap();
    let mut c = Core::new(
        master,
        CoreConfig {
            offer_timeout: None,
            agent_ping_timeout: 75.0,
            agent_reregister_timeout: 600.0,
            min_allocatable: crate::allocator::default_min_allocatable(),
        },
        state,
        T0,
    );
    assert!(matches!(
        c.agents[&AgentId::new("old-S0")].link,
        AgentLink::Recovering(_)
    ));
    assert!(c.frameworks[&FrameworkId::new("old-0000")].recovered);
    // The framework resubscribes with its id.
    assert_eq!(
        c.subscribe(T0, "S".into(), fi, vec![]).unwrap().as_str(),
        "old-0000"
    );
    c.tick(T0 + 601.0);
    assert!(matches!(
        c.agents[&AgentId::new("old-S0")].link,
        AgentLink::Unreachable(_)
    ));
}

#[test]
fn multi_role_offers_carry_allocation_info() {
    let (_, _, _, offer) =
        with_offer(json!({"roles":["web"],"capabilities":[{"type":"MULTI_ROLE"}]}));
    assert_eq!(
        offer.allocation_info.as_ref().unwrap().role.as_deref(),
        Some("web")
    );
    assert!(offer.resources.iter().all(|r| r.allocation_info.is_some()));
}

#[test]
fn invalid_framework_info_is_rejected() {
    let mut c = core();
    let bad = framework_info(json!({"roles":["a"]}));
    assert_eq!(
        c.subscribe(T0, "S".into(), bad, vec![]).unwrap_err().status,
        400
    );
    let bad_role = framework_info(json!({"role":"a/../b"}));
    assert!(c
        .subscribe(T0, "S".into(), bad_role, vec![])
        .unwrap_err()
        .message
        .contains("Invalid role"));
}

#[test]
fn weights_flag_parses_like_mesos() {
    let w = parse_weights("role1=2,role2=0.5, a/b = 3").unwrap();
    assert_eq!(
        w,
        [
            ("role1".to_string(), 2.0),
            ("role2".to_string(), 0.5),
            ("a/b".to_string(), 3.0)
        ]
        .into()
    );
    assert!(parse_weights("").unwrap().is_empty());
    assert_eq!(format_weights(&w), "a/b=3,role1=2,role2=0.5");
    for bad in [
        "r", "r=x", "r=0", "r=-1", "r=inf", "a/../b=1", "r=1,r=2", "=1",
    ] {
        assert!(parse_weights(bad).is_err(), "{bad} should be refused");
    }
    assert!(parse_weights("r=0").unwrap_err().contains("positive"));
}

#[test]
fn registry_weights_win_over_the_flag() {
    let flag: BTreeMap<String, f64> = [("a".to_string(), 2.0)].into();
    let stored: BTreeMap<String, f64> = [("b".to_string(), 3.0)].into();
    // First start: the flag's weights are used and stored.
    let (w, change) = initial_weights(&flag, &BTreeMap::new());
    assert_eq!(w, flag);
    assert_eq!(change, Some(RegistryChange::PutWeights(flag.clone())));
    // Later starts: the registry's weights, the flag ignored as a whole (as Mesos does).
    assert_eq!(initial_weights(&flag, &stored), (stored.clone(), None));
    assert_eq!(initial_weights(&BTreeMap::new(), &stored), (stored, None));
    assert_eq!(
        initial_weights(&BTreeMap::new(), &BTreeMap::new()),
        (BTreeMap::new(), None)
    );
}

#[test]
fn update_weights_validates_all_then_persists() {
    let mut c = core();
    let info = |role: &str, weight: f64| WeightInfo {
        role: role.into(),
        weight,
    };
    for bad in [
        vec![info("ok", 2.0), info("r", 0.0)],
        vec![info("a/../b", 1.0)],
        vec![info("r", -1.0)],
        vec![info("r", f64::NAN)],
    ] {
        let err = c.update_weights(&bad).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(c.weights.is_empty());
        assert!(c.drain_effects().is_empty());
    }
    c.update_weights(&[info("r", 2.0), info("s", 0.5)]).unwrap();
    let fx = c.drain_effects();
    assert_eq!(
        fx,
        vec![Effect::Persist(RegistryChange::PutWeights(
            [("r".to_string(), 2.0), ("s".to_string(), 0.5)].into()
        ))]
    );
    c.update_weights(&[info("r", 3.0)]).unwrap();
    assert_eq!(c.weight_infos(), vec![info("r", 3.0), info("s", 0.5)]);
    assert_eq!(c.weight("r"), 3.0);
    assert_eq!(c.weight("other"), 1.0);
}

#[test]
fn roles_report_weights_even_without_frameworks() {
    let mut registry = RegistryState::default();
    registry.weights.insert("idle".into(), 2.5);
    let info: MasterInfo =
        serde_json::from_value(json!({"id":"m","ip":16777343,"port":5050})).unwrap();
    let config = core().config;
    let mut c = Core::new(info, config, registry, T0);
    c.subscribe(
        T0,
        "S1".into(),
        framework_info(json!({"role":"busy"})),
        vec![],
    )
    .unwrap();
    let roles = crate::views::get_roles(&c);
    let weight = |name: &str| {
        roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["weight"].as_f64().unwrap())
    };
    assert_eq!(weight("idle"), Some(2.5));
    assert_eq!(weight("busy"), Some(1.0));
    // As in Mesos, `*` is listed only while something uses it.
    assert_eq!(weight("*"), None);
}

#[test]
fn allocation_counts_per_role_for_multi_role_frameworks() {
    let (c, _agent, fid, offer) =
        with_offer(json!({"roles":["web","db"],"capabilities":[{"type":"MULTI_ROLE"}]}));
    let role = offer.allocation_info.unwrap().role.unwrap();
    let by_role = c.allocation_by_role(&c.frameworks[&fid]);
    assert_eq!(by_role.keys().collect::<Vec<_>>(), vec![&role]);
    assert_eq!(by_role[&role].scalar("cpus"), 4.0);
}

#[test]
fn weights_reach_the_allocator() {
    // Two roles with one agent's offer each; a third agent goes to "a" on a tie (by
    // name) unless "b" weighs more.
    for (weights, expected) in [(vec![], "S1"), (vec![("b", 2.0)], "S2")] {
        let mut c = core();
        register(&mut c, "L1", None, vec![]);
        register(&mut c, "L2", None, vec![]);
        for (stream, role) in [("S1", "a"), ("S2", "b")] {
            c.subscribe(
                T0,
                stream.into(),
                framework_info(json!({ "role": role })),
                vec![],
            )
            .unwrap();
        }
        c.allocate(T0);
        let fx = c.drain_effects();
        assert_eq!((offers(&fx, "S1").len(), offers(&fx, "S2").len()), (1, 1));
        let infos: Vec<WeightInfo> = weights
            .iter()
            .map(|(role, weight)| WeightInfo {
                role: role.to_string(),
                weight: *weight,
            })
            .collect();
        c.update_weights(&infos).unwrap();
        register(&mut c, "L3", None, vec![]);
        c.drain_effects();
        c.allocate(T0);
        let fx = c.drain_effects();
        assert_eq!(offers(&fx, expected).len(), 1, "{weights:?}");
        assert_eq!(offers(&fx, "S1").len() + offers(&fx, "S2").len(), 1);
    }
}

fn deactivation_persisted(fx: &[Effect], agent: &AgentId) -> Option<bool> {
    fx.iter().find_map(|e| match e {
        Effect::Persist(RegistryChange::PutAgent(id, admitted)) if id == agent => {
            Some(admitted.deactivated)
        }
        _ => None,
    })
}

#[test]
fn deactivate_rescinds_offers_and_reactivate_restores_them() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t", &agent, 1.0)]));
    c.drain_effects();
    // Past the default refuse filter of the accepted offer's remainder.
    let t = T0 + 10.0;
    c.tick(t);
    c.allocate(t);
    let outstanding = offers(&c.drain_effects(), "S1");
    assert_eq!(outstanding.len(), 1, "the rest of the agent is offered");

    c.deactivate_agent(&agent).unwrap();
    let fx = c.drain_effects();
    assert_eq!(deactivation_persisted(&fx, &agent), Some(true));
    assert!(stream_events(&fx, "S1")
        .iter()
        .any(|e| matches!(e, Event::Rescind(r) if r.offer_id == outstanding[0].id)));
    assert!(c.offers.is_empty());
    assert!(c.agents[&agent].deactivated);
    // Deactivating again changes nothing.
    c.deactivate_agent(&agent).unwrap();
    assert!(c.drain_effects().is_empty());

    // No offers while deactivated, even as time passes; the task's updates still flow.
    for i in 1..4 {
        c.tick(t + f64::from(i));
        c.allocate(t + f64::from(i));
    }
    c.status_update(&agent, status("t", TaskState::TaskRunning, 1));
    c.status_update(&agent, status("t", TaskState::TaskFinished, 2));
    c.allocate(t + 5.0);
    let fx = c.drain_effects();
    assert!(offers(&fx, "S1").is_empty());
    assert_eq!(
        updates(&fx, "S1")
            .iter()
            .map(|s| s.state)
            .collect::<Vec<_>>(),
        vec![TaskState::TaskRunning, TaskState::TaskFinished]
    );

    c.reactivate_agent(&agent).unwrap();
    let fx = c.drain_effects();
    assert_eq!(deactivation_persisted(&fx, &agent), Some(false));
    assert!(!c.agents[&agent].deactivated);
    c.allocate(t + 6.0);
    let back = offers(&c.drain_effects(), "S1");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].agent_id, agent);
}

#[test]
fn deactivation_of_unknown_agent_is_not_found() {
    let mut c = core();
    assert_eq!(
        c.deactivate_agent(&AgentId::new("nope"))
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        c.reactivate_agent(&AgentId::new("nope"))
            .unwrap_err()
            .status,
        404
    );
    assert!(c.drain_effects().is_empty());
}

#[test]
fn deactivation_survives_reregistration_and_recovery() {
    let mut c = core();
    let agent = register(&mut c, "L1", None, vec![]);
    c.deactivate_agent(&agent).unwrap();
    c.drain_effects();
    // The agent reregisters (new link): still deactivated, and stored so.
    register(&mut c, "L2", Some(agent.as_str()), vec![]);
    let fx = c.drain_effects();
    assert_eq!(deactivation_persisted(&fx, &agent), Some(true));
    assert!(c.agents[&agent].deactivated);

    // A new master recovering the registry keeps it deactivated.
    let mut state = RegistryState::default();
    for e in &fx {
        if let Effect::Persist(change) = e {
            state.apply(change);
        }
    }
    let master: MasterInfo = serde_json::from_value(json!({"id":"m2","ip":1,"port":1})).unwrap();
    let mut c2 = Core::new(master, c.config.clone(), state, T0);
    assert!(c2.agents[&agent].deactivated);
    register(&mut c2, "L3", Some(agent.as_str()), vec![]);
    c2.subscribe(T0, "S1".into(), framework_info(json!({})), vec![])
        .unwrap();
    c2.drain_effects();
    c2.allocate(T0);
    assert!(offers(&c2.drain_effects(), "S1").is_empty());
    c2.reactivate_agent(&agent).unwrap();
    c2.allocate(T0);
    assert_eq!(offers(&c2.drain_effects(), "S1").len(), 1);
}

#[test]
fn min_allocatable_reaches_the_allocator() {
    let mut c = core();
    c.config.min_allocatable = crate::allocator::parse_min_allocatable("cpus:5").unwrap();
    register(&mut c, "L1", None, vec![]);
    c.subscribe(T0, "S1".into(), framework_info(json!({})), vec![])
        .unwrap();
    c.drain_effects();
    c.allocate(T0);
    assert!(offers(&c.drain_effects(), "S1").is_empty());
    c.config.min_allocatable = crate::allocator::parse_min_allocatable("cpus:4").unwrap();
    c.allocate(T0);
    assert_eq!(offers(&c.drain_effects(), "S1").len(), 1);
}

#[test]
fn operator_events_are_built_only_when_someone_listens() {
    let is_operator = |e: &Effect| matches!(e, Effect::Operator(_));
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("quiet", &agent, 0.1)]));
    assert!(!c.drain_effects().iter().any(is_operator));

    c.operator_observed = true;
    c.allocate(T0 + 10.0);
    c.tick(T0 + 10.0);
    c.revive(&fid, vec![]);
    c.allocate(T0 + 10.0);
    let offer = offers(&c.drain_effects(), "S1").pop().expect("an offer");
    c.accept(T0, &fid, launch(&offer, vec![task("heard", &agent, 0.1)]));
    let fx = c.drain_effects();
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Operator(meseta_api::operator::Event::TaskAdded(_))
    )));
}

#[test]
fn agent_added_is_heard_when_an_agent_joins_the_registered_ones() {
    let added = |fx: &[Effect]| {
        fx.iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::Operator(meseta_api::operator::Event::AgentAdded(_))
                )
            })
            .count()
    };
    let mut c = core();
    c.operator_observed = true;
    let agent = register(&mut c, "L1", None, vec![]);
    assert_eq!(added(&c.drain_effects()), 1, "a new agent");
    register(&mut c, "L2", Some(agent.as_str()), vec![]);
    assert_eq!(
        added(&c.drain_effects()),
        0,
        "reregistering while connected"
    );
    c.link_closed(T0, &agent, "L2");
    register(&mut c, "L3", Some(agent.as_str()), vec![]);
    assert_eq!(
        added(&c.drain_effects()),
        0,
        "back before it was unreachable"
    );
    c.link_closed(T0, &agent, "L3");
    c.tick(T0 + 76.0);
    assert!(matches!(c.agents[&agent].link, AgentLink::Unreachable(_)));
    c.drain_effects();
    register(&mut c, "L4", Some(agent.as_str()), vec![]);
    assert_eq!(added(&c.drain_effects()), 1, "back from unreachable");

    // A master that recovered the agent from its registry hears it when it comes back.
    let state = registry_admitting(&c, &agent);
    let mut recovered = Core::new(c.master_info.clone(), c.config.clone(), state, T0);
    recovered.operator_observed = true;
    assert!(matches!(
        recovered.agents[&agent].link,
        AgentLink::Recovering(_)
    ));
    register(&mut recovered, "L5", Some(agent.as_str()), vec![]);
    assert_eq!(
        added(&recovered.drain_effects()),
        1,
        "recovered, then reregistered"
    );
}

#[path = "reservations_tests.rs"]
mod reservations;

// ----- maintenance ---------------------------------------------------------------------

/// The machine `register` puts its agents on.
fn machine() -> meseta_api::maintenance::MachineId {
    serde_json::from_value(json!({"hostname": "H", "ip": "127.0.0.1"})).unwrap()
}

fn schedule_of(machines: serde_json::Value) -> meseta_api::maintenance::Schedule {
    serde_json::from_value(json!({"windows": [{
        "machine_ids": machines,
        "unavailability": {"start": {"nanoseconds": 2_000_000_000_000_000_000i64}}
    }]}))
    .unwrap()
}

fn inverse_offers(effects: &[Effect], stream: &str) -> Vec<meseta_api::maintenance::InverseOffer> {
    stream_events(effects, stream)
        .into_iter()
        .flat_map(|e| match e {
            Event::InverseOffers(o) => o.inverse_offers,
            _ => vec![],
        })
        .collect()
}

#[test]
fn scheduled_machines_drain_with_unavailability_and_inverse_offers() {
    use meseta_api::maintenance::{InverseOfferAnswer, MachineMode};
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t1", &agent, 1.0)]));
    c.drain_effects();
    c.update_maintenance_schedule(T0, schedule_of(json!([machine()])))
        .unwrap();
    let fx = c.drain_effects();
    assert!(matches!(
        &fx[0],
        Effect::Persist(RegistryChange::PutMaintenance(r)) if r.down.is_empty()
    ));
    assert_eq!(
        c.maintenance.machines[&machine().normalized()].mode,
        MachineMode::Draining
    );
    let asked = inverse_offers(&fx, "S1");
    assert_eq!(asked.len(), 1, "the framework with a task there is asked");
    assert_eq!(asked[0].agent_id.as_ref(), Some(&agent));
    // Offers from the machine now carry its unavailability.
    c.tick(T0 + 6.0);
    c.allocate(T0 + 6.0);
    let fx = c.drain_effects();
    let offered = offers(&fx, "S1");
    assert!(offered[0].unavailability.is_some());
    assert!(
        inverse_offers(&fx, "S1").is_empty(),
        "one outstanding at a time"
    );
    // The answer is recorded; no new inverse offer while its filter lasts.
    c.answer_inverse_offers(
        T0 + 7.0,
        &fid,
        &[asked[0].id.clone()],
        InverseOfferAnswer::Accept,
        Some(60.0),
    );
    let status = c.maintenance_status();
    assert_eq!(
        status.draining_machines[0].statuses[0].status,
        InverseOfferAnswer::Accept
    );
    c.allocate(T0 + 8.0);
    assert!(inverse_offers(&c.drain_effects(), "S1").is_empty());
    c.allocate(T0 + 68.0);
    assert_eq!(inverse_offers(&c.drain_effects(), "S1").len(), 1);
}

#[test]
fn maintenance_requests_are_validated() {
    let mut c = core();
    let bad = [
        json!([]),
        json!([{}]),
        json!([{"hostname": "a", "ip": "not-an-ip"}]),
        json!([{"hostname": "a"}, {"hostname": "A"}]),
    ];
    for machines in bad {
        let err = c
            .update_maintenance_schedule(T0, schedule_of(machines.clone()))
            .unwrap_err();
        assert_eq!(err.status, 400, "{machines}: {}", err.message);
    }
    assert!(c.drain_effects().is_empty(), "nothing persisted");
    let err = c.start_maintenance(T0, &[machine()]).unwrap_err();
    assert!(
        err.message.contains("not in the maintenance schedule"),
        "{}",
        err.message
    );
    assert_eq!(c.start_maintenance(T0, &[]).unwrap_err().status, 400);
    c.update_maintenance_schedule(T0, schedule_of(json!([machine()])))
        .unwrap();
    let err = c.stop_maintenance(T0, &[machine()]).unwrap_err();
    assert!(
        err.message.contains("not in maintenance"),
        "{}",
        err.message
    );
    c.start_maintenance(T0, &[machine()]).unwrap();
    let err = c
        .update_maintenance_schedule(T0, meseta_api::maintenance::Schedule::default())
        .unwrap_err();
    assert!(
        err.message.contains("must stay in the schedule"),
        "{}",
        err.message
    );
}

#[test]
fn machine_down_removes_its_agents_and_refuses_them_until_up() {
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t1", &agent, 1.0)]));
    c.drain_effects();
    c.update_maintenance_schedule(T0, schedule_of(json!([machine()])))
        .unwrap();
    c.start_maintenance(T0, &[machine()]).unwrap();
    let fx = c.drain_effects();
    assert!(fx.contains(&Effect::Persist(RegistryChange::RemoveAgent(agent.clone()))));
    assert!(matches!(link_messages(&fx, "L1")[0], ToAgent::Shutdown(_)));
    let lost = updates(&fx, "S1");
    assert_eq!(lost[0].state, TaskState::TaskLost, "not partition-aware");
    assert_eq!(lost[0].reason, Some(Reason::ReasonAgentRemoved));
    assert!(c.agents.is_empty());
    assert_eq!(c.maintenance_status().down_machines.len(), 1);
    // Its agent may not come back while the machine is down…
    let mut info: AgentInfo = serde_json::from_value(json!({"hostname":"h","port":5051})).unwrap();
    info.resources = Resources::parse("cpus:1").unwrap().into_vec();
    let registration = |info: AgentInfo| RegisterAgent {
        version: LINK_VERSION,
        agent_info: info,
        endpoint: "127.0.0.1:5051".into(),
        tasks: vec![],
        executors: vec![],
        frameworks: vec![],
        capabilities: vec![],
        checkpointed_resources: vec![],
    };
    let err = c
        .register_agent(T0, "L2".into(), registration(info.clone()))
        .unwrap_err();
    assert_eq!(err.status, 403);
    // …and may once it is up again, which also takes it out of the schedule.
    c.stop_maintenance(T0, &[machine()]).unwrap();
    assert!(c.maintenance.schedule.windows.is_empty());
    c.register_agent(T0, "L2".into(), registration(info))
        .unwrap();
}

#[test]
fn maintenance_is_recovered_from_the_registry() {
    use meseta_api::maintenance::MachineMode;
    let mut c = core();
    c.update_maintenance_schedule(
        T0,
        schedule_of(json!([machine(), {"hostname": "other", "ip": "10.0.0.2"}])),
    )
    .unwrap();
    c.start_maintenance(T0, &[machine()]).unwrap();
    let mut registry = RegistryState::default();
    for effect in c.drain_effects() {
        if let Effect::Persist(change) = effect {
            registry.apply(&change);
        }
    }
    let info: MasterInfo =
        serde_json::from_value(json!({"id":"m","ip":16777343,"port":5050})).unwrap();
    let recovered = Core::new(info, c.config.clone(), registry, T0);
    let modes: Vec<MachineMode> = recovered
        .maintenance
        .machines
        .values()
        .map(|m| m.mode)
        .collect();
    assert_eq!(modes, [MachineMode::Down, MachineMode::Draining]);
}

// ----- draining ------------------------------------------------------------------------

fn drain_call(agent: &AgentId, extra: serde_json::Value) -> meseta_api::maintenance::DrainAgent {
    let mut v = json!({"agent_id": agent});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

#[test]
fn drain_kills_with_bounded_grace_then_drains_and_marks_gone() {
    use meseta_api::maintenance::DrainState;
    // Partition-aware, so that TASK_GONE_BY_OPERATOR is not turned into TASK_LOST.
    let (mut c, agent, fid, offer) =
        with_offer(json!({"capabilities": [{"type": "PARTITION_AWARE"}]}));
    let mut slow = task("slow", &agent, 1.0);
    slow.kill_policy = Some(KillPolicy {
        grace_period: Some(DurationInfo::from_secs_f64(60.0)),
    });
    let quick = task("quick", &agent, 1.0);
    c.accept(T0, &fid, launch(&offer, vec![slow, quick]));
    c.drain_effects();
    let call = drain_call(
        &agent,
        json!({"max_grace_period": {"nanoseconds": 10_000_000_000i64}, "mark_gone": true}),
    );
    c.drain_agent(T0, call).unwrap();
    let fx = c.drain_effects();
    let graces: BTreeMap<String, i64> = link_messages(&fx, "L1")
        .into_iter()
        .filter_map(|m| match m {
            ToAgent::KillTask(k) => Some((
                k.task_id.to_string(),
                k.kill_policy.unwrap().grace_period.unwrap().nanoseconds,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        graces["slow"], 10_000_000_000,
        "bounded by max_grace_period"
    );
    assert_eq!(
        graces["quick"], 3_000_000_000,
        "the default grace is below the bound"
    );
    let agent_entry = &c.agents[&agent];
    assert!(agent_entry.deactivated);
    assert_eq!(agent_entry.drain.unwrap().state, DrainState::Draining);
    // Killed tasks are reported gone, with the draining reason; acknowledged, the agent
    // is drained, then gone.
    for (id, uuid) in [("slow", 1u8), ("quick", 2u8)] {
        c.status_update(&agent, status(id, TaskState::TaskKilled, uuid));
        let sent = updates(&c.drain_effects(), "S1");
        assert_eq!(sent[0].state, TaskState::TaskGoneByOperator);
        assert_eq!(sent[0].reason, Some(Reason::ReasonAgentDraining));
        c.acknowledge(
            &fid,
            Acknowledge {
                agent_id: agent.clone(),
                task_id: TaskId::new(id),
                uuid: sent[0].uuid.clone().unwrap(),
            },
        )
        .unwrap();
    }
    c.tick(T0 + 1.0);
    assert!(c.gone_agents.contains(&agent), "marked gone once drained");
}

#[test]
fn drained_agent_can_be_reactivated_but_a_draining_one_cannot() {
    use meseta_api::maintenance::DrainState;
    let (mut c, agent, fid, offer) = with_offer(json!({}));
    c.accept(T0, &fid, launch(&offer, vec![task("t1", &agent, 1.0)]));
    c.drain_agent(T0, drain_call(&agent, json!({}))).unwrap();
    let fx = c.drain_effects();
    let kill = link_messages(&fx, "L1")
        .into_iter()
        .find_map(|m| match m {
            ToAgent::KillTask(k) => Some(k),
            _ => None,
        })
        .unwrap();
    assert_eq!(kill.kill_policy, None, "no bound, no override");
    let err = c.reactivate_agent(&agent).unwrap_err();
    assert!(err.message.contains("still draining"), "{}", err.message);
    c.status_update(&agent, status("t1", TaskState::TaskKilled, 1));
    let sent = updates(&c.drain_effects(), "S1");
    assert_eq!(
        sent[0].state,
        TaskState::TaskKilled,
        "not to be marked gone"
    );
    c.acknowledge(
        &fid,
        Acknowledge {
            agent_id: agent.clone(),
            task_id: TaskId::new("t1"),
            uuid: sent[0].uuid.clone().unwrap(),
        },
    )
    .unwrap();
    c.tick(T0 + 1.0);
    assert_eq!(c.agents[&agent].drain.unwrap().state, DrainState::Drained);
    assert!(!c.gone_agents.contains(&agent));
    c.reactivate_agent(&agent).unwrap();
    assert!(c.agents[&agent].drain.is_none());
    assert!(!c.agents[&agent].deactivated);
    let unknown = drain_call(&AgentId::new("nope"), json!({}));
    assert_eq!(c.drain_agent(T0, unknown).unwrap_err().status, 404);
}

#[test]
fn refuse_filters_hold_until_they_expire_or_a_revive_even_between_ticks() {
    let (mut c, _agent, fid, offer) = with_offer(json!({}));
    let refuse = |seconds: f64| {
        Some(Filters {
            refuse_seconds: seconds,
        })
    };
    c.decline(T0, &fid, &[offer.id], refuse(5.0).as_ref());
    c.drain_effects();
    c.allocate(T0 + 4.9);
    assert!(offers(&c.drain_effects(), "S1").is_empty(), "filtered");
    // Expired without a tick pruning it: the allocator's index of filters follows time.
    c.allocate(T0 + 5.1);
    let offer = offers(&c.drain_effects(), "S1")
        .pop()
        .expect("filter expired");
    c.decline(T0 + 5.1, &fid, &[offer.id], refuse(5.0).as_ref());
    c.allocate(T0 + 6.0);
    assert!(offers(&c.drain_effects(), "S1").is_empty(), "a new filter");
    c.revive(&fid, vec![]);
    c.allocate(T0 + 6.0);
    assert_eq!(
        offers(&c.drain_effects(), "S1").len(),
        1,
        "revive clears filters"
    );
}

#[test]
fn filters_share_what_they_refuse_until_they_expire_are_revived_or_removed() {
    let mut c = core();
    let agents: Vec<AgentId> = ["L1", "L2", "L3"]
        .iter()
        .map(|link| register(&mut c, link, None, vec![]))
        .collect();
    let fid = c
        .subscribe(T0, "S1".into(), framework_info(json!({})), vec![])
        .unwrap();
    let decline_all = |c: &mut Core, now: f64, seconds: f64| {
        c.allocate(now);
        let ids: Vec<OfferId> = offers(&c.drain_effects(), "S1")
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids.len(), 3);
        let refuse = Filters {
            refuse_seconds: seconds,
        };
        c.decline(now, &fid, &ids, Some(&refuse));
    };
    c.drain_effects();
    decline_all(&mut c, T0, 5.0);
    let filters = &c.frameworks[&fid].filters;
    let refused: BTreeSet<&AgentId> = filters.iter().map(|f| &f.agent_id).collect();
    assert_eq!(refused, agents.iter().collect());
    assert!(filters
        .iter()
        .all(|f| std::sync::Arc::ptr_eq(&f.resources, &filters[0].resources)));
    assert_eq!(c.refused.len(), 1);
    c.allocate(T0 + 1.0);
    assert!(offers(&c.drain_effects(), "S1").is_empty(), "filtered");

    // Expired and pruned: the shared set goes with them once the allocator's next pass
    // lets go of them too (the pass offers everything again: the next `decline_all`
    // declines these offers), and its entry on the next tick.
    c.tick(T0 + 5.0);
    assert!(c.frameworks[&fid].filters.is_empty());
    c.allocate(T0 + 5.0);
    c.tick(T0 + 5.0);
    assert_eq!(c.refused.len(), 0, "expired");

    decline_all(&mut c, T0 + 5.0, 60.0);
    assert_eq!(c.refused.len(), 1);
    c.revive(&fid, vec![]);
    c.allocate(T0 + 6.0);
    c.tick(T0 + 6.0);
    assert_eq!(c.refused.len(), 0, "revived");

    decline_all(&mut c, T0 + 6.0, 60.0);
    assert_eq!(c.refused.len(), 1);
    c.allocate(T0 + 7.0);
    c.teardown(T0 + 7.0, &fid).unwrap();
    c.allocate(T0 + 7.0);
    c.tick(T0 + 8.0);
    assert!(c.completed_frameworks[0].filters.is_empty());
    assert_eq!(c.refused.len(), 0, "removed");
}

#[test]
fn the_cluster_total_follows_agents_that_disconnect_and_come_back() {
    let mut c = core();
    let a = register(&mut c, "L1", None, vec![]);
    register(&mut c, "L2", None, vec![]);
    let cpus = |c: &mut Core| {
        c.allocate(T0);
        c.ledger.cluster_total().scalar("cpus")
    };
    assert_eq!(cpus(&mut c), 8.0);
    // Nothing on the agent changes but its link.
    c.link_closed(T0, &a, "L1");
    assert_eq!(cpus(&mut c), 4.0);
    register(&mut c, "L3", Some(a.as_str()), vec![]);
    assert_eq!(cpus(&mut c), 8.0);
}

#[test]
fn a_link_finds_its_agent_until_it_closes_or_is_replaced() {
    let mut c = core();
    let a = register(&mut c, "L1", None, vec![]);
    let b = register(&mut c, "L9", None, vec![]);
    assert_eq!(c.agent_for_link("L1").unwrap(), a);
    assert_eq!(c.agent_for_link("L9").unwrap(), b);
    assert_eq!(c.agent_for_link("nope").unwrap_err().status, 409);
    // The agent registers again on a new link: the old one is no longer current.
    register(&mut c, "L2", Some(a.as_str()), vec![]);
    assert_eq!(c.agent_for_link("L1").unwrap_err().status, 409);
    assert_eq!(c.agent_for_link("L2").unwrap(), a);
    // The old link's stream ends afterwards: the agent keeps its new link.
    c.link_closed(T0, &a, "L1");
    assert_eq!(c.agent_for_link("L2").unwrap(), a);
    c.link_closed(T0, &a, "L2");
    assert_eq!(c.agent_for_link("L2").unwrap_err().status, 409);
    assert_eq!(c.agent_for_link("L9").unwrap(), b);
    assert_eq!(c.links.len(), 1, "closed and replaced links are forgotten");
}
