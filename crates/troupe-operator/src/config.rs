//! The operator's settings: flags of `troupe operator` and the environment. The cluster's
//! transports come from the same variables as `troupe sidecar` (`ASYA_TRANSPORT` and the
//! broker's `ASYA_*` / `TROUPE_*` variables, protocol.md §15).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use troupe_render::{Options, Transport};
use troupe_transports::TransportSpec;

use crate::OperatorError;

/// Transports an AsyncActor's `compositionRef` may name (`asyncactor-<kind>`).
pub const KNOWN_TRANSPORTS: [&str; 5] = ["rabbitmq", "sqs", "pubsub", "nats", "redis"];

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "troupe-operator";

/// Finalizer on every AsyncActor the operator manages (deletes the queue).
pub const FINALIZER: &str = "asya.sh/finalizer";

/// What one transport kind resolved to at start.
#[derive(Debug, Clone)]
pub enum TransportSetting {
    /// Configured: how to connect, and what the manifests need.
    Ready {
        /// Connection settings (with secrets).
        spec: Box<TransportSpec>,
        /// The renderer's view (no secrets).
        render: Transport,
    },
    /// The variables are missing or invalid: the message says which to set.
    Missing(String),
}

/// Leader election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Lease name (`coordination.k8s.io/v1`).
    pub name: String,
    /// Namespace holding the lease.
    pub namespace: String,
    /// This operator's identity (pod name, or host + pid).
    pub identity: String,
    /// How long a lease lasts without renewal; a standby takes over after it.
    pub duration: Duration,
    /// How often the holder renews and a standby retries.
    pub retry: Duration,
}

/// Everything `troupe operator` reads at start.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Watch one namespace; all when `None`.
    pub namespace: Option<String>,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics_addr: SocketAddr,
    /// Leader election; `None` runs without (one replica only).
    pub lease: Option<LeaseSettings>,
    /// The cluster default transport (`ASYA_TRANSPORT`), if set.
    pub default_transport: Option<&'static str>,
    /// Every known transport kind, configured or not.
    pub transports: BTreeMap<&'static str, TransportSetting>,
    /// Renderer options (image, gateway, IRSA role); crew and gateway objects are the
    /// Helm chart's, never the operator's.
    pub render: Options,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// How often a healthy actor is reconciled again even without a change.
    pub resync: Duration,
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(get: Lookup<'_>, name: &str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl OperatorConfig {
    /// Reads the environment through `get`: `ASYA_TRANSPORT` and broker variables,
    /// `TROUPE_IMAGE` (sidecar image), `TROUPE_OPERATOR_GATEWAY` (`false`: sidecars do not
    /// report to a gateway), `TROUPE_AWS_ROLE_ARN` (IRSA), `POD_NAME`/`HOSTNAME` (lease
    /// identity), `POD_NAMESPACE` (lease namespace).
    pub fn from_lookup(
        get: Lookup<'_>,
        namespace: Option<String>,
        metrics_addr: SocketAddr,
        leader_election: bool,
    ) -> Result<Self, OperatorError> {
        let default_transport = match var(get, "ASYA_TRANSPORT") {
            None => None,
            Some(kind) => Some(known(&kind).ok_or_else(|| OperatorError::Config {
                name: "ASYA_TRANSPORT",
                message: format!(
                    "'{kind}' is not a cluster transport: use one of {}",
                    KNOWN_TRANSPORTS.join(", ")
                ),
            })?),
        };
        let transports = KNOWN_TRANSPORTS
            .iter()
            .map(|kind| (*kind, resolve(kind, get)))
            .collect::<BTreeMap<_, _>>();
        if let Some(TransportSetting::Missing(why)) =
            default_transport.and_then(|k| transports.get(k))
        {
            return Err(OperatorError::Config {
                name: "ASYA_TRANSPORT",
                message: why.clone(),
            });
        }
        let gateway = match var(get, "TROUPE_OPERATOR_GATEWAY").as_deref() {
            None | Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(OperatorError::Config {
                    name: "TROUPE_OPERATOR_GATEWAY",
                    message: format!("'{other}' is not true or false"),
                })
            }
        };
        let identity = var(get, "POD_NAME")
            .or_else(|| var(get, "HOSTNAME"))
            .map_or_else(
                || format!("troupe-operator-{}", std::process::id()),
                |h| format!("{h}-{}", std::process::id()),
            );
        let lease = leader_election.then(|| LeaseSettings {
            name: "troupe-operator".to_owned(),
            namespace: var(get, "POD_NAMESPACE")
                .or_else(|| namespace.clone())
                .unwrap_or_else(|| "default".to_owned()),
            identity,
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        });
        let mut render = Options {
            crew: false,
            gateway,
            // The chart installs the gateway beside the operator; actors may be elsewhere.
            gateway_namespace: var(get, "POD_NAMESPACE"),
            aws_role_arn: var(get, "TROUPE_AWS_ROLE_ARN"),
            ..Options::default()
        };
        if let Some(image) = var(get, "TROUPE_IMAGE") {
            render.image = image;
        }
        Ok(OperatorConfig {
            namespace,
            metrics_addr,
            lease,
            default_transport,
            transports,
            render,
            concurrency: 16,
            resync: Duration::from_secs(300),
        })
    }
}

/// A Kubernetes client from `KUBECONFIG` / `~/.kube/config`, else the pod's service
/// account.
pub async fn kube_client() -> Result<kube::Client, OperatorError> {
    kube::Client::try_default()
        .await
        .map_err(OperatorError::Client)
}

/// The known transport kind spelled `kind`.
pub fn known(kind: &str) -> Option<&'static str> {
    KNOWN_TRANSPORTS.iter().copied().find(|k| *k == kind)
}

fn resolve(kind: &'static str, get: Lookup<'_>) -> TransportSetting {
    match TransportSpec::from_env(kind, get) {
        Ok(spec) => TransportSetting::Ready {
            render: render_transport(&spec),
            spec: Box::new(spec),
        },
        Err(e) => TransportSetting::Missing(e.to_string()),
    }
}

/// What the manifests need to know about a broker; secrets stay out.
pub fn render_transport(spec: &TransportSpec) -> Transport {
    match spec {
        TransportSpec::RabbitMq { exchange, .. } => Transport::RabbitMq {
            exchange: exchange.clone(),
        },
        TransportSpec::Sqs(c) => Transport::Sqs {
            region: c.region.clone(),
            endpoint: c.endpoint.clone(),
        },
        TransportSpec::PubSub(c) => Transport::PubSub {
            project: c.project.clone(),
            endpoint: c.endpoint.clone(),
        },
        TransportSpec::Nats { url } => Transport::Nats {
            monitoring_endpoint: format!("{}:8222", host_port(url).0),
        },
        TransportSpec::Redis { url } => {
            let (host, port, password) = host_port(url);
            Transport::Redis {
                address: format!("{host}:{}", port.unwrap_or("6379")),
                password,
            }
        }
    }
}

/// Host, port and whether a password is present, from `scheme://[user[:pass]@]host[:port][/…]`
/// (the first server of a comma-separated list).
pub fn host_port(url: &str) -> (&str, Option<&str>, bool) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', ',']).next().unwrap_or(rest);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let password = userinfo
        .and_then(|u| u.split_once(':'))
        .is_some_and(|(_, p)| !p.is_empty());
    // `[::1]:6379`: the port follows the bracket; a bare IPv6 address has no port.
    match hostport.rsplit_once(':') {
        Some((h, p)) if !hostport.starts_with('[') || h.ends_with(']') => (h, Some(p), password),
        _ => (hostport, None, password),
    }
}

/// Keys of Secret `troupe-transport` the sidecars cannot start without, per transport.
pub fn required_secret_keys(transport: &Transport) -> Vec<&'static str> {
    match transport {
        Transport::RabbitMq { .. } => vec!["ASYA_RABBITMQ_URL"],
        Transport::Nats { .. } => vec!["TROUPE_NATS_URL"],
        Transport::Redis { password, .. } => {
            let mut keys = vec!["TROUPE_REDIS_URL"];
            if *password {
                keys.push("REDIS_PASSWORD");
            }
            keys
        }
        Transport::Sqs { .. } | Transport::PubSub { .. } => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<OperatorConfig, OperatorError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OperatorConfig::from_lookup(
            &|k| env.get(k).cloned(),
            None,
            "127.0.0.1:0".parse().unwrap(),
            true,
        )
    }

    #[test]
    fn the_default_transport_comes_from_the_sidecar_variables() {
        let c = config(&[
            ("ASYA_TRANSPORT", "rabbitmq"),
            ("ASYA_RABBITMQ_URL", "amqp://u:p@mq:5672/%2f"),
            ("ASYA_RABBITMQ_EXCHANGE", "ex"),
        ])
        .unwrap();
        assert_eq!(c.default_transport, Some("rabbitmq"));
        match &c.transports["rabbitmq"] {
            TransportSetting::Ready { render, .. } => assert_eq!(
                render,
                &Transport::RabbitMq {
                    exchange: "ex".into()
                }
            ),
            TransportSetting::Missing(m) => panic!("{m}"),
        }
        // Not configured: the message names the variable to set.
        match &c.transports["nats"] {
            TransportSetting::Missing(m) => assert!(m.contains("TROUPE_NATS_URL"), "{m}"),
            TransportSetting::Ready { .. } => panic!("nats has no URL"),
        }
        assert!(c.lease.is_some());
        assert!(!c.render.crew);
    }

    #[test]
    fn a_default_transport_without_its_variables_is_refused_at_start() {
        let e = config(&[("ASYA_TRANSPORT", "redis")]).unwrap_err();
        assert!(e.to_string().contains("TROUPE_REDIS_URL"), "{e}");
        let e = config(&[("ASYA_TRANSPORT", "kafka")]).unwrap_err();
        assert!(
            e.to_string().contains("rabbitmq, sqs, pubsub, nats, redis"),
            "{e}"
        );
        // No default at all is allowed: every actor must then name its transport.
        assert_eq!(config(&[]).unwrap().default_transport, None);
    }

    #[test]
    fn broker_urls_map_to_what_manifests_need() {
        let redis = TransportSpec::from_url("redis://:secret@redis:6380/0").unwrap();
        assert_eq!(
            render_transport(&redis),
            Transport::Redis {
                address: "redis:6380".into(),
                password: true
            }
        );
        let nats = TransportSpec::from_url("nats://user:pw@nats.messaging:4222").unwrap();
        assert_eq!(
            render_transport(&nats),
            Transport::Nats {
                monitoring_endpoint: "nats.messaging:8222".into()
            }
        );
        assert_eq!(
            host_port("redis://user@[::1]:7000/1"),
            ("[::1]", Some("7000"), false)
        );
        assert_eq!(
            required_secret_keys(&render_transport(&redis)),
            ["TROUPE_REDIS_URL", "REDIS_PASSWORD"]
        );
    }
}
