#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Sends that keep failing (a full disk under the embedded queue): the input is requeued
//! and the actor backs off instead of retrying at full speed, with one WARN per outage
//! and one INFO when sends succeed again. In a binary of its own because it collects
//! log lines.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{input, pass_through, TestClock, NOW};
use tokio::sync::{watch, Notify};
use troupe_engine::consumer::{run_replica, ReplicaExit};
use troupe_engine::handler::{EndHandler, EndOutcome, HandlerFailure, NativeHandler, Requeue};
use troupe_engine::metrics::ActorStats;
use troupe_engine::report::NoReporter;
use troupe_engine::{ActorSettings, Engine, Handler};
use troupe_protocol::{Envelope, Frame};
use troupe_transport::{Delivery, QueueDepth, Transport, TransportError};
use troupe_transport_conformance::logs::Logs;
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

/// The embedded queue with a disk that can fill up: while `full`, every send fails as a
/// write to a full disk does; receives, acks and requeues (memory only) still work.
struct FullDisk {
    inner: EmbeddedTransport,
    full: AtomicBool,
}

impl FullDisk {
    fn check(&self, queue: &str) -> Result<(), TransportError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(TransportError::Io {
                queue: queue.to_owned(),
                message:
                    "writing the embedded queue log failed: No space left on device (os error 28)"
                        .into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Transport for FullDisk {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn queue_name(&self, actor: &str) -> String {
        self.inner.queue_name(actor)
    }
    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        self.inner.receive(queue).await
    }
    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.check(queue)?;
        self.inner.send(queue, body).await
    }
    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.check(queue)?;
        self.inner.send_with_delay(queue, body, delay).await
    }
    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.inner.ack(delivery).await
    }
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.inner.nack(delivery, delay).await
    }
    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        self.inner.depth(queue).await
    }
    async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inner.create_queue(queue).await
    }
    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inner.delete_queue(queue).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

/// Passes the input on to `c`, counting its runs; notifies once it ran `limit` times.
struct Counting {
    runs: AtomicUsize,
    limit: usize,
    too_many: Notify,
}

#[async_trait]
impl NativeHandler for Counting {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        if self.runs.fetch_add(1, Ordering::SeqCst) + 1 == self.limit {
            self.too_many.notify_one();
        }
        // A real handler awaits something; without it a retry loop that never sleeps
        // would starve the test's own task on this one-thread runtime.
        tokio::task::yield_now().await;
        Ok(vec![pass_through(input, serde_json::json!({"ok": true}))])
    }
}

fn count(text: &str, level: &str, needle: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(level) && l.contains(needle))
        .count()
}

#[tokio::test(start_paused = true)]
async fn full_disk_backs_off_warns_once_and_recovers() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FullDisk {
        inner: EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap(),
        full: AtomicBool::new(false),
    });
    disk.send("b", Bytes::from(serde_json::to_vec(&input()).unwrap()))
        .await
        .unwrap();
    disk.full.store(true, Ordering::SeqCst);

    let engine = Arc::new(Engine::new(
        ActorSettings::new("b"),
        disk.clone(),
        Arc::new(NoReporter),
        Arc::new(TestClock::new(NOW)),
        Arc::new(ActorStats::default()),
    ));
    let handler = Arc::new(Counting {
        runs: AtomicUsize::new(0),
        limit: 100,
        too_many: Notify::new(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(
        engine.clone(),
        Handler::Native(handler.clone()),
        stop_rx,
    ));

    // Ten seconds of full disk. Retrying at once ran the handler thousands of times
    // (3,495 WARN lines in 10 s); with backoff (200 ms doubling) it runs 6 times.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        _ = handler.too_many.notified() => {}
    }
    let runs = handler.runs.load(Ordering::SeqCst);
    assert!((4..=8).contains(&runs), "{runs} tries in 10 s of full disk");
    let text = logs.text();
    assert_eq!(count(&text, "WARN", "send failed"), 1, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("WARN")).count(),
        1,
        "{text}"
    );
    // Nothing is lost meanwhile: the input waits in its queue.
    let depth = disk.depth("b").await.unwrap();
    assert_eq!(depth.ready + depth.in_flight, 1, "{depth:?}");

    // Space is freed: the next try goes through, and the outage ends with one INFO.
    disk.full.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(11), async {
        while disk.depth("c").await.unwrap().ready == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the input reaches c once the disk has space");
    assert_eq!(disk.depth("b").await.unwrap(), QueueDepth::default());
    let text = logs.text();
    assert_eq!(count(&text, "INFO", "sends succeed again"), 1, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("WARN")).count(),
        1,
        "{text}"
    );

    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

/// x-sink in the same process, whose storage fails while the disk is full.
struct FullDiskSink {
    full: Arc<AtomicBool>,
    stored: AtomicUsize,
}

#[async_trait]
impl EndHandler for FullDiskSink {
    async fn handle(&self, _env: &Envelope) -> Result<EndOutcome, Requeue> {
        if self.full.load(Ordering::SeqCst) {
            return Err(Requeue(
                "cannot persist envelope: No space left on device".into(),
            ));
        }
        self.stored.fetch_add(1, Ordering::SeqCst);
        Ok(EndOutcome {
            sends: Vec::new(),
            skip_report: true,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn local_sink_storage_failures_back_off_the_sending_actor() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let mut last = input();
    last["route"] = serde_json::json!({"prev": ["a"], "curr": "b", "next": []});
    queue
        .send("b", Bytes::from(serde_json::to_vec(&last).unwrap()))
        .await
        .unwrap();
    let full = Arc::new(AtomicBool::new(true));
    let sink = Arc::new(FullDiskSink {
        full: full.clone(),
        stored: AtomicUsize::new(0),
    });
    let engine = |actor: &str| {
        Engine::new(
            ActorSettings::new(actor),
            queue.clone(),
            Arc::new(NoReporter),
            Arc::new(TestClock::new(NOW)),
            Arc::new(ActorStats::default()),
        )
    };
    let sink_engine = Arc::new(engine("x-sink"));
    let engine = Arc::new(engine("b").with_local_sink(sink_engine, sink.clone()));
    let handler = Arc::new(Counting {
        runs: AtomicUsize::new(0),
        limit: 100,
        too_many: Notify::new(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(
        engine.clone(),
        Handler::Native(handler.clone()),
        stop_rx,
    ));
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        _ = handler.too_many.notified() => {}
    }
    let runs = handler.runs.load(Ordering::SeqCst);
    assert!((4..=8).contains(&runs), "{runs} tries in 10 s of full disk");
    let text = logs.text();
    // One WARN from x-sink's storage, one from the actor whose input is requeued.
    assert_eq!(
        text.lines().filter(|l| l.contains("WARN")).count(),
        2,
        "{text}"
    );

    full.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(11), async {
        while sink.stored.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("stored once the disk has space");
    assert_eq!(queue.depth("b").await.unwrap(), QueueDepth::default());
    assert_eq!(
        count(&logs.text(), "INFO", "sends succeed again"),
        2,
        "{}",
        logs.text()
    );
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}
