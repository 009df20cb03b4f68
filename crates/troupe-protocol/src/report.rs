//! Gateway report bodies posted by sidecars (protocol.md §13), and the rule deciding
//! whether and where an envelope is reported.

use serde_json::{json, Map, Value};

use crate::envelope::{Envelope, Route};
use crate::headers;

/// §13: the gateway URL to report to, or `None` when reporting is off for `env`
/// (no URL, stealth header, or empty id). `x-asya-gateway-url` wins over `default_url`
/// when it passes the SSRF check (absolute http/https URL with a non-empty host, and
/// in `allowed_hosts` when that list is non-empty).
pub fn gateway_target(
    env: &Envelope,
    default_url: Option<&str>,
    allowed_hosts: &[String],
) -> Option<String> {
    if env.id.is_empty() || env.header_str(headers::MESH_STATUS) == Some("off") {
        return None;
    }
    if let Some(u) = env.header_str(headers::GATEWAY_URL) {
        if let Some(host) = http_host(u) {
            if allowed_hosts.is_empty() || allowed_hosts.iter().any(|h| host_allowed(h, host)) {
                return Some(u.trim_end_matches('/').to_owned());
            }
        }
    }
    default_url
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_owned())
}

/// Does the allow-list entry `host[:port]` admit `authority`? An entry without a port
/// admits the host on any port; host names compare case-insensitively.
fn host_allowed(entry: &str, authority: &str) -> bool {
    let entry = entry.trim();
    if entry.is_empty() {
        return false;
    }
    if entry.eq_ignore_ascii_case(authority) {
        return true;
    }
    if has_port(entry) {
        return false;
    }
    let host = if has_port(authority) {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    } else {
        authority
    };
    entry.eq_ignore_ascii_case(host)
}

/// True when `authority` ends in `:port` (an IPv6 literal's colons are inside `[]`).
fn has_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((h, p)) => !p.contains(']') && (!h.contains(':') || h.ends_with(']')),
        None => false,
    }
}

/// `host[:port]` of an absolute http(s) URL, `None` for anything else.
pub fn http_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    (!host.is_empty() && !host.starts_with(':')).then_some(host)
}

fn route_data(route: &Route, status: &str, message: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("prev".into(), json!(route.prev));
    m.insert("curr".into(), json!(route.curr));
    m.insert("next".into(), json!(route.next));
    m.insert("status".into(), json!(status));
    m.insert("message".into(), json!(message));
    m
}

fn status_event(status: &str, data: Map<String, Value>) -> Value {
    json!({"type": "status", "status": status, "data": Value::Object(data)})
}

/// Progress `received` (input route).
pub fn received(route: &Route, body_len: usize) -> Value {
    let kb = (body_len as f64 / 1024.0 * 100.0).round() / 100.0;
    let mut d = route_data(route, "received", format!("Received message ({kb:.2} KB)"));
    d.insert("message_size_kb".into(), json!(kb));
    status_event("received", d)
}

/// Progress `processing` (input route).
pub fn processing(route: &Route, actor: &str) -> Value {
    status_event(
        "processing",
        route_data(route, "processing", format!("Processing in {actor}")),
    )
}

/// Progress `processing` after a handler failure that will be retried: `message` says
/// which attempt comes next, when, and why (`attempt 2/3 in 400 ms: TimeoutError: ...`).
pub fn retrying(route: &Route, message: String) -> Value {
    status_event("processing", route_data(route, "processing", message))
}

/// Progress `completed` (output route of frame 0).
pub fn completed(route: &Route, duration_ms: u64) -> Value {
    let mut d = route_data(
        route,
        "completed",
        format!("Completed processing in {duration_ms}ms"),
    );
    d.insert("duration_ms".into(), json!(duration_ms));
    status_event("completed", d)
}

/// Pause event: as `completed` with the pause metadata (output route).
pub fn paused(route: &Route, duration_ms: u64, pause_metadata: &Value) -> Value {
    let mut d = route_data(
        route,
        "completed",
        "Paused: waiting for external input".to_owned(),
    );
    d.insert("duration_ms".into(), json!(duration_ms));
    let meta = match pause_metadata {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| pause_metadata.clone()),
        other => other.clone(),
    };
    d.insert("pause_metadata".into(), meta);
    status_event("completed", d)
}

/// Final `succeeded` with the result payload.
pub fn final_succeeded(id: &str, timestamp: &str, result: Value) -> Value {
    json!({"type": "status", "status": "succeeded", "data": {
        "id": id, "status": "succeeded", "timestamp": timestamp, "progress": 1.0, "result": result}})
}

/// Final `failed` with error, details and the route.
pub fn final_failed(
    id: &str,
    timestamp: &str,
    error: &str,
    details: Option<Value>,
    route: &Route,
) -> Value {
    let mut d = Map::new();
    d.insert("id".into(), json!(id));
    d.insert("status".into(), json!("failed"));
    d.insert("timestamp".into(), json!(timestamp));
    d.insert("error".into(), json!(error));
    if let Some(det) = details.filter(|v| !v.is_null()) {
        d.insert("error_details".into(), det);
    }
    if !(route.prev.is_empty() && route.curr.is_empty() && route.next.is_empty()) {
        d.insert("prev".into(), json!(route.prev));
        d.insert("curr".into(), json!(route.curr));
        d.insert("next".into(), json!(route.next));
        d.insert("current_actor_idx".into(), json!(route.prev.len()));
        d.insert("current_actor_name".into(), json!(route.curr));
    }
    status_event("failed", d)
}

/// Final error shortcut (SLA expiry, end-actor timeout).
pub fn final_error(id: &str, timestamp: &str, error: &str) -> Value {
    json!({"type": "status", "status": "failed", "data": {
        "id": id, "status": "failed", "error": error, "timestamp": timestamp}})
}

/// FLY event: the SSE `upstream` data verbatim.
pub fn fly(upstream: Value) -> Value {
    json!({"type": "fly", "data": upstream})
}

/// Child registration body.
pub fn child(id: &str, parent_id: &str, route: &Route) -> Value {
    json!({"id": id, "parent_id": parent_id, "route": {"prev": route.prev, "curr": route.curr, "next": route.next}})
}
