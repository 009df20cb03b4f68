#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Engine::process` against a scripted runtime on a Unix socket (protocol.md §7, §8
//! steps 11–12, §10 runtime timeout, §11 error taxonomy).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use troupe_engine::{ActorSettings, Disposition, Handler};
use troupe_protocol::resiliency::Resiliency;
use troupe_protocol::Envelope;
use troupe_runtime::client::RuntimeClient;

struct Rig {
    bench: Bench,
    runtime: FakeRuntime,
    handler: Handler,
    _dir: tempfile::TempDir,
}

fn rig(
    settings: ActorSettings,
    respond: impl Fn(&Envelope) -> Reply + Send + Sync + 'static,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let runtime = FakeRuntime::start(dir.path(), respond);
    let handler = Handler::Runtime(Arc::new(RuntimeClient::new(&runtime.socket)));
    Rig {
        bench: Bench::new(settings),
        runtime,
        handler,
        _dir: dir,
    }
}

impl Rig {
    async fn run(&self, v: &Value) -> Disposition {
        self.bench.run_json(&self.handler, v).await
    }
}

fn details() -> Value {
    json!({"message": "boom", "type": "ValueError", "mro": ["Exception"], "traceback": "tb"})
}

#[tokio::test]
async fn json_frames_are_routed_and_the_runtime_gets_the_stamped_envelope() {
    let r = rig(settings(), |e| {
        Reply::Json(200, json!({"frames": [pass_through(e, json!({"r": 2}))]}))
    });
    assert_eq!(r.run(&input()).await, Disposition::Acked);
    let reqs = r.runtime.requests();
    assert_eq!(reqs.len(), 1);
    let mut stamped = input();
    stamped["headers"]["x-asya-first-attempt"] = json!(NOW_TS);
    stamped["status"] = json!({"phase": "processing", "actor": "b", "attempt": 1,
        "max_attempts": 0, "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE});
    assert_eq!(reqs[0], stamped, "§7: body = the status-stamped envelope");
    let (q, body) = r.bench.single_send();
    assert_eq!(q, "q.c");
    assert_eq!(body["payload"], json!({"r": 2}));
    assert_eq!(body["status"]["phase"], "pending");
    assert_eq!(
        r.bench.event_kinds(),
        vec!["received", "processing", "completed"]
    );
    r.bench.assert_acked_last();
}

#[tokio::test]
async fn json_reply_with_several_frames_fans_out() {
    let r = rig(settings(), |e| {
        Reply::Json(
            200,
            json!({"frames": [pass_through(e, json!(0)), pass_through(e, json!(1))]}),
        )
    });
    r.run(&input()).await;
    let sends = r.bench.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].1["id"], "t1");
    assert_eq!(sends[1].1["parent_id"], "t1");
}

#[tokio::test]
async fn no_content_means_zero_frames_and_sink_succeeded() {
    let r = rig(settings(), |_| Reply::NoContent);
    assert_eq!(r.run(&input()).await, Disposition::Acked);
    let (q, body) = r.bench.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(
        body["status"],
        json!({"phase": "succeeded", "reason": "Completed", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE})
    );
    assert_eq!(body["route"], input()["route"]);
    assert_eq!(body["payload"], json!({"q": 1}));
    r.bench.assert_acked_last();
}

#[tokio::test]
async fn empty_frames_list_is_zero_frames() {
    let r = rig(settings(), |_| Reply::Json(200, json!({"frames": []})));
    r.run(&input()).await;
    assert_eq!(r.bench.single_send().0, "q.x-sink");
}

#[tokio::test]
async fn sse_frames_and_fly_events_in_order() {
    let r = rig(settings(), |e| {
        Reply::Sse(
            vec![
                upstream(json!({"partial": true, "text": "a"})),
                downstream(&pass_through(e, json!(0))),
                upstream(json!({"partial": true, "text": "b"})),
                downstream(&pass_through(e, json!(1))),
            ],
            true,
        )
    });
    assert_eq!(r.run(&input()).await, Disposition::Acked);
    let seq: Vec<String> = r
        .bench
        .ops()
        .into_iter()
        .filter_map(|op| match op {
            Op::Event { body, .. } if body["type"] == "fly" => Some(format!(
                "fly:{}",
                body["data"]["payload"]["text"].as_str().unwrap()
            )),
            Op::Event { body, .. } => Some(body["status"].as_str().unwrap().to_owned()),
            Op::Send { body, .. } => Some(format!("send:{}", body["payload"])),
            Op::Child { .. } => Some("child".into()),
            Op::Ack(_) => Some("ack".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        seq,
        vec![
            "received",
            "processing",
            "fly:a",
            "completed",
            "send:0",
            "fly:b",
            "child",
            "send:1",
            "ack"
        ],
        "frames dispatched as they arrive, FLY forwarded in order"
    );
    let fly = r
        .bench
        .events()
        .into_iter()
        .find(|(_, b)| b["type"] == "fly")
        .unwrap();
    assert_eq!(fly.0, "t1");
    assert_eq!(
        fly.1,
        json!({"type": "fly", "data": {"payload": {"partial": true, "text": "a"}}})
    );
}

#[tokio::test]
async fn fly_is_dropped_when_reporting_is_off() {
    for (gateway, stealth) in [(None, false), (Some(GW.to_owned()), true)] {
        let mut s = settings();
        s.gateway_url = gateway;
        let r = rig(s, |e| {
            Reply::Sse(
                vec![
                    upstream(json!({"text": "a"})),
                    downstream(&pass_through(e, json!(0))),
                ],
                true,
            )
        });
        let mut v = input();
        if stealth {
            v["headers"]["x-asya-mesh-status"] = json!("off");
        }
        r.run(&v).await;
        assert_eq!(r.bench.reporter_calls(), 0);
        assert_eq!(r.bench.single_send().0, "q.c");
    }
}

#[tokio::test]
async fn sse_error_goes_to_policy_and_earlier_frames_stand() {
    let r = rig(settings(), |e| {
        Reply::Sse(
            vec![
                downstream(&pass_through(e, json!(0))),
                sse_error(details()),
                downstream(&pass_through(e, json!("ignored"))),
            ],
            true,
        )
    });
    assert_eq!(r.run(&input()).await, Disposition::Acked);
    let sends = r.bench.sends();
    assert_eq!(sends.len(), 2, "{sends:#?}");
    assert_eq!(sends[0].0, "q.c");
    assert_eq!(sends[0].1["payload"], 0);
    let (q, failure, _) = &sends[1];
    assert_eq!(q, "q.x-sink");
    assert_eq!(failure["status"]["reason"], "RuntimeError");
    assert_eq!(failure["status"]["error"], details());
    assert_eq!(
        failure["payload"],
        json!({"error": "processing_error", "details": details(), "original_payload": {"q": 1}})
    );
    r.bench.assert_acked_last();
}

#[tokio::test]
async fn http_500_goes_through_the_policy() {
    let mut s = settings();
    s.resiliency = Some(
        Resiliency::from_values(
            Some(&json!({"default": {"maxAttempts": 2, "backoff": "constant",
                                     "initialDelay": "3s"}})),
            None,
        )
        .unwrap()
        .unwrap(),
    );
    let r = rig(s, |_| {
        Reply::Json(
            500,
            json!({"error": "processing_error", "details": details()}),
        )
    });
    assert_eq!(r.run(&input()).await, Disposition::Acked);
    let (q, body, delay) = r.bench.sends().pop().unwrap();
    assert_eq!(q, "q.b");
    assert_eq!(delay, Some(Duration::from_secs(3)));
    assert_eq!(body["status"]["phase"], "retrying");
    assert_eq!(body["status"]["attempt"], 2);
    assert_eq!(body["status"]["error"], details());
    // The retry arrives at attempt 2 of 2: exhausted.
    r.bench.log.clear();
    r.run(&body).await;
    let (q, body) = r.bench.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["status"]["reason"], "PolicyExhausted");
    assert_eq!(body["status"]["max_attempts"], 2);
    assert_eq!(body["payload"]["error"], "processing_error");
    assert_eq!(r.runtime.requests()[1]["status"]["attempt"], 2);
}

#[tokio::test]
async fn http_400_parsing_error_goes_through_the_policy() {
    let r = rig(settings(), |_| {
        Reply::Json(
            400,
            json!({"error": "msg_parsing_error",
                   "details": {"message": "route.next must be a list", "type": "ValueError"}}),
        )
    });
    assert_eq!(r.run(&input()).await, Disposition::Acked);
    let (q, body) = r.bench.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["status"]["reason"], "RuntimeError");
    assert_eq!(body["payload"]["error"], "msg_parsing_error");
    assert_eq!(
        body["status"]["error"],
        json!({"message": "route.next must be a list", "type": "ValueError"})
    );
}

#[tokio::test]
async fn error_without_code_or_details_is_a_processing_error() {
    let r = rig(settings(), |_| Reply::Json(500, json!({})));
    r.run(&input()).await;
    let body = r.bench.single_send().1;
    assert_eq!(
        body["payload"],
        json!({"error": "processing_error", "original_payload": {"q": 1}})
    );
    assert!(body["status"].get("error").is_none());
}

#[tokio::test]
async fn runtime_not_listening_requeues_and_asks_for_a_new_runtime() {
    // No connection could be made, so the request never reached a handler: the
    // message waits in its queue for the restarted runtime instead of going to x-sump.
    let dir = tempfile::tempdir().unwrap();
    let b = Bench::new(settings());
    let h = Handler::Runtime(Arc::new(RuntimeClient::new(
        dir.path().join("nothing.sock"),
    )));
    let d = b.run_json(&h, &input()).await;
    assert_eq!(d, Disposition::RuntimeNotReached);
    assert!(d.runtime_lost());
    assert!(b.sends().is_empty(), "{:?}", b.sends());
    b.assert_requeued();
}

#[tokio::test]
async fn non_http_reply_goes_to_sump() {
    let r = rig(settings(), |_| Reply::Garbage);
    assert_eq!(r.run(&input()).await, Disposition::RuntimeUnreachable);
    let (q, body) = r.bench.single_send();
    assert_eq!(q, "q.x-sump");
    assert_eq!(body["status"]["reason"], "RuntimeError");
}

#[tokio::test]
async fn unparseable_frame_goes_to_sump() {
    let r = rig(settings(), |_| {
        Reply::Sse(vec![("downstream".into(), json!("not a frame"))], true)
    });
    r.run(&input()).await;
    let (q, body) = r.bench.single_send();
    assert_eq!(q, "q.x-sump");
    assert!(body["payload"]["error"]
        .as_str()
        .unwrap()
        .contains("unparseable frame"));
}

#[tokio::test]
async fn sse_eof_before_done_goes_to_sump_after_earlier_frames() {
    let r = rig(settings(), |e| {
        Reply::Sse(vec![downstream(&pass_through(e, json!(0)))], false)
    });
    assert_eq!(r.run(&input()).await, Disposition::RuntimeUnreachable);
    let sends = r.bench.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].0, "q.c", "already dispatched frame stands");
    assert_eq!(sends[1].0, "q.x-sump");
    assert_eq!(sends[1].1["status"]["reason"], "RuntimeError");
    r.bench.assert_acked_last();
}

#[tokio::test(start_paused = true)]
async fn slow_runtime_times_out_to_sump() {
    let mut s = settings();
    s.actor_timeout = Duration::from_secs(1);
    let r = rig(s, |_| Reply::Hang);
    assert_eq!(r.run(&input()).await, Disposition::RuntimeTimedOut);
    let (q, body) = r.bench.single_send();
    assert_eq!(q, "q.x-sump");
    assert_eq!(
        body["payload"],
        json!({"error": "Runtime timeout exceeded after 1s", "original_payload": {"q": 1}})
    );
    assert_eq!(body["status"]["reason"], "Timeout");
    assert_eq!(body["status"]["phase"], "failed");
    r.bench.assert_acked_last();
}

#[tokio::test(start_paused = true)]
async fn timeout_uses_the_sla_remainder_and_keeps_streamed_frames() {
    // 3 s of SLA left, 5 min actor timeout: the call gets 3 s.
    let r = rig(settings(), |e| {
        Reply::SseThenHang(vec![downstream(&pass_through(e, json!(0)))])
    });
    let mut v = input();
    v["status"]["deadline_at"] = json!("2026-01-01T00:00:13Z");
    let started = tokio::time::Instant::now();
    assert_eq!(r.run(&v).await, Disposition::RuntimeTimedOut);
    assert!(started.elapsed() >= Duration::from_secs(3));
    let sends = r.bench.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].0, "q.c");
    assert_eq!(sends[1].0, "q.x-sump");
    assert_eq!(
        sends[1].1["payload"]["error"],
        "Runtime timeout exceeded after 3s"
    );
    r.bench.assert_acked_last();
}

#[tokio::test(start_paused = true)]
async fn timeout_with_failing_sump_send_requeues() {
    let mut s = settings();
    s.actor_timeout = Duration::from_secs(1);
    let r = rig(s, |_| Reply::Hang);
    r.bench
        .transport
        .fail
        .lock()
        .unwrap()
        .queues
        .insert("q.x-sump".into());
    assert_eq!(r.run(&input()).await, Disposition::Requeued);
    r.bench.assert_requeued();
}

#[tokio::test]
async fn send_failure_during_a_stream_requeues_and_stops() {
    let r = rig(settings(), |e| {
        Reply::Sse(
            vec![
                downstream(&pass_through(e, json!(0))),
                downstream(&pass_through(e, json!(1))),
                downstream(&pass_through(e, json!(2))),
            ],
            true,
        )
    });
    r.bench.transport.fail.lock().unwrap().nth_send = Some(2);
    assert_eq!(r.run(&input()).await, Disposition::Requeued);
    let attempts = r
        .bench
        .ops()
        .iter()
        .filter(|o| matches!(o, Op::Send { .. } | Op::SendFailed { .. }))
        .count();
    assert_eq!(attempts, 2);
    r.bench.assert_requeued();
}
