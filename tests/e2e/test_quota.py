"""Role quota (Mesos 1.9+ semantics): UPDATE_QUOTA / GET_QUOTA through the operator
API, the v0 ``/quota`` endpoint, the deprecated SET_QUOTA / REMOVE_QUOTA, validation,
survival across a master restart, and the allocator keeping a role within its limit.

* UPDATE_QUOTA takes ``quota_configs`` of ``{role, guarantees, limits}`` (scalar
  quantities by name) and is all or nothing; a config with neither removes the quota.
* GET_QUOTA answers ``status.configs`` and the deprecated ``status.infos`` (each role's
  guarantee as resources); v0 ``/quota`` answers the same status.
* A framework in a role with a cpus limit is never offered more cpus than the limit
  leaves (held plus offered). ``/roles`` shows the quota with what the role consumes (held
  in tasks and executors, plus unheld reservations), next to its allocated, offered and
  reserved resources; GET_ROLES has only the fields of mesos.proto's ``Role``.
"""

import getpass

import pytest
import requests

from conftest import ApiError, registered_agent
from helpers import RawFramework, scalar

RESOURCES = "cpus:4;mem:1024;ports:[31000-32000]"


def update_quota(master, configs, force=False):
    return master.call("UPDATE_QUOTA", update_quota={"force": force, "quota_configs": configs})


def config(role, guarantees=None, limits=None):
    out = {"role": role}
    if guarantees:
        out["guarantees"] = {n: {"value": v} for n, v in guarantees.items()}
    if limits:
        out["limits"] = {n: {"value": v} for n, v in limits.items()}
    return out


def quota_configs(master):
    """GET_QUOTA's configs as ``{role: (guarantees, limits)}`` of plain numbers."""
    status = master.call("GET_QUOTA")["get_quota"]["status"]
    return {
        c["role"]: (
            {n: s["value"] for n, s in c.get("guarantees", {}).items()},
            {n: s["value"] for n, s in c.get("limits", {}).items()},
        )
        for c in status.get("configs", [])
    }


def role_entry(master, name):
    roles = master.call("GET_ROLES")["get_roles"]["roles"]
    return next((r for r in roles if r["name"] == name), None)


def v0_role_entry(master, name):
    response = master.get("/roles")
    response.raise_for_status()
    return next((r for r in response.json()["roles"] if r["name"] == name), None)


def test_update_get_and_restart(meseta):
    process = meseta.master(work_dir=meseta.base_dir / "master")
    master = process.api
    meseta.agent(process, extra_args=("--resources", RESOURCES))
    assert quota_configs(master) == {}
    assert update_quota(
        master,
        [
            config("dev", {"cpus": 1}, {"cpus": 2, "mem": 512}),
            config("ops/web", limits={"cpus": 1.5}),
        ],
    ) == {}
    expected = {
        "dev": ({"cpus": 1.0}, {"cpus": 2.0, "mem": 512.0}),
        "ops/web": ({}, {"cpus": 1.5}),
    }
    assert quota_configs(master) == expected
    status = master.call("GET_QUOTA")["get_quota"]["status"]
    infos = {i["role"]: i["guarantee"] for i in status["infos"]}
    assert list(infos) == ["dev"], status
    assert scalar(infos["dev"], "cpus") == 1.0
    # v0 /quota answers the same status.
    v0 = master.get("/quota")
    assert v0.status_code == 200, v0.text
    assert v0.json() == status

    process.restart()
    assert quota_configs(master) == expected

    # A config with neither guarantees nor limits removes the quota, also durably.
    update_quota(master, [config("ops/web")])
    assert set(quota_configs(master)) == {"dev"}
    process.restart()
    assert set(quota_configs(master)) == {"dev"}


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ([config("dev", {"cpus": 3}, {"cpus": 2})], "larger than its limit"),
        ([config("*", limits={"cpus": 1})], "'*'"),
        ([config("a/../b", limits={"cpus": 1})], "a/../b"),
        ([config("dev", limits={"ports": 10})], "not a scalar"),
        ([config("dev", limits={"cpus": -1})], "non-negative"),
        ([config("dev", {"cpus": 100})], "capacity"),
        ([config("p", limits={"cpus": 1}), config("p/c", limits={"cpus": 2})], "parent"),
        ([config("dup", limits={"cpus": 1}), config("dup", limits={"cpus": 2})], "more than once"),
        ([config("good", limits={"cpus": 1}), config("bad", {"mem": 9}, {"mem": 1})], "limit"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(meseta, configs, message):
    process = meseta.master()
    master = process.api
    meseta.agent(process, extra_args=("--resources", RESOURCES))
    update_quota(master, [config("kept", limits={"cpus": 1})])
    with pytest.raises(ApiError) as refused:
        update_quota(master, configs)
    assert refused.value.status == 400, refused.value
    assert message in str(refused.value), refused.value
    assert quota_configs(master) == {"kept": ({}, {"cpus": 1.0})}


def test_force_and_malformed_bodies(meseta):
    process = meseta.master()
    master = process.api
    meseta.agent(process, extra_args=("--resources", RESOURCES))
    # Guarantees beyond the cluster's 4 cpus pass only with force.
    with pytest.raises(ApiError):
        update_quota(master, [config("big", {"cpus": 10})])
    update_quota(master, [config("big", {"cpus": 10})], force=True)
    assert quota_configs(master)["big"] == ({"cpus": 10.0}, {})
    bad = requests.post(
        master.url + "/api/v1",
        json={"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"limits": {}}]}},
        timeout=10,
    )
    assert bad.status_code == 400 and "update_quota" in bad.text, bad.text


def test_deprecated_set_and_remove_quota(meseta):
    process = meseta.master()
    master = process.api
    meseta.agent(process, extra_args=("--resources", RESOURCES))
    guarantee = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}]
    master.call("SET_QUOTA", set_quota={"quota_request": {"role": "old", "guarantee": guarantee}})
    # Since Mesos 1.9 the guarantee is also the limit.
    assert quota_configs(master) == {"old": ({"cpus": 1.0}, {"cpus": 1.0})}
    master.call("REMOVE_QUOTA", remove_quota={"role": "old"})
    assert quota_configs(master) == {}
    with pytest.raises(ApiError) as refused:
        master.call("REMOVE_QUOTA", remove_quota={"role": "old"})
    assert refused.value.status == 400 and "no quota" in str(refused.value)


class CappedFramework(RawFramework):
    """A raw framework in one role that declines nothing on its own."""

    def __init__(self, endpoint, role):
        info = {
            "user": getpass.getuser(),
            "name": f"e2e-quota-{role}",
            "roles": [role],
            "capabilities": [{"type": "MULTI_ROLE"}],
            "failover_timeout": 0.0,
        }
        super().__init__(endpoint, info)

    def offered_cpus(self):
        return sum(scalar(o["resources"], "cpus") for o in self.offers.values())

    def decline_all(self):
        ids = [o["id"] for o in self.offers.values()]
        self.offers.clear()
        if ids:
            self.call("DECLINE", decline={"offer_ids": ids, "filters": {"refuse_seconds": 0}})


def test_limit_caps_offers_and_roles_show_quota(meseta):
    process = meseta.master(extra_args=["--allocation-interval", "100ms"])
    master = process.api
    agent = meseta.agent(process, extra_args=("--resources", RESOURCES))
    agent_id = registered_agent(master, agent.port)["agent_info"]["id"]["value"]
    update_quota(master, [config("capped", {"cpus": 0.5}, {"cpus": 1.5})])
    framework = CappedFramework(master, "capped")
    # The agent has 4 cpus; the offer is cut to the limit, with the rest of the agent.
    framework.wait(lambda: framework.offers, what="an offer")
    assert framework.offered_cpus() == pytest.approx(1.5)
    offer = next(iter(framework.offers.values()))
    assert scalar(offer["resources"], "mem") == pytest.approx(1024)

    # GET_ROLES has exactly the fields of mesos.proto's Role: what the role holds and is
    # offered is its `resources`, scalars among cpus/mem/disk/gpus only.
    entry = role_entry(master, "capped")
    assert sorted(entry) == ["frameworks", "name", "resources", "weight"], entry
    assert entry["frameworks"] == [{"value": framework.id}]
    assert scalar(entry["resources"], "cpus") == pytest.approx(1.5), entry
    assert scalar(entry["resources"], "mem") == pytest.approx(1024), entry
    assert all(r["type"] == "SCALAR" for r in entry["resources"]), entry
    assert "ports" not in {r["name"] for r in entry["resources"]}, entry
    # v0 /roles carries the quota and the breakdown, as quantities by name.
    v0 = v0_role_entry(master, "capped")
    quota = v0["quota"]
    assert (quota["role"], quota["guarantee"], quota["limit"]) == (
        "capped",
        {"cpus": 0.5},
        {"cpus": 1.5},
    ), v0
    # As in the Mesos master's /roles, what is only offered (and not reserved) is not
    # consumed.
    assert quota["consumed"] == {}, v0
    offered = v0["offered"]
    assert (offered["cpus"], offered["mem"], offered["ports"]) == (1.5, 1024, 1001), v0
    assert v0["resources"] == v0["offered"], v0
    assert (v0["allocated"], v0["reserved"]) == ({}, {}), v0
    assert v0["frameworks"] == [framework.id]

    # A running task holds part of the limit: what is offered next is the rest of it.
    framework.launch(agent_id, "holder", "sleep 30")
    framework.wait_state("holder", "TASK_RUNNING")
    for _ in range(5):
        framework.decline_all()
        framework.listen(0.5)
        v0 = v0_role_entry(master, "capped")
        allocated = v0["allocated"].get("cpus", 0)
        assert allocated + v0["offered"].get("cpus", 0) <= 1.5 + 1e-9, v0
        assert framework.offered_cpus() <= 1.5 - allocated + 1e-9
    assert v0["allocated"]["cpus"] > 0, v0
    assert v0["quota"]["consumed"] == v0["allocated"], v0
