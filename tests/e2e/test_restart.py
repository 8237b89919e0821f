"""Restarts: kill -9 of an agent or a master, and what must survive it.

The master and the agent run as separate processes (the ``meseta`` fixture) and are
killed with SIGKILL, the signal to their pid alone, so executors and tasks stay up as
after ``kill -9 PID``. A raw v1 framework (checkpoint=true, failover_timeout=300) sees
every event in order and acknowledges each status update that carries a uuid.

What Mesos guarantees, and what the tests hold meseta to:

* Agent restart (``--recover=reconnect``): executors and tasks of checkpointing
  frameworks keep running while the agent is down; the restarted agent recovers its id,
  reregisters, and the executors resubscribe. Status updates are reliable: the agent
  checkpoints them and resends the head of each task's stream until it is acknowledged,
  so a framework may get an update more than once, always with the same uuid, and never
  after a later update of that task; an update the executor sends while the agent is
  down is queued by the executor and still arrives. Updates without a uuid are the
  master's (reconciliation) and are not part of the task's stream.
* Master restart: the registry keeps admitted agents and frameworks (and the frameworks
  removed for good). Agents reregister with their tasks; a framework resubscribes with
  its id; explicit reconciliation answers the task's latest state; a framework that was
  torn down can never subscribe again.
* A registry that cannot be read stops the master: it must not start empty.
"""

import getpass
import os
import uuid

import requests

from conftest import (
    DEFAULT_TIMEOUT,
    ApiError,
    Launcher,
    SchedulerStream,
    registered_agent,
    sandbox_directory,
    wait_for,
)
from helpers import (
    UPDATE_TIMEOUT,
    RawFramework,
    master_task,
    process_alive,
    processes_with,
    subscribe_refusal,
    wait_master_task,
    wait_sandbox,
)

# An agent that restarts recovers, reregisters and hears again from its executors
# (which retry with backoff); a debug build on two busy cores is slow at it.
RECOVERY_TIMEOUT = 90.0
# How long to keep listening after the last expected update, for duplicates.
QUIET_PERIOD = 2.0
FAILOVER_TIMEOUT = 300.0
# Fixed resources: the offers do not depend on the machine, and the agent's info is
# the same on every restart (Mesos refuses a changed agent by default).
AGENT_ARGS = ("--resources", "cpus:2;mem:2048;disk:1024;ports:[31000-32000]")
RELIABLE_SEQUENCES = (
    ["TASK_RUNNING", "TASK_FINISHED"],
    ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
)


def framework_info(name, **extra):
    return {
        "user": getpass.getuser(),
        "name": name,
        "checkpoint": True,
        "failover_timeout": FAILOVER_TIMEOUT,
        **extra,
    }


class Framework(RawFramework):
    """A raw v1 framework (:class:`RawFramework`) that keeps every event.

    Offers are kept until used or rescinded, status updates are recorded in arrival
    order and, while ``auto_ack`` is true, acknowledged at once when they carry a uuid;
    ERROR messages are recorded. :meth:`disconnect` drops the stream (as a scheduler
    that died would); :meth:`resubscribe` opens a new one with the framework id.
    """

    def __init__(self, endpoint, name, auto_ack=True):
        self.auto_ack = auto_ack
        self.acked = set()  # uuids acknowledged
        self.ack_failures = []
        super().__init__(endpoint, framework_info(name))

    def _acknowledge(self, status):
        if "uuid" in status and self.auto_ack:
            self._send_acknowledgement(status)

    def _send_acknowledgement(self, status):
        try:
            self.stream.acknowledge(status)
            self.acked.add(status["uuid"])
        except requests.RequestException as exc:
            # The master went away: the agent resends the update later.
            self.ack_failures.append(exc)

    def acknowledge_all(self):
        """Acknowledges, once each, the updates received and not acknowledged yet."""
        for status in self.updates:
            if "uuid" in status and status["uuid"] not in self.acked:
                self._send_acknowledgement(status)

    def reconciliations(self, task_id):
        return [
            s for s in self.statuses(task_id) if s.get("reason") == "REASON_RECONCILIATION"
        ]

    def explicit_reconciliation(self, task_id, agent_id):
        """RECONCILEs ``task_id`` and waits for the answer; returns it."""
        self.reconcile(task_id, agent_id)
        return self.wait(
            lambda: self.reconciliations(task_id), what="explicit reconciliation"
        )[0]


def check_reliable_updates(statuses, task_id):
    """Asserts what Mesos guarantees of one task's status updates: the updates with a
    uuid, each counted once, are [TASK_STARTING?, TASK_RUNNING, TASK_FINISHED] in that
    order; a retry (same uuid) repeats the same state and never comes after a later
    update; updates without a uuid (the master's) invent no state."""
    first = {}  # uuid -> status, in first-arrival order
    for status in statuses:
        if "uuid" not in status:
            continue
        uid = status["uuid"]
        if uid in first:
            assert first[uid]["state"] == status["state"], (
                f"{task_id}: uuid {uid} came as {first[uid]['state']} and then as "
                f"{status['state']}"
            )
            assert list(first)[-1] == uid, (
                f"{task_id}: {status['state']} (uuid {uid}) was resent after a later "
                f"update: {[s['state'] for s in statuses]}"
            )
        else:
            first[uid] = status
    states = [s["state"] for s in first.values()]
    assert states in RELIABLE_SEQUENCES, (
        f"{task_id}: the updates with a uuid, once each, are {states}; every update: "
        f"{[(s['state'], s.get('uuid'), s.get('reason')) for s in statuses]}"
    )
    masters = {s["state"] for s in statuses if "uuid" not in s}
    assert masters <= {"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"}, (
        f"{task_id}: the master reported {masters} without a uuid: "
        f"{[s for s in statuses if 'uuid' not in s]}"
    )
    finished = next(s for s in first.values() if s["state"] == "TASK_FINISHED")
    assert finished.get("source") == "SOURCE_EXECUTOR", finished


class GatedTask:
    """A command task that stays RUNNING until a file ``go`` appears in its sandbox,
    then prints ``done-<token>`` and exits 0. Its shell's command line carries a unique
    marker, so the test finds its process."""

    def __init__(self, task_id):
        self.task_id = task_id
        self.marker = f"e2e-gate-{uuid.uuid4().hex}"
        self.command = (
            f": {self.marker}; while [ ! -f go ]; do sleep 0.2; done; echo done-{self.marker}"
        )
        self.pids = []
        self.sandbox = None

    def find_process(self, agent, framework_id):
        """Finds the task's shell and its sandbox (from the agent's /state), and checks
        that the shell runs in that sandbox."""
        self.pids = wait_for(
            lambda: processes_with(self.marker),
            what=f"a process with {self.marker} in its command line",
        )
        self.sandbox = wait_sandbox(agent, framework_id, self.task_id)
        cwds = {pid: os.path.realpath(f"/proc/{pid}/cwd") for pid in self.pids}
        assert any(os.path.samefile(cwd, self.sandbox) for cwd in cwds.values()), (
            f"the task's processes run in {cwds}, not in the sandbox {self.sandbox}"
        )

    def assert_alive(self, when):
        dead = [pid for pid in self.pids if not process_alive(pid)]
        assert not dead, f"{when}: the task's processes {dead} (of {self.pids}) are gone"

    def open_gate(self):
        with open(os.path.join(self.sandbox, "go"), "w"):
            pass

    def exited(self):
        return not any(process_alive(pid) for pid in self.pids)

    def check_output(self):
        with open(os.path.join(self.sandbox, "stdout"), errors="replace") as f:
            stdout = f.read()
        assert f"done-{self.marker}" in stdout, f"the task's stdout: {stdout[-2000:]!r}"


def framework_entry(master, framework_id):
    """The framework's GET_FRAMEWORKS entry among the live (or recovered) ones, or None."""
    frameworks = master.frameworks()
    for entry in frameworks.get("frameworks", []) + frameworks.get("recovered_frameworks", []):
        info = entry.get("framework_info", entry)
        if info.get("id", {}).get("value") == framework_id:
            return entry
    return None


def recovered_framework(master, framework_id, name):
    """Checks that the restarted ``master`` knows the framework, named ``name``, and
    lists it as not connected; returns its GET_FRAMEWORKS entry."""
    entry = framework_entry(master.api, framework_id)
    assert entry, f"GET_FRAMEWORKS after the restart: {master.api.frameworks()}"
    assert entry["framework_info"]["name"] == name, entry
    assert not entry.get("connected"), entry
    return entry


def start_cluster(meseta):
    """A master and an agent as separate processes; returns (master, agent, agent id)."""
    master = meseta.master()
    agent = meseta.agent(master, extra_args=AGENT_ARGS)
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    return master, agent, agent_id


def kill_agent(master, agent, task):
    """kill -9 of ``agent``, which ``task`` must survive; returns the agent's
    ``reregistered_time`` (nanoseconds, or None) from before, for
    :func:`wait_reregistered`."""
    before = registered_agent(master.api, agent.port).get("reregistered_time", {})
    agent.kill()
    task.assert_alive("after kill -9 of the agent")
    return before.get("nanoseconds")


def wait_reregistered(master, agent, agent_id, previous=None):
    """Waits until ``master`` lists ``agent`` as active with its old id, reregistered
    (``reregistered_time`` set, and later than ``previous`` when given); returns the
    GET_AGENTS entry."""

    def reregistered():
        entry = registered_agent(master.api, agent.port)
        if not entry or not entry.get("active"):
            return None
        time = entry.get("reregistered_time", {}).get("nanoseconds")
        if time is None or (previous is not None and time <= previous):
            return None
        return entry

    entry = wait_for(
        reregistered,
        RECOVERY_TIMEOUT,
        what=f"{agent.name} to reregister with {master.address}",
        retry_on=(requests.RequestException, OSError, ApiError),
    )
    assert entry["agent_info"]["id"]["value"] == agent_id, (
        f"the agent came back as {entry['agent_info']['id']}, not {agent_id}"
    )
    state = agent.api.state()
    assert state.get("id") == agent_id, f"the agent's /state names it {state.get('id')!r}"
    return entry


def finish_and_check(framework, master, task, statuses_before=None):
    """Waits for TASK_FINISHED, listens a little longer for duplicates, and checks the
    task's updates and the master's view of it."""
    framework.wait_state(task.task_id, "TASK_FINISHED")
    framework.listen(QUIET_PERIOD)  # late duplicates
    check_reliable_updates(framework.statuses(task.task_id), task.task_id)
    task.check_output()

    wait_completed_in_master(master, framework, task, "TASK_FINISHED")


def wait_completed_in_master(master, framework, task, state):
    """Waits until the master's GET_TASKS shows ``task`` in ``state``, and checks that
    it is listed among the completed tasks."""
    listing, _ = wait_master_task(
        master.api, framework.id, task.task_id, state, what=f"GET_TASKS to show the task {state}"
    )
    assert listing == "completed_tasks", listing


def start_gated_task(meseta, framework_name, task_id="gated"):
    """A master and an agent (:func:`start_cluster`), and a :class:`Framework` whose
    :class:`GatedTask` runs on the agent; returns (master, agent, agent id, framework,
    task)."""
    master, agent, agent_id = start_cluster(meseta)
    framework = Framework(master.api, framework_name)
    task = GatedTask(task_id)
    framework.launch(agent_id, task_id, task.command)
    framework.wait_state(task_id, "TASK_RUNNING")
    task.find_process(agent.api, framework.id)
    return master, agent, agent_id, framework, task


def test_agent_restart_keeps_a_running_task(meseta):
    master, agent, agent_id, framework, task = start_gated_task(meseta, "e2e-agent-restart")

    before = kill_agent(master, agent, task)
    agent.start()
    wait_reregistered(master, agent, agent_id, before)
    task.assert_alive("after the agent restarted")
    assert sandbox_directory(agent.api, framework.id, task.task_id) == task.sandbox

    running = master_task(master.api, framework.id, task.task_id)
    assert running and running[1]["state"] == "TASK_RUNNING", running
    task.open_gate()
    finish_and_check(framework, master, task)
    assert not framework.errors, framework.errors


def test_update_sent_while_the_agent_is_down_arrives_after_restart(meseta):
    master, agent, agent_id, framework, task = start_gated_task(meseta, "e2e-agent-down-update")

    before = kill_agent(master, agent, task)
    task.open_gate()
    # The task ends while no agent runs: its executor must keep TASK_FINISHED.
    wait_for(task.exited, what="the task to exit while the agent is down")
    assert "TASK_FINISHED" not in framework.states(task.task_id)

    agent.start()
    wait_reregistered(master, agent, agent_id, before)
    finish_and_check(framework, master, task)
    assert not framework.errors, framework.errors


def test_unacknowledged_update_is_resent_after_agent_restart(meseta):
    master, agent, agent_id = start_cluster(meseta)
    framework = Framework(master.api, "e2e-agent-restart-unacked", auto_ack=False)
    task = GatedTask("gated")
    framework.launch(agent_id, task.task_id, task.command)
    first = framework.wait(
        lambda: framework.statuses(task.task_id), what="the task's first update"
    )[0]
    assert "uuid" in first, first
    task.find_process(agent.api, framework.id)
    framework.listen(QUIET_PERIOD)  # more updates
    # The agent forwards only the head of a task's stream until it is acknowledged.
    sent = [(s["state"], s.get("uuid")) for s in framework.statuses(task.task_id)]
    assert {uid for _, uid in sent} == {first["uuid"]}, (
        f"an update came before the one ahead of it was acknowledged: {sent}"
    )
    seen = len(framework.updates)

    before = kill_agent(master, agent, task)
    agent.start()
    wait_reregistered(master, agent, agent_id, before)
    framework.wait(
        lambda: any(s.get("uuid") == first["uuid"] for s in framework.updates[seen:]),
        what=f"the restarted agent to resend the unacknowledged {first['state']}",
    )

    framework.auto_ack = True
    framework.acknowledge_all()
    framework.wait_state(task.task_id, "TASK_RUNNING")
    task.open_gate()
    finish_and_check(framework, master, task)
    assert not framework.errors, framework.errors


def test_master_restart_recovers_agent_task_and_framework(meseta):
    master, agent, agent_id, framework, task = start_gated_task(
        meseta, "e2e-master-restart", "long"
    )

    master.kill()
    framework.disconnect()
    task.assert_alive("after kill -9 of the master")
    master.start()

    entry = Launcher.wait_registered(agent, master.api, RECOVERY_TIMEOUT)
    assert entry["agent_info"]["id"]["value"] == agent_id, entry["agent_info"]
    assert entry.get("active"), entry

    found = wait_for(
        lambda: master_task(master.api, framework.id, task.task_id),
        what="GET_TASKS to list the task again",
    )
    listing, listed = found
    assert listing == "tasks" and listed["state"] == "TASK_RUNNING", found
    assert listed["agent_id"]["value"] == agent_id, listed

    assert framework.resubscribe(master.api) == framework.id
    wait_for(
        lambda: (framework_entry(master.api, framework.id) or {}).get("connected"),
        what="GET_FRAMEWORKS to show the framework connected",
    )

    answer = framework.explicit_reconciliation(task.task_id, agent_id)
    assert answer["state"] == "TASK_RUNNING", answer
    assert "uuid" not in answer, f"master-generated updates carry no uuid: {answer}"
    task.assert_alive("after the master restarted")

    framework.call("TEARDOWN")
    framework.disconnect()
    refusal = subscribe_refusal(master.api, dict(framework.info, id={"value": framework.id}))
    assert "removed" in refusal.lower(), f"refused, but not as a removed framework: {refusal}"

    # TEARDOWN kills the framework's tasks.
    wait_for(task.exited, UPDATE_TIMEOUT, what="TEARDOWN to kill the task's processes")

    wait_completed_in_master(master, framework, task, "TASK_KILLED")


def test_framework_is_known_before_its_agent_reregisters(meseta):
    """The registry, not the agents, tells a restarted master about frameworks."""
    master, agent, agent_id, framework, task = start_gated_task(meseta, "e2e-registry-framework")

    # With the agent down too, only the registry can know the framework.
    agent.kill()
    master.kill()
    framework.disconnect()
    master.start()

    recovered_framework(master, framework.id, framework.info["name"])
    agents = master.api.call("GET_AGENTS")["get_agents"]
    assert not agents.get("agents"), f"no agent has reregistered yet: {agents}"
    recovered = [a["id"]["value"] for a in agents.get("recovered_agents", [])]
    assert recovered == [agent_id], f"recovered_agents: {agents.get('recovered_agents')}"

    assert framework.resubscribe(master.api) == framework.id

    agent.start()
    entry = Launcher.wait_registered(agent, master.api, RECOVERY_TIMEOUT)
    assert entry["agent_info"]["id"]["value"] == agent_id, entry["agent_info"]
    task.assert_alive("after both restarts")

    answer = framework.explicit_reconciliation(task.task_id, agent_id)
    assert answer["state"] == "TASK_RUNNING", answer

    task.open_gate()
    finish_and_check(framework, master, task)
    assert not framework.errors, framework.errors


def test_registry_keeps_frameworks_and_removals_across_restarts(meseta):
    """No agent at all: frameworks, and the removal of a torn-down one, survive
    restarts of the master."""
    master = meseta.master()
    kept = SchedulerStream(master.api, framework_info("e2e-kept"))
    removed = SchedulerStream(master.api, framework_info("e2e-removed"))
    response = removed.call("TEARDOWN")
    assert response.status_code == 202, response.text
    removed.close()

    master.kill()
    kept.close()
    master.start()

    entry = recovered_framework(master, kept.framework_id, "e2e-kept")
    assert entry["framework_info"].get("checkpoint") is True, entry
    assert entry["framework_info"].get("failover_timeout") == FAILOVER_TIMEOUT, entry
    assert framework_entry(master.api, removed.framework_id) is None

    again = SchedulerStream(
        master.api, framework_info("e2e-kept", id={"value": kept.framework_id})
    )
    try:
        assert again.framework_id == kept.framework_id
        wait_for(
            lambda: (framework_entry(master.api, kept.framework_id) or {}).get("connected"),
            what="GET_FRAMEWORKS to show the framework connected",
        )
    finally:
        again.close()

    removed_info = framework_info("e2e-removed", id={"value": removed.framework_id})
    for restart in range(2):
        refusal = subscribe_refusal(master.api, removed_info)
        assert "removed" in refusal.lower(), f"restart {restart + 1}: {refusal}"
        if restart == 0:
            master.kill()
            master.start()
    assert framework_entry(master.api, kept.framework_id), master.api.frameworks()


def test_unreadable_registry_stops_the_master(meseta):
    work_dir = meseta.base_dir / "master"
    work_dir.mkdir()
    registry = work_dir / "registry.redb"
    garbage = b"this is not a registry\n" * 200 + bytes(range(256)) * 8
    registry.write_bytes(garbage)

    master = meseta.master(work_dir=work_dir, wait=False)
    code = master.wait_exit(DEFAULT_TIMEOUT)
    assert code != 0, f"the master exited with {code}\n{master.logs()}"
    stderr = master.output("stderr").replace(str(meseta.base_dir), "<tmp>")
    assert "registry" in stderr.lower(), f"the error does not name the registry: {stderr}"
    assert registry.read_bytes() == garbage, "the master changed the registry it could not read"
