"""DEACTIVATE_AGENT / REACTIVATE_AGENT and ``--min-allocatable-resources``, held to
Mesos' semantics.

* A deactivated agent's outstanding offers are rescinded and it is offered nothing;
  its tasks keep running and their updates flow. REACTIVATE_AGENT brings offers back.
* GET_AGENTS shows ``deactivated: true`` and ``active: false``; the v0 ``/state``
  shows ``deactivated`` and counts it in ``deactivated_slaves``.
* Deactivation is kept in the registry: it survives a master restart.
* An unknown agent id is refused (404, as MARK_AGENT_GONE answers).
* ``--min-allocatable-resources cpus:3`` with an agent of ``cpus:2``: no offers; a
  value that does not parse stops the master with an error.
"""

import getpass
import uuid

import pytest

from conftest import ApiError, free_port, registered_agent, wait_for
from helpers import RawFramework

RESOURCES = "cpus:2;mem:1024;ports:[31000-32000]"


class Framework(RawFramework):
    """A raw framework that also records the offers it got and those rescinded."""

    def __init__(self, endpoint, name):
        self.offered = []  # every offer received, in order
        self.rescinded = []  # ids of rescinded offers
        info = {"user": getpass.getuser(), "name": name, "failover_timeout": 0.0}
        super().__init__(endpoint, info)

    def _handle(self, event):
        kind = event.get("type")
        if kind == "OFFERS":
            self.offered.extend(event["offers"].get("offers", []))
        elif kind == "RESCIND":
            self.rescinded.append(event["rescind"]["offer_id"]["value"])
        super()._handle(event)

    def offers_from(self, agent_id):
        return [o for o in self.offers.values() if o["agent_id"]["value"] == agent_id]


def set_active(master, agent_id, active):
    call = "REACTIVATE_AGENT" if active else "DEACTIVATE_AGENT"
    field = call.lower()
    master.call(call, **{field: {"agent_id": {"value": agent_id}}})


def agent_entry(master, agent_id):
    for agent in master.agents():
        if agent["agent_info"]["id"]["value"] == agent_id:
            return agent
    return None


def v0_slave(master, agent_id):
    state = master.state()
    return state, next((s for s in state["slaves"] if s["id"] == agent_id), None)


def test_deactivate_reactivate_and_restart(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=("--resources", RESOURCES))
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    framework = Framework(master.api, "e2e-deactivate")
    try:
        # A task that outlives the deactivation, then the rest of the agent on offer.
        framework.launch(agent_id, "survivor", "sleep 4")
        framework.wait_state("survivor", "TASK_RUNNING")
        outstanding = framework.wait(
            lambda: framework.offers_from(agent_id), what="an offer of the agent's rest"
        )
        offer_ids = {o["id"]["value"] for o in outstanding}

        set_active(master.api, agent_id, False)
        framework.wait(
            lambda: offer_ids <= set(framework.rescinded), what="the offers to be rescinded"
        )
        assert not framework.offers_from(agent_id)

        entry = agent_entry(master.api, agent_id)
        assert entry["deactivated"] is True, entry
        assert entry["active"] is False, entry
        state, slave = v0_slave(master.api, agent_id)
        assert slave["deactivated"] is True and slave["active"] is False, slave
        assert state["deactivated_slaves"] == 1, state["deactivated_slaves"]
        assert state["activated_slaves"] == 0, state["activated_slaves"]

        # The task still finishes and its updates flow; nothing is offered meanwhile
        # (the resources it frees included).
        offered_before = len(framework.offered)
        framework.wait_state("survivor", "TASK_FINISHED")
        framework.listen(3.0)
        assert len(framework.offered) == offered_before, framework.offered[offered_before:]

        # Deactivation is in the registry: a restarted master keeps it.
        framework.disconnect()
        master.restart()

        def reregistered_deactivated():
            entry = agent_entry(master.api, agent_id)
            return entry if entry and entry["deactivated"] else None

        wait_for(
            reregistered_deactivated,
            60,
            what="the agent to reregister, still deactivated",
            retry_on=(ApiError, OSError, Exception),
        )
        framework = Framework(master.api, "e2e-deactivate-after-restart")
        framework.listen(3.0)
        assert not [o for o in framework.offered if o["agent_id"]["value"] == agent_id]

        set_active(master.api, agent_id, True)
        framework.wait(lambda: framework.offers_from(agent_id), what="offers after REACTIVATE")
        entry = agent_entry(master.api, agent_id)
        assert entry["deactivated"] is False and entry["active"] is True, entry
        state, slave = v0_slave(master.api, agent_id)
        assert slave["deactivated"] is False, slave
        assert state["deactivated_slaves"] == 0, state["deactivated_slaves"]

        # Reactivation is stored too.
        framework.disconnect()
        master.restart()
        wait_for(
            lambda: (agent_entry(master.api, agent_id) or {}).get("active") is True,
            60,
            what="the agent to reregister, active",
            retry_on=(ApiError, OSError, Exception),
        )
        assert agent_entry(master.api, agent_id)["deactivated"] is False
    finally:
        framework.disconnect()


def test_reactivate_brings_offers_back_on_a_running_master(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=("--resources", RESOURCES))
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    set_active(master.api, agent_id, False)
    # Deactivating twice is fine.
    set_active(master.api, agent_id, False)
    framework = Framework(master.api, "e2e-reactivate")
    try:
        framework.listen(3.0)
        assert not framework.offered, framework.offered
        set_active(master.api, agent_id, True)
        framework.wait(lambda: framework.offers_from(agent_id), what="offers after REACTIVATE")
        assert agent_entry(master.api, agent_id)["active"] is True
    finally:
        framework.disconnect()


@pytest.mark.parametrize("call", ["DEACTIVATE_AGENT", "REACTIVATE_AGENT"])
def test_unknown_agent_is_404(meseta, call):
    master = meseta.master()
    with pytest.raises(ApiError) as error:
        master.api.call(call, **{call.lower(): {"agent_id": {"value": f"nope-{uuid.uuid4()}"}}})
    assert error.value.status == 404, error.value


def test_missing_agent_id_is_400(meseta):
    master = meseta.master()
    with pytest.raises(ApiError) as error:
        master.api.call("DEACTIVATE_AGENT", deactivate_agent={})
    assert error.value.status == 400, error.value


def test_min_allocatable_resources_above_the_agent_means_no_offers(meseta):
    master = meseta.master(extra_args=("--min-allocatable-resources", "cpus:3"))
    agent = meseta.agent(master, extra_args=("--resources", RESOURCES))
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    flags = {f["name"]: f["value"] for f in master.api.call("GET_FLAGS")["get_flags"]["flags"]}
    assert flags["min_allocatable_resources"] == "cpus:3", flags
    framework = Framework(master.api, "e2e-min-allocatable")
    try:
        framework.listen(3.0)
        assert not framework.offered, framework.offered
    finally:
        framework.disconnect()
    assert agent_entry(master.api, agent_id)["active"] is True


def test_min_allocatable_resources_alternative_allows_offers(meseta):
    master = meseta.master(extra_args=("--min_allocatable_resources", "cpus:3|mem:512"))
    agent = meseta.agent(master, extra_args=("--resources", RESOURCES))
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    framework = Framework(master.api, "e2e-min-allocatable-alt")
    try:
        framework.wait(lambda: framework.offers_from(agent_id), what="an offer")
    finally:
        framework.disconnect()


@pytest.mark.parametrize("value", ["cpus:abc", "cpus:1|", "ports:[1-2]"])
def test_bad_min_allocatable_resources_stops_the_master(meseta, value):
    port = free_port()
    master = meseta.spawn(
        "bad-master",
        ["master", "--port", str(port), "--min-allocatable-resources", value],
        port=port,
        wait=False,
    )
    status = master.wait_exit()
    assert status != 0
    assert "min_allocatable_resources" in master.output(), master.output()


def test_bad_min_allocatable_resources_from_the_environment(meseta):
    port = free_port()
    master = meseta.spawn(
        "bad-env-master",
        ["master", "--port", str(port)],
        port=port,
        env={"MESETA_MIN_ALLOCATABLE_RESOURCES": "mem:-5"},
        wait=False,
    )
    assert master.wait_exit() != 0
    assert "min_allocatable_resources" in master.output(), master.output()

