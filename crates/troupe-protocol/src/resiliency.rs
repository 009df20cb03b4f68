//! Resiliency policies (protocol.md §9): parsing, rule matching, exhaustion and delay math.

use std::fmt;
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::duration::parse_go_duration;

/// Env var holding the policies JSON.
pub const ENV_POLICIES: &str = "ASYA_RESILIENCY_POLICIES";
/// Env var holding the rules JSON.
pub const ENV_RULES: &str = "ASYA_RESILIENCY_RULES";
/// Policy used when no rule matches.
pub const DEFAULT_POLICY: &str = "default";

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
    /// Policies in definition order (key order of the JSON object as given).
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
        let policies = policies.map(str::trim).filter(|s| !s.is_empty());
        let rules = rules.map(str::trim).filter(|s| !s.is_empty());
        if policies.is_none() && rules.is_none() {
            return Ok(None);
        }
        let policies = match policies {
            Some(text) => {
                let OrderedObject(entries) = serde_json::from_str(text).map_err(|e| {
                    invalid(
                        ENV_POLICIES,
                        format!("expected a JSON object of named policies ({e})"),
                    )
                })?;
                Some(entries)
            }
            None => None,
        };
        let rules = match rules {
            Some(text) => Some(serde_json::from_str::<Value>(text).map_err(|e| {
                invalid(ENV_RULES, format!("expected a JSON array of rules ({e})"))
            })?),
            None => None,
        };
        build(policies, rules.as_ref()).map(Some)
    }

    /// Parses from already-decoded JSON values (the AsyncActor `spec.resiliency` shape).
    /// `None` or JSON `null` counts as unset; both unset → `Ok(None)`.
    pub fn from_values(
        policies: Option<&serde_json::Value>,
        rules: Option<&serde_json::Value>,
    ) -> Result<Option<Self>, ResiliencyError> {
        let policies = policies.filter(|v| !v.is_null());
        let rules = rules.filter(|v| !v.is_null());
        if policies.is_none() && rules.is_none() {
            return Ok(None);
        }
        let policies = match policies {
            Some(Value::Object(map)) => Some(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>(),
            ),
            Some(other) => {
                return Err(invalid(
                    "policies",
                    format!(
                        "expected an object of named policies, got {}",
                        json_kind(other)
                    ),
                ))
            }
            None => None,
        };
        build(policies, rules).map(Some)
    }

    /// The policy for an error: first matching rule (with an existing policy), else
    /// `default`, else `None` (§9.2).
    pub fn select(&self, error_type: &str, mro: &[String]) -> Option<&Policy> {
        self.rules
            .iter()
            .find(|rule| {
                rule.errors
                    .iter()
                    .any(|p| pattern_matches(p, error_type, mro))
                    && self.policy(&rule.policy).is_some()
            })
            .and_then(|rule| self.policy(&rule.policy))
            .or_else(|| self.policy(DEFAULT_POLICY))
    }

    /// The policy with this name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

/// True when `pattern` matches any candidate of `[error_type] + mro` (§9.2).
pub fn pattern_matches(pattern: &str, error_type: &str, mro: &[String]) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let dotted = pattern.contains('.');
    std::iter::once(error_type)
        .chain(mro.iter().map(String::as_str))
        .filter(|c| !c.is_empty())
        .any(|candidate| {
            if dotted {
                candidate == pattern
            } else {
                let short = candidate.rsplit('.').next().unwrap_or(candidate);
                short == pattern
            }
        })
}

impl Policy {
    /// Retry delay before attempt `attempt + 1` after attempt `attempt` failed (§9.4);
    /// `jitter_unit` is a uniform sample in [0, 1) used only when `jitter` is on.
    /// Attempt 0 is treated as 1; huge results saturate instead of overflowing.
    pub fn delay(&self, attempt: u32, jitter_unit: f64) -> Duration {
        let d = self.initial_delay;
        if d.is_zero() {
            return Duration::ZERO;
        }
        let n = attempt.max(1);
        let mut delay = match self.backoff {
            Backoff::Constant => d,
            Backoff::Linear => d.saturating_mul(n),
            Backoff::Exponential => {
                // 2^(n-1) does not fit a u32 from n = 33 on; any such factor saturates
                // every non-zero base delay anyway.
                match 1u32.checked_shl(n - 1) {
                    Some(factor) => d.saturating_mul(factor),
                    None => Duration::MAX,
                }
            }
        };
        if !self.max_interval.is_zero() && delay > self.max_interval {
            delay = self.max_interval;
        }
        if self.jitter {
            let unit = if jitter_unit.is_finite() {
                jitter_unit.clamp(0.0, 1.0)
            } else {
                0.5
            };
            let factor = 0.5 + unit;
            delay =
                Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(Duration::MAX);
        }
        delay
    }

    /// Exhausted iff `attempt >= max_attempts`, or `max_duration > 0` and
    /// `since_first_attempt >= max_duration` (`None` = unknown → duration check false).
    pub fn is_exhausted(&self, attempt: u32, since_first_attempt: Option<Duration>) -> bool {
        attempt >= self.max_attempts.max(1)
            || (!self.max_duration.is_zero()
                && since_first_attempt.is_some_and(|since| since >= self.max_duration))
    }
}

fn invalid(what: impl Into<String>, message: impl Into<String>) -> ResiliencyError {
    ResiliencyError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn build(
    policies: Option<Vec<(String, Value)>>,
    rules: Option<&Value>,
) -> Result<Resiliency, ResiliencyError> {
    let mut out = Resiliency::default();
    for (name, value) in policies.unwrap_or_default() {
        let policy = parse_policy(&name, &value)?;
        // Duplicate keys in the JSON text: the last one wins, as in Go and serde_json.
        match out.policies.iter_mut().find(|p| p.name == name) {
            Some(existing) => *existing = policy,
            None => out.policies.push(policy),
        }
    }
    let rules = match rules {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(invalid(
                "rules",
                format!("expected an array of rules, got {}", json_kind(other)),
            ))
        }
    };
    for (i, item) in rules.iter().enumerate() {
        let rule = parse_rule(i, item)?;
        if out.policy(&rule.policy).is_none() {
            out.warnings.push(format!(
                "rules[{i}]: unknown policy '{}'; rule skipped (define it under policies)",
                rule.policy
            ));
            continue;
        }
        out.rules.push(rule);
    }
    Ok(out)
}

fn parse_policy(name: &str, value: &Value) -> Result<Policy, ResiliencyError> {
    let field = |f: &str| format!("policies.{name}.{f}");
    let Value::Object(obj) = value else {
        return Err(invalid(
            format!("policies.{name}"),
            format!("expected an object, got {}", json_kind(value)),
        ));
    };
    let get = |key: &str| obj.get(key).filter(|v| !v.is_null());

    let max_attempts = match get("maxAttempts") {
        None => 1,
        Some(v) => {
            if let Some(i) = v.as_i64() {
                u32::try_from(i.max(1)).unwrap_or(u32::MAX)
            } else if v.as_u64().is_some() {
                u32::MAX
            } else {
                return Err(invalid(
                    field("maxAttempts"),
                    format!("expected an integer, got {v}"),
                ));
            }
        }
    };
    let backoff = match get("backoff") {
        None => Backoff::default(),
        Some(Value::String(s)) => match s.as_str() {
            "" | "exponential" => Backoff::Exponential,
            "constant" => Backoff::Constant,
            "linear" => Backoff::Linear,
            other => {
                return Err(invalid(
                    field("backoff"),
                    format!("unknown backoff '{other}' (use constant, linear or exponential)"),
                ))
            }
        },
        Some(v) => {
            return Err(invalid(
                field("backoff"),
                format!("expected a string (constant, linear or exponential), got {v}"),
            ))
        }
    };
    let duration = |key: &str| -> Result<Duration, ResiliencyError> {
        match get(key) {
            None => Ok(Duration::ZERO),
            Some(Value::String(s)) if s.is_empty() => Ok(Duration::ZERO),
            Some(Value::String(s)) => {
                parse_go_duration(s).map_err(|e| invalid(field(key), e.to_string()))
            }
            Some(v) => Err(invalid(
                field(key),
                format!("expected a Go duration string such as \"1s\", got {v}"),
            )),
        }
    };
    let initial_delay = duration("initialDelay")?;
    let max_interval = duration("maxInterval")?;
    let max_duration = duration("maxDuration")?;
    let jitter = match get("jitter") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(invalid(
                field("jitter"),
                format!("expected true or false, got {v}"),
            ))
        }
    };
    let on_exhausted = match get("onExhausted") {
        None => Vec::new(),
        Some(v) => string_list(v).ok_or_else(|| {
            invalid(
                field("onExhausted"),
                format!("expected an array of actor names, got {v}"),
            )
        })?,
    };
    Ok(Policy {
        name: name.to_owned(),
        max_attempts,
        backoff,
        initial_delay,
        max_interval,
        max_duration,
        jitter,
        on_exhausted,
    })
}

fn parse_rule(i: usize, value: &Value) -> Result<Rule, ResiliencyError> {
    let Value::Object(obj) = value else {
        return Err(invalid(
            format!("rules[{i}]"),
            format!(
                "expected an object {{\"errors\": [...], \"policy\": ...}}, got {}",
                json_kind(value)
            ),
        ));
    };
    let errors = match obj.get("errors").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(v) => string_list(v).ok_or_else(|| {
            invalid(
                format!("rules[{i}].errors"),
                format!("expected an array of error type names, got {v}"),
            )
        })?,
    };
    let policy = match obj.get("policy") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        other => {
            return Err(invalid(
                format!("rules[{i}].policy"),
                format!(
                    "expected a policy name, got {}",
                    other.map_or_else(|| "nothing".to_owned(), Value::to_string)
                ),
            ))
        }
    };
    Ok(Rule { errors, policy })
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// A JSON object decoded with its keys in document order (serde_json's `Map` sorts them
/// unless its `preserve_order` feature is on).
struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(OrderedObject(out))
            }
        }
        d.deserialize_map(V)
    }
}
