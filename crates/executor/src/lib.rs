//! The command executor (placeholder until it lands).

/// Runs the command executor from the environment the agent gives it; returns the exit code.
pub fn run_command_executor() -> anyhow::Result<i32> {
    anyhow::bail!("the command executor is not built yet")
}
