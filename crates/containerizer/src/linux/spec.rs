//! Building a container's OCI runtime spec (`config.json`) from a [`LaunchSpec`] and the
//! agent's isolators: namespaces, cgroup limits, mounts (a fresh `/dev` and `/proc`,
//! the sandbox, volumes), the process's user, capabilities, rlimits and environment.
//! Pure: the caller resolves users and detects the cgroup version.

use super::isolation::{Isolation, Isolator};
use crate::launcher::{ImageConfig, LaunchSpec, VolumeSource};
use crate::runtime::{self, Exec, RuntimeError};
use serde_json::{json, Value};
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// Where the sandbox appears inside a container that has an image (Mesos's path).
pub const IMAGE_SANDBOX: &str = "/mnt/mesos/sandbox";
/// The smallest memory limit a container gets (Mesos's `MIN_MEMORY`).
pub const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;
/// CPU shares per cpu, and the least a container gets (Mesos's values).
const CPU_SHARES_PER_CPU: f64 = 1024.0;
const MIN_CPU_SHARES: u64 = 2;
/// The CFS period, and the least quota a container gets, in microseconds.
const CFS_PERIOD_US: u64 = 100_000;
const MIN_CFS_QUOTA_US: i64 = 1_000;
/// The process limit of a container with `cgroups/pids`.
pub const PIDS_LIMIT: i64 = 4096;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities a root process keeps by default (Docker's default set).
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Paths of the host's kernel hidden from containers (what runc and Mesos hide). Files
/// get `/dev/null` bound over them by libcontainer; those that are directories on this
/// host ([`SpecInput::masked_dirs`]) an empty directory, bound read-only.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// The numeric identity the container's process runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// What the spec is built from besides the launch spec.
pub struct SpecInput<'a> {
    pub launch: &'a LaunchSpec,
    pub isolation: &'a Isolation,
    /// `--cgroups-enable-cfs`.
    pub cfs: bool,
    /// Whether the host's cgroups are the unified (v2) hierarchy.
    pub cgroup_v2: bool,
    pub ids: Ids,
    /// The container's root: the image's rootfs, or the launcher's bind of the host's `/`.
    pub rootfs: &'a Path,
    pub cgroups_path: &'a str,
    /// The `meseta` binary: the command executor, which its supervisor runs in place in
    /// the container's first process (never executed there, see `rundir::Plan`).
    pub meseta_binary: &'a Path,
    /// Which of [`MASKED_PATHS`] are directories on this host. libcontainer would mount
    /// a read-only tmpfs over each, a filesystem of its own per container, which the
    /// kernel walks whenever any container's memory cgroup goes; `empty_dir` bound
    /// read-only hides them as well.
    pub masked_dirs: &'a [PathBuf],
    /// An empty directory of the agent's.
    pub empty_dir: &'a Path,
}

/// Why no spec can be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{0} needs the {1} isolator (start the agent with --isolation including it)")]
    IsolatorMissing(String, &'static str),
    #[error("volume path '{0}' must stay inside the sandbox (no '..')")]
    VolumeEscapes(String),
    #[error("unknown rlimit type '{0}'")]
    UnknownRlimit(String),
    #[error("invalid container spec: {0}")]
    Invalid(String),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
}

/// The container's OCI spec, checked against the OCI schema.
pub fn build(input: &SpecInput) -> Result<Value, SpecError> {
    let launch = input.launch;
    let isolation = input.isolation;
    if launch.rootfs.is_some() && !isolation.has(Isolator::FilesystemLinux) {
        return Err(SpecError::IsolatorMissing(
            "A container image".into(),
            "filesystem/linux",
        ));
    }
    let sandbox = sandbox_in_container(launch);
    let mut namespaces = vec![json!({"type": "mount"})];
    for (isolator, kind) in [
        (Isolator::NamespacesPid, "pid"),
        (Isolator::NamespacesIpc, "ipc"),
    ] {
        if isolation.has(isolator) {
            namespaces.push(json!({"type": kind}));
        }
    }
    if launch.hostname.is_some() {
        namespaces.push(json!({"type": "uts"}));
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": input.rootfs, "readonly": false},
        "process": process(input, &sandbox)?,
        "mounts": mounts(input, &sandbox)?,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": input.cgroups_path,
            "resources": resources(input),
            "maskedPaths": MASKED_PATHS
                .iter()
                .filter(|p| !input.masked_dirs.iter().any(|d| d == Path::new(p)))
                .collect::<Vec<_>>(),
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                "/proc/sys", "/proc/sysrq-trigger"],
        },
    });
    if let Some(hostname) = &launch.hostname {
        spec["hostname"] = json!(hostname);
    }
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone())
        .map_err(|e| SpecError::Invalid(e.to_string()))?;
    Ok(spec)
}

/// The sandbox's path as the container sees it.
pub fn sandbox_in_container(launch: &LaunchSpec) -> PathBuf {
    match launch.rootfs {
        Some(_) => PathBuf::from(IMAGE_SANDBOX),
        None => launch.working_dir.clone(),
    }
}

/// The image's config when `docker/runtime` applies it.
fn runtime_image<'a>(input: &SpecInput<'a>) -> Option<&'a ImageConfig> {
    let image = input.launch.image.as_ref();
    image.filter(|_| input.isolation.has(Isolator::DockerRuntime))
}

/// Whether `exec` is the host's `meseta` (the command executor) in an image: it runs in
/// place, and the image's config is for its task, not for it.
fn is_command_executor(input: &SpecInput, exec: &Exec) -> bool {
    input.launch.rootfs.is_some() && Path::new(&exec.path) == input.meseta_binary
}

/// The image's WorkingDir (as the container sees it) when `docker/runtime` applies: the
/// process's working directory, or for the command executor (which starts in the
/// sandbox) its task's. The launcher makes it as root when the image lacks it, as Mesos
/// does, so that a task of another user can start there too.
pub fn image_working_dir(input: &SpecInput) -> Option<PathBuf> {
    let dir = runtime_image(input)?.working_dir.as_ref()?;
    input
        .launch
        .rootfs
        .is_some()
        .then(|| Path::new("/").join(dir))
}

fn process(input: &SpecInput, sandbox: &Path) -> Result<Value, SpecError> {
    let launch = input.launch;
    let image = runtime_image(input);
    let exec = runtime::exec(&launch.program, image)?;
    let command_executor = is_command_executor(input, &exec);
    // libcontainer executes `args[0]`, so the path takes its place.
    let args: Vec<String> = std::iter::once(exec.path.clone())
        .chain(exec.argv.iter().skip(1).cloned())
        .collect();
    let mut env: Vec<(String, String)> = match (image, command_executor) {
        (Some(image), false) => runtime::image_env(image),
        _ => Vec::new(),
    };
    for (k, v) in &launch.env {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    env.retain(|(k, _)| k != runtime::IMAGE_RUNTIME_VAR);
    if let (Some(image), true) = (image, command_executor) {
        let config = serde_json::to_string(image).expect("an image config serializes");
        env.push((runtime::IMAGE_RUNTIME_VAR.into(), config));
    }
    for (k, v) in env.iter_mut() {
        if k == "MESOS_SANDBOX" {
            *v = sandbox.display().to_string();
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let asked = launch
        .capabilities
        .as_ref()
        .filter(|_| input.isolation.has(Isolator::LinuxCapabilities));
    let bounding: Vec<String> = match asked {
        Some(names) => names.iter().map(|n| cap_name(n)).collect(),
        None => DEFAULT_CAPABILITIES.iter().map(|n| cap_name(n)).collect(),
    };
    // Only root keeps capabilities across exec (we set no ambient ones).
    let effective = if input.ids.uid == 0 {
        bounding.clone()
    } else {
        Vec::new()
    };
    let mut rlimits = Vec::new();
    if input.isolation.has(Isolator::PosixRlimits) {
        for (kind, soft, hard) in &launch.rlimits {
            let name = kind
                .strip_prefix("RLMT_")
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase()))
                .ok_or_else(|| SpecError::UnknownRlimit(kind.clone()))?;
            rlimits.push(json!({
                "type": format!("RLIMIT_{name}"),
                "soft": soft.unwrap_or(u64::MAX),
                "hard": hard.unwrap_or(u64::MAX),
            }));
        }
    }
    Ok(json!({
        "terminal": false,
        "user": {"uid": input.ids.uid, "gid": input.ids.gid, "additionalGids": input.ids.groups},
        "args": args,
        "env": env,
        "cwd": match command_executor {
            true => None,
            false => image_working_dir(input),
        }
        .unwrap_or_else(|| sandbox.to_path_buf()),
        "capabilities": {"bounding": bounding, "effective": effective,
            "permitted": effective, "inheritable": [], "ambient": []},
        "rlimits": rlimits,
        "noNewPrivileges": input.isolation.has(Isolator::LinuxNnp),
    }))
}

fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    match upper.starts_with("CAP_") {
        true => upper,
        false => format!("CAP_{upper}"),
    }
}

fn bind(source: &Path, destination: &Path, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if read_only {
        options.push("ro");
    }
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

fn mounts(input: &SpecInput, sandbox: &Path) -> Result<Vec<Value>, SpecError> {
    let launch = input.launch;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    if input.isolation.has(Isolator::NamespacesIpc) {
        mounts.push(
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]}),
        );
    }
    if launch.rootfs.is_some() {
        mounts.push(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
        mounts.push(bind(&launch.working_dir, sandbox, false));
        for file in ["/etc/resolv.conf", "/etc/hosts"] {
            mounts.push(bind(Path::new(file), Path::new(file), true));
        }
    }
    for dir in input.masked_dirs {
        mounts.push(bind(input.empty_dir, dir, true));
    }
    let filesystem_linux = input.isolation.has(Isolator::FilesystemLinux);
    for volume in &launch.volumes {
        let (isolator, name) = match volume.source {
            VolumeSource::SandboxPath => (Isolator::VolumeSandboxPath, "volume/sandbox_path"),
            VolumeSource::HostPath => (Isolator::VolumeHostPath, "volume/host_path"),
            // Without filesystem/linux the agent linked it into the sandbox.
            VolumeSource::Persistent if !filesystem_linux => continue,
            VolumeSource::Persistent => (Isolator::FilesystemLinux, "filesystem/linux"),
        };
        if !input.isolation.has(isolator) && !filesystem_linux {
            let what = format!("Volume '{}'", volume.container_path.display());
            return Err(SpecError::IsolatorMissing(what, name));
        }
        let destination = if volume.container_path.is_absolute() {
            volume.container_path.clone()
        } else {
            if volume
                .container_path
                .components()
                .any(|c| matches!(c, Component::ParentDir))
            {
                let path = volume.container_path.display().to_string();
                return Err(SpecError::VolumeEscapes(path));
            }
            sandbox.join(&volume.container_path)
        };
        mounts.push(bind(&volume.host_path, &destination, volume.read_only));
    }
    Ok(mounts)
}

fn resources(input: &SpecInput) -> Value {
    let limits = input.launch.limits;
    let isolation = input.isolation;
    let mut resources = json!({});
    resources["devices"] = if isolation.has(Isolator::CgroupsDevices) {
        // Deny all but the usual character devices (null, zero, full, random, urandom,
        // tty, console, ptmx and the pseudo terminals).
        let allow = |major: i64, minor: Option<i64>| json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"});
        json!([
            {"allow": false, "access": "rwm"},
            allow(1, Some(3)), allow(1, Some(5)), allow(1, Some(7)), allow(1, Some(8)),
            allow(1, Some(9)), allow(5, Some(0)), allow(5, Some(1)), allow(5, Some(2)),
            allow(136, None),
        ])
    } else {
        json!([{"allow": true, "access": "rwm"}])
    };
    if let (true, Some(mem)) = (isolation.has(Isolator::CgroupsMem), limits.mem_bytes) {
        let limit = mem.max(MIN_MEMORY_BYTES);
        // On v1 the kernel pauses rather than kills, and the supervisor kills the whole
        // container; on v2 the kernel kills the whole cgroup at once.
        resources["memory"] = match input.cgroup_v2 {
            true => json!({"limit": limit}),
            false => json!({"limit": limit, "disableOOMKiller": true}),
        };
        if input.cgroup_v2 {
            resources["unified"] = json!({"memory.oom.group": "1"});
        }
    }
    if let (true, Some(cpus)) = (isolation.has(Isolator::CgroupsCpu), limits.cpus) {
        let shares = ((cpus * CPU_SHARES_PER_CPU) as u64).max(MIN_CPU_SHARES);
        resources["cpu"] = json!({"shares": shares});
        if input.cfs {
            let quota = ((cpus * CFS_PERIOD_US as f64) as i64).max(MIN_CFS_QUOTA_US);
            resources["cpu"]["quota"] = json!(quota);
            resources["cpu"]["period"] = json!(CFS_PERIOD_US);
        }
    }
    if isolation.has(Isolator::CgroupsPids) {
        resources["pids"] = json!({"limit": PIDS_LIMIT});
    }
    resources
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::{ImageConfig, Limits, Program, Volume};

    fn launch() -> LaunchSpec {
        LaunchSpec {
            env: vec![
                ("MESOS_SANDBOX".into(), "/w/sb".into()),
                ("A".into(), "1".into()),
            ],
            ..LaunchSpec::new("c1", Program::Shell("echo hi".into()), Path::new("/w/sb"))
        }
    }

    fn build_with(launch: &LaunchSpec, isolation: &str, uid: u32) -> Result<Value, SpecError> {
        build(&SpecInput {
            launch,
            isolation: &isolation.parse().unwrap(),
            cfs: true,
            cgroup_v2: false,
            ids: Ids {
                uid,
                gid: uid,
                groups: vec![],
            },
            rootfs: Path::new("/run/c1/rootfs"),
            cgroups_path: "/meseta/c1",
            meseta_binary: Path::new("/usr/bin/meseta"),
            masked_dirs: &[],
            empty_dir: Path::new("/run/c1/empty"),
        })
    }

    #[test]
    fn the_command_executor_is_named_by_its_host_path_and_nothing_of_the_host_is_bound() {
        // Its supervisor runs it in place; an image gets no copy of the host's binary.
        let mut l = launch();
        l.program = Program::Argv {
            path: "/usr/bin/meseta".into(),
            args: vec!["/usr/bin/meseta".into(), "executor".into()],
        };
        for rootfs in [Some("/images/busybox".into()), None] {
            l.rootfs = rootfs;
            let spec = build_with(&l, "filesystem/linux", 0).unwrap();
            assert_eq!(
                spec["process"]["args"],
                json!(["/usr/bin/meseta", "executor"])
            );
            let mounts = spec["mounts"].as_array().unwrap();
            assert!(
                mounts.iter().all(|m| m["source"] != "/usr/bin/meseta"),
                "{mounts:?}"
            );
        }
    }

    fn destinations(spec: &Value) -> Vec<String> {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn host_root_container_with_namespaces_and_limits() {
        let mut l = launch();
        l.limits = Limits {
            cpus: Some(0.5),
            mem_bytes: Some(16 << 20),
            disk_bytes: None,
        };
        l.hostname = Some("box".into());
        let spec = build_with(
            &l,
            "cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/ipc,linux/nnp",
            0,
        )
        .unwrap();
        let ns: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["mount", "pid", "ipc", "uts"]);
        assert_eq!(spec["hostname"], "box");
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], MIN_MEMORY_BYTES, "at least 32MB");
        assert_eq!(r["memory"]["disableOOMKiller"], true);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["pids"]["limit"], PIDS_LIMIT);
        assert_eq!(r["devices"], json!([{"allow": true, "access": "rwm"}]));
        assert_eq!(spec["process"]["args"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(spec["process"]["cwd"], "/w/sb");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        let env = spec["process"]["env"].as_array().unwrap();
        assert!(env.contains(&json!("MESOS_SANDBOX=/w/sb")));
        assert!(env.iter().any(|e| e.as_str().unwrap().starts_with("PATH=")));
        assert_eq!(
            destinations(&spec),
            ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"]
        );
        assert_eq!(spec["linux"]["cgroupsPath"], "/meseta/c1");
    }

    #[test]
    fn cgroup_v2_kills_the_whole_group_and_limits_need_their_isolators() {
        let mut l = launch();
        l.limits.mem_bytes = Some(64 << 20);
        l.limits.cpus = Some(1.0);
        let v2 = |isolation: &str| {
            build(&SpecInput {
                launch: &l,
                isolation: &isolation.parse().unwrap(),
                cfs: false,
                cgroup_v2: true,
                ids: Ids::default(),
                rootfs: Path::new("/r"),
                cgroups_path: "/meseta/c1",
                meseta_binary: Path::new("/m"),
                masked_dirs: &[],
                empty_dir: Path::new("/e"),
            })
            .unwrap()
        };
        let spec = v2("cgroups/mem,cgroups/cpu");
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"], json!({"limit": 64 << 20}));
        assert_eq!(r["unified"]["memory.oom.group"], "1");
        assert_eq!(r["cpu"], json!({"shares": 1024}), "no quota without CFS");
        let spec = v2("namespaces/pid");
        let r = &spec["linux"]["resources"];
        assert!(r.get("memory").is_none() && r.get("cpu").is_none());
    }

    #[test]
    fn image_containers_see_the_sandbox_at_the_mesos_path() {
        let mut l = launch();
        l.rootfs = Some("/images/busybox".into());
        l.program = Program::Image { arguments: vec![] };
        l.image = Some(ImageConfig {
            entrypoint: vec!["/bin/echo".into()],
            cmd: vec!["hello".into()],
            env: vec!["A=image".into(), "B=2".into()],
            ..Default::default()
        });
        let err = build_with(&l, "cgroups/mem", 0).unwrap_err();
        assert!(matches!(
            err,
            SpecError::IsolatorMissing(_, "filesystem/linux")
        ));
        let spec = build_with(&l, "filesystem/linux,docker/runtime", 0).unwrap();
        assert_eq!(spec["process"]["cwd"], IMAGE_SANDBOX);
        assert_eq!(spec["process"]["args"], json!(["/bin/echo", "hello"]));
        let env = spec["process"]["env"].as_array().unwrap();
        assert!(env.contains(&json!("MESOS_SANDBOX=/mnt/mesos/sandbox")));
        assert!(env.contains(&json!("A=1")), "the task's variables win");
        assert!(env.contains(&json!("B=2")));
        let mounts = spec["mounts"].as_array().unwrap();
        let sandbox = mounts
            .iter()
            .find(|m| m["destination"] == IMAGE_SANDBOX)
            .unwrap();
        assert_eq!(sandbox["source"], "/w/sb");
        // The executor's arguments replace Cmd; without docker/runtime nothing says what
        // to run.
        l.program = Program::Image {
            arguments: vec!["x".into()],
        };
        let spec = build_with(&l, "filesystem/linux,docker/runtime", 0).unwrap();
        assert_eq!(spec["process"]["args"], json!(["/bin/echo", "x"]));
        let err = build_with(&l, "filesystem/linux", 0).unwrap_err();
        assert_eq!(err, SpecError::Runtime(RuntimeError::NoImage));
        l.image = Some(ImageConfig::default());
        let err = build_with(&l, "filesystem/linux,docker/runtime", 0).unwrap_err();
        assert_eq!(err, SpecError::Runtime(RuntimeError::NoExecutable));
    }

    fn input<'a>(launch: &'a LaunchSpec, isolation: &'a Isolation) -> SpecInput<'a> {
        SpecInput {
            launch,
            isolation,
            cfs: false,
            cgroup_v2: false,
            ids: Ids::default(),
            rootfs: Path::new("/run/c1/rootfs"),
            cgroups_path: "/meseta/c1",
            meseta_binary: Path::new("/usr/bin/meseta"),
            masked_dirs: &[],
            empty_dir: Path::new("/run/c1/empty"),
        }
    }

    #[test]
    fn masked_directories_get_the_empty_directory_bound_read_only_and_files_stay_masked() {
        let mut l = launch();
        l.rootfs = Some("/images/busybox".into());
        let isolation: Isolation = "filesystem/linux".parse().unwrap();
        let dirs = [PathBuf::from("/proc/acpi"), PathBuf::from("/sys/firmware")];
        let spec = build(&SpecInput {
            masked_dirs: &dirs,
            ..input(&l, &isolation)
        })
        .unwrap();
        let masked = spec["linux"]["maskedPaths"].as_array().unwrap();
        assert_eq!(masked.len(), MASKED_PATHS.len() - 2);
        assert!(masked.contains(&json!("/proc/kcore")));
        assert!(!masked.contains(&json!("/proc/acpi")));
        assert!(!masked.contains(&json!("/sys/firmware")));
        let mounts = spec["mounts"].as_array().unwrap();
        let at = |path: &str| {
            mounts
                .iter()
                .position(|m| m["destination"] == path)
                .unwrap()
        };
        for dir in ["/proc/acpi", "/sys/firmware"] {
            let mount = &mounts[at(dir)];
            assert_eq!(mount["source"], "/run/c1/empty");
            assert_eq!(mount["type"], "bind");
            assert!(mount["options"].as_array().unwrap().contains(&json!("ro")));
        }
        assert!(at("/proc") < at("/proc/acpi") && at("/sys") < at("/sys/firmware"));
        // Without such directories, every path is left to libcontainer.
        let spec = build(&input(&l, &isolation)).unwrap();
        assert_eq!(
            spec["linux"]["maskedPaths"].as_array().unwrap().len(),
            MASKED_PATHS.len()
        );
    }

    #[test]
    fn an_executor_of_its_own_starts_in_the_image_working_dir_as_the_task_user() {
        let mut l = launch();
        l.rootfs = Some("/images/busybox".into());
        l.program = Program::Image { arguments: vec![] };
        l.image = Some(ImageConfig {
            entrypoint: vec!["/bin/run".into()],
            working_dir: Some("/srv/app".into()),
            user: Some("1000:1000".into()),
            ..Default::default()
        });
        let runtime: Isolation = "filesystem/linux,docker/runtime".parse().unwrap();
        assert_eq!(
            image_working_dir(&input(&l, &runtime)),
            Some(PathBuf::from("/srv/app"))
        );
        let spec = build_with(&l, "filesystem/linux,docker/runtime", 65534).unwrap();
        assert_eq!(spec["process"]["cwd"], "/srv/app");
        let env = spec["process"]["env"].as_array().unwrap();
        assert!(env.contains(&json!("MESOS_SANDBOX=/mnt/mesos/sandbox")));
        // The image's User is not applied (Mesos only logs it): the task's user is.
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 65534, "gid": 65534, "additionalGids": []})
        );
        // A relative WorkingDir is taken from the root; a program of the task's own
        // starts there too.
        l.image.as_mut().unwrap().working_dir = Some("app".into());
        l.program = Program::Shell("pwd".into());
        let spec = build_with(&l, "filesystem/linux,docker/runtime", 0).unwrap();
        assert_eq!(spec["process"]["cwd"], "/app");
        // Without docker/runtime, without a WorkingDir, or without an image: the sandbox.
        let linux: Isolation = "filesystem/linux".parse().unwrap();
        assert_eq!(image_working_dir(&input(&l, &linux)), None);
        let spec = build_with(&l, "filesystem/linux", 0).unwrap();
        assert_eq!(spec["process"]["cwd"], IMAGE_SANDBOX);
        l.image.as_mut().unwrap().working_dir = None;
        assert_eq!(image_working_dir(&input(&l, &runtime)), None);
        l.image.as_mut().unwrap().working_dir = Some("/srv/app".into());
        l.rootfs = None;
        assert_eq!(image_working_dir(&input(&l, &runtime)), None);
    }

    #[test]
    fn the_command_executor_gets_the_image_config_for_its_task() {
        let mut l = launch();
        l.rootfs = Some("/images/busybox".into());
        l.program = Program::Argv {
            path: "/usr/bin/meseta".into(),
            args: vec!["/usr/bin/meseta".into(), "executor".into()],
        };
        l.env
            .push((runtime::IMAGE_RUNTIME_VAR.into(), "stale".into()));
        let image = ImageConfig {
            entrypoint: vec!["/bin/echo".into()],
            env: vec!["B=2".into()],
            working_dir: Some("/work".into()),
            ..Default::default()
        };
        l.image = Some(image.clone());
        let runtime: Isolation = "filesystem/linux,docker/runtime".parse().unwrap();
        assert_eq!(
            image_working_dir(&input(&l, &runtime)),
            Some(PathBuf::from("/work")),
            "made for its task"
        );
        let spec = build_with(&l, "filesystem/linux,docker/runtime", 0).unwrap();
        assert_eq!(spec["process"]["args"][0], "/usr/bin/meseta");
        assert_eq!(
            spec["process"]["cwd"], IMAGE_SANDBOX,
            "the executor's is the sandbox"
        );
        let env = spec["process"]["env"].as_array().unwrap();
        assert!(
            !env.contains(&json!("B=2")),
            "the image's Env is for the task"
        );
        let var = format!("{}=", runtime::IMAGE_RUNTIME_VAR);
        let carried: Vec<&str> = env
            .iter()
            .filter_map(|e| e.as_str()?.strip_prefix(var.as_str()))
            .collect();
        assert_eq!(carried.len(), 1, "{env:?}");
        let sent: ImageConfig = serde_json::from_str(carried[0]).unwrap();
        assert_eq!(sent, image);
        // Without docker/runtime the executor hears nothing of the image.
        let spec = build_with(&l, "filesystem/linux", 0).unwrap();
        let env = spec["process"]["env"].as_array().unwrap();
        assert!(!env.iter().any(|e| e.as_str().unwrap().starts_with(&var)));
    }

    #[test]
    fn volumes_bind_read_only_or_read_write_and_stay_in_the_sandbox() {
        let mut l = launch();
        l.volumes = vec![
            Volume {
                host_path: "/srv/data".into(),
                container_path: "/data".into(),
                read_only: true,
                source: VolumeSource::HostPath,
                to_user: false,
            },
            Volume {
                host_path: "/w/sb/shared".into(),
                container_path: "out".into(),
                read_only: false,
                source: VolumeSource::SandboxPath,
                to_user: false,
            },
        ];
        let err = build_with(&l, "volume/sandbox_path", 0).unwrap_err();
        assert!(matches!(
            err,
            SpecError::IsolatorMissing(_, "volume/host_path")
        ));
        let spec = build_with(&l, "volume/host_path,volume/sandbox_path", 0).unwrap();
        let mounts = spec["mounts"].as_array().unwrap();
        let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
        assert_eq!(data["options"], json!(["rbind", "rprivate", "ro"]));
        let out = mounts
            .iter()
            .find(|m| m["destination"] == "/w/sb/out")
            .unwrap();
        assert_eq!(out["options"], json!(["rbind", "rprivate"]));
        l.volumes[1].container_path = "../escape".into();
        let err = build_with(&l, "volume/host_path,volume/sandbox_path", 0).unwrap_err();
        assert_eq!(err, SpecError::VolumeEscapes("../escape".into()));
    }

    #[test]
    fn persistent_volumes_are_bound_with_filesystem_linux_only() {
        let mut l = launch();
        l.volumes = vec![Volume {
            host_path: "/w/volumes/roles/r/v1".into(),
            container_path: "state".into(),
            read_only: true,
            source: VolumeSource::Persistent,
            to_user: false,
        }];
        let spec = build_with(&l, "filesystem/linux", 0).unwrap();
        let mounts = spec["mounts"].as_array().unwrap();
        let state = mounts
            .iter()
            .find(|m| m["destination"] == "/w/sb/state")
            .unwrap();
        assert_eq!(state["source"], "/w/volumes/roles/r/v1");
        assert_eq!(state["options"], json!(["rbind", "rprivate", "ro"]));
        // In an image, under the sandbox's mount point there.
        l.rootfs = Some("/images/busybox".into());
        let spec = build_with(&l, "filesystem/linux", 0).unwrap();
        assert!(destinations(&spec).contains(&format!("{IMAGE_SANDBOX}/state")));
        // Without filesystem/linux the agent links it instead: no mount.
        l.rootfs = None;
        let spec = build_with(&l, "cgroups/mem", 0).unwrap();
        assert!(!destinations(&spec).iter().any(|d| d.ends_with("state")));
    }

    #[test]
    fn capabilities_devices_and_rlimits() {
        let mut l = launch();
        l.capabilities = Some(vec!["NET_ADMIN".into(), "sys_time".into()]);
        l.rlimits = vec![("RLMT_NOFILE".into(), Some(100), None)];
        let spec = build_with(&l, "linux/capabilities,posix/rlimits,cgroups/devices", 0).unwrap();
        let caps = &spec["process"]["capabilities"];
        assert_eq!(caps["effective"], json!(["CAP_NET_ADMIN", "CAP_SYS_TIME"]));
        assert_eq!(
            spec["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": u64::MAX}])
        );
        let devices = spec["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(devices[0], json!({"allow": false, "access": "rwm"}));
        // A non-root user keeps no capability; without the isolator the asked ones are
        // ignored for the default set.
        let spec = build_with(&l, "cgroups/mem", 1000).unwrap();
        let caps = &spec["process"]["capabilities"];
        assert_eq!(caps["effective"], json!([]));
        assert!(caps["bounding"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_CHOWN")));
        assert_eq!(spec["process"]["rlimits"], json!([]));
        l.capabilities = Some(vec!["NOT_A_CAP".into()]);
        let err = build_with(&l, "linux/capabilities", 0).unwrap_err();
        assert!(matches!(err, SpecError::Invalid(_)), "{err}");
        l.capabilities = None;
        l.rlimits = vec![("NOFILE".into(), None, None)];
        let err = build_with(&l, "posix/rlimits", 0).unwrap_err();
        assert_eq!(err, SpecError::UnknownRlimit("NOFILE".into()));
    }

    #[test]
    fn argv_runs_its_path() {
        let mut l = launch();
        l.program = Program::Argv {
            path: "/usr/bin/meseta".into(),
            args: vec!["meseta".into(), "executor".into()],
        };
        let spec = build_with(&l, "namespaces/pid", 0).unwrap();
        assert_eq!(
            spec["process"]["args"],
            json!(["/usr/bin/meseta", "executor"])
        );
    }
}
