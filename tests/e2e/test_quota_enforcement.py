"""Quota outside the allocator's passes, against a real master and agent:

* UPDATE_QUOTA rescinds outstanding offers that break the new quota: a limit lowered
  below what a role holds in offers, or a guarantee raised so that the free resources no
  longer cover the headroom it needs. The framework gets RESCIND, and its next offers
  keep to the new quota.
* Dynamic reservations count against limits (Mesos 1.9+): RESERVE_RESOURCES that would
  take a role beyond its limit is refused with 400 and reserves nothing.
"""

import pytest

from conftest import ApiError, registered_agent
from test_quota import RESOURCES, CappedFramework, config, update_quota


def start(meseta):
    process = meseta.master(extra_args=["--allocation-interval", "100ms"])
    agent = meseta.agent(process, extra_args=("--resources", RESOURCES))
    agent_id = registered_agent(process.api, agent.port)["agent_info"]["id"]["value"]
    return process.api, agent_id


def first_offer(framework):
    framework.wait(lambda: framework.offers, what="an offer")
    return next(iter(framework.offers))


def test_a_lowered_limit_rescinds_offers_beyond_it(meseta):
    master, _ = start(meseta)
    framework = CappedFramework(master, "capped")
    offer_id = first_offer(framework)
    assert framework.offered_cpus() == pytest.approx(4)
    # The role holds 4 cpus in offers: a limit of 1 needs force, and takes the offer back.
    with pytest.raises(ApiError) as refused:
        update_quota(master, [config("capped", limits={"cpus": 1})])
    assert refused.value.status == 400
    assert offer_id in framework.offers
    update_quota(master, [config("capped", limits={"cpus": 1})], force=True)
    framework.wait(lambda: offer_id not in framework.offers, what="the offer's RESCIND")
    # What comes back is offered again within the limit.
    framework.wait(lambda: framework.offers, what="a new offer")
    assert framework.offered_cpus() == pytest.approx(1)


def test_a_raised_guarantee_rescinds_offers_for_its_headroom(meseta):
    master, _ = start(meseta)
    framework = CappedFramework(master, "greedy")
    offer_id = first_offer(framework)
    assert framework.offered_cpus() == pytest.approx(4)
    # Another role is guaranteed 3 cpus: nothing is free, so the offer comes back and
    # the next one leaves the headroom alone.
    update_quota(master, [config("guaranteed", guarantees={"cpus": 3})])
    framework.wait(lambda: offer_id not in framework.offers, what="the offer's RESCIND")
    framework.wait(lambda: framework.offers, what="a new offer")
    assert framework.offered_cpus() == pytest.approx(1)


def reserve(master, agent_id, role, cpus):
    resource = {
        "name": "cpus",
        "type": "SCALAR",
        "scalar": {"value": cpus},
        "reservations": [{"type": "DYNAMIC", "role": role}],
    }
    return master.call(
        "RESERVE_RESOURCES",
        reserve_resources={"agent_id": {"value": agent_id}, "resources": [resource]},
    )


def reserved_cpus(master, agent_id, role):
    agents = master.call("GET_AGENTS")["get_agents"]["agents"]
    entry = next(a for a in agents if a["agent_info"]["id"]["value"] == agent_id)
    return sum(
        r["scalar"]["value"]
        for r in entry["total_resources"]
        if r["name"] == "cpus" and (r.get("reservations") or [{}])[-1].get("role") == role
    )


def test_operator_reservations_count_against_the_limit(meseta):
    master, agent_id = start(meseta)
    update_quota(master, [config("limited", limits={"cpus": 1.5})])
    with pytest.raises(ApiError) as refused:
        reserve(master, agent_id, "limited", 2)
    assert refused.value.status == 400, str(refused.value)
    assert "beyond its quota limit of 1.5" in str(refused.value)
    assert reserved_cpus(master, agent_id, "limited") == 0
    reserve(master, agent_id, "limited", 1)
    # The reservation is consumed quota whether or not anyone holds it.
    with pytest.raises(ApiError) as refused:
        reserve(master, agent_id, "limited", 1)
    assert refused.value.status == 400, str(refused.value)
    assert "'limited' to 2" in str(refused.value)
    reserve(master, agent_id, "limited", 0.5)
    # A child role's reservation counts for its parent too; other roles are not held.
    with pytest.raises(ApiError):
        reserve(master, agent_id, "limited/child", 0.5)
    reserve(master, agent_id, "other", 1)
    assert reserved_cpus(master, agent_id, "limited") == pytest.approx(1.5)
