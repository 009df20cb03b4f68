//! The sidecar's environment (protocol.md §15), parsed and validated without I/O.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use troupe_crew::CrewConfig;
use troupe_engine::ActorSettings;
use troupe_protocol::duration::parse_go_duration;
use troupe_protocol::resiliency::Resiliency;
use troupe_protocol::sidecar_env as env;

use crate::SidecarError;

/// Default `ASYA_METRICS_ADDR`.
pub const DEFAULT_METRICS_ADDR: &str = ":8080";
/// Runtime socket file name inside `ASYA_SOCKET_DIR`.
const SOCKET_NAME: &str = "asya-runtime.sock";
/// Crew actors a sidecar can run natively (`TROUPE_CREW`).
const CREW: [&str; 5] = ["x-sink", "x-sump", "x-pause", "x-resume", "fan-in"];

/// Everything `troupe sidecar` reads from the environment, except the transport's own
/// variables (the transport facade reads those).
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// Engine settings (actor, sink/sump, timeout, resiliency, gateway, concurrency).
    pub settings: ActorSettings,
    /// `ASYA_NAMESPACE`.
    pub namespace: String,
    /// Unacked messages the broker may hand this sidecar at first: one running and one
    /// settling per `TROUPE_CONCURRENCY` worker (one with `TROUPE_PIPELINE=0`), or
    /// `ASYA_RABBITMQ_PREFETCH` when larger; the engine adapts it from there.
    pub prefetch: usize,
    /// `ASYA_TRANSPORT` (default `rabbitmq`).
    pub transport: String,
    /// The runtime's socket: `{ASYA_SOCKET_DIR}/asya-runtime.sock`.
    pub socket: PathBuf,
    /// `ASYA_IS_END_ACTOR`: a Python end actor behind the runtime (§14.1).
    pub is_end_actor: bool,
    /// `TROUPE_CREW`: run this crew actor natively, with no runtime.
    pub crew: Option<String>,
    /// Crew settings (`ASYA_PERSISTENCE_MOUNT`, hooks, pause metadata, ...).
    pub crew_config: CrewConfig,
    /// `ASYA_RUNTIME_READY_TIMEOUT`.
    pub runtime_ready_timeout: Duration,
    /// `ASYA_METRICS_ENABLED`: serve `/metrics` (the probes are always served).
    pub metrics_enabled: bool,
    /// `ASYA_METRICS_ADDR` (`:8080` = all interfaces).
    pub metrics_addr: SocketAddr,
    /// `ASYA_METRICS_NAMESPACE`: the metric name prefix (`asya_actor`).
    pub metrics_namespace: String,
    /// `ASYA_GATEWAY_READY_TIMEOUT`: validated only; the sidecar consumes without waiting
    /// for the gateway (its reports are retried), see docs/decisions.md.
    pub gateway_ready_timeout: Duration,
    /// WARN lines for older Asya settings that were honoured or are ignored, and for
    /// §15 settings this build does not implement; logged once at start.
    pub warnings: Vec<String>,
}

/// Older Asya resiliency variables (before `ASYA_RESILIENCY_POLICIES`): translated into
/// one `default` policy (and a no-retry rule for the non-retryable errors).
const LEGACY_RETRY: [&str; 7] = [
    "ASYA_RESILIENCY_RETRY_POLICY",
    "ASYA_RESILIENCY_RETRY_MAX_ATTEMPTS",
    "ASYA_RESILIENCY_RETRY_INITIAL_INTERVAL",
    "ASYA_RESILIENCY_RETRY_MAX_INTERVAL",
    "ASYA_RESILIENCY_RETRY_BACKOFF_COEFFICIENT",
    "ASYA_RESILIENCY_RETRY_JITTER",
    "ASYA_RESILIENCY_NON_RETRYABLE_ERRORS",
];

/// Older Asya settings with no equivalent here: the start fails naming what to use.
const LEGACY_GONE: [(&str, &str); 4] = [
    (
        "ASYA_ACTOR_HAPPY_END",
        "Troupe sends succeeded and failed envelopes to one sink (status.phase tells them apart): set ASYA_ACTOR_SINK (default x-sink) and ASYA_ACTOR_SUMP (default x-sump) instead",
    ),
    (
        "ASYA_ACTOR_ERROR_END",
        "Troupe sends succeeded and failed envelopes to one sink (status.phase tells them apart): set ASYA_ACTOR_SINK (default x-sink) and ASYA_ACTOR_SUMP (default x-sump) instead",
    ),
    (
        "ASYA_RESILIENCY_SLA_TIMEOUT",
        "the SLA travels in the envelope: set status.deadline_at (troupe send --timeout, the mesh API's timeout) instead",
    ),
    (
        "ASYA_RESILIENCY_RETRY_MAX_WINDOW",
        "set maxDuration in ASYA_RESILIENCY_POLICIES instead",
    ),
];

/// §15 settings this build accepts but does not act on.
const NOT_IMPLEMENTED: [(&str, &str); 3] = [
    (
        env::CUSTOM_METRICS,
        "custom metrics are not registered by this build; the built-in asya_actor_* metrics are served",
    ),
    (
        env::OTEL_ENDPOINT,
        "this build does not export OpenTelemetry traces; traceparent/tracestate headers still pass through",
    ),
    (
        env::OTEL_PROTOCOL,
        "this build does not export OpenTelemetry traces",
    ),
];

/// `ASYA_HANDLER_MODE`: only `payload` (what Asya's current runtime does) is supported.
pub fn check_handler_mode(value: Option<&str>) -> Result<Option<String>, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("payload") => Ok(Some(
            "ASYA_HANDLER_MODE=payload is deprecated: handlers always receive the payload; remove the setting".to_owned(),
        )),
        Some(v) => Err(format!(
            "ASYA_HANDLER_MODE={v}: envelope mode is not supported (Asya's current runtime removed it too); handlers receive the payload and read or change the route, headers and status with the ABI (yield \"GET\", \"/route/next\" ...; protocol.md §6.3); remove the setting"
        )),
    }
}

/// The `default` policy (and `non-retryable` rule) that the older flat variables meant,
/// as `(ASYA_RESILIENCY_POLICIES, ASYA_RESILIENCY_RULES)` JSON. Asya's defaults apply to
/// the fields not given: 3 attempts, exponential from 1s to 300s, jitter.
fn legacy_resiliency(get: Lookup<'_>) -> Result<(String, Option<String>), SidecarError> {
    let mut policy = serde_json::json!({
        "maxAttempts": 3, "backoff": "exponential", "initialDelay": "1s",
        "maxInterval": "300s", "jitter": true,
    });
    if let Some(v) = var(get, "ASYA_RESILIENCY_RETRY_POLICY") {
        let shape = v.to_ascii_lowercase();
        if !matches!(shape.as_str(), "constant" | "exponential" | "linear") {
            return Err(bad(
                "ASYA_RESILIENCY_RETRY_POLICY",
                &v,
                "use constant or exponential",
            ));
        }
        policy["backoff"] = shape.into();
    }
    if let Some(v) = var(get, "ASYA_RESILIENCY_RETRY_MAX_ATTEMPTS") {
        let n = v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            bad(
                "ASYA_RESILIENCY_RETRY_MAX_ATTEMPTS",
                &v,
                "use a positive whole number",
            )
        })?;
        policy["maxAttempts"] = n.into();
    }
    for (name, field) in [
        ("ASYA_RESILIENCY_RETRY_INITIAL_INTERVAL", "initialDelay"),
        ("ASYA_RESILIENCY_RETRY_MAX_INTERVAL", "maxInterval"),
    ] {
        if let Some(v) = var(get, name) {
            parse_go_duration(&v)
                .map_err(|e| bad(name, &v, &format!("{e} (use a Go duration such as 1s)")))?;
            policy[field] = v.into();
        }
    }
    if let Some(v) = var(get, "ASYA_RESILIENCY_RETRY_BACKOFF_COEFFICIENT") {
        if v.parse::<f64>().ok() != Some(2.0) {
            return Err(bad(
                "ASYA_RESILIENCY_RETRY_BACKOFF_COEFFICIENT",
                &v,
                "only 2 has an equivalent (Troupe's exponential backoff doubles); remove it, or use \"backoff\": \"linear\" or \"constant\" in ASYA_RESILIENCY_POLICIES",
            ));
        }
    }
    policy["jitter"] = boolean(get, "ASYA_RESILIENCY_RETRY_JITTER", true)?.into();
    let mut policies = serde_json::json!({ "default": policy });
    let rules = match var(get, "ASYA_RESILIENCY_NON_RETRYABLE_ERRORS") {
        None => None,
        Some(v) => {
            let errors: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .collect();
            policies["non-retryable"] = serde_json::json!({ "maxAttempts": 1 });
            Some(serde_json::json!([{ "errors": errors, "policy": "non-retryable" }]).to_string())
        }
    };
    Ok((policies.to_string(), rules))
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(get: Lookup<'_>, name: &str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn bad(name: &str, value: &str, hint: &str) -> SidecarError {
    SidecarError::Config(format!("{name}={value}: {hint}"))
}

/// A whole-number variable within `range`, `default` when unset.
fn count(
    get: Lookup<'_>,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, SidecarError> {
    let Some(v) = var(get, name) else {
        return Ok(default);
    };
    match v.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(bad(
            name,
            &v,
            &format!(
                "use a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn duration(get: Lookup<'_>, name: &str, default: Duration) -> Result<Duration, SidecarError> {
    match var(get, name) {
        None => Ok(default),
        Some(v) => parse_go_duration(&v).map_err(|e| {
            bad(
                name,
                &v,
                &format!("{e} (use a Go duration such as 30s or 5m)"),
            )
        }),
    }
}

fn boolean(get: Lookup<'_>, name: &str, default: bool) -> Result<bool, SidecarError> {
    match var(get, name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(bad(name, &v, "use true or false")),
        },
    }
}

/// `:8080` → all interfaces; `host:port` as given.
fn listen_addr(text: &str) -> Option<SocketAddr> {
    if let Some(port) = text.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)));
    }
    text.parse().ok()
}

impl SidecarConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SidecarError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (tests pass a map).
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, SidecarError> {
        let required = |name: &str, what: &str| {
            var(get, name)
                .ok_or_else(|| SidecarError::Config(format!("{name} is required: {what}")))
        };
        let actor = required(
            env::ACTOR_NAME,
            "the actor whose queue this sidecar consumes",
        )?;
        troupe_protocol::queue::validate_actor_name(&actor)
            .map_err(|e| bad(env::ACTOR_NAME, &actor, &e.to_string()))?;
        let namespace = required(env::NAMESPACE, "the queue namespace, e.g. default")?;

        let crew = var(get, env::CREW);
        if let Some(c) = &crew {
            if !CREW.contains(&c.as_str()) {
                return Err(bad(
                    env::CREW,
                    c,
                    &format!(
                        "not a crew actor this build runs natively; use one of {}",
                        CREW.join(", ")
                    ),
                ));
            }
        }

        let mut settings = ActorSettings::new(actor);
        if let Some(s) = var(get, env::ACTOR_SINK) {
            settings.sink = s;
        }
        if let Some(s) = var(get, env::ACTOR_SUMP) {
            settings.sump = s;
        }
        let mut warnings = Vec::new();
        for (name, instead) in LEGACY_GONE {
            if let Some(v) = var(get, name) {
                // Asya's operator set the old end actors next to ASYA_ACTOR_SINK for a
                // while; the sink named there is the one that counts.
                if name.ends_with("_END") && var(get, env::ACTOR_SINK).is_some() {
                    warnings.push(format!("{name}={v} is an older Asya setting and is ignored: ASYA_ACTOR_SINK is set; remove it"));
                } else {
                    return Err(bad(
                        name,
                        &v,
                        &format!("an older Asya setting that Troupe does not implement: {instead}"),
                    ));
                }
            }
        }
        match check_handler_mode(get(env::HANDLER_MODE).as_deref()) {
            Ok(Some(w)) => warnings.push(w),
            Ok(None) => {}
            Err(e) => return Err(SidecarError::Config(e)),
        }
        for (name, what) in NOT_IMPLEMENTED {
            if let Some(v) = var(get, name) {
                warnings.push(format!("{name}={v} has no effect: {what}"));
            }
        }
        let timeout_var = match (
            var(get, env::RESILIENCY_ACTOR_TIMEOUT),
            var(get, "ASYA_RUNTIME_TIMEOUT"),
        ) {
            (None, Some(v)) => {
                warnings.push(format!("ASYA_RUNTIME_TIMEOUT={v} is deprecated: it sets the actor timeout; rename it ASYA_RESILIENCY_ACTOR_TIMEOUT"));
                "ASYA_RUNTIME_TIMEOUT"
            }
            (Some(_), Some(v)) => {
                warnings.push(format!("ASYA_RUNTIME_TIMEOUT={v} is deprecated and ignored: ASYA_RESILIENCY_ACTOR_TIMEOUT is set; remove it"));
                env::RESILIENCY_ACTOR_TIMEOUT
            }
            _ => env::RESILIENCY_ACTOR_TIMEOUT,
        };
        settings.actor_timeout = duration(get, timeout_var, Duration::from_secs(300))?;
        if settings.actor_timeout.is_zero() {
            return Err(bad(env::RESILIENCY_ACTOR_TIMEOUT, "0", "must be positive"));
        }
        let mut policies = get(env::RESILIENCY_POLICIES);
        let mut rules = get(env::RESILIENCY_RULES);
        let legacy: Vec<&str> = LEGACY_RETRY
            .into_iter()
            .filter(|n| var(get, n).is_some())
            .collect();
        if !legacy.is_empty() {
            let configured = [&policies, &rules]
                .iter()
                .any(|v| v.as_deref().is_some_and(|t| !t.trim().is_empty()));
            if configured {
                warnings.push(format!("{} are older Asya settings and are ignored: ASYA_RESILIENCY_POLICIES/ASYA_RESILIENCY_RULES are set; remove them", legacy.join(", ")));
            } else {
                let (p, r) = legacy_resiliency(get)?;
                let mut w = format!(
                    "{} are deprecated: honoured as ASYA_RESILIENCY_POLICIES='{p}'",
                    legacy.join(", ")
                );
                if let Some(r) = &r {
                    w.push_str(&format!(" ASYA_RESILIENCY_RULES='{r}'"));
                }
                warnings.push(format!("{w}; set those instead"));
                policies = Some(p);
                rules = r;
            }
        }
        settings.resiliency = Resiliency::from_env_json(policies.as_deref(), rules.as_deref())
            .map_err(|e| SidecarError::Config(e.to_string()))?;
        settings.gateway_url = var(get, env::GATEWAY_URL);
        settings.gateway_allowed_hosts = var(get, env::GATEWAY_ALLOWED_HOSTS)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        settings.concurrency = count(get, env::CONCURRENCY, 1, 1..=1024)?;
        settings.pipeline = count(get, env::PIPELINE, settings.pipeline, 0..=64)?;
        // ASYA_RABBITMQ_PREFETCH is a floor: the engine raises the prefetch above it for
        // a fast handler's pipeline, never below.
        settings.min_prefetch = count(get, env::RABBITMQ_PREFETCH, 1, 1..=65535)?;
        let prefetch = settings.initial_prefetch();
        settings.shutdown_grace = duration(get, env::SHUTDOWN_GRACE, Duration::from_secs(30))?;

        let is_end_actor = boolean(get, env::IS_END_ACTOR, false)?;
        if is_end_actor && crew.is_some() {
            return Err(SidecarError::Config(
                "ASYA_IS_END_ACTOR and TROUPE_CREW are exclusive: TROUPE_CREW runs the crew natively, ASYA_IS_END_ACTOR runs a Python end actor behind the runtime".into(),
            ));
        }
        let metrics_text =
            var(get, env::METRICS_ADDR).unwrap_or_else(|| DEFAULT_METRICS_ADDR.to_owned());
        let metrics_addr = listen_addr(&metrics_text).ok_or_else(|| {
            bad(
                env::METRICS_ADDR,
                &metrics_text,
                "use :PORT (all interfaces) or HOST:PORT",
            )
        })?;
        let metrics_namespace =
            var(get, env::METRICS_NAMESPACE).unwrap_or_else(|| "asya_actor".to_owned());
        if !metrics_namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || metrics_namespace.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(bad(
                env::METRICS_NAMESPACE,
                &metrics_namespace,
                "use letters, digits and '_' (a Prometheus name prefix)",
            ));
        }
        let crew_config =
            CrewConfig::from_lookup(|n| get(n)).map_err(|e| SidecarError::Config(e.to_string()))?;

        Ok(SidecarConfig {
            settings,
            namespace,
            prefetch,
            transport: var(get, env::TRANSPORT).unwrap_or_else(|| "rabbitmq".to_owned()),
            socket: PathBuf::from(
                var(get, env::SOCKET_DIR).unwrap_or_else(|| "/var/run/asya".to_owned()),
            )
            .join(SOCKET_NAME),
            is_end_actor,
            crew,
            crew_config,
            runtime_ready_timeout: duration(
                get,
                env::RUNTIME_READY_TIMEOUT,
                Duration::from_secs(300),
            )?,
            metrics_enabled: boolean(get, env::METRICS_ENABLED, true)?,
            metrics_addr,
            metrics_namespace,
            gateway_ready_timeout: duration(
                get,
                env::GATEWAY_READY_TIMEOUT,
                Duration::from_secs(300),
            )?,
            warnings,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<SidecarConfig, SidecarError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        SidecarConfig::from_lookup(&move |k| m.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [("ASYA_ACTOR_NAME", "summarize"), ("ASYA_NAMESPACE", "prod")];

    #[test]
    fn defaults_follow_section_15() {
        let c = cfg(&BASE).unwrap();
        assert_eq!(c.settings.actor, "summarize");
        assert_eq!(c.settings.sink, "x-sink");
        assert_eq!(c.settings.sump, "x-sump");
        assert_eq!(c.settings.actor_timeout, Duration::from_secs(300));
        assert!(c.settings.resiliency.is_none());
        assert_eq!(c.settings.concurrency, 1);
        assert_eq!(c.settings.pipeline, 4);
        assert_eq!(
            c.prefetch, 2,
            "one running and one settling until the engine adapts"
        );
        assert_eq!(c.transport, "rabbitmq");
        assert_eq!(c.socket, PathBuf::from("/var/run/asya/asya-runtime.sock"));
        assert!(!c.is_end_actor && c.crew.is_none());
        assert_eq!(c.runtime_ready_timeout, Duration::from_secs(300));
        assert!(c.metrics_enabled);
        assert_eq!(c.metrics_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.metrics_namespace, "asya_actor");
    }

    /// The sidecar asks for every name of the shared table (the renderer writes those) and
    /// for no other name outside it and the older Asya settings it recognises.
    #[test]
    fn reads_through_the_shared_table() {
        let asked = std::cell::RefCell::new(Vec::<String>::new());
        let base: HashMap<&str, &str> = BASE.iter().copied().collect();
        let lookup = |name: &str| {
            asked.borrow_mut().push(name.to_owned());
            base.get(name).map(|v| (*v).to_owned())
        };
        SidecarConfig::from_lookup(&lookup).unwrap();
        let asked = asked.into_inner();
        for v in env::ALL {
            // run.rs reads the token, outside this config.
            if v.name != env::GATEWAY_TOKEN {
                assert!(asked.iter().any(|a| a == v.name), "{} is not read", v.name);
            }
        }
        let legacy: Vec<&str> = LEGACY_RETRY
            .iter()
            .copied()
            .chain(LEGACY_GONE.iter().map(|(n, _)| *n))
            .chain(["ASYA_RUNTIME_TIMEOUT"])
            .collect();
        for a in &asked {
            assert!(
                env::ALL.iter().any(|v| v.name == a) || legacy.contains(&a.as_str()),
                "{a} is read but missing from troupe_protocol::sidecar_env"
            );
        }
    }

    #[test]
    fn every_variable_is_read() {
        let mut v = BASE.to_vec();
        v.extend([
            ("ASYA_TRANSPORT", "sqs"),
            ("ASYA_SOCKET_DIR", "/tmp/s"),
            ("ASYA_ACTOR_SINK", "sink2"),
            ("ASYA_ACTOR_SUMP", "sump2"),
            ("ASYA_IS_END_ACTOR", "true"),
            ("ASYA_RESILIENCY_ACTOR_TIMEOUT", "90s"),
            (
                "ASYA_RESILIENCY_POLICIES",
                r#"{"default": {"maxAttempts": 2}}"#,
            ),
            ("ASYA_GATEWAY_URL", "http://gw:8081"),
            ("TROUPE_GATEWAY_ALLOWED_HOSTS", "gw:8081, other"),
            ("TROUPE_CONCURRENCY", "4"),
            ("TROUPE_PIPELINE", "2"),
            ("ASYA_RUNTIME_READY_TIMEOUT", "10s"),
            ("ASYA_METRICS_ENABLED", "false"),
            ("ASYA_METRICS_ADDR", "127.0.0.1:9100"),
            ("ASYA_METRICS_NAMESPACE", "team_a"),
        ]);
        let c = cfg(&v).unwrap();
        assert_eq!(c.transport, "sqs");
        assert_eq!(c.socket, PathBuf::from("/tmp/s/asya-runtime.sock"));
        assert_eq!(
            (c.settings.sink.as_str(), c.settings.sump.as_str()),
            ("sink2", "sump2")
        );
        assert!(c.is_end_actor);
        assert_eq!(c.settings.actor_timeout, Duration::from_secs(90));
        assert!(c.settings.resiliency.is_some());
        assert_eq!(c.settings.gateway_url.as_deref(), Some("http://gw:8081"));
        assert_eq!(c.settings.gateway_allowed_hosts, vec!["gw:8081", "other"]);
        assert_eq!(c.settings.concurrency, 4);
        assert_eq!(c.settings.pipeline, 2);
        assert_eq!(
            c.prefetch, 8,
            "4 workers, each with 1 running and 1 settling at first"
        );
        assert_eq!(c.runtime_ready_timeout, Duration::from_secs(10));
        assert!(!c.metrics_enabled);
        assert_eq!(c.metrics_addr, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(c.metrics_namespace, "team_a");
    }

    #[test]
    fn prefetch_starts_with_one_settling_and_honours_a_larger_asya_prefetch() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = BASE.to_vec();
            v.extend_from_slice(extra);
            cfg(&v)
        };
        let strict = with(&[("TROUPE_PIPELINE", "0")]).unwrap();
        assert_eq!((strict.settings.pipeline, strict.prefetch), (0, 1));
        // A smaller ASYA_RABBITMQ_PREFETCH cannot starve the pipeline...
        let small = with(&[("ASYA_RABBITMQ_PREFETCH", "1")]).unwrap();
        assert_eq!((small.prefetch, small.settings.min_prefetch), (2, 1));
        // ...a larger one is kept, also as the engine's floor.
        let large = with(&[("ASYA_RABBITMQ_PREFETCH", "50")]).unwrap();
        assert_eq!((large.prefetch, large.settings.min_prefetch), (50, 50));
        for (name, value) in [
            ("TROUPE_PIPELINE", "65"),
            ("TROUPE_PIPELINE", "-1"),
            ("ASYA_RABBITMQ_PREFETCH", "0"),
            ("TROUPE_CONCURRENCY", "0"),
        ] {
            let e = with(&[(name, value)]).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("whole number"), "{e}");
        }
    }

    #[test]
    fn crew_actor() {
        let mut v = BASE.to_vec();
        v.extend([
            ("TROUPE_CREW", "x-sink"),
            ("ASYA_PERSISTENCE_MOUNT", "/state"),
        ]);
        let c = cfg(&v).unwrap();
        assert_eq!(c.crew.as_deref(), Some("x-sink"));
        assert_eq!(c.crew_config.mount, Some(PathBuf::from("/state")));
    }

    #[test]
    fn fan_in_crew_actor_with_its_timeout() {
        let mut v = BASE.to_vec();
        v.extend([("TROUPE_CREW", "fan-in"), ("TROUPE_FANIN_TIMEOUT", "30s")]);
        let c = cfg(&v).unwrap();
        assert_eq!(c.crew.as_deref(), Some("fan-in"));
        assert_eq!(
            c.crew_config.fanin_timeout,
            std::time::Duration::from_secs(30)
        );
        v.push(("TROUPE_FANIN_TIMEOUT", "later"));
        let e = cfg(&v).unwrap_err().to_string();
        assert!(e.contains("TROUPE_FANIN_TIMEOUT"), "{e}");
    }

    #[test]
    fn errors_name_the_variable() {
        for (drop, needle) in [
            ("ASYA_ACTOR_NAME", "ASYA_ACTOR_NAME is required"),
            ("ASYA_NAMESPACE", "ASYA_NAMESPACE is required"),
        ] {
            let v: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != drop).collect();
            let e = cfg(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        for (k, val) in [
            ("ASYA_ACTOR_NAME", "Bad_Name"),
            ("ASYA_RESILIENCY_ACTOR_TIMEOUT", "ten"),
            ("ASYA_RESILIENCY_ACTOR_TIMEOUT", "0s"),
            ("ASYA_RESILIENCY_POLICIES", "[1]"),
            ("TROUPE_CONCURRENCY", "0"),
            ("TROUPE_CREW", "fan-out"),
            ("ASYA_IS_END_ACTOR", "maybe"),
            ("ASYA_METRICS_ADDR", "nowhere"),
            ("ASYA_METRICS_NAMESPACE", "a-b"),
            ("ASYA_RUNTIME_READY_TIMEOUT", "5"),
        ] {
            let mut v = BASE.to_vec();
            v.retain(|(key, _)| *key != k);
            v.push((k, val));
            let e = cfg(&v).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let text = e.to_string();
            assert!(
                text.contains(k.trim_start_matches("ASYA_")) || text.contains("policies"),
                "{k}={val}: {text}"
            );
        }
        let mut v = BASE.to_vec();
        v.extend([("TROUPE_CREW", "x-sink"), ("ASYA_IS_END_ACTOR", "true")]);
        assert!(cfg(&v).unwrap_err().to_string().contains("exclusive"));
    }
}
