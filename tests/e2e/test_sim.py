"""End-to-end tests of ``meseta sim agents``: hollow agents that speak the real internal
link protocol with a real ``meseta master`` and run tasks without processes.

* 50 hollow agents register with their hostnames and the given resources and
  attributes, and the master lists them in GET_AGENTS.
* A raw v1 framework gets offers from many distinct hollow agents, launches tasks on
  them and sees TASK_STARTING, TASK_RUNNING and (after --task-duration) TASK_FINISHED,
  one update at a time, each sent only after the previous one was acknowledged; a task
  running ``sleep 600`` outlives --task-duration, and killed, it ends TASK_KILLED.
* SIGTERM stops the sim process cleanly (status 0) and its agents disconnect.
"""

import getpass
import signal
import time

from conftest import wait_for
from helpers import RawFramework, scalar, scalar_resource

COUNT = 50
RESOURCES = "cpus:4;mem:2048;ports:[31000-32000]"
TASK_DURATION_SECS = 3


class Framework(RawFramework):
    """A raw framework (:class:`RawFramework`) that keeps offers and acknowledges every
    update it records."""

    def __init__(self, endpoint):
        super().__init__(endpoint, {"user": getpass.getuser(), "name": "sim-test"})

    def wait(self, predicate, timeout=30, what=None):
        return super().wait(predicate, timeout, what)

    def launch(self, offer, task_id, command="true"):
        """Launches a task of 1 cpu and 128 MB on ``offer`` (hollow agents run ``true``
        for --task-duration, ``sleep N`` for N seconds)."""
        task = {
            "name": task_id,
            "task_id": {"value": task_id},
            "agent_id": offer["agent_id"],
            "resources": [scalar_resource("cpus", 1), scalar_resource("mem", 128)],
            "command": {"value": command},
        }
        self.accept([offer], [task], refuse_seconds=1)


def start(meseta):
    master = meseta.master()
    sim = meseta.spawn(
        "sim",
        [
            "sim",
            "agents",
            "--count",
            str(COUNT),
            "--master",
            master.address,
            "--resources",
            RESOURCES,
            "--attributes",
            "rack:r1;zone:3",
            "--task-duration",
            f"{TASK_DURATION_SECS}secs",
            "--summary-interval",
            "1",
        ],
        wait=False,
    )
    agents = wait_for(
        lambda: len(master.api.agents()) == COUNT and master.api.agents(),
        what=f"{COUNT} hollow agents to register",
    )
    return master, sim, agents


def test_hollow_agents_register_with_their_resources(meseta):
    master, sim, agents = start(meseta)
    hostnames = sorted(a["agent_info"]["hostname"] for a in agents)
    assert hostnames == sorted(f"sim-{i}" for i in range(COUNT))
    assert len({a["agent_info"]["id"]["value"] for a in agents}) == COUNT
    assert len({a["agent_info"]["port"] for a in agents}) == COUNT
    for agent in agents:
        info = agent["agent_info"]
        assert scalar(info["resources"], "cpus") == 4
        assert scalar(info["resources"], "mem") == 2048
        ports = [r for r in info["resources"] if r["name"] == "ports"]
        assert ports[0]["ranges"]["range"] == [{"begin": 31000, "end": 32000}]
        attributes = {a["name"]: a for a in info["attributes"]}
        assert attributes["rack"]["text"]["value"] == "r1"
        assert attributes["zone"]["scalar"]["value"] == 3
        assert agent["active"] is True
    wait_for(
        lambda: f"{COUNT}/{COUNT} agents registered" in sim.output(),
        what="the summary line",
    )


def test_tasks_run_finish_and_get_killed_on_hollow_agents(meseta):
    master, sim, _ = start(meseta)
    framework = Framework(master.api)
    offers = framework.wait(
        lambda: len({o["agent_id"]["value"] for o in framework.offers.values()}) >= 10
        and list(framework.offers.values()),
        what="offers from at least 10 hollow agents",
    )
    by_agent = {}
    for offer in offers:
        by_agent.setdefault(offer["agent_id"]["value"], offer)
    chosen = list(by_agent.values())[:4]
    for i, offer in enumerate(chosen[:3]):
        framework.launch(offer, f"task-{i}")
    for i, offer in enumerate(chosen[:3]):
        task_id = f"task-{i}"
        framework.wait(
            lambda t=task_id: "TASK_FINISHED" in framework.states(t),
            what=f"{task_id} to finish",
        )
        assert framework.states(task_id) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        for status in framework.statuses(task_id):
            assert status["source"] == "SOURCE_EXECUTOR"
            assert status["agent_id"] == offer["agent_id"]
            assert status["executor_id"]["value"] == task_id
            assert "uuid" in status
        running, finished = framework.statuses(task_id)[1:]
        assert finished["timestamp"] - running["timestamp"] >= TASK_DURATION_SECS - 0.2
    assert len({s["agent_id"]["value"] for s in framework.updates}) == 3

    # Acknowledged terminal updates complete the tasks in the master.
    def completed():
        tasks = master.api.tasks()
        done = {t["task_id"]["value"]: t["state"] for t in tasks.get("completed_tasks", [])}
        return all(done.get(f"task-{i}") == "TASK_FINISHED" for i in range(3))

    wait_for(completed, what="the finished tasks to complete in the master")

    framework.launch(chosen[3], "killed", "sleep 600")
    framework.wait(lambda: "TASK_RUNNING" in framework.states("killed"), what="killed to run")
    # `sleep 600` outlives --task-duration.
    time.sleep(TASK_DURATION_SECS + 0.5)
    framework.poll()
    assert framework.states("killed") == ["TASK_STARTING", "TASK_RUNNING"]
    framework.call(
        "KILL", kill={"task_id": {"value": "killed"}, "agent_id": chosen[3]["agent_id"]}
    )
    framework.wait(lambda: "TASK_KILLED" in framework.states("killed"), what="TASK_KILLED")
    assert framework.states("killed") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    # Not finished afterwards.
    time.sleep(TASK_DURATION_SECS + 0.5)
    framework.poll()
    assert framework.states("killed") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    framework.stream.close()


def test_sigterm_stops_the_sim_cleanly(meseta):
    _, sim, _ = start(meseta)
    sim.kill(signal.SIGTERM)
    assert sim.popen.returncode == 0, sim.logs()
    assert f"0/{COUNT} agents registered" in sim.output()
