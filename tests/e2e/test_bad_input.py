"""Malformed and invalid requests to the scheduler and operator APIs.

Each request must get the status code Mesos gives it (see the reference's "Status
codes" list) and change nothing. The tests share one ``meseta local``; the last one
checks that, after all of them, it is healthy, registered none of the refused
frameworks, and still runs a task.
"""

import getpass
import http.client
import json
import socket
import threading

import pytest

from conftest import HTTP_TIMEOUT, TERMINAL_STATES, SchedulerStream, wait_for

SCHEDULER = "/api/v1/scheduler"
JSON = "application/json"
# The name of every framework that a test below must fail to register.
REFUSED_NAME = "must-not-register"
# Larger than any sane request body limit for the scheduler API.
OVERSIZED_BODY_BYTES = 64 * 1024 * 1024


def framework_info(name=REFUSED_NAME, **extra):
    return {"user": getpass.getuser(), "name": name, **extra}


def subscribe_body(name=REFUSED_NAME, **extra):
    return json.dumps(
        {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info(name)}, **extra}
    )


def post(endpoint, path, body, content_type=JSON, **headers):
    """POSTs ``body`` (str or bytes) with the given Content-Type (None: none)."""
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.setdefault("Accept", JSON)
    return endpoint.post(
        path, data=body.encode() if isinstance(body, str) else body, headers=headers
    )


@pytest.fixture
def subscribed(module_cluster):
    """A framework subscribed on the shared cluster, closed after the test."""
    stream = SchedulerStream(module_cluster.master, framework_info("bad-input-probe"))
    yield stream
    stream.close()


def test_get_is_405(module_cluster):
    response = module_cluster.master.get(SCHEDULER)
    assert response.status_code == 405, response.text
    assert "POST" in response.headers.get("Allow", "")


def test_missing_content_type_is_400(module_cluster):
    response = post(module_cluster.master, SCHEDULER, subscribe_body(), content_type=None)
    assert response.status_code == 400, response.text


def test_unsupported_content_type_is_415(module_cluster):
    response = post(module_cluster.master, SCHEDULER, subscribe_body(), content_type="text/plain")
    assert response.status_code == 415, response.text


def test_malformed_json_is_400_with_a_reason(module_cluster):
    response = post(module_cluster.master, SCHEDULER, '{"type": "SUBSCRIBE", "subscribe": {')
    assert response.status_code == 400, response.text
    assert "json" in response.text.lower(), f"the body does not name the problem: {response.text!r}"


@pytest.mark.parametrize("call_type", ["NOT_A_CALL", 1])
def test_unknown_call_type_is_400(module_cluster, call_type):
    """Enums are names: an unknown name, or a number, is rejected."""
    response = post(module_cluster.master, SCHEDULER, json.dumps({"type": call_type}))
    assert response.status_code == 400, response.text
    assert response.text, "a 400 must say what is wrong"


def test_missing_required_field_is_400(module_cluster):
    """SUBSCRIBE without its ``subscribe`` message."""
    response = post(module_cluster.master, SCHEDULER, json.dumps({"type": "SUBSCRIBE"}))
    assert response.status_code == 400, response.text


def test_subscribe_framework_id_mismatch_is_400(module_cluster):
    """SUBSCRIBE's top-level framework_id must equal framework_info.id."""
    body = json.dumps(
        {
            "type": "SUBSCRIBE",
            "framework_id": {"value": "one-id"},
            "subscribe": {"framework_info": framework_info(id={"value": "another-id"})},
        }
    )
    response = post(module_cluster.master, SCHEDULER, body)
    assert response.status_code == 400, response.text


def test_subscribe_accepting_only_html_is_406(module_cluster):
    response = post(module_cluster.master, SCHEDULER, subscribe_body(), Accept="text/html")
    assert response.status_code == 406, response.text


def test_subscribe_with_a_stream_id_is_400(module_cluster):
    response = post(
        module_cluster.master, SCHEDULER, subscribe_body(), **{"Mesos-Stream-Id": "a-stream-id"}
    )
    assert response.status_code == 400, response.text


def test_call_for_unknown_framework_is_400(module_cluster):
    body = json.dumps({"type": "REVIVE", "framework_id": {"value": "no-such-framework"}})
    response = post(module_cluster.master, SCHEDULER, body)
    assert response.status_code == 400, response.text


def test_call_without_or_with_a_wrong_stream_id_is_400(subscribed):
    assert subscribed.call("REVIVE", stream_id=False).status_code == 400
    assert subscribed.call("REVIVE", stream_id="not-the-stream-id").status_code == 400
    response = subscribed.call("REVIVE")
    assert response.status_code == 202, response.text


def test_acknowledge_with_a_short_uuid_is_400(subscribed, module_cluster):
    response = subscribed.call(
        "ACKNOWLEDGE",
        acknowledge={
            "agent_id": {"value": module_cluster.agent_id},
            "task_id": {"value": "some-task"},
            "uuid": "AAAA",  # 3 bytes; a status update uuid has 16
        },
    )
    assert response.status_code == 400, response.text


def test_call_for_disconnected_framework_is_403(module_cluster):
    """A framework whose stream closed stays registered for its failover_timeout,
    but its calls get 403 until it subscribes again."""
    stream = SchedulerStream(
        module_cluster.master, framework_info("bad-input-failover", failover_timeout=60.0)
    )
    stream.close()

    def disconnected():
        for framework in module_cluster.master.frameworks().get("frameworks", []):
            if framework["framework_info"]["id"]["value"] == stream.framework_id:
                return not framework.get("connected", True)
        return False

    wait_for(disconnected, what="the master to see the framework disconnect")
    assert stream.call("REVIVE").status_code == 403


def _post_oversized(endpoint, path, size):
    """POSTs a ``size``-byte body (a call padded with spaces) and returns the status
    code. The body is sent from a thread while the answer is read, because the
    server may answer, and stop reading, before the body ends."""
    prefix = json.dumps({"type": "REVIVE", "framework_id": {"value": "no-such-framework"}}).encode()
    sock = socket.create_connection(("127.0.0.1", endpoint.port), timeout=HTTP_TIMEOUT)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {endpoint.address}\r\nContent-Type: {JSON}\r\n"
        f"Accept: {JSON}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )

    def send_body():
        padding = b" " * (1 << 20)
        try:
            sock.sendall(prefix)
            left = size - len(prefix)
            while left > 0:
                sock.sendall(padding[:left])
                left -= len(padding)
        except OSError:
            pass  # the server answered and closed the connection

    try:
        sock.sendall(head.encode())
        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status
    finally:
        sock.close()


def test_oversized_body_is_413(module_cluster):
    assert _post_oversized(module_cluster.master, SCHEDULER, OVERSIZED_BODY_BYTES) == 413


def test_json_content_type_with_charset_is_accepted(module_cluster):
    stream = SchedulerStream(
        module_cluster.master,
        framework_info("bad-input-charset"),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    try:
        assert stream.framework_id
    finally:
        stream.close()


@pytest.mark.parametrize(
    "method, body, content_type, status",
    [
        ("GET", None, None, 405),
        ("POST", '{"type": "GET_HEALTH"', JSON, 400),
        ("POST", '{"type": "NOT_A_CALL"}', JSON, 400),
        ("POST", '{"type": "GET_HEALTH"}', None, 400),
        ("POST", '{"type": "GET_HEALTH"}', "text/plain", 415),
    ],
)
def test_operator_api_rejects(module_cluster, method, body, content_type, status):
    if method == "GET":
        response = module_cluster.master.get("/api/v1")
    else:
        response = post(module_cluster.master, "/api/v1", body, content_type=content_type)
    assert response.status_code == status, response.text


def test_still_healthy_and_runs_a_task(module_cluster):
    """Runs last: nothing above broke the master or registered a refused framework."""
    master = module_cluster.master
    assert master.healthy()
    frameworks = master.frameworks()
    names = [
        f["framework_info"]["name"]
        for f in frameworks.get("frameworks", []) + frameworks.get("completed_frameworks", [])
    ]
    assert REFUSED_NAME not in names

    stream = SchedulerStream(master, framework_info("bad-input-survivor"))
    try:
        offer = stream.next_event("OFFERS")["offers"]["offers"][0]
        task = {
            "name": "after-bad-input",
            "task_id": {"value": "after-bad-input"},
            "agent_id": offer["agent_id"],
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
            ],
            "command": {"value": "true", "shell": True},
        }
        response = stream.call(
            "ACCEPT",
            accept={
                "offer_ids": [offer["id"]],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
            },
        )
        assert response.status_code == 202, response.text

        while True:
            status = stream.next_event(
                "UPDATE", predicate=lambda e: e["update"]["status"]["task_id"] == task["task_id"]
            )["update"]["status"]
            stream.acknowledge(status)
            if status["state"] in TERMINAL_STATES:
                break
        assert status["state"] == "TASK_FINISHED", status
    finally:
        stream.close()
