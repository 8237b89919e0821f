//! `meseta`: the one binary. `master`, `agent` and `local` run the cluster; `executor` is
//! the command executor the agent spawns (with `--default`, the task-group executor);
//! `execute` is a one-shot framework for users; `image` manages the agent's image store;
//! `sim` runs hollow agents for scale tests.

mod allocator;
mod execute;
mod flags;
mod image;
mod launch;

use anyhow::Result;
use clap::{Parser, Subcommand};
use flags::{AgentFlags, LocalFlags, MasterFlags};

#[derive(Parser)]
#[command(
    name = "meseta",
    version,
    about = "A Mesos-compatible datacenter operating system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a master.
    Master(MasterFlags),
    /// Run an agent.
    Agent(AgentFlags),
    /// Run a master and an agent in one process on 127.0.0.1 (the embedded default).
    Local(LocalFlags),
    /// Run one task on a cluster, printing its states and output (like mesos-execute).
    Execute(execute::ExecuteFlags),
    /// The command executor, or with `--default` the task-group executor (started by the
    /// agent; not for direct use).
    Executor(ExecutorArgs),
    /// A container's supervisor (started by the agent's Linux launcher; not for direct use).
    #[command(hide = true)]
    Launch(launch::LaunchArgs),
    /// Forks command executors for the agent's posix launcher (started by the agent; not
    /// for direct use).
    #[command(hide = true)]
    Zygote,
    /// The agent's image store: import, pull, list, rm, unpack, prune.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Simulations for scale tests: `sim agents` runs hollow agents.
    #[command(subcommand)]
    Sim(meseta_sim::SimCommand),
}

/// `meseta executor`'s flags.
#[derive(clap::Args)]
struct ExecutorArgs {
    /// Run the default executor, which runs task groups (LAUNCH_GROUP).
    #[arg(long)]
    default: bool,
}

fn main() -> Result<()> {
    meseta_api::version::set_build(meseta_api::version::Build::from_env(
        option_env!("MESETA_BUILD_TIME"),
        option_env!("MESETA_BUILD_USER"),
        option_env!("MESETA_GIT_SHA"),
        option_env!("MESETA_GIT_BRANCH"),
        option_env!("MESETA_GIT_TAG"),
    ));
    let cli = Cli::parse();
    if matches!(cli.command, Command::Master(_) | Command::Sim(_)) {
        allocator::use_mimalloc();
    }
    if let Command::Zygote = cli.command {
        // Logging is set up by each forked child, for its own stderr.
        meseta_containerizer::zygote::serve(run_forked)?;
        return Ok(());
    }
    init_logging();
    dispatch(cli.command)
}

/// A child of the zygote, or a container's first process run in place by its
/// supervisor: runs `args` as if the binary had been executed with them.
fn run_forked(args: Vec<String>) -> i32 {
    let parsed = match forked_command(&args) {
        Some(command) => Ok(Cli { command }),
        None => Cli::try_parse_from(args),
    };
    match parsed {
        Ok(Cli {
            command: Command::Zygote,
        }) => {
            eprintln!("a zygote does not fork zygotes");
            2
        }
        Ok(cli) => {
            init_logging();
            match dispatch(cli.command) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("Error: {e:?}");
                    1
                }
            }
        }
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    }
}

/// The command lines the agent forks through its zygote, `meseta executor [--default]`
/// and `meseta launch RUN_DIR`, read without clap: clap builds its parser for every
/// subcommand and flag first, which cost a forked command executor a tenth of its CPU
/// time.
fn forked_command(args: &[String]) -> Option<Command> {
    let default = match args.get(1..)? {
        [executor] if executor == "executor" => false,
        [executor, flag] if executor == "executor" && flag == "--default" => true,
        [launch, run_dir] if launch == "launch" && !run_dir.starts_with('-') => {
            return Some(Command::Launch(launch::LaunchArgs {
                run_dir: run_dir.into(),
            }))
        }
        _ => return None,
    };
    Some(Command::Executor(ExecutorArgs { default }))
}

/// Runs one subcommand (every one but `zygote`); the process exits when it is done.
fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Executor(args) => {
            let kind = match args.default {
                true => meseta_executor::Kind::Default,
                false => meseta_executor::Kind::Command,
            };
            let code = meseta_executor::run_executor(kind)?;
            end_process(code);
        }
        Command::Launch(args) => std::process::exit(launch::run(&args)),
        command => {
            if matches!(
                command,
                Command::Master(_) | Command::Agent(_) | Command::Local(_) | Command::Sim(_)
            ) {
                raise_open_files_limit();
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let code = runtime.block_on(run(command))?;
            drop(runtime);
            std::process::exit(code);
        }
    }
}

/// Ends an executor at once once its stdout is flushed, without the exit handlers the
/// zygote's libraries registered: an executor is forked from the zygote, and running
/// those handlers (mimalloc's statistics and heap collection among them) made it write
/// to pages it shares with the zygote, a copy-on-write fault each.
fn end_process(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// Servers hold a connection per agent, framework and executor: lift the soft limit on
/// open files to the hard one, as daemons do (the default soft limit, often 1,024, is far
/// below what a master of thousands of agents needs).
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("could not raise the open files limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not read the open files limit: {e}"),
    }
}

async fn run(command: Command) -> Result<i32> {
    match command {
        Command::Master(flags) => {
            meseta_master::run(flags.into_config()?, shutdown_signal()).await?;
            Ok(0)
        }
        Command::Agent(flags) => {
            meseta_agent::run(flags.into_config()?, shutdown_signal()).await?;
            Ok(0)
        }
        Command::Local(flags) => {
            flags.run(shutdown_signal()).await?;
            Ok(0)
        }
        Command::Execute(flags) => execute::run(flags).await,
        Command::Image(command) => image::run(command).await,
        Command::Sim(command) => meseta_sim::run(command, shutdown_signal()).await,
        Command::Executor(_) | Command::Launch(_) | Command::Zygote => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let (level, directives) = log_filter(std::env::var("MESETA_LOG").ok().as_deref());
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A container's first process run in place keeps its supervisor's logging.
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(level)
        .with(directives)
        .try_init();
}

/// The filter `MESETA_LOG` asks for (`info` when unset or invalid). A plain level is a
/// level filter; only directives (targets, spans) need an `EnvFilter`, whose tables cost
/// a forked executor a tenth of its start-up page faults.
fn log_filter(
    text: Option<&str>,
) -> (
    tracing_subscriber::filter::LevelFilter,
    Option<tracing_subscriber::EnvFilter>,
) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::EnvFilter;
    let Some(text) = text else {
        return (LevelFilter::INFO, None);
    };
    if let Ok(level) = text.trim().parse::<LevelFilter>() {
        return (level, None);
    }
    match EnvFilter::try_new(text) {
        Ok(directives) => (LevelFilter::TRACE, Some(directives)),
        Err(_) => (LevelFilter::INFO, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    /// What a forked command line asks for, comparably.
    fn summary(command: Command) -> String {
        match command {
            Command::Executor(args) => format!("executor default={}", args.default),
            Command::Launch(args) => format!("launch {}", args.run_dir.display()),
            _ => "other".to_string(),
        }
    }

    #[test]
    fn plain_levels_need_no_directives() {
        use tracing_subscriber::filter::LevelFilter;
        let level = |text| {
            let (level, directives) = log_filter(text);
            (level, directives.map(|d| d.to_string()))
        };
        assert_eq!(level(None), (LevelFilter::INFO, None));
        assert_eq!(level(Some("warn")), (LevelFilter::WARN, None));
        assert_eq!(level(Some(" DEBUG ")), (LevelFilter::DEBUG, None));
        assert_eq!(level(Some("off")), (LevelFilter::OFF, None));
        assert_eq!(level(Some("not a[filter")), (LevelFilter::INFO, None));
        let (all, directives) = level(Some("warn,meseta_master::reads=debug"));
        assert_eq!(all, LevelFilter::TRACE);
        let directives = directives.expect("directives");
        assert!(
            directives.contains("meseta_master::reads=debug"),
            "{directives}"
        );
        assert!(directives.contains("warn"), "{directives}");
    }

    #[test]
    fn forked_command_lines_read_as_clap_reads_them() {
        for args in [
            &["meseta", "executor"][..],
            &["meseta", "executor", "--default"],
            &["meseta", "launch", "/var/run/c1"],
        ] {
            let args = strings(args);
            let fast = forked_command(&args).expect("a forked command line");
            let clap = Cli::try_parse_from(&args).expect("clap reads it").command;
            assert_eq!(summary(fast), summary(clap), "{args:?}");
        }
        for other in [
            &["meseta", "executor", "--help"][..],
            &["meseta", "launch", "--help"],
            &["meseta", "agent"],
            &["meseta"],
        ] {
            assert!(forked_command(&strings(other)).is_none(), "{other:?}");
        }
    }
}
