//! The one task that owns the master's state (architecture principle 2).
//!
//! HTTP handlers send jobs (closures over [`Service`]) through a channel and await their
//! answers. After each job the service performs the core's effects in order, registry
//! writes first and durably; after each batch of jobs it runs an allocation pass, paced by [`PassPacer`]. A timer
//! drives the core's timeouts, the periodic allocation and stream heartbeats. A registry
//! write that fails stops the master (like Mesos's registrar), so nothing is acted on that
//! was not stored.

use crate::core::{Core, Effect};
use crate::pacing::PassPacer;
use crate::registry::{Registry, RegistryChange};
use bytes::Bytes;
use meseta_api::internal::ToAgent;
use meseta_api::{recordio, AgentId, FrameworkId};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce(&mut Service) + Send>;

/// A stream of RecordIO records to one client.
pub type RecordSender = mpsc::UnboundedSender<Bytes>;
pub type RecordReceiver = mpsc::UnboundedReceiver<Bytes>;

/// Seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The state owner.
pub struct Service {
    pub core: Core,
    registry: Box<dyn Registry>,
    /// Framework subscription streams by stream id.
    streams: HashMap<String, (FrameworkId, RecordSender)>,
    /// Agent links by link id.
    links: HashMap<String, (AgentId, RecordSender)>,
    operator_subscribers: Vec<RecordSender>,
    failure: Option<anyhow::Error>,
}

impl Service {
    pub fn new(core: Core, registry: Box<dyn Registry>) -> Service {
        Service {
            core,
            registry,
            streams: HashMap::new(),
            links: HashMap::new(),
            operator_subscribers: Vec::new(),
            failure: None,
        }
    }

    /// Registers a framework stream's sender (before the effects that address it run).
    pub fn add_stream(
        &mut self,
        stream_id: String,
        framework_id: FrameworkId,
        sender: RecordSender,
    ) {
        self.streams.insert(stream_id, (framework_id, sender));
    }

    /// Registers an agent link's sender.
    pub fn add_link(&mut self, link_id: String, agent_id: AgentId, sender: RecordSender) {
        self.links.insert(link_id, (agent_id, sender));
    }

    /// Adds an operator event subscriber.
    pub fn add_operator_subscriber(&mut self, sender: RecordSender) {
        self.operator_subscribers.push(sender);
        self.core.operator_observed = true;
    }

    /// Performs the core's pending effects.
    pub fn flush(&mut self) {
        let effects = self.core.drain_effects();
        let mut pending: Vec<RegistryChange> = Vec::new();
        for effect in effects {
            if let Effect::Persist(change) = effect {
                pending.push(change);
                continue;
            }
            if !pending.is_empty() && !self.persist(std::mem::take(&mut pending)) {
                return;
            }
            match effect {
                Effect::Persist(_) => unreachable!("handled above"),
                Effect::ToStream(stream_id, event) => {
                    if let Some((_, tx)) = self.streams.get(&stream_id) {
                        let _ = tx.send(Bytes::from(recordio::encode(&event)));
                    }
                }
                Effect::CloseStream(stream_id) => {
                    self.streams.remove(&stream_id);
                }
                Effect::ToLink(link_id, message) => {
                    if let Some((_, tx)) = self.links.get(&link_id) {
                        let _ = tx.send(Bytes::from(recordio::encode(&message)));
                    }
                }
                Effect::CloseLink(link_id) => {
                    self.links.remove(&link_id);
                }
                Effect::Operator(event) => {
                    let record = Bytes::from(recordio::encode(&event));
                    self.operator_subscribers
                        .retain(|tx| tx.send(record.clone()).is_ok());
                    self.core.operator_observed = !self.operator_subscribers.is_empty();
                }
            }
        }
        if !pending.is_empty() {
            self.persist(pending);
        }
    }

    /// Performs the pending effects now (the registry writes durably), for answers that
    /// must follow a durable write; a failed write is a 503 (the master is stopping).
    pub fn flush_durably(&mut self) -> Result<(), crate::core::ApiError> {
        self.flush();
        match self.failure {
            None => Ok(()),
            Some(_) => Err(crate::core::ApiError {
                status: 503,
                message: "the registry write failed; the master is stopping".into(),
            }),
        }
    }

    fn persist(&mut self, changes: Vec<RegistryChange>) -> bool {
        match self.registry.apply(&changes) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("registry write failed, stopping: {e}");
                self.failure = Some(anyhow::Error::new(e).context("registry write failed"));
                false
            }
        }
    }

    fn heartbeat(&mut self) {
        let framework_beat =
            Bytes::from(recordio::encode(&meseta_api::scheduler::Event::Heartbeat));
        self.streams
            .retain(|_, (_, tx)| tx.send(framework_beat.clone()).is_ok());
        let operator_beat = Bytes::from(recordio::encode(&meseta_api::operator::Event::Heartbeat));
        self.operator_subscribers
            .retain(|tx| tx.send(operator_beat.clone()).is_ok());
        self.core.operator_observed = !self.operator_subscribers.is_empty();
    }

    fn ping_links(&mut self) {
        let ping = Bytes::from(recordio::encode(&ToAgent::Ping));
        for (_, tx) in self.links.values() {
            let _ = tx.send(ping.clone());
        }
    }
}

/// A cloneable handle that runs jobs on the service.
#[derive(Clone)]
pub struct ServiceHandle {
    tx: mpsc::UnboundedSender<Job>,
}

/// The service stopped (master shutting down or failed).
#[derive(Debug, thiserror::Error)]
#[error("the master is shutting down")]
pub struct Stopped;

impl ServiceHandle {
    /// Runs `f` on the service and returns its answer.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Service) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |service| {
            let _ = reply_tx.send(f(service));
        });
        self.tx.send(job).map_err(|_| Stopped)?;
        reply_rx.await.map_err(|_| Stopped)
    }

    /// Runs `f` on the service without waiting.
    pub fn cast(&self, f: impl FnOnce(&mut Service) + Send + 'static) {
        let _ = self.tx.send(Box::new(f));
    }
}

/// Timing of the service loop.
pub struct Timing {
    pub allocation_interval: Duration,
    /// The least time between the end of one allocation pass and a pass after jobs
    /// (see [`PassPacer`]).
    pub allocation_spacing: Duration,
    pub heartbeat_interval: Duration,
    pub ping_interval: Duration,
}

/// Creates the service channel.
pub fn channel() -> (ServiceHandle, mpsc::UnboundedReceiver<Job>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ServiceHandle { tx }, rx)
}

/// Runs the service loop until `stop` resolves or a registry write fails.
pub async fn run(
    mut service: Service,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    timing: Timing,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(stop);
    let tick_every = Duration::from_millis(100);
    let mut ticker = tokio::time::interval(tick_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_allocation = Instant::now();
    let mut pacer = PassPacer::new(timing.allocation_spacing, Instant::now());
    let mut last_heartbeat = Instant::now();
    let mut last_ping = Instant::now();
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break };
                job(&mut service);
                service.flush();
                // Take whatever else is queued before allocating once for the batch.
                let mut batch = 0;
                while batch < 256 {
                    match jobs.try_recv() {
                        Ok(job) => { job(&mut service); service.flush(); batch += 1; }
                        Err(_) => break,
                    }
                }
                pacer.want();
            }
            _ = sleep_until(pacer.wanted_at()) => {}
            _ = ticker.tick() => {
                let t = now();
                service.core.tick(t);
                if last_allocation.elapsed() >= timing.allocation_interval {
                    service.core.allocate(t);
                    last_allocation = Instant::now();
                }
                service.flush();
                if last_heartbeat.elapsed() >= timing.heartbeat_interval {
                    service.heartbeat();
                    last_heartbeat = Instant::now();
                }
                if last_ping.elapsed() >= timing.ping_interval {
                    service.ping_links();
                    last_ping = Instant::now();
                }
            }
            _ = &mut stop => break,
        }
        if pacer.due(Instant::now()) {
            let started = Instant::now();
            service.core.allocate(now());
            service.flush();
            pacer.ran(started, Instant::now());
        }
        if let Some(failure) = service.failure.take() {
            return Err(failure);
        }
    }
    Ok(())
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
