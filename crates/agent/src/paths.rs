//! Where things live under the work directory, laid out like Mesos:
//! `slaves/<agent>/frameworks/<framework>/executors/<executor>/runs/<container>/` for
//! sandboxes (with a `latest` symlink beside the runs), and `meta/` for checkpoints.

use std::path::{Path, PathBuf};

/// The checkpoint database.
pub fn checkpoint_db(work_dir: &Path) -> PathBuf {
    work_dir.join("meta").join("agent.redb")
}

/// The directory holding an executor's runs.
pub fn executor_runs(work_dir: &Path, agent: &str, framework: &str, executor: &str) -> PathBuf {
    work_dir
        .join("slaves")
        .join(agent)
        .join("frameworks")
        .join(framework)
        .join("executors")
        .join(executor)
        .join("runs")
}

/// One run's sandbox.
pub fn sandbox(
    work_dir: &Path,
    agent: &str,
    framework: &str,
    executor: &str,
    container: &str,
) -> PathBuf {
    executor_runs(work_dir, agent, framework, executor).join(container)
}

/// Whether an id can name a directory: not empty, not `.` or `..`, no `/` or NUL.
pub fn is_safe_component(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\0'])
}

/// Creates a sandbox and points `runs/latest` at it.
pub fn create_sandbox(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let runs = dir.parent().expect("a sandbox has a parent");
    let latest = runs.join("latest");
    let tmp = runs.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(dir.file_name().expect("named"), &tmp)?;
    std::fs::rename(&tmp, &latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_latest_link() {
        let dir = tempfile::tempdir().unwrap();
        let s = sandbox(dir.path(), "A-S0", "A-0000", "e1", "c1");
        assert!(s.ends_with("slaves/A-S0/frameworks/A-0000/executors/e1/runs/c1"));
        create_sandbox(&s).unwrap();
        let s2 = sandbox(dir.path(), "A-S0", "A-0000", "e1", "c2");
        create_sandbox(&s2).unwrap();
        let latest = s.parent().unwrap().join("latest");
        assert_eq!(std::fs::read_link(&latest).unwrap(), PathBuf::from("c2"));
        assert_eq!(latest.canonicalize().unwrap(), s2.canonicalize().unwrap());
    }

    #[test]
    fn unsafe_ids() {
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(!is_safe_component(bad), "{bad:?}");
        }
        assert!(is_safe_component("task-1.2_x"));
    }
}
