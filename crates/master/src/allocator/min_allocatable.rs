//! `--min_allocatable_resources`: parsing, rendering and the check an offer must pass.

use meseta_api::Resources;
use std::collections::BTreeMap;

/// Mesos's `--min_allocatable_resources` default: `cpus:0.01|mem:32`.
const MIN_CPUS: f64 = 0.01;
const MIN_MEM: f64 = 32.0;

/// One alternative of `--min_allocatable_resources`: scalar quantities by name.
pub type MinQuantities = BTreeMap<String, f64>;

/// The default `--min_allocatable_resources`: `cpus:0.01|mem:32`.
pub fn default_min_allocatable() -> Vec<MinQuantities> {
    vec![
        [("cpus".to_string(), MIN_CPUS)].into_iter().collect(),
        [("mem".to_string(), MIN_MEM)].into_iter().collect(),
    ]
}

/// Parses `--min_allocatable_resources` as Mesos does: alternatives separated by `|`,
/// each a resource text of scalar quantities (`cpus:1;mem:32`). An offer is allowed when
/// it holds every quantity of at least one alternative.
pub fn parse_min_allocatable(text: &str) -> Result<Vec<MinQuantities>, String> {
    let mut alternatives = Vec::new();
    for part in text.split('|') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!(
                "Invalid --min_allocatable_resources '{text}': empty alternative"
            ));
        }
        let resources = Resources::parse(part)
            .map_err(|e| format!("Invalid --min_allocatable_resources '{text}': {e}"))?;
        let mut quantities = MinQuantities::new();
        for r in resources.iter() {
            let Some(scalar) = r.scalar.as_ref() else {
                return Err(format!(
                    "Invalid --min_allocatable_resources '{text}': '{}' is not a scalar resource",
                    r.name
                ));
            };
            if !(scalar.value.is_finite() && scalar.value >= 0.0) {
                return Err(format!(
                    "Invalid --min_allocatable_resources '{text}': '{}' must be a non-negative number",
                    r.name
                ));
            }
            *quantities.entry(r.name.clone()).or_insert(0.0) += scalar.value;
        }
        if quantities.is_empty() {
            return Err(format!(
                "Invalid --min_allocatable_resources '{text}': empty alternative"
            ));
        }
        alternatives.push(quantities);
    }
    Ok(alternatives)
}

/// Renders alternatives back in flag form (`cpus:0.01|mem:32`).
pub fn format_min_allocatable(alternatives: &[MinQuantities]) -> String {
    alternatives
        .iter()
        .map(|q| {
            q.iter()
                .map(|(n, v)| format!("{n}:{v}"))
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Whether `resources` holds every quantity of at least one alternative (always, when
/// there are none).
pub fn allocatable(resources: &Resources, min: &[MinQuantities]) -> bool {
    min.is_empty()
        || min.iter().any(|alternative| {
            alternative
                .iter()
                .all(|(name, quantity)| resources.scalar(name) >= *quantity)
        })
}
