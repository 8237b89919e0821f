//! RECONCILE: implicit (every known task) and explicit (per task, with Mesos's answers
//! for tasks the master does not know).

use super::*;
use meseta_api::scheduler::ReconcileTask;

impl Core {
    /// Answers a reconciliation request with UPDATE events (no uuid, REASON_RECONCILIATION).
    pub fn reconcile(&mut self, now: f64, framework_id: &FrameworkId, tasks: Vec<ReconcileTask>) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let mut answers = Vec::new();
        if tasks.is_empty() {
            for (task_id, agent_id) in framework.tasks.iter() {
                if let Some(task) = self
                    .agents
                    .get(agent_id)
                    .and_then(|a| a.tasks.get(&(framework_id.clone(), task_id.clone())))
                {
                    answers.push(self.known_task_status(task, now));
                }
            }
        } else {
            for request in tasks {
                if let Some(answer) = self.explicit_answer(framework, &request, now) {
                    answers.push(answer);
                }
            }
        }
        for status in answers {
            self.send_update(framework_id, status);
        }
    }

    fn known_task_status(&self, task: &TaskRecord, now: f64) -> TaskStatus {
        let mut status = task
            .status_of_state()
            .unwrap_or_else(|| TaskStatus::new(task.task_id.clone(), task.state));
        status.state = task.state;
        status.uuid = None;
        status.source = Some(StatusSource::SourceMaster);
        status.reason = Some(Reason::ReasonReconciliation);
        status.message = Some("Reconciliation: Latest task state".into());
        status.agent_id = Some(task.agent_id.clone());
        status.timestamp = Some(now);
        status
    }

    fn explicit_answer(
        &self,
        framework: &Framework,
        request: &ReconcileTask,
        now: f64,
    ) -> Option<TaskStatus> {
        let framework_id = framework.id();
        if let Some(agent_id) = framework.tasks.get(&request.task_id) {
            let task = self
                .agents
                .get(agent_id)?
                .tasks
                .get(&(framework_id.clone(), request.task_id.clone()))?;
            return Some(self.known_task_status(task, now));
        }
        let answer = |state: TaskState, message: &str| {
            Some(master_status(
                &request.task_id,
                state,
                Reason::ReasonReconciliation,
                message,
                request.agent_id.as_ref(),
                now,
            ))
        };
        match &request.agent_id {
            None => answer(TaskState::TaskUnknown, "Reconciliation: Task is unknown"),
            Some(agent_id) if self.gone_agents.contains(agent_id) => answer(
                TaskState::TaskGoneByOperator,
                "Reconciliation: Task is gone",
            ),
            Some(agent_id) => match self.agents.get(agent_id).map(|a| a.link) {
                Some(AgentLink::Recovering(_)) => None,
                Some(AgentLink::Unreachable(_)) => answer(
                    TaskState::TaskUnreachable,
                    "Reconciliation: Task is unreachable",
                ),
                Some(AgentLink::Connected | AgentLink::Disconnected(_)) => answer(
                    TaskState::TaskGone,
                    "Reconciliation: Task is unknown to the agent",
                ),
                None => answer(TaskState::TaskUnknown, "Reconciliation: Task is unknown"),
            },
        }
    }
}
