//! Executor launches, run off the actor on a thread of their own.
//!
//! A launch waits on the launcher: the zygote's fork and its answer, or a container's
//! set-up. Run on the actor, it held up every other command meanwhile (0.7 ms a launch on
//! average, 38 ms at worst, a third of the actor's time while the launch benchmark ran 460
//! tasks a second). The launcher thread runs the launches in the order they were asked
//! for and sends each result back as [`Command::Launched`]; a result the actor can no
//! longer take (it stopped) has its process killed. [`launch_end`] decides what the actor
//! does with a result, given what became of the executor meanwhile.

use crate::book::ExecutorState;
use crate::command::Command;
use meseta_api::{ContainerId, ExecutorId, FrameworkId};
use meseta_containerizer::{LaunchSpec, Launcher, Signal};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A launch to run.
struct Job {
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    container_id: ContainerId,
    spec: LaunchSpec,
}

/// The actor's end of the launcher thread; the thread ends once this is dropped (after
/// the launch it is running, if any).
pub struct Launches {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Launches {
    /// Starts the launcher thread, inside the current Tokio runtime (launchers need one).
    pub fn spawn(launcher: Arc<dyn Launcher>, commands: mpsc::Sender<Command>) -> Launches {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("agent-launcher".to_string())
            .spawn(move || {
                let _runtime = runtime.enter();
                while let Some(job) = queue.blocking_recv() {
                    let result = launcher.launch(&job.spec).map_err(|e| e.to_string());
                    let done = Command::Launched {
                        framework_id: job.framework_id,
                        executor_id: job.executor_id,
                        container_id: job.container_id,
                        result,
                    };
                    if let Err(refused) = commands.blocking_send(done) {
                        if let Command::Launched {
                            result: Ok(launched),
                            ..
                        } = refused.0
                        {
                            let _ = launcher.signal(launched.process, Signal::Kill);
                        }
                    }
                }
            })
            .expect("spawning the launcher thread");
        Launches { jobs }
    }

    /// Queues a launch; its result comes back as [`Command::Launched`].
    pub fn start(
        &self,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        container_id: ContainerId,
        spec: LaunchSpec,
    ) {
        let job = Job {
            framework_id,
            executor_id,
            container_id,
            spec,
        };
        if self.jobs.send(job).is_err() {
            tracing::error!("the launcher thread is gone; the executor is not launched");
        }
    }
}

/// What the actor does with a launch's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchEnd {
    /// Keep the process and watch it; start the registration timer when the executor
    /// has not subscribed yet; terminate it when a shutdown came before it could be told.
    Adopt {
        registration_timer: bool,
        terminate: bool,
    },
    /// The launch failed: the executor's tasks fail with the launcher's message.
    Failed,
    /// The launch failed after a shutdown was asked for: the executor simply ends.
    Ended,
    /// A process started for an executor that is gone (or ended, or another run took
    /// its place): kill it.
    Discard,
    /// Nothing started and nothing waits for it.
    Nothing,
}

/// `state`: the executor's, when it is still the run that was launched and has no
/// process yet (else `None`); `subscribed`: whether it subscribed meanwhile; `started`:
/// whether the launch gave a process.
pub fn launch_end(state: Option<ExecutorState>, subscribed: bool, started: bool) -> LaunchEnd {
    use ExecutorState::*;
    match (state, started) {
        (Some(Registering), true) => LaunchEnd::Adopt {
            registration_timer: !subscribed,
            terminate: false,
        },
        (Some(Running), true) => LaunchEnd::Adopt {
            registration_timer: false,
            terminate: false,
        },
        (Some(Terminating), true) => LaunchEnd::Adopt {
            registration_timer: false,
            terminate: !subscribed,
        },
        (Some(Terminated) | None, true) => LaunchEnd::Discard,
        (Some(Registering | Running), false) => LaunchEnd::Failed,
        (Some(Terminating), false) => LaunchEnd::Ended,
        (Some(Terminated) | None, false) => LaunchEnd::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutorState::*;

    #[test]
    fn a_started_process_is_kept_while_its_executor_is_wanted() {
        assert_eq!(
            launch_end(Some(Registering), false, true),
            LaunchEnd::Adopt {
                registration_timer: true,
                terminate: false
            }
        );
        // It subscribed before its launch came back: no registration timer.
        assert_eq!(
            launch_end(Some(Running), true, true),
            LaunchEnd::Adopt {
                registration_timer: false,
                terminate: false
            }
        );
    }

    #[test]
    fn a_shutdown_during_the_launch_ends_what_was_started() {
        // Not subscribed: it never got SHUTDOWN, so it is signalled.
        assert_eq!(
            launch_end(Some(Terminating), false, true),
            LaunchEnd::Adopt {
                registration_timer: false,
                terminate: true
            }
        );
        // Subscribed: it got SHUTDOWN on its stream.
        assert_eq!(
            launch_end(Some(Terminating), true, true),
            LaunchEnd::Adopt {
                registration_timer: false,
                terminate: false
            }
        );
        assert_eq!(
            launch_end(Some(Terminating), false, false),
            LaunchEnd::Ended
        );
    }

    #[test]
    fn a_process_nobody_waits_for_is_killed() {
        assert_eq!(launch_end(None, false, true), LaunchEnd::Discard);
        assert_eq!(
            launch_end(Some(Terminated), false, true),
            LaunchEnd::Discard
        );
        assert_eq!(launch_end(None, false, false), LaunchEnd::Nothing);
        assert_eq!(
            launch_end(Some(Terminated), false, false),
            LaunchEnd::Nothing
        );
    }

    #[test]
    fn a_failed_launch_fails_a_wanted_executor() {
        assert_eq!(
            launch_end(Some(Registering), false, false),
            LaunchEnd::Failed
        );
        assert_eq!(launch_end(Some(Running), true, false), LaunchEnd::Failed);
    }
}
