"""The executor API on the agent's Unix socket (``--http-executor-domain-sockets``, on by
default, as Mesos's ``--http_executor_domain_sockets``).

What must hold: a command executor on the host's filesystem is told where the socket is
(``MESOS_DOMAIN_SOCKET``) and talks to its agent over it, with no TCP connection to the
agent; with the flag off there is no socket and executors use TCP; an executor whose
socket has vanished falls back to the TCP endpoint and its task still finishes.
"""

import getpass
import stat
import uuid
from pathlib import Path

from conftest import registered_agent, sandbox_directory, wait_for
from helpers import RawFramework

TIMEOUT = 60.0
AGENT_ARGS = ["--resources", "cpus:4;mem:2048;disk:1024;ports:[31000-31100]"]
# The task records its executor's pid and environment, then waits for a gate file, so
# that the executor's connections can be looked at while both are alive.
GATED = "echo $PPID > executor.pid; env > task.env; while [ ! -e gate ]; do sleep 0.1; done"


def start(meseta, extra_args=()):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=[*AGENT_ARGS, *extra_args])
    agent_id = registered_agent(master.api, agent.port)["agent_info"]["id"]["value"]
    info = {"user": getpass.getuser(), "name": "e2e-domain-socket"}
    return agent, agent_id, RawFramework(master.api, info)


def launch_gated(framework, agent, agent_id):
    """Returns (task id, executor pid, the task's environment, its gate path) once the
    task runs."""
    task_id = f"socket-{uuid.uuid4().hex[:8]}"
    framework.launch(agent_id, task_id, GATED)
    framework.wait_state(task_id, "TASK_RUNNING")
    sandbox = Path(sandbox_directory(agent.api, framework.id, task_id))
    pid_file, env_file = sandbox / "executor.pid", sandbox / "task.env"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), TIMEOUT, what="executor.pid")
    wait_for(lambda: env_file.exists() and env_file.read_text(), TIMEOUT, what="task.env")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return task_id, int(pid_file.read_text()), env, sandbox / "gate"


def socket_inodes(pid):
    """The inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def tcp_inodes_to_port(port):
    """Inodes of the IPv4 TCP sockets connected to local port ``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port:
            inodes.add(int(fields[9]))
    return inodes


def unix_inodes():
    return {int(line.split()[6]) for line in Path("/proc/net/unix").read_text().splitlines()[1:]}


def test_command_executors_talk_to_the_agent_over_its_socket(meseta):
    agent, agent_id, framework = start(meseta)
    socket_path = agent.work_dir / "agent.sock"
    assert stat.S_ISSOCK(socket_path.stat().st_mode), f"{socket_path} is not a socket"
    assert agent.api.get("/flags").json()["flags"]["http_executor_domain_sockets"] == "true"

    task_id, executor, env, gate = launch_gated(framework, agent, agent_id)
    assert env["MESOS_DOMAIN_SOCKET"] == str(socket_path)
    assert env["MESOS_AGENT_ENDPOINT"] == f"127.0.0.1:{agent.port}", "the TCP endpoint stays"
    # By now the executor has sent TASK_STARTING and TASK_RUNNING: its subscription and
    # its calls' connection are open, on the socket and not on TCP.
    held = socket_inodes(executor)
    assert not held & tcp_inodes_to_port(agent.port), "the executor holds a TCP link to its agent"
    assert len(held & unix_inodes()) >= 2, f"executor {executor} holds no Unix connections: {held}"

    gate.touch()
    framework.wait_state(task_id, "TASK_FINISHED")


def test_without_the_flag_executors_use_tcp(meseta):
    agent, agent_id, framework = start(meseta, ["--http-executor-domain-sockets=false"])
    assert not (agent.work_dir / "agent.sock").exists()
    assert agent.api.get("/flags").json()["flags"]["http_executor_domain_sockets"] == "false"

    task_id, executor, env, gate = launch_gated(framework, agent, agent_id)
    assert "MESOS_DOMAIN_SOCKET" not in env
    assert socket_inodes(executor) & tcp_inodes_to_port(agent.port), "no TCP link to the agent"

    gate.touch()
    framework.wait_state(task_id, "TASK_FINISHED")


def test_an_executor_whose_socket_is_gone_falls_back_to_tcp(meseta):
    agent, agent_id, framework = start(meseta)
    (agent.work_dir / "agent.sock").unlink()

    task_id, executor, env, gate = launch_gated(framework, agent, agent_id)
    assert env["MESOS_DOMAIN_SOCKET"] == str(agent.work_dir / "agent.sock")
    assert socket_inodes(executor) & tcp_inodes_to_port(agent.port), "no TCP link to the agent"

    gate.touch()
    framework.wait_state(task_id, "TASK_FINISHED")
    assert framework.states(task_id) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
