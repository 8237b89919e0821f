//! The executor's configuration, read from the environment the agent gives it
//! (`MESOS_AGENT_ENDPOINT`, `MESOS_DOMAIN_SOCKET`, `MESOS_FRAMEWORK_ID`,
//! `MESOS_EXECUTOR_ID`, `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, …).

use meseta_api::{duration, ExecutorId, FrameworkId};
use meseta_containerizer::{runtime::IMAGE_RUNTIME_VAR, ImageConfig};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// The variable holding the executor's authentication token.
const TOKEN_VARIABLE: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";
/// Mesos's default `MESOS_RECOVERY_TIMEOUT`.
const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Mesos's default `MESOS_SUBSCRIPTION_BACKOFF_MAX`.
const DEFAULT_SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Mesos's default `--executor_shutdown_grace_period`.
const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Why the environment does not describe an executor.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset.
    #[error("{0} is not set; the command executor is started by the agent, not by hand")]
    Missing(&'static str),
    /// A variable has a value we cannot use.
    #[error("{name}={value:?} is invalid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
}

/// What the agent told the executor through its environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The agent's `ip:port`.
    pub agent_endpoint: String,
    /// The agent's Unix socket for the executor API (`MESOS_DOMAIN_SOCKET`), tried
    /// before `agent_endpoint`.
    pub domain_socket: Option<PathBuf>,
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    /// The task's working directory: `MESOS_SANDBOX`, else `MESOS_DIRECTORY`, else `.`.
    pub sandbox: PathBuf,
    /// Whether the framework checkpoints (then the executor survives agent restarts).
    pub checkpoint: bool,
    /// How long to keep trying to reach a restarted agent.
    pub recovery_timeout: Duration,
    /// The longest pause between subscription attempts.
    pub subscription_backoff_max: Duration,
    /// How long the agent waits after SHUTDOWN before it destroys the container.
    pub shutdown_grace_period: Duration,
    /// The token the executor's calls carry (`MESOS_EXECUTOR_AUTHENTICATION_TOKEN`), when
    /// the agent gave one.
    pub authentication_token: Option<String>,
    /// The config of the image the executor runs its command task in, when the Linux
    /// launcher applies it (`docker/runtime`; from `MESETA_IMAGE_RUNTIME`).
    pub image: Option<ImageConfig>,
    /// The executor's environment, inherited by the task: all of it but the token,
    /// which (as in Mesos) tasks do not see, and the image's config.
    pub environment: Vec<(String, String)>,
}

impl Config {
    /// Reads the configuration from a list of environment variables.
    pub fn from_vars(vars: Vec<(String, String)>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let duration_or = |name: &'static str, default: Duration| match get(name) {
            None => Ok(default),
            Some(value) => {
                duration::parse(&value).map_err(|why| ConfigError::Invalid { name, value, why })
            }
        };
        let agent_endpoint = required("MESOS_AGENT_ENDPOINT")?;
        if !agent_endpoint.contains(':') {
            return Err(ConfigError::Invalid {
                name: "MESOS_AGENT_ENDPOINT",
                value: agent_endpoint,
                why: "expected ip:port".to_string(),
            });
        }
        let checkpoint = match get("MESOS_CHECKPOINT").as_deref() {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "MESOS_CHECKPOINT",
                    value: other.to_string(),
                    why: "expected 1 or 0".to_string(),
                })
            }
        };
        let sandbox = get("MESOS_SANDBOX")
            .or_else(|| get("MESOS_DIRECTORY"))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Config {
            agent_endpoint,
            domain_socket: get("MESOS_DOMAIN_SOCKET").map(PathBuf::from),
            framework_id: FrameworkId::new(required("MESOS_FRAMEWORK_ID")?),
            executor_id: ExecutorId::new(required("MESOS_EXECUTOR_ID")?),
            sandbox,
            checkpoint,
            recovery_timeout: duration_or("MESOS_RECOVERY_TIMEOUT", DEFAULT_RECOVERY_TIMEOUT)?,
            subscription_backoff_max: duration_or(
                "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                DEFAULT_SUBSCRIPTION_BACKOFF_MAX,
            )?,
            shutdown_grace_period: duration_or(
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
                DEFAULT_SHUTDOWN_GRACE_PERIOD,
            )?,
            authentication_token: get(TOKEN_VARIABLE),
            image: match get(IMAGE_RUNTIME_VAR) {
                None => None,
                Some(value) => {
                    Some(
                        serde_json::from_str(&value).map_err(|e| ConfigError::Invalid {
                            name: IMAGE_RUNTIME_VAR,
                            value,
                            why: e.to_string(),
                        })?,
                    )
                }
            },
            environment: vars
                .into_iter()
                .filter(|(k, _)| k != TOKEN_VARIABLE && k != IMAGE_RUNTIME_VAR)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_agent_environment() {
        let c = Config::from_vars(vars(&[
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_FRAMEWORK_ID", "f"),
            ("MESOS_EXECUTOR_ID", "e"),
            ("MESOS_DIRECTORY", "/d"),
            ("MESOS_CHECKPOINT", "1"),
            ("MESOS_RECOVERY_TIMEOUT", "1mins"),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "10secs"),
        ]))
        .unwrap();
        assert_eq!(c.agent_endpoint, "127.0.0.1:5051");
        assert_eq!(c.sandbox, PathBuf::from("/d"));
        assert!(c.checkpoint);
        assert_eq!(c.recovery_timeout, Duration::from_secs(60));
        assert_eq!(c.subscription_backoff_max, Duration::from_secs(2));
        assert_eq!(c.shutdown_grace_period, Duration::from_secs(10));
        assert_eq!(c.environment.len(), 7);
        assert_eq!(c.authentication_token, None);
        assert_eq!(c.domain_socket, None);
        let c = Config::from_vars(vars(&[
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_DOMAIN_SOCKET", "/w/agent.sock"),
            ("MESOS_FRAMEWORK_ID", "f"),
            ("MESOS_EXECUTOR_ID", "e"),
        ]))
        .unwrap();
        assert_eq!(c.domain_socket, Some(PathBuf::from("/w/agent.sock")));
    }

    #[test]
    fn the_token_is_kept_from_the_task() {
        let c = Config::from_vars(vars(&[
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_FRAMEWORK_ID", "f"),
            ("MESOS_EXECUTOR_ID", "e"),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "a.b.c"),
        ]))
        .unwrap();
        assert_eq!(c.authentication_token.as_deref(), Some("a.b.c"));
        assert!(
            c.environment.iter().all(|(k, _)| k != TOKEN_VARIABLE),
            "{:?}",
            c.environment
        );
    }

    #[test]
    fn the_image_config_is_for_the_task_launch_only() {
        let image =
            r#"{"entrypoint":["/bin/echo"],"cmd":[],"env":["A=1"],"working_dir":"/w","user":null}"#;
        let base = [
            ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
            ("MESOS_FRAMEWORK_ID", "f"),
            ("MESOS_EXECUTOR_ID", "e"),
        ];
        let c = Config::from_vars(vars(&[
            base[0],
            base[1],
            base[2],
            (IMAGE_RUNTIME_VAR, image),
        ]))
        .unwrap();
        let got = c.image.unwrap();
        assert_eq!(got.entrypoint, ["/bin/echo"]);
        assert_eq!(got.working_dir.as_deref(), Some("/w"));
        assert_eq!(c.environment.len(), 3, "{:?}", c.environment);
        let bad = Config::from_vars(vars(&[base[0], base[1], base[2], (IMAGE_RUNTIME_VAR, "[")]));
        assert!(
            matches!(bad, Err(ConfigError::Invalid { name, .. }) if name == IMAGE_RUNTIME_VAR),
            "{bad:?}"
        );
        let none = Config::from_vars(vars(&base)).unwrap();
        assert_eq!(none.image, None);
    }

    #[test]
    fn clear_errors() {
        assert_eq!(
            Config::from_vars(vars(&[("MESOS_FRAMEWORK_ID", "f")])),
            Err(ConfigError::Missing("MESOS_AGENT_ENDPOINT"))
        );
        let e = Config::from_vars(vars(&[
            ("MESOS_AGENT_ENDPOINT", "h:1"),
            ("MESOS_FRAMEWORK_ID", "f"),
            ("MESOS_EXECUTOR_ID", "e"),
            ("MESOS_RECOVERY_TIMEOUT", "soon"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("MESOS_RECOVERY_TIMEOUT"), "{e}");
        let c = Config::from_vars(vars(&[
            ("MESOS_AGENT_ENDPOINT", "h:1"),
            ("MESOS_FRAMEWORK_ID", "f"),
            ("MESOS_EXECUTOR_ID", "e"),
            ("MESOS_SANDBOX", "/s"),
            ("MESOS_DIRECTORY", "/d"),
        ]))
        .unwrap();
        assert_eq!(c.sandbox, PathBuf::from("/s"));
        assert!(!c.checkpoint);
    }
}
