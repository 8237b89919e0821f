//! The status update manager's core: a pure state machine (events in, actions out, time
//! passed in) that makes task status updates reliable.
//!
//! One stream per task. Every update is checkpointed (for checkpointing frameworks) before
//! it is forwarded; only the head of a stream is in flight; the head is resent with backoff
//! (10 s doubling to 10 min) until the framework acknowledges it, and again right after
//! every (re)registration. Duplicate updates (same uuid) and acknowledgements that do not
//! match the head are ignored. The runtime executes [`Action`]s in order: every
//! [`Action::Persist`] must be durable before the [`Action::Forward`]s that follow it go out.

use meseta_api::internal::StatusUpdate;
use meseta_api::json::Bytes;
use meseta_api::{FrameworkId, TaskId, TaskStatus};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// First retry interval of an unacknowledged update.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Longest retry interval.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A stream is named by its framework and task.
pub type StreamKey = (FrameworkId, TaskId);

/// A checkpoint operation on the update log.
#[derive(Clone, Debug, PartialEq)]
pub enum Persist {
    /// Record a received update under its sequence number in its stream.
    Put {
        framework_id: FrameworkId,
        seq: u64,
        status: TaskStatus,
    },
    /// Forget an acknowledged update.
    Delete {
        framework_id: FrameworkId,
        task_id: TaskId,
        seq: u64,
    },
}

/// What the runtime must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Make this durable before executing any later action.
    Persist(Persist),
    /// Send the update to the master.
    Forward(StatusUpdate),
    /// The framework acknowledged this update (tell its executor, free bookkeeping).
    Acknowledged {
        framework_id: FrameworkId,
        status: TaskStatus,
    },
}

/// Why an update or acknowledgement was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// An update without a uuid cannot be acknowledged, so it cannot be made reliable.
    #[error("status update for task {0} has no uuid")]
    NoUuid(TaskId),
    /// This uuid was already received on the stream.
    #[error("duplicate status update {1} for task {0}")]
    Duplicate(TaskId, String),
    /// No updates are pending for the task.
    #[error("no pending status updates for task {0}")]
    UnknownStream(TaskId),
    /// The uuid is not the one in flight.
    #[error("acknowledgement {1} for task {0} does not match the update in flight")]
    NotHead(TaskId, String),
}

#[derive(Clone, Debug)]
struct Pending {
    seq: u64,
    status: TaskStatus,
}

#[derive(Clone, Debug)]
struct Stream {
    checkpoint: bool,
    pending: VecDeque<Pending>,
    received: HashSet<Bytes>,
    next_seq: u64,
    /// When the head is resent next (`None` until it is first forwarded).
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Stream {
    fn new(checkpoint: bool) -> Self {
        Stream {
            checkpoint,
            pending: VecDeque::new(),
            received: HashSet::new(),
            next_seq: 0,
            retry_at: None,
            backoff: INITIAL_BACKOFF,
        }
    }
}

/// The status update manager's state.
#[derive(Clone, Debug, Default)]
pub struct UpdateManager {
    streams: BTreeMap<StreamKey, Stream>,
}

fn forward(framework_id: &FrameworkId, status: &TaskStatus) -> Action {
    Action::Forward(StatusUpdate {
        framework_id: framework_id.clone(),
        status: status.clone(),
        latest_state: None,
    })
}

fn uuid_text(uuid: &Bytes) -> String {
    uuid.to_base64()
}

impl UpdateManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a new update. `checkpoint` says whether the framework checkpoints.
    pub fn update(
        &mut self,
        framework_id: &FrameworkId,
        status: TaskStatus,
        checkpoint: bool,
        now: Instant,
    ) -> Result<Vec<Action>, Ignored> {
        let uuid = status
            .uuid
            .clone()
            .ok_or_else(|| Ignored::NoUuid(status.task_id.clone()))?;
        let key = (framework_id.clone(), status.task_id.clone());
        let stream = self
            .streams
            .entry(key)
            .or_insert_with(|| Stream::new(checkpoint));
        if !stream.received.insert(uuid.clone()) {
            return Err(Ignored::Duplicate(status.task_id.clone(), uuid_text(&uuid)));
        }
        let seq = stream.next_seq;
        stream.next_seq += 1;
        let mut actions = Vec::new();
        if stream.checkpoint {
            actions.push(Action::Persist(Persist::Put {
                framework_id: framework_id.clone(),
                seq,
                status: status.clone(),
            }));
        }
        if stream.pending.is_empty() {
            actions.push(forward(framework_id, &status));
            stream.backoff = INITIAL_BACKOFF;
            stream.retry_at = Some(now + INITIAL_BACKOFF);
        }
        stream.pending.push_back(Pending { seq, status });
        Ok(actions)
    }

    /// Takes the framework's acknowledgement of `uuid`.
    pub fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        uuid: &Bytes,
        now: Instant,
    ) -> Result<Vec<Action>, Ignored> {
        let key = (framework_id.clone(), task_id.clone());
        let stream = self
            .streams
            .get_mut(&key)
            .filter(|s| !s.pending.is_empty())
            .ok_or_else(|| Ignored::UnknownStream(task_id.clone()))?;
        let head = stream.pending.front().expect("non-empty");
        if head.status.uuid.as_ref() != Some(uuid) {
            return Err(Ignored::NotHead(task_id.clone(), uuid_text(uuid)));
        }
        let acked = stream.pending.pop_front().expect("non-empty");
        let mut actions = Vec::new();
        if stream.checkpoint {
            actions.push(Action::Persist(Persist::Delete {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                seq: acked.seq,
            }));
        }
        let terminal = acked.status.state.is_terminal();
        actions.push(Action::Acknowledged {
            framework_id: framework_id.clone(),
            status: acked.status,
        });
        match stream.pending.front() {
            Some(next) => {
                actions.push(forward(framework_id, &next.status));
                stream.backoff = INITIAL_BACKOFF;
                stream.retry_at = Some(now + INITIAL_BACKOFF);
            }
            None => {
                stream.retry_at = None;
                if terminal {
                    self.streams.remove(&key);
                }
            }
        }
        Ok(actions)
    }

    /// Resends every head whose retry time has come, doubling its backoff.
    pub fn due(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for ((framework_id, _), stream) in self.streams.iter_mut() {
            let (Some(at), Some(head)) = (stream.retry_at, stream.pending.front()) else {
                continue;
            };
            if at <= now {
                actions.push(forward(framework_id, &head.status));
                stream.backoff = (stream.backoff * 2).min(MAX_BACKOFF);
                stream.retry_at = Some(now + stream.backoff);
            }
        }
        actions
    }

    /// Resends every head at once (after a (re)registration) and restarts their backoff.
    pub fn resend_all(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for ((framework_id, _), stream) in self.streams.iter_mut() {
            if let Some(head) = stream.pending.front() {
                actions.push(forward(framework_id, &head.status));
                stream.backoff = INITIAL_BACKOFF;
                stream.retry_at = Some(now + INITIAL_BACKOFF);
            }
        }
        actions
    }

    /// When [`UpdateManager::due`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams.values().filter_map(|s| s.retry_at).min()
    }

    /// Drops every stream of a framework that is gone (its updates can never be acked).
    pub fn remove_framework(&mut self, framework_id: &FrameworkId) -> Vec<Action> {
        let keys: Vec<StreamKey> = self
            .streams
            .keys()
            .filter(|(f, _)| f == framework_id)
            .cloned()
            .collect();
        let mut actions = Vec::new();
        for key in keys {
            let stream = self.streams.remove(&key).expect("listed");
            if stream.checkpoint {
                actions.extend(stream.pending.iter().map(|p| {
                    Action::Persist(Persist::Delete {
                        framework_id: key.0.clone(),
                        task_id: key.1.clone(),
                        seq: p.seq,
                    })
                }));
            }
        }
        actions
    }

    /// Restores a checkpointed, unacknowledged update (in sequence order per stream) after
    /// an agent restart. It is forwarded by the next [`UpdateManager::resend_all`].
    pub fn recover(&mut self, framework_id: &FrameworkId, seq: u64, status: TaskStatus) {
        let key = (framework_id.clone(), status.task_id.clone());
        let stream = self.streams.entry(key).or_insert_with(|| Stream::new(true));
        if let Some(uuid) = &status.uuid {
            stream.received.insert(uuid.clone());
        }
        stream.next_seq = stream.next_seq.max(seq + 1);
        stream.pending.push_back(Pending { seq, status });
    }

    /// The update in flight for a task, if any.
    pub fn head(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Option<&TaskStatus> {
        self.streams
            .get(&(framework_id.clone(), task_id.clone()))
            .and_then(|s| s.pending.front())
            .map(|p| &p.status)
    }

    /// How many updates await acknowledgement.
    pub fn pending_count(&self) -> usize {
        self.streams.values().map(|s| s.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::TaskState;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn status(task: &str, state: TaskState, n: u8) -> TaskStatus {
        let mut s = TaskStatus::new(TaskId::new(task), state);
        s.uuid = Some(Bytes(vec![n; 16]));
        s
    }

    fn forwarded(actions: &[Action]) -> Vec<(String, TaskState)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Forward(u) => Some((u.status.task_id.to_string(), u.status.state)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn persists_before_forwarding_and_holds_later_updates() {
        let f = FrameworkId::new("f");
        let now = Instant::now();
        let mut m = UpdateManager::new();
        let a = m
            .update(&f, status("t", TaskState::TaskRunning, 1), true, now)
            .unwrap();
        assert!(matches!(a[0], Action::Persist(Persist::Put { seq: 0, .. })));
        assert_eq!(forwarded(&a), vec![("t".into(), TaskState::TaskRunning)]);
        let b = m
            .update(&f, status("t", TaskState::TaskFinished, 2), true, now)
            .unwrap();
        assert_eq!(
            b.len(),
            1,
            "persisted but not forwarded while RUNNING is in flight"
        );
        let c = m
            .acknowledge(&f, &TaskId::new("t"), &Bytes(vec![1; 16]), now)
            .unwrap();
        assert!(matches!(
            c[0],
            Action::Persist(Persist::Delete { seq: 0, .. })
        ));
        assert!(
            matches!(&c[1], Action::Acknowledged { status, .. } if status.state == TaskState::TaskRunning)
        );
        assert_eq!(forwarded(&c), vec![("t".into(), TaskState::TaskFinished)]);
        m.acknowledge(&f, &TaskId::new("t"), &Bytes(vec![2; 16]), now)
            .unwrap();
        assert_eq!(m.pending_count(), 0);
        assert!(m.next_deadline().is_none());
    }

    #[test]
    fn non_checkpointing_streams_persist_nothing() {
        let f = FrameworkId::new("f");
        let now = Instant::now();
        let mut m = UpdateManager::new();
        let a = m
            .update(&f, status("t", TaskState::TaskRunning, 1), false, now)
            .unwrap();
        assert!(a.iter().all(|a| !matches!(a, Action::Persist(_))));
    }

    #[test]
    fn retries_back_off_to_ten_minutes_and_reset_on_resend_all() {
        let f = FrameworkId::new("f");
        let t0 = Instant::now();
        let mut m = UpdateManager::new();
        m.update(&f, status("t", TaskState::TaskRunning, 1), false, t0)
            .unwrap();
        assert!(m.due(t0 + Duration::from_secs(9)).is_empty());
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..8 {
            let at = m.next_deadline().unwrap();
            gaps.push((at - now).as_secs());
            now = at;
            assert_eq!(forwarded(&m.due(now)).len(), 1);
        }
        assert_eq!(gaps, vec![10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(forwarded(&m.resend_all(now)).len(), 1);
        assert_eq!((m.next_deadline().unwrap() - now).as_secs(), 10);
    }

    #[test]
    fn ignores_duplicates_and_stray_acks() {
        let f = FrameworkId::new("f");
        let now = Instant::now();
        let mut m = UpdateManager::new();
        m.update(&f, status("t", TaskState::TaskRunning, 1), true, now)
            .unwrap();
        assert!(matches!(
            m.update(&f, status("t", TaskState::TaskRunning, 1), true, now),
            Err(Ignored::Duplicate(..))
        ));
        assert!(matches!(
            m.acknowledge(&f, &TaskId::new("t"), &Bytes(vec![9; 16]), now),
            Err(Ignored::NotHead(..))
        ));
        assert!(matches!(
            m.acknowledge(&f, &TaskId::new("nope"), &Bytes(vec![1; 16]), now),
            Err(Ignored::UnknownStream(..))
        ));
        let mut bare = status("t", TaskState::TaskRunning, 3);
        bare.uuid = None;
        assert!(matches!(
            m.update(&f, bare, true, now),
            Err(Ignored::NoUuid(_))
        ));
        assert_eq!(m.pending_count(), 1);
    }

    #[test]
    fn recovered_updates_are_resent_in_order_and_keep_sequence() {
        let f = FrameworkId::new("f");
        let now = Instant::now();
        let mut m = UpdateManager::new();
        m.recover(&f, 4, status("t", TaskState::TaskRunning, 1));
        m.recover(&f, 5, status("t", TaskState::TaskFinished, 2));
        assert!(matches!(
            m.update(&f, status("t", TaskState::TaskFinished, 2), true, now),
            Err(Ignored::Duplicate(..))
        ));
        assert_eq!(
            forwarded(&m.resend_all(now)),
            vec![("t".into(), TaskState::TaskRunning)]
        );
        let next = m
            .update(&f, status("t", TaskState::TaskFailed, 3), true, now)
            .unwrap();
        assert!(matches!(
            next[0],
            Action::Persist(Persist::Put { seq: 6, .. })
        ));
        let removed = m.remove_framework(&f);
        assert_eq!(removed.len(), 3);
        assert_eq!(m.pending_count(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Update { task: u8 },
        Duplicate { task: u8 },
        AckHead { task: u8 },
        AckStray { task: u8 },
        Tick { secs: u16 },
        Resend,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..4).prop_map(|task| Op::Update { task }),
            1 => (0u8..4).prop_map(|task| Op::Duplicate { task }),
            3 => (0u8..4).prop_map(|task| Op::AckHead { task }),
            1 => (0u8..4).prop_map(|task| Op::AckStray { task }),
            1 => (0u16..1200).prop_map(|secs| Op::Tick { secs }),
            1 => Just(Op::Resend),
        ]
    }

    proptest! {
        /// Against a model (a FIFO of uuids per task): every forward is the model's head,
        /// every update is forwarded before it is acknowledged, acknowledgements come out
        /// in the order updates went in, duplicates and stray acks change nothing.
        #[test]
        fn order_preserved_nothing_lost(ops in proptest::collection::vec(op(), 1..200)) {
            let f = FrameworkId::new("f");
            let mut now = Instant::now();
            let mut m = UpdateManager::new();
            let mut model: HashMap<String, VecDeque<u32>> = HashMap::new();
            let mut sent: HashMap<String, Vec<u32>> = HashMap::new();
            let mut acked: HashMap<String, Vec<u32>> = HashMap::new();
            let mut next_uuid = 0u32;
            let mut last_uuid: HashMap<String, u32> = HashMap::new();
            let uuid_of = |n: u32| { let mut b = n.to_be_bytes().to_vec(); b.resize(16, 7); Bytes(b) };
            let num_of = |b: &Bytes| u32::from_be_bytes([b.0[0], b.0[1], b.0[2], b.0[3]]);
            for op in ops {
                let actions = match op {
                    Op::Update { task } => {
                        let task = format!("t{task}");
                        next_uuid += 1;
                        let mut s = TaskStatus::new(TaskId::new(&task), TaskState::TaskRunning);
                        s.uuid = Some(uuid_of(next_uuid));
                        model.entry(task.clone()).or_default().push_back(next_uuid);
                        last_uuid.insert(task, next_uuid);
                        m.update(&f, s, true, now).unwrap()
                    }
                    Op::Duplicate { task } => {
                        let task = format!("t{task}");
                        let Some(&n) = last_uuid.get(&task) else { continue };
                        let mut s = TaskStatus::new(TaskId::new(&task), TaskState::TaskRunning);
                        s.uuid = Some(uuid_of(n));
                        prop_assert!(m.update(&f, s, true, now).is_err());
                        continue;
                    }
                    Op::AckHead { task } => {
                        let task = format!("t{task}");
                        let Some(&head) = model.get(&task).and_then(|q| q.front()) else {
                            prop_assert!(m.acknowledge(&f, &TaskId::new(&task), &uuid_of(0), now).is_err());
                            continue;
                        };
                        model.get_mut(&task).unwrap().pop_front();
                        m.acknowledge(&f, &TaskId::new(&task), &uuid_of(head), now).unwrap()
                    }
                    Op::AckStray { task } => {
                        let task = format!("t{task}");
                        let before = m.pending_count();
                        prop_assert!(m.acknowledge(&f, &TaskId::new(&task), &uuid_of(u32::MAX), now).is_err());
                        prop_assert_eq!(m.pending_count(), before);
                        continue;
                    }
                    Op::Tick { secs } => { now += Duration::from_secs(secs.into()); m.due(now) }
                    Op::Resend => m.resend_all(now),
                };
                for a in actions {
                    match a {
                        Action::Forward(u) => {
                            let task = u.status.task_id.to_string();
                            let n = num_of(u.status.uuid.as_ref().unwrap());
                            prop_assert_eq!(model.get(&task).and_then(|q| q.front()), Some(&n), "only the head is forwarded");
                            sent.entry(task).or_default().push(n);
                        }
                        Action::Acknowledged { status, .. } => {
                            let task = status.task_id.to_string();
                            let n = num_of(status.uuid.as_ref().unwrap());
                            prop_assert!(sent.get(&task).is_some_and(|s| s.contains(&n)), "acked before sent");
                            acked.entry(task).or_default().push(n);
                        }
                        Action::Persist(_) => {}
                    }
                }
            }
            prop_assert_eq!(m.pending_count(), model.values().map(|q| q.len()).sum::<usize>());
            for (task, list) in &acked {
                let mut sorted = list.clone();
                sorted.sort();
                prop_assert_eq!(&sorted, list, "acks of {} in order", task);
            }
        }
    }
}
