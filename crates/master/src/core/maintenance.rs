//! Maintenance primitives: the schedule (UPDATE/GET_MAINTENANCE_SCHEDULE), machine modes
//! (UP → DRAINING when scheduled, DOWN with START_MAINTENANCE, UP again with
//! STOP_MAINTENANCE), the unavailability carried by offers from draining machines, and
//! inverse offers asking the frameworks on those machines to move off, whose answers
//! GET_MAINTENANCE_STATUS reports.
//!
//! A machine is named by hostname and IP, compared as Mesos does: both fields must match
//! what the agent announces (a field left out is empty) and hostnames ignore case. The
//! schedule and the DOWN machines are kept in the registry.

use super::agents::AgentRemoval;
use super::*;
use crate::registry::MaintenanceRecord;
use meseta_api::maintenance::{
    ClusterStatus, DrainingMachine, InverseOffer, InverseOfferAnswer, InverseOfferStatus,
    InverseOffers, MachineId, MachineMode, Schedule, TimeInfo, Unavailability,
};
use meseta_api::scheduler::Event;
use std::net::IpAddr;

/// How long a framework is left alone after answering an inverse offer when its answer
/// carries no filter (Mesos's default `refuse_seconds`).
const DEFAULT_INVERSE_REFUSE_SECS: f64 = 5.0;

/// The master's maintenance state.
#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    pub schedule: Schedule,
    /// Scheduled or down machines (normalized ids): their mode and unavailability.
    pub machines: BTreeMap<MachineId, Machine>,
    /// Outstanding inverse offers.
    pub inverse_offers: BTreeMap<OfferId, InverseOfferEntry>,
    /// (framework, agent) → when the framework may get an inverse offer for it again.
    pub inverse_filters: BTreeMap<(FrameworkId, AgentId), f64>,
}

/// A scheduled or down machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub mode: MachineMode,
    pub unavailability: Unavailability,
    /// The latest answer of each framework asked about this machine.
    pub statuses: BTreeMap<FrameworkId, InverseOfferStatus>,
}

/// An outstanding inverse offer.
#[derive(Debug, Clone, PartialEq)]
pub struct InverseOfferEntry {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub machine: MachineId,
}

impl Maintenance {
    /// The state a registry record describes.
    pub fn from_record(record: MaintenanceRecord) -> Maintenance {
        let down: BTreeSet<MachineId> = record.down.iter().map(MachineId::normalized).collect();
        let mut machines = BTreeMap::new();
        for window in &record.schedule.windows {
            for id in &window.machine_ids {
                let id = id.normalized();
                let mode = if down.contains(&id) {
                    MachineMode::Down
                } else {
                    MachineMode::Draining
                };
                machines.insert(
                    id,
                    Machine {
                        mode,
                        unavailability: window.unavailability,
                        statuses: BTreeMap::new(),
                    },
                );
            }
        }
        Maintenance {
            schedule: record.schedule,
            machines,
            ..Maintenance::default()
        }
    }

    fn record(&self) -> MaintenanceRecord {
        MaintenanceRecord {
            schedule: self.schedule.clone(),
            down: self
                .machines
                .iter()
                .filter(|(_, m)| m.mode == MachineMode::Down)
                .map(|(id, _)| id.clone())
                .collect(),
        }
    }

    /// Whether the machine is in maintenance (its agents may not register).
    pub fn is_down(&self, machine: &MachineId) -> bool {
        self.machines
            .get(machine)
            .is_some_and(|m| m.mode == MachineMode::Down)
    }

    /// The unavailability of a draining machine.
    pub fn draining(&self, machine: &MachineId) -> Option<Unavailability> {
        self.machines
            .get(machine)
            .filter(|m| m.mode == MachineMode::Draining)
            .map(|m| m.unavailability)
    }
}

/// The machine an agent runs on: its hostname and the IP of its endpoint.
pub fn agent_machine(info: &AgentInfo, endpoint: &str) -> MachineId {
    let ip = endpoint
        .rsplit_once(':')
        .map_or(endpoint, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    MachineId {
        hostname: Some(info.hostname.clone()),
        ip: Some(ip.to_string()),
    }
    .normalized()
}

/// Checks machine ids as Mesos does: at least a hostname or an IP, a well-formed IP,
/// each machine once. Returns them normalized.
fn validate_machines(ids: &[MachineId]) -> Result<Vec<MachineId>, ApiError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        let hostname = id.hostname.as_deref().unwrap_or_default();
        let ip = id.ip.as_deref().unwrap_or_default();
        if hostname.is_empty() && ip.is_empty() {
            return Err(ApiError::bad_request(
                "A machine must have a hostname or an IP",
            ));
        }
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Err(ApiError::bad_request(format!(
                "Machine '{id}' has an invalid IP '{ip}'"
            )));
        }
        if !seen.insert(id.normalized()) {
            return Err(ApiError::bad_request(format!(
                "Machine '{id}' appears more than once"
            )));
        }
    }
    Ok(seen.into_iter().collect())
}

impl Core {
    /// UPDATE_MAINTENANCE_SCHEDULE: machines added are DRAINING, machines left out go
    /// back UP; a DOWN machine must stay in the schedule.
    pub fn update_maintenance_schedule(
        &mut self,
        now: f64,
        schedule: Schedule,
    ) -> Result<(), ApiError> {
        let mut scheduled: BTreeMap<MachineId, Unavailability> = BTreeMap::new();
        for window in &schedule.windows {
            if window.machine_ids.is_empty() {
                return Err(ApiError::bad_request(
                    "A maintenance window must name at least one machine",
                ));
            }
            for id in validate_machines(&window.machine_ids)? {
                if scheduled
                    .insert(id.clone(), window.unavailability)
                    .is_some()
                {
                    return Err(ApiError::bad_request(format!(
                        "Machine '{id}' appears in more than one window"
                    )));
                }
            }
        }
        if let Some((id, _)) = self
            .maintenance
            .machines
            .iter()
            .find(|(id, m)| m.mode == MachineMode::Down && !scheduled.contains_key(*id))
        {
            return Err(ApiError::bad_request(format!(
                "Machine '{id}' is down and must stay in the schedule; stop its maintenance first"
            )));
        }
        let mut changed: BTreeSet<MachineId> = BTreeSet::new();
        let old = std::mem::take(&mut self.maintenance.machines);
        for (id, machine) in &old {
            if scheduled.get(id) != Some(&machine.unavailability) {
                changed.insert(id.clone());
            }
        }
        for (id, unavailability) in scheduled {
            let machine = match old.get(&id) {
                Some(previous) => Machine {
                    unavailability,
                    ..previous.clone()
                },
                None => {
                    changed.insert(id.clone());
                    Machine {
                        mode: MachineMode::Draining,
                        unavailability,
                        statuses: BTreeMap::new(),
                    }
                }
            };
            self.maintenance.machines.insert(id, machine);
        }
        self.maintenance.schedule = schedule;
        self.emit(Effect::Persist(RegistryChange::PutMaintenance(
            self.maintenance.record(),
        )));
        // Offers and inverse offers from machines whose unavailability changed are made
        // again with the new one.
        for agent_id in self.agents_on(&changed) {
            self.rescind_agent_offers(&agent_id);
            self.rescind_inverse_offers(|entry| entry.agent_id == agent_id);
        }
        self.allocate(now);
        Ok(())
    }

    /// START_MAINTENANCE: the machines (all scheduled) go DOWN; their agents are told to
    /// shut down and removed, their tasks lost.
    pub fn start_maintenance(&mut self, now: f64, machines: &[MachineId]) -> Result<(), ApiError> {
        let ids = self.validate_scheduled(machines)?;
        for id in &ids {
            if let Some(machine) = self.maintenance.machines.get_mut(id) {
                machine.mode = MachineMode::Down;
                machine.statuses.clear();
            }
        }
        self.emit(Effect::Persist(RegistryChange::PutMaintenance(
            self.maintenance.record(),
        )));
        let set: BTreeSet<MachineId> = ids.into_iter().collect();
        for agent_id in self.agents_on(&set) {
            self.rescind_inverse_offers(|entry| entry.agent_id == agent_id);
            self.remove_agent(now, &agent_id, AgentRemoval::Maintenance);
        }
        Ok(())
    }

    /// STOP_MAINTENANCE: the machines (all DOWN) go UP and leave the schedule.
    pub fn stop_maintenance(&mut self, now: f64, machines: &[MachineId]) -> Result<(), ApiError> {
        let ids = self.validate_scheduled(machines)?;
        if let Some(id) = ids.iter().find(|id| !self.maintenance.is_down(id)) {
            return Err(ApiError::bad_request(format!(
                "Machine '{id}' is not in maintenance (DOWN)"
            )));
        }
        for id in &ids {
            self.maintenance.machines.remove(id);
        }
        for window in &mut self.maintenance.schedule.windows {
            window
                .machine_ids
                .retain(|m| !ids.contains(&m.normalized()));
        }
        self.maintenance
            .schedule
            .windows
            .retain(|w| !w.machine_ids.is_empty());
        self.emit(Effect::Persist(RegistryChange::PutMaintenance(
            self.maintenance.record(),
        )));
        self.allocate(now);
        Ok(())
    }

    /// GET_MAINTENANCE_STATUS.
    pub fn maintenance_status(&self) -> ClusterStatus {
        let mut status = ClusterStatus::default();
        for (id, machine) in &self.maintenance.machines {
            match machine.mode {
                MachineMode::Down => status.down_machines.push(id.clone()),
                _ => status.draining_machines.push(DrainingMachine {
                    id: id.clone(),
                    statuses: machine.statuses.values().cloned().collect(),
                }),
            }
        }
        status
    }

    /// Whether an agent announcing `info` at `endpoint` is on a machine in maintenance.
    pub fn machine_is_down(&self, info: &AgentInfo, endpoint: &str) -> bool {
        !self.maintenance.machines.is_empty()
            && self.maintenance.is_down(&agent_machine(info, endpoint))
    }

    /// The unavailability offers from this agent carry, when its machine is draining.
    pub(super) fn agent_unavailability(&self, agent: &Agent) -> Option<Unavailability> {
        if self.maintenance.machines.is_empty() {
            return None;
        }
        self.maintenance
            .draining(&agent_machine(&agent.info, &agent.endpoint))
    }

    /// ACCEPT_INVERSE_OFFERS and DECLINE_INVERSE_OFFERS: records the framework's answer
    /// for the machine and leaves it alone for `refuse_seconds`. Unknown or foreign ids
    /// are ignored, as Mesos does.
    pub fn answer_inverse_offers(
        &mut self,
        now: f64,
        framework_id: &FrameworkId,
        ids: &[OfferId],
        answer: InverseOfferAnswer,
        refuse_seconds: Option<f64>,
    ) {
        let refuse = refuse_seconds.unwrap_or(DEFAULT_INVERSE_REFUSE_SECS);
        for id in ids {
            let Some(entry) = self.maintenance.inverse_offers.get(id) else {
                continue;
            };
            if &entry.framework_id != framework_id {
                continue;
            }
            let entry = self.maintenance.inverse_offers.remove(id).expect("checked");
            if let Some(machine) = self.maintenance.machines.get_mut(&entry.machine) {
                machine.statuses.insert(
                    framework_id.clone(),
                    InverseOfferStatus {
                        status: answer,
                        framework_id: framework_id.clone(),
                        timestamp: TimeInfo::from_secs_f64(now),
                    },
                );
            }
            if refuse > 0.0 {
                self.maintenance
                    .inverse_filters
                    .insert((framework_id.clone(), entry.agent_id), now + refuse);
            }
        }
    }

    /// Sends inverse offers to the frameworks using resources on agents of draining
    /// machines that have none outstanding for that agent (and no filter against one).
    pub(super) fn make_inverse_offers(&mut self, now: f64) {
        if !self
            .maintenance
            .machines
            .values()
            .any(|m| m.mode == MachineMode::Draining)
        {
            return;
        }
        self.maintenance
            .inverse_filters
            .retain(|_, expires| *expires > now);
        let frameworks = &self.frameworks;
        self.maintenance
            .inverse_offers
            .retain(|_, e| frameworks.contains_key(&e.framework_id));
        let outstanding: BTreeSet<(FrameworkId, AgentId)> = self
            .maintenance
            .inverse_offers
            .values()
            .map(|e| (e.framework_id.clone(), e.agent_id.clone()))
            .collect();
        let mut wanted = Vec::new();
        for agent in self.agents.values() {
            let machine = agent_machine(&agent.info, &agent.endpoint);
            let Some(unavailability) = self.maintenance.draining(&machine) else {
                continue;
            };
            for framework_id in agent.holdings.used().keys() {
                let key = (framework_id.clone(), agent.id().clone());
                let connected = self
                    .frameworks
                    .get(framework_id)
                    .is_some_and(|f| f.connected());
                if connected
                    && !outstanding.contains(&key)
                    && !self.maintenance.inverse_filters.contains_key(&key)
                {
                    wanted.push((key, machine.clone(), unavailability));
                }
            }
        }
        for ((framework_id, agent_id), machine, unavailability) in wanted {
            let id = self.new_offer_id();
            self.maintenance.inverse_offers.insert(
                id.clone(),
                InverseOfferEntry {
                    framework_id: framework_id.clone(),
                    agent_id: agent_id.clone(),
                    machine,
                },
            );
            self.count("master/inverse_offers_made");
            let inverse_offers = vec![InverseOffer {
                id,
                framework_id: framework_id.clone(),
                agent_id: Some(agent_id),
                unavailability,
                resources: Vec::new(),
            }];
            self.send_to_framework(
                &framework_id,
                Event::InverseOffers(InverseOffers { inverse_offers }),
            );
        }
    }

    /// Rescinds the outstanding inverse offers `which` selects.
    fn rescind_inverse_offers(&mut self, which: impl Fn(&InverseOfferEntry) -> bool) {
        let ids: Vec<OfferId> = self
            .maintenance
            .inverse_offers
            .iter()
            .filter(|(_, e)| which(e))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let entry = self.maintenance.inverse_offers.remove(&id).expect("listed");
            self.send_to_framework(
                &entry.framework_id,
                Event::RescindInverseOffer(meseta_api::scheduler::RescindInverseOffer {
                    inverse_offer_id: id,
                }),
            );
        }
    }

    /// The agents on these machines.
    fn agents_on(&self, machines: &BTreeSet<MachineId>) -> Vec<AgentId> {
        self.agents
            .values()
            .filter(|a| machines.contains(&agent_machine(&a.info, &a.endpoint)))
            .map(|a| a.id().clone())
            .collect()
    }

    /// Validates a START/STOP_MAINTENANCE list: not empty, well-formed, each machine once
    /// and in the schedule.
    fn validate_scheduled(&self, machines: &[MachineId]) -> Result<Vec<MachineId>, ApiError> {
        if machines.is_empty() {
            return Err(ApiError::bad_request("The list of machines is empty"));
        }
        let ids = validate_machines(machines)?;
        if let Some(id) = ids
            .iter()
            .find(|id| !self.maintenance.machines.contains_key(*id))
        {
            return Err(ApiError::bad_request(format!(
                "Machine '{id}' is not in the maintenance schedule"
            )));
        }
        Ok(ids)
    }
}
