//! RabbitMQ transport (AMQP 0-9-1 via `lapin`), wire-compatible with Asya's sidecar
//! (platform.md §1.2).
//!
//! - **Entities**: durable topic exchange `asya` (configurable); durable, non-exclusive
//!   queues `asya-{ns}-{actor}` without arguments (as Asya's sidecar declares them),
//!   bound with key `{actor}`, declared and bound on first use and cached per
//!   connection. A declare that fails with `PRECONDITION_FAILED` (the platform created
//!   the entity with other arguments) falls back to a passive declare.
//! - **Send**: `basic.publish` to the exchange with key `{actor}`, persistent,
//!   `content_type: application/json`, mandatory; `send` returns only after the
//!   broker's publisher confirm (a nack or a return is an error). `send_pipelined`
//!   publishes at once and hands back the confirm, so the sidecar can run the next
//!   message while the broker makes this one durable.
//! - **Receive**: one consumer (own channel, prefetch = `ConnectOptions::prefetch`) per
//!   queue; dropping a pending `receive` loses nothing, deliveries wait in the
//!   consumer's buffer.
//! - **Delivery counting**: classic queues do not count deliveries, so a requeue
//!   republishes the body unchanged with header `x-troupe-delivery-count` = deliveries
//!   so far and then acks the original. The count of a delivery is that header + 1,
//!   plus one if the broker flags it redelivered (consumer death, a requeue by an Asya
//!   peer) or a quorum queue's `x-delivery-count`.
//! - **DLQ**: a requeue of a delivery whose count reached `max_deliveries` publishes it
//!   to exchange `asya-dlx` (durable topic) with key `{actor}` instead, where queue
//!   `asya-{ns}-{actor}-dlq` is bound, then acks the original.
//! - **Delays** (`send_with_delay`, `nack(d > 0)`): per-delay wait queues
//!   `asya-{ns}-{actor}.delay.{s}` with a message TTL that dead-letters back into the
//!   exchange with key `{actor}` (no plugin).
//! - **Robustness**: the dial is retried (default 5 tries, 1 s doubling, cap 30 s);
//!   connections and channels are re-created lazily after a broker restart; consumer
//!   setup is retried `ASYA_QUEUE_RETRY_MAX_ATTEMPTS` times. One WARN per outage.
//! - **Depth**: `ready` from a passive declare, `in_flight` = deliveries this instance
//!   handed out and has not settled, `delayed` = messages in the wait queues this
//!   instance used for the queue.

mod naming;
mod provision;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ErrorKind, ExchangeKind,
};
use tokio::time::Instant;
use troupe_transport::{
    redact_url, ConnectOptions, Delivery, DeliveryHandle, PendingSend, QueueDepth, Transport,
    TransportError,
};

pub use naming::{
    actor_queue_args, backoff, dead_letter_queue_name, delay_queue_args, delay_queue_name,
    delay_seconds, delivery_count, normalize_url, parse_duration, queue_name, routing_key,
    url_from_env, validate_url, DEAD_LETTER_EXCHANGE, DEFAULT_EXCHANGE, DEFAULT_MAX_MESSAGE_SIZE,
    DELIVERY_COUNT_HEADER,
};

const KIND: &str = "rabbitmq";

/// Longest wait for the broker's `connection.close-ok`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Retry and limit settings; [`RabbitMqSettings::default`] follows platform.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitMqSettings {
    /// Dial attempts before a call fails with [`TransportError::Unavailable`] (5).
    pub dial_attempts: u32,
    /// First wait between dial attempts, doubling up to 30 s (1 s).
    pub dial_backoff: Duration,
    /// How long one dial may take (10 s).
    pub connect_timeout: Duration,
    /// Consumer setup attempts (`ASYA_QUEUE_RETRY_MAX_ATTEMPTS`, 10).
    pub queue_retry_attempts: u32,
    /// First wait between consumer setup attempts, doubling up to 30 s
    /// (`ASYA_QUEUE_RETRY_BACKOFF`, 1 s).
    pub queue_retry_backoff: Duration,
    /// Largest body sent; the broker's `max_message_size` (128 MiB unless configured).
    /// A smaller broker limit is learnt from its first refusal.
    pub max_message_size: usize,
    /// Longest wait for a publisher confirm (30 s).
    pub confirm_timeout: Duration,
}

impl Default for RabbitMqSettings {
    fn default() -> Self {
        RabbitMqSettings {
            dial_attempts: 5,
            dial_backoff: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            queue_retry_attempts: 10,
            queue_retry_backoff: Duration::from_secs(1),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            confirm_timeout: Duration::from_secs(30),
        }
    }
}

impl RabbitMqSettings {
    /// Defaults overridden by `ASYA_QUEUE_RETRY_MAX_ATTEMPTS` and
    /// `ASYA_QUEUE_RETRY_BACKOFF` (a Go duration such as `1s`); `get` reads a variable.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, TransportError> {
        let mut s = RabbitMqSettings::default();
        if let Some(v) = get("ASYA_QUEUE_RETRY_MAX_ATTEMPTS").filter(|v| !v.trim().is_empty()) {
            s.queue_retry_attempts =
                v.trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| TransportError::Config {
                        kind: KIND,
                        message: format!(
                            "ASYA_QUEUE_RETRY_MAX_ATTEMPTS must be a positive integer, not '{v}'"
                        ),
                    })?;
        }
        if let Some(v) = get("ASYA_QUEUE_RETRY_BACKOFF").filter(|v| !v.trim().is_empty()) {
            s.queue_retry_backoff = parse_duration(&v).ok_or_else(|| TransportError::Config {
                kind: KIND,
                message: format!(
                    "ASYA_QUEUE_RETRY_BACKOFF must be a duration such as 1s or 500ms, not '{v}'"
                ),
            })?;
        }
        Ok(s)
    }
}

/// Connects with [`RabbitMqSettings::default`]: `url` is
/// `amqp://user:pass@host:port/vhost`, `exchange` the topic exchange (`asya`).
pub async fn connect(
    url: &str,
    exchange: &str,
    options: ConnectOptions,
) -> Result<RabbitMqTransport, TransportError> {
    RabbitMqTransport::connect_with(url, exchange, options, RabbitMqSettings::default()).await
}

/// A delivery handed out and not yet settled.
struct InFlight {
    queue: Arc<str>,
    acker: Acker,
    count: u32,
    properties: BasicProperties,
}

/// A consumer on one queue, on its own channel.
struct QueueConsumer {
    channel: Channel,
    consumer: Consumer,
}

/// The connection and what was declared on it; reset when the connection is lost.
#[derive(Default)]
struct ConnState {
    conn: Option<Arc<Connection>>,
    publish: Option<Channel>,
    admin: Option<Channel>,
    exchange_ready: bool,
    dlx_ready: bool,
    queues: HashSet<String>,
    dead_letter_queues: HashSet<String>,
    wait_queues: HashMap<String, Instant>,
}

/// Outcome of a confirmed publish.
enum Published {
    Stored,
    /// The broker returned it: no queue is bound for its routing key.
    Unroutable,
}

struct Inner {
    url: String,
    redacted: String,
    exchange: String,
    options: ConnectOptions,
    settings: RabbitMqSettings,
    max_message_size: AtomicUsize,
    state: tokio::sync::Mutex<ConnState>,
    consumers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<QueueConsumer>>>>>,
    /// Prefetch per queue set by `set_prefetch`.
    prefetch: Mutex<HashMap<String, u16>>,
    /// The channel of each queue's current consumer, for `set_prefetch`.
    consumer_channels: Mutex<HashMap<String, Channel>>,
    in_flight: Mutex<HashMap<u64, InFlight>>,
    /// Seconds of the wait queues used per queue, for `depth().delayed`.
    delays: Mutex<HashMap<String, BTreeSet<u64>>>,
    next_handle: AtomicU64,
    outage: AtomicBool,
    closed: AtomicBool,
}

/// The RabbitMQ transport. Cheap to share behind an `Arc`; one AMQP connection.
pub struct RabbitMqTransport {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The AMQP reply code of a broker error, if it is one.
fn amqp_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}

/// Errors after which a fresh connection or channel may succeed.
fn is_connection_error(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IOError(_)
            | ErrorKind::InvalidChannelState(..)
            | ErrorKind::InvalidConnectionState(_)
            | ErrorKind::InvalidChannel(_)
            | ErrorKind::MissingHeartbeatError
    ) || e.is_amqp_hard_error()
        // CONNECTION_FORCED / channel closed under us by a broker shutdown.
        || matches!(amqp_code(e), Some(320))
}

impl RabbitMqTransport {
    /// Connects with explicit [`RabbitMqSettings`]; see [`connect`].
    pub async fn connect_with(
        url: &str,
        exchange: &str,
        options: ConnectOptions,
        settings: RabbitMqSettings,
    ) -> Result<RabbitMqTransport, TransportError> {
        let url = &normalize_url(url);
        validate_url(url)?;
        if exchange.is_empty() {
            return Err(TransportError::Config {
                kind: KIND,
                message: "the exchange name (ASYA_RABBITMQ_EXCHANGE) must not be empty".into(),
            });
        }
        let inner = Arc::new(Inner {
            url: url.to_owned(),
            redacted: redact_url(url),
            exchange: exchange.to_owned(),
            max_message_size: AtomicUsize::new(settings.max_message_size),
            options,
            settings,
            state: tokio::sync::Mutex::new(ConnState::default()),
            consumers: Mutex::new(HashMap::new()),
            prefetch: Mutex::new(HashMap::new()),
            consumer_channels: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            delays: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            outage: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        {
            let mut st = inner.state.lock().await;
            inner.ensure_exchange(&mut st).await?;
        }
        tracing::debug!(url = %inner.redacted, exchange, "connected to RabbitMQ");
        Ok(RabbitMqTransport { inner })
    }

    /// The broker URL with the password masked.
    pub fn redacted_url(&self) -> &str {
        &self.inner.redacted
    }

    /// The current message size limit (the configured one, or the broker's once learnt).
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    fn io(&self, queue: &str, what: &str, e: &lapin::Error) -> TransportError {
        if self.closed.load(Ordering::Acquire) {
            return TransportError::Closed;
        }
        TransportError::Io {
            queue: queue.to_owned(),
            message: format!(
                "{what} on the RabbitMQ broker at {} failed: {e}",
                self.redacted
            ),
        }
    }

    /// Logs the first failure of an outage at WARN, the rest at DEBUG.
    fn note_outage(&self, error: &dyn std::fmt::Display) {
        if !self.outage.swap(true, Ordering::AcqRel) {
            tracing::warn!(url = %self.redacted, error = %error, "RabbitMQ connection lost; reconnecting with backoff");
        } else {
            tracing::debug!(url = %self.redacted, error = %error, "RabbitMQ still unreachable");
        }
    }

    fn dial_error(&self, e: &lapin::Error) -> TransportError {
        let text = e.to_string();
        let code = amqp_code(e);
        if code == Some(403) || text.contains("ACCESS_REFUSED") || text.contains("authentication") {
            TransportError::Auth {
                kind: KIND,
                url: self.redacted.clone(),
                message: text,
            }
        } else if code == Some(530) || text.contains("NOT_ALLOWED") {
            TransportError::Config {
                kind: KIND,
                message: format!(
                    "the RabbitMQ broker at {} refused the virtual host: {text}; check the vhost in the URL and the user's permissions",
                    self.redacted
                ),
            }
        } else {
            TransportError::Unavailable {
                kind: KIND,
                url: self.redacted.clone(),
                message: text,
            }
        }
    }

    /// Dials with retries; credentials and vhost refusals are not retried.
    async fn dial(&self) -> Result<Connection, TransportError> {
        let attempts = self.settings.dial_attempts.max(1);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(self.settings.dial_backoff, attempt - 1)).await;
            }
            self.check_open()?;
            let props = ConnectionProperties::default()
                .with_connection_name(self.options.consumer_name.clone().into());
            let err = match tokio::time::timeout(
                self.settings.connect_timeout,
                Connection::connect(&self.url, props),
            )
            .await
            {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => self.dial_error(&e),
                Err(_) => TransportError::Unavailable {
                    kind: KIND,
                    url: self.redacted.clone(),
                    message: format!("no connection within {:?}", self.settings.connect_timeout),
                },
            };
            if !matches!(err, TransportError::Unavailable { .. }) {
                return Err(err);
            }
            self.note_outage(&err);
            last = Some(err);
        }
        Err(last.unwrap_or(TransportError::Closed))
    }

    /// The live connection, dialled anew (and every cache reset) if it was lost.
    async fn connection(&self, st: &mut ConnState) -> Result<Arc<Connection>, TransportError> {
        self.check_open()?;
        if let Some(c) = &st.conn {
            if c.status().connected() {
                return Ok(c.clone());
            }
            self.note_outage(&"the connection closed");
        }
        *st = ConnState::default();
        let conn = Arc::new(self.dial().await?);
        st.conn = Some(conn.clone());
        if self.outage.swap(false, Ordering::AcqRel) {
            tracing::info!(url = %self.redacted, "reconnected to RabbitMQ");
        }
        Ok(conn)
    }

    /// The channel for declarations; re-created after the broker closed it.
    async fn admin(&self, st: &mut ConnState) -> Result<Channel, TransportError> {
        self.channel(st, |s| &mut s.admin, false).await
    }

    /// The publisher-confirm channel; re-created after the broker closed it.
    async fn publisher(&self, st: &mut ConnState) -> Result<Channel, TransportError> {
        self.channel(st, |s| &mut s.publish, true).await
    }

    /// The channel kept in `slot` of the state while it stays open; otherwise a new one,
    /// in confirm mode when `confirms`.
    async fn channel(
        &self,
        st: &mut ConnState,
        slot: fn(&mut ConnState) -> &mut Option<Channel>,
        confirms: bool,
    ) -> Result<Channel, TransportError> {
        let conn = self.connection(st).await?;
        if let Some(ch) = slot(st) {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| self.io("", "opening a channel", &e))?;
        if confirms {
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.io("", "enabling publisher confirms", &e))?;
        }
        *slot(st) = Some(ch.clone());
        Ok(ch)
    }

    /// Declares a durable exchange; one that exists with another type is used as is.
    async fn declare_exchange(&self, st: &mut ConnState, name: &str) -> Result<(), TransportError> {
        let ch = self.admin(st).await?;
        let opts = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        match ch
            .exchange_declare(
                name.into(),
                ExchangeKind::Topic,
                opts,
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if amqp_code(&e) == Some(406) => {
                tracing::debug!(exchange = name, error = %e, "exchange exists with other settings; using it as is");
                let ch = self.admin(st).await?;
                let passive = ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                };
                ch.exchange_declare(
                    name.into(),
                    ExchangeKind::Topic,
                    passive,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.io("", &format!("declaring exchange '{name}'"), &e))
            }
            Err(e) => Err(self.io("", &format!("declaring exchange '{name}'"), &e)),
        }
    }

    async fn ensure_exchange(&self, st: &mut ConnState) -> Result<(), TransportError> {
        self.connection(st).await?;
        if !st.exchange_ready {
            let exchange = self.exchange.clone();
            self.declare_exchange(st, &exchange).await?;
            st.exchange_ready = true;
        }
        Ok(())
    }

    /// Declares a durable queue with exactly `args`. The outer error: no channel; the
    /// inner one: the broker's answer to the declare.
    async fn declare_queue_exact(
        &self,
        st: &mut ConnState,
        queue: &str,
        args: FieldTable,
    ) -> Result<Result<(), lapin::Error>, TransportError> {
        let ch = self.admin(st).await?;
        let opts = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        Ok(ch.queue_declare(queue.into(), opts, args).await.map(|_| ()))
    }

    /// Declares a durable queue with `args`; if it exists with other arguments (the
    /// platform made it), a passive declare confirms it exists instead.
    async fn declare_queue(
        &self,
        st: &mut ConnState,
        queue: &str,
        args: FieldTable,
    ) -> Result<(), TransportError> {
        match self.declare_queue_exact(st, queue, args).await? {
            Ok(()) => Ok(()),
            Err(e) if amqp_code(&e) == Some(406) => {
                tracing::debug!(queue, error = %e, "queue exists with other arguments; using it as is");
                let ch = self.admin(st).await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                ch.queue_declare(queue.into(), passive, FieldTable::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| self.io(queue, "declaring the queue", &e))
            }
            Err(e) => Err(self.io(queue, "declaring the queue", &e)),
        }
    }

    /// Declares `queue` and binds it to the exchange with its actor key, once per
    /// connection.
    async fn ensure_queue(&self, st: &mut ConnState, queue: &str) -> Result<(), TransportError> {
        self.ensure_exchange(st).await?;
        if st.queues.contains(queue) {
            return Ok(());
        }
        self.declare_queue(st, queue, actor_queue_args()).await?;
        self.bind_queue(st, queue).await
    }

    /// Binds `queue` to the exchange with its actor key and notes it as declared.
    async fn bind_queue(&self, st: &mut ConnState, queue: &str) -> Result<(), TransportError> {
        let ch = self.admin(st).await?;
        let key = routing_key(&self.options.namespace, queue);
        ch.queue_bind(
            queue.into(),
            self.exchange.as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| self.io(queue, "binding the queue", &e))?;
        st.queues.insert(queue.to_owned());
        Ok(())
    }

    /// Declares the wait queue for `seconds` on `queue`, unless a recent declaration
    /// still keeps it alive long enough.
    async fn ensure_wait_queue(
        &self,
        st: &mut ConnState,
        queue: &str,
        seconds: u64,
    ) -> Result<String, TransportError> {
        let name = delay_queue_name(queue, seconds);
        let fresh = st
            .wait_queues
            .get(&name)
            .is_some_and(|at| at.elapsed() < naming::delay_queue_redeclare_after(seconds));
        if !fresh {
            let actor = routing_key(&self.options.namespace, queue);
            let args = delay_queue_args(&self.exchange, actor, seconds);
            self.declare_queue(st, &name, args).await?;
            st.wait_queues.insert(name.clone(), Instant::now());
        }
        lock(&self.delays)
            .entry(queue.to_owned())
            .or_default()
            .insert(seconds);
        Ok(name)
    }

    /// Declares `asya-dlx` and the queue's DLQ, bound with the actor key.
    async fn ensure_dead_letter_queue(
        &self,
        st: &mut ConnState,
        queue: &str,
    ) -> Result<(), TransportError> {
        self.connection(st).await?;
        if !st.dlx_ready {
            self.declare_exchange(st, DEAD_LETTER_EXCHANGE).await?;
            st.dlx_ready = true;
        }
        let dlq = dead_letter_queue_name(queue);
        if st.dead_letter_queues.contains(&dlq) {
            return Ok(());
        }
        self.declare_queue(st, &dlq, FieldTable::default()).await?;
        let ch = self.admin(st).await?;
        let key = routing_key(&self.options.namespace, queue);
        ch.queue_bind(
            dlq.as_str().into(),
            DEAD_LETTER_EXCHANGE.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| self.io(&dlq, "binding the dead-letter queue", &e))?;
        st.dead_letter_queues.insert(dlq);
        Ok(())
    }

    fn no_confirm(&self, queue: &str) -> TransportError {
        TransportError::Io {
            queue: queue.to_owned(),
            message: format!(
                "no publisher confirm from the RabbitMQ broker at {} within {:?}",
                self.redacted, self.settings.confirm_timeout
            ),
        }
    }

    fn refused(&self, queue: &str) -> TransportError {
        TransportError::Io {
            queue: queue.to_owned(),
            message: format!(
                "the RabbitMQ broker at {} refused the message (publisher nack); check its disk and memory alarms",
                self.redacted
            ),
        }
    }

    fn check_size(&self, queue: &str, size: usize) -> Result<(), TransportError> {
        let limit = self.max_message_size.load(Ordering::Relaxed);
        if size > limit {
            return Err(TransportError::TooLarge {
                queue: queue.to_owned(),
                size,
                limit,
            });
        }
        Ok(())
    }

    /// Publishes and waits for the broker's confirm. Retries once on a lost connection
    /// or channel (the message may then be stored twice: at-least-once).
    async fn publish(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<Published, TransportError> {
        self.check_size(queue, body.len())?;
        let mut retried = false;
        loop {
            let ch = {
                let mut st = self.state.lock().await;
                self.publisher(&mut st).await?
            };
            let opts = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            let result = match ch
                .basic_publish(exchange.into(), key.into(), opts, body, props.clone())
                .await
            {
                Ok(confirm) => {
                    let wait = self.settings.confirm_timeout;
                    match tokio::time::timeout(wait, confirm).await {
                        Ok(r) => r,
                        Err(_) => return Err(self.no_confirm(queue)),
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(Confirmation::Ack(None)) => return Ok(Published::Stored),
                Ok(Confirmation::Ack(Some(_))) => return Ok(Published::Unroutable),
                Ok(Confirmation::Nack(_)) => return Err(self.refused(queue)),
                Ok(Confirmation::NotRequested) => {
                    return Err(TransportError::Io {
                        queue: queue.to_owned(),
                        message: "publisher confirms are not enabled on the channel".into(),
                    })
                }
                Err(e) => {
                    if let Some((size, limit)) = naming::parse_size_refusal(&e.to_string()) {
                        if size == body.len() {
                            self.max_message_size.fetch_min(limit, Ordering::Relaxed);
                            return Err(TransportError::TooLarge {
                                queue: queue.to_owned(),
                                size,
                                limit,
                            });
                        }
                    }
                    let retryable = is_connection_error(&e)
                        || naming::parse_size_refusal(&e.to_string()).is_some();
                    if retried || !retryable {
                        return Err(self.io(queue, "publishing", &e));
                    }
                    tracing::debug!(queue, error = %e, "publish failed; retrying on a new channel");
                    retried = true;
                }
            }
        }
    }

    /// Publishes to `queue` through the exchange with its actor key.
    async fn send_to_queue(
        &self,
        queue: &str,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<(), TransportError> {
        self.check_size(queue, body.len())?;
        for _ in 0..2 {
            {
                let mut st = self.state.lock().await;
                self.ensure_queue(&mut st, queue).await?;
            }
            let key = routing_key(&self.options.namespace, queue);
            match self
                .publish(queue, &self.exchange, key, body, props)
                .await?
            {
                Published::Stored => return Ok(()),
                // Deleted since we declared it: declare again and resend.
                Published::Unroutable => {
                    self.state.lock().await.queues.remove(queue);
                }
            }
        }
        Err(TransportError::NoSuchQueue(queue.to_owned()))
    }

    /// Publishes to `queue` without waiting for the confirm. `None` when the publish
    /// could not be handed to a channel (the caller then takes the confirmed path, which
    /// retries and names the error).
    async fn publish_unconfirmed(
        &self,
        queue: &str,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<Option<lapin::PublisherConfirm>, TransportError> {
        self.check_size(queue, body.len())?;
        let ch = {
            let mut st = self.state.lock().await;
            self.ensure_queue(&mut st, queue).await?;
            self.publisher(&mut st).await?
        };
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let key = routing_key(&self.options.namespace, queue);
        Ok(ch
            .basic_publish(
                self.exchange.as_str().into(),
                key.into(),
                opts,
                body,
                props.clone(),
            )
            .await
            .ok())
    }

    /// Publishes to the wait queue for `seconds`, from which it dead-letters into
    /// `queue`.
    async fn send_delayed(
        &self,
        queue: &str,
        seconds: u64,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<(), TransportError> {
        self.check_size(queue, body.len())?;
        for _ in 0..2 {
            let wait = {
                let mut st = self.state.lock().await;
                self.ensure_queue(&mut st, queue).await?;
                self.ensure_wait_queue(&mut st, queue, seconds).await?
            };
            match self.publish(queue, "", &wait, body, props).await? {
                Published::Stored => return Ok(()),
                Published::Unroutable => {
                    self.state.lock().await.wait_queues.remove(&wait);
                }
            }
        }
        Err(TransportError::NoSuchQueue(delay_queue_name(
            queue, seconds,
        )))
    }

    /// Publishes straight into `queue` (default exchange), for requeues.
    async fn requeue_to(
        &self,
        queue: &str,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<(), TransportError> {
        for _ in 0..2 {
            match self.publish(queue, "", queue, body, props).await? {
                Published::Stored => return Ok(()),
                Published::Unroutable => {
                    let mut st = self.state.lock().await;
                    st.queues.remove(queue);
                    self.ensure_queue(&mut st, queue).await?;
                }
            }
        }
        Err(TransportError::NoSuchQueue(queue.to_owned()))
    }

    async fn dead_letter(
        &self,
        queue: &str,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<(), TransportError> {
        for _ in 0..2 {
            {
                let mut st = self.state.lock().await;
                self.ensure_dead_letter_queue(&mut st, queue).await?;
            }
            let key = routing_key(&self.options.namespace, queue);
            match self
                .publish(queue, DEAD_LETTER_EXCHANGE, key, body, props)
                .await?
            {
                Published::Stored => return Ok(()),
                Published::Unroutable => {
                    let mut st = self.state.lock().await;
                    st.dead_letter_queues.remove(&dead_letter_queue_name(queue));
                }
            }
        }
        Err(TransportError::NoSuchQueue(dead_letter_queue_name(queue)))
    }

    /// The prefetch for `queue`'s consumer: set by `set_prefetch`, else the options'.
    fn prefetch_of(&self, queue: &str) -> u16 {
        lock(&self.prefetch)
            .get(queue)
            .copied()
            .unwrap_or(self.options.prefetch)
            .max(1)
    }

    async fn set_prefetch(&self, queue: &str, prefetch: u16) {
        let prefetch = prefetch.max(1);
        lock(&self.prefetch).insert(queue.to_owned(), prefetch);
        // Not through the consumer slot: a pending `receive` holds it.
        let channel = lock(&self.consumer_channels).get(queue).cloned();
        if let Some(channel) = channel.filter(|c| c.status().connected()) {
            // A failure leaves the old limit; the next consumer starts with the new one.
            if let Err(e) = channel
                .basic_qos(prefetch, BasicQosOptions { global: true })
                .await
            {
                tracing::debug!(queue, error = %e, "changing the prefetch failed");
            }
        }
    }

    fn consumer_slot(&self, queue: &str) -> Arc<tokio::sync::Mutex<Option<QueueConsumer>>> {
        lock(&self.consumers)
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    /// Opens a consumer on `queue`: its own channel with the prefetch, after declaring
    /// the queue. Broker refusals are retried with backoff; a failed dial is returned.
    async fn start_consumer(&self, queue: &str) -> Result<QueueConsumer, TransportError> {
        let attempts = self.settings.queue_retry_attempts.max(1);
        let mut attempt = 0;
        loop {
            let result = async {
                let conn = {
                    let mut st = self.state.lock().await;
                    self.ensure_queue(&mut st, queue).await?;
                    self.connection(&mut st).await?
                };
                let channel = conn
                    .create_channel()
                    .await
                    .map_err(|e| self.io(queue, "opening a consumer channel", &e))?;
                lock(&self.consumer_channels).insert(queue.to_owned(), channel.clone());
                // Channel-wide ("global") so that `set_prefetch` can change it later:
                // RabbitMQ fixes a per-consumer prefetch when the consumer starts. Each
                // consumer has its own channel, so the two mean the same limit.
                channel
                    .basic_qos(self.prefetch_of(queue), BasicQosOptions { global: true })
                    .await
                    .map_err(|e| self.io(queue, "setting the prefetch", &e))?;
                let consumer = channel
                    .basic_consume(
                        queue.into(),
                        "".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| {
                        if amqp_code(&e) == Some(404) {
                            TransportError::NoSuchQueue(queue.to_owned())
                        } else {
                            self.io(queue, "starting the consumer", &e)
                        }
                    })?;
                Ok::<_, TransportError>(QueueConsumer { channel, consumer })
            }
            .await;
            match result {
                Ok(c) => return Ok(c),
                Err(
                    e @ (TransportError::Closed
                    | TransportError::Auth { .. }
                    | TransportError::Config { .. }
                    | TransportError::Unavailable { .. }),
                ) => return Err(e),
                Err(e) => {
                    if let TransportError::NoSuchQueue(_) = e {
                        // Deleted under our cache: declare it again next time.
                        self.state.lock().await.queues.remove(queue);
                    }
                    attempt += 1;
                    if attempt >= attempts {
                        return Err(e);
                    }
                    let wait = backoff(self.settings.queue_retry_backoff, attempt - 1);
                    tracing::warn!(queue, attempt, error = %e, retry_in = ?wait, "consumer setup failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn hand_out(&self, queue: &str, d: lapin::message::Delivery) -> Delivery {
        let count = delivery_count(&d.properties, d.redelivered);
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let queue: Arc<str> = Arc::from(queue);
        lock(&self.in_flight).insert(
            id,
            InFlight {
                queue: queue.clone(),
                acker: d.acker,
                count,
                properties: d.properties,
            },
        );
        Delivery {
            queue,
            body: Bytes::from(d.data),
            handle: DeliveryHandle::Seq(id),
            delivery_count: Some(count),
        }
    }

    fn take_in_flight(&self, d: &Delivery) -> Result<InFlight, TransportError> {
        let unknown = || TransportError::UnknownDelivery(d.queue.to_string());
        let DeliveryHandle::Seq(id) = d.handle else {
            return Err(unknown());
        };
        let mut map = lock(&self.in_flight);
        match map.get(&id) {
            Some(f) if *f.queue == *d.queue => map.remove(&id).ok_or_else(unknown),
            _ => Err(unknown()),
        }
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        self.check_open()?;
        let slot = self.consumer_slot(queue);
        let mut guard = slot.lock().await;
        let mut failures = 0u32;
        loop {
            self.check_open()?;
            if guard
                .as_ref()
                .is_some_and(|c| !c.channel.status().connected())
            {
                *guard = None;
            }
            if guard.is_none() {
                *guard = Some(self.start_consumer(queue).await?);
            }
            let Some(c) = guard.as_mut() else {
                continue;
            };
            // Cancel safety: a delivery stays in the consumer's buffer until `next`
            // returns it, and nothing below awaits before it is handed out.
            let next = c.consumer.next().await;
            match next {
                Some(Ok(d)) => return Ok(self.hand_out(queue, d)),
                Some(Err(e)) => {
                    *guard = None;
                    self.check_open()?;
                    self.note_outage(&e);
                }
                None => {
                    *guard = None;
                    self.check_open()?;
                    tracing::debug!(
                        queue,
                        "consumer ended (channel closed or cancelled); restarting it"
                    );
                }
            }
            failures += 1;
            if failures > 1 {
                tokio::time::sleep(backoff(Duration::from_millis(200), failures - 2)).await;
            }
        }
    }

    async fn ack(&self, d: &Delivery) -> Result<(), TransportError> {
        self.check_open()?;
        let f = self.take_in_flight(d)?;
        match f.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            // The channel died: the broker will redeliver it.
            Ok(false) => Err(TransportError::UnknownDelivery(d.queue.to_string())),
            Err(e) => Err(self.io(&d.queue, "acking", &e)),
        }
    }

    async fn nack(&self, d: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.check_open()?;
        let f = self.take_in_flight(d)?;
        if !f.acker.usable() {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        }
        let queue = &*f.queue;
        let props = naming::with_delivery_count(&f.properties, f.count);
        let max = self.options.max_deliveries.max(1);
        let published = if f.count >= max {
            let r = self.dead_letter(queue, &d.body, &props).await;
            if r.is_ok() {
                tracing::warn!(queue, deliveries = f.count, dlq = %dead_letter_queue_name(queue), "message dead-lettered after its last delivery");
            }
            r
        } else if let Some(s) = delay_seconds(delay) {
            self.send_delayed(queue, s, &d.body, &props).await
        } else {
            self.requeue_to(queue, &d.body, &props).await
        };
        match published {
            Ok(()) => {
                if let Err(e) = f.acker.ack(BasicAckOptions::default()).await {
                    // The copy is stored; the original comes back too (a duplicate).
                    tracing::debug!(queue, error = %e, "ack after republish failed");
                }
                Ok(())
            }
            Err(e) => {
                // Hand it back to the broker rather than hold it until the channel
                // closes; its redelivered flag still counts the delivery.
                let _ = f
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
                Err(e)
            }
        }
    }

    /// Messages in `queue` (`None` if it does not exist).
    async fn message_count(
        &self,
        st: &mut ConnState,
        queue: &str,
    ) -> Result<Option<u64>, TransportError> {
        let ch = self.admin(st).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match ch
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => Ok(Some(u64::from(q.message_count()))),
            Err(e) if amqp_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.io(queue, "reading the queue depth", &e)),
        }
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        self.check_open()?;
        let delays: Vec<u64> = lock(&self.delays)
            .get(queue)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut st = self.state.lock().await;
        let ready = self.message_count(&mut st, queue).await?.unwrap_or(0);
        let mut delayed = 0;
        for s in delays {
            match self
                .message_count(&mut st, &delay_queue_name(queue, s))
                .await?
            {
                Some(n) => delayed += n,
                // Expired (x-expires): nothing waits there any more.
                None => {
                    if let Some(set) = lock(&self.delays).get_mut(queue) {
                        set.remove(&s);
                    }
                }
            }
        }
        drop(st);
        let in_flight = lock(&self.in_flight)
            .values()
            .filter(|f| *f.queue == *queue && f.acker.usable())
            .count() as u64;
        Ok(QueueDepth {
            ready,
            delayed,
            in_flight,
        })
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // The channels stay alive until the connection is closed: lapin closes a channel
        // whose last handle is dropped, and one dropped while the connection closes fails
        // ("invalid channel state: Closing") and is logged as a connection ERROR.
        let (conn, channels) = {
            let mut st = self.state.lock().await;
            let mut old = std::mem::take(&mut *st);
            (old.conn.take(), old)
        };
        let in_flight = std::mem::take(&mut *lock(&self.in_flight));
        let consumer_channels = std::mem::take(&mut *lock(&self.consumer_channels));
        let consumers = std::mem::take(&mut *lock(&self.consumers));
        if let Some(conn) = conn {
            // Unacked deliveries go back to their queues when the connection closes. A
            // broker that never answers the close must not hang the caller: dropping
            // the connection closes the socket, with the same effect on the broker.
            match tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "closing".into())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "closing the RabbitMQ connection failed"),
                Err(_) => {
                    tracing::warn!(broker = %self.redacted, "the RabbitMQ broker did not confirm the connection close in {CLOSE_TIMEOUT:?}; dropping the connection")
                }
            }
        }
        drop((channels, in_flight, consumer_channels, consumers));
    }
}

#[async_trait]
impl Transport for RabbitMqTransport {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn queue_name(&self, actor: &str) -> String {
        queue_name(&self.inner.options.namespace, actor)
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        self.inner.receive(queue).await
    }

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.inner.check_open()?;
        self.inner
            .send_to_queue(queue, &body, &naming::new_message_properties())
            .await
    }

    /// Publishes at once and confirms later. Anything but a plain ack (a return because
    /// the queue was deleted, a lost channel, a size refusal) resends through the
    /// confirmed path of [`Transport::send`], which recovers or names the error; a nack or
    /// no confirm in time is an error. A resend may store the message twice
    /// (at-least-once).
    async fn send_pipelined(
        &self,
        queue: &str,
        body: Bytes,
    ) -> Result<PendingSend, TransportError> {
        self.inner.check_open()?;
        let props = naming::new_message_properties();
        let Some(confirm) = self.inner.publish_unconfirmed(queue, &body, &props).await? else {
            self.inner.send_to_queue(queue, &body, &props).await?;
            return Ok(troupe_transport::durable());
        };
        let inner = self.inner.clone();
        let queue = queue.to_owned();
        Ok(Box::pin(async move {
            match tokio::time::timeout(inner.settings.confirm_timeout, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                Ok(Ok(Confirmation::Nack(_))) => Err(inner.refused(&queue)),
                Err(_) => Err(inner.no_confirm(&queue)),
                Ok(_) => inner.send_to_queue(&queue, &body, &props).await,
            }
        }))
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.inner.check_open()?;
        let props = naming::new_message_properties();
        match delay_seconds(delay) {
            Some(s) => self.inner.send_delayed(queue, s, &body, &props).await,
            None => self.inner.send_to_queue(queue, &body, &props).await,
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.inner.ack(delivery).await
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.inner.nack(delivery, delay).await
    }

    async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inner.create_queue(queue).await
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inner.delete_queue(queue).await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        self.inner.depth(queue).await
    }

    async fn set_prefetch(&self, queue: &str, prefetch: u16) {
        self.inner.set_prefetch(queue, prefetch).await;
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
