"""Dynamic reservations and persistent volumes, end to end.

A real pymesos framework (without RESERVATION_REFINEMENT, so it reads and writes the old
``role``/``reservation`` format) reserves resources and creates a persistent volume in
one ACCEPT with the task that writes to it; a second task on the same volume reads what
the first wrote. The same through the operator API (RESERVE_RESOURCES, CREATE_VOLUMES),
after which a raw v1 framework in the role is offered the volume with its disk info and
one in another role is offered none of the reserved resources. Unreserving or destroying
what a running task uses is a 409; bad calls are 400 and 404. Reservations, volumes and
the volume's data survive kill -9 of the master and of the agent. DESTROY_VOLUMES removes
the volume's directory on the agent, UNRESERVE_RESOURCES gives the resources back.

The master and the agent run as separate processes (the ``meseta`` fixture), the agent
with fixed resources so that its info is the same on every restart.
"""

import getpass
import os
import threading
import uuid
from pathlib import Path

import pytest
from pymesos import MesosSchedulerDriver, Scheduler

from conftest import ApiError, Launcher, registered_agent, wait_for
from helpers import UPDATE_TIMEOUT, RawFramework, scalar, wait_sandbox

AGENT_ARGS = ("--resources", "cpus:2;mem:2048;disk:1024;ports:[31000-32000]")
ROLE = "storage"
PRINCIPAL = "e2e-principal"
# A restarted agent recovers and reregisters; a debug build on two busy cores is slow.
RECOVERY_TIMEOUT = 90.0


def reserved(name, value, role=ROLE, principal=PRINCIPAL):
    """A dynamically reserved scalar, in the old format (as pymesos frameworks write it)."""
    return {
        "name": name,
        "type": "SCALAR",
        "scalar": {"value": value},
        "role": role,
        "reservation": {"principal": principal},
    }


def volume(persistence_id, size, container_path="data", role=ROLE, principal=PRINCIPAL, mode="RW"):
    """A persistent volume on reserved disk, in the old format; ``mode`` is how a task
    mounts it (as in Mesos, not part of the volume's identity)."""
    return dict(
        reserved("disk", size, role, principal),
        disk={
            "persistence": {"id": persistence_id, "principal": principal},
            "volume": {"container_path": container_path, "mode": mode},
        },
    )


def volume_dir(agent, persistence_id, role=ROLE):
    return agent.work_dir / "volumes" / "roles" / role / persistence_id


def volume_task(task_id, agent_id, command, vol):
    """A command task on reserved cpus and mem with ``vol`` at its container path."""
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [reserved("cpus", 0.1), reserved("mem", 32), vol],
        "command": {"value": command, "shell": True},
    }


def start(meseta):
    """A master and an agent; returns (master, agent, agent id)."""
    master = meseta.master()
    agent = meseta.agent(master, extra_args=AGENT_ARGS)
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    return master, agent, agent_id


def agent_entry(master, agent_id):
    return next(a for a in master.api.agents() if a["agent_info"]["id"]["value"] == agent_id)


def total_of(master, agent_id):
    return agent_entry(master, agent_id)["total_resources"]


def volumes_in(resources):
    return [r["disk"]["persistence"]["id"] for r in resources if "persistence" in r.get("disk", {})]


def reserve_and_create(master, agent_id, cpus=0.5, mem=256, disk=128, persistence_id="v1"):
    """RESERVE_RESOURCES then CREATE_VOLUMES on the operator API."""
    agent = {"value": agent_id}
    master.api.call(
        "RESERVE_RESOURCES",
        reserve_resources={
            "agent_id": agent,
            "resources": [reserved("cpus", cpus), reserved("mem", mem), reserved("disk", disk)],
        },
    )
    master.api.call(
        "CREATE_VOLUMES",
        create_volumes={"agent_id": agent, "volumes": [volume(persistence_id, disk)]},
    )


class RoleFramework(RawFramework):
    """A raw v1 framework in a role, with a principal."""

    def __init__(self, endpoint, name, role=ROLE, capabilities=()):
        info = {
            "user": getpass.getuser(),
            "name": name,
            "role": role,
            "principal": PRINCIPAL,
            "checkpoint": True,
            "failover_timeout": 300.0,
            "capabilities": [{"type": c} for c in capabilities],
        }
        super().__init__(endpoint, info)

    def offer_with_volume(self, persistence_id):
        def found():
            for offer in self.offers.values():
                if persistence_id in volumes_in(offer["resources"]):
                    return offer
            return None

        return self.wait(found, what=f"an offer holding volume {persistence_id}")

    def run_on_volume(self, agent_id, task_id, command, vol):
        offer = self.offer_with_volume(vol["disk"]["persistence"]["id"])
        self.accept([offer], [volume_task(task_id, agent_id, command, vol)], refuse_seconds=0)


# ---------------------------------------------------------------------------
# Through the scheduler API, with pymesos


class VolumeScheduler(Scheduler):
    """On the first offer: RESERVE, CREATE and a writer task on the new volume in one
    ACCEPT. Once the writer finished: a reader task on the volume from a later offer.
    Records the offers' volumes and the tasks' states."""

    def __init__(self, token):
        self.token = token
        self.lock = threading.Lock()
        self.framework_id = None
        self.phase = "reserve"
        self.states = {}
        self.volume_offers = []
        self.errors = []

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                phase = self.phase
                vols = [r for r in offer["resources"] if "persistence" in r.get("disk", {})]
                self.volume_offers.extend(vols)
            agent_id = offer["agent_id"]["value"]
            filters = {"refuse_seconds": 0.5}
            if phase == "reserve" and scalar(offer["resources"], "disk") >= 64:
                vol = volume("pymesos-vol", 64)
                writer = volume_task(
                    "writer", agent_id, f"echo {self.token} > data/greeting && sync", vol
                )
                operations = [
                    {
                        "type": "RESERVE",
                        "reserve": {
                            "resources": [
                                reserved("cpus", 0.5),
                                reserved("mem", 128),
                                reserved("disk", 64),
                            ]
                        },
                    },
                    {"type": "CREATE", "create": {"volumes": [vol]}},
                    {"type": "LAUNCH", "launch": {"task_infos": [writer]}},
                ]
                with self.lock:
                    self.phase = "writing"
                driver.acceptOffers([offer["id"]], operations, filters)
            elif phase == "read" and vols:
                reader = volume_task(
                    "reader", agent_id, f'test "$(cat data/greeting)" = {self.token}', vols[0]
                )
                with self.lock:
                    self.phase = "reading"
                driver.launchTasks(offer["id"], [reader], filters)
            else:
                driver.declineOffer(offer["id"], filters)

    def statusUpdate(self, driver, status):
        with self.lock:
            task_id = status["task_id"]["value"]
            self.states.setdefault(task_id, []).append(status["state"])
            if task_id == "writer" and status["state"] == "TASK_FINISHED":
                self.phase = "read"

    def error(self, driver, message):
        with self.lock:
            self.errors.append(message)

    def state(self, task_id):
        with self.lock:
            states = self.states.get(task_id, [])
            return states[-1] if states else None


def test_pymesos_reserves_creates_a_volume_and_the_next_task_reads_its_data(meseta):
    master, agent, agent_id = start(meseta)
    token = uuid.uuid4().hex
    scheduler = VolumeScheduler(token)
    info = {
        "user": getpass.getuser(),
        "name": "e2e-volumes-pymesos",
        "role": ROLE,
        "principal": PRINCIPAL,
        "failover_timeout": 0.0,
    }
    driver = MesosSchedulerDriver(scheduler, info, master.address, use_addict=False)
    driver.start()
    try:
        for task_id in ("writer", "reader"):
            state = wait_for(
                lambda t=task_id: scheduler.state(t) in ("TASK_FINISHED", "TASK_FAILED")
                and scheduler.state(t),
                UPDATE_TIMEOUT,
                what=f"{task_id} to end",
            )
            assert state == "TASK_FINISHED", (task_id, scheduler.states)
        assert not scheduler.errors, scheduler.errors

        # The volume came back in an offer, in the old format with its disk info.
        offered = scheduler.volume_offers[0]
        assert offered["role"] == ROLE and offered["reservation"]["principal"] == PRINCIPAL
        assert offered["disk"]["persistence"]["id"] == "pymesos-vol", offered
        assert offered["disk"]["volume"]["container_path"] == "data", offered
        assert "reservations" not in offered, f"the refinement format leaked: {offered}"

        greeting = volume_dir(agent, "pymesos-vol") / "greeting"
        assert greeting.read_text().strip() == token
        state = master.api.state()
        slave = next(s for s in state["slaves"] if s["id"] == agent_id)
        assert slave["reserved_resources"][ROLE]["disk"] == 64.0, slave["reserved_resources"]
        assert slave["reserved_resources"][ROLE]["cpus"] == 0.5
        assert slave["unreserved_resources"]["disk"] == 1024 - 64
        full = slave["reserved_resources_full"][ROLE]
        assert volumes_in(full) == ["pymesos-vol"], full
    finally:
        driver.stop()
        driver.join()


# ---------------------------------------------------------------------------
# Through the operator API


def test_operator_reserves_and_creates_a_volume_that_only_its_role_is_offered(meseta):
    master, agent, agent_id = start(meseta)
    outsider = RoleFramework(master.api, "e2e-outsider", role="other")
    outsider.wait(lambda: outsider.offers, what="an offer to the outsider")

    reserve_and_create(master, agent_id)
    # The outsider's offer held everything: it was rescinded, and its new offers hold
    # no reserved resource.
    outsider.wait(
        lambda: outsider.offers
        and all(
            r.get("role", "*") == "*" for o in outsider.offers.values() for r in o["resources"]
        ),
        what="the outsider's offers to hold only unreserved resources",
    )
    # The agent hears of the volume over its link, after the 202.
    wait_for(volume_dir(agent, "v1").is_dir, what="the agent to create the volume's directory")

    total = total_of(master, agent_id)
    assert volumes_in(total) == ["v1"], total
    vol = next(r for r in total if volumes_in([r]))
    assert vol["reservations"] == [
        {"type": "DYNAMIC", "role": ROLE, "principal": PRINCIPAL}
    ], vol
    assert vol["role"] == ROLE, "GET_AGENTS also gives the old format where it can"

    framework = RoleFramework(master.api, "e2e-operator-volume")
    token = uuid.uuid4().hex
    vol = volume("v1", 128)
    framework.run_on_volume(agent_id, "write", f"echo {token} > data/f", vol)
    framework.wait_state("write", "TASK_FINISHED")
    assert (volume_dir(agent, "v1") / "f").read_text().strip() == token
    framework.run_on_volume(agent_id, "read", f'test "$(cat data/f)" = {token}', vol)
    framework.wait_state("read", "TASK_FINISHED")


def test_bad_operator_calls_are_refused_with_the_reason(meseta):
    master, _, agent_id = start(meseta)
    agent = {"value": agent_id}
    cases = [
        # Unreserved resources cannot be reserved "for *", nor volumes made on them.
        ("RESERVE_RESOURCES", {"agent_id": agent, "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}]}, 400, "not reserved"),
        ("CREATE_VOLUMES", {"agent_id": agent, "volumes": [dict(
            volume("v", 10), role="*", reservation=None)]}, 400, "unreserved resources"),
        ("CREATE_VOLUMES", {"agent_id": agent, "volumes": [
            volume("v", 10, container_path="/abs")]}, 400, "container_path"),
        ("RESERVE_RESOURCES", {"resources": [reserved("cpus", 1)]}, 400, "agent_id"),
        ("RESERVE_RESOURCES", {"agent_id": {"value": "no-such-agent"},
                               "resources": [reserved("cpus", 1)]}, 404, "not found"),
        ("RESERVE_RESOURCES", {"agent_id": agent, "resources": [reserved("cpus", 64)]},
         409, "does not have"),
        ("DESTROY_VOLUMES", {"agent_id": agent, "volumes": [volume("nope", 10)]},
         409, "does not have"),
    ]
    for call, body, status, words in cases:
        field = call.lower()
        with pytest.raises(ApiError) as refused:
            master.api.call(call, **{field: body})
        assert refused.value.status == status, (call, body, str(refused.value))
        assert words in str(refused.value), (call, str(refused.value))
    assert volumes_in(total_of(master, agent_id)) == []


def test_unreserving_or_destroying_what_a_task_uses_is_a_conflict(meseta):
    master, agent, agent_id = start(meseta)
    reserve_and_create(master, agent_id)
    framework = RoleFramework(master.api, "e2e-conflict")
    vol = volume("v1", 128)
    framework.run_on_volume(agent_id, "holder", "sleep 600", vol)
    framework.wait_state("holder", "TASK_RUNNING")

    target = {"value": agent_id}
    with pytest.raises(ApiError) as refused:
        master.api.call(
            "UNRESERVE_RESOURCES",
            unreserve_resources={"agent_id": target, "resources": [reserved("cpus", 0.5)]},
        )
    assert refused.value.status == 409 and "in use by tasks" in str(refused.value)
    with pytest.raises(ApiError) as refused:
        master.api.call("DESTROY_VOLUMES", destroy_volumes={"agent_id": target, "volumes": [vol]})
    assert refused.value.status == 409 and "in use by tasks" in str(refused.value)
    assert volume_dir(agent, "v1").is_dir()

    framework.call("KILL", kill={"task_id": {"value": "holder"}, "agent_id": target})
    framework.wait_state("holder", "TASK_KILLED")
    # Once the task is gone the same calls go through.
    wait_for(
        lambda: _accepted(
            master, "DESTROY_VOLUMES", destroy_volumes={"agent_id": target, "volumes": [vol]}
        ),
        what="DESTROY_VOLUMES to be accepted once the task ended",
        retry_on=(),
    )
    master.api.call(
        "UNRESERVE_RESOURCES",
        unreserve_resources={"agent_id": target, "resources": [reserved("cpus", 0.5)]},
    )


def _accepted(master, call, **fields):
    """Whether an operator call is accepted (a 409 means "not yet")."""
    try:
        master.api.call(call, **fields)
    except ApiError as refused:
        if refused.status != 409:
            raise
        return False
    return True


def test_destroy_and_unreserve_clean_up(meseta):
    master, agent, agent_id = start(meseta)
    reserve_and_create(master, agent_id)
    directory = volume_dir(agent, "v1")
    wait_for(directory.is_dir, what="the agent to create the volume's directory")
    (directory / "leftover").write_text("x")
    target = {"value": agent_id}
    master.api.call(
        "DESTROY_VOLUMES", destroy_volumes={"agent_id": target, "volumes": [volume("v1", 128)]}
    )
    wait_for(lambda: not directory.exists(), what="the agent to remove the volume's directory")
    assert volumes_in(total_of(master, agent_id)) == []
    master.api.call(
        "UNRESERVE_RESOURCES",
        unreserve_resources={
            "agent_id": target,
            "resources": [reserved("cpus", 0.5), reserved("mem", 256), reserved("disk", 128)],
        },
    )
    total = total_of(master, agent_id)
    assert all("reservations" not in r for r in total), total
    state = master.api.state()
    slave = next(s for s in state["slaves"] if s["id"] == agent_id)
    assert slave["reserved_resources"] == {}, slave["reserved_resources"]
    assert slave["unreserved_resources"]["disk"] == 1024


# ---------------------------------------------------------------------------
# Restarts


def test_reservations_and_volumes_survive_master_and_agent_restarts(meseta):
    master, agent, agent_id = start(meseta)
    reserve_and_create(master, agent_id)
    framework = RoleFramework(master.api, "e2e-volume-restarts")
    token = uuid.uuid4().hex
    vol = volume("v1", 128)
    framework.run_on_volume(agent_id, "write", f"echo {token} > data/f", vol)
    framework.wait_state("write", "TASK_FINISHED")
    framework.disconnect()
    before = sorted(map(repr, total_of(master, agent_id)))

    master.kill()
    master.start()
    Launcher.wait_registered(agent, master.api, RECOVERY_TIMEOUT)
    wait_for(
        lambda: agent_entry(master, agent_id).get("active"),
        RECOVERY_TIMEOUT,
        what="the agent to reregister with the restarted master",
    )
    assert sorted(map(repr, total_of(master, agent_id))) == before

    agent.kill()
    agent.start()
    wait_for(
        lambda: agent_entry(master, agent_id).get("reregistered_time")
        and agent_entry(master, agent_id).get("active"),
        RECOVERY_TIMEOUT,
        what="the restarted agent to reregister",
    )
    assert sorted(map(repr, total_of(master, agent_id))) == before
    assert (volume_dir(agent, "v1") / "f").read_text().strip() == token

    reader = RoleFramework(master.api, "e2e-volume-reader")
    reader.run_on_volume(agent_id, "read", f'test "$(cat data/f)" = {token}', vol)
    reader.wait_state("read", "TASK_FINISHED")


# ---------------------------------------------------------------------------
# Bind-mounted under filesystem/linux


@pytest.mark.skipif(os.geteuid() != 0, reason="the Linux launcher needs root")
def test_filesystem_linux_mounts_volumes_read_write_or_read_only(meseta):
    """With the Linux launcher and filesystem/linux the volume is bind-mounted at its
    container path (a directory in the sandbox, not a symlink): a task that uses it RW
    writes to it; one that uses the same volume RO reads that data, and its writes fail
    with EROFS."""
    from test_containerizer import remove_cgroups_of

    master = meseta.master()
    agent = meseta.agent(master, extra_args=(*AGENT_ARGS, "--isolation", "filesystem/linux"))
    try:
        agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
        reserve_and_create(master, agent_id)
        framework = RoleFramework(master.api, "e2e-mounted-volume")
        token = uuid.uuid4().hex
        not_a_link = "test -d data && test ! -L data && grep -q \" $PWD/data \" /proc/self/mountinfo"
        framework.run_on_volume(
            agent_id, "rw", f"{not_a_link} && echo {token} > data/f", volume("v1", 128)
        )
        framework.wait_state("rw", "TASK_FINISHED")
        assert (volume_dir(agent, "v1") / "f").read_text().strip() == token
        reader = (
            f'{not_a_link} && test "$(cat data/f)" = {token} && '
            "! touch data/g 2> err && grep 'Read-only file system' err"
        )
        framework.run_on_volume(agent_id, "ro", reader, volume("v1", 128, mode="RO"))
        framework.wait_state("ro", "TASK_FINISHED")
        assert not (volume_dir(agent, "v1") / "g").exists()
        for task_id in ("rw", "ro"):
            placed = Path(wait_sandbox(agent.api, framework.id, task_id)) / "data"
            assert placed.is_dir() and not placed.is_symlink(), placed
            assert not any(placed.iterdir()), "the data is in the volume, not the mount point"
    finally:
        meseta.shutdown()
        remove_cgroups_of(agent.work_dir / "containers")


def test_reserve_with_source_moves_a_reservation_to_another_role(meseta):
    master, _, agent_id = start(meseta)
    agent = {"value": agent_id}

    def reserved_for(role):
        return [
            (r["name"], r["scalar"]["value"])
            for r in total_of(master, agent_id)
            if (r.get("reservations") or [{}])[-1].get("role") == role
        ]

    master.api.call(
        "RESERVE_RESOURCES",
        reserve_resources={"agent_id": agent, "resources": [reserved("cpus", 1), reserved("mem", 64)]},
    )
    # The same quantities, reserved for another role in place of the first.
    master.api.call(
        "RESERVE_RESOURCES",
        reserve_resources={
            "agent_id": agent,
            "source": [reserved("cpus", 1)],
            "resources": [reserved("cpus", 1, role="elsewhere")],
        },
    )
    assert reserved_for(ROLE) == [("mem", 64.0)]
    assert reserved_for("elsewhere") == [("cpus", 1.0)]
    with pytest.raises(ApiError) as refused:
        master.api.call(
            "RESERVE_RESOURCES",
            reserve_resources={
                "agent_id": agent,
                "source": [reserved("mem", 64)],
                "resources": [reserved("mem", 32, role="elsewhere")],
            },
        )
    assert refused.value.status == 400 and "differ in more than" in str(refused.value)
    assert reserved_for(ROLE) == [("mem", 64.0)]


def test_shared_volume_is_offered_while_in_use_only_to_frameworks_that_share(meseta):
    master, _, agent_id = start(meseta)
    agent = {"value": agent_id}
    master.api.call(
        "RESERVE_RESOURCES",
        reserve_resources={
            "agent_id": agent,
            "resources": [reserved("cpus", 0.5), reserved("mem", 256), reserved("disk", 64)],
        },
    )
    shared = dict(volume("shared-vol", 64), shared={})
    master.api.call("CREATE_VOLUMES", create_volumes={"agent_id": agent, "volumes": [shared]})

    sharing = RoleFramework(master.api, "e2e-shared-volume", capabilities=["SHARED_RESOURCES"])
    sharing.run_on_volume(agent_id, "writer", "echo hello > data/f && sleep 60", shared)
    sharing.wait_state("writer", "TASK_RUNNING")
    # In use by the writer, the volume is offered again; a second task reads the data.
    reader = "for i in $(seq 100); do grep -q hello data/f && exit 0; sleep 0.1; done; exit 1"
    sharing.run_on_volume(agent_id, "reader", reader, shared)
    sharing.wait_state("reader", "TASK_FINISHED")
    # Destroying it while the writer uses it is a conflict.
    with pytest.raises(ApiError) as refused:
        master.api.call("DESTROY_VOLUMES", destroy_volumes={"agent_id": agent, "volumes": [shared]})
    assert refused.value.status == 409, str(refused.value)

    # A framework without SHARED_RESOURCES is offered the role's reserved resources (the
    # sharing one turns down everything) but never the volume.
    plain = RoleFramework(master.api, "e2e-no-sharing")

    def reserved_offer():
        sharing.poll()
        ids = [o["id"] for o in sharing.offers.values()]
        sharing.offers.clear()
        if ids:
            sharing.call("DECLINE", decline={"offer_ids": ids, "filters": {"refuse_seconds": 300}})
        for offer in plain.offers.values():
            if any(r.get("role") == ROLE for r in offer["resources"]):
                return offer
        return None

    offer = plain.wait(reserved_offer, what="an offer of the role's reserved resources")
    assert volumes_in(offer["resources"]) == [], offer
