#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Failure (§11.1) and error (§11.2) envelope builders.

use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use troupe_protocol::errors::{
    error_envelope, error_envelope_unparsed, failure_envelope, parse_failed_text,
    route_mismatch_text, MAX_ORIGINAL_BODY, TEXT_MISSING_ID,
};
use troupe_protocol::{Envelope, ErrorInfo, Reason};

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:03 UTC);
const NOW_TS: &str = "2026-01-01T00:00:03Z";

fn stamped() -> Envelope {
    Envelope::from_slice(
        br#"{"id": "t1", "parent_id": "p0",
            "route": {"prev": ["a"], "curr": "b", "next": ["c"]},
            "headers": {"trace": "x", "x-asya-first-attempt": "2026-01-01T00:00:00Z"},
            "status": {"phase": "processing", "actor": "b", "attempt": 2, "max_attempts": 0,
                       "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:01Z",
                       "deadline_at": "2026-01-01T00:05:00Z"},
            "payload": {"b":1,  "a":[1.50]}}"#,
    )
    .unwrap()
}

fn wire(env: &Envelope) -> Value {
    serde_json::from_slice(&env.to_vec()).unwrap()
}

fn details() -> Value {
    json!({"message": "bad", "type": "ValueError", "mro": ["Exception"], "traceback": "tb"})
}

fn error_info() -> ErrorInfo {
    serde_json::from_value(details()).unwrap()
}

#[test]
fn texts() {
    assert_eq!(
        route_mismatch_text("b", "c"),
        "Route mismatch: message routed to wrong actor (expected: b, actual: c)"
    );
    assert_eq!(parse_failed_text("EOF"), "Failed to parse message: EOF");
    assert_eq!(TEXT_MISSING_ID, "Message missing required 'id' field");
}

#[test]
fn failure_envelope_matches_spec() {
    let env = failure_envelope(
        &stamped(),
        "processing_error",
        Some(&details()),
        error_info(),
        Reason::PolicyExhausted,
        3,
        "b",
        NOW,
    );
    let w = wire(&env);
    assert_eq!(w["id"], "t1");
    assert_eq!(w["parent_id"], "p0");
    assert_eq!(
        w["route"],
        json!({"prev": ["a"], "curr": "b", "next": ["c"]})
    );
    assert_eq!(w["headers"]["trace"], "x");
    assert_eq!(
        w["status"],
        json!({"phase": "failed", "reason": "PolicyExhausted", "actor": "b", "attempt": 2,
               "max_attempts": 3, "created_at": "2026-01-01T00:00:00Z", "updated_at": NOW_TS,
               "deadline_at": "2026-01-01T00:05:00Z", "error": details()})
    );
    assert_eq!(
        w["payload"],
        json!({"error": "processing_error", "details": details(), "original_payload": {"b": 1, "a": [1.5]}})
    );
    // The original payload is embedded byte for byte.
    let text = String::from_utf8(env.to_vec()).unwrap();
    assert!(
        text.contains(r#""original_payload":{"b":1,  "a":[1.50]}"#),
        "{text}"
    );
    // Key order of the payload follows Asya: error, details, original_payload.
    let p = env.payload.get();
    assert!(p.find("\"error\"").unwrap() < p.find("\"details\"").unwrap());
    assert!(p.find("\"details\"").unwrap() < p.find("\"original_payload\"").unwrap());
}

#[test]
fn failure_envelope_omits_empty_details_and_error() {
    for d in [None, Some(json!({})), Some(Value::Null)] {
        let env = failure_envelope(
            &stamped(),
            "processing_error",
            d.as_ref(),
            ErrorInfo::default(),
            Reason::RuntimeError,
            1,
            "b",
            NOW,
        );
        let w = wire(&env);
        assert!(w["payload"].get("details").is_none(), "{d:?}");
        assert!(w["status"].get("error").is_none());
        assert_eq!(w["status"]["reason"], "RuntimeError");
    }
}

#[test]
fn failure_envelope_without_status_creates_one() {
    let mut input = stamped();
    input.status = None;
    let w = wire(&failure_envelope(
        &input,
        "processing_error",
        None,
        error_info(),
        Reason::RuntimeError,
        1,
        "b",
        NOW,
    ));
    assert_eq!(w["status"]["attempt"], 1);
    assert_eq!(w["status"]["created_at"], NOW_TS);
    assert!(w["status"].get("deadline_at").is_none());
}

#[test]
fn error_envelope_matches_spec() {
    let mut input = stamped();
    input.status.as_mut().unwrap().actor = "a".into();
    let env = error_envelope(
        &input,
        Reason::RouteMismatch,
        &route_mismatch_text("c", "b"),
        Some(json!({"k": 1})),
        "c",
        NOW,
    );
    let w = wire(&env);
    assert_eq!(w["id"], "t1");
    assert_eq!(w["parent_id"], "p0");
    assert_eq!(
        w["route"],
        json!({"prev": ["a"], "curr": "b", "next": ["c"]})
    );
    assert_eq!(w["headers"]["trace"], "x");
    assert_eq!(
        w["status"],
        json!({"phase": "failed", "reason": "RouteMismatch", "actor": "a", "attempt": 1,
               "max_attempts": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": NOW_TS,
               "deadline_at": "2026-01-01T00:05:00Z"})
    );
    assert_eq!(
        w["payload"],
        json!({"error": "Route mismatch: message routed to wrong actor (expected: c, actual: b)",
               "details": {"k": 1}, "original_payload": {"b": 1, "a": [1.5]}})
    );
    assert!(w["payload"].get("original_body").is_none());
}

#[test]
fn error_envelope_defaults() {
    let mut input = stamped();
    input.status = None;
    input.route = Default::default();
    input.parent_id = None;
    let w = wire(&error_envelope(
        &input,
        Reason::RuntimeError,
        "boom",
        None,
        "b",
        NOW,
    ));
    assert_eq!(
        w["route"],
        json!({"prev": [], "curr": "x-sump", "next": []})
    );
    assert!(w.get("parent_id").is_none());
    assert_eq!(w["status"]["actor"], "b");
    assert_eq!(w["status"]["created_at"], NOW_TS);
    assert_eq!(w["status"]["updated_at"], NOW_TS);
    assert!(w["status"].get("deadline_at").is_none());
    assert!(w["status"].get("error").is_none());
    assert!(w["payload"].get("details").is_none());
}

#[test]
fn unparsed_garbage_keeps_raw_body() {
    let body = b"not json at all \xff";
    let w = wire(&error_envelope_unparsed(
        body,
        &parse_failed_text("expected value"),
        "b",
        NOW,
    ));
    assert_eq!(w["id"], "");
    assert_eq!(
        w["route"],
        json!({"prev": [], "curr": "x-sump", "next": []})
    );
    assert!(w.get("headers").is_none());
    assert_eq!(
        w["payload"],
        json!({"error": "Failed to parse message: expected value",
               "original_body": "not json at all \u{fffd}"})
    );
    assert_eq!(
        w["status"],
        json!({"phase": "failed", "reason": "ParseError", "actor": "b", "attempt": 1,
               "max_attempts": 1, "created_at": NOW_TS, "updated_at": NOW_TS})
    );
}

#[test]
fn unparsed_non_object_json_keeps_raw_body() {
    let w = wire(&error_envelope_unparsed(b"[1, 2]", "x", "b", NOW));
    assert_eq!(w["payload"]["original_body"], "[1, 2]");
    assert!(w["payload"].get("original_payload").is_none());
}

#[test]
fn unparsed_body_is_truncated_to_64_kib_on_a_char_boundary() {
    let mut body = vec![b'x'; MAX_ORIGINAL_BODY - 1];
    body.extend_from_slice("\u{e9}\u{e9}".as_bytes());
    let w = wire(&error_envelope_unparsed(&body, "x", "b", NOW));
    let kept = w["payload"]["original_body"].as_str().unwrap();
    assert_eq!(
        kept.len(),
        MAX_ORIGINAL_BODY - 1,
        "split character dropped, not mangled"
    );
    assert!(kept.bytes().all(|b| b == b'x'));

    let body = vec![0xffu8; MAX_ORIGINAL_BODY + 10];
    let w = wire(&error_envelope_unparsed(&body, "x", "b", NOW));
    let kept = w["payload"]["original_body"].as_str().unwrap();
    assert!(kept.len() <= MAX_ORIGINAL_BODY);
    assert!(kept.chars().all(|c| c == '\u{fffd}'));

    let short = "short \u{1f600}";
    let w = wire(&error_envelope_unparsed(short.as_bytes(), "x", "b", NOW));
    assert_eq!(w["payload"]["original_body"], short);
}

#[test]
fn unparsed_empty_id_keeps_the_envelope() {
    let body = br#"{"id": "", "route": {"prev": ["a"], "curr": "b", "next": []},
                    "headers": {"x-asya-gateway-url": "http://gw"},
                    "status": {"actor": "b", "created_at": "2026-01-01T00:00:00Z", "deadline_at": "2026-01-01T00:05:00Z"},
                    "payload": {"q":  1}}"#;
    let env = error_envelope_unparsed(body, TEXT_MISSING_ID, "b", NOW);
    let w = wire(&env);
    assert_eq!(w["id"], "");
    assert_eq!(w["route"], json!({"prev": ["a"], "curr": "b", "next": []}));
    assert_eq!(w["headers"]["x-asya-gateway-url"], "http://gw");
    assert_eq!(w["payload"]["error"], TEXT_MISSING_ID);
    assert!(env
        .payload
        .get()
        .contains(r#""original_payload":{"q":  1}"#));
    assert!(w["payload"].get("original_body").is_none());
    assert_eq!(w["status"]["reason"], "ParseError");
    assert_eq!(w["status"]["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(w["status"]["deadline_at"], "2026-01-01T00:05:00Z");
}

#[test]
fn unparsed_salvages_what_it_can_from_a_bad_envelope() {
    // `route` has the wrong type, so the envelope does not parse, but id, headers and
    // payload are still recoverable.
    let body = br#"{"id": "t9", "parent_id": "p9", "route": {"actors": ["a"], "current": 0},
                    "headers": {"h": 1}, "status": {"phase": "nonsense"}, "payload": null, "x": 1}"#;
    let w = wire(&error_envelope_unparsed(body, "bad", "b", NOW));
    assert_eq!(w["id"], "t9");
    assert_eq!(w["parent_id"], "p9");
    assert_eq!(
        w["route"],
        json!({"prev": [], "curr": "x-sump", "next": []})
    );
    assert_eq!(w["headers"], json!({"h": 1}));
    // The route that could not be read is kept for tracing where the message came from.
    assert_eq!(
        w["payload"],
        json!({"error": "bad", "original_payload": null,
               "original_route": {"actors": ["a"], "current": 0}})
    );
    assert_eq!(w["status"]["actor"], "b");

    let body = br#"{"id": 5, "route": "r", "headers": [1], "payload": {"p": 1}}"#;
    let w = wire(&error_envelope_unparsed(body, "bad", "b", NOW));
    assert_eq!(w["id"], "");
    assert!(w.get("headers").is_none());
    assert_eq!(w["payload"]["original_payload"], json!({"p": 1}));
    assert_eq!(w["payload"]["original_route"], "r");

    // A readable route is the envelope's own; no copy. A missing one adds nothing.
    let body = br#"{"id": 7, "route": {"prev": ["a"], "curr": "b", "next": []}, "payload": 1}"#;
    let w = wire(&error_envelope_unparsed(body, "bad", "b", NOW));
    assert_eq!(w["route"]["curr"], "b");
    assert!(w["payload"].get("original_route").is_none());
    let w = wire(&error_envelope_unparsed(
        br#"{"id": "t", "payload": 1}"#,
        "bad",
        "b",
        NOW,
    ));
    assert!(w["payload"].get("original_route").is_none());
}
