//! Task lifecycle after launch: status updates from agents, acknowledgements, KILL,
//! SHUTDOWN, framework messages both ways, and executors that exit.

use super::frameworks::push_bounded;
use super::*;
use meseta_api::internal::{
    self, ExitedExecutor, FrameworkMessage, KillTask, ShutdownExecutor, StatusUpdate,
};
use meseta_api::scheduler::{self, EventMessage, Failure};

impl Core {
    /// A status update relayed by an agent.
    pub fn status_update(&mut self, agent_id: &AgentId, update: StatusUpdate) {
        let StatusUpdate {
            framework_id,
            mut status,
            latest_state,
        } = update;
        status.agent_id.get_or_insert_with(|| agent_id.clone());
        self.drain_status(agent_id, &mut status);
        let latest_state = latest_state.map(|s| self.drain_state(agent_id, s));
        self.count("master/status_updates");
        let key = (framework_id.clone(), status.task_id.clone());
        let Some(agent) = self.agents.get_mut(agent_id).map(|a| &mut **a) else {
            return;
        };
        let mut became_terminal = None;
        let mut current = None;
        let mut state_changed = false;
        if let Some(task) = agent.tasks.get_mut(&key) {
            let was_terminal = task.state.is_terminal();
            let previous = task.state;
            task.state = latest_state.unwrap_or(status.state);
            state_changed = previous != task.state;
            task.forwarded(status.state, status.uuid.as_ref());
            task.push_status(&status);
            if !was_terminal && task.state.is_terminal() {
                let resources =
                    Resources::from_list(task.resources.as_slice().to_vec()).unwrap_or_default();
                agent
                    .holdings
                    .release(&framework_id, &resources.allocated_to(None));
                became_terminal = Some(task.state);
            }
            current = Some(task.state);
        }
        if let Some(state) = became_terminal {
            self.count(terminal_metric(state));
        }
        if let Some(state) = current {
            // Operators hear of state changes, not of retried or health-only updates.
            if state_changed && self.operator_observed {
                self.emit(Effect::Operator(meseta_api::operator::Event::TaskUpdated(
                    serde_json::json!({
                        "framework_id": framework_id,
                        "status": status,
                        "state": state,
                    }),
                )));
            }
            // A terminal task without a uuid (nothing to acknowledge) is done now.
            if state.is_terminal() && status.uuid.is_none() {
                self.complete_task(agent_id, &framework_id, &status.task_id);
            }
        }
        self.send_update(&framework_id, status);
    }

    /// Moves a task whose terminal update was acknowledged to the completed list.
    pub(super) fn complete_task(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        let Some(task) = agent.tasks.remove(&(framework_id.clone(), task_id.clone())) else {
            return;
        };
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.tasks.remove(task_id);
            push_bounded(&mut framework.completed_tasks, task, MAX_COMPLETED_TASKS);
        }
    }

    /// ACKNOWLEDGE from a framework: relay to the agent; a task whose terminal update is
    /// acknowledged is complete.
    pub fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        ack: scheduler::Acknowledge,
    ) -> Result<(), ApiError> {
        let Some(agent) = self.agents.get(&ack.agent_id) else {
            return Err(ApiError::bad_request(format!(
                "Unknown agent {}",
                ack.agent_id
            )));
        };
        let key = (framework_id.clone(), ack.task_id.clone());
        let completes = agent
            .tasks
            .get(&key)
            .is_some_and(|t| t.completed_by(&ack.uuid));
        self.send_to_agent(
            &ack.agent_id,
            ToAgent::Acknowledge(internal::Acknowledge {
                framework_id: framework_id.clone(),
                task_id: ack.task_id.clone(),
                uuid: ack.uuid,
            }),
        );
        if completes {
            self.complete_task(&ack.agent_id, framework_id, &ack.task_id);
        }
        Ok(())
    }

    /// KILL: relayed to the agent running the task; an unknown task is answered like an
    /// explicit reconciliation.
    pub fn kill(&mut self, now: f64, framework_id: &FrameworkId, kill: scheduler::Kill) {
        let agent_id = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.tasks.get(&kill.task_id))
            .cloned();
        match agent_id {
            Some(agent_id) => {
                let delivered = self.send_to_agent(
                    &agent_id,
                    ToAgent::KillTask(KillTask {
                        framework_id: framework_id.clone(),
                        task_id: kill.task_id.clone(),
                        kill_policy: kill.kill_policy,
                    }),
                );
                if !delivered {
                    tracing::info!(task = %kill.task_id, agent = %agent_id, "kill postponed: agent is not linked");
                }
            }
            None => {
                let task = meseta_api::scheduler::ReconcileTask {
                    task_id: kill.task_id,
                    agent_id: kill.agent_id,
                };
                self.reconcile(now, framework_id, vec![task]);
            }
        }
    }

    /// SHUTDOWN of an executor; Mesos accepts one for an unknown agent and drops it.
    pub fn shutdown_executor(&mut self, framework_id: &FrameworkId, shutdown: scheduler::Shutdown) {
        if !self.agents.contains_key(&shutdown.agent_id) {
            tracing::warn!(agent = %shutdown.agent_id, "SHUTDOWN for an unknown agent dropped");
            return;
        }
        self.send_to_agent(
            &shutdown.agent_id,
            ToAgent::ShutdownExecutor(ShutdownExecutor {
                framework_id: framework_id.clone(),
                executor_id: shutdown.executor_id,
            }),
        );
    }

    /// MESSAGE from a framework to one of its executors; Mesos accepts one for an unknown
    /// agent and drops it (counted as invalid).
    pub fn framework_message(&mut self, framework_id: &FrameworkId, message: scheduler::Message) {
        if !self.agents.contains_key(&message.agent_id) {
            self.count("master/invalid_framework_to_executor_messages");
            return;
        }
        self.count("master/messages_framework_to_executor");
        self.send_to_agent(
            &message.agent_id,
            ToAgent::FrameworkMessage(FrameworkMessage {
                framework_id: framework_id.clone(),
                executor_id: message.executor_id,
                data: message.data,
            }),
        );
    }

    /// A message from an executor to its framework.
    pub fn executor_message(&mut self, agent_id: &AgentId, message: FrameworkMessage) {
        self.count("master/messages_executor_to_framework");
        self.send_to_framework(
            &message.framework_id,
            Event::Message(EventMessage {
                agent_id: agent_id.clone(),
                executor_id: message.executor_id,
                data: message.data,
            }),
        );
    }

    /// An executor exited: its resources are free; the framework gets FAILURE.
    pub fn executor_exited(&mut self, agent_id: &AgentId, exited: ExitedExecutor) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        let key = (exited.framework_id.clone(), exited.executor_id.clone());
        if let Some(entry) = agent.executors.remove(&key) {
            let resources = Resources::from_list(entry.info.resources).unwrap_or_default();
            agent
                .holdings
                .release(&exited.framework_id, &resources.allocated_to(None));
        }
        self.send_to_framework(
            &exited.framework_id,
            Event::Failure(Failure {
                agent_id: Some(agent_id.clone()),
                executor_id: Some(exited.executor_id),
                status: Some(exited.status.unwrap_or(-1)),
            }),
        );
    }
}

fn terminal_metric(state: TaskState) -> &'static str {
    match state {
        TaskState::TaskFinished => "master/tasks_finished",
        TaskState::TaskFailed => "master/tasks_failed",
        TaskState::TaskKilled => "master/tasks_killed",
        TaskState::TaskError => "master/tasks_error",
        TaskState::TaskDropped => "master/tasks_dropped",
        TaskState::TaskGone => "master/tasks_gone",
        TaskState::TaskGoneByOperator => "master/tasks_gone_by_operator",
        _ => "master/tasks_lost",
    }
}
