"""Executor authentication, end to end, held to what Mesos does (``slave/http.cpp``'s
``executor()`` and ``verifyExecutorClaims``, libprocess's ``jwt_authenticator.cpp``).

With ``--authenticate-http-executors`` and ``--executor-secret-key FILE`` the agent gives
every executor an HS256 JWT in ``MESOS_EXECUTOR_AUTHENTICATION_TOKEN`` whose claims are
its framework, executor and container ids (``fid``, ``eid``, ``cid``); every
``/api/v1/executor`` call must carry it as ``Authorization: Bearer <token>``. Without
one the call gets 401 with ``WWW-Authenticate: Bearer realm="mesos-agent-executor"``; with
one that does not verify, 401 with ``error="invalid_token"``; with a valid token of
another executor (or of an earlier run of this one), 403. Meseta's command executor
sends its token (and, as Mesos's, keeps it out of the task's environment). The tokens
here are made with Python's own HMAC from the key file, which also checks that the
agent reads standard JWTs. pymesos 0.3.15 executors send no token, so they run only
without the flag (the default).
"""

import base64
import getpass
import hashlib
import hmac
import json
import os

from conftest import HTTP_TIMEOUT, free_port, wait_for
from helpers import RawFramework, command_task, scalar_resource, wait_sandbox

REALM = 'Bearer realm="mesos-agent-executor"'


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(key, claims):
    """An HS256 JSON Web Token of ``claims`` signed with ``key``."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signed = f"{header}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{b64url(signature)}"


def executor_container(agent, framework_id, executor_id):
    """The container id of an executor of the agent's ``/state``, or None."""
    for framework in agent.state().get("frameworks", []):
        if framework["id"] == framework_id:
            for executor in framework.get("executors", []):
                if executor["id"] == executor_id:
                    return executor["container"]
    return None


def message(agent, framework_id, executor_id, token=None):
    """POSTs an executor MESSAGE call, with ``Authorization: Bearer token`` when given
    (a string: the whole header); returns the response."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = token if token.startswith("Basic ") else f"Bearer {token}"
    body = {
        "type": "MESSAGE",
        "framework_id": {"value": framework_id},
        "executor_id": {"value": executor_id},
        "message": {"data": base64.b64encode(b"hello").decode()},
    }
    return agent.post("/api/v1/executor", data=json.dumps(body), headers=headers)


def authenticating_cluster(meseta, tmp_path):
    """A ``meseta local`` whose agent requires executor tokens signed with a random key
    (and has disk, which a default executor needs); returns it, the key and its file."""
    key = os.urandom(32)
    key_file = tmp_path / "executor.key"
    key_file.write_bytes(key)
    cluster = meseta.local(
        extra_args=[
            "--authenticate-http-executors",
            "--executor-secret-key",
            str(key_file),
            "--resources",
            "cpus:4;mem:4096;disk:4096;ports:[31000-32000]",
        ]
    )
    return cluster, key, key_file


def test_executors_must_authenticate_with_their_own_token(meseta, tmp_path):
    cluster, key, key_file = authenticating_cluster(meseta, tmp_path)
    flags = cluster.agent.get("/flags").json()["flags"]
    assert flags["authenticate_http_executors"] == "true", flags
    assert flags["executor_secret_key"] == str(key_file), flags

    framework = RawFramework(cluster.master, {"user": getpass.getuser(), "name": "e2e-exec-auth"})
    # The command executor authenticates: its task runs to the end.
    framework.launch(cluster.agent_id, "done", "env; echo finished")
    framework.wait_state("done", "TASK_FINISHED")
    sandbox = wait_sandbox(cluster.agent, framework.id, "done")
    stdout = open(os.path.join(sandbox, "stdout"), errors="replace").read()
    assert "finished" in stdout, stdout
    assert "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" not in stdout, "the task sees the token"

    for task_id in ("mine", "theirs"):
        framework.launch(cluster.agent_id, task_id, "while true; do sleep 0.1; done")
        framework.wait_state(task_id, "TASK_RUNNING")
    fid, agent = framework.id, cluster.agent
    mine = wait_for(lambda: executor_container(agent, fid, "mine"), what="mine's container")
    theirs = wait_for(lambda: executor_container(agent, fid, "theirs"), what="theirs' container")

    # No token: 401 with the realm's challenge and no error details.
    response = message(agent, fid, "mine")
    assert response.status_code == 401, f"{response.status_code} {response.text}"
    assert response.headers["WWW-Authenticate"] == REALM, response.headers

    # Tokens that do not verify: 401 invalid_token.
    signed_elsewhere = jwt(b"another key", {"fid": fid, "eid": "mine", "cid": mine})
    for bad in (signed_elsewhere, "Basic dXNlcjpwYXNz", "not-a-jwt"):
        response = message(agent, fid, "mine", bad)
        assert response.status_code == 401, f"{bad}: {response.status_code} {response.text}"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith(REALM + ', error="invalid_token"'), challenge

    # Another executor's token, or an earlier run's: 403 naming the claim.
    response = message(agent, fid, "mine", jwt(key, {"fid": fid, "eid": "theirs", "cid": theirs}))
    assert response.status_code == 403, f"{response.status_code} {response.text}"
    assert "'eid' claim with the executor ID mine" in response.text, response.text
    stale = jwt(key, {"fid": fid, "eid": "mine", "cid": "an-earlier-run"})
    response = message(agent, fid, "mine", stale)
    assert response.status_code == 403, f"{response.status_code} {response.text}"
    assert "'cid' claim with the correct active ContainerID" in response.text, response.text

    # Its own token: accepted.
    response = message(agent, fid, "mine", jwt(key, {"fid": fid, "eid": "mine", "cid": mine}))
    assert response.status_code == 202, f"{response.status_code} {response.text}"


def test_the_default_executor_authenticates(meseta, tmp_path):
    cluster, _, _ = authenticating_cluster(meseta, tmp_path)
    framework = RawFramework(cluster.master, {"user": getpass.getuser(), "name": "e2e-auth-group"})
    offer = framework.wait(
        lambda: next(iter(framework.offers.values()), None), what="an offer"
    )
    framework.take_offer(offer)
    executor = {
        "type": "DEFAULT",
        "executor_id": {"value": "grouped"},
        "resources": [scalar_resource("cpus", 0.1), scalar_resource("mem", 32.0)]
        + [scalar_resource("disk", 16.0)],
    }
    tasks = [command_task("in-group", cluster.agent_id, "echo grouped")]
    group = {"executor": executor, "task_group": {"tasks": tasks}}
    framework.call(
        "ACCEPT",
        accept={
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH_GROUP", "launch_group": group}],
        },
    )
    framework.wait_state("in-group", "TASK_FINISHED")


def test_authentication_needs_a_secret_key(meseta, tmp_path):
    args = ["agent", "--master", "127.0.0.1:1", "--port", str(free_port())]
    args += ["--work-dir", str(tmp_path / "agent"), "--authenticate-http-executors"]
    agent = meseta.spawn("agent-without-key", args, wait=False)
    assert agent.wait_exit(HTTP_TIMEOUT) != 0
    assert "--authenticate-http-executors needs --executor-secret-key" in agent.output(), (
        agent.output()
    )
