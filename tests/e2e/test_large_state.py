"""The master's whole-state answers when they are large: written in 256 KiB chunks and
sent as they are written (a chunked HTTP body), gzipped whole when asked.

What must hold: a GET_STATE (and v0 ``/master/state`` and ``/master/tasks``) of several
chunks reaches a Python client (requests, urllib3) as one document that parses, with
every task and every byte of its labels; two clients reading at once (sharing one build)
both get the whole of it; the gzipped answer holds the same document.
"""

import getpass
import gzip
import json
import threading
import uuid

from helpers import RawFramework, command_task, scalar

CHUNK = 256 * 1024
TASKS = 8
# Each task carries a label this long, so that the state is several chunks long.
LABEL_BYTES = 96 * 1024


def label_value(task_id):
    """A long label value of printable text that differs from task to task."""
    seed = task_id.encode().hex()
    return (seed * (LABEL_BYTES // len(seed) + 1))[:LABEL_BYTES]


def launch_labelled_tasks(cluster):
    """Runs TASKS short tasks with long labels to their end; returns their ids."""
    framework = RawFramework(cluster.master, {"user": getpass.getuser(), "name": "e2e-large-state"})
    ids = [f"large-{uuid.uuid4().hex[:8]}" for _ in range(TASKS)]
    offer = framework.wait(
        lambda: next(
            (o for o in framework.offers.values() if scalar(o["resources"], "cpus") >= 1.7),
            None,
        ),
        what="an offer with room for the tasks",
    )
    tasks = [
        command_task(
            task_id,
            cluster.agent_id,
            "true",
            cpus=0.1,
            mem=16,
            labels={"labels": [{"key": "payload", "value": label_value(task_id)}]},
        )
        for task_id in ids
    ]
    framework.accept([offer], tasks)
    for task_id in ids:
        framework.wait_state(task_id, "TASK_FINISHED")
    return ids


def read_chunked(endpoint, method, path, headers=None, **kwargs):
    """Reads an uncompressed answer chunk by chunk; returns (response, the chunks as
    sent)."""
    headers = {"Accept-Encoding": "identity", **(headers or {})}
    response = getattr(endpoint, method)(path, stream=True, headers=headers, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers.get("Transfer-Encoding") == "chunked", dict(response.headers)
    assert "Content-Length" not in response.headers
    return response, list(response.raw.read_chunked(decode_content=True))


def get_state_chunks(cluster):
    """GET_STATE, uncompressed, as the chunks it was sent in."""
    _, chunks = read_chunked(
        cluster.master,
        "post",
        "/api/v1",
        json={"type": "GET_STATE"},
        headers={"Accept": "application/json"},
    )
    return chunks


def labelled(tasks, ids):
    """The tasks among ``tasks`` (Mesos Task JSON) that are ours, by id, with their label."""
    return {
        t["task_id"]["value"]: t["labels"]["labels"][0]["value"]
        for t in tasks
        if t["task_id"]["value"] in ids
    }


def test_a_large_get_state_arrives_whole_in_chunks(cluster):
    ids = launch_labelled_tasks(cluster)
    chunks = get_state_chunks(cluster)
    body = b"".join(chunks)
    assert len(body) > 3 * CHUNK, len(body)
    assert len(chunks) >= 3, f"{len(chunks)} chunks for {len(body)} bytes"
    state = json.loads(body)["get_state"]
    completed = state["get_tasks"]["completed_tasks"]
    assert labelled(completed, ids) == {task_id: label_value(task_id) for task_id in ids}


def test_two_readers_at_once_both_get_the_whole_answer(cluster):
    ids = launch_labelled_tasks(cluster)
    results, errors = [], []

    def read():
        try:
            results.append(b"".join(get_state_chunks(cluster)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60)
    assert not errors, errors
    assert len(results) == 2
    for body in results:
        state = json.loads(body)["get_state"]
        assert len(labelled(state["get_tasks"]["completed_tasks"], ids)) == TASKS


def labelled_v0(tasks, ids):
    """:func:`labelled` for v0's Task JSON (``id`` a string, ``labels`` a list)."""
    return {t["id"]: t["labels"][0]["value"] for t in tasks if t["id"] in ids}


def test_large_v0_state_and_tasks_arrive_whole(cluster):
    ids = launch_labelled_tasks(cluster)
    _, chunks = read_chunked(cluster.master, "get", "/master/state")
    body = b"".join(chunks)
    assert len(chunks) >= 2 and len(body) > CHUNK, (len(chunks), len(body))
    state = json.loads(body)
    ours = [
        t
        for f in state["completed_frameworks"] + state["frameworks"]
        for t in f["completed_tasks"]
    ]
    assert labelled_v0(ours, ids) == {task_id: label_value(task_id) for task_id in ids}

    _, chunks = read_chunked(cluster.master, "get", "/master/tasks", params={"limit": 1000})
    tasks = json.loads(b"".join(chunks))["tasks"]
    assert labelled_v0(tasks, ids) == {task_id: label_value(task_id) for task_id in ids}


def test_a_large_gzipped_answer_holds_the_same_document(cluster):
    ids = launch_labelled_tasks(cluster)
    plain = cluster.master.post(
        "/api/v1", json={"type": "GET_STATE"}, headers={"Accept-Encoding": "identity"}
    )
    zipped = cluster.master.post(
        "/api/v1",
        json={"type": "GET_STATE"},
        headers={"Accept-Encoding": "gzip"},
        stream=True,
    )
    assert zipped.headers.get("Content-Encoding") == "gzip", dict(zipped.headers)
    document = json.loads(gzip.decompress(zipped.raw.read(decode_content=False)))
    assert len(plain.content) > 3 * CHUNK
    completed = document["get_state"]["get_tasks"]["completed_tasks"]
    assert labelled(completed, ids) == labelled(
        plain.json()["get_state"]["get_tasks"]["completed_tasks"], ids
    )
    assert len(labelled(completed, ids)) == TASKS
