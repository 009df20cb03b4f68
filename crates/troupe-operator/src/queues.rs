//! Queues on the brokers: which transport an actor uses, one connection per transport and
//! namespace (a transport names queues and its dead-letter queue after the namespace it
//! was connected for), created before the Deployment and deleted by the finalizer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::Mutex;
use troupe_render::Transport as RenderTransport;
use troupe_resource::AsyncActorSpec;
use troupe_transport::{ConnectOptions, Transport, TransportError};
use troupe_transports::TransportSpec;

use crate::config::{known, TransportSetting, KNOWN_TRANSPORTS};
use crate::status::Problem;
use crate::OperatorError;

/// The transport an actor resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `rabbitmq`, `sqs`, ...
    pub kind: &'static str,
    /// Connection settings.
    pub spec: TransportSpec,
    /// What the renderer needs.
    pub render: RenderTransport,
}

/// What a queue operation came to.
#[derive(Debug)]
pub enum QueueOutcome {
    /// Done.
    Done,
    /// The broker refused; the user must change something.
    Refused(Problem),
}

/// A connection is per transport kind and namespace.
type ConnectionKey = (&'static str, String);

/// The configured transports and their open connections.
pub struct Queues {
    default: Option<&'static str>,
    settings: BTreeMap<&'static str, TransportSetting>,
    open: Mutex<HashMap<ConnectionKey, Arc<dyn Transport>>>,
}

impl Queues {
    /// Transports as configured at start; `default` is `ASYA_TRANSPORT`.
    pub fn new(
        default: Option<&'static str>,
        settings: BTreeMap<&'static str, TransportSetting>,
    ) -> Self {
        Queues {
            default,
            settings,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The transport of `spec`: its `compositionRef`, else the cluster default. A
    /// transport that is unknown or not configured here is a [`Problem`].
    pub fn resolve(&self, spec: &AsyncActorSpec) -> Result<Resolved, Problem> {
        let kind = match &spec.composition_ref {
            Some(c) => {
                let wanted = c.transport().unwrap_or(c.name.as_str());
                known(wanted)
                    .ok_or_else(|| Problem::unknown_transport(&c.name, &KNOWN_TRANSPORTS))?
            }
            None => self.default.ok_or_else(Problem::no_default_transport)?,
        };
        self.resolve_kind(kind)
    }

    /// The transport `kind` as configured here.
    pub fn resolve_kind(&self, kind: &'static str) -> Result<Resolved, Problem> {
        match self.settings.get(kind) {
            Some(TransportSetting::Ready { spec, render }) => Ok(Resolved {
                kind,
                spec: (**spec).clone(),
                render: render.clone(),
            }),
            Some(TransportSetting::Missing(why)) => {
                Err(Problem::transport_not_configured(kind, why))
            }
            None => Err(Problem::transport_not_configured(kind, "not built in")),
        }
    }

    async fn connection(
        &self,
        t: &Resolved,
        namespace: &str,
    ) -> Result<Arc<dyn Transport>, TransportError> {
        let key = (t.kind, namespace.to_owned());
        // Held across the connect: two reconciles of one namespace share one connection
        // instead of racing to open two.
        let mut open = self.open.lock().await;
        if let Some(c) = open.get(&key) {
            return Ok(c.clone());
        }
        let conn = t.spec.connect(ConnectOptions::new(namespace)).await?;
        open.insert(key, conn.clone());
        Ok(conn)
    }

    /// Forgets the connection of `t` in `namespace` (after a failure, so the next try
    /// connects afresh).
    async fn drop_connection(&self, t: &Resolved, namespace: &str) {
        if let Some(c) = self
            .open
            .lock()
            .await
            .remove(&(t.kind, namespace.to_owned()))
        {
            c.close().await;
        }
    }

    /// Creates `queue`. The broker refusing it ([`TransportError::QueueRefused`]) is a
    /// [`QueueOutcome::Refused`]; any other failure is an error (retried).
    pub async fn create(
        &self,
        t: &Resolved,
        namespace: &str,
        queue: &str,
    ) -> Result<QueueOutcome, OperatorError> {
        let result = match self.connection(t, namespace).await {
            Ok(c) => c.create_queue(queue).await,
            Err(e) => Err(e),
        };
        self.outcome(t, namespace, queue, result).await
    }

    /// Deletes `queue` (an absent queue is fine).
    pub async fn delete(
        &self,
        t: &Resolved,
        namespace: &str,
        queue: &str,
    ) -> Result<QueueOutcome, OperatorError> {
        let result = match self.connection(t, namespace).await {
            Ok(c) => match c.delete_queue(queue).await {
                Err(TransportError::NoSuchQueue(_)) => Ok(()),
                other => other,
            },
            Err(e) => Err(e),
        };
        self.outcome(t, namespace, queue, result).await
    }

    async fn outcome(
        &self,
        t: &Resolved,
        namespace: &str,
        queue: &str,
        result: Result<(), TransportError>,
    ) -> Result<QueueOutcome, OperatorError> {
        match result {
            Ok(()) => Ok(QueueOutcome::Done),
            Err(TransportError::QueueRefused { reason, .. }) => Ok(QueueOutcome::Refused(
                Problem::queue_refused(queue, t.kind, &reason),
            )),
            Err(e) => {
                // Anything else (broker down, credentials, I/O) may be fixed without
                // touching the actor: retry with backoff, on a fresh connection.
                self.drop_connection(t, namespace).await;
                Err(OperatorError::Queue {
                    kind: t.kind,
                    queue: queue.to_owned(),
                    source: e,
                })
            }
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let open: Vec<_> = self.open.lock().await.drain().collect();
        for (_, c) in open {
            c.close().await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use troupe_resource::CompositionRef;

    use super::*;
    use crate::config::OperatorConfig;

    fn queues(pairs: &[(&str, &str)]) -> Queues {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let c = OperatorConfig::from_lookup(
            &|k| env.get(k).cloned(),
            None,
            "127.0.0.1:0".parse().unwrap(),
            false,
        )
        .unwrap();
        Queues::new(c.default_transport, c.transports)
    }

    fn spec(composition: Option<&str>) -> AsyncActorSpec {
        AsyncActorSpec {
            actor: "a".into(),
            composition_ref: composition.map(|n| CompositionRef { name: n.into() }),
            ..AsyncActorSpec::default()
        }
    }

    #[test]
    fn composition_ref_picks_a_configured_transport_else_says_what_to_set() {
        let q = queues(&[
            ("ASYA_TRANSPORT", "rabbitmq"),
            ("ASYA_RABBITMQ_URL", "amqp://mq:5672/%2f"),
            ("ASYA_AWS_REGION", "eu-west-1"),
        ]);
        assert_eq!(q.resolve(&spec(None)).unwrap().kind, "rabbitmq");
        assert_eq!(
            q.resolve(&spec(Some("asyncactor-sqs"))).unwrap().kind,
            "sqs"
        );
        let p = q.resolve(&spec(Some("asyncactor-redis"))).unwrap_err();
        assert_eq!(p.reason, "TransportNotConfigured");
        assert!(p.message.contains("TROUPE_REDIS_URL"), "{}", p.message);
        let p = q.resolve(&spec(Some("asyncactor-kafka"))).unwrap_err();
        assert_eq!(p.reason, "UnknownTransport");
        // No cluster default: an actor without compositionRef cannot resolve.
        let p = queues(&[]).resolve(&spec(None)).unwrap_err();
        assert_eq!(p.reason, "NoDefaultTransport");
    }
}
