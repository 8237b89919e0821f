//! Agent lifecycle: registration and reregistration (with the tasks, executors and
//! frameworks the agent reports), link loss, unreachability, and MARK_AGENT_GONE.

use super::*;
use crate::registry::AdmittedAgent;
use meseta_api::internal::{
    ReconcileTasks, RegisterAgent, Registered, ShutdownAgent, LINK_VERSION,
};
use meseta_api::scheduler::Failure;

impl Core {
    /// An agent opened a link (`link_id`). Returns its agent id.
    pub fn register_agent(
        &mut self,
        now: f64,
        link_id: String,
        register: RegisterAgent,
    ) -> Result<AgentId, ApiError> {
        if register.version != LINK_VERSION {
            return Err(ApiError::conflict(format!(
                "Agent speaks link version {} but this master speaks {LINK_VERSION}",
                register.version
            )));
        }
        let mut info = register.agent_info;
        let reregistering = info.id.is_some();
        let total = Resources::from_list(info.resources.clone())
            .map_err(|e| ApiError::bad_request(format!("Invalid agent resources: {e}")))?;
        info.resources = total.clone().into_vec();
        if self.machine_is_down(&info, &register.endpoint) {
            return Err(ApiError::forbidden(format!(
                "Agent on {} is refused: its machine is down for maintenance",
                info.hostname
            )));
        }
        let agent_id = match info.id.clone() {
            Some(id) if self.gone_agents.contains(&id) => {
                return Err(ApiError::forbidden(format!(
                    "Agent {id} has been marked gone"
                )));
            }
            Some(id) => id,
            None => self.new_agent_id(),
        };
        info.id = Some(agent_id.clone());
        let deactivated = self.agents.get(&agent_id).is_some_and(|a| a.deactivated);
        let drain = self.agents.get(&agent_id).and_then(|a| a.drain);
        // The registry's checkpointed resources win; the agent's count only for an agent
        // the master does not know.
        let agent_checkpointed = Resources::from_list(register.checkpointed_resources.clone())
            .map_err(|e| ApiError::bad_request(format!("Invalid checkpointed resources: {e}")))?;
        let known = self.agents.get(&agent_id).map(|a| a.total().checkpointed());
        let checkpointed = known.clone().unwrap_or_else(|| agent_checkpointed.clone());
        let total = super::reservations::agent_total(&agent_id, &info, &checkpointed);
        self.emit(Effect::Persist(RegistryChange::PutAgent(
            agent_id.clone(),
            AdmittedAgent {
                info: info.clone(),
                endpoint: register.endpoint.clone(),
                deactivated,
                drain,
            },
        )));

        let previous = self.agents.remove(&agent_id);
        if let Some(old) = previous.as_ref().and_then(|a| a.link_id.clone()) {
            self.links.remove(&old);
            self.emit(Effect::CloseLink(old));
        }
        let was_unreachable = matches!(
            previous.as_ref().map(|a| a.link),
            Some(AgentLink::Unreachable(_))
        );
        // As in Mesos, operator subscribers hear AGENT_ADDED when an agent joins the
        // registered ones: a new agent, one back from unreachable (AGENT_REMOVED was
        // sent), or one recovered from the registry. A registered agent that reregisters,
        // connected or disconnected, was announced already.
        let announced = matches!(
            previous.as_ref().map(|a| a.link),
            Some(AgentLink::Connected | AgentLink::Disconnected(_))
        );
        let reregistered = previous.is_some() || reregistering;
        let mut agent = Agent {
            info: info.clone(),
            endpoint: register.endpoint,
            link: AgentLink::Connected,
            link_id: Some(link_id.clone()),
            holdings: Holdings::new(total),
            tasks: Shared::default(),
            executors: BTreeMap::new(),
            registered_time: previous.as_ref().map_or(now, |a| a.registered_time),
            reregistered_time: reregistered.then_some(now),
            capabilities: register.capabilities,
            deactivated,
            drain,
        };
        // Offers on the old incarnation are void.
        self.rescind_agent_offers(&agent_id);

        for framework_info in register.frameworks {
            let Some(id) = framework_info.id.clone() else {
                continue;
            };
            if !self.frameworks.contains_key(&id) && !self.removed_frameworks.contains(&id) {
                self.frameworks
                    .insert(id, Framework::recovered(framework_info).into());
            }
        }
        for executor in register.executors {
            let Some(framework_id) = executor.framework_id.clone() else {
                continue;
            };
            if self.removed_frameworks.contains(&framework_id) {
                continue;
            }
            let resources = Resources::from_list(executor.resources.clone()).unwrap_or_default();
            agent
                .holdings
                .use_resources(&framework_id, &resources.allocated_to(None));
            agent.executors.insert(
                (framework_id.clone(), executor.executor_id.clone()),
                ExecutorEntry {
                    info: executor,
                    framework_id,
                },
            );
        }
        let mut known_before: BTreeSet<(FrameworkId, TaskId)> = previous
            .as_ref()
            .map(|a| a.tasks.keys().cloned().collect())
            .unwrap_or_default();
        let mut reported = Vec::new();
        for mut task in register.tasks {
            if self.removed_frameworks.contains(&task.framework_id) {
                continue;
            }
            // The agent's and (when known) the framework's own ids, whose texts the
            // record and the maps then share.
            task.agent_id = agent_id.clone();
            if let Some((framework_id, _)) = self.frameworks.get_key_value(&task.framework_id) {
                task.framework_id = framework_id.clone();
            }
            let key = (task.framework_id.clone(), task.task_id.clone());
            known_before.remove(&key);
            if !task.state.is_terminal() {
                let resources = Resources::from_list(task.resources.clone()).unwrap_or_default();
                agent
                    .holdings
                    .use_resources(&task.framework_id, &resources.allocated_to(None));
            }
            if let Some(framework) = self.frameworks.get_mut(&task.framework_id) {
                framework
                    .tasks
                    .insert(task.task_id.clone(), agent_id.clone());
            }
            reported.push(task.clone());
            let resources = self.task_resources(task.resources.clone());
            agent
                .tasks
                .insert(key, TaskRecord::from_task(task, resources).into());
        }
        // Tasks the master launched that the agent does not report: the agent answers
        // those it never received with TASK_DROPPED.
        let mut missing: BTreeMap<FrameworkId, Vec<TaskId>> = BTreeMap::new();
        if let Some(prev) = &previous {
            for key in known_before {
                if let Some(task) = prev.tasks.get(&key) {
                    if !task.state.is_terminal() {
                        agent.tasks.insert(key.clone(), task.clone());
                        let resources = Resources::from_list(task.resources.as_slice().to_vec())
                            .unwrap_or_default();
                        agent
                            .holdings
                            .use_resources(&key.0, &resources.allocated_to(None));
                        missing
                            .entry(key.0.clone())
                            .or_default()
                            .push(key.1.clone());
                    }
                }
            }
        }
        self.agents.insert(agent_id.clone(), agent.into());
        self.links.insert(link_id.clone(), agent_id.clone());
        self.emit(Effect::ToLink(
            link_id.clone(),
            ToAgent::Registered(Registered {
                agent_id: agent_id.clone(),
                link_id: link_id.clone(),
                master_info: self.master_info.clone(),
            }),
        ));
        self.resume_drain(&agent_id);
        if known.is_none() && !checkpointed.is_empty() {
            self.persist_checkpointed(&agent_id, checkpointed.clone());
        }
        if !(checkpointed.is_empty() && agent_checkpointed.is_empty()) {
            self.send_checkpointed(&agent_id, checkpointed);
        }
        for (framework_id, task_ids) in missing {
            self.emit(Effect::ToLink(
                link_id.clone(),
                ToAgent::ReconcileTasks(ReconcileTasks {
                    framework_id,
                    task_ids,
                }),
            ));
        }
        if was_unreachable {
            for task in reported.iter().filter(|t| !t.state.is_terminal()) {
                let mut status = task
                    .statuses
                    .last()
                    .cloned()
                    .unwrap_or_else(|| TaskStatus::new(task.task_id.clone(), task.state));
                status.state = task.state;
                status.uuid = None;
                status.source = Some(StatusSource::SourceMaster);
                status.reason = Some(Reason::ReasonAgentReregistered);
                status.message = Some("Agent reregistered".into());
                status.agent_id = Some(agent_id.clone());
                status.timestamp = Some(now);
                self.send_update(&task.framework_id, status);
            }
        }
        self.count(if reregistered {
            "master/slave_reregistrations"
        } else {
            "master/slave_registrations"
        });
        if self.operator_observed && !announced {
            self.emit(Effect::Operator(meseta_api::operator::Event::AgentAdded(
                serde_json::json!({"agent": crate::views::agent_message(&self.agents[&agent_id])}),
            )));
        }
        Ok(agent_id)
    }

    /// Resolves a link id to its agent, or the 409 that tells the agent to reregister.
    pub fn agent_for_link(&self, link_id: &str) -> Result<AgentId, ApiError> {
        self.links
            .get(link_id)
            .filter(|id| {
                self.agents.get(*id).is_some_and(|a| {
                    a.link_id.as_deref() == Some(link_id) && a.link == AgentLink::Connected
                })
            })
            .cloned()
            .ok_or_else(|| {
                ApiError::conflict(format!("Link '{link_id}' is not current; reregister"))
            })
    }

    /// An agent's link dropped.
    pub fn link_closed(&mut self, now: f64, agent_id: &AgentId, link_id: &str) {
        if self.links.get(link_id) == Some(agent_id) {
            self.links.remove(link_id);
        }
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if agent.link_id.as_deref() != Some(link_id) {
            return;
        }
        agent.link_id = None;
        agent.link = AgentLink::Disconnected(now);
        self.rescind_agent_offers(agent_id);
    }

    pub(super) fn expire_agents(&mut self, now: f64) {
        let timeout = self.config.agent_ping_timeout;
        let due: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| match a.link {
                AgentLink::Disconnected(since) => since + timeout <= now,
                AgentLink::Recovering(deadline) => deadline <= now,
                _ => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for agent_id in due {
            self.mark_unreachable(now, &agent_id);
        }
    }

    /// The agent is unreachable: its tasks become TASK_UNREACHABLE (LOST for frameworks
    /// that are not partition aware), frameworks get FAILURE, its offers are rescinded.
    fn mark_unreachable(&mut self, now: f64, agent_id: &AgentId) {
        self.rescind_agent_offers(agent_id);
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        agent.link = AgentLink::Unreachable(now);
        let mut updates = Vec::new();
        for ((framework_id, task_id), task) in agent.tasks.iter_mut() {
            if task.state.is_terminal() {
                continue;
            }
            task.state = TaskState::TaskUnreachable;
            let status = master_status(
                task_id,
                TaskState::TaskUnreachable,
                Reason::ReasonAgentRemoved,
                "Agent is unreachable",
                Some(agent_id),
                now,
            );
            task.push_status(&status);
            updates.push((framework_id.clone(), status));
        }
        self.count("master/slave_unreachable_completed");
        let framework_ids: BTreeSet<FrameworkId> = self.frameworks.keys().cloned().collect();
        for (framework_id, status) in updates {
            self.send_update(&framework_id, status);
        }
        for framework_id in framework_ids {
            self.send_to_framework(
                &framework_id,
                Event::Failure(Failure {
                    agent_id: Some(agent_id.clone()),
                    executor_id: None,
                    status: None,
                }),
            );
        }
        if self.operator_observed {
            self.emit(Effect::Operator(meseta_api::operator::Event::AgentRemoved(
                serde_json::json!({"agent_id": agent_id}),
            )));
        }
    }

    /// DEACTIVATE_AGENT: the agent's outstanding offers are rescinded and it is offered
    /// nothing until REACTIVATE_AGENT; its tasks keep running. Stored in the registry.
    pub fn deactivate_agent(&mut self, agent_id: &AgentId) -> Result<(), ApiError> {
        self.set_agent_deactivated(agent_id, true)
    }

    /// REACTIVATE_AGENT: the agent is offered again; a drained agent forgets its drain,
    /// a draining one must finish first.
    pub fn reactivate_agent(&mut self, agent_id: &AgentId) -> Result<(), ApiError> {
        self.end_drain(agent_id)?;
        self.set_agent_deactivated(agent_id, false)
    }

    /// Stores what the registry keeps of an agent, as it is now.
    pub(super) fn persist_agent(&mut self, agent_id: &AgentId) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let admitted = AdmittedAgent {
            info: agent.info.clone(),
            endpoint: agent.endpoint.clone(),
            deactivated: agent.deactivated,
            drain: agent.drain,
        };
        self.emit(Effect::Persist(RegistryChange::PutAgent(
            agent_id.clone(),
            admitted,
        )));
    }

    fn set_agent_deactivated(
        &mut self,
        agent_id: &AgentId,
        deactivated: bool,
    ) -> Result<(), ApiError> {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return Err(ApiError::not_found(format!("Agent '{agent_id}' not found")));
        };
        if agent.deactivated == deactivated {
            return Ok(());
        }
        agent.deactivated = deactivated;
        self.persist_agent(agent_id);
        if deactivated {
            self.rescind_agent_offers(agent_id);
            self.count("master/slaves_deactivated");
        } else {
            self.count("master/slaves_reactivated");
        }
        Ok(())
    }

    /// MARK_AGENT_GONE: permanent; tasks become TASK_GONE_BY_OPERATOR.
    pub fn mark_agent_gone(&mut self, now: f64, agent_id: &AgentId) -> Result<(), ApiError> {
        if self.gone_agents.contains(agent_id) {
            return Ok(());
        }
        if !self.agents.contains_key(agent_id) {
            return Err(ApiError::not_found(format!("Agent '{agent_id}' not found")));
        }
        self.remove_agent(now, agent_id, AgentRemoval::Gone);
        Ok(())
    }

    /// Removes an agent: it is told to shut down, and its tasks are reported as the
    /// removal says.
    pub(super) fn remove_agent(&mut self, now: f64, agent_id: &AgentId, removal: AgentRemoval) {
        let (change, state, reason, message) = match removal {
            AgentRemoval::Gone => (
                RegistryChange::MarkAgentGone(agent_id.clone()),
                TaskState::TaskGoneByOperator,
                Reason::ReasonAgentRemovedByOperator,
                "Agent has been marked gone",
            ),
            AgentRemoval::Maintenance => (
                RegistryChange::RemoveAgent(agent_id.clone()),
                TaskState::TaskDropped,
                Reason::ReasonAgentRemoved,
                "Agent's machine is down for maintenance",
            ),
        };
        self.emit(Effect::Persist(change));
        self.rescind_agent_offers(agent_id);
        if let Some(link) = self.agents.get(agent_id).and_then(|a| a.link_id.clone()) {
            self.emit(Effect::ToLink(
                link.clone(),
                ToAgent::Shutdown(ShutdownAgent {
                    message: message.into(),
                }),
            ));
            self.emit(Effect::CloseLink(link));
        }
        let Some(agent) = self.agents.remove(agent_id) else {
            return;
        };
        if removal == AgentRemoval::Gone {
            self.gone_agents.insert(agent_id.clone());
        }
        for ((framework_id, task_id), mut task) in agent.into_inner().tasks.into_inner() {
            if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                framework.tasks.remove(&task_id);
            }
            if task.state.is_terminal() {
                continue;
            }
            task.state = state;
            let status = master_status(&task_id, state, reason, message, Some(agent_id), now);
            if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                super::frameworks::push_bounded(
                    &mut framework.completed_tasks,
                    task,
                    MAX_COMPLETED_TASKS,
                );
            }
            self.send_update(&framework_id, status);
        }
        if self.operator_observed {
            self.emit(Effect::Operator(meseta_api::operator::Event::AgentRemoved(
                serde_json::json!({"agent_id": agent_id}),
            )));
        }
    }
}

/// Why an agent is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AgentRemoval {
    /// MARK_AGENT_GONE: for good; its tasks are TASK_GONE_BY_OPERATOR.
    Gone,
    /// START_MAINTENANCE on its machine: it may register again once the machine is up;
    /// its tasks are TASK_DROPPED (TASK_LOST to frameworks that are not partition-aware).
    Maintenance,
}
