//! Reads of the whole-state views, off the service loop. The service thread only takes a
//! [`Snapshot`] of the core (copies of map keys and pointers); the view is built and
//! serialized on a blocking worker, and its text streams to the readers in chunks as it is
//! written (the transfer runs beside the writing, and a view of hundreds of megabytes is
//! never held whole). Concurrent readers of one view share the work, as Mesos 1.7 batches
//! its state requests: requests that arrive while the view is being built wait for the next
//! build, which starts from one snapshot taken after all of them arrived (so no answer is
//! older than its request) and answers all of them.

use crate::core::Snapshot;
use crate::service::ServiceHandle;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// How much of a view's text is sent at a time.
const VIEW_CHUNK_BYTES: usize = 256 * 1024;

/// Why a read has no answer, or its answer stopped short.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("the master is shutting down")]
    Stopped,
    #[error("building the view failed: {0}")]
    Failed(String),
}

/// Hands a view's text over, a chunk at a time.
pub type Emit<'a> = &'a mut dyn FnMut(Vec<u8>);

/// Writes a view of a snapshot through an [`Emit`].
type Render = Arc<dyn Fn(&Snapshot, Emit) + Send + Sync>;

/// Where a build sends a reader its view's chunks (or the error that ended it).
type Waiter = mpsc::UnboundedSender<Result<Bytes, ReadError>>;

/// Writes `view` as JSON (ASCII-only) in chunks: what a render does with its view.
pub fn write_view<T: Serialize + ?Sized>(view: &T, emit: Emit) {
    meseta_api::json::write_chunked(view, VIEW_CHUNK_BYTES, emit)
        .expect("serializing our views cannot fail");
}

/// A view's text as it arrives: the first chunk, then the rest until the build ends. An
/// error in the stream means the build failed after it had started sending.
pub struct ViewText {
    first: Bytes,
    rest: mpsc::UnboundedReceiver<Result<Bytes, ReadError>>,
}

impl ViewText {
    /// The chunks as a stream, ending with the build; it takes turns (see [`TakingTurns`]).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, ReadError>> {
        let first = futures::stream::once(std::future::ready(Ok(self.first)));
        TakingTurns::new(futures::StreamExt::chain(
            first,
            tokio_stream::wrappers::UnboundedReceiverStream::new(self.rest),
        ))
    }

    /// The whole text.
    pub async fn collect(self) -> Result<Bytes, ReadError> {
        let mut whole = Vec::new();
        let mut chunks = std::pin::pin!(self.into_stream());
        while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
            whole.extend_from_slice(&chunk?);
        }
        Ok(whole.into())
    }
}

/// A stream that hands its task back to the runtime before each item. A connection
/// sending a view otherwise wrote chunk after chunk for as long as its socket took them;
/// with 20 readers of GET_STATE a small request on the same runtime waited for a round of
/// such writes (20 ms and more). Taking turns, a connection writes one chunk per poll.
struct TakingTurns<S> {
    inner: S,
    /// Whether the turn before the next item was taken.
    turn_taken: bool,
}

impl<S> TakingTurns<S> {
    fn new(inner: S) -> Self {
        TakingTurns {
            inner,
            turn_taken: false,
        }
    }
}

impl<S: futures::Stream + Unpin> futures::Stream for TakingTurns<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        if !self.turn_taken {
            self.turn_taken = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let next = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if next.is_ready() {
            self.turn_taken = false;
        }
        next
    }
}

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

    /// The view `key` as `render` writes it, from a snapshot taken after this call; it
    /// answers once the first chunk is written (or the build failed before any).
    /// Requests with the same key must want the same bytes: they may share one answer.
    pub async fn read(
        &self,
        key: &str,
        render: impl Fn(&Snapshot, Emit) + Send + Sync + 'static,
    ) -> Result<ViewText, ReadError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
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
        match rx.recv().await {
            Some(Ok(first)) => Ok(ViewText { first, rest: rx }),
            Some(Err(e)) => Err(e),
            // Every view writes something; a build that ended silently was cut short.
            None => Err(ReadError::Stopped),
        }
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
            let waiting = Arc::new(waiting);
            if let Err(e) = self.build_once(&render, waiting.clone()).await {
                if let ReadError::Failed(e) = &e {
                    tracing::error!("building the {key} view failed: {e}");
                }
                for waiter in waiting.iter() {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }

    /// Builds the view once, sending its chunks to `waiting` as they are written.
    async fn build_once(
        &self,
        render: &Render,
        waiting: Arc<Vec<Waiter>>,
    ) -> Result<(), ReadError> {
        let asked = std::time::Instant::now();
        let snapshot = self
            .service
            .call(|svc| svc.core.snapshot())
            .await
            .map_err(|_| ReadError::Stopped)?;
        let snapshot_ms = asked.elapsed().as_secs_f64() * 1e3;
        let render = render.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut bytes = 0;
            render(&snapshot, &mut |chunk| {
                bytes += chunk.len();
                let chunk = Bytes::from(chunk);
                for waiter in waiting.iter() {
                    let _ = waiter.send(Ok(chunk.clone()));
                }
            });
            let render_ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(bytes, snapshot_ms, render_ms, "view built");
        })
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

    #[test]
    fn a_view_stream_takes_a_turn_before_each_chunk() {
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut stream = TakingTurns::new(futures::stream::iter([1, 2]));
        let mut poll = || futures::Stream::poll_next(std::pin::Pin::new(&mut stream), &mut cx);
        let polls: Vec<_> = (0..6).map(|_| poll()).collect();
        use std::task::Poll::{Pending, Ready};
        assert_eq!(
            polls,
            [
                Pending,
                Ready(Some(1)),
                Pending,
                Ready(Some(2)),
                Pending,
                Ready(None)
            ]
        );
        assert_eq!(woken.0.load(Ordering::Relaxed), 3, "woken at every turn");
    }

    fn start_service(dir: &std::path::Path) -> ServiceHandle {
        let registry = RedbRegistry::open(&dir.join("registry.redb")).unwrap();
        let service = Service::new(core(), Box::new(registry));
        let (handle, jobs) = channel();
        let hour = Duration::from_secs(3600);
        let timing = Timing {
            allocation_interval: hour,
            allocation_spacing: Duration::ZERO,
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
            move |snapshot: &Snapshot, emit: Emit| {
                entered_tx.send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
                builds.fetch_add(1, Ordering::SeqCst);
                emit(snapshot.agents.len().to_string().into_bytes())
            }
        };
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.read("agents", render).await?.collect().await }
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
                tokio::spawn(async move {
                    let text = reads.read("agents", |_, _| unreachable!()).await?;
                    text.collect().await
                })
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
        let failed = reads.read("v", |_, _| panic!("broken view")).await;
        assert!(
            matches!(failed, Err(ReadError::Failed(_))),
            "a 500, not a body"
        );
        let next = reads.read("v", |_, emit| emit(b"ok".to_vec())).await;
        assert_eq!(next.unwrap().collect().await.unwrap(), Bytes::from("ok"));
    }

    #[tokio::test]
    async fn every_reader_gets_every_chunk_and_a_build_failing_midway_ends_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let reads = Reads::new(start_service(dir.path()));
        let view: Vec<u32> = (0..100_000).collect();
        let expected = Bytes::from(meseta_api::json::to_ascii_vec(&view));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (reads, view) = (reads.clone(), view.clone());
                tokio::spawn(async move {
                    let text = reads.read("big", move |_, emit| write_view(&view, emit));
                    text.await?.collect().await
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap().unwrap(), expected);
        }
        let text = reads
            .read("cut", |_, emit| {
                emit(b"[1,".to_vec());
                panic!("broken midway")
            })
            .await
            .expect("the first chunk was sent");
        let chunks: Vec<_> = futures::StreamExt::collect(text.into_stream()).await;
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert_eq!(chunks[0].as_ref().unwrap(), &Bytes::from("[1,"));
        assert!(matches!(chunks[1], Err(ReadError::Failed(_))), "{chunks:?}");
    }

    #[tokio::test]
    async fn reads_of_a_stopped_master_say_so() {
        let (service, jobs) = channel();
        drop(jobs);
        let answer = Reads::new(service).read("v", |_, _| {}).await;
        assert!(
            matches!(answer, Err(ReadError::Stopped)),
            "the master stopped"
        );
    }
}
