"""Task groups: LAUNCH_GROUP with Mesos's default executor (``meseta executor --default``).

A raw v1 framework ACCEPTs offers with a LAUNCH_GROUP operation: an ExecutorInfo of type
DEFAULT (no command, its own cpus, mem and disk) and a group of command tasks. What Mesos
does, and the tests hold meseta to:

* The agent starts one default executor per executor id; a later group for the same
  running executor goes to it (LAUNCH_GROUP event), not to a new one.
* Each task runs as its own process in its own sandbox ``tasks/<task id>`` under the
  executor's (with its ``stdout`` and ``stderr``, and ``MESOS_SANDBOX`` naming it), and
  reports TASK_STARTING, TASK_RUNNING and a terminal state whose message gives the exit
  status, reliably (acknowledged, resent across an agent restart).
* When a task of a group fails or is killed, the group's other tasks are killed
  (TASK_KILLED); a KILL of one task therefore kills its group.
* The agent's and the master's views show the tasks under the default executor.
* A group whose executor is not DEFAULT, or has too little of cpus, mem or disk, or whose
  task carries an executor of its own, ends in TASK_ERROR (REASON_TASK_GROUP_INVALID) for
  every task, with a message; an empty group launches nothing.
"""

import getpass
import os
import uuid

import requests

from conftest import ApiError, registered_agent, wait_for
from helpers import (
    UPDATE_TIMEOUT,
    RawFramework,
    command_task,
    process_alive,
    processes_with,
    scalar,
    scalar_resource,
    wait_master_task,
    wait_sandbox,
)

# Fixed resources, so that offers do not depend on the machine and a restarted agent
# has the same info (with disk, which a default executor needs).
AGENT_RESOURCES = "cpus:4;mem:4096;disk:4096;ports:[31000-32000]"
AGENT_ARGS = ("--resources", AGENT_RESOURCES)
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 32.0
# An agent that restarts recovers, reregisters and hears again from its executors.
RECOVERY_TIMEOUT = 90.0


def default_executor(executor_id, **extra):
    """An ExecutorInfo of type DEFAULT with the least Mesos accepts (and some disk)."""
    return {
        "type": "DEFAULT",
        "executor_id": {"value": executor_id},
        "resources": [
            scalar_resource("cpus", EXECUTOR_CPUS),
            scalar_resource("mem", EXECUTOR_MEM),
            scalar_resource("disk", 16.0),
        ],
        **extra,
    }


class GatedTask:
    """A command task that prints its markers (its sandbox and its parent, the executor)
    and stays RUNNING until a file ``go`` appears in its sandbox, then exits with
    ``code``."""

    def __init__(self, task_id, code=0):
        self.task_id = task_id
        self.marker = f"e2e-group-{uuid.uuid4().hex}"
        self.command = (
            f": {self.marker}; echo sandbox=$MESOS_SANDBOX; echo parent=$PPID; "
            f"echo to-stderr-{task_id} >&2; "
            f"while [ ! -f go ]; do sleep 0.1; done; exit {code}"
        )

    def info(self, agent_id, **extra):
        return command_task(self.task_id, agent_id, self.command, **extra)

    def pids(self):
        return processes_with(self.marker)


class Framework(RawFramework):
    """A raw v1 framework (checkpointing, so that its executors outlive an agent restart)
    that launches task groups."""

    def __init__(self, endpoint, name):
        info = {
            "user": getpass.getuser(),
            "name": name,
            "checkpoint": True,
            "failover_timeout": 300.0,
        }
        super().__init__(endpoint, info)

    def offer_for(self, agent_id, cpus, mem):
        """Waits for an offer from ``agent_id`` with ``cpus`` and ``mem``; returns it."""

        def fitting():
            for offer in self.offers.values():
                if (
                    offer["agent_id"]["value"] == agent_id
                    and scalar(offer["resources"], "cpus") >= cpus - 1e-9
                    and scalar(offer["resources"], "mem") >= mem - 1e-9
                ):
                    return offer
            return None

        return self.wait(fitting, what=f"an offer of {cpus} cpus from {agent_id}")

    def launch_group(self, agent_id, executor, tasks):
        """ACCEPTs an offer from ``agent_id`` big enough for ``tasks`` and ``executor``
        with one LAUNCH_GROUP."""
        cpus = sum(scalar(t["resources"], "cpus") for t in tasks) + EXECUTOR_CPUS
        mem = sum(scalar(t["resources"], "mem") for t in tasks) + EXECUTOR_MEM
        offer = self.offer_for(agent_id, cpus, mem)
        self.take_offer(offer)
        operation = {
            "type": "LAUNCH_GROUP",
            "launch_group": {"executor": executor, "task_group": {"tasks": list(tasks)}},
        }
        self.call(
            "ACCEPT",
            accept={
                "offer_ids": [offer["id"]],
                "operations": [operation],
                "filters": {"refuse_seconds": 1.0},
            },
        )

    def kill(self, task_id, agent_id):
        self.call(
            "KILL", kill={"task_id": {"value": task_id}, "agent_id": {"value": agent_id}}
        )

    def sequence(self, task_id):
        """The states of ``task_id``'s updates with a uuid, each uuid counted once."""
        seen, states = set(), []
        for status in self.statuses(task_id):
            if "uuid" in status and status["uuid"] not in seen:
                seen.add(status["uuid"])
                states.append(status["state"])
        return states


def start_cluster(meseta):
    """A ``meseta local`` with fixed resources; returns (cluster, framework)."""
    cluster = meseta.local(extra_args=AGENT_ARGS)
    return cluster, Framework(cluster.master, "e2e-task-groups")


def agent_executor(agent, framework_id, executor_id):
    """The executor's entry in the agent's v0 /state (live executors), or None."""
    for framework in agent.state().get("frameworks", []):
        if framework["id"] != framework_id:
            continue
        for executor in framework.get("executors", []):
            if executor["id"] == executor_id:
                return executor
    return None


def read_sandbox_file(agent, path):
    """A file of a sandbox, read through the agent's /files/read."""
    return agent.files_read(path)["data"]


def line_value(text, key):
    """The value of the first ``key=value`` line of ``text``."""
    for line in text.splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"no {key}= line in {text!r}")


def open_gate(sandbox, task_id):
    with open(os.path.join(sandbox, "tasks", task_id, "go"), "w"):
        pass


def wait_output(agent, sandbox, task_id, key):
    """Waits until the task's stdout (read through /files/read) has a ``key=`` line;
    returns its value."""

    def printed():
        text = read_sandbox_file(agent, f"{sandbox}/tasks/{task_id}/stdout")
        return f"{key}=" in text and line_value(text, key)

    return wait_for(
        printed,
        what=f"{task_id}'s stdout to show {key}",
        retry_on=(requests.RequestException, OSError),
    )


def test_a_group_of_two_tasks_runs_to_completion(meseta):
    cluster, framework = start_cluster(meseta)
    agent, agent_id = cluster.agent, cluster.agent_id
    a, b = GatedTask("a"), GatedTask("b")
    framework.launch_group(
        agent_id, default_executor("group"), [a.info(agent_id), b.info(agent_id)]
    )
    for task in (a, b):
        running = framework.wait_state(task.task_id, "TASK_RUNNING")
        assert running["executor_id"]["value"] == "group", running
        assert running["source"] == "SOURCE_EXECUTOR", running
    sandbox = wait_sandbox(agent, framework.id, "a")

    # Each task runs in its own sandbox under the executor's, as a child of the executor.
    parents = set()
    for task in (a, b):
        own = wait_output(agent, sandbox, task.task_id, "sandbox")
        assert own == f"{sandbox}/tasks/{task.task_id}", own
        parents.add(wait_output(agent, sandbox, task.task_id, "parent"))
        cwds = {os.path.realpath(f"/proc/{pid}/cwd") for pid in task.pids()}
        assert cwds == {os.path.realpath(own)}, cwds
    assert len(parents) == 1, f"two executors ran the group: {parents}"

    # The agent shows one DEFAULT executor holding both tasks; so do the operator APIs.
    executor = agent_executor(agent, framework.id, "group")
    assert executor and executor["type"] == "DEFAULT", executor
    assert {t["id"] for t in executor["tasks"]} == {"a", "b"}, executor
    assert all(t["state"] == "TASK_RUNNING" for t in executor["tasks"]), executor
    executors = agent.call("GET_EXECUTORS")["get_executors"]["executors"]
    ours = [e for e in executors if e["executor_info"]["executor_id"]["value"] == "group"]
    assert len(ours) == 1 and ours[0]["executor_info"]["type"] == "DEFAULT", executors
    agent_tasks = agent.call("GET_TASKS")["get_tasks"]["launched_tasks"]
    assert {t["task_id"]["value"] for t in agent_tasks} >= {"a", "b"}, agent_tasks
    assert all(
        t["executor_id"]["value"] == "group"
        for t in agent_tasks
        if t["task_id"]["value"] in ("a", "b")
    ), agent_tasks
    for task in (a, b):
        _, listed = wait_master_task(cluster.master, framework.id, task.task_id, "TASK_RUNNING")
        assert listed["executor_id"]["value"] == "group", listed
    master_executors = cluster.master.call("GET_EXECUTORS")["get_executors"]["executors"]
    assert any(
        e["executor_info"]["executor_id"]["value"] == "group" for e in master_executors
    ), master_executors

    for task in (a, b):
        open_gate(sandbox, task.task_id)
    for task in (a, b):
        finished = framework.wait_state(task.task_id, "TASK_FINISHED")
        assert finished["message"] == "Command exited with status 0", finished
        assert framework.sequence(task.task_id) == [
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FINISHED",
        ], framework.statuses(task.task_id)
        stderr = read_sandbox_file(agent, f"{sandbox}/tasks/{task.task_id}/stderr")
        assert f"to-stderr-{task.task_id}" in stderr, stderr
    for task in (a, b):
        wait_master_task(cluster.master, framework.id, task.task_id, "TASK_FINISHED")
    # With no task left and every update acknowledged, the executor exits.
    executor_pid = int(parents.pop())
    wait_for(lambda: not process_alive(executor_pid), what="the default executor to exit")
    assert not framework.errors, framework.errors


def test_a_failed_task_kills_the_rest_of_its_group(meseta):
    cluster, framework = start_cluster(meseta)
    agent_id = cluster.agent_id
    failing, sleeper = GatedTask("failing", code=3), GatedTask("sleeper")
    framework.launch_group(
        agent_id, default_executor("group"), [failing.info(agent_id), sleeper.info(agent_id)]
    )
    for task in (failing, sleeper):
        framework.wait_state(task.task_id, "TASK_RUNNING")
    sandbox = wait_sandbox(cluster.agent, framework.id, "failing")
    sleeper_pids = wait_for(sleeper.pids, what="the sleeper's processes")

    open_gate(sandbox, "failing")
    failed = framework.wait_state("failing", "TASK_FAILED")
    assert failed["message"] == "Command exited with status 3", failed
    killed = framework.wait_state("sleeper", "TASK_KILLED")
    assert killed["message"] == "Command terminated with signal Terminated", killed
    assert not any(process_alive(pid) for pid in sleeper_pids), sleeper_pids
    assert not framework.errors, framework.errors


def test_a_task_failing_its_health_check_is_killed_with_its_group(meseta):
    cluster, framework = start_cluster(meseta)
    agent_id = cluster.agent_id
    checked, sleeper = GatedTask("checked"), GatedTask("sleeper")
    # Unhealthy from the start: `test -f healthy` runs in the task's own sandbox.
    check = {
        "type": "COMMAND",
        "command": {"value": "test -f healthy"},
        "delay_seconds": 0,
        "interval_seconds": 0.2,
        "grace_period_seconds": 0,
        "consecutive_failures": 2,
    }
    framework.launch_group(
        agent_id,
        default_executor("group"),
        [checked.info(agent_id, health_check=check), sleeper.info(agent_id)],
    )
    unhealthy = framework.wait(
        lambda: [s for s in framework.statuses("checked") if s.get("healthy") is False],
        what="an unhealthy update of the checked task",
    )[0]
    assert unhealthy["state"] == "TASK_RUNNING", unhealthy
    assert unhealthy["reason"] == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED", unhealthy
    killed = framework.wait_state("checked", "TASK_KILLED")
    assert killed.get("healthy") is False, killed
    framework.wait_state("sleeper", "TASK_KILLED")
    assert not framework.errors, framework.errors


def test_a_kill_of_one_task_kills_its_group_only(meseta):
    cluster, framework = start_cluster(meseta)
    agent_id = cluster.agent_id
    grace = {"grace_period": {"nanoseconds": 1_000_000_000}}
    first, second = GatedTask("first"), GatedTask("second")
    other = GatedTask("other")
    framework.launch_group(
        agent_id,
        default_executor("group"),
        [first.info(agent_id, kill_policy=grace), second.info(agent_id)],
    )
    framework.launch_group(agent_id, default_executor("group"), [other.info(agent_id)])
    for task in (first, second, other):
        framework.wait_state(task.task_id, "TASK_RUNNING")

    framework.kill("first", agent_id)
    framework.wait_state("first", "TASK_KILLED")
    killed = framework.wait_state("second", "TASK_KILLED")
    assert killed["message"] == "Command terminated with signal Terminated", killed
    # The other group, on the same executor, runs on and still finishes.
    assert "TASK_KILLED" not in framework.states("other"), framework.statuses("other")
    sandbox = wait_sandbox(cluster.agent, framework.id, "other")
    open_gate(sandbox, "other")
    framework.wait_state("other", "TASK_FINISHED")
    assert not framework.errors, framework.errors


def test_a_second_group_goes_to_the_running_executor(meseta):
    cluster, framework = start_cluster(meseta)
    agent, agent_id = cluster.agent, cluster.agent_id
    one, two = GatedTask("one"), GatedTask("two")
    framework.launch_group(agent_id, default_executor("shared"), [one.info(agent_id)])
    framework.wait_state("one", "TASK_RUNNING")
    sandbox = wait_sandbox(agent, framework.id, "one")
    container = agent_executor(agent, framework.id, "shared")["container"]

    framework.launch_group(agent_id, default_executor("shared"), [two.info(agent_id)])
    framework.wait_state("two", "TASK_RUNNING")
    assert wait_sandbox(agent, framework.id, "two") == sandbox
    executor = agent_executor(agent, framework.id, "shared")
    assert executor["container"] == container, executor
    assert {t["id"] for t in executor["tasks"]} == {"one", "two"}, executor
    parent_one = wait_output(agent, sandbox, "one", "parent")
    parent_two = wait_output(agent, sandbox, "two", "parent")
    assert parent_one == parent_two, "the second group started another executor"
    # The executor's resources are counted once.
    entry = registered_agent(cluster.master, agent.port)
    used = scalar(entry.get("allocated_resources", []), "cpus")
    assert abs(used - (2 * 0.1 + EXECUTOR_CPUS)) < 1e-6, entry.get("allocated_resources")

    for task in ("one", "two"):
        open_gate(sandbox, task)
        framework.wait_state(task, "TASK_FINISHED")
    assert not framework.errors, framework.errors


def test_invalid_task_groups_end_in_task_error(meseta):
    cluster, framework = start_cluster(meseta)
    agent, agent_id = cluster.agent, cluster.agent_id
    custom = {
        "type": "CUSTOM",
        "executor_id": {"value": "custom"},
        "command": {"value": "sleep 100"},
        "resources": default_executor("x")["resources"],
    }
    no_disk = default_executor(
        "nodisk", resources=default_executor("x")["resources"][:2]
    )
    own_executor = command_task("own-executor", agent_id, "true")
    own_executor["executor"] = custom
    cases = [
        (custom, "bad-type", "'ExecutorInfo.type' must be 'DEFAULT'"),
        (no_disk, "no-disk", "Executor 'nodisk' uses no disk"),
        (
            default_executor("group"),
            "own-executor",
            "The `ExecutorInfo` of task 'own-executor' is different from executor 'group'",
        ),
    ]
    for executor, task_id, message in cases:
        task = own_executor
        if task_id != "own-executor":
            task = command_task(task_id, agent_id, "true")
        buddy = command_task(f"{task_id}-buddy", agent_id, "true")
        framework.launch_group(agent_id, executor, [task, buddy])
        for refused in (task_id, f"{task_id}-buddy"):
            error = framework.wait_state(refused, "TASK_ERROR")
            assert error["reason"] == "REASON_TASK_GROUP_INVALID", error
            assert error["source"] == "SOURCE_MASTER", error
            assert message in error["message"], error

    # An empty group launches nothing: its resources come back whole.
    framework.launch_group(agent_id, default_executor("empty"), [])
    total = scalar(registered_agent(cluster.master, agent.port)["total_resources"], "cpus")
    framework.offer_for(agent_id, total, 0)
    assert agent_executor(agent, framework.id, "empty") is None
    assert not framework.updates[len(cases) * 2 :], framework.updates


def reregistered_time(master, agent):
    """When ``master`` last saw ``agent`` reregister (nanoseconds), while it is active."""
    entry = registered_agent(master.api, agent.port)
    if not entry or not entry.get("active"):
        return None
    return entry.get("reregistered_time", {}).get("nanoseconds")


def test_tasks_of_a_group_survive_an_agent_restart(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=AGENT_ARGS)
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    framework = Framework(master.api, "e2e-task-groups-restart")
    a, b = GatedTask("a"), GatedTask("b")
    tasks = [a.info(agent_id), b.info(agent_id)]
    framework.launch_group(agent_id, default_executor("group"), tasks)
    for task in (a, b):
        framework.wait_state(task.task_id, "TASK_RUNNING")
    sandbox = wait_sandbox(agent.api, framework.id, "a")
    executor_pid = int(wait_output(agent.api, sandbox, "a", "parent"))
    b_pids = wait_for(b.pids, what="b's processes")
    a_pids = wait_for(a.pids, what="a's processes")
    before = reregistered_time(master, agent)

    agent.kill()
    assert process_alive(executor_pid), "the executor died with its agent"
    # a ends while no agent runs: its executor keeps TASK_FINISHED for the new one.
    open_gate(sandbox, "a")
    wait_for(lambda: not any(process_alive(pid) for pid in a_pids), what="a to exit")
    agent.start()

    def reregistered():
        time = reregistered_time(master, agent)
        return time is not None and (before is None or time > before)

    wait_for(
        reregistered,
        RECOVERY_TIMEOUT,
        what="the agent to reregister",
        retry_on=(requests.RequestException, OSError, ApiError),
    )
    assert all(process_alive(pid) for pid in b_pids + [executor_pid])
    open_gate(sandbox, "b")
    for task in (a, b):
        framework.wait_state(task.task_id, "TASK_FINISHED", UPDATE_TIMEOUT + RECOVERY_TIMEOUT)
        assert framework.sequence(task.task_id) == [
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FINISHED",
        ], framework.statuses(task.task_id)
    for task in (a, b):
        wait_master_task(master.api, framework.id, task.task_id, "TASK_FINISHED")
    assert not framework.errors, framework.errors
