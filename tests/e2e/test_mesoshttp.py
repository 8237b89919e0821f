"""mesoshttp 0.4.2, unmodified, as a scheduler against meseta.

mesoshttp reads the event stream with ``requests``' ``iter_lines()``, which holds
back each record until the next one arrives, so an event can wait for the next
heartbeat (15 s) before mesoshttp sees it; the waits here allow for that. The
scheduler declines and accepts with a short refuse_seconds so that new offers keep
the stream moving.
"""

import getpass
import threading

from mesoshttp.client import MesosClient

from conftest import TERMINAL_STATES, wait_for

# Two heartbeat intervals and some: see the module docstring.
TIMEOUT = 45.0
FILTERS = {"filters": {"refuse_seconds": 1.0}}


def task_info(task_id, command):
    """A TaskInfo without agent_id (set from the offer: mesoshttp only adds the
    obsolete slave_id)."""
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.05}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
        ],
        "command": {"value": command, "shell": True},
    }


class Framework:
    """A mesoshttp client on its own thread that launches ``tasks`` on the first
    offer and records task states. mesoshttp logs and swallows exceptions raised in
    callbacks, so they are recorded in ``errors`` too."""

    def __init__(self, master_url, tasks):
        self.pending = list(tasks)
        self.driver = None
        self.states = {}  # task id -> [state, ...]
        self.errors = []
        self.lock = threading.Lock()
        self.client = MesosClient(
            mesos_urls=[master_url],
            frameworkName="e2e-mesoshttp",
            frameworkUser=getpass.getuser(),
        )
        self.client.on(MesosClient.SUBSCRIBED, self.recorded(self.on_subscribed))
        self.client.on(MesosClient.OFFERS, self.recorded(self.on_offers))
        self.client.on(MesosClient.UPDATE, self.recorded(self.on_update))
        self.client.on(MesosClient.ERROR, self.errors.append)
        self.thread = threading.Thread(target=self.client.register, daemon=True)

    def recorded(self, callback):
        def call(argument):
            try:
                callback(argument)
            except Exception as exc:
                self.errors.append(repr(exc))
                raise

        call.__name__ = callback.__name__
        return call

    def on_subscribed(self, driver):
        self.driver = driver

    def on_offers(self, offers):
        for offer in offers:
            with self.lock:
                launch, self.pending = self.pending, []
            if launch:
                agent_id = offer.get_offer()["agent_id"]
                offer.accept([dict(task, agent_id=agent_id) for task in launch], FILTERS)
            else:
                offer.decline(FILTERS)

    def on_update(self, update):
        status = update["status"]
        with self.lock:
            self.states.setdefault(status["task_id"]["value"], []).append(status["state"])

    def latest(self, task_id):
        with self.lock:
            states = self.states.get(task_id)
            return states[-1] if states else None

    def wait_state(self, task_ids, wanted):
        def settled():
            return all(self.latest(t) in TERMINAL_STATES | {wanted} for t in task_ids)

        wait_for(settled, TIMEOUT, what=f"{task_ids} to reach {wanted}")
        with self.lock:
            assert all(self.states[t][-1] == wanted for t in task_ids), self.states

    def stop(self):
        """Tears the framework down (TEARDOWN) and ends the client's loop."""
        self.client.disconnect_framework()
        if self.driver is not None:
            self.driver.tearDown()
        self.thread.join(TIMEOUT)


def test_tasks_finish_and_one_is_killed(cluster):
    finishing = ["one", "two", "three"]
    framework = Framework(
        cluster.master_url,
        [task_info(t, "true") for t in finishing] + [task_info("sleeper", "sleep 1000")],
    )
    framework.thread.start()
    try:
        wait_for(lambda: framework.driver, TIMEOUT, what="mesoshttp to subscribe")
        framework.wait_state(finishing, "TASK_FINISHED")
        framework.wait_state(["sleeper"], "TASK_RUNNING")

        framework.driver.kill(cluster.agent_id, "sleeper")
        framework.wait_state(["sleeper"], "TASK_KILLED")
        assert not framework.errors, framework.errors
    finally:
        framework.stop()

    framework_id = framework.client.frameworkId

    def torn_down():
        active = cluster.master.frameworks().get("frameworks", [])
        return all(f["framework_info"]["id"]["value"] != framework_id for f in active)

    wait_for(torn_down, what="TEARDOWN to remove the framework")
