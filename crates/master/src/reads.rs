//! Reads of the whole-state views, off the service loop. The service thread only takes a
//! [`Snapshot`] of the core (copies of map keys and pointers); the view is built and
//! serialized on a blocking worker. Concurrent readers of one view share the work, as
//! Mesos 1.7 batches its state requests: requests that arrive while the view is being
//! built wait for the next build, which starts from one snapshot taken after all of them
//! arrived (so no answer is older than its request) and answers all of them.

use crate::core::Snapshot;
use crate::service::ServiceHandle;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Why a read has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("the master is shutting down")]
    Stopped,
    #[error("building the view failed: {0}")]
    Failed(String),
}

/// Builds a view's bytes from a snapshot.
type Render = Arc<dyn Fn(&Snapshot) -> Vec<u8> + Send + Sync>;

type Waiter = oneshot::Sender<Result<Bytes, ReadError>>;

/// The views being built, by key, with the requests waiting for their next build.
#[derive(Clone)]
pub struct Reads {
    service: ServiceHandle,
    building: Arc<Mutex<HashMap<String, Vec<Waiter>>>>,
}

impl Reads {
    pub fn new(service: ServiceHandle) -> Reads {
        Reads {
            service,
            building: Arc::default(),
        }
    }

    /// The view `key` as `render` writes it, from a snapshot taken after this call.
    /// Requests with the same key must want the same bytes: they may share one answer.
    pub async fn read(
        &self,
        key: &str,
        render: impl Fn(&Snapshot) -> Vec<u8> + Send + Sync + 'static,
    ) -> Result<Bytes, ReadError> {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut building = self.building.lock().expect("reads lock");
            match building.get_mut(key) {
                Some(waiting) => {
                    waiting.push(tx);
                    false
                }
                None => {
                    building.insert(key.to_string(), vec![tx]);
                    true
                }
            }
        };
        if first {
            tokio::spawn(self.clone().build(key.to_string(), Arc::new(render)));
        }
        rx.await.map_err(|_| ReadError::Stopped)?
    }

    /// Builds `key` for the waiting requests, again while more arrived meanwhile.
    async fn build(self, key: String, render: Render) {
        loop {
            let waiting = {
                let mut building = self.building.lock().expect("reads lock");
                let waiting = building.get_mut(&key).map(std::mem::take);
                match waiting {
                    Some(waiting) if !waiting.is_empty() => waiting,
                    _ => {
                        building.remove(&key);
                        return;
                    }
                }
            };
            let answer = self.build_once(&render).await;
            if let Err(ReadError::Failed(e)) = &answer {
                tracing::error!("building the {key} view failed: {e}");
            }
            for waiter in waiting {
                let _ = waiter.send(answer.clone());
            }
        }
    }

    async fn build_once(&self, render: &Render) -> Result<Bytes, ReadError> {
        let snapshot = self
            .service
            .call(|svc| svc.core.snapshot())
            .await
            .map_err(|_| ReadError::Stopped)?;
        let render = render.clone();
        tokio::task::spawn_blocking(move || Bytes::from(render(&snapshot)))
            .await
            .map_err(|e| ReadError::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{core, register};
    use crate::registry::RedbRegistry;
    use crate::service::{channel, run, Service, Timing};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn start_service(dir: &std::path::Path) -> ServiceHandle {
        let registry = RedbRegistry::open(&dir.join("registry.redb")).unwrap();
        let service = Service::new(core(), Box::new(registry));
        let (handle, jobs) = channel();
        let hour = Duration::from_secs(3600);
        let timing = Timing {
            allocation_interval: hour,
            heartbeat_interval: hour,
            ping_interval: hour,
        };
        tokio::spawn(run(service, jobs, timing, std::future::pending()));
        handle
    }

    #[tokio::test]
    async fn readers_that_arrive_during_a_build_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let service = start_service(dir.path());
        let reads = Reads::new(service.clone());
        let builds = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        let render = {
            let builds = builds.clone();
            move |snapshot: &Snapshot| {
                entered_tx.send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
                builds.fetch_add(1, Ordering::SeqCst);
                snapshot.agents.len().to_string().into_bytes()
            }
        };
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.read("agents", render).await }
        });
        // The first build renders its snapshot (no agent yet) until released.
        entered.recv().await.unwrap();
        let waiting = |reads: &Reads| reads.building.lock().unwrap().get("agents").map(Vec::len);
        service
            .call(|svc| register(&mut svc.core, "L1", None, vec![]))
            .await
            .unwrap();
        let later: Vec<_> = (0..3)
            .map(|_| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.read("agents", |_| unreachable!()).await })
            })
            .collect();
        while waiting(&reads) != Some(3) {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Bytes::from("0"));
        release.send(()).unwrap();
        for answer in later {
            assert_eq!(
                answer.await.unwrap().unwrap(),
                Bytes::from("1"),
                "sees the agent"
            );
        }
        assert_eq!(
            builds.load(Ordering::SeqCst),
            2,
            "one build for the three later readers"
        );
        assert_eq!(waiting(&reads), None, "nothing left building");
    }

    #[tokio::test]
    async fn a_failed_build_answers_its_readers_and_the_next_read_builds_again() {
        let dir = tempfile::tempdir().unwrap();
        let reads = Reads::new(start_service(dir.path()));
        let failed = reads.read("v", |_| panic!("broken view")).await;
        assert!(matches!(failed, Err(ReadError::Failed(_))), "{failed:?}");
        let next = reads.read("v", |_| b"ok".to_vec()).await.unwrap();
        assert_eq!(next, Bytes::from("ok"));
    }

    #[tokio::test]
    async fn reads_of_a_stopped_master_say_so() {
        let (service, jobs) = channel();
        drop(jobs);
        let answer = Reads::new(service).read("v", |_| Vec::new()).await;
        assert!(matches!(answer, Err(ReadError::Stopped)), "{answer:?}");
    }
}
