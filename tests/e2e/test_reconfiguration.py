"""Agent reconfiguration (``--reconfiguration-policy``), held to Mesos 1.5's semantics.

* ``additive``: an agent killed and restarted with more cpus and a new attribute keeps
  its id and its running task (of a checkpointing pymesos framework), and the master
  offers the added capacity.
* A shrinking change is refused by the agent at start, with a message naming the
  policy; so is any change under the default ``equal``.
"""

import getpass
import threading

from pymesos import MesosSchedulerDriver, Scheduler

from conftest import registered_agent, wait_for
from helpers import command_task, scalar


class Recorder(Scheduler):
    """Launches one long task on the first offer, then records offers and updates."""

    def __init__(self, task):
        self.lock = threading.Lock()
        self.task = task
        self.framework_id = None
        self.offers = []
        self.updates = []

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                self.offers.append(offer)
                task, self.task = self.task, None
            if task:
                driver.launchTasks(offer["id"], [dict(task, agent_id=offer["agent_id"])])
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 0.5})

    def statusUpdate(self, driver, status):
        with self.lock:
            self.updates.append(status)

    def state(self):
        with self.lock:
            return self.updates[-1]["state"] if self.updates else None

    def max_offered_cpus(self, since):
        with self.lock:
            return max((scalar(o["resources"], "cpus") for o in self.offers[since:]), default=0)


def restart_agent(meseta, master, agent, resources, attributes, policy, wait=True):
    """Starts the agent again (same port and work dir) with this configuration."""
    restart_agent.count = getattr(restart_agent, "count", 0) + 1
    args = ["--resources", resources, "--attributes", attributes]
    if policy:
        args += ["--reconfiguration-policy", policy]
    return meseta.agent(
        master,
        name=f"{agent.name}-{restart_agent.count}",
        port=agent.port,
        work_dir=agent.work_dir,
        extra_args=args,
        wait=wait,
    )


def test_additive_growth_keeps_tasks_and_offers_the_increase(meseta):
    master = meseta.master()
    agent = meseta.agent(
        master,
        extra_args=(
            "--resources", "cpus:2;mem:1024",
            "--attributes", "rack:a",
            "--reconfiguration-policy", "additive",
        ),
    )
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    scheduler = Recorder(command_task("long", "", "sleep 1000", cpus=0.5))
    info = {
        "user": getpass.getuser(),
        "name": "e2e-reconfiguration",
        "checkpoint": True,
        "failover_timeout": 300.0,
    }
    driver = MesosSchedulerDriver(scheduler, info, master.address, use_addict=False)
    driver.start()
    try:
        wait_for(lambda: scheduler.state() == "TASK_RUNNING", what="the task to run")
        agent.kill()
        with scheduler.lock:
            seen = len(scheduler.offers)
        grown = restart_agent(
            meseta, master, agent, "cpus:6;mem:1024", "rack:a;zone:z", "additive"
        )
        entry = registered_agent(master.api, grown.port)
        assert entry["agent_info"]["id"]["value"] == agent_id, entry
        assert scalar(entry["total_resources"], "cpus") == 6, entry
        names = {a["name"] for a in entry["agent_info"].get("attributes", [])}
        assert names == {"rack", "zone"}, entry
        running = [t for t in master.api.tasks().get("tasks", []) if t["state"] == "TASK_RUNNING"]
        assert [t["task_id"]["value"] for t in running] == ["long"], running
        driver.reviveOffers()
        # The old total was 2 cpus: anything above that is the increase on offer.
        wait_for(lambda: scheduler.max_offered_cpus(seen) > 2, what="an offer of the added cpus")
        assert scheduler.state() == "TASK_RUNNING"

        # Shrinking is refused, with a message naming the policy.
        grown.kill()
        shrunk = restart_agent(
            meseta, master, agent, "cpus:1;mem:1024", "rack:a;zone:z", "additive", wait=False
        )
        shrunk.expect_exit()
        assert shrunk.wait_exit() != 0
        log = shrunk.output()
        assert "--reconfiguration-policy=additive" in log and "shrank" in log, log
    finally:
        driver.stop()
        driver.join()


def test_equal_refuses_any_change(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=("--resources", "cpus:2;mem:512", "--attributes", "a:1"))
    registered_agent(master.api, agent.port)
    agent.kill()
    changed = restart_agent(meseta, master, agent, "cpus:3;mem:512", "a:1", None, wait=False)
    changed.expect_exit()
    assert changed.wait_exit() != 0
    assert "--reconfiguration-policy=equal" in changed.output(), changed.output()
    # The same configuration is fine.
    same = restart_agent(meseta, master, agent, "cpus:2;mem:512", "a:1", None)
    assert registered_agent(master.api, same.port)
