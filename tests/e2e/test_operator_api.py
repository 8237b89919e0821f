"""The operator side of Meseta, held to what Mesos 1.11 answers.

* The master's operator API (``POST /api/v1`` and ``/api/v1/operator``): the GET_*
  calls, gzip, errors, TEARDOWN and MARK_AGENT_GONE.
* The master's operator SUBSCRIBE stream (RecordIO): SUBSCRIBED, HEARTBEAT,
  FRAMEWORK_ADDED, TASK_ADDED, TASK_UPDATED, AGENT_ADDED, FRAMEWORK_REMOVED; no event
  outside Mesos's Event.Type while an agent is deactivated, reactivated and drained.
* The master's v0 endpoints (``/master/state`` and friends, ``/metrics/snapshot``,
  ``/version``, ``/redirect``, ``/master/teardown``).
* The agent's operator API and v0 endpoints, and its ``/files`` (including what it
  must refuse: paths outside any sandbox, ``..`` escapes and symlinks out of one).
* ``meseta local`` running as an unprivileged user (``nobody``), when the tests run
  as root.

Field names are Mesos' (``mesos/v1/master/master.proto``, ``agent/agent.proto`` and
the v0 JSON model). Most read-only checks share one ``meseta local`` (the
``module_cluster`` fixture) that runs one long-lived task (``sleeper``); tests that
change the cluster (teardown, agents) get their own.
"""

import base64
import contextlib
import getpass
import json
import os
import pwd
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from conftest import (
    DEFAULT_TIMEOUT,
    HTTP_TIMEOUT,
    REPO_ROOT,
    ApiError,
    Endpoint,
    Launcher,
    free_port,
    registered_agent,
    sandbox_directory,
    wait_for,
)
from helpers import (
    TASK_CPUS,
    TASK_MEM,
    UPDATE_TIMEOUT,
    RawFramework,
    processes_with,
    scalar,
    wait_sandbox,
)

OPERATOR_PATHS = ("/api/v1", "/api/v1/operator")
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
DIGITS = "0123456789"
# The task states /master/state-summary counts per agent and per framework.
SUMMARY_STATES = (
    "TASK_STAGING",
    "TASK_STARTING",
    "TASK_RUNNING",
    "TASK_KILLING",
    "TASK_FINISHED",
    "TASK_KILLED",
    "TASK_FAILED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_UNREACHABLE",
)


# --------------------------------------------------------------------------- helpers


def operator_post(endpoint, body, path="/api/v1", headers=None, **kwargs):
    """POSTs an operator call (a dict, or a raw string) and returns the response."""
    request_headers = dict(JSON_HEADERS)
    request_headers.update(headers or {})
    data = body if isinstance(body, str) else json.dumps(body)
    return endpoint.post(path, data=data, headers=request_headers, **kwargs)


def operator_call(endpoint, call_type, path="/api/v1", **fields):
    """An operator call that must answer 200 with a JSON body of the same type."""
    response = operator_post(endpoint, {"type": call_type, **fields}, path)
    assert response.status_code == 200, (
        f"{call_type} on {endpoint.address}{path}: {response.status_code} {response.text}"
    )
    body = response.json()
    assert body.get("type") == call_type, body
    return body


def get_json(endpoint, path, **kwargs):
    response = endpoint.get(path, **kwargs)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return response.json()


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def find_task(tasks, task_id):
    return next((t for t in tasks if t.get("task_id", {}).get("value") == task_id), None)


def recordio_records(chunks):
    """Splits RecordIO (``<length>\\n<payload>`` repeated) from an iterable of byte
    chunks into decoded JSON records."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while (newline := buffer.find(b"\n")) >= 0:
            length = int(buffer[:newline])
            end = newline + 1 + length
            if len(buffer) < end:
                break
            yield json.loads(buffer[newline + 1 : end])
            buffer = buffer[end:]


class OperatorStream:
    """The master's operator SUBSCRIBE stream, read by a thread with ``requests``
    (``stream=True``) into a queue of events."""

    def __init__(self, endpoint, path="/api/v1"):
        self.events = queue.Queue()
        self.seen = []
        self.error = None
        # identity: a stream is not to be buffered by a compressor.
        self.response = requests.post(
            endpoint.url + path,
            data=json.dumps({"type": "SUBSCRIBE"}),
            headers={**JSON_HEADERS, "Accept-Encoding": "identity"},
            stream=True,
            timeout=(HTTP_TIMEOUT, 120),
        )
        if self.response.status_code != 200:
            text = self.response.text
            self.response.close()
            raise AssertionError(f"operator SUBSCRIBE answered {self.response.status_code}: {text}")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        try:
            for record in recordio_records(self.response.iter_content(chunk_size=None)):
                self.events.put(record)
        except Exception as exc:  # noqa: BLE001 - reported by next_event
            self.error = exc
        finally:
            self.events.put(None)

    def next_event(self, event_type, timeout=DEFAULT_TIMEOUT, predicate=lambda event: True):
        """The next event of ``event_type`` satisfying ``predicate``; others go to
        ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                same = [e for e in self.seen if e.get("type") == event_type]
                raise TimeoutError(
                    f"no matching {event_type} event within {timeout:g}s; seen: "
                    f"{[e.get('type') for e in self.seen]}; {event_type} events seen: {same}"
                ) from None
            if event is None:
                self.events.put(None)
                raise AssertionError(
                    f"the operator stream ended while waiting for {event_type} "
                    f"(reader: {self.error!r})"
                )
            if event.get("type") == event_type and predicate(event):
                return event
            self.seen.append(event)

    def close(self):
        self.response.close()


def next_operator_event(stream, framework, event_type, timeout=DEFAULT_TIMEOUT, predicate=None):
    """:meth:`OperatorStream.next_event`, while ``framework`` keeps handling its own
    events (acknowledging status updates as a scheduler does)."""
    deadline = time.monotonic() + timeout
    while True:
        framework.poll()
        remaining = deadline - time.monotonic()
        try:
            return stream.next_event(
                event_type, min(0.2, max(remaining, 0)), predicate or (lambda event: True)
            )
        except TimeoutError as exc:
            if remaining <= 0:
                raise TimeoutError(f"(waited {timeout:g}s) {exc}") from None


class Framework(RawFramework):
    """A raw v1 framework (:class:`RawFramework`): status updates recorded and
    acknowledged (when they carry a uuid). After :meth:`launch` it SUPPRESSes offers and
    declines those it holds or still gets, so that the other frameworks on a shared
    cluster get offers even when this one's events are not read; :meth:`launch` REVIVEs.
    Its stream may end (a torn-down framework's does)."""

    def __init__(self, endpoint, name, *, user=None, capabilities=(), failover_timeout=0.0):
        info = {
            "user": user or getpass.getuser(),
            "name": name,
            "failover_timeout": failover_timeout,
        }
        if capabilities:
            info["capabilities"] = [{"type": c} for c in capabilities]
        self.suppressed = False
        super().__init__(endpoint, info)

    def _stream_ended(self):
        """Nothing more to handle."""

    def _handle(self, event):
        super()._handle(event)
        if event.get("type") == "OFFERS" and self.suppressed:
            self.decline_offers()

    def _acknowledge(self, status):
        if "uuid" in status:
            # Torn down or gone: nothing to acknowledge to.
            with contextlib.suppress(requests.RequestException, AssertionError):
                self.stream.acknowledge(status)

    def decline_offers(self):
        """Declines the offers held, for an hour."""
        if self.offers:
            self.call(
                "DECLINE",
                decline={
                    "offer_ids": [o["id"] for o in self.offers.values()],
                    "filters": {"refuse_seconds": 3600.0},
                },
            )
            self.offers.clear()

    def launch(self, agent_id, task_id, command, timeout=UPDATE_TIMEOUT):
        """Launches a command task (``sh -c command``) on an offer from ``agent_id``
        (:meth:`RawFramework.launch`), with offers revived for it and suppressed after."""
        if self.suppressed:
            self.call("REVIVE")
            self.suppressed = False
        super().launch(agent_id, task_id, command, timeout)
        self.call("SUPPRESS")
        self.suppressed = True
        self.decline_offers()

    def close(self):
        self.stream.close()


@dataclass
class RunningTask:
    framework: Framework
    task_id: str
    agent_id: str
    sandbox: str
    marker: str


def start_sleeper(master, agent, agent_id, name, task_id, extra=""):
    """A framework with one long-running task whose shell's command line carries a
    unique marker; waits until it runs and its sandbox is known."""
    marker = f"e2e-op-{uuid.uuid4().hex}"
    framework = Framework(master, name)
    command = f": {marker}; {extra} sleep 600"
    framework.launch(agent_id, task_id, command)
    framework.wait_state(task_id, "TASK_RUNNING")
    sandbox = wait_sandbox(agent, framework.id, task_id)
    return RunningTask(framework, task_id, agent_id, sandbox, marker)


@pytest.fixture(scope="module")
def sleeper(module_cluster):
    """A running task on the shared cluster that wrote stdout, stderr, a file of
    digits and a symlink ``leak`` to /etc/passwd in its sandbox."""
    extra = (
        f"echo hello-stdout; echo hello-stderr >&2; printf {DIGITS} > digits; "
        "ln -s /etc/passwd leak; mkdir subdir;"
    )
    running = start_sleeper(
        module_cluster.master,
        module_cluster.agent,
        module_cluster.agent_id,
        "e2e-operator-sleeper",
        "sleeper",
        extra,
    )
    wait_for(
        lambda: os.path.islink(os.path.join(running.sandbox, "leak")),
        DEFAULT_TIMEOUT,
        what="the task to create its files",
    )
    yield running
    running.framework.close()


# ------------------------------------------------------- 1. master operator API


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_master_get_health(module_cluster, path):
    body = operator_call(module_cluster.master, "GET_HEALTH", path)
    assert body["get_health"]["healthy"] is True


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_master_get_flags_has_work_dir(module_cluster, path):
    flags = operator_call(module_cluster.master, "GET_FLAGS", path)["get_flags"]["flags"]
    assert all(set(flag) >= {"name"} for flag in flags), flags
    names = {flag["name"]: flag.get("value") for flag in flags}
    assert "work_dir" in names, names
    assert names["work_dir"], names


def git(*args):
    """The output of ``git args`` in the repository, or None where git cannot tell."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def assert_build_fields(version):
    """Mesos's VersionInfo build fields: the date (UTC) of ``build_time``, the user, and
    the git commit and branch of this checkout when it is one (the binary is built
    from HEAD), else no git fields."""
    assert version["version"] == "1.11.0", version
    assert isinstance(version["build_time"], float) and version["build_time"] > 0, version
    assert version["build_date"] == time.strftime(
        "%Y-%m-%d %H:%M:%S", time.gmtime(version["build_time"])
    ), version
    assert isinstance(version["build_user"], str) and version["build_user"], version
    head = git("rev-parse", "--verify", "HEAD")
    if head is None:
        assert "git_sha" not in version and "git_branch" not in version, version
        return
    assert version.get("git_sha") == head, f"the binary is not built from HEAD {head}: {version}"
    assert version.get("git_branch") == git("symbolic-ref", "-q", "HEAD"), version
    assert version.get("git_tag") == git("describe", "--exact-match", "--tags", "HEAD"), version


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_master_get_version(module_cluster, path):
    info = operator_call(module_cluster.master, "GET_VERSION", path)["get_version"]
    assert_build_fields(info["version_info"])


def test_master_get_state_has_the_four_parts(module_cluster, sleeper):
    state = operator_call(module_cluster.master, "GET_STATE")["get_state"]
    for part in ("get_tasks", "get_executors", "get_frameworks", "get_agents"):
        assert part in state, f"GET_STATE lacks {part}: {sorted(state)}"
    assert find_task(state["get_tasks"].get("tasks", []), sleeper.task_id), state["get_tasks"]
    agent_ids = [a["agent_info"]["id"]["value"] for a in state["get_agents"]["agents"]]
    assert module_cluster.agent_id in agent_ids
    framework_ids = [
        f["framework_info"]["id"]["value"] for f in state["get_frameworks"]["frameworks"]
    ]
    assert sleeper.framework.id in framework_ids


def test_master_get_agents(module_cluster):
    agents = operator_call(module_cluster.master, "GET_AGENTS")["get_agents"]["agents"]
    assert len(agents) == 1, agents
    agent = agents[0]
    info = agent["agent_info"]
    assert info["id"]["value"] == module_cluster.agent_id
    assert info["hostname"]
    assert info["port"] == module_cluster.agent.port
    names = {r["name"] for r in info["resources"]}
    assert {"cpus", "mem", "ports"} <= names, info["resources"]
    assert agent["active"] is True
    assert agent["pid"].endswith(f"@127.0.0.1:{module_cluster.agent.port}"), agent["pid"]


def test_master_get_frameworks(module_cluster, sleeper):
    answer = operator_call(module_cluster.master, "GET_FRAMEWORKS")["get_frameworks"]
    entry = next(
        (
            f
            for f in answer["frameworks"]
            if f["framework_info"]["id"]["value"] == sleeper.framework.id
        ),
        None,
    )
    assert entry is not None, answer
    assert entry["framework_info"]["name"] == "e2e-operator-sleeper"
    assert entry["framework_info"]["user"] == getpass.getuser()
    assert entry["active"] is True
    assert entry["connected"] is True
    assert scalar(entry.get("allocated_resources", []), "cpus") >= TASK_CPUS - 1e-9, entry


def test_master_get_executors(module_cluster, sleeper):
    """Mesos' master knows only executors given in TaskInfo.executor, not the command
    executor of a command task: only the shape is checked."""
    answer = operator_call(module_cluster.master, "GET_EXECUTORS")["get_executors"]
    assert isinstance(answer.get("executors", []), list), answer
    for executor in answer.get("executors", []):
        assert "executor_info" in executor and "agent_id" in executor, executor


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_master_get_tasks_lists_the_running_task(module_cluster, sleeper, path):
    answer = operator_call(module_cluster.master, "GET_TASKS", path)["get_tasks"]
    task = find_task(answer.get("tasks", []), sleeper.task_id)
    assert task is not None, answer
    assert task["state"] == "TASK_RUNNING", task
    assert task["framework_id"]["value"] == sleeper.framework.id
    assert task["agent_id"]["value"] == module_cluster.agent_id
    assert task["name"] == sleeper.task_id
    assert scalar(task["resources"], "cpus") == pytest.approx(TASK_CPUS), task["resources"]
    states = [s["state"] for s in task["statuses"]]
    assert "TASK_RUNNING" in states, task["statuses"]
    assert task["statuses"][-1]["state"] == "TASK_RUNNING", task["statuses"]


def test_master_get_roles(module_cluster, sleeper):
    roles = operator_call(module_cluster.master, "GET_ROLES")["get_roles"]["roles"]
    star = next((r for r in roles if r["name"] == "*"), None)
    assert star is not None, roles
    assert star["weight"] == pytest.approx(1.0)
    assert {"value": sleeper.framework.id} in star.get("frameworks", []), star


def test_master_get_master(module_cluster):
    info = operator_call(module_cluster.master, "GET_MASTER")["get_master"]["master_info"]
    assert info["id"]
    assert info["port"] == module_cluster.master.port
    assert info["address"]["port"] == module_cluster.master.port
    assert info["address"]["ip"] == "127.0.0.1"
    assert info["pid"] == f"master@127.0.0.1:{module_cluster.master.port}"


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_master_response_is_gzipped_on_request(module_cluster, path):
    response = operator_post(
        module_cluster.master, {"type": "GET_STATE"}, path, headers={"Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.headers.get("Content-Encoding") == "gzip", dict(response.headers)
    assert "get_state" in response.json()  # requests inflated it


def test_master_response_is_plain_without_gzip(module_cluster):
    response = operator_post(
        module_cluster.master, {"type": "GET_STATE"}, headers={"Accept-Encoding": "identity"}
    )
    assert response.status_code == 200, response.text
    assert "gzip" not in response.headers.get("Content-Encoding", ""), dict(response.headers)
    assert "get_state" in json.loads(response.content)


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_master_unknown_call_type_is_400_with_a_message(module_cluster, path):
    response = operator_post(module_cluster.master, {"type": "GET_NONSENSE"}, path)
    assert response.status_code == 400, f"{response.status_code} {response.text}"
    assert response.text.strip(), "400 without a message"


def test_master_agent_only_call_is_refused_with_a_message(module_cluster):
    response = operator_post(module_cluster.master, {"type": "GET_CONTAINERS"})
    assert response.status_code in (400, 501), f"{response.status_code} {response.text}"
    assert "GET_CONTAINERS" in response.text or "agent" in response.text.lower(), response.text


def test_operator_teardown_kills_the_frameworks_tasks(module_cluster):
    master = module_cluster.master
    running = start_sleeper(
        master, module_cluster.agent, module_cluster.agent_id, "e2e-op-teardown", "doomed"
    )
    try:
        assert processes_with(running.marker), "the task's process was not found"
        teardown = {"framework_id": {"value": running.framework.id}}
        response = operator_post(master, {"type": "TEARDOWN", "teardown": teardown})
        assert response.status_code == 200, f"{response.status_code} {response.text}"

        def framework_gone():
            answer = master.frameworks()
            live = [f["framework_info"]["id"]["value"] for f in answer.get("frameworks", [])]
            done = [
                f["framework_info"]["id"]["value"] for f in answer.get("completed_frameworks", [])
            ]
            return running.framework.id not in live and running.framework.id in done

        wait_for(framework_gone, DEFAULT_TIMEOUT, what="the framework to be completed")
        wait_for(
            lambda: not processes_with(running.marker),
            DEFAULT_TIMEOUT,
            what="the torn-down framework's task process to exit",
        )
        tasks = master.tasks()
        assert find_task(tasks.get("tasks", []), "doomed") is None, tasks
        done = find_task(tasks.get("completed_tasks", []), "doomed")
        assert done is not None, tasks
        assert done["state"] == "TASK_KILLED", done
    finally:
        running.framework.close()


def test_operator_teardown_of_unknown_framework_is_400(module_cluster):
    response = operator_post(
        module_cluster.master,
        {"type": "TEARDOWN", "teardown": {"framework_id": {"value": "no-such-framework-0000"}}},
    )
    assert response.status_code == 400, f"{response.status_code} {response.text}"
    assert response.text.strip()


def test_mark_agent_gone(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=("--resources", "cpus:2;mem:1024;ports:[31000-32000]"))
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    framework = Framework(master.api, "e2e-op-gone", capabilities=["PARTITION_AWARE"])
    try:
        marker = f"e2e-op-gone-{uuid.uuid4().hex}"
        framework.launch(agent_id, "on-gone-agent", f": {marker}; sleep 600")
        framework.wait_state("on-gone-agent", "TASK_RUNNING")

        response = operator_post(
            master.api,
            {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}},
        )
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        agent.expect_exit()

        gone = framework.wait_state("on-gone-agent", "TASK_GONE_BY_OPERATOR")
        assert gone.get("agent_id", {}).get("value") == agent_id, gone

        def unlisted():
            ids = [a["agent_info"]["id"]["value"] for a in master.api.agents()]
            return agent_id not in ids

        wait_for(unlisted, DEFAULT_TIMEOUT, what="GET_AGENTS to drop the gone agent")

        done = find_task(master.api.tasks().get("completed_tasks", []), "on-gone-agent")
        assert done is not None and done["state"] == "TASK_GONE_BY_OPERATOR", master.api.tasks()

        # The agent shuts down (and kills its tasks); if it stays up, it must not
        # get back in.
        try:
            wait_for(lambda: not agent.running, 30, what="the gone agent to shut down")
            exited = True
        except TimeoutError:
            exited = False
        if exited:
            wait_for(
                lambda: not processes_with(marker),
                DEFAULT_TIMEOUT,
                what="the gone agent's task to be killed",
            )
        # Restarted with the same work dir, the agent must not bring the gone id back:
        # Mesos' agent forgets its id when the master shuts it down and registers as a
        # new agent; one that recovered the id would be refused.
        agent.kill()
        agent.start(wait=False)
        agent.expect_exit()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ids = [a["agent_info"]["id"]["value"] for a in master.api.agents()]
            assert agent_id not in ids, f"the gone agent {agent_id} is listed again: {ids}"
            time.sleep(0.5)
        listed = registered_agent(master.api, agent.port)
        assert listed is None or exited, (
            f"the gone agent neither shut down nor was refused: listed again as {listed}"
        )
    finally:
        framework.close()


# ---------------------------------------------- 2. master operator SUBSCRIBE stream


def test_operator_subscribe_stream(meseta, cluster):
    master = cluster.master
    stream = OperatorStream(master)
    try:
        content_type = stream.response.headers.get("Content-Type", "")
        assert content_type.startswith("application/json"), dict(stream.response.headers)
        subscribed = stream.next_event("SUBSCRIBED", DEFAULT_TIMEOUT)
        assert stream.seen == [], f"events before SUBSCRIBED: {stream.seen}"
        body = subscribed["subscribed"]
        assert body["heartbeat_interval_seconds"] > 0, body
        state = body["get_state"]
        for part in ("get_tasks", "get_executors", "get_frameworks", "get_agents"):
            assert part in state, f"SUBSCRIBED.get_state lacks {part}: {sorted(state)}"
        agent_ids = [a["agent_info"]["id"]["value"] for a in state["get_agents"]["agents"]]
        assert cluster.agent_id in agent_ids, state["get_agents"]
        stream.next_event("HEARTBEAT", body["heartbeat_interval_seconds"] + 10)

        framework = Framework(master, "e2e-op-subscribe")
        try:
            added = next_operator_event(
                stream,
                framework,
                "FRAMEWORK_ADDED",
                predicate=lambda e: e["framework_added"]["framework"]["framework_info"]["id"][
                    "value"
                ]
                == framework.id,
            )
            assert added["framework_added"]["framework"]["framework_info"]["name"] == (
                "e2e-op-subscribe"
            )

            framework.launch(cluster.agent_id, "streamed", "sleep 3; echo streamed-done")
            task_added = next_operator_event(
                stream,
                framework,
                "TASK_ADDED",
                UPDATE_TIMEOUT,
                lambda e: e["task_added"]["task"]["task_id"]["value"] == "streamed",
            )
            task = task_added["task_added"]["task"]
            assert task["framework_id"]["value"] == framework.id
            assert task["agent_id"]["value"] == cluster.agent_id
            assert task["state"] == "TASK_STAGING", task

            def task_update(state):
                return lambda e: (
                    e["task_updated"]["status"]["task_id"]["value"] == "streamed"
                    and e["task_updated"]["state"] == state
                )

            running = next_operator_event(
                stream, framework, "TASK_UPDATED", UPDATE_TIMEOUT, task_update("TASK_RUNNING")
            )
            assert running["task_updated"]["framework_id"]["value"] == framework.id
            assert running["task_updated"]["status"]["state"] == "TASK_RUNNING"
            finished = next_operator_event(
                stream, framework, "TASK_UPDATED", UPDATE_TIMEOUT, task_update("TASK_FINISHED")
            )
            assert finished["task_updated"]["status"]["state"] == "TASK_FINISHED"
            framework.wait_state("streamed", "TASK_FINISHED")

            second = meseta.agent(
                master, extra_args=("--resources", "cpus:1;mem:512;ports:[32001-32100]")
            )
            agent_added = next_operator_event(
                stream,
                framework,
                "AGENT_ADDED",
                DEFAULT_TIMEOUT,
                lambda e: e["agent_added"]["agent"]["agent_info"].get("port") == second.port,
            )
            new_agent = agent_added["agent_added"]["agent"]
            assert new_agent["agent_info"]["id"]["value"]
            assert new_agent["agent_info"]["hostname"]

            response = operator_post(
                master, {"type": "TEARDOWN", "teardown": {"framework_id": {"value": framework.id}}}
            )
            assert response.status_code == 200, f"{response.status_code} {response.text}"
            removed = next_operator_event(
                stream,
                framework,
                "FRAMEWORK_REMOVED",
                DEFAULT_TIMEOUT,
                lambda e: e["framework_removed"]["framework_info"]["id"]["value"] == framework.id,
            )
            assert removed["framework_removed"]["framework_info"]["name"] == "e2e-op-subscribe"

            # Mesos sends TASK_UPDATED only when the task's state changes.
            updates = [
                e["task_updated"]
                for e in [*stream.seen, running, finished]
                if e.get("type") == "TASK_UPDATED"
                and e["task_updated"]["status"]["task_id"]["value"] == "streamed"
            ]
            states = [u["state"] for u in updates]
            assert len(states) == len(set(states)), f"TASK_UPDATED repeated a state: {updates}"
        finally:
            framework.close()
    finally:
        stream.close()


# mesos.proto (v1/master) `Event.Type`: there is no AGENT_UPDATED.
MESOS_OPERATOR_EVENTS = {
    "SUBSCRIBED",
    "TASK_ADDED",
    "TASK_UPDATED",
    "AGENT_ADDED",
    "AGENT_REMOVED",
    "FRAMEWORK_ADDED",
    "FRAMEWORK_UPDATED",
    "FRAMEWORK_REMOVED",
    "HEARTBEAT",
}


def subscribed_agent(master, agent_id):
    """The agent as a new operator subscriber's SUBSCRIBED.get_state shows it (the first
    record read here, so that the stream closes at once)."""
    with requests.post(
        master.url + "/api/v1",
        data=json.dumps({"type": "SUBSCRIBE"}),
        headers={**JSON_HEADERS, "Accept-Encoding": "identity"},
        stream=True,
        timeout=HTTP_TIMEOUT,
    ) as response:
        assert response.status_code == 200, response.text
        first = next(recordio_records(response.iter_content(chunk_size=None)))
    assert first["type"] == "SUBSCRIBED", first
    agents = first["subscribed"]["get_state"]["get_agents"].get("agents", [])
    return next(a for a in agents if a["agent_info"]["id"]["value"] == agent_id)


def test_operator_stream_through_deactivation_and_drain(meseta):
    """As in Mesos, whose master ``Event.Type`` has no AGENT_UPDATED: DEACTIVATE_AGENT,
    REACTIVATE_AGENT and DRAIN_AGENT send operator subscribers no event about the agent
    (the drain's kills come as TASK_UPDATED); its ``deactivated`` and ``drain_info``
    (DRAINING until the kill is acknowledged, then DRAINED) show in a new subscriber's
    SUBSCRIBED (``get_state.get_agents``, GET_AGENTS's agents)."""
    process = meseta.master()
    master = process.api
    agent = meseta.agent(process)
    agent_id = registered_agent(master, agent.port)["agent_info"]["id"]["value"]

    def call(kind, **fields):
        master.call(kind, **{kind.lower(): {"agent_id": {"value": agent_id}, **fields}})

    stream = OperatorStream(master)
    framework = Framework(master, "e2e-op-drain")
    try:
        stream.next_event("SUBSCRIBED")
        framework.launch(agent_id, "drained", "sleep 600")
        framework.wait_state("drained", "TASK_RUNNING")

        call("DEACTIVATE_AGENT")
        entry = subscribed_agent(master, agent_id)
        assert entry["deactivated"] is True and entry["active"] is False, entry
        call("REACTIVATE_AGENT")
        entry = subscribed_agent(master, agent_id)
        assert entry["deactivated"] is False and entry["active"] is True, entry
        assert "drain_info" not in entry, entry

        # The framework reads nothing until it is asked to: the kill is not acknowledged.
        call("DRAIN_AGENT", max_grace_period={"nanoseconds": 10**9})
        entry = subscribed_agent(master, agent_id)
        assert entry["deactivated"] is True, entry
        assert entry["drain_info"]["state"] == "DRAINING", entry
        assert entry["drain_info"]["config"]["max_grace_period"] == {"nanoseconds": 10**9}
        framework.wait_state("drained", "TASK_KILLED")

        def drained():
            entry = subscribed_agent(master, agent_id)
            return entry if entry["drain_info"]["state"] == "DRAINED" else None

        entry = wait_for(drained, what="the agent to be drained")
        assert entry["deactivated"] is True, entry
        call("REACTIVATE_AGENT")
        assert "drain_info" not in subscribed_agent(master, agent_id)

        # A second agent's AGENT_ADDED: everything the first one's changes sent is read.
        second = meseta.agent(process)
        stream.next_event(
            "AGENT_ADDED",
            predicate=lambda e: e["agent_added"]["agent"]["agent_info"].get("port") == second.port,
        )
        types = {e.get("type") for e in stream.seen}
        assert types <= MESOS_OPERATOR_EVENTS, types - MESOS_OPERATOR_EVENTS
        about_agent = [
            e
            for e in stream.seen
            if e.get("type") in ("AGENT_ADDED", "AGENT_REMOVED")
            and agent_id in json.dumps(e)
        ]
        assert about_agent == [], about_agent
        killed = [
            e["task_updated"]
            for e in stream.seen
            if e.get("type") == "TASK_UPDATED" and e["task_updated"]["state"] == "TASK_KILLED"
        ]
        assert [k["status"]["task_id"]["value"] for k in killed] == ["drained"], killed
        assert killed[0]["status"]["reason"] == "REASON_AGENT_DRAINING", killed
    finally:
        framework.close()
        stream.close()


# ---------------------------------------------------------- 3. master v0 endpoints


def _v0_task(state_document, framework_id, task_id):
    for framework in state_document.get("frameworks", []):
        if framework.get("id") == framework_id:
            return next((t for t in framework.get("tasks", []) if t.get("id") == task_id), None)
    return None


@pytest.mark.parametrize("path", ["/master/state", "/state", "/master/state/"])
def test_master_v0_state(module_cluster, sleeper, path):
    state = get_json(module_cluster.master, path)
    slave = next((s for s in state["slaves"] if s["id"] == module_cluster.agent_id), None)
    assert slave is not None, state["slaves"]
    assert slave["pid"] == f"slave(1)@127.0.0.1:{module_cluster.agent.port}", slave["pid"]
    assert slave["hostname"]
    resources = slave["resources"]
    assert isinstance(resources["cpus"], (int, float)) and resources["cpus"] > 0, resources
    assert isinstance(resources["mem"], (int, float)) and resources["mem"] > 0, resources
    assert re.fullmatch(r"\[\d+-\d+(, \d+-\d+)*\]", resources["ports"]), resources

    task = _v0_task(state, sleeper.framework.id, sleeper.task_id)
    assert task is not None, state["frameworks"]
    assert task["slave_id"] == module_cluster.agent_id
    assert task["state"] == "TASK_RUNNING"
    assert task["framework_id"] == sleeper.framework.id
    assert task["resources"]["cpus"] == pytest.approx(TASK_CPUS), task["resources"]
    assert task["resources"]["mem"] == pytest.approx(TASK_MEM), task["resources"]
    assert_build_fields(state)


def test_master_v0_state_summary(module_cluster, sleeper):
    """Mesos summarizes each agent and framework with a count per task state
    (``TASK_STAGING`` .. ``TASK_LOST``) and the ids of the other side
    (``framework_ids`` on an agent, ``slave_ids`` on a framework)."""
    summary = get_json(module_cluster.master, "/master/state-summary")
    assert "hostname" in summary and "cluster" in summary, sorted(summary)
    slave = next((s for s in summary["slaves"] if s["id"] == module_cluster.agent_id), None)
    assert slave is not None, summary["slaves"]
    framework = next((f for f in summary["frameworks"] if f["id"] == sleeper.framework.id), None)
    assert framework is not None, summary["frameworks"]
    assert framework["name"] == "e2e-operator-sleeper"
    problems = []
    for what, entry in (("slave", slave), ("framework", framework)):
        for state in SUMMARY_STATES:
            if not isinstance(entry.get(state), int):
                problems.append(f"{what} entry has no count {state}")
        if entry.get("TASK_RUNNING", 0) < 1:
            problems.append(f"{what} entry counts {entry.get('TASK_RUNNING')} running tasks")
    if sleeper.framework.id not in slave.get("framework_ids", []):
        problems.append(f"slave framework_ids is {slave.get('framework_ids')}")
    if module_cluster.agent_id not in framework.get("slave_ids", []):
        problems.append(f"framework slave_ids is {framework.get('slave_ids')}")
    assert not problems, (
        f"{problems}; slave keys {sorted(slave)}; framework keys {sorted(framework)}"
    )


def test_master_v0_frameworks(module_cluster, sleeper):
    document = get_json(module_cluster.master, "/master/frameworks")
    framework = next((f for f in document["frameworks"] if f["id"] == sleeper.framework.id), None)
    assert framework is not None, document
    assert framework["active"] is True
    assert any(t["id"] == sleeper.task_id for t in framework["tasks"]), framework["tasks"]
    assert "completed_frameworks" in document


def test_master_v0_slaves(module_cluster):
    document = get_json(module_cluster.master, "/master/slaves")
    slave = next((s for s in document["slaves"] if s["id"] == module_cluster.agent_id), None)
    assert slave is not None, document
    assert slave["active"] is True
    assert slave["port"] == module_cluster.agent.port
    assert "ports" in slave["resources"]


def test_master_v0_tasks(module_cluster, sleeper):
    document = get_json(module_cluster.master, "/master/tasks")
    task = next((t for t in document["tasks"] if t["id"] == sleeper.task_id), None)
    assert task is not None, document
    assert task["framework_id"] == sleeper.framework.id
    assert task["slave_id"] == module_cluster.agent_id
    assert task["state"] == "TASK_RUNNING"


def test_master_v0_roles(module_cluster, sleeper):
    roles = get_json(module_cluster.master, "/master/roles")["roles"]
    star = next((r for r in roles if r["name"] == "*"), None)
    assert star is not None, roles
    assert star["weight"] == pytest.approx(1.0)
    assert sleeper.framework.id in star["frameworks"], star
    assert star["resources"]["cpus"] >= TASK_CPUS - 1e-9, star


def test_master_v0_flags(module_cluster):
    flags = get_json(module_cluster.master, "/master/flags")["flags"]
    assert flags["work_dir"], flags
    assert flags["port"] == str(module_cluster.master.port), flags


def flat_metrics(endpoint):
    """``GET /metrics/snapshot``, which must be a flat map of numbers."""
    metrics = get_json(endpoint, "/metrics/snapshot")
    bad = {k: v for k, v in metrics.items() if not is_number(v)}
    assert not bad, f"not flat numbers: {bad}"
    return metrics


def test_master_metrics_snapshot(module_cluster, sleeper):
    metrics = flat_metrics(module_cluster.master)
    assert metrics["master/slaves_active"] == 1, metrics
    assert metrics["master/tasks_running"] >= 1, metrics
    assert metrics["master/frameworks_active"] >= 1, metrics
    assert metrics["master/elected"] == 1, metrics


def test_master_version(module_cluster):
    version = get_json(module_cluster.master, "/version")
    assert re.fullmatch(r"\d+(\.\d+)+", version["version"]), version
    assert_build_fields(version)


@pytest.mark.parametrize("path", ["/master/redirect", "/redirect"])
def test_master_redirect(module_cluster, path):
    response = module_cluster.master.get(path, allow_redirects=False)
    assert response.status_code == 307, f"{response.status_code} {response.text}"
    assert response.headers["Location"] == f"//127.0.0.1:{module_cluster.master.port}"


def test_master_v0_teardown(module_cluster):
    master = module_cluster.master
    running = start_sleeper(
        master, module_cluster.agent, module_cluster.agent_id, "e2e-op-v0-teardown", "v0-doomed"
    )
    try:
        response = master.post("/master/teardown", data={"frameworkId": running.framework.id})
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        document = get_json(master, "/master/frameworks")
        assert running.framework.id not in [f["id"] for f in document["frameworks"]], document
        assert running.framework.id in [f["id"] for f in document["completed_frameworks"]]
        wait_for(
            lambda: not processes_with(running.marker),
            DEFAULT_TIMEOUT,
            what="the torn-down framework's task process to exit",
        )
    finally:
        running.framework.close()


def test_master_v0_teardown_of_unknown_framework_is_400(module_cluster):
    response = module_cluster.master.post("/master/teardown", data={"frameworkId": "nope-0000"})
    assert response.status_code == 400, f"{response.status_code} {response.text}"


# -------------------------------------------------------- 4. agent operator API, v0


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_agent_get_health(module_cluster, path):
    assert operator_call(module_cluster.agent, "GET_HEALTH", path)["get_health"]["healthy"] is True


def test_agent_get_flags(module_cluster):
    flags = operator_call(module_cluster.agent, "GET_FLAGS")["get_flags"]["flags"]
    names = {flag["name"]: flag.get("value") for flag in flags}
    assert names.get("work_dir"), names
    assert names.get("port") == str(module_cluster.agent.port), names


def test_agent_get_version(module_cluster):
    info = operator_call(module_cluster.agent, "GET_VERSION")["get_version"]["version_info"]
    assert_build_fields(info)


def test_agent_get_state(module_cluster, sleeper):
    state = operator_call(module_cluster.agent, "GET_STATE")["get_state"]
    for part in ("get_tasks", "get_executors", "get_frameworks"):
        assert part in state, f"agent GET_STATE lacks {part}: {sorted(state)}"
    assert find_task(state["get_tasks"].get("launched_tasks", []), sleeper.task_id), state


def test_agent_get_containers(module_cluster, sleeper):
    def ours():
        answer = operator_call(module_cluster.agent, "GET_CONTAINERS")["get_containers"]
        return next(
            (
                c
                for c in answer.get("containers", [])
                if c.get("framework_id", {}).get("value") == sleeper.framework.id
            ),
            None,
        )

    container = wait_for(ours, DEFAULT_TIMEOUT, what="the sleeper's container")
    assert container["executor_id"]["value"], container
    assert container["container_id"]["value"], container
    if "resource_statistics" in container:
        assert "timestamp" in container["resource_statistics"], container


def test_agent_get_frameworks(module_cluster, sleeper):
    answer = operator_call(module_cluster.agent, "GET_FRAMEWORKS")["get_frameworks"]
    ids = [f["framework_info"]["id"]["value"] for f in answer["frameworks"]]
    assert sleeper.framework.id in ids, answer
    assert "completed_frameworks" in answer


def test_agent_get_executors(module_cluster, sleeper):
    answer = operator_call(module_cluster.agent, "GET_EXECUTORS")["get_executors"]
    ours = [
        e
        for e in answer["executors"]
        if e["executor_info"].get("framework_id", {}).get("value") == sleeper.framework.id
    ]
    assert len(ours) == 1, answer
    assert ours[0]["executor_info"]["executor_id"]["value"], ours
    assert "completed_executors" in answer


def test_agent_get_tasks(module_cluster, sleeper):
    answer = operator_call(module_cluster.agent, "GET_TASKS")["get_tasks"]
    # agent.proto's Response.GetTasks.
    parts = ("pending_tasks", "queued_tasks", "launched_tasks", "terminated_tasks")
    for part in (*parts, "completed_tasks"):
        assert part in answer, f"agent GET_TASKS lacks {part}: {sorted(answer)}"
    task = find_task(answer["launched_tasks"], sleeper.task_id)
    assert task is not None, answer
    assert task["state"] == "TASK_RUNNING", task
    assert task["framework_id"]["value"] == sleeper.framework.id


def test_agent_get_agent(module_cluster):
    info = operator_call(module_cluster.agent, "GET_AGENT")["get_agent"]["agent_info"]
    assert info["id"]["value"] == module_cluster.agent_id
    assert info["port"] == module_cluster.agent.port
    assert info["hostname"]
    assert {"cpus", "mem"} <= {r["name"] for r in info["resources"]}


def test_agent_list_files(module_cluster, sleeper):
    answer = operator_call(
        module_cluster.agent, "LIST_FILES", list_files={"path": sleeper.sandbox}
    )["list_files"]
    infos = {Path(f["path"]).name: f for f in answer["file_infos"]}
    assert {"stdout", "stderr", "digits"} <= set(infos), answer
    digits = infos["digits"]
    assert digits["path"] == f"{sleeper.sandbox}/digits", digits
    assert digits["size"] == len(DIGITS), digits
    for key in ("mode", "uid", "gid", "mtime", "nlink"):
        assert key in digits, digits


def test_agent_read_file(module_cluster, sleeper):
    answer = operator_call(
        module_cluster.agent,
        "READ_FILE",
        read_file={"path": f"{sleeper.sandbox}/digits", "offset": 2, "length": 4},
    )["read_file"]
    assert answer["size"] == len(DIGITS), answer
    assert base64.b64decode(answer["data"]) == b"2345", answer


def test_agent_read_file_outside_a_sandbox_is_refused(module_cluster):
    response = operator_post(
        module_cluster.agent,
        {"type": "READ_FILE", "read_file": {"path": "/etc/passwd", "offset": 0}},
    )
    assert 400 <= response.status_code < 500, f"{response.status_code} {response.text}"
    assert "root:" not in response.text


def test_agent_v0_state(module_cluster, sleeper):
    state = get_json(module_cluster.agent, "/state")
    assert state["id"] == module_cluster.agent_id
    assert_build_fields(state)
    framework = next((f for f in state["frameworks"] if f["id"] == sleeper.framework.id), None)
    assert framework is not None, state["frameworks"]
    executors = framework["executors"]
    assert len(executors) == 1, executors
    directory = executors[0]["directory"]
    assert directory == sleeper.sandbox
    work_dir = get_json(module_cluster.agent, "/flags")["flags"]["work_dir"]
    assert directory.startswith(work_dir.rstrip("/") + "/"), (directory, work_dir)
    assert os.path.isfile(os.path.join(directory, "stdout")), directory
    task = next((t for t in executors[0]["tasks"] if t["id"] == sleeper.task_id), None)
    assert task is not None, executors[0]
    assert task["state"] == "TASK_RUNNING"
    assert task["slave_id"] == module_cluster.agent_id


def test_agent_v0_flags_health_version(module_cluster):
    flags = get_json(module_cluster.agent, "/flags")["flags"]
    assert flags["work_dir"], flags
    health = module_cluster.agent.get("/health")
    assert health.status_code == 200
    version = get_json(module_cluster.agent, "/version")
    assert_build_fields(version)


def test_agent_metrics_snapshot(module_cluster, sleeper):
    metrics = flat_metrics(module_cluster.agent)
    assert metrics["slave/registered"] == 1, metrics
    assert metrics["slave/tasks_running"] >= 1, metrics
    assert metrics["slave/executors_running"] >= 1, metrics


def wait_sleeper_entry(agent, path, sleeper, what):
    """Waits until the list that ``GET path`` answers has an entry of the sleeper's
    framework; returns that entry."""

    def ours():
        entries = get_json(agent, path)
        assert isinstance(entries, list), entries
        return next((e for e in entries if e.get("framework_id") == sleeper.framework.id), None)

    return wait_for(ours, DEFAULT_TIMEOUT, what=what)


def test_agent_monitor_statistics(module_cluster, sleeper):
    entry = wait_sleeper_entry(
        module_cluster.agent,
        "/monitor/statistics",
        sleeper,
        "the sleeper's executor in /monitor/statistics",
    )
    assert entry["executor_id"], entry
    statistics = entry["statistics"]
    assert statistics["timestamp"] > 0, statistics
    assert "cpus_limit" in statistics or "mem_rss_bytes" in statistics, statistics


def test_agent_v0_containers(module_cluster, sleeper):
    entry = wait_sleeper_entry(
        module_cluster.agent, "/containers", sleeper, "the sleeper's container in /containers"
    )
    assert entry["executor_id"], entry
    assert entry["container_id"], entry


# ------------------------------------------------------------------ 5. agent /files


def test_files_browse_lists_stdout_and_stderr(module_cluster, sleeper):
    entries = module_cluster.agent.files_browse(sleeper.sandbox)
    by_name = {Path(e["path"]).name: e for e in entries}
    assert {"stdout", "stderr"} <= set(by_name), entries
    for name in ("stdout", "stderr"):
        entry = by_name[name]
        assert entry["path"] == f"{sleeper.sandbox}/{name}", entry
        for key in ("size", "mode", "uid", "gid", "mtime", "nlink"):
            assert key in entry, f"{key} missing: {entry}"
        # The v0 model: a `ls -l` mode string, user and group names, seconds.
        assert re.fullmatch(r"-[rwxsStT-]{9}", entry["mode"]), entry
        assert isinstance(entry["uid"], str) and isinstance(entry["gid"], str), entry
        assert entry["uid"] == getpass.getuser(), entry
        assert isinstance(entry["size"], int) and entry["size"] >= 0, entry
        assert isinstance(entry["nlink"], int) and entry["nlink"] >= 1, entry
        assert abs(entry["mtime"] - time.time()) < 3600, entry
    assert by_name["subdir"]["mode"].startswith("d"), by_name["subdir"]
    assert by_name["digits"]["size"] == len(DIGITS)


def test_files_read(module_cluster, sleeper):
    path = f"{sleeper.sandbox}/stdout"
    whole = module_cluster.agent.files_read(path, offset=0, length=1 << 20)
    assert whole["offset"] == 0
    assert "hello-stdout" in whole["data"], whole
    assert "hello-stderr" in module_cluster.agent.files_read(
        f"{sleeper.sandbox}/stderr", offset=0, length=1 << 20
    )["data"]
    part = module_cluster.agent.files_read(f"{sleeper.sandbox}/digits", offset=3, length=4)
    assert part == {"data": "3456", "offset": 3}, part
    capped = module_cluster.agent.files_read(path, offset=0, length=5)
    assert len(capped["data"]) <= 5, capped


def test_files_read_offset_minus_one_gives_the_size(module_cluster, sleeper):
    answer = module_cluster.agent.files_read(f"{sleeper.sandbox}/digits", offset=-1)
    assert answer["offset"] == len(DIGITS), answer
    assert answer["data"] == "", answer


@pytest.mark.parametrize("endpoint", ["/files/read", "/files/browse"])
def test_files_outside_any_sandbox_is_refused(module_cluster, endpoint):
    path = "/etc/passwd" if endpoint == "/files/read" else "/etc"
    params = {"path": path, "offset": 0, "length": 4096}
    response = module_cluster.agent.get(endpoint, params=params)
    assert response.status_code in (403, 404), f"{response.status_code} {response.text}"
    assert response.text.strip(), "refused without a message"
    assert "root:" not in response.text and "passwd" not in response.text.replace(path, "")


def test_files_dotdot_escape_is_refused(module_cluster, sleeper):
    path = sleeper.sandbox + "/../../../../../../../../etc/passwd"
    response = module_cluster.agent.get(
        "/files/read", params={"path": path, "offset": 0, "length": 4096}
    )
    assert 400 <= response.status_code < 500, f"{response.status_code} {response.text}"
    assert "root:" not in response.text
    browse = module_cluster.agent.get(
        "/files/browse", params={"path": sleeper.sandbox + "/../../../../../../../../etc"}
    )
    assert 400 <= browse.status_code < 500, f"{browse.status_code} {browse.text}"
    assert "passwd" not in browse.text


def test_files_symlink_out_of_the_sandbox_is_refused(module_cluster, sleeper):
    path = f"{sleeper.sandbox}/leak"
    assert os.path.realpath(path) == "/etc/passwd"
    response = module_cluster.agent.get(
        "/files/read", params={"path": path, "offset": 0, "length": 4096}
    )
    assert 400 <= response.status_code < 500, f"{response.status_code} {response.text}"
    assert "root:" not in response.text
    download = module_cluster.agent.get("/files/download", params={"path": path})
    assert 400 <= download.status_code < 500, f"{download.status_code} {download.text[:200]}"
    assert "root:" not in download.text


def test_files_read_of_a_directory_is_400(module_cluster, sleeper):
    response = module_cluster.agent.get(
        "/files/read", params={"path": f"{sleeper.sandbox}/subdir", "offset": 0}
    )
    assert response.status_code == 400, f"{response.status_code} {response.text}"


def test_files_unknown_file_is_404(module_cluster, sleeper):
    response = module_cluster.agent.get(
        "/files/read", params={"path": f"{sleeper.sandbox}/no-such-file", "offset": 0}
    )
    assert response.status_code == 404, f"{response.status_code} {response.text}"
    browse = module_cluster.agent.get(
        "/files/browse", params={"path": f"{sleeper.sandbox}/no-such-dir"}
    )
    assert browse.status_code == 404, f"{browse.status_code} {browse.text}"


# ---------------------------------------------------------- 6. as an ordinary user


def test_local_runs_as_nobody_and_runs_a_task(meseta_bin):
    if os.geteuid() != 0:
        reason = "not root: cannot start meseta as another user"
        print(reason)
        pytest.skip(reason)
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="meseta-e2e-nobody-"))
    os.chmod(base, 0o755)
    work_dir = base / "local"
    work_dir.mkdir()
    os.chown(work_dir, nobody.pw_uid, nobody.pw_gid)
    launcher = Launcher(Path(shutil.which("setpriv") or "/usr/bin/setpriv"), base)
    try:
        port = free_port(2)
        process = launcher.spawn(
            "local-nobody",
            [
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
                str(meseta_bin),
                "local",
                "--port",
                str(port),
                "--work-dir",
                str(work_dir),
                "--resources",
                "cpus:2;mem:1024;ports:[31000-32000]",
            ],
            port=port,
            work_dir=work_dir,
            env={"HOME": str(work_dir), "USER": "nobody", "LOGNAME": "nobody"},
        )
        with open(f"/proc/{process.pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(nobody.pw_uid)}, f"meseta runs with uids {uids}"

        master, agent = Endpoint(port), Endpoint(port + 1)
        registration = wait_for(
            lambda: agent.healthy() and registered_agent(master, agent.port),
            DEFAULT_TIMEOUT,
            what="the nobody agent to register",
            retry_on=(requests.RequestException, OSError, ApiError),
        )
        agent_id = registration["agent_info"]["id"]["value"]
        framework = Framework(master, "e2e-op-nobody", user="nobody")
        try:
            framework.launch(agent_id, "as-nobody", "id -un; touch made-by-task")
            framework.wait_state("as-nobody", "TASK_FINISHED")
            sandbox = sandbox_directory(agent, framework.id, "as-nobody")
            assert sandbox, agent.state()
            stdout = agent.files_read(f"{sandbox}/stdout", offset=0, length=1 << 20)["data"]
            assert "nobody" in stdout.split(), stdout
            assert os.stat(f"{sandbox}/made-by-task").st_uid == nobody.pw_uid
        finally:
            framework.close()
    finally:
        errors = launcher.shutdown()
        shutil.rmtree(base, ignore_errors=True)
    assert not errors, "\n\n".join(errors)
