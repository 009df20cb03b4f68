//! Google Cloud Pub/Sub transport (platform.md §1.2, wire-compatible with Asya's).
//!
//! A small client of Pub/Sub's REST/JSON API v1 over `reqwest` (tonic + prost + the
//! Google API protos would add minutes to every cold build for the seven calls used
//! here). It works against Google Cloud (bearer tokens from `GOOGLE_OAUTH_ACCESS_TOKEN`,
//! Application Default Credentials or the GCE/GKE metadata server, see [`Credentials`])
//! and against the Pub/Sub emulator
//! (a plain-HTTP endpoint: no credentials).
//!
//! # Mapping (platform.md §1.2)
//!
//! | trait | Pub/Sub |
//! |---|---|
//! | queue | topic and subscription, both `asya-{ns}-{actor}`, created on first use (send creates the subscription too, so nothing published is lost); retention 7 d |
//! | `send` | `topics.publish` |
//! | `send_with_delay(d)` | publish with `x-troupe-deliver-at` = now + d (deferral) |
//! | `receive` | `subscriptions.pull` of up to the number of waiting receivers, long poll |
//! | `ack` | `subscriptions.acknowledge` |
//! | `extend` (a live handler's lease) | `modifyAckDeadline` = the ack deadline, every third of it |
//! | `nack(d)` / `requeue` | `modifyAckDeadline` min(⌈d⌉, 600 s) / 0 |
//! | DLQ | topic + subscription `asya-{ns}-dlq`, see below |
//! | `depth` | what this instance knows, see below |
//!
//! **Ack deadline.** Subscriptions are created with the visibility timeout of the
//! connect options as ack deadline (clamped to Pub/Sub's 10–600 s). When the
//! subscription's deadline differs from the wanted one (platform-made subscriptions use
//! 300 s, or the wanted one is under 10 s), each pulled message's deadline is set with
//! one `modifyAckDeadline`. A visibility timeout above Pub/Sub's 600 s maximum is kept
//! by a lease task that, every 30 s, pushes the deadline of each held delivery that is
//! within 90 s of it further out, until the visibility timeout has passed.
//!
//! **Deferral.** A received message whose `x-troupe-deliver-at` lies in the future is
//! not handed out: its ack deadline is set to the time left (at most 600 s, so long
//! delays take several hops). Once due, it is published again without the attribute and
//! the original acked, so the copy the caller sees starts at delivery attempt 1 and the
//! dead-letter limit counts real processing attempts only.
//!
//! **Dead letters.** Pub/Sub's dead-letter policy cannot count to 3: its minimum is 5
//! attempts, and deferral hops count as attempts too. So created subscriptions get a
//! dead-letter policy to topic `asya-{ns}-dlq` with the maximum of 100 attempts (a
//! backstop, and the reason Pub/Sub reports `deliveryAttempt` at all), and the 3-delivery
//! rule is applied here: a message pulled with `deliveryAttempt` above
//! `ConnectOptions::max_deliveries` is published to `asya-{ns}-dlq` (with the
//! `CloudPubSubDeadLetterSource*` attributes Pub/Sub itself would add) and acked,
//! never handed out. The DLQ subscription is created before any actor subscription, so
//! no dead letter is published to a topic nobody reads. A subscription without a
//! dead-letter policy (made by someone else) reports no attempts: its messages are never
//! dead-lettered, as in Asya. On Google Cloud the Pub/Sub service agent needs publisher
//! rights on the DLQ topic for the backstop; the workload's own identity publishes the
//! client-side dead letters. An identity that may not create the missing DLQ (Asya
//! provisions none) gets one WARN and no dead-lettering, as in Asya.
//!
//! **Creating** is a `PUT` (409: it exists). A 403 is followed by a `GET`, so an
//! identity that may only use platform-made topics and subscriptions works, and one
//! that may not even read them gets [`TransportError::Auth`]. `connect` sets up the DLQ,
//! which also checks the endpoint and the credentials.
//!
//! **Depth.** Pub/Sub's data-plane API has no backlog count (that is Cloud Monitoring's
//! `num_undelivered_messages`, minutes late, and not served by the emulator), and
//! pulling to count would add delivery attempts. So `depth` reports what this instance
//! knows: `in_flight` = its deliveries not yet acked, nacked or expired, `delayed` = its
//! own deferred sends not yet due, `ready` = 0. Autoscaling on Pub/Sub uses KEDA's
//! `gcp-pubsub` scaler or Asya's external scaler (platform.md §1.2), not `depth`.
//!
//! **Receiving** runs in one background pull per queue that fetches only while a
//! `receive` waits (`troupe_transport::longpoll`): dropping a `receive` future never
//! loses a message. Closing the transport while a pull is outstanding can strand a
//! message that the server hands to the aborted pull until its ack deadline passes.
//!
//! **Outages** are retried with backoff (0.2 s doubling to 5 s) for
//! [`PubSubConfig::retry_for`], then fail with [`TransportError::Unavailable`]; one WARN
//! per outage, one INFO when it ends. Topics and subscriptions that vanished (an
//! emulator restart) are created again.
//!
//! **Bodies** travel as the message data, byte for byte; an empty body gets the
//! attribute `x-troupe-empty-body` because Pub/Sub refuses a message with neither data
//! nor attributes.
//!
//! **Size.** At most 10 MB (10 000 000 bytes) of data plus attributes per message,
//! checked before publishing ([`TransportError::TooLarge`]).

mod auth;
mod config;
mod provision;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use reqwest::{Method, Url};
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use troupe_transport::deferral::{
    ceil_secs, format_deliver_at, parse_deliver_at, remaining, DELIVER_AT,
};
use troupe_transport::longpoll::{keep_for, Fetch, Inbox};
use troupe_transport::retry::{error_chain, Backoff, Outage};
use troupe_transport::{
    redact_url, ConnectOptions, Delivery, DeliveryHandle, QueueDepth, Transport, TransportError,
};

use crate::auth::TokenSource;
pub use crate::config::{Credentials, PubSubConfig, DEFAULT_RETRY_FOR, GOOGLE_ENDPOINT};

pub(crate) const KIND: &str = "pubsub";

/// Largest message: data plus attribute keys and values (10 MB).
pub const MAX_MESSAGE_BYTES: usize = 10_000_000;
/// Marks a message whose body is empty (Pub/Sub needs data or an attribute).
const EMPTY_BODY: &str = "x-troupe-empty-body";
/// Longest ack deadline Pub/Sub takes.
const MAX_DEADLINE_SECS: u64 = 600;
/// Shortest ack deadline a subscription can have.
const MIN_SUBSCRIPTION_DEADLINE_SECS: u64 = 10;
/// The dead-letter policy's attempts: Pub/Sub's maximum, a backstop only (see above).
const BROKER_MAX_ATTEMPTS: u32 = 100;
/// Subscription retention: 7 d, Pub/Sub's maximum (platform.md §1.2).
const RETENTION: &str = "604800s";
/// Timeout of every call but the pull.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A pull waits for messages this long at most; the emulator holds an idle pull for
/// about 90 s, Google for less.
const PULL_TIMEOUT: Duration = Duration::from_secs(100);

/// The Pub/Sub transport. Cheap to share behind an `Arc`; all state is inside.
pub struct PubSubTransport {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Base URL, ending in `/`.
    base: Url,
    shown_url: String,
    tokens: TokenSource,
    project: String,
    namespace: String,
    /// Wanted ack deadline of pulled messages (≤ 600 s).
    deadline_secs: u64,
    /// How long a delivery stays ours (the visibility timeout); leases beyond 600 s
    /// are extended by the lease task.
    visibility: Duration,
    lease_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    max_deliveries: u32,
    retry_for: Duration,
    /// Queues whose topic and subscription exist, with the subscription's ack deadline.
    queues: Mutex<HashMap<String, u64>>,
    dlq_state: Mutex<DlqState>,
    inboxes: Mutex<HashMap<String, Arc<Inbox<Delivery>>>>,
    /// Deliveries handed out or buffered, by queue and ack id.
    in_flight: Mutex<HashMap<String, HashMap<String, Lease>>>,
    /// Due times of this instance's deferred sends, by queue.
    deferred: Mutex<HashMap<String, Vec<SystemTime>>>,
    outage: Outage,
    closed: AtomicBool,
}

/// Whether the DLQ topic and subscription exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DlqState {
    Unknown,
    Ready,
    /// Missing, and this identity may not create it.
    Missing,
}

/// Starts the message of an `Auth` error for a resource that is missing and may not be
/// created (as opposed to credentials refused outright).
const CANNOT_CREATE: &str = "permission denied to create";

/// A delivery this instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    /// Until when it stays ours: fetched + the visibility timeout.
    until: Instant,
    /// Until when Pub/Sub holds it for us now (at most 600 s ahead).
    broker_until: Instant,
}

/// How often the lease task looks for deadlines to extend, and how close to its deadline
/// a lease gets extended.
const LEASE_TICK: Duration = Duration::from_secs(30);
const EXTEND_WITHIN: Duration = Duration::from_secs(90);

/// Extensions due now, grouped by queue and new deadline; marks them extended and drops
/// leases that ran out.
fn due_extensions(
    leases: &mut HashMap<String, HashMap<String, Lease>>,
    now: Instant,
) -> Vec<(String, u64, Vec<String>)> {
    let mut due: HashMap<(String, u64), Vec<String>> = HashMap::new();
    for (queue, held) in leases.iter_mut() {
        held.retain(|_, l| l.until > now);
        for (id, lease) in held.iter_mut() {
            if lease.broker_until < lease.until && lease.broker_until < now + EXTEND_WITHIN {
                let secs = ceil_secs(lease.until - now).min(MAX_DEADLINE_SECS);
                lease.broker_until = now + Duration::from_secs(secs);
                due.entry((queue.clone(), secs))
                    .or_default()
                    .push(id.clone());
            }
        }
    }
    due.into_iter()
        .map(|((q, secs), ids)| (q, secs, ids))
        .collect()
}

/// Keeps Pub/Sub from redelivering what this instance still holds when the visibility
/// timeout is longer than the 600 s an ack deadline can be; ends with the transport.
async fn extend_leases(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(LEASE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let due = due_extensions(&mut lock(&inner.in_flight), Instant::now());
        for (queue, secs, ids) in due {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            if let Err(e) = inner.modify_deadline(&queue, &refs, secs).await {
                tracing::debug!(queue, error = ?e, "could not extend ack deadlines");
            }
        }
    }
}

/// How one call ended, before it is mapped to a [`TransportError`] for a queue.
#[derive(Debug)]
enum CallError {
    /// Not reached, or temporarily unable (429, 5xx).
    Transient(String),
    /// No answer within the call's timeout.
    TimedOut(String),
    /// Credentials refused or missing.
    Auth(String),
    /// 404: the topic or subscription does not exist.
    NotFound,
    /// 409: it already exists.
    AlreadyExists,
    /// Any other error answer.
    Service { status: u16, message: String },
    /// A token could not be had (already a [`TransportError`]).
    Token(TransportError),
    /// The transport was closed while retrying.
    Closed,
}

/// A request that got no answer: timed out, or the endpoint could not be reached.
fn unreached(e: reqwest::Error) -> CallError {
    if e.is_timeout() {
        CallError::TimedOut(error_chain(&e))
    } else {
        CallError::Transient(error_chain(&e))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `google.rpc.Status`-shaped error body → message.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            let status = e.get("status").and_then(Value::as_str).unwrap_or("");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            Some(format!("{status}: {message}"))
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

fn classify(status: u16, body: &str) -> CallError {
    let message = error_message(body);
    match status {
        401 | 403 => CallError::Auth(format!("HTTP {status} {message}")),
        404 => CallError::NotFound,
        409 => CallError::AlreadyExists,
        429 | 500 | 502 | 503 | 504 => CallError::Transient(format!("HTTP {status} {message}")),
        _ => CallError::Service { status, message },
    }
}

/// Bytes Pub/Sub counts towards its limit: data plus attribute keys and values.
fn message_size(data_len: usize, attrs: &Map<String, Value>) -> usize {
    data_len
        + attrs
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum::<usize>()
}

fn ack_id(delivery: &Delivery) -> Result<&str, TransportError> {
    match &delivery.handle {
        DeliveryHandle::Token(t) => Ok(t),
        DeliveryHandle::Seq(_) => Err(TransportError::UnknownDelivery(delivery.queue.to_string())),
    }
}

/// The ack deadline a subscription gets for a wanted visibility timeout.
fn subscription_deadline(wanted: u64) -> u64 {
    wanted.clamp(MIN_SUBSCRIPTION_DEADLINE_SECS, MAX_DEADLINE_SECS)
}

impl PubSubTransport {
    /// Connects: checks the settings, the credentials and that the endpoint answers
    /// (one `topics.get` of the DLQ topic), retrying an unreachable endpoint for
    /// [`PubSubConfig::retry_for`].
    pub async fn connect(
        config: PubSubConfig,
        options: ConnectOptions,
    ) -> Result<Self, TransportError> {
        let mut base = config.endpoint_url()?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let tokens = match &config.credentials {
            Credentials::None => TokenSource::None,
            Credentials::Token(t) => TokenSource::Fixed(t.clone()),
            Credentials::File { path } => TokenSource::from_file(path)?,
            Credentials::Metadata { host } => TokenSource::metadata(host.as_deref()),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| {
                config::config(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        let shown_url = redact_url(base.as_str());
        let inner = Arc::new(Inner {
            http,
            tokens,
            project: config.project.clone(),
            namespace: options.namespace.clone(),
            deadline_secs: ceil_secs(options.visibility_timeout).min(MAX_DEADLINE_SECS),
            visibility: options.visibility_timeout,
            lease_task: Mutex::new(None),
            max_deliveries: options.max_deliveries.max(1),
            retry_for: config.retry_for,
            queues: Mutex::new(HashMap::new()),
            dlq_state: Mutex::new(DlqState::Unknown),
            inboxes: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            deferred: Mutex::new(HashMap::new()),
            outage: Outage::new(KIND, shown_url.clone()),
            closed: AtomicBool::new(false),
            shown_url,
            base,
        });
        // Fail at startup, not at the first message, on a wrong endpoint or identity;
        // and have the DLQ ready before any actor subscription names it.
        inner.ensure_dlq().await?;
        if inner.visibility > Duration::from_secs(MAX_DEADLINE_SECS) {
            let task = tokio::spawn(extend_leases(Arc::downgrade(&inner)));
            *lock(&inner.lease_task) = Some(task);
        }
        tracing::info!(
            project = %inner.project,
            endpoint = %inner.shown_url,
            namespace = %inner.namespace,
            ack_deadline_s = inner.deadline_secs,
            "Pub/Sub transport connected"
        );
        Ok(PubSubTransport { inner })
    }

    fn open(&self) -> Result<&Arc<Inner>, TransportError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(TransportError::Closed)
        } else {
            Ok(&self.inner)
        }
    }

    fn inbox(&self, queue: &str) -> Arc<Inbox<Delivery>> {
        lock(&self.inner.inboxes)
            .entry(queue.to_owned())
            .or_insert_with(Inbox::new)
            .clone()
    }
}

impl Inner {
    fn dlq_name(&self) -> String {
        format!("asya-{}-dlq", self.namespace)
    }

    fn topic(&self, queue: &str) -> String {
        format!("projects/{}/topics/{queue}", self.project)
    }

    fn subscription(&self, queue: &str) -> String {
        format!("projects/{}/subscriptions/{queue}", self.project)
    }

    fn error(&self, e: CallError, queue: &str) -> TransportError {
        match e {
            CallError::Transient(m) | CallError::TimedOut(m) => TransportError::Unavailable {
                kind: KIND,
                url: self.shown_url.clone(),
                message: m,
            },
            CallError::Auth(m) => TransportError::Auth {
                kind: KIND,
                url: self.shown_url.clone(),
                message: m,
            },
            CallError::NotFound => TransportError::NoSuchQueue(queue.to_owned()),
            CallError::AlreadyExists => TransportError::Io {
                queue: queue.to_owned(),
                message: "Pub/Sub: already exists".to_owned(),
            },
            CallError::Service { status, message } => TransportError::Io {
                queue: queue.to_owned(),
                message: format!("Pub/Sub HTTP {status} {message}"),
            },
            CallError::Token(e) => e,
            CallError::Closed => TransportError::Closed,
        }
    }

    /// One call: `path` is relative to `/v1/`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let mut refreshed = false;
        loop {
            let url = self
                .base
                .join(&format!("v1/{path}"))
                .map_err(|e| CallError::Service {
                    status: 0,
                    message: format!("bad resource path {path}: {e}"),
                })?;
            let mut request = self.http.request(method.clone(), url).timeout(timeout);
            if let Some(token) = self
                .tokens
                .token(&self.http, &self.shown_url)
                .await
                .map_err(CallError::Token)?
            {
                request = request.bearer_auth(token);
            }
            if let Some(b) = body {
                request = request.json(b);
            }
            let response = request.send().await.map_err(unreached)?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(unreached)?;
            if (200..300).contains(&status) {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| CallError::Service {
                    status,
                    message: format!("unparseable Pub/Sub response: {e}"),
                });
            }
            // An expired or revoked token: fetch a fresh one once.
            if status == 401 && !refreshed && self.tokens.invalidate().await {
                refreshed = true;
                continue;
            }
            return Err(classify(status, &text));
        }
    }

    /// [`Inner::call`], retrying transient failures with backoff for `retry_for`.
    async fn call_retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(CallError::Closed);
            }
            match self.call(method.clone(), path, body, timeout).await {
                Err(CallError::Transient(m) | CallError::TimedOut(m)) => {
                    self.outage.failed(&m);
                    let pause = backoff.next_delay();
                    if Instant::now() + pause >= deadline {
                        return Err(CallError::Transient(m));
                    }
                    tokio::time::sleep(pause).await;
                }
                r => {
                    self.outage.reached();
                    return r;
                }
            }
        }
    }

    /// Forgets that `queue` exists, and the DLQ with it: what emptied one (an emulator
    /// restart) emptied the other, and a subscription cannot be created with a
    /// dead-letter topic that is gone.
    fn forget(&self, queue: &str) {
        let mut queues = lock(&self.queues);
        queues.remove(queue);
        queues.remove(&self.dlq_name());
        *lock(&self.dlq_state) = DlqState::Unknown;
    }

    /// Makes sure the topic and subscription of `queue` exist (the DLQ's first);
    /// returns the subscription's ack deadline.
    async fn ensure(&self, queue: &str) -> Result<u64, TransportError> {
        if let Some(d) = lock(&self.queues).get(queue) {
            return Ok(*d);
        }
        if !valid_name(queue) {
            return Err(config::config(format!(
                "'{queue}' is not a valid Pub/Sub topic name (3–255 letters, digits and '-', starting with a letter)"
            )));
        }
        let dead_letter = queue != self.dlq_name() && Box::pin(self.ensure_dlq()).await?;
        self.create(queue, &self.topic(queue), &json!({})).await?;
        let mut spec = json!({
            "topic": self.topic(queue),
            "ackDeadlineSeconds": subscription_deadline(self.deadline_secs),
            "messageRetentionDuration": RETENTION,
        });
        if dead_letter {
            spec["deadLetterPolicy"] = json!({
                "deadLetterTopic": self.topic(&self.dlq_name()),
                "maxDeliveryAttempts": BROKER_MAX_ATTEMPTS,
            });
        }
        let sub = self.create(queue, &self.subscription(queue), &spec).await?;
        let deadline = sub
            .get("ackDeadlineSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(MIN_SUBSCRIPTION_DEADLINE_SECS);
        lock(&self.queues).insert(queue.to_owned(), deadline);
        Ok(deadline)
    }

    /// Makes sure the DLQ exists; `false` when this identity may not create it (Asya
    /// provisions no Pub/Sub DLQ): then nothing is dead-lettered, as in Asya, and one
    /// WARN says so.
    async fn ensure_dlq(&self) -> Result<bool, TransportError> {
        match *lock(&self.dlq_state) {
            DlqState::Ready => return Ok(true),
            DlqState::Missing => return Ok(false),
            DlqState::Unknown => {}
        }
        let dlq = self.dlq_name();
        let ready = match self.ensure(&dlq).await {
            Ok(_) => true,
            Err(TransportError::Auth { message, .. }) if message.starts_with(CANNOT_CREATE) => {
                tracing::warn!(
                    dlq = %dlq,
                    error = %message,
                    "no dead-letter topic and no permission to create it: messages are never dead-lettered"
                );
                false
            }
            Err(e) => return Err(e),
        };
        *lock(&self.dlq_state) = if ready {
            DlqState::Ready
        } else {
            DlqState::Missing
        };
        Ok(ready)
    }

    /// Creates the topic or subscription at `path` (`PUT`), or finds it there: an
    /// existing one answers 409, or 403 to an identity that may not create (then a `GET`
    /// tells whether it exists). Returns the resource.
    async fn create(&self, queue: &str, path: &str, spec: &Value) -> Result<Value, TransportError> {
        match self
            .call_retrying(Method::PUT, path, Some(spec), CALL_TIMEOUT)
            .await
        {
            Ok(v) => {
                tracing::info!(resource = %path, "created Pub/Sub resource");
                Ok(v)
            }
            Err(e @ (CallError::AlreadyExists | CallError::Auth(_))) => {
                match self
                    .call_retrying(Method::GET, path, None, CALL_TIMEOUT)
                    .await
                {
                    Ok(v) => Ok(v),
                    Err(CallError::NotFound) => match e {
                        CallError::Auth(m) => Err(TransportError::Auth {
                            kind: KIND,
                            url: self.shown_url.clone(),
                            message: format!("{CANNOT_CREATE} {path}: {m}"),
                        }),
                        // Deleted between the two calls: let the caller's retry create it.
                        e => Err(self.error(e, queue)),
                    },
                    Err(get) => Err(self.error(get, queue)),
                }
            }
            Err(e) => Err(self.error(e, queue)),
        }
    }

    /// Runs `op` once the queue exists; if Pub/Sub says it is gone, creates it again and
    /// retries once.
    async fn on_queue<T, F, Fut>(&self, queue: &str, op: F) -> Result<T, TransportError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        self.ensure(queue).await?;
        match op().await {
            Err(CallError::NotFound) => {
                tracing::debug!(
                    queue,
                    "Pub/Sub topic or subscription vanished; creating it again"
                );
                self.forget(queue);
                self.ensure(queue).await?;
                op().await.map_err(|e| self.error(e, queue))
            }
            r => r.map_err(|e| self.error(e, queue)),
        }
    }

    async fn publish(
        &self,
        queue: &str,
        data_b64: &str,
        attrs: &Map<String, Value>,
    ) -> Result<(), CallError> {
        let mut message = json!({ "data": data_b64 });
        if !attrs.is_empty() {
            message["attributes"] = Value::Object(attrs.clone());
        }
        let path = format!("{}:publish", self.topic(queue));
        self.post(&path, &json!({ "messages": [message] })).await
    }

    /// A POST whose reply says nothing more than that it was done.
    async fn post(&self, path: &str, body: &Value) -> Result<(), CallError> {
        self.call_retrying(Method::POST, path, Some(body), CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn modify_deadline(
        &self,
        queue: &str,
        ack_ids: &[&str],
        secs: u64,
    ) -> Result<(), CallError> {
        let path = format!("{}:modifyAckDeadline", self.subscription(queue));
        let body = json!({ "ackIds": ack_ids, "ackDeadlineSeconds": secs.min(MAX_DEADLINE_SECS) });
        self.post(&path, &body).await
    }

    async fn acknowledge(&self, queue: &str, ack_id: &str) -> Result<(), CallError> {
        let path = format!("{}:acknowledge", self.subscription(queue));
        self.post(&path, &json!({ "ackIds": [ack_id] })).await
    }

    fn track(&self, queue: &str, ack_id: &str) {
        let now = Instant::now();
        let lease = Lease {
            until: now + self.visibility,
            broker_until: now + Duration::from_secs(self.deadline_secs),
        };
        lock(&self.in_flight)
            .entry(queue.to_owned())
            .or_default()
            .insert(ack_id.to_owned(), lease);
    }

    fn untrack(&self, queue: &str, ack_id: &str) {
        if let Some(m) = lock(&self.in_flight).get_mut(queue) {
            m.remove(ack_id);
        }
    }

    /// One pull of up to `demand` messages; deferred and dead-lettered ones are dealt
    /// with here and never returned.
    async fn fetch(
        self: Arc<Self>,
        queue: Arc<str>,
        demand: usize,
    ) -> Result<Vec<Delivery>, TransportError> {
        let sub_deadline = self.ensure(&queue).await?;
        let path = format!("{}:pull", self.subscription(&queue));
        let body = json!({ "maxMessages": demand.clamp(1, 10) });
        let answer = match self
            .call(Method::POST, &path, Some(&body), PULL_TIMEOUT)
            .await
        {
            Ok(v) => {
                self.outage.reached();
                v
            }
            Err(CallError::NotFound) => {
                // Gone (emulator restart, deleted): the next pull creates it again, after
                // a pause so a subscription still being created is not hammered.
                self.forget(&queue);
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(Vec::new());
            }
            // An idle long poll that outlived our patience, not an outage.
            Err(CallError::TimedOut(_)) => return Ok(Vec::new()),
            // Not retried as other calls are (a long poll is no probe); wait for the
            // endpoint to come back, then the pull loop pulls again.
            Err(CallError::Transient(m)) => {
                self.outage.failed(&m);
                return self.await_endpoint(&queue, m).await;
            }
            Err(e) => return Err(self.error(e, &queue)),
        };
        let mut out = Vec::new();
        let mut adjust = Vec::new();
        for m in answer
            .get("receivedMessages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(d) = self.screen(&queue, m).await {
                if let DeliveryHandle::Token(id) = &d.handle {
                    adjust.push(id.clone());
                    self.track(&queue, id);
                }
                out.push(d);
            }
        }
        if !adjust.is_empty() && self.deadline_secs != sub_deadline {
            let ids: Vec<&str> = adjust.iter().map(String::as_str).collect();
            if let Err(e) = self.modify_deadline(&queue, &ids, self.deadline_secs).await {
                tracing::debug!(queue = %queue, error = ?e, "could not set the ack deadline of pulled messages");
            }
        }
        Ok(out)
    }

    /// After a failed pull: probes the endpoint with backoff for `retry_for`; an empty
    /// result once it answers (the pull loop then pulls again), else `Unavailable` for
    /// the receiver.
    async fn await_endpoint(
        &self,
        queue: &str,
        first: String,
    ) -> Result<Vec<Delivery>, TransportError> {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut last = first;
        loop {
            let pause = backoff.next_delay();
            if Instant::now() + pause >= deadline {
                return Err(self.error(CallError::Transient(last), queue));
            }
            tokio::time::sleep(pause).await;
            // A cheap call to see whether the endpoint is back, before the long pull.
            match self
                .call(Method::GET, &self.subscription(queue), None, CALL_TIMEOUT)
                .await
            {
                Err(CallError::Transient(m) | CallError::TimedOut(m)) => {
                    self.outage.failed(&m);
                    last = m;
                }
                Err(CallError::NotFound) => {
                    self.outage.reached();
                    self.forget(queue);
                    return Ok(Vec::new());
                }
                Ok(_) => {
                    self.outage.reached();
                    return Ok(Vec::new());
                }
                Err(e) => return Err(self.error(e, queue)),
            }
        }
    }

    /// A pulled message as a delivery, or `None` when it is deferred, just came due
    /// (published again without the deferral attribute) or is dead-lettered.
    async fn screen(&self, queue: &Arc<str>, m: &Value) -> Option<Delivery> {
        let ack_id = m.get("ackId").and_then(Value::as_str)?;
        let message = m.get("message")?;
        let data_b64 = message.get("data").and_then(Value::as_str).unwrap_or("");
        let attrs = message.get("attributes").and_then(Value::as_object);
        let attempt = m
            .get("deliveryAttempt")
            .and_then(Value::as_u64)
            .and_then(|a| u32::try_from(a).ok());
        if let Some(at) = attrs
            .and_then(|a| a.get(DELIVER_AT))
            .and_then(Value::as_str)
            .and_then(parse_deliver_at)
        {
            let left = remaining(at, SystemTime::now());
            if !left.is_zero() {
                let secs = ceil_secs(left).min(MAX_DEADLINE_SECS);
                if let Err(e) = self.modify_deadline(queue, &[ack_id], secs).await {
                    tracing::debug!(queue = %queue, error = ?e, "could not defer a Pub/Sub message");
                }
                return None;
            }
            let mut rest = attrs.cloned().unwrap_or_default();
            rest.remove(DELIVER_AT);
            match self.publish(queue, data_b64, &rest).await {
                Ok(()) => {
                    if let Err(e) = self.acknowledge(queue, ack_id).await {
                        tracing::debug!(queue = %queue, error = ?e, "could not ack a deferred Pub/Sub message after publishing it again; it will be delivered twice");
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %queue, error = ?e, "could not publish a due deferred Pub/Sub message again; it comes back after its ack deadline")
                }
            }
            return None;
        }
        if let Some(n) = attempt {
            let dlq_ready = *lock(&self.dlq_state) == DlqState::Ready;
            if n > self.max_deliveries && dlq_ready && **queue != *self.dlq_name() {
                self.dead_letter(queue, ack_id, message, n).await;
                return None;
            }
        }
        let body = match b64().decode(data_b64) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "Pub/Sub message data is not base64; delivering it as sent");
                Bytes::copy_from_slice(data_b64.as_bytes())
            }
        };
        Some(Delivery {
            queue: queue.clone(),
            body,
            handle: DeliveryHandle::Token(ack_id.to_owned()),
            delivery_count: attempt,
        })
    }

    /// Moves a message that was delivered too often to the DLQ topic, with the
    /// attributes Pub/Sub's own dead-lettering adds, then acks it.
    async fn dead_letter(&self, queue: &str, ack_id: &str, message: &Value, attempt: u32) {
        let data_b64 = message.get("data").and_then(Value::as_str).unwrap_or("");
        let mut attrs = message
            .get("attributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        attrs.insert(
            "CloudPubSubDeadLetterSourceSubscription".into(),
            json!(queue),
        );
        attrs.insert(
            "CloudPubSubDeadLetterSourceSubscriptionProject".into(),
            json!(self.project),
        );
        attrs.insert(
            "CloudPubSubDeadLetterSourceDeliveryCount".into(),
            json!((attempt - 1).to_string()),
        );
        if let Some(t) = message.get("publishTime").and_then(Value::as_str) {
            attrs.insert(
                "CloudPubSubDeadLetterSourceTopicPublishTime".into(),
                json!(t),
            );
        }
        let dlq = self.dlq_name();
        if let Err(e) = self.ensure(&dlq).await {
            tracing::warn!(queue, error = %e, "cannot dead-letter a Pub/Sub message; it comes back after its ack deadline");
            return;
        }
        match self.publish(&dlq, data_b64, &attrs).await {
            Ok(()) => {
                tracing::warn!(
                    queue,
                    dlq = %dlq,
                    deliveries = attempt - 1,
                    "message delivered too often; moved to the dead-letter topic"
                );
                if let Err(e) = self.acknowledge(queue, ack_id).await {
                    tracing::debug!(queue, error = ?e, "could not ack a dead-lettered Pub/Sub message; the DLQ may get it twice");
                }
            }
            Err(e) => {
                tracing::warn!(queue, error = ?e, "cannot dead-letter a Pub/Sub message; it comes back after its ack deadline")
            }
        }
    }

    async fn send_with(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        let mut attrs = Map::new();
        let due = (!delay.is_zero()).then(|| SystemTime::now() + delay);
        if let Some(at) = due {
            attrs.insert(DELIVER_AT.to_owned(), json!(format_deliver_at(at)));
        }
        if body.is_empty() {
            // Pub/Sub refuses a message with neither data nor attributes.
            attrs.insert(EMPTY_BODY.to_owned(), json!("true"));
        }
        let size = message_size(body.len(), &attrs);
        if size > MAX_MESSAGE_BYTES {
            return Err(TransportError::TooLarge {
                queue: queue.to_owned(),
                size,
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let data = b64().encode(&body);
        self.on_queue(queue, || self.publish(queue, &data, &attrs))
            .await?;
        if let Some(at) = due {
            let now = SystemTime::now();
            let mut deferred = lock(&self.deferred);
            let list = deferred.entry(queue.to_owned()).or_default();
            list.retain(|t| *t > now);
            list.push(at);
        }
        Ok(())
    }

    fn settle_error(&self, e: CallError, delivery: &Delivery) -> TransportError {
        match e {
            CallError::NotFound => {
                self.forget(&delivery.queue);
                TransportError::UnknownDelivery(delivery.queue.to_string())
            }
            // The emulator and Google answer 400 for ack ids they do not know.
            CallError::Service {
                status: 400,
                message,
            } if message.to_ascii_lowercase().contains("ack") => {
                TransportError::UnknownDelivery(delivery.queue.to_string())
            }
            e => self.error(e, &delivery.queue),
        }
    }
}

/// Pub/Sub topic and subscription names: 3–255 characters, starting with a letter,
/// not with `goog`.
fn valid_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.starts_with("goog")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

#[async_trait]
impl Transport for PubSubTransport {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn queue_name(&self, actor: &str) -> String {
        format!("asya-{}-{actor}", self.inner.namespace)
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        let inner = self.open()?.clone();
        let inbox = self.inbox(queue);
        let name: Arc<str> = Arc::from(queue);
        let fetch: Fetch<Delivery> =
            Arc::new(move |demand| Box::pin(inner.clone().fetch(name.clone(), demand)));
        // Past (or about to pass) its ack deadline, a buffered message is back with other
        // consumers.
        let keep_for = keep_for(Duration::from_secs(self.inner.deadline_secs));
        inbox
            .next_fresh(&fetch, keep_for, |delivery| {
                if let DeliveryHandle::Token(id) = &delivery.handle {
                    self.inner.untrack(queue, id);
                }
                tracing::debug!(
                    queue,
                    "dropped a buffered Pub/Sub message past its ack deadline"
                );
            })
            .await
    }

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.open()?.send_with(queue, body, Duration::ZERO).await
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.open()?.send_with(queue, body, delay).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let inner = self.open()?;
        let id = ack_id(delivery)?;
        inner.untrack(&delivery.queue, id);
        inner
            .acknowledge(&delivery.queue, id)
            .await
            .map_err(|e| inner.settle_error(e, delivery))
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        let inner = self.open()?;
        let id = ack_id(delivery)?;
        inner.untrack(&delivery.queue, id);
        inner
            .modify_deadline(&delivery.queue, &[id], ceil_secs(delay))
            .await
            .map_err(|e| inner.settle_error(e, delivery))
    }

    fn extend_every(&self) -> Option<Duration> {
        Some(
            self.inner
                .visibility
                .min(Duration::from_secs(MAX_DEADLINE_SECS))
                / 3,
        )
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let inner = self.open()?;
        let id = ack_id(delivery)?;
        // Tracked again from now: the lease task's own extensions (visibility windows
        // beyond 600 s) then count from this extension too.
        inner.track(&delivery.queue, id);
        inner
            .modify_deadline(&delivery.queue, &[id], inner.deadline_secs)
            .await
            .map_err(|e| inner.settle_error(e, delivery))
    }

    fn counts_backlog(&self) -> bool {
        // Pub/Sub reports no backlog without Cloud Monitoring (see `depth`).
        false
    }

    async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.open()?.provision(queue).await
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.open()?.delete_queue(queue).await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        let inner = self.open()?;
        let now = Instant::now();
        let in_flight = lock(&inner.in_flight).get_mut(queue).map_or(0, |m| {
            m.retain(|_, lease| lease.until > now);
            m.len() as u64
        });
        let wall = SystemTime::now();
        let delayed = lock(&inner.deferred).get_mut(queue).map_or(0, |list| {
            list.retain(|t| *t > wall);
            list.len() as u64
        });
        Ok(QueueDepth {
            ready: 0,
            delayed,
            in_flight,
        })
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(task) = lock(&self.inner.lease_task).take() {
            task.abort();
        }
        let inboxes: Vec<_> = lock(&self.inner.inboxes).drain().collect();
        let mut left: HashMap<String, Vec<String>> = HashMap::new();
        for (queue, inbox) in inboxes {
            for d in inbox.close() {
                if let DeliveryHandle::Token(id) = d.handle {
                    left.entry(queue.clone()).or_default().push(id);
                }
            }
        }
        // Messages pulled but never handed out go back at once rather than after their
        // ack deadline; bounded, so closing never hangs on a dead endpoint.
        let release = async {
            for (queue, ids) in &left {
                let path = format!("{}:modifyAckDeadline", self.inner.subscription(queue));
                let body = json!({ "ackIds": ids, "ackDeadlineSeconds": 0 });
                let _ = self
                    .inner
                    .call(Method::POST, &path, Some(&body), Duration::from_secs(2))
                    .await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), release).await;
        tracing::debug!(endpoint = %self.inner.shown_url, "Pub/Sub transport closed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("asya-prod-text-analyzer"));
        assert!(valid_name("asya-ns-dlq"));
        assert!(!valid_name("ab"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("goog-x"));
        assert!(!valid_name(&format!("a{}", "b".repeat(255))));
    }

    #[test]
    fn errors() {
        let body = r#"{"error":{"code":404,"message":"Topic not found","status":"NOT_FOUND"}}"#;
        assert!(matches!(classify(404, body), CallError::NotFound));
        assert_eq!(error_message(body), "NOT_FOUND: Topic not found");
        assert!(matches!(classify(409, "{}"), CallError::AlreadyExists));
        assert!(matches!(classify(403, "{}"), CallError::Auth(_)));
        assert!(matches!(classify(401, "{}"), CallError::Auth(_)));
        assert!(matches!(classify(503, "{}"), CallError::Transient(_)));
        assert!(matches!(classify(429, "{}"), CallError::Transient(_)));
        assert!(matches!(
            classify(400, "oops"),
            CallError::Service { status: 400, .. }
        ));
    }

    #[test]
    fn leases_are_extended_near_their_deadline_until_the_visibility_ends() {
        let t0 = Instant::now();
        let lease = |visibility: u64, broker: u64| Lease {
            until: t0 + Duration::from_secs(visibility),
            broker_until: t0 + Duration::from_secs(broker),
        };
        let mut leases: HashMap<String, HashMap<String, Lease>> = HashMap::new();
        let q = leases.entry("q".to_owned()).or_default();
        q.insert("long".into(), lease(1800, 600));
        q.insert("short".into(), lease(300, 300));
        // Far from the deadline: nothing to do.
        assert!(due_extensions(&mut leases, t0 + Duration::from_secs(60)).is_empty());
        // Within 90 s of it: the long lease gets another 600 s.
        let now = t0 + Duration::from_secs(540);
        assert_eq!(
            due_extensions(&mut leases, now),
            vec![("q".to_owned(), 600, vec!["long".to_owned()])]
        );
        assert_eq!(
            leases["q"]["long"].broker_until,
            now + Duration::from_secs(600)
        );
        assert!(due_extensions(&mut leases, now).is_empty(), "extended once");
        // Near the end of the visibility: only what is left.
        let now = t0 + Duration::from_secs(1100);
        assert_eq!(
            due_extensions(&mut leases, now),
            vec![("q".to_owned(), 600, vec!["long".to_owned()])] // 700 s left, capped
        );
        let now = t0 + Duration::from_secs(1650);
        assert_eq!(
            due_extensions(&mut leases, now),
            vec![("q".to_owned(), 150, vec!["long".to_owned()])]
        );
        // Past the visibility: dropped, with the short one.
        assert!(due_extensions(&mut leases, t0 + Duration::from_secs(1801)).is_empty());
        assert!(leases["q"].is_empty());
    }

    #[test]
    fn sizes_and_deadlines() {
        let mut attrs = Map::new();
        attrs.insert(DELIVER_AT.to_owned(), json!("2026-01-01T00:00:00.000Z"));
        assert_eq!(message_size(10, &attrs), 10 + DELIVER_AT.len() + 24);
        assert_eq!(subscription_deadline(3), 10);
        assert_eq!(subscription_deadline(300), 300);
        assert_eq!(subscription_deadline(3600), 600);
    }
}
