//! The executors the agent starts, speaking `/api/v1/executor` to it as Mesos's do:
//!
//! - the command executor (`meseta executor`) runs one task's command, reports its states
//!   reliably, kills it on request, health-checks it, and survives agent restarts when the
//!   framework checkpoints;
//! - the default executor (`meseta executor --default`) does the same for task groups
//!   (LAUNCH_GROUP): each task its own process and sandbox, a group killed when one of
//!   its tasks fails or is killed.
//!
//! The decisions live in pure state machines (`machine::Machine`): `core` (the
//! command executor) and `default_core` (with `groups`), both built from `session` (the
//! link and its reliable updates) and `task` (one task's run, with `health` counting);
//! `driver` runs either over `agent` (HTTP), `process` (tasks) and `probe` (health
//! probes).

mod agent;
mod config;
mod core;
mod default_core;
mod driver;
mod exit;
mod groups;
mod health;
mod machine;
mod probe;
mod process;
mod session;
mod task;
#[cfg(test)]
mod testing;

pub use agent::LinkError;
pub use config::{Config, ConfigError};
pub use driver::{run, run_default};
pub use exit::exit_code_from_message;

/// Which executor to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The command executor: one task.
    Command,
    /// The default executor: task groups.
    Default,
}

/// Runs an executor from the environment the agent gives it; returns the exit code.
pub fn run_executor(kind: Kind) -> anyhow::Result<i32> {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = Config::from_vars(vars)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = match kind {
        Kind::Command => runtime.block_on(run(config))?,
        Kind::Default => runtime.block_on(run_default(config))?,
    };
    // The executor is done and its process ends next: shutting the runtime down (its
    // connections, timers and drivers, one by one) would only delay that.
    std::mem::forget(runtime);
    Ok(code)
}
