"""The ``meseta`` command line: subcommands, ports, flag spellings, flags from the
environment, bad flag values, and stopping on a signal."""

import os
import re
import signal
import socket
import subprocess

import pytest
import requests

from conftest import DEFAULT_TIMEOUT, ApiError, Endpoint, free_port, registered_agent, wait_for

# Stopping on a signal is bounded, not timed: this only catches a process that hangs.
STOP_TIMEOUT = 20.0


def listening(port):
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(2.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def flag(endpoint, name):
    """The value of flag ``name`` in the ``/flags`` of a master or agent."""
    response = endpoint.get("/flags")
    response.raise_for_status()
    return response.json()["flags"].get(name)


def same_path(a, b):
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


def wait_agent_registered(master, agent_port, timeout=DEFAULT_TIMEOUT):
    agent = Endpoint(agent_port)
    return wait_for(
        lambda: agent.healthy() and registered_agent(master, agent_port),
        timeout,
        what=f"the agent on port {agent_port} to answer /health and register",
        retry_on=(requests.RequestException, OSError, ApiError),
    )


def test_help_lists_the_commands(meseta_bin):
    result = subprocess.run(
        [str(meseta_bin), "--help"], capture_output=True, text=True, timeout=DEFAULT_TIMEOUT
    )
    assert result.returncode == 0, result
    for command in ("master", "agent", "local", "execute"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.MULTILINE), (
            f"`meseta --help` does not list {command}:\n{result.stdout}"
        )


def test_local_agent_listens_on_the_next_port(meseta):
    cluster = meseta.local()
    assert cluster.agent.port == cluster.master.port + 1
    assert cluster.agent.healthy()
    entry = registered_agent(cluster.master, cluster.master.port + 1)
    assert entry and entry["agent_info"]["id"]["value"] == cluster.agent_id, entry


def test_local_agent_port_moves_the_agent(meseta):
    port = free_port(2)  # P+1 stays free: nothing may listen there
    agent_port = free_port()
    work_dir = meseta.base_dir / "local"
    args = ["local", "--port", str(port), "--agent-port", str(agent_port)]
    process = meseta.spawn("local", [*args, "--work-dir", str(work_dir)], port=port)
    entry = wait_agent_registered(process.api, agent_port)
    assert entry["agent_info"].get("port") == agent_port, entry
    assert not listening(port + 1), f"something listens on {port + 1} despite --agent-port"


@pytest.mark.parametrize("command", ["master", "agent", "local"])
def test_snake_case_work_dir_alias(meseta, command):
    work_dir = meseta.base_dir / command / "data"
    port = free_port(2)
    if command == "master":
        process = meseta.spawn(
            command, ["master", "--port", str(port), "--work_dir", str(work_dir)], port=port
        )
        assert same_path(flag(process.api, "work_dir"), work_dir)
        assert (work_dir / "registry.redb").is_file(), sorted(os.listdir(work_dir))
    elif command == "agent":
        master = meseta.master()
        args = ["agent", "--master", master.address, "--port", str(port), "--work_dir"]
        process = meseta.spawn(command, [*args, str(work_dir)], port=port)
        wait_agent_registered(master.api, port)
        assert same_path(flag(process.api, "work_dir"), work_dir)
        assert work_dir.is_dir() and os.listdir(work_dir), "the agent left its work dir empty"
    else:
        process = meseta.spawn(
            command, ["local", "--port", str(port), "--work_dir", str(work_dir)], port=port
        )
        wait_agent_registered(process.api, port + 1)
        assert same_path(flag(process.api, "work_dir"), work_dir / "master")
        assert same_path(flag(Endpoint(port + 1), "work_dir"), work_dir / "agent")
        assert (work_dir / "master" / "registry.redb").is_file()


@pytest.mark.parametrize("command", ["master", "local"])
def test_work_dir_from_the_environment(meseta, command):
    home = meseta.base_dir / command
    work_dir = home / "from-env" / "nested"
    # Where meseta would go without a work dir: it must not.
    fallback = {"HOME": str(home / "home"), "XDG_DATA_HOME": str(home / "xdg")}
    port = free_port(2)
    process = meseta.spawn(
        command,
        [command, "--port", str(port)],
        port=port,
        env={"MESETA_WORK_DIR": str(work_dir), **fallback},
    )
    if command == "master":
        assert same_path(flag(process.api, "work_dir"), work_dir)
        assert (work_dir / "registry.redb").is_file()
    else:
        wait_agent_registered(process.api, port + 1)
        assert same_path(flag(process.api, "work_dir"), work_dir / "master")
        assert (work_dir / "master" / "registry.redb").is_file()
        assert (work_dir / "agent").is_dir()
    for path in fallback.values():
        assert not os.path.exists(path), f"meseta wrote under {path}"


@pytest.mark.parametrize("command", ["agent", "local"])
def test_bad_resources_stop_the_agent(meseta, command):
    port = free_port(2)
    work_dir = meseta.base_dir / command / "data"
    if command == "agent":
        master = meseta.master()
        args = ["agent", "--master", master.address, "--port", str(port)]
    else:
        master = None
        args = ["local", "--port", str(port)]
    args += ["--work-dir", str(work_dir), "--resources", "cpus:x"]
    process = meseta.spawn(command, args, wait=False)
    code = process.wait_exit(DEFAULT_TIMEOUT)
    assert code != 0, f"{command} exited with {code}\n{process.logs()}"
    stderr = process.output("stderr").replace(str(meseta.base_dir), "<tmp>")
    assert "cpus:x" in stderr or re.search(r"""['"`]x['"`]""", stderr), (
        f"the error does not name the bad value:\n{stderr}"
    )
    if master is not None:
        assert registered_agent(master.api, port) is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_local_cleanly(meseta, sig):
    cluster = meseta.local()
    process = cluster.process
    process.expect_exit()
    if sig == signal.SIGINT:
        os.killpg(process.pid, sig)  # as Ctrl-C does: to the whole foreground group
    else:
        process.popen.send_signal(sig)
    code = process.wait_exit(STOP_TIMEOUT)
    assert code == 0, f"exit status {code} after {sig.name}\n{process.logs()}"
    assert not listening(cluster.master.port) and not listening(cluster.agent.port)


def open_files_limits(pid):
    """The soft and hard 'Max open files' of a process, from /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError(f"no open files limit for {pid}")


def test_master_raises_its_open_files_limit(meseta_bin, tmp_path):
    """Started with a low soft limit (1,024, a common default), the master lifts it to the
    hard limit: it holds connections to thousands of agents."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 1024:
        pytest.skip(f"the hard open files limit is {hard}: nothing to raise")
    port = free_port()
    process = subprocess.Popen(
        [str(meseta_bin), "master", "--port", str(port), "--work-dir", str(tmp_path / "m")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)),
    )
    try:
        wait_for(lambda: Endpoint(port).healthy(), what="the master to answer /health")
        assert open_files_limits(process.pid) == (str(hard), str(hard))
    finally:
        process.terminate()
        process.wait(STOP_TIMEOUT)
