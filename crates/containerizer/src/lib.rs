//! Meseta's containerizer: starting, watching, signalling and measuring the processes
//! that executors run in.
//!
//! The agent talks to a [`Launcher`] only: [`PosixLauncher`] (plain processes in their
//! own process group, Mesos's `posix` launcher, the default) or [`linux::LinuxLauncher`]
//! (namespaces, cgroups, images, each container under a `meseta launch` supervisor),
//! chosen by the agent's `--isolation` ([`linux::Isolation`]). A launched container is named by a
//! [`ProcessRef`] (pid plus start time) that the agent checkpoints, so that a restarted
//! agent can [`Launcher::recover`] it without mistaking a recycled pid for it.

pub mod image;
mod launcher;
pub mod linux;
mod posix;
mod procfs;
pub mod runtime;
pub mod zygote;

pub use launcher::{
    ContainerTermination, ExitFuture, ImageConfig, LaunchError, LaunchSpec, Launched, Launcher,
    Limitation, Limits, ProcessRef, Program, Signal, Usage, Volume, VolumeSource,
};
pub use posix::PosixLauncher;
