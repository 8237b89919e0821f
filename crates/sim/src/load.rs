//! Load-generating frameworks: real schedulers (through `meseta_scheduler`, the same
//! HTTP API any framework uses) that place a fixed number of small tasks as fast as
//! offers allow, and count what the agents report.
//!
//! [`pack`] decides how many tasks fit in one offer (pure); [`run_framework`] is the loop
//! around it: take offers, ACCEPT the tasks that fit, SUPPRESS once every task is placed
//! (declining what is still offered), and count updates. `meseta sim frameworks` and the `placements` benchmark
//! both run it.

use meseta_api::scheduler::Event;
use meseta_api::{
    CommandInfo, Filters, FrameworkInfo, Offer, Resources, TaskId, TaskInfo, TaskState,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// ACCEPT calls one framework keeps in flight at once.
const ACCEPTS_IN_FLIGHT: usize = 64;

/// How long a framework that has placed every task refuses the offers it still gets.
const REFUSE_WHEN_DONE: Duration = Duration::from_secs(3600);

/// What one load framework does.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// The framework's name; task ids are `<name>-<n>`.
    pub name: String,
    /// The framework's role.
    pub role: String,
    /// Each task's resources.
    pub per_task: Resources,
    /// How many tasks to place.
    pub tasks: usize,
    /// The tasks' shell command (hollow agents run none).
    pub command: String,
}

/// Counters shared by every load framework of a process.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub subscribed: AtomicU64,
    pub launched: AtomicU64,
    pub running: AtomicU64,
    pub finished: AtomicU64,
    pub failed: AtomicU64,
}

impl LoadStats {
    /// Tasks that reached TASK_RUNNING.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Tasks that ended in a state other than TASK_FINISHED.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The summary line.
    pub fn line(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "load: {} frameworks subscribed; tasks: {} launched, {} running, {} finished, {} failed/killed/lost",
            get(&self.subscribed),
            get(&self.launched),
            get(&self.running),
            get(&self.finished),
            get(&self.failed),
        )
    }
}

/// As many tasks as fit in `offer` (at most `end - *next`), numbered `<prefix>-<n>` from
/// `*next`, which is advanced past them.
pub fn pack(
    offer: &Offer,
    per_task: &Resources,
    command: &str,
    prefix: &str,
    next: &mut usize,
    end: usize,
) -> Vec<TaskInfo> {
    let mut free = Resources::from_list(offer.resources.clone())
        .unwrap_or_default()
        .allocated_to(None);
    let allocation_role = offer
        .resources
        .first()
        .and_then(|r| r.allocation_info.as_ref())
        .and_then(|a| a.role.clone());
    let resources = per_task.allocated_to(allocation_role.as_deref()).into_vec();
    let mut tasks = Vec::new();
    while *next < end && free.contains(per_task) {
        free.subtract_all(per_task);
        let id = format!("{prefix}-{}", *next);
        *next += 1;
        tasks.push(TaskInfo::command_task(
            id.clone(),
            TaskId::new(id),
            offer.agent_id.clone(),
            resources.clone(),
            CommandInfo::shell(command),
        ));
    }
    tasks
}

/// Subscribes one framework to `master` and places `plan.tasks` tasks, then keeps
/// counting updates until `stop` turns true or the subscription fails.
pub async fn run_framework(
    master: String,
    plan: LoadPlan,
    stats: Arc<LoadStats>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let info: FrameworkInfo = serde_json::from_value(serde_json::json!({
        "user": user,
        "name": plan.name,
        "roles": [plan.role],
        "capabilities": [{"type": "MULTI_ROLE"}],
        "failover_timeout": 0.0,
    }))?;
    let (scheduler, mut events) =
        meseta_scheduler::subscribe(meseta_scheduler::Config::new(master, info))?;
    let mut next = 0usize;
    let mut suppressed = false;
    let mut accepts = tokio::task::JoinSet::new();
    let result = loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => break Ok(()),
            event = events.next() => event,
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(e)) => break Err(anyhow::anyhow!("{}: {e}", plan.name)),
            None => break Ok(()),
        };
        match event {
            Event::Subscribed(_) => {
                stats.subscribed.fetch_add(1, Ordering::Relaxed);
            }
            Event::Offers(offers) => {
                let mut unused = Vec::new();
                for offer in offers.offers {
                    let tasks = pack(
                        &offer,
                        &plan.per_task,
                        &plan.command,
                        &plan.name,
                        &mut next,
                        plan.tasks,
                    );
                    if tasks.is_empty() {
                        unused.push(offer.id);
                        continue;
                    }
                    while accepts.len() >= ACCEPTS_IN_FLIGHT {
                        if let Some(Ok(Err(e))) = accepts.join_next().await {
                            tracing::warn!("{}: ACCEPT failed: {e}", plan.name);
                        }
                    }
                    stats
                        .launched
                        .fetch_add(tasks.len() as u64, Ordering::Relaxed);
                    let scheduler = scheduler.clone();
                    accepts.spawn(async move {
                        scheduler
                            .launch(
                                vec![offer.id],
                                tasks,
                                Some(Filters {
                                    refuse_seconds: 0.0,
                                }),
                            )
                            .await
                    });
                }
                let done = next >= plan.tasks;
                if done && !suppressed {
                    // Every task is placed: no more offers, as a well-behaved framework.
                    suppressed = true;
                    if let Err(e) = scheduler.suppress(Vec::new()).await {
                        tracing::warn!("{}: SUPPRESS failed: {e}", plan.name);
                    }
                }
                if !unused.is_empty() {
                    let refuse = if done {
                        REFUSE_WHEN_DONE
                    } else {
                        Duration::ZERO
                    };
                    let filters = Filters {
                        refuse_seconds: refuse.as_secs_f64(),
                    };
                    if let Err(e) = scheduler.decline(unused, Some(filters)).await {
                        tracing::warn!("{}: DECLINE failed: {e}", plan.name);
                    }
                }
            }
            Event::Update(update) => match update.status.state {
                TaskState::TaskRunning => {
                    stats.running.fetch_add(1, Ordering::Relaxed);
                }
                TaskState::TaskFinished => {
                    stats.finished.fetch_add(1, Ordering::Relaxed);
                }
                s if s.is_terminal() => {
                    let status = &update.status;
                    tracing::warn!(
                        "{}: task {} ended {s:?} ({:?}): {}",
                        plan.name,
                        status.task_id,
                        status.reason,
                        status.message.as_deref().unwrap_or("no message")
                    );
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            },
            Event::Error(e) => break Err(anyhow::anyhow!("{}: ERROR {}", plan.name, e.message)),
            _ => {}
        }
    };
    while accepts.join_next().await.is_some() {}
    let _ = scheduler.teardown().await;
    scheduler.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(resources: &str, role: Option<&str>) -> Offer {
        serde_json::from_value(serde_json::json!({
            "id": {"value": "o1"},
            "framework_id": {"value": "f1"},
            "agent_id": {"value": "a1"},
            "hostname": "h",
            "resources": Resources::parse(resources).unwrap().allocated_to(role).into_vec(),
        }))
        .unwrap()
    }

    #[test]
    fn packs_what_fits_and_stops_at_the_end() {
        let per_task = Resources::parse("cpus:0.5;mem:100").unwrap();
        let mut next = 0;
        let tasks = pack(
            &offer("cpus:2;mem:250", None),
            &per_task,
            "true",
            "t",
            &mut next,
            10,
        );
        // Memory allows two, cpus four.
        assert_eq!(tasks.len(), 2);
        assert_eq!(next, 2);
        assert_eq!(tasks[1].task_id, TaskId::new("t-1"));
        let tasks = pack(
            &offer("cpus:8;mem:8000", None),
            &per_task,
            "true",
            "t",
            &mut next,
            5,
        );
        assert_eq!(tasks.len(), 3);
        assert_eq!(next, 5);
        assert!(pack(
            &offer("cpus:8;mem:8000", None),
            &per_task,
            "true",
            "t",
            &mut next,
            5
        )
        .is_empty());
    }

    #[test]
    fn tasks_carry_the_offer_allocation_role() {
        let per_task = Resources::parse("cpus:1").unwrap();
        let mut next = 0;
        let tasks = pack(
            &offer("cpus:1", Some("web")),
            &per_task,
            "true",
            "t",
            &mut next,
            1,
        );
        let role = tasks[0].resources[0]
            .allocation_info
            .as_ref()
            .and_then(|a| a.role.clone());
        assert_eq!(role.as_deref(), Some("web"));
    }
}
