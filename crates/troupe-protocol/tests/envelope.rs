#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Wire rules of the envelope types (protocol.md §2).

use serde_json::{json, Value};
use troupe_protocol::envelope::{null_raw, raw_json, to_raw, Headers};
use troupe_protocol::{Envelope, ErrorInfo, Frame, Phase, Reason, Route, Status};

fn parse(v: Value) -> Envelope {
    Envelope::from_slice(v.to_string().as_bytes()).unwrap()
}

fn wire(env: &Envelope) -> Value {
    serde_json::from_slice(&env.to_vec()).unwrap()
}

fn minimal() -> Envelope {
    Envelope {
        id: "t1".into(),
        parent_id: None,
        route: Route {
            prev: vec![],
            curr: "a".into(),
            next: vec![],
        },
        headers: Headers::new(),
        status: None,
        payload: raw_json("{}"),
    }
}

#[test]
fn minimal_envelope_omits_optional_fields() {
    assert_eq!(
        wire(&minimal()),
        json!({"id": "t1", "route": {"prev": [], "curr": "a", "next": []}, "payload": {}})
    );
}

#[test]
fn arrays_are_never_null_and_null_reads_as_empty() {
    let text = String::from_utf8(minimal().to_vec()).unwrap();
    assert!(
        text.contains(r#""prev":[]"#) && text.contains(r#""next":[]"#),
        "{text}"
    );
    let env = parse(
        json!({"id": "t", "route": {"prev": null, "curr": null, "next": null}, "payload": 1}),
    );
    assert_eq!(env.route, Route::default());
    let env = parse(json!({"id": "t", "route": {"curr": "a"}, "payload": 1}));
    assert!(env.route.prev.is_empty() && env.route.next.is_empty());
    assert_eq!(
        wire(&env)["route"],
        json!({"prev": [], "curr": "a", "next": []})
    );
}

#[test]
fn empty_or_null_optionals_are_omitted() {
    let env = parse(json!({
        "id": "t", "parent_id": "", "route": {"prev": [], "curr": "a", "next": []},
        "headers": null, "status": null, "payload": null
    }));
    assert_eq!(env.parent_id, None);
    assert!(env.headers.is_empty());
    assert_eq!(env.status, None);
    let w = wire(&env);
    for absent in ["parent_id", "headers", "status"] {
        assert!(w.get(absent).is_none(), "{absent} must be omitted");
    }
    assert_eq!(w["payload"], Value::Null);
    let env = parse(json!({"id": "t", "parent_id": null, "headers": {}, "route": {"curr": "a"}}));
    let w = wire(&env);
    assert!(w.get("parent_id").is_none() && w.get("headers").is_none());
}

#[test]
fn missing_fields_default() {
    let env = parse(json!({"route": {"curr": "a"}}));
    assert_eq!(env.id, "");
    assert_eq!(env.payload.get(), "null");
    let env = parse(json!({"id": null, "route": {"curr": "a"}}));
    assert_eq!(env.id, "");
}

#[test]
fn present_optionals_are_emitted() {
    let mut env = minimal();
    env.parent_id = Some("p".into());
    env.headers.insert("h".into(), json!({"nested": [1]}));
    env.status = Some(Status {
        phase: Phase::Processing,
        reason: Some(Reason::RuntimeError),
        actor: "a".into(),
        attempt: 2,
        max_attempts: 0,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:01Z".into(),
        deadline_at: Some("2026-01-01T00:05:00Z".into()),
        error: Some(ErrorInfo {
            message: "m".into(),
            error_type: "ValueError".into(),
            mro: vec!["Exception".into()],
            traceback: "tb".into(),
        }),
    });
    let w = wire(&env);
    assert_eq!(w["parent_id"], "p");
    assert_eq!(w["headers"], json!({"h": {"nested": [1]}}));
    assert_eq!(
        w["status"],
        json!({"phase": "processing", "reason": "RuntimeError", "actor": "a", "attempt": 2,
               "max_attempts": 0, "created_at": "2026-01-01T00:00:00Z",
               "updated_at": "2026-01-01T00:00:01Z", "deadline_at": "2026-01-01T00:05:00Z",
               "error": {"message": "m", "type": "ValueError", "mro": ["Exception"], "traceback": "tb"}})
    );
    // And it reads back identically.
    let back = Envelope::from_slice(&env.to_vec()).unwrap();
    assert_eq!(back.status, env.status);
    assert_eq!(back.parent_id, env.parent_id);
    assert_eq!(back.headers, env.headers);
}

#[test]
fn status_omits_unset_members_but_always_emits_core_fields() {
    let status = Status::default();
    let w = serde_json::to_value(&status).unwrap();
    assert_eq!(
        w,
        json!({"phase": "pending", "actor": "", "attempt": 0, "max_attempts": 0,
               "created_at": "", "updated_at": ""})
    );
    let partial: Status =
        serde_json::from_value(json!({"deadline_at": "2026-01-01T00:05:00Z"})).unwrap();
    assert_eq!(partial.phase, Phase::Pending);
    assert_eq!(partial.deadline_at.as_deref(), Some("2026-01-01T00:05:00Z"));
    let empty_deadline: Status =
        serde_json::from_value(json!({"deadline_at": "", "reason": null, "error": null})).unwrap();
    assert_eq!(empty_deadline.deadline_at, None);
    assert_eq!(empty_deadline.reason, None);
    assert_eq!(empty_deadline.error, None);
}

#[test]
fn error_info_omits_empty_members() {
    let e = ErrorInfo {
        message: "m".into(),
        ..Default::default()
    };
    assert_eq!(serde_json::to_value(&e).unwrap(), json!({"message": "m"}));
    assert!(ErrorInfo::default().is_empty());
    assert!(!e.is_empty());
    let read: ErrorInfo =
        serde_json::from_value(json!({"type": "X", "mro": null, "traceback": null})).unwrap();
    assert_eq!(read.error_type, "X");
    assert!(read.mro.is_empty());
}

#[test]
fn unknown_top_level_fields_are_ignored_and_dropped() {
    let env = parse(json!({
        "id": "t", "route": {"prev": [], "curr": "a", "next": [], "extra": 1},
        "payload": 1, "legacy": {"x": 1}, "_on_error": "h"
    }));
    let w = wire(&env);
    let mut keys: Vec<_> = w.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["id", "payload", "route"]);
    assert_eq!(w["route"], json!({"prev": [], "curr": "a", "next": []}));
}

#[test]
fn payload_bytes_are_preserved() {
    let body =
        br#"{"id":"t","route":{"prev":[],"curr":"a","next":[]},"payload":{"b":1,  "a":[1.50]}}"#;
    let env = Envelope::from_slice(body).unwrap();
    assert_eq!(env.payload.get(), r#"{"b":1,  "a":[1.50]}"#);
    let out = String::from_utf8(env.to_vec()).unwrap();
    assert!(out.contains(r#""payload":{"b":1,  "a":[1.50]}"#), "{out}");
    for payload in [
        "\"text\"",
        "[1,2 ,3]",
        "1e3",
        "true",
        "null",
        "-0.0",
        "{\"\\u00e9\":\"\\ud83d\\ude00\"}",
    ] {
        let body = format!(r#"{{"id":"t","route":{{"curr":"a"}},"payload":{payload}}}"#);
        let env = Envelope::from_slice(body.as_bytes()).unwrap();
        assert_eq!(env.payload.get(), payload);
        let out = String::from_utf8(env.to_vec()).unwrap();
        assert!(out.ends_with(&format!(r#""payload":{payload}}}"#)), "{out}");
    }
}

#[test]
fn all_phases_round_trip() {
    for (phase, s) in [
        (Phase::Pending, "pending"),
        (Phase::Processing, "processing"),
        (Phase::Retrying, "retrying"),
        (Phase::Succeeded, "succeeded"),
        (Phase::Failed, "failed"),
        (Phase::Paused, "paused"),
        (Phase::Canceled, "canceled"),
    ] {
        assert_eq!(phase.as_str(), s);
        assert_eq!(serde_json::to_value(phase).unwrap(), json!(s));
        assert_eq!(serde_json::from_value::<Phase>(json!(s)).unwrap(), phase);
    }
}

#[test]
fn reasons_including_legacy_are_read() {
    for (s, r) in [
        ("Completed", Reason::Completed),
        ("RuntimeError", Reason::RuntimeError),
        ("Timeout", Reason::Timeout),
        ("ParseError", Reason::ParseError),
        ("RouteMismatch", Reason::RouteMismatch),
        ("PolicyExhausted", Reason::PolicyExhausted),
        ("PolicyRouted", Reason::PolicyRouted),
        ("PreFlightCanceled", Reason::PreFlightCanceled),
        ("PreFlightPaused", Reason::PreFlightPaused),
        ("MaxRetriesExhausted", Reason::MaxRetriesExhausted),
        ("NonRetryableFailure", Reason::NonRetryableFailure),
    ] {
        let status: Status =
            serde_json::from_value(json!({"phase": "failed", "reason": s})).unwrap();
        assert_eq!(status.reason, Some(r), "{s}");
    }
}

#[test]
fn unknown_reason_is_accepted_and_not_re_emitted() {
    let status: Status =
        serde_json::from_value(json!({"phase": "failed", "reason": "SomethingNew"})).unwrap();
    assert_eq!(status.reason, Some(Reason::Unknown));
    assert!(serde_json::to_value(&status)
        .unwrap()
        .get("reason")
        .is_none());
}

#[test]
fn header_str_reads_only_strings() {
    let env = parse(json!({"id": "t", "route": {"curr": "a"}, "headers": {"s": "v", "n": 1}}));
    assert_eq!(env.header_str("s"), Some("v"));
    assert_eq!(env.header_str("n"), None);
    assert_eq!(env.header_str("missing"), None);
}

#[test]
fn frame_omits_absent_headers_and_status() {
    let frame: Frame = serde_json::from_value(
        json!({"payload": {"x": 1}, "route": {"prev": ["a"], "curr": "", "next": []}}),
    )
    .unwrap();
    assert_eq!(frame.headers, None);
    assert_eq!(frame.status, None);
    let w = serde_json::to_value(&frame).unwrap();
    assert_eq!(
        w,
        json!({"payload": {"x": 1}, "route": {"prev": ["a"], "curr": "", "next": []}})
    );
    let frame: Frame = serde_json::from_value(
        json!({"payload": 1, "route": {"curr": "b"}, "headers": {}, "status": {"phase": "x"}}),
    )
    .unwrap();
    assert_eq!(frame.headers, Some(Headers::new()));
    assert_eq!(frame.status, Some(json!({"phase": "x"})));
}

#[test]
fn raw_helpers() {
    assert_eq!(null_raw().get(), "null");
    assert_eq!(raw_json("[1, 2]").get(), "[1, 2]");
    assert_eq!(raw_json("{not json").get(), "null");
    assert_eq!(to_raw(&json!({"a": [1]})).get(), r#"{"a":[1]}"#);
}

#[test]
fn positional_arrays_are_not_envelopes() {
    let body = br#"["t1", null, {"prev": [], "curr": "b", "next": []}]"#;
    let err = troupe_protocol::Envelope::from_slice(body).unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
    assert!(troupe_protocol::Envelope::from_slice(b"  {\"id\": \"x\"}").is_ok());
}
