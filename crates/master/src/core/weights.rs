//! Role weights (Mesos's `--weights`, UPDATE_WEIGHTS and GET_WEIGHTS).
//!
//! Weights changed through the API are stored in the registry. At startup, as in Mesos
//! (`Master::_recover`), weights found in the registry win and `--weights` is ignored as
//! a whole (with a warning); when the registry holds none, the `--weights` values are
//! used and stored in the registry.

use super::*;
use serde::{Deserialize, Serialize};

/// One role's weight, as the API carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightInfo {
    pub role: String,
    pub weight: f64,
}

/// Checks a role and its weight (a valid role name, a finite weight above 0).
pub fn validate_weight(role: &str, weight: f64) -> Result<(), ApiError> {
    validate_role(role)?;
    if !(weight.is_finite() && weight > 0.0) {
        return Err(ApiError::bad_request(format!(
            "Invalid weight {weight} for role '{role}': weights must be positive"
        )));
    }
    Ok(())
}

/// Parses `--weights` (`role1=2,role2=0.5`; empty means none).
pub fn parse_weights(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut weights = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (role, weight) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not role=weight"))?;
        let role = role.trim();
        let weight: f64 = weight
            .trim()
            .parse()
            .map_err(|_| format!("'{}' is not a number (in '{item}')", weight.trim()))?;
        validate_weight(role, weight).map_err(|e| e.message)?;
        if weights.insert(role.to_string(), weight).is_some() {
            return Err(format!("role '{role}' is given twice"));
        }
    }
    Ok(weights)
}

/// Formats weights as `--weights` takes them.
pub fn format_weights(weights: &BTreeMap<String, f64>) -> String {
    weights
        .iter()
        .map(|(role, weight)| format!("{role}={weight}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The weights to start with, from `--weights` and the registry, and the registry
/// change to store first (the flag's weights, when the registry holds none).
pub fn initial_weights(
    flag: &BTreeMap<String, f64>,
    registry: &BTreeMap<String, f64>,
) -> (BTreeMap<String, f64>, Option<RegistryChange>) {
    if !registry.is_empty() || flag.is_empty() {
        return (registry.clone(), None);
    }
    (flag.clone(), Some(RegistryChange::PutWeights(flag.clone())))
}

impl Core {
    /// UPDATE_WEIGHTS: all or nothing; stored in the registry before it is answered.
    pub fn update_weights(&mut self, infos: &[WeightInfo]) -> Result<(), ApiError> {
        for info in infos {
            validate_weight(&info.role, info.weight)?;
        }
        let update: BTreeMap<String, f64> =
            infos.iter().map(|i| (i.role.clone(), i.weight)).collect();
        if update.is_empty() {
            return Ok(());
        }
        self.weights.extend(update.clone());
        self.emit(Effect::Persist(RegistryChange::PutWeights(update)));
        Ok(())
    }

    /// GET_WEIGHTS: every role with a weight set.
    pub fn weight_infos(&self) -> Vec<WeightInfo> {
        self.weights
            .iter()
            .map(|(role, weight)| WeightInfo {
                role: role.clone(),
                weight: *weight,
            })
            .collect()
    }

    /// A role's weight (1 unless set).
    pub fn weight(&self, role: &str) -> f64 {
        self.weights.get(role).copied().unwrap_or(1.0)
    }
}
