//! Envelope, route and status types (protocol.md §2).
//!
//! `payload` is kept as raw JSON so an envelope the sidecar does not touch is forwarded
//! without re-encoding its payload.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Header map; any JSON values, omitted from the wire when empty.
pub type Headers = Map<String, Value>;

/// The message that travels between actors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Correlation id (= gateway task id). Empty means "missing" (a parse error for sidecars).
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// Set on fan-out children only; never emitted as `null`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub parent_id: Option<String>,
    /// The envelope's route.
    #[serde(default)]
    pub route: Route,
    /// Headers propagated hop to hop.
    #[serde(
        default,
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub headers: Headers,
    /// Lifecycle block written by sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Opaque payload, kept as the raw JSON text it arrived with.
    #[serde(default = "null_raw")]
    pub payload: Box<RawValue>,
}

/// A frame emitted by the runtime (protocol.md §7): route already advanced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frame {
    /// Output payload.
    #[serde(default = "null_raw")]
    pub payload: Box<RawValue>,
    /// Advanced route.
    #[serde(default)]
    pub route: Route,
    /// Frame headers; `None` means "fall back to the input headers".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// Frame status (a copy of the input status unless the handler changed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// `route.prev/curr/next`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Actors already done.
    #[serde(default, deserialize_with = "null_as_default")]
    pub prev: Vec<String>,
    /// Actor whose queue holds the envelope.
    #[serde(default, deserialize_with = "null_as_default")]
    pub curr: String,
    /// Remaining actors.
    #[serde(default, deserialize_with = "null_as_default")]
    pub next: Vec<String>,
}

/// Lifecycle phase (`status.phase`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Queued for `status.actor`.
    #[default]
    Pending,
    /// Being processed by `status.actor`.
    Processing,
    /// Waiting for a delayed retry at `status.actor`.
    Retrying,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Waiting for human input.
    Paused,
    /// Canceled through the gateway.
    Canceled,
}

impl Phase {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Processing => "processing",
            Phase::Retrying => "retrying",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Paused => "paused",
            Phase::Canceled => "canceled",
        }
    }
}

/// Why a phase was entered (`status.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// Route finished.
    Completed,
    /// Handler or runtime failure without a policy.
    RuntimeError,
    /// Actor timeout or SLA expiry.
    Timeout,
    /// Body not JSON or missing id.
    ParseError,
    /// Envelope sent to the wrong actor.
    RouteMismatch,
    /// Retry policy exhausted.
    PolicyExhausted,
    /// Retry policy exhausted and rerouted via `onExhausted`.
    PolicyRouted,
    /// Pre-flight saw a canceled task.
    PreFlightCanceled,
    /// Pre-flight saw a paused task.
    PreFlightPaused,
    /// Legacy (pre-0.5.7), accepted on read, never emitted by Troupe.
    MaxRetriesExhausted,
    /// Legacy (pre-0.5.7), accepted on read, never emitted by Troupe.
    NonRetryableFailure,
    /// Any other string; dropped when re-emitted.
    #[serde(other)]
    Unknown,
}

/// `status` block (protocol.md §2). May be partial on input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Current phase.
    #[serde(default)]
    pub phase: Phase,
    /// Reason, omitted when unset.
    #[serde(
        default,
        skip_serializing_if = "reason_is_absent",
        deserialize_with = "null_as_default"
    )]
    pub reason: Option<Reason>,
    /// Actor owning the phase.
    #[serde(default, deserialize_with = "null_as_default")]
    pub actor: String,
    /// Attempt number at `actor`, from 1.
    #[serde(default, deserialize_with = "null_as_default")]
    pub attempt: u32,
    /// 0 while processing, policy `maxAttempts` after an error, 1 otherwise.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_attempts: u32,
    /// RFC 3339; set once, then copied unchanged.
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_at: String,
    /// RFC 3339; time of the last status change.
    #[serde(default, deserialize_with = "null_as_default")]
    pub updated_at: String,
    /// RFC 3339 absolute SLA deadline.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub deadline_at: Option<String>,
    /// Error details, omitted when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// `status.error` / runtime error `details` (protocol.md §2, §7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// `str(exc)`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub message: String,
    /// Fully qualified type name (bare for builtins).
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub error_type: String,
    /// Base classes, without the class itself, `object` and `BaseException`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub mro: Vec<String>,
    /// Python traceback text.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub traceback: String,
}

impl ErrorInfo {
    /// True when every member is empty.
    pub fn is_empty(&self) -> bool {
        self.message.is_empty()
            && self.error_type.is_empty()
            && self.mro.is_empty()
            && self.traceback.is_empty()
    }
}

impl Envelope {
    /// Parses an envelope from a queue body. Only a JSON object is an envelope (serde
    /// would also accept a positional array, which Asya rejects).
    pub fn from_slice(body: &[u8]) -> Result<Self, serde_json::Error> {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | None => serde_json::from_slice(body),
            Some(_) => Err(serde::de::Error::custom(
                "an envelope must be a JSON object",
            )),
        }
    }

    /// Serialises to the wire form.
    pub fn to_vec(&self) -> Vec<u8> {
        // Serialising these types cannot fail: all map keys are strings and
        // RawValue holds valid JSON.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The header value as a string, if it is one.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }
}

/// Raw JSON `null`.
pub fn null_raw() -> Box<RawValue> {
    raw_json("null")
}

/// Wraps known-valid JSON text as a raw value (falls back to `null`).
pub fn raw_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned())
        .or_else(|_| RawValue::from_string("null".to_owned()))
        .unwrap_or_else(|_| unreachable_null())
}

/// Serialises any value to a raw JSON value.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| null_raw())
}

fn unreachable_null() -> Box<RawValue> {
    // `RawValue::from_string("null")` cannot fail; this keeps the code free of panics.
    serde_json::from_str("null").unwrap_or_else(|_| unreachable_null())
}

fn reason_is_absent(r: &Option<Reason>) -> bool {
    matches!(r, None | Some(Reason::Unknown))
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_as_none<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}
