"""Volumes for a task that runs as another user than the agent's (root): as in Mesos, the
task's sandbox, a SANDBOX_PATH (SELF) volume the agent creates for it and its persistent
volume are given to the task's user (`nobody`, the framework's user), so the task can
write in each of them. Once with the Linux launcher (`filesystem/linux`: the persistent
volume bind-mounted, `volume/sandbox_path`), once with the posix launcher (the
persistent volume linked into the sandbox).

Root only: the agent switches users only when it runs as root. As in Mesos, the task's
user must be able to reach the agent's work directory.
"""

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import registered_agent
from helpers import TERMINAL_STATES, RawFramework, wait_sandbox
from test_reservations import AGENT_ARGS, PRINCIPAL, ROLE, reserve_and_create, volume, volume_dir, volume_task

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent switches users only as root")

SCRATCH = {
    "container_path": "scratch",
    "mode": "RW",
    "source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "SELF", "path": "scratch"}},
}
WRITES = "id -u; touch $MESOS_SANDBOX/in-sandbox && touch data/in-volume && echo wrote"


class NobodyFramework(RawFramework):
    """A framework of the volume's role whose tasks run as `nobody`."""

    def __init__(self, endpoint):
        info = {
            "user": "nobody",
            "name": "e2e-volumes-as-nobody",
            "role": ROLE,
            "principal": PRINCIPAL,
            "checkpoint": True,
            "failover_timeout": 300.0,
        }
        super().__init__(endpoint, info)

    def run(self, agent_id, task):
        def with_volume():
            for offer in self.offers.values():
                disks = [r for r in offer["resources"] if "persistence" in r.get("disk", {})]
                if disks:
                    return offer
            return None

        offer = self.wait(with_volume, what="an offer holding the volume")
        self.accept([offer], [task])


@pytest.mark.parametrize(
    "isolation", ["filesystem/linux,volume/sandbox_path", None], ids=["linux", "posix"]
)
def test_a_task_running_as_nobody_writes_in_its_sandbox_and_volumes(meseta, isolation):
    from test_containerizer import remove_cgroups_of

    nobody = pwd.getpwnam("nobody").pw_uid
    master = meseta.master()
    args = AGENT_ARGS if isolation is None else (*AGENT_ARGS, "--isolation", isolation)
    # As with Mesos, the task's user must be able to reach the agent's work directory
    # (pytest's own temporary directories are root's alone).
    work_dir = Path(tempfile.mkdtemp(prefix="meseta-e2e-volumes-"))
    work_dir.chmod(0o755)
    agent = meseta.agent(master, extra_args=args, work_dir=work_dir)
    try:
        agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
        reserve_and_create(master, agent_id)
        framework = NobodyFramework(master.api)
        task = volume_task("writer", agent_id, WRITES, volume("v1", 128))
        if isolation is not None:
            task["container"] = {"type": "MESOS", "volumes": [SCRATCH]}
            task["command"]["value"] += " && touch scratch/in-scratch && echo wrote-scratch"
        framework.run(agent_id, task)
        ended = framework.wait(
            lambda: next((s for s in framework.statuses("writer") if s["state"] in TERMINAL_STATES), None),
            what="the writer to end",
        )
        sandbox = Path(wait_sandbox(agent.api, framework.id, "writer"))
        lines = (sandbox / "stdout").read_text().splitlines()
        expected = [str(nobody), "wrote"] + (["wrote-scratch"] if isolation else [])
        assert (ended["state"], lines) == ("TASK_FINISHED", expected), (sandbox / "stderr").read_text()
        written = [sandbox / "in-sandbox", volume_dir(agent, "v1") / "in-volume"]
        if isolation is not None:
            written.append(sandbox / "scratch" / "in-scratch")
            assert (sandbox / "scratch").stat().st_uid == nobody
        assert [p.stat().st_uid for p in written] == [nobody] * len(written)
        assert volume_dir(agent, "v1").stat().st_uid == nobody
    finally:
        meseta.shutdown()
        remove_cgroups_of(agent.work_dir / "containers")
        shutil.rmtree(work_dir, ignore_errors=True)
