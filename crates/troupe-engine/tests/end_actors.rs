#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End actors (x-sink, x-sump) through `Engine::process` (protocol.md §14.1, §10).

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use serde_json::{json, Value};
use troupe_crew::{CrewConfig, Sink, Sump};
use troupe_engine::handler::{EndHandler, EndOutcome, Requeue};
use troupe_engine::metrics::ActorStats;
use troupe_engine::{ActorSettings, Disposition, Handler};
use troupe_protocol::Envelope;

fn end_settings(actor: &str) -> ActorSettings {
    let mut s = ActorSettings::new(actor);
    s.gateway_url = Some(GW.to_owned());
    s
}

/// Records what it got; answers with a fixed outcome.
#[derive(Default)]
struct FakeEnd {
    seen: Mutex<Vec<Value>>,
    fail: bool,
    skip_report: bool,
    hooks: Vec<(String, Envelope)>,
}

#[async_trait]
impl EndHandler for FakeEnd {
    async fn handle(&self, env: &Envelope) -> Result<EndOutcome, Requeue> {
        self.seen.lock().unwrap().push(wire(env));
        if self.fail {
            return Err(Requeue("disk full".into()));
        }
        Ok(EndOutcome {
            sends: self.hooks.clone(),
            skip_report: self.skip_report,
        })
    }
}

fn fake() -> (Arc<FakeEnd>, Handler) {
    let h = Arc::new(FakeEnd::default());
    (h.clone(), Handler::End(h))
}

fn sink_handler() -> Handler {
    Handler::End(Arc::new(Sink::with_clock(
        CrewConfig::default(),
        Arc::new(TestClock::new(NOW)),
    )))
}

fn sump_handler() -> Handler {
    Handler::End(Arc::new(Sump::new(CrewConfig::default())))
}

/// A terminal envelope as it reaches x-sink.
fn terminal(phase: &str) -> Value {
    json!({
        "id": "t1",
        "route": {"prev": ["a", "b"], "curr": "", "next": []},
        "headers": {"trace": "x"},
        "status": {"phase": phase, "reason": "Completed", "actor": "b", "attempt": 1,
                   "max_attempts": 1, "created_at": CREATED, "updated_at": CREATED,
                   "deadline_at": DEADLINE},
        "payload": {"answer": 42}
    })
}

fn failure_envelope() -> Value {
    json!({
        "id": "t1",
        "route": {"prev": ["a"], "curr": "b", "next": ["c"]},
        "status": {"phase": "failed", "reason": "RuntimeError", "actor": "b", "attempt": 1,
                   "max_attempts": 1, "created_at": CREATED, "updated_at": CREATED,
                   "error": {"message": "boom", "type": "ValueError", "traceback": "tb"}},
        "payload": {"error": "processing_error",
                    "details": {"message": "payload-boom", "type": "ValueError"},
                    "original_payload": {"q": 1}}
    })
}

#[tokio::test]
async fn sink_reports_succeeded_with_the_payload_as_result() {
    let b = Bench::new(end_settings("x-sink"));
    assert_eq!(
        b.run_json(&sink_handler(), &terminal("succeeded")).await,
        Disposition::Acked
    );
    assert_eq!(
        b.events(),
        vec![(
            "t1".to_owned(),
            json!({"type": "status", "status": "succeeded", "data": {
                "id": "t1", "status": "succeeded", "timestamp": NOW_TS, "progress": 1.0,
                "result": {"answer": 42}}})
        )]
    );
    assert!(b.sends().is_empty(), "x-sink never routes without hooks");
    b.assert_acked_last();
    assert_eq!(ActorStats::get(&b.stats.succeeded), 1);
}

#[tokio::test]
async fn sink_failed_report_prefers_status_error() {
    let b = Bench::new(end_settings("x-sink"));
    b.run_json(&sink_handler(), &failure_envelope()).await;
    let (id, body) = b.events().pop().unwrap();
    assert_eq!(id, "t1");
    assert_eq!(
        body,
        json!({"type": "status", "status": "failed", "data": {
            "id": "t1", "status": "failed", "timestamp": NOW_TS, "error": "boom",
            "error_details": {"message": "boom", "type": "ValueError", "traceback": "tb"},
            "prev": ["a"], "curr": "b", "next": ["c"],
            "current_actor_idx": 1, "current_actor_name": "b"}})
    );
    assert_eq!(ActorStats::get(&b.stats.failed), 1);
}

#[tokio::test]
async fn sink_failed_report_falls_back_to_payload_error() {
    let b = Bench::new(end_settings("x-sink"));
    let mut v = failure_envelope();
    v["status"].as_object_mut().unwrap().remove("error");
    b.run_json(&sink_handler(), &v).await;
    let data = b.events().pop().unwrap().1["data"].clone();
    assert_eq!(data["error"], "processing_error");
    assert_eq!(
        data["error_details"],
        json!({"message": "payload-boom", "type": "ValueError"})
    );
}

#[tokio::test]
async fn sink_skips_non_terminal_phases_and_missing_status() {
    for phase in ["paused", "canceled", "pending", "processing", "retrying"] {
        let b = Bench::new(end_settings("x-sink"));
        assert_eq!(
            b.run_json(&sink_handler(), &terminal(phase)).await,
            Disposition::Acked
        );
        assert!(b.events().is_empty(), "{phase}");
        b.assert_acked_last();
    }
    let b = Bench::new(end_settings("x-sink"));
    let mut v = terminal("succeeded");
    v.as_object_mut().unwrap().remove("status");
    b.run_json(&sink_handler(), &v).await;
    assert!(b.events().is_empty());
}

#[tokio::test]
async fn no_report_once_the_envelope_passed_the_sink() {
    // The engine applies the rule itself, whatever the handler says.
    let b = Bench::new(end_settings("x-sink"));
    let (_, h) = fake();
    let mut v = terminal("failed");
    v["route"]["prev"] = json!(["a", "x-sink", "audit"]);
    b.run_json(&h, &v).await;
    assert!(b.events().is_empty());
    b.assert_acked_last();
    // Same at x-sump (a failed hook).
    let b = Bench::new(end_settings("x-sump"));
    b.run_json(&sump_handler(), &v).await;
    assert!(b.events().is_empty());
}

#[tokio::test]
async fn handler_may_skip_the_report() {
    let b = Bench::new(end_settings("x-sink"));
    let h = Arc::new(FakeEnd {
        skip_report: true,
        ..Default::default()
    });
    b.run_json(&Handler::End(h), &terminal("succeeded")).await;
    assert!(b.events().is_empty());
}

#[tokio::test]
async fn fan_in_slice_zero_is_not_reported_but_children_are() {
    let fan_in = json!({"actor": "agg", "origin_id": "t1", "slice_index": 0, "slice_count": 3,
                        "aggregation_key": "/items"});
    let b = Bench::new(end_settings("x-sink"));
    let mut v = terminal("succeeded");
    v["headers"]["x-asya-fan-in"] = fan_in.clone();
    b.run_json(&sink_handler(), &v).await;
    assert!(b.events().is_empty(), "slice 0");
    let b = Bench::new(end_settings("x-sink"));
    v["id"] = json!("child-1");
    v["parent_id"] = json!("t1");
    b.run_json(&sink_handler(), &v).await;
    let events = b.events();
    assert_eq!(
        events.len(),
        1,
        "fan-out children are reported (Differs from Asya)"
    );
    assert_eq!(events[0].0, "child-1");
}

#[tokio::test]
async fn merged_result_is_reported_under_id_and_origin_id() {
    let b = Bench::new(end_settings("x-sink"));
    let mut v = terminal("succeeded");
    v["id"] = json!("slice-2");
    v["headers"]["x-asya-origin-id"] = json!("origin");
    b.run_json(&sink_handler(), &v).await;
    let events = b.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, "slice-2");
    assert_eq!(events[0].1["data"]["id"], "slice-2");
    assert_eq!(events[1].0, "origin");
    assert_eq!(events[1].1["data"]["id"], "origin");
    assert_eq!(events[1].1["data"]["result"], json!({"answer": 42}));
    // Origin equal to the id: one report.
    let b = Bench::new(end_settings("x-sink"));
    v["headers"]["x-asya-origin-id"] = json!("slice-2");
    b.run_json(&sink_handler(), &v).await;
    assert_eq!(b.events().len(), 1);
}

#[tokio::test]
async fn sump_always_reports_failed_from_the_payload() {
    let b = Bench::new(end_settings("x-sump"));
    let v = json!({
        "id": "t1",
        "route": {"prev": ["a"], "curr": "b", "next": []},
        "status": {"phase": "succeeded", "actor": "b",
                   "error": {"message": "status-msg"}},
        "payload": {"error": "Route mismatch: message routed to wrong actor (expected: b, actual: q)",
                    "details": {"k": 1}, "original_payload": 5}
    });
    assert_eq!(b.run_json(&sump_handler(), &v).await, Disposition::Acked);
    let (id, body) = b.events().pop().unwrap();
    assert_eq!(id, "t1");
    assert_eq!(
        body,
        json!({"type": "status", "status": "failed", "data": {
            "id": "t1", "status": "failed", "timestamp": NOW_TS,
            "error": "Route mismatch: message routed to wrong actor (expected: b, actual: q)",
            "error_details": {"k": 1},
            "prev": ["a"], "curr": "b", "next": [],
            "current_actor_idx": 1, "current_actor_name": "b"}})
    );
    assert!(b.sends().is_empty(), "x-sump never routes");
    b.assert_acked_last();
    assert_eq!(ActorStats::get(&b.stats.failed), 1);
}

#[tokio::test]
async fn sump_names_stores_adopts_and_reports_an_anonymous_parse_failure() {
    // An Asya sidecar sends its parse failures to x-sump with an empty id: Troupe gives
    // them an id, so x-sump can store them and the gateway list them.
    let b = Bench::new(end_settings("x-sump"));
    b.reporter
        .only_adopted
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, h) = fake();
    let v = json!({"id": "", "route": {"prev": [], "curr": "x-sump", "next": []},
                   "payload": {"error": "Failed to parse message: x", "original_body": "x"},
                   "status": {"phase": "failed", "reason": "ParseError", "actor": "b"}});
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    let stored = seen.seen.lock().unwrap().pop().unwrap();
    let id = stored["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let adopted: Vec<Op> = b
        .ops()
        .into_iter()
        .filter(|o| matches!(o, Op::Adopt { .. }))
        .collect();
    assert_eq!(
        adopted,
        vec![Op::Adopt {
            gateway: GW.to_owned(),
            id: id.clone(),
            actor: "b".to_owned(),
            payload: json!({"error": "Failed to parse message: x", "original_body": "x"}),
        }]
    );
    // Then the usual final report marks the adopted record failed.
    let (rid, body) = b.events().pop().unwrap();
    assert_eq!(rid, id);
    assert_eq!(
        body,
        json!({"type": "status", "status": "failed", "data": {
            "id": id, "status": "failed", "timestamp": NOW_TS,
            "error": "Failed to parse message: x",
            "prev": [], "curr": "x-sump", "next": [],
            "current_actor_idx": 0, "current_actor_name": "x-sump"}})
    );
    b.assert_acked_last();
}

#[tokio::test]
async fn a_parse_failure_with_its_own_id_is_adopted_and_reported_too() {
    // Published straight to a queue, `{"id": "t5", "route": 5}` never had a gateway
    // record; adopting one the gateway has leaves it as it is (gateway.md §2.7.1).
    let b = Bench::new(end_settings("x-sump"));
    let v = json!({"id": "t5", "route": {"prev": [], "curr": "x-sump", "next": []},
                   "payload": {"error": "Failed to parse message: x"},
                   "status": {"phase": "failed", "reason": "ParseError", "actor": "b"}});
    b.run_json(&sump_handler(), &v).await;
    assert!(b
        .ops()
        .iter()
        .any(|o| matches!(o, Op::Adopt { id, .. } if id == "t5")));
    assert_eq!(b.event_kinds(), vec!["failed"]);
}

#[tokio::test]
async fn stealth_end_actors_report_nothing() {
    for actor in ["x-sink", "x-sump"] {
        let b = Bench::new(end_settings(actor));
        let mut v = terminal("succeeded");
        v["headers"]["x-asya-mesh-status"] = json!("off");
        let h = if actor == "x-sink" {
            sink_handler()
        } else {
            sump_handler()
        };
        b.run_json(&h, &v).await;
        assert_eq!(b.reporter_calls(), 0, "{actor}");
    }
}

#[tokio::test]
async fn end_actors_skip_preflight_sla_route_check_and_stamping() {
    let b = Bench::new(end_settings("x-sink"));
    b.reporter.set_status("t1", "canceled");
    let (seen, h) = fake();
    let mut v = terminal("succeeded");
    v["status"]["deadline_at"] = json!("2020-01-01T00:00:00Z");
    v["route"]["curr"] = json!("somewhere-else");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    assert!(
        !b.ops().iter().any(|o| matches!(o, Op::TaskStatus { .. })),
        "no pre-flight"
    );
    assert_eq!(
        seen.seen.lock().unwrap().clone(),
        vec![v],
        "unstamped, unchanged"
    );
    assert_eq!(
        b.event_kinds(),
        vec!["succeeded"],
        "no progress events; reported"
    );
    assert!(b.sends().is_empty());
}

#[tokio::test]
async fn unparseable_body_at_the_sink_goes_to_the_sump_as_a_failed_task() {
    let b = Bench::new(end_settings("x-sink"));
    let (seen, h) = fake();
    assert_eq!(b.run(&h, "{oops").await, Disposition::Acked);
    assert!(seen.seen.lock().unwrap().is_empty());
    let (queue, env) = b.single_send();
    assert_eq!(queue, "q.x-sump");
    assert!(uuid::Uuid::parse_str(env["id"].as_str().unwrap()).is_ok());
    assert_eq!(env["status"]["reason"], json!("ParseError"));
    assert_eq!(env["payload"]["original_body"], json!("{oops"));
    assert!(env["payload"]["error"]
        .as_str()
        .unwrap()
        .starts_with("Failed to parse message: "));
    b.assert_acked_last();
}

#[tokio::test]
async fn unparseable_body_at_the_sump_is_stored_under_a_generated_id() {
    for body in ["", "not json", "[1,2]"] {
        let b = Bench::new(end_settings("x-sump"));
        let (seen, h) = fake();
        assert_eq!(b.run(&h, body).await, Disposition::Acked);
        let stored = seen.seen.lock().unwrap().pop().expect(body);
        assert!(uuid::Uuid::parse_str(stored["id"].as_str().unwrap()).is_ok());
        assert_eq!(stored["status"]["reason"], json!("ParseError"));
        assert_eq!(stored["payload"]["original_body"], json!(body));
        assert!(b.sends().is_empty());
        assert_eq!(ActorStats::get(&b.stats.failed), 1);
        assert!(b
            .stats
            .last_error()
            .unwrap()
            .contains(stored["id"].as_str().unwrap()));
        b.assert_acked_last();
    }
}

#[tokio::test]
async fn empty_id_is_allowed_without_reporting() {
    let b = Bench::new(end_settings("x-sink"));
    let (seen, h) = fake();
    let mut v = terminal("succeeded");
    v["id"] = json!("");
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    assert_eq!(seen.seen.lock().unwrap().len(), 1);
    assert_eq!(b.reporter_calls(), 0);
}

#[tokio::test]
async fn storage_failure_requeues_without_report() {
    let b = Bench::new(end_settings("x-sink"));
    let h = Arc::new(FakeEnd {
        fail: true,
        ..Default::default()
    });
    assert_eq!(
        b.run_json(&Handler::End(h), &terminal("succeeded")).await,
        Disposition::Requeued
    );
    assert!(b.events().is_empty());
    b.assert_requeued();
}

#[tokio::test]
async fn crew_sink_persistence_failure_requeues() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("succeeded"), b"not a dir").unwrap();
    let cfg = CrewConfig {
        mount: Some(dir.path().to_path_buf()),
        ..CrewConfig::default()
    };
    let h = Handler::End(Arc::new(Sink::new(cfg)));
    let b = Bench::new(end_settings("x-sink"));
    assert_eq!(
        b.run_json(&h, &terminal("succeeded")).await,
        Disposition::Requeued
    );
    b.assert_requeued();
}

#[tokio::test]
async fn hooks_are_sent_after_the_report_and_before_the_ack() {
    let cfg = CrewConfig {
        sink_hooks: vec!["audit".into(), "notify".into()],
        ..CrewConfig::default()
    };
    let h = Handler::End(Arc::new(Sink::with_clock(
        cfg,
        Arc::new(TestClock::new(NOW)),
    )));
    let b = Bench::new(end_settings("x-sink"));
    assert_eq!(
        b.run_json(&h, &terminal("succeeded")).await,
        Disposition::Acked
    );
    let ops = b.ops();
    let report_at = ops
        .iter()
        .position(|o| matches!(o, Op::Event { .. }))
        .unwrap();
    let send_at = ops
        .iter()
        .position(|o| matches!(o, Op::Send { .. }))
        .unwrap();
    assert!(report_at < send_at, "(d) report before (e) hooks");
    let (q, hook) = b.single_send();
    assert_eq!(q, "q.audit");
    assert_eq!(
        hook["route"],
        json!({"prev": ["a", "b", "x-sink"], "curr": "audit", "next": ["notify"]})
    );
    assert_eq!(hook["headers"]["x-asya-mesh-status"], "off");
    assert!(hook["status"].get("deadline_at").is_none());
    b.assert_acked_last();
    // The hook chain's return to the sink stops there, without a second report.
    let b2 = Bench::new(end_settings("x-sink"));
    let mut back = hook.clone();
    back["route"] =
        json!({"prev": ["a", "b", "x-sink", "audit", "notify"], "curr": "", "next": []});
    back["status"]["phase"] = json!("succeeded");
    b2.run_json(&h, &back).await;
    assert!(b2.sends().is_empty());
    assert_eq!(b2.reporter_calls(), 0);
}

#[tokio::test]
async fn hook_send_failure_requeues() {
    let cfg = CrewConfig {
        sink_hooks: vec!["audit".into()],
        ..CrewConfig::default()
    };
    let h = Handler::End(Arc::new(Sink::new(cfg)));
    let b = Bench::new(end_settings("x-sink"));
    b.transport
        .fail
        .lock()
        .unwrap()
        .queues
        .insert("q.audit".into());
    assert_eq!(
        b.run_json(&h, &terminal("succeeded")).await,
        Disposition::Requeued
    );
    b.assert_requeued();
}

#[tokio::test]
async fn custom_sink_name_drives_report_rules() {
    let mut s = end_settings("my-sink");
    s.sink = "my-sink".into();
    let b = Bench::new(s);
    let (_, h) = fake();
    // Treated as the sink: non-terminal phases are skipped.
    b.run_json(&h, &terminal("paused")).await;
    assert!(b.events().is_empty());
    // x-sink in prev means nothing under a custom sink name.
    let mut v = terminal("succeeded");
    v["route"]["prev"] = json!(["a", "x-sink"]);
    b.run_json(&h, &v).await;
    assert_eq!(b.event_kinds(), vec!["succeeded"]);
}
