//! The transport conformance suite, and the connection error cases, against a real
//! RabbitMQ node that this test binary starts itself (`scripts/services/rabbitmq.sh`)
//! on a free loopback port in a temp dir. All tests share that node; it stops when the
//! last test using it ends (and the script's watchdog stops it if this process dies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use troupe_transport::{ConnectOptions, Transport, TransportError};
use troupe_transport_conformance::server::{self, free_port, Server};
use troupe_transport_conformance::{Capabilities, Harness};
use troupe_transport_rabbitmq::{RabbitMqSettings, RabbitMqTransport};

/// The test node's `max_message_size`, small enough to test `TooLarge` cheaply.
const BROKER_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Starts a RabbitMQ node; it stops when dropped (and by the script's watchdog if this
/// process dies first).
fn start_broker() -> Server {
    let size = BROKER_MAX_MESSAGE_SIZE.to_string();
    let broker = Server::start_in(
        &server::RABBITMQ,
        tempfile::tempdir().unwrap(),
        &[],
        &[("RABBITMQ_TEST_MAX_MESSAGE_SIZE", &size)],
    )
    .expect("RabbitMQ is always required");
    assert!(
        broker.url.starts_with("amqp://"),
        "unexpected URL {:?}",
        broker.url
    );
    broker
}

static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());

/// The node all tests of this binary share, started by the first one.
async fn shared_broker() -> Arc<Server> {
    tokio::task::spawn_blocking(|| {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = slot.upgrade() {
            return b;
        }
        let b = Arc::new(start_broker());
        *slot = Arc::downgrade(&b);
        b
    })
    .await
    .unwrap()
}

fn options(namespace: &str) -> ConnectOptions {
    ConnectOptions {
        prefetch: 1,
        max_deliveries: 3,
        visibility_timeout: Duration::from_secs(3),
        ..ConnectOptions::new(namespace)
    }
}

/// Quick retries, so a restart is noticed fast; enough of them to outlast one.
fn settings() -> RabbitMqSettings {
    RabbitMqSettings {
        dial_attempts: 10,
        dial_backoff: Duration::from_millis(250),
        queue_retry_backoff: Duration::from_millis(250),
        ..RabbitMqSettings::default()
    }
}

struct RabbitHarness {
    broker: Arc<Server>,
    namespace: String,
}

async fn harness() -> RabbitHarness {
    RabbitHarness {
        broker: shared_broker().await,
        namespace: "conformance".to_owned(),
    }
}

#[async_trait]
impl Harness for RabbitHarness {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(
            RabbitMqTransport::connect_with(
                &self.broker.url,
                "asya",
                options(&self.namespace),
                settings(),
            )
            .await
            .unwrap(),
        )
    }

    async fn restart_broker(&self) {
        let broker = self.broker.clone();
        let url = tokio::task::spawn_blocking(move || broker.restart())
            .await
            .unwrap();
        assert_eq!(
            url, self.broker.url,
            "the node came back on another address"
        );
    }

    fn dead_letter_queue(&self, queue: &str) -> String {
        format!("{queue}-dlq")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dead_letter_after: Some(3),
            // A closed connection hands its unacked messages back at once.
            redelivery_after: Duration::from_secs(2),
            delay_slack: Duration::from_secs(2),
            depth_settle: Duration::from_secs(3),
            ..Capabilities::default()
        }
    }
}

troupe_transport_conformance::conformance_tests!(harness().await);

#[tokio::test]
async fn unreachable_broker_is_unavailable_quickly() {
    let url = format!("amqp://guest:s3cret@127.0.0.1:{}/%2f", free_port());
    let quick = RabbitMqSettings {
        dial_attempts: 2,
        dial_backoff: Duration::from_millis(100),
        ..RabbitMqSettings::default()
    };
    let err = troupe_transport_conformance::connect_is_unavailable(
        RabbitMqTransport::connect_with(&url, "asya", options("t"), quick),
        "rabbitmq",
        "127.0.0.1",
        "s3cret",
        Duration::from_secs(5),
    )
    .await;
    let TransportError::Unavailable { url: shown, .. } = &err else {
        unreachable!("checked above");
    };
    let text = err.to_string();
    assert!(text.contains(shown.as_str()), "{text}");
}

#[tokio::test]
async fn bad_url_is_a_config_error() {
    let err = match troupe_transport_rabbitmq::connect("http://h/", "asya", options("t")).await {
        Ok(_) => panic!("accepted an http URL"),
        Err(e) => e,
    };
    assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let broker = shared_broker().await;
    let url = broker.url.replace("guest:guest@", "guest:wrong-pw@");
    let start = std::time::Instant::now();
    let err = match RabbitMqTransport::connect_with(&url, "asya", options("t"), settings()).await {
        Ok(_) => panic!("connected with a wrong password"),
        Err(e) => e,
    };
    assert!(matches!(err, TransportError::Auth { .. }), "{err:?}");
    // Refused credentials are not retried.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    let text = err.to_string();
    assert!(!text.contains("wrong-pw"), "password printed: {text}");
}

#[tokio::test]
async fn oversized_message_is_too_large_and_not_published() {
    let broker = shared_broker().await;
    let t = RabbitMqTransport::connect_with(&broker.url, "asya", options("big"), settings())
        .await
        .unwrap();
    let queue = t.queue_name(&troupe_transport_conformance::unique_actor("big"));
    let big = Bytes::from(vec![b'x'; BROKER_MAX_MESSAGE_SIZE + 1]);
    // The broker's limit is below the configured default: learnt from its refusal.
    let err = t.send(&queue, big.clone()).await.unwrap_err();
    let TransportError::TooLarge { size, limit, .. } = err else {
        panic!("expected TooLarge, got {err:?}");
    };
    assert_eq!((size, limit), (big.len(), BROKER_MAX_MESSAGE_SIZE));
    // Now refused before publishing, delayed or not.
    let err = t
        .send_with_delay(&queue, big.clone(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::TooLarge { .. }), "{err:?}");
    // The transport still works, and nothing of the refused messages arrived.
    t.send(&queue, Bytes::from_static(b"{\"ok\":true}"))
        .await
        .unwrap();
    let depth = t.depth(&queue).await.unwrap();
    assert_eq!((depth.ready, depth.delayed), (1, 0), "{depth:?}");
    let d = t.receive(&queue).await.unwrap();
    assert_eq!(&d.body[..], b"{\"ok\":true}");
    t.ack(&d).await.unwrap();
    // A body at the limit itself is accepted.
    let at_limit = Bytes::from(vec![b'y'; BROKER_MAX_MESSAGE_SIZE]);
    t.send(&queue, at_limit.clone()).await.unwrap();
    let d = t.receive(&queue).await.unwrap();
    assert_eq!(d.body.len(), at_limit.len());
    t.ack(&d).await.unwrap();
    t.close().await;
}

#[tokio::test]
async fn pipelined_sends_keep_order_recover_a_deleted_queue_and_refuse_oversize() {
    let broker = shared_broker().await;
    let t = RabbitMqTransport::connect_with(&broker.url, "asya", options("pipe"), settings())
        .await
        .unwrap();
    let queue = t.queue_name(&troupe_transport_conformance::unique_actor("pipe"));
    // Many publishes in flight at once, confirmed afterwards, arrive in send order.
    let mut pending = Vec::new();
    for i in 0..200 {
        pending.push(
            t.send_pipelined(&queue, Bytes::from(format!("{{\"n\":{i}}}")))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap();
    }
    for i in 0..200 {
        let d = t.receive(&queue).await.unwrap();
        assert_eq!(
            d.body,
            Bytes::from(format!("{{\"n\":{i}}}")),
            "out of order"
        );
        t.ack(&d).await.unwrap();
    }
    // The queue is deleted behind the transport's back: the publish comes back
    // unroutable, and the confirm step re-declares and resends instead of losing it.
    let (_conn, raw) = raw_channel(&broker.url).await;
    raw.queue_delete(
        queue.as_str().into(),
        lapin::options::QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
    let p = t
        .send_pipelined(&queue, Bytes::from_static(b"{\"after\":\"delete\"}"))
        .await
        .unwrap();
    p.await.unwrap();
    let d = t.receive(&queue).await.unwrap();
    assert_eq!(&d.body[..], b"{\"after\":\"delete\"}");
    t.ack(&d).await.unwrap();
    // Over the broker's limit (not yet learnt): the broker closes the channel, and the
    // error reaches the caller, at the publish or at the confirm.
    let big = Bytes::from(vec![b'x'; BROKER_MAX_MESSAGE_SIZE + 1]);
    let err = match t.send_pipelined(&queue, big).await {
        Ok(p) => p.await.unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(err, TransportError::TooLarge { .. }), "{err:?}");
    let p = t
        .send_pipelined(&queue, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    p.await.unwrap();
    let d = t.receive(&queue).await.unwrap();
    assert_eq!(&d.body[..], b"{}", "only the small message arrived");
    t.ack(&d).await.unwrap();
    let extra = tokio::time::timeout(Duration::from_millis(500), t.receive(&queue)).await;
    assert!(extra.is_err(), "the oversized message arrived after all");
    t.close().await;
}

/// Waits until `queue` has `ready` messages the broker has not handed out.
async fn wait_ready(t: &RabbitMqTransport, queue: &str, ready: u64, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = t.depth(queue).await.unwrap().ready;
        if got == ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {got} ready, expected {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn set_prefetch_changes_a_running_consumers_window() {
    let broker = shared_broker().await;
    let t = RabbitMqTransport::connect_with(&broker.url, "asya", options("qos"), settings())
        .await
        .unwrap();
    let queue = t.queue_name(&troupe_transport_conformance::unique_actor("qos"));
    for i in 0..6 {
        t.send(&queue, Bytes::from(format!("{{\"n\":{i}}}")))
            .await
            .unwrap();
    }
    // Prefetch 1: the consumer holds the one delivery it handed out, nothing more.
    let first = t.receive(&queue).await.unwrap();
    wait_ready(&t, &queue, 5, "prefetch 1").await;
    // Raised while the consumer runs: two more come over at once.
    t.set_prefetch(&queue, 3).await;
    wait_ready(&t, &queue, 3, "prefetch 3").await;
    // Lowered again: after the acks the consumer may hold only one.
    t.set_prefetch(&queue, 1).await;
    t.ack(&first).await.unwrap();
    for _ in 0..2 {
        let d = t.receive(&queue).await.unwrap();
        t.ack(&d).await.unwrap();
    }
    wait_ready(&t, &queue, 2, "back to prefetch 1").await;
    // A restarted consumer keeps the last value.
    t.set_prefetch(&queue, 2).await;
    t.close().await;
    let t = RabbitMqTransport::connect_with(&broker.url, "asya", options("qos"), settings())
        .await
        .unwrap();
    t.set_prefetch(&queue, 2).await;
    let d = t.receive(&queue).await.unwrap();
    wait_ready(&t, &queue, 1, "new consumer with prefetch 2").await;
    t.ack(&d).await.unwrap();
    t.close().await;
}

/// A raw AMQP client doing what Asya's Go sidecar does.
async fn raw_channel(url: &str) -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn raw_get(ch: &lapin::Channel, queue: &str) -> lapin::message::BasicGetMessage {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = ch
            .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
            .await
            .unwrap()
        {
            return m;
        }
        assert!(std::time::Instant::now() < deadline, "nothing on {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn asya_peer_interop() {
    use lapin::options::{
        BasicAckOptions, BasicNackOptions, BasicPublishOptions, QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};

    let broker = shared_broker().await;
    let t = RabbitMqTransport::connect_with(&broker.url, "asya", options("wire"), settings())
        .await
        .unwrap();
    let (_conn, raw) = raw_channel(&broker.url).await;
    let actor = troupe_transport_conformance::unique_actor("wire");
    let queue = t.queue_name(&actor);
    assert_eq!(queue, format!("asya-wire-{actor}"));
    let body = Bytes::from_static("{\"id\":\"w\",\"payload\":\"ü\"}".as_bytes());

    // What we send is what an Asya consumer of the queue gets: same bytes, persistent JSON.
    t.send(&queue, body.clone()).await.unwrap();
    let m = raw_get(&raw, &queue).await;
    assert_eq!(m.delivery.data, body.to_vec());
    assert_eq!(m.delivery.exchange.as_str(), "asya");
    assert_eq!(m.delivery.routing_key.as_str(), actor);
    assert_eq!(m.delivery.properties.delivery_mode(), &Some(2));
    assert_eq!(
        m.delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str()),
        Some("application/json")
    );
    // An Asya peer's requeue (basic.nack requeue) counts as a delivery.
    m.delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .unwrap();
    let d = t.receive(&queue).await.unwrap();
    assert_eq!((d.body.clone(), d.delivery_count), (body.clone(), Some(2)));
    // Our requeue republishes the same bytes with the count header, which Asya ignores.
    t.requeue(&d).await.unwrap();
    // (Our consumer may hold the copy; closing hands it back for the raw client.)
    t.close().await;
    let t = RabbitMqTransport::connect_with(&broker.url, "asya", options("wire"), settings())
        .await
        .unwrap();
    let m = raw_get(&raw, &queue).await;
    assert_eq!(m.delivery.data, body.to_vec());
    let count = m
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-troupe-delivery-count").cloned());
    assert_eq!(count, Some(AMQPValue::LongLongInt(2)));
    m.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();

    // What an Asya sidecar publishes (exchange asya, key = actor) we receive, count 1.
    raw.basic_publish(
        "asya".into(),
        actor.as_str().into(),
        BasicPublishOptions::default(),
        &body,
        lapin::BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into()),
    )
    .await
    .unwrap();
    let d = t.receive(&queue).await.unwrap();
    assert_eq!((d.body.clone(), d.delivery_count), (body.clone(), Some(1)));
    t.ack(&d).await.unwrap();
    assert!(matches!(
        t.ack(&d).await,
        Err(TransportError::UnknownDelivery(_))
    ));

    // A queue the platform created with other arguments is used as it is.
    let other = t.queue_name(&troupe_transport_conformance::unique_actor("platform"));
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("asya-dlx".into()),
    );
    raw.queue_declare(
        other.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .unwrap();
    t.send(&other, body.clone()).await.unwrap();
    let d = t.receive(&other).await.unwrap();
    assert_eq!(d.body, body);
    t.ack(&d).await.unwrap();

    t.close().await;
    assert!(matches!(
        t.send(&queue, body).await,
        Err(TransportError::Closed)
    ));
}

/// The operator's `create_queue` reports a queue that exists with other arguments (made
/// by hand or another tool) as a refusal naming the queue and the broker's reason,
/// instead of using it as the consumer does; the existing queue is left as it was.
#[tokio::test]
async fn create_queue_with_conflicting_arguments_is_refused() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};

    let broker = shared_broker().await;
    let t = RabbitMqTransport::connect_with(&broker.url, "asya", options("prov"), settings())
        .await
        .unwrap();
    let queue = t.queue_name(&troupe_transport_conformance::unique_actor("clash"));
    let (_conn, raw) = raw_channel(&broker.url).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    raw.queue_declare(queue.as_str().into(), durable, args.clone())
        .await
        .unwrap();

    let err = t.create_queue(&queue).await.unwrap_err();
    let text = err.to_string();
    let TransportError::QueueRefused {
        kind,
        queue: named,
        reason,
    } = &err
    else {
        panic!("expected QueueRefused, got {err:?}");
    };
    assert_eq!((*kind, named.as_str()), ("rabbitmq", queue.as_str()));
    assert!(reason.starts_with("PRECONDITION_FAILED"), "{reason}");
    assert!(reason.contains("x-max-length"), "{reason}");
    assert!(text.contains(&queue), "{text}");
    println!("refused: {text}");
    // Untouched: declaring it again with its own arguments still succeeds.
    raw.queue_declare(queue.as_str().into(), durable, args)
        .await
        .unwrap();
    // The transport's channel survived the refusal: a fitting queue still works.
    let other = t.queue_name(&troupe_transport_conformance::unique_actor("fits"));
    t.create_queue(&other).await.unwrap();
    t.delete_queue(&other).await.unwrap();
    t.delete_queue(&queue).await.unwrap();
    t.close().await;
}
