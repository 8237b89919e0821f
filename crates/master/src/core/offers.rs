//! Offers: making them (from the allocator's decisions), ACCEPT (with launch validation),
//! DECLINE, refuse filters, rescinding and the offer timeout.

use super::operations::{framework_resources, resource_format, Outcome};
use super::reservations::ResourceOp;
use super::*;
use meseta_api::internal::{RunTask, RunTaskGroup};
use meseta_api::resources::ResourceFormat;
use meseta_api::scheduler::{Accept, Offers, Rescind};

/// Refuse filters are capped at a year, as in Mesos.
const MAX_REFUSE_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

impl Core {
    pub(super) fn make_offer(
        &mut self,
        now: f64,
        framework_id: FrameworkId,
        agent_id: AgentId,
        role: String,
        resources: Resources,
    ) {
        let Some(framework) = self.frameworks.get(&framework_id) else {
            return;
        };
        let multi_role = framework.info.has_capability(CapabilityType::MultiRole);
        // Refined reservations are not offered to frameworks that cannot read them, nor
        // shared resources to those without SHARED_RESOURCES.
        let mut resources = match resource_format(framework) {
            ResourceFormat::PreRefinement => without_refined(&resources),
            _ => resources,
        };
        if !framework
            .info
            .has_capability(CapabilityType::SharedResources)
        {
            let mut unshared = Resources::new();
            for r in resources.iter().filter(|r| !r.is_shared()) {
                unshared.add(r);
            }
            resources = unshared;
        }
        if resources.is_empty() {
            return;
        }
        let offer_id = self.new_offer_id();
        let unavailability = self
            .agents
            .get(&agent_id)
            .and_then(|a| self.agent_unavailability(a));
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        agent.holdings.offer(&framework_id, &role, &resources);
        let framework = self
            .frameworks
            .get_mut(&framework_id)
            .expect("checked above");
        let executor_ids = agent
            .executors
            .keys()
            .filter(|(f, _)| f == &framework_id)
            .map(|(_, e)| e.clone())
            .collect();
        let wire_resources = framework_resources(framework, &role, &resources);
        let offer = Offer {
            id: offer_id.clone(),
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            hostname: agent.info.hostname.clone(),
            url: None,
            allocation_info: multi_role.then(|| AllocationInfo {
                role: Some(role.clone()),
            }),
            resources: wire_resources,
            attributes: agent.info.attributes.clone(),
            executor_ids,
            unavailability,
            domain: agent.info.domain.clone(),
        };
        framework.offers.insert(offer_id.clone());
        self.offers.insert(
            offer_id,
            OfferEntry {
                offer: offer.clone(),
                role,
                resources,
                created: now,
            }
            .into(),
        );
        self.count("master/offers_sent");
        self.send_to_framework(
            &framework_id,
            Event::Offers(Offers {
                offers: vec![offer],
            }),
        );
    }

    /// Withdraws an offer without telling the framework (it is used or the framework left).
    fn take_offer(&mut self, offer_id: &OfferId) -> Option<OfferEntry> {
        let entry = self.offers.remove(offer_id)?;
        if let Some(agent) = self.agents.get_mut(&entry.offer.agent_id) {
            agent
                .holdings
                .unoffer(&entry.offer.framework_id, &entry.role, &entry.resources);
        }
        if let Some(framework) = self.frameworks.get_mut(&entry.offer.framework_id) {
            framework.offers.remove(offer_id);
        }
        Some(entry.into_inner())
    }

    /// Withdraws an offer and sends RESCIND.
    pub(super) fn rescind_offer(&mut self, offer_id: &OfferId) {
        if let Some(entry) = self.take_offer(offer_id) {
            self.count("master/offers_rescinded");
            self.send_to_framework(
                &entry.offer.framework_id,
                Event::Rescind(Rescind {
                    offer_id: offer_id.clone(),
                }),
            );
        }
    }

    pub(super) fn remove_framework_offers(&mut self, framework_id: &FrameworkId) {
        let ids: Vec<OfferId> = self
            .frameworks
            .get(framework_id)
            .map(|f| f.offers.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.take_offer(&id);
        }
    }

    pub(super) fn rescind_agent_offers(&mut self, agent_id: &AgentId) {
        let ids: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| &o.offer.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.rescind_offer(&id);
        }
    }

    pub(super) fn expire_offers(&mut self, now: f64) {
        let Some(timeout) = self.config.offer_timeout else {
            return;
        };
        let expired: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| o.created + timeout <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.rescind_offer(&id);
        }
    }

    fn add_filter(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        resources: Resources,
        refuse_seconds: f64,
        now: f64,
    ) {
        let seconds = if refuse_seconds.is_finite() {
            refuse_seconds.clamp(0.0, MAX_REFUSE_SECONDS)
        } else {
            5.0
        };
        if seconds <= 0.0 || resources.is_empty() {
            return;
        }
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.filters.push(RefuseFilter {
                agent_id: agent_id.clone(),
                resources: self.refused.intern(resources),
                expires: now + seconds,
            });
            self.filters_changed(framework_id);
        }
    }

    /// DECLINE: the offers' resources return to the pool, filtered for `refuse_seconds`.
    pub fn decline(
        &mut self,
        now: f64,
        framework_id: &FrameworkId,
        offer_ids: &[OfferId],
        filters: Option<&Filters>,
    ) {
        let refuse = filters.cloned().unwrap_or_default().refuse_seconds;
        for offer_id in offer_ids {
            let owned = self
                .offers
                .get(offer_id)
                .is_some_and(|o| &o.offer.framework_id == framework_id);
            if !owned {
                continue; // Mesos ignores unknown offers on DECLINE
            }
            let entry = self.take_offer(offer_id).expect("checked");
            self.add_filter(
                framework_id,
                &entry.offer.agent_id,
                entry.resources,
                refuse,
                now,
            );
        }
    }

    /// ACCEPT: validate the offers, then apply the operations in order; what is left of
    /// the offers returns to the pool, filtered for `refuse_seconds`.
    pub fn accept(&mut self, now: f64, framework_id: &FrameworkId, accept: Accept) {
        let refuse = accept.filters.clone().unwrap_or_default().refuse_seconds;
        let (agent_id, role, mut remaining) =
            match self.take_accepted_offers(framework_id, &accept.offer_ids) {
                Ok(found) => found,
                Err(message) => {
                    self.count("master/invalid_accepts");
                    self.drop_launches(now, framework_id, &accept, &message);
                    for operation in &accept.operations {
                        self.operation_feedback(
                            framework_id,
                            operation.id.as_ref(),
                            None,
                            Outcome::Dropped(message.clone()),
                        );
                    }
                    return;
                }
            };
        let mut operations = accept.operations;
        inject_allocation_info(&mut operations, &role);
        let mut launched_ids = BTreeSet::new();
        for operation in operations {
            match operation.kind {
                OperationType::Launch => {
                    let tasks = operation.launch.map(|l| l.task_infos).unwrap_or_default();
                    for task in tasks {
                        self.launch_one(
                            now,
                            framework_id,
                            &agent_id,
                            &mut remaining,
                            &mut launched_ids,
                            task,
                        );
                    }
                }
                OperationType::LaunchGroup => match operation.launch_group {
                    Some(group) => self.launch_group(
                        now,
                        framework_id,
                        &agent_id,
                        &mut remaining,
                        &mut launched_ids,
                        group,
                    ),
                    None => tracing::warn!("LAUNCH_GROUP without 'launch_group' ignored"),
                },
                other => match ResourceOp::from_offer_operation(&operation) {
                    Some(op) => self.accept_resource_op(
                        framework_id,
                        &agent_id,
                        &role,
                        &mut remaining,
                        op,
                        operation.id.as_ref(),
                    ),
                    None => {
                        tracing::warn!(?other, framework = %framework_id, "offer operation not supported yet; ignored");
                    }
                },
            }
        }
        self.add_filter(framework_id, &agent_id, remaining, refuse, now);
    }

    /// Takes the accepted offers; all must be outstanding, this framework's, on one agent,
    /// allocated to one role. Returns the agent, the role and the offered resources.
    fn take_accepted_offers(
        &mut self,
        framework_id: &FrameworkId,
        offer_ids: &[OfferId],
    ) -> Result<(AgentId, String, Resources), String> {
        if offer_ids.is_empty() {
            return Err("No offers specified".into());
        }
        let unique: BTreeSet<&OfferId> = offer_ids.iter().collect();
        if unique.len() != offer_ids.len() {
            return Err("Duplicate offers specified".into());
        }
        let mut agent: Option<AgentId> = None;
        let mut role: Option<&str> = None;
        for offer_id in offer_ids {
            let Some(entry) = self.offers.get(offer_id) else {
                return Err(format!("Offer {offer_id} is no longer valid"));
            };
            if &entry.offer.framework_id != framework_id {
                return Err(format!("Offer {offer_id} has invalid framework {} while framework {framework_id} is expected", entry.offer.framework_id));
            }
            match &agent {
                Some(a) if a != &entry.offer.agent_id => {
                    return Err(format!("Aggregated offers must belong to one single agent. Offer {offer_id} uses agent {} and agent {a}", entry.offer.agent_id));
                }
                _ => agent = Some(entry.offer.agent_id.clone()),
            }
            match role {
                Some(r) if r != entry.role => {
                    return Err(format!("Aggregated offers must be allocated to the same role. Offer {offer_id} uses role {} and another offer uses role {r}", entry.role));
                }
                _ => role = Some(&entry.role),
            }
        }
        let agent = agent.expect("at least one offer");
        let role = role.expect("at least one offer").to_string();
        if !self
            .agents
            .get(&agent)
            .is_some_and(|a| a.link == AgentLink::Connected)
        {
            for offer_id in offer_ids {
                self.take_offer(offer_id);
            }
            return Err(format!("Agent {agent} is not available"));
        }
        let mut resources = Resources::new();
        for offer_id in offer_ids {
            let entry = self.take_offer(offer_id).expect("validated");
            resources.add_all(&entry.resources);
        }
        Ok((agent, role, resources))
    }

    /// Every task of an invalid ACCEPT ends in TASK_DROPPED (TASK_LOST when not partition
    /// aware) with REASON_INVALID_OFFERS.
    fn drop_launches(
        &mut self,
        now: f64,
        framework_id: &FrameworkId,
        accept: &Accept,
        message: &str,
    ) {
        for operation in &accept.operations {
            let tasks: Vec<&TaskInfo> = operation
                .launch
                .iter()
                .flat_map(|l| l.task_infos.iter())
                .chain(
                    operation
                        .launch_group
                        .iter()
                        .flat_map(|g| g.task_group.tasks.iter()),
                )
                .collect();
            for task in tasks {
                let status = master_status(
                    &task.task_id,
                    TaskState::TaskDropped,
                    Reason::ReasonInvalidOffers,
                    message,
                    Some(&task.agent_id),
                    now,
                );
                self.send_update(framework_id, status);
            }
        }
    }

    fn reject_task(
        &mut self,
        now: f64,
        framework_id: &FrameworkId,
        task: &TaskInfo,
        reason: Reason,
        message: String,
    ) {
        self.count("master/invalid_tasks");
        let status = master_status(
            &task.task_id,
            TaskState::TaskError,
            reason,
            message,
            Some(&task.agent_id),
            now,
        );
        self.send_update(framework_id, status);
    }

    fn launch_one(
        &mut self,
        now: f64,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        remaining: &mut Resources,
        launched_ids: &mut BTreeSet<TaskId>,
        mut task: TaskInfo,
    ) {
        let needed =
            match self.validate_task(framework_id, agent_id, remaining, launched_ids, &mut task) {
                Ok(needed) => needed,
                Err(message) => {
                    return self.reject_task(
                        now,
                        framework_id,
                        &task,
                        Reason::ReasonTaskInvalid,
                        message,
                    )
                }
            };
        take_unshared(remaining, &needed);
        launched_ids.insert(task.task_id.clone());
        self.add_task(now, framework_id, agent_id, &task, needed);
        let framework = self
            .frameworks
            .get(framework_id)
            .expect("caller checked")
            .info
            .clone();
        self.send_to_agent(agent_id, ToAgent::RunTask(RunTask { framework, task }));
    }

    fn launch_group(
        &mut self,
        now: f64,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        remaining: &mut Resources,
        launched_ids: &mut BTreeSet<TaskId>,
        mut group: meseta_api::LaunchGroup,
    ) {
        group
            .executor
            .framework_id
            .get_or_insert_with(|| framework_id.clone());
        let mut trial = remaining.clone();
        let mut trial_ids = launched_ids.clone();
        let needs = self.validate_group(framework_id, agent_id, &mut trial, &mut trial_ids, &group);
        let needs = match needs {
            Ok(needs) => needs,
            Err(message) => {
                for task in &group.task_group.tasks {
                    self.reject_task(
                        now,
                        framework_id,
                        task,
                        Reason::ReasonTaskGroupInvalid,
                        message.clone(),
                    );
                }
                return;
            }
        };
        *remaining = trial;
        *launched_ids = trial_ids;
        for (task, needed) in group.task_group.tasks.iter().zip(needs) {
            let mut stored = task.clone();
            stored.executor = Some(group.executor.clone());
            self.add_task(now, framework_id, agent_id, &stored, needed);
        }
        let framework = self
            .frameworks
            .get(framework_id)
            .expect("caller checked")
            .info
            .clone();
        self.send_to_agent(
            agent_id,
            ToAgent::RunTaskGroup(RunTaskGroup {
                framework,
                executor: group.executor,
                task_group: group.task_group,
            }),
        );
    }

    /// Mesos's task group validation: every task as any task is checked (the message
    /// prefixed with the task), and as a task of a group; then the executor; then whether
    /// the executor's resources fit too when it is new on the agent. Returns what each
    /// task consumes (the first one with the new executor's resources), taken off
    /// `remaining`.
    fn validate_group(
        &self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        remaining: &mut Resources,
        launched_ids: &mut BTreeSet<TaskId>,
        group: &meseta_api::LaunchGroup,
    ) -> Result<Vec<Resources>, String> {
        let executor = &group.executor;
        let offered = strip_allocation(remaining);
        if group.task_group.tasks.is_empty() {
            return Err("Task group cannot be empty".to_string());
        }
        let mut needs = Vec::new();
        for task in &group.task_group.tasks {
            if let Some(error) = task_groups::task_error(task, executor) {
                return Err(error);
            }
            let mut alone = TaskInfo {
                executor: None,
                ..task.clone()
            };
            let needed = self
                .validate_task(framework_id, agent_id, remaining, launched_ids, &mut alone)
                .map_err(|why| format!("Task '{}' is invalid: {why}", task.task_id))?;
            take_unshared(remaining, &needed);
            launched_ids.insert(task.task_id.clone());
            needs.push(needed);
        }
        if let Some(error) = task_groups::executor_error(executor, framework_id) {
            return Err(error);
        }
        let agent = self.agents.get(agent_id).expect("validated");
        match agent
            .executors
            .get(&(framework_id.clone(), executor.executor_id.clone()))
        {
            Some(existing) if !same_executor(&existing.info, executor) => Err(format!(
                "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID '{}'",
                executor.executor_id
            )),
            Some(_) => Ok(needs),
            None => {
                let executor_resources = Resources::from_list(executor.resources.clone())
                    .map_err(|e| format!("Executor uses invalid resources: {e}"))?;
                let executor_resources = strip_allocation(&executor_resources);
                if !strip_allocation(remaining).contains(&executor_resources) {
                    let total: Resources = needs.iter().fold(executor_resources.clone(), |mut t, n| {
                        t.add_all(n);
                        t
                    });
                    return Err(format!(
                        "Total resources {total} required by task group and its executor are more than available {offered}"
                    ));
                }
                take_unshared(remaining, &executor_resources);
                needs[0].add_all(&executor_resources);
                Ok(needs)
            }
        }
    }

    /// Mesos's TaskInfo validation; returns the resources the launch consumes (the task's,
    /// plus its executor's when the executor is new on the agent).
    fn validate_task(
        &self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        remaining: &Resources,
        launched_ids: &BTreeSet<TaskId>,
        task: &mut TaskInfo,
    ) -> Result<Resources, String> {
        if task.task_id.value.is_empty() {
            return Err("Task ID must not be empty".into());
        }
        if task.task_id.value.contains('/') || task.task_id.value.chars().any(char::is_control) {
            return Err(format!(
                "Task ID '{}' contains invalid characters",
                task.task_id
            ));
        }
        let framework = self.frameworks.get(framework_id).expect("caller checked");
        if framework.tasks.contains_key(&task.task_id) || launched_ids.contains(&task.task_id) {
            return Err(format!("Task has duplicate ID: {}", task.task_id));
        }
        if &task.agent_id != agent_id {
            return Err(format!(
                "Task uses invalid agent: {} while agent {agent_id} is expected",
                task.agent_id
            ));
        }
        if task.executor.is_some() == task.command.is_some() {
            return Err("Task should have at least one (but not both) of CommandInfo or ExecutorInfo present".into());
        }
        let task_resources = Resources::from_list(task.resources.clone())
            .map_err(|e| format!("Task uses invalid resources: {e}"))?;
        let mut needed = task_resources;
        if let Some(executor) = task.executor.as_mut() {
            if executor.kind.is_some_and(|k| k != ExecutorType::Custom) {
                return Err("'ExecutorInfo.type' must be 'CUSTOM'".into());
            }
            if executor.command.is_none() {
                return Err("'ExecutorInfo.command' must be set".into());
            }
            match &executor.framework_id {
                Some(f) if f != framework_id => {
                    return Err(format!("ExecutorInfo has an invalid FrameworkID (Actual: {f} vs Expected: {framework_id})"));
                }
                _ => executor.framework_id = Some(framework_id.clone()),
            }
            let agent = self.agents.get(agent_id).expect("validated");
            match agent
                .executors
                .get(&(framework_id.clone(), executor.executor_id.clone()))
            {
                Some(existing) => {
                    if !same_executor(&existing.info, executor) {
                        return Err(format!("ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID '{}'", executor.executor_id));
                    }
                }
                None => {
                    let executor_resources = Resources::from_list(executor.resources.clone())
                        .map_err(|e| format!("Executor uses invalid resources: {e}"))?;
                    needed.add_all(&executor_resources);
                }
            }
        }
        let needed = strip_allocation(&needed);
        if !strip_allocation(remaining).contains(&needed) {
            return Err(format!(
                "Task uses more resources {needed} than available {remaining}"
            ));
        }
        Ok(needed)
    }

    /// Records a task in TASK_STAGING with its resources in use.
    fn add_task(
        &mut self,
        now: f64,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        task: &TaskInfo,
        needed: Resources,
    ) {
        // The agent's and framework's own ids: the record and the maps then share their
        // texts (the call's ids were decoded into texts of their own, one per task).
        let agent_id = &self
            .agents
            .get_key_value(agent_id)
            .expect("validated")
            .0
            .clone();
        let framework_id = &self
            .frameworks
            .get_key_value(framework_id)
            .expect("caller checked")
            .0
            .clone();
        let user = self.frameworks.get(framework_id).map(|f| {
            task.command
                .as_ref()
                .and_then(|c| c.user.clone())
                .unwrap_or_else(|| f.info.user.clone())
        });
        let resources = self.task_resources(task.resources.clone());
        let record = TaskRecord::launched(task, framework_id, agent_id, user, resources);
        let agent = self.agents.get_mut(agent_id).expect("validated");
        agent.holdings.use_resources(framework_id, &needed);
        if let Some(executor) = &task.executor {
            agent
                .executors
                .entry((framework_id.clone(), executor.executor_id.clone()))
                .or_insert_with(|| ExecutorEntry {
                    info: executor.clone(),
                    framework_id: framework_id.clone(),
                });
        }
        agent.tasks.insert(
            (framework_id.clone(), record.task_id.clone()),
            record.clone().into(),
        );
        let framework = self
            .frameworks
            .get_mut(framework_id)
            .expect("caller checked");
        framework
            .tasks
            .insert(record.task_id.clone(), agent_id.clone());
        self.count("master/tasks_launched");
        let _ = now;
        if self.operator_observed {
            self.emit(Effect::Operator(meseta_api::operator::Event::TaskAdded(
                serde_json::json!({"task": record}),
            )));
        }
    }
}

/// Sets the offer's role as `allocation_info` on the resources of every launched task and
/// executor that lacks one, as Mesos does for every framework (the command executor reads
/// it into `MESOS_ALLOCATION_ROLE`).
fn inject_allocation_info(operations: &mut [Operation], role: &str) {
    let tag = |resources: &mut Vec<Resource>| {
        for r in resources.iter_mut().filter(|r| r.allocation_info.is_none()) {
            r.allocation_info = Some(AllocationInfo {
                role: Some(role.to_string()),
            });
        }
    };
    for operation in operations.iter_mut() {
        for task in operation
            .launch
            .iter_mut()
            .flat_map(|l| l.task_infos.iter_mut())
        {
            tag(&mut task.resources);
            if let Some(executor) = task.executor.as_mut() {
                tag(&mut executor.resources);
            }
        }
        if let Some(group) = operation.launch_group.as_mut() {
            tag(&mut group.executor.resources);
            for task in group.task_group.tasks.iter_mut() {
                tag(&mut task.resources);
            }
        }
    }
}

/// The resources without those whose reservation refines another.
/// Takes what a task uses from what is left of an offer; shared resources stay there, for
/// the next task (as in Mesos).
fn take_unshared(remaining: &mut Resources, used: &Resources) {
    for r in used.iter().filter(|r| !r.is_shared()) {
        remaining.subtract(r);
    }
}

fn without_refined(resources: &Resources) -> Resources {
    let mut out = Resources::new();
    for r in resources.iter().filter(|r| !r.has_refined_reservation()) {
        out.add(r);
    }
    out
}

/// Resources without allocation info (so that MULTI_ROLE tasks compare with offers).
fn strip_allocation(resources: &Resources) -> Resources {
    resources.allocated_to(None)
}

fn same_executor(a: &ExecutorInfo, b: &ExecutorInfo) -> bool {
    a.command == b.command && a.container == b.container && a.kind == b.kind
}
