"""Role weights: ``--weights``, UPDATE_WEIGHTS / GET_WEIGHTS, the v0 ``/weights``
endpoint, the weights GET_ROLES and ``/roles`` report, and their survival across a
master restart.

As in Mesos (``Master::_recover``), weights stored in the registry (set by
UPDATE_WEIGHTS, or by ``--weights`` at a first start) win over ``--weights`` at a
later start: the flag is then ignored as a whole.
"""

import pytest
import requests

from conftest import DEFAULT_TIMEOUT, ApiError, free_port


def weights(master):
    """GET_WEIGHTS as ``{role: weight}``."""
    answer = master.call("GET_WEIGHTS")
    assert answer["type"] == "GET_WEIGHTS", answer
    infos = answer["get_weights"].get("weight_infos", [])
    return {info["role"]: info["weight"] for info in infos}


def role_weights(master):
    """GET_ROLES as ``{role: weight}``."""
    roles = master.call("GET_ROLES")["get_roles"].get("roles", [])
    return {role["name"]: role["weight"] for role in roles}


def v0_role_weights(master):
    """The v0 ``/roles`` as ``{role: weight}``."""
    response = master.get("/roles")
    response.raise_for_status()
    return {role["name"]: role["weight"] for role in response.json()["roles"]}


def update_weights(master, infos):
    return master.call(
        "UPDATE_WEIGHTS",
        update_weights={"weight_infos": [{"role": r, "weight": w} for r, w in infos]},
    )


def test_weights_flag_shows_in_get_weights_and_roles(meseta):
    master = meseta.master(extra_args=["--weights", "dev=2,prod/web=0.5"]).api
    assert weights(master) == {"dev": 2.0, "prod/web": 0.5}
    # Roles with a weight are listed even though no framework uses them.
    # As in Mesos, a weighted role's ancestors are listed too, and `*` only once used.
    roles = role_weights(master)
    assert roles == {"dev": 2.0, "prod": 1.0, "prod/web": 0.5}, roles
    assert v0_role_weights(master) == roles
    flags = {f["name"]: f["value"] for f in master.call("GET_FLAGS")["get_flags"]["flags"]}
    assert flags.get("weights") == "dev=2,prod/web=0.5", flags


def test_weights_env_variable(meseta):
    port = free_port()
    work_dir = meseta.base_dir / "env-master"
    args = ["master", "--port", str(port), "--work-dir", str(work_dir)]
    process = meseta.spawn("env-master", args, port=port, env={"MESETA_WEIGHTS": "batch=3"})
    assert weights(process.api) == {"batch": 3.0}


def test_update_then_get_weights(meseta):
    master = meseta.master().api
    assert weights(master) == {}
    assert update_weights(master, [("a", 2.0), ("b/c", 0.25)]) == {}
    assert weights(master) == {"a": 2.0, "b/c": 0.25}
    update_weights(master, [("a", 3.5)])
    assert weights(master) == {"a": 3.5, "b/c": 0.25}
    assert role_weights(master)["a"] == 3.5


@pytest.mark.parametrize(
    "infos",
    [
        [("good", 2.0), ("zero", 0.0)],
        [("negative", -1.0)],
        [("a/../b", 2.0)],
        [("/leading", 2.0)],
        [("with space", 2.0)],
    ],
)
def test_bad_update_weights_is_refused_and_changes_nothing(meseta, infos):
    master = meseta.master(extra_args=["--weights", "kept=2"]).api
    with pytest.raises(ApiError) as refused:
        update_weights(master, infos)
    assert refused.value.status == 400, refused.value
    assert weights(master) == {"kept": 2.0}


def test_v0_weights_endpoint(meseta):
    master = meseta.master().api
    response = master.get("/weights")
    assert response.status_code == 200 and response.json() == []
    response = requests.put(
        master.url + "/weights", json=[{"role": "v0role", "weight": 4.0}], timeout=10
    )
    assert response.status_code == 200, response.text
    assert master.get("/weights").json() == [{"role": "v0role", "weight": 4.0}]
    bad = requests.put(master.url + "/weights", json=[{"role": "x", "weight": 0}], timeout=10)
    assert bad.status_code == 400, bad.text
    assert weights(master) == {"v0role": 4.0}


def test_invalid_weights_flag_stops_the_master(meseta):
    master = meseta.master(extra_args=["--weights", "dev=zero"], wait=False)
    code = master.wait_exit(DEFAULT_TIMEOUT)
    assert code != 0
    assert "--weights" in master.output("stderr"), master.output("stderr")


def test_weights_survive_a_master_restart(meseta):
    work_dir = meseta.base_dir / "master"
    process = meseta.master(work_dir=work_dir, extra_args=["--weights", "flag=2"])
    master = process.api
    update_weights(master, [("api", 5.0)])
    assert weights(master) == {"flag": 2.0, "api": 5.0}

    process.restart()
    assert weights(master) == {"flag": 2.0, "api": 5.0}
    assert role_weights(master)["api"] == 5.0

    # The registry's weights win: a different --weights at a later start is ignored.
    process.kill()
    process.args = [a if a != "flag=2" else "flag=7,other=3" for a in process.args]
    process.start()
    assert weights(master) == {"flag": 2.0, "api": 5.0}
