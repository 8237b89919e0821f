//! Resource operations on an agent's resources: RESERVE, UNRESERVE, CREATE and DESTROY,
//! from an ACCEPT (framework) or an operator call (RESERVE_RESOURCES, …). [`convert`]
//! reads an operation, checks it against Mesos's rules for who may ask what, and says
//! which resources it consumes and which it gives in their place; the core then checks
//! that the consumed resources are there (in the offer, or free on the agent after
//! rescinding offers), applies the conversion to the agent's total, stores the agent's
//! checkpointed resources (dynamic reservations and volumes) in the registry and sends
//! them to the agent, in that order.

use super::frameworks::validate_role;
use super::operations::Outcome;
use super::*;
use meseta_api::internal::CheckpointResources;
use meseta_api::resources::Resource;
use serde::Deserialize;
use serde_json::Value;

/// An operation on resources.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceOp {
    Reserve(Resources),
    /// RESERVE with `source`: the source resources (reserved or not) are reserved as
    /// `resources` instead, in one step (a reservation moved to another role).
    Rereserve {
        source: Resources,
        resources: Resources,
    },
    Unreserve(Resources),
    Create(Resources),
    Destroy(Resources),
}

impl ResourceOp {
    /// Mesos's name of the operation, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            ResourceOp::Reserve(_) | ResourceOp::Rereserve { .. } => "RESERVE",
            ResourceOp::Unreserve(_) => "UNRESERVE",
            ResourceOp::Create(_) => "CREATE",
            ResourceOp::Destroy(_) => "DESTROY",
        }
    }

    /// The offer operation's resource operation; `None` for other kinds of operations.
    pub fn from_offer_operation(operation: &Operation) -> Option<Result<ResourceOp, String>> {
        let (payload, field, make): (_, _, fn(Resources) -> ResourceOp) = match operation.kind {
            OperationType::Reserve => {
                return Some(match &operation.reserve {
                    None => Err("Expecting 'reserve' to be present".into()),
                    Some(body) => read_reserve(body),
                })
            }
            OperationType::Unreserve => (&operation.unreserve, "resources", ResourceOp::Unreserve),
            OperationType::Create => (&operation.create, "volumes", ResourceOp::Create),
            OperationType::Destroy => (&operation.destroy, "volumes", ResourceOp::Destroy),
            _ => return None,
        };
        let name = format!("{:?}", operation.kind).to_ascii_lowercase();
        Some(match payload {
            None => Err(format!("Expecting '{name}' to be present")),
            Some(body) => read_resources(body, field).map(make),
        })
    }

    /// An operator call's payload (`{"agent_id":…, "resources"|"volumes":[…]}`).
    pub fn from_operator_call(
        kind: OperationType,
        body: &Value,
    ) -> Result<(AgentId, ResourceOp), String> {
        let agent_id: AgentId = serde_json::from_value(body["agent_id"].clone())
            .map_err(|e| format!("Expecting 'agent_id' to be present: {e}"))?;
        let op = match kind {
            OperationType::Reserve => read_reserve(body)?,
            OperationType::Unreserve => ResourceOp::Unreserve(read_resources(body, "resources")?),
            OperationType::Create => ResourceOp::Create(read_resources(body, "volumes")?),
            OperationType::Destroy => ResourceOp::Destroy(read_resources(body, "volumes")?),
            other => return Err(format!("{other:?} is not a resource operation")),
        };
        Ok((agent_id, op))
    }

    /// Whether it reserves resources (and so counts against quota limits).
    pub fn reserves(&self) -> bool {
        matches!(self, ResourceOp::Reserve(_) | ResourceOp::Rereserve { .. })
    }

    fn resources(&self) -> &Resources {
        match self {
            ResourceOp::Reserve(r)
            | ResourceOp::Rereserve { resources: r, .. }
            | ResourceOp::Unreserve(r)
            | ResourceOp::Create(r)
            | ResourceOp::Destroy(r) => r,
        }
    }
}

/// Reads a RESERVE payload, with `source` when it has one.
fn read_reserve(body: &Value) -> Result<ResourceOp, String> {
    let resources = read_resources(body, "resources")?;
    if body.get("source").is_none_or(Value::is_null) {
        return Ok(ResourceOp::Reserve(resources));
    }
    Ok(ResourceOp::Rereserve {
        source: read_resources(body, "source")?,
        resources,
    })
}

/// Reads a non-empty resource list (format upgraded, allocation info dropped).
fn read_resources(body: &Value, field: &str) -> Result<Resources, String> {
    let list = Vec::<Resource>::deserialize(&body[field])
        .map_err(|e| format!("Expecting '{field}' to be a list of resources: {e}"))?;
    if list.is_empty() {
        return Err(format!("Expecting '{field}' to hold at least one resource"));
    }
    let mut out = Resources::new();
    for mut r in list {
        r.validate().map_err(|e| e.to_string())?;
        r.allocation_info = None;
        out.add(&r);
    }
    Ok(out)
}

/// Who asks for an operation.
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    /// A framework accepting an offer allocated to `role`.
    Framework {
        role: &'a str,
        principal: Option<&'a str>,
        refinement: bool,
    },
    /// An operator (no authentication: any principal may be named).
    Operator,
}

/// What an operation does to an agent's resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// Taken from the agent's resources (they must be there and free).
    pub consumed: Resources,
    /// Put in their place.
    pub converted: Resources,
}

/// Checks an operation and says what it converts. `volumes` are the persistent volumes
/// the agent has now, for CREATE's unique ids.
pub fn convert(
    op: &ResourceOp,
    requester: Requester,
    volumes: &Resources,
) -> Result<Conversion, String> {
    let name = op.name();
    let mut consumed = Resources::new();
    let mut converted = Resources::new();
    let mut new_ids: BTreeSet<(String, String)> = BTreeSet::new();
    for r in op.resources().iter() {
        let invalid = |why: String| format!("Invalid {name} operation: {why}");
        let volume_op = matches!(op, ResourceOp::Create(_) | ResourceOp::Destroy(_));
        if r.revocable.is_some() || (r.is_shared() && !(volume_op && r.is_persistent_volume())) {
            return Err(invalid(format!(
                "{} is revocable or shared, which {name} does not support (only persistent volumes may be shared)",
                one(r)
            )));
        }
        if let Requester::Framework {
            refinement: false, ..
        } = requester
        {
            if r.has_refined_reservation() {
                return Err(invalid(format!(
                    "{} has a refined reservation, which needs the RESERVATION_REFINEMENT capability",
                    one(r)
                )));
            }
        }
        match op {
            ResourceOp::Reserve(_) => {
                check_reserve(r, requester).map_err(invalid)?;
                consumed.add(&r.popped_reservation());
                converted.add(r);
            }
            ResourceOp::Rereserve { .. } => {
                check_reserve(r, requester).map_err(invalid)?;
                converted.add(r);
            }
            ResourceOp::Unreserve(_) => {
                if !r.is_dynamically_reserved() {
                    return Err(invalid(format!("{} is not dynamically reserved", one(r))));
                }
                if r.is_persistent_volume() {
                    return Err(invalid(format!(
                        "{} is a persistent volume; DESTROY it first",
                        one(r)
                    )));
                }
                consumed.add(r);
                converted.add(&r.popped_reservation());
            }
            ResourceOp::Create(_) => {
                check_create(r, requester).map_err(invalid)?;
                let key = (
                    r.reservation_role().to_string(),
                    r.persistence_id().unwrap_or_default().to_string(),
                );
                let taken = volumes.iter().any(|v| {
                    v.reservation_role() == key.0 && v.persistence_id() == Some(key.1.as_str())
                });
                if taken || !new_ids.insert(key.clone()) {
                    return Err(invalid(format!(
                        "persistent volume id '{}' is already in use for role '{}'",
                        key.1, key.0
                    )));
                }
                consumed.add(&r.without_volume());
                converted.add(r);
            }
            ResourceOp::Destroy(_) => {
                if !r.is_persistent_volume() {
                    return Err(invalid(format!("{} is not a persistent volume", one(r))));
                }
                consumed.add(r);
                converted.add(&r.without_volume());
            }
        }
    }
    if let ResourceOp::Rereserve { source, .. } = op {
        consumed = check_source(source, &converted)
            .map_err(|why| format!("Invalid RESERVE operation: {why}"))?;
    }
    Ok(Conversion {
        consumed,
        converted,
    })
}

/// A re-reservation's source: no persistent volumes, and the same quantities as the
/// resources it becomes once reservations are set aside.
fn check_source(source: &Resources, reserved: &Resources) -> Result<Resources, String> {
    if let Some(v) = source.iter().find(|r| r.is_persistent_volume()) {
        return Err(format!(
            "the source {} is a persistent volume, which cannot be re-reserved",
            one(v)
        ));
    }
    let bare = |resources: &Resources| {
        let mut out = Resources::new();
        for r in resources.iter() {
            let mut r = r.clone();
            r.reservations.clear();
            out.add(&r);
        }
        out
    };
    let (from, to) = (bare(source), bare(reserved));
    if !(from.contains(&to) && to.contains(&from)) {
        return Err(format!(
            "the source {source} and the resources {reserved} differ in more than their reservations"
        ));
    }
    Ok(source.clone())
}

fn one(r: &Resource) -> Resources {
    Resources::from_list(vec![r.clone()]).unwrap_or_default()
}

fn check_reserve(r: &Resource, requester: Requester) -> Result<(), String> {
    let Some(top) = r.reservations.last() else {
        return Err(format!("{} is not reserved for any role", one(r)));
    };
    if !top.is_dynamic() {
        return Err(format!(
            "the reservation of {} must be DYNAMIC (static reservations come from the agent's --resources)",
            one(r)
        ));
    }
    if r.is_persistent_volume() {
        return Err(format!(
            "{} is a persistent volume; reserve the disk before creating the volume",
            one(r)
        ));
    }
    let role = r.reservation_role();
    validate_role(role).map_err(|e| e.message)?;
    if let Requester::Framework {
        role: allocated,
        principal,
        ..
    } = requester
    {
        if role != allocated {
            return Err(format!(
                "{} is reserved for role '{role}' but the offer is allocated to role '{allocated}'",
                one(r)
            ));
        }
        check_principal("reservation", top.principal.as_deref(), principal)?;
    }
    Ok(())
}

fn check_create(r: &Resource, requester: Requester) -> Result<(), String> {
    let disk = r.disk.as_ref();
    let (Some(persistence), Some(volume)) = (
        disk.and_then(|d| d.persistence.as_ref()),
        disk.and_then(|d| d.volume.as_ref()),
    ) else {
        return Err(format!(
            "{} needs 'disk.persistence' and 'disk.volume' to be a persistent volume",
            one(r)
        ));
    };
    if r.is_unreserved() {
        return Err(format!(
            "persistent volume '{}' cannot be created from unreserved resources; RESERVE the disk first",
            persistence.id
        ));
    }
    if persistence.id == "." || persistence.id == ".." || persistence.id.contains(['/', '\0']) {
        return Err(format!(
            "persistent volume id '{}' must be usable as a directory name",
            persistence.id
        ));
    }
    let path = std::path::Path::new(&volume.container_path);
    let escapes = path.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if volume.container_path.is_empty() || escapes {
        return Err(format!(
            "the container_path '{}' of persistent volume '{}' must be a relative path inside the sandbox",
            volume.container_path, persistence.id
        ));
    }
    if volume.host_path.is_some() {
        return Err(format!(
            "persistent volume '{}' must not set 'host_path'",
            persistence.id
        ));
    }
    if let Requester::Framework { principal, .. } = requester {
        check_principal(
            "persistent volume",
            persistence.principal.as_deref(),
            principal,
        )?;
    }
    Ok(())
}

/// A framework may only act in its own principal's name (or in none without one).
fn check_principal(what: &str, named: Option<&str>, own: Option<&str>) -> Result<(), String> {
    match (named, own) {
        (Some(named), Some(own)) if named != own => Err(format!(
            "the {what} names principal '{named}' but the framework's principal is '{own}'"
        )),
        (None, Some(own)) => Err(format!(
            "the {what} must name the framework's principal '{own}'"
        )),
        (Some(named), None) => Err(format!(
            "the {what} names principal '{named}' but the framework has no principal"
        )),
        _ => Ok(()),
    }
}

impl Core {
    /// A resource operation in an ACCEPT, applied to what is left of the offers; an
    /// invalid one is dropped with a warning (as Mesos does) and changes nothing.
    pub(super) fn accept_resource_op(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        remaining: &mut Resources,
        op: Result<ResourceOp, String>,
        operation_id: Option<&OperationId>,
    ) {
        let result = op.and_then(|op| {
            let framework = self.frameworks.get(framework_id).expect("caller checked");
            let requester = Requester::Framework {
                role,
                principal: framework.info.principal.as_deref(),
                refinement: framework
                    .info
                    .has_capability(CapabilityType::ReservationRefinement),
            };
            let agent = self.agents.get(agent_id).expect("caller checked");
            let conversion = convert(&op, requester, &volumes_of(agent))?;
            let shared_in_use = conversion
                .consumed
                .iter()
                .filter(|r| r.is_shared())
                .find(|r| agent.used_total().iter().any(|u| u == *r));
            if let (ResourceOp::Destroy(_), Some(volume)) = (&op, shared_in_use) {
                return Err(format!(
                    "Invalid DESTROY operation: the shared persistent volume {} is in use by tasks",
                    one(volume)
                ));
            }
            if !remaining.contains(&conversion.consumed) {
                let in_use = matches!(op, ResourceOp::Destroy(_))
                    && agent.used_total().contains(&conversion.consumed);
                return Err(if in_use {
                    format!(
                        "Invalid DESTROY operation: the persistent volumes {} are in use by tasks",
                        conversion.consumed
                    )
                } else {
                    format!(
                        "Invalid {} operation: {} are not in the offered resources {remaining}",
                        op.name(),
                        conversion.consumed
                    )
                });
            }
            if op.reserves() {
                self.check_reserve_quota(&conversion.converted, None)?;
            }
            Ok(conversion)
        });
        match result {
            Ok(conversion) => {
                remaining.subtract_all(&conversion.consumed);
                remaining.add_all(&conversion.converted);
                self.apply_conversion(agent_id, &conversion);
                self.operation_feedback(
                    framework_id,
                    operation_id,
                    Some(agent_id),
                    Outcome::Finished(&conversion.converted, role),
                );
            }
            Err(message) => {
                self.count("master/invalid_operations");
                tracing::warn!(framework = %framework_id, agent = %agent_id, "{message}; dropped");
                self.operation_feedback(
                    framework_id,
                    operation_id,
                    Some(agent_id),
                    Outcome::Error(message),
                );
            }
        }
    }

    /// RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES, DESTROY_VOLUMES: offers
    /// holding the resources are rescinded; 409 when they cannot be freed, 400 when a
    /// reservation would go beyond a quota limit (checked once the resources are free).
    pub fn operator_resource_op(
        &mut self,
        agent_id: &AgentId,
        op: ResourceOp,
    ) -> Result<(), ApiError> {
        let Some(agent) = self.agents.get(agent_id) else {
            return Err(ApiError::not_found(format!("Agent '{agent_id}' not found")));
        };
        let conversion =
            convert(&op, Requester::Operator, &volumes_of(agent)).map_err(ApiError::bad_request)?;
        if agent.link != AgentLink::Connected {
            return Err(ApiError::conflict(format!(
                "Agent '{agent_id}' is not connected; try again once it is"
            )));
        }
        let mut free = agent.total().clone();
        free.subtract_all(&agent.used_total());
        if !free.contains(&conversion.consumed) {
            return Err(ApiError::conflict(
                if agent.total().contains(&conversion.consumed) {
                    format!(
                        "{} cannot be freed on agent '{agent_id}': they are in use by tasks",
                        conversion.consumed
                    )
                } else {
                    format!(
                        "Agent '{agent_id}' does not have {} (it has {})",
                        conversion.consumed,
                        agent.total()
                    )
                },
            ));
        }
        let mut offer_ids: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| &o.offer.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        while !self.agents[agent_id]
            .available()
            .contains(&conversion.consumed)
        {
            let Some(offer_id) = offer_ids.pop() else {
                unreachable!("free resources are available once no offer holds them");
            };
            self.rescind_offer(&offer_id);
        }
        if op.reserves() {
            self.check_reserve_quota(&conversion.converted, Some(&conversion.consumed))
                .map_err(ApiError::bad_request)?;
        }
        self.apply_conversion(agent_id, &conversion);
        self.count(match op {
            ResourceOp::Reserve(_) | ResourceOp::Rereserve { .. } => {
                "master/operator_reserve_resources"
            }
            ResourceOp::Unreserve(_) => "master/operator_unreserve_resources",
            ResourceOp::Create(_) => "master/operator_create_volumes",
            ResourceOp::Destroy(_) => "master/operator_destroy_volumes",
        });
        Ok(())
    }

    /// Applies a checked conversion to the agent's total; the agent's checkpointed
    /// resources go to the registry, then to the agent.
    fn apply_conversion(&mut self, agent_id: &AgentId, conversion: &Conversion) {
        let agent = self.agents.get_mut(agent_id).expect("caller checked");
        agent
            .holdings
            .convert(&conversion.consumed, &conversion.converted);
        let checkpointed = agent.total().checkpointed();
        self.persist_checkpointed(agent_id, checkpointed.clone());
        self.send_checkpointed(agent_id, checkpointed);
    }

    /// Stores an agent's checkpointed resources in the registry.
    pub(super) fn persist_checkpointed(&mut self, agent_id: &AgentId, checkpointed: Resources) {
        self.emit(Effect::Persist(RegistryChange::PutCheckpointedResources(
            agent_id.clone(),
            checkpointed,
        )));
    }

    /// Sends an agent all its checkpointed resources.
    pub(super) fn send_checkpointed(&mut self, agent_id: &AgentId, checkpointed: Resources) {
        self.send_to_agent(
            agent_id,
            ToAgent::CheckpointResources(CheckpointResources {
                resources: checkpointed.into_vec(),
            }),
        );
    }
}

/// An agent's total: its static resources (`AgentInfo.resources`) with its checkpointed
/// ones applied. Checkpointed resources that do not fit (the agent shrank) are dropped
/// with an error in the log.
pub(super) fn agent_total(
    agent_id: &AgentId,
    info: &AgentInfo,
    checkpointed: &Resources,
) -> Resources {
    let base = Resources::from_list(info.resources.clone()).unwrap_or_default();
    base.apply_checkpointed(checkpointed).unwrap_or_else(|e| {
        tracing::error!(agent = %agent_id, "dropping the agent's checkpointed resources: {e}");
        base
    })
}

/// The persistent volumes an agent has.
fn volumes_of(agent: &Agent) -> Resources {
    let mut volumes = Resources::new();
    for v in agent.total().iter().filter(|r| r.is_persistent_volume()) {
        volumes.add(v);
    }
    volumes
}
