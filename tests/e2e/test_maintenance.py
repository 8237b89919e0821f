"""Maintenance primitives, held to Mesos' semantics, with pymesos as the framework.

* UPDATE_MAINTENANCE_SCHEDULE puts the agent's machine (its hostname and IP) in
  DRAINING: the framework with a task there gets an inverse offer carrying the window's
  unavailability, and offers from the machine carry it too. The framework's answer
  (ACCEPT_INVERSE_OFFERS through pymesos) shows in GET_MAINTENANCE_STATUS.
* The schedule and the machine modes are in the registry: a restarted master keeps them.
* START_MAINTENANCE takes the machine DOWN: its agent is shut down and removed, its task
  reported TASK_LOST (the framework is not partition-aware) with REASON_AGENT_REMOVED,
  and an agent on that machine is refused while it is down. STOP_MAINTENANCE brings the
  machine UP and out of the schedule; an agent registers there again.
* Bad schedules and machine lists are answered 400 and change nothing; the v0
  endpoints answer the same documents.
"""

import getpass
import threading

import pytest
from pymesos import MesosSchedulerDriver, Scheduler

from conftest import ApiError, registered_agent, wait_for
from helpers import command_task, scalar

HOSTNAME = "maint-host"
MACHINE = {"hostname": HOSTNAME, "ip": "127.0.0.1"}
START_NS = 2_000_000_000 * 1_000_000_000
WINDOW = {
    "machine_ids": [MACHINE],
    "unavailability": {
        "start": {"nanoseconds": START_NS},
        "duration": {"nanoseconds": 3600 * 1_000_000_000},
    },
}


class MaintenanceAwareScheduler(Scheduler):
    """Runs the tasks given to it, accepts every inverse offer, and records offers,
    inverse offers and updates (pymesos calls back on its own thread)."""

    def __init__(self, tasks):
        self.lock = threading.Lock()
        self.pending = list(tasks)
        self.framework_id = None
        self.offers = []
        self.inverse_offers = []
        self.updates = []

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                self.offers.append(offer)
                tasks = [dict(t, agent_id=offer["agent_id"]) for t in self.pending]
                self.pending = []
            if tasks and scalar(offer["resources"], "cpus") >= 0.1:
                driver.launchTasks(offer["id"], tasks, {"refuse_seconds": 1.0})
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 1.0})

    def inverseOffers(self, driver, offers):
        with self.lock:
            self.inverse_offers.extend(offers)
        driver.acceptInverseOffers([o["id"] for o in offers], {"refuse_seconds": 3600.0})

    def statusUpdate(self, driver, status):
        with self.lock:
            self.updates.append(status)

    def latest(self, task_id):
        with self.lock:
            states = [u for u in self.updates if u["task_id"]["value"] == task_id]
        return states[-1] if states else None


def schedule_call(master, schedule):
    return master.call(
        "UPDATE_MAINTENANCE_SCHEDULE", update_maintenance_schedule={"schedule": schedule}
    )


def status(master):
    return master.call("GET_MAINTENANCE_STATUS")["get_maintenance_status"]["status"]


def test_schedule_inverse_offers_down_and_up(meseta):
    master = meseta.master()
    agent = meseta.agent(
        master, extra_args=("--hostname", HOSTNAME, "--resources", "cpus:2;mem:1024")
    )
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    scheduler = MaintenanceAwareScheduler([command_task("long", "", "sleep 1000")])
    info = {"user": getpass.getuser(), "name": "e2e-maintenance", "failover_timeout": 0.0}
    driver = MesosSchedulerDriver(scheduler, info, master.address, use_addict=False)
    driver.start()
    try:
        wait_for(lambda: (scheduler.latest("long") or {}).get("state") == "TASK_RUNNING",
                 what="the task to run")

        schedule_call(master.api, {"windows": [WINDOW]})
        inverse = wait_for(lambda: list(scheduler.inverse_offers), what="an inverse offer")[0]
        assert inverse["agent_id"]["value"] == agent_id, inverse
        assert inverse["unavailability"]["start"]["nanoseconds"] == START_NS, inverse
        assert inverse["framework_id"]["value"] == scheduler.framework_id

        def offered_with_unavailability():
            with scheduler.lock:
                return [o for o in scheduler.offers if "unavailability" in o]

        offer = wait_for(offered_with_unavailability, what="an offer with unavailability")[0]
        assert offer["unavailability"]["duration"]["nanoseconds"] == 3600 * 10**9, offer

        def accepted():
            draining = status(master.api).get("draining_machines", [])
            answers = [s for m in draining for s in m.get("statuses", [])]
            return answers if answers and answers[0]["status"] == "ACCEPT" else None

        answer = wait_for(accepted, what="the framework's answer in the status")[0]
        assert answer["framework_id"]["value"] == scheduler.framework_id, answer
        got = master.api.call("GET_MAINTENANCE_SCHEDULE")["get_maintenance_schedule"]
        assert got["schedule"]["windows"][0]["machine_ids"] == [MACHINE], got
        assert master.api.get("/maintenance/schedule").json() == got["schedule"]

        # The schedule is in the registry.
        master.restart()
        wait_for(lambda: status(master.api).get("draining_machines"),
                 what="the draining machine after a restart", retry_on=(ApiError, OSError))
        # Updates the master makes itself go to subscribed frameworks only.
        wait_for(lambda: any(f.get("active") for f in master.api.frameworks()["frameworks"]),
                 what="pymesos to subscribe again")

        agent.expect_exit()  # the master shuts it down
        master.api.call("START_MAINTENANCE", start_maintenance={"machines": [MACHINE]})
        wait_for(lambda: (scheduler.latest("long") or {}).get("state") == "TASK_LOST",
                 what="the task to be lost")
        lost = scheduler.latest("long")
        assert lost["reason"] == "REASON_AGENT_REMOVED", lost
        assert lost["source"] == "SOURCE_MASTER", lost
        assert status(master.api)["down_machines"] == [MACHINE]
        assert master.api.get("/maintenance/status").json()["down_machines"] == [MACHINE]
        agent.wait_exit()
        assert not master.api.agents()

        # An agent on the machine is refused while it is down…
        refused = meseta.agent(
            master,
            name="refused",
            extra_args=("--hostname", HOSTNAME, "--resources", "cpus:1;mem:256"),
            wait=False,
        )
        wait_for(lambda: "maintenance" in refused.logs(), what="the refusal in the agent log")
        assert not master.api.agents()
        refused.shutdown()

        # …and registers once it is up, which also takes it out of the schedule.
        master.api.call("STOP_MAINTENANCE", stop_maintenance={"machines": [MACHINE]})
        assert status(master.api) in ({}, {"draining_machines": [], "down_machines": []})
        schedule = master.api.call("GET_MAINTENANCE_SCHEDULE")["get_maintenance_schedule"]
        assert not schedule["schedule"].get("windows"), schedule
        back = meseta.agent(
            master, name="back", extra_args=("--hostname", HOSTNAME, "--resources", "cpus:1")
        )
        assert registered_agent(master.api, back.port)
    finally:
        driver.stop()
        driver.join()


@pytest.mark.parametrize(
    "schedule, needle",
    [
        ({"windows": [{"machine_ids": [], "unavailability": WINDOW["unavailability"]}]},
         "at least one machine"),
        ({"windows": [dict(WINDOW, machine_ids=[{"hostname": "a", "ip": "bad"}])]},
         "invalid IP"),
        ({"windows": [WINDOW, WINDOW]}, "more than one window"),
        ({"windows": [{"machine_ids": [MACHINE]}]}, "unavailability"),
    ],
)
def test_bad_schedules_are_400(meseta, schedule, needle):
    master = meseta.master()
    with pytest.raises(ApiError) as error:
        schedule_call(master.api, schedule)
    assert error.value.status == 400, error.value
    assert needle in str(error.value), error.value
    assert not master.api.call("GET_MAINTENANCE_SCHEDULE")["get_maintenance_schedule"][
        "schedule"
    ].get("windows")


def test_machines_must_be_scheduled_to_go_down_and_down_to_go_up(meseta):
    master = meseta.master()
    with pytest.raises(ApiError) as error:
        master.api.call("START_MAINTENANCE", start_maintenance={"machines": [MACHINE]})
    assert error.value.status == 400 and "not in the maintenance schedule" in str(error.value)
    schedule_call(master.api, {"windows": [WINDOW]})
    with pytest.raises(ApiError) as error:
        master.api.call("STOP_MAINTENANCE", stop_maintenance={"machines": [MACHINE]})
    assert error.value.status == 400 and "not in maintenance" in str(error.value)
    master.api.call("START_MAINTENANCE", start_maintenance={"machines": [MACHINE]})
    with pytest.raises(ApiError) as error:
        schedule_call(master.api, {"windows": []})
    assert error.value.status == 400 and "must stay in the schedule" in str(error.value)
    # v0: /machine/up takes a bare list.
    response = master.api.post("/machine/up", json=[MACHINE])
    assert response.status_code == 200, response.text
    assert not master.api.get("/maintenance/status").json().get("down_machines")


def agent_entry(master, agent_id):
    return next(
        (a for a in master.agents() if a["agent_info"]["id"]["value"] == agent_id), None
    )


@pytest.mark.parametrize("mark_gone", [False, True])
def test_drain_agent(meseta, mark_gone):
    """DRAIN_AGENT kills the agent's task within max_grace_period (the task ignores
    SIGTERM and asks for 60 s of grace), reports it with REASON_AGENT_DRAINING, and the
    agent ends DRAINED (then REACTIVATE_AGENT brings offers back) or, with mark_gone,
    gone (its task TASK_GONE_BY_OPERATOR to this partition-aware framework)."""
    master = meseta.master()
    agent = meseta.agent(master, extra_args=("--resources", "cpus:2;mem:1024"))
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    stubborn = command_task(
        "stubborn", "", "trap '' TERM; sleep 1000",
        kill_policy={"grace_period": {"nanoseconds": 60 * 10**9}},
    )
    scheduler = MaintenanceAwareScheduler([stubborn])
    info = {
        "user": getpass.getuser(),
        "name": "e2e-drain",
        "failover_timeout": 0.0,
        "capabilities": [{"type": "PARTITION_AWARE"}],
    }
    driver = MesosSchedulerDriver(scheduler, info, master.address, use_addict=False)
    driver.start()
    try:
        wait_for(lambda: (scheduler.latest("stubborn") or {}).get("state") == "TASK_RUNNING",
                 what="the task to run")
        if mark_gone:
            agent.expect_exit()  # a gone agent is shut down
        master.api.call(
            "DRAIN_AGENT",
            drain_agent={
                "agent_id": {"value": agent_id},
                "max_grace_period": {"nanoseconds": 1_000_000_000},
                "mark_gone": mark_gone,
            },
        )
        ended = "TASK_GONE_BY_OPERATOR" if mark_gone else "TASK_KILLED"
        # Well within the task's own 60 s of grace.
        wait_for(lambda: (scheduler.latest("stubborn") or {}).get("state") == ended,
                 timeout=20, what=f"the task to end {ended}")
        assert scheduler.latest("stubborn")["reason"] == "REASON_AGENT_DRAINING"
        if mark_gone:
            wait_for(lambda: agent_entry(master.api, agent_id) is None,
                     what="the agent to be gone")
            agent.wait_exit()
            return
        drained = wait_for(
            lambda: (agent_entry(master.api, agent_id) or {}).get("drain_info", {}).get("state")
            == "DRAINED" and agent_entry(master.api, agent_id),
            what="the agent to be drained",
        )
        assert drained["deactivated"] is True, drained
        assert drained["drain_info"]["config"]["max_grace_period"]["nanoseconds"] == 10**9
        with scheduler.lock:
            offered_before = len(scheduler.offers)
        master.api.call("REACTIVATE_AGENT", reactivate_agent={"agent_id": {"value": agent_id}})
        entry = agent_entry(master.api, agent_id)
        assert "drain_info" not in entry and entry["deactivated"] is False, entry
        driver.reviveOffers()
        wait_for(lambda: len(scheduler.offers) > offered_before, what="offers after REACTIVATE")
    finally:
        driver.stop()
        driver.join()


def test_drain_unknown_agent_is_404(meseta):
    master = meseta.master()
    with pytest.raises(ApiError) as error:
        master.api.call("DRAIN_AGENT", drain_agent={"agent_id": {"value": "nope"}})
    assert error.value.status == 404, error.value
