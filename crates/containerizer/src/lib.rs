//! Meseta's containerizer: starting, watching, signalling and measuring the processes
//! that executors run in.
//!
//! The agent talks to a [`Launcher`] only. Today the one implementation is
//! [`PosixLauncher`] (plain processes in their own process group, Mesos's `posix` launcher); the
//! Linux launcher (namespaces, cgroups, images, spawned through `meseta launch`
//! supervisors) will implement the same trait. A launched container is named by a
//! [`ProcessRef`] (pid plus start time) that the agent checkpoints, so that a restarted
//! agent can [`Launcher::recover`] it without mistaking a recycled pid for it.

pub mod image;
mod launcher;
mod posix;
mod procfs;

pub use launcher::{
    ExitFuture, LaunchError, LaunchSpec, Launched, Launcher, ProcessRef, Program, Signal, Usage,
};
pub use posix::PosixLauncher;
