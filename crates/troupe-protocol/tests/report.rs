#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Gateway report bodies (protocol.md §13) and the reporting enablement + SSRF rule.

use serde_json::{json, Value};
use troupe_protocol::report::{
    child, completed, final_error, final_failed, final_succeeded, fly, gateway_target, http_host,
    paused, processing, received,
};
use troupe_protocol::{Envelope, Route};

fn env(v: Value) -> Envelope {
    serde_json::from_value(v).unwrap()
}

fn with_headers(id: &str, headers: Value) -> Envelope {
    env(
        json!({"id": id, "route": {"prev": [], "curr": "a", "next": []},
               "headers": headers, "payload": null}),
    )
}

fn route(prev: &[&str], curr: &str, next: &[&str]) -> Route {
    Route {
        prev: prev.iter().map(|s| (*s).to_owned()).collect(),
        curr: curr.to_owned(),
        next: next.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn hosts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------- enablement

#[test]
fn disabled_without_any_url() {
    let e = with_headers("t1", json!({}));
    assert_eq!(gateway_target(&e, None, &[]), None);
    assert_eq!(gateway_target(&e, Some(""), &[]), None);
}

#[test]
fn default_url_is_used_when_no_header() {
    let e = with_headers("t1", json!({}));
    assert_eq!(
        gateway_target(&e, Some("http://gw:8080/"), &[]).as_deref(),
        Some("http://gw:8080"),
        "trailing slash trimmed so paths join cleanly"
    );
}

#[test]
fn header_url_wins_when_it_passes_the_ssrf_check() {
    let e = with_headers("t1", json!({"x-asya-gateway-url": "https://gw-int:8081"}));
    assert_eq!(
        gateway_target(&e, Some("http://default"), &[]).as_deref(),
        Some("https://gw-int:8081")
    );
    // Header alone enables reporting.
    assert_eq!(
        gateway_target(&e, None, &[]).as_deref(),
        Some("https://gw-int:8081")
    );
}

#[test]
fn bad_header_url_falls_back_to_default() {
    for bad in [
        json!("ftp://gw"),
        json!("file:///etc/passwd"),
        json!("gw:8080"),
        json!("/relative"),
        json!("http://"),
        json!("http:///path"),
        json!("http://:8080"),
        json!("http://user@"),
        json!(""),
        json!(42),
        json!({"url": "http://gw"}),
    ] {
        let e = with_headers("t1", json!({ "x-asya-gateway-url": bad }));
        assert_eq!(
            gateway_target(&e, Some("http://default"), &[]).as_deref(),
            Some("http://default"),
            "{bad}"
        );
        assert_eq!(gateway_target(&e, None, &[]), None, "{bad}");
    }
}

#[test]
fn stealth_and_empty_id_disable_reporting() {
    let e = with_headers(
        "t1",
        json!({"x-asya-mesh-status": "off", "x-asya-gateway-url": "http://gw"}),
    );
    assert_eq!(gateway_target(&e, Some("http://default"), &[]), None);
    let e = with_headers("", json!({"x-asya-gateway-url": "http://gw"}));
    assert_eq!(gateway_target(&e, Some("http://default"), &[]), None);
    // Any other mesh-status value keeps reporting on.
    let e = with_headers("t1", json!({"x-asya-mesh-status": "on"}));
    assert_eq!(
        gateway_target(&e, Some("http://default"), &[]).as_deref(),
        Some("http://default")
    );
}

#[test]
fn allow_list_restricts_header_hosts() {
    let allowed = hosts(&["gw-int:8081", "gw2"]);
    let check = |url: &str| {
        let e = with_headers("t1", json!({ "x-asya-gateway-url": url }));
        gateway_target(&e, Some("http://default"), &allowed)
    };
    assert_eq!(
        check("http://gw-int:8081/").as_deref(),
        Some("http://gw-int:8081")
    );
    assert_eq!(
        check("http://evil:8081").as_deref(),
        Some("http://default"),
        "not listed"
    );
    assert_eq!(
        check("http://gw-int:9999").as_deref(),
        Some("http://default"),
        "an entry with a port pins the port"
    );
    // An entry without a port allows the host on any port; hosts are case-insensitive.
    assert_eq!(check("http://gw2").as_deref(), Some("http://gw2"));
    assert_eq!(check("http://gw2:8081").as_deref(), Some("http://gw2:8081"));
    assert_eq!(check("http://GW2:8081").as_deref(), Some("http://GW2:8081"));
    // Userinfo cannot smuggle a listed host in front of the real one.
    assert_eq!(
        check("http://gw2@evil.example").as_deref(),
        Some("http://default")
    );
    // IPv6 literals: the brackets belong to the host.
    let v6 = hosts(&["[::1]"]);
    let e = with_headers("t1", json!({"x-asya-gateway-url": "http://[::1]:8081"}));
    assert_eq!(
        gateway_target(&e, None, &v6).as_deref(),
        Some("http://[::1]:8081")
    );
    let e = with_headers("t1", json!({"x-asya-gateway-url": "http://[::2]:8081"}));
    assert_eq!(gateway_target(&e, None, &v6), None);
    // The default URL is configuration, not subject to the list.
    let e = with_headers("t1", json!({}));
    assert_eq!(
        gateway_target(&e, Some("http://default"), &allowed).as_deref(),
        Some("http://default")
    );
}

#[test]
fn http_host_extracts_the_authority_host() {
    assert_eq!(http_host("http://gw"), Some("gw"));
    assert_eq!(http_host("https://gw:8081/api?x#y"), Some("gw:8081"));
    assert_eq!(http_host("http://u:p@gw:1/"), Some("gw:1"));
    assert_eq!(http_host("http://gw?x"), Some("gw"));
    assert_eq!(http_host("http://[::1]:8080/"), Some("[::1]:8080"));
    assert_eq!(http_host("http://"), None);
    assert_eq!(http_host("http://:80"), None);
    assert_eq!(http_host("ws://gw"), None);
    assert_eq!(http_host("gw"), None);
}

// ---------------------------------------------------------------- bodies

#[test]
fn received_body() {
    let body = received(&route(&["a"], "b", &["c"]), 1260);
    assert_eq!(
        body,
        json!({"type": "status", "status": "received", "data": {
            "prev": ["a"], "curr": "b", "next": ["c"], "status": "received",
            "message": "Received message (1.23 KB)", "message_size_kb": 1.23}})
    );
    let small = received(&route(&[], "b", &[]), 10);
    assert_eq!(small["data"]["message"], "Received message (0.01 KB)");
}

#[test]
fn processing_body() {
    assert_eq!(
        processing(&route(&["a"], "b", &[]), "b"),
        json!({"type": "status", "status": "processing", "data": {
            "prev": ["a"], "curr": "b", "next": [], "status": "processing",
            "message": "Processing in b"}})
    );
}

#[test]
fn completed_body() {
    assert_eq!(
        completed(&route(&["a", "b"], "c", &[]), 42),
        json!({"type": "status", "status": "completed", "data": {
            "prev": ["a", "b"], "curr": "c", "next": [], "status": "completed",
            "message": "Completed processing in 42ms", "duration_ms": 42}})
    );
}

#[test]
fn paused_body_decodes_string_metadata() {
    let meta = json!({"prompt": "Approve?", "fields": [{"name": "ok"}]});
    let expected = json!({"type": "status", "status": "completed", "data": {
        "prev": ["a", "x-pause"], "curr": "x-resume", "next": ["c"], "status": "completed",
        "message": "Paused: waiting for external input", "duration_ms": 7,
        "pause_metadata": meta}});
    let r = route(&["a", "x-pause"], "x-resume", &["c"]);
    assert_eq!(paused(&r, 7, &meta), expected);
    assert_eq!(
        paused(&r, 7, &Value::String(meta.to_string())),
        expected,
        "a JSON string is accepted"
    );
    // A string that is not JSON is passed through as is.
    assert_eq!(
        paused(&r, 7, &json!("plain"))["data"]["pause_metadata"],
        "plain"
    );
}

#[test]
fn final_succeeded_body() {
    assert_eq!(
        final_succeeded("t1", "2026-01-01T00:00:00Z", json!({"answer": 42})),
        json!({"type": "status", "status": "succeeded", "data": {
            "id": "t1", "status": "succeeded", "timestamp": "2026-01-01T00:00:00Z",
            "progress": 1.0, "result": {"answer": 42}}})
    );
}

#[test]
fn final_failed_body_with_route() {
    let details = json!({"message": "boom", "type": "ValueError"});
    assert_eq!(
        final_failed(
            "t1",
            "2026-01-01T00:00:00Z",
            "boom",
            Some(details.clone()),
            &route(&["a", "b"], "c", &["d"])
        ),
        json!({"type": "status", "status": "failed", "data": {
            "id": "t1", "status": "failed", "timestamp": "2026-01-01T00:00:00Z",
            "error": "boom", "error_details": details,
            "prev": ["a", "b"], "curr": "c", "next": ["d"],
            "current_actor_idx": 2, "current_actor_name": "c"}})
    );
}

#[test]
fn final_failed_body_omits_empty_route_and_null_details() {
    let body = final_failed(
        "t1",
        "2026-01-01T00:00:00Z",
        "x",
        Some(Value::Null),
        &Route::default(),
    );
    assert_eq!(
        body,
        json!({"type": "status", "status": "failed", "data": {
            "id": "t1", "status": "failed", "timestamp": "2026-01-01T00:00:00Z", "error": "x"}})
    );
    // A route with only `prev` is non-empty.
    let body = final_failed("t1", "ts", "x", None, &route(&["a"], "", &[]));
    assert_eq!(body["data"]["current_actor_idx"], 1);
    assert_eq!(body["data"]["current_actor_name"], "");
}

#[test]
fn final_error_body() {
    assert_eq!(
        final_error("t1", "2026-01-01T00:00:00Z", "SLA deadline expired"),
        json!({"type": "status", "status": "failed", "data": {
            "id": "t1", "status": "failed", "error": "SLA deadline expired",
            "timestamp": "2026-01-01T00:00:00Z"}})
    );
}

#[test]
fn fly_body_is_upstream_data_verbatim() {
    let up = json!({"payload": {"partial": true, "text": "tok"}});
    assert_eq!(fly(up.clone()), json!({"type": "fly", "data": up}));
}

#[test]
fn child_body() {
    assert_eq!(
        child("c1", "t1", &route(&["a", "b"], "c", &[])),
        json!({"id": "c1", "parent_id": "t1",
               "route": {"prev": ["a", "b"], "curr": "c", "next": []}})
    );
}
