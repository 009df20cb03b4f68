//! The log of a NATS outage: one WARN when it starts, one INFO when it ends. A test
//! binary of its own, so that no other test's logging shares the process-wide tracing
//! callsite state with the collector installed here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{namespace, options, Server};
use tokio::time::{sleep, timeout, Instant};
use troupe_transport::Transport;
use troupe_transport_conformance::logs::Logs;
use troupe_transport_nats::NatsTransport;

async fn connect(server: &Server, ns: &str) -> NatsTransport {
    NatsTransport::connect(&server.url, options(ns))
        .await
        .unwrap()
}

// Current-thread runtime: every task of the transport runs on this thread, where the
// log collector is the default subscriber.
#[tokio::test]
async fn an_outage_warns_once_and_the_transport_recovers() {
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let server = Arc::new(server);
    let (logs, _guard) = Logs::capture();

    let t = Arc::new(connect(&server, &namespace("outage")).await);
    let q = t.queue_name("outage");
    t.send(&q, Bytes::from_static(b"1")).await.unwrap();
    let d = timeout(Duration::from_secs(5), t.receive(&q))
        .await
        .unwrap()
        .unwrap();
    t.ack(&d).await.unwrap();

    let pending = {
        let (t, q) = (t.clone(), q.clone());
        tokio::spawn(async move { t.receive(&q).await })
    };
    sleep(Duration::from_millis(300)).await;
    let srv = server.clone();
    tokio::task::spawn_blocking(move || srv.restart())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = t.send(&q, Bytes::from_static(b"2")).await {
        assert!(Instant::now() < deadline, "no recovery: {e}");
    }
    let d = timeout(Duration::from_secs(30), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.body, Bytes::from_static(b"2"));
    t.ack(&d).await.unwrap();
    t.close().await;

    let text = logs.text();
    let warns = text.matches("lost the connection to NATS").count();
    assert_eq!(warns, 1, "one WARN per outage:\n{text}");
    assert!(text.contains("reconnected to NATS"), "{text}");
}
