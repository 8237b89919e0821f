//! Persistent volumes on the agent: their directories under
//! `<work_dir>/volumes/roles/<role>/<persistence id>` (a hierarchical role's `/` written
//! as a space, which roles cannot contain, so that role `a` volume `b` and role `a/b` never
//! share a directory), kept in step with the checkpointed resources the master sends, and
//! their place in task sandboxes at their `container_path` ([`Placement`]): a symlink to
//! the volume's directory when the launcher does not mount volumes (the posix launcher,
//! `filesystem/posix`), as Mesos does; with `filesystem/linux` a mount point on which the
//! Linux launcher bind-mounts the directory when it starts the container ([`mounts`]),
//! read-only for a task that uses the volume in mode RO.

use meseta_api::resources::VolumeMode;
use meseta_api::{Resource, Resources};
use meseta_containerizer::{Volume, VolumeSource};
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

/// How a task's persistent volumes appear in its sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A symlink to the volume's directory.
    Link,
    /// A directory on which the launcher bind-mounts the volume when it starts the
    /// container.
    MountPoint,
}

/// A persistent volume as a task uses it.
struct TaskVolume {
    id: String,
    /// The volume's directory.
    source: PathBuf,
    /// Where it goes, relative to the sandbox.
    relative: PathBuf,
    read_only: bool,
    /// Several tasks may use it at once (`shared`).
    shared: bool,
}

/// The persistent volumes among `resources`, checked: each says where it goes, inside the
/// sandbox.
fn task_volumes<'a>(
    work_dir: &Path,
    resources: impl IntoIterator<Item = &'a Resource>,
) -> Result<Vec<TaskVolume>, String> {
    volumes(resources)
        .into_iter()
        .map(|((role, id), r)| {
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
            Ok(TaskVolume {
                source: volume_dir(work_dir, &role, &id),
                relative: relative.to_path_buf(),
                read_only: volume.mode == Some(VolumeMode::Ro),
                shared: r.is_shared(),
                id,
            })
        })
        .collect()
}

/// Makes the persistent volumes among a task's resources available in its sandbox at
/// their `container_path`, as `placement` says; creates their directories, and the
/// sandbox, if missing. A volume that is not shared goes to the sandbox's owner when that
/// is not root (as in Mesos: the volume's directory itself, not what it holds); this is
/// what a task given to a running executor gets, since a new container's sandbox is given
/// to its user, with its volumes ([`mounts`]), when it is launched.
pub fn place_in_sandbox(
    work_dir: &Path,
    sandbox: &Path,
    resources: &[Resource],
    placement: Placement,
) -> Result<(), String> {
    for v in task_volumes(work_dir, resources)? {
        let target = sandbox.join(&v.relative);
        let placed = std::fs::create_dir_all(&v.source)
            .and_then(|()| match placement {
                Placement::Link => {
                    let parent = v.relative.parent().unwrap_or(Path::new(""));
                    dirs_inside(sandbox, parent).and_then(|()| link(&v.source, &target))
                }
                Placement::MountPoint => dirs_inside(sandbox, &v.relative),
            })
            .and_then(|()| match v.shared {
                false => give_to_owner_of(sandbox, &v.source),
                true => Ok(()),
            });
        placed.map_err(|e| {
            format!(
                "placing persistent volume '{}' at {}: {e}",
                v.id,
                target.display()
            )
        })?;
    }
    Ok(())
}

/// The bind mounts of the persistent volumes among a container's resources, for a
/// launcher that mounts them.
pub fn mounts(work_dir: &Path, resources: &Resources) -> Result<Vec<Volume>, String> {
    Ok(task_volumes(work_dir, resources.iter())?
        .into_iter()
        .map(|v| Volume {
            host_path: v.source,
            container_path: v.relative,
            read_only: v.read_only,
            source: VolumeSource::Persistent,
            // A shared volume may be in use by another task's container, whose user the
            // change could lock out (Mesos changes it only while no other container uses
            // it, which the agent does not tell here): it is left as it is.
            to_user: !v.shared,
        })
        .collect())
}

/// Makes the directories of `relative` under `sandbox` (and the sandbox), through no
/// symlink: what a task or a fetched archive left in the sandbox cannot send the agent's
/// directories, or a mount, elsewhere.
fn dirs_inside(sandbox: &Path, relative: &Path) -> io::Result<()> {
    std::fs::create_dir_all(sandbox)?;
    let mut path = sandbox.to_path_buf();
    for part in relative.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is in the way (not a directory)",
                    path.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&path)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Gives `path` (itself, not a symlink's target) to the owner of `sandbox` when that is
/// not root.
fn give_to_owner_of(sandbox: &Path, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(sandbox)?;
    if owner.uid() == 0 {
        return Ok(());
    }
    tracing::info!(
        "changing the owner of volume {} to uid {} gid {}",
        path.display(),
        owner.uid(),
        owner.gid()
    );
    std::os::unix::fs::lchown(path, Some(owner.uid()), Some(owner.gid()))
}

fn link(source: &Path, target: &Path) -> io::Result<()> {
    if let Ok(existing) = std::fs::read_link(target) {
        if existing == source {
            return Ok(());
        }
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

    fn with_mount(mut v: Resource, path: &str, mode: VolumeMode) -> Resource {
        let volume = v.disk.as_mut().unwrap().volume.as_mut().unwrap();
        volume.container_path = path.into();
        volume.mode = Some(mode);
        v
    }

    #[test]
    fn volumes_are_linked_into_the_sandbox() {
        let work = tempfile::tempdir().unwrap();
        let sandbox = work.path().join("sandbox");
        let v = volume("r", "v1", "state/data");
        let resources = vec![Resource::scalar("cpus", 1.0), v.clone()];
        place_in_sandbox(work.path(), &sandbox, &resources, Placement::Link).unwrap();
        std::fs::write(sandbox.join("state/data/f"), "hello").unwrap();
        let dir = volume_dir(work.path(), "r", "v1");
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "hello");
        // A second task in the same sandbox: the link is already there.
        place_in_sandbox(work.path(), &sandbox, &resources, Placement::Link).unwrap();
        // A path that escapes the sandbox is refused.
        let escaping = with_mount(v, "../x", VolumeMode::Rw);
        let err = place_in_sandbox(work.path(), &sandbox, &[escaping], Placement::Link);
        assert!(err.unwrap_err().contains("cannot be placed in the sandbox"));
    }

    #[test]
    fn mounted_volumes_get_a_mount_point_and_their_mode() {
        let work = tempfile::tempdir().unwrap();
        let sandbox = work.path().join("sandbox");
        let rw = volume("r", "v1", "data");
        let ro = with_mount(volume("r", "v2", "in/ro"), "in/ro", VolumeMode::Ro);
        let resources = vec![Resource::scalar("cpus", 1.0), rw, ro];
        place_in_sandbox(work.path(), &sandbox, &resources, Placement::MountPoint).unwrap();
        for path in ["data", "in/ro"] {
            let m = std::fs::symlink_metadata(sandbox.join(path)).unwrap();
            assert!(m.is_dir(), "{path} is a directory, not a link");
        }
        assert!(volume_dir(work.path(), "r", "v2").is_dir());
        let mounts = mounts(work.path(), &set(&resources)).unwrap();
        assert_eq!(
            mounts,
            [
                Volume {
                    host_path: volume_dir(work.path(), "r", "v1"),
                    container_path: "data".into(),
                    read_only: false,
                    source: VolumeSource::Persistent,
                    to_user: true,
                },
                Volume {
                    host_path: volume_dir(work.path(), "r", "v2"),
                    container_path: "in/ro".into(),
                    read_only: true,
                    source: VolumeSource::Persistent,
                    to_user: true,
                },
            ]
        );
        // Nothing is made through a symlink left in the sandbox.
        let outside = work.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, sandbox.join("trap")).unwrap();
        let trapped = with_mount(volume("r", "v3", "x"), "trap/x", VolumeMode::Rw);
        for placement in [Placement::MountPoint, Placement::Link] {
            let err = place_in_sandbox(
                work.path(),
                &sandbox,
                std::slice::from_ref(&trapped),
                placement,
            );
            assert!(err.unwrap_err().contains("in the way"), "{placement:?}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    fn shared(mut v: Resource) -> Resource {
        v.shared = Some(serde_json::json!({}));
        v
    }

    #[test]
    fn a_shared_volume_is_not_given_to_the_task_user() {
        let work = tempfile::tempdir().unwrap();
        let resources = vec![volume("r", "v1", "data"), shared(volume("r", "v2", "s"))];
        let mounts = mounts(work.path(), &set(&resources)).unwrap();
        let given: Vec<_> = mounts
            .iter()
            .map(|m| (m.host_path.clone(), m.to_user))
            .collect();
        assert_eq!(
            given,
            [
                (volume_dir(work.path(), "r", "v1"), true),
                (volume_dir(work.path(), "r", "v2"), false),
            ]
        );
    }

    #[test]
    fn volumes_go_to_the_owner_of_a_sandbox_that_is_not_roots() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: changing owners needs root");
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let owner = |path: &Path| std::fs::metadata(path).unwrap().uid();
        // Root's sandbox (a new container's, before its launch): nothing changes.
        let sandbox = work.path().join("root-sandbox");
        let resources = vec![volume("r", "v1", "data")];
        place_in_sandbox(work.path(), &sandbox, &resources, Placement::Link).unwrap();
        assert_eq!(owner(&volume_dir(work.path(), "r", "v1")), 0);
        // A running executor's sandbox, given to its user: so are its new volumes, but
        // not a shared one.
        let sandbox = work.path().join("user-sandbox");
        std::fs::create_dir(&sandbox).unwrap();
        std::os::unix::fs::chown(&sandbox, Some(65534), Some(65534)).unwrap();
        let resources = vec![volume("r", "v2", "data"), shared(volume("r", "v3", "s"))];
        place_in_sandbox(work.path(), &sandbox, &resources, Placement::Link).unwrap();
        let v2 = volume_dir(work.path(), "r", "v2");
        assert_eq!(owner(&v2), 65534);
        assert_eq!(std::fs::metadata(&v2).unwrap().gid(), 65534);
        assert_eq!(owner(&volume_dir(work.path(), "r", "v3")), 0);
    }
}
