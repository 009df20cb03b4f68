//! Reserved header names (protocol.md §3).

/// Gateway callback base URL.
pub const GATEWAY_URL: &str = "x-asya-gateway-url";
/// `"off"` = stealth: no gateway calls for this envelope.
pub const MESH_STATUS: &str = "x-asya-mesh-status";
/// Time of the first attempt at the current actor.
pub const FIRST_ATTEMPT: &str = "x-asya-first-attempt";
/// Pause metadata; its presence in a frame stops routing.
pub const PAUSE: &str = "x-asya-pause";
/// Id of the paused task to resume (read by x-resume).
pub const RESUME_TASK: &str = "x-asya-resume-task";
/// New SLA in seconds on resume (read by x-resume).
pub const RESUME_TIMEOUT: &str = "x-asya-resume-timeout";
/// Fan-in slice metadata.
pub const FAN_IN: &str = "x-asya-fan-in";
/// Origin task of a merged fan-in envelope.
pub const ORIGIN_ID: &str = "x-asya-origin-id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
