//! DRAIN_AGENT: an agent is deactivated and every task on it killed, with the kill grace
//! period bounded by `max_grace_period`; once its tasks are all terminal and acknowledged
//! it is DRAINED, and with `mark_gone` it is then marked gone. Updates of its tasks carry
//! REASON_AGENT_DRAINING, and TASK_KILLED becomes TASK_GONE_BY_OPERATOR when the agent is
//! to be marked gone, as Mesos reports them. The drain is kept in the registry's agent
//! entry and resumed when the agent reregisters.

use super::*;
use meseta_api::internal::KillTask;
use meseta_api::maintenance::{DrainAgent, DrainConfig, DrainInfo, DrainState};

impl Core {
    /// DRAIN_AGENT. Draining again replaces the configuration.
    pub fn drain_agent(&mut self, now: f64, call: DrainAgent) -> Result<(), ApiError> {
        if let Some(grace) = call.max_grace_period {
            if grace.nanoseconds < 0 {
                return Err(ApiError::bad_request(
                    "'max_grace_period' must not be negative",
                ));
            }
        }
        let agent_id = call.agent_id;
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return Err(ApiError::not_found(format!("Agent '{agent_id}' not found")));
        };
        agent.deactivated = true;
        agent.drain = Some(DrainInfo {
            state: DrainState::Draining,
            config: DrainConfig {
                max_grace_period: call.max_grace_period,
                mark_gone: call.mark_gone,
            },
        });
        self.persist_agent(&agent_id);
        self.rescind_agent_offers(&agent_id);
        self.count("master/slaves_draining");
        self.kill_draining_tasks(&agent_id);
        self.advance_drain(now, &agent_id);
        Ok(())
    }

    /// Sends the kills again after a draining agent reregisters.
    pub(super) fn resume_drain(&mut self, agent_id: &AgentId) {
        let draining = self.agents.get(agent_id).and_then(|a| a.drain);
        if draining.is_some_and(|d| d.state == DrainState::Draining) {
            self.kill_draining_tasks(agent_id);
        }
    }

    /// REACTIVATE_AGENT on a drained agent clears its drain; a draining one is refused.
    pub(super) fn end_drain(&mut self, agent_id: &AgentId) -> Result<(), ApiError> {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return Ok(());
        };
        match agent.drain.map(|d| d.state) {
            Some(DrainState::Draining) => Err(ApiError::bad_request(format!(
                "Agent '{agent_id}' is still draining; it can be reactivated once drained"
            ))),
            Some(DrainState::Drained) => {
                agent.drain = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Draining agents whose tasks are all terminal and acknowledged become DRAINED (and
    /// gone, when asked).
    pub(super) fn advance_drains(&mut self, now: f64) {
        let done: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| a.drain.is_some_and(|d| d.state == DrainState::Draining))
            .filter(|a| a.tasks.is_empty())
            .map(|a| a.id().clone())
            .collect();
        for agent_id in done {
            self.advance_drain(now, &agent_id);
        }
    }

    fn advance_drain(&mut self, now: f64, agent_id: &AgentId) {
        let Some(agent) = self.agents.get_mut(agent_id).map(|a| &mut **a) else {
            return;
        };
        let Some(drain) = agent.drain.as_mut() else {
            return;
        };
        if drain.state != DrainState::Draining || !agent.tasks.is_empty() {
            return;
        }
        drain.state = DrainState::Drained;
        let mark_gone = drain.config.mark_gone;
        self.persist_agent(agent_id);
        self.count("master/slaves_drained");
        if mark_gone {
            let _ = self.mark_agent_gone(now, agent_id);
        }
    }

    /// The drain of an agent that is draining now.
    fn draining(&self, agent_id: &AgentId) -> Option<DrainInfo> {
        let drain = self.agents.get(agent_id)?.drain?;
        (drain.state == DrainState::Draining).then_some(drain)
    }

    /// The state a task on a draining agent is reported in: killed tasks of an agent to be
    /// marked gone are TASK_GONE_BY_OPERATOR.
    pub(super) fn drain_state(&self, agent_id: &AgentId, state: TaskState) -> TaskState {
        match self.draining(agent_id) {
            Some(d) if d.config.mark_gone && state == TaskState::TaskKilled => {
                TaskState::TaskGoneByOperator
            }
            _ => state,
        }
    }

    /// How an update of a task on a draining agent is reported: its state as
    /// [`Core::drain_state`] says, and REASON_AGENT_DRAINING on kills.
    pub(super) fn drain_status(&self, agent_id: &AgentId, status: &mut TaskStatus) {
        if self.draining(agent_id).is_none() {
            return;
        }
        status.state = self.drain_state(agent_id, status.state);
        if matches!(
            status.state,
            TaskState::TaskKilling | TaskState::TaskKilled | TaskState::TaskGoneByOperator
        ) {
            status.reason = Some(Reason::ReasonAgentDraining);
        }
    }

    /// Kills every live task of a draining agent, each with its own kill grace period
    /// bounded by `max_grace_period`.
    fn kill_draining_tasks(&mut self, agent_id: &AgentId) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let max_grace = agent.drain.and_then(|d| d.config.max_grace_period);
        let kills: Vec<KillTask> = agent
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal())
            .map(|((framework_id, task_id), task)| KillTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                kill_policy: bounded_grace(task.kill_policy(), max_grace),
            })
            .collect();
        for kill in kills {
            self.send_to_agent(agent_id, ToAgent::KillTask(kill));
        }
    }
}

/// The kill policy a drain kills a task with: its own grace period (or the executors'
/// default), at most `max_grace`; no override when there is no bound.
fn bounded_grace(own: Option<&KillPolicy>, max_grace: Option<DurationInfo>) -> Option<KillPolicy> {
    let max_grace = max_grace?;
    let own = own
        .and_then(|p| p.grace_period)
        .unwrap_or(KillPolicy::DEFAULT_GRACE_PERIOD);
    let grace = if own.nanoseconds < max_grace.nanoseconds {
        own
    } else {
        max_grace
    };
    Some(KillPolicy {
        grace_period: Some(grace),
    })
}
