//! `meseta-bench`: benchmarks that run Meseta beside a peer in the same run and print the
//! ratio. Each prints one JSON object as its last stdout line. See bench/README.md.

mod allocator;
mod cluster;
mod container_launch;
mod hollow;
mod launch;
mod placements;
mod process;
mod scratch;
mod slurm;
mod state;
mod stats;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meseta-bench",
    about = "Meseta benchmarks, each side by side with a peer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Launch trivial tasks through the scheduler API; compare with Slurm's `sbatch --wrap true`.
    Launch(launch::LaunchArgs),
    /// Launch containers in a busybox image through the scheduler API (Linux isolators);
    /// compare with `runc run` of the same rootfs and namespaces. Needs root.
    ContainerLaunch(container_launch::ContainerLaunchArgs),
    /// Time full allocation passes of the allocator over a synthetic cluster; compare with
    /// Mesos's published `HierarchicalAllocator_BENCHMARK` figures.
    Allocator(allocator::AllocatorArgs),
    /// Place many tasks on hollow agents through the real master; compare with Nomad's
    /// published placement rate. Also reports the master's memory per agent and task.
    Placements(placements::PlacementsArgs),
    /// Time GET_STATE and v0 /master/state of a big master, and how much 20 readers slow
    /// its other work; compare with Mesos 1.7's published figure.
    State(state::StateArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The load frameworks' warnings (a task that failed, a call refused) on stderr;
    // `MESETA_BENCH_LOG` sets the filter.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESETA_BENCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Each report is printed as its own struct, keeping its fields in order.
    let line = match cli.command {
        Command::Launch(args) => serde_json::to_string(&block_on(launch::run(args))??)?,
        Command::ContainerLaunch(args) => {
            serde_json::to_string(&block_on(container_launch::run(args))??)?
        }
        Command::Allocator(args) => serde_json::to_string(&allocator::run(args)?)?,
        Command::Placements(args) => serde_json::to_string(&block_on(placements::run(args))??)?,
        Command::State(args) => serde_json::to_string(&block_on(state::run(args))??)?,
    };
    println!("{line}");
    Ok(())
}

/// Runs `future` on a fresh multi-threaded Tokio runtime.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}
