//! Failure and error envelope builders (protocol.md §11.1, §11.2).

use serde_json::Value;
use time::OffsetDateTime;

use crate::envelope::{Envelope, ErrorInfo, Reason};

/// "Failed to parse message: …" prefix.
pub const TEXT_PARSE_FAILED: &str = "Failed to parse message";
/// Text for an envelope with an empty id.
pub const TEXT_MISSING_ID: &str = "Message missing required 'id' field";

/// Route mismatch text: "Route mismatch: message routed to wrong actor (expected: A, actual: B)".
pub fn route_mismatch_text(expected: &str, actual: &str) -> String {
    todo!("{expected}{actual}")
}

/// §11.1: failure envelope for a handler failure going to x-sink. `stamped` is the
/// status-stamped input; `code` the runtime error code (e.g. `processing_error`);
/// `details` the runtime's details object (omitted from the payload when empty);
/// `error` goes to `status.error`.
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
    todo!("{stamped:?}{code}{details:?}{error:?}{reason:?}{max_attempts}{self_actor}{now}")
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
    todo!("{original:?}{reason:?}{text}{details:?}{self_actor}{now}")
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
    todo!("{body:?}{text}{self_actor}{now}")
}
