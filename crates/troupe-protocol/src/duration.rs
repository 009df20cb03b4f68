//! Go duration strings (`500ms`, `1.5s`, `1m30s`, `5m0s`), as used by Asya's env vars and
//! the AsyncActor resource.

use std::time::Duration;

/// A duration string that is not valid Go syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration '{input}': {why} (use Go syntax such as 500ms, 1.5s, 1m30s, 2h)")]
pub struct DurationError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub why: String,
}

/// Parses a Go duration string. Negative durations are rejected.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    todo!("{input}")
}

/// Formats like Go's `time.Duration.String()`: `5m0s`, `1.5s`, `500ms`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    todo!("{d:?}")
}
