use super::*;
use crate::machine::Signal;
use crate::testing::{self, sent, states, FakeSources};
use meseta_api::executor::{Acknowledged, CallKind, LaunchGroupEvent};
use meseta_api::{TaskInfo, TaskState, TaskStatus};
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

fn id(name: &str) -> TaskId {
    TaskId::new(name)
}

fn task(name: &str, extra: serde_json::Value) -> TaskInfo {
    let mut base = json!({
        "name": name, "task_id": {"value": name}, "agent_id": {"value": "A-S0"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1},
                       "allocation_info": {"role": "web"}}],
        "command": {"value": "sleep 100", "environment": {"variables": [{"name": "B", "value": "2"}]}}
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    serde_json::from_value(base).unwrap()
}

fn group(tasks: Vec<TaskInfo>) -> Input {
    Input::from(Event::LaunchGroup(LaunchGroupEvent {
        task_group: TaskGroupInfo { tasks },
    }))
}

fn kill(name: &str) -> Input {
    Input::from(Event::Kill(Kill {
        task_id: id(name),
        kill_policy: None,
    }))
}

fn exit(code: i32) -> Result<ExitStatus, String> {
    Ok(ExitStatus::from_raw(code << 8))
}

fn signalled(signal: i32) -> Result<ExitStatus, String> {
    Ok(ExitStatus::from_raw(signal))
}

struct Harness {
    core: DefaultCore<FakeSources>,
    now: Instant,
}

impl Harness {
    fn new(checkpoint: bool, capabilities: &[&str]) -> Harness {
        let now = Instant::now();
        let mut core = DefaultCore::new(testing::config("e", checkpoint), FakeSources::default());
        assert!(matches!(&core.start(now)[..], [Action::Subscribe(_)]));
        let mut h = Harness { core, now };
        assert!(h
            .input(Input::from(testing::subscribed("e", capabilities)))
            .is_empty());
        h
    }

    /// Launches a group, answering every launch as the driver does; returns all actions.
    fn launch(&mut self, tasks: Vec<TaskInfo>) -> Vec<Action> {
        let mut out = self.input(group(tasks));
        let launched: Vec<TaskId> = out
            .iter()
            .filter_map(|a| match a {
                Action::Launch(spec) => Some(spec.task_id.clone()),
                _ => None,
            })
            .collect();
        for task_id in launched {
            out.extend(self.input(Input::Started(task_id)));
        }
        out
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

    fn ack_all(&mut self) -> Vec<Action> {
        let pending: Vec<TaskStatus> = self
            .core
            .session
            .unacknowledged
            .iter()
            .map(|u| u.status.clone())
            .collect();
        pending.iter().flat_map(|s| self.ack(s)).collect()
    }
}

/// The states sent for one task.
fn states_of(actions: &[Action], name: &str) -> Vec<TaskState> {
    sent(actions)
        .into_iter()
        .filter(|s| s.task_id == id(name))
        .map(|s| s.state)
        .collect()
}

#[test]
fn each_task_of_a_group_runs_in_its_own_sandbox_and_reports_its_states() {
    let mut h = Harness::new(true, &[]);
    let out = h.launch(vec![task("a", json!({})), task("b", json!({}))]);
    assert_eq!(
        states_of(&out, "a"),
        [TaskState::TaskStarting, TaskState::TaskRunning]
    );
    assert_eq!(
        states_of(&out, "b"),
        [TaskState::TaskStarting, TaskState::TaskRunning]
    );
    let specs: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Launch(spec) => Some(spec.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(specs.len(), 2);
    let a = &specs[0];
    assert_eq!(a.cwd, PathBuf::from("/sandbox/tasks/a"));
    assert_eq!(a.output_dir, Some(PathBuf::from("/sandbox/tasks/a")));
    let env: std::collections::HashMap<_, _> = a.environment.iter().cloned().collect();
    assert_eq!(env["MESOS_SANDBOX"], "/sandbox/tasks/a");
    assert_eq!(env["B"], "2");
    assert_eq!(env["A"], "1", "the executor's own environment is inherited");
    assert_eq!(env["MESOS_ALLOCATION_ROLE"], "web");
    let status = &sent(&out)[0];
    assert_eq!(status.executor_id, Some("e".into()));
    assert_eq!(status.agent_id, Some("A-S0".into()));

    let out = h.input(Input::Exited(id("a"), exit(0)));
    let finished = sent(&out).remove(0);
    assert_eq!(finished.state, TaskState::TaskFinished);
    assert_eq!(
        finished.message.as_deref(),
        Some("Command exited with status 0")
    );
    assert!(
        !out.iter().any(|a| matches!(a, Action::Signal(..))),
        "a finished task leaves the others running"
    );
    let out = h.input(Input::Exited(id("b"), exit(0)));
    assert_eq!(states(&out), [TaskState::TaskFinished]);
    // No task is left: the executor exits once every update is acknowledged.
    assert!(!h.core.session.unacknowledged.is_empty());
    let out = h.ack_all();
    assert_eq!(out, [Action::Exit(0)]);
}

#[test]
fn a_failed_task_kills_the_rest_of_its_group() {
    let mut h = Harness::new(true, &["TASK_KILLING_STATE"]);
    h.launch(vec![task("a", json!({})), task("b", json!({}))]);
    let out = h.input(Input::Exited(id("a"), exit(3)));
    let failed = sent(&out).remove(0);
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert_eq!(
        failed.message.as_deref(),
        Some("Command exited with status 3")
    );
    assert_eq!(states_of(&out, "b"), [TaskState::TaskKilling]);
    assert!(out.contains(&Action::Signal(id("b"), Signal::Terminate)));
    assert_eq!(h.core.next_deadline(), Some(h.now + Duration::from_secs(3)));
    assert_eq!(
        h.advance(Duration::from_secs(3)),
        [Action::Signal(id("b"), Signal::Kill)]
    );
    let out = h.input(Input::Exited(id("b"), signalled(libc::SIGKILL)));
    let killed = sent(&out).remove(0);
    assert_eq!(killed.state, TaskState::TaskKilled);
    assert_eq!(
        killed.message.as_deref(),
        Some("Command terminated with signal Killed")
    );
}

#[test]
fn a_kill_of_one_task_kills_its_group_but_not_other_groups() {
    let policy = json!({"kill_policy": {"grace_period": {"nanoseconds": 10_000_000_000i64}}});
    let mut h = Harness::new(true, &[]);
    h.launch(vec![task("a", policy), task("b", json!({}))]);
    h.launch(vec![task("c", json!({}))]);
    let out = h.input(kill("a"));
    assert_eq!(out, [Action::Signal(id("a"), Signal::Terminate)]);
    assert_eq!(
        h.core.next_deadline(),
        Some(h.now + Duration::from_secs(10)),
        "the task's own grace period"
    );
    let out = h.input(Input::Exited(id("a"), signalled(libc::SIGTERM)));
    assert_eq!(states_of(&out, "a"), [TaskState::TaskKilled]);
    assert!(out.contains(&Action::Signal(id("b"), Signal::Terminate)));
    assert!(!out.contains(&Action::Signal(id("c"), Signal::Terminate)));
    let out = h.input(Input::Exited(id("b"), signalled(libc::SIGTERM)));
    assert_eq!(states(&out), [TaskState::TaskKilled]);
    // Group c still runs: no exit even with everything acknowledged.
    assert!(!h.ack_all().contains(&Action::Exit(0)));
    assert!(h.input(kill("zz")).is_empty(), "an unknown task is ignored");
}

#[test]
fn a_task_without_a_command_fails_and_takes_its_group_down() {
    let mut h = Harness::new(true, &[]);
    let mut broken = task("a", json!({}));
    broken.command = None;
    let out = h.launch(vec![broken, task("b", json!({}))]);
    assert_eq!(
        states_of(&out, "a"),
        [TaskState::TaskStarting, TaskState::TaskFailed]
    );
    assert_eq!(
        sent(&out)[1].message.as_deref(),
        Some("Expecting task 'a' to have a command")
    );
    // b is killed as soon as its process has started.
    assert_eq!(
        states_of(&out, "b"),
        [TaskState::TaskStarting, TaskState::TaskRunning]
    );
    assert!(out.contains(&Action::Signal(id("b"), Signal::Terminate)));
}

#[test]
fn a_failed_launch_fails_the_task() {
    let mut h = Harness::new(true, &[]);
    let out = h.input(group(vec![task("a", json!({}))]));
    assert!(matches!(out.last(), Some(Action::Launch(_))));
    let out = h.input(Input::LaunchFailed(id("a"), "Permission denied".into()));
    let failed = sent(&out).remove(0);
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert!(failed.message.unwrap().contains("Permission denied"));
}

#[test]
fn shutdown_kills_everything_and_ignores_later_kills_and_launches() {
    let mut h = Harness::new(true, &[]);
    h.launch(vec![task("a", json!({}))]);
    h.launch(vec![task("b", json!({}))]);
    let out = h.input(Input::from(Event::Shutdown));
    assert_eq!(
        out,
        [
            Action::Signal(id("a"), Signal::Terminate),
            Action::Signal(id("b"), Signal::Terminate)
        ]
    );
    assert_eq!(
        h.core.next_deadline(),
        Some(h.now + Duration::from_secs(3)),
        "the shutdown grace period less 2 s"
    );
    assert!(h.input(kill("a")).is_empty());
    assert!(h.input(group(vec![task("c", json!({}))])).is_empty());
    assert!(h.input(Input::from(Event::Shutdown)).is_empty());
    let out = h.input(Input::Exited(id("a"), signalled(libc::SIGTERM)));
    assert_eq!(
        states(&out),
        [TaskState::TaskKilled],
        "no group policy while shutting down"
    );
    let out = h.input(Input::Exited(id("b"), signalled(libc::SIGTERM)));
    assert_eq!(states(&out), [TaskState::TaskKilled]);
    assert_eq!(h.ack_all().last(), Some(&Action::Exit(0)));
}

#[test]
fn launch_is_refused_and_an_idle_executor_exits_on_shutdown() {
    let mut h = Harness::new(true, &[]);
    let launch = Input::from(Event::Launch(meseta_api::executor::Launch {
        task: task("a", json!({})),
    }));
    assert_eq!(h.input(launch), [Action::Exit(0)]);
}

#[test]
fn unacknowledged_updates_delay_the_exit_by_a_bounded_wait() {
    let mut h = Harness::new(true, &[]);
    h.launch(vec![task("a", json!({}))]);
    h.input(Input::Exited(id("a"), exit(0)));
    assert_eq!(h.core.next_deadline(), Some(h.now + ACK_WAIT));
    assert!(h.advance(ACK_WAIT - Duration::from_secs(1)).is_empty());
    assert_eq!(h.advance(Duration::from_secs(1)), [Action::Exit(0)]);
}

#[test]
fn a_new_group_keeps_the_executor_alive() {
    let mut h = Harness::new(true, &[]);
    h.launch(vec![task("a", json!({}))]);
    h.input(Input::Exited(id("a"), exit(0)));
    let out = h.launch(vec![task("b", json!({}))]);
    assert_eq!(
        states_of(&out, "b"),
        [TaskState::TaskStarting, TaskState::TaskRunning]
    );
    assert_eq!(h.core.next_deadline(), None, "no exit is pending");
}

#[test]
fn resubscribe_lists_live_unacknowledged_tasks_and_all_unacknowledged_updates() {
    let mut h = Harness::new(true, &[]);
    let out = h.launch(vec![task("a", json!({})), task("b", json!({}))]);
    let a_starting = sent(&out)
        .into_iter()
        .find(|s| s.task_id == id("a"))
        .unwrap();
    h.ack(&a_starting);
    assert!(h.input(Input::StreamEnded("reset".into())).is_empty());
    // b finishes while the agent is away: its update waits for the new subscription.
    assert!(sent(&h.input(Input::Exited(id("b"), exit(0)))).is_empty());
    assert_eq!(
        h.core.next_deadline(),
        Some(h.now + Duration::from_millis(100))
    );
    let out = h.advance(Duration::from_millis(100));
    let [Action::Subscribe(call)] = &out[..] else {
        panic!("{out:?}")
    };
    let CallKind::Subscribe(subscribe) = &call.kind else {
        panic!()
    };
    let listed: Vec<_> = subscribe
        .unacknowledged_tasks
        .iter()
        .map(|t| t.task_id.clone())
        .collect();
    assert!(
        listed.is_empty(),
        "a's update was acknowledged, b ended: {listed:?}"
    );
    let carried: Vec<_> = subscribe
        .unacknowledged_updates
        .iter()
        .map(|u| (u.status.task_id.to_string(), u.status.state))
        .collect();
    assert_eq!(carried.len(), 4, "{carried:?}");
    assert!(carried.contains(&("b".to_string(), TaskState::TaskFinished)));
    assert!(sent(&h.input(Input::from(testing::subscribed("e", &[])))).is_empty());
}

#[test]
fn without_checkpointing_a_lost_agent_kills_every_task_and_exits() {
    let mut h = Harness::new(false, &[]);
    h.launch(vec![task("a", json!({})), task("b", json!({}))]);
    let out = h.input(Input::StreamEnded("eof".into()));
    assert_eq!(
        out,
        [
            Action::Signal(id("a"), Signal::Terminate),
            Action::Signal(id("b"), Signal::Terminate)
        ]
    );
    assert!(h
        .input(Input::Exited(id("a"), signalled(libc::SIGTERM)))
        .is_empty());
    assert_eq!(
        h.input(Input::Exited(id("b"), signalled(libc::SIGTERM))),
        [Action::Exit(0)]
    );
}

#[test]
fn a_failed_health_check_kills_the_task_and_its_group() {
    let check = json!({"health_check": {"type": "TCP", "tcp": {"port": 80},
        "consecutive_failures": 1, "grace_period_seconds": 0}});
    let mut h = Harness::new(true, &[]);
    let out = h.launch(vec![task("a", check), task("b", json!({}))]);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::StartHealthChecks { task_id, .. } if task_id == &id("a"))));
    let out = h.input(Input::Health(id("a"), Err("refused".into())));
    assert_eq!(sent(&out)[0].healthy, Some(false));
    assert!(out.contains(&Action::StopHealthChecks(id("a"))));
    assert!(out.contains(&Action::Signal(id("a"), Signal::Terminate)));
    let out = h.input(Input::Exited(id("a"), signalled(libc::SIGTERM)));
    let killed = sent(&out).remove(0);
    assert_eq!(
        (killed.state, killed.healthy),
        (TaskState::TaskKilled, Some(false))
    );
    assert!(out.contains(&Action::Signal(id("b"), Signal::Terminate)));
}
