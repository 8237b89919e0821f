use super::*;
use crate::machine::Machine;
use crate::machine::Signal;
use crate::testing::{self, sent, states, FakeSources};
use meseta_api::executor::{Acknowledged, CallKind, Launch};
use meseta_api::json::Bytes;
use meseta_api::{Reason, StatusSource};
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

fn t1() -> TaskId {
    TaskId::new("t1")
}

fn subscribed(capabilities: &[&str]) -> Event {
    testing::subscribed("t1", capabilities)
}

fn task(extra: serde_json::Value) -> TaskInfo {
    let mut base = json!({
        "name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "A-S0"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1},
                       "allocation_info": {"role": "web"}}],
        "command": {"value": "echo hi", "environment": {"variables": [
            {"name": "A", "value": "2"}, {"name": "B", "value": "3"},
            {"name": "S", "type": "SECRET", "secret": {}}]}}
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).unwrap()
}

struct Harness {
    core: Core<FakeSources>,
    now: Instant,
}

impl Harness {
    fn new(checkpoint: bool) -> Harness {
        let now = Instant::now();
        let mut core = Core::new(testing::config("t1", checkpoint), FakeSources::default());
        let first = core.start(now);
        assert!(matches!(&first[..], [Action::Subscribe(_)]));
        Harness { core, now }
    }

    fn running(capabilities: &[&str], extra: serde_json::Value) -> Harness {
        let mut h = Harness::new(true);
        h.input(Input::from(subscribed(capabilities)));
        let out = h.input(Input::from(Event::Launch(Launch { task: task(extra) })));
        assert!(matches!(out.last(), Some(Action::Launch(_))), "{out:?}");
        h.input(Input::Started(t1()));
        h
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.core.handle(input, self.now)
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.core.handle(Input::Tick, self.now)
    }

    fn ack(&mut self, status: &TaskStatus) -> Vec<Action> {
        self.input(Input::from(Event::Acknowledged(Acknowledged {
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().unwrap(),
        })))
    }
}

#[test]
fn launch_sends_starting_then_running_with_full_status() {
    let mut h = Harness::new(false);
    assert!(h.input(Input::from(subscribed(&[]))).is_empty());
    let out = h.input(Input::from(Event::Launch(Launch {
        task: task(json!({})),
    })));
    assert_eq!(states(&out), [TaskState::TaskStarting]);
    let Some(Action::Launch(spec)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(spec.cwd, PathBuf::from("/sandbox"));
    assert_eq!(
        spec.environment,
        [
            ("PATH", "/bin"),
            ("A", "2"),
            ("B", "3"),
            ("MESOS_ALLOCATION_ROLE", "web")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    );
    let status = &sent(&out)[0];
    assert_eq!(status.source, Some(StatusSource::SourceExecutor));
    assert_eq!(status.agent_id, Some("A-S0".into()));
    assert_eq!(status.executor_id, Some("t1".into()));
    assert_eq!(status.uuid.as_ref().map(|u| u.len()), Some(16));
    assert!(status.timestamp.is_some());
    assert_eq!(
        states(&h.input(Input::Started(t1()))),
        [TaskState::TaskRunning]
    );
}

#[test]
fn exit_codes_give_finished_or_failed_and_ack_exits() {
    let mut h = Harness::running(&[], json!({}));
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(0))));
    let finished = sent(&out).remove(0);
    assert_eq!(finished.state, TaskState::TaskFinished);
    assert_eq!(
        finished.message.as_deref(),
        Some("Command exited with status 0")
    );
    assert!(h.ack(&finished).contains(&Action::Exit(0)));

    let mut h = Harness::running(&[], json!({}));
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(2 << 8))));
    let failed = sent(&out).remove(0);
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert_eq!(
        failed.message.as_deref(),
        Some("Command exited with status 2")
    );
}

#[test]
fn unacknowledged_terminal_update_exits_after_a_bounded_wait() {
    let mut h = Harness::running(&[], json!({}));
    h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(0))));
    assert_eq!(h.core.next_deadline(), Some(h.now + ACK_WAIT));
    assert!(h.advance(ACK_WAIT - Duration::from_secs(1)).is_empty());
    assert_eq!(h.advance(Duration::from_secs(1)), [Action::Exit(0)]);
}

#[test]
fn kill_sends_killing_terminates_and_escalates() {
    let mut h = Harness::running(&["TASK_KILLING_STATE"], json!({}));
    let out = h.input(Input::from(Event::Kill(Kill {
        task_id: "t1".into(),
        kill_policy: None,
    })));
    assert_eq!(states(&out), [TaskState::TaskKilling]);
    assert!(out.contains(&Action::Signal(t1(), Signal::Terminate)));
    assert_eq!(h.core.next_deadline(), Some(h.now + Duration::from_secs(3)));
    assert!(h.advance(Duration::from_secs(2)).is_empty());
    assert_eq!(
        h.advance(Duration::from_secs(1)),
        [Action::Signal(t1(), Signal::Kill)]
    );
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(libc::SIGKILL))));
    let killed = sent(&out).remove(0);
    assert_eq!(killed.state, TaskState::TaskKilled);
    assert_eq!(
        killed.message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    assert_eq!(killed.healthy, None);
}

#[test]
fn kill_without_capability_skips_killing_and_uses_task_policy() {
    let policy = json!({"kill_policy": {"grace_period": {"nanoseconds": 10_000_000_000i64}}});
    let mut h = Harness::running(&[], policy);
    let out = h.input(Input::from(Event::Kill(Kill {
        task_id: "t1".into(),
        kill_policy: None,
    })));
    assert!(states(&out).is_empty());
    assert_eq!(out, [Action::Signal(t1(), Signal::Terminate)]);
    assert_eq!(
        h.core.next_deadline(),
        Some(h.now + Duration::from_secs(10))
    );
    // A later kill may shorten the grace period but never lengthen it.
    h.now += Duration::from_secs(1);
    let shorter: meseta_api::KillPolicy =
        serde_json::from_value(json!({"grace_period": {"nanoseconds": 4_000_000_000i64}})).unwrap();
    let longer: meseta_api::KillPolicy =
        serde_json::from_value(json!({"grace_period": {"nanoseconds": 60_000_000_000i64}}))
            .unwrap();
    let start = h.now - Duration::from_secs(1);
    h.input(Input::from(Event::Kill(Kill {
        task_id: "t1".into(),
        kill_policy: Some(longer),
    })));
    assert_eq!(
        h.core.next_deadline(),
        Some(start + Duration::from_secs(10))
    );
    h.input(Input::from(Event::Kill(Kill {
        task_id: "t1".into(),
        kill_policy: Some(shorter),
    })));
    assert_eq!(h.core.next_deadline(), Some(start + Duration::from_secs(4)));
    // A kill of another task changes nothing.
    assert!(h
        .input(Input::from(Event::Kill(Kill {
            task_id: "zz".into(),
            kill_policy: None
        })))
        .is_empty());
}

#[test]
fn shutdown_kills_with_the_shutdown_grace_less_margin() {
    let mut h = Harness::running(&[], json!({}));
    let out = h.input(Input::from(Event::Shutdown));
    assert_eq!(out, [Action::Signal(t1(), Signal::Terminate)]);
    assert_eq!(h.core.next_deadline(), Some(h.now + Duration::from_secs(3)));
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(libc::SIGTERM))));
    assert_eq!(states(&out), [TaskState::TaskKilled]);

    let mut idle = Harness::new(false);
    idle.input(Input::from(subscribed(&[])));
    assert_eq!(idle.input(Input::from(Event::Shutdown)), [Action::Exit(0)]);
}

#[test]
fn second_launch_fails_that_task() {
    let mut h = Harness::running(&[], json!({}));
    let mut other = task(json!({}));
    other.task_id = "t2".into();
    let out = h.input(Input::from(Event::Launch(Launch { task: other })));
    let failed = sent(&out).remove(0);
    assert_eq!(failed.task_id, TaskId::new("t2"));
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert_eq!(
        failed.message.as_deref(),
        Some("Attempted to run multiple tasks using a \"command\" executor")
    );
    // Acknowledging that update does not end the executor.
    assert!(h.ack(&failed).is_empty());
}

#[test]
fn task_without_command_fails() {
    let mut h = Harness::new(false);
    h.input(Input::from(subscribed(&[])));
    let mut t = task(json!({}));
    t.command = None;
    let out = h.input(Input::from(Event::Launch(Launch { task: t })));
    assert_eq!(
        states(&out),
        [TaskState::TaskStarting, TaskState::TaskFailed]
    );
    assert_eq!(
        sent(&out)[1].message.as_deref(),
        Some("Expecting task 't1' to have a command")
    );
    let out = h.input(Input::LaunchFailed(t1(), "nope".into()));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn launch_failure_fails_the_task() {
    let mut h = Harness::new(false);
    h.input(Input::from(subscribed(&[])));
    h.input(Input::from(Event::Launch(Launch {
        task: task(json!({})),
    })));
    let out = h.input(Input::LaunchFailed(
        t1(),
        "No such file or directory".into(),
    ));
    let failed = sent(&out).remove(0);
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert!(failed
        .message
        .unwrap()
        .contains("No such file or directory"));
}

#[test]
fn resubscribe_carries_unacknowledged_updates_and_task() {
    let mut h = Harness::running(&[], json!({}));
    assert_eq!(h.input(Input::StreamEnded("reset".into())), []);
    // The task's exit while disconnected is queued, not sent.
    assert!(states(&h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(0))))).is_empty());
    let retry = h.core.next_deadline().unwrap();
    assert_eq!(retry, h.now + Duration::from_millis(100));
    let out = h.advance(Duration::from_millis(100));
    let [Action::Subscribe(call)] = &out[..] else {
        panic!("{out:?}")
    };
    let CallKind::Subscribe(sub) = &call.kind else {
        panic!()
    };
    assert_eq!(sub.unacknowledged_tasks.len(), 1);
    let queued: Vec<_> = sub
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.state)
        .collect();
    assert_eq!(
        queued,
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    // Nothing is resent on SUBSCRIBED: the SUBSCRIBE carried it all.
    assert!(sent(&h.input(Input::from(subscribed(&[])))).is_empty());
    let finished = queued.len() - 1;
    let status = sub.unacknowledged_updates[finished].status.clone();
    assert_eq!(h.ack(&status), [Action::Exit(0)]);
}

#[test]
fn updates_made_while_connecting_go_out_after_subscribed() {
    let mut h = Harness::running(&[], json!({}));
    h.input(Input::StreamEnded("reset".into()));
    let out = h.advance(Duration::from_secs(1));
    assert!(matches!(&out[..], [Action::Subscribe(_)]));
    assert!(sent(&h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(0))))).is_empty());
    let out = h.input(Input::from(subscribed(&[])));
    assert_eq!(states(&out), [TaskState::TaskFinished]);
}

#[test]
fn acknowledged_task_is_not_resent() {
    let mut h = Harness::new(true);
    h.input(Input::from(subscribed(&[])));
    let out = h.input(Input::from(Event::Launch(Launch {
        task: task(json!({})),
    })));
    let starting = sent(&out).remove(0);
    h.input(Input::Started(t1()));
    h.ack(&starting);
    h.input(Input::StreamEnded("eof".into()));
    let out = h.advance(Duration::from_secs(1));
    let [Action::Subscribe(call)] = &out[..] else {
        panic!("{out:?}")
    };
    let CallKind::Subscribe(sub) = &call.kind else {
        panic!()
    };
    assert!(sub.unacknowledged_tasks.is_empty());
    assert_eq!(sub.unacknowledged_updates.len(), 1);
}

#[test]
fn failed_attempts_back_off_until_the_recovery_timeout() {
    let mut h = Harness::running(&[], json!({}));
    h.input(Input::StreamEnded("eof".into()));
    let mut pauses = Vec::new();
    let mut gave_up = Vec::new();
    for _ in 0..200 {
        let deadline = h.core.next_deadline().unwrap();
        let pause = deadline - h.now;
        let out = h.advance(pause);
        if out.iter().any(|a| matches!(a, Action::Subscribe(_))) {
            pauses.push(pause);
            h.input(Input::StreamEnded("connection refused".into()));
        } else {
            gave_up = out;
            break;
        }
    }
    assert_eq!(pauses[..3], [100, 200, 400].map(Duration::from_millis));
    assert!(pauses.iter().all(|p| *p <= Duration::from_secs(2)));
    // After 60 s without the agent, the executor kills its task ...
    assert_eq!(gave_up, [Action::Signal(t1(), Signal::Terminate)]);
    // ... and exits once it is gone.
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(libc::SIGTERM))));
    assert_eq!(out.last(), Some(&Action::Exit(0)));
}

#[test]
fn without_checkpointing_a_lost_agent_ends_the_executor() {
    let mut h = Harness::new(false);
    h.input(Input::from(subscribed(&[])));
    h.input(Input::from(Event::Launch(Launch {
        task: task(json!({})),
    })));
    h.input(Input::Started(t1()));
    let out = h.input(Input::StreamEnded("eof".into()));
    assert_eq!(out, [Action::Signal(t1(), Signal::Terminate)]);
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(libc::SIGTERM))));
    assert_eq!(out, [Action::Exit(0)]);
}

#[test]
fn health_checks_report_and_kill_after_consecutive_failures() {
    let check = json!({"health_check": {"type": "TCP", "tcp": {"port": 80},
        "consecutive_failures": 2, "grace_period_seconds": 0}});
    let mut h = Harness::new(true);
    h.input(Input::from(subscribed(&["TASK_KILLING_STATE"])));
    h.input(Input::from(Event::Launch(Launch { task: task(check) })));
    let out = h.input(Input::Started(t1()));
    assert!(
        matches!(out.last(), Some(Action::StartHealthChecks { .. })),
        "{out:?}"
    );

    let out = h.input(Input::Health(t1(), Ok(())));
    let healthy = sent(&out).remove(0);
    assert_eq!(healthy.state, TaskState::TaskRunning);
    assert_eq!(healthy.healthy, Some(true));
    assert_eq!(
        healthy.reason,
        Some(Reason::ReasonTaskHealthCheckStatusUpdated)
    );
    assert!(h.input(Input::Health(t1(), Ok(()))).is_empty());

    let out = h.input(Input::Health(t1(), Err("refused".into())));
    assert_eq!(sent(&out)[0].healthy, Some(false));
    let out = h.input(Input::Health(t1(), Err("refused".into())));
    assert_eq!(
        states(&out),
        [TaskState::TaskRunning, TaskState::TaskKilling]
    );
    assert!(out.contains(&Action::StopHealthChecks(t1())));
    assert!(out.contains(&Action::Signal(t1(), Signal::Terminate)));
    // Results still in flight after the kill are ignored.
    assert!(h
        .input(Input::Health(t1(), Err("refused".into())))
        .is_empty());
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(libc::SIGTERM))));
    let killed = sent(&out).remove(0);
    assert_eq!(killed.state, TaskState::TaskKilled);
    assert_eq!(killed.healthy, Some(false));
}

#[test]
fn max_completion_time_fails_the_task() {
    let mut h = Harness::running(
        &["TASK_KILLING_STATE"],
        json!({"max_completion_time": {"nanoseconds": 5_000_000_000i64}}),
    );
    let out = h.advance(Duration::from_secs(5));
    assert_eq!(out, [Action::Signal(t1(), Signal::Terminate)]);
    assert_eq!(
        h.advance(Duration::ZERO),
        [Action::Signal(t1(), Signal::Kill)]
    );
    let out = h.input(Input::Exited(t1(), Ok(ExitStatus::from_raw(libc::SIGKILL))));
    let failed = sent(&out).remove(0);
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert_eq!(failed.reason, Some(Reason::ReasonMaxCompletionTimeReached));
}

#[test]
fn unknown_acknowledgements_are_ignored() {
    let mut h = Harness::running(&[], json!({}));
    let out = h.input(Input::from(Event::Acknowledged(Acknowledged {
        task_id: "t1".into(),
        uuid: Bytes(vec![99; 16]),
    })));
    assert!(out.is_empty());
}

/// One step of a random run; the harness only feeds what the driver could.
#[derive(Clone, Debug)]
enum Step {
    Subscribed,
    Launch,
    Exit(i32),
    Kill(Option<u64>),
    Shutdown,
    Ack(usize),
    StreamEnded,
    Health(bool),
    Wait(u64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Step::Subscribed),
        Just(Step::Launch),
        (0i32..3).prop_map(Step::Exit),
        proptest::option::of(0u64..5_000).prop_map(Step::Kill),
        Just(Step::Shutdown),
        (0usize..8).prop_map(Step::Ack),
        Just(Step::StreamEnded),
        any::<bool>().prop_map(Step::Health),
        (0u64..20_000).prop_map(Step::Wait),
    ]
}

proptest::proptest! {
    #[test]
    fn invariants_hold_for_any_run(checkpoint: bool, steps in proptest::collection::vec(step(), 1..60)) {
        let check = json!({"health_check": {"type": "TCP", "tcp": {"port": 1},
            "consecutive_failures": 2, "grace_period_seconds": 0}});
        let mut h = Harness::new(checkpoint);
        let mut connecting = true;
        let mut subscribed = false;
        let mut running = false;
        let mut terminated = false;
        let mut launches = 0;
        let mut terminal_updates = std::collections::HashSet::new();
        let mut term_sent = false;
        let mut unacked: Vec<TaskStatus> = Vec::new();
        for step in steps {
            let input = match step.clone() {
                Step::Subscribed if connecting => Input::from(subscribed_event()),
                Step::Launch if subscribed => {
                    let mut t = task(check.clone());
                    if launches > 0 {
                        t.task_id = "t2".into();
                    }
                    launches += 1;
                    Input::from(Event::Launch(Launch { task: t }))
                }
                Step::Exit(code) if running => Input::Exited(t1(), Ok(ExitStatus::from_raw(code << 8))),
                Step::Kill(grace) if subscribed => Input::from(Event::Kill(Kill {
                    task_id: "t1".into(),
                    kill_policy: grace.map(|ms| meseta_api::KillPolicy {
                        grace_period: Some(meseta_api::DurationInfo { nanoseconds: ms as i64 * 1_000_000 }),
                    }),
                })),
                Step::Shutdown if subscribed => Input::from(Event::Shutdown),
                Step::Ack(i) if subscribed && !unacked.is_empty() => {
                    let status = unacked.remove(i % unacked.len());
                    Input::from(Event::Acknowledged(Acknowledged {
                        task_id: status.task_id.clone(),
                        uuid: status.uuid.clone().unwrap(),
                    }))
                }
                Step::StreamEnded if connecting || subscribed => Input::StreamEnded("gone".into()),
                Step::Health(ok) => Input::Health(t1(), if ok { Ok(()) } else { Err("down".into()) }),
                Step::Wait(ms) => {
                    h.now += Duration::from_millis(ms);
                    Input::Tick
                }
                _ => continue,
            };
            if matches!(input, Input::StreamEnded(_)) {
                connecting = false;
                subscribed = false;
            }
            if let Input::Event(e) = &input {
                if matches!(**e, Event::Subscribed(_)) {
                    connecting = false;
                    subscribed = true;
                }
            }
            if matches!(input, Input::Exited(..)) {
                terminated = true;
            }
            let mut queue: std::collections::VecDeque<Action> = h.input(input).into();
            let mut exited = false;
            while let Some(action) = queue.pop_front() {
                match action {
                    Action::Subscribe(_) => {
                        proptest::prop_assert!(!connecting && !subscribed, "one subscription at a time");
                        connecting = true;
                    }
                    Action::Send(call) => {
                        proptest::prop_assert!(subscribed, "sends only while subscribed");
                        let CallKind::Update(update) = call.kind else { panic!() };
                        let status = update.status;
                        proptest::prop_assert_eq!(status.uuid.as_ref().map(|u| u.len()), Some(16));
                        proptest::prop_assert_eq!(status.source, Some(StatusSource::SourceExecutor));
                        unacked.push(status);
                    }
                    Action::Launch(_) => {
                        running = true;
                        for next in h.input(Input::Started(t1())).into_iter().rev() {
                            queue.push_front(next);
                        }
                    }
                    Action::Signal(_, Signal::Terminate) => term_sent = true,
                    Action::Signal(_, Signal::Kill) => proptest::prop_assert!(term_sent),
                    Action::StartHealthChecks { .. } | Action::StopHealthChecks(_) => {}
                    Action::Exit(code) => {
                        // 1 only for a KILL before any LAUNCH.
                        let early_kill = launches == 0 && matches!(step, Step::Kill(_));
                        proptest::prop_assert_eq!(code, i32::from(early_kill));
                        proptest::prop_assert!(!running || terminated, "never exits with the task running");
                        exited = true;
                    }
                }
            }
            // The task gets one terminal update, whether sent or still queued.
            terminal_updates.extend(
                h.core
                    .session
                    .unacknowledged
                    .iter()
                    .filter(|u| u.status.task_id.as_str() == "t1" && u.status.state.is_terminal())
                    .filter_map(|u| u.status.uuid.clone()),
            );
            proptest::prop_assert!(terminal_updates.len() <= 1);
            if exited {
                break;
            }
        }
    }
}

fn subscribed_event() -> Event {
    subscribed(&["TASK_KILLING_STATE"])
}
