"""The posix launcher's zygote: command executors are forked from a pre-started
``meseta zygote`` (a child of the agent) instead of executing the binary again.

What must hold: each command executor is a child of the agent's one zygote; a zygote
that dies is replaced and tasks keep running and reporting; the zygote goes away with
its agent while the executors it forked live on and report to the restarted agent.
"""

import getpass
import os
import signal
import uuid
from pathlib import Path

from conftest import registered_agent, sandbox_directory, wait_for
from helpers import RawFramework, process_alive, processes_with

TIMEOUT = 60.0
AGENT_ARGS = ["--resources", "cpus:4;mem:2048;disk:1024;ports:[31000-31100]"]


def parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def zygotes_of(agent_pid):
    """The live ``meseta zygote`` processes whose parent is ``agent_pid``."""
    return [
        pid
        for pid in processes_with("zygote")
        if cmdline(pid)[1:2] == [b"zygote"] and parent_pid(pid) == agent_pid
    ]


def start(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=AGENT_ARGS)
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    info = {
        "user": getpass.getuser(),
        "name": "e2e-zygote",
        "checkpoint": True,
        "failover_timeout": 300.0,
    }
    return master, agent, agent_id, RawFramework(master.api, info)


def launch_gated(framework, agent, agent_id):
    """Launches a task that writes its executor's pid to the sandbox and waits for a
    file there; returns (task id, executor pid, gate path)."""
    task_id = f"zygote-{uuid.uuid4().hex[:8]}"
    framework.launch(agent_id, task_id, "echo $PPID > executor.pid; while [ ! -e gate ]; do sleep 0.1; done")
    framework.wait_state(task_id, "TASK_RUNNING")
    sandbox = Path(sandbox_directory(agent.api, framework.id, task_id))
    pid_file = sandbox / "executor.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), TIMEOUT, what="executor.pid")
    return task_id, int(pid_file.read_text()), sandbox / "gate"


def test_command_executors_are_children_of_the_agents_one_zygote(meseta):
    master, agent, agent_id, framework = start(meseta)
    first, first_executor, first_gate = launch_gated(framework, agent, agent_id)
    second, second_executor, second_gate = launch_gated(framework, agent, agent_id)

    zygotes = zygotes_of(agent.pid)
    assert len(zygotes) == 1, f"zygotes of agent {agent.pid}: {zygotes}"
    assert parent_pid(first_executor) == zygotes[0]
    assert parent_pid(second_executor) == zygotes[0]
    assert cmdline(first_executor)[1:2] == [b"zygote"], "a forked executor keeps the zygote's argv"

    first_gate.touch()
    second_gate.touch()
    framework.wait_state(first, "TASK_FINISHED")
    framework.wait_state(second, "TASK_FINISHED")
    wait_for(lambda: not process_alive(first_executor), TIMEOUT, what="the first executor to exit")


def test_a_killed_zygote_is_replaced_and_its_tasks_still_finish(meseta):
    master, agent, agent_id, framework = start(meseta)
    running, executor, gate = launch_gated(framework, agent, agent_id)
    (old,) = zygotes_of(agent.pid)

    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not process_alive(old), TIMEOUT, what="the zygote to die")
    assert process_alive(executor), "the executor dies with its zygote"

    # A new task gets a new zygote; the orphaned executor still reports its task.
    later, later_executor, later_gate = launch_gated(framework, agent, agent_id)
    (new,) = zygotes_of(agent.pid)
    assert new != old
    assert parent_pid(later_executor) == new
    gate.touch()
    later_gate.touch()
    framework.wait_state(running, "TASK_FINISHED")
    framework.wait_state(later, "TASK_FINISHED")
    # The agent notices the orphan's exit without being its parent.
    def executor_ended():
        frameworks = agent.api.state().get("frameworks", [])
        return not any(e["id"] == running for f in frameworks for e in f.get("executors", []))

    wait_for(executor_ended, TIMEOUT, what="the orphaned executor to leave the agent's live executors")


def test_the_zygote_exits_with_its_agent_and_executors_live_on(meseta):
    master, agent, agent_id, framework = start(meseta)
    task_id, executor, gate = launch_gated(framework, agent, agent_id)
    (zygote,) = zygotes_of(agent.pid)

    agent.kill()
    wait_for(lambda: not process_alive(zygote), TIMEOUT, what="the zygote to exit after its agent")
    assert process_alive(executor), "the executor died with the agent"

    # The executor reports its task's end to the restarted agent.
    agent.start()
    gate.touch()
    framework.wait_state(task_id, "TASK_FINISHED")
