//! The transport interface (platform.md §1.1) that every queue backend implements:
//! the embedded queue, and later RabbitMQ, SQS, Pub/Sub, NATS JetStream and Redis Streams.
//!
//! The sidecar engine only ever talks to a `dyn Transport`; adding a broker never changes
//! the engine.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub mod deferral;
pub mod inbox;
pub mod lease;
pub mod longpoll;
pub mod retry;

use async_trait::async_trait;
use bytes::Bytes;

/// Errors a transport reports. Messages say what to check.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker or store could not be reached or written.
    #[error("transport I/O error on queue '{queue}': {message}")]
    Io {
        /// Queue involved.
        queue: String,
        /// What failed.
        message: String,
    },
    /// The queue does not exist and cannot be created.
    #[error("queue '{0}' does not exist")]
    NoSuchQueue(String),
    /// The message exceeds the transport's size limit.
    #[error("message of {size} bytes exceeds the {limit}-byte limit of queue '{queue}'")]
    TooLarge {
        /// Queue involved.
        queue: String,
        /// Message size.
        size: usize,
        /// Transport limit.
        limit: usize,
    },
    /// The delivery handle is unknown (already acked, or expired and redelivered).
    #[error("unknown or expired delivery on queue '{0}'")]
    UnknownDelivery(String),
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
    /// The broker cannot be reached (connection refused, DNS, timeout). `url` never
    /// carries a password.
    #[error("cannot reach the {kind} broker at {url}: {message}; check that it is running and the URL is right")]
    Unavailable {
        /// Transport kind (`rabbitmq`, `sqs`, ...).
        kind: &'static str,
        /// Broker URL with any password removed.
        url: String,
        /// What failed.
        message: String,
    },
    /// The broker refused the credentials.
    #[error("the {kind} broker at {url} refused the credentials: {message}; check the user name and password")]
    Auth {
        /// Transport kind.
        kind: &'static str,
        /// Broker URL with any password removed.
        url: String,
        /// What the broker said.
        message: String,
    },
    /// The broker refused to create or delete a queue: arguments that conflict with the
    /// existing queue's, an invalid name, a missing permission. `reason` is the broker's
    /// own words, for an operator's status condition.
    #[error("the {kind} broker refused queue '{queue}': {reason}")]
    QueueRefused {
        /// Transport kind.
        kind: &'static str,
        /// Queue involved.
        queue: String,
        /// What the broker said, and what to do when known.
        reason: String,
    },
    /// The transport settings (URL, environment) are invalid.
    #[error("invalid {kind} transport settings: {message}")]
    Config {
        /// Transport kind.
        kind: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Default visibility window of the broker transports: a live handler keeps extending
/// its delivery (every third of the window), so the window only bounds how long a dead
/// consumer's messages stay hidden.
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);

/// Environment variable that sets the visibility window (a duration: `30s`, `2m`).
pub const VISIBILITY_ENV: &str = "TROUPE_VISIBILITY_TIMEOUT";

/// Transport URL query parameter that sets the visibility window.
pub const VISIBILITY_PARAM: &str = "visibility_timeout";

/// Settings every broker transport needs besides its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Queue namespace: actor queues are `asya-{namespace}-{actor}` (protocol.md §4).
    pub namespace: String,
    /// This consumer's name (Redis consumer, logs): the pod name, or host + pid.
    pub consumer_name: String,
    /// How long a received, unacked message stays invisible before redelivery (SQS
    /// visibility, NATS AckWait, Redis reclaim idle time, Pub/Sub ack deadline) unless
    /// its holder extends it ([`Transport::extend`]): how soon a dead consumer's messages
    /// come back. Default [`DEFAULT_VISIBILITY`]; `TROUPE_VISIBILITY_TIMEOUT` or the
    /// transport URL's `visibility_timeout=` change it.
    pub visibility_timeout: Duration,
    /// Messages a consumer may hold unacked (AMQP prefetch); at least the concurrency.
    pub prefetch: u16,
    /// Deliveries after which a message goes to the dead-letter queue instead (3).
    pub max_deliveries: u32,
}

impl ConnectOptions {
    /// Defaults for `namespace`: visibility [`DEFAULT_VISIBILITY`] (30 s), prefetch 1,
    /// 3 deliveries, consumer `{hostname}-{pid}`.
    pub fn new(namespace: impl Into<String>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "troupe".to_owned());
        ConnectOptions {
            namespace: namespace.into(),
            consumer_name: format!("{host}-{}", std::process::id()),
            visibility_timeout: DEFAULT_VISIBILITY,
            prefetch: 1,
            max_deliveries: 3,
        }
    }
}

/// `scheme://user:***@host/...`: a URL safe to print (the password is masked).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact_url("nats://user@h:4222"), "nats://user@h:4222");
        assert_eq!(redact_url("sqs://us-east-1"), "sqs://us-east-1");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("amqp://u:p@ss@h/v"),
            "amqp://u:***@h/v",
            "the last @ ends the user info"
        );
    }
}

/// Transport-specific handle that identifies one delivery for ack/nack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryHandle {
    /// Numeric handle (embedded sequence, AMQP delivery tag).
    Seq(u64),
    /// Opaque token (SQS receipt handle, Pub/Sub ack id, stream entry id).
    Token(String),
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Queue it was received from.
    pub queue: Arc<str>,
    /// Exactly the bytes that were sent (the envelope JSON).
    pub body: Bytes,
    /// Handle for [`Transport::ack`] / [`Transport::nack`].
    pub handle: DeliveryHandle,
    /// How many times this message has been delivered, this one included, when known.
    pub delivery_count: Option<u32>,
}

/// A send handed to the broker whose durability is not confirmed yet: it resolves once
/// the message is durable (the same point at which [`Transport::send`] returns), or
/// with the error `send` would have returned. Await it before acking the input.
pub type PendingSend = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'static>>;

/// A [`PendingSend`] that is already durable.
pub fn durable() -> PendingSend {
    Box::pin(std::future::ready(Ok(())))
}

/// Queue depth, as the autoscaler and `troupe status` see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Receivable now.
    pub ready: u64,
    /// Sent with a delay that has not elapsed yet.
    pub delayed: u64,
    /// Received and not yet acked.
    pub in_flight: u64,
}

impl QueueDepth {
    /// Messages that still need a consumer: ready plus in flight (KEDA's queue length).
    pub fn backlog(&self) -> u64 {
        self.ready + self.in_flight
    }
}

/// A queue backend.
///
/// Semantics every implementation must keep:
/// - **Durability**: `send` and `send_with_delay` return only once the message is
///   accepted durably (a broker confirm, or written to the OS for the embedded store).
///   A message whose send returned survives a crash of the sending process.
/// - **At-least-once**: a delivery that is neither acked nor nacked becomes receivable
///   again (visibility timeout, consumer death, process restart).
/// - **Cancel safety**: dropping a pending `receive` future loses no message.
/// - **Delays**: a message sent with delay `d` is not receivable before `now + d`.
/// - Bodies are opaque bytes; transports never rewrite them.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Short name for logs and metrics (`embedded`, `rabbitmq`, ...).
    fn kind(&self) -> &'static str;

    /// Queue name for an actor in this transport's naming scheme (protocol.md §4).
    fn queue_name(&self, actor: &str) -> String;

    /// Waits for the next message on `queue`. Cancel-safe.
    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError>;

    /// Sends `body` to `queue`; returns once it is durable.
    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError>;

    /// Hands `body` to the broker for `queue` without waiting for it to become durable;
    /// the returned [`PendingSend`] resolves when it is. Sends from one caller keep their
    /// order on the queue. A broker with asynchronous confirms (RabbitMQ) lets the
    /// sidecar start the next message while confirms are in flight; the default is
    /// [`Transport::send`], durable on return.
    async fn send_pipelined(
        &self,
        queue: &str,
        body: Bytes,
    ) -> Result<PendingSend, TransportError> {
        self.send(queue, body).await?;
        Ok(durable())
    }

    /// Sends `body` to `queue`, receivable no earlier than `now + delay`.
    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError>;

    /// Removes a delivered message for good.
    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError>;

    /// Gives a delivery back; receivable again after `delay` (zero: at once).
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError>;

    /// Gives a delivery back for immediate redelivery (`nack` with zero delay).
    async fn requeue(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.nack(delivery, Duration::ZERO).await
    }

    /// How often a holder of a delivery must call [`Transport::extend`] so that it is
    /// not redelivered while its handler still runs (a third of the visibility window).
    /// `None`: the transport keeps a delivery for as long as its consumer lives (AMQP,
    /// the embedded queue), and `extend` does nothing.
    fn extend_every(&self) -> Option<Duration> {
        None
    }

    /// Keeps `delivery` invisible to other consumers for a full visibility window from
    /// now (NATS in-progress ack, Redis `XCLAIM … JUSTID` by its owner, SQS
    /// `ChangeMessageVisibility`, Pub/Sub `modifyAckDeadline`).
    /// [`TransportError::UnknownDelivery`]: it is no longer this consumer's (acked, or
    /// its window passed and another consumer took it). Use [`lease::Lease`] rather
    /// than calling this by hand.
    async fn extend(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let _ = delivery;
        Ok(())
    }

    /// Creates `queue` and whatever the broker needs to route messages to it (bindings,
    /// stream subjects, subscriptions). Idempotent: an existing queue is left as it is.
    async fn create_queue(&self, queue: &str) -> Result<(), TransportError>;

    /// Deletes `queue` and the messages in it (and its bindings / subscription). A queue
    /// that does not exist is not an error.
    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError>;

    /// Current depth of `queue`.
    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError>;

    /// Changes how many unacked messages the consumer of `queue` may hold (AMQP
    /// prefetch) from now on; a consumer started later uses it too. Transports without
    /// a prefetch window ignore it.
    async fn set_prefetch(&self, queue: &str, prefetch: u16) {
        let _ = (queue, prefetch);
    }

    /// Whether [`Transport::depth`] sees messages other processes sent (`ready`). A
    /// transport that cannot count the backlog (Pub/Sub's data plane has no count)
    /// answers `false`, and an autoscaler must then keep at least one consumer running.
    fn counts_backlog(&self) -> bool {
        true
    }

    /// Event-driven arrival notifications, when the transport can offer them: the
    /// receiver yields a queue name each time a message becomes receivable there.
    /// `None` means callers must poll [`Transport::depth`].
    fn arrivals(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<str>>> {
        None
    }

    /// Flushes and releases resources; later calls fail with [`TransportError::Closed`].
    async fn close(&self);
}
