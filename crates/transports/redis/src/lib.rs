//! Redis Streams transport (`redis`, platform.md §1.3).
//!
//! # Layout on the server
//!
//! | key | type | holds |
//! |---|---|---|
//! | `asya-{ns}-{actor}` | stream | ready and in-flight messages, field `body` (+ `deliveries`) |
//! | consumer group `asya` on it | | one consumer per sidecar (`ConnectOptions::consumer_name`) |
//! | `asya-{ns}-{actor}:delayed` | sorted set | delayed messages: score = due time (ms, server clock), member = `{uuid}:{body}` |
//! | `asya-{ns}-dlq` | stream | dead letters, field `body` (+ `dead-lettered-from`) |
//!
//! # Semantics
//!
//! - **send**: `XADD queue * body <bytes>`; the reply comes once the server applied it
//!   (durable as far as the server's `appendfsync` goes: `always` for the test servers).
//! - **receive**: a background task per queue reads with `XREADGROUP … COUNT 1 BLOCK`
//!   on a connection of its own (a blocking read would stall every other command on a
//!   shared connection) and first reclaims entries idle longer than the visibility
//!   timeout with `XAUTOCLAIM`. It also takes back the entries pending for its own
//!   consumer name that it does not hold (read before a crash by a process of the
//!   same name, or by an `XREADGROUP` whose reply an outage swallowed): all of them at
//!   its start and after a reconnect, and every 5 s those idle for 10 s. What it reads waits in an in-process inbox for the next
//!   `receive`, which is what makes `receive` cancel-safe (see
//!   `troupe_transport::inbox`).
//! - **extend** (a live handler's lease): `XCLAIM … JUSTID` to itself, resetting the
//!   entry's idle time, after checking (in one script) that it is still its own.
//! - **ack**: `XACK` + `XDEL`. **requeue**: re-`XADD` the body (with the delivery count
//!   so far), then `XACK` + `XDEL` the old entry, in one Lua script.
//! - **delays**: `send_with_delay` and `nack(d, delay)` add the message to the delayed set;
//!   every transport runs a mover every 500 ms that atomically (Lua) pops due members of
//!   the queues it knows and `XADD`s them.
//! - **delivery count** = deliveries before the entry was (re-)added (field `deliveries`,
//!   or `#n` in a delayed member) + the group's delivery counter of the entry.
//! - **dead letters**: a delivery that fails (requeue or nack) once it has been delivered
//!   `max_deliveries` times, or an entry found with a count above that, is moved to
//!   `asya-{ns}-dlq` with its exact body. The DLQ itself never dead-letters.
//! - **outages**: commands retry with backoff (100 ms doubling to 2 s) for up to 10 s,
//!   receive retries until the broker is back; one WARN per outage, one INFO on recovery.

mod provision;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Value};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use troupe_transport::{
    redact_url, ConnectOptions, Delivery, DeliveryHandle, QueueDepth, Transport, TransportError,
};

use troupe_transport::inbox::Inbox;
use troupe_transport::retry::Backoff;

const KIND: &str = "redis";
/// Consumer group of every actor stream (platform.md §1.3).
pub const GROUP: &str = "asya";
/// How often the mover looks for due delayed messages.
const MOVER_INTERVAL: Duration = Duration::from_millis(500);
/// Most delayed messages one mover script moves.
const MOVER_BATCH: usize = 100;
/// Longest `XREADGROUP … BLOCK` (platform.md §1.3: 20000 ms).
const MAX_BLOCK: Duration = Duration::from_secs(20);
/// How long a command keeps retrying through an outage before it reports it.
const RETRY_WINDOW: Duration = Duration::from_secs(10);
/// First and longest pause between retries.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Longest pause between reads of a fetch task that keep failing.
const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long to wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a non-blocking command may take before the connection counts as dead.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Redis's default `proto-max-bulk-len` (512 MiB), used when `CONFIG GET` is refused.
const DEFAULT_BULK_LIMIT: usize = 512 * 1024 * 1024;
/// Room kept below the bulk limit for a delayed member's `{uuid}#{n}:` prefix.
const MEMBER_OVERHEAD: usize = 64;
/// An own pending entry this transport does not hold and that has been idle this long
/// is an orphan: its `XREADGROUP` reply would have come by now (a blocking read's reply
/// follows at once, and a connection silent for [`RESPONSE_TIMEOUT`] counts as dead).
const ORPHAN_IDLE: Duration = RESPONSE_TIMEOUT;
/// How often a receiving queue looks for its own orphans.
const ORPHAN_SCAN: Duration = Duration::from_secs(5);
/// Most own pending entries one take-back looks at.
const TAKE_BACK_BATCH: usize = 100;

fn held_key(queue: &str, id: &str) -> String {
    format!("{queue} {id}")
}

/// `asya-{namespace}-{actor}` (protocol.md §4).
pub fn queue_name(namespace: &str, actor: &str) -> String {
    format!("asya-{namespace}-{actor}")
}

/// `asya-{namespace}-dlq`: where messages go after too many deliveries.
pub fn dead_letter_queue(namespace: &str) -> String {
    format!("asya-{namespace}-dlq")
}

/// The sorted set holding `queue`'s delayed messages.
pub fn delayed_key(queue: &str) -> String {
    format!("{queue}:delayed")
}

/// A delayed-set member: `{id}:{body}`, or `{id}#{prior}:{body}` when the message was
/// delivered `prior` times before (a nack with delay), so the mover can carry the count.
fn encode_member(id: &str, prior: u32, body: &[u8]) -> Vec<u8> {
    let head = if prior == 0 {
        format!("{id}:")
    } else {
        format!("{id}#{prior}:")
    };
    let mut m = Vec::with_capacity(head.len() + body.len());
    m.extend_from_slice(head.as_bytes());
    m.extend_from_slice(body);
    m
}

/// Inverse of [`encode_member`] (the mover does this in Lua; kept here to test the
/// format): `(prior deliveries, body)`.
#[cfg(test)]
fn decode_member(m: &[u8]) -> (u32, &[u8]) {
    match m.iter().position(|&b| b == b':') {
        Some(sep) => {
            let head = &m[..sep];
            let prior = head
                .iter()
                .position(|&b| b == b'#')
                .and_then(|h| std::str::from_utf8(&head[h + 1..]).ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (prior, &m[sep + 1..])
        }
        None => (0, m),
    }
}

/// Checks the URL and turns it into connection settings; the error never shows a password.
pub fn parse_url(url: &str) -> Result<redis::ConnectionInfo, TransportError> {
    use redis::IntoConnectionInfo;
    let redacted = redact_url(url);
    let scheme = url.split_once("://").map(|(s, _)| s);
    if scheme == Some("rediss") {
        return Err(TransportError::Config {
            kind: KIND,
            message: format!(
                "TROUPE_REDIS_URL '{redacted}': TLS (rediss://) is not supported yet; use redis:// on a trusted network"
            ),
        });
    }
    if !matches!(scheme, Some("redis" | "redis+unix" | "unix")) {
        return Err(TransportError::Config {
            kind: KIND,
            message: format!(
                "TROUPE_REDIS_URL '{redacted}' must look like redis://[:password@]host:port/db"
            ),
        });
    }
    url.into_connection_info()
        .map_err(|e| TransportError::Config {
            kind: KIND,
            message: format!("cannot parse TROUPE_REDIS_URL '{redacted}': {e}"),
        })
}

fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_millis() as u64;
    if Duration::from_millis(ms) < d {
        ms + 1
    } else {
        ms
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connection trouble that goes away by waiting: retry it.
fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::IoError
        )
}

fn is_auth(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
        || e.to_string().contains("NOAUTH")
        || e.to_string().contains("WRONGPASS")
}

/// The stream or its group is gone (never created, or the server lost its data).
fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

/// One WARN per outage and one INFO when it ends, however many tasks and connections
/// notice it.
struct Health {
    url: String,
    /// Fast path: most calls find the broker up and take no lock.
    down: AtomicBool,
    state: Mutex<HealthState>,
    /// How many outages ended so far: a receiver that sees it change takes back its
    /// own pending entries.
    recoveries: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct HealthState {
    /// When a command last succeeded after an outage.
    recovered_at: Option<Instant>,
    /// The current outage was reported with a WARN.
    announced: bool,
}

/// Failures this soon after a recovery belong to the same outage: each connection of
/// the transport reconnects on its own, and one may still return its stale error after
/// another has recovered.
const OUTAGE_GRACE: Duration = Duration::from_secs(5);

impl Health {
    fn new(url: String) -> Self {
        Health {
            url,
            down: AtomicBool::new(false),
            state: Mutex::new(HealthState::default()),
            recoveries: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn failed(&self, e: &RedisError) {
        if self.down.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut st = lock(&self.state);
        let continued = st
            .recovered_at
            .is_some_and(|at| at.elapsed() < OUTAGE_GRACE);
        if continued {
            tracing::debug!(broker = %self.url, error = %e, "Redis connection still recovering");
        } else {
            st.announced = true;
            tracing::warn!(broker = %self.url, error = %e, "lost the connection to Redis; retrying with backoff");
        }
    }

    fn ok(&self) {
        if !self.down.swap(false, Ordering::SeqCst) {
            return;
        }
        self.recoveries.fetch_add(1, Ordering::SeqCst);
        let mut st = lock(&self.state);
        st.recovered_at = Some(Instant::now());
        if std::mem::take(&mut st.announced) {
            tracing::info!(broker = %self.url, "reconnected to Redis");
        }
    }
}

/// One stream entry as read.
#[derive(Debug, PartialEq)]
struct Entry {
    id: String,
    body: Bytes,
    /// Deliveries before this entry was added.
    prior: u32,
}

fn value_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

fn value_string(v: Value) -> Option<String> {
    value_bytes(v).and_then(|b| String::from_utf8(b).ok())
}

fn value_u64(v: Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(n).ok(),
        other => value_string(other).and_then(|s| s.parse().ok()),
    }
}

fn value_items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// `[id, [field, value, ...]]` → entry; `None` for a deleted entry (nil fields).
fn parse_entry(v: Value) -> Option<Entry> {
    let mut parts = value_items(v).into_iter();
    let id = value_string(parts.next()?)?;
    let fields = parts.next()?;
    if matches!(fields, Value::Nil) {
        return None;
    }
    let mut body = Bytes::new();
    let mut prior = 0;
    let mut kv = value_items(fields).into_iter();
    while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
        match value_bytes(k).as_deref() {
            Some(b"body") => body = value_bytes(v).map(Bytes::from).unwrap_or_default(),
            Some(b"deliveries") => {
                prior = value_u64(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    Some(Entry { id, body, prior })
}

/// `XREADGROUP` reply (`[[stream, [entry...]]...]` or nil) → entries.
fn parse_read_reply(v: Value) -> Vec<Entry> {
    value_items(v)
        .into_iter()
        .flat_map(|stream| {
            let mut parts = value_items(stream).into_iter();
            let _name = parts.next();
            parts.next().map(value_items).unwrap_or_default()
        })
        .filter_map(parse_entry)
        .collect()
}

/// Reclaim script reply → (next cursor, [(entry, times delivered)]).
fn parse_reclaim_reply(v: Value) -> (String, Vec<(Entry, u64)>) {
    let mut parts = value_items(v).into_iter();
    let cursor = parts
        .next()
        .and_then(value_string)
        .unwrap_or_else(|| "0-0".to_owned());
    let claimed = parts
        .next()
        .map(value_items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| {
            let mut p = value_items(item).into_iter();
            let id = p.next()?;
            let fields = p.next()?;
            let times = p.next().and_then(value_u64).unwrap_or(1);
            parse_entry(Value::Array(vec![id, fields])).map(|e| (e, times))
        })
        .collect();
    (cursor, claimed)
}

/// Receive-side state of one queue.
struct QueueRx {
    queue: Arc<str>,
    inbox: Inbox<Delivery>,
    /// The fetch task's own connection (blocking reads), kept across task restarts.
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// `XAUTOCLAIM` cursor and when the last full pass over the pending list ended.
    reclaim: Mutex<(String, Option<Instant>)>,
    /// The transport's reconnect count when this queue last took back its own pending
    /// entries; `u64::MAX`: not yet.
    rescanned: std::sync::atomic::AtomicU64,
    /// When own orphaned entries were last looked for.
    orphan_scan: Mutex<Option<Instant>>,
}

struct Scripts {
    ack: redis::Script,
    move_entry: redis::Script,
    delay: redis::Script,
    mover: redis::Script,
    reclaim: redis::Script,
    depth: redis::Script,
    touch: redis::Script,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    opts: ConnectOptions,
    url: String,
    dlq: String,
    max_body: usize,
    closed: AtomicBool,
    health: Health,
    scripts: Scripts,
    /// Queues whose consumer group is known to exist.
    groups: Mutex<HashSet<String>>,
    /// Queues the mover watches.
    delayed: Mutex<HashSet<String>>,
    receivers: Mutex<HashMap<String, Arc<QueueRx>>>,
    mover: Mutex<Option<AbortHandle>>,
    /// Entries this transport handed out (or buffered) and not yet settled, as
    /// `{queue} {id}`: what a take-back of its own pending entries must leave alone.
    held: Mutex<HashSet<String>>,
}

/// Redis Streams transport. Cheap to share behind an `Arc`; all clones of the inner
/// state use one multiplexed connection plus one blocking connection per received queue.
pub struct RedisTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("url", &self.inner.url)
            .field("namespace", &self.inner.opts.namespace)
            .finish()
    }
}

impl RedisTransport {
    /// Connects to `url` (`redis://[:password@]host:port/db`, as in `TROUPE_REDIS_URL`).
    /// Fails with [`TransportError::Unavailable`] if the server cannot be reached,
    /// [`TransportError::Auth`] if it refuses the password, [`TransportError::Config`]
    /// for a bad URL or options.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, TransportError> {
        let redacted = redact_url(url);
        validate(&options)?;
        let info = parse_url(url)?;
        let client = redis::Client::open(info).map_err(|e| TransportError::Config {
            kind: KIND,
            message: format!("cannot use TROUPE_REDIS_URL '{redacted}': {e}"),
        })?;
        let connect_err = |e: RedisError| classify(&redacted, &e);

        // One plain attempt first, so an unreachable server or a bad password fails fast
        // instead of going through the connection manager's retries.
        let probe_cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&probe_cfg)
            .await
            .map_err(connect_err)?;
        // Without a password in the URL the connection opens fine and the first command
        // is refused with NOAUTH.
        redis::cmd("PING")
            .query_async::<()>(&mut probe)
            .await
            .map_err(connect_err)?;
        let bulk_limit = redis::cmd("CONFIG")
            .arg("GET")
            .arg("proto-max-bulk-len")
            .query_async::<Value>(&mut probe)
            .await
            .ok()
            .and_then(|v| value_items(v).into_iter().nth(1))
            .and_then(value_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_BULK_LIMIT);
        drop(probe);

        let conn = ConnectionManager::new_with_config(client.clone(), manager_config(None))
            .await
            .map_err(connect_err)?;
        let inner = Arc::new(Inner {
            client,
            conn,
            dlq: dead_letter_queue(&options.namespace),
            opts: options,
            url: redacted.clone(),
            max_body: bulk_limit.saturating_sub(MEMBER_OVERHEAD),
            closed: AtomicBool::new(false),
            health: Health::new(redacted),
            scripts: Scripts {
                ack: scripts::ack(),
                move_entry: scripts::move_entry(),
                delay: scripts::delay(),
                mover: scripts::mover(),
                reclaim: scripts::reclaim(),
                depth: scripts::depth(),
                touch: scripts::touch(),
            },
            groups: Mutex::new(HashSet::new()),
            delayed: Mutex::new(HashSet::new()),
            receivers: Mutex::new(HashMap::new()),
            mover: Mutex::new(None),
            held: Mutex::new(HashSet::new()),
        });
        let task = tokio::spawn(mover_loop(Arc::downgrade(&inner)));
        *lock(&inner.mover) = Some(task.abort_handle());
        tracing::debug!(broker = %inner.url, consumer = %inner.opts.consumer_name, "connected to Redis");
        Ok(RedisTransport { inner })
    }

    /// Largest body this transport sends: the server's `proto-max-bulk-len` less room for
    /// the delayed-set member prefix.
    pub fn max_message_bytes(&self) -> usize {
        self.inner.max_body
    }

    /// The dead-letter queue of this transport's namespace.
    pub fn dead_letter_queue(&self) -> &str {
        &self.inner.dlq
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
    if o.consumer_name.is_empty() {
        return bad("the consumer name must not be empty".into());
    }
    if o.max_deliveries == 0 {
        return bad("max_deliveries must be at least 1".into());
    }
    if o.visibility_timeout < Duration::from_millis(100) {
        return bad(format!(
            "the visibility timeout ({:?}) must be at least 100 ms",
            o.visibility_timeout
        ));
    }
    Ok(())
}

fn manager_config(response_timeout: Option<Duration>) -> ConnectionManagerConfig {
    // One reconnect attempt per command: the retry loops here own the backoff, so a
    // command does not hang in the manager's own retries past our retry window.
    ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(response_timeout.unwrap_or(RESPONSE_TIMEOUT))
}

fn classify(redacted: &str, e: &RedisError) -> TransportError {
    if is_auth(e) {
        TransportError::Auth {
            kind: KIND,
            url: redacted.to_owned(),
            message: e.to_string(),
        }
    } else {
        TransportError::Unavailable {
            kind: KIND,
            url: redacted.to_owned(),
            message: e.to_string(),
        }
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

    fn map_err(&self, queue: &str, e: RedisError) -> TransportError {
        if is_auth(&e) || is_transient(&e) {
            classify(&self.url, &e)
        } else {
            TransportError::Io {
                queue: queue.to_owned(),
                message: e.to_string(),
            }
        }
    }

    fn check_size(&self, queue: &str, body: &Bytes) -> Result<(), TransportError> {
        if body.len() > self.max_body {
            return Err(TransportError::TooLarge {
                queue: queue.to_owned(),
                size: body.len(),
                limit: self.max_body,
            });
        }
        Ok(())
    }

    /// Runs `op` on the shared connection, retrying connection trouble for up to
    /// [`RETRY_WINDOW`].
    async fn run<T, F, Fut>(&self, queue: &str, mut op: F) -> Result<T, TransportError>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = Instant::now() + RETRY_WINDOW;
        let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
        loop {
            self.check_open()?;
            match op(self.conn.clone()).await {
                Ok(v) => {
                    self.health.ok();
                    return Ok(v);
                }
                Err(e) if is_transient(&e) && !is_auth(&e) => {
                    self.health.failed(&e);
                    let pause = backoff.next_delay();
                    if Instant::now() + pause >= deadline {
                        return Err(self.map_err(queue, e));
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(self.map_err(queue, e)),
            }
        }
    }

    /// Creates the stream and its group on first use. The group starts at `0` so that
    /// messages sent before any consumer existed are delivered too.
    async fn ensure_group(&self, queue: &str) -> Result<(), RedisError> {
        if lock(&self.groups).contains(queue) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(queue)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut conn)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        lock(&self.groups).insert(queue.to_owned());
        Ok(())
    }

    fn watch_delayed(&self, queue: &str) {
        let mut d = lock(&self.delayed);
        if !d.contains(queue) {
            d.insert(queue.to_owned());
        }
    }

    fn rx(&self, queue: &str) -> Arc<QueueRx> {
        lock(&self.receivers)
            .entry(queue.to_owned())
            .or_insert_with(|| {
                Arc::new(QueueRx {
                    queue: Arc::from(queue),
                    inbox: Inbox::new(),
                    conn: tokio::sync::Mutex::new(None),
                    reclaim: Mutex::new(("0-0".to_owned(), None)),
                    rescanned: std::sync::atomic::AtomicU64::new(u64::MAX),
                    orphan_scan: Mutex::new(None),
                })
            })
            .clone()
    }

    /// How long a blocking read waits, which is also how often idle entries are
    /// reclaimed while the queue is quiet.
    fn block_time(&self) -> Duration {
        (self.opts.visibility_timeout / 4).clamp(Duration::from_millis(100), MAX_BLOCK)
    }

    /// Turns a read entry into a delivery, or dead-letters it when it has been
    /// delivered too often. `times`: the group's delivery counter for the entry.
    async fn admit(
        &self,
        rx: &QueueRx,
        entry: Entry,
        times: u64,
    ) -> Result<Option<Delivery>, RedisError> {
        let count = u64::from(entry.prior).saturating_add(times);
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if count > self.opts.max_deliveries && *rx.queue != *self.dlq {
            tracing::warn!(queue = %rx.queue, id = %entry.id, deliveries = count - 1, "message delivered too often; moving it to the dead-letter queue");
            self.dead_letter(&rx.queue, &entry.id, &entry.body).await?;
            return Ok(None);
        }
        lock(&self.held).insert(held_key(&rx.queue, &entry.id));
        Ok(Some(Delivery {
            queue: rx.queue.clone(),
            body: entry.body,
            handle: DeliveryHandle::Token(entry.id),
            delivery_count: Some(count),
        }))
    }

    fn release(&self, d: &Delivery) {
        if let DeliveryHandle::Token(id) = &d.handle {
            lock(&self.held).remove(&held_key(&d.queue, id));
        }
    }

    /// Takes back the entries pending for this consumer name that this transport does
    /// not hold: read before a crash by an earlier process of the same name, or read by
    /// an `XREADGROUP` whose reply an outage swallowed. Without this they would wait
    /// out the visibility window.
    async fn take_back_own(
        &self,
        rx: &QueueRx,
        min_idle: Duration,
    ) -> Result<Vec<Delivery>, RedisError> {
        let queue: &str = &rx.queue;
        let mut conn = self.conn.clone();
        let pending: Value = redis::cmd("XPENDING")
            .arg(queue)
            .arg(GROUP)
            .arg("IDLE")
            .arg(ceil_ms(min_idle))
            .arg("-")
            .arg("+")
            .arg(TAKE_BACK_BATCH)
            .arg(&self.opts.consumer_name)
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        for row in value_items(pending) {
            let mut f = value_items(row).into_iter();
            let (Some(id), _, Some(idle), Some(times)) = (
                f.next().and_then(value_string),
                f.next(),
                f.next().and_then(value_u64),
                f.next().and_then(value_u64),
            ) else {
                continue;
            };
            if lock(&self.held).contains(&held_key(queue, &id)) {
                continue;
            }
            // min-idle = the idle time just seen: an entry another consumer claimed
            // meanwhile has a shorter one and stays with it.
            let claimed: Value = redis::cmd("XCLAIM")
                .arg(queue)
                .arg(GROUP)
                .arg(&self.opts.consumer_name)
                .arg(idle)
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            for entry in value_items(claimed).into_iter().filter_map(parse_entry) {
                tracing::debug!(queue, id = %entry.id, "took back an own pending entry");
                if let Some(d) = self.admit(rx, entry, times.saturating_add(1)).await? {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    async fn dead_letter(&self, queue: &str, id: &str, body: &Bytes) -> Result<bool, RedisError> {
        let mut conn = self.conn.clone();
        let moved: i64 = self
            .scripts
            .move_entry
            .key(queue)
            .key(&self.dlq)
            .arg(GROUP)
            .arg(id)
            .arg(body.as_ref())
            .arg("")
            .arg(queue)
            .invoke_async(&mut conn)
            .await?;
        Ok(moved == 1)
    }

    /// A read's reply, or `None` when the consumer group is gone (the stream was
    /// deleted, or the server lost its data): the group is then forgotten, so the next
    /// round creates it again.
    fn unless_nogroup(
        &self,
        queue: &str,
        reply: Result<Value, RedisError>,
    ) -> Result<Option<Value>, RedisError> {
        match reply {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_nogroup(&e) => {
                lock(&self.groups).remove(queue);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One read for `rx`: reclaim if due, else a blocking `XREADGROUP`. `None`: nothing
    /// to hand out this round.
    async fn fetch_one(&self, rx: &QueueRx) -> Result<Option<Delivery>, RedisError> {
        let queue: &str = &rx.queue;
        self.ensure_group(queue).await?;
        let recoveries = self.health.recoveries.load(Ordering::SeqCst);
        let fresh = rx.rescanned.swap(recoveries, Ordering::SeqCst) != recoveries;
        let orphans_due = {
            let mut at = lock(&rx.orphan_scan);
            let due = fresh || at.is_none_or(|t| t.elapsed() >= ORPHAN_SCAN);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if orphans_due {
            // At start and after a reconnect no read of this queue is under way, so
            // every own entry not held is an orphan; otherwise only those whose reply
            // is long overdue are.
            let min_idle = if fresh { Duration::ZERO } else { ORPHAN_IDLE };
            let mut taken = self.take_back_own(rx, min_idle).await?.into_iter();
            if let Some(first) = taken.next() {
                // The inbox takes one per round; the rest wait in it too.
                for d in taken {
                    rx.inbox.push(Ok(d));
                }
                return Ok(Some(first));
            }
        }
        let reclaim_every = self.block_time();
        let cursor = {
            let r = lock(&rx.reclaim);
            match r.1 {
                Some(at) if at.elapsed() < reclaim_every => None,
                _ => Some(r.0.clone()),
            }
        };
        if let Some(cursor) = cursor {
            let mut conn = self.conn.clone();
            let reply = self
                .scripts
                .reclaim
                .key(queue)
                .arg(GROUP)
                .arg(&self.opts.consumer_name)
                .arg(ceil_ms(self.opts.visibility_timeout))
                .arg(&cursor)
                .arg(1)
                .invoke_async(&mut conn)
                .await;
            let Some(reply) = self.unless_nogroup(queue, reply)? else {
                return Ok(None);
            };
            let (next, claimed) = parse_reclaim_reply(reply);
            {
                let mut r = lock(&rx.reclaim);
                // A pass over the whole pending list ends when the cursor wraps to 0-0;
                // until then the next round goes on scanning.
                r.1 = if next == "0-0" {
                    Some(Instant::now())
                } else {
                    r.1
                };
                r.0 = next;
            }
            for (entry, times) in claimed {
                tracing::debug!(queue, id = %entry.id, "reclaimed an entry idle past the visibility timeout");
                if let Some(d) = self.admit(rx, entry, times).await? {
                    return Ok(Some(d));
                }
            }
        }

        let mut guard = rx.conn.lock().await;
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => {
                let c = ConnectionManager::new_with_config(
                    self.client.clone(),
                    manager_config(Some(self.block_time() + RESPONSE_TIMEOUT)),
                )
                .await?;
                guard.insert(c)
            }
        };
        let reply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.opts.consumer_name)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ceil_ms(self.block_time()))
            .arg("STREAMS")
            .arg(queue)
            .arg(">")
            .query_async(conn)
            .await;
        if reply.as_ref().is_err_and(|e| !is_nogroup(e)) {
            // The read's own connection broke (a broker restart): the server may have
            // applied this read and lost its reply. No read of this queue is under way
            // now, so the next round takes back every own entry at once rather than
            // after [`ORPHAN_IDLE`] and a whole blocking read.
            rx.rescanned.store(u64::MAX, Ordering::SeqCst);
        }
        let Some(reply) = self.unless_nogroup(queue, reply)? else {
            return Ok(None);
        };
        drop(guard);
        for entry in parse_read_reply(reply) {
            if let Some(d) = self.admit(rx, entry, 1).await? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    async fn receive(self: &Arc<Self>, queue: &str) -> Result<Delivery, TransportError> {
        self.check_open()?;
        let rx = self.rx(queue);
        // The mover must run for every queue this sidecar consumes: delayed messages
        // for it may come from any sender.
        self.watch_delayed(queue);
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

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.check_open()?;
        self.check_size(queue, &body)?;
        self.run(queue, |mut c| {
            let body = body.clone();
            async move {
                redis::cmd("XADD")
                    .arg(queue)
                    .arg("*")
                    .arg("body")
                    .arg(body.as_ref())
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    /// Adds `body` to the delayed set; with `pending` (id, prior deliveries) it replaces
    /// that pending entry. `Ok(false)`: the entry was not pending.
    async fn delay(
        &self,
        queue: &str,
        body: &Bytes,
        delay: Duration,
        pending: Option<(&str, u32)>,
    ) -> Result<bool, TransportError> {
        self.check_size(queue, body)?;
        self.watch_delayed(queue);
        let member = encode_member(
            &uuid::Uuid::new_v4().to_string(),
            pending.map_or(0, |(_, n)| n),
            body,
        );
        let key = delayed_key(queue);
        let id = pending.map_or("", |(id, _)| id);
        let delay_ms = ceil_ms(delay);
        let script = &self.scripts.delay;
        let (key, member) = (&key, &member);
        let done: i64 = self
            .run(queue, |mut c| async move {
                script
                    .key(key)
                    .key(queue)
                    .arg(delay_ms)
                    .arg(member)
                    .arg(GROUP)
                    .arg(id)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(done == 1)
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        self.check_open()?;
        let key = &delayed_key(queue);
        let script = &self.scripts.depth;
        let reply: Vec<u64> = self
            .run(queue, |mut c| async move {
                script
                    .key(queue)
                    .key(key)
                    .arg(GROUP)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(QueueDepth {
            ready: reply.first().copied().unwrap_or(0),
            delayed: reply.get(1).copied().unwrap_or(0),
            in_flight: reply.get(2).copied().unwrap_or(0),
        })
    }

    async fn move_to(
        &self,
        d: &Delivery,
        target: &str,
        prior: Option<u32>,
    ) -> Result<(), TransportError> {
        let DeliveryHandle::Token(id) = &d.handle else {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        };
        let queue: &str = &d.queue;
        let prior = &prior.map(|n| n.to_string()).unwrap_or_default();
        let from = if prior.is_empty() { queue } else { "" };
        let script = &self.scripts.move_entry;
        let body = &d.body;
        let moved: i64 = self
            .run(queue, |mut c| async move {
                script
                    .key(queue)
                    .key(target)
                    .arg(GROUP)
                    .arg(id.as_str())
                    .arg(body.as_ref())
                    .arg(prior)
                    .arg(from)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if moved == 1 {
            Ok(())
        } else {
            Err(TransportError::UnknownDelivery(queue.to_owned()))
        }
    }

    async fn nack(&self, d: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.check_open()?;
        let count = d.delivery_count.unwrap_or(1);
        if count >= self.opts.max_deliveries && *d.queue != *self.dlq {
            tracing::warn!(queue = %d.queue, deliveries = count, "message failed on its last allowed delivery; moving it to the dead-letter queue");
            return self.move_to(d, &self.dlq.clone(), None).await;
        }
        if delay.is_zero() {
            return self.move_to(d, &d.queue, Some(count)).await;
        }
        let DeliveryHandle::Token(id) = &d.handle else {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        };
        if self
            .delay(&d.queue, &d.body, delay, Some((id, count)))
            .await?
        {
            Ok(())
        } else {
            Err(TransportError::UnknownDelivery(d.queue.to_string()))
        }
    }

    async fn extend(&self, d: &Delivery) -> Result<(), TransportError> {
        self.check_open()?;
        let DeliveryHandle::Token(id) = &d.handle else {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        };
        let queue: &str = &d.queue;
        let script = &self.scripts.touch;
        let consumer = self.opts.consumer_name.as_str();
        let touched: i64 = self
            .run(queue, |mut c| async move {
                script
                    .key(queue)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(id.as_str())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if touched == 1 {
            Ok(())
        } else {
            Err(TransportError::UnknownDelivery(queue.to_owned()))
        }
    }

    async fn ack(&self, d: &Delivery) -> Result<(), TransportError> {
        self.check_open()?;
        let DeliveryHandle::Token(id) = &d.handle else {
            return Err(TransportError::UnknownDelivery(d.queue.to_string()));
        };
        let queue: &str = &d.queue;
        let script = &self.scripts.ack;
        let acked: i64 = self
            .run(queue, |mut c| async move {
                script
                    .key(queue)
                    .arg(GROUP)
                    .arg(id.as_str())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if acked == 1 {
            Ok(())
        } else {
            Err(TransportError::UnknownDelivery(queue.to_owned()))
        }
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(task) = lock(&self.mover).take() {
            task.abort();
        }
        let receivers: Vec<Arc<QueueRx>> = lock(&self.receivers).drain().map(|(_, r)| r).collect();
        for rx in receivers {
            rx.inbox.abort_fetch();
            // Read but never handed out: put back at once, without counting the delivery,
            // rather than leave them for the reclaim after the visibility timeout.
            for d in rx.inbox.drain() {
                let prior = d.delivery_count.unwrap_or(1).saturating_sub(1);
                let DeliveryHandle::Token(id) = &d.handle else {
                    continue;
                };
                let mut conn = self.conn.clone();
                let put_back = async {
                    self.scripts
                        .move_entry
                        .key(&*d.queue)
                        .key(&*d.queue)
                        .arg(GROUP)
                        .arg(id.as_str())
                        .arg(d.body.as_ref())
                        .arg(prior.to_string())
                        .arg("")
                        .invoke_async::<i64>(&mut conn)
                        .await
                };
                if let Ok(Err(e)) = tokio::time::timeout(RESPONSE_TIMEOUT, put_back).await {
                    tracing::debug!(queue = %d.queue, error = %e, "could not put back an unreceived message; it comes back after the visibility timeout");
                }
            }
        }
    }
}

/// Reads for `rx` while `receive` calls wait on it; ends when none do.
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
                inner.health.ok();
                backoff = Backoff::new(BACKOFF_START, FETCH_BACKOFF_MAX);
                if let Some(d) = found {
                    rx.inbox.push(Ok(d));
                }
            }
            Err(e) => {
                if is_transient(&e) && !is_auth(&e) {
                    inner.health.failed(&e);
                } else {
                    tracing::warn!(queue = %rx.queue, error = %e, "receive failed");
                    rx.inbox.push(Err(inner.map_err(&rx.queue, e)));
                }
                let pause = backoff.next_delay();
                drop(inner);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Every [`MOVER_INTERVAL`], moves due delayed messages of every watched queue.
async fn mover_loop(weak: Weak<Inner>) {
    let mut tick = tokio::time::interval(MOVER_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let queues: Vec<String> = lock(&inner.delayed).iter().cloned().collect();
        for queue in queues {
            let key = delayed_key(&queue);
            loop {
                let mut conn = inner.conn.clone();
                let moved: Result<usize, RedisError> = inner
                    .scripts
                    .mover
                    .key(&key)
                    .key(&queue)
                    .arg(MOVER_BATCH)
                    .invoke_async(&mut conn)
                    .await;
                match moved {
                    Ok(n) => {
                        inner.health.ok();
                        if n > 0 {
                            tracing::debug!(queue = %queue, moved = n, "moved due delayed messages");
                        }
                        if n < MOVER_BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        if is_transient(&e) {
                            inner.health.failed(&e);
                        } else {
                            tracing::warn!(queue = %queue, error = %e, "delayed mover failed");
                        }
                        break;
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Transport for RedisTransport {
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
        self.inner.send(queue, body).await
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        if delay.is_zero() {
            return self.inner.send(queue, body).await;
        }
        self.inner.check_open()?;
        self.inner
            .delay(queue, &body, delay, None)
            .await
            .map(|_| ())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let r = self.inner.ack(delivery).await;
        self.inner.release(delivery);
        r
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        let r = self.inner.nack(delivery, delay).await;
        self.inner.release(delivery);
        r
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
        self.inner.depth(queue).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        // Background tasks hold only weak references and end on their own; abort them
        // so that they do not outlive the transport by a blocking read.
        if let Some(task) = lock(&self.inner.mover).take() {
            task.abort();
        }
        for rx in lock(&self.inner.receivers).values() {
            rx.inbox.abort_fetch();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn naming_follows_protocol_section_4() {
        assert_eq!(queue_name("prod", "echo"), "asya-prod-echo");
        assert_eq!(queue_name("prod", "x-sink"), "asya-prod-x-sink");
        assert_eq!(dead_letter_queue("prod"), "asya-prod-dlq");
        assert_eq!(delayed_key("asya-prod-echo"), "asya-prod-echo:delayed");
    }

    #[test]
    fn members_carry_prior_deliveries_and_exact_bodies() {
        let body = "{\"a\":\"x:y#z 🎭\"}".as_bytes();
        let m = encode_member("6f1c", 0, body);
        assert_eq!(m, b"6f1c:{\"a\":\"x:y#z \xf0\x9f\x8e\xad\"}".to_vec());
        assert_eq!(decode_member(&m), (0, body));
        let m = encode_member("6f1c", 2, body);
        assert!(m.starts_with(b"6f1c#2:"));
        assert_eq!(decode_member(&m), (2, body));
        assert_eq!(decode_member(b"no-separator"), (0, &b"no-separator"[..]));
    }

    #[test]
    fn url_parsing() {
        let info = parse_url("redis://:s3cret@127.0.0.1:6380/2").unwrap();
        assert_eq!(info.redis.db, 2);
        assert_eq!(info.redis.password.as_deref(), Some("s3cret"));
        assert_eq!(info.addr.to_string(), "127.0.0.1:6380");
        parse_url("redis://localhost").unwrap();
        for bad in [
            "http://:pw@host:1/0",
            "host:6379",
            "redis://:pw@host:notaport/0",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(!e.contains("pw@"), "password leaked: {e}");
            assert!(e.starts_with("invalid redis transport settings"), "{e}");
        }
    }

    #[test]
    fn ceil_ms_rounds_up() {
        assert_eq!(ceil_ms(Duration::from_micros(1)), 1);
        assert_eq!(ceil_ms(Duration::from_millis(5)), 5);
        assert_eq!(ceil_ms(Duration::from_micros(5001)), 6);
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn read_replies_parse() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("asya-ns-a"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("body"), bulk("{}")]),
                ]),
                Value::Array(vec![
                    bulk("2-0"),
                    Value::Array(vec![
                        bulk("deliveries"),
                        bulk("2"),
                        bulk("body"),
                        bulk("[1]"),
                    ]),
                ]),
                Value::Array(vec![bulk("3-0"), Value::Nil]),
            ]),
        ])]);
        assert_eq!(
            parse_read_reply(reply),
            vec![
                Entry {
                    id: "1-0".into(),
                    body: Bytes::from_static(b"{}"),
                    prior: 0
                },
                Entry {
                    id: "2-0".into(),
                    body: Bytes::from_static(b"[1]"),
                    prior: 2
                },
            ]
        );
        assert!(parse_read_reply(Value::Nil).is_empty());

        let reclaim = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("4-0"),
                Value::Array(vec![bulk("body"), bulk("x")]),
                Value::Int(3),
            ])]),
        ]);
        let (cursor, claimed) = parse_reclaim_reply(reclaim);
        assert_eq!(cursor, "5-0");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].0.id, "4-0");
        assert_eq!(claimed[0].1, 3);
    }

    #[test]
    fn options_are_checked() {
        let mut o = ConnectOptions::new("ns");
        assert!(validate(&o).is_ok());
        o.max_deliveries = 0;
        assert!(matches!(validate(&o), Err(TransportError::Config { .. })));
        let mut o = ConnectOptions::new("");
        assert!(validate(&o).is_err());
        o.namespace = "ns".into();
        o.visibility_timeout = Duration::ZERO;
        assert!(validate(&o).is_err());
    }
}
