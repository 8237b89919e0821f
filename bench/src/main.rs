//! `meseta-bench`: benchmarks that run Meseta beside a peer in the same run and print the
//! ratio. Each prints one JSON object as its last stdout line. See bench/README.md.

mod cluster;
mod launch;
mod slurm;
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = match cli.command {
        Command::Launch(args) => runtime.block_on(launch::run(args))?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
