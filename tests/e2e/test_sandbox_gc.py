"""Sandbox garbage collection, end to end, held to what Mesos's agent does
(``slave/slave.cpp``'s ``garbageCollect``, ``_checkDiskUsage``; ``slave/gc.cpp``).

When an executor run is done (its process gone, its tasks' terminal updates
acknowledged) the agent schedules its sandbox for removal ``--gc-delay`` after the run's
directory was last modified (touched when the run ends); the run directory goes, with
the executor's ``latest`` link when it names that run and the executor and framework
directories it leaves empty. A running executor's sandbox is never removed, however old.
Schedules are not checkpointed: a restarted agent schedules every run directory no
executor it recovered owns, by its modification time, so the delay still counts from
the run's end. ``gc/path_removals_{succeeded,failed,pending}`` are in
``/metrics/snapshot``.
"""

import getpass
import os

from conftest import wait_for
from helpers import RawFramework, wait_sandbox

GC_TIMEOUT = 60.0


def metrics(agent):
    return agent.api.get("/metrics/snapshot").json()


def executor_dir(sandbox):
    """``.../executors/<id>`` of a run's sandbox ``.../executors/<id>/runs/<container>``."""
    return os.path.dirname(os.path.dirname(sandbox))


def start(meseta, gc_delay, checkpoint=False):
    """A master, an agent with ``--gc-delay gc_delay``, and a framework; returns them."""
    master = meseta.master()
    agent = meseta.agent(master, extra_args=["--gc-delay", gc_delay])
    agent_id = meseta.wait_registered(agent, master.api)["agent_info"]["id"]["value"]
    info = {"user": getpass.getuser(), "name": "e2e-sandbox-gc", "checkpoint": checkpoint}
    return agent, agent_id, RawFramework(master.api, info)


def run_both(framework, agent, agent_id):
    """Starts a task that keeps running and one that finishes; returns their sandboxes."""
    framework.launch(agent_id, "running", "while true; do sleep 0.1; done")
    framework.wait_state("running", "TASK_RUNNING")
    framework.launch(agent_id, "finished", "echo done")
    framework.wait_state("finished", "TASK_FINISHED")
    running = wait_sandbox(agent.api, framework.id, "running")
    finished = wait_sandbox(agent.api, framework.id, "finished")
    assert os.path.isdir(running) and os.path.isdir(finished), (running, finished)
    return running, finished


def test_a_finished_runs_sandbox_goes_after_the_delay_a_running_one_stays(meseta):
    agent, agent_id, framework = start(meseta, "2secs")
    running, finished = run_both(framework, agent, agent_id)
    assert metrics(agent)["gc/path_removals_failed"] == 0

    wait_for(
        lambda: not os.path.exists(executor_dir(finished)),
        GC_TIMEOUT,
        what=f"the finished task's executor directory {executor_dir(finished)} to go",
    )
    # Older than the delay, but its executor runs: kept, with its `latest` link.
    assert os.path.isdir(running), running
    latest = os.path.join(os.path.dirname(running), "latest")
    assert os.path.realpath(latest) == os.path.realpath(running), latest
    counters = wait_for(
        lambda: (m := metrics(agent))["gc/path_removals_succeeded"] >= 1 and m,
        what="gc/path_removals_succeeded to count the removal",
    )
    assert counters["gc/path_removals_failed"] == 0, counters
    assert counters["gc/path_removals_pending"] == 0, counters


def test_a_scheduled_removal_survives_an_agent_restart(meseta):
    agent, agent_id, framework = start(meseta, "1hrs", checkpoint=True)
    running, finished = run_both(framework, agent, agent_id)
    wait_for(
        lambda: metrics(agent)["gc/path_removals_pending"] == 1,
        what="the finished run to be scheduled",
    )
    assert os.path.isdir(finished), "removed before its hour"

    # With a shorter delay, the restarted agent finds the run by its directory and
    # removes it 2 s after the run ended; the recovered executor's sandbox stays.
    agent.kill()
    agent.args[agent.args.index("1hrs")] = "2secs"
    agent.start()
    wait_for(
        lambda: not os.path.exists(finished),
        GC_TIMEOUT,
        what=f"the finished task's sandbox {finished} to go after the restart",
    )
    assert os.path.isdir(running), "the recovered executor's sandbox was removed"
    wait_for(
        lambda: metrics(agent)["gc/path_removals_succeeded"] == 1,
        what="the restarted agent to count its removal",
    )
