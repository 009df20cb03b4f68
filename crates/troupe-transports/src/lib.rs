//! One place that knows every broker transport: parses a transport URL (the mesh file's
//! `transport:`) or the sidecar environment (`ASYA_TRANSPORT` and the per-broker variables
//! of protocol.md §15) into a [`TransportSpec`], and connects it. Each broker lives in its
//! own crate under `crates/transports/`, behind a cargo feature (all on by default).

use std::sync::Arc;

use std::time::Duration;

use troupe_transport::{
    redact_url, ConnectOptions, Transport, TransportError, DEFAULT_VISIBILITY, VISIBILITY_ENV,
    VISIBILITY_PARAM,
};

/// A broker to connect to.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportSpec {
    /// RabbitMQ (AMQP 0-9-1).
    #[cfg(feature = "rabbitmq")]
    RabbitMq {
        /// `amqp://user:pass@host:port/vhost`, the vhost spelled out
        /// ([`troupe_transport_rabbitmq::normalize_url`]).
        url: String,
        /// Topic exchange (`ASYA_RABBITMQ_EXCHANGE`, default `asya`).
        exchange: String,
        /// `ASYA_RABBITMQ_PREFETCH`; the sidecar raises it to its concurrency.
        prefetch: Option<u16>,
        /// Retry settings (`ASYA_QUEUE_RETRY_MAX_ATTEMPTS`, `ASYA_QUEUE_RETRY_BACKOFF`).
        settings: troupe_transport_rabbitmq::RabbitMqSettings,
    },
    /// Amazon SQS.
    #[cfg(feature = "sqs")]
    Sqs(troupe_transport_sqs::SqsConfig),
    /// Google Cloud Pub/Sub.
    #[cfg(feature = "pubsub")]
    PubSub(troupe_transport_pubsub::PubSubConfig),
    /// NATS JetStream (`nats://…`).
    Nats {
        /// Server URL.
        url: String,
    },
    /// Redis Streams (`redis://…`).
    Redis {
        /// Server URL.
        url: String,
    },
}

fn config(kind: &'static str, message: impl Into<String>) -> TransportError {
    TransportError::Config {
        kind,
        message: message.into(),
    }
}

#[cfg(not(all(feature = "rabbitmq", feature = "nats", feature = "redis")))]
fn not_built(kind: &'static str) -> TransportError {
    config(
        kind,
        format!("this troupe was built without the '{kind}' cargo feature; rebuild with default features"),
    )
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(get: Lookup<'_>, name: &str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `ASYA_RABBITMQ_EXCHANGE` default.
pub const DEFAULT_EXCHANGE: &str = "asya";

impl TransportSpec {
    /// Parses a transport URL: `amqp://` / `amqps://` (or `rabbitmq://`, same meaning; query
    /// `?exchange=NAME`), `sqs://REGION?endpoint=…`, `pubsub://PROJECT?endpoint=…`,
    /// `nats://…`, `redis://…` / `rediss://…`.
    pub fn from_url(url: &str) -> Result<Self, TransportError> {
        // The visibility window is read by `visibility_timeout`; the brokers' own URL
        // parsers never see it.
        let (url, _) = split_param(url.trim(), VISIBILITY_PARAM);
        let url = url.as_str();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            #[cfg(feature = "rabbitmq")]
            Some("amqp" | "amqps" | "rabbitmq") => {
                let (base, exchange) = split_param(url, "exchange");
                let base = match base.strip_prefix("rabbitmq://") {
                    Some(rest) => format!("amqp://{rest}"),
                    None => base,
                };
                Ok(TransportSpec::RabbitMq {
                    url: troupe_transport_rabbitmq::normalize_url(&base),
                    exchange: exchange.unwrap_or_else(|| DEFAULT_EXCHANGE.to_owned()),
                    prefetch: None,
                    settings: troupe_transport_rabbitmq::RabbitMqSettings::default(),
                })
            }
            #[cfg(not(feature = "rabbitmq"))]
            Some("amqp" | "amqps" | "rabbitmq") => Err(not_built("rabbitmq")),
            #[cfg(feature = "sqs")]
            Some("sqs") => Ok(TransportSpec::Sqs(troupe_transport_sqs::SqsConfig::from_url(url)?)),
            #[cfg(feature = "pubsub")]
            Some("pubsub") => Ok(TransportSpec::PubSub(troupe_transport_pubsub::PubSubConfig::from_url(url)?)),
            Some("nats" | "tls") => Ok(TransportSpec::Nats { url: url.to_owned() }),
            Some("redis" | "rediss") => Ok(TransportSpec::Redis { url: url.to_owned() }),
            _ => Err(config(
                "transport",
                format!(
                    "unknown transport URL '{}': use amqp://user:pass@host:5672/vhost, sqs://REGION?endpoint=URL, pubsub://PROJECT?endpoint=HOST:PORT, nats://host:4222 or redis://host:6379/0",
                    redact_url(url)
                ),
            )),
        }
    }

    /// Reads the sidecar environment for transport `kind` (`ASYA_TRANSPORT`).
    pub fn from_env(kind: &str, get: Lookup<'_>) -> Result<Self, TransportError> {
        match kind.trim() {
            // The broker crate reads its own variables, so what §15 documents is what runs.
            #[cfg(feature = "rabbitmq")]
            "rabbitmq" => {
                let prefetch = match var(get, "ASYA_RABBITMQ_PREFETCH") {
                    None => None,
                    Some(v) => Some(v.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        config("rabbitmq", format!("ASYA_RABBITMQ_PREFETCH must be a positive integer, not '{v}'"))
                    })?),
                };
                Ok(TransportSpec::RabbitMq {
                    url: troupe_transport_rabbitmq::url_from_env(get)?,
                    exchange: var(get, "ASYA_RABBITMQ_EXCHANGE").unwrap_or_else(|| DEFAULT_EXCHANGE.to_owned()),
                    prefetch,
                    settings: troupe_transport_rabbitmq::RabbitMqSettings::from_env(get)?,
                })
            }
            #[cfg(not(feature = "rabbitmq"))]
            "rabbitmq" => Err(not_built("rabbitmq")),
            #[cfg(feature = "sqs")]
            "sqs" => Ok(TransportSpec::Sqs(troupe_transport_sqs::SqsConfig::from_lookup(|n| get(n))?)),
            #[cfg(feature = "pubsub")]
            "pubsub" => Ok(TransportSpec::PubSub(troupe_transport_pubsub::PubSubConfig::from_lookup(|n| get(n))?)),
            "nats" => Ok(TransportSpec::Nats {
                url: var(get, "TROUPE_NATS_URL")
                    .ok_or_else(|| config("nats", "TROUPE_NATS_URL is required with ASYA_TRANSPORT=nats, e.g. nats://nats:4222"))?,
            }),
            "redis" => Ok(TransportSpec::Redis {
                url: var(get, "TROUPE_REDIS_URL")
                    .ok_or_else(|| config("redis", "TROUPE_REDIS_URL is required with ASYA_TRANSPORT=redis, e.g. redis://redis:6379/0"))?,
            }),
            "embedded" => Err(config(
                "embedded",
                "the embedded queue runs inside `troupe up` only; a standalone sidecar needs a broker (rabbitmq, sqs, pubsub, nats, redis)",
            )),
            "socket" => Err(config(
                "socket",
                "Asya's socket transport (development only) is not supported; use `troupe up` on one machine",
            )),
            other => Err(config(
                "transport",
                format!("ASYA_TRANSPORT={other} is unknown: use rabbitmq, sqs, pubsub, nats or redis"),
            )),
        }
    }

    /// The transport kind (`rabbitmq`, `sqs`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "rabbitmq")]
            TransportSpec::RabbitMq { .. } => "rabbitmq",
            #[cfg(feature = "sqs")]
            TransportSpec::Sqs(_) => "sqs",
            #[cfg(feature = "pubsub")]
            TransportSpec::PubSub(_) => "pubsub",
            TransportSpec::Nats { .. } => "nats",
            TransportSpec::Redis { .. } => "redis",
        }
    }

    /// Where it connects, safe to log (no password).
    pub fn describe(&self) -> String {
        match self {
            #[cfg(feature = "rabbitmq")]
            TransportSpec::RabbitMq { url, exchange, .. } => {
                format!("{} (exchange {exchange})", redact_url(url))
            }
            #[cfg(feature = "sqs")]
            TransportSpec::Sqs(c) => format!(
                "sqs region {}{}",
                c.region,
                c.endpoint
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default()
            ),
            #[cfg(feature = "pubsub")]
            TransportSpec::PubSub(c) => format!("{c:?}"),
            TransportSpec::Nats { url } | TransportSpec::Redis { url } => redact_url(url),
        }
    }

    /// Connects. `options.prefetch` is raised to the RabbitMQ prefetch when that is larger.
    pub async fn connect(
        &self,
        mut options: ConnectOptions,
    ) -> Result<Arc<dyn Transport>, TransportError> {
        match self {
            #[cfg(feature = "rabbitmq")]
            TransportSpec::RabbitMq {
                url,
                exchange,
                prefetch,
                settings,
            } => {
                if let Some(p) = prefetch {
                    options.prefetch = options.prefetch.max(*p);
                }
                let t = troupe_transport_rabbitmq::RabbitMqTransport::connect_with(
                    url,
                    exchange,
                    options,
                    settings.clone(),
                )
                .await?;
                Ok(Arc::new(t))
            }
            #[cfg(feature = "sqs")]
            TransportSpec::Sqs(c) => Ok(Arc::new(
                troupe_transport_sqs::SqsTransport::connect(c.clone(), options).await?,
            )),
            #[cfg(feature = "pubsub")]
            TransportSpec::PubSub(c) => Ok(Arc::new(
                troupe_transport_pubsub::PubSubTransport::connect(c.clone(), options).await?,
            )),
            TransportSpec::Nats { url } => {
                #[cfg(feature = "nats")]
                {
                    Ok(Arc::new(
                        troupe_transport_nats::NatsTransport::connect(url, options).await?,
                    ))
                }
                #[cfg(not(feature = "nats"))]
                {
                    let _ = url;
                    Err(not_built("nats"))
                }
            }
            TransportSpec::Redis { url } => {
                #[cfg(feature = "redis")]
                {
                    Ok(Arc::new(
                        troupe_transport_redis::RedisTransport::connect(url, options).await?,
                    ))
                }
                #[cfg(not(feature = "redis"))]
                {
                    let _ = url;
                    Err(not_built("redis"))
                }
            }
        }
    }
}

/// Splits `?name=value` off `url` (other query parameters stay).
fn split_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut found = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some((k, v)) if k == name => {
                found = Some(v.to_owned());
                false
            }
            _ => !kv.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, found)
}

/// The visibility window a broker transport hides a received message for while its
/// holder does not extend it (how soon a dead consumer's messages come back): the
/// transport URL's `visibility_timeout=` (e.g. `redis://host:6379/0?visibility_timeout=30s`),
/// else `TROUPE_VISIBILITY_TIMEOUT` from `get`, else [`DEFAULT_VISIBILITY`] (30 s).
/// Values are durations (`45s`, `2m`, `1m30s`) or whole seconds, at least 1 s.
pub fn visibility_timeout(url: Option<&str>, get: Lookup<'_>) -> Result<Duration, TransportError> {
    let from_url = url.and_then(|u| split_param(u.trim(), VISIBILITY_PARAM).1);
    let (value, source) = match from_url {
        Some(v) => (v, format!("the transport URL's {VISIBILITY_PARAM}")),
        None => match var(get, VISIBILITY_ENV) {
            Some(v) => (v, VISIBILITY_ENV.to_owned()),
            None => return Ok(DEFAULT_VISIBILITY),
        },
    };
    let v = value.trim();
    let parsed = match v.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => troupe_protocol::duration::parse_go_duration(v).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(12 * 3600) => Ok(d),
        Ok(d) => Err(config(
            "transport",
            format!("{source} is {d:?}: the visibility window must be between 1 s and 12 h (default 30s)"),
        )),
        Err(e) => Err(config(
            "transport",
            format!("{source} '{v}' is not a duration ({e}); write e.g. 30s or 2m"),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use std::time::Duration;
    use troupe_transport_rabbitmq::RabbitMqSettings;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_visibility_window_comes_from_the_url_the_environment_or_30_s() {
        let none = env(&[]);
        assert_eq!(
            visibility_timeout(None, &none).unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            visibility_timeout(Some("redis://h:6379/0"), &none).unwrap(),
            Duration::from_secs(30)
        );
        let e = env(&[("TROUPE_VISIBILITY_TIMEOUT", "2m")]);
        assert_eq!(
            visibility_timeout(None, &e).unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            visibility_timeout(Some("nats://h:4222?visibility_timeout=45s"), &e).unwrap(),
            Duration::from_secs(45),
            "the URL wins over the environment"
        );
        assert_eq!(
            visibility_timeout(Some("redis://h/0?visibility_timeout=20"), &none).unwrap(),
            Duration::from_secs(20)
        );
        for bad in ["0s", "soon", "13h", "500ms"] {
            let err = visibility_timeout(None, &env(&[("TROUPE_VISIBILITY_TIMEOUT", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("TROUPE_VISIBILITY_TIMEOUT"), "{bad}: {err}");
        }
        // The brokers' URL parsers never see the parameter.
        assert_eq!(
            TransportSpec::from_url("redis://h:6379/0?visibility_timeout=20s").unwrap(),
            TransportSpec::Redis {
                url: "redis://h:6379/0".into()
            }
        );
        assert_eq!(
            TransportSpec::from_url("nats://h:4222?visibility_timeout=20s&x=1").unwrap(),
            TransportSpec::Nats {
                url: "nats://h:4222?x=1".into()
            }
        );
    }

    #[test]
    fn urls_pick_the_transport() {
        assert_eq!(
            TransportSpec::from_url("amqp://u:p@h:5672/%2f?exchange=x&heartbeat=10").unwrap(),
            TransportSpec::RabbitMq {
                url: "amqp://u:p@h:5672/%2f?heartbeat=10".into(),
                exchange: "x".into(),
                prefetch: None,
                settings: RabbitMqSettings::default(),
            }
        );
        assert_eq!(
            TransportSpec::from_url("rabbitmq://h/v").unwrap(),
            TransportSpec::RabbitMq {
                url: "amqp://h/v".into(),
                exchange: "asya".into(),
                prefetch: None,
                settings: RabbitMqSettings::default(),
            }
        );
        assert_eq!(
            TransportSpec::from_url("nats://h:4222").unwrap().kind(),
            "nats"
        );
        assert_eq!(
            TransportSpec::from_url("redis://h:6379/0").unwrap().kind(),
            "redis"
        );
        assert_eq!(
            TransportSpec::from_url("sqs://us-east-1?endpoint=http://127.0.0.1:5000")
                .unwrap()
                .kind(),
            "sqs"
        );
        assert_eq!(
            TransportSpec::from_url("pubsub://proj?endpoint=127.0.0.1:8085")
                .unwrap()
                .kind(),
            "pubsub"
        );
        let e = TransportSpec::from_url("kafka://u:secret@h")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown transport URL") && !e.contains("secret"),
            "{e}"
        );
    }

    #[test]
    fn environment_per_section_15() {
        let s = TransportSpec::from_env("rabbitmq", &env(&[])).unwrap();
        assert_eq!(
            s,
            TransportSpec::RabbitMq {
                url: "amqp://guest:guest@localhost:5672/%2f".into(),
                exchange: "asya".into(),
                prefetch: None,
                settings: RabbitMqSettings::default(),
            }
        );
        let s = TransportSpec::from_env(
            "rabbitmq",
            &env(&[
                ("ASYA_RABBITMQ_HOST", "mq"),
                ("ASYA_RABBITMQ_USERNAME", "a@b"),
                ("ASYA_RABBITMQ_PASSWORD", "p:w"),
                ("ASYA_RABBITMQ_EXCHANGE", "ex"),
                ("ASYA_RABBITMQ_PREFETCH", "8"),
                ("ASYA_QUEUE_RETRY_MAX_ATTEMPTS", "3"),
                ("ASYA_QUEUE_RETRY_BACKOFF", "250ms"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s,
            TransportSpec::RabbitMq {
                url: "amqp://a%40b:p%3Aw@mq:5672/%2f".into(),
                exchange: "ex".into(),
                prefetch: Some(8),
                settings: RabbitMqSettings {
                    queue_retry_attempts: 3,
                    queue_retry_backoff: Duration::from_millis(250),
                    ..RabbitMqSettings::default()
                },
            }
        );
        for (name, bad) in [
            ("ASYA_QUEUE_RETRY_MAX_ATTEMPTS", "0"),
            ("ASYA_QUEUE_RETRY_BACKOFF", "soon"),
            ("ASYA_RABBITMQ_PORT", "http"),
        ] {
            let e = TransportSpec::from_env("rabbitmq", &env(&[(name, bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{e}");
        }
        // Asya's env files write the default vhost as a trailing slash.
        for url in ["amqp://h:5672/", "amqp://h:5672", "rabbitmq://h:5672/"] {
            let mut specs = vec![TransportSpec::from_url(url).unwrap()];
            if url.starts_with("amqp") {
                specs.push(
                    TransportSpec::from_env("rabbitmq", &env(&[("ASYA_RABBITMQ_URL", url)]))
                        .unwrap(),
                );
            }
            for s in specs {
                assert!(
                    matches!(s, TransportSpec::RabbitMq { ref url, .. } if url == "amqp://h:5672/%2f"),
                    "{url}: {s:?}"
                );
            }
        }
        let s = TransportSpec::from_env("rabbitmq", &env(&[("ASYA_RABBITMQ_URL", "amqp://x/y")]))
            .unwrap();
        assert!(matches!(s, TransportSpec::RabbitMq { ref url, .. } if url == "amqp://x/y"));
        assert!(
            TransportSpec::from_env("rabbitmq", &env(&[("ASYA_RABBITMQ_PREFETCH", "0")])).is_err()
        );
        assert_eq!(
            TransportSpec::from_env("nats", &env(&[("TROUPE_NATS_URL", "nats://n:4222")])).unwrap(),
            TransportSpec::Nats {
                url: "nats://n:4222".into()
            }
        );
        assert!(TransportSpec::from_env("nats", &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("TROUPE_NATS_URL"));
        assert!(TransportSpec::from_env("redis", &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("TROUPE_REDIS_URL"));
        assert!(TransportSpec::from_env("embedded", &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("troupe up"));
        assert!(TransportSpec::from_env("kafka", &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("ASYA_TRANSPORT=kafka"));
        assert_eq!(
            TransportSpec::from_env("sqs", &env(&[("ASYA_AWS_REGION", "eu-west-1")]))
                .unwrap()
                .kind(),
            "sqs"
        );
    }

    #[test]
    fn describe_hides_passwords() {
        let s = TransportSpec::from_url("amqp://u:secret@h:5672/%2f").unwrap();
        assert!(!s.describe().contains("secret"));
    }
}
