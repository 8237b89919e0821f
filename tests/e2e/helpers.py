"""Helpers shared by the end-to-end test modules, beside the fixtures of ``conftest``.

* :func:`scalar`, :func:`scalar_resource`, :func:`command_task`: resources and TaskInfos.
* :func:`process_alive`, :func:`processes_with`: the processes of a task, found by a
  marker in their command lines.
* :func:`wait_sandbox`: a task's sandbox, from the agent's ``/state``.
* :func:`master_task`, :func:`wait_master_task`: a task as the master's GET_TASKS
  lists it.
* :func:`subscribe_refusal`: a SUBSCRIBE that the master must refuse.
* :class:`RawFramework`: a raw v1 framework on a :class:`conftest.SchedulerStream`, the
  base of the ``Framework`` classes of the test modules.
"""

import contextlib
import http.client
import json
import os
import queue

from conftest import (
    DEFAULT_TIMEOUT,
    TERMINAL_STATES,
    SchedulerStream,
    sandbox_directory,
    wait_for,
)

# A status update to reach the framework: launch, executor start and subscription in a
# debug build on two busy cores.
UPDATE_TIMEOUT = 60.0
# What a command task asks for.
TASK_CPUS = 0.1
TASK_MEM = 32.0
# The command executor's own share, which Mesos adds to a command task's.
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 32.0


# ---------------------------------------------------------------------------
# Resources and tasks


def scalar(resources, name):
    """The total of scalar resource ``name`` in ``resources`` (0 when absent)."""
    return sum(r["scalar"]["value"] for r in resources if r["name"] == name and "scalar" in r)


def scalar_resource(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def command_task(task_id, agent_id, command, *, cpus=TASK_CPUS, mem=TASK_MEM, **extra):
    """A TaskInfo for a command task (``sh -c command`` unless ``command`` is a dict)."""
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [scalar_resource("cpus", cpus), scalar_resource("mem", mem)],
        "command": command if isinstance(command, dict) else {"value": command, "shell": True},
        **extra,
    }


# ---------------------------------------------------------------------------
# Processes and sandboxes


def process_alive(pid):
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes_with(marker):
    """The live processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline and process_alive(int(entry)):
            found.append(int(entry))
    return found


def wait_sandbox(agent, framework_id, task_id, timeout=DEFAULT_TIMEOUT):
    """Waits until ``agent`` (an :class:`conftest.Endpoint`) shows the sandbox of the
    executor that runs (or ran) ``task_id`` in its ``/state``; returns its path."""
    return wait_for(
        lambda: sandbox_directory(agent, framework_id, task_id),
        timeout,
        what=f"the agent's /state to show {task_id}'s sandbox",
    )


# ---------------------------------------------------------------------------
# The master


def master_task(master, framework_id, task_id):
    """``(list name, Task)`` of the task in the master's GET_TASKS, or None."""
    tasks = master.tasks()
    for listing in ("tasks", "unreachable_tasks", "completed_tasks", "orphan_tasks"):
        for task in tasks.get(listing, []):
            if (
                task["task_id"]["value"] == task_id
                and task["framework_id"]["value"] == framework_id
            ):
                return listing, task
    return None


def wait_master_task(master, framework_id, task_id, state, what=None):
    """Waits until the master's GET_TASKS shows the task in ``state``; returns
    ``(list name, Task)`` (see :func:`master_task`)."""

    def in_state():
        found = master_task(master, framework_id, task_id)
        return found and found[1]["state"] == state and found

    return wait_for(in_state, what=what or f"GET_TASKS to show {task_id} {state}")


def subscribe_refusal(endpoint, info, timeout=DEFAULT_TIMEOUT):
    """SUBSCRIBEs with ``info`` and returns the refusal's text: a status other than
    200 with its body, or (Mesos's way for a removed framework) an ERROR event as the
    stream's first event. Fails if the master sends SUBSCRIBED."""
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/api/v1/scheduler",
            body=json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        response = connection.getresponse()
        if response.status != 200:
            return f"{response.status}: {response.read().decode(errors='replace')}"
        buffer = b""
        while (newline := buffer.find(b"\n")) < 0 or len(buffer) < newline + 1 + int(
            buffer[:newline]
        ):
            data = response.read1(65536)
            if not data:
                raise AssertionError(f"the SUBSCRIBE stream ended without an event: {buffer!r}")
            buffer += data
        event = json.loads(buffer[newline + 1 : newline + 1 + int(buffer[:newline])])
        assert event["type"] == "ERROR", (
            f"SUBSCRIBE with framework id {info.get('id')} was accepted: {event}"
        )
        return event["error"]["message"]
    finally:
        connection.close()


# ---------------------------------------------------------------------------
# A raw v1 framework


class RawFramework:
    """A raw v1 framework on a :class:`SchedulerStream` (``stream``), SUBSCRIBEd with
    ``info`` as ``id``.

    Events are read in :meth:`poll`, which :meth:`wait` calls, and handled by
    :meth:`_handle`: offers are kept in ``offers`` until used or rescinded, status
    updates are recorded in ``updates`` in arrival order and acknowledged by
    :meth:`_acknowledge`, the messages of ERROR events go to ``errors``. A stream that
    ends fails the test (:meth:`_stream_ended`). Subclasses change what they need of
    these. :meth:`disconnect` drops the stream (as a scheduler that died would);
    :meth:`resubscribe` opens a new one with the framework id.
    """

    def __init__(self, endpoint, info):
        self.endpoint = endpoint
        self.info = info
        self.offers = {}  # outstanding: offer id -> offer
        self.updates = []  # every TaskStatus received, in arrival order
        self.errors = []  # the messages of ERROR events
        self.stream = SchedulerStream(endpoint, self.info)
        self.id = self.stream.framework_id

    # Events

    def poll(self):
        """Handles the events that have arrived."""
        while self.stream is not None:
            try:
                event = self.stream.events.get_nowait()
            except queue.Empty:
                return
            if event is None:
                self._stream_ended()
                return
            self._handle(event)

    def _stream_ended(self):
        """Called when the stream's reader reports its end: fails the test."""
        self.stream.events.put(None)
        raise AssertionError(
            f"the master ended {self.info['name']}'s stream (reader: "
            f"{self.stream.error!r}); ERROR events: {self.errors}"
        )

    def _handle(self, event):
        kind = event.get("type")
        if kind == "OFFERS":
            for offer in event["offers"].get("offers", []):
                self.offers[offer["id"]["value"]] = offer
        elif kind == "RESCIND":
            self.offers.pop(event["rescind"]["offer_id"]["value"], None)
        elif kind == "UPDATE":
            status = event["update"]["status"]
            self.updates.append(status)
            self._acknowledge(status)
        elif kind == "ERROR":
            self.errors.append(event["error"]["message"])

    def _acknowledge(self, status):
        """Acknowledges a status update just received, when it carries a uuid."""
        self.stream.acknowledge(status)

    def wait(self, predicate, timeout=UPDATE_TIMEOUT, what=None):
        """Polls events until ``predicate()`` is true; returns its value."""

        def check():
            self.poll()
            return predicate()

        return wait_for(check, timeout, what=what or predicate.__name__)

    def listen(self, seconds):
        """Handles events for ``seconds``."""
        with contextlib.suppress(TimeoutError):
            self.wait(lambda: False, seconds, what="nothing")

    # Updates

    def statuses(self, task_id):
        return [s for s in self.updates if s["task_id"]["value"] == task_id]

    def states(self, task_id):
        return [s["state"] for s in self.statuses(task_id)]

    def describe(self, task_id):
        """The updates of ``task_id`` as a timeout reports them."""
        return self.states(task_id)

    def wait_state(self, task_id, state, timeout=UPDATE_TIMEOUT):
        """Waits for an update of ``task_id`` to ``state``; returns that status. Fails
        at once if the task reaches another terminal state."""

        def arrived():
            statuses = self.statuses(task_id)
            ended = [s for s in statuses if s["state"] in TERMINAL_STATES - {state}]
            assert not ended, f"{task_id} ended as {ended[0]['state']}, not {state}: {ended[0]}"
            return next((s for s in statuses if s["state"] == state), None)

        try:
            return self.wait(arrived, timeout, what=f"{task_id} to report {state}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; updates so far: {self.describe(task_id)}") from None

    # Calls

    def call(self, call_type, **fields):
        """A call on the current stream; asserts the 202 Mesos gives."""
        response = self.stream.call(call_type, **fields)
        assert response.status_code == 202, f"{call_type}: {response.status_code} {response.text}"
        return response

    def take_offer(self, offer):
        """Forgets an outstanding offer (the test uses or declines it)."""
        self.offers.pop(offer["id"]["value"], None)

    def accept(self, offer_ids, tasks, refuse_seconds=1.0):
        """ACCEPTs ``offer_ids`` (offers or ids) with one LAUNCH of ``tasks``."""
        ids = []
        for offer in offer_ids:
            if "id" in offer:
                self.take_offer(offer)
                ids.append(offer["id"])
            else:
                ids.append(offer)
        self.call(
            "ACCEPT",
            accept={
                "offer_ids": ids,
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}],
                "filters": {"refuse_seconds": refuse_seconds},
            },
        )

    def launch(self, agent_id, task_id, command, timeout=UPDATE_TIMEOUT):
        """Waits for an offer from ``agent_id`` with room for a command task and its
        executor, and launches the task (``sh -c command``) on it."""
        cpus, mem = TASK_CPUS + EXECUTOR_CPUS, TASK_MEM + EXECUTOR_MEM

        def fitting_offer():
            for offer in self.offers.values():
                if (
                    offer["agent_id"]["value"] == agent_id
                    and scalar(offer["resources"], "cpus") >= cpus - 1e-9
                    and scalar(offer["resources"], "mem") >= mem - 1e-9
                ):
                    return offer
            return None

        offer = self.wait(fitting_offer, timeout, what=f"an offer from agent {agent_id}")
        self.accept([offer], [command_task(task_id, agent_id, command)])

    def reconcile(self, task_id, agent_id):
        self.call(
            "RECONCILE",
            reconcile={"tasks": [{"task_id": {"value": task_id}, "agent_id": {"value": agent_id}}]},
        )

    # The stream

    def disconnect(self):
        """Closes the stream (as a scheduler that died would); what was not read yet
        is dropped."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self.offers.clear()

    def resubscribe(self, endpoint=None):
        """SUBSCRIBEs again, to ``endpoint`` (by default the first one), with
        ``framework_info.id`` set; returns the framework id that SUBSCRIBED carries."""
        self.disconnect()
        info = dict(self.info, id={"value": self.id})
        self.stream = SchedulerStream(endpoint or self.endpoint, info)
        return self.stream.framework_id
