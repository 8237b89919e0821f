//! [`Snapshot`]: what the state views read (agents with their tasks and executors,
//! frameworks with their completed tasks, offers), taken on the service thread at the cost
//! of copying map keys and pointers; the views then read it on another thread while the
//! core goes on changing (an entity changed after the snapshot is copied on write).

use super::{Agent, Core, Framework, OfferEntry, Shared};
use meseta_api::{AgentId, FrameworkId, MasterInfo, OfferId};
use std::collections::{BTreeMap, VecDeque};

/// The core's state as the views read it, at one moment.
#[derive(Clone)]
pub struct Snapshot {
    pub master_info: MasterInfo,
    pub start_time: f64,
    pub agents: BTreeMap<AgentId, Shared<Agent>>,
    pub frameworks: BTreeMap<FrameworkId, Shared<Framework>>,
    pub completed_frameworks: VecDeque<Shared<Framework>>,
    pub offers: BTreeMap<OfferId, Shared<OfferEntry>>,
}

impl Core {
    /// A snapshot of what the views read, as it is now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            master_info: self.master_info.clone(),
            start_time: self.start_time,
            agents: self.agents.clone(),
            frameworks: self.frameworks.clone(),
            completed_frameworks: self.completed_frameworks.clone(),
            offers: self.offers.clone(),
        }
    }
}
