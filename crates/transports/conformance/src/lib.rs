//! The transport conformance suite: the semantics of [`troupe_transport::Transport`]
//! (platform.md §1.1, protocol.md §12) checked against a real broker. Each transport
//! crate runs every case from its own `tests/conformance.rs`:
//!
//! ```ignore
//! troupe_transport_conformance::conformance_tests!(my_harness().await);
//! ```
//!
//! which expands to one `#[tokio::test]` per case (the crate needs `tokio` with the
//! `macros` and `rt-multi-thread` features as a dev-dependency). The harness expression
//! is evaluated once per test; it may share one broker between tests: every case uses
//! its own random queue names, and [`broker_restart`] runs alone (the other cases of the
//! same test binary wait for it, and it waits for them), so a restart never disturbs
//! another case.
//!
//! Every wait is bounded; a case that fails panics with what it expected.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test library: failures panic

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::RwLock;
use tokio::time::{sleep, timeout, Instant};
use troupe_transport::lease::Lease;
use troupe_transport::{ConnectOptions, Delivery, Transport, TransportError};

pub mod kube;
pub mod logs;
mod provision;
pub mod server;
pub mod stub;

pub use provision::queue_provisioning;

/// What a transport can do or tell, so the suite checks exactly what it promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Deliveries after which a message that keeps being requeued lands in
    /// [`Harness::dead_letter_queue`]; `None` when the transport has no dead-letter queue
    /// (the DLQ case is then skipped and says so). Default `Some(3)`.
    pub dead_letter_after: Option<u32>,
    /// [`Delivery::delivery_count`] is always `Some` and grows with each redelivery.
    /// Default `true`.
    pub delivery_count: bool,
    /// [`troupe_transport::QueueDepth::in_flight`] counts messages received and not yet
    /// acked (by the transport instance asked, at least). Default `true`.
    pub depth_in_flight: bool,
    /// [`troupe_transport::QueueDepth::delayed`] counts messages sent with a delay that
    /// has not elapsed (by the transport instance that sent them, at least). Default `true`.
    pub depth_delayed: bool,
    /// Longest time after a consumer died holding an unacked delivery until that message
    /// is receivable again (visibility timeout, AckWait, reclaim idle time, plus the
    /// broker's own lag). Default 10 s.
    pub redelivery_after: Duration,
    /// How much later than its delay a delayed message may become receivable (mover
    /// intervals, broker timers). Default 3 s.
    pub delay_slack: Duration,
    /// How long depth counts may lag behind sends and receives (approximate counters).
    /// Default 5 s.
    pub depth_settle: Duration,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            dead_letter_after: Some(3),
            delivery_count: true,
            depth_in_flight: true,
            depth_delayed: true,
            redelivery_after: Duration::from_secs(10),
            delay_slack: Duration::from_secs(3),
            depth_settle: Duration::from_secs(5),
        }
    }
}

/// What the suite needs from a transport's test setup.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new transport (its own connections) on the harness's broker. Every call in one
    /// test uses the same namespace, so transports see each other's queues.
    async fn connect(&self) -> Arc<dyn Transport>;

    /// Stops the broker process and starts it again on the same address and data;
    /// returns once it accepts connections.
    async fn restart_broker(&self);

    /// The queue that dead-lettered messages of `queue` land in, readable with
    /// [`Transport::receive`] on a transport from [`Harness::connect`].
    fn dead_letter_queue(&self, queue: &str) -> String;

    /// What the transport under test can do; default [`Capabilities::default`].
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Makes `transport` die as a crashed consumer would: whatever it received and did
    /// not ack must come back to other consumers. Default: [`Transport::close`].
    async fn kill(&self, transport: Arc<dyn Transport>) {
        transport.close().await;
    }
}

/// Implements [`Harness`] for smart pointers to one, forwarding every method.
macro_rules! forward_harness {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<H: Harness + ?Sized> Harness for $ptr<H> {
            async fn connect(&self) -> Arc<dyn Transport> {
                (**self).connect().await
            }
            async fn restart_broker(&self) {
                (**self).restart_broker().await
            }
            fn dead_letter_queue(&self, queue: &str) -> String {
                (**self).dead_letter_queue(queue)
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn kill(&self, transport: Arc<dyn Transport>) {
                (**self).kill(transport).await
            }
        }
    )*};
}

forward_harness!(Arc, Box);

/// Expands to one `#[tokio::test]` per conformance case, each running the case against
/// the harness `$harness` (an expression, evaluated once per test, that may use
/// `.await`; its type implements [`Harness`]).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            send_receive_ack,
            pipelined_sends,
            requeue_redelivers,
            dead_consumer_redelivers,
            lease_keeps_delivery,
            delayed_delivery,
            dead_letter_after_max_deliveries,
            depth_counts,
            queue_provisioning,
            broker_restart
        );
    };
    (@cases $harness:expr; $($case:ident),*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::$case(&harness).await;
            }
        )*
    };
}

/// Every case but [`broker_restart`] holds this for reading; the restart case holds it
/// for writing, so a broker restart never runs during another case of the same binary.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh actor name (a DNS label, protocol.md §4) unique to this process and run.
pub fn unique_actor(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{nanos:x}-{n}", std::process::id())
}

/// A namespace (`{prefix}{pid}x{n}`) no other test of any process uses at the same time.
pub fn unique_namespace(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for a test transport in `namespace`: a consumer name of its own and the
/// given (short) visibility timeout.
pub fn test_options(namespace: &str, visibility: Duration) -> ConnectOptions {
    ConnectOptions {
        consumer_name: format!(
            "test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
        visibility_timeout: visibility,
        ..ConnectOptions::new(namespace)
    }
}

/// Checks a connect to a broker that is not there (a closed port): it fails within
/// `within` with [`TransportError::Unavailable`] of `kind`, the URL it shows contains
/// `shown` (the password masked) and the error never prints `secret`. Returns the
/// error for further checks.
pub async fn connect_is_unavailable<T>(
    connect: impl std::future::Future<Output = Result<T, TransportError>>,
    kind: &str,
    shown: &str,
    secret: &str,
    within: Duration,
) -> TransportError {
    let start = Instant::now();
    let err = match connect.await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e,
    };
    assert!(start.elapsed() < within, "took {:?}", start.elapsed());
    let TransportError::Unavailable {
        kind: k, url: s, ..
    } = &err
    else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!(*k, kind);
    assert!(s.contains(shown), "{s}");
    assert!(!err.to_string().contains(secret), "password printed: {err}");
    err
}

/// How long a receive that must succeed may take on a healthy broker.
const RECEIVE_WAIT: Duration = Duration::from_secs(15);
/// How long the suite listens to make sure a message does not come (again).
const QUIET_WAIT: Duration = Duration::from_millis(1500);

/// Receives from `queue` within `wait`; `None` if nothing came. Errors fail the case.
pub async fn receive_within(t: &dyn Transport, queue: &str, wait: Duration) -> Option<Delivery> {
    match timeout(wait, t.receive(queue)).await {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => panic!("receive on {queue} failed: {e}"),
        Err(_) => None,
    }
}

async fn must_receive(t: &dyn Transport, queue: &str, wait: Duration, what: &str) -> Delivery {
    receive_within(t, queue, wait)
        .await
        .unwrap_or_else(|| panic!("{what}: nothing received on {queue} within {wait:?}"))
}

async fn must_stay_empty(t: &dyn Transport, queue: &str, wait: Duration, what: &str) {
    if let Some(d) = receive_within(t, queue, wait).await {
        panic!(
            "{what}: unexpected message on {queue}: {:?} (delivery {:?})",
            String::from_utf8_lossy(&d.body),
            d.delivery_count
        );
    }
}

fn body(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn envelope(id: &str, payload: &str) -> Bytes {
    body(&format!(
        "{{\"id\":\"{id}\",\"route\":{{\"prev\":[],\"curr\":\"a\",\"next\":[\"b\"]}},\"headers\":{{}},\"payload\":{payload}}}"
    ))
}

/// Case 1: bodies arrive byte-identical (non-ASCII JSON, a 100 KiB body, `{}`), on the
/// queue they were sent to, and an acked message is gone for good.
pub async fn send_receive_ack(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let t = h.connect().await;
    let caps = h.capabilities();
    let queue = t.queue_name(&unique_actor("conf-basic"));
    let big = "x".repeat(100 * 1024);
    let bodies = vec![
        envelope(
            "b1",
            "{\"text\":\"héllo wörld — 日本語 🎭 \\u00e9\",\"n\":[1,2.5,-3e10,null,true]}",
        ),
        envelope("b2", &format!("{{\"big\":\"{big}\"}}")),
        body("{}"),
    ];
    for b in &bodies {
        t.send(&queue, b.clone()).await.unwrap();
    }
    let mut got: HashSet<Bytes> = HashSet::new();
    for _ in 0..bodies.len() {
        let d = must_receive(&*t, &queue, RECEIVE_WAIT, "send/receive").await;
        assert_eq!(&*d.queue, queue.as_str(), "delivery names its queue");
        assert!(
            bodies.contains(&d.body),
            "body changed in transit: {:?}",
            String::from_utf8_lossy(&d.body[..d.body.len().min(200)])
        );
        if caps.delivery_count {
            assert_eq!(d.delivery_count, Some(1), "first delivery counts 1");
        }
        assert!(got.insert(d.body.clone()), "one message delivered twice");
        t.ack(&d).await.unwrap();
    }
    // Longer than a visibility timeout: an ack that did not stick shows up here.
    must_stay_empty(
        &*t,
        &queue,
        QUIET_WAIT.max(caps.redelivery_after / 2),
        "after ack",
    )
    .await;
    t.close().await;
}

/// Case 1b: sends handed over with `send_pipelined` and confirmed later all arrive once
/// their confirms resolved, to a queue never used before.
pub async fn pipelined_sends(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let t = h.connect().await;
    let queue = t.queue_name(&unique_actor("conf-pipe"));
    let bodies: Vec<Bytes> = (0..20)
        .map(|i| envelope(&format!("p{i}"), &i.to_string()))
        .collect();
    let mut pending = Vec::new();
    for b in &bodies {
        pending.push(t.send_pipelined(&queue, b.clone()).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    let mut got = HashSet::new();
    for _ in 0..bodies.len() {
        let d = must_receive(&*t, &queue, RECEIVE_WAIT, "pipelined send").await;
        assert!(bodies.contains(&d.body), "body changed in transit");
        assert!(got.insert(d.body.clone()), "one message delivered twice");
        t.ack(&d).await.unwrap();
    }
    t.close().await;
}

/// Case 2: a requeued delivery comes back with the same body and a higher count.
pub async fn requeue_redelivers(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let t = h.connect().await;
    let caps = h.capabilities();
    let queue = t.queue_name(&unique_actor("conf-requeue"));
    let b = envelope("rq", "{\"text\":\"réessayer\"}");
    t.send(&queue, b.clone()).await.unwrap();
    let d1 = must_receive(&*t, &queue, RECEIVE_WAIT, "first delivery").await;
    assert_eq!(d1.body, b);
    t.requeue(&d1).await.unwrap();
    let d2 = must_receive(&*t, &queue, RECEIVE_WAIT, "after requeue").await;
    assert_eq!(d2.body, b, "requeue keeps the body");
    if caps.delivery_count {
        let (c1, c2) = (d1.delivery_count.unwrap(), d2.delivery_count.unwrap());
        assert!(c2 > c1, "delivery count grows: {c1} then {c2}");
    } else if let (Some(c1), Some(c2)) = (d1.delivery_count, d2.delivery_count) {
        assert!(c2 > c1, "delivery count grows: {c1} then {c2}");
    }
    t.ack(&d2).await.unwrap();
    must_stay_empty(&*t, &queue, QUIET_WAIT, "after ack of the redelivery").await;
    t.close().await;
}

/// Case 3: a message received by a consumer that dies without acking is delivered to
/// another consumer.
pub async fn dead_consumer_redelivers(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let caps = h.capabilities();
    let doomed = h.connect().await;
    let survivor = h.connect().await;
    let queue = doomed.queue_name(&unique_actor("conf-death"));
    let b = envelope("dead", "{\"text\":\"orphelin\"}");
    survivor.send(&queue, b.clone()).await.unwrap();
    let d = must_receive(&*doomed, &queue, RECEIVE_WAIT, "delivery to the doomed").await;
    assert_eq!(d.body, b);
    h.kill(doomed).await;
    let wait = caps.redelivery_after + Duration::from_secs(5);
    let again = must_receive(&*survivor, &queue, wait, "redelivery after consumer death").await;
    assert_eq!(again.body, b, "redelivery keeps the body");
    if let (Some(c1), Some(c2)) = (d.delivery_count, again.delivery_count) {
        assert!(c2 >= c1, "delivery count does not go back: {c1} then {c2}");
    }
    survivor.ack(&again).await.unwrap();
    must_stay_empty(&*survivor, &queue, QUIET_WAIT, "after ack").await;
    survivor.close().await;
}

/// Case 3b: a delivery whose holder keeps a [`Lease`] (a handler still working) is not
/// redelivered, to another consumer or to the holder itself, however far past the
/// visibility window it is held; once acked it is gone. Transports that keep deliveries
/// for as long as their consumer lives ([`Transport::extend_every`] is `None`) skip it.
pub async fn lease_keeps_delivery(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let caps = h.capabilities();
    let holder = h.connect().await;
    let Some(every) = holder.extend_every() else {
        eprintln!(
            "lease_keeps_delivery skipped: {} keeps deliveries while the consumer lives",
            holder.kind()
        );
        holder.close().await;
        return;
    };
    let other = h.connect().await;
    let queue = holder.queue_name(&unique_actor("conf-lease"));
    let b = envelope("lease", "{\"text\":\"long handler\"}");
    other.send(&queue, b.clone()).await.unwrap();
    let d = must_receive(&*holder, &queue, RECEIVE_WAIT, "delivery to the holder").await;
    assert_eq!(d.body, b);
    let lease = Lease::hold(&holder, &d);
    // Three windows (the window is three extension intervals), and longer than a dead
    // consumer's message takes to come back: without the lease it would be redelivered.
    let hold = (every * 9).max(caps.redelivery_after * 2);
    let start = Instant::now();
    tokio::select! {
        r = other.receive(&queue) => panic!("redelivered to another consumer after {:?} while a lease held it: {:?}", start.elapsed(), r.map(|d| d.delivery_count)),
        r = holder.receive(&queue) => panic!("redelivered to its holder after {:?} while a lease held it: {:?}", start.elapsed(), r.map(|d| d.delivery_count)),
        _ = sleep(hold) => {}
    }
    lease.release();
    holder.ack(&d).await.unwrap();
    must_stay_empty(
        &*other,
        &queue,
        QUIET_WAIT.max(every * 3),
        "after the ack of a leased delivery",
    )
    .await;
    holder.close().await;
    other.close().await;
}

/// Case 4: `send_with_delay(2 s)` and `nack(delivery, 2 s)` are not receivable at 1.5 s
/// and are by 2 s plus the transport's slack.
pub async fn delayed_delivery(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let t = h.connect().await;
    let caps = h.capabilities();
    let delay = Duration::from_secs(2);
    let early = Duration::from_millis(1500);
    let queue = t.queue_name(&unique_actor("conf-delay"));

    let b = envelope("later", "{\"text\":\"plus tard\"}");
    let start = Instant::now();
    t.send_with_delay(&queue, b.clone(), delay).await.unwrap();
    let sent_in = start.elapsed();
    assert!(sent_in < early, "send_with_delay took {sent_in:?}");
    must_stay_empty(&*t, &queue, early - sent_in, "before the delay").await;
    let d = must_receive(
        &*t,
        &queue,
        delay - early + caps.delay_slack + sent_in,
        "after the delay",
    )
    .await;
    let arrived = start.elapsed();
    assert_eq!(d.body, b, "delay keeps the body");
    assert!(
        arrived + Duration::from_millis(50) >= delay,
        "arrived after {arrived:?}, before its {delay:?} delay"
    );
    t.ack(&d).await.unwrap();

    let b2 = envelope("retry", "{\"text\":\"encore\"}");
    t.send(&queue, b2.clone()).await.unwrap();
    let d = must_receive(&*t, &queue, RECEIVE_WAIT, "before nack").await;
    let start = Instant::now();
    t.nack(&d, delay).await.unwrap();
    let nacked_in = start.elapsed();
    assert!(nacked_in < early, "nack took {nacked_in:?}");
    must_stay_empty(&*t, &queue, early - nacked_in, "before the nack delay").await;
    let again = must_receive(
        &*t,
        &queue,
        delay - early + caps.delay_slack + nacked_in,
        "after the nack delay",
    )
    .await;
    let arrived = start.elapsed();
    assert_eq!(again.body, b2, "nack keeps the body");
    assert!(
        arrived + Duration::from_millis(50) >= delay,
        "nacked message back after {arrived:?}, before its {delay:?} delay"
    );
    t.ack(&again).await.unwrap();
    must_stay_empty(&*t, &queue, QUIET_WAIT, "after ack").await;
    t.close().await;
}

/// Case 5: a message requeued on every delivery is delivered at most the transport's
/// limit of times, then appears byte-identical in the dead-letter queue.
pub async fn dead_letter_after_max_deliveries(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let caps = h.capabilities();
    let Some(limit) = caps.dead_letter_after else {
        eprintln!("dead_letter_after_max_deliveries: not applicable, the transport has no DLQ");
        return;
    };
    let t = h.connect().await;
    let queue = t.queue_name(&unique_actor("conf-dlq"));
    let b = envelope("poison", "{\"text\":\"toxique ☠\"}");
    t.send(&queue, b.clone()).await.unwrap();
    let mut deliveries = 0u32;
    // A requeued message is back at once; silence this long means it left the queue.
    let gone_after = Duration::from_secs(5);
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(d) = receive_within(&*t, &queue, gone_after).await {
        assert!(Instant::now() < deadline, "message never dead-lettered");
        assert_eq!(d.body, b, "redelivery keeps the body");
        deliveries += 1;
        assert!(
            deliveries <= limit,
            "delivered {deliveries} times; the limit is {limit}"
        );
        if caps.delivery_count {
            assert_eq!(
                d.delivery_count,
                Some(deliveries),
                "delivery count of delivery {deliveries}"
            );
        }
        t.requeue(&d).await.unwrap();
    }
    assert_eq!(
        deliveries, limit,
        "a failing message is delivered exactly {limit} times before the DLQ"
    );
    let dlq = h.dead_letter_queue(&queue);
    let reader = h.connect().await;
    let deadline = Instant::now() + RECEIVE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = must_receive(&*reader, &dlq, left, "dead-lettered message").await;
        if d.body == b {
            reader.ack(&d).await.unwrap();
            break;
        }
        // Another test's dead letter in a shared DLQ: leave it there.
        reader.requeue(&d).await.unwrap();
    }
    must_stay_empty(&*t, &queue, QUIET_WAIT, "after dead-lettering").await;
    reader.close().await;
    t.close().await;
}

/// Polls `check` until it holds or `settle` passes; then asserts it once more.
async fn eventually<F, Fut>(settle: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + settle;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e} (after {settle:?})"),
            Err(_) => sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Case 6: depth reports ready messages, in-flight ones and delayed ones (the latter two
/// where the transport can tell), and drops back to zero once all are acked.
pub async fn depth_counts(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let t = h.connect().await;
    let caps = h.capabilities();
    let queue = t.queue_name(&unique_actor("conf-depth"));
    let n = 5u64;
    for i in 0..n {
        t.send(&queue, envelope(&format!("d{i}"), "{}"))
            .await
            .unwrap();
    }
    let tq = t.clone();
    let q = queue.clone();
    eventually(caps.depth_settle, "ready after sends", move || {
        let (t, q) = (tq.clone(), q.clone());
        async move {
            let d = t.depth(&q).await.map_err(|e| e.to_string())?;
            if d.ready == n && d.in_flight == 0 && d.delayed == 0 {
                Ok(())
            } else {
                Err(format!("expected {n} ready, got {d:?}"))
            }
        }
    })
    .await;

    let got = must_receive(&*t, &queue, RECEIVE_WAIT, "depth receive").await;
    let tq = t.clone();
    let q = queue.clone();
    let in_flight = caps.depth_in_flight;
    eventually(caps.depth_settle, "after one receive", move || {
        let (t, q) = (tq.clone(), q.clone());
        async move {
            let d = t.depth(&q).await.map_err(|e| e.to_string())?;
            // A consumer may have prefetched more than the one handed out; together
            // they still make up the n messages.
            let ok = if in_flight {
                d.ready + d.in_flight == n && d.in_flight >= 1
            } else {
                d.ready < n
            };
            if ok {
                Ok(())
            } else {
                Err(format!("{n} sent, 1 received: got {d:?}"))
            }
        }
    })
    .await;

    t.send_with_delay(&queue, envelope("dd", "{}"), Duration::from_secs(30))
        .await
        .unwrap();
    if caps.depth_delayed {
        let tq = t.clone();
        let q = queue.clone();
        eventually(caps.depth_settle, "delayed", move || {
            let (t, q) = (tq.clone(), q.clone());
            async move {
                let d = t.depth(&q).await.map_err(|e| e.to_string())?;
                if d.delayed == 1 {
                    Ok(())
                } else {
                    Err(format!("expected 1 delayed, got {d:?}"))
                }
            }
        })
        .await;
    }

    t.ack(&got).await.unwrap();
    for _ in 1..n {
        let d = must_receive(&*t, &queue, RECEIVE_WAIT, "draining").await;
        t.ack(&d).await.unwrap();
    }
    let tq = t.clone();
    let q = queue.clone();
    let delayed = caps.depth_delayed;
    eventually(caps.depth_settle, "after acking everything", move || {
        let (t, q) = (tq.clone(), q.clone());
        async move {
            let d = t.depth(&q).await.map_err(|e| e.to_string())?;
            let expect_delayed = u64::from(delayed);
            if d.ready == 0 && d.in_flight == 0 && d.delayed == expect_delayed {
                Ok(())
            } else {
                Err(format!(
                    "expected nothing but {expect_delayed} delayed, got {d:?}"
                ))
            }
        }
    })
    .await;
    t.close().await;
}

/// Sends `body` until it is accepted or `deadline` passes; errors are allowed (the
/// broker may be down), a send that returns `Ok` must be durable.
async fn send_retrying(t: &dyn Transport, queue: &str, body: Bytes, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match timeout(left, t.send(queue, body.clone())).await {
            Ok(Ok(())) => return true,
            Ok(Err(_)) => sleep(Duration::from_millis(200)).await,
            Err(_) => return false,
        }
    }
}

/// Case 7: the broker stops and starts mid-test while a producer keeps sending and a
/// consumer keeps receiving. Nothing whose send returned `Ok` is lost, sends during the
/// outage fail or are durable, and the same transport instances recover by themselves.
pub async fn broker_restart(h: &dyn Harness) {
    let _alone = EXCLUSIVE.write().await;
    let producer = h.connect().await;
    let consumer = h.connect().await;
    let queue = producer.queue_name(&unique_actor("conf-restart"));
    let n = 200usize;
    let during = 20usize;
    let b = |i: usize| {
        envelope(
            &format!("r{i}"),
            &format!("{{\"i\":{i},\"s\":\"redémarrage\"}}"),
        )
    };

    // Before the restart: half sent, a quarter received and acked.
    let mut accepted: HashSet<Bytes> = HashSet::new();
    for i in 0..n / 2 {
        producer.send(&queue, b(i)).await.unwrap();
        accepted.insert(b(i));
    }
    let mut seen: HashMap<Bytes, u32> = HashMap::new();
    while seen.len() < n / 4 {
        let d = must_receive(&*consumer, &queue, RECEIVE_WAIT, "before restart").await;
        assert!(accepted.contains(&d.body), "unknown body before restart");
        *seen.entry(d.body.clone()).or_default() += 1;
        consumer.ack(&d).await.unwrap();
    }

    let accepted = std::sync::Mutex::new(accepted);
    let seen = std::sync::Mutex::new(seen);
    let producing_done = std::sync::atomic::AtomicBool::new(false);
    let failed_sends = AtomicU64::new(0);

    // Sends during and after the restart by the same producer: each either fails or is
    // durable; after the restart every send must eventually succeed.
    let produce = async {
        for i in n / 2..n / 2 + during {
            match timeout(Duration::from_secs(60), producer.send(&queue, b(i))).await {
                Ok(Ok(())) => {
                    accepted.lock().unwrap().insert(b(i));
                }
                Ok(Err(_)) | Err(_) => {
                    failed_sends.fetch_add(1, Ordering::Relaxed);
                }
            }
            sleep(Duration::from_millis(100)).await;
        }
    };
    let restart = async {
        sleep(Duration::from_millis(300)).await;
        h.restart_broker().await;
    };
    // The same consumer keeps receiving through the outage; receive and ack errors
    // while the broker is down are expected (an ack that fails means a duplicate).
    let consume = async {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let done = producing_done.load(Ordering::Acquire) && {
                let acc = accepted.lock().unwrap();
                let seen = seen.lock().unwrap();
                acc.iter().all(|b| seen.contains_key(b))
            };
            if done || Instant::now() >= deadline {
                return;
            }
            match timeout(Duration::from_secs(2), consumer.receive(&queue)).await {
                Ok(Ok(d)) => {
                    *seen.lock().unwrap().entry(d.body.clone()).or_default() += 1;
                    let _ = consumer.ack(&d).await;
                }
                Ok(Err(TransportError::Closed)) => {
                    panic!("the consumer closed itself during the outage")
                }
                Ok(Err(_)) => sleep(Duration::from_millis(200)).await,
                Err(_) => {}
            }
        }
    };
    let produce_all = async {
        tokio::join!(produce, restart);
        let deadline = Instant::now() + Duration::from_secs(90);
        for i in n / 2 + during..n {
            assert!(
                send_retrying(&*producer, &queue, b(i), deadline).await,
                "the producer did not recover after the broker restart (send {i})"
            );
            accepted.lock().unwrap().insert(b(i));
        }
        producing_done.store(true, Ordering::Release);
    };
    tokio::join!(produce_all, consume);

    let accepted = accepted.into_inner().unwrap();
    let seen = seen.into_inner().unwrap();
    let missing: Vec<String> = accepted
        .iter()
        .filter(|b| !seen.contains_key(*b))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted messages lost across the restart, e.g. {:?}",
        missing.len(),
        accepted.len(),
        missing.first()
    );
    let dups = seen.values().filter(|&&c| c > 1).count();
    eprintln!(
        "broker_restart: {} sends accepted ({} during the restart failed), all received; {dups} received more than once",
        accepted.len(),
        failed_sends.load(Ordering::Relaxed),
    );
    producer.close().await;
    consumer.close().await;
}

/// For in-memory emulators, in place of [`broker_restart`] (whose "nothing whose send
/// returned Ok is lost" cannot hold for them): while the broker is down (`stop`) a send
/// is reported as `Unavailable` naming the endpoint, and after `restart` the same
/// `producer` and `consumer` work again with no help, their queues recreated. `settle`
/// is how long to wait after the restart before sending (time for the consumer to
/// recreate what a message must find). Both transports are closed at the end.
pub async fn emulator_restart_reconnects(
    producer: Arc<dyn Transport>,
    consumer: Arc<dyn Transport>,
    stop: impl FnOnce(),
    restart: impl FnOnce(),
    settle: Duration,
) {
    let kind = producer.kind();
    let queue = producer.queue_name("restart");
    for i in 0..5 {
        producer
            .send(&queue, Bytes::from(format!("{{\"before\":{i}}}")))
            .await
            .unwrap();
    }
    for _ in 0..5 {
        let d = timeout(Duration::from_secs(10), consumer.receive(&queue))
            .await
            .unwrap()
            .unwrap();
        consumer.ack(&d).await.unwrap();
    }

    stop();
    match producer
        .send(&queue, Bytes::from_static(b"{\"down\":1}"))
        .await
    {
        Err(TransportError::Unavailable { kind: k, url, .. }) if k == kind => {
            assert!(url.contains("127.0.0.1"), "{url}")
        }
        other => panic!("expected Unavailable while the {kind} emulator is down, got {other:?}"),
    }
    // A receiver waiting through the outage.
    let c = consumer.clone();
    let q = queue.clone();
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while got.len() < 10 && Instant::now() < deadline {
            match timeout(Duration::from_secs(5), c.receive(&q)).await {
                Ok(Ok(d)) => {
                    got.push(d.body.clone());
                    let _ = c.ack(&d).await;
                }
                Ok(Err(TransportError::Closed)) => panic!("consumer closed itself"),
                Ok(Err(_)) => sleep(Duration::from_millis(200)).await,
                Err(_) => {}
            }
        }
        got
    });
    sleep(Duration::from_secs(3)).await;
    restart();
    sleep(settle).await;

    let mut sent = HashSet::new();
    for i in 0..10 {
        let body = Bytes::from(format!("{{\"after\":{i}}}"));
        send_until_ok(&*producer, &queue, body.clone()).await;
        sent.insert(body);
    }
    let got: HashSet<Bytes> = task.await.unwrap().into_iter().collect();
    let missing: Vec<_> = sent.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "not received after the restart: {missing:?}"
    );
    producer.close().await;
    consumer.close().await;
}

/// Sends until the broker takes it (60 s at most); the transport must not close itself.
async fn send_until_ok(t: &dyn Transport, queue: &str, body: Bytes) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match t.send(queue, body.clone()).await {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "send never recovered: {e}");
                assert!(
                    !matches!(e, TransportError::Closed),
                    "transport closed itself"
                );
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// For transports whose receive is a background long poll (SQS, Pub/Sub): a `receive`
/// dropped while its poll runs loses nothing; the message the poll then picks up goes to
/// the next `receive`. `t` should have a long visibility timeout, so that a lost message
/// would not come back during the case. Closes `t`.
pub async fn dropped_receive_loses_nothing(t: &dyn Transport) {
    let q = t.queue_name("cancel");
    t.send(&q, Bytes::from_static(b"{\"warm\":1}"))
        .await
        .unwrap();
    let warm = receive_within(t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    t.ack(&warm).await.unwrap();
    for i in 0..3 {
        // The receive gives up while its long poll is running...
        assert!(receive_within(t, &q, Duration::from_millis(300))
            .await
            .is_none());
        // ...and the message that the poll then picks up is not lost.
        let body = Bytes::from(format!("{{\"i\":{i}}}"));
        t.send(&q, body.clone()).await.unwrap();
        let d = receive_within(t, &q, Duration::from_secs(5))
            .await
            .expect("message after a dropped receive");
        assert_eq!(d.body, body);
        t.ack(&d).await.unwrap();
    }
    t.close().await;
}

/// For transports whose receive is a background long poll: a message `a`'s poll picked
/// up into its buffer (within `pickup`) and never handed out is given back when `a`
/// closes, at once, to `b` on the same namespace. Both should have a long visibility
/// timeout. Closes both.
pub async fn close_gives_buffered_messages_back(
    a: &dyn Transport,
    b: &dyn Transport,
    pickup: Duration,
) {
    let q = a.queue_name("release");
    a.send(&q, Bytes::from_static(b"{\"warm\":1}"))
        .await
        .unwrap();
    let warm = receive_within(a, &q, Duration::from_secs(10))
        .await
        .unwrap();
    a.ack(&warm).await.unwrap();
    // a's long poll is left running and picks the message up into its buffer.
    assert!(receive_within(a, &q, Duration::from_millis(300))
        .await
        .is_none());
    b.send(&q, Bytes::from_static(b"{\"held\":1}"))
        .await
        .unwrap();
    sleep(pickup).await;
    assert_eq!(
        a.depth(&q).await.unwrap().in_flight,
        1,
        "held in a's buffer"
    );
    a.close().await;
    let d = receive_within(b, &q, Duration::from_secs(5))
        .await
        .expect("released by close");
    assert_eq!(&d.body[..], b"{\"held\":1}");
    b.ack(&d).await.unwrap();
    assert!(matches!(
        a.send(&q, Bytes::new()).await,
        Err(TransportError::Closed)
    ));
    b.close().await;
}
