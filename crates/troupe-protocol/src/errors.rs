//! Failure and error envelope builders (protocol.md §11.1, §11.2).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use time::OffsetDateTime;

use crate::clock::format_ts;
use crate::envelope::{to_raw, Envelope, ErrorInfo, Headers, Phase, Reason, Route, Status};

/// "Failed to parse message: …" prefix.
pub const TEXT_PARSE_FAILED: &str = "Failed to parse message";
/// Text for an envelope with an empty id.
pub const TEXT_MISSING_ID: &str = "Message missing required 'id' field";
/// Route used for error envelopes whose original route is unknown or empty.
pub const FALLBACK_ROUTE_CURR: &str = "x-sump";
/// Largest raw body kept as `payload.original_body` (64 KiB).
pub const MAX_ORIGINAL_BODY: usize = 64 * 1024;

/// Payload of a failure envelope (§11.1); field order matches Asya's.
#[derive(Serialize)]
struct FailurePayload<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Value>,
    original_payload: &'a RawValue,
}

/// Payload of an error envelope (§11.2).
#[derive(Serialize)]
struct ErrorPayload<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_body: Option<&'a str>,
    /// The route as received when it could not be read as one (the envelope's `route`
    /// then falls back to x-sump): kept for tracing where the message came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    original_route: Option<&'a Value>,
}

/// Whatever can be read from a JSON object that is not a valid envelope.
#[derive(Deserialize)]
struct Salvage {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    parent_id: Option<Value>,
    #[serde(default)]
    route: Option<Value>,
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default, deserialize_with = "present_raw")]
    payload: Option<Box<RawValue>>,
}

/// Keeps a present `payload` even when it is `null` (plain `Option` would drop it).
fn present_raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Route mismatch text: "Route mismatch: message routed to wrong actor (expected: A, actual: B)".
pub fn route_mismatch_text(expected: &str, actual: &str) -> String {
    format!(
        "Route mismatch: message routed to wrong actor (expected: {expected}, actual: {actual})"
    )
}

/// "Failed to parse message: {cause}".
pub fn parse_failed_text(cause: &str) -> String {
    format!("{TEXT_PARSE_FAILED}: {cause}")
}

/// §11.1: failure envelope for a handler failure going to x-sink. `stamped` is the
/// status-stamped input; `code` the runtime error code (e.g. `processing_error`);
/// `details` the runtime's details object (omitted from the payload when empty);
/// `error` goes to `status.error`.
#[allow(clippy::too_many_arguments)]
pub fn failure_envelope(
    stamped: &Envelope,
    code: &str,
    details: Option<&Value>,
    error: ErrorInfo,
    reason: Reason,
    max_attempts: u32,
    self_actor: &str,
    now: OffsetDateTime,
) -> Envelope {
    let now_ts = format_ts(now);
    let input = stamped.status.as_ref();
    let status = Status {
        phase: Phase::Failed,
        reason: Some(reason),
        actor: self_actor.to_owned(),
        attempt: input.map_or(1, |s| s.attempt.max(1)),
        max_attempts,
        created_at: kept_or(input.map(|s| s.created_at.as_str()), &now_ts),
        updated_at: now_ts,
        deadline_at: input.and_then(|s| s.deadline_at.clone()),
        error: (!error.is_empty()).then_some(error),
    };
    let payload = to_raw(&FailurePayload {
        error: code,
        details: details.filter(|d| !is_empty_json(d)),
        original_payload: &stamped.payload,
    });
    Envelope {
        id: stamped.id.clone(),
        parent_id: stamped.parent_id.clone(),
        route: stamped.route.clone(),
        headers: stamped.headers.clone(),
        status: Some(status),
        payload,
    }
}

/// §11.2: error envelope for an infrastructure failure of a parsed envelope going to
/// x-sump. `text` goes to `payload.error`; `details` (if any) to `payload.details`.
pub fn error_envelope(
    original: &Envelope,
    reason: Reason,
    text: &str,
    details: Option<Value>,
    self_actor: &str,
    now: OffsetDateTime,
) -> Envelope {
    let payload = to_raw(&ErrorPayload {
        error: text,
        details: details.as_ref().filter(|d| !is_empty_json(d)),
        original_payload: Some(&original.payload),
        original_route: None,
        original_body: None,
    });
    Envelope {
        id: original.id.clone(),
        parent_id: original.parent_id.clone(),
        route: route_or_fallback(Some(&original.route)),
        headers: original.headers.clone(),
        status: Some(sump_status(
            original.status.as_ref(),
            reason,
            self_actor,
            now,
        )),
        payload,
    }
}

/// §11.2: error envelope for a body that could not be parsed (or had an empty id).
/// Keeps whatever could be salvaged (id, route, headers) when the body is JSON, and the
/// raw body as `original_body` (max 64 KiB) when it is not.
pub fn error_envelope_unparsed(
    body: &[u8],
    text: &str,
    self_actor: &str,
    now: OffsetDateTime,
) -> Envelope {
    if let Ok(env) = Envelope::from_slice(body) {
        // Valid envelope shape (typically an empty id): keep everything.
        return error_envelope(&env, Reason::ParseError, text, None, self_actor, now);
    }
    // Only a JSON object can be salvaged (serde would also map an array onto the struct).
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let salvaged = if is_object {
        serde_json::from_slice::<Salvage>(body).ok()
    } else {
        None
    };
    let Some(salvage) = salvaged else {
        let raw = truncated_body(body);
        return Envelope {
            id: String::new(),
            parent_id: None,
            route: route_or_fallback(None),
            headers: Headers::new(),
            status: Some(sump_status(None, Reason::ParseError, self_actor, now)),
            payload: to_raw(&ErrorPayload {
                error: text,
                details: None,
                original_payload: None,
                original_route: None,
                original_body: Some(&raw),
            }),
        };
    };
    let route = salvage
        .route
        .as_ref()
        .and_then(|v| Route::deserialize(v).ok());
    let route = route_or_fallback(route.as_ref());
    let original_route = salvage
        .route
        .as_ref()
        .filter(|v| !v.is_null() && serde_json::to_value(&route).ok().as_ref() != Some(*v));
    let status = salvage
        .status
        .and_then(|v| serde_json::from_value::<Status>(v).ok());
    let headers = match salvage.headers {
        Some(Value::Object(map)) => map,
        _ => Headers::new(),
    };
    let string_of = |v: Option<Value>| match v {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let parent_id = Some(string_of(salvage.parent_id)).filter(|s| !s.is_empty());
    Envelope {
        id: string_of(salvage.id),
        parent_id,
        route,
        headers,
        status: Some(sump_status(
            status.as_ref(),
            Reason::ParseError,
            self_actor,
            now,
        )),
        payload: to_raw(&ErrorPayload {
            error: text,
            details: None,
            original_payload: salvage.payload.as_deref(),
            original_body: None,
            original_route,
        }),
    }
}

/// Status block of an error envelope (§11.2).
fn sump_status(
    original: Option<&Status>,
    reason: Reason,
    self_actor: &str,
    now: OffsetDateTime,
) -> Status {
    let now_ts = format_ts(now);
    Status {
        phase: Phase::Failed,
        reason: Some(reason),
        actor: original
            .map(|s| s.actor.as_str())
            .filter(|a| !a.is_empty())
            .unwrap_or(self_actor)
            .to_owned(),
        attempt: 1,
        max_attempts: 1,
        created_at: kept_or(original.map(|s| s.created_at.as_str()), &now_ts),
        updated_at: now_ts,
        deadline_at: original.and_then(|s| s.deadline_at.clone()),
        error: None,
    }
}

fn route_or_fallback(route: Option<&Route>) -> Route {
    match route {
        Some(r) if !(r.prev.is_empty() && r.curr.is_empty() && r.next.is_empty()) => r.clone(),
        _ => Route {
            prev: Vec::new(),
            curr: FALLBACK_ROUTE_CURR.to_owned(),
            next: Vec::new(),
        },
    }
}

fn kept_or(value: Option<&str>, fallback: &str) -> String {
    value
        .filter(|v| !v.is_empty())
        .unwrap_or(fallback)
        .to_owned()
}

/// `null`, `{}` and `[]` count as "no details".
fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The raw body as text, at most [`MAX_ORIGINAL_BODY`] bytes, invalid UTF-8 replaced.
pub fn truncated_body(body: &[u8]) -> String {
    let mut cut = body.len().min(MAX_ORIGINAL_BODY);
    // Do not split a multi-byte character at the cut (it would become U+FFFD).
    if cut < body.len() {
        let mut back = 0;
        while back < 3 && cut > 0 && (body[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
            back += 1;
        }
    }
    let mut text = String::from_utf8_lossy(&body[..cut]).into_owned();
    if text.len() > MAX_ORIGINAL_BODY {
        let mut end = MAX_ORIGINAL_BODY;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
