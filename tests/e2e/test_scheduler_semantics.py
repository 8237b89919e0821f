"""Scheduler semantics, end to end, held to what Mesos does.

Each test runs its own ``meseta local`` (or a master and an agent) with fixed agent
resources, ``cpus:2;mem:2048;disk:1024;ports:[31000-32000]``, so that every offer of an
idle agent is the whole agent, and talks to it as a raw v1 framework
(:class:`SchedulerStream`) that keeps every event with the time it arrived.

What Mesos does, and what the tests hold meseta to (from the apache/mesos sources:
``master/master.cpp``, ``master/validation.cpp``, ``master/allocator/mesos/
hierarchical.cpp``, ``slave/slave.cpp``, ``launcher/executor.cpp``,
``checks/health_checker.cpp``, ``slave/containerizer/mesos/containerizer.cpp``):

* Offers. DECLINE installs a filter for ``refuse_seconds`` (at least one allocation
  interval) on that framework and agent; the resources go to other frameworks
  meanwhile. REVIVE removes the framework's filters and unsuppresses it; SUPPRESS stops
  offers without rescinding outstanding ones. Resources freed by ended tasks, declines
  and an accept's leftovers wait for the next pass: Mesos's periodic one; meseta also
  runs one after events, at most once per ``--allocation-spacing``, so that what is
  freed meanwhile goes out in one offer. ``--offer_timeout`` rescinds an offer
  (RESCIND with its id) and recovers its resources without a filter, so a fresh offer
  follows. A command task is charged to the agent for its own resources only: the
  agent adds the command executor's share as an overcommit, so a task may take all of
  an offer's cpus, and the cpus come back whole when it ends.
* Failover. A disconnected framework is removed once ``failover_timeout`` passes: its
  tasks become TASK_KILLED (REASON_FRAMEWORK_REMOVED) and are killed on the agent, it
  moves to ``completed_frameworks``, and a SUBSCRIBE with its id gets an ERROR event
  "Framework has been removed". Within the timeout it resubscribes with its id and
  its tasks keep running.
* Kill. The command executor sends SIGTERM to the task's process tree and SIGKILL
  after the grace period: the KILL call's ``kill_policy`` overrides the task's, and the
  default is 3 s. The task ends TASK_KILLED; TASK_KILLING comes first only for
  frameworks with the TASK_KILLING_STATE capability.
* Health checks (command executor). The first success, and the first after failures,
  send TASK_RUNNING with ``healthy: true`` and REASON_TASK_HEALTH_CHECK_STATUS_UPDATED;
  every failure after the grace period sends ``healthy: false``; at
  ``consecutive_failures`` the executor kills the task, whose TASK_KILLED carries
  ``healthy: false`` (and no reason: Mesos has none for it).
* SHUTDOWN of a command task's executor (its id is the task's) kills the task:
  TASK_KILLED. The agent sends no ExitedExecutorMessage for command executors, so the
  framework gets no FAILURE event for them. SHUTDOWN and MESSAGE naming an unknown
  agent are answered 202 and dropped by the master.
* A command task runs with the executor's environment (MESOS_FRAMEWORK_ID,
  MESOS_EXECUTOR_ID, MESOS_DIRECTORY, MESOS_SANDBOX, MESOS_SLAVE_ID,
  MESOS_AGENT_ENDPOINT, ...), plus MESOS_ALLOCATION_ROLE, with CommandInfo.environment
  taking precedence; Mesos sets no MESOS_TASK_ID. ``shell: false`` execs ``value`` with
  ``arguments`` as argv; ``command.user`` runs the task as that user.
* Invalid launches: a bad TaskInfo gives TASK_ERROR with REASON_TASK_INVALID (duplicate
  id of a live task, resources beyond the offer, both command and executor, an agent id
  that is not the offer's); invalid offer ids (used, unknown) give TASK_LOST, or
  TASK_DROPPED to PARTITION_AWARE frameworks, with REASON_INVALID_OFFERS. All come from
  SOURCE_MASTER with a message, and the ACCEPT itself is answered 202.
"""

import base64
import getpass
import http.client
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import (
    DEFAULT_TIMEOUT,
    TERMINAL_STATES,
    Launcher,
    bindable,
    free_port,
    registered_agent,
    wait_for,
)
from helpers import (
    TASK_CPUS,
    TASK_MEM,
    UPDATE_TIMEOUT,
    RawFramework,
    command_task,
    master_task,
    process_alive,
    processes_with,
    scalar,
    scalar_resource,
    subscribe_refusal,
    wait_master_task,
    wait_sandbox,
)

AGENT_CPUS = 2.0
AGENT_MEM = 2048.0
AGENT_ARGS = ("--resources", "cpus:2;mem:2048;disk:1024;ports:[31000-32000]")
# An offer to arrive: the allocator runs every second and on events.
OFFER_WAIT = 15.0
# A killed task's processes to be gone (grace periods included).
EXIT_TIMEOUT = 30.0
HEALTH_REASON = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"

# Every Framework made by a test, closed when the test ends.
_FRAMEWORKS = []


@pytest.fixture(autouse=True)
def _close_frameworks():
    yield
    while _FRAMEWORKS:
        _FRAMEWORKS.pop().disconnect()


@pytest.fixture
def cluster(meseta):
    """A ``meseta local`` whose agent has the fixed resources above."""
    return meseta.local(extra_args=AGENT_ARGS)


# ---------------------------------------------------------------------------
# Resources and tasks


def ports_resource(begin, end):
    return {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": begin, "end": end}]}}


def offered(offer, name):
    """The total of scalar resource ``name`` in ``offer`` (0 when absent)."""
    return scalar(offer.get("resources", []), name)


def offered_ports(offer):
    """The ports of ``offer``, as ``[(begin, end), ...]``."""
    return [
        (int(r["begin"]), int(r["end"]))
        for resource in offer.get("resources", [])
        if resource["name"] == "ports"
        for r in resource.get("ranges", {}).get("range", [])
    ]


def nanoseconds(seconds):
    return {"nanoseconds": int(seconds * 1e9)}


# ---------------------------------------------------------------------------
# Processes


def new_marker():
    return f"e2e-sem-{uuid.uuid4().hex}"


def loop_command(marker, setup=""):
    """A shell command that runs until killed: ``setup``, then prints ``ready``, then
    loops. Its shell's command line holds ``marker``."""
    return f": {marker}; {setup} echo ready; while true; do sleep 0.1; done"


# ---------------------------------------------------------------------------
# The framework


class Framework(RawFramework):
    """A raw v1 framework (:class:`RawFramework`) that records every event with its
    arrival time.

    Offers are kept until used, declined or rescinded (``offer_log`` keeps every offer
    received, with its time), status updates are recorded in order and acknowledged
    when they carry a uuid, FAILURE and ERROR events are recorded.
    """

    def __init__(
        self, endpoint, name, *, capabilities=(), failover_timeout=None, framework_id=None
    ):
        info = {"user": getpass.getuser(), "name": name}
        if capabilities:
            info["capabilities"] = [{"type": c} for c in capabilities]
        if failover_timeout is not None:
            info["failover_timeout"] = failover_timeout
        if framework_id is not None:
            info["id"] = {"value": framework_id}
        self.offer_log = []  # (arrival time, offer), every offer received
        self.rescinds = []  # (arrival time, offer id)
        self.update_times = []  # the arrival times of the updates
        self.failures = []
        super().__init__(endpoint, info)
        _FRAMEWORKS.append(self)

    # Events

    def _handle(self, event):
        now = time.monotonic()
        kind = event.get("type")
        if kind == "OFFERS":
            self.offer_log.extend((now, offer) for offer in event["offers"].get("offers", []))
        elif kind == "RESCIND":
            self.rescinds.append((now, event["rescind"]["offer_id"]["value"]))
        elif kind == "UPDATE":
            self.update_times.append(now)
        elif kind == "FAILURE":
            self.failures.append(event["failure"])
        super()._handle(event)

    # Offers

    def offers_since(self, since):
        return [offer for arrived, offer in self.offer_log if arrived >= since]

    def wait_offer(self, *, since=None, min_cpus=0.0, timeout=OFFER_WAIT, what=None):
        """Waits for an outstanding offer (received at ``since`` or later, with at
        least ``min_cpus`` cpus); returns it."""

        def found():
            for arrived, offer in self.offer_log:
                if (
                    offer["id"]["value"] in self.offers
                    and (since is None or arrived >= since)
                    and offered(offer, "cpus") >= min_cpus - 1e-9
                ):
                    return offer
            return None

        return self.wait(found, timeout, what=what or f"an offer to {self.info['name']}")

    # Calls

    def decline(self, offers, refuse_seconds):
        for offer in offers:
            self.take_offer(offer)
        self.call(
            "DECLINE",
            decline={
                "offer_ids": [offer["id"] for offer in offers],
                "filters": {"refuse_seconds": refuse_seconds},
            },
        )

    def launch(self, agent_id, task_id, command, **task_fields):
        """Launches a command task on an offer big enough; returns the TaskInfo."""
        offer = self.wait_offer(min_cpus=TASK_CPUS)
        task = command_task(task_id, agent_id, command, **task_fields)
        self.accept([offer], [task])
        return task

    def kill(self, task_id, agent_id, kill_policy=None):
        kill = {"task_id": {"value": task_id}, "agent_id": {"value": agent_id}}
        if kill_policy is not None:
            kill["kill_policy"] = kill_policy
        self.call("KILL", kill=kill)

    # Updates

    def wait_status(self, task_id, predicate, timeout=UPDATE_TIMEOUT, what=None):
        """Waits for an update of ``task_id`` that satisfies ``predicate``."""

        def arrived():
            return next((s for s in self.statuses(task_id) if predicate(s)), None)

        try:
            return self.wait(arrived, timeout, what=what or f"an update of {task_id}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; updates so far: {self.describe(task_id)}") from None

    def describe(self, task_id):
        return [
            (s["state"], s.get("reason"), s.get("healthy"), s.get("message"))
            for s in self.statuses(task_id)
        ]


def sandbox_of(cluster, framework, task_id):
    return wait_sandbox(cluster.agent, framework.id, task_id)


def read_stdout(sandbox):
    try:
        with open(os.path.join(sandbox, "stdout"), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_stdout(sandbox, text, timeout=UPDATE_TIMEOUT):
    """Waits until the sandbox's stdout holds ``text``; returns the stdout."""
    try:
        return wait_for(
            lambda: text in read_stdout(sandbox) and read_stdout(sandbox),
            timeout,
            what=f"{text!r} in {sandbox}/stdout",
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; stdout: {read_stdout(sandbox)[-2000:]!r}") from None


def framework_listing(master, framework_id):
    """The GET_FRAMEWORKS list (``frameworks``, ``completed_frameworks``, ...) that
    holds the framework, and its entry; or None."""
    frameworks = master.frameworks()
    for listing in ("frameworks", "completed_frameworks", "recovered_frameworks"):
        for entry in frameworks.get(listing, []):
            info = entry.get("framework_info", entry)
            if info.get("id", {}).get("value") == framework_id:
                return listing, entry
    return None


def start_running(framework, cluster, task_id, command, **task_fields):
    """Launches a command task and waits for TASK_RUNNING; returns that status."""
    framework.launch(cluster.agent_id, task_id, command, **task_fields)
    return framework.wait_state(task_id, "TASK_RUNNING")


def start_looping(framework, cluster, task_id, marker, what="the task's processes"):
    """Starts a task that runs :func:`loop_command` with ``marker`` until killed, waits
    for TASK_RUNNING and for its processes; returns their pids."""
    start_running(framework, cluster, task_id, loop_command(marker))
    return wait_for(lambda: processes_with(marker), what=what)


def wait_processes_gone(marker):
    """Waits until no process with ``marker`` in its command line is left."""
    wait_for(lambda: not processes_with(marker), EXIT_TIMEOUT, what="the task's processes to end")


# ---------------------------------------------------------------------------
# 1. DECLINE filters, DRF, REVIVE, SUPPRESS


def test_decline_filter_holds_for_refuse_seconds(cluster):
    framework = Framework(cluster.master, "e2e-decline-filter")
    offer = framework.wait_offer()
    assert offer["agent_id"]["value"] == cluster.agent_id, offer
    assert offered(offer, "cpus") == pytest.approx(AGENT_CPUS), offer
    # Every outstanding offer of the agent, so that nothing of it is left out.
    framework.decline(list(framework.offers.values()), refuse_seconds=2.0)
    declined = time.monotonic()

    framework.listen(1.0)
    early = framework.offers_since(declined)
    assert not early, f"re-offered within 1 s of a DECLINE with refuse_seconds=2: {early}"

    again = framework.wait_offer(since=declined, timeout=10.0, what="the offer after the filter")
    assert again["id"] != offer["id"], again
    assert again["agent_id"]["value"] == cluster.agent_id, again
    assert offered(again, "cpus") == pytest.approx(AGENT_CPUS), again


def test_declined_resources_go_to_another_framework_meanwhile(cluster):
    first = Framework(cluster.master, "e2e-drf-first")
    offer = first.wait_offer()
    second = Framework(cluster.master, "e2e-drf-second")
    # The agent is wholly offered to the first framework: nothing for the second yet.
    second.listen(1.0)
    assert not second.offer_log, f"offered resources that were out already: {second.offer_log}"

    first.decline(list(first.offers.values()), refuse_seconds=2.0)
    declined = time.monotonic()
    given = second.wait_offer(timeout=10.0, what="the declined resources for the second framework")
    assert given["agent_id"]["value"] == cluster.agent_id, given
    assert offered(given, "cpus") == pytest.approx(AGENT_CPUS), given
    assert given["framework_id"]["value"] == second.id, given
    first.poll()
    assert not first.offers_since(declined), (
        f"the first framework was re-offered while filtered: {first.offers_since(declined)}"
    )

    # The second framework wants nothing for an hour; the first gets the agent back
    # once its own filter has expired.
    second.decline([given], refuse_seconds=3600.0)
    back = first.wait_offer(since=declined, timeout=10.0, what="the agent back to the first")
    assert back["id"] != offer["id"], back
    assert offered(back, "cpus") == pytest.approx(AGENT_CPUS), back
    second.listen(1.0)
    assert len(second.offer_log) == 1, (
        f"the second framework's filter was ignored: {second.offer_log}"
    )


def test_revive_clears_filters(cluster):
    framework = Framework(cluster.master, "e2e-revive")
    framework.wait_offer()
    framework.decline(list(framework.offers.values()), refuse_seconds=3600.0)
    declined = time.monotonic()
    framework.listen(2.5)
    assert not framework.offers_since(declined), "re-offered despite a one-hour filter"

    framework.call("REVIVE")
    revived = time.monotonic()
    again = framework.wait_offer(since=revived, timeout=10.0, what="an offer after REVIVE")
    assert offered(again, "cpus") == pytest.approx(AGENT_CPUS), again


def test_suppress_stops_offers_and_revive_resumes_them(cluster):
    framework = Framework(cluster.master, "e2e-suppress")
    framework.wait_offer()
    framework.call("SUPPRESS")
    # No filter (refuse_seconds 0): only the suppression keeps the offers away.
    framework.decline(list(framework.offers.values()), refuse_seconds=0.0)
    suppressed = time.monotonic()
    framework.listen(3.0)
    assert not framework.offers_since(suppressed), (
        f"offered while suppressed: {framework.offers_since(suppressed)}"
    )

    framework.call("REVIVE")
    revived = time.monotonic()
    again = framework.wait_offer(since=revived, timeout=10.0, what="an offer after REVIVE")
    assert offered(again, "cpus") == pytest.approx(AGENT_CPUS), again


def test_allocation_spacing_gathers_freed_resources_into_one_offer(meseta):
    # Passes after events are spaced by --allocation-spacing (no periodic pass within
    # the test): what two tasks and an accept's leftovers free meanwhile comes back in
    # one offer of the whole agent, not an offer each.
    spacing = 4.0
    master = meseta.master(
        extra_args=("--allocation-spacing", "4secs", "--allocation-interval", "1hrs")
    )
    agent = meseta.agent(master, extra_args=AGENT_ARGS)
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    framework = Framework(master.api, "e2e-allocation-spacing")
    offer = framework.wait_offer(min_cpus=AGENT_CPUS, timeout=OFFER_WAIT + spacing)
    offered_at = next(t for t, o in framework.offer_log if o is offer)
    tasks = [
        command_task(f"half-{i}", agent_id, "true", cpus=AGENT_CPUS / 2, mem=TASK_MEM)
        for i in range(2)
    ]
    framework.accept([offer], tasks, refuse_seconds=0.0)
    accepted = time.monotonic()
    for task in tasks:
        framework.wait_state(task["task_id"]["value"], "TASK_FINISHED")

    back = framework.wait_offer(since=accepted, timeout=OFFER_WAIT + spacing)
    back_at = next(t for t, o in framework.offer_log if o is back)
    after_accept = framework.offers_since(accepted)
    assert after_accept[0] is back, after_accept
    assert offered(back, "cpus") == pytest.approx(AGENT_CPUS), back
    assert offered(back, "mem") == pytest.approx(AGENT_MEM), back
    # The pass that made the first offer ended before it arrived; the next one waited
    # the spacing from that end (a lower bound only: a slow host makes it later).
    assert back_at - offered_at >= spacing - 0.5, (
        f"re-offered {back_at - offered_at:.2f}s after the first offer"
    )


# ---------------------------------------------------------------------------
# 2. Offer timeout


def test_offer_timeout_rescinds_and_reoffers(meseta):
    master = meseta.master(extra_args=("--offer-timeout", "1secs"))
    agent = meseta.agent(master, extra_args=AGENT_ARGS)
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    framework = Framework(master.api, "e2e-offer-timeout")
    offer = framework.wait_offer()
    received = next(t for t, o in framework.offer_log if o["id"] == offer["id"])
    offer_id = offer["id"]["value"]

    def rescinded():
        return next((t for t, rescinded_id in framework.rescinds if rescinded_id == offer_id), None)

    at = framework.wait(rescinded, 10.0, what=f"RESCIND of {offer_id}")
    # The timer cannot fire before the offer's second is up; it starts before the
    # offer is sent, and both events are timed when read, hence the wide margin.
    assert at - received >= 0.25, f"rescinded {at - received:.2f}s after the offer arrived"
    assert offer_id not in framework.offers

    fresh = framework.wait_offer(since=at, timeout=10.0, what="a fresh offer after the RESCIND")
    assert fresh["id"]["value"] != offer_id, fresh
    assert fresh["agent_id"]["value"] == agent_id, fresh
    assert offered(fresh, "cpus") == pytest.approx(AGENT_CPUS), fresh


# ---------------------------------------------------------------------------
# 3. Framework failover timeout


def test_failover_timeout_removes_framework_and_kills_its_task(cluster):
    framework = Framework(cluster.master, "e2e-failover-expires", failover_timeout=1.0)
    pids = start_looping(framework, cluster, "long", new_marker())

    framework.disconnect()
    wait_for(
        lambda: not any(process_alive(pid) for pid in pids),
        EXIT_TIMEOUT,
        what="the removed framework's task processes to die",
    )

    def removed():
        found = framework_listing(cluster.master, framework.id)
        return found and found[0] == "completed_frameworks" and found

    wait_for(removed, DEFAULT_TIMEOUT, what="GET_FRAMEWORKS to list the framework as completed")

    try:
        listing, _ = wait_master_task(
            cluster.master,
            framework.id,
            "long",
            "TASK_KILLED",
            what="GET_TASKS to show the task TASK_KILLED",
        )
    except TimeoutError as exc:
        found = master_task(cluster.master, framework.id, "long")
        raise AssertionError(f"{exc}; GET_TASKS has {found}") from None
    assert listing == "completed_tasks", listing

    refusal = subscribe_refusal(cluster.master, dict(framework.info, id={"value": framework.id}))
    assert "removed" in refusal.lower(), f"refused, but not as a removed framework: {refusal}"


def test_resubscribe_within_failover_timeout_keeps_the_task(cluster):
    framework = Framework(cluster.master, "e2e-failover-within", failover_timeout=300.0)
    pids = start_looping(framework, cluster, "long", new_marker())

    framework.disconnect()

    def disconnected():
        found = framework_listing(cluster.master, framework.id)
        return found and found[0] == "frameworks" and not found[1].get("connected") and found

    wait_for(disconnected, what="GET_FRAMEWORKS to show the framework disconnected")
    time.sleep(2.0)  # past any short timer: the task must not be touched
    assert all(process_alive(pid) for pid in pids), "the task died while its framework was away"

    assert framework.resubscribe() == framework.id

    def connected():
        found = framework_listing(cluster.master, framework.id)
        return found and found[1].get("connected") and found

    found = wait_for(connected, what="GET_FRAMEWORKS to show the framework connected")
    assert found[0] == "frameworks", found

    framework.reconcile("long", cluster.agent_id)
    answer = framework.wait_status(
        "long", lambda s: s.get("reason") == "REASON_RECONCILIATION", what="reconciliation"
    )
    assert answer["state"] == "TASK_RUNNING", answer
    assert all(process_alive(pid) for pid in pids), "the task died after the framework came back"
    assert not framework.errors, framework.errors


# ---------------------------------------------------------------------------
# 4. KILL and kill policies

TRAP_SETUP = "trap 'echo got-term; sleep 1; echo term-done; exit 0' TERM;"


@pytest.mark.parametrize("killing_capability", [False, True], ids=["plain", "task-killing-state"])
def test_kill_honours_the_grace_period(cluster, killing_capability):
    capabilities = ("TASK_KILLING_STATE",) if killing_capability else ()
    framework = Framework(cluster.master, "e2e-kill-grace", capabilities=capabilities)
    marker = new_marker()
    start_running(
        framework,
        cluster,
        "trapper",
        loop_command(marker, TRAP_SETUP),
        kill_policy={"grace_period": nanoseconds(10)},
    )
    sandbox = sandbox_of(cluster, framework, "trapper")
    wait_stdout(sandbox, "ready")  # the trap is set

    framework.kill("trapper", cluster.agent_id)
    killed = framework.wait_state("trapper", "TASK_KILLED")
    assert killed.get("source") == "SOURCE_EXECUTOR", killed
    stdout = read_stdout(sandbox)
    assert "got-term" in stdout, f"the task got no SIGTERM: {stdout[-2000:]!r}"
    assert "term-done" in stdout, f"SIGKILL came within the grace period: {stdout[-2000:]!r}"
    wait_processes_gone(marker)

    states = framework.states("trapper")
    if killing_capability:
        assert "TASK_KILLING" in states, states
        assert states.index("TASK_KILLING") < states.index("TASK_KILLED"), states
    else:
        assert "TASK_KILLING" not in states, (
            f"TASK_KILLING went to a framework without TASK_KILLING_STATE: {states}"
        )


def test_kill_policy_of_the_kill_call_overrides_the_tasks(cluster):
    framework = Framework(cluster.master, "e2e-kill-override")
    marker = new_marker()
    start_running(
        framework,
        cluster,
        "stubborn",
        loop_command(marker, "trap 'echo got-term; sleep 60; echo term-done; exit 0' TERM;"),
        kill_policy={"grace_period": nanoseconds(120)},
    )
    sandbox = sandbox_of(cluster, framework, "stubborn")
    wait_stdout(sandbox, "ready")

    # One second of grace, then SIGKILL: long before the task's own 120 s or its trap.
    framework.kill("stubborn", cluster.agent_id, kill_policy={"grace_period": nanoseconds(1)})
    framework.wait_state("stubborn", "TASK_KILLED", timeout=30.0)
    stdout = read_stdout(sandbox)
    assert "got-term" in stdout, stdout[-2000:]
    assert "term-done" not in stdout, stdout[-2000:]
    wait_processes_gone(marker)


# ---------------------------------------------------------------------------
# 5. Health checks


def health_updates(framework, task_id, healthy):
    return [
        s
        for s in framework.statuses(task_id)
        if s["state"] == "TASK_RUNNING" and s.get("healthy") is healthy
    ]


def test_command_health_check_reports_healthy(cluster):
    framework = Framework(cluster.master, "e2e-health-command")
    start_running(
        framework,
        cluster,
        "checked",
        loop_command(new_marker()),
        health_check={
            "type": "COMMAND",
            "command": {"value": "exit 0", "shell": True},
            "delay_seconds": 0.0,
            "interval_seconds": 1.0,
            "timeout_seconds": 10.0,
            "grace_period_seconds": 30.0,
            "consecutive_failures": 3,
        },
    )
    healthy = framework.wait_status(
        "checked",
        lambda s: s["state"] == "TASK_RUNNING" and s.get("healthy") is True,
        what="a healthy TASK_RUNNING",
    )
    assert healthy.get("reason") == HEALTH_REASON, healthy
    # Only the first success is reported while the task stays healthy.
    framework.listen(3.0)
    assert len(health_updates(framework, "checked", True)) == 1, framework.describe("checked")
    assert not health_updates(framework, "checked", False), framework.describe("checked")


def test_failing_http_health_check_kills_the_task(cluster):
    framework = Framework(cluster.master, "e2e-health-http-fail")
    port = free_port()  # nothing listens there
    marker = new_marker()
    start_running(
        framework,
        cluster,
        "sick",
        loop_command(marker),
        health_check={
            "type": "HTTP",
            "http": {"port": port, "path": "/"},
            "delay_seconds": 0.0,
            "interval_seconds": 0.5,
            "timeout_seconds": 2.0,
            "grace_period_seconds": 0.0,
            "consecutive_failures": 2,
        },
    )
    killed = framework.wait_state("sick", "TASK_KILLED")
    unhealthy = health_updates(framework, "sick", False)
    assert len(unhealthy) == 2, (
        f"expected one healthy=false TASK_RUNNING per failure, the task killed at the "
        f"second: {framework.describe('sick')}"
    )
    assert all(s.get("reason") == HEALTH_REASON for s in unhealthy), framework.describe("sick")
    assert not health_updates(framework, "sick", True), framework.describe("sick")
    assert killed.get("healthy") is False, f"TASK_KILLED by a health check: {killed}"
    wait_processes_gone(marker)


@pytest.mark.parametrize("check_type", ["TCP", "HTTP"])
def test_health_check_against_the_tasks_own_port(cluster, check_type):
    framework = Framework(cluster.master, f"e2e-health-{check_type.lower()}")
    offer = framework.wait_offer(min_cpus=TASK_CPUS)
    port = next(
        (p for begin, end in offered_ports(offer) for p in range(begin, end + 1) if bindable(p)),
        None,
    )
    assert port is not None, f"no free port in the offer: {offered_ports(offer)}"
    check = {"port": port}
    if check_type == "HTTP":
        check["path"] = "/"
    task = command_task(
        "server",
        cluster.agent_id,
        f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1",
        health_check={
            "type": check_type,
            check_type.lower(): check,
            "delay_seconds": 0.0,
            "interval_seconds": 1.0,
            "timeout_seconds": 5.0,
            "grace_period_seconds": 60.0,
            "consecutive_failures": 3,
        },
    )
    task["resources"].append(ports_resource(port, port))
    framework.accept([offer], [task])
    framework.wait_state("server", "TASK_RUNNING")
    healthy = framework.wait_status(
        "server",
        lambda s: s["state"] == "TASK_RUNNING" and s.get("healthy") is True,
        what=f"a healthy TASK_RUNNING from the {check_type} check",
    )
    assert healthy.get("reason") == HEALTH_REASON, healthy
    assert not health_updates(framework, "server", False), framework.describe("server")


HTTPS_SERVER = """
import http.server, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
server = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def serves_https(port):
    """Whether 127.0.0.1:``port`` answers a GET over TLS (certificate not verified)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    finally:
        connection.close()


@pytest.mark.parametrize("scheme, healthy", [("https", True), ("http", False)])
def test_http_health_check_of_an_https_server(cluster, tmp_path, scheme, healthy):
    """A task serving HTTPS with a self-signed certificate is healthy to an ``https``
    check (the certificate is not verified: Mesos runs ``curl -k``) and unhealthy to an
    ``http`` one once it serves."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    script = tmp_path / "https_server.py"
    script.write_text(HTTPS_SERVER)
    framework = Framework(cluster.master, f"e2e-health-{scheme}-of-https")
    offer = framework.wait_offer(min_cpus=TASK_CPUS)
    port = next(
        (p for begin, end in offered_ports(offer) for p in range(begin, end + 1) if bindable(p)),
        None,
    )
    assert port is not None, f"no free port in the offer: {offered_ports(offer)}"
    task = command_task(
        "tls",
        cluster.agent_id,
        f"exec {sys.executable} {script} {port} {cert} {key}",
        health_check={
            "type": "HTTP",
            "http": {"port": port, "path": "/", "scheme": scheme},
            "delay_seconds": 0.0,
            "interval_seconds": 0.5,
            "timeout_seconds": 5.0,
            # Without a grace period every failure is reported (healthy: false).
            "grace_period_seconds": 60.0 if healthy else 0.0,
            "consecutive_failures": 1000,
        },
    )
    task["resources"].append(ports_resource(port, port))
    framework.accept([offer], [task])
    framework.wait_state("tls", "TASK_RUNNING")
    wait_for(lambda: serves_https(port), what=f"the task to serve HTTPS on port {port}")
    if healthy:
        reported = framework.wait_status(
            "tls",
            lambda s: s["state"] == "TASK_RUNNING" and s.get("healthy") is True,
            what="a healthy TASK_RUNNING from the https check",
        )
        assert reported.get("reason") == HEALTH_REASON, reported
        assert not health_updates(framework, "tls", False), framework.describe("tls")
    else:
        # Failures from before the server listened do not count: wait for one after.
        framework.poll()
        before = len(health_updates(framework, "tls", False))
        framework.wait(
            lambda: len(health_updates(framework, "tls", False)) > before,
            what="a healthy=false TASK_RUNNING while the task serves HTTPS",
        )
        assert not health_updates(framework, "tls", True), framework.describe("tls")


# ---------------------------------------------------------------------------
# 6. SHUTDOWN and MESSAGE


def test_shutdown_of_a_command_executor_kills_its_task(cluster):
    framework = Framework(cluster.master, "e2e-shutdown")
    marker = new_marker()
    running = start_running(framework, cluster, "victim", loop_command(marker))
    executor_id = running.get("executor_id", {"value": "victim"})
    assert executor_id == {"value": "victim"}, (
        f"a command task's executor id is its task id: {running}"
    )

    framework.call(
        "SHUTDOWN",
        shutdown={"executor_id": executor_id, "agent_id": {"value": cluster.agent_id}},
    )
    framework.wait_state("victim", "TASK_KILLED")
    wait_processes_gone(marker)
    # Mesos sends no ExitedExecutorMessage (hence no FAILURE) for command executors.
    framework.listen(3.0)
    assert not framework.failures, f"FAILURE for a command executor: {framework.failures}"


def test_message_to_an_unknown_agent_is_accepted_and_dropped(cluster):
    framework = Framework(cluster.master, "e2e-message-unknown")
    data = base64.b64encode(b"hello").decode()
    response = framework.stream.call(
        "MESSAGE",
        message={
            "agent_id": {"value": f"{cluster.agent_id}-unknown"},
            "executor_id": {"value": "nobody-home"},
            "data": data,
        },
    )
    assert response.status_code == 202, (
        f"MESSAGE to an unknown agent: {response.status_code} {response.text}"
    )
    # A known agent, an executor it does not run: dropped too.
    response = framework.stream.call(
        "MESSAGE",
        message={
            "agent_id": {"value": cluster.agent_id},
            "executor_id": {"value": "nobody-home"},
            "data": data,
        },
    )
    assert response.status_code == 202, (
        f"MESSAGE to an unknown executor: {response.status_code} {response.text}"
    )
    # The framework and the master carry on.
    start_running(framework, cluster, "after", loop_command(new_marker()))
    assert not framework.errors, framework.errors


def test_shutdown_on_an_unknown_agent_is_accepted_and_dropped(cluster):
    framework = Framework(cluster.master, "e2e-shutdown-unknown")
    response = framework.stream.call(
        "SHUTDOWN",
        shutdown={
            "executor_id": {"value": "nobody-home"},
            "agent_id": {"value": f"{cluster.agent_id}-unknown"},
        },
    )
    assert response.status_code == 202, (
        f"SHUTDOWN on an unknown agent: {response.status_code} {response.text}"
    )
    start_running(framework, cluster, "after", loop_command(new_marker()))
    assert not framework.errors, framework.errors


# ---------------------------------------------------------------------------
# 7. The command task's environment, argv, user


def parse_env(text):
    env = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isidentifier():
            env[name] = value
    return env


def test_command_task_environment(cluster):
    framework = Framework(cluster.master, "e2e-environment")
    framework.launch(
        cluster.agent_id,
        "env",
        {
            "value": "echo cwd=$(pwd); env",
            "shell": True,
            "environment": {
                "variables": [
                    {"name": "E2E_GREETING", "value": "hello world"},
                    {"name": "HOME", "value": "/e2e-home"},
                ]
            },
        },
    )
    framework.wait_state("env", "TASK_FINISHED")
    sandbox = sandbox_of(cluster, framework, "env")
    stdout = wait_stdout(sandbox, "E2E_GREETING=")
    env = parse_env(stdout)

    assert env.get("E2E_GREETING") == "hello world", env
    # CommandInfo.environment wins over the environment the executor passes on.
    assert env.get("HOME") == "/e2e-home", env
    assert os.path.samefile(env["cwd"], sandbox), (env["cwd"], sandbox)
    assert "MESOS_SANDBOX" in env and os.path.samefile(env["MESOS_SANDBOX"], sandbox), env
    assert "MESOS_DIRECTORY" in env and os.path.samefile(env["MESOS_DIRECTORY"], sandbox), env
    assert env.get("MESOS_FRAMEWORK_ID") == framework.id, env
    assert env.get("MESOS_EXECUTOR_ID") == "env", env
    assert env.get("MESOS_SLAVE_ID") == cluster.agent_id, env
    assert env.get("MESOS_AGENT_ENDPOINT") == cluster.agent.address, env
    assert env.get("MESOS_ALLOCATION_ROLE") == "*", env


def test_command_without_a_shell_runs_argv(cluster):
    framework = Framework(cluster.master, "e2e-argv")
    framework.launch(
        cluster.agent_id,
        "argv",
        {
            "shell": False,
            "value": "/bin/echo",
            "arguments": ["echo", "one  two", "$HOME", "*", "a;b"],
        },
    )
    framework.wait_state("argv", "TASK_FINISHED")
    stdout = wait_stdout(sandbox_of(cluster, framework, "argv"), "one  two")
    assert "one  two $HOME * a;b\n" in stdout, f"argv went through a shell: {stdout[-2000:]!r}"


def run_as_nobody(cluster):
    """Runs ``id`` as a command task with ``command.user`` nobody; returns the
    sandbox's stdout."""
    framework = Framework(cluster.master, "e2e-user")
    framework.launch(
        cluster.agent_id,
        "whoami",
        {"value": "echo uid=$(id -u) user=$(id -un)", "shell": True, "user": "nobody"},
    )
    framework.wait_state("whoami", "TASK_FINISHED")
    return wait_stdout(sandbox_of(cluster, framework, "whoami"), "uid=")


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching users needs an agent running as root"
)


@needs_root
def test_command_user_runs_the_task_as_that_user(cluster):
    """The agent's work directory lies below pytest's private (0700) temporary
    directory, as any root-only path may: Mesos's launcher enters the sandbox before
    it drops privileges, and the command executor starts the task in its own working
    directory, so the task still runs."""
    stdout = run_as_nobody(cluster)
    assert f"uid={pwd.getpwnam('nobody').pw_uid} user=nobody" in stdout, stdout[-2000:]


@pytest.fixture
def open_meseta(meseta_bin):
    """A Launcher whose work directories every user can reach (``/tmp/<dir>``, 0755)."""
    base = Path(tempfile.mkdtemp(prefix="meseta-e2e-"))
    base.chmod(0o755)
    for parent in base.parents:
        if not parent.stat().st_mode & 0o001:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip(f"{parent} cannot be entered by other users")
    launcher = Launcher(meseta_bin, base)
    try:
        yield launcher
    finally:
        errors = launcher.shutdown()
        shutil.rmtree(base, ignore_errors=True)
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@needs_root
def test_command_user_in_a_work_dir_everyone_can_reach(open_meseta):
    cluster = open_meseta.local(extra_args=AGENT_ARGS)
    stdout = run_as_nobody(cluster)
    assert f"uid={pwd.getpwnam('nobody').pw_uid} user=nobody" in stdout, stdout[-2000:]


# ---------------------------------------------------------------------------
# 8. Resources come back


def test_resources_come_back_when_the_task_ends(cluster):
    framework = Framework(cluster.master, "e2e-resources-back")
    offer = framework.wait_offer(min_cpus=AGENT_CPUS)
    marker = new_marker()
    task = command_task(
        "all-cpus",
        cluster.agent_id,
        f": {marker}; while [ ! -f go ]; do sleep 0.1; done",
        cpus=offered(offer, "cpus"),
        mem=TASK_MEM,
    )
    framework.accept([offer], [task], refuse_seconds=0.5)
    framework.wait_state("all-cpus", "TASK_RUNNING")
    sandbox = sandbox_of(cluster, framework, "all-cpus")

    # While it runs, the agent has no cpus to offer (the command executor's share is
    # Mesos's overcommit, not charged to the offer), but the rest of it is offered.
    framework.wait_offer(what="an offer of what the task left")
    framework.listen(1.0)
    while_running = [offered(o, "cpus") for _, o in framework.offer_log if o is not offer]
    assert all(c == 0 for c in while_running), (
        f"cpus offered while all were in use: {while_running}"
    )
    running_offers = len(framework.offer_log)

    with open(os.path.join(sandbox, "go"), "w"):
        pass
    framework.wait_state("all-cpus", "TASK_FINISHED")

    # Once it has ended, the cpus (and its memory) are offered again: the outstanding
    # offers add up to the whole agent.
    def whole_agent():
        outstanding = list(framework.offers.values())
        return (
            sum(offered(o, "cpus") for o in outstanding) == pytest.approx(AGENT_CPUS)
            and sum(offered(o, "mem") for o in outstanding) == pytest.approx(AGENT_MEM)
            and outstanding
        )

    try:
        framework.wait(whole_agent, 15.0, what="the whole agent offered again")
    except TimeoutError as exc:
        outstanding = [
            (offered(o, "cpus"), offered(o, "mem")) for o in framework.offers.values()
        ]
        raise AssertionError(f"{exc}; outstanding (cpus, mem): {outstanding}") from None
    back = [o for _, o in framework.offer_log[running_offers:] if offered(o, "cpus") > 0]
    assert back, "the cpus came back in no new offer"


# ---------------------------------------------------------------------------
# 9. Invalid launches

INVALID_TASKS = [
    "duplicate-id",
    "duplicate-in-one-accept",
    "too-many-cpus",
    "command-and-executor",
    "wrong-agent-id",
]


@pytest.mark.parametrize("case", INVALID_TASKS)
def test_invalid_task_gives_task_error(cluster, case):
    framework = Framework(cluster.master, f"e2e-invalid-{case}")
    marker = new_marker()
    pids = []
    if case == "duplicate-id":
        pids = start_looping(framework, cluster, "twin", marker, "the first twin's processes")
    offer = framework.wait_offer(min_cpus=TASK_CPUS)
    seen = len(framework.statuses("twin"))

    if case in ("duplicate-id", "duplicate-in-one-accept"):
        tasks = [command_task("twin", cluster.agent_id, loop_command(new_marker()))]
        if case == "duplicate-in-one-accept":
            tasks.insert(0, command_task("twin", cluster.agent_id, loop_command(marker)))
    elif case == "too-many-cpus":
        tasks = [command_task("twin", cluster.agent_id, "true", cpus=offered(offer, "cpus") + 1)]
    elif case == "command-and-executor":
        task = command_task("twin", cluster.agent_id, "true")
        task["executor"] = {
            "executor_id": {"value": "e2e-executor"},
            "command": {"value": "sleep 60", "shell": True},
            "resources": [scalar_resource("cpus", 0.1), scalar_resource("mem", 32.0)],
        }
        tasks = [task]
    else:  # wrong-agent-id
        tasks = [command_task("twin", f"{cluster.agent_id}-elsewhere", "true")]
    framework.accept([offer], tasks, refuse_seconds=0.0)

    def error():
        return next(
            (s for s in framework.statuses("twin")[seen:] if s["state"] == "TASK_ERROR"), None
        )

    try:
        status = framework.wait(error, UPDATE_TIMEOUT, what="TASK_ERROR")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; updates: {framework.describe('twin')}") from None
    assert status.get("reason") == "REASON_TASK_INVALID", status
    assert status.get("source") == "SOURCE_MASTER", status
    assert status.get("message"), f"TASK_ERROR without a message: {status}"

    if case == "duplicate-in-one-accept":
        # The first of the two launches.
        framework.wait_status(
            "twin", lambda s: s["state"] == "TASK_RUNNING", what="the first twin to run"
        )
        pids = wait_for(lambda: processes_with(marker), what="the first twin's processes")
    if pids:
        # The task already running under that id is not touched.
        found = master_task(cluster.master, framework.id, "twin")
        assert found and found[0] == "tasks" and found[1]["state"] == "TASK_RUNNING", found
        framework.listen(1.0)
        assert all(process_alive(pid) for pid in pids), "the running twin died"
        ended = [
            s
            for s in framework.statuses("twin")
            if s["state"] in TERMINAL_STATES - {"TASK_ERROR"}
        ]
        assert not ended, ended

    # The master keeps working.
    start_running(framework, cluster, "valid", loop_command(new_marker()))
    assert not framework.errors, framework.errors


@pytest.mark.parametrize("partition_aware", [False, True], ids=["lost", "dropped"])
@pytest.mark.parametrize("case", ["reused-offer", "unknown-offer"])
def test_invalid_offer_gives_lost_or_dropped(cluster, case, partition_aware):
    capabilities = ("PARTITION_AWARE",) if partition_aware else ()
    framework = Framework(cluster.master, f"e2e-{case}", capabilities=capabilities)
    if case == "reused-offer":
        offer = framework.wait_offer(min_cpus=TASK_CPUS)
        framework.accept([offer], [command_task("first", cluster.agent_id, "sleep 1000")])
        framework.wait_state("first", "TASK_RUNNING")
        offer_id = offer["id"]
    else:
        offer_id = {"value": f"{cluster.agent_id}-O999999"}
    framework.accept([offer_id], [command_task("orphan", cluster.agent_id, "true")])

    expected = "TASK_DROPPED" if partition_aware else "TASK_LOST"
    status = framework.wait_status(
        "orphan", lambda s: s["state"] in TERMINAL_STATES, what="a terminal update of the task"
    )
    assert status["state"] == expected, status
    assert status.get("reason") == "REASON_INVALID_OFFERS", status
    assert status.get("source") == "SOURCE_MASTER", status
    assert status.get("message"), f"{expected} without a message: {status}"

    # The master keeps working.
    start_running(framework, cluster, "valid", loop_command(new_marker()))
    if case == "reused-offer":
        found = master_task(cluster.master, framework.id, "first")
        assert found and found[1]["state"] == "TASK_RUNNING", found
    assert not framework.errors, framework.errors
