//! Unit tests of dynamic reservations and persistent volumes in the core: offer
//! operations in ACCEPT, operator calls, offers by role and format, and recovery.

use super::*;
use meseta_api::internal::CheckpointResources;
use meseta_api::resources::Resource;
use proptest::prelude::*;

fn reserved(json: serde_json::Value) -> Resource {
    let mut r: Resource = serde_json::from_value(json).unwrap();
    r.validate().unwrap();
    r
}

fn reserve_json(role: &str, principal: &str, cpus: f64, disk: f64) -> serde_json::Value {
    json!([
        {"name":"cpus","type":"SCALAR","scalar":{"value":cpus},"role":role,"reservation":{"principal":principal}},
        {"name":"disk","type":"SCALAR","scalar":{"value":disk},"role":role,"reservation":{"principal":principal}},
    ])
}

fn volume_json(role: &str, principal: &str, id: &str, disk: f64) -> serde_json::Value {
    json!({"name":"disk","type":"SCALAR","scalar":{"value":disk},"role":role,
        "reservation":{"principal":principal},
        "disk":{"persistence":{"id":id,"principal":principal},"volume":{"container_path":"data","mode":"RW"}}})
}

/// A core whose agent has disk, and a framework in role `r` with principal `p` holding an
/// offer of all of it.
fn with_disk_offer() -> (Core, AgentId, FrameworkId, Offer) {
    let mut c = core();
    let mut info: AgentInfo = serde_json::from_value(json!({"hostname":"h","port":5051})).unwrap();
    info.resources = Resources::parse("cpus:4;mem:1024;disk:1000")
        .unwrap()
        .into_vec();
    let agent = c
        .register_agent(
            T0,
            "L1".into(),
            RegisterAgent {
                version: LINK_VERSION,
                agent_info: info,
                endpoint: "127.0.0.1:5051".into(),
                tasks: vec![],
                executors: vec![],
                frameworks: vec![],
                capabilities: vec![],
                checkpointed_resources: vec![],
            },
        )
        .unwrap();
    let fid = c
        .subscribe(
            T0,
            "S1".into(),
            framework_info(json!({"role":"r","principal":"p"})),
            vec![],
        )
        .unwrap();
    c.drain_effects();
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S1").pop().expect("an offer");
    (c, agent, fid, offer)
}

fn accept(c: &mut Core, fid: &FrameworkId, offer: &Offer, operations: serde_json::Value) {
    let accept: Accept = serde_json::from_value(json!({
        "offer_ids": [offer.id], "operations": operations, "filters": {"refuse_seconds": 0}
    }))
    .unwrap();
    c.accept(T0, fid, accept);
}

fn checkpointed_persisted(fx: &[Effect]) -> Vec<Resources> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Persist(RegistryChange::PutCheckpointedResources(_, r)) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn reserve_create_and_launch_on_the_volume_in_one_accept() {
    let (mut c, agent, fid, offer) = with_disk_offer();
    let mut task = task("t1", &agent, 1.0);
    task.resources = serde_json::from_value(json!([
        {"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"r","reservation":{"principal":"p"}},
        volume_json("r", "p", "v1", 64.0),
    ]))
    .unwrap();
    accept(
        &mut c,
        &fid,
        &offer,
        json!([
            {"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 1.0, 64.0)}},
            {"type":"CREATE","create":{"volumes":[volume_json("r", "p", "v1", 64.0)]}},
            {"type":"LAUNCH","launch":{"task_infos":[task]}},
        ]),
    );
    let fx = c.drain_effects();
    assert!(updates(&fx, "S1").is_empty(), "no task error: {fx:?}");
    // Each change is stored, then sent, and the agent hears of the volume before the task.
    let order: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(RegistryChange::PutCheckpointedResources(..)) => Some("persist"),
            Effect::ToLink(_, ToAgent::CheckpointResources(_)) => Some("checkpoint"),
            Effect::ToLink(_, ToAgent::RunTask(_)) => Some("run"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["persist", "checkpoint", "persist", "checkpoint", "run"]
    );
    let last = checkpointed_persisted(&fx).pop().unwrap();
    assert_eq!(last.to_string(), "cpus(r):1;disk(r)[v1:data]:64");
    let a = &c.agents[&agent];
    assert_eq!(a.total().scalar("cpus"), 4.0);
    assert_eq!(
        a.total().unreserved().to_string(),
        "cpus:3;mem:1024;disk:936"
    );
    assert_eq!(a.used_total().to_string(), "cpus(r):1;disk(r)[v1:data]:64");
    // The task holds the volume: destroying it is refused.
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S1").pop().unwrap();
    assert!(offer.resources.iter().all(|r| !r.is_persistent_volume()));
    accept(
        &mut c,
        &fid,
        &offer,
        json!([{"type":"DESTROY","destroy":{"volumes":[volume_json("r", "p", "v1", 64.0)]}}]),
    );
    assert!(checkpointed_persisted(&c.drain_effects()).is_empty());
    assert_eq!(c.metrics["master/invalid_operations"], 1);
}

#[test]
fn invalid_operations_are_dropped_and_change_nothing() {
    let refined = json!([{"name":"cpus","type":"SCALAR","scalar":{"value":1},
        "reservations":[{"type":"DYNAMIC","role":"r","principal":"p"},{"type":"DYNAMIC","role":"r/s","principal":"p"}]}]);
    let cases = [
        json!({"type":"RESERVE","reserve":{"resources": reserve_json("other", "p", 1.0, 1.0)}}),
        json!({"type":"RESERVE","reserve":{"resources": reserve_json("r", "q", 1.0, 1.0)}}),
        json!({"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 99.0, 1.0)}}),
        json!({"type":"RESERVE","reserve":{"resources": [{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]}}),
        json!({"type":"RESERVE","reserve":{"resources": refined}}),
        json!({"type":"RESERVE"}),
        json!({"type":"UNRESERVE","unreserve":{"resources": reserve_json("r", "p", 1.0, 1.0)}}),
        json!({"type":"CREATE","create":{"volumes":[{"name":"disk","type":"SCALAR","scalar":{"value":10},
            "disk":{"persistence":{"id":"v","principal":"p"},"volume":{"container_path":"d","mode":"RW"}}}]}}),
        json!({"type":"DESTROY","destroy":{"volumes":[volume_json("r", "p", "v1", 64.0)]}}),
    ];
    for (i, op) in cases.iter().enumerate() {
        let (mut c, agent, fid, offer) = with_disk_offer();
        let before = c.agents[&agent].total().clone();
        accept(&mut c, &fid, &offer, json!([op]));
        let fx = c.drain_effects();
        assert!(checkpointed_persisted(&fx).is_empty(), "case {i}: {op}");
        assert_eq!(*c.agents[&agent].total(), before, "case {i}");
        assert_eq!(c.metrics["master/invalid_operations"], 1, "case {i}");
    }
}

#[test]
fn volume_checks() {
    let (mut c, agent, fid, offer) = with_disk_offer();
    let mut escaping = volume_json("r", "p", "v1", 10.0);
    escaping["disk"]["volume"]["container_path"] = json!("/abs");
    let mut other_principal = volume_json("r", "p", "v2", 10.0);
    other_principal["disk"]["persistence"]["principal"] = json!("q");
    accept(
        &mut c,
        &fid,
        &offer,
        json!([
            {"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 1.0, 100.0)}},
            {"type":"CREATE","create":{"volumes":[escaping]}},
            {"type":"CREATE","create":{"volumes":[other_principal]}},
            {"type":"CREATE","create":{"volumes":[volume_json("r", "p", "v3", 10.0), volume_json("r", "p", "v3", 10.0)]}},
            {"type":"CREATE","create":{"volumes":[volume_json("r", "p", "v4", 10.0)]}},
            {"type":"UNRESERVE","unreserve":{"resources":[volume_json("r", "p", "v4", 10.0)]}},
            {"type":"CREATE","create":{"volumes":[volume_json("r", "p", "v4", 10.0)]}},
        ]),
    );
    assert_eq!(c.metrics["master/invalid_operations"], 5);
    let volumes: Vec<&str> = c.agents[&agent]
        .total()
        .iter()
        .filter_map(|r| r.persistence_id())
        .collect();
    assert_eq!(volumes, ["v4"]);
}

#[test]
fn destroy_and_unreserve_give_the_resources_back() {
    let (mut c, agent, fid, offer) = with_disk_offer();
    accept(
        &mut c,
        &fid,
        &offer,
        json!([
            {"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 1.0, 64.0)}},
            {"type":"CREATE","create":{"volumes":[volume_json("r", "p", "v1", 64.0)]}},
            {"type":"DESTROY","destroy":{"volumes":[volume_json("r", "p", "v1", 64.0)]}},
            {"type":"UNRESERVE","unreserve":{"resources": reserve_json("r", "p", 1.0, 64.0)}},
        ]),
    );
    let fx = c.drain_effects();
    assert_eq!(checkpointed_persisted(&fx).len(), 4);
    assert!(checkpointed_persisted(&fx).last().unwrap().is_empty());
    let a = &c.agents[&agent];
    assert_eq!(
        *a.total(),
        Resources::parse("cpus:4;mem:1024;disk:1000").unwrap()
    );
}

#[test]
fn offers_carry_reservations_in_the_framework_format() {
    let (mut c, agent, fid, offer) = with_disk_offer();
    accept(
        &mut c,
        &fid,
        &offer,
        json!([
            {"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 1.0, 64.0)}},
            {"type":"CREATE","create":{"volumes":[volume_json("r", "p", "v1", 64.0)]}},
        ]),
    );
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S1").pop().unwrap();
    let volume = offer
        .resources
        .iter()
        .find(|r| r.is_persistent_volume())
        .expect("the volume is offered to its role");
    assert_eq!(volume.role.as_deref(), Some("r"));
    assert_eq!(
        volume.reservation.as_ref().unwrap().principal.as_deref(),
        Some("p")
    );
    assert!(volume.reservations.is_empty(), "old format only");
    let unreserved = offer.resources.iter().find(|r| r.name == "mem").unwrap();
    assert_eq!(unreserved.role.as_deref(), Some("*"));
    // A framework with RESERVATION_REFINEMENT reads the stack; one in another role gets
    // none of the reserved resources.
    c.teardown(T0, &fid).unwrap();
    let refined_fid = c
        .subscribe(
            T0,
            "S2".into(),
            framework_info(json!({"role":"r","principal":"p",
                "capabilities":[{"type":"RESERVATION_REFINEMENT"}]})),
            vec![],
        )
        .unwrap();
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S2").pop().unwrap();
    let volume = offer
        .resources
        .iter()
        .find(|r| r.is_persistent_volume())
        .unwrap();
    assert!(volume.role.is_none() && volume.reservation.is_none());
    assert_eq!(volume.reservation_role(), "r");
    c.teardown(T0, &refined_fid).unwrap();
    c.subscribe(
        T0,
        "S3".into(),
        framework_info(json!({"role":"other"})),
        vec![],
    )
    .unwrap();
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S3").pop().unwrap();
    assert!(offer
        .resources
        .iter()
        .all(|r| r.role.as_deref() == Some("*")));
    assert_eq!(
        c.agents[&agent].available().reserved_by_role()["r"].scalar("disk"),
        64.0
    );
}

fn operation_statuses(fx: &[Effect]) -> Vec<meseta_api::operations::OperationStatus> {
    operation_statuses_of(fx, "S1")
}

fn operation_statuses_of(
    fx: &[Effect],
    stream: &str,
) -> Vec<meseta_api::operations::OperationStatus> {
    stream_events(fx, stream)
        .into_iter()
        .filter_map(|e| match e {
            Event::UpdateOperationStatus(u) => Some(u.status),
            _ => None,
        })
        .collect()
}

#[test]
fn operations_with_ids_get_their_status_and_others_none() {
    use meseta_api::operations::OperationState::*;
    let (mut c, agent, fid, offer) = with_disk_offer();
    accept(
        &mut c,
        &fid,
        &offer,
        json!([
            {"type":"RESERVE","id":{"value":"r1"},"reserve":{"resources": reserve_json("r", "p", 1.0, 10.0)}},
            {"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 1.0, 10.0)}},
            {"type":"RESERVE","id":{"value":"bad"},"reserve":{"resources": reserve_json("other", "p", 1.0, 1.0)}},
        ]),
    );
    let fx = c.drain_effects();
    let statuses = operation_statuses(&fx);
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    let (done, bad) = (&statuses[0], &statuses[1]);
    assert_eq!(done.operation_id, Some(OperationId::new("r1")));
    assert_eq!(done.state, OperationFinished);
    assert_eq!(done.agent_id.as_ref(), Some(&agent));
    // In the framework's (old) format: reserved for r.
    let converted = serde_json::to_value(&done.converted_resources).unwrap();
    assert_eq!(converted[0]["role"], "r", "{converted}");
    assert!(done.uuid.is_some());
    assert_eq!(bad.state, OperationError);
    assert!(
        bad.message
            .as_deref()
            .unwrap()
            .contains("allocated to role 'r'"),
        "{bad:?}"
    );
    // The status is persisted first: the registry write comes before the event.
    let persisted = fx
        .iter()
        .position(|e| matches!(e, Effect::Persist(_)))
        .unwrap();
    let sent = fx
        .iter()
        .position(|e| matches!(e, Effect::ToStream(_, Event::UpdateOperationStatus(_))))
        .unwrap();
    assert!(persisted < sent);
    // Reconciliation answers the latest states; acknowledging a terminal one forgets it.
    let asked = |id: &str| meseta_api::operations::ReconcileOperation {
        operation_id: OperationId::new(id),
        agent_id: None,
    };
    let now = c.reconcile_operations(&fid, &[asked("r1"), asked("nope")]);
    assert_eq!(
        (now[0].state, now[1].state),
        (OperationFinished, OperationUnknown)
    );
    let ack = meseta_api::operations::AcknowledgeOperationStatus {
        agent_id: Some(agent.clone()),
        uuid: done.uuid.clone().unwrap().value,
        operation_id: OperationId::new("r1"),
    };
    c.acknowledge_operation_status(&fid, ack.clone()).unwrap();
    assert_eq!(
        c.reconcile_operations(&fid, &[asked("r1")])[0].state,
        OperationUnknown
    );
    assert_eq!(c.reconcile_operations(&fid, &[]).len(), 1);
    let mut malformed = ack;
    malformed.uuid = meseta_api::json::Bytes(vec![1]);
    assert_eq!(
        c.acknowledge_operation_status(&fid, malformed)
            .unwrap_err()
            .status,
        400
    );
    // Subscribing again, the framework gets what it has not acknowledged.
    c.drain_effects();
    c.stream_closed(T0, &fid, "S1");
    c.subscribe(
        T0,
        "S1".into(),
        framework_info(json!({"role":"r","principal":"p","id":{"value": fid.as_str()}})),
        vec![],
    )
    .unwrap();
    let again = operation_statuses(&c.drain_effects());
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].operation_id, Some(OperationId::new("bad")));
    assert_eq!(again[0].uuid, bad.uuid);
    // An ACCEPT of an offer no longer valid drops its operations.
    accept(
        &mut c,
        &fid,
        &offer,
        json!([{"type":"UNRESERVE","id":{"value":"u1"},"unreserve":{"resources": reserve_json("r", "p", 1.0, 10.0)}}]),
    );
    let dropped = operation_statuses(&c.drain_effects());
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].state, OperationDropped);
    assert!(dropped[0]
        .message
        .as_deref()
        .unwrap()
        .contains("no longer valid"));
}

#[test]
fn reserve_with_source_moves_a_reservation_in_one_step() {
    let (mut c, agent, _fid, _offer) = with_disk_offer();
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": reserve_json("r", "ops", 2.0, 100.0)}),
    );
    c.operator_resource_op(&id, op).unwrap();
    c.drain_effects();
    // Move 1 cpu and the disk from r to s.
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "source": reserve_json("r", "ops", 1.0, 100.0),
               "resources": reserve_json("s", "ops", 1.0, 100.0)}),
    );
    assert!(matches!(op, ResourceOp::Rereserve { .. }));
    c.operator_resource_op(&id, op).unwrap();
    let stored = checkpointed_persisted(&c.drain_effects()).pop().unwrap();
    let by_role = stored.reserved_by_role();
    assert_eq!(by_role["r"].scalar("cpus"), 1.0);
    assert_eq!(by_role["r"].scalar("disk"), 0.0);
    assert_eq!(by_role["s"].scalar("cpus"), 1.0);
    assert_eq!(by_role["s"].scalar("disk"), 100.0);
    // Refused: quantities that differ, a source the agent does not have, a volume.
    let cases = [
        (
            json!({"agent_id": agent, "source": reserve_json("r", "ops", 1.0, 1.0),
                "resources": reserve_json("s", "ops", 0.5, 1.0)}),
            400,
            "differ in more than",
        ),
        (
            json!({"agent_id": agent, "source": reserve_json("r", "ops", 3.0, 1.0),
                "resources": reserve_json("s", "ops", 3.0, 1.0)}),
            409,
            "does not have",
        ),
        (
            json!({"agent_id": agent, "source": [volume_json("r", "ops", "v9", 1.0)],
                "resources": [reserved(json!({"name":"disk","type":"SCALAR","scalar":{"value":1},
                    "role":"s","reservation":{"principal":"ops"}}))]}),
            400,
            "persistent volume",
        ),
    ];
    for (body, status, words) in cases {
        let (id, op) = operator_op(OperationType::Reserve, body.clone());
        let err = c.operator_resource_op(&id, op).unwrap_err();
        assert_eq!(err.status, status, "{body}: {err:?}");
        assert!(err.message.contains(words), "{body}: {}", err.message);
    }
    assert!(checkpointed_persisted(&c.drain_effects()).is_empty());
    // An empty source is refused when read.
    let empty =
        json!({"agent_id": agent, "source": [], "resources": reserve_json("s", "ops", 1.0, 1.0)});
    assert!(ResourceOp::from_operator_call(OperationType::Reserve, &empty).is_err());
}

fn shared_volume() -> serde_json::Value {
    let mut v = volume_json("r", "ops", "sv", 100.0);
    v["shared"] = json!({});
    v
}

fn has_shared(offer: &Offer) -> bool {
    offer.resources.iter().any(|r| r.is_shared())
}

#[test]
fn shared_volumes_are_offered_again_while_in_use_to_frameworks_that_take_them() {
    let (mut c, agent, fid, _) = with_disk_offer();
    for (kind, body) in [
        (
            OperationType::Reserve,
            json!({"agent_id": agent, "resources": reserve_json("r", "ops", 1.0, 100.0)}),
        ),
        (
            OperationType::Create,
            json!({"agent_id": agent, "volumes": [shared_volume()]}),
        ),
    ] {
        let (id, op) = operator_op(kind, body);
        c.operator_resource_op(&id, op).unwrap();
    }
    // A framework without SHARED_RESOURCES never sees it.
    c.drain_effects();
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S1").pop().expect("an offer");
    assert!(!has_shared(&offer), "{offer:?}");
    c.teardown(T0, &fid).unwrap();
    let shared_fid = c
        .subscribe(
            T0,
            "S2".into(),
            framework_info(
                json!({"role":"r","principal":"p","capabilities":[{"type":"SHARED_RESOURCES"}]}),
            ),
            vec![],
        )
        .unwrap();
    c.drain_effects();
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S2").pop().expect("an offer");
    assert!(has_shared(&offer), "{offer:?}");
    // Two tasks of one ACCEPT use the volume; it is offered again while they run.
    let task_on_volume = |id: &str| {
        json!({"name": id, "task_id": {"value": id}, "agent_id": agent,
            "command": {"value": "true"},
            "resources": [{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}, shared_volume()]})
    };
    c.accept(
        T0,
        &shared_fid,
        serde_json::from_value(json!({
            "offer_ids": [offer.id],
            "operations": [{"type":"LAUNCH","launch":{"task_infos":[task_on_volume("t1"), task_on_volume("t2")]}}],
            "filters": {"refuse_seconds": 0}
        }))
        .unwrap(),
    );
    let fx = c.drain_effects();
    assert_eq!(
        link_messages(&fx, "L1")
            .iter()
            .filter(|m| matches!(m, ToAgent::RunTask(_)))
            .count(),
        2
    );
    // Both tasks use it; the framework holds it once.
    let held = &c.framework_allocations()[&shared_fid]["r"];
    assert_eq!((held.scalar("cpus"), held.scalar("disk")), (1.0, 100.0));
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S2").pop().expect("an offer");
    assert!(has_shared(&offer), "{offer:?}");
    // Destroying it while tasks use it is refused, through the offer and the operator.
    let before = c.agents[&agent].total().clone();
    accept(
        &mut c,
        &shared_fid,
        &offer,
        json!([{"type":"DESTROY","id":{"value":"d1"},"destroy":{"volumes":[shared_volume()]}}]),
    );
    let fx = c.drain_effects();
    assert!(checkpointed_persisted(&fx).is_empty());
    let refused = operation_statuses_of(&fx, "S2").pop().unwrap();
    assert!(
        refused
            .message
            .as_deref()
            .unwrap()
            .contains("shared persistent volume"),
        "{refused:?}"
    );
    assert_eq!(*c.agents[&agent].total(), before);
    let (id, op) = operator_op(
        OperationType::Destroy,
        json!({"agent_id": agent, "volumes": [shared_volume()]}),
    );
    let err = c.operator_resource_op(&id, op).unwrap_err();
    assert_eq!(err.status, 409, "{err:?}");
    // Shared is for persistent volumes only.
    let mut cpus = reserve_json("r", "ops", 1.0, 1.0);
    cpus[0]["shared"] = json!({});
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": cpus}),
    );
    let err = c.operator_resource_op(&id, op).unwrap_err();
    assert!(
        err.message
            .contains("only persistent volumes may be shared"),
        "{}",
        err.message
    );
}

fn limit_cpus(role: &str, cpus: f64) -> meseta_api::quota::UpdateQuota {
    serde_json::from_value(json!({"force": true, "quota_configs": [
        {"role": role, "limits": {"cpus": {"value": cpus}}}
    ]}))
    .unwrap()
}

#[test]
fn lowering_a_limit_below_an_offer_rescinds_it() {
    let (mut c, _agent, _fid, offer) = with_disk_offer();
    c.update_quota(&limit_cpus("other", 1.0)).unwrap();
    assert!(stream_events(&c.drain_effects(), "S1").is_empty());
    c.update_quota(&limit_cpus("r", 1.0)).unwrap();
    let fx = c.drain_effects();
    assert!(matches!(
        fx[0],
        Effect::Persist(RegistryChange::PutQuotas(_))
    ));
    assert!(stream_events(&fx, "S1")
        .iter()
        .any(|e| matches!(e, Event::Rescind(r) if r.offer_id == offer.id)));
    assert!(c.offers.is_empty());
    // The next offer keeps to the new limit.
    c.allocate(T0);
    let next = offers(&c.drain_effects(), "S1").pop().expect("an offer");
    assert_eq!(
        Resources::from_list(next.resources).unwrap().scalar("cpus"),
        1.0
    );
}

#[test]
fn a_reserve_beyond_the_roles_limit_is_refused() {
    // Offer operation: the framework holds an offer of 4 cpus; the limit (set without
    // going through UPDATE_QUOTA, which would rescind the offer) leaves room for 1.
    let (mut c, agent, fid, offer) = with_disk_offer();
    c.quotas = [(
        "r".to_string(),
        limit_cpus("r", 1.0).quota_configs.remove(0),
    )]
    .into();
    let before = c.agents[&agent].total().clone();
    accept(
        &mut c,
        &fid,
        &offer,
        json!([{"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 2.0, 1.0)}}]),
    );
    let fx = c.drain_effects();
    assert!(checkpointed_persisted(&fx).is_empty());
    assert_eq!(*c.agents[&agent].total(), before);
    assert_eq!(c.metrics["master/invalid_operations"], 1);
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S1").pop().expect("an offer");
    accept(
        &mut c,
        &fid,
        &offer,
        json!([{"type":"RESERVE","reserve":{"resources": reserve_json("r", "p", 1.0, 1.0)}}]),
    );
    assert_eq!(checkpointed_persisted(&c.drain_effects()).len(), 1);
    // Operator call: the role consumes its 1 cpu reserved; 1 more is beyond the limit.
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": reserve_json("r", "ops", 1.0, 1.0)}),
    );
    let err = c.operator_resource_op(&id, op).unwrap_err();
    assert_eq!(err.status, 400, "{err:?}");
    assert!(
        err.message.contains("beyond its quota limit of 1"),
        "{}",
        err.message
    );
    assert!(checkpointed_persisted(&c.drain_effects()).is_empty());
    // Other roles are not held to r's limit.
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": reserve_json("s", "ops", 1.0, 1.0)}),
    );
    c.operator_resource_op(&id, op).unwrap();
}

fn operator_op(kind: OperationType, body: serde_json::Value) -> (AgentId, ResourceOp) {
    ResourceOp::from_operator_call(kind, &body).unwrap()
}

#[test]
fn operator_reserve_rescinds_offers_and_refuses_what_tasks_use() {
    let (mut c, agent, fid, offer) = with_disk_offer();
    // The framework's offer holds everything: reserving rescinds it.
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": reserve_json("r", "ops", 2.0, 100.0)}),
    );
    c.operator_resource_op(&id, op).unwrap();
    let fx = c.drain_effects();
    assert!(stream_events(&fx, "S1")
        .iter()
        .any(|e| matches!(e, Event::Rescind(r) if r.offer_id == offer.id)));
    assert_eq!(checkpointed_persisted(&fx).len(), 1);
    assert!(link_messages(&fx, "L1")
        .iter()
        .any(|m| matches!(m, ToAgent::CheckpointResources(CheckpointResources { resources }) if resources.len() == 2)));
    // A task takes the reserved cpus; unreserving them is a conflict.
    c.allocate(T0);
    let offer = offers(&c.drain_effects(), "S1").pop().unwrap();
    let mut t = task("t1", &agent, 2.0);
    t.resources = serde_json::from_value(json!([
        {"name":"cpus","type":"SCALAR","scalar":{"value":2},"role":"r","reservation":{"principal":"ops"}}
    ]))
    .unwrap();
    c.accept(T0, &fid, launch(&offer, vec![t]));
    c.drain_effects();
    let (id, op) = operator_op(
        OperationType::Unreserve,
        json!({"agent_id": agent, "resources": reserve_json("r", "ops", 2.0, 100.0)}),
    );
    let err = c.operator_resource_op(&id, op).unwrap_err();
    assert_eq!(err.status, 409, "{err:?}");
    assert!(err.message.contains("in use by tasks"), "{}", err.message);
    // More than the agent has: also a conflict, saying so.
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": reserve_json("r", "ops", 1.0, 5000.0)}),
    );
    let err = c.operator_resource_op(&id, op).unwrap_err();
    assert_eq!(err.status, 409);
    assert!(err.message.contains("does not have"), "{}", err.message);
    // Unknown agent, bad input.
    let (_, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": reserve_json("r", "ops", 1.0, 1.0)}),
    );
    assert_eq!(
        c.operator_resource_op(&AgentId::new("nope"), op)
            .unwrap_err()
            .status,
        404
    );
    let (_, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": [{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]}),
    );
    assert_eq!(c.operator_resource_op(&agent, op).unwrap_err().status, 400);
    for bad in [
        json!({"resources": reserve_json("r", "ops", 1.0, 1.0)}),
        json!({"agent_id": agent, "resources": []}),
        json!({"agent_id": agent, "resources": [{"name":"cpus"}]}),
    ] {
        assert!(ResourceOp::from_operator_call(OperationType::Reserve, &bad).is_err());
    }
}

#[test]
fn checkpointed_resources_survive_master_restart_and_win_over_the_agent() {
    let (mut c, agent, _, _) = with_disk_offer();
    let (id, op) = operator_op(
        OperationType::Reserve,
        json!({"agent_id": agent, "resources": reserve_json("r", "ops", 1.0, 100.0)}),
    );
    c.operator_resource_op(&id, op).unwrap();
    let (id, op) = operator_op(
        OperationType::Create,
        json!({"agent_id": agent, "volumes": [volume_json("r", "ops", "v1", 100.0)]}),
    );
    c.operator_resource_op(&id, op).unwrap();
    let mut registry = registry_admitting(&c, &agent);
    for fx in checkpointed_persisted(&c.drain_effects()) {
        registry.apply(&RegistryChange::PutCheckpointedResources(agent.clone(), fx));
    }
    let total = c.agents[&agent].total().clone();
    let info = c.agents[&agent].info.clone();
    let master: MasterInfo = serde_json::from_value(json!({"id":"m2","ip":1,"port":1})).unwrap();
    let mut restarted = Core::new(master, c.config.clone(), registry, T0);
    assert_eq!(*restarted.agents[&agent].total(), total);
    // The agent comes back reporting stale checkpointed resources: the registry wins and
    // the agent is told.
    let stale = vec![reserved(
        json!({"name":"cpus","type":"SCALAR","scalar":{"value":3},
        "reservations":[{"type":"DYNAMIC","role":"old"}]}),
    )];
    restarted
        .register_agent(
            T0,
            "L9".into(),
            RegisterAgent {
                version: LINK_VERSION,
                agent_info: info.clone(),
                endpoint: "127.0.0.1:5051".into(),
                tasks: vec![],
                executors: vec![],
                frameworks: vec![],
                capabilities: vec![],
                checkpointed_resources: stale.clone(),
            },
        )
        .unwrap();
    assert_eq!(*restarted.agents[&agent].total(), total);
    let fx = restarted.drain_effects();
    assert!(checkpointed_persisted(&fx).is_empty());
    let sent: Vec<_> = link_messages(&fx, "L9")
        .into_iter()
        .filter_map(|m| match m {
            ToAgent::CheckpointResources(c) => Some(c.resources),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![total.checkpointed().into_vec()]);
    // A master that does not know the agent takes the agent's word, and stores it.
    let mut fresh = core();
    fresh
        .register_agent(
            T0,
            "L1".into(),
            RegisterAgent {
                version: LINK_VERSION,
                agent_info: info,
                endpoint: "127.0.0.1:5051".into(),
                tasks: vec![],
                executors: vec![],
                frameworks: vec![],
                capabilities: vec![],
                checkpointed_resources: stale,
            },
        )
        .unwrap();
    assert_eq!(
        fresh.agents[&agent].total().reserved_by_role()["old"].scalar("cpus"),
        3.0
    );
    assert_eq!(checkpointed_persisted(&fresh.drain_effects()).len(), 1);
}

proptest! {
    /// Whatever is reserved for whichever roles, each offer holds only unreserved
    /// resources and those reserved for the offer's role or one of its ancestors.
    #[test]
    fn reserved_resources_are_offered_only_to_their_role(
        reservations in proptest::collection::vec((0usize..4, 1u32..4), 0..6),
        framework_roles in proptest::collection::vec(0usize..4, 1..5),
    ) {
        let roles = ["a", "a/b", "c", "d/e"];
        let (mut c, agent, fid, _) = with_disk_offer();
        c.teardown(T0, &fid).unwrap();
        for (role, cpus) in &reservations {
            let cpus = *cpus as f64 / 4.0;
            let (id, op) = operator_op(
                OperationType::Reserve,
                json!({"agent_id": agent, "resources": [{"name":"cpus","type":"SCALAR",
                    "scalar":{"value":cpus},"reservations":[{"type":"DYNAMIC","role":roles[*role]}]}]}),
            );
            c.operator_resource_op(&id, op).unwrap();
        }
        for (i, role) in framework_roles.iter().enumerate() {
            c.subscribe(
                T0,
                format!("F{i}"),
                framework_info(json!({"roles":[roles[*role]],
                    "capabilities":[{"type":"MULTI_ROLE"},{"type":"RESERVATION_REFINEMENT"}]})),
                vec![],
            )
            .unwrap();
        }
        c.drain_effects();
        c.allocate(T0);
        for entry in c.offers.values() {
            for r in entry.resources.iter() {
                let reservation = r.reservation_role();
                prop_assert!(
                    reservation == "*"
                        || reservation == entry.role
                        || entry.role.starts_with(&format!("{reservation}/")),
                    "{} offered to role {}", reservation, entry.role
                );
            }
        }
    }
}
