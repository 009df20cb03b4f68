//! Per-actor resiliency from configuration and enclosing try statements (platform.md §4.2
//! "try/except → resiliency"), and the check that every call of an actor agrees on it.

use serde_json::{json, Map, Value};

use super::{CatchCtx, Site};
use crate::ir::{Config, Diagnostic};

/// Retry fields of a configured default policy that carry over into try policies.
const RETRY_FIELDS: &[&str] = &[
    "maxAttempts",
    "backoff",
    "initialDelay",
    "maxInterval",
    "maxDuration",
    "jitter",
];

/// Deep-merges `over` into `base` (objects merge key by key; other values replace).
pub(crate) fn merge(base: &mut Config, over: &Config) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The AsyncActor `resiliency` of an actor called with `config` inside `catches`
/// (innermost clause first): one policy per except clause routing to its except router,
/// rules in clause order, a bare `except` as `policies.default`. `null` when empty.
pub(crate) fn build(config: &Config, catches: &[CatchCtx]) -> Value {
    let mut out = config.clone();
    let mut policies = match out.remove("policies") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    let mut rules = match out.remove("rules") {
        Some(Value::Array(r)) => r,
        _ => Vec::new(),
    };
    // Retry settings from decorators (tenacity, stamina) override the try policies'
    // maxAttempts/backoff, so a retried call still reaches its except clause at the end.
    let retry: Map<String, Value> = policies
        .get("default")
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .filter(|(k, _)| RETRY_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut try_rules = Vec::new();
    for c in catches {
        let mut policy = retry.clone();
        policy.entry("maxAttempts").or_insert(json!(1));
        policy.insert("onExhausted".into(), json!([c.target]));
        if c.errors.is_empty() {
            policies.insert("default".into(), Value::Object(policy));
            // Clauses of outer trys behind a bare except can never be reached.
            break;
        }
        policies.insert(c.policy.clone(), Value::Object(policy));
        try_rules.push(json!({"errors": c.errors, "policy": c.policy}));
    }
    try_rules.append(&mut rules);
    if !policies.is_empty() {
        out.insert("policies".into(), Value::Object(policies));
    }
    if !try_rules.is_empty() {
        out.insert("rules".into(), Value::Array(try_rules));
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

/// Every call of an actor must give it the same manifest: resiliency is per actor (an
/// `onExhausted` route cannot depend on the call site), so two calls that disagree are
/// rejected at the later call.
pub(crate) fn conflicts(file: &str, sites: &[Site]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, s) in sites.iter().enumerate() {
        let Some(first) = sites[..i].iter().find(|f| f.actor == s.actor) else {
            continue;
        };
        let what = if first.resiliency != s.resiliency {
            "different error handling or configuration (an enclosing try/except or with block)"
        } else if first.adapter != s.adapter {
            "different arguments"
        } else {
            continue;
        };
        out.push(Diagnostic {
            file: file.to_owned(),
            line: s.line,
            col: s.col,
            message: format!(
                "actor {actor} is called here with {what} than at line {line} (flow {flow}): \
                 retries, except routes and timeouts are set per actor, not per call; call a \
                 separate actor here, e.g. `@actor def {under}_2(p): return {under}(p)`, or \
                 put both calls under the same try/except and with blocks",
                actor = s.actor,
                line = first.line,
                flow = first.flow,
                under = s.actor.replace('-', "_"),
            ),
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn catch(errors: &[&str], target: &str, policy: &str) -> CatchCtx {
        CatchCtx {
            errors: errors.iter().map(|s| s.to_string()).collect(),
            target: target.into(),
            policy: policy.into(),
            steps: vec![],
            keep_error: false,
        }
    }

    #[test]
    fn try_policies_rules_in_clause_order_and_bare_as_default() {
        let mut config = Config::new();
        config.insert("actorTimeout".into(), json!("30s"));
        config.insert(
            "policies".into(),
            json!({"default": {"maxAttempts": 3, "initialDelay": "1s"}}),
        );
        let r = build(
            &config,
            &[
                catch(&["ValueError", "a.B"], "ex-1", "try_except_line_2_0"),
                catch(&[], "ex-2", "try_except_line_2_1"),
                catch(&["KeyError"], "ex-3", "try_except_line_1_0"),
            ],
        );
        assert_eq!(
            r,
            json!({
                "actorTimeout": "30s",
                "policies": {
                    "default": {"maxAttempts": 3, "initialDelay": "1s", "onExhausted": ["ex-2"]},
                    "try_except_line_2_0": {"maxAttempts": 3, "initialDelay": "1s", "onExhausted": ["ex-1"]}
                },
                "rules": [{"errors": ["ValueError", "a.B"], "policy": "try_except_line_2_0"}]
            })
        );
        assert_eq!(build(&Config::new(), &[]), Value::Null);
    }

    #[test]
    fn merge_is_deep() {
        let mut a: Config = serde_json::from_value(
            json!({"policies": {"default": {"maxAttempts": 2}}, "actorTimeout": "1s"}),
        )
        .unwrap();
        let b: Config = serde_json::from_value(
            json!({"policies": {"default": {"initialDelay": "2s"}}, "actorTimeout": "5s"}),
        )
        .unwrap();
        merge(&mut a, &b);
        assert_eq!(
            Value::Object(a),
            json!({"policies": {"default": {"maxAttempts": 2, "initialDelay": "2s"}}, "actorTimeout": "5s"})
        );
    }
}
