//! The command executor (`meseta executor`), speaking `/api/v1/executor` to the agent that
//! started it, as Mesos's command executor does: it runs one task's command, reports its
//! states reliably, kills it on request, health-checks it, and survives agent restarts
//! when the framework checkpoints.
//!
//! The decisions live in the pure `core` state machine (with `health` counting and
//! `backoff`); `driver` runs the event loop over `agent` (HTTP), `process` (the task)
//! and `probe` (health probes).

mod agent;
mod config;
mod core;
mod driver;
mod exit;
mod health;
mod probe;
mod process;

pub use agent::LinkError;
pub use config::{Config, ConfigError};
pub use driver::run;
pub use exit::exit_code_from_message;

/// Runs the command executor from the environment the agent gives it; returns the exit code.
pub fn run_command_executor() -> anyhow::Result<i32> {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = Config::from_vars(vars)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(run(config))?)
}
