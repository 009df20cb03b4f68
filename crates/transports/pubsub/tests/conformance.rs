//! The transport conformance suite against a real Pub/Sub emulator.
//!
//! Not run from the suite, and why:
//! - `depth_counts`: Pub/Sub has no backlog count in its API (see the crate docs);
//!   `depth` reports this instance's in-flight and delayed messages only, which
//!   `depth_reports_own_in_flight_and_delayed` in `tests/pubsub.rs` checks.
//! - `broker_restart`: the emulator keeps everything in memory, so a restart loses every
//!   message it held and "nothing whose send returned Ok is lost" cannot hold for it.
//!   `broker_restart_reconnects` below checks what it can show: the same transport
//!   instances notice the outage, recreate their topics and subscriptions and carry on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use support::{namespace, Emulator};
use troupe_transport::{Transport, TransportError};
use troupe_transport_conformance::{Capabilities, Harness};
use troupe_transport_pubsub::PubSubTransport;

/// Short (below the 10 s a subscription can have, so each pulled message gets its own
/// deadline), so a dead consumer's message comes back within the suite's patience.
const VISIBILITY: Duration = Duration::from_secs(3);

struct PubSubHarness {
    emulator: &'static Emulator,
    namespace: String,
}

#[async_trait]
impl Harness for PubSubHarness {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(support::connect(&self.emulator.url, &self.namespace, VISIBILITY).await)
    }

    async fn restart_broker(&self) {
        // Not used: see the module docs.
        panic!(
            "the emulator is in-memory: broker_restart is replaced by broker_restart_reconnects"
        );
    }

    fn dead_letter_queue(&self, _queue: &str) -> String {
        format!("asya-{}-dlq", self.namespace)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dead_letter_after: Some(3),
            redelivery_after: VISIBILITY + Duration::from_secs(2),
            depth_in_flight: true,
            depth_delayed: true,
            ..Capabilities::default()
        }
    }
}

fn harness() -> Option<PubSubHarness> {
    Some(PubSubHarness {
        emulator: support::shared()?,
        namespace: namespace(),
    })
}

/// One test per suite case; each prints SKIPPED and passes when the emulator cannot
/// run here.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(h) = harness() else { return };
                troupe_transport_conformance::$case(&h).await;
            }
        )*
    };
}

cases!(
    send_receive_ack,
    requeue_redelivers,
    dead_consumer_redelivers,
    delayed_delivery,
    dead_letter_after_max_deliveries,
);

async fn send_until_ok(t: &dyn Transport, queue: &str, body: Bytes) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match t.send(queue, body.clone()).await {
            Ok(()) => return,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "send never recovered: {e}"
                );
                assert!(
                    !matches!(e, TransportError::Closed),
                    "transport closed itself"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// In place of the suite's `broker_restart` (see the module docs): an outage is
/// reported as `Unavailable` naming the endpoint, and after the restart the same
/// producer and consumer instances work again with no help, their topics and
/// subscriptions recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_reconnects() {
    let Some(emu) = Emulator::start() else { return };
    eprintln!(
        "broker_restart_reconnects: the Pub/Sub emulator is in-memory, so messages held across \
         a restart are lost; this checks reconnection only, not durability"
    );
    let ns = namespace();
    let mut config = support::config(&emu.url);
    config.retry_for = Duration::from_secs(2);
    let producer = PubSubTransport::connect(config.clone(), support::options(&ns, VISIBILITY))
        .await
        .unwrap();
    let consumer = Arc::new(
        PubSubTransport::connect(config, support::options(&ns, VISIBILITY))
            .await
            .unwrap(),
    );
    let queue = producer.queue_name("restart");
    for i in 0..5 {
        producer
            .send(&queue, Bytes::from(format!("{{\"before\":{i}}}")))
            .await
            .unwrap();
    }
    for _ in 0..5 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.receive(&queue))
            .await
            .unwrap()
            .unwrap();
        consumer.ack(&d).await.unwrap();
    }

    emu.stop();
    match producer
        .send(&queue, Bytes::from_static(b"{\"down\":1}"))
        .await
    {
        Err(TransportError::Unavailable {
            kind: "pubsub",
            url,
            ..
        }) => assert!(url.contains("127.0.0.1"), "{url}"),
        other => panic!("expected Unavailable while the emulator is down, got {other:?}"),
    }
    // A receiver waiting through the outage.
    let c = consumer.clone();
    let q = queue.clone();
    let task = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while got.len() < 10 && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), c.receive(&q)).await {
                Ok(Ok(d)) => {
                    got.push(d.body.clone());
                    let _ = c.ack(&d).await;
                }
                Ok(Err(TransportError::Closed)) => panic!("consumer closed itself"),
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => {}
            }
        }
        got
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    emu.restart();
    // Let the consumer recreate the topic and its subscription first: a message
    // published to a recreated topic before its subscription exists reaches nobody (a
    // race that only an emptied broker can cause).
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut sent = HashSet::new();
    for i in 0..10 {
        let body = Bytes::from(format!("{{\"after\":{i}}}"));
        send_until_ok(&producer, &queue, body.clone()).await;
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
