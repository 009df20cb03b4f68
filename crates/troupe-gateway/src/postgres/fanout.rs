//! Cross-replica event fan-out over PostgreSQL LISTEN/NOTIFY (gateway.md §1 "Replicas").
//!
//! Every replica NOTIFYs its events on one channel and LISTENs on it for the others'.
//! A NOTIFY payload must stay under 8000 bytes, while status data (which embeds the
//! task's payload) and FLY events (up to 1 MiB) can be far larger: such an event's data
//! is written to `troupe_gateway_event_bodies` in the same transaction as the NOTIFY,
//! which then carries only the row number. Rows are deleted after a minute.
//!
//! Delivery is best effort, like LISTEN/NOTIFY itself: events published while a
//! listener is reconnecting are missed (SSE clients catch up when they reconnect).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use super::{build_pool, describe, describe_pool, ensure_schema, parse_config, target_of};
use crate::fanout::{EventFanout, FanoutEvent};
use crate::gateway::{Gateway, Inner};
use crate::store::StoreError;

/// The NOTIFY channel every replica of a database shares.
const CHANNEL: &str = "troupe_gateway_events";

/// Largest NOTIFY payload sent inline; the server's hard limit is 8000 bytes.
const MAX_INLINE: usize = 7900;

/// Events waiting to be sent; a full queue drops (publish must never block a request).
const QUEUE: usize = 1024;

/// Notifications received but not yet delivered; when full, the connection is not read
/// and the server buffers (back-pressure instead of unbounded memory).
const NOTE_QUEUE: usize = 1024;

/// How long a large event's body is kept for listeners to read it.
const BODY_RETENTION: &str = "60 seconds";

/// How often a replica that wrote bodies deletes expired ones.
const CLEANUP_EVERY: Duration = Duration::from_secs(30);

/// An idle listen connection is pinged this often, so a silently dead one is noticed.
const PING_IDLE: Duration = Duration::from_secs(30);

/// A ping not answered within this is treated as a lost connection.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Reconnect backoff bounds for the listen connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// At most one "queue full" warning per this period (the count says how many dropped).
const DROP_WARN_EVERY: Duration = Duration::from_secs(5);

/// The NOTIFY payload: the event itself, or the row holding its data.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Notice<'a> {
    /// The publishing replica, so it can skip its own events.
    replica: Cow<'a, str>,
    id: Cow<'a, str>,
    kind: Cow<'a, str>,
    terminal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Cow<'a, str>>,
    /// `troupe_gateway_event_bodies.seq` when `data` was too large to inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<i64>,
}

impl<'a> Notice<'a> {
    fn of(replica: &'a str, ev: &'a FanoutEvent, data: Option<&'a str>, body: Option<i64>) -> Self {
        Notice {
            replica: Cow::Borrowed(replica),
            id: Cow::Borrowed(&ev.id),
            kind: Cow::Borrowed(&ev.kind),
            terminal: ev.terminal,
            data: data.map(Cow::Borrowed),
            body,
        }
    }
}

/// The inline NOTIFY payload for `ev`, or `None` when it would be too large.
fn inline_payload(replica: &str, ev: &FanoutEvent) -> Option<String> {
    // Measured after JSON escaping: quotes in the data double in size.
    serde_json::to_string(&Notice::of(replica, ev, Some(&ev.data), None))
        .ok()
        .filter(|p| p.len() <= MAX_INLINE)
}

/// The [`EventFanout`] half: queues events for the background publisher.
struct PgFanout {
    queue: mpsc::Sender<FanoutEvent>,
    dropped: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
}

impl EventFanout for PgFanout {
    fn publish(&self, event: FanoutEvent) {
        if self.queue.try_send(event).is_ok() {
            return;
        }
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_warn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= DROP_WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped_total = total,
                "fan-out queue full (PostgreSQL slow or unreachable): events are not reaching \
                 other replicas"
            );
        }
    }
}

/// Connects `gateway` to the other replicas using the database at `url`: its events are
/// NOTIFYed to them, theirs are delivered to its SSE subscribers.
///
/// The returned task reconnects on its own and ends when the gateway is dropped; abort
/// it to detach earlier. Fails when the database cannot be reached now, or when the
/// gateway already has a fan-out attached.
pub async fn attach_postgres_fanout(
    gateway: &Gateway,
    url: &str,
) -> Result<JoinHandle<()>, StoreError> {
    let config = parse_config(url, "troupe-gateway-fanout")?;
    // A name of its own makes the listen connection easy to spot in pg_stat_activity.
    let listen_config = parse_config(url, "troupe-gateway-listen")?;
    let target = target_of(&config);
    // Two connections: the publisher's, and one for reading large event bodies.
    let pool = build_pool(config, 2)?;
    ensure_schema(&pool, &target).await?;
    let first = Listening::open(&listen_config)
        .await
        .map_err(|e| super::unreachable(&target, &e))?;

    // Per attachment rather than per process: two gateways in one process (tests,
    // embedded meshes) must still see each other's events.
    let replica: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let (queue, rx) = mpsc::channel(QUEUE);
    let bus = Arc::new(PgFanout {
        queue,
        dropped: AtomicU64::new(0),
        last_warn: Mutex::new(None),
    });
    if !gateway.attach_fanout(bus) {
        return Err(StoreError::Unavailable(
            "this gateway already has an event fan-out attached".into(),
        ));
    }
    tracing::info!(%target, %replica, channel = CHANNEL, "cross-replica event fan-out attached");

    let publisher = Publisher {
        pool: pool.clone(),
        replica: replica.clone(),
        target: target.clone(),
    };
    let listener = Listener {
        // Weak, so this task does not keep a dropped gateway alive.
        gateway: Arc::downgrade(&gateway.inner),
        config: listen_config,
        pool,
        replica,
        target,
    };
    Ok(tokio::spawn(async move {
        // The publisher ends (after draining its queue) once the gateway, which owns the
        // queue's sender, is dropped; that also ends the listener without waiting for
        // its next notification or ping.
        tokio::select! {
            () = publisher.run(rx) => {}
            () = listener.run(first) => {}
        }
    }))
}

/// Sends queued events, in order, on one pooled connection at a time.
struct Publisher {
    pool: Pool,
    replica: Arc<str>,
    target: String,
}

impl Publisher {
    /// Ends when the gateway (and with it the queue's sender) is dropped.
    async fn run(self, mut rx: mpsc::Receiver<FanoutEvent>) {
        let mut down_since: Option<Instant> = None;
        let mut lost: u64 = 0;
        let mut wrote_bodies = false;
        let mut last_cleanup = Instant::now();
        while let Some(ev) = rx.recv().await {
            // Sequential on purpose: each NOTIFY commits before the next is sent, so
            // listeners get one task's events in the order they happened.
            match self.send(&ev).await {
                Ok(used_body) => {
                    wrote_bodies |= used_body;
                    if let Some(since) = down_since.take() {
                        tracing::info!(
                            target = %self.target,
                            after = ?since.elapsed(),
                            lost,
                            "fan-out publishing to PostgreSQL works again"
                        );
                        lost = 0;
                    }
                }
                Err(error) => {
                    lost += 1;
                    // Once per outage, not per event.
                    if down_since.is_none() {
                        down_since = Some(Instant::now());
                        tracing::warn!(
                            target = %self.target,
                            %error,
                            "cannot publish events to other replicas; dropping them until \
                             PostgreSQL is reachable again"
                        );
                    }
                }
            }
            if wrote_bodies && last_cleanup.elapsed() >= CLEANUP_EVERY {
                last_cleanup = Instant::now();
                wrote_bodies = false;
                if let Err(error) = self.cleanup().await {
                    tracing::debug!(%error, "deleting expired fan-out event bodies failed");
                }
            }
        }
    }

    /// Sends one event; `true` when its data went through the bodies table.
    async fn send(&self, ev: &FanoutEvent) -> Result<bool, String> {
        let mut client = self.pool.get().await.map_err(|e| describe_pool(&e))?;
        let pg = |e: tokio_postgres::Error| describe(&e);
        if let Some(payload) = inline_payload(&self.replica, ev) {
            let notify = client
                .prepare_cached("SELECT pg_notify($1, $2)")
                .await
                .map_err(pg)?;
            client
                .execute(&notify, &[&CHANNEL, &payload])
                .await
                .map_err(pg)?;
            return Ok(false);
        }
        // One transaction: the notification is delivered at commit, when the row is
        // already visible to the listener that reads it.
        let tx = client.transaction().await.map_err(pg)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO troupe_gateway_event_bodies (replica, task_id, data)
                 VALUES ($1, $2, $3) RETURNING seq",
            )
            .await
            .map_err(pg)?;
        let seq: i64 = tx
            .query_one(&insert, &[&&*self.replica, &ev.id, &ev.data])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(pg)?;
        let payload = serde_json::to_string(&Notice::of(&self.replica, ev, None, Some(seq)))
            .map_err(|e| e.to_string())?;
        if payload.len() > MAX_INLINE {
            return Err(format!(
                "task id of {} bytes does not fit a NOTIFY payload",
                ev.id.len()
            ));
        }
        let notify = tx
            .prepare_cached("SELECT pg_notify($1, $2)")
            .await
            .map_err(pg)?;
        tx.execute(&notify, &[&CHANNEL, &payload])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    async fn cleanup(&self) -> Result<(), String> {
        let client = self.pool.get().await.map_err(|e| describe_pool(&e))?;
        client
            .execute(
                &format!(
                    "DELETE FROM troupe_gateway_event_bodies
                     WHERE created_at < now() - interval '{BODY_RETENTION}'"
                ),
                &[],
            )
            .await
            .map(|_| ())
            .map_err(|e| describe(&e))
    }
}

/// What the listen connection's driver passes on.
enum Note {
    Payload(String),
    Lost(String),
}

/// A connection that has run LISTEN, and the task reading its messages.
struct Listening {
    client: Client,
    notes: mpsc::Receiver<Note>,
    driver: JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        // Dropping the connection future closes the socket.
        self.driver.abort();
    }
}

impl Listening {
    async fn open(config: &Config) -> Result<Listening, String> {
        let (client, mut connection) = config.connect(NoTls).await.map_err(|e| describe(&e))?;
        let (tx, notes) = mpsc::channel(NOTE_QUEUE);
        // Notifications only surface through `poll_message`, which also drives the
        // connection (the client's queries go through it too).
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let reason = loop {
                match messages.next().await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx
                            .send(Note::Payload(n.payload().to_owned()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    // Notices are server-side warnings with nothing to act on.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break describe(&e),
                    None => break "the server closed the connection".to_owned(),
                }
            };
            let _ = tx.send(Note::Lost(reason)).await;
        });
        let listening = Listening {
            client,
            notes,
            driver,
        };
        listening
            .client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| describe(&e))?;
        Ok(listening)
    }
}

/// Why [`Listener::serve`] returned.
enum Ended {
    GatewayGone,
    Lost(String),
}

/// Delivers other replicas' events; owns reconnecting.
struct Listener {
    gateway: Weak<Inner>,
    config: Config,
    pool: Pool,
    replica: Arc<str>,
    target: String,
}

impl Listener {
    async fn run(self, first: Listening) {
        let mut current = Some(first);
        let mut down_since: Option<Instant> = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            let listening = match current.take() {
                Some(l) => l,
                None => {
                    if self.gateway.strong_count() == 0 {
                        return;
                    }
                    match Listening::open(&self.config).await {
                        Ok(l) => {
                            tracing::info!(
                                target = %self.target,
                                after = ?down_since.take().map(|t| t.elapsed()).unwrap_or_default(),
                                "fan-out listen connection re-established; events other \
                                 replicas published meanwhile were missed"
                            );
                            backoff = BACKOFF_MIN;
                            l
                        }
                        Err(error) => {
                            // The outage was already reported once; retries stay quiet.
                            tracing::debug!(%error, ?backoff, "fan-out listen reconnect failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                            continue;
                        }
                    }
                }
            };
            match self.serve(listening).await {
                Ended::GatewayGone => return,
                Ended::Lost(error) => {
                    down_since = Some(Instant::now());
                    tracing::warn!(
                        target = %self.target,
                        %error,
                        "fan-out listen connection to PostgreSQL lost; SSE streams on this \
                         replica miss other replicas' events until it is back (reconnecting)"
                    );
                }
            }
        }
    }

    async fn serve(&self, mut l: Listening) -> Ended {
        let mut fetch_failing = false;
        loop {
            match tokio::time::timeout(PING_IDLE, l.notes.recv()).await {
                Ok(Some(Note::Payload(payload))) => {
                    let Some(inner) = self.gateway.upgrade() else {
                        return Ended::GatewayGone;
                    };
                    self.handle(&Gateway { inner }, &payload, &mut fetch_failing)
                        .await;
                }
                Ok(Some(Note::Lost(reason))) => return Ended::Lost(reason),
                Ok(None) => return Ended::Lost("the connection driver stopped".into()),
                Err(_idle) => {
                    if self.gateway.strong_count() == 0 {
                        return Ended::GatewayGone;
                    }
                    match tokio::time::timeout(PING_TIMEOUT, l.client.simple_query("SELECT 1"))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Ended::Lost(describe(&e)),
                        Err(_) => {
                            return Ended::Lost(format!(
                                "no answer to a ping within {}s",
                                PING_TIMEOUT.as_secs()
                            ))
                        }
                    }
                }
            }
        }
    }

    async fn handle(&self, gateway: &Gateway, payload: &str, fetch_failing: &mut bool) {
        let notice: Notice<'_> = match serde_json::from_str(payload) {
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(%error, "ignoring a notification that is not a fan-out event");
                return;
            }
        };
        if notice.replica == *self.replica {
            return;
        }
        let data = match (notice.data, notice.body) {
            (Some(data), _) => data.into_owned(),
            (None, Some(seq)) => match self.fetch_body(seq, &notice.replica, &notice.id).await {
                Ok(Some(data)) => {
                    *fetch_failing = false;
                    data
                }
                Ok(None) => {
                    // Expired (this listener is over a minute behind), or a row of another
                    // schema sharing the database's channel.
                    tracing::debug!(id = %notice.id, seq, "fan-out event body not found");
                    return;
                }
                Err(error) => {
                    if !*fetch_failing {
                        *fetch_failing = true;
                        tracing::warn!(
                            target = %self.target,
                            %error,
                            "cannot read large fan-out events from PostgreSQL; dropping them"
                        );
                    }
                    return;
                }
            },
            (None, None) => return,
        };
        gateway.deliver_remote(FanoutEvent {
            id: notice.id.into_owned(),
            kind: notice.kind.into_owned(),
            terminal: notice.terminal,
            data,
        });
    }

    async fn fetch_body(
        &self,
        seq: i64,
        replica: &str,
        id: &str,
    ) -> Result<Option<String>, String> {
        let client = self.pool.get().await.map_err(|e| describe_pool(&e))?;
        let pg = |e: tokio_postgres::Error| describe(&e);
        let stmt = client
            .prepare_cached(
                "SELECT data FROM troupe_gateway_event_bodies
                 WHERE seq = $1 AND replica = $2 AND task_id = $3",
            )
            .await
            .map_err(pg)?;
        let row = client
            .query_opt(&stmt, &[&seq, &replica, &id])
            .await
            .map_err(pg)?;
        row.map(|r| r.try_get(0)).transpose().map_err(pg)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn event(data: String) -> FanoutEvent {
        FanoutEvent {
            id: "t1".into(),
            kind: "fly".into(),
            terminal: false,
            data,
        }
    }

    #[test]
    fn small_events_go_inline_and_round_trip() {
        let ev = event(r#"{"payload":{"token":"Hel"}}"#.into());
        let text = inline_payload("r1", &ev).unwrap();
        let back: Notice<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, Notice::of("r1", &ev, Some(&ev.data), None));
    }

    #[test]
    fn size_is_measured_after_escaping() {
        // 4000 bytes of quotes escape to 8000.
        assert!(inline_payload("r1", &event("\"".repeat(4000))).is_none());
        assert!(inline_payload("r1", &event("x".repeat(7000))).is_some());
        assert!(inline_payload("r1", &event("x".repeat(8000))).is_none());
    }

    #[test]
    fn body_reference_omits_data() {
        let ev = event("x".repeat(10_000));
        let text = serde_json::to_string(&Notice::of("r1", &ev, None, Some(7))).unwrap();
        assert!(text.len() < 200, "{text}");
        let back: Notice<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.body, Some(7));
        assert_eq!(back.data, None);
    }
}
