//! Native crew actors (protocol.md §14): x-sink and x-sump as engine end handlers,
//! x-pause, x-resume and the fan-in aggregator as native regular actors.
//!
//! - [`Sink`] / [`Sump`] implement [`troupe_engine::handler::EndHandler`] (§14.1).
//! - [`Pause`] / [`Resume`] implement [`troupe_engine::handler::NativeHandler`]
//!   (§14.2, §14.3) and return frames whose routes are already advanced (§5.1).
//! - [`FanIn`] implements the fan-in aggregator (§14.4) with a timeout sweep for
//!   missing slices.
//! - [`CrewConfig`] holds the crew environment variables (§15).
//!
//! Storage is the local filesystem under `ASYA_PERSISTENCE_MOUNT`; every file is
//! written atomically (temp file + rename).

mod config;
mod fanin;
mod pause;
mod resume;
mod sink;
mod store;
mod sump;

pub use config::{
    CrewConfig, CrewError, MergeMode, DEFAULT_FANIN_TIMEOUT, DEFAULT_SINK, DEFAULT_SUMP,
};
pub use fanin::{FanIn, FANIN_FOLDER, FAN_IN_CREW, TIMEOUT_ERROR_TYPE};
pub use pause::Pause;
pub use resume::Resume;
pub use sink::Sink;
pub use sump::Sump;

/// Name of the resume actor that x-pause puts first in `route.next`.
pub const RESUME_ACTOR: &str = "x-resume";

// Header names read or written by the crew (protocol.md §3).
pub(crate) use troupe_protocol::headers::{
    FAN_IN as HEADER_FAN_IN, MESH_STATUS as HEADER_MESH_STATUS, ORIGIN_ID as HEADER_ORIGIN_ID,
    PAUSE as HEADER_PAUSE, RESUME_TASK as HEADER_RESUME_TASK,
    RESUME_TIMEOUT as HEADER_RESUME_TIMEOUT,
};
/// §5.1 advancement, as the Python runtime applies it to every emitted frame.
pub(crate) use troupe_protocol::route::advance;

/// Python's type name for a JSON value, used in `ValueError` messages like Asya's.
pub(crate) fn py_type_name(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod testutil {
    use std::sync::Arc;

    use time::OffsetDateTime;
    use troupe_protocol::{Clock, Envelope};

    /// A clock stuck at one instant.
    pub struct FixedClock(pub OffsetDateTime);

    impl Clock for FixedClock {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }

    /// 2026-01-01T00:00:00Z.
    pub fn clock() -> Arc<dyn Clock> {
        Arc::new(FixedClock(time::macros::datetime!(2026-01-01 00:00:00 UTC)))
    }

    /// Parses an envelope from a JSON value.
    pub fn env(v: serde_json::Value) -> Envelope {
        serde_json::from_value(v).unwrap()
    }

    /// The envelope as a JSON value.
    pub fn value(e: &Envelope) -> serde_json::Value {
        serde_json::from_slice(&e.to_vec()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_type_names() {
        use serde_json::json;
        assert_eq!(py_type_name(&json!([1])), "list");
        assert_eq!(py_type_name(&json!("s")), "str");
        assert_eq!(py_type_name(&json!(1)), "int");
        assert_eq!(py_type_name(&json!(1.5)), "float");
        assert_eq!(py_type_name(&json!(null)), "NoneType");
        assert_eq!(py_type_name(&json!({})), "dict");
        assert_eq!(py_type_name(&json!(true)), "bool");
    }
}
