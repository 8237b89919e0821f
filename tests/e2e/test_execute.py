"""``meseta execute``: one task on a cluster, like ``mesos-execute``.

It subscribes a framework, runs the command as a command task, prints the task's
state changes and output, and exits with the task's exit status (0 for TASK_FINISHED,
the command's code for TASK_FAILED, non-zero for any other end). The tests share one
``meseta local`` and run the binary as a user would, with no MESETA_* variables.
"""

import os
import signal
import subprocess
import uuid
from dataclasses import dataclass

import pytest

from conftest import free_port, wait_for

# Subscribe, get an offer, launch, run and report, on two busy cores in a debug build.
EXECUTE_TIMEOUT = 120.0
# How long `meseta execute` may take to give up on a master that does not answer.
UNREACHABLE_TIMEOUT = 60.0


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def __str__(self):
        return f"exit {self.code}\n---- stdout ----\n{self.stdout}\n---- stderr ----\n{self.stderr}"


def execute(meseta_bin, master, *args, timeout=EXECUTE_TIMEOUT):
    """Runs ``meseta execute --master MASTER ARGS...`` to its end; fails the test if it
    is still running after ``timeout`` seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESETA_")}
    command = [str(meseta_bin), "execute", "--master", master, *args]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"{command} still ran after {timeout:g}s\n{Run(None, stdout, stderr)}", pytrace=False
        )
    return Run(process.returncode, stdout, stderr)


def assert_in_order(text, *words):
    """Asserts that ``words`` appear in ``text`` in this order."""
    position = 0
    for word in words:
        found = text.find(word, position)
        assert found >= 0, f"{word} missing (after {words[: words.index(word)]}) in:\n{text}"
        position = found + len(word)


def framework_ids(master):
    frameworks = master.frameworks()
    return {
        f["framework_info"]["id"]["value"]: f
        for f in frameworks.get("frameworks", []) + frameworks.get("completed_frameworks", [])
    }


def test_failed_command_gives_its_output_states_and_exit_code(module_cluster, meseta_bin):
    run = execute(
        meseta_bin,
        module_cluster.master_address,
        "--command",
        "echo hello; echo oops >&2; exit 3",
    )
    assert run.code == 3, run
    assert "hello" in run.stdout, run
    assert_in_order(run.stdout, "TASK_RUNNING", "TASK_FAILED")
    assert "TASK_FINISHED" not in run.stdout, run
    assert "oops" in run.stdout + run.stderr, run


def test_true_exits_zero_and_leaves_no_framework_behind(module_cluster, meseta_bin):
    before = set(framework_ids(module_cluster.master))
    run = execute(meseta_bin, module_cluster.master_address, "--command", "true")
    assert run.code == 0, run
    assert_in_order(run.stdout, "TASK_RUNNING", "TASK_FINISHED")

    def new_frameworks_disconnected():
        new = {k: v for k, v in framework_ids(module_cluster.master).items() if k not in before}
        return new and not any(f.get("connected") for f in new.values()) and new

    new = wait_for(
        new_frameworks_disconnected,
        what="the framework of `meseta execute` to be gone or disconnected",
    )
    assert len(new) == 1, f"`meseta execute` registered {len(new)} frameworks: {list(new)}"


def test_no_shell_runs_the_path_as_is(module_cluster, meseta_bin, tmp_path):
    """A path that a shell would split and expand runs only without a shell, and its
    ``--arg``s reach it unexpanded."""
    token = uuid.uuid4().hex
    directory = tmp_path / "a dir with $HOME in it"
    directory.mkdir()
    script = directory / "say ok"
    script.write_text('#!/bin/sh\necho "no-shell-$1|$#"\n')
    script.chmod(0o755)

    argument = f"{token} $HOME *"
    run = execute(
        meseta_bin,
        module_cluster.master_address,
        "--no-shell",
        "--command",
        str(script),
        "--arg",
        argument,
    )
    assert run.code == 0, run
    assert f"no-shell-{argument}|1" in run.stdout, run
    assert_in_order(run.stdout, "TASK_RUNNING", "TASK_FINISHED")

    with_shell = execute(meseta_bin, module_cluster.master_address, "--command", str(script))
    assert with_shell.code != 0, f"a shell ran the unquoted path: {with_shell}"
    assert "no-shell-" not in with_shell.stdout, with_shell


def test_command_killed_by_sigkill_exits_non_zero(module_cluster, meseta_bin):
    run = execute(meseta_bin, module_cluster.master_address, "--command", "kill -9 $$")
    assert run.code != 0, run
    assert_in_order(run.stdout, "TASK_RUNNING", "TASK_FAILED")


def test_unreachable_master_is_a_clear_error(meseta_bin):
    port = free_port()  # nothing listens there
    address = f"127.0.0.1:{port}"
    run = execute(meseta_bin, address, "--command", "true", timeout=UNREACHABLE_TIMEOUT)
    assert run.code != 0, run
    error = run.stderr.lower()
    assert any(word in error for word in (address, "connect", "refused", "unreachable")), (
        f"the error does not say what went wrong: {run}"
    )
