"""Offer operation feedback through the scheduler API of a real master, with a raw v1
framework:

* RESERVE/UNRESERVE/CREATE/DESTROY that carry an ``id`` get UPDATE_OPERATION_STATUS
  events: OPERATION_FINISHED with the converted resources, OPERATION_ERROR with the
  reason for an invalid one, OPERATION_DROPPED for an ACCEPT of an offer no longer valid.
  Operations without an id get none.
* ACKNOWLEDGE_OPERATION_STATUS with the status's uuid ends a terminal operation's
  tracking (400 for a malformed uuid); what is not acknowledged is sent again when the
  framework subscribes again; RECONCILE_OPERATIONS answers 200 with the latest
  states, OPERATION_UNKNOWN for unknown ids, and 406 when JSON is not acceptable.
"""

import base64
import getpass
import json

from conftest import registered_agent
from helpers import RawFramework
from test_reservations import PRINCIPAL, reserved

ROLE = "feedback"
RESOURCES = "cpus:4;mem:1024;disk:1024"


class FeedbackFramework(RawFramework):
    """A raw framework in ``ROLE`` that records operation statuses in arrival order."""

    def __init__(self, endpoint):
        self.operation_statuses = []
        info = {
            "user": getpass.getuser(),
            "name": "e2e-operation-feedback",
            "role": ROLE,
            "principal": PRINCIPAL,
            "failover_timeout": 60.0,
        }
        super().__init__(endpoint, info)

    def _handle(self, event):
        if event.get("type") == "UPDATE_OPERATION_STATUS":
            self.operation_statuses.append(event["update_operation_status"]["status"])
        else:
            super()._handle(event)

    def status_of(self, operation_id):
        return next(
            (s for s in self.operation_statuses if s["operation_id"]["value"] == operation_id),
            None,
        )

    def accept_operations(self, offer, operations):
        self.take_offer(offer)
        self.call(
            "ACCEPT",
            accept={
                "offer_ids": [offer["id"]],
                "operations": operations,
                "filters": {"refuse_seconds": 0},
            },
        )

    def reconcile_operations(self, *operation_ids):
        response = self.stream.call(
            "RECONCILE_OPERATIONS",
            reconcile_operations={
                "operations": [{"operation_id": {"value": i}} for i in operation_ids]
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["type"] == "RECONCILE_OPERATIONS", body
        return {
            s["operation_id"]["value"]: s
            for s in body["reconcile_operations"]["operation_statuses"]
        }


def reserve(operation_id, role=ROLE, cpus=1.0):
    operation = {"type": "RESERVE", "reserve": {"resources": [reserved("cpus", cpus, role)]}}
    if operation_id:
        operation["id"] = {"value": operation_id}
    return operation


def unreserved_cpus(offer):
    return sum(
        r["scalar"]["value"]
        for r in offer["resources"]
        if r["name"] == "cpus" and r.get("role", "*") == "*" and not r.get("reservations")
    )


def reserved_cpus(master, agent_id):
    agent = next(
        a for a in master.agents() if a["agent_info"]["id"]["value"] == agent_id
    )
    return sum(
        r["scalar"]["value"]
        for r in agent["total_resources"]
        if r["name"] == "cpus" and (r.get("reservations") or [{}])[-1].get("role") == ROLE
    )


def test_operation_statuses_acknowledgement_and_reconciliation(meseta):
    process = meseta.master(extra_args=["--allocation-interval", "100ms"])
    master = process.api
    agent = meseta.agent(process, extra_args=("--resources", RESOURCES))
    agent_id = registered_agent(master, agent.port)["agent_info"]["id"]["value"]
    framework = FeedbackFramework(master)
    offer = framework.wait(lambda: next(iter(framework.offers.values()), None), what="an offer")
    framework.accept_operations(
        offer, [reserve("op-1"), reserve(None), reserve("op-bad", role="someone-else")]
    )
    framework.wait(lambda: len(framework.operation_statuses) >= 2, what="two operation statuses")
    done, bad = framework.status_of("op-1"), framework.status_of("op-bad")
    assert done["state"] == "OPERATION_FINISHED", done
    assert done["agent_id"]["value"] == agent_id
    assert [(r["name"], r["scalar"]["value"], r["role"]) for r in done["converted_resources"]] == [
        ("cpus", 1.0, ROLE)
    ], done
    assert bad["state"] == "OPERATION_ERROR", bad
    assert "allocated to role" in bad["message"], bad
    # Both reservations without errors happened; the one without an id said nothing.
    framework.listen(0.5)
    assert len(framework.operation_statuses) == 2, framework.operation_statuses
    assert reserved_cpus(master, agent_id) == 2.0

    states = framework.reconcile_operations("op-1", "op-bad", "never-sent")
    assert {i: s["state"] for i, s in states.items()} == {
        "op-1": "OPERATION_FINISHED",
        "op-bad": "OPERATION_ERROR",
        "never-sent": "OPERATION_UNKNOWN",
    }
    assert all("uuid" not in s for s in states.values()), states

    def acknowledge(status, uuid=None):
        ack = {"operation_id": status["operation_id"], "uuid": uuid or status["uuid"]["value"]}
        if "agent_id" in status:
            ack["agent_id"] = status["agent_id"]
        return framework.stream.call("ACKNOWLEDGE_OPERATION_STATUS", acknowledge_operation_status=ack)

    malformed = acknowledge(done, uuid=base64.b64encode(b"short").decode())
    assert malformed.status_code == 400 and "uuid" in malformed.text, malformed.text
    assert acknowledge(done).status_code == 202
    # Acknowledged and terminal: forgotten. Implicit reconciliation lists what is left.
    assert framework.reconcile_operations("op-1")["op-1"]["state"] == "OPERATION_UNKNOWN"
    assert list(framework.reconcile_operations()) == ["op-bad"]

    # An offer already used: the ACCEPT's operations are dropped.
    framework.accept_operations(offer, [reserve("op-late")])
    late = framework.wait(lambda: framework.status_of("op-late"), what="op-late's status")
    assert late["state"] == "OPERATION_DROPPED", late
    assert "no longer valid" in late["message"], late
    assert reserved_cpus(master, agent_id) == 2.0

    # Subscribing again, the framework gets the statuses it has not acknowledged.
    framework.resubscribe()
    framework.operation_statuses.clear()
    framework.wait(lambda: len(framework.operation_statuses) >= 2, what="the statuses again")
    again = {s["operation_id"]["value"]: s for s in framework.operation_statuses}
    assert sorted(again) == ["op-bad", "op-late"], again
    assert again["op-late"]["uuid"] == late["uuid"]
    for status in again.values():
        assert acknowledge(status).status_code == 202
    assert framework.reconcile_operations() == {}

    # A RESERVE with `source` in an ACCEPT: here the source is unreserved cpus.
    offer = framework.wait(
        lambda: next(
            (o for o in framework.offers.values() if unreserved_cpus(o) >= 1), None
        ),
        what="an offer of unreserved cpus",
    )
    source = {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}, "role": "*"}
    with_source = dict(reserve("op-src"))
    with_source["reserve"] = dict(with_source["reserve"], source=[source])
    framework.accept_operations(offer, [with_source])
    moved = framework.wait(lambda: framework.status_of("op-src"), what="op-src's status")
    assert moved["state"] == "OPERATION_FINISHED", moved
    assert reserved_cpus(master, agent_id) == 3.0

    # RECONCILE_OPERATIONS answers JSON only.
    response = framework.stream.endpoint.post(
        "/api/v1/scheduler",
        data=json.dumps(
            {
                "type": "RECONCILE_OPERATIONS",
                "framework_id": {"value": framework.id},
                "reconcile_operations": {"operations": []},
            }
        ),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/x-protobuf",
            "Mesos-Stream-Id": framework.stream.stream_id,
        },
    )
    assert response.status_code == 406, response.text
