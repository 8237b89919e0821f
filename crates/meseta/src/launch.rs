//! `meseta launch RUN_DIR`: the supervisor of one container, spawned by the agent's Linux
//! launcher. It runs single-threaded (no async runtime): libcontainer forks and clones,
//! and it must outlive the agent. The work is in `meseta_containerizer::linux`.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// The container's run directory, holding its OCI spec (`config.json`) and plan.
    pub run_dir: PathBuf,
}

/// Supervises the container until it ends; returns the process exit code. A command
/// executor runs in the container's first process as a zygote's child runs.
pub fn run(args: &LaunchArgs) -> i32 {
    meseta_containerizer::linux::supervise(&args.run_dir, crate::run_forked)
}
