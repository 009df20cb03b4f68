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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC_POLICIES: &str = r#"{"default": {"maxAttempts": 3, "backoff": "exponential", "initialDelay": "1s",
        "maxInterval": "30s", "maxDuration": "5m", "jitter": true},
        "fallback": {"maxAttempts": 1, "onExhausted": ["apologize"]}}"#;
    const SPEC_RULES: &str = r#"[{"errors": ["TimeoutError", "openai.RateLimitError"], "policy": "default"},
        {"errors": ["ValueError"], "policy": "fallback"}]"#;

    fn spec_config() -> Resiliency {
        Resiliency::from_env_json(Some(SPEC_POLICIES), Some(SPEC_RULES))
            .unwrap()
            .unwrap()
    }

    fn policy(backoff: Backoff, initial: u64, cap: u64, jitter: bool) -> Policy {
        Policy {
            name: "p".into(),
            max_attempts: 5,
            backoff,
            initial_delay: Duration::from_secs(initial),
            max_interval: Duration::from_secs(cap),
            max_duration: Duration::ZERO,
            jitter,
            on_exhausted: vec![],
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unset_or_empty_is_not_configured() {
        assert_eq!(Resiliency::from_env_json(None, None), Ok(None));
        assert_eq!(Resiliency::from_env_json(Some(""), Some("  ")), Ok(None));
        assert_eq!(Resiliency::from_values(None, Some(&Value::Null)), Ok(None));
    }

    #[test]
    fn parses_spec_example() {
        let r = spec_config();
        assert!(r.warnings.is_empty());
        let d = r.policy("default").unwrap();
        assert_eq!(d.max_attempts, 3);
        assert_eq!(d.backoff, Backoff::Exponential);
        assert_eq!(d.initial_delay, Duration::from_secs(1));
        assert_eq!(d.max_interval, Duration::from_secs(30));
        assert_eq!(d.max_duration, Duration::from_secs(300));
        assert!(d.jitter);
        let f = r.policy("fallback").unwrap();
        assert_eq!(f.max_attempts, 1);
        assert_eq!(f.on_exhausted, strings(&["apologize"]));
        assert_eq!(f.backoff, Backoff::Exponential);
        assert_eq!(f.initial_delay, Duration::ZERO);
        assert!(!f.jitter);
        assert_eq!(r.rules.len(), 2);
        assert_eq!(
            r.rules[0].errors,
            strings(&["TimeoutError", "openai.RateLimitError"])
        );
    }

    #[test]
    fn env_text_keeps_policy_order() {
        let r = Resiliency::from_env_json(Some(r#"{"zeta": {}, "alpha": {}, "mid": {}}"#), None)
            .unwrap()
            .unwrap();
        let names: Vec<_> = r.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
    }

    #[test]
    fn duplicate_policy_keys_keep_the_last() {
        let r = Resiliency::from_env_json(
            Some(r#"{"default": {"maxAttempts": 2}, "default": {"maxAttempts": 7}}"#),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.policies.len(), 1);
        assert_eq!(r.policies[0].max_attempts, 7);
    }

    #[test]
    fn values_and_env_text_agree() {
        let p: Value = serde_json::from_str(SPEC_POLICIES).unwrap();
        let r: Value = serde_json::from_str(SPEC_RULES).unwrap();
        let from_values = Resiliency::from_values(Some(&p), Some(&r))
            .unwrap()
            .unwrap();
        let from_env = spec_config();
        for name in ["default", "fallback"] {
            assert_eq!(from_values.policy(name), from_env.policy(name));
        }
        assert_eq!(from_values.rules, from_env.rules);
    }

    #[test]
    fn max_attempts_defaults_and_clamps() {
        let r = Resiliency::from_values(
            Some(&json!({
                "missing": {}, "zero": {"maxAttempts": 0}, "neg": {"maxAttempts": -4},
                "null": {"maxAttempts": null}, "big": {"maxAttempts": 10_000_000_000u64},
                "five": {"maxAttempts": 5}
            })),
            None,
        )
        .unwrap()
        .unwrap();
        let m = |n: &str| r.policy(n).unwrap().max_attempts;
        assert_eq!(
            [m("missing"), m("zero"), m("neg"), m("null"), m("five")],
            [1, 1, 1, 1, 5]
        );
        assert_eq!(m("big"), u32::MAX);
    }

    #[test]
    fn backoff_names() {
        let r = Resiliency::from_values(
            Some(
                &json!({"c": {"backoff": "constant"}, "l": {"backoff": "linear"},
                         "e": {"backoff": "exponential"}, "d": {}}),
            ),
            None,
        )
        .unwrap()
        .unwrap();
        let b = |n: &str| r.policy(n).unwrap().backoff;
        assert_eq!(
            [b("c"), b("l"), b("e"), b("d")],
            [
                Backoff::Constant,
                Backoff::Linear,
                Backoff::Exponential,
                Backoff::Exponential
            ]
        );
    }

    #[test]
    fn invalid_input_names_the_field() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("{", None, "ASYA_RESILIENCY_POLICIES"),
            ("[]", None, "ASYA_RESILIENCY_POLICIES"),
            ("{}", Some("{"), "ASYA_RESILIENCY_RULES"),
            ("{}", Some("{}"), "rules"),
            (r#"{"default": 5}"#, None, "policies.default"),
            (
                r#"{"default": {"initialDelay": "abc"}}"#,
                None,
                "policies.default.initialDelay",
            ),
            (
                r#"{"default": {"initialDelay": 5}}"#,
                None,
                "policies.default.initialDelay",
            ),
            (
                r#"{"p": {"maxInterval": "-1s"}}"#,
                None,
                "policies.p.maxInterval",
            ),
            (
                r#"{"p": {"maxDuration": "5"}}"#,
                None,
                "policies.p.maxDuration",
            ),
            (
                r#"{"p": {"maxAttempts": "3"}}"#,
                None,
                "policies.p.maxAttempts",
            ),
            (
                r#"{"p": {"maxAttempts": 2.5}}"#,
                None,
                "policies.p.maxAttempts",
            ),
            (
                r#"{"p": {"backoff": "fibonacci"}}"#,
                None,
                "policies.p.backoff",
            ),
            (r#"{"p": {"jitter": "yes"}}"#, None, "policies.p.jitter"),
            (
                r#"{"p": {"onExhausted": "a"}}"#,
                None,
                "policies.p.onExhausted",
            ),
            (
                r#"{"p": {"onExhausted": [1]}}"#,
                None,
                "policies.p.onExhausted",
            ),
            ("{}", Some(r#"[5]"#), "rules[0]"),
            (
                "{}",
                Some(r#"[{"errors": "X", "policy": "p"}]"#),
                "rules[0].errors",
            ),
            ("{}", Some(r#"[{"errors": ["X"]}]"#), "rules[0].policy"),
        ];
        for (p, r, want) in cases {
            let err = Resiliency::from_env_json(Some(p), *r).unwrap_err();
            let ResiliencyError::Invalid { what, .. } = &err;
            assert_eq!(what, want, "{p} / {r:?}: {err}");
        }
        let err = Resiliency::from_env_json(Some(r#"{"default": {"initialDelay": "abc"}}"#), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("policies.default.initialDelay: invalid duration 'abc'"),
            "{err}"
        );
    }

    #[test]
    fn rule_with_unknown_policy_is_skipped_with_warning() {
        let r = Resiliency::from_env_json(
            Some(r#"{"default": {"maxAttempts": 2}}"#),
            Some(r#"[{"errors": ["KeyError"], "policy": "ghost"}, {"errors": ["ValueError"], "policy": "default"}]"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.rules.len(), 1);
        assert_eq!(r.rules[0].policy, "default");
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("rules[0]"), "{}", r.warnings[0]);
        assert!(r.warnings[0].contains("'ghost'"), "{}", r.warnings[0]);
    }

    #[test]
    fn rules_only_configuration_has_no_policy() {
        let r = Resiliency::from_env_json(None, Some(r#"[{"errors": ["X"], "policy": "p"}]"#))
            .unwrap()
            .unwrap();
        assert!(r.rules.is_empty());
        assert_eq!(r.select("X", &[]), None);
    }

    #[test]
    fn pattern_matching_rules() {
        let mro = strings(&["openai.APIError", "Exception"]);
        assert!(pattern_matches(
            "RateLimitError",
            "openai.RateLimitError",
            &mro
        ));
        assert!(pattern_matches(
            "openai.RateLimitError",
            "openai.RateLimitError",
            &mro
        ));
        assert!(pattern_matches("APIError", "openai.RateLimitError", &mro));
        assert!(pattern_matches("Exception", "openai.RateLimitError", &mro));
        assert!(!pattern_matches(
            "openai.Exception",
            "openai.RateLimitError",
            &mro
        ));
        assert!(!pattern_matches("RateLimit", "openai.RateLimitError", &mro));
        assert!(!pattern_matches(
            "ratelimiterror",
            "openai.RateLimitError",
            &mro
        ));
        // Builtins have bare names.
        assert!(pattern_matches(
            "ValueError",
            "ValueError",
            &strings(&["Exception"])
        ));
        assert!(!pattern_matches("builtins.ValueError", "ValueError", &[]));
        // Nested qualnames: the last segment is matched.
        assert!(pattern_matches("Inner", "pkg.mod.Outer.Inner", &[]));
        assert!(pattern_matches(
            "pkg.mod.Outer.Inner",
            "pkg.mod.Outer.Inner",
            &[]
        ));
        assert!(!pattern_matches("Outer.Inner", "pkg.mod.Outer.Inner", &[]));
        assert!(!pattern_matches("", "", &[]));
    }

    #[test]
    fn select_follows_rule_order_then_default() {
        let r = spec_config();
        let name = |t: &str, mro: &[&str]| r.select(t, &strings(mro)).map(|p| p.name.clone());
        assert_eq!(
            name("TimeoutError", &["OSError", "Exception"]),
            Some("default".into())
        );
        assert_eq!(
            name("openai.RateLimitError", &["openai.APIError"]),
            Some("default".into())
        );
        assert_eq!(name("ValueError", &["Exception"]), Some("fallback".into()));
        // Subclass of ValueError matches via the mro.
        assert_eq!(
            name("json.decoder.JSONDecodeError", &["ValueError", "Exception"]),
            Some("fallback".into())
        );
        assert_eq!(
            name("KeyError", &["LookupError", "Exception"]),
            Some("default".into())
        );

        let first_wins = Resiliency::from_values(
            Some(&json!({"a": {}, "b": {}})),
            Some(&json!([{"errors": ["Exception"], "policy": "a"}, {"errors": ["ValueError"], "policy": "b"}])),
        )
        .unwrap()
        .unwrap();
        let got = first_wins
            .select("ValueError", &strings(&["Exception"]))
            .unwrap();
        assert_eq!(got.name, "a");
        // No rule matches and no default.
        assert_eq!(first_wins.select("KeyError", &[]), None);
    }

    #[test]
    fn spec_delay_example() {
        let p = policy(Backoff::Exponential, 1, 10, false);
        let got: Vec<u64> = (1..=5).map(|n| p.delay(n, 0.0).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10]);
    }

    #[test]
    fn delay_shapes() {
        let c = policy(Backoff::Constant, 2, 0, false);
        let l = policy(Backoff::Linear, 2, 0, false);
        let e = policy(Backoff::Exponential, 2, 0, false);
        let secs = |p: &Policy, n| p.delay(n, 0.0).as_secs();
        assert_eq!([secs(&c, 1), secs(&c, 4)], [2, 2]);
        assert_eq!([secs(&l, 1), secs(&l, 4)], [2, 8]);
        assert_eq!([secs(&e, 1), secs(&e, 4)], [2, 16]);
        // Attempt 0 is treated as the first attempt.
        assert_eq!([secs(&c, 0), secs(&l, 0), secs(&e, 0)], [2, 2, 2]);
        let zero = policy(Backoff::Linear, 0, 10, true);
        assert_eq!(zero.delay(3, 0.9), Duration::ZERO);
        let sub = Policy {
            initial_delay: Duration::from_millis(500),
            ..policy(Backoff::Exponential, 0, 0, false)
        };
        assert_eq!(sub.delay(3, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn jitter_scales_between_half_and_one_and_a_half() {
        let p = policy(Backoff::Constant, 10, 0, true);
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(10));
        assert_eq!(p.delay(1, 0.999), Duration::from_millis(14_990));
        // Jitter applies after the cap, so it may exceed maxInterval by up to 50 %.
        let capped = policy(Backoff::Exponential, 1, 10, true);
        assert_eq!(capped.delay(10, 0.75), Duration::from_millis(12_500));
        // Out-of-range samples are clamped; NaN means no jitter.
        assert_eq!(p.delay(1, -3.0), Duration::from_secs(5));
        assert_eq!(p.delay(1, f64::NAN), Duration::from_secs(10));
        // Without jitter the sample is ignored.
        let plain = policy(Backoff::Constant, 10, 0, false);
        assert_eq!(plain.delay(1, 0.0), Duration::from_secs(10));
    }

    #[test]
    fn huge_attempts_saturate() {
        let e = policy(Backoff::Exponential, 1, 0, false);
        assert_eq!(e.delay(u32::MAX, 0.0), Duration::MAX);
        assert_eq!(e.delay(64, 0.0), Duration::MAX);
        let l = policy(Backoff::Linear, u64::MAX / 2, 0, false);
        assert_eq!(l.delay(u32::MAX, 0.0), Duration::MAX);
        let capped = policy(Backoff::Exponential, 1, 30, true);
        assert_eq!(capped.delay(u32::MAX, 0.0), Duration::from_secs(15));
        let jittered = policy(Backoff::Exponential, 1, 0, true);
        assert_eq!(jittered.delay(u32::MAX, 0.99), Duration::MAX);
    }

    #[test]
    fn exhaustion_by_attempts_and_duration() {
        let mut p = policy(Backoff::Constant, 1, 0, false);
        p.max_attempts = 3;
        assert!(!p.is_exhausted(1, None));
        assert!(!p.is_exhausted(2, Some(Duration::from_secs(9999))));
        assert!(p.is_exhausted(3, None));
        assert!(p.is_exhausted(4, None));
        p.max_duration = Duration::from_secs(60);
        assert!(!p.is_exhausted(1, Some(Duration::from_secs(59))));
        assert!(p.is_exhausted(1, Some(Duration::from_secs(60))));
        assert!(
            !p.is_exhausted(1, None),
            "unknown first attempt → duration check false"
        );
        p.max_attempts = 0;
        assert!(p.is_exhausted(1, None), "maxAttempts 0 behaves as 1");
    }
}
