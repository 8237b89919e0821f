//! The outbox: a writer thread that makes checkpoint writes durable and only then lets
//! the master messages that followed them go out. Batches that queue up while a commit
//! runs are merged into the next one, so that many updates share one fsync.

use crate::store::{Store, StoreOp};
use meseta_api::internal::ToMaster;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::mpsc::UnboundedSender;

/// Writes and the messages that must wait for them.
#[derive(Debug, Default)]
pub struct Batch {
    pub ops: Vec<StoreOp>,
    pub messages: Vec<ToMaster>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.messages.is_empty()
    }
}

/// The actor's end of the writer thread.
pub struct Outbox {
    tx: mpsc::Sender<Batch>,
}

impl Outbox {
    /// Starts the writer thread. It ends (after writing everything queued) once the
    /// returned `Outbox` is dropped.
    pub fn spawn(store: Store, link: UnboundedSender<ToMaster>) -> (Outbox, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Batch>();
        let thread = std::thread::Builder::new()
            .name("agent-outbox".to_string())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = first;
                    while let Ok(more) = rx.try_recv() {
                        batch.ops.extend(more.ops);
                        batch.messages.extend(more.messages);
                    }
                    if let Err(e) = store.apply(&batch.ops) {
                        tracing::error!("{e}");
                    }
                    for message in batch.messages {
                        let _ = link.send(message);
                    }
                }
            })
            .expect("spawning the outbox thread");
        (Outbox { tx }, thread)
    }

    pub fn send(&self, batch: Batch) {
        if self.tx.send(batch).is_err() {
            tracing::error!("the outbox thread is gone; checkpoints and messages are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::internal::ExitedExecutor;
    use meseta_api::{AgentId, ExecutorId, FrameworkId};

    #[test]
    fn messages_go_out_after_their_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let store = Store::open(&path).unwrap();
        let (link_tx, mut link_rx) = tokio::sync::mpsc::unbounded_channel();
        let (outbox, thread) = Outbox::spawn(store, link_tx);
        for i in 0..3 {
            outbox.send(Batch {
                ops: vec![StoreOp::AgentId(AgentId::new(format!("A-S{i}")))],
                messages: vec![ToMaster::ExitedExecutor(ExitedExecutor {
                    framework_id: FrameworkId::new("f"),
                    executor_id: ExecutorId::new(format!("e{i}")),
                    status: None,
                    resources: vec![],
                })],
            });
        }
        drop(outbox);
        thread.join().unwrap();
        let mut seen = Vec::new();
        while let Ok(ToMaster::ExitedExecutor(m)) = link_rx.try_recv() {
            seen.push(m.executor_id.to_string());
        }
        assert_eq!(seen, ["e0", "e1", "e2"]);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load().unwrap().agent_id, Some(AgentId::new("A-S2")));
    }
}
