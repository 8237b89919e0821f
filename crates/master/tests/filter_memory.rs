//! How much heap the master's core keeps per refuse filter, counted by a global
//! allocator: a framework declines every agent's offer with a long refuse, as a load
//! framework of the state benchmark does when it is done, so every filter refuses the
//! same resources.

mod common;

use common::{core_with_agents, live_heap, offers, T0};
use meseta_api::{Filters, FrameworkId, FrameworkInfo};
use meseta_master::core::Core;

/// What one filter may cost the core (heap bytes: its agent in the framework's list and
/// in the allocator's index, and a share of the refused resources).
const BUDGET_PER_FILTER: isize = 600;

const AGENTS: usize = 1_000;

/// Refuse filters are capped at a year.
const YEAR: f64 = 365.0 * 24.0 * 3600.0;

/// Offers every agent to `framework`, which suppresses its offers and declines them all,
/// refusing them for `refuse_seconds`; then a pass that offers nothing.
fn decline_everything(core: &mut Core, framework: &FrameworkId, refuse_seconds: f64) {
    core.allocate(T0);
    let ids: Vec<_> = offers(&core.drain_effects())
        .into_iter()
        .map(|(_, offer)| offer.id)
        .collect();
    assert_eq!(ids.len(), AGENTS);
    core.suppress(framework, vec![]);
    core.decline(T0, framework, &ids, Some(&Filters { refuse_seconds }));
    core.allocate(T0);
    assert!(offers(&core.drain_effects()).is_empty());
}

#[test]
fn a_refuse_filter_costs_the_core_at_most_its_budget() {
    let mut core = core_with_agents(AGENTS);
    let info: FrameworkInfo = serde_json::from_value(serde_json::json!({
        "user": "root", "name": "load", "failover_timeout": 0.0
    }))
    .unwrap();
    let framework = core.subscribe(T0, "S".to_string(), info, vec![]).unwrap();
    core.drain_effects();
    // The same state but for the filters: every offer declined without one, and the
    // framework suppressed.
    decline_everything(&mut core, &framework, 0.0);
    assert!(core.frameworks[&framework].filters.is_empty());
    let before = live_heap();
    core.revive(&framework, vec![]);
    decline_everything(&mut core, &framework, YEAR);
    let per_filter = (live_heap() - before) / AGENTS as isize;
    eprintln!("heap bytes per refuse filter: {per_filter}");
    assert_eq!(core.frameworks[&framework].filters.len(), AGENTS);
    assert!(
        per_filter <= BUDGET_PER_FILTER,
        "{per_filter} heap bytes per refuse filter"
    );
}
