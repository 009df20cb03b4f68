//! `troupe sidecar` (one actor's sidecar, configured by protocol.md §15) and
//! `troupe runtime` (the Python runtime shipped in this binary, for the pod's other
//! container).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use troupe_sidecar::SidecarConfig;
use troupe_transport::ConnectOptions;
use troupe_transports::TransportSpec;

/// Everything `troupe sidecar` reads at start, from one lookup: what runs is exactly
/// what the §15 table test below checks.
struct Startup {
    config: SidecarConfig,
    spec: TransportSpec,
    options: ConnectOptions,
}

/// Parses the sidecar's environment; `Err` carries the message and the exit code.
fn configure(get: &dyn Fn(&str) -> Option<String>) -> Result<Startup, (String, u8)> {
    let mut config = SidecarConfig::from_lookup(get).map_err(|e| (e.to_string(), e.exit_code()))?;
    // A compiled flow's native routers, shipped by `troupe flow compile`.
    if let Some(flows) = troupe_flow::shipped::from_env(get).map_err(|e| (e.to_string(), 2))? {
        let routers = troupe_flow::NativeRouters::new(&flows);
        if !routers.is_empty() {
            config.settings.native_routers = Some(std::sync::Arc::new(routers));
        }
    }
    let spec = TransportSpec::from_env(&config.transport, get).map_err(|e| (e.to_string(), 2))?;
    let mut options = ConnectOptions::new(config.namespace.clone());
    options.visibility_timeout =
        troupe_transports::visibility_timeout(None, get).map_err(|e| (e.to_string(), 2))?;
    options.prefetch = u16::try_from(config.prefetch).unwrap_or(u16::MAX);
    Ok(Startup {
        config,
        spec,
        options,
    })
}

/// Runs the sidecar until SIGTERM / Ctrl-C. Returns the exit code.
pub async fn run() -> u8 {
    let env: HashMap<String, String> = std::env::vars().collect();
    let get = |k: &str| env.get(k).cloned();
    let Startup {
        config,
        spec,
        options,
    } = match configure(&get) {
        Ok(s) => s,
        Err((message, code)) => {
            eprintln!("troupe sidecar: {message}");
            return code;
        }
    };
    for w in &config.warnings {
        tracing::warn!(actor = %config.settings.actor, "{w}");
    }
    tracing::info!(actor = %config.settings.actor, broker = %spec.describe(), "sidecar starting");
    let shutdown = crate::signals::terminated();
    let connect = || spec.connect(options.clone());
    match troupe_sidecar::run(config, connect, shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("troupe sidecar: {e}");
            e.exit_code()
        }
    }
}

/// Replaces this process with `python runtime.py` (the embedded runtime, written under
/// `dir`); `ASYA_HANDLER`, `ASYA_SOCKET_DIR` etc. pass through. Returns only on failure.
///
/// exec, not spawn: the container's stop signal then reaches the runtime itself (which
/// finishes the call in progress within `TROUPE_SHUTDOWN_GRACE`), and there is no
/// second process that a SIGKILL of the launcher could orphan.
pub fn exec_runtime(python: &str, dir: Option<PathBuf>) -> u8 {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("troupe-runtime-{}", std::process::id()))
    });
    let file = match troupe_runtime::launcher::write_runtime_file(&dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("troupe runtime: {e}");
            return 1;
        }
    };
    let err = std::process::Command::new(python).arg(&file).exec();
    eprintln!(
        "troupe runtime: cannot run {python} {}: {err}",
        file.display()
    );
    1
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    type Check = fn(&Startup) -> bool;

    fn start(pairs: &[(&str, &str)]) -> Result<Startup, (String, u8)> {
        let mut env: HashMap<String, String> =
            [("ASYA_ACTOR_NAME", "summarize"), ("ASYA_NAMESPACE", "prod")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        env.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        configure(&|k| env.get(k).cloned())
    }

    fn rabbit(s: &Startup) -> (&str, &str, Option<u16>, u32, Duration) {
        match &s.spec {
            TransportSpec::RabbitMq {
                url,
                exchange,
                prefetch,
                settings,
            } => (
                url,
                exchange,
                *prefetch,
                settings.queue_retry_attempts,
                settings.queue_retry_backoff,
            ),
            other => panic!("not rabbitmq: {other:?}"),
        }
    }

    /// Every sidecar variable of protocol.md §15, set to a non-default value through the
    /// path `troupe sidecar` starts with, reaches what runs: the engine settings, the
    /// transport spec the connection is opened from, or the connect options.
    #[test]
    fn every_section_15_variable_reaches_the_running_sidecar() {
        let sqs = ("ASYA_TRANSPORT", "sqs");
        let pubsub = ("ASYA_TRANSPORT", "pubsub");
        let table: Vec<(Vec<(&str, &str)>, Check)> = vec![
            (vec![("ASYA_ACTOR_NAME", "other")], |s| {
                s.config.settings.actor == "other"
            }),
            (vec![("ASYA_NAMESPACE", "team")], |s| {
                s.options.namespace == "team"
            }),
            (
                vec![
                    ("ASYA_TRANSPORT", "nats"),
                    ("TROUPE_NATS_URL", "nats://n:4222"),
                ],
                |s| matches!(&s.spec, TransportSpec::Nats { url } if url == "nats://n:4222"),
            ),
            (
                vec![
                    ("ASYA_TRANSPORT", "redis"),
                    ("TROUPE_REDIS_URL", "redis://r:6379/1"),
                ],
                |s| matches!(&s.spec, TransportSpec::Redis { url } if url == "redis://r:6379/1"),
            ),
            (vec![("ASYA_SOCKET_DIR", "/run/x")], |s| {
                s.config.socket == std::path::Path::new("/run/x/asya-runtime.sock")
            }),
            (vec![("ASYA_ACTOR_SINK", "s2")], |s| {
                s.config.settings.sink == "s2"
            }),
            (vec![("ASYA_ACTOR_SUMP", "d2")], |s| {
                s.config.settings.sump == "d2"
            }),
            (vec![("ASYA_IS_END_ACTOR", "true")], |s| {
                s.config.is_end_actor
            }),
            (vec![("ASYA_RESILIENCY_ACTOR_TIMEOUT", "7s")], |s| {
                s.config.settings.actor_timeout == Duration::from_secs(7)
            }),
            (vec![("TROUPE_VISIBILITY_TIMEOUT", "45s")], |s| {
                s.options.visibility_timeout == Duration::from_secs(45)
            }),
            (
                vec![(
                    "ASYA_RESILIENCY_POLICIES",
                    r#"{"default":{"maxAttempts":4}}"#,
                )],
                |s| s.config.settings.resiliency.as_ref().unwrap().policies[0].max_attempts == 4,
            ),
            (
                vec![
                    ("ASYA_RESILIENCY_POLICIES", r#"{"p":{"maxAttempts":2}}"#),
                    (
                        "ASYA_RESILIENCY_RULES",
                        r#"[{"errors":["ValueError"],"policy":"p"}]"#,
                    ),
                ],
                |s| s.config.settings.resiliency.as_ref().unwrap().rules[0].policy == "p",
            ),
            (vec![("ASYA_GATEWAY_URL", "http://gw:8080")], |s| {
                s.config.settings.gateway_url.as_deref() == Some("http://gw:8080")
            }),
            (vec![("ASYA_RUNTIME_READY_TIMEOUT", "3s")], |s| {
                s.config.runtime_ready_timeout == Duration::from_secs(3)
            }),
            (vec![("ASYA_GATEWAY_READY_TIMEOUT", "4s")], |s| {
                s.config.gateway_ready_timeout == Duration::from_secs(4)
            }),
            (vec![("ASYA_METRICS_ENABLED", "false")], |s| {
                !s.config.metrics_enabled
            }),
            (vec![("ASYA_METRICS_ADDR", ":9100")], |s| {
                s.config.metrics_addr.port() == 9100
            }),
            (vec![("ASYA_METRICS_NAMESPACE", "team_a")], |s| {
                s.config.metrics_namespace == "team_a"
            }),
            (vec![("ASYA_CUSTOM_METRICS", "[]")], |s| {
                s.config
                    .warnings
                    .iter()
                    .any(|w| w.contains("ASYA_CUSTOM_METRICS"))
            }),
            (vec![("ASYA_RABBITMQ_URL", "amqp://u:p@mq:5672/")], |s| {
                rabbit(s).0 == "amqp://u:p@mq:5672/%2f"
            }),
            (vec![("ASYA_RABBITMQ_HOST", "mq")], |s| {
                rabbit(s).0.contains("@mq:5672/")
            }),
            (vec![("ASYA_RABBITMQ_PORT", "5673")], |s| {
                rabbit(s).0.contains(":5673/")
            }),
            (vec![("ASYA_RABBITMQ_USERNAME", "bob")], |s| {
                rabbit(s).0.contains("//bob:")
            }),
            (vec![("ASYA_RABBITMQ_PASSWORD", "pw")], |s| {
                rabbit(s).0.contains(":pw@")
            }),
            (vec![("ASYA_RABBITMQ_EXCHANGE", "ex")], |s| {
                rabbit(s).1 == "ex"
            }),
            (vec![("ASYA_RABBITMQ_PREFETCH", "9")], |s| {
                rabbit(s).2 == Some(9) && s.options.prefetch == 9
            }),
            (vec![("ASYA_QUEUE_RETRY_MAX_ATTEMPTS", "3")], |s| {
                rabbit(s).3 == 3
            }),
            (vec![("ASYA_QUEUE_RETRY_BACKOFF", "250ms")], |s| {
                rabbit(s).4 == Duration::from_millis(250)
            }),
            (
                vec![sqs, ("ASYA_AWS_REGION", "eu-west-1")],
                |s| matches!(&s.spec, TransportSpec::Sqs(c) if c.region == "eu-west-1"),
            ),
            (
                vec![sqs, ("ASYA_SQS_ENDPOINT", "http://ls:4566")],
                |s| matches!(&s.spec, TransportSpec::Sqs(c) if c.endpoint.as_deref() == Some("http://ls:4566")),
            ),
            (
                vec![
                    sqs,
                    ("ASYA_QUEUE_URL", "http://ls:4566/000/asya-prod-summarize"),
                ],
                |s| matches!(&s.spec, TransportSpec::Sqs(c) if c.queue_url.is_some()),
            ),
            (
                vec![sqs, ("ASYA_SQS_VISIBILITY_TIMEOUT", "45")],
                |s| matches!(&s.spec, TransportSpec::Sqs(c) if c.visibility_timeout == Some(Duration::from_secs(45))),
            ),
            (
                vec![sqs, ("ASYA_SQS_WAIT_TIME_SECONDS", "5")],
                |s| matches!(&s.spec, TransportSpec::Sqs(c) if c.wait_time == Duration::from_secs(5)),
            ),
            (
                vec![pubsub, ("ASYA_PUBSUB_PROJECT_ID", "proj")],
                |s| matches!(&s.spec, TransportSpec::PubSub(c) if c.project == "proj"),
            ),
            (
                vec![
                    pubsub,
                    ("ASYA_PUBSUB_PROJECT_ID", "proj"),
                    ("ASYA_PUBSUB_ENDPOINT", "127.0.0.1:8085"),
                ],
                |s| matches!(&s.spec, TransportSpec::PubSub(c) if c.endpoint.is_some()),
            ),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "otel:4317")], |s| {
                s.config
                    .warnings
                    .iter()
                    .any(|w| w.contains("OTEL_EXPORTER_OTLP_ENDPOINT"))
            }),
            (vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "http")], |s| {
                s.config
                    .warnings
                    .iter()
                    .any(|w| w.contains("OTEL_EXPORTER_OTLP_PROTOCOL"))
            }),
            (vec![("TROUPE_CONCURRENCY", "3")], |s| {
                s.config.settings.concurrency == 3
            }),
            (vec![("TROUPE_CREW", "x-sink")], |s| {
                s.config.crew.as_deref() == Some("x-sink")
            }),
            (vec![("TROUPE_GATEWAY_ALLOWED_HOSTS", "gw:1")], |s| {
                s.config.settings.gateway_allowed_hosts == ["gw:1"]
            }),
        ];
        for (vars, check) in table {
            let s = start(&vars).unwrap_or_else(|e| panic!("{vars:?}: {e:?}"));
            assert!(check(&s), "{vars:?} did not reach the running sidecar");
        }
        // ASYA_LOG_LEVEL is read before the subscriber starts (main.rs).
        assert_eq!(crate::logging::level(None, Some("WARN"), true), "warn");
    }

    /// Older Asya names: honoured with a WARN naming the new setting, or refused (exit 2)
    /// naming what to use.
    #[test]
    fn older_asya_settings_are_honoured_or_refused_never_ignored() {
        let s = start(&[("ASYA_RUNTIME_TIMEOUT", "42s")]).unwrap();
        assert_eq!(s.config.settings.actor_timeout, Duration::from_secs(42));
        assert!(
            s.config.warnings[0].contains("ASYA_RESILIENCY_ACTOR_TIMEOUT"),
            "{:?}",
            s.config.warnings
        );

        let s = start(&[
            ("ASYA_RESILIENCY_RETRY_MAX_ATTEMPTS", "5"),
            ("ASYA_RESILIENCY_RETRY_POLICY", "constant"),
            ("ASYA_RESILIENCY_RETRY_INITIAL_INTERVAL", "2s"),
            ("ASYA_RESILIENCY_RETRY_JITTER", "false"),
            (
                "ASYA_RESILIENCY_NON_RETRYABLE_ERRORS",
                "ValueError, KeyError",
            ),
        ])
        .unwrap();
        let r = s.config.settings.resiliency.as_ref().unwrap();
        let p = r.policy("default").unwrap();
        assert_eq!(
            (p.max_attempts, p.initial_delay, p.jitter),
            (5, Duration::from_secs(2), false)
        );
        assert_eq!(r.select("KeyError", &[]).unwrap().max_attempts, 1);
        assert!(
            s.config.warnings[0].contains("ASYA_RESILIENCY_POLICIES="),
            "{:?}",
            s.config.warnings
        );

        for (name, value, needle) in [
            (
                "ASYA_HANDLER_MODE",
                "envelope",
                "envelope mode is not supported",
            ),
            ("ASYA_ACTOR_HAPPY_END", "happy-end", "ASYA_ACTOR_SINK"),
            ("ASYA_ACTOR_ERROR_END", "error-end", "ASYA_ACTOR_SINK"),
            ("ASYA_RESILIENCY_RETRY_BACKOFF_COEFFICIENT", "3", "only 2"),
            ("ASYA_RESILIENCY_SLA_TIMEOUT", "5m", "deadline_at"),
        ] {
            let (message, code) = start(&[(name, value)]).err().unwrap();
            assert_eq!(code, 2, "{name}");
            assert!(
                message.contains(name) && message.contains(needle),
                "{message}"
            );
        }
        let s = start(&[
            ("ASYA_ACTOR_HAPPY_END", "happy-end"),
            ("ASYA_ACTOR_SINK", "x-sink"),
        ])
        .unwrap();
        assert!(
            s.config.warnings[0].contains("ignored"),
            "{:?}",
            s.config.warnings
        );
        let s = start(&[("ASYA_HANDLER_MODE", "payload")]).unwrap();
        assert!(
            s.config.warnings[0].contains("deprecated"),
            "{:?}",
            s.config.warnings
        );
    }
}
