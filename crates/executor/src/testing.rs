//! Test doubles and helpers shared by the executors' state-machine tests: fixed uuids,
//! clock and jitter, a configuration, SUBSCRIBED events, and the updates a batch of
//! actions sends.

use crate::config::Config;
use crate::machine::{Action, Sources};
use meseta_api::executor::{Call, CallKind, Event, Subscribed};
use meseta_api::json::Bytes;
use meseta_api::{TaskState, TaskStatus};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// Counting uuids, a fixed clock, the longest backoff.
#[derive(Default)]
pub struct FakeSources {
    next: u8,
}

impl Sources for FakeSources {
    fn uuid(&mut self) -> Bytes {
        self.next = self.next.wrapping_add(1);
        Bytes(vec![self.next; 16])
    }
    fn wall_clock(&mut self) -> f64 {
        1_700_000_000.5
    }
    fn jitter(&mut self) -> f64 {
        1.0
    }
}

/// Executor `executor_id` of framework `f`, sandbox `/sandbox`, 60 s recovery timeout,
/// 5 s shutdown grace period.
pub fn config(executor_id: &str, checkpoint: bool) -> Config {
    Config {
        agent_endpoint: "127.0.0.1:5051".into(),
        domain_socket: None,
        framework_id: "f".into(),
        executor_id: executor_id.into(),
        sandbox: PathBuf::from("/sandbox"),
        checkpoint,
        recovery_timeout: Duration::from_secs(60),
        subscription_backoff_max: Duration::from_secs(2),
        shutdown_grace_period: Duration::from_secs(5),
        authentication_token: None,
        image: None,
        environment: vec![("PATH".into(), "/bin".into()), ("A".into(), "1".into())],
    }
}

/// SUBSCRIBED for executor `executor_id` of a framework with these capabilities.
pub fn subscribed(executor_id: &str, capabilities: &[&str]) -> Event {
    let caps: Vec<_> = capabilities.iter().map(|c| json!({ "type": c })).collect();
    Event::Subscribed(
        serde_json::from_value::<Subscribed>(json!({
            "executor_info": {"executor_id": {"value": executor_id}},
            "framework_info": {"user": "u", "name": "fw", "id": {"value": "f"}, "capabilities": caps},
            "agent_info": {"hostname": "h", "id": {"value": "A-S0"}},
        }))
        .unwrap(),
    )
}

/// The statuses of the UPDATE calls among `actions`.
pub fn sent(actions: &[Action]) -> Vec<TaskStatus> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Call {
                kind: CallKind::Update(u),
                ..
            }) => Some(u.status.clone()),
            _ => None,
        })
        .collect()
}

/// The states of the UPDATE calls among `actions`.
pub fn states(actions: &[Action]) -> Vec<TaskState> {
    sent(actions).into_iter().map(|s| s.state).collect()
}
