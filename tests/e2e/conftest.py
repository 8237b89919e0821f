"""Fixtures and helpers for Meseta's end-to-end tests.

The tests run real ``meseta`` processes on 127.0.0.1 and talk to them over HTTP as
real clients do. The binary is ``$MESETA_BIN`` (default ``target/debug/meseta`` under
the repository root).

Fixtures:

* ``meseta_bin``: the binary's path (session scope).
* ``cluster``: a running ``meseta local`` (master on port P, agent on P+1) whose
  master lists its agent; a new one for each test. A :class:`LocalCluster`.
* ``module_cluster``: the same, shared by the tests of one module.
* ``meseta``: a :class:`Launcher` that starts ``meseta local``, ``meseta master`` and
  ``meseta agent`` processes, for tests that kill -9 and restart them (and, with
  ``spawn``, any meseta command line as given).

Helpers: :func:`wait_for`, :func:`free_port`, :func:`bindable`, :class:`Endpoint` (the
operator API, the v0 endpoints and ``/files`` of one master or agent; :class:`ApiError`),
:func:`registered_agent`, :func:`sandbox_directory`, :class:`SchedulerStream` (a raw
v1 scheduler client), :func:`kill_processes_under` and ``TERMINAL_STATES``. The helpers
that the test modules share beyond these (processes by marker, a raw framework class,
task lookups) are in ``helpers.py``.

Each process writes its stdout and stderr to files beside its work directory. When
its fixture ends, a process is killed with its process group, and so is every process
left under the fixture's directory (tasks, executors). A process that exits without
the test asking for it fails the test: at once if the test is in :func:`wait_for`,
else at teardown. The logs of the processes of a failed test are added to its report.
"""

import contextlib
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
LOG_TAIL_CHARS = 20_000

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)

# Processes started and not yet cleaned up, whose logs a failing test's report shows.
_ACTIVE = []
# Ports handed out in this session, never handed out twice.
_PORTS_GIVEN = set()


def wait_for(
    predicate,
    timeout=DEFAULT_TIMEOUT,
    *,
    interval=0.1,
    what=None,
    retry_on=(requests.RequestException, OSError),
):
    """Calls ``predicate`` until it returns a true value, and returns that value.

    An exception listed in ``retry_on`` (by default network errors, including a
    refused connection or a body that is not JSON) counts as "not yet"; any other
    propagates at once. Raises ``TimeoutError`` naming ``what`` (or the predicate)
    and the last retried error once ``timeout`` seconds have passed, and
    :class:`MesetaProcessError` as soon as a meseta process that no test stopped
    has exited.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except retry_on as exc:
            last_error = exc
        for process in _ACTIVE:
            if not process.exit_expected:
                process.check_running()
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g}s waiting for {what or predicate.__name__}"
            if last_error is not None:
                message += f" (last error: {last_error!r})"
            raise TimeoutError(message)
        time.sleep(interval)


def bindable(port):
    """Whether ``port`` can be bound on 127.0.0.1 now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(count=1):
    """Returns a port P such that P .. P+count-1 are free on 127.0.0.1 now."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        ports = range(base, base + count)
        if base + count > 65535 or _PORTS_GIVEN.intersection(ports):
            continue
        if all(bindable(port) for port in ports):
            _PORTS_GIVEN.update(ports)
            return base
    raise RuntimeError(f"found no {count} consecutive free ports")


class ApiError(AssertionError):
    """An API call answered with a status outside 2xx."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class Endpoint:
    """HTTP access to one master or agent at 127.0.0.1:``port``."""

    def __init__(self, port):
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"

    def __repr__(self):
        return f"Endpoint({self.address})"

    def get(self, path, **kwargs):
        """``GET`` ``path`` (``requests.get`` keyword arguments apply)."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return requests.get(self.url + path, **kwargs)

    def post(self, path, **kwargs):
        """``POST`` to ``path`` (``requests.post`` keyword arguments apply)."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return requests.post(self.url + path, **kwargs)

    def healthy(self):
        """Whether ``GET /health`` answers 200."""
        return self.get("/health").status_code == 200

    def call(self, call_type, **fields):
        """Makes an operator API call (``POST /api/v1``) and returns its JSON answer.

        ``fields`` are the call's other top-level fields, for example
        ``call("MARK_AGENT_GONE", mark_agent_gone={"agent_id": {"value": id}})``.
        An empty answer (202) gives ``{}``; a status outside 2xx raises :class:`ApiError`.
        """
        response = self.post(
            "/api/v1",
            json={"type": call_type, **fields},
            headers={"Accept": "application/json"},
        )
        if not 200 <= response.status_code < 300:
            raise ApiError(
                f"{call_type} to {self.address} answered {response.status_code}: {response.text}",
                response.status_code,
            )
        return response.json() if response.content else {}

    def agents(self):
        """The master's ``GET_AGENTS`` answer: the list of agents."""
        return self.call("GET_AGENTS")["get_agents"].get("agents", [])

    def frameworks(self):
        """The master's ``GET_FRAMEWORKS`` answer: ``{"frameworks", "completed_frameworks"}``."""
        return self.call("GET_FRAMEWORKS")["get_frameworks"]

    def tasks(self):
        """The ``GET_TASKS`` answer: ``{"tasks", "completed_tasks", ...}``."""
        return self.call("GET_TASKS")["get_tasks"]

    def state(self):
        """The v0 ``GET /state`` document."""
        response = self.get("/state")
        response.raise_for_status()
        return response.json()

    def files_browse(self, path):
        """``GET /files/browse?path=``: a list of ``{path, size, mode, ...}``."""
        response = self.get("/files/browse", params={"path": path})
        response.raise_for_status()
        return response.json()

    def files_read(self, path, offset=0, length=None):
        """``GET /files/read``: ``{"data": text, "offset": offset}``."""
        params = {"path": path, "offset": offset}
        if length is not None:
            params["length"] = length
        response = self.get("/files/read", params=params)
        response.raise_for_status()
        return response.json()


def sandbox_directory(agent, framework_id, task_id):
    """The sandbox directory of the executor that ran ``task_id``, read from the
    agent's v0 ``/state`` (live and completed frameworks and executors), or None."""
    state = agent.state()
    for framework in state.get("frameworks", []) + state.get("completed_frameworks", []):
        if framework.get("id") != framework_id:
            continue
        for executor in framework.get("executors", []) + framework.get("completed_executors", []):
            tasks = (
                executor.get("tasks", [])
                + executor.get("queued_tasks", [])
                + executor.get("completed_tasks", [])
            )
            if executor.get("id") == task_id or any(t.get("id") == task_id for t in tasks):
                return executor.get("directory")
    return None


class MesetaProcessError(RuntimeError):
    """A meseta process exited when it should have been running."""


class MesetaProcess:
    """One ``meseta`` process: its arguments, port, work directory and logs.

    ``start()`` runs it in a new session (so in its own process group) with stdout and
    stderr appended to ``<name>.stdout`` and ``<name>.stderr`` in ``log_dir``; a restart
    keeps the port, the work directory and the log files.
    """

    def __init__(self, binary, name, args, port, work_dir, log_dir):
        self.binary = binary
        self.name = name
        self.args = list(args)
        self.port = port
        self.work_dir = work_dir
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        self.api = Endpoint(port)
        self.popen = None
        # Whether the process may be down: not started yet, or stopped by the test.
        self.exit_expected = True
        # Variables added to its environment (MESETA_* ones included), for tests of
        # flags read from the environment.
        self.env = {}

    def __repr__(self):
        return f"MesetaProcess({self.name}, port {self.port}, pid {self.pid})"

    @property
    def address(self):
        return self.api.address

    @property
    def url(self):
        return self.api.url

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    @property
    def running(self):
        return self.popen is not None and self.popen.poll() is None

    @property
    def command(self):
        return [str(self.binary), *self.args]

    def start(self, wait=True, timeout=DEFAULT_TIMEOUT):
        """Starts the process and, with ``wait``, waits until ``/health`` answers 200."""
        assert not self.running, f"{self.name} is already running"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # meseta reads its flags from MESETA_* variables too: only the logging one,
        # MESETA_LOG, passes from this environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESETA_")}
        env.update(RUST_BACKTRACE="1", MESETA_LOG=os.environ.get("MESETA_LOG", "info"))
        env.update(self.env)
        banner = f"==== {time.strftime('%H:%M:%S')} starting: {' '.join(self.command)}\n".encode()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            out.write(banner)
            err.write(banner)
            out.flush()
            err.flush()
            self.popen = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        self.exit_expected = False
        if wait:
            self.wait_healthy(timeout)
        return self

    def expect_exit(self):
        """Tells :func:`wait_for` and the cleanup that this process may exit by itself."""
        self.exit_expected = True

    def check_running(self):
        """Raises :class:`MesetaProcessError`, with the logs, if the process has exited."""
        if self.popen is None:
            raise MesetaProcessError(f"{self.name} was never started")
        code = self.popen.poll()
        if code is not None:
            raise MesetaProcessError(
                f"{self.name} (pid {self.popen.pid}) exited with status {code}\n{self.logs()}"
            )

    def wait_healthy(self, timeout=DEFAULT_TIMEOUT):
        """Waits until ``GET /health`` answers 200; fails at once if the process exits."""
        try:
            wait_for(self.api.healthy, timeout, what=f"{self.name} /health to answer 200")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.logs()}") from None

    def kill(self, sig=signal.SIGKILL, timeout=DEFAULT_TIMEOUT):
        """Sends ``sig`` to the process alone (not its group: tasks it started stay
        up, as after ``kill -9 PID``) and waits for it to exit."""
        if not self.running:
            return
        self.exit_expected = True
        self.popen.send_signal(sig)
        self.popen.wait(timeout)

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        """Waits for a process that is to exit by itself (see :meth:`expect_exit`) and
        returns its exit status; raises ``TimeoutError``, with the logs, if it still
        runs after ``timeout`` seconds."""
        self.expect_exit()
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"{self.name} (pid {self.popen.pid}) still runs after {timeout:g}s\n{self.logs()}"
            ) from None

    def output(self, stream="stderr"):
        """What the process wrote to ``stream`` (``"stdout"`` or ``"stderr"``) over
        all its runs, without the launcher's ``==== starting`` lines (which hold the
        command line)."""
        path = self.stdout_path if stream == "stdout" else self.stderr_path
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "".join(
            line for line in text.splitlines(keepends=True) if not line.startswith("==== ")
        )

    def restart(self, wait=True, timeout=DEFAULT_TIMEOUT):
        """kill -9 the process if it runs, then start it again."""
        self.kill()
        return self.start(wait=wait, timeout=timeout)

    def shutdown(self):
        """Kills the process group; returns an error message if the process had
        died on its own, else None."""
        if self.popen is None:
            return None
        code = self.popen.poll()
        died = code is not None and not self.exit_expected
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(DEFAULT_TIMEOUT)
        self.exit_expected = True
        if died:
            return f"{self.name} (pid {self.popen.pid}) died during the test with status {code}"
        return None

    def logs(self, tail=LOG_TAIL_CHARS):
        """The last ``tail`` characters of the process's stdout and stderr files."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            if len(text) > tail:
                text = "...\n" + text[-tail:]
            parts.append(f"---- {path} ----\n{text}")
        return "\n".join(parts)


@dataclass
class LocalCluster:
    """A running ``meseta local``: a master and one registered agent in one process."""

    process: MesetaProcess
    master: Endpoint
    agent: Endpoint
    agent_id: str

    @property
    def master_address(self):
        """``127.0.0.1:P``, as pymesos takes it."""
        return self.master.address

    @property
    def master_url(self):
        """``http://127.0.0.1:P``, as mesoshttp takes it (in a list)."""
        return self.master.url


def registered_agent(master, agent_port):
    """The ``GET_AGENTS`` entry of the agent listening on ``agent_port``, or None."""
    for agent in master.agents():
        if agent.get("agent_info", {}).get("port") == agent_port:
            return agent
    return None


# Errors worth retrying while a process registers: network errors and API answers
# such as 503 from a master that is still recovering.
_REGISTRATION_RETRY = (requests.RequestException, OSError, ApiError)


def _uses_path(pid, root, pattern):
    """Whether process ``pid`` runs in ``root`` or below, or has ``pattern`` (``root``
    as a whole path component) in its command line or environment."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if cwd == root or cwd.startswith(root + "/"):
            return True
        for name in ("cmdline", "environ"):
            with open(f"/proc/{pid}/{name}", "rb") as f:
                if pattern.search(f.read()):
                    return True
    except OSError:
        pass
    return False


def kill_processes_under(root):
    """kill -9 every process (but this one) that uses a path under ``root``: what
    meseta left behind, including detached supervisors, executors and tasks."""
    root = os.path.realpath(root)
    pattern = re.compile(re.escape(root.encode()) + rb"(?=[/\0\s:;=]|$)")
    for _ in range(10):
        victims = [
            int(entry)
            for entry in os.listdir("/proc")
            if entry.isdigit()
            and int(entry) != os.getpid()
            and _uses_path(int(entry), root, pattern)
        ]
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


class Launcher:
    """Starts meseta processes under ``base_dir`` and cleans them all up.

    Each process gets ``base_dir/<name>`` as its work directory and its logs beside it.
    """

    def __init__(self, binary, base_dir):
        self.binary = binary
        self.base_dir = base_dir
        self.processes = []

    def _process(self, name, args, port, work_dir):
        if any(p.name == name for p in self.processes):
            raise ValueError(f"a process named {name!r} already exists")
        process = MesetaProcess(self.binary, name, args, port, work_dir, self.base_dir)
        self.processes.append(process)
        _ACTIVE.append(process)
        return process

    def spawn(
        self, name, args, *, port=None, work_dir=None, env=None, wait=True, timeout=DEFAULT_TIMEOUT
    ):
        """Starts ``meseta <args>`` exactly as given (no flags added), managed like the
        others: logs, death checks and cleanup. ``port`` is the one whose ``/health``
        ``wait`` waits for (needed with ``wait``); ``work_dir`` (default
        ``base_dir/<name>``) is only created, not passed; ``env`` is added to the
        process's environment (see :attr:`MesetaProcess.env`)."""
        if wait and port is None:
            raise ValueError("waiting for /health needs the port")
        process = self._process(name, args, port, work_dir or self.base_dir / name)
        process.env.update(env or {})
        return process.start(wait=wait, timeout=timeout)

    def local(self, *, name="local", extra_args=(), timeout=DEFAULT_TIMEOUT):
        """Starts ``meseta local --port P --work-dir D`` and waits until its master
        (P) and agent (P+1) answer ``/health`` and the master lists the agent."""
        port = free_port(2)
        work_dir = self.base_dir / name
        args = ["local", "--port", str(port), "--work-dir", str(work_dir), *extra_args]
        process = self._process(name, args, port, work_dir)
        process.start(timeout=timeout)
        agent = Endpoint(port + 1)

        def agent_registered():
            return agent.healthy() and registered_agent(process.api, agent.port)

        try:
            registration = wait_for(
                agent_registered,
                timeout,
                what=f"{name}'s agent to register",
                retry_on=_REGISTRATION_RETRY,
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{process.logs()}") from None
        agent_id = registration["agent_info"]["id"]["value"]
        return LocalCluster(process=process, master=process.api, agent=agent, agent_id=agent_id)

    def master(
        self,
        *,
        name="master",
        port=None,
        work_dir=None,
        extra_args=(),
        wait=True,
        timeout=DEFAULT_TIMEOUT,
    ):
        """Starts ``meseta master --port P --work-dir D``; with ``wait``, waits for
        ``/health``."""
        port = port or free_port()
        work_dir = work_dir or self.base_dir / name
        args = ["master", "--port", str(port), "--work-dir", str(work_dir), *extra_args]
        return self._process(name, args, port, work_dir).start(wait=wait, timeout=timeout)

    def agent(
        self,
        master,
        *,
        name=None,
        port=None,
        work_dir=None,
        extra_args=(),
        wait=True,
        timeout=DEFAULT_TIMEOUT,
    ):
        """Starts ``meseta agent --master HOST:PORT --port Q --work-dir D``.

        ``master`` is a :class:`MesetaProcess`, an :class:`Endpoint` or ``"host:port"``.
        With ``wait``, waits for ``/health`` and, when the master is known here, until
        the master lists the agent (see :func:`registered_agent`).
        """
        port = port or free_port()
        name = name or f"agent-{port}"
        work_dir = work_dir or self.base_dir / name
        master_address = master if isinstance(master, str) else master.address
        args = [
            "agent",
            "--master",
            master_address,
            "--port",
            str(port),
            "--work-dir",
            str(work_dir),
            *extra_args,
        ]
        process = self._process(name, args, port, work_dir).start(wait=wait, timeout=timeout)
        if wait and not isinstance(master, str):
            master_api = master.api if isinstance(master, MesetaProcess) else master
            self.wait_registered(process, master_api, timeout)
        return process

    @staticmethod
    def wait_registered(agent, master, timeout=DEFAULT_TIMEOUT):
        """Waits until ``master`` (an :class:`Endpoint`) lists ``agent`` (a
        :class:`MesetaProcess`); returns its ``GET_AGENTS`` entry."""
        try:
            return wait_for(
                lambda: registered_agent(master, agent.port),
                timeout,
                what=f"{agent.name} to register with {master.address}",
                retry_on=_REGISTRATION_RETRY,
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{agent.logs()}") from None

    def shutdown(self):
        """Kills every process and what it left behind; returns the error messages
        of processes that had died on their own."""
        errors = []
        for process in self.processes:
            error = process.shutdown()
            if error:
                errors.append(f"{error}\n{process.logs()}")
            if process in _ACTIVE:
                _ACTIVE.remove(process)
        kill_processes_under(self.base_dir)
        return errors


class SchedulerStream:
    """A raw v1 scheduler client: a SUBSCRIBE stream whose events a thread reads.

    After construction, ``framework_id`` and ``stream_id`` are set (the SUBSCRIBED
    event arrived). ``headers`` are added to (or replace) those of the SUBSCRIBE
    request.
    """

    def __init__(self, endpoint, framework_info, headers=None, timeout=DEFAULT_TIMEOUT):
        self.endpoint = endpoint
        self.events = queue.Queue()
        self.seen = []
        self.error = None
        self._reader = None
        request_headers = {"Content-Type": "application/json", "Accept": "application/json"}
        request_headers.update(headers or {})
        body = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}})
        # http.client rather than requests: close() must shut the socket down to wake
        # the reader and let the master see the disconnection at once.
        connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=HTTP_TIMEOUT)
        connection.request("POST", "/api/v1/scheduler", body=body, headers=request_headers)
        self._socket = connection.sock
        self._response = connection.getresponse()
        self.stream_id = self._response.getheader("Mesos-Stream-Id")
        if self._response.status != 200 or not self.stream_id:
            # An endless stream is not read: only an error's body.
            text = (
                ""
                if self._response.status == 200
                else self._response.read().decode(errors="replace")
            )
            self.close()
            raise AssertionError(
                f"SUBSCRIBE answered {self._response.status}, Mesos-Stream-Id "
                f"{self.stream_id!r}: {text}"
            )
        self._socket.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        subscribed = self.next_event("SUBSCRIBED", timeout)
        self.framework_id = subscribed["subscribed"]["framework_id"]["value"]

    def _read(self):
        """Splits the RecordIO stream into events; puts None at its end."""
        buffer = b""
        try:
            while data := self._response.read1(65536):
                buffer += data
                while (newline := buffer.find(b"\n")) >= 0:
                    end = newline + 1 + int(buffer[:newline])
                    if len(buffer) < end:
                        break
                    self.events.put(json.loads(buffer[newline + 1 : end]))
                    buffer = buffer[end:]
        except Exception as exc:  # noqa: BLE001 - reported by next_event
            self.error = exc  # also what close() makes a blocked read raise
        finally:
            self.events.put(None)

    def next_event(self, event_type, timeout=DEFAULT_TIMEOUT, predicate=lambda event: True):
        """Returns the next event of ``event_type`` that satisfies ``predicate``;
        earlier events go to ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise TimeoutError(
                    f"no {event_type} event within {timeout:g}s; "
                    f"seen: {[e['type'] for e in self.seen]}"
                ) from None
            if event is None:
                self.events.put(None)
                raise AssertionError(
                    f"the stream ended while waiting for {event_type} (reader: {self.error!r})"
                )
            if event.get("type") == event_type and predicate(event):
                return event
            self.seen.append(event)

    def call(self, call_type, stream_id=True, **fields):
        """POSTs a call for this framework and returns the response, whatever its
        status. ``stream_id=False`` leaves out the ``Mesos-Stream-Id`` header; a
        string sends that value instead."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if stream_id:
            headers["Mesos-Stream-Id"] = self.stream_id if stream_id is True else stream_id
        body = {"type": call_type, "framework_id": {"value": self.framework_id}, **fields}
        return self.endpoint.post("/api/v1/scheduler", data=json.dumps(body), headers=headers)

    def acknowledge(self, status):
        """Acknowledges a status update that carries a uuid; asserts the 202."""
        if "uuid" not in status:
            return
        response = self.call(
            "ACKNOWLEDGE",
            acknowledge={
                "agent_id": status["agent_id"],
                "task_id": status["task_id"],
                "uuid": status["uuid"],
            },
        )
        assert response.status_code == 202, response.text

    def close(self):
        """Closes the stream (the master sees the framework disconnect)."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._response.close()
        if self._reader is not None:
            self._reader.join(HTTP_TIMEOUT)


@pytest.fixture(scope="session")
def meseta_bin():
    """The meseta binary under test: ``$MESETA_BIN`` or ``target/debug/meseta``."""
    path = Path(os.environ.get("MESETA_BIN", REPO_ROOT / "target" / "debug" / "meseta"))
    path = path if path.is_absolute() else Path.cwd() / path
    if not os.access(path, os.X_OK):
        pytest.fail(f"no meseta binary at {path}: run `cargo build` or set MESETA_BIN")
    return path


@contextlib.contextmanager
def _launcher(binary, base_dir):
    """A :class:`Launcher` whose processes are cleaned up on exit; fails the test if
    one of them had died on its own."""
    launcher = Launcher(binary, base_dir)
    try:
        yield launcher
    finally:
        errors = launcher.shutdown()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def meseta(meseta_bin, tmp_path):
    """A :class:`Launcher` for this test; its processes are cleaned up after it."""
    with _launcher(meseta_bin, tmp_path) as launcher:
        yield launcher


@pytest.fixture
def cluster(meseta):
    """A running ``meseta local`` for this test (a :class:`LocalCluster`)."""
    return meseta.local()


@pytest.fixture(scope="module")
def module_cluster(meseta_bin, tmp_path_factory):
    """A running ``meseta local`` shared by the tests of one module."""
    with _launcher(meseta_bin, tmp_path_factory.mktemp("meseta")) as launcher:
        yield launcher.local()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds the logs of the running meseta processes to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for process in _ACTIVE:
            report.sections.append((f"meseta {process.name} logs", process.logs()))
