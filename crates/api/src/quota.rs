//! Quota wire types (Mesos 1.9+): `QuotaConfig` (per-role guarantees and limits, scalar
//! quantities by resource name), the UPDATE_QUOTA payload, and the deprecated
//! `QuotaRequest` of SET_QUOTA.

use crate::resources::{Resource, Scalar};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Scalar quantities by resource name (`{"cpus":{"value":2}}` on the wire).
pub type ScalarMap = BTreeMap<String, Scalar>;

/// `quota.QuotaConfig`: what a role is guaranteed and what it may never exceed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuotaConfig {
    pub role: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub guarantees: ScalarMap,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: ScalarMap,
}

impl QuotaConfig {
    /// A config with neither guarantees nor limits: the default, which removes a quota.
    pub fn is_default(&self) -> bool {
        self.guarantees.is_empty() && self.limits.is_empty()
    }
}

/// `master.Call.UpdateQuota`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateQuota {
    /// Skip the capacity checks (guarantees overcommitting the cluster, limits below
    /// what the role consumes now).
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub quota_configs: Vec<QuotaConfig>,
}

/// `quota.QuotaRequest` (deprecated SET_QUOTA): a guarantee, which since Mesos 1.9 is
/// also the limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuotaRequest {
    #[serde(default)]
    pub force: bool,
    pub role: String,
    #[serde(default)]
    pub guarantee: Vec<Resource>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mesos_json() {
        let update: UpdateQuota = serde_json::from_str(
            r#"{"force":true,"quota_configs":[{"role":"dev","guarantees":{"cpus":{"value":2}},"limits":{"cpus":{"value":"4"},"mem":{"value":512}}}]}"#,
        )
        .unwrap();
        assert!(update.force);
        let config = &update.quota_configs[0];
        assert_eq!(config.role, "dev");
        assert_eq!(config.guarantees["cpus"].value, 2.0);
        assert_eq!(config.limits["cpus"].value, 4.0);
        assert_eq!(
            serde_json::to_value(config).unwrap(),
            serde_json::json!({"role":"dev","guarantees":{"cpus":{"value":2.0}},"limits":{"cpus":{"value":4.0},"mem":{"value":512.0}}})
        );
        let empty: QuotaConfig = serde_json::from_str(r#"{"role":"x"}"#).unwrap();
        assert!(empty.is_default());
    }
}
