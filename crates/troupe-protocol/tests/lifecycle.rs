#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Status decisions of the per-message algorithm (protocol.md §8 steps 4, 5, 9, 10, 12,
//! §8.2 frame dispatch, §9.3 retry and policy-routed envelopes).

use std::time::Duration;

use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use troupe_protocol::lifecycle::{
    accept_policy_routed, deadline, divert_preflight, effective_timeout, is_retry_arrival,
    mark_sla_timeout, mark_zero_frames, outgoing, policy_routed_envelope, retry_envelope,
    sla_expired, stamp, Target,
};
use troupe_protocol::{Envelope, ErrorInfo, Frame, Phase};

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:10 UTC);
const NOW_TS: &str = "2026-01-01T00:00:10Z";
const CREATED: &str = "2026-01-01T00:00:00Z";
const DEADLINE: &str = "2026-01-01T00:05:00Z";

fn env(v: Value) -> Envelope {
    serde_json::from_value(v).unwrap()
}

fn wire(e: &Envelope) -> Value {
    serde_json::from_slice(&e.to_vec()).unwrap()
}

fn frame(v: Value) -> Frame {
    serde_json::from_value(v).unwrap()
}

/// An envelope as a previous actor `a` sends it to `b` (phase pending for `b`).
fn pending_for_b() -> Envelope {
    env(json!({
        "id": "t1",
        "parent_id": "p0",
        "route": {"prev": ["a"], "curr": "b", "next": ["c"]},
        "headers": {"trace": "x"},
        "status": {"phase": "pending", "actor": "b", "attempt": 1, "max_attempts": 1,
                   "created_at": CREATED, "updated_at": "2026-01-01T00:00:05Z",
                   "deadline_at": DEADLINE},
        "payload": {"q": 1}
    }))
}

/// The stamped input at `b` (what the runtime receives).
fn stamped_at_b(attempt: u32) -> Envelope {
    env(json!({
        "id": "t1",
        "parent_id": "p0",
        "route": {"prev": ["a"], "curr": "b", "next": ["c"]},
        "headers": {"trace": "x", "x-asya-first-attempt": "2026-01-01T00:00:02Z"},
        "status": {"phase": "processing", "actor": "b", "attempt": attempt, "max_attempts": 0,
                   "created_at": CREATED, "updated_at": "2026-01-01T00:00:05Z",
                   "deadline_at": DEADLINE},
        "payload": {"q": 1}
    }))
}

fn info() -> ErrorInfo {
    serde_json::from_value(
        json!({"message": "boom", "type": "ValueError", "mro": ["Exception"], "traceback": "tb"}),
    )
    .unwrap()
}

// ---------------------------------------------------------------- step 9: stamping

#[test]
fn retry_arrival_needs_retrying_phase_and_own_actor() {
    let mut e = pending_for_b();
    assert!(!is_retry_arrival(&e, "b"), "pending is a fresh arrival");
    e.status.as_mut().unwrap().phase = Phase::Retrying;
    assert!(is_retry_arrival(&e, "b"));
    assert!(!is_retry_arrival(&e, "c"), "retrying at another actor");
    e.status = None;
    assert!(!is_retry_arrival(&e, "b"));
}

#[test]
fn stamp_without_status_creates_the_block() {
    let mut e = env(
        json!({"id": "t1", "route": {"prev": [], "curr": "b", "next": []},
                          "payload": null}),
    );
    stamp(&mut e, "b", NOW);
    let w = wire(&e);
    assert_eq!(
        w["status"],
        json!({"phase": "processing", "actor": "b", "attempt": 1, "max_attempts": 0,
               "created_at": NOW_TS, "updated_at": NOW_TS})
    );
    assert_eq!(w["headers"], json!({"x-asya-first-attempt": NOW_TS}));
}

#[test]
fn stamp_fresh_arrival_resets_attempt_and_overwrites_first_attempt() {
    let mut e = pending_for_b();
    {
        let s = e.status.as_mut().unwrap();
        s.attempt = 4;
        s.reason = Some(troupe_protocol::Reason::PolicyRouted);
        s.error = Some(info());
    }
    e.headers
        .insert("x-asya-first-attempt".into(), json!("2020-01-01T00:00:00Z"));
    stamp(&mut e, "b", NOW);
    let w = wire(&e);
    assert_eq!(
        w["status"],
        json!({"phase": "processing", "actor": "b", "attempt": 1, "max_attempts": 0,
               "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE})
    );
    assert_eq!(w["headers"]["x-asya-first-attempt"], NOW_TS);
    assert_eq!(w["headers"]["trace"], "x");
}

#[test]
fn stamp_retry_arrival_keeps_attempt_and_first_attempt() {
    let mut e = stamped_at_b(1);
    let retry = retry_envelope(&e, info(), 3, NOW);
    e = retry;
    assert_eq!(e.status.as_ref().unwrap().attempt, 2);
    let later = datetime!(2026-01-01 00:01:00 UTC);
    stamp(&mut e, "b", later);
    let w = wire(&e);
    assert_eq!(
        w["status"],
        json!({"phase": "processing", "actor": "b", "attempt": 2, "max_attempts": 0,
               "created_at": CREATED, "updated_at": "2026-01-01T00:01:00Z",
               "deadline_at": DEADLINE}),
        "reason and error cleared, attempt kept"
    );
    assert_eq!(
        w["headers"]["x-asya-first-attempt"], "2026-01-01T00:00:02Z",
        "kept on a retry arrival"
    );
}

#[test]
fn stamp_retry_arrival_sets_missing_first_attempt_and_fixes_zero_attempt() {
    let mut e = env(json!({
        "id": "t1", "route": {"prev": [], "curr": "b", "next": []},
        "status": {"phase": "retrying", "actor": "b", "attempt": 0, "created_at": ""},
        "payload": 1
    }));
    stamp(&mut e, "b", NOW);
    let w = wire(&e);
    assert_eq!(w["headers"]["x-asya-first-attempt"], NOW_TS);
    assert_eq!(w["status"]["attempt"], 1);
    assert_eq!(
        w["status"]["created_at"], NOW_TS,
        "empty created_at is filled"
    );
}

#[test]
fn stamp_retrying_at_another_actor_is_fresh() {
    let mut e = stamped_at_b(3);
    e.status.as_mut().unwrap().phase = Phase::Retrying;
    stamp(&mut e, "c", NOW);
    let s = e.status.as_ref().unwrap();
    assert_eq!((s.attempt, s.actor.as_str()), (1, "c"));
    assert_eq!(e.header_str("x-asya-first-attempt"), Some(NOW_TS));
}

// ---------------------------------------------------------------- step 4: pre-flight

#[test]
fn preflight_canceled_and_paused() {
    for (phase, reason) in [
        (Phase::Canceled, "PreFlightCanceled"),
        (Phase::Paused, "PreFlightPaused"),
    ] {
        let mut e = pending_for_b();
        divert_preflight(&mut e, phase, "b", NOW);
        let w = wire(&e);
        assert_eq!(
            w["status"],
            json!({"phase": phase.as_str(), "reason": reason, "actor": "b", "attempt": 1,
                   "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
                   "deadline_at": DEADLINE}),
            "other fields kept"
        );
        assert_eq!(
            w["route"],
            json!({"prev": ["a"], "curr": "b", "next": ["c"]})
        );
        assert_eq!(w["payload"], json!({"q": 1}));
    }
}

#[test]
fn preflight_creates_missing_status_with_created_at_now() {
    let mut e = pending_for_b();
    e.status = None;
    divert_preflight(&mut e, Phase::Canceled, "b", NOW);
    assert_eq!(
        wire(&e)["status"],
        json!({"phase": "canceled", "reason": "PreFlightCanceled", "actor": "b",
               "attempt": 1, "max_attempts": 1, "created_at": NOW_TS, "updated_at": NOW_TS}),
        "a created block counts attempts from 1"
    );
}

// ---------------------------------------------------------------- steps 5 and 10: SLA

#[test]
fn deadline_parsing_and_expiry() {
    let mut e = pending_for_b();
    assert_eq!(deadline(&e), Some(datetime!(2026-01-01 00:05:00 UTC)));
    assert!(!sla_expired(&e, NOW));
    assert!(
        !sla_expired(&e, datetime!(2026-01-01 00:05:00 UTC)),
        "not yet past"
    );
    assert!(sla_expired(&e, datetime!(2026-01-01 00:05:01 UTC)));
    // Any RFC 3339 value is accepted.
    e.status.as_mut().unwrap().deadline_at = Some("2026-01-01T01:00:05+01:00".into());
    assert_eq!(deadline(&e), Some(datetime!(2026-01-01 00:00:05 UTC)));
    assert!(sla_expired(&e, NOW));
    // Unparseable or missing deadlines never expire.
    e.status.as_mut().unwrap().deadline_at = Some("tomorrow".into());
    assert_eq!(deadline(&e), None);
    assert!(!sla_expired(&e, NOW));
    e.status = None;
    assert!(!sla_expired(&e, NOW));
}

#[test]
fn sla_timeout_status_replaces_the_block() {
    let mut e = stamped_at_b(3);
    {
        let s = e.status.as_mut().unwrap();
        s.phase = Phase::Retrying;
        s.max_attempts = 5;
        s.error = Some(info());
    }
    mark_sla_timeout(&mut e, "b", NOW);
    assert_eq!(
        wire(&e)["status"],
        json!({"phase": "failed", "reason": "Timeout", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE}),
        "status := {{failed, Timeout, actor, 1, 1, created_at kept, now, deadline kept}}"
    );
}

#[test]
fn sla_timeout_without_status_creates_it() {
    let mut e = pending_for_b();
    e.status = None;
    mark_sla_timeout(&mut e, "b", NOW);
    assert_eq!(
        wire(&e)["status"],
        json!({"phase": "failed", "reason": "Timeout", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": NOW_TS, "updated_at": NOW_TS})
    );
}

#[test]
fn effective_timeout_is_min_of_actor_timeout_and_sla() {
    let five_min = Duration::from_secs(300);
    let mut e = pending_for_b();
    // 4m50s left.
    assert_eq!(
        effective_timeout(five_min, &e, NOW),
        Some(Duration::from_secs(290))
    );
    assert_eq!(
        effective_timeout(Duration::from_secs(30), &e, NOW),
        Some(Duration::from_secs(30))
    );
    // Exactly one second left is still enough.
    assert_eq!(
        effective_timeout(five_min, &e, datetime!(2026-01-01 00:04:59 UTC)),
        Some(Duration::from_secs(1))
    );
    // Less than a second, zero or negative → SLA path.
    assert_eq!(
        effective_timeout(five_min, &e, datetime!(2026-01-01 00:04:59.5 UTC)),
        None
    );
    assert_eq!(
        effective_timeout(five_min, &e, datetime!(2026-01-01 00:05:00 UTC)),
        None
    );
    assert_eq!(
        effective_timeout(five_min, &e, datetime!(2026-01-01 00:06:00 UTC)),
        None
    );
    // min(0, SLA) is ≤ 0 as well.
    assert_eq!(effective_timeout(Duration::ZERO, &e, NOW), None);
    // No deadline: the actor timeout; a zero actor timeout is "≤ 0".
    e.status = None;
    assert_eq!(effective_timeout(five_min, &e, NOW), Some(five_min));
    assert_eq!(effective_timeout(Duration::ZERO, &e, NOW), None);
}

#[test]
fn effective_timeout_keeps_sub_second_remainders() {
    let e = pending_for_b();
    assert_eq!(
        effective_timeout(
            Duration::from_secs(300),
            &e,
            datetime!(2026-01-01 00:04:58.250 UTC)
        ),
        Some(Duration::from_millis(1750))
    );
}

// ---------------------------------------------------------------- step 12: zero frames

#[test]
fn zero_frames_status() {
    let mut e = stamped_at_b(2);
    mark_zero_frames(&mut e, "b", NOW);
    let w = wire(&e);
    assert_eq!(
        w["status"],
        json!({"phase": "succeeded", "reason": "Completed", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE})
    );
    assert_eq!(
        w["route"],
        json!({"prev": ["a"], "curr": "b", "next": ["c"]})
    );
    assert_eq!(w["id"], "t1");
    assert_eq!(w["parent_id"], "p0");
}

// ---------------------------------------------------------------- step 7: hand-off

#[test]
fn asya_style_policy_routed_hand_off_is_advanced() {
    // Asya leaves curr on the failing actor and puts onExhausted into next.
    let mut e = env(json!({
        "id": "t1",
        "route": {"prev": ["a"], "curr": "b", "next": ["apologize", "z"]},
        "status": {"phase": "failed", "reason": "PolicyRouted", "actor": "b", "attempt": 3,
                   "max_attempts": 3, "created_at": CREATED, "updated_at": CREATED},
        "payload": 1
    }));
    assert!(accept_policy_routed(&mut e, "apologize"));
    assert_eq!(
        wire(&e)["route"],
        json!({"prev": ["a", "b"], "curr": "apologize", "next": ["z"]})
    );
}

#[test]
fn hand_off_needs_policy_routed_and_next_head() {
    let base = json!({
        "id": "t1",
        "route": {"prev": ["a"], "curr": "b", "next": ["apologize"]},
        "status": {"phase": "failed", "reason": "PolicyRouted", "actor": "b"},
        "payload": 1
    });
    // Not the next actor.
    let mut e = env(base.clone());
    assert!(!accept_policy_routed(&mut e, "other"));
    assert_eq!(e.route.curr, "b");
    // Another reason.
    let mut v = base.clone();
    v["status"]["reason"] = json!("RuntimeError");
    let mut e = env(v);
    assert!(!accept_policy_routed(&mut e, "apologize"));
    assert_eq!(e.route.curr, "b", "route untouched");
    // No status.
    let mut v = base;
    v.as_object_mut().unwrap().remove("status");
    let mut e = env(v);
    assert!(!accept_policy_routed(&mut e, "apologize"));
}

// ---------------------------------------------------------------- §9.3

#[test]
fn retry_envelope_shape() {
    let stamped = stamped_at_b(2);
    let r = retry_envelope(&stamped, info(), 3, NOW);
    let w = wire(&r);
    assert_eq!(
        w["status"],
        json!({"phase": "retrying", "actor": "b", "attempt": 3, "max_attempts": 3,
               "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE,
               "error": {"message": "boom", "type": "ValueError", "mro": ["Exception"],
                         "traceback": "tb"}})
    );
    // Everything else is the stamped input, route unadvanced.
    let mut expected = wire(&stamped);
    expected["status"] = w["status"].clone();
    assert_eq!(w, expected);
}

#[test]
fn retry_envelope_with_empty_error_omits_it() {
    let r = retry_envelope(&stamped_at_b(1), ErrorInfo::default(), 2, NOW);
    assert!(wire(&r)["status"].get("error").is_none());
}

#[test]
fn policy_routed_envelope_shape() {
    let stamped = stamped_at_b(3);
    let r = policy_routed_envelope(
        &stamped,
        &["apologize".to_owned(), "z".to_owned()],
        info(),
        3,
        NOW,
    );
    let w = wire(&r);
    assert_eq!(
        w["route"],
        json!({"prev": ["a", "b"], "curr": "apologize", "next": ["z"]})
    );
    assert_eq!(
        w["status"],
        json!({"phase": "failed", "reason": "PolicyRouted", "actor": "b", "attempt": 3,
               "max_attempts": 3, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE,
               "error": {"message": "boom", "type": "ValueError", "mro": ["Exception"],
                         "traceback": "tb"}})
    );
    assert_eq!(w["payload"], json!({"q": 1}), "payload unchanged");
    assert_eq!(w["headers"], wire(&stamped)["headers"]);
    assert_eq!(
        (w["id"].clone(), w["parent_id"].clone()),
        (json!("t1"), json!("p0"))
    );
}

#[test]
fn policy_routed_then_accepted_by_target() {
    // A Troupe hand-off is already shifted: the target accepts it by name.
    let r = policy_routed_envelope(&stamped_at_b(1), &["apologize".to_owned()], info(), 1, NOW);
    assert_eq!(r.route.curr, "apologize");
    let mut r2 = r.clone();
    assert!(
        !accept_policy_routed(&mut r2, "apologize"),
        "no second advance"
    );
    assert_eq!(r2.route, r.route);
}

// ---------------------------------------------------------------- §8.2: outgoing

fn out(stamped: &Envelope, f: Value, index: usize) -> (Value, Target) {
    let (e, t) = outgoing(
        stamped,
        frame(f),
        index,
        || "child-id".to_owned(),
        "b",
        "x-sink",
        "x-sump",
        NOW,
    );
    (wire(&e), t)
}

#[test]
fn frame_zero_to_next_actor_keeps_id_and_parent_id() {
    let stamped = stamped_at_b(2);
    let f = json!({
        "payload": {"r": 2},
        "route": {"prev": ["a", "b"], "curr": "c", "next": []},
        "headers": {"trace": "y"},
        "status": wire(&stamped)["status"].clone()
    });
    let (w, t) = out(&stamped, f, 0);
    assert_eq!(t, Target::Actor("c".into()));
    assert_eq!(
        w,
        json!({
            "id": "t1", "parent_id": "p0",
            "route": {"prev": ["a", "b"], "curr": "c", "next": []},
            "headers": {"trace": "y"},
            "status": {"phase": "pending", "actor": "c", "attempt": 1, "max_attempts": 1,
                       "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE},
            "payload": {"r": 2}
        })
    );
}

#[test]
fn later_frames_get_the_child_id_and_parent() {
    let stamped = stamped_at_b(1);
    let f = json!({"payload": 1, "route": {"prev": ["a", "b"], "curr": "c", "next": []}});
    let (w, _) = out(&stamped, f, 3);
    assert_eq!(w["id"], "child-id");
    assert_eq!(
        w["parent_id"], "t1",
        "parent is the input id, not its parent"
    );
}

#[test]
fn child_id_generator_is_not_called_for_frame_zero() {
    let stamped = stamped_at_b(1);
    let f = frame(json!({"payload": 1, "route": {"prev": ["b"], "curr": "c", "next": []}}));
    let (e, _) = outgoing(
        &stamped,
        f,
        0,
        || panic!("frame 0 keeps the input id"),
        "b",
        "x-sink",
        "x-sump",
        NOW,
    );
    assert_eq!(e.id, "t1");
}

#[test]
fn frame_zero_without_input_parent_has_none() {
    let mut stamped = stamped_at_b(1);
    stamped.parent_id = None;
    let (w, _) = out(
        &stamped,
        json!({"payload": 1, "route": {"prev": ["b"], "curr": "c", "next": []}}),
        0,
    );
    assert!(w.get("parent_id").is_none(), "omitted, never null");
}

#[test]
fn missing_or_empty_frame_headers_fall_back_to_input_headers() {
    let stamped = stamped_at_b(1);
    let input_headers = wire(&stamped)["headers"].clone();
    for f in [
        json!({"payload": 1, "route": {"prev": ["b"], "curr": "c", "next": []}}),
        json!({"payload": 1, "route": {"prev": ["b"], "curr": "c", "next": []}, "headers": {}}),
    ] {
        let (w, _) = out(&stamped, f, 0);
        assert_eq!(w["headers"], input_headers);
    }
}

#[test]
fn frame_past_the_last_actor_goes_to_sink_succeeded() {
    let stamped = stamped_at_b(2);
    let f = json!({
        "payload": {"done": true},
        "route": {"prev": ["a", "b"], "curr": "", "next": []},
        "status": wire(&stamped)["status"].clone()
    });
    let (w, t) = out(&stamped, f, 0);
    assert_eq!(t, Target::Sink);
    assert_eq!(
        w["status"],
        json!({"phase": "succeeded", "reason": "Completed", "actor": "b", "attempt": 2,
               "max_attempts": 1, "created_at": CREATED, "updated_at": NOW_TS,
               "deadline_at": DEADLINE}),
        "actor/attempt from the frame status; its max_attempts 0 (processing) becomes 1"
    );
    // A policy's maxAttempts written into the frame status is kept.
    let mut status = wire(&stamped)["status"].clone();
    status["max_attempts"] = json!(3);
    let f = json!({"payload": 1, "route": {"prev": ["a", "b"], "curr": "", "next": []},
                   "status": status});
    assert_eq!(out(&stamped, f, 0).0["status"]["max_attempts"], 3);
    // Without any status the input's processing placeholder becomes 1 as well.
    let f = json!({"payload": 1, "route": {"prev": ["a", "b"], "curr": "", "next": []}});
    assert_eq!(out(&stamped, f, 0).0["status"]["max_attempts"], 1);
}

#[test]
fn sink_status_without_frame_status_comes_from_input() {
    let stamped = stamped_at_b(2);
    let f = json!({"payload": 1, "route": {"prev": ["a", "b"], "curr": "", "next": []}});
    let (w, _) = out(&stamped, f, 0);
    assert_eq!(w["status"]["actor"], "b");
    assert_eq!(w["status"]["attempt"], 2);
    assert_eq!(w["status"]["created_at"], CREATED);
    assert_eq!(w["status"]["deadline_at"], DEADLINE);
}

#[test]
fn sink_or_sump_in_route_ends_it() {
    let stamped = stamped_at_b(1);
    for end in ["x-sink", "x-sump"] {
        let f = json!({"payload": 1, "route": {"prev": ["a", "b"], "curr": end, "next": ["z"]}});
        let (w, t) = out(&stamped, f, 0);
        assert_eq!(t, Target::Sink, "{end}");
        assert_eq!(w["status"]["phase"], "succeeded");
        assert_eq!(w["route"]["curr"], end, "route kept as the handler left it");
    }
}

#[test]
fn handler_changed_status_feeds_created_at_and_deadline() {
    let stamped = stamped_at_b(1);
    let f = json!({
        "payload": 1,
        "route": {"prev": ["a", "b"], "curr": "c", "next": []},
        "status": {"phase": "processing", "actor": "b", "attempt": 1,
                   "created_at": "2025-06-01T00:00:00Z", "deadline_at": "2026-02-01T00:00:00Z"}
    });
    let (w, _) = out(&stamped, f, 0);
    assert_eq!(w["status"]["created_at"], "2025-06-01T00:00:00Z");
    assert_eq!(w["status"]["deadline_at"], "2026-02-01T00:00:00Z");
}

#[test]
fn frame_status_missing_deadline_falls_back_to_input() {
    let stamped = stamped_at_b(1);
    let f = json!({
        "payload": 1,
        "route": {"prev": ["a", "b"], "curr": "c", "next": []},
        "status": {"phase": "processing", "actor": "b", "attempt": 1, "created_at": ""}
    });
    let (w, _) = out(&stamped, f, 0);
    assert_eq!(w["status"]["created_at"], CREATED);
    assert_eq!(w["status"]["deadline_at"], DEADLINE);
}

#[test]
fn unparseable_frame_status_is_ignored() {
    let stamped = stamped_at_b(1);
    let f = json!({
        "payload": 1,
        "route": {"prev": ["a", "b"], "curr": "c", "next": []},
        "status": {"attempt": "three", "created_at": "2025-06-01T00:00:00Z"}
    });
    let (w, _) = out(&stamped, f, 0);
    assert_eq!(w["status"]["created_at"], CREATED);
}

#[test]
fn no_status_anywhere_gives_created_at_now_and_no_deadline() {
    let mut stamped = stamped_at_b(1);
    stamped.status = None;
    let (w, _) = out(
        &stamped,
        json!({"payload": 1, "route": {"prev": ["b"], "curr": "c", "next": []}}),
        0,
    );
    assert_eq!(w["status"]["created_at"], NOW_TS);
    assert!(w["status"].get("deadline_at").is_none());
    let (w, t) = out(
        &stamped,
        json!({"payload": 1, "route": {"prev": ["b"], "curr": "", "next": []}}),
        0,
    );
    assert_eq!(t, Target::Sink);
    assert_eq!(
        w["status"],
        json!({"phase": "succeeded", "reason": "Completed", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": NOW_TS, "updated_at": NOW_TS})
    );
}

#[test]
fn route_override_on_send_redirects_and_stamps_audit() {
    let mut stamped = stamped_at_b(1);
    stamped
        .headers
        .insert("x-asya-route-override".into(), json!({"c": "c-canary"}));
    let (w, t) = out(
        &stamped,
        json!({"payload": 1, "route": {"prev": ["a", "b"], "curr": "c", "next": []}}),
        0,
    );
    assert_eq!(t, Target::Actor("c-canary".into()));
    assert_eq!(w["route"]["curr"], "c", "route unchanged");
    assert_eq!(w["status"]["actor"], "c", "pending for the logical actor");
    assert_eq!(
        w["headers"]["x-asya-route-resolved"],
        json!({"c": {"target": "c-canary", "by": "b"}})
    );
}

#[test]
fn pause_header_stops_routing() {
    let stamped = stamped_at_b(1);
    let f = json!({
        "payload": 1,
        "route": {"prev": ["a", "b"], "curr": "x-resume", "next": ["c"]},
        "headers": {"x-asya-pause": {"prompt": "ok?", "fields": []},
                    "x-asya-route-override": {"x-resume": "elsewhere"}}
    });
    let (w, t) = out(&stamped, f, 0);
    assert_eq!(t, Target::Paused);
    assert!(
        w["headers"].get("x-asya-route-resolved").is_none(),
        "a paused frame is not routed, so no override is resolved"
    );
    // A pause header on a frame past the end also wins over the sink.
    let f = json!({"payload": 1, "route": {"prev": ["b"], "curr": "", "next": []},
                   "headers": {"x-asya-pause": "{\"prompt\":\"p\"}"}});
    assert_eq!(out(&stamped, f, 0).1, Target::Paused);
}

#[test]
fn pause_header_from_input_headers_also_pauses() {
    // Frame headers missing → input headers, which may carry the pause header.
    let mut stamped = stamped_at_b(1);
    stamped
        .headers
        .insert("x-asya-pause".into(), json!({"prompt": "p"}));
    let (_, t) = out(
        &stamped,
        json!({"payload": 1, "route": {"prev": ["b"], "curr": "c", "next": []}}),
        0,
    );
    assert_eq!(t, Target::Paused);
}
