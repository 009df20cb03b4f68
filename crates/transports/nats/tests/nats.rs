//! NATS-specific behaviour on a real nats-server: connection errors, JetStream missing,
//! size limit, cancel safety, deferral and delivery counts, AckWait expiry, restarts,
//! close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{namespace, options, Server, VISIBILITY};
use tokio::time::{sleep, timeout, Instant};
use troupe_transport::{Transport, TransportError};
use troupe_transport_conformance::connect_is_unavailable;
use troupe_transport_conformance::server::free_port;
use troupe_transport_nats::{dead_letter_queue, NatsTransport};

async fn connect(server: &Server, ns: &str) -> NatsTransport {
    NatsTransport::connect(&server.url, options(ns))
        .await
        .unwrap()
}

#[tokio::test]
async fn unreachable_server_is_unavailable_fast_and_redacted() {
    let url = format!("nats://alice:hunter2@127.0.0.1:{}", free_port());
    connect_is_unavailable(
        NatsTransport::connect(&url, options("ns")),
        "nats",
        "alice:***@127.0.0.1",
        "hunter2",
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test]
async fn bad_urls_and_options_are_config_errors() {
    for url in ["http://h:1", "nats://u:pw@h:port", "localhost:4222", ""] {
        let err = NatsTransport::connect(url, options("ns"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::Config { .. }),
            "{url}: {err:?}"
        );
        assert!(!err.to_string().contains(":pw@"), "{err}");
    }
    let err = NatsTransport::connect("nats://127.0.0.1:1", options("a.b"))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_auth() {
    let Some(server) = Server::start(&["--user", "alice", "--pass", "s3cret"]) else {
        return;
    };
    for url in [
        server.url_with_credentials("alice", "wrong"),
        server.url.clone(),
    ] {
        let start = Instant::now();
        let err = NatsTransport::connect(&url, options("ns"))
            .await
            .unwrap_err();
        let TransportError::Auth { url: shown, .. } = &err else {
            panic!("{url}: expected Auth, got {err:?}");
        };
        assert!(!shown.contains("wrong"), "{shown}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    let t = NatsTransport::connect(
        &server.url_with_credentials("alice", "s3cret"),
        options("ns"),
    )
    .await
    .unwrap();
    let q = t.queue_name("auth-ok");
    t.send(&q, Bytes::from_static(b"{}")).await.unwrap();
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.body, Bytes::from_static(b"{}"));
    t.ack(&d).await.unwrap();
    t.close().await;
}

#[tokio::test]
async fn jetstream_disabled_is_a_config_error() {
    let Some(server) = Server::start(&["-js=false"]) else {
        return;
    };
    let err = NatsTransport::connect(&server.url, options("ns"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Config { message, .. } if message.contains("-js")),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_messages_are_refused_and_nothing_is_published() {
    let Some(server) = Server::start_with_config("max_payload: 65536\n") else {
        return;
    };
    let t = connect(&server, &namespace("big")).await;
    let limit = t.max_message_bytes();
    assert!(limit < 65536 && limit > 65000, "{limit}");
    let q = t.queue_name("big");
    let too_big = Bytes::from(vec![b'x'; 100 * 1024]);
    for delayed in [false, true] {
        let err = if delayed {
            t.send_with_delay(&q, too_big.clone(), Duration::from_millis(10))
                .await
                .unwrap_err()
        } else {
            t.send(&q, too_big.clone()).await.unwrap_err()
        };
        let TransportError::TooLarge { size, limit: l, .. } = err else {
            panic!("expected TooLarge, got {err:?}");
        };
        assert_eq!(size, too_big.len());
        assert!(l <= limit);
    }
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.ready, depth.delayed, depth.in_flight), (0, 0, 0));
    let fits = Bytes::from(vec![b'y'; limit]);
    t.send(&q, fits.clone()).await.unwrap();
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.body, fits);
    t.ack(&d).await.unwrap();
    t.close().await;
}

#[tokio::test]
async fn dropped_receives_lose_nothing() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let t = connect(&server, &namespace("cancel")).await;
    let q = t.queue_name("cancel");
    for i in 0..10u64 {
        // A receive dropped while it waits, then a message it would have taken: the next
        // receive gets that message at once, not after AckWait.
        assert!(
            timeout(Duration::from_millis(20 + (i % 5) * 40), t.receive(&q))
                .await
                .is_err()
        );
        let body = Bytes::from(format!("{{\"i\":{i}}}"));
        t.send(&q, body.clone()).await.unwrap();
        let d = timeout(VISIBILITY / 2, t.receive(&q))
            .await
            .expect("a message sent after a dropped receive was lost")
            .unwrap();
        assert_eq!(d.body, body);
        assert_eq!(d.delivery_count, Some(1));
        t.ack(&d).await.unwrap();
    }
    t.close().await;
}

#[tokio::test]
async fn deferral_redeliveries_do_not_count() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let t = connect(&server, &namespace("defer")).await;
    let q = t.queue_name("defer");
    let body = Bytes::from_static(b"{\"later\":true}");
    let start = Instant::now();
    t.send_with_delay(&q, body.clone(), Duration::from_secs(1))
        .await
        .unwrap();
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.ready, depth.delayed), (0, 1), "{depth:?}");
    // Pulled early (deferred with a NAK) at least once before it is due.
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(d.body, body);
    assert_eq!(d.delivery_count, Some(1), "deferrals are not deliveries");
    let nacked = Instant::now();
    t.nack(&d, Duration::from_secs(1)).await.unwrap();
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    assert!(nacked.elapsed() >= Duration::from_millis(950));
    assert_eq!(d.delivery_count, Some(2));
    t.ack(&d).await.unwrap();
    let depth = t.depth(&q).await.unwrap();
    assert_eq!(
        (depth.ready, depth.delayed, depth.in_flight),
        (0, 0, 0),
        "{depth:?}"
    );
    t.close().await;
}

#[tokio::test]
async fn deliveries_that_keep_expiring_end_in_the_dlq() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let ns = namespace("expire");
    let t = connect(&server, &ns).await;
    let q = t.queue_name("expire");
    let body = Bytes::from_static("{\"poison\":\"☠\"}".as_bytes());
    t.send(&q, body.clone()).await.unwrap();
    for n in 1..=3 {
        let d = timeout(VISIBILITY * 4, t.receive(&q))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.delivery_count, Some(n));
        assert_eq!(d.body, body);
        // Neither acked nor nacked: it comes back after AckWait.
    }
    assert!(
        timeout(VISIBILITY * 3, t.receive(&q)).await.is_err(),
        "delivered a 4th time"
    );
    let dlq = t.dead_letter_queue().to_owned();
    assert_eq!(dlq, dead_letter_queue(&ns));
    let d = timeout(Duration::from_secs(5), t.receive(&dlq))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.body, body, "dead letter keeps the exact body");
    t.ack(&d).await.unwrap();
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_and_counts_survive_a_restart() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let t = connect(&server, &namespace("restart")).await;
    let q = t.queue_name("restart");
    t.send(&q, Bytes::from_static(b"\"first\"")).await.unwrap();
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    t.nack(&d, Duration::from_secs(2)).await.unwrap();
    t.send_with_delay(&q, Bytes::from_static(b"\"later\""), Duration::from_secs(2))
        .await
        .unwrap();
    tokio::task::block_in_place(|| server.restart());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let d = timeout(Duration::from_secs(20), t.receive(&q))
            .await
            .unwrap()
            .unwrap();
        seen.push((d.body.clone(), d.delivery_count));
        t.ack(&d).await.unwrap();
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (Bytes::from_static(b"\"first\""), Some(2)),
            (Bytes::from_static(b"\"later\""), Some(1)),
        ]
    );
    t.close().await;
}

#[tokio::test]
async fn closed_transports_are_reported() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let t = Arc::new(connect(&server, &namespace("closed")).await);
    let q = t.queue_name("closed");
    let waiting = {
        let (t, q) = (t.clone(), q.clone());
        tokio::spawn(async move { t.receive(&q).await })
    };
    sleep(Duration::from_millis(300)).await;
    t.close().await;
    let woken = timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(woken, Err(TransportError::Closed)), "{woken:?}");
    assert!(matches!(
        t.send(&q, Bytes::from_static(b"{}")).await,
        Err(TransportError::Closed)
    ));
    assert!(matches!(t.depth(&q).await, Err(TransportError::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_left_with_a_long_ack_wait_is_brought_to_the_window() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let ns = namespace("ackwait");
    // An earlier version (or setting) created the consumer with a 10-minute AckWait.
    let old = NatsTransport::connect(
        &server.url,
        troupe_transport::ConnectOptions {
            visibility_timeout: Duration::from_secs(600),
            ..options(&ns)
        },
    )
    .await
    .unwrap();
    let q = old.queue_name("ackwait");
    old.send(&q, Bytes::from_static(b"{\"n\":1}"))
        .await
        .unwrap();
    assert_eq!(old.depth(&q).await.unwrap().ready, 1);
    old.close().await;

    let doomed = connect(&server, &ns).await;
    let d = timeout(Duration::from_secs(5), doomed.receive(&q))
        .await
        .unwrap()
        .unwrap();
    // A crash: neither ack nor close.
    drop(doomed);
    let survivor = connect(&server, &ns).await;
    let start = Instant::now();
    let again = timeout(VISIBILITY * 4, survivor.receive(&q))
        .await
        .expect("redelivered after the configured window, not the consumer's old 10 minutes")
        .unwrap();
    assert_eq!(again.body, d.body);
    assert!(start.elapsed() < VISIBILITY * 4);
    survivor.ack(&again).await.unwrap();
    survivor.close().await;
}

/// `create_queue` of a queue whose subject another stream already claims is refused
/// with the queue's name and JetStream's reason; a name no stream can have is refused
/// before asking the server.
#[tokio::test]
async fn create_queue_refusals_are_readable() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let ns = namespace("prov");
    let t = connect(&server, &ns).await;
    let queue = t.queue_name("clash");
    let raw = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(raw);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "squatter".to_owned(),
        subjects: vec![queue.clone()],
        ..Default::default()
    })
    .await
    .unwrap();

    let err = t.create_queue(&queue).await.unwrap_err();
    let text = err.to_string();
    let TransportError::QueueRefused { kind, reason, .. } = &err else {
        panic!("expected QueueRefused, got {err:?}");
    };
    assert_eq!(*kind, "nats");
    assert!(reason.contains("overlap"), "{reason}");
    assert!(text.contains(&queue), "{text}");
    println!("refused: {text}");

    let err = t.create_queue("has.dot").await.unwrap_err();
    assert!(
        matches!(&err, TransportError::QueueRefused { queue, .. } if queue == "has.dot"),
        "{err:?}"
    );
    println!("refused: {err}");
    // Nothing of that name can exist, so there is nothing to delete.
    t.delete_queue("has.dot").await.unwrap();
    t.close().await;
}
