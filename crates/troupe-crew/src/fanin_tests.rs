//! Tests of the fan-in aggregator, grouped by §14.4 step and by Troupe's durability rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Mutex;

use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::testutil::env;

/// A clock the test moves.
struct ManualClock(Mutex<OffsetDateTime>);

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn at_start() -> Arc<Self> {
        Arc::new(Self(Mutex::new(
            time::macros::datetime!(2026-01-01 00:00:00 UTC),
        )))
    }

    fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += by;
    }
}

const ORIGIN: &str = "0b6f0000-0000-4000-8000-000000000001";

fn fan_in(mount: &Path, clock: Arc<dyn Clock>) -> FanIn {
    let config = CrewConfig {
        mount: Some(mount.to_path_buf()),
        fanin_timeout: Duration::from_secs(60),
        ..CrewConfig::default()
    };
    FanIn::with_clock("fanin-x", &config, clock)
}

/// Slice `i` of `n` of [`ORIGIN`] as it arrives at the fan-in actor.
fn slice(i: usize, n: usize, key: &str, payload: Value) -> Envelope {
    let (id, parent, prev) = if i == 0 {
        (ORIGIN.to_owned(), Some("grand-parent"), json!(["router"]))
    } else {
        (
            format!("child-{i}"),
            Some(ORIGIN),
            json!(["router", "worker"]),
        )
    };
    env(json!({
        "id": id,
        "parent_id": parent,
        "route": {"prev": prev, "curr": "fanin-x", "next": ["cont"]},
        "headers": {
            "x-asya-gateway-url": "http://gw:8081",
            "x-asya-fan-in": {"actor": "fanin-x", "origin_id": ORIGIN, "slice_index": i,
                              "slice_count": n, "aggregation_key": key},
        },
        "status": {"phase": "processing", "actor": "fanin-x", "attempt": 1, "max_attempts": 0,
                   "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
        "payload": payload,
    }))
}

/// Delivers `input` as the engine does: reply, then after_dispatch once frames were sent.
async fn deliver(f: &FanIn, input: &Envelope) -> NativeReply {
    let reply = f.reply(input).await.map_err(|e| format!("{e:?}")).unwrap();
    f.after_dispatch(input).await.unwrap();
    reply
}

fn payload_of(reply: &NativeReply) -> Value {
    assert_eq!(reply.frames.len(), 1, "expected the merged frame");
    serde_json::from_str(reply.frames[0].payload.get()).unwrap()
}

fn origin_dir(mount: &Path) -> PathBuf {
    mount.join("fanin").join(ORIGIN)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---- §14.4 (2)-(6): store, count, claim, merge, emit ----

#[tokio::test]
async fn merges_twelve_slices_in_numeric_order_whatever_the_arrival_order() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    // 10 and 11 sort before 2 lexically (Asya's order); arrival is shuffled too.
    let order = [11, 3, 0, 10, 1, 7, 2, 9, 4, 6, 8, 5];
    for (n, i) in order.iter().enumerate() {
        let payload = if *i == 0 {
            json!({"query": "q"})
        } else {
            json!(format!("r{i}"))
        };
        let reply = deliver(&f, &slice(*i, 12, "/hits", payload)).await;
        if n + 1 < order.len() {
            assert!(reply.frames.is_empty(), "slice {i} emitted early");
            assert!(reply.task.is_none());
        } else {
            let expected: Vec<String> = (1..12).map(|k| format!("r{k}")).collect();
            assert_eq!(payload_of(&reply), json!({"query": "q", "hits": expected}));
        }
    }
}

#[tokio::test]
async fn merged_envelope_is_the_origin_task_with_the_continuation() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    deliver(&f, &slice(0, 2, "/r", json!({"a": 1}))).await;
    let reply = deliver(&f, &slice(1, 2, "/r", json!(5))).await;
    // Completed by a child slice, emitted as the origin with the origin's parent_id.
    assert_eq!(
        reply.task,
        Some(TaskIdentity {
            id: ORIGIN.into(),
            parent_id: Some("grand-parent".into())
        })
    );
    let frame = &reply.frames[0];
    assert_eq!(frame.route.prev, vec!["router", "worker", "fanin-x"]);
    assert_eq!(frame.route.curr, "cont");
    assert!(frame.route.next.is_empty());
    let headers = frame.headers.as_ref().unwrap();
    assert!(!headers.contains_key("x-asya-fan-in"));
    assert_eq!(headers["x-asya-origin-id"], json!(ORIGIN));
    assert_eq!(headers["x-asya-gateway-url"], json!("http://gw:8081"));
}

#[tokio::test]
async fn aggregation_key_creates_intermediate_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    deliver(&f, &slice(0, 3, "/a/b~1c/hits", json!({"q": 1, "a": 7}))).await;
    deliver(&f, &slice(2, 3, "/a/b~1c/hits", json!({"k": 2}))).await;
    let reply = deliver(&f, &slice(1, 3, "/a/b~1c/hits", json!(null))).await;
    assert_eq!(
        payload_of(&reply),
        json!({"q": 1, "a": {"b/c": {"hits": [null, {"k": 2}]}}})
    );
}

#[test]
fn pointer_rules() {
    let mut v = json!({"x": [1, {"y": 0}]});
    set_pointer(&mut v, "/x/1/y", json!([9]));
    assert_eq!(v, json!({"x": [1, {"y": [9]}]}));
    set_pointer(&mut v, "/x/5", json!(2));
    assert_eq!(v, json!({"x": {"5": 2}}));
    let mut s = json!("scalar");
    set_pointer(&mut s, "/r", json!([]));
    assert_eq!(s, json!({"r": []}));
    set_pointer(&mut s, "", json!([1]));
    assert_eq!(s, json!([1]));
    let mut t = json!({});
    set_pointer(&mut t, "/m~0n", json!(1));
    assert_eq!(t, json!({"m~n": 1}));
}

#[tokio::test]
async fn a_redelivered_slice_never_counts_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    deliver(&f, &slice(0, 3, "/r", json!({}))).await;
    assert!(deliver(&f, &slice(1, 3, "/r", json!("first")))
        .await
        .frames
        .is_empty());
    // The same slice again (a redelivery, or a retried router giving it a new id).
    let mut again = slice(1, 3, "/r", json!("second"));
    again.id = "child-1-retry".into();
    assert!(deliver(&f, &again).await.frames.is_empty());
    assert_eq!(
        names(&origin_dir(tmp.path())),
        vec!["parent.json", "slice-0.json", "slice-1.json"]
    );
    let reply = deliver(&f, &slice(2, 3, "/r", json!("two"))).await;
    assert_eq!(payload_of(&reply), json!({"r": ["first", "two"]}));
}

// ---- (7) and late duplicates ----

#[tokio::test]
async fn after_the_emit_only_the_markers_stay_and_late_duplicates_emit_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    deliver(&f, &slice(0, 2, "/r", json!({}))).await;
    assert_eq!(
        names(&tmp.path().join("fanin/.pending")),
        vec![format!("{ORIGIN}.json")]
    );
    assert_eq!(
        deliver(&f, &slice(1, 2, "/r", json!(1))).await.frames.len(),
        1
    );
    assert_eq!(names(&origin_dir(tmp.path())), vec!["complete", "emitted"]);
    assert!(names(&tmp.path().join("fanin/.pending")).is_empty());
    let claim: Value =
        serde_json::from_slice(&std::fs::read(origin_dir(tmp.path()).join("complete")).unwrap())
            .unwrap();
    assert_eq!(claim, json!({"slice_index": 1, "by": "child-1"}));
    for i in [0, 1] {
        let reply = deliver(&f, &slice(i, 2, "/r", json!(2))).await;
        assert!(
            reply.frames.is_empty(),
            "late duplicate of slice {i} emitted"
        );
    }
    // No slice file came back, no pending entry either (no timeout for a done origin).
    assert_eq!(names(&origin_dir(tmp.path())), vec!["complete", "emitted"]);
    assert!(names(&tmp.path().join("fanin/.pending")).is_empty());
}

#[tokio::test]
async fn a_crash_after_the_claim_re_emits_on_the_claiming_slice_only() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    deliver(&f, &slice(0, 3, "/r", json!({"q": 1}))).await;
    deliver(&f, &slice(2, 3, "/r", json!("b"))).await;
    // Slice 1 claims `complete`, then the process dies before the merged envelope was
    // sent: no after_dispatch, and a new process (a fresh FanIn) gets the redeliveries.
    let claimed = f.reply(&slice(1, 3, "/r", json!("a"))).await.unwrap();
    assert_eq!(claimed.frames.len(), 1);
    drop(f);
    let restarted = fan_in(tmp.path(), crate::testutil::clock());
    // Another slice's redelivery does not emit: only the claim's owner may.
    assert!(deliver(&restarted, &slice(2, 3, "/r", json!("b")))
        .await
        .frames
        .is_empty());
    assert!(deliver(&restarted, &slice(0, 3, "/r", json!({"q": 1})))
        .await
        .frames
        .is_empty());
    let again = deliver(&restarted, &slice(1, 3, "/r", json!("a"))).await;
    assert_eq!(payload_of(&again), json!({"q": 1, "r": ["a", "b"]}));
    assert_eq!(again.task.as_ref().map(|t| t.id.as_str()), Some(ORIGIN));
    // Now it is emitted for good.
    assert!(deliver(&restarted, &slice(1, 3, "/r", json!("a")))
        .await
        .frames
        .is_empty());
    assert_eq!(names(&origin_dir(tmp.path())), vec!["complete", "emitted"]);
}

#[tokio::test]
async fn a_send_failure_keeps_the_state_for_the_redelivery() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    deliver(&f, &slice(0, 2, "/r", json!({}))).await;
    // The merged frame could not be sent: the engine requeues without after_dispatch.
    assert_eq!(
        f.reply(&slice(1, 2, "/r", json!(1)))
            .await
            .unwrap()
            .frames
            .len(),
        1
    );
    assert!(!origin_dir(tmp.path()).join("emitted").exists());
    let again = deliver(&f, &slice(1, 2, "/r", json!(1))).await;
    assert_eq!(payload_of(&again), json!({"r": [1]}));
    assert!(origin_dir(tmp.path()).join("emitted").exists());
}

// ---- rounds (a flow's fan-out run again in one task) ----

/// Slice `i` of `n` of round `round`.
fn slice_of_round(i: usize, n: usize, round: u64, payload: Value) -> Envelope {
    let mut e = slice(i, n, "/r", payload);
    let h = e.headers.get_mut("x-asya-fan-in").unwrap();
    h["round"] = json!(round);
    e
}

#[tokio::test]
async fn each_round_is_its_own_aggregation() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    deliver(&f, &slice_of_round(0, 2, 1, json!({"round": 1}))).await;
    let first = deliver(&f, &slice_of_round(1, 2, 1, json!("a"))).await;
    assert_eq!(payload_of(&first), json!({"round": 1, "r": ["a"]}));
    // The same origin fans out again: not a late duplicate of round 1.
    deliver(&f, &slice_of_round(0, 2, 2, json!({"round": 2}))).await;
    let second = deliver(&f, &slice_of_round(1, 2, 2, json!("b"))).await;
    assert_eq!(payload_of(&second), json!({"round": 2, "r": ["b"]}));
    assert_eq!(second.task.as_ref().map(|t| t.id.as_str()), Some(ORIGIN));
    assert!(tmp
        .path()
        .join("fanin")
        .join(format!("{ORIGIN}.2/emitted"))
        .exists());
    // Round 0 (Asya's routers send no round) keeps Asya's folder name.
    assert!(!origin_dir(tmp.path()).exists());
}

#[tokio::test]
async fn a_timed_out_round_fails_and_the_next_round_still_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_start();
    let f = Arc::new(fan_in(tmp.path(), clock.clone()));
    deliver(&f, &slice_of_round(0, 2, 1, json!({}))).await;
    clock.advance(Duration::from_secs(61));
    let due = f.sweep().await.unwrap();
    assert_eq!(due.len(), 1);
    f.timed_out_sent(&due[0]).await.unwrap();
    assert!(f.sweep().await.unwrap().is_empty());
    assert!(tmp
        .path()
        .join("fanin")
        .join(format!("{ORIGIN}.1/emitted"))
        .exists());
    deliver(&f, &slice_of_round(0, 2, 2, json!({}))).await;
    let merged = deliver(&f, &slice_of_round(1, 2, 2, json!(7))).await;
    assert_eq!(payload_of(&merged), json!({"r": [7]}));
}

// ---- header checks ----

#[tokio::test]
async fn a_missing_or_invalid_header_is_a_value_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    let mut no_header = slice(0, 2, "/r", json!({}));
    no_header.headers.remove("x-asya-fan-in");
    let mut bad_index = slice(0, 2, "/r", json!({}));
    bad_index.headers.insert(
        "x-asya-fan-in".into(),
        json!({"origin_id": ORIGIN, "slice_index": 2, "slice_count": 2, "aggregation_key": "/r"}),
    );
    let bad_key = slice(0, 2, "r", json!({}));
    for (input, needle) in [
        (no_header, "Missing x-asya-fan-in"),
        (bad_index, "not below slice_count"),
        (bad_key, "not a JSON Pointer"),
    ] {
        match f.reply(&input).await {
            Err(NativeError::Failed(fail)) => {
                assert_eq!(fail.details.error_type, "ValueError");
                assert!(
                    fail.details.message.contains(needle),
                    "{}",
                    fail.details.message
                );
            }
            other => panic!("expected a ValueError, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_header_given_as_a_json_string_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fan_in(tmp.path(), crate::testutil::clock());
    let mut only = slice(0, 1, "/r", json!({"a": 1}));
    let text = only.headers["x-asya-fan-in"].to_string();
    only.headers
        .insert("x-asya-fan-in".into(), Value::String(text));
    assert_eq!(
        payload_of(&deliver(&f, &only).await),
        json!({"a": 1, "r": []})
    );
}

// ---- timeout ----

#[tokio::test]
async fn the_sweep_fails_an_origin_whose_slices_do_not_all_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_start();
    let f = Arc::new(fan_in(tmp.path(), clock.clone()));
    deliver(&f, &slice(1, 4, "/r", json!("one"))).await;
    clock.advance(Duration::from_secs(20));
    deliver(&f, &slice(0, 4, "/r", json!({"q": "x"}))).await;
    // The timeout counts from the first arrival (slice 1), not the last.
    clock.advance(Duration::from_secs(39));
    assert!(f.sweep().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(2));
    let due = f.sweep().await.unwrap();
    assert_eq!(due.len(), 1);
    let failed = crate::testutil::value(&due[0].envelope);
    let message = "fan-in fanin-x: 2 of 4 slices arrived within 1m0s (missing 2, 3)";
    assert_eq!(failed["id"], json!(ORIGIN));
    assert_eq!(failed["parent_id"], json!("grand-parent"));
    assert_eq!(
        failed["route"],
        json!({"prev": ["router", "worker"], "curr": "fanin-x", "next": ["cont"]})
    );
    assert_eq!(
        failed["headers"],
        json!({"x-asya-gateway-url": "http://gw:8081", "x-asya-origin-id": ORIGIN})
    );
    let status = &failed["status"];
    assert_eq!(status["phase"], json!("failed"));
    assert_eq!(status["reason"], json!("Timeout"));
    assert_eq!(status["actor"], json!("fanin-x"));
    assert_eq!(status["created_at"], json!("2026-01-01T00:00:00Z"));
    assert_eq!(status["updated_at"], json!("2026-01-01T00:01:01Z"));
    assert_eq!(status["error"]["type"], json!("FanInTimeout"));
    assert_eq!(status["error"]["message"], json!(message));
    assert_eq!(failed["payload"]["error"], json!(message));
    assert_eq!(failed["payload"]["details"]["missing"], json!([2, 3]));
    assert_eq!(failed["payload"]["details"]["arrived"], json!([0, 1]));
    assert_eq!(failed["payload"]["original_payload"], json!({"q": "x"}));

    // Not recorded as sent yet (a crash, a failed send): the next sweep sends it again.
    let again = f.sweep().await.unwrap();
    assert_eq!(again.len(), 1);
    f.timed_out_sent(&again[0]).await.unwrap();
    assert!(f.sweep().await.unwrap().is_empty());
    assert_eq!(names(&origin_dir(tmp.path())), vec!["complete", "emitted"]);
    assert!(names(&tmp.path().join("fanin/.pending")).is_empty());

    // The missing slices arrive after the timeout fired: nothing is emitted.
    for i in [2, 3] {
        let late = deliver(&f, &slice(i, 4, "/r", json!(i))).await;
        assert!(
            late.frames.is_empty(),
            "slice {i} after the timeout emitted"
        );
    }
}

#[tokio::test]
async fn a_slice_arriving_between_claim_and_send_of_the_timeout_emits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_start();
    let f = Arc::new(fan_in(tmp.path(), clock.clone()));
    deliver(&f, &slice(0, 2, "/r", json!({}))).await;
    clock.advance(Duration::from_secs(61));
    assert_eq!(f.sweep().await.unwrap().len(), 1);
    // The last slice makes the count whole, but the sweep holds the claim.
    assert!(deliver(&f, &slice(1, 2, "/r", json!(1)))
        .await
        .frames
        .is_empty());
    assert_eq!(
        f.sweep().await.unwrap().len(),
        1,
        "the failure is still owed"
    );
}

#[tokio::test]
async fn a_completed_origin_is_never_timed_out() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_start();
    let f = Arc::new(fan_in(tmp.path(), clock.clone()));
    deliver(&f, &slice(0, 2, "/r", json!({}))).await;
    // Claimed by slice 1, crash before the send: the sweep leaves it to the redelivery.
    assert_eq!(
        f.reply(&slice(1, 2, "/r", json!(1)))
            .await
            .unwrap()
            .frames
            .len(),
        1
    );
    clock.advance(Duration::from_secs(3600));
    assert!(f.sweep().await.unwrap().is_empty());
    assert_eq!(
        payload_of(&deliver(&f, &slice(1, 2, "/r", json!(1))).await),
        json!({"r": [1]})
    );
    assert!(f.sweep().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_sends_the_failure_to_x_sink_and_stops_with_its_sender() {
    use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};
    let tmp = tempfile::tempdir().unwrap();
    let config = CrewConfig {
        mount: Some(tmp.path().join("state")),
        fanin_timeout: Duration::from_millis(300),
        ..CrewConfig::default()
    };
    let f = Arc::new(FanIn::new("fanin-x", &config));
    deliver(&f, &slice(0, 3, "/r", json!({}))).await;
    let transport: Arc<dyn Transport> = Arc::new(
        EmbeddedTransport::open(&tmp.path().join("queues"), EmbeddedOptions::default()).unwrap(),
    );
    let (stop, stop_rx) = watch::channel(false);
    let sweeper = f
        .clone()
        .spawn_sweeper(transport.clone(), "x-sink".into(), stop_rx);
    let delivery = tokio::time::timeout(Duration::from_secs(10), transport.receive("x-sink"))
        .await
        .expect("the failure reaches x-sink")
        .unwrap();
    let failed: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(failed["id"], json!(ORIGIN));
    assert_eq!(failed["status"]["error"]["type"], json!("FanInTimeout"));
    // Sent once: recorded as emitted, so the next sweeps send nothing more.
    let emitted = origin_dir(&tmp.path().join("state")).join("emitted");
    for _ in 0..100 {
        if emitted.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(emitted.exists());
    drop(stop);
    tokio::time::timeout(Duration::from_secs(5), sweeper)
        .await
        .expect("the sweeper stops when its sender is dropped")
        .unwrap();
}

#[test]
fn sweep_interval_is_a_tenth_of_the_timeout_within_bounds() {
    let at = |secs: u64| {
        let config = CrewConfig {
            fanin_timeout: Duration::from_secs(secs),
            ..CrewConfig::default()
        };
        FanIn::new("f", &config).sweep_interval()
    };
    assert_eq!(at(1), Duration::from_millis(100));
    assert_eq!(at(20), Duration::from_secs(2));
    assert_eq!(at(3600), Duration::from_secs(30));
}
