#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Engine::process` for regular actors with a scripted native handler: protocol.md §8
//! (steps 1–13), §8.2 frame dispatch, §9 resiliency, §10 SLA, §11 error taxonomy,
//! §12 ack/requeue and fan-out, §13 reporting.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use time::macros::datetime;
use troupe_engine::handler::HandlerFailure;
use troupe_engine::metrics::ActorStats;
use troupe_engine::Disposition;
use troupe_protocol::resiliency::Resiliency;
use troupe_transport::DeliveryHandle;

fn resiliency(policies: Value, rules: Value) -> Resiliency {
    Resiliency::from_values(Some(&policies), Some(&rules))
        .unwrap()
        .unwrap()
}

/// Handler that passes the payload on along the route.
fn forward(b: &Bench) -> troupe_engine::Handler {
    b.native(|e| Ok(vec![pass_through(e, json!({"r": 2}))]))
}

/// Handler that always fails with `ValueError`.
fn failing(b: &Bench) -> troupe_engine::Handler {
    b.native(|_| Err(value_error("boom")))
}

// ------------------------------------------------------------------ step 1: parse

#[tokio::test]
async fn unparseable_body_goes_to_sump_as_parse_error() {
    let b = Bench::new(settings());
    let h = forward(&b);
    assert_eq!(b.run(&h, "not json").await, Disposition::Acked);
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sump");
    let err = body["payload"]["error"].as_str().unwrap();
    assert!(err.starts_with("Failed to parse message: "), "{err}");
    assert_eq!(body["payload"]["original_body"], "not json");
    // A generated id, so x-sump can store it and the mesh API list it.
    let id = body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert!(b
        .stats
        .last_error()
        .unwrap()
        .starts_with(&format!("{id}: Failed to parse message")));
    assert_eq!(
        body["route"],
        json!({"prev": [], "curr": "x-sump", "next": []})
    );
    assert_eq!(
        body["status"],
        json!({"phase": "failed", "reason": "ParseError", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": NOW_TS, "updated_at": NOW_TS})
    );
    assert_eq!(b.reporter_calls(), 0, "no id, no reports");
    assert!(b.handled().is_empty());
    b.assert_acked_last();
    assert_eq!(ActorStats::get(&b.stats.failed), 1);
}

#[tokio::test]
async fn empty_id_goes_to_sump_keeping_the_envelope() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["id"] = json!("");
    v["headers"]["x-asya-gateway-url"] = json!("http://gw-int");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sump");
    assert_eq!(
        body["payload"]["error"],
        "Message missing required 'id' field"
    );
    assert_eq!(body["payload"]["original_payload"], json!({"q": 1}));
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    let raw: Value =
        serde_json::from_str(body["payload"]["original_body"].as_str().unwrap()).unwrap();
    assert_eq!(raw, v, "the raw body is kept");
    assert_eq!(body["route"], v["route"]);
    assert_eq!(body["headers"], v["headers"], "headers kept for x-sump");
    assert_eq!(body["status"]["reason"], "ParseError");
    assert_eq!(body["status"]["created_at"], CREATED);
    assert_eq!(body["status"]["deadline_at"], DEADLINE);
    assert_eq!(b.reporter_calls(), 0);
    b.assert_acked_last();
}

#[tokio::test]
async fn every_kind_of_unusable_body_goes_to_sump_with_an_id_reason_and_raw_body() {
    for (raw, reason) in [
        ("", "Failed to parse message: "),
        ("<html>", "Failed to parse message: "),
        ("[1, 2]", "Failed to parse message: "),
        ("{\"payload\": {\"x\": 1}}", ""),
    ] {
        let b = Bench::new(settings());
        let h = forward(&b);
        assert_eq!(b.run(&h, raw).await, Disposition::Acked, "{raw}");
        let (q, body) = b.single_send();
        assert_eq!(q, "q.x-sump");
        assert!(
            uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok(),
            "{raw}"
        );
        assert_eq!(body["status"]["reason"], "ParseError", "{raw}");
        assert!(
            body["payload"]["error"]
                .as_str()
                .unwrap()
                .starts_with(reason),
            "{raw}"
        );
        assert_eq!(body["payload"]["original_body"], raw, "{raw}");
        assert!(b.handled().is_empty());
    }
}

#[tokio::test]
async fn parse_error_is_requeued_when_the_sump_send_fails() {
    let b = Bench::new(settings());
    b.transport
        .fail
        .lock()
        .unwrap()
        .queues
        .insert("q.x-sump".into());
    let h = forward(&b);
    assert_eq!(b.run(&h, "{").await, Disposition::Requeued);
    b.assert_requeued();
    assert_eq!(ActorStats::get(&b.stats.requeued), 1);
    // Also for an empty id.
    let b = Bench::new(settings());
    b.transport
        .fail
        .lock()
        .unwrap()
        .queues
        .insert("q.x-sump".into());
    let mut v = input();
    v["id"] = json!("");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Requeued);
    b.assert_requeued();
}

// ------------------------------------------------------------------ step 4: pre-flight

#[tokio::test]
async fn preflight_canceled_and_paused_divert_to_sink() {
    for (gw_status, phase, reason) in [
        ("canceled", "canceled", "PreFlightCanceled"),
        ("paused", "paused", "PreFlightPaused"),
    ] {
        let b = Bench::new(settings());
        b.reporter.set_status("t1", gw_status);
        let h = forward(&b);
        assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
        let (q, body) = b.single_send();
        assert_eq!(q, "q.x-sink");
        let mut expected = input();
        expected["status"] = json!({"phase": phase, "reason": reason, "actor": "b",
            "attempt": 1, "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
            "deadline_at": DEADLINE});
        assert_eq!(body, expected, "only the status changes");
        assert!(b.handled().is_empty(), "handler not run");
        assert!(b.events().is_empty(), "no received/processing reports");
        assert_eq!(
            b.ops()[0],
            Op::TaskStatus {
                gateway: GW.into(),
                id: "t1".into()
            }
        );
        b.assert_acked_last();
    }
}

#[tokio::test]
async fn preflight_with_other_status_continues() {
    for status in ["running", "pending", "succeeded", "whatever"] {
        let b = Bench::new(settings());
        b.reporter.set_status("t1", status);
        let h = forward(&b);
        b.run_json(&h, &input()).await;
        assert_eq!(b.handled().len(), 1, "{status}");
        assert_eq!(b.single_send().0, "q.c");
    }
}

#[tokio::test]
async fn preflight_only_when_reporting_is_enabled() {
    // No gateway URL at all.
    let mut s = settings();
    s.gateway_url = None;
    let b = Bench::new(s);
    b.reporter.set_status("t1", "canceled");
    let h = forward(&b);
    b.run_json(&h, &input()).await;
    assert_eq!(b.reporter_calls(), 0);
    assert_eq!(b.single_send().0, "q.c");
    // Stealth.
    let b = Bench::new(settings());
    b.reporter.set_status("t1", "canceled");
    let h = forward(&b);
    let mut v = input();
    v["headers"]["x-asya-mesh-status"] = json!("off");
    b.run_json(&h, &v).await;
    assert_eq!(b.reporter_calls(), 0);
    assert_eq!(b.single_send().0, "q.c");
}

#[tokio::test]
async fn header_gateway_url_is_used_for_every_call() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["headers"]["x-asya-gateway-url"] = json!("http://gw-int:8081/");
    b.run_json(&h, &v).await;
    let gws: Vec<String> = b
        .ops()
        .into_iter()
        .filter_map(|op| match op {
            Op::TaskStatus { gateway, .. } | Op::Event { gateway, .. } => Some(gateway),
            _ => None,
        })
        .collect();
    assert_eq!(gws.len(), 4, "pre-flight, received, processing, completed");
    assert!(gws.iter().all(|g| g == "http://gw-int:8081"), "{gws:?}");
}

// ------------------------------------------------------------------ steps 5 and 10: SLA

#[tokio::test]
async fn expired_sla_goes_to_sink_as_timeout_with_final_error() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["status"]["deadline_at"] = json!("2026-01-01T00:00:09Z");
    v["status"]["phase"] = json!("retrying");
    v["status"]["error"] = json!({"message": "old", "type": "ValueError"});
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    assert!(b.handled().is_empty());
    let ops = b.ops();
    assert!(matches!(ops[0], Op::TaskStatus { .. }));
    assert_eq!(
        ops[1],
        Op::Event {
            gateway: GW.into(),
            id: "t1".into(),
            body: json!({"type": "status", "status": "failed", "data": {
                "id": "t1", "status": "failed", "error": "SLA deadline expired",
                "timestamp": NOW_TS}})
        },
        "final error posted before the sink send; no received event"
    );
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(
        body["status"],
        json!({"phase": "failed", "reason": "Timeout", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": "2026-01-01T00:00:09Z"})
    );
    assert_eq!(body["route"], v["route"]);
    assert_eq!(body["payload"], v["payload"]);
    assert!(
        body["headers"].get("x-asya-first-attempt").is_none(),
        "not stamped"
    );
    b.assert_acked_last();
    assert_eq!(ActorStats::get(&b.stats.failed), 1);
}

#[tokio::test]
async fn deadline_equal_to_now_is_not_expired_but_too_short_to_run() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["status"]["deadline_at"] = json!(NOW_TS);
    b.run_json(&h, &v).await;
    // Step 5 lets it through (not in the past); step 10 finds < 1 s.
    assert_eq!(
        b.event_kinds(),
        vec!["received", "processing", "failed"],
        "{:#?}",
        b.events()
    );
    assert!(b.handled().is_empty());
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["status"]["reason"], "Timeout");
}

#[tokio::test]
async fn less_than_a_second_left_takes_the_sla_path_after_stamping() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["status"]["deadline_at"] = json!("2026-01-01T00:00:10.600Z");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    assert!(b.handled().is_empty(), "runtime not called");
    let events = b.events();
    assert_eq!(b.event_kinds(), vec!["received", "processing", "failed"]);
    assert_eq!(events[2].1["data"]["error"], "SLA deadline expired");
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(
        body["status"],
        json!({"phase": "failed", "reason": "Timeout", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": "2026-01-01T00:00:10.600Z"})
    );
    assert_eq!(
        body["headers"]["x-asya-first-attempt"], NOW_TS,
        "the stamped envelope goes to the sink"
    );
    b.assert_acked_last();
}

#[tokio::test]
async fn one_second_left_still_runs() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["status"]["deadline_at"] = json!("2026-01-01T00:00:11Z");
    b.run_json(&h, &v).await;
    assert_eq!(b.handled().len(), 1);
}

#[tokio::test]
async fn stealth_sla_expiry_posts_nothing() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["headers"]["x-asya-mesh-status"] = json!("off");
    v["status"]["deadline_at"] = json!("2020-01-01T00:00:00Z");
    b.run_json(&h, &v).await;
    assert_eq!(b.reporter_calls(), 0);
    assert_eq!(b.single_send().0, "q.x-sink");
}

// ------------------------------------------------------------------ reports (steps 6, 8, §8.2.1)

#[tokio::test]
async fn progress_reports_carry_routes_and_fields() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let body = serde_json::to_vec(&input()).unwrap();
    let len = body.len();
    assert_eq!(b.run(&h, body).await, Disposition::Acked);
    let ops = b.ops();
    // Order: pre-flight, received, processing, handler, completed, send, ack.
    let kinds: Vec<&str> = ops
        .iter()
        .map(|o| match o {
            Op::TaskStatus { .. } => "preflight",
            Op::Event { .. } => "event",
            Op::Handled(_) => "handled",
            Op::Send { .. } => "send",
            Op::Ack(_) => "ack",
            Op::AfterDispatch => "after",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "preflight",
            "event",
            "event",
            "handled",
            "event",
            "send",
            "after",
            "ack"
        ]
    );
    let events = b.events();
    assert!(events.iter().all(|(id, _)| id == "t1"));
    let kb = (len as f64 / 1024.0 * 100.0).round() / 100.0;
    assert_eq!(
        events[0].1,
        json!({"type": "status", "status": "received", "data": {
            "prev": ["a"], "curr": "b", "next": ["c"], "status": "received",
            "message": format!("Received message ({kb:.2} KB)"), "message_size_kb": kb}})
    );
    assert_eq!(
        events[1].1,
        json!({"type": "status", "status": "processing", "data": {
            "prev": ["a"], "curr": "b", "next": ["c"], "status": "processing",
            "message": "Processing in b"}})
    );
    let completed = &events[2].1;
    assert_eq!(completed["status"], "completed");
    let d = &completed["data"];
    assert_eq!(
        (d["prev"].clone(), d["curr"].clone(), d["next"].clone()),
        (json!(["a", "b"]), json!("c"), json!([])),
        "output route of frame 0"
    );
    let ms = d["duration_ms"]
        .as_u64()
        .expect("duration_ms is an integer");
    assert_eq!(
        d["message"],
        format!("Completed processing in {ms}ms"),
        "message and field agree"
    );
    b.assert_acked_last();
}

#[tokio::test]
async fn stealth_envelope_makes_no_gateway_calls_at_all() {
    let b = Bench::new(settings());
    // Fan-out with a pause frame: would register children and post pause events.
    let h = b.native(|e| {
        let mut paused = pass_through(e, json!(3));
        let mut hs = e.headers.clone();
        hs.insert("x-asya-pause".into(), json!({"prompt": "p"}));
        paused.headers = Some(hs);
        Ok(vec![
            pass_through(e, json!(1)),
            pass_through(e, json!(2)),
            paused,
        ])
    });
    let mut v = input();
    v["headers"]["x-asya-mesh-status"] = json!("off");
    v["headers"]["x-asya-gateway-url"] = json!("http://gw-int");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    assert_eq!(b.reporter_calls(), 0, "{:#?}", b.ops());
    assert_eq!(b.sends().len(), 2);
    // Also on failures.
    let b = Bench::new(settings());
    let h = failing(&b);
    b.run_json(&h, &v).await;
    assert_eq!(b.reporter_calls(), 0);
}

// ------------------------------------------------------------------ step 7: route check

#[tokio::test]
async fn route_mismatch_goes_to_sump() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["route"]["curr"] = json!("zz");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    assert!(b.handled().is_empty());
    assert_eq!(
        b.event_kinds(),
        vec!["received"],
        "received, then no processing"
    );
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sump");
    assert_eq!(
        body["payload"],
        json!({"error": "Route mismatch: message routed to wrong actor (expected: b, actual: zz)",
               "original_payload": {"q": 1}})
    );
    assert_eq!(body["route"], v["route"]);
    assert_eq!(body["headers"], v["headers"]);
    assert_eq!(
        body["status"],
        json!({"phase": "failed", "reason": "RouteMismatch", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE}),
        "actor is the original status.actor"
    );
    assert_eq!(body["parent_id"], "p0");
    b.assert_acked_last();
}

#[tokio::test]
async fn legacy_route_shape_is_a_route_mismatch() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let v = json!({"id": "t1", "route": {"actors": ["a", "b"], "current": 1}, "payload": 1});
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sump");
    assert_eq!(body["status"]["reason"], "RouteMismatch");
}

#[tokio::test]
async fn override_lets_a_physical_actor_accept_its_logical_name() {
    let mut s = settings();
    s.actor = "b-canary".into();
    let b = Bench::new(s);
    let h = forward(&b);
    let mut v = input();
    v["headers"]["x-asya-route-override"] = json!({"b": "b-canary"});
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    let seen = b.handled();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["route"]["curr"], "b", "route unchanged");
    assert_eq!(seen[0]["status"]["actor"], "b-canary");
    assert_eq!(b.single_send().0, "q.c");
    // An override to someone else does not help.
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["route"]["curr"] = json!("logical");
    v["headers"]["x-asya-route-override"] = json!({"logical": "other"});
    b.run_json(&h, &v).await;
    assert_eq!(b.single_send().0, "q.x-sump");
}

#[tokio::test]
async fn asya_style_policy_routed_hand_off_is_accepted() {
    let mut s = settings();
    s.actor = "apologize".into();
    let b = Bench::new(s);
    let h = b.native(|e| Ok(vec![pass_through(e, json!("sorry"))]));
    let v = json!({
        "id": "t1",
        "route": {"prev": ["a"], "curr": "b", "next": ["apologize"]},
        "status": {"phase": "failed", "reason": "PolicyRouted", "actor": "b", "attempt": 3,
                   "max_attempts": 3, "created_at": CREATED, "updated_at": CREATED,
                   "error": {"message": "boom", "type": "ValueError"}},
        "payload": {"q": 1}
    });
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    let seen = b.handled();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["route"],
        json!({"prev": ["a", "b"], "curr": "apologize", "next": []})
    );
    assert_eq!(
        seen[0]["status"],
        json!({"phase": "processing", "actor": "apologize", "attempt": 1, "max_attempts": 0,
               "created_at": CREATED, "updated_at": NOW_TS}),
        "fresh arrival: attempt reset, reason and error cleared"
    );
    let processing = &b.events()[1].1;
    assert_eq!(
        processing["data"]["curr"], "apologize",
        "processing shows the advanced route"
    );
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["payload"], "sorry");
}

// ------------------------------------------------------------------ step 9: stamping

#[tokio::test]
async fn fresh_arrival_is_stamped_before_the_handler() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["headers"]["x-asya-first-attempt"] = json!("2020-01-01T00:00:00Z");
    v["status"]["attempt"] = json!(7);
    b.run_json(&h, &v).await;
    let seen = &b.handled()[0];
    assert_eq!(
        seen["status"],
        json!({"phase": "processing", "actor": "b", "attempt": 1, "max_attempts": 0,
               "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE})
    );
    assert_eq!(seen["headers"]["x-asya-first-attempt"], NOW_TS);
    assert_eq!(seen["id"], "t1");
    assert_eq!(seen["parent_id"], "p0");
}

#[tokio::test]
async fn retry_arrival_keeps_attempt_and_first_attempt() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["headers"]["x-asya-first-attempt"] = json!("2026-01-01T00:00:01Z");
    v["status"]["phase"] = json!("retrying");
    v["status"]["attempt"] = json!(3);
    v["status"]["max_attempts"] = json!(5);
    v["status"]["error"] = json!({"message": "boom"});
    b.run_json(&h, &v).await;
    let seen = &b.handled()[0];
    assert_eq!(
        seen["status"],
        json!({"phase": "processing", "actor": "b", "attempt": 3, "max_attempts": 0,
               "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE})
    );
    assert_eq!(
        seen["headers"]["x-asya-first-attempt"],
        "2026-01-01T00:00:01Z"
    );
}

#[tokio::test]
async fn input_without_status_gets_one() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v.as_object_mut().unwrap().remove("status");
    v.as_object_mut().unwrap().remove("headers");
    b.run_json(&h, &v).await;
    let seen = &b.handled()[0];
    assert_eq!(
        seen["status"],
        json!({"phase": "processing", "actor": "b", "attempt": 1, "max_attempts": 0,
               "created_at": NOW_TS, "updated_at": NOW_TS})
    );
    assert_eq!(seen["headers"], json!({"x-asya-first-attempt": NOW_TS}));
}

// ------------------------------------------------------------------ §8.2 dispatch

#[tokio::test]
async fn frame_to_next_actor_is_pending_there_with_deadline() {
    let b = Bench::new(settings());
    let h = forward(&b);
    b.run_json(&h, &input()).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.c");
    assert_eq!(
        body,
        json!({
            "id": "t1", "parent_id": "p0",
            "route": {"prev": ["a", "b"], "curr": "c", "next": []},
            "headers": {"trace": "x", "x-asya-first-attempt": NOW_TS},
            "status": {"phase": "pending", "actor": "c", "attempt": 1, "max_attempts": 1,
                       "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE},
            "payload": {"r": 2}
        })
    );
    b.assert_acked_last();
    assert_eq!(ActorStats::get(&b.stats.succeeded), 1);
}

#[tokio::test]
async fn frame_past_the_end_goes_to_sink_succeeded() {
    let b = Bench::new(settings());
    let h = b.native(|e| Ok(vec![advanced(e, json!({"done": 1}), &[])]));
    b.run_json(&h, &input()).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(
        body["route"],
        json!({"prev": ["a", "b"], "curr": "", "next": []})
    );
    assert_eq!(
        body["status"],
        json!({"phase": "succeeded", "reason": "Completed", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE})
    );
    let completed = &b.events()[2].1;
    assert_eq!(completed["data"]["curr"], "");
}

#[tokio::test]
async fn handler_routing_to_sink_or_sump_ends_the_route() {
    for end in ["x-sink", "x-sump"] {
        let b = Bench::new(settings());
        let h = b.native(move |e| Ok(vec![advanced(e, json!(1), &[end, "c"])]));
        b.run_json(&h, &input()).await;
        let (q, body) = b.single_send();
        assert_eq!(q, "q.x-sink", "{end}");
        assert_eq!(body["status"]["phase"], "succeeded");
    }
}

#[tokio::test]
async fn custom_sink_and_sump_names() {
    let mut s = settings();
    s.sink = "my-sink".into();
    s.sump = "my-sump".into();
    let b = Bench::new(s);
    let h = b.native(|e| Ok(vec![advanced(e, json!(1), &[])]));
    b.run_json(&h, &input()).await;
    assert_eq!(b.single_send().0, "q.my-sink");
    let b2 = Bench::new({
        let mut s = settings();
        s.sump = "my-sump".into();
        s
    });
    let h = forward(&b2);
    b2.run(&h, "garbage").await;
    assert_eq!(b2.single_send().0, "q.my-sump");
}

#[tokio::test]
async fn frame_headers_replace_input_headers() {
    let b = Bench::new(settings());
    let h = b.native(|e| {
        let mut f = pass_through(e, json!(1));
        f.headers = Some(json!({"only": "this"}).as_object().cloned().unwrap());
        Ok(vec![f])
    });
    b.run_json(&h, &input()).await;
    assert_eq!(b.single_send().1["headers"], json!({"only": "this"}));
}

#[tokio::test]
async fn route_override_on_send() {
    let b = Bench::new(settings());
    let h = forward(&b);
    let mut v = input();
    v["headers"]["x-asya-route-override"] = json!({"c": "c-v2"});
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.c-v2");
    assert_eq!(body["route"]["curr"], "c", "route unchanged");
    assert_eq!(
        body["headers"]["x-asya-route-resolved"],
        json!({"c": {"target": "c-v2", "by": "b"}})
    );
    assert_eq!(body["status"]["actor"], "c");
}

#[tokio::test]
async fn zero_frames_send_the_stamped_input_to_sink() {
    let b = Bench::new(settings());
    let h = b.native(|_| Ok(vec![]));
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    let mut expected = input();
    expected["headers"]["x-asya-first-attempt"] = json!(NOW_TS);
    expected["status"] = json!({"phase": "succeeded", "reason": "Completed", "actor": "b",
        "attempt": 1, "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
        "deadline_at": DEADLINE});
    assert_eq!(body, expected, "route unadvanced, payload unchanged");
    assert_eq!(b.event_kinds(), vec!["received", "processing"]);
    b.assert_acked_last();
}

#[tokio::test]
async fn fan_out_ids_parent_ids_and_child_registration() {
    let b = Bench::new(settings());
    let h = b.native(|e| Ok((0..3).map(|i| pass_through(e, json!({ "i": i }))).collect()));
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
    let sends = b.sends();
    assert_eq!(sends.len(), 3);
    assert_eq!(sends[0].1["id"], "t1");
    assert_eq!(
        sends[0].1["parent_id"], "p0",
        "frame 0 keeps the input parent_id"
    );
    let mut ids = std::collections::HashSet::new();
    for (q, body, _) in &sends[1..] {
        assert_eq!(q, "q.c");
        let id = body["id"].as_str().unwrap();
        let u = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(id, u.hyphenated().to_string());
        assert_eq!(body["parent_id"], "t1");
        assert!(ids.insert(id.to_owned()), "ids are unique");
    }
    for (i, (_, body, _)) in sends.iter().enumerate() {
        assert_eq!(body["payload"], json!({ "i": i }), "arrival order kept");
        assert_eq!(body["status"]["phase"], "pending");
    }
    // Each child is registered, with its id, parent and route, before its send.
    let ops = b.ops();
    for (_, body, _) in &sends[1..] {
        let child_at = ops
            .iter()
            .position(|o| matches!(o, Op::Child { body: c, .. } if c["id"] == body["id"]))
            .expect("child registered");
        let send_at = ops
            .iter()
            .position(|o| matches!(o, Op::Send { body: s, .. } if s["id"] == body["id"]))
            .unwrap();
        assert!(child_at < send_at, "registration before send");
        let Op::Child {
            gateway,
            parent,
            body: c,
        } = &ops[child_at]
        else {
            unreachable!()
        };
        assert_eq!((gateway.as_str(), parent.as_str()), (GW, "t1"));
        assert_eq!(
            c,
            &json!({"id": body["id"], "parent_id": "t1",
                    "route": {"prev": ["a", "b"], "curr": "c", "next": []}})
        );
    }
    assert_eq!(
        ops.iter().filter(|o| matches!(o, Op::Child { .. })).count(),
        2,
        "frame 0 is not a child"
    );
    assert_eq!(
        b.event_kinds(),
        vec!["received", "processing", "completed"],
        "completed once, for frame 0"
    );
    b.assert_acked_last();
}

#[tokio::test]
async fn fan_out_children_of_a_child_point_at_the_input_id() {
    let b = Bench::new(settings());
    let h = b.native(|e| Ok(vec![pass_through(e, json!(0)), pass_through(e, json!(1))]));
    let mut v = input();
    v["id"] = json!("child-a");
    v["parent_id"] = json!("root");
    b.run_json(&h, &v).await;
    let sends = b.sends();
    assert_eq!(sends[0].1["parent_id"], "root");
    assert_eq!(sends[1].1["parent_id"], "child-a");
}

#[tokio::test]
async fn pause_frame_is_not_routed_and_posts_the_pause_event() {
    let b = Bench::new(settings());
    let meta = json!({"prompt": "Approve?", "fields": [{"name": "ok", "type": "bool"}]});
    let m = meta.clone();
    let h = b.native(move |e| {
        let mut f = advanced(e, json!({"draft": 1}), &["x-resume", "c"]);
        let mut hs = e.headers.clone();
        hs.insert("x-asya-pause".into(), m.clone());
        f.headers = Some(hs);
        Ok(vec![f])
    });
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
    assert!(
        b.sends().is_empty(),
        "not routed, and no zero-frames sink send"
    );
    let events = b.events();
    assert_eq!(b.event_kinds(), vec!["received", "processing", "completed"]);
    let (id, pause) = &events[2];
    assert_eq!(id, "t1");
    let d = &pause["data"];
    assert_eq!(d["message"], "Paused: waiting for external input");
    assert_eq!(d["pause_metadata"], meta);
    assert_eq!(
        (d["prev"].clone(), d["curr"].clone(), d["next"].clone()),
        (json!(["a", "b"]), json!("x-resume"), json!(["c"])),
        "output route"
    );
    assert!(d["duration_ms"].is_u64());
    b.assert_acked_last();
}

#[tokio::test]
async fn pause_as_a_later_frame_uses_the_child_id() {
    let b = Bench::new(settings());
    let h = b.native(|e| {
        let mut f = pass_through(e, json!(1));
        let mut hs = e.headers.clone();
        hs.insert("x-asya-pause".into(), json!("{\"prompt\":\"p\"}"));
        f.headers = Some(hs);
        Ok(vec![pass_through(e, json!(0)), f])
    });
    b.run_json(&h, &input()).await;
    assert_eq!(b.sends().len(), 1);
    let child_id = b
        .ops()
        .into_iter()
        .find_map(|o| match o {
            Op::Child { body, .. } => Some(body["id"].as_str().unwrap().to_owned()),
            _ => None,
        })
        .unwrap();
    let (id, pause) = b.events().pop().unwrap();
    assert_eq!(id, child_id);
    assert_eq!(pause["data"]["pause_metadata"], json!({"prompt": "p"}));
}

#[tokio::test]
async fn send_failure_mid_fan_out_stops_and_requeues() {
    let b = Bench::new(settings());
    b.transport.fail.lock().unwrap().nth_send = Some(2);
    let h = b.native(|e| Ok((0..4).map(|i| pass_through(e, json!({ "i": i }))).collect()));
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Requeued);
    let ops = b.ops();
    let attempts: Vec<&Op> = ops
        .iter()
        .filter(|o| matches!(o, Op::Send { .. } | Op::SendFailed { .. }))
        .collect();
    assert_eq!(attempts.len(), 2, "no send after the failure: {ops:#?}");
    assert!(!ops.iter().any(|o| matches!(o, Op::AfterDispatch)));
    b.assert_requeued();
    assert_eq!(ActorStats::get(&b.stats.requeued), 1);
}

#[tokio::test]
async fn sink_send_failure_requeues() {
    let b = Bench::new(settings());
    b.transport
        .fail
        .lock()
        .unwrap()
        .queues
        .insert("q.x-sink".into());
    let h = b.native(|_| Ok(vec![]));
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Requeued);
    b.assert_requeued();
}

#[tokio::test]
async fn after_dispatch_runs_after_sends_and_its_failure_requeues() {
    let b = Bench::new(settings());
    let h = forward(&b);
    b.run_json(&h, &input()).await;
    let ops = b.ops();
    let send_at = ops
        .iter()
        .position(|o| matches!(o, Op::Send { .. }))
        .unwrap();
    let after_at = ops
        .iter()
        .position(|o| matches!(o, Op::AfterDispatch))
        .unwrap();
    assert!(send_at < after_at);

    let b = Bench::new(settings());
    let log = b.log.clone();
    let h = troupe_engine::Handler::Native(std::sync::Arc::new(FailingAfter { log }));
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Requeued);
    assert_eq!(b.sends().len(), 1, "the frame was sent");
    b.assert_requeued();
}

struct FailingAfter {
    log: std::sync::Arc<Log>,
}

#[async_trait::async_trait]
impl troupe_engine::handler::NativeHandler for FailingAfter {
    async fn handle(
        &self,
        input: &troupe_protocol::Envelope,
    ) -> Result<Vec<troupe_protocol::Frame>, HandlerFailure> {
        Ok(vec![pass_through(input, json!(1))])
    }
    async fn after_dispatch(
        &self,
        _input: &troupe_protocol::Envelope,
    ) -> Result<(), troupe_engine::handler::Requeue> {
        self.log.push(Op::AfterDispatch);
        Err(troupe_engine::handler::Requeue("disk full".into()))
    }
}

/// Emits two frames as task `origin` (the fan-in aggregator's merged envelope), or asks
/// for a requeue when the payload says so.
struct AsOrigin;

#[async_trait::async_trait]
impl troupe_engine::handler::NativeHandler for AsOrigin {
    async fn handle(
        &self,
        _input: &troupe_protocol::Envelope,
    ) -> Result<Vec<troupe_protocol::Frame>, HandlerFailure> {
        Ok(vec![])
    }
    async fn reply(
        &self,
        input: &troupe_protocol::Envelope,
    ) -> Result<troupe_engine::handler::NativeReply, troupe_engine::handler::NativeError> {
        use troupe_engine::handler::{NativeError, NativeReply, Requeue, TaskIdentity};
        if input.payload.get().contains("requeue") {
            return Err(NativeError::Requeue(Requeue("disk full".into())));
        }
        Ok(NativeReply {
            frames: vec![pass_through(input, json!(1)), pass_through(input, json!(2))],
            task: Some(TaskIdentity {
                id: "origin".into(),
                parent_id: None,
            }),
        })
    }
}

#[tokio::test]
async fn a_native_reply_emits_as_the_task_it_names_or_requeues() {
    let b = Bench::new(settings());
    let h = troupe_engine::Handler::Native(std::sync::Arc::new(AsOrigin));
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
    let sends = b.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].1["id"], json!("origin"));
    assert!(sends[0].1.get("parent_id").is_none(), "{}", sends[0].1);
    assert_eq!(sends[1].1["parent_id"], json!("origin"));
    assert_ne!(sends[1].1["id"], json!("t1"));

    let b = Bench::new(settings());
    let mut v = input();
    v["payload"] = json!("requeue");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Requeued);
    assert!(b.sends().is_empty());
    b.assert_requeued();
}

// ------------------------------------------------------------------ §9 resiliency

#[tokio::test]
async fn handler_failure_without_resiliency_fails_to_sink() {
    let b = Bench::new(settings());
    let h = failing(&b);
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    let details = json!({"message": "boom", "type": "ValueError", "mro": ["Exception"],
                         "traceback": "Traceback ..."});
    assert_eq!(
        body,
        json!({
            "id": "t1", "parent_id": "p0",
            "route": {"prev": ["a"], "curr": "b", "next": ["c"]},
            "headers": {"trace": "x", "x-asya-first-attempt": NOW_TS},
            "status": {"phase": "failed", "reason": "RuntimeError", "actor": "b", "attempt": 1,
                       "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
                       "deadline_at": DEADLINE, "error": details},
            "payload": {"error": "processing_error", "details": details,
                        "original_payload": {"q": 1}}
        }),
        "§11.1 failure envelope"
    );
    assert_eq!(b.event_kinds(), vec!["received", "processing"]);
    b.assert_acked_last();
    assert_eq!(ActorStats::get(&b.stats.failed), 1);
    assert!(b.stats.last_error().unwrap().contains("boom"));
}

fn retry_settings() -> troupe_engine::ActorSettings {
    let mut s = settings();
    s.resiliency = Some(resiliency(
        json!({
            "default": {"maxAttempts": 3, "backoff": "exponential", "initialDelay": "1s",
                        "maxInterval": "30s"},
            "short": {"maxAttempts": 5, "backoff": "constant", "initialDelay": "250ms",
                      "maxDuration": "5m"},
            "fallback": {"maxAttempts": 2, "onExhausted": ["apologize", "z"]}
        }),
        json!([
            {"errors": ["TimeoutError"], "policy": "short"},
            {"errors": ["KeyError"], "policy": "fallback"}
        ]),
    ));
    s
}

#[tokio::test]
async fn retries_go_to_the_own_queue_with_policy_delay() {
    let b = Bench::new(retry_settings());
    let h = failing(&b);
    let mut v = input();
    let mut delays = Vec::new();
    for attempt in 1..=2u32 {
        b.log.clear();
        assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
        let sends = b.sends();
        assert_eq!(sends.len(), 1);
        let (q, body, delay) = sends.into_iter().next().unwrap();
        assert_eq!(q, "q.b", "own queue");
        delays.push(delay.expect("delayed send"));
        assert_eq!(
            body["status"],
            json!({"phase": "retrying", "actor": "b", "attempt": attempt + 1,
                   "max_attempts": 3, "created_at": CREATED, "updated_at": NOW_TS,
                   "deadline_at": DEADLINE,
                   "error": {"message": "boom", "type": "ValueError", "mro": ["Exception"],
                             "traceback": "Traceback ..."}})
        );
        assert_eq!(body["route"], input()["route"], "route unadvanced");
        assert_eq!(body["payload"], json!({"q": 1}), "payload unchanged");
        assert_eq!(body["headers"]["x-asya-first-attempt"], NOW_TS);
        b.assert_acked_last();
        v = body;
    }
    assert_eq!(
        delays,
        vec![Duration::from_secs(1), Duration::from_secs(2)],
        "exponential from 1s"
    );
    assert_eq!(ActorStats::get(&b.stats.retried), 2);
    // Attempt 3 of 3: exhausted.
    b.log.clear();
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["status"]["phase"], "failed");
    assert_eq!(body["status"]["reason"], "PolicyExhausted");
    assert_eq!(body["status"]["attempt"], 3);
    assert_eq!(body["status"]["max_attempts"], 3);
    assert_eq!(body["payload"]["error"], "processing_error");
    assert_eq!(body["payload"]["original_payload"], json!({"q": 1}));
    assert_eq!(body["route"], input()["route"]);
    assert!(body["status"]["error"]["message"] == "boom");
    b.assert_acked_last();
}

#[tokio::test]
async fn rules_pick_the_policy_by_type_and_mro() {
    let b = Bench::new(retry_settings());
    let h = b.native(|_| {
        Err(HandlerFailure::new(
            "asyncio.exceptions.TimeoutError",
            &["OSError", "Exception"],
            "slow",
        ))
    });
    b.run_json(&h, &input()).await;
    let (q, body, delay) = b.sends().pop().unwrap();
    assert_eq!(q, "q.b");
    assert_eq!(delay, Some(Duration::from_millis(250)), "policy 'short'");
    assert_eq!(body["status"]["max_attempts"], 5);
}

#[tokio::test]
async fn exhaustion_by_max_duration() {
    let b = Bench::new(retry_settings());
    let h = b.native(|_| Err(HandlerFailure::new("TimeoutError", &[], "slow")));
    let mut v = input();
    v["status"]["phase"] = json!("retrying");
    v["status"]["attempt"] = json!(2);
    // First attempt 5m ago: maxDuration 5m reached although attempt 2 < 5.
    v["headers"]["x-asya-first-attempt"] = json!("2025-12-31T23:55:10Z");
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["status"]["reason"], "PolicyExhausted");
    assert_eq!(body["status"]["attempt"], 2);
    assert_eq!(body["status"]["max_attempts"], 5);
    // One second less and it retries.
    let b = Bench::new(retry_settings());
    let h = b.native(|_| Err(HandlerFailure::new("TimeoutError", &[], "slow")));
    v["headers"]["x-asya-first-attempt"] = json!("2025-12-31T23:55:11Z");
    b.run_json(&h, &v).await;
    assert_eq!(b.sends()[0].0, "q.b");
}

#[tokio::test]
async fn max_duration_counts_from_the_first_attempt_at_this_actor() {
    // A fresh arrival restamps x-asya-first-attempt, so an old header from an earlier
    // actor does not exhaust the policy here.
    let b = Bench::new(retry_settings());
    let h = b.native(|_| Err(HandlerFailure::new("TimeoutError", &[], "slow")));
    let mut v = input();
    v["headers"]["x-asya-first-attempt"] = json!("2020-01-01T00:00:00Z");
    b.run_json(&h, &v).await;
    assert_eq!(b.sends()[0].0, "q.b");
}

#[tokio::test]
async fn on_exhausted_reroutes_with_policy_routed() {
    let b = Bench::new(retry_settings());
    let h = b.native(|_| {
        Err(HandlerFailure::new(
            "KeyError",
            &["LookupError", "Exception"],
            "k",
        ))
    });
    let mut v = input();
    v["status"]["phase"] = json!("retrying");
    v["status"]["attempt"] = json!(2);
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.apologize");
    assert_eq!(
        body["route"],
        json!({"prev": ["a", "b"], "curr": "apologize", "next": ["z"]})
    );
    assert_eq!(
        body["status"],
        json!({"phase": "failed", "reason": "PolicyRouted", "actor": "b", "attempt": 2,
               "max_attempts": 2, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE,
               "error": {"message": "k", "type": "KeyError", "mro": ["LookupError", "Exception"]}})
    );
    assert_eq!(body["payload"], json!({"q": 1}), "payload unchanged");
    assert_eq!(body["id"], "t1");
    assert_eq!(body["parent_id"], "p0");
    b.assert_acked_last();
}

#[tokio::test]
async fn on_exhausted_honours_route_override() {
    let b = Bench::new(retry_settings());
    let h = b.native(|_| Err(HandlerFailure::new("KeyError", &[], "k")));
    let mut v = input();
    v["status"]["phase"] = json!("retrying");
    v["status"]["attempt"] = json!(2);
    v["headers"]["x-asya-route-override"] = json!({"apologize": "apologize-v2"});
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.apologize-v2");
    assert_eq!(body["route"]["curr"], "apologize");
    assert_eq!(
        body["headers"]["x-asya-route-resolved"],
        json!({"apologize": {"target": "apologize-v2", "by": "b"}})
    );
}

#[tokio::test]
async fn retry_send_failure_requeues() {
    let b = Bench::new(retry_settings());
    b.transport.fail.lock().unwrap().queues.insert("q.b".into());
    let h = failing(&b);
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Requeued);
    b.assert_requeued();
    assert_eq!(ActorStats::get(&b.stats.retried), 0);
}

#[tokio::test]
async fn on_exhausted_send_failure_requeues() {
    let b = Bench::new(retry_settings());
    b.transport
        .fail
        .lock()
        .unwrap()
        .queues
        .insert("q.apologize".into());
    let h = b.native(|_| Err(HandlerFailure::new("KeyError", &[], "k")));
    let mut v = input();
    v["status"]["phase"] = json!("retrying");
    v["status"]["attempt"] = json!(2);
    assert_eq!(b.run_json(&h, &v).await, Disposition::Requeued);
    b.assert_requeued();
}

#[tokio::test]
async fn policy_with_jitter_stays_in_range() {
    let mut s = settings();
    s.resiliency = Some(resiliency(
        json!({"default": {"maxAttempts": 9, "backoff": "linear", "initialDelay": "2s",
                           "jitter": true}}),
        json!([]),
    ));
    let b = Bench::new(s);
    let h = failing(&b);
    let mut v = input();
    v["status"]["phase"] = json!("retrying");
    v["status"]["attempt"] = json!(3);
    for _ in 0..20 {
        b.log.clear();
        b.run_json(&h, &v).await;
        let d = b.sends()[0].2.unwrap();
        // linear: 3 × 2s = 6s, jitter factor in [0.5, 1.5).
        assert!(
            d >= Duration::from_secs(3) && d < Duration::from_secs(9),
            "{d:?}"
        );
    }
}

#[tokio::test]
async fn native_failure_details_reach_the_failure_payload() {
    let b = Bench::new(settings());
    let h = b.native(|_| {
        Err(HandlerFailure::new(
            "FileNotFoundError",
            &["OSError"],
            "gone",
        ))
    });
    b.run_json(&h, &input()).await;
    let body = b.single_send().1;
    assert_eq!(
        body["payload"],
        json!({"error": "processing_error",
               "details": {"message": "gone", "type": "FileNotFoundError", "mro": ["OSError"]},
               "original_payload": {"q": 1}})
    );
}

#[tokio::test]
async fn failures_are_not_followed_by_completed_reports() {
    let b = Bench::new(retry_settings());
    let h = failing(&b);
    b.run_json(&h, &input()).await;
    // The third is the retry notice, still a progress event, never `completed`.
    assert_eq!(
        b.event_kinds(),
        vec!["received", "processing", "processing"]
    );
}

#[tokio::test]
async fn a_retry_is_reported_with_its_attempt_delay_and_error() {
    let b = Bench::new(retry_settings());
    let h = failing(&b);
    b.run_json(&h, &input()).await;
    let events = b.events();
    let (_, last) = events.last().unwrap();
    let message = last["data"]["message"].as_str().unwrap();
    // Exponential from 1s without jitter: attempt 2 of 3 comes in 1 s.
    assert_eq!(message, "attempt 2/3 in 1.0 s: ValueError: boom");
}

#[tokio::test]
async fn ack_handle_is_the_delivery_handle() {
    let b = Bench::new(settings());
    let h = forward(&b);
    b.run_json(&h, &input()).await;
    assert_eq!(b.ops().last(), Some(&Op::Ack(DeliveryHandle::Seq(1))));
}

#[tokio::test]
async fn clock_drives_timestamps() {
    let b = Bench::new(settings());
    b.clock.set(datetime!(2026-01-01 00:30:00 UTC));
    let h = forward(&b);
    b.run_json(&h, &input()).await;
    let body = b.single_send().1;
    assert_eq!(body["status"]["updated_at"], "2026-01-01T00:30:00Z");
    assert_eq!(
        body["headers"]["x-asya-first-attempt"],
        "2026-01-01T00:30:00Z"
    );
}

#[tokio::test]
async fn retries_of_an_override_target_go_to_its_own_queue() {
    let mut s = retry_settings();
    s.actor = "b-canary".into();
    let b = Bench::new(s);
    let h = failing(&b);
    let mut v = input();
    v["headers"]["x-asya-route-override"] = json!({"b": "b-canary"});
    b.run_json(&h, &v).await;
    let (q, retry, delay) = b.sends().pop().unwrap();
    assert_eq!(q, "q.b-canary", "own queue = queue of ASYA_ACTOR_NAME");
    assert!(delay.is_some());
    assert_eq!(retry["route"]["curr"], "b");
    assert_eq!(retry["status"]["actor"], "b-canary");
    // The retry arrives back at b-canary: accepted via the override, and a retry arrival.
    b.log.clear();
    b.run_json(&h, &retry).await;
    let seen = b.handled();
    assert_eq!(seen[0]["status"]["attempt"], 2);
    assert_eq!(seen[0]["headers"]["x-asya-first-attempt"], NOW_TS);
}
