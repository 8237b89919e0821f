//! Persistent volumes on the agent: their directories under
//! `<work_dir>/volumes/roles/<role>/<persistence id>` (a hierarchical role's `/` written
//! as a space, which roles cannot contain, so that role `a` volume `b` and role `a/b` never
//! share a directory), kept in step with the checkpointed resources the master sends, and
//! their place in task sandboxes. Without a filesystem isolator (the posix launcher) a
//! task's volume is a symlink at its `container_path` inside the sandbox, as Mesos does;
//! a Linux launcher with its own mount namespace should bind-mount the directory there
//! instead.

use meseta_api::{Resource, Resources};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// A volume's identity on an agent: its role and persistence id.
type VolumeKey = (String, String);

/// The directory holding a volume's data.
pub fn volume_dir(work_dir: &Path, role: &str, id: &str) -> PathBuf {
    work_dir
        .join("volumes")
        .join("roles")
        .join(role.replace('/', " "))
        .join(id)
}

/// The persistent volumes among `resources` (either reservation format).
fn volumes<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
) -> BTreeMap<VolumeKey, &'a Resource> {
    resources
        .into_iter()
        .filter_map(|r| {
            let id = r.persistence_id()?;
            Some(((r.reservation_role().to_string(), id.to_string()), r))
        })
        .collect()
}

/// Whether an id can name a directory.
fn safe_component(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\0'])
}

/// Brings the volume directories in step with the master's new checkpointed resources:
/// creates the directories of the volumes listed in `now` (those that exist are kept, with
/// their data), and removes those of the volumes in `before` but no longer listed, unless
/// a task still uses them (`in_use`). Returns what could not be done.
pub fn sync(
    work_dir: &Path,
    before: &Resources,
    now: &Resources,
    in_use: &Resources,
) -> Vec<String> {
    let mut problems = Vec::new();
    let wanted = volumes(now.iter());
    let used = volumes(in_use.iter());
    for (role, id) in wanted.keys() {
        if !safe_component(id) {
            problems.push(format!("volume id '{id}' cannot name a directory"));
            continue;
        }
        let dir = volume_dir(work_dir, role, id);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            problems.push(format!("creating volume {}: {e}", dir.display()));
        }
    }
    for key in volumes(before.iter()).keys() {
        if wanted.contains_key(key) || !safe_component(&key.1) {
            continue;
        }
        let dir = volume_dir(work_dir, &key.0, &key.1);
        if used.contains_key(key) {
            problems.push(format!(
                "volume {} was destroyed but a task still uses it; kept",
                dir.display()
            ));
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!("removed destroyed volume {}", dir.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("removing volume {}: {e}", dir.display())),
        }
    }
    problems
}

/// Makes the persistent volumes among a task's resources available in its sandbox: a
/// symlink at each volume's `container_path` to the volume's directory (created if it is
/// missing). Creates the sandbox directory if needed.
pub fn link_into_sandbox(
    work_dir: &Path,
    sandbox: &Path,
    resources: &[Resource],
) -> Result<(), String> {
    for ((role, id), r) in volumes(resources.iter()) {
        let Some(volume) = r.disk.as_ref().and_then(|d| d.volume.as_ref()) else {
            return Err(format!(
                "persistent volume '{id}' has no 'volume' to say where it goes"
            ));
        };
        let relative = Path::new(&volume.container_path);
        let escapes = relative.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if !safe_component(&id) || escapes || volume.container_path.is_empty() {
            return Err(format!(
                "persistent volume '{id}' at '{}' cannot be placed in the sandbox",
                volume.container_path
            ));
        }
        let source = volume_dir(work_dir, &role, &id);
        let target = sandbox.join(relative);
        link(&source, &target).map_err(|e| {
            format!(
                "linking persistent volume '{id}' at {}: {e}",
                target.display()
            )
        })?;
    }
    Ok(())
}

fn link(source: &Path, target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(source)?;
    if let Ok(existing) = std::fs::read_link(target) {
        if existing == source {
            return Ok(());
        }
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(source, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(role: &str, id: &str, path: &str) -> Resource {
        let mut r: Resource = serde_json::from_value(serde_json::json!({
            "name": "disk", "type": "SCALAR", "scalar": {"value": 8},
            "reservations": [{"type": "DYNAMIC", "role": role}],
            "disk": {"persistence": {"id": id}, "volume": {"container_path": path, "mode": "RW"}}
        }))
        .unwrap();
        r.validate().unwrap();
        r
    }

    fn set(list: &[Resource]) -> Resources {
        Resources::from_list(list.to_vec()).unwrap()
    }

    #[test]
    fn volume_dirs_follow_the_checkpointed_resources() {
        let work = tempfile::tempdir().unwrap();
        let (a, b) = (volume("r", "v1", "data"), volume("x/y", "v2", "data"));
        let problems = sync(
            work.path(),
            &Resources::new(),
            &set(&[a.clone(), b.clone()]),
            &Resources::new(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let dir_a = volume_dir(work.path(), "r", "v1");
        assert!(dir_a.is_dir());
        assert!(work.path().join("volumes/roles/x y/v2").is_dir());
        std::fs::write(dir_a.join("f"), "kept").unwrap();
        // Listed again: the data stays.
        sync(
            work.path(),
            &set(&[a.clone(), b.clone()]),
            &set(&[a.clone(), b.clone()]),
            &Resources::new(),
        );
        assert_eq!(std::fs::read_to_string(dir_a.join("f")).unwrap(), "kept");
        // Destroyed while a task uses it: kept, and said so.
        let problems = sync(
            work.path(),
            &set(&[a.clone(), b.clone()]),
            &set(std::slice::from_ref(&b)),
            &set(std::slice::from_ref(&a)),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(dir_a.is_dir());
        // Destroyed and unused: gone.
        let problems = sync(
            work.path(),
            &set(&[a.clone(), b.clone()]),
            &set(&[b]),
            &Resources::new(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!dir_a.exists());
    }

    #[test]
    fn volumes_are_linked_into_the_sandbox() {
        let work = tempfile::tempdir().unwrap();
        let sandbox = work.path().join("sandbox");
        let v = volume("r", "v1", "state/data");
        let resources = vec![Resource::scalar("cpus", 1.0), v.clone()];
        link_into_sandbox(work.path(), &sandbox, &resources).unwrap();
        std::fs::write(sandbox.join("state/data/f"), "hello").unwrap();
        let dir = volume_dir(work.path(), "r", "v1");
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "hello");
        // A second task in the same sandbox: the link is already there.
        link_into_sandbox(work.path(), &sandbox, &resources).unwrap();
        // A path that escapes the sandbox is refused.
        let mut escaping = v;
        escaping
            .disk
            .as_mut()
            .unwrap()
            .volume
            .as_mut()
            .unwrap()
            .container_path = "../x".into();
        assert!(link_into_sandbox(work.path(), &sandbox, &[escaping]).is_err());
    }
}
