//! A container's run directory under the launcher's root: the files the agent and the
//! container's supervisor share, and their formats. It outlives agent restarts, so a
//! restarted agent finds its containers' supervisors and how their containers ended.

use super::start_slots::StartSlots;
use crate::image::Overlay;
use crate::launcher::{ContainerTermination, ProcessRef};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the supervisor does besides running the OCI spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub container_id: String,
    pub cgroups_path: String,
    pub root: RootMount,
    /// Run this argv of the meseta binary (a subcommand, such as the command executor)
    /// in the container's first process instead of executing the OCI spec's process:
    /// that process is a copy of the binary already, and skipping the exec saves loading
    /// the large binary again.
    #[serde(default)]
    pub in_process: Option<Vec<String>>,
    /// The image's WorkingDir (the process's working directory, or the command
    /// executor's task's): made in the root before the container starts, as Mesos does.
    #[serde(default)]
    pub working_dir: Option<WorkingDir>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The memory limit enforced, named in the limitation message.
    pub mem_limit_bytes: Option<u64>,
    /// The cpus the container's CPU shares and quota come from.
    pub cpus_limit: Option<f64>,
    pub disk: Option<DiskWatch>,
    /// Wait for one of these before creating the container.
    #[serde(default)]
    pub start_slots: Option<StartSlots>,
}

/// What the supervisor mounts for the container's root, in a mount namespace of its own
/// (so that nothing it mounts shows in the host's mount table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RootMount {
    /// The host's `/`, bound at the run directory's `rootfs` (no image).
    Host,
    /// An image's overlay, mounted at its root filesystem's path.
    Overlay { path: PathBuf, overlay: Overlay },
    /// Nothing: the image's root filesystem holds its files (the copy backend).
    Ready,
}

/// A directory to make in the container's root (`path` as the container sees it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkingDir {
    pub root: PathBuf,
    pub path: PathBuf,
}

/// `disk/du`: measure the sandbox every `interval`, and kill the container over `limit`
/// when `enforce` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskWatch {
    pub sandbox: PathBuf,
    pub limit_bytes: u64,
    pub enforce: bool,
    pub interval: Duration,
}

/// How the container ended, written by the supervisor once everything is cleaned up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The container's first process's wait status, `None` when it never ran.
    pub wait_status: Option<i32>,
    pub termination: Option<ContainerTermination>,
}

/// The layout of one run directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(root: &Path, container_id: &str) -> RunDir {
        RunDir(root.join(container_id))
    }

    pub fn at(path: &Path) -> RunDir {
        RunDir(path.to_path_buf())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn container_id(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The OCI bundle's spec (the run directory is the bundle).
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn plan(&self) -> PathBuf {
        self.0.join("plan.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.0.join("exit.json")
    }
    /// The supervisor's `ProcessRef`, written by the agent when it spawned it.
    pub fn supervisor(&self) -> PathBuf {
        self.0.join("supervisor.json")
    }
    /// libcontainer's state directory.
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    /// Where the host's `/` is bound in the supervisor's mount namespace.
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }
    /// An empty directory, bound read-only over the masked paths that are directories.
    pub fn empty(&self) -> PathBuf {
        self.0.join("empty")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("supervisor.log")
    }
    /// Made by the agent when it signals the container: a supervisor that finds it
    /// before its container starts does not start it.
    pub fn cancelled(&self) -> PathBuf {
        self.0.join("cancelled")
    }

    pub fn read_exit(&self) -> Option<ExitRecord> {
        read_json(&self.exit())
    }

    pub fn read_supervisor(&self) -> Option<ProcessRef> {
        read_json(&self.supervisor())
    }
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes `value` to `path` through a temporary file, so readers see all or nothing.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::Limitation;

    #[test]
    fn records_round_trip_through_their_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = RunDir::new(root.path(), "c-1");
        std::fs::create_dir_all(dir.path()).unwrap();
        assert_eq!(dir.container_id(), "c-1");
        assert_eq!(dir.read_exit(), None);
        let record = ExitRecord {
            wait_status: Some(9),
            termination: Some(ContainerTermination {
                limitation: Limitation::Memory,
                message: "Memory limit exceeded".into(),
            }),
        };
        write_json(&dir.exit(), &record).unwrap();
        assert_eq!(dir.read_exit(), Some(record));
        let process = ProcessRef {
            pid: 7,
            start_time: 11,
        };
        write_json(&dir.supervisor(), &process).unwrap();
        assert_eq!(dir.read_supervisor(), Some(process));
    }
}
