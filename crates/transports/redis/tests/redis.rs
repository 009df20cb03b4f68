//! Redis-specific behaviour on a real redis-server: connection errors, size limit,
//! cancel safety, reclaim, delayed messages across restarts, movers, close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{namespace, options, Server, VISIBILITY};
use tokio::time::{sleep, timeout};
use troupe_transport::{Transport, TransportError};
use troupe_transport_conformance::connect_is_unavailable;
use troupe_transport_conformance::server::free_port;
use troupe_transport_redis::{dead_letter_queue, queue_name, RedisTransport};

async fn connect(server: &Server, ns: &str) -> RedisTransport {
    RedisTransport::connect(&server.url, options(ns))
        .await
        .unwrap()
}

#[tokio::test]
async fn unreachable_server_is_unavailable_fast_and_redacted() {
    let url = format!("redis://:hunter2@127.0.0.1:{}/0", free_port());
    connect_is_unavailable(
        RedisTransport::connect(&url, options("ns")),
        "redis",
        ":***@127.0.0.1",
        "hunter2",
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test]
async fn bad_urls_are_config_errors() {
    for url in [
        "http://h:1/0",
        "rediss://:pw@h:6379/0",
        "redis://:pw@h:port/0",
    ] {
        let err = RedisTransport::connect(url, options("ns"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::Config { .. }),
            "{url}: {err:?}"
        );
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
}

#[tokio::test]
async fn wrong_or_missing_password_is_auth() {
    let Some(server) = Server::start(&["--requirepass", "s3cret"]) else {
        return;
    };
    for url in [server.url_with_password("wrong"), server.url.clone()] {
        let err = RedisTransport::connect(&url, options("ns"))
            .await
            .unwrap_err();
        let TransportError::Auth { url: shown, .. } = &err else {
            panic!("{url}: expected Auth, got {err:?}");
        };
        assert!(!shown.contains("wrong"), "{shown}");
    }
    let t = RedisTransport::connect(&server.url_with_password("s3cret"), options("ns"))
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
async fn oversized_messages_are_refused_and_nothing_is_published() {
    let Some(server) = Server::start(&["--proto-max-bulk-len", "1mb"]) else {
        return;
    };
    let t = connect(&server, &namespace("big")).await;
    let limit = t.max_message_bytes();
    assert_eq!(limit, 1024 * 1024 - 64);
    let q = t.queue_name("big");
    let too_big = Bytes::from(vec![b'x'; 1024 * 1024 + 1]);
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
        assert_eq!((size, l), (too_big.len(), limit));
    }
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.ready, depth.delayed, depth.in_flight), (0, 0, 0));
    // Exactly at the limit goes through, by either path, byte for byte.
    let fits = Bytes::from(vec![b'y'; limit]);
    t.send(&q, fits.clone()).await.unwrap();
    t.send_with_delay(&q, fits.clone(), Duration::from_millis(10))
        .await
        .unwrap();
    for _ in 0..2 {
        let d = timeout(Duration::from_secs(5), t.receive(&q))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body, fits);
        t.ack(&d).await.unwrap();
    }
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
        // receive gets that message at once, not after a visibility timeout.
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
        // Neither acked nor nacked: it comes back after the visibility timeout.
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
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.ready, depth.in_flight), (0, 0));
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
    assert_eq!(t.depth(&q).await.unwrap().delayed, 2);
    tokio::task::block_in_place(|| server.restart());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let d = timeout(Duration::from_secs(15), t.receive(&q))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_movers_move_each_delayed_message_once() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let ns = namespace("movers");
    let ts: Vec<Arc<RedisTransport>> = futures_join(&server, &ns, 3).await;
    let q = queue_name(&ns, "movers");
    for i in 0..30 {
        ts[i % 3]
            .send_with_delay(&q, Bytes::from(format!("{i}")), Duration::from_millis(300))
            .await
            .unwrap();
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in &ts {
        let (t, q, got) = (t.clone(), q.clone(), got.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok(Ok(d)) = timeout(Duration::from_secs(3), t.receive(&q)).await {
                got.lock().unwrap().push(d.body.clone());
                t.ack(&d).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let got = got.lock().unwrap().clone();
    let distinct: HashSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), 30, "each delayed message exactly once");
    assert_eq!(distinct.len(), 30);
    for t in ts {
        t.close().await;
    }
}

async fn futures_join(server: &Server, ns: &str, n: usize) -> Vec<Arc<RedisTransport>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Arc::new(connect(server, ns).await));
    }
    v
}

#[tokio::test]
async fn stale_handles_and_closed_transports_are_reported() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let t = Arc::new(connect(&server, &namespace("closed")).await);
    let q = t.queue_name("closed");
    t.send(&q, Bytes::from_static(b"{}")).await.unwrap();
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    t.ack(&d).await.unwrap();
    assert!(matches!(
        t.ack(&d).await,
        Err(TransportError::UnknownDelivery(_))
    ));
    assert!(matches!(
        t.requeue(&d).await,
        Err(TransportError::UnknownDelivery(_))
    ));

    let waiting = {
        let (t, q) = (t.clone(), q.clone());
        tokio::spawn(async move { t.receive(&q).await })
    };
    sleep(Duration::from_millis(200)).await;
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

/// Options with consumer name `consumer` and a window far longer than the test waits:
/// what comes back quickly here comes back by the take-back, not the reclaim.
fn long_window(ns: &str, consumer: &str) -> troupe_transport::ConnectOptions {
    troupe_transport::ConnectOptions {
        consumer_name: consumer.to_owned(),
        visibility_timeout: Duration::from_secs(120),
        ..options(ns)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_takes_back_its_own_pending_entries_at_once() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let ns = namespace("takeback");
    let first = RedisTransport::connect(&server.url, long_window(&ns, "pod-a"))
        .await
        .unwrap();
    let q = first.queue_name("takeback");
    first
        .send(&q, Bytes::from_static(b"{\"n\":1}"))
        .await
        .unwrap();
    let d = timeout(Duration::from_secs(5), first.receive(&q))
        .await
        .unwrap()
        .unwrap();
    // A crash: no ack, no close. The same consumer name comes back (a pod's container
    // restarted) and finds the entry in its own pending list.
    drop(first);
    let second = RedisTransport::connect(&server.url, long_window(&ns, "pod-a"))
        .await
        .unwrap();
    let again = timeout(Duration::from_secs(5), second.receive(&q))
        .await
        .expect("the own pending entry comes back at once, not after the 120 s window")
        .unwrap();
    assert_eq!(again.body, d.body);
    assert_eq!(again.delivery_count, Some(2));
    second.ack(&again).await.unwrap();
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_a_live_consumer_takes_back_entries_whose_reply_was_lost() {
    let Some(server) = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let ns = namespace("lostreply");
    let t = RedisTransport::connect(&server.url, long_window(&ns, "live-1"))
        .await
        .unwrap();
    let q = t.queue_name("lostreply");
    t.send(&q, Bytes::from_static(b"{\"n\":0}")).await.unwrap();
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    t.ack(&d).await.unwrap();
    // An XREADGROUP the server applied but whose reply never reached the transport (the
    // connection broke): the entry is pending for this consumer, which never saw it.
    t.send(&q, Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    let read = server.cli(&[
        "XREADGROUP",
        "GROUP",
        "asya",
        "live-1",
        "COUNT",
        "1",
        "STREAMS",
        &q,
        ">",
    ]);
    assert!(read.contains("{\"n\":1}"), "{read}");
    tokio::task::block_in_place(|| server.restart());
    let got = timeout(Duration::from_secs(20), t.receive(&q))
        .await
        .expect("taken back after the reconnect, not after the 120 s window")
        .unwrap();
    assert_eq!(&got.body[..], b"{\"n\":1}");
    t.ack(&got).await.unwrap();
    assert_eq!(t.depth(&q).await.unwrap().in_flight, 0);
    t.close().await;
}

/// `create_queue` on a name held by a key that is not a stream is refused with the
/// queue's name and the server's reason; `delete_queue` then clears the name.
#[tokio::test]
async fn create_queue_on_a_non_stream_key_is_refused() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let ns = namespace("prov");
    let t = connect(&server, &ns).await;
    let queue = queue_name(&ns, "clash");
    assert_eq!(server.cli(&["SET", &queue, "not a stream"]), "OK");
    let err = t.create_queue(&queue).await.unwrap_err();
    let text = err.to_string();
    let TransportError::QueueRefused { kind, reason, .. } = &err else {
        panic!("expected QueueRefused, got {err:?}");
    };
    assert_eq!(*kind, "redis");
    assert!(reason.contains("WRONGTYPE"), "{reason}");
    assert!(text.contains(&queue), "{text}");
    println!("refused: {text}");
    assert_eq!(
        server.cli(&["GET", &queue]),
        "not a stream",
        "left as it was"
    );
    t.delete_queue(&queue).await.unwrap();
    t.create_queue(&queue).await.unwrap();
    assert_eq!(server.cli(&["TYPE", &queue]), "stream");
    t.close().await;
}
