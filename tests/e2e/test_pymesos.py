"""pymesos 0.3.15, unmodified, as a scheduler and as an executor against meseta.

Covers command tasks that finish, fail and are killed, explicit and implicit
reconciliation, framework failover, reading a task's output through the agent's
/files API, and a custom pymesos executor exchanging framework messages with its
scheduler. pymesos passes framework message data through as they are on the wire
(base64 text), so the tests encode and decode them with pymesos' helpers.
"""

import contextlib
import getpass
import json
import os
import re
import shlex
import sys
import threading
import uuid
from collections import deque

from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data

from conftest import TERMINAL_STATES, wait_for
from helpers import scalar, wait_sandbox

# Twenty-odd tasks start, run and report on a two-core machine in a debug build.
BATCH_TIMEOUT = 60.0
EXECUTOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pymesos_executor.py")
REFUSE_SECONDS = 1.0


def framework_info(name):
    return {
        "user": getpass.getuser(),
        "name": name,
        "checkpoint": True,
        "failover_timeout": 300.0,
    }


def resources(cpus, mem):
    return [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]


def command_task(task_id, command, cpus=0.05, mem=32):
    """A TaskInfo without agent_id (the scheduler sets it from the offer)."""
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "resources": resources(cpus, mem),
        "command": {"value": command, "shell": True},
    }


def cost(task):
    """The cpus and mem a task takes from an offer, its executor's included."""
    needed = task["resources"] + task.get("executor", {}).get("resources", [])
    return scalar(needed, "cpus"), scalar(needed, "mem")


class RecordingScheduler(Scheduler):
    """Launches the tasks given to ``submit`` on the offers that fit them, and
    records what pymesos reports: registrations, status updates, framework
    messages and errors. Callbacks run on pymesos' thread, so state is locked."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending = deque()
        self.framework_id = None
        self.reregistrations = 0
        self.updates = {}  # task id -> [TaskStatus, ...] in arrival order
        self.messages = []  # (executor_id, agent_id, decoded JSON message)
        self.errors = []

    def submit(self, driver, *tasks):
        with self.lock:
            self.pending.extend(tasks)
        driver.reviveOffers()

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]

    def reregistered(self, driver, master_info):
        self.framework_id = driver.framework_id
        self.reregistrations += 1

    def resourceOffers(self, driver, offers):
        for offer in offers:
            cpus, mem = scalar(offer["resources"], "cpus"), scalar(offer["resources"], "mem")
            launch = []
            with self.lock:
                while self.pending:
                    need_cpus, need_mem = cost(self.pending[0])
                    if need_cpus > cpus + 1e-9 or need_mem > mem + 1e-9:
                        break
                    cpus, mem = cpus - need_cpus, mem - need_mem
                    launch.append(dict(self.pending.popleft(), agent_id=offer["agent_id"]))
            filters = {"refuse_seconds": REFUSE_SECONDS}
            if launch:
                driver.launchTasks(offer["id"], launch, filters)
            else:
                driver.declineOffer(offer["id"], filters)

    def statusUpdate(self, driver, status):
        with self.lock:
            self.updates.setdefault(status["task_id"]["value"], []).append(status)

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        with self.lock:
            self.messages.append((executor_id, agent_id, json.loads(decode_data(message))))

    def error(self, driver, message):
        with self.lock:
            self.errors.append(message)

    def statuses(self, task_id):
        with self.lock:
            return list(self.updates.get(task_id, []))

    def states(self, task_id):
        return [s["state"] for s in self.statuses(task_id)]

    def latest(self, task_id):
        states = self.states(task_id)
        return states[-1] if states else None

    def reconciliations(self, task_id):
        return [s for s in self.statuses(task_id) if s.get("reason") == "REASON_RECONCILIATION"]

    def wait_reconciliation(self, task_id, what):
        """Waits for a reconciliation update of ``task_id``; returns the first."""
        return wait_for(lambda: self.reconciliations(task_id), what=what)[0]

    def message(self, event, task_id):
        with self.lock:
            for executor_id, agent_id, message in self.messages:
                if message.get("event") == event and message.get("task_id") == task_id:
                    return executor_id, agent_id, message
        return None

    def wait_state(self, task_ids, wanted, timeout=30.0):
        """Waits until each task reaches ``wanted`` or a terminal state; asserts it
        is ``wanted``."""
        task_ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)

        def settled():
            return all(self.latest(t) in TERMINAL_STATES | {wanted} for t in task_ids)

        wait_for(settled, timeout, what=f"{len(task_ids)} task(s) to reach {wanted}")
        wrong = {t: self.states(t) for t in task_ids if self.latest(t) != wanted}
        assert not wrong, f"tasks that did not reach {wanted}: {wrong}"

    def kill(self, driver, task_id):
        """Kills ``task_id`` through ``driver`` and waits for its TASK_KILLED."""
        driver.killTask({"value": task_id})
        self.wait_state(task_id, "TASK_KILLED")


@contextlib.contextmanager
def running(scheduler, master_address, info):
    """A started and subscribed pymesos driver, stopped on exit (pymesos then sends
    TEARDOWN)."""
    driver = MesosSchedulerDriver(scheduler, dict(info), master_address, use_addict=False)
    driver.start()
    try:
        wait_for(lambda: scheduler.framework_id, what="pymesos to subscribe")
        yield driver
        assert not scheduler.errors, scheduler.errors
    finally:
        driver.stop()
        driver.join()


def test_tasks_finish_fail_and_are_killed(cluster):
    scheduler = RecordingScheduler()
    with running(scheduler, cluster.master_address, framework_info("e2e-pymesos-batch")) as driver:
        finishing = [f"true-{i:02d}" for i in range(20)]
        scheduler.submit(
            driver,
            *(command_task(t, "true") for t in finishing),
            command_task("fails", "false"),
            command_task("sleeper", "sleep 1000"),
        )
        scheduler.wait_state(finishing, "TASK_FINISHED", BATCH_TIMEOUT)
        scheduler.wait_state("fails", "TASK_FAILED", BATCH_TIMEOUT)
        scheduler.wait_state("sleeper", "TASK_RUNNING", BATCH_TIMEOUT)

        for task_id in finishing:
            states = scheduler.states(task_id)
            assert "TASK_RUNNING" in states[: states.index("TASK_FINISHED")], states
            assert scheduler.statuses(task_id)[-1]["source"] == "SOURCE_EXECUTOR"
        failure = scheduler.statuses("fails")[-1]
        message = failure.get("message", "")
        assert "exit" in message.lower() and re.search(r"\b1\b", message), failure

        scheduler.kill(driver, "sleeper")

        expected = {t: "TASK_FINISHED" for t in finishing}
        expected.update(fails="TASK_FAILED", sleeper="TASK_KILLED")

        def master_agrees():
            tasks = cluster.master.tasks()
            known = {
                t["task_id"]["value"]: t["state"]
                for t in tasks.get("tasks", []) + tasks.get("completed_tasks", [])
                if t["framework_id"]["value"] == scheduler.framework_id
            }
            return known == expected

        wait_for(master_agrees, what="GET_TASKS to show every task's final state")


def test_reconciliation(cluster):
    scheduler = RecordingScheduler()
    with running(
        scheduler, cluster.master_address, framework_info("e2e-pymesos-reconcile")
    ) as driver:
        scheduler.submit(driver, command_task("sleeper", "sleep 1000"))
        scheduler.wait_state("sleeper", "TASK_RUNNING")

        driver.reconcileTasks([])  # implicit: every task the master knows
        answer = scheduler.wait_reconciliation("sleeper", "implicit reconciliation")
        assert answer["state"] == "TASK_RUNNING", answer
        assert "uuid" not in answer, "master-generated updates carry no uuid"

        before = len(scheduler.reconciliations("sleeper"))
        driver.reconcileTasks(
            [{"task_id": {"value": "sleeper"}}, {"task_id": {"value": "never-launched"}}]
        )
        wait_for(
            lambda: len(scheduler.reconciliations("sleeper")) > before,
            what="explicit reconciliation",
        )
        assert scheduler.reconciliations("sleeper")[-1]["state"] == "TASK_RUNNING"
        # Not partition-aware: a task the master never heard of is TASK_LOST.
        unknown = scheduler.wait_reconciliation("never-launched", "unknown task's answer")
        assert unknown["state"] == "TASK_LOST", unknown

        scheduler.kill(driver, "sleeper")


def test_framework_failover(cluster):
    info = framework_info("e2e-pymesos-failover")
    first = RecordingScheduler()
    driver = MesosSchedulerDriver(first, dict(info), cluster.master_address, use_addict=False)
    driver.start()
    try:
        wait_for(lambda: first.framework_id, what="pymesos to subscribe")
        first.submit(driver, command_task("survivor", "sleep 1000"))
        first.wait_state("survivor", "TASK_RUNNING")
    finally:
        driver.stop(failover=True)  # no TEARDOWN: the framework and its task stay
        driver.join()
    framework_id = first.framework_id

    def framework(connected):
        for entry in cluster.master.frameworks().get("frameworks", []):
            if entry["framework_info"]["id"]["value"] == framework_id:
                return entry.get("connected") == connected
        return False

    wait_for(lambda: framework(connected=False), what="the master to see the framework disconnect")

    second = RecordingScheduler()
    info_with_id = dict(info, id={"value": framework_id})
    with running(second, cluster.master_address, info_with_id) as driver:
        assert second.framework_id == framework_id
        assert second.reregistrations == 1, "pymesos reports a resubscription as reregistered()"
        wait_for(
            lambda: framework(connected=True), what="the master to see the framework reconnect"
        )

        driver.reconcileTasks([{"task_id": {"value": "survivor"}}])
        answer = second.wait_reconciliation("survivor", "reconciliation after failover")
        assert answer["state"] == "TASK_RUNNING", answer

        second.kill(driver, "survivor")

    def torn_down():
        frameworks = cluster.master.frameworks()
        active = [f["framework_info"]["id"]["value"] for f in frameworks.get("frameworks", [])]
        return framework_id not in active

    wait_for(torn_down, what="TEARDOWN to remove the framework")


def test_task_output_through_files_api(cluster):
    marker = uuid.uuid4().hex
    scheduler = RecordingScheduler()
    with running(scheduler, cluster.master_address, framework_info("e2e-pymesos-files")) as driver:
        scheduler.submit(
            driver, command_task("talker", f"echo out-{marker}; echo err-{marker} >&2")
        )
        scheduler.wait_state("talker", "TASK_FINISHED")

        directory = wait_sandbox(cluster.agent, scheduler.framework_id, "talker")
        listed = [entry["path"] for entry in cluster.agent.files_browse(directory)]
        assert f"{directory}/stdout" in listed and f"{directory}/stderr" in listed, listed

        stdout = cluster.agent.files_read(f"{directory}/stdout", offset=0, length=1 << 20)
        assert stdout["offset"] == 0
        assert f"out-{marker}" in stdout["data"], stdout
        stderr = cluster.agent.files_read(f"{directory}/stderr", offset=0, length=1 << 20)
        assert f"err-{marker}" in stderr["data"], stderr

        start = stdout["data"].index(f"out-{marker}")
        piece = cluster.agent.files_read(f"{directory}/stdout", offset=start, length=8)
        assert piece["offset"] == start and piece["data"] == f"out-{marker}"[:8], piece


def test_custom_executor_and_framework_messages(cluster):
    nonce = uuid.uuid4().hex
    executor = {
        "executor_id": {"value": "echo-executor"},
        "name": "pymesos echo executor",
        "type": "CUSTOM",
        "command": {
            "value": f"{shlex.quote(sys.executable)} {shlex.quote(EXECUTOR_SCRIPT)}",
            "shell": True,
        },
        "resources": resources(0.1, 64),
    }
    task = {
        "name": "echo",
        "task_id": {"value": "echo"},
        "resources": resources(0.05, 32),
        "executor": executor,
        "data": encode_data(f"payload-{nonce}".encode()),
    }

    scheduler = RecordingScheduler()
    with running(
        scheduler, cluster.master_address, framework_info("e2e-pymesos-executor")
    ) as driver:
        scheduler.submit(driver, task)
        scheduler.wait_state("echo", "TASK_RUNNING")
        assert scheduler.statuses("echo")[-1]["source"] == "SOURCE_EXECUTOR"

        executor_id, agent_id, hello = wait_for(
            lambda: scheduler.message("launched", "echo"), what="the executor's first message"
        )
        assert executor_id == executor["executor_id"]
        assert agent_id == {"value": cluster.agent_id}
        assert hello["task_data"] == f"payload-{nonce}"
        assert hello["sandbox"] and os.path.samefile(hello["cwd"], hello["sandbox"]), hello

        request = {"task_id": "echo", "text": f"ping-{nonce}"}
        driver.sendFrameworkMessage(
            executor_id, agent_id, encode_data(json.dumps(request).encode())
        )
        _, _, pong = wait_for(
            lambda: scheduler.message("pong", "echo"), what="the executor's answer"
        )
        assert pong["text"] == f"ping-{nonce}"

        scheduler.wait_state("echo", "TASK_FINISHED")
        finished = scheduler.statuses("echo")[-1]
        assert decode_data(finished["data"]) == f"ping-{nonce}".encode(), finished
