"""The agent's fetcher: ``CommandInfo.uris`` land in the sandbox before the task runs.

A pymesos framework (unmodified) launches command tasks whose URIs point at a local
HTTP server (Python's ``http.server`` on a loopback port, counting its requests) and at
local files; the tasks use what was fetched: they run a fetched script and read files
out of a fetched, unpacked archive. Failures (a 404, a refused connection, an archive
with a ``../`` entry, a relative path without ``--frameworks-home``) end the task in
TASK_FAILED with REASON_CONTAINER_LAUNCH_FAILED and a message naming the URI. As root,
with the Linux launcher, fetched files belong to the task's user, and a local file that
user may not read is not fetched.
"""

import gzip
import io
import select
import json
import shlex
import sys
import tarfile
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pymesos import encode_data
from test_containerizer import Framework, linux, needs_root, task_info  # noqa: F401 (fixture)
from test_execute import execute

from conftest import free_port, wait_for
from helpers import wait_sandbox
from test_pymesos import (
    EXECUTOR_SCRIPT,
    RecordingScheduler,
    command_task,
    framework_info,
    resources,
    running,
)

SCRIPT = b"#!/bin/sh\necho script-ran-$1\n"


def zipped(entries):
    """A .zip of ``{name: bytes}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz(entries, links=None):
    """A .tar.gz of ``{name: bytes}`` (names written as given, ``../`` too) and of
    symlinks ``{name: target}``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FileServer:
    """Serves ``files`` (path -> bytes) on a loopback port; 404 for anything else.
    Counts the GET requests per path. ``/stall...`` sends its headers and two bytes of
    ten, then nothing until the server closes or the client hangs up (counted in
    ``hangups``)."""

    def __init__(self, files):
        self.files = files
        self.requests = Counter()
        self.hangups = Counter()
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests[self.path] += 1
                if self.path.startswith("/stall"):
                    self.send_response(200)
                    self.send_header("Content-Length", "10")
                    self.end_headers()
                    self.wfile.write(b"ab")
                    self.wfile.flush()
                    while not server.closing.is_set():
                        readable, _, _ = select.select([self.connection], [], [], 0.1)
                        if readable and not self.connection.recv(1):
                            server.hangups[self.path] += 1
                            return
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def files():
    server = FileServer(
        {
            "/bin/run.sh": SCRIPT,
            "/bundle.tar.gz": tar_gz({"nested/sub/data.txt": b"from-the-archive\n"}),
            "/cached.txt": b"cached-content\n",
            "/notes.txt.gz": gzip.compress(b"from-gzip\n"),
            "/tools.zip": zipped({"tools/hello.txt": b"from-zip\n"}),
            "/evil.tgz": tar_gz({"../escaped.txt": b"x"}),
            "/executor.py": Path(EXECUTOR_SCRIPT).read_bytes(),
            **{f"/c/{name}.txt": name.encode() * 19 + b"\n" for name in "abc"},
            "/c/big.txt": b"b" * 49 + b"\n",
        }
    )
    yield server
    server.close()


@pytest.fixture
def framework(module_cluster, request):
    scheduler = RecordingScheduler()
    info = framework_info(f"e2e-fetcher-{request.node.name}")
    with running(scheduler, module_cluster.master_address, info) as driver:
        yield scheduler, driver


def with_uris(task_id, command, *uris):
    task = command_task(task_id, command)
    task["command"]["uris"] = list(uris)
    return task


def sandbox_file(cluster, scheduler, task_id, name):
    sandbox = wait_sandbox(cluster.agent, scheduler.framework_id, task_id)
    return (Path(sandbox) / name).read_text()


def assert_launch_failed(scheduler, task_id, *needles):
    scheduler.wait_state(task_id, "TASK_FAILED")
    status = scheduler.statuses(task_id)[-1]
    assert status.get("reason") == "REASON_CONTAINER_LAUNCH_FAILED", status
    for needle in needles:
        assert needle in status.get("message", ""), (needle, status)
    return status


def test_fetched_script_runs_and_archive_is_unpacked(module_cluster, files, framework):
    scheduler, driver = framework
    task = with_uris(
        "uses-fetched",
        "./run.sh one && cat nested/sub/data.txt notes.txt tools/hello.txt"
        " && ls -l conf/settings.tgz",
        {"value": files.url("/bin/run.sh"), "executable": True},
        {"value": files.url("/bundle.tar.gz")},
        {"value": files.url("/notes.txt.gz")},
        {"value": files.url("/tools.zip")},
        # Not unpacked: extract is off, and output_file names the sandbox file.
        {
            "value": files.url("/bundle.tar.gz"),
            "extract": False,
            "output_file": "conf/settings.tgz",
        },
    )
    scheduler.submit(driver, task)
    scheduler.wait_state("uses-fetched", "TASK_FINISHED")
    stdout = sandbox_file(module_cluster, scheduler, "uses-fetched", "stdout")
    for line in ("script-ran-one", "from-the-archive", "from-gzip", "from-zip"):
        assert line in stdout, stdout
    assert "-rwxr-xr-x" not in stdout.splitlines()[-1], "only executables get 0755"
    stderr = sandbox_file(module_cluster, scheduler, "uses-fetched", "stderr")
    assert f"Fetched '{files.url('/bin/run.sh')}'" in stderr, stderr
    assert "Fetching" in stderr.splitlines()[0], "the fetcher's log comes first"


def test_missing_and_unreachable_uris_fail_the_task(files, framework):
    scheduler, driver = framework
    missing = files.url("/nope.sh")
    unreachable = f"http://127.0.0.1:{free_port()}/x.sh"
    scheduler.submit(
        driver,
        with_uris("missing", "true", {"value": missing}),
        with_uris("unreachable", "true", {"value": unreachable}),
    )
    assert_launch_failed(scheduler, "missing", f"'{missing}'", "404")
    status = assert_launch_failed(scheduler, "unreachable", f"'{unreachable}'")
    assert "refused" in status["message"].lower(), status
    assert "TASK_RUNNING" not in scheduler.states("missing")


def test_file_uris_and_absolute_paths_are_copied(files, framework, tmp_path):
    scheduler, driver = framework
    local = tmp_path / "local.txt"
    local.write_text("local-content\n")
    scheduler.submit(
        driver,
        with_uris(
            "local-files",
            "cat local.txt copy.txt",
            {"value": f"file://{local}"},
            {"value": str(local), "output_file": "copy.txt"},
        ),
        with_uris("relative", "true", {"value": "some/relative.txt"}),
        with_uris("no-such-file", "true", {"value": f"file://{tmp_path}/absent.txt"}),
    )
    scheduler.wait_state("local-files", "TASK_FINISHED")
    assert_launch_failed(scheduler, "relative", "'some/relative.txt'", "--frameworks-home")
    assert_launch_failed(scheduler, "no-such-file", "absent.txt", "No such file")


def test_execute_fetches_its_uris(module_cluster, meseta_bin, files):
    master = module_cluster.master_address
    script = files.url("/bin/run.sh")
    run = execute(meseta_bin, master, "--uri", script, "--uri-executable", "-c", "./run.sh cli")
    assert run.code == 0, run
    assert "script-ran-cli" in run.stdout, run
    missing = files.url("/absent")
    run = execute(meseta_bin, master, "--uri", missing, "-c", "true")
    assert run.code != 0, run
    assert f"Failed to fetch '{missing}': HTTP 404" in run.stdout, run


def test_stalled_download_fails_the_task(meseta, files):
    cluster = meseta.local(extra_args=("--fetcher-stall-timeout", "1secs"))
    scheduler = RecordingScheduler()
    with running(scheduler, cluster.master_address, framework_info("e2e-fetcher-stall")) as driver:
        scheduler.submit(driver, with_uris("stalls", "true", {"value": files.url("/stall")}))
        assert_launch_failed(scheduler, "stalls", files.url("/stall"), "stalled", "1secs")


def test_cached_uri_is_downloaded_once(module_cluster, files, framework):
    scheduler, driver = framework
    uri = {"value": files.url("/cached.txt"), "cache": True}
    before = files.requests["/cached.txt"]
    for task_id in ("cached-1", "cached-2"):
        scheduler.submit(driver, with_uris(task_id, "cat cached.txt", uri))
        scheduler.wait_state(task_id, "TASK_FINISHED")
        assert "cached-content" in sandbox_file(module_cluster, scheduler, task_id, "stdout")
    assert files.requests["/cached.txt"] - before == 1, files.requests
    stderr = sandbox_file(module_cluster, scheduler, "cached-2", "stderr")
    assert "from the cache" in stderr, stderr


def test_archive_escaping_the_sandbox_is_refused(module_cluster, files, framework):
    scheduler, driver = framework
    scheduler.submit(driver, with_uris("evil", "true", {"value": files.url("/evil.tgz")}))
    assert_launch_failed(scheduler, "evil", files.url("/evil.tgz"), "outside the sandbox")
    sandbox = Path(wait_sandbox(module_cluster.agent, scheduler.framework_id, "evil"))
    assert not (sandbox.parent / "escaped.txt").exists()


def test_custom_executor_is_fetched_before_it_starts(files, framework):
    """ExecutorInfo.command.uris: the executor itself comes from the HTTP server."""
    scheduler, driver = framework
    executor = {
        "executor_id": {"value": "fetched-executor"},
        "type": "CUSTOM",
        "command": {
            "value": f"{shlex.quote(sys.executable)} executor.py",
            "shell": True,
            "uris": [{"value": files.url("/executor.py")}],
        },
        "resources": resources(0.1, 64),
    }
    task = {
        "name": "via-fetched-executor",
        "task_id": {"value": "via-fetched-executor"},
        "resources": resources(0.05, 32),
        "executor": executor,
        "data": encode_data(b"payload"),
    }
    scheduler.submit(driver, task)
    scheduler.wait_state("via-fetched-executor", "TASK_RUNNING")
    executor_id, agent_id, hello = wait_for(
        lambda: scheduler.message("launched", "via-fetched-executor"),
        what="the fetched executor's first message",
    )
    assert hello["task_data"] == "payload", hello
    request = {"task_id": "via-fetched-executor", "text": "done"}
    driver.sendFrameworkMessage(executor_id, agent_id, encode_data(json.dumps(request).encode()))
    scheduler.wait_state("via-fetched-executor", "TASK_FINISHED")


@needs_root
def test_fetched_files_belong_to_the_task_user(linux, files, tmp_path):
    framework = Framework(linux.master.api, "fetch-as-nobody", user="nobody")
    task = task_info(linux.agent_id, "./run.sh x && stat -c %u run.sh nested nested/sub/data.txt")
    task["command"]["uris"] = [
        {"value": files.url("/bin/run.sh"), "executable": True},
        {"value": files.url("/bundle.tar.gz")},
    ]
    framework.launch_task(linux.agent_id, task)
    task_id = task["task_id"]["value"]
    framework.wait_state(task_id, "TASK_FINISHED")
    sandbox = Path(wait_sandbox(linux.agent.api, framework.id, task_id))
    assert (sandbox / "stdout").read_text().splitlines() == ["script-ran-x"] + ["65534"] * 3

    secret = tmp_path / "secret.txt"
    secret.write_text("root only")
    secret.chmod(0o600)
    task = task_info(linux.agent_id, "true")
    task["command"]["uris"] = [{"value": f"file://{secret}"}]
    framework.launch_task(linux.agent_id, task)
    status = framework.wait_state(task["task_id"]["value"], "TASK_FAILED")
    assert status["reason"] == "REASON_CONTAINER_LAUNCH_FAILED", status
    assert "secret.txt" in status["message"] and "Permission denied" in status["message"], status


def test_task_killed_while_its_uris_are_fetched(files, framework):
    """The kill is reported at once, and the agent stops the download (the default
    stall timeout, a minute, is far away)."""
    scheduler, driver = framework
    uri = {"value": files.url("/stall-kill")}
    scheduler.submit(driver, with_uris("killed-fetching", "true", uri))
    wait_for(lambda: files.requests["/stall-kill"], what="the agent to start the download")
    scheduler.kill(driver, "killed-fetching")
    assert "TASK_RUNNING" not in scheduler.states("killed-fetching")
    wait_for(lambda: files.hangups["/stall-kill"], what="the agent to abandon the download")


def test_cache_keeps_within_its_size(meseta, files):
    """A 40-byte cache: 20-byte entries, the least recently used evicted; a 50-byte
    file is never cached."""
    cluster = meseta.local(extra_args=("--fetcher-cache-size", "40B"))
    scheduler = RecordingScheduler()
    info = framework_info("e2e-fetcher-small-cache")
    with running(scheduler, cluster.master_address, info) as driver:
        before = Counter(files.requests)
        for i, name in enumerate(["a", "b", "a", "c", "a", "b", "big", "big"]):
            uri = {"value": files.url(f"/c/{name}.txt"), "cache": True}
            task_id = f"small-cache-{i}"
            scheduler.submit(driver, with_uris(task_id, f"test -s {name}.txt", uri))
            scheduler.wait_state(task_id, "TASK_FINISHED")
        fetched = {
            n: files.requests[f"/c/{n}.txt"] - before[f"/c/{n}.txt"] for n in ("a", "b", "c", "big")
        }
        # a stays (used again before c came), b is evicted by c, big never fits.
        assert fetched == {"a": 1, "b": 2, "c": 1, "big": 2}, fetched


def test_no_uri_writes_through_a_fetched_symlink(module_cluster, files, framework, tmp_path):
    """An archive may carry a link out of the sandbox; a later URI must not follow it."""
    scheduler, driver = framework
    files.files["/linky.tgz"] = tar_gz({}, links={"out": str(tmp_path)})
    script = files.url("/bin/run.sh")
    scheduler.submit(
        driver,
        with_uris(
            "through-link",
            "true",
            {"value": files.url("/linky.tgz")},
            {"value": script, "output_file": "out/planted.sh"},
        ),
    )
    assert_launch_failed(scheduler, "through-link", f"'{script}'", "outside the sandbox")
    assert not (tmp_path / "planted.sh").exists()
