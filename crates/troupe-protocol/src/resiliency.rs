//! Resiliency policies (protocol.md §9): parsing, rule matching, exhaustion and delay math.

use std::time::Duration;

/// Backoff shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backoff {
    /// `d`.
    Constant,
    /// `N·d`.
    Linear,
    /// `d·2^(N−1)`.
    #[default]
    Exponential,
}

/// One named policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Policy name.
    pub name: String,
    /// Attempts including the first (≥ 1).
    pub max_attempts: u32,
    /// Backoff shape.
    pub backoff: Backoff,
    /// Base delay.
    pub initial_delay: Duration,
    /// Cap before jitter; zero = none.
    pub max_interval: Duration,
    /// Total time budget since the first attempt; zero = none.
    pub max_duration: Duration,
    /// Multiply by a uniform factor in [0.5, 1.5).
    pub jitter: bool,
    /// Actors to route to when exhausted.
    pub on_exhausted: Vec<String>,
}

/// One rule: error patterns → policy name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Patterns (FQN with a dot: exact; without: last segment).
    pub errors: Vec<String>,
    /// Policy name.
    pub policy: String,
}

/// Parsed resiliency configuration of one actor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resiliency {
    /// Policies in definition order.
    pub policies: Vec<Policy>,
    /// Rules in order; rules naming unknown policies are dropped at parse time
    /// (reported in [`Resiliency::warnings`]).
    pub rules: Vec<Rule>,
    /// Human-readable warnings produced while parsing (e.g. skipped rules).
    pub warnings: Vec<String>,
}

/// Invalid resiliency configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResiliencyError {
    /// Not valid JSON / wrong shape.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which input (`ASYA_RESILIENCY_POLICIES`, `policies.default.initialDelay`, ...).
        what: String,
        /// What is wrong.
        message: String,
    },
}

impl Resiliency {
    /// Parses `ASYA_RESILIENCY_POLICIES` / `ASYA_RESILIENCY_RULES` JSON text. Returns `None`
    /// when both are unset or empty (resiliency not configured).
    pub fn from_env_json(
        policies: Option<&str>,
        rules: Option<&str>,
    ) -> Result<Option<Self>, ResiliencyError> {
        todo!("{policies:?}{rules:?}")
    }

    /// Parses from already-decoded JSON values (the AsyncActor `spec.resiliency` shape).
    pub fn from_values(
        policies: Option<&serde_json::Value>,
        rules: Option<&serde_json::Value>,
    ) -> Result<Option<Self>, ResiliencyError> {
        todo!("{policies:?}{rules:?}")
    }

    /// The policy for an error: first matching rule (with an existing policy), else
    /// `default`, else `None` (§9.2).
    pub fn select(&self, error_type: &str, mro: &[String]) -> Option<&Policy> {
        todo!("{error_type}{mro:?}")
    }
}

/// True when `pattern` matches any candidate of `[error_type] + mro` (§9.2).
pub fn pattern_matches(pattern: &str, error_type: &str, mro: &[String]) -> bool {
    todo!("{pattern}{error_type}{mro:?}")
}

impl Policy {
    /// Retry delay before attempt `attempt + 1` after attempt `attempt` failed (§9.4);
    /// `jitter_unit` is a uniform sample in [0, 1) used only when `jitter` is on.
    pub fn delay(&self, attempt: u32, jitter_unit: f64) -> Duration {
        todo!("{attempt}{jitter_unit}")
    }

    /// Exhausted iff `attempt >= max_attempts`, or `max_duration > 0` and
    /// `since_first_attempt >= max_duration` (`None` = unknown → duration check false).
    pub fn is_exhausted(&self, attempt: u32, since_first_attempt: Option<Duration>) -> bool {
        todo!("{attempt}{since_first_attempt:?}")
    }
}
