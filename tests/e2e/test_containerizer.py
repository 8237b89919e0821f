"""The Linux launcher: tasks in namespaces and cgroups, under `meseta launch` supervisors.

A master and an agent run as separate processes, the agent with Linux isolators
(``ISOLATION``); a raw v1 framework (checkpoint=true) launches command tasks with
resources and ``ContainerInfo`` and records every status update. What is checked is
what a user of Mesos's unified containerizer relies on:

* limits bite: a task allocating past its ``mem`` ends TASK_FAILED with
  REASON_CONTAINER_LIMITATION_MEMORY and a message naming the limit;
* isolation: the task has its own pid and ipc namespaces (it sees only its own
  processes) and its own hostname; its mounts (a fresh ``/proc``, volumes) do not show
  on the host;
* ``host_path`` volumes: read-only ones refuse writes, writes to read-write ones show
  on the host;
* an agent killed with SIGKILL while containers run comes back, reattaches to its
  containers, and reports the real ends of those that ended meanwhile (an OOM kill, an
  executor killed by a signal); no status update is lost;
* killing a task leaves no process, mount, cgroup or run directory behind.

All but the flag check need root (namespaces, cgroups); they skip with a reason
otherwise.
"""

import contextlib
import fcntl
import getpass
import os
import subprocess
import tempfile
import time
import socket
import uuid
from pathlib import Path

import pytest

from conftest import wait_for
from helpers import (
    UPDATE_TIMEOUT,
    RawFramework,
    process_alive,
    processes_with,
    scalar,
    scalar_resource,
    wait_sandbox,
)

ISOLATION = (
    "cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/ipc,"
    "filesystem/linux,volume/host_path,volume/sandbox_path"
)
AGENT_ARGS = ("--resources", "cpus:4;mem:4096;disk:4096;ports:[31000-32000]")
# An agent that restarts recovers, reregisters and hears again from its executors.
RECOVERY_TIMEOUT = 90.0
CGROUP_ROOT = Path("/sys/fs/cgroup")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the Linux launcher needs root (namespaces and cgroups)"
)


class Framework(RawFramework):
    """A checkpointing raw framework that launches one TaskInfo per offer."""

    def __init__(self, endpoint, name, user=None):
        info = {
            "user": user or getpass.getuser(),
            "name": name,
            "checkpoint": True,
            "failover_timeout": 300.0,
        }
        super().__init__(endpoint, info)

    def launch_task(self, agent_id, task):
        cpus = scalar(task["resources"], "cpus") + 0.1
        mem = scalar(task["resources"], "mem") + 32

        def fitting_offer():
            for offer in self.offers.values():
                if (
                    offer["agent_id"]["value"] == agent_id
                    and scalar(offer["resources"], "cpus") >= cpus - 1e-9
                    and scalar(offer["resources"], "mem") >= mem - 1e-9
                ):
                    return offer
            return None

        offer = self.wait(fitting_offer, what=f"an offer from agent {agent_id}")
        self.accept([offer], [task])

    def kill(self, task_id, agent_id):
        self.call(
            "KILL", kill={"task_id": {"value": task_id}, "agent_id": {"value": agent_id}}
        )


def task_info(agent_id, command, *, mem=32, disk=None, container=None, name=None):
    task_id = name or f"t-{uuid.uuid4().hex[:8]}"
    resources = [scalar_resource("cpus", 0.1), scalar_resource("mem", mem)]
    if disk is not None:
        resources.append(scalar_resource("disk", disk))
    task = {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": resources,
        "command": {"value": command, "shell": True},
    }
    if container is not None:
        task["container"] = container
    return task


class Linux:
    """A master, an agent with Linux isolators, and a framework on them."""

    def __init__(self, meseta, isolation=ISOLATION, extra_args=()):
        self.meseta = meseta
        self.master = meseta.master()
        args = (*AGENT_ARGS, "--isolation", isolation, *extra_args)
        self.agent = meseta.agent(self.master, extra_args=args)
        self.agent_id = meseta.wait_registered(self.agent, self.master.api)["agent_info"]["id"][
            "value"
        ]
        self._framework = None

    @property
    def framework(self):
        """The test's framework, subscribed on first use (it holds the offers)."""
        if self._framework is None:
            self._framework = Framework(self.master.api, "containerizer-test")
        return self._framework

    @property
    def containers_dir(self):
        return self.agent.work_dir / "containers"

    def run(self, command, **kwargs):
        """Launches a task; returns its id."""
        task = task_info(self.agent_id, command, **kwargs)
        self.framework.launch_task(self.agent_id, task)
        return task["task_id"]["value"]

    def sandbox(self, task_id):
        return Path(wait_sandbox(self.agent.api, self.framework.id, task_id))

    def output(self, task_id, name="stdout"):
        return (self.sandbox(task_id) / name).read_text()

    def wait_output(self, task_id, predicate, what):
        """Waits until the task's stdout satisfies ``predicate``; returns it."""

        def ready():
            out = self.output(task_id)
            return out if predicate(out) else None

        return wait_for(ready, UPDATE_TIMEOUT, what=what)


def sleeper(marker):
    """A shell command that copies `sleep` into the sandbox as ``marker``, so that its
    processes can be found by name."""
    return f"cp $(command -v sleep) ./{marker}"


def container_id(sandbox):
    """The container id: the last component of a run's sandbox path."""
    return Path(sandbox).name


def container_cgroups(cid):
    """The cgroup directories of container ``cid`` that exist, in every hierarchy."""
    return [p for p in CGROUP_ROOT.glob(f"*/meseta/{cid}") if p.is_dir()] + [
        p for p in [CGROUP_ROOT / "meseta" / cid] if p.is_dir()
    ]


def container_first_process(cid):
    """The host pid of container ``cid``'s first process (pid 1 in its namespace: the
    executor)."""
    procs = next(path / "cgroup.procs" for path in container_cgroups(cid))
    for pid in procs.read_text().split():
        status = Path(f"/proc/{pid}/status").read_text()
        nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        if nspid[-1] == "1":
            return int(pid)
    raise AssertionError(f"container {cid} has no first process")


def host_mount_points():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def remove_cgroups_of(containers_dir):
    """Test hygiene: the cgroups of the containers whose supervisors the fixture
    cleanup killed."""
    if not containers_dir.is_dir():
        return
    for run in containers_dir.iterdir():
        for path in container_cgroups(run.name):
            try:
                path.rmdir()
            except OSError:
                pass


@contextlib.contextmanager
def linux_cluster(meseta, isolation=ISOLATION, extra_args=()):
    cluster = Linux(meseta, isolation, extra_args)
    try:
        yield cluster
    finally:
        meseta.shutdown()
        remove_cgroups_of(cluster.containers_dir)


@pytest.fixture
def linux(meseta):
    with linux_cluster(meseta) as cluster:
        yield cluster


def test_unknown_isolator_stops_the_agent(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=("--isolation", "cgroups/mem,network/cni"), wait=False)
    assert agent.wait_exit() != 0
    stderr = agent.output()
    assert "unknown isolator 'network/cni'" in stderr, stderr
    assert "cgroups/mem" in stderr, "the message lists the known isolators"


def test_linux_isolators_need_root(meseta_bin):
    """Not root (the test drops to `nobody` when it is): the agent refuses to start."""
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o777)
        result = run_unprivileged(
            [str(meseta_bin), "agent", "--master", "127.0.0.1:1", "--port", "0",
             "--work-dir", work, "--isolation", "cgroups/mem"]
        )
    assert result.returncode != 0, result
    assert "must run as root" in result.stderr, result.stderr
    assert "posix/cpu,posix/mem" in result.stderr, "the message says what works instead"


def run_unprivileged(argv):
    """Runs ``argv`` as `nobody` when root, else as is."""
    demote = None
    if os.geteuid() == 0:

        def demote():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=demote,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


@needs_root
def test_usage_statistics_come_from_the_cgroup(linux):
    """The task holds 40 MB and spins for half a second of CPU: both show, in seconds."""
    program = (
        "import time; a = bytearray(40 * 1024 * 1024); t = time.process_time()\n"
        "while time.process_time() - t < 0.5: pass\n"
        "time.sleep(1000)"
    )
    task = linux.run(f"python3 -c '{program}'", mem=128)
    linux.framework.wait_state(task, "TASK_RUNNING")

    def statistics():
        for entry in linux.agent.api.get("/monitor/statistics").json():
            stats = entry["statistics"]
            cpu_secs = stats["cpus_user_time_secs"] + stats["cpus_system_time_secs"]
            mine = entry["executor_id"] == task
            if mine and stats["mem_rss_bytes"] > 40 * 1024 * 1024 and cpu_secs >= 0.5:
                return stats
        return None

    stats = wait_for(statistics, what="the task's 40MB and half a second of CPU in its statistics")
    assert stats["mem_limit_bytes"] == (128 + 32) * 1024 * 1024, stats
    assert stats["cpus_limit"] == pytest.approx(0.2), stats
    assert stats["processes"] >= 2, stats
    # Its own half second and the executor's start, not minutes: the unit is seconds.
    assert stats["cpus_user_time_secs"] + stats["cpus_system_time_secs"] < 30, stats
    linux.framework.kill(task, linux.agent_id)
    linux.framework.wait_state(task, "TASK_KILLED")


@needs_root
def test_disk_quota_fails_the_task_with_its_reason(meseta):
    extra = ("--enforce-container-disk-quota", "--container-disk-watch-interval", "200ms")
    with linux_cluster(meseta, ISOLATION + ",disk/du", extra) as linux:
        task = linux.run("dd if=/dev/zero of=big bs=1M count=20 && sleep 1000", disk=8)
        status = linux.framework.wait_state(task, "TASK_FAILED")
        assert status["reason"] == "REASON_CONTAINER_LIMITATION_DISK", status
        assert "exceeds quota (8MB)" in status["message"], status


@needs_root
def test_task_runs_as_the_framework_user_without_capabilities(linux):
    """As root the agent switches to the framework's user; the process keeps no
    capability and cannot gain one (no_new_privs with linux/nnp is checked in units)."""
    framework = Framework(linux.master.api, "as-nobody", user="nobody")
    task = task_info(linux.agent_id, "id -u; grep CapEff /proc/self/status; touch mine")
    framework.launch_task(linux.agent_id, task)
    task_id = task["task_id"]["value"]
    framework.wait_state(task_id, "TASK_FINISHED")
    sandbox = Path(wait_sandbox(linux.agent.api, framework.id, task_id))
    lines = (sandbox / "stdout").read_text().splitlines()
    assert lines[0] == "65534", lines
    assert lines[1].split() == ["CapEff:", "0000000000000000"], lines
    assert (sandbox / "mine").stat().st_uid == 65534


@needs_root
def test_memory_limit_fails_the_task_with_its_reason(linux):
    task = linux.run(
        'python3 -c "import time; a = bytearray(300 * 1024 * 1024); time.sleep(30)"', mem=32
    )
    status = linux.framework.wait_state(task, "TASK_FAILED")
    assert status["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY", status
    assert status["source"] == "SOURCE_AGENT", status
    # The task's 32MB and the command executor's 32MB.
    assert "Memory limit exceeded: Requested: 64MB" in status["message"], status


@needs_root
def test_task_has_its_own_pid_ipc_and_uts_namespaces(linux):
    command = (
        "readlink /proc/self/ns/pid /proc/self/ns/ipc; hostname; "
        "for p in /proc/[0-9]*; do basename $p; done | tr '\\n' ' '; echo; "
        "echo done; sleep 1000"
    )
    task = linux.run(command, container={"type": "MESOS", "hostname": "meseta-box"})
    linux.framework.wait_state(task, "TASK_RUNNING")
    out = linux.wait_output(task, lambda o: "done\n" in o, "the task's report").splitlines()
    pid_ns, ipc_ns, hostname, pids = out[0], out[1], out[2], out[3].split()
    assert pid_ns != os.readlink("/proc/self/ns/pid")
    assert ipc_ns != os.readlink("/proc/self/ns/ipc")
    assert hostname == "meseta-box"
    assert socket.gethostname() != "meseta-box", "the hostname does not leak"
    # The executor is pid 1; the shell and its `for` loop: nothing of the host.
    assert "1" in pids and len(pids) <= 5, pids
    linux.framework.kill(task, linux.agent_id)
    linux.framework.wait_state(task, "TASK_KILLED")


@needs_root
def test_host_path_volumes_read_only_and_read_write(linux, tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "in").write_text("from the host\n")
    container = {
        "type": "MESOS",
        "volumes": [
            {"container_path": "ro", "host_path": str(ro), "mode": "RO"},
            {"container_path": "rw", "host_path": str(rw), "mode": "RW"},
            {
                "container_path": "scratch",
                "mode": "RW",
                "source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "SELF", "path": "s"}},
            },
        ],
    }
    command = (
        "cat ro/in; (echo x > ro/denied) 2>/dev/null && echo WROTE || echo READONLY; "
        "echo from the task > rw/out; echo kept > scratch/f; "
        "grep -c \" $MESOS_SANDBOX/\" /proc/self/mountinfo; sleep 1000"
    )
    task = linux.run(command, container=container)
    linux.framework.wait_state(task, "TASK_RUNNING")
    out = linux.wait_output(task, lambda o: len(o.splitlines()) >= 3, "the task's report")
    lines = out.splitlines()
    assert lines[0] == "from the host"
    assert lines[1] == "READONLY", out
    assert int(lines[2]) == 3, f"three volume mounts in the container: {out}"
    assert not (ro / "denied").exists()
    assert wait_for(lambda: (rw / "out").exists(), what="the write to show on the host")
    assert (rw / "out").read_text() == "from the task\n"
    sandbox = linux.sandbox(task)
    assert (sandbox / "s" / "f").read_text() == "kept\n", "sandbox_path volume"
    # The container's mounts are its own: the host sees none under the sandbox.
    leaked = [m for m in host_mount_points() if m.startswith(str(sandbox))]
    assert leaked == [], leaked
    linux.framework.kill(task, linux.agent_id)
    linux.framework.wait_state(task, "TASK_KILLED")


@needs_root
def test_kill_leaves_no_process_mount_or_cgroup(linux, tmp_path):
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    data.mkdir()
    container = {
        "type": "MESOS",
        "volumes": [{"container_path": "data", "host_path": str(data), "mode": "RW"}],
    }
    # A daemonized child in its own session, which only a cgroup-wide kill catches.
    command = f"{sleeper(marker)}; setsid ./{marker} 1000 & ./{marker} 1000"
    task = linux.run(command, container=container)
    linux.framework.wait_state(task, "TASK_RUNNING")
    wait_for(lambda: len(processes_with(marker)) >= 2, what="both sleeps to run")
    sandbox = linux.sandbox(task)
    cid = container_id(sandbox)
    assert container_cgroups(cid), "the container has cgroups while it runs"
    assert (linux.containers_dir / cid).is_dir()
    linux.framework.kill(task, linux.agent_id)
    linux.framework.wait_state(task, "TASK_KILLED")
    wait_for(lambda: not processes_with(marker), what="every process of the task to end")
    wait_for(lambda: not container_cgroups(cid), what="the container's cgroups to go")
    wait_for(
        lambda: not (linux.containers_dir / cid).exists(), what="the run directory to go"
    )
    mounts = [m for m in host_mount_points() if str(sandbox) in m or cid in m]
    assert mounts == [], mounts


@needs_root
def test_launches_wait_for_a_start_slot_and_a_kill_meanwhile_cancels_the_container(linux):
    """Supervisors take a slot (a record lock on a byte of `containers/start.lock`)
    before creating their container. While the test holds the whole file, launches wait;
    a task killed meanwhile ends TASK_KILLED and its container is never created;
    released, the other starts."""
    lock = os.open(linux.containers_dir / "start.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX, 0, 0)
        cancelled = linux.run("touch ran; exec sleep 1000")
        waiting = linux.run("exec sleep 1000")
        cancelled_sandbox = linux.sandbox(cancelled)
        linux.sandbox(waiting)
        time.sleep(1.5)
        assert "TASK_RUNNING" not in linux.framework.states(waiting), "no slot, no start"
        linux.framework.kill(cancelled, linux.agent_id)
        linux.framework.wait_state(cancelled, "TASK_KILLED")
    finally:
        os.close(lock)
    linux.framework.wait_state(waiting, "TASK_RUNNING")
    cid = container_id(cancelled_sandbox)
    wait_for(lambda: not (linux.containers_dir / cid).exists(), what="the cancelled run directory to go")
    assert not (cancelled_sandbox / "ran").exists(), "the cancelled container never ran its command"
    # Not even its executor: one that started would have logged its failed subscriptions.
    stderr = cancelled_sandbox / "stderr"
    assert not stderr.exists() or stderr.read_text() == "", stderr.read_text()
    assert not container_cgroups(cid)
    assert "TASK_RUNNING" not in linux.framework.states(cancelled)


def v1_hierarchies():
    """{controllers of a v1 hierarchy: its mount point} from the host's mount table."""
    hierarchies = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            after = fields[fields.index("-") + 1 :]
            if after[0] == "cgroup":
                controllers = {o for o in after[2].split(",") if o not in ("rw", "ro") and "=" not in o}
                hierarchies[frozenset(controllers)] = fields[4]
    return hierarchies


@needs_root
@pytest.mark.skipif(not v1_hierarchies(), reason="a pure cgroup v2 host has no v1 hierarchies")
def test_a_container_joins_only_the_v1_hierarchies_it_uses(linux):
    """cpu, cpuacct, memory, devices and pids; not cpuset, blkio, freezer and the rest,
    which its supervisor unmounts in its own mount namespace: the host keeps them."""
    used = {"cpu", "cpuacct", "memory", "devices", "pids"}
    before = v1_hierarchies()
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    task = linux.run(f"{sleeper(marker)}; exec ./{marker} 1000")
    linux.framework.wait_state(task, "TASK_RUNNING")
    [pid] = wait_for(lambda: processes_with(marker), what="the sleep to run")
    cid = container_id(linux.sandbox(task))
    in_container = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers and "=" not in controllers:
            in_container[frozenset(controllers.split(","))] = path == f"/meseta/{cid}"
    joined = {c for controllers, yes in in_container.items() if yes for c in controllers}
    mounted = {c for controllers in before for c in controllers}
    assert joined == used & mounted, in_container
    for controllers, mount_point in before.items():
        assert (Path(mount_point) / "meseta" / cid).is_dir() == bool(controllers & used), mount_point
    assert v1_hierarchies() == before, "the host's hierarchies stay mounted"
    linux.framework.kill(task, linux.agent_id)
    linux.framework.wait_state(task, "TASK_KILLED")
    wait_for(lambda: not container_cgroups(cid), what="the container's cgroups to go")


@needs_root
def test_agent_restart_reattaches_and_loses_no_update(linux):
    fw = linux.framework
    survivor_marker = f"survivor-{uuid.uuid4().hex[:8]}"
    survivor = linux.run(
        f"{sleeper(survivor_marker)}; exec ./{survivor_marker} 1000", name="survivor"
    )
    # Runs out of memory a few seconds in: while the agent is down.
    hog = linux.run(
        'sleep 4; python3 -c "import time; a = bytearray(300 * 1024 * 1024); time.sleep(30)"',
        name="hog",
    )
    victim_marker = f"victim-{uuid.uuid4().hex[:8]}"
    victim = linux.run(f"{sleeper(victim_marker)}; exec ./{victim_marker} 1000", name="victim")
    for task in (survivor, hog, victim):
        fw.wait_state(task, "TASK_RUNNING")
    victim_cid = container_id(linux.sandbox(victim))
    survivor_cid = container_id(linux.sandbox(survivor))
    hog_cid = container_id(linux.sandbox(hog))

    linux.agent.kill()
    # While the agent is down: the victim's executor (its container's first process,
    # pid 1 in its namespace) is killed, and the hog runs out of memory.
    os.kill(container_first_process(victim_cid), 9)
    wait_for(lambda: not processes_with(victim_marker), what="the victim's container to end")
    wait_for(lambda: not container_cgroups(victim_cid), what="the victim's cgroups to go")
    wait_for(lambda: not container_cgroups(hog_cid), what="the hog's container to be OOM-killed")
    assert processes_with(survivor_marker), "the survivor keeps running"

    linux.agent.start()
    status = fw.wait_state(hog, "TASK_FAILED", timeout=RECOVERY_TIMEOUT)
    assert status["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY", status
    status = fw.wait_state(victim, "TASK_FAILED", timeout=RECOVERY_TIMEOUT)
    assert status["message"] == "Executor terminated by signal 9", status
    # The survivor's executor resubscribes; killing its task still works.
    wait_for(
        lambda: linux.agent.api.get("/state").json()["frameworks"][0]["executors"],
        RECOVERY_TIMEOUT,
        what="the agent to list the recovered executors",
    )
    fw.kill(survivor, linux.agent_id)
    fw.wait_state(survivor, "TASK_KILLED", timeout=RECOVERY_TIMEOUT)
    wait_for(lambda: not processes_with(survivor_marker), what="the survivor to end")
    wait_for(lambda: not container_cgroups(survivor_cid), what="its cgroups to go")
    # Every update of each task arrived, in order (a resent update keeps its uuid).
    for task, end in ((survivor, "TASK_KILLED"), (hog, "TASK_FAILED"), (victim, "TASK_FAILED")):
        by_uuid = {s["uuid"]: s["state"] for s in fw.statuses(task) if "uuid" in s}
        states = [s for s in by_uuid.values() if s != "TASK_STARTING"]
        assert states == ["TASK_RUNNING", end], (task, list(by_uuid.values()))
    assert process_alive(linux.agent.pid)


@needs_root
def test_command_task_runs_in_an_imported_image(meseta, meseta_bin, tmp_path):
    """A command task in a busybox image: the command executor (the host's meseta,
    run through the host's loader) runs in the image's root and starts the task there."""
    from test_images import build_oci_layout

    layout = tmp_path / "layout"
    build_oci_layout(layout)
    with linux_cluster(meseta, ISOLATION + ",docker/runtime") as linux:
        subprocess.run(
            [str(meseta_bin), "image", "import", str(layout), "--name", "busybox:latest",
             "--work-dir", str(linux.agent.work_dir)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        container = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}}
        command = (
            'echo "sandbox=$MESOS_SANDBOX pwd=$(pwd)"; ls /bin/busybox; '
            "test -e /etc/os-release || echo no-os-release; cat /etc/kept"
        )
        task = linux.run(command, container=container)
        linux.framework.wait_state(task, "TASK_FINISHED")
        out = linux.output(task).splitlines()
        # docker/runtime: the task starts in the image's WorkingDir.
        assert out == [
            "sandbox=/mnt/mesos/sandbox pwd=/data",
            "/bin/busybox",
            "no-os-release",
            "kept",
        ], out
        # The image's root filesystem is released with the container.
        work = str(linux.agent.work_dir)
        wait_for(
            lambda: not [m for m in host_mount_points() if m.startswith(work)],
            what="the container's root filesystem to be unmounted",
        )


@needs_root
def test_execute_mounts_volumes(linux, meseta_bin, tmp_path):
    ro, rw = tmp_path / "in", tmp_path / "out"
    ro.mkdir()
    rw.mkdir()
    (ro / "f").write_text("input\n")
    result = subprocess.run(
        [str(meseta_bin), "execute", "--master", linux.master.address,
         "--command", "cat data/f && echo result > w/f && ! touch data/g",
         "--volume", f"{ro}:data:ro", "--volume", f"{rw}:w:rw"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "TASK_FINISHED" in result.stdout, result.stdout
    assert (rw / "f").read_text() == "result\n"
    assert not (ro / "g").exists()
    bad = subprocess.run(
        [str(meseta_bin), "execute", "--master", linux.master.address, "--command", "true",
         "--volume", f"{ro}:data:rx"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0 and "must be 'ro' or 'rw'" in bad.stderr, bad.stderr
    # Without an image an absolute mount point must exist: nothing is created on the host.
    missing = f"/meseta-missing-{uuid.uuid4().hex[:8]}"
    failed = subprocess.run(
        [str(meseta_bin), "execute", "--master", linux.master.address, "--command", "true",
         "--volume", f"{ro}:{missing}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "TASK_FAILED" in failed.stdout, failed.stdout
    assert "REASON_CONTAINER_LAUNCH_FAILED" in failed.stdout, failed.stdout
    assert f"'{missing}' does not exist on the host" in failed.stdout, failed.stdout
    assert not os.path.exists(missing)
