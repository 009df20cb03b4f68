//! Queue semantics of the embedded transport (in one process lifetime).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{timeout, Instant};
use troupe_transport::{QueueDepth, Transport, TransportError};
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

fn open(dir: &std::path::Path) -> EmbeddedTransport {
    EmbeddedTransport::open(dir, EmbeddedOptions::default()).unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test]
async fn send_receive_ack() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    assert_eq!(t.kind(), "embedded");
    assert_eq!(t.queue_name("summarize"), "summarize");
    t.send("a", b("{\"id\":\"1\"}")).await.unwrap();
    let d = t.receive("a").await.unwrap();
    assert_eq!(&*d.queue, "a");
    assert_eq!(d.body, b("{\"id\":\"1\"}"));
    assert_eq!(d.delivery_count, Some(1));
    assert_eq!(
        t.depth("a").await.unwrap(),
        QueueDepth {
            ready: 0,
            delayed: 0,
            in_flight: 1
        }
    );
    t.ack(&d).await.unwrap();
    assert_eq!(t.depth("a").await.unwrap(), QueueDepth::default());
    // A second ack of the same delivery is refused.
    assert!(matches!(
        t.ack(&d).await,
        Err(TransportError::UnknownDelivery(q)) if q == "a"
    ));
    assert!(t.try_receive("a").unwrap().is_none());
}

#[tokio::test]
async fn queues_are_independent_and_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    for i in 0..100 {
        t.send("x", b(&format!("x{i}"))).await.unwrap();
        t.send("y", b(&format!("y{i}"))).await.unwrap();
    }
    for i in 0..100 {
        let d = t.receive("x").await.unwrap();
        assert_eq!(d.body, b(&format!("x{i}")));
        t.ack(&d).await.unwrap();
    }
    assert_eq!(t.depth("y").await.unwrap().ready, 100);
    t.send_batch("y", vec![b("z1"), b("z2")]).await.unwrap();
    for i in 0..100 {
        assert_eq!(t.receive("y").await.unwrap().body, b(&format!("y{i}")));
    }
    assert_eq!(t.receive("y").await.unwrap().body, b("z1"));
    assert_eq!(t.receive("y").await.unwrap().body, b("z2"));
    let names: Vec<String> = t.queues().iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, vec!["x", "y"]);
}

#[tokio::test]
async fn requeue_redelivers_first_with_higher_count() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.send("q", b("one")).await.unwrap();
    t.send("q", b("two")).await.unwrap();
    let d = t.receive("q").await.unwrap();
    assert_eq!(d.body, b("one"));
    t.requeue(&d).await.unwrap();
    // The stale handle is no longer valid.
    assert!(matches!(
        t.ack(&d).await,
        Err(TransportError::UnknownDelivery(_))
    ));
    let again = t.receive("q").await.unwrap();
    assert_eq!(again.body, b("one"));
    assert_eq!(again.delivery_count, Some(2));
    assert_ne!(again.handle, d.handle);
    assert_eq!(t.receive("q").await.unwrap().body, b("two"));
}

#[tokio::test(start_paused = true)]
async fn nack_with_delay_hides_message_until_due() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.send("q", b("m")).await.unwrap();
    let d = t.receive("q").await.unwrap();
    let start = Instant::now();
    t.nack(&d, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        t.depth("q").await.unwrap(),
        QueueDepth {
            ready: 0,
            delayed: 1,
            in_flight: 0
        }
    );
    assert!(timeout(Duration::from_secs(29), t.receive("q"))
        .await
        .is_err());
    let again = t.receive("q").await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert!(start.elapsed() < Duration::from_secs(31));
    assert_eq!(again.body, b("m"));
    assert_eq!(again.delivery_count, Some(2));
}

#[tokio::test(start_paused = true)]
async fn send_with_delay_is_not_receivable_early() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    let start = Instant::now();
    t.send_with_delay("q", b("late"), Duration::from_secs(10))
        .await
        .unwrap();
    t.send_with_delay("q", b("later"), Duration::from_secs(20))
        .await
        .unwrap();
    t.send("q", b("now")).await.unwrap();
    assert_eq!(t.receive("q").await.unwrap().body, b("now"));
    assert_eq!(t.depth("q").await.unwrap().delayed, 2);
    assert!(t.try_receive("q").unwrap().is_none());
    assert!(timeout(Duration::from_millis(9_990), t.receive("q"))
        .await
        .is_err());
    let d = t.receive("q").await.unwrap();
    assert_eq!(d.body, b("late"));
    let at = start.elapsed();
    assert!(
        at >= Duration::from_secs(10) && at < Duration::from_millis(10_010),
        "{at:?}"
    );
    let d = t.receive("q").await.unwrap();
    assert_eq!(d.body, b("later"));
    assert!(start.elapsed() >= Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn visibility_timeout_redelivers() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        visibility_timeout: Duration::from_secs(60),
        ..EmbeddedOptions::default()
    };
    let t = EmbeddedTransport::open(dir.path(), opts).unwrap();
    t.send("q", b("m")).await.unwrap();
    let start = Instant::now();
    let first = t.receive("q").await.unwrap();
    // Not visible while in flight.
    assert!(timeout(Duration::from_secs(59), t.receive("q"))
        .await
        .is_err());
    let second = t.receive("q").await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert_eq!(second.body, b("m"));
    assert_eq!(second.delivery_count, Some(2));
    // The expired delivery can no longer be acked; the new one can.
    assert!(matches!(
        t.ack(&first).await,
        Err(TransportError::UnknownDelivery(_))
    ));
    t.ack(&second).await.unwrap();
    assert_eq!(t.depth("q").await.unwrap(), QueueDepth::default());
}

#[tokio::test(start_paused = true)]
async fn depth_counts_ready_delayed_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    for i in 0..3 {
        t.send("q", b(&i.to_string())).await.unwrap();
    }
    t.send_with_delay("q", b("d"), Duration::from_secs(5))
        .await
        .unwrap();
    let _d = t.receive("q").await.unwrap();
    let depth = t.depth("q").await.unwrap();
    assert_eq!(
        depth,
        QueueDepth {
            ready: 2,
            delayed: 1,
            in_flight: 1
        }
    );
    assert_eq!(depth.backlog(), 3);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        t.depth("q").await.unwrap(),
        QueueDepth {
            ready: 3,
            delayed: 0,
            in_flight: 1
        }
    );
    assert_eq!(t.depth("unknown").await.unwrap(), QueueDepth::default());
}

#[tokio::test]
async fn receive_waits_and_wakes_on_send() {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(open(dir.path()));
    let r = {
        let t = t.clone();
        tokio::spawn(async move { t.receive("q").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!r.is_finished());
    t.send("q", b("wake")).await.unwrap();
    let d = timeout(Duration::from_secs(5), r).await.unwrap().unwrap();
    assert_eq!(d.body, b("wake"));
}

#[tokio::test]
async fn dropped_receive_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    // A receive that times out (dropped while waiting) takes nothing.
    assert!(timeout(Duration::from_millis(10), t.receive("q"))
        .await
        .is_err());
    // A waiting receive that is woken by a send but dropped before it runs again must not
    // swallow the message nor the wake-up.
    let mut fut = Box::pin(t.receive("q"));
    assert!(timeout(Duration::from_millis(10), &mut fut).await.is_err());
    let mut waiter = Box::pin(t.receive("q"));
    assert!(timeout(Duration::from_millis(10), &mut waiter)
        .await
        .is_err());
    t.send("q", b("kept")).await.unwrap();
    drop(fut);
    let d = timeout(Duration::from_secs(5), &mut waiter)
        .await
        .expect("the wake-up was passed on")
        .unwrap();
    assert_eq!(d.body, b("kept"));
    assert_eq!(d.delivery_count, Some(1));
}

#[tokio::test(start_paused = true)]
async fn arrivals_are_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    let mut rx = t.arrivals().unwrap();
    t.send("alpha", b("1")).await.unwrap();
    assert_eq!(&*rx.recv().await.unwrap(), "alpha");
    t.send_with_delay("beta", b("2"), Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        rx.try_recv().is_err(),
        "delayed message is not an arrival yet"
    );
    let start = Instant::now();
    assert_eq!(&*rx.recv().await.unwrap(), "beta");
    assert!(start.elapsed() >= Duration::from_secs(3));
    let d = t.receive("alpha").await.unwrap();
    t.requeue(&d).await.unwrap();
    assert_eq!(&*rx.recv().await.unwrap(), "alpha");
}

#[tokio::test]
async fn limits_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        max_message_bytes: 10,
        ..EmbeddedOptions::default()
    };
    let t = Arc::new(EmbeddedTransport::open(dir.path(), opts).unwrap());
    assert!(matches!(
        t.send("q", Bytes::from(vec![0u8; 11])).await,
        Err(TransportError::TooLarge {
            size: 11,
            limit: 10,
            ..
        })
    ));
    assert!(matches!(
        t.send("", b("x")).await,
        Err(TransportError::NoSuchQueue(_))
    ));
    t.send("q", b("x")).await.unwrap();
    let waiting = {
        let t = t.clone();
        tokio::spawn(async move { t.receive("other").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    t.close().await;
    assert!(matches!(
        timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap(),
        Err(TransportError::Closed)
    ));
    assert!(matches!(
        t.send("q", b("y")).await,
        Err(TransportError::Closed)
    ));
    assert!(matches!(t.receive("q").await, Err(TransportError::Closed)));
    assert!(matches!(t.depth("q").await, Err(TransportError::Closed)));
    // Close released the store: it can be opened again while `t` still exists.
    let again = open(dir.path());
    assert_eq!(again.receive("q").await.unwrap().body, b("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_and_consumers_deliver_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(open(dir.path()));
    let producers = 6;
    let per = 2_000;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                t.send("q", Bytes::from(format!("{p}-{i}"))).await.unwrap();
            }
        }));
    }
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let t = t.clone();
        let received = received.clone();
        consumers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Ends when the transport is closed below.
            while let Ok(d) = t.receive("q").await {
                seen.push(String::from_utf8(d.body.to_vec()).unwrap());
                t.ack(&d).await.unwrap();
                received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            seen
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while received.load(std::sync::atomic::Ordering::SeqCst) < producers * per {
        assert!(std::time::Instant::now() < deadline, "consumers stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.close().await;
    let mut all = HashSet::new();
    let mut count = 0;
    for c in consumers {
        let seen = c.await.unwrap();
        // Per producer, each consumer sees messages in send order.
        let mut last = vec![-1i64; producers];
        for s in &seen {
            let (p, i) = s.split_once('-').unwrap();
            let (p, i): (usize, i64) = (p.parse().unwrap(), i.parse().unwrap());
            assert!(i > last[p], "out of order: {s}");
            last[p] = i;
        }
        count += seen.len();
        all.extend(seen);
    }
    assert_eq!(count, producers * per);
    assert_eq!(all.len(), producers * per);
}
