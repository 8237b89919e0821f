//! Framework lifecycle: subscribe (new, resubscribe, failover), disconnect and the
//! failover timeout, update, suppress and revive, teardown and removal.

use super::*;
use meseta_api::internal::{ShutdownFramework, UpdateFramework};
use meseta_api::scheduler::{Error as ErrorEvent, Subscribed};

/// Mesos's heartbeat interval on subscription streams.
pub const HEARTBEAT_INTERVAL_SECS: f64 = 15.0;

impl Core {
    /// A SUBSCRIBE on a new stream `stream_id`. Returns the framework id.
    pub fn subscribe(
        &mut self,
        now: f64,
        stream_id: String,
        mut info: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<FrameworkId, ApiError> {
        validate_framework_info(&info)?;
        let id = match info.id.clone() {
            Some(id) if self.removed_frameworks.contains(&id) => {
                return Err(ApiError::forbidden(format!(
                    "Framework {id} has been removed"
                )));
            }
            Some(id) => id,
            None => self.new_framework_id(),
        };
        info.id = Some(id.clone());
        self.emit(Effect::Persist(RegistryChange::PutFramework(
            id.clone(),
            info.clone(),
        )));

        let existing = self.frameworks.contains_key(&id);
        if existing {
            let old_stream = self.frameworks.get(&id).and_then(|f| f.stream_id.clone());
            if let Some(old) = old_stream {
                self.emit(Effect::ToStream(
                    old.clone(),
                    Event::Error(ErrorEvent {
                        message: "Framework failed over".into(),
                    }),
                ));
                self.emit(Effect::CloseStream(old));
            }
            self.remove_framework_offers(&id);
            let framework = self.frameworks.get_mut(&id).expect("checked");
            let was_recovered = framework.recovered;
            framework.info = info.clone();
            framework.stream_id = Some(stream_id.clone());
            framework.recovered = false;
            framework.active = true;
            framework.failover_deadline = None;
            framework.unregistered_time = None;
            framework.suppressed_roles = suppressed_roles.into_iter().collect();
            if was_recovered && framework.registered_time.is_none() {
                framework.registered_time = Some(now);
            }
            framework.reregistered_time = Some(now);
            self.count("master/framework_reregistrations");
            self.broadcast_framework_to_agents(&id, &info);
            if self.operator_observed {
                self.emit(Effect::Operator(
                    meseta_api::operator::Event::FrameworkUpdated(
                        serde_json::json!({"framework": self.framework_view_json(&id)}),
                    ),
                ));
            }
        } else {
            let mut framework = Framework::recovered(info.clone());
            framework.recovered = false;
            framework.active = true;
            framework.stream_id = Some(stream_id.clone());
            framework.registered_time = Some(now);
            framework.suppressed_roles = suppressed_roles.into_iter().collect();
            self.frameworks.insert(id.clone(), framework.into());
            self.count("master/framework_registrations");
            if self.operator_observed {
                self.emit(Effect::Operator(
                    meseta_api::operator::Event::FrameworkAdded(
                        serde_json::json!({"framework": self.framework_view_json(&id)}),
                    ),
                ));
            }
        }
        self.emit(Effect::ToStream(
            stream_id.clone(),
            Event::Subscribed(Subscribed {
                framework_id: id.clone(),
                heartbeat_interval_seconds: Some(HEARTBEAT_INTERVAL_SECS),
                master_info: Some(self.master_info.clone()),
            }),
        ));
        self.emit(Effect::ToStream(stream_id, Event::Heartbeat));
        self.resend_operation_statuses(&id);
        Ok(id)
    }

    /// The subscription stream closed (client went away).
    pub fn stream_closed(&mut self, now: f64, framework_id: &FrameworkId, stream_id: &str) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if framework.stream_id.as_deref() != Some(stream_id) {
            return; // an older stream, already replaced
        }
        framework.stream_id = None;
        framework.active = false;
        framework.unregistered_time = Some(now);
        framework.failover_deadline = Some(now + framework.info.failover_timeout.max(0.0));
        self.remove_framework_offers(framework_id);
        if self.operator_observed {
            self.emit(Effect::Operator(
                meseta_api::operator::Event::FrameworkUpdated(
                    serde_json::json!({"framework": self.framework_view_json(framework_id)}),
                ),
            ));
        }
    }

    pub(super) fn expire_failovers(&mut self, now: f64) {
        let expired: Vec<FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, f)| f.failover_deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove_framework(now, &id);
        }
    }

    /// TEARDOWN (scheduler or operator): remove the framework and kill its tasks.
    pub fn teardown(&mut self, now: f64, framework_id: &FrameworkId) -> Result<(), ApiError> {
        if !self.frameworks.contains_key(framework_id) {
            return Err(ApiError::bad_request(format!(
                "No framework found with specified ID '{framework_id}'"
            )));
        }
        self.remove_framework(now, framework_id);
        Ok(())
    }

    /// Removes a framework for good: its tasks are killed, its offers withdrawn.
    pub(super) fn remove_framework(&mut self, now: f64, framework_id: &FrameworkId) {
        self.remove_framework_offers(framework_id);
        self.operations.forget(framework_id);
        let Some(mut framework) = self.frameworks.remove(framework_id) else {
            return;
        };
        if let Some(stream) = framework.stream_id.take() {
            self.emit(Effect::CloseStream(stream));
        }
        let agent_ids: BTreeSet<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| {
                a.tasks.keys().any(|(f, _)| f == framework_id)
                    || a.executors.keys().any(|(f, _)| f == framework_id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for agent_id in agent_ids {
            self.send_to_agent(
                &agent_id,
                ToAgent::ShutdownFramework(ShutdownFramework {
                    framework_id: framework_id.clone(),
                }),
            );
            let agent = self.agents.get_mut(&agent_id).expect("listed");
            let keys: Vec<(FrameworkId, TaskId)> = agent
                .tasks
                .keys()
                .filter(|(f, _)| f == framework_id)
                .cloned()
                .collect();
            for key in keys {
                let mut task = agent.tasks.remove(&key).expect("listed");
                if !task.state.is_terminal() {
                    task.state = TaskState::TaskKilled;
                }
                push_bounded(&mut framework.completed_tasks, task, MAX_COMPLETED_TASKS);
            }
            agent.executors.retain(|(f, _), _| f != framework_id);
            agent.holdings.forget_framework(framework_id);
        }
        framework.tasks.clear();
        framework.filters.clear();
        framework.active = false;
        framework.unregistered_time = Some(now);
        self.removed_frameworks.insert(framework_id.clone());
        self.emit(Effect::Persist(RegistryChange::RemoveFramework(
            framework_id.clone(),
        )));
        if self.operator_observed {
            self.emit(Effect::Operator(
                meseta_api::operator::Event::FrameworkRemoved(
                    serde_json::json!({"framework_info": framework.info}),
                ),
            ));
        }
        push_bounded(
            &mut self.completed_frameworks,
            framework,
            MAX_COMPLETED_FRAMEWORKS,
        );
        self.count("master/frameworks_removed");
    }

    /// UPDATE_FRAMEWORK: new info (same id, user, checkpoint), new suppressed roles.
    pub fn update_framework(
        &mut self,
        framework_id: &FrameworkId,
        mut info: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<(), ApiError> {
        validate_framework_info(&info)?;
        if info.id.as_ref() != Some(framework_id) {
            return Err(ApiError::bad_request(
                "'framework_info.id' must match 'framework_id'",
            ));
        }
        let framework = self
            .frameworks
            .get_mut(framework_id)
            .expect("caller checked");
        if framework.info.user != info.user || framework.info.checkpoint != info.checkpoint {
            return Err(ApiError::bad_request(
                "Updating 'user' or 'checkpoint' is not supported",
            ));
        }
        info.id = Some(framework_id.clone());
        framework.info = info.clone();
        framework.suppressed_roles = suppressed_roles.into_iter().collect();
        self.emit(Effect::Persist(RegistryChange::PutFramework(
            framework_id.clone(),
            info.clone(),
        )));
        self.broadcast_framework_to_agents(framework_id, &info);
        Ok(())
    }

    /// SUPPRESS: stop offers for the given roles (all of the framework's when empty).
    pub fn suppress(&mut self, framework_id: &FrameworkId, roles: Vec<String>) {
        let framework = self
            .frameworks
            .get_mut(framework_id)
            .expect("caller checked");
        let roles = if roles.is_empty() {
            framework.roles()
        } else {
            roles
        };
        framework.suppressed_roles.extend(roles);
    }

    /// REVIVE: clear filters and resume offers for the given roles (all when empty).
    pub fn revive(&mut self, framework_id: &FrameworkId, roles: Vec<String>) {
        let framework = self
            .frameworks
            .get_mut(framework_id)
            .expect("caller checked");
        if roles.is_empty() {
            framework.suppressed_roles.clear();
        } else {
            for role in &roles {
                framework.suppressed_roles.remove(role);
            }
        }
        framework.filters.clear();
        self.filters_changed(framework_id);
    }

    fn broadcast_framework_to_agents(&mut self, framework_id: &FrameworkId, info: &FrameworkInfo) {
        let agent_ids: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| a.tasks.keys().any(|(f, _)| f == framework_id))
            .map(|(id, _)| id.clone())
            .collect();
        for agent_id in agent_ids {
            self.send_to_agent(
                &agent_id,
                ToAgent::UpdateFramework(UpdateFramework {
                    framework_info: info.clone(),
                }),
            );
        }
    }

    /// The operator API's `Framework` message for one framework.
    pub fn framework_view_json(&self, framework_id: &FrameworkId) -> serde_json::Value {
        match self.frameworks.get(framework_id) {
            Some(f) => {
                let allocated = crate::views::framework_allocated(self.agents.values(), f.id());
                serde_json::to_value(crate::views::framework_message(&self.offers, &allocated, f))
                    .expect("a framework message serializes")
            }
            None => serde_json::Value::Null,
        }
    }
}

fn validate_framework_info(info: &FrameworkInfo) -> Result<(), ApiError> {
    if info.user.is_empty() {
        return Err(ApiError::bad_request(
            "'framework_info.user' must not be empty",
        ));
    }
    if info.has_capability(CapabilityType::MultiRole) {
        if info.role.is_some() {
            return Err(ApiError::bad_request(
                "'FrameworkInfo.role' must not be set with the MULTI_ROLE capability; use 'roles'",
            ));
        }
    } else if !info.roles.is_empty() {
        return Err(ApiError::bad_request(
            "'FrameworkInfo.roles' requires the MULTI_ROLE capability",
        ));
    }
    for role in info.effective_roles() {
        validate_role(&role)?;
    }
    Ok(())
}

/// Mesos's role name rules: not empty, no `.`/`..` path parts, no whitespace or special
/// characters, `/` separates hierarchy levels.
pub fn validate_role(role: &str) -> Result<(), ApiError> {
    if role == "*" {
        return Ok(());
    }
    let bad = role.is_empty()
        || role.starts_with('/')
        || role.ends_with('/')
        || role.starts_with('-')
        || role
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".." || p == "*")
        || role
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\');
    if bad {
        return Err(ApiError::bad_request(format!("Invalid role '{role}'")));
    }
    Ok(())
}

pub(super) fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    queue.push_back(item);
    while queue.len() > max {
        queue.pop_front();
    }
}
