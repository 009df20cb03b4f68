//! NATS JetStream transport (`nats`, platform.md §1.3).
//!
//! # Layout on the server
//!
//! Per queue `asya-{ns}-{actor}`: a stream of that name (WorkQueue retention, file
//! storage) on subjects `asya-{ns}-{actor}` and `asya-{ns}-{actor}.delayed`, and one
//! durable pull consumer of that name (explicit ack, AckWait = the visibility timeout,
//! brought to it when the consumer exists with another one, unlimited MaxDeliver) shared by every sidecar of the actor. Dead letters go to the
//! queue `asya-{ns}-dlq`, laid out the same way.
//!
//! # Semantics
//!
//! - **send**: publish to the queue subject and wait for the PubAck. Each send carries a
//!   `Nats-Msg-Id`, so a publish retried after a lost PubAck is stored once.
//! - **receive**: a background task per queue pulls one message at a time (see
//!   `troupe_transport::inbox` for why this makes `receive` cancel-safe).
//! - **extend** (a live handler's lease): `+WPI`, which restarts the AckWait.
//! - **ack**: `+ACK`; **requeue**: `-NAK`; **nack(d, delay)**: `-NAK {"delay": ns}`. Each
//!   is sent as a request, so it returns once the server has applied it.
//! - **delays** (deferral, platform.md §1.1): `send_with_delay` publishes to the
//!   `.delayed` subject with header `x-troupe-deliver-at` (RFC 3339 UTC, ms). A consumer
//!   that pulls it early `-NAK`s it with delay = the time left. Once due, it is
//!   republished to the queue subject and the delayed copy acked, so deferral
//!   redeliveries never count as deliveries, and `depth` can tell delayed messages apart
//!   (the stream's message count on the `.delayed` subject).
//! - **delivery count** = JetStream's delivery counter + header `x-troupe-deliveries`
//!   (deliveries before a republish).
//! - **dead letters**: a delivery that fails (requeue or nack) once it has been delivered
//!   `max_deliveries` times, or a message pulled with a count above that, is published
//!   to `asya-{ns}-dlq` with its exact body and then acked. The DLQ never dead-letters.
//! - **outages**: the client reconnects by itself (backoff up to 4 s); requests retry for
//!   up to 10 s; receive retries until the server is back. One WARN per outage.

mod provision;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{ConnectErrorKind, Event, ServerAddr};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::Instant;
use troupe_transport::{
    redact_url, ConnectOptions, Delivery, DeliveryHandle, QueueDepth, Transport, TransportError,
};

use troupe_transport::inbox::Inbox;
use troupe_transport::retry::Backoff;

const KIND: &str = "nats";
/// Header with the time before which a message must not be processed (platform.md §1.1).
pub const DELIVER_AT: &str = "x-troupe-deliver-at";
/// Header with the deliveries a message had before it was republished.
pub const DELIVERIES: &str = "x-troupe-deliveries";
/// Header naming the queue a dead letter came from.
pub const DEAD_LETTERED_FROM: &str = "x-troupe-dead-lettered-from";
/// How long one pull request waits for a message.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// How long a request (publish, ack, stream API) keeps retrying through an outage.
const RETRY_WINDOW: Duration = Duration::from_secs(10);
/// First and longest pause between retries.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Longest pause between reads of a fetch task that keep failing.
const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long to wait for the TCP connection and the server's INFO.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request (PubAck, ack reply, API call) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `asya-{namespace}-{actor}` (protocol.md §4).
pub fn queue_name(namespace: &str, actor: &str) -> String {
    format!("asya-{namespace}-{actor}")
}

/// `asya-{namespace}-dlq`: where messages go after too many deliveries.
pub fn dead_letter_queue(namespace: &str) -> String {
    format!("asya-{namespace}-dlq")
}

/// The subject delayed messages of `queue` are published to (same stream).
pub fn delayed_subject(queue: &str) -> String {
    format!("{queue}.delayed")
}

/// `x-troupe-deliver-at` for a message sent at `now` with `delay`: RFC 3339 UTC with
/// milliseconds, rounded up so that the message is never due early.
pub fn deliver_at(now: OffsetDateTime, delay: Duration) -> String {
    let at = now + delay;
    let ms = at.millisecond();
    let mut at = at
        .replace_nanosecond(u32::from(ms) * 1_000_000)
        .unwrap_or(at);
    if at < now + delay {
        at += Duration::from_millis(1);
    }
    format_deliver_at(at)
}

/// Formats a deliver-at time: `2025-01-02T03:04:05.678Z`.
pub fn format_deliver_at(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Parses a deliver-at header (any RFC 3339 time); `None` if it is not one.
pub fn parse_deliver_at(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.trim(), &Rfc3339).ok()
}

/// Time left until `at`; zero once it has passed.
fn time_left(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::now())
}

/// Server addresses and credentials from `TROUPE_NATS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUrl {
    /// `scheme://host:port` per server, without credentials.
    pub servers: Vec<String>,
    /// User name, with [`NatsUrl::password`].
    pub user: Option<String>,
    /// Password of [`NatsUrl::user`].
    pub password: Option<String>,
    /// Token (`nats://TOKEN@host`: user info without a password).
    pub token: Option<String>,
}

/// Parses `nats://[user:password@|token@]host[:port][,nats://…]`; the error never shows a
/// password.
pub fn parse_url(url: &str) -> Result<NatsUrl, TransportError> {
    let redacted = redact_url(url);
    let bad = |why: String| TransportError::Config {
        kind: KIND,
        message: format!(
            "TROUPE_NATS_URL '{redacted}': {why}; use nats://[user:password@]host:4222"
        ),
    };
    let mut parsed = NatsUrl {
        servers: Vec::new(),
        user: None,
        password: None,
        token: None,
    };
    for part in url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !part.contains("://") {
            return Err(bad("the URL needs a scheme".into()));
        }
        let addr: ServerAddr = part
            .parse()
            .map_err(|e: std::io::Error| bad(redact_error(&e.to_string(), url)))?;
        if addr.is_websocket() {
            return Err(bad("websocket URLs are not supported".into()));
        }
        match (addr.username(), addr.password()) {
            (Some(u), Some(p)) => {
                parsed.user = Some(u.to_owned());
                parsed.password = Some(p.to_owned());
            }
            (Some(t), None) => parsed.token = Some(t.to_owned()),
            _ => {}
        }
        let host = addr.host();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        parsed
            .servers
            .push(format!("{}://{host}:{}", addr.scheme(), addr.port()));
    }
    if parsed.servers.is_empty() {
        return Err(bad("no server given".into()));
    }
    Ok(parsed)
}

/// Removes any password of `url` that an error message may quote.
fn redact_error(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    for part in url.split(',') {
        let password = part
            .trim()
            .parse::<ServerAddr>()
            .ok()
            .and_then(|a| a.password().map(str::to_owned));
        if let Some(pw) = password.filter(|pw| !pw.is_empty()) {
            out = out.replace(&pw, "***");
        }
    }
    out
}

/// Stream and consumer names may not contain `.`, `*`, `>`, `/`, `\` or whitespace.
fn check_queue(queue: &str) -> Result<(), TransportError> {
    let ok = !queue.is_empty()
        && queue.len() <= 200
        && !queue
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(TransportError::Config {
            kind: KIND,
            message: format!("'{queue}' cannot be a JetStream stream name (no '.', '*', '>', '/', '\\' or spaces)"),
        })
    }
}

/// Size of the header block NATS sends for `headers` (`NATS/1.0\r\n`, `k: v\r\n`…, `\r\n`).
fn header_block_len(headers: &[(&str, String)]) -> usize {
    "NATS/1.0\r\n\r\n".len()
        + headers
            .iter()
            .map(|(k, v)| k.len() + 2 + v.len() + 2)
            .sum::<usize>()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connection state as the client's events tell it: one WARN per outage.
struct Health {
    url: String,
    down: AtomicBool,
    /// Woken on every reconnect, so a pull request lost with the old connection is not
    /// waited out.
    reconnected: Notify,
}

impl Health {
    fn event(&self, event: Event) {
        match event {
            Event::Disconnected => {
                if !self.down.swap(true, Ordering::SeqCst) {
                    tracing::warn!(broker = %self.url, "lost the connection to NATS; reconnecting with backoff");
                }
            }
            Event::Connected => {
                if self.down.swap(false, Ordering::SeqCst) {
                    tracing::info!(broker = %self.url, "reconnected to NATS");
                }
                self.reconnected.notify_waiters();
            }
            Event::ServerError(e) => {
                tracing::warn!(broker = %self.url, error = %e, "NATS server error")
            }
            Event::ClientError(e) => {
                tracing::debug!(broker = %self.url, error = %e, "NATS client error")
            }
            other => tracing::debug!(broker = %self.url, event = %other, "NATS event"),
        }
    }
}

/// Why an operation failed, as far as retrying goes.
#[derive(Debug)]
enum Failure {
    /// Connection trouble, timeouts, JetStream not ready: wait and retry.
    Transient(String),
    /// The stream or consumer is gone (deleted, or the server lost its data): forget the
    /// cached handles and retry.
    Missing(String),
    /// Retrying will not help.
    Fatal(TransportError),
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Failure::Transient(m) | Failure::Missing(m) => m.clone(),
            Failure::Fatal(e) => e.to_string(),
        }
    }
}

fn js_code(e: &jetstream::Error) -> jetstream::ErrorCode {
    e.error_code()
}

fn is_missing_code(code: jetstream::ErrorCode) -> bool {
    code == jetstream::ErrorCode::STREAM_NOT_FOUND
        || code == jetstream::ErrorCode::CONSUMER_NOT_FOUND
}

/// Receive-side state of one queue.
struct QueueRx {
    queue: Arc<str>,
    inbox: Inbox<Delivery>,
}

struct Inner {
    client: async_nats::Client,
    js: Context,
    opts: ConnectOptions,
    url: String,
    dlq: String,
    closed: AtomicBool,
    health: Arc<Health>,
    streams: Mutex<HashMap<String, stream::Stream>>,
    consumers: Mutex<HashMap<String, PullConsumer>>,
    receivers: Mutex<HashMap<String, Arc<QueueRx>>>,
}

/// NATS JetStream transport over one client connection.
pub struct NatsTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("url", &self.inner.url)
            .field("namespace", &self.inner.opts.namespace)
            .finish()
    }
}

fn validate(o: &ConnectOptions) -> Result<(), TransportError> {
    let bad = |message: String| {
        Err(TransportError::Config {
            kind: KIND,
            message,
        })
    };
    if o.namespace.is_empty() {
        return bad("the namespace (ASYA_NAMESPACE) must not be empty".into());
    }
    if o.max_deliveries == 0 {
        return bad("max_deliveries must be at least 1".into());
    }
    if o.visibility_timeout < Duration::from_secs(1) {
        return bad(format!(
            "the visibility timeout ({:?}) must be at least 1 s (it is the JetStream AckWait)",
            o.visibility_timeout
        ));
    }
    check_queue(&queue_name(&o.namespace, "x"))
}

impl NatsTransport {
    /// Connects to `url` (`nats://[user:password@]host:port`, as in `TROUPE_NATS_URL`) and
    /// checks that JetStream is enabled. Fails with [`TransportError::Unavailable`] if the
    /// server cannot be reached, [`TransportError::Auth`] if it refuses the credentials,
    /// [`TransportError::Config`] for a bad URL, bad options or JetStream disabled.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, TransportError> {
        let redacted = redact_url(url);
        validate(&options)?;
        let parsed = parse_url(url)?;
        let health = Arc::new(Health {
            url: redacted.clone(),
            down: AtomicBool::new(false),
            reconnected: Notify::new(),
        });
        let events = health.clone();
        let mut nats_opts = async_nats::ConnectOptions::new()
            .name(format!("troupe {}", options.consumer_name))
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .event_callback(move |event| {
                let events = events.clone();
                async move { events.event(event) }
            });
        if let (Some(u), Some(p)) = (&parsed.user, &parsed.password) {
            nats_opts = nats_opts.user_and_password(u.clone(), p.clone());
        } else if let Some(t) = &parsed.token {
            nats_opts = nats_opts.token(t.clone());
        }
        let addrs: Vec<ServerAddr> = parsed
            .servers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let client = nats_opts.connect(addrs).await.map_err(|e| {
            let message = redact_error(&e.to_string(), url);
            match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    TransportError::Auth {
                        kind: KIND,
                        url: redacted.clone(),
                        message,
                    }
                }
                ConnectErrorKind::ServerParse => TransportError::Config {
                    kind: KIND,
                    message: format!("TROUPE_NATS_URL '{redacted}': {message}"),
                },
                _ => TransportError::Unavailable {
                    kind: KIND,
                    url: redacted.clone(),
                    message,
                },
            }
        })?;
        let js = jetstream::new(client.clone());
        let inner = Arc::new(Inner {
            client,
            js,
            dlq: dead_letter_queue(&options.namespace),
            opts: options,
            url: redacted,
            closed: AtomicBool::new(false),
            health,
            streams: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            receivers: Mutex::new(HashMap::new()),
        });
        inner.check_jetstream().await?;
        tracing::debug!(broker = %inner.url, "connected to NATS");
        Ok(NatsTransport { inner })
    }

    /// Largest body a plain send accepts now: the server's `max_payload` less the
    /// headers this transport adds.
    pub fn max_message_bytes(&self) -> usize {
        let headers = [("Nats-Msg-Id", uuid::Uuid::nil().to_string())];
        self.inner
            .client
            .server_info()
            .max_payload
            .saturating_sub(header_block_len(&headers))
    }

    /// The dead-letter queue of this transport's namespace.
    pub fn dead_letter_queue(&self) -> &str {
        &self.inner.dlq
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The error to report once retrying has given up.
    fn give_up(&self, queue: &str, f: Failure) -> TransportError {
        match f {
            Failure::Fatal(e) => e,
            Failure::Transient(m) if !self.connected() => TransportError::Unavailable {
                kind: KIND,
                url: self.url.clone(),
                message: m,
            },
            other => TransportError::Io {
                queue: queue.to_owned(),
                message: other.message(),
            },
        }
    }

    /// Asks the JetStream API for the account info. The raw request keeps this working
    /// whatever fields the server version reports.
    async fn check_jetstream(&self) -> Result<(), TransportError> {
        let reply = self.client.request("$JS.API.INFO", Bytes::new()).await;
        match reply {
            Ok(m) => {
                let text = String::from_utf8_lossy(&m.payload);
                if text.contains("\"error\"") {
                    Err(TransportError::Config {
                        kind: KIND,
                        message: format!(
                            "JetStream at {} refused this account: {text}; start nats-server with -js and enable JetStream for the account",
                            self.url
                        ),
                    })
                } else {
                    Ok(())
                }
            }
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err(TransportError::Config {
                    kind: KIND,
                    message: format!(
                        "JetStream is not enabled on the NATS server at {}; start nats-server with -js",
                        self.url
                    ),
                })
            }
            Err(e) => Err(TransportError::Unavailable {
                kind: KIND,
                url: self.url.clone(),
                message: format!("JetStream did not answer: {e}"),
            }),
        }
    }

    /// Retries `op` through outages for up to [`RETRY_WINDOW`]; [`Failure::Missing`]
    /// drops the cached stream and consumer of `queue` first.
    async fn retry<T, F, Fut>(&self, queue: &str, mut op: F) -> Result<T, TransportError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let deadline = Instant::now() + RETRY_WINDOW;
        let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
        loop {
            self.check_open()?;
            match op().await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(f) => {
                    if matches!(f, Failure::Missing(_)) {
                        self.forget(queue);
                    }
                    let pause = backoff.next_delay();
                    if Instant::now() + pause >= deadline {
                        return Err(self.give_up(queue, f));
                    }
                    tracing::debug!(queue, error = %f.message(), "retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    fn forget(&self, queue: &str) {
        lock(&self.streams).remove(queue);
        lock(&self.consumers).remove(queue);
    }

    /// The queue's stream, created on first use.
    async fn stream(&self, queue: &str) -> Result<stream::Stream, Failure> {
        if let Some(s) = lock(&self.streams).get(queue) {
            return Ok(s.clone());
        }
        check_queue(queue).map_err(Failure::Fatal)?;
        let delayed = delayed_subject(queue);
        let config = stream::Config {
            name: queue.to_owned(),
            subjects: vec![queue.to_owned(), delayed.clone()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: 1,
            ..Default::default()
        };
        let s = self.js.get_or_create_stream(config).await.map_err(|e| {
            use async_nats::jetstream::context::CreateStreamErrorKind as K;
            match e.kind() {
                K::JetStream(je) if !is_missing_code(js_code(&je)) => {
                    Failure::Fatal(TransportError::QueueRefused {
                        kind: KIND,
                        queue: queue.to_owned(),
                        reason: format!("cannot create the JetStream stream: {je}"),
                    })
                }
                K::EmptyStreamName | K::InvalidStreamName | K::DomainAndExternalSet => {
                    Failure::Fatal(TransportError::Config {
                        kind: KIND,
                        message: format!("cannot create JetStream stream '{queue}': {e}"),
                    })
                }
                _ => Failure::Transient(format!("creating stream '{queue}': {e}")),
            }
        })?;
        // A stream made by the platform or an older release may lack the delayed subject.
        let info = s.cached_info();
        if !info.config.subjects.contains(&delayed) {
            let mut config = info.config.clone();
            config.subjects.push(delayed);
            self.js.update_stream(&config).await.map_err(|e| {
                Failure::Transient(format!(
                    "adding the delayed subject to stream '{queue}': {e}"
                ))
            })?;
        }
        lock(&self.streams).insert(queue.to_owned(), s.clone());
        Ok(s)
    }

    /// The queue's durable pull consumer, created on first use.
    async fn consumer(&self, queue: &str) -> Result<PullConsumer, Failure> {
        if let Some(c) = lock(&self.consumers).get(queue) {
            return Ok(c.clone());
        }
        let s = self.stream(queue).await?;
        let config = pull::Config {
            durable_name: Some(queue.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.opts.visibility_timeout,
            // Deferral redeliveries count toward MaxDeliver (platform.md §1.1); the
            // dead-letter rule counts real deliveries itself.
            max_deliver: -1,
            ..Default::default()
        };
        let c: PullConsumer = s
            .get_or_create_consumer(queue, config.clone())
            .await
            .map_err(|e| {
                use async_nats::jetstream::stream::ConsumerErrorKind as K;
                match e.kind() {
                    K::JetStream(je) if is_missing_code(js_code(&je)) => {
                        Failure::Missing(format!("stream '{queue}' is gone: {je}"))
                    }
                    K::JetStream(je) => Failure::Fatal(TransportError::QueueRefused {
                        kind: KIND,
                        queue: queue.to_owned(),
                        reason: format!("cannot create the JetStream consumer: {je}"),
                    }),
                    K::InvalidName | K::InvalidConsumerType => {
                        Failure::Fatal(TransportError::Config {
                            kind: KIND,
                            message: format!("cannot create JetStream consumer '{queue}': {e}"),
                        })
                    }
                    _ => Failure::Transient(format!("creating consumer '{queue}': {e}")),
                }
            })?;
        let existing = c.cached_info().config.ack_wait;
        let c = if existing != self.opts.visibility_timeout {
            // The window is one mesh-wide setting, and every holder extends its
            // deliveries at a third of it; a consumer left from an older setting (or
            // the 10-minute default of earlier versions) would hide a dead consumer's
            // messages for that long, so it is brought to the current window.
            tracing::info!(queue, ?existing, wanted = ?self.opts.visibility_timeout, "changing the JetStream consumer's AckWait to the visibility window");
            match s.create_consumer(config).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(queue, error = %e, "could not change the JetStream consumer's AckWait; keeping it");
                    c
                }
            }
        } else {
            c
        };
        lock(&self.consumers).insert(queue.to_owned(), c.clone());
        Ok(c)
    }

    /// Publishes `body` to `subject` of `queue`'s stream and waits for the PubAck.
    async fn publish(
        &self,
        queue: &str,
        subject: &str,
        body: &Bytes,
        headers: Vec<(&'static str, String)>,
    ) -> Result<(), TransportError> {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let mut all = headers.clone();
        all.push(("Nats-Msg-Id", msg_id.clone()));
        let max_payload = self.client.server_info().max_payload;
        let header_len = header_block_len(&all);
        if max_payload > 0 && body.len() + header_len > max_payload {
            return Err(TransportError::TooLarge {
                queue: queue.to_owned(),
                size: body.len(),
                limit: max_payload.saturating_sub(header_len),
            });
        }
        self.retry(queue, || {
            let headers = &headers;
            let msg_id = &msg_id;
            async move {
                self.stream(queue).await?;
                let mut m = PublishMessage::build()
                    .payload(body.clone())
                    .message_id(msg_id);
                for (k, v) in headers {
                    m = m.header(*k, v.as_str());
                }
                let ack = match self.js.send_publish(subject.to_owned(), m).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                ack.map(|_| ()).map_err(|e| match e.kind() {
                    PublishErrorKind::StreamNotFound => {
                        Failure::Missing(format!("no stream for '{subject}'"))
                    }
                    _ => Failure::Transient(format!("publish to '{subject}': {e}")),
                })
            }
        })
        .await
    }

    /// Sends `payload` (`+ACK`, `-NAK …`) to a delivery's ack subject and waits for the
    /// server's confirmation.
    async fn ack_reply(
        &self,
        queue: &str,
        reply: &str,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        self.retry(queue, || {
            let payload = payload.clone();
            async move {
                match self.client.request(reply.to_owned(), payload).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(Failure::Transient(format!("ack on '{queue}': {e}"))),
                }
            }
        })
        .await
    }

    async fn nak(&self, queue: &str, reply: &str, delay: Duration) -> Result<(), TransportError> {
        let payload = if delay.is_zero() {
            Bytes::from_static(b"-NAK")
        } else {
            Bytes::from(format!("-NAK {{\"delay\":{}}}", delay.as_nanos()))
        };
        self.ack_reply(queue, reply, payload).await
    }

    async fn dead_letter(
        &self,
        queue: &str,
        body: &Bytes,
        reply: &str,
    ) -> Result<(), TransportError> {
        let dlq = self.dlq.clone();
        self.publish(
            &dlq,
            &dlq,
            body,
            vec![(DEAD_LETTERED_FROM, queue.to_owned())],
        )
        .await?;
        self.ack_reply(queue, reply, Bytes::from_static(b"+ACK"))
            .await
    }

    /// Decides what to do with a pulled message: defer it, move it from the delayed
    /// subject, dead-letter it, or hand it out.
    async fn admit(
        &self,
        rx: &QueueRx,
        m: jetstream::Message,
    ) -> Result<Option<Delivery>, TransportError> {
        let queue: &str = &rx.queue;
        let info = m.info().map_err(|e| TransportError::Io {
            queue: queue.to_owned(),
            message: format!("message without JetStream metadata: {e}"),
        })?;
        let delivered = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
        let reply = match &m.message.reply {
            Some(r) => r.to_string(),
            None => {
                return Err(TransportError::Io {
                    queue: queue.to_owned(),
                    message: "message without an ack subject".into(),
                })
            }
        };
        let header = |name: &str| {
            m.message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let prior: u32 = header(DELIVERIES)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if let Some(raw) = header(DELIVER_AT) {
            match parse_deliver_at(&raw) {
                Some(at) => {
                    let left = time_left(at, now());
                    if !left.is_zero() {
                        tracing::debug!(queue, ?left, "deferring a message that is not due yet");
                        self.nak(queue, &reply, left).await?;
                        return Ok(None);
                    }
                }
                None => {
                    tracing::warn!(queue, value = %raw, "ignoring an unparseable {DELIVER_AT} header")
                }
            }
        }
        let body = m.message.payload.clone();
        if m.message.subject.as_str() == delayed_subject(queue) {
            // Due: republish on the queue subject so that JetStream counts only real
            // deliveries from here on, then drop the delayed copy.
            let headers = if prior > 0 {
                vec![(DELIVERIES, prior.to_string())]
            } else {
                Vec::new()
            };
            self.publish(queue, queue, &body, headers).await?;
            self.ack_reply(queue, &reply, Bytes::from_static(b"+ACK"))
                .await?;
            return Ok(None);
        }
        let count = prior.saturating_add(delivered);
        if count > self.opts.max_deliveries && queue != self.dlq {
            tracing::warn!(
                queue,
                deliveries = count - 1,
                "message delivered too often; moving it to the dead-letter queue"
            );
            self.dead_letter(queue, &body, &reply).await?;
            return Ok(None);
        }
        Ok(Some(Delivery {
            queue: rx.queue.clone(),
            body,
            handle: DeliveryHandle::Token(reply),
            delivery_count: Some(count),
        }))
    }

    /// One pull for `rx`. `Ok(None)`: nothing to hand out this round.
    async fn fetch_one(&self, rx: &QueueRx) -> Result<Option<Delivery>, Failure> {
        let consumer = self.consumer(&rx.queue).await?;
        let reconnected = self.health.reconnected.notified();
        tokio::pin!(reconnected);
        reconnected.as_mut().enable();
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(PULL_WAIT)
            .messages()
            .await
            .map_err(|e| Failure::Transient(format!("pull request: {e}")))?;
        let next = tokio::select! {
            next = batch.next() => next,
            // The pull request went with the old connection: ask again at once.
            _ = &mut reconnected => return Ok(None),
        };
        match next {
            None => Ok(None),
            Some(Err(e)) => {
                let message = e.to_string();
                if message.contains("404") || message.contains("408") {
                    Ok(None)
                } else if message.contains("409") && message.to_lowercase().contains("deleted") {
                    Err(Failure::Missing(message))
                } else {
                    Err(Failure::Transient(message))
                }
            }
            Some(Ok(m)) => self.admit(rx, m).await.map_err(Failure::Fatal),
        }
    }

    fn rx(&self, queue: &str) -> Arc<QueueRx> {
        lock(&self.receivers)
            .entry(queue.to_owned())
            .or_insert_with(|| {
                Arc::new(QueueRx {
                    queue: Arc::from(queue),
                    inbox: Inbox::new(),
                })
            })
            .clone()
    }

    async fn receive(self: &Arc<Self>, queue: &str) -> Result<Delivery, TransportError> {
        self.check_open()?;
        check_queue(queue)?;
        let rx = self.rx(queue);
        let start_fetch =
            || tokio::spawn(fetch_loop(Arc::downgrade(self), rx.clone())).abort_handle();
        rx.inbox
            .next(
                self.opts.visibility_timeout,
                || self.check_open(),
                start_fetch,
            )
            .await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        self.check_open()?;
        let delayed = delayed_subject(queue);
        self.retry(queue, || {
            let delayed = &delayed;
            async move {
                let consumer = self.consumer(queue).await?;
                let stream = self.stream(queue).await?;
                let ci = consumer
                    .get_info()
                    .await
                    .map_err(|e| Failure::Transient(format!("consumer info: {e}")))?;
                let mut si = stream
                    .info_with_subjects(delayed)
                    .await
                    .map_err(|e| Failure::Transient(format!("stream info: {e}")))?;
                let total = si.info.state.messages;
                let mut delayed_count = 0u64;
                while let Some(item) = si.next().await {
                    let (subject, n) =
                        item.map_err(|e| Failure::Transient(format!("stream info: {e}")))?;
                    if subject == *delayed {
                        delayed_count += n as u64;
                    }
                }
                // The consumer's counters mix both subjects; the stream's per-subject count
                // separates the delayed messages, and what is left is ready or in flight.
                let main = total.saturating_sub(delayed_count);
                let ready = ci.num_pending.min(main);
                Ok(QueueDepth {
                    ready,
                    delayed: delayed_count,
                    in_flight: main - ready,
                })
            }
        })
        .await
    }

    async fn nack(&self, d: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.check_open()?;
        let DeliveryHandle::Token(reply) = &d.handle else {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        };
        let count = d.delivery_count.unwrap_or(1);
        if count >= self.opts.max_deliveries && *d.queue != *self.dlq {
            tracing::warn!(queue = %d.queue, deliveries = count, "message failed on its last allowed delivery; moving it to the dead-letter queue");
            return self.dead_letter(&d.queue, &d.body, reply).await;
        }
        self.nak(&d.queue, reply, delay).await
    }

    async fn extend(&self, d: &Delivery) -> Result<(), TransportError> {
        self.check_open()?;
        let DeliveryHandle::Token(reply) = &d.handle else {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        };
        // In-progress ack: the server restarts the delivery's AckWait.
        self.ack_reply(&d.queue, reply, Bytes::from_static(b"+WPI"))
            .await
    }

    async fn ack(&self, d: &Delivery) -> Result<(), TransportError> {
        self.check_open()?;
        let DeliveryHandle::Token(reply) = &d.handle else {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        };
        self.ack_reply(&d.queue, reply, Bytes::from_static(b"+ACK"))
            .await
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let receivers: Vec<Arc<QueueRx>> = lock(&self.receivers).drain().map(|(_, r)| r).collect();
        for rx in receivers {
            rx.inbox.abort_fetch();
            // Pulled but never handed out: give back at once rather than after AckWait.
            for d in rx.inbox.drain() {
                if let DeliveryHandle::Token(reply) = &d.handle {
                    let nak = self
                        .client
                        .publish(reply.clone(), Bytes::from_static(b"-NAK"));
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, nak).await;
                }
            }
        }
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, self.client.flush()).await;
    }
}

/// Pulls for `rx` while `receive` calls wait on it; ends when none do.
async fn fetch_loop(weak: Weak<Inner>, rx: Arc<QueueRx>) {
    let mut backoff = Backoff::new(BACKOFF_START, FETCH_BACKOFF_MAX);
    loop {
        let Some(inner) = weak.upgrade() else {
            rx.inbox.abandon();
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            rx.inbox.abandon();
            return;
        }
        if !rx.inbox.fetch_on() {
            return;
        }
        match inner.fetch_one(&rx).await {
            Ok(found) => {
                backoff = Backoff::new(BACKOFF_START, FETCH_BACKOFF_MAX);
                if let Some(d) = found {
                    rx.inbox.push(Ok(d));
                }
            }
            Err(f) => {
                match f {
                    Failure::Missing(ref m) => {
                        tracing::debug!(queue = %rx.queue, error = %m, "stream or consumer gone; recreating");
                        inner.forget(&rx.queue);
                    }
                    // While disconnected the client's events already warned once.
                    Failure::Transient(ref m) if !inner.connected() => {
                        tracing::debug!(queue = %rx.queue, error = %m, "receive waits for the connection");
                    }
                    Failure::Transient(ref m) => {
                        tracing::debug!(queue = %rx.queue, error = %m, "receive failed; retrying");
                    }
                    Failure::Fatal(e) => {
                        tracing::warn!(queue = %rx.queue, error = %e, "receive failed");
                        rx.inbox.push(Err(e));
                    }
                }
                let pause = backoff.next_delay();
                drop(inner);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[async_trait]
impl Transport for NatsTransport {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn queue_name(&self, actor: &str) -> String {
        queue_name(&self.inner.opts.namespace, actor)
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        self.inner.receive(queue).await
    }

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.inner.check_open()?;
        check_queue(queue)?;
        self.inner.publish(queue, queue, &body, Vec::new()).await
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.inner.check_open()?;
        check_queue(queue)?;
        if delay.is_zero() {
            return self.inner.publish(queue, queue, &body, Vec::new()).await;
        }
        let headers = vec![(DELIVER_AT, deliver_at(now(), delay))];
        self.inner
            .publish(queue, &delayed_subject(queue), &body, headers)
            .await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.inner.ack(delivery).await
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.inner.nack(delivery, delay).await
    }

    fn extend_every(&self) -> Option<Duration> {
        Some(self.inner.opts.visibility_timeout / 3)
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.inner.extend(delivery).await
    }

    async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inner.create_queue(queue).await
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inner.delete_queue(queue).await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        check_queue(queue)?;
        self.inner.depth(queue).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        for rx in lock(&self.inner.receivers).values() {
            rx.inbox.abort_fetch();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn naming_follows_protocol_section_4() {
        assert_eq!(queue_name("prod", "echo"), "asya-prod-echo");
        assert_eq!(dead_letter_queue("prod"), "asya-prod-dlq");
        assert_eq!(delayed_subject("asya-prod-echo"), "asya-prod-echo.delayed");
        assert!(check_queue("asya-prod-x-sink").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b"] {
            assert!(check_queue(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deliver_at_is_rfc3339_utc_ms_rounded_up() {
        let now = datetime!(2025-01-02 03:04:05.678_400 UTC);
        assert_eq!(
            deliver_at(now, Duration::from_secs(2)),
            "2025-01-02T03:04:07.679Z"
        );
        let exact = datetime!(2025-01-02 03:04:05.678 UTC);
        assert_eq!(
            deliver_at(exact, Duration::from_millis(1500)),
            "2025-01-02T03:04:07.178Z"
        );
        let t = parse_deliver_at("2025-01-02T03:04:07.679Z").unwrap();
        assert!(t >= now + Duration::from_secs(2));
        // Any RFC 3339 offset is read (Asya peers never write it; others might).
        assert_eq!(
            parse_deliver_at("2025-01-02T05:04:07.679+02:00").unwrap(),
            t
        );
        assert!(parse_deliver_at("tomorrow").is_none());
        assert!(parse_deliver_at("").is_none());
    }

    #[test]
    fn time_left_is_never_negative() {
        let now = datetime!(2025-01-02 03:04:05 UTC);
        assert_eq!(time_left(now - Duration::from_secs(1), now), Duration::ZERO);
        assert_eq!(
            time_left(now + Duration::from_millis(1500), now),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn url_parsing() {
        let u = parse_url("nats://alice:s3cret@127.0.0.1:4333").unwrap();
        assert_eq!(u.servers, vec!["nats://127.0.0.1:4333"]);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert_eq!(u.token, None);

        let u = parse_url("nats://tok3n@h1:4222,nats://h2").unwrap();
        assert_eq!(u.servers, vec!["nats://h1:4222", "nats://h2:4222"]);
        assert_eq!(u.token.as_deref(), Some("tok3n"));

        assert_eq!(
            parse_url("tls://h:4443").unwrap().servers,
            vec!["tls://h:4443"]
        );
        for bad in ["", "h:4222", "http://u:pw@h:1", "nats://u:pw@h:notaport"] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(!e.contains(":pw@"), "password leaked: {e}");
            assert!(e.starts_with("invalid nats transport settings"), "{e}");
        }
    }

    #[test]
    fn header_block_size() {
        assert_eq!(header_block_len(&[]), 12);
        assert_eq!(
            header_block_len(&[("Nats-Msg-Id", "x".into())]),
            12 + "Nats-Msg-Id: x\r\n".len()
        );
    }

    #[test]
    fn options_are_checked() {
        let mut o = ConnectOptions::new("ns");
        assert!(validate(&o).is_ok());
        o.visibility_timeout = Duration::from_millis(10);
        assert!(matches!(validate(&o), Err(TransportError::Config { .. })));
        let o = ConnectOptions::new("a.b");
        assert!(validate(&o).is_err(), "dots cannot be in stream names");
    }
}
