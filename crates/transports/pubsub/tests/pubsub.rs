//! Pub/Sub transport behaviour beyond the conformance suite: against a real emulator,
//! and against a scripted stub for credentials (the emulator takes none).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};
use support::{connect, namespace, options, shared, PROJECT};
use troupe_transport::{Delivery, Transport, TransportError};
use troupe_transport_conformance::stub::Stub;
use troupe_transport_pubsub::{Credentials, PubSubConfig, PubSubTransport, MAX_MESSAGE_BYTES};

const VIS: Duration = Duration::from_secs(30);

async fn receive_within(t: &dyn Transport, queue: &str, wait: Duration) -> Option<Delivery> {
    tokio::time::timeout(wait, t.receive(queue))
        .await
        .ok()
        .map(|r| r.unwrap())
}

fn stub_config(url: &str, credentials: Credentials) -> PubSubConfig {
    let mut c = PubSubConfig::new(PROJECT);
    c.endpoint = Some(url.to_owned());
    c.credentials = credentials;
    c.retry_for = Duration::from_millis(500);
    c
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_naming_the_url() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = stub_config(&format!("127.0.0.1:{port}"), Credentials::None);
    let err = PubSubTransport::connect(c, options("ns", VIS))
        .await
        .err()
        .unwrap();
    match &err {
        TransportError::Unavailable {
            kind: "pubsub",
            url,
            ..
        } => {
            assert!(url.contains(&format!("127.0.0.1:{port}")), "{url}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn metadata_tokens_are_sent_and_refreshed_once_on_401() {
    let issued = Arc::new(AtomicUsize::new(0));
    let n = issued.clone();
    let metadata = Stub::start(move |s| {
        assert!(
            s.line
                .contains("/computeMetadata/v1/instance/service-accounts/default/token"),
            "{}",
            s.line
        );
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        (
            200,
            format!(r#"{{"access_token":"tok-{i}","expires_in":3599,"token_type":"Bearer"}}"#),
        )
    })
    .await;
    // Pub/Sub stub: refuses the first token, accepts the second (and creates whatever
    // it is asked to).
    let pubsub = Stub::start(|s| match s.authorization.as_deref() {
        Some("Bearer tok-2") => (200, "{}".to_owned()),
        _ => (401, r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#.to_owned()),
    })
    .await;
    let host = metadata.url.trim_start_matches("http://").to_owned();
    let c = stub_config(&pubsub.url, Credentials::Metadata { host: Some(host) });
    let t = PubSubTransport::connect(c, options("ns", VIS))
        .await
        .unwrap();
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one refresh after the 401"
    );
    let seen = pubsub.seen();
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "PUT /v1/projects/troupe-test/topics/asya-ns-dlq HTTP/1.1",
            "PUT /v1/projects/troupe-test/topics/asya-ns-dlq HTTP/1.1",
            "PUT /v1/projects/troupe-test/subscriptions/asya-ns-dlq HTTP/1.1",
        ],
        "the DLQ is set up at connect"
    );
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok-1"));
    assert_eq!(seen[2].authorization.as_deref(), Some("Bearer tok-2"));
    t.close().await;
}

#[tokio::test]
async fn refused_credentials_are_auth_errors() {
    let pubsub = Stub::start(|_| {
        (403, r#"{"error":{"code":403,"message":"User not authorized to perform this action.","status":"PERMISSION_DENIED"}}"#.to_owned())
    })
    .await;
    let c = stub_config(&pubsub.url, Credentials::Token("fixed".to_owned()));
    let err = PubSubTransport::connect(c, options("ns", VIS))
        .await
        .err()
        .unwrap();
    match &err {
        TransportError::Auth {
            kind: "pubsub",
            url,
            message,
        } => {
            assert!(url.starts_with(&pubsub.url), "{url}");
            assert!(message.contains("PERMISSION_DENIED"), "{message}");
            assert!(!message.contains("fixed"));
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    assert_eq!(
        pubsub.seen()[0].authorization.as_deref(),
        Some("Bearer fixed")
    );

    // No metadata server (not on GCE/GKE): a credentials problem that says what to set.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = stub_config(
        &pubsub.url,
        Credentials::Metadata {
            host: Some(format!("127.0.0.1:{port}")),
        },
    );
    match PubSubTransport::connect(c, options("ns", VIS))
        .await
        .err()
        .unwrap()
    {
        TransportError::Auth { message, .. } => {
            assert!(message.contains("GOOGLE_OAUTH_ACCESS_TOKEN"), "{message}")
        }
        other => panic!("expected Auth, got {other:?}"),
    }
}

#[tokio::test]
async fn created_topics_and_subscriptions() {
    let Some(emu) = shared() else { return };
    let ns = namespace();
    let t = connect(&emu.url, &ns, Duration::from_secs(45)).await;
    let q = t.queue_name("shaped");
    t.send(&q, Bytes::from_static(b"{}")).await.unwrap();
    let sub = emu
        .raw(Method::GET, &format!("subscriptions/{q}"), None)
        .await;
    assert_eq!(sub["topic"], format!("projects/{PROJECT}/topics/{q}"));
    assert_eq!(sub["ackDeadlineSeconds"], 45);
    assert_eq!(sub["messageRetentionDuration"], "604800s");
    assert_eq!(
        sub["deadLetterPolicy"]["deadLetterTopic"],
        format!("projects/{PROJECT}/topics/asya-{ns}-dlq")
    );
    assert_eq!(sub["deadLetterPolicy"]["maxDeliveryAttempts"], 100);
    let dlq = emu
        .raw(Method::GET, &format!("subscriptions/asya-{ns}-dlq"), None)
        .await;
    assert_eq!(
        dlq["topic"],
        format!("projects/{PROJECT}/topics/asya-{ns}-dlq")
    );
    assert!(dlq.get("deadLetterPolicy").is_none(), "the DLQ has no DLQ");
    t.close().await;
}

#[tokio::test]
async fn any_bytes_round_trip_and_too_large_fails_before_publishing() {
    let Some(emu) = shared() else { return };
    let t = connect(&emu.url, &namespace(), VIS).await;
    let q = t.queue_name("bytes");
    for body in [
        Bytes::from_static(b"\x00\x01binary\xff\xfe"),
        Bytes::new(),
        Bytes::from(vec![b'x'; 9_000_000]),
    ] {
        t.send(&q, body.clone()).await.unwrap();
        let d = receive_within(&t, &q, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(d.body.len(), body.len());
        assert_eq!(d.body, body);
        t.ack(&d).await.unwrap();
    }
    match t
        .send(&q, Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES + 1]))
        .await
    {
        Err(TransportError::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (MAX_MESSAGE_BYTES + 1, MAX_MESSAGE_BYTES))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(
        receive_within(&t, &q, Duration::from_secs(1))
            .await
            .is_none(),
        "nothing was published"
    );
    t.close().await;
}

#[tokio::test]
async fn deferred_sends_arrive_when_due_as_a_fresh_copy_and_count_as_delayed() {
    let Some(emu) = shared() else { return };
    let t = connect(&emu.url, &namespace(), VIS).await;
    let q = t.queue_name("deferred");
    let start = std::time::Instant::now();
    t.send_with_delay(
        &q,
        Bytes::from_static(b"{\"later\":1}"),
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    let depth = t.depth(&q).await.unwrap();
    assert_eq!(
        (depth.ready, depth.delayed, depth.in_flight),
        (0, 1, 0),
        "{depth:?}"
    );
    assert!(
        receive_within(&t, &q, Duration::from_millis(2500))
            .await
            .is_none(),
        "delivered before due"
    );
    let d = receive_within(&t, &q, Duration::from_secs(6))
        .await
        .expect("due message");
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(&d.body[..], b"{\"later\":1}");
    assert_eq!(
        d.delivery_count,
        Some(1),
        "the re-published copy starts counting afresh"
    );
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.delayed, depth.in_flight), (0, 1), "{depth:?}");
    t.ack(&d).await.unwrap();
    assert_eq!(t.depth(&q).await.unwrap().in_flight, 0);

    // A deferral attribute already in the past (or garbled) never holds a message back.
    for at in [
        time::OffsetDateTime::from(SystemTime::now() - Duration::from_secs(60))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "soon".to_owned(),
    ] {
        emu.raw(
            Method::POST,
            &format!("topics/{q}:publish"),
            Some(
                json!({"messages": [{"data": "e30=", "attributes": {"x-troupe-deliver-at": at}}]}),
            ),
        )
        .await;
        let d = receive_within(&t, &q, Duration::from_secs(5))
            .await
            .expect("not held back");
        assert_eq!(&d.body[..], b"{}");
        t.ack(&d).await.unwrap();
    }
    t.close().await;
}

#[tokio::test]
async fn dead_letters_carry_the_source_attributes() {
    let Some(emu) = shared() else { return };
    let ns = namespace();
    let t = connect(&emu.url, &ns, VIS).await;
    let q = t.queue_name("poison");
    t.send(&q, Bytes::from_static(b"{\"bad\":1}"))
        .await
        .unwrap();
    for n in 1..=3 {
        let d = receive_within(&t, &q, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(d.delivery_count, Some(n));
        t.requeue(&d).await.unwrap();
    }
    assert!(
        receive_within(&t, &q, Duration::from_secs(3))
            .await
            .is_none(),
        "dead-lettered"
    );
    let pulled = emu
        .raw(
            Method::POST,
            &format!("subscriptions/asya-{ns}-dlq:pull"),
            Some(json!({"maxMessages": 1, "returnImmediately": true})),
        )
        .await;
    let m = &pulled["receivedMessages"][0]["message"];
    assert_eq!(m["data"], "eyJiYWQiOjF9");
    let attrs = &m["attributes"];
    assert_eq!(attrs["CloudPubSubDeadLetterSourceSubscription"], q.as_str());
    assert_eq!(
        attrs["CloudPubSubDeadLetterSourceSubscriptionProject"],
        PROJECT
    );
    assert_eq!(attrs["CloudPubSubDeadLetterSourceDeliveryCount"], "3");
    t.close().await;
}

#[tokio::test]
async fn depth_reports_own_in_flight_and_delayed() {
    let Some(emu) = shared() else { return };
    let t = connect(&emu.url, &namespace(), Duration::from_secs(3)).await;
    let q = t.queue_name("depth");
    for i in 0..3 {
        t.send(&q, Bytes::from(format!("{{\"i\":{i}}}")))
            .await
            .unwrap();
    }
    let a = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    let b = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(t.depth(&q).await.unwrap().in_flight, 2);
    t.ack(&a).await.unwrap();
    t.nack(&b, Duration::from_secs(1)).await.unwrap();
    assert_eq!(t.depth(&q).await.unwrap().in_flight, 0);
    // A delivery nobody settles stops counting once its ack deadline has passed.
    let c = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(t.depth(&q).await.unwrap().in_flight, 1);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(t.depth(&q).await.unwrap().in_flight, 0);
    let _ = c;
    t.close().await;
}

#[tokio::test]
async fn a_dropped_receive_loses_nothing() {
    let Some(emu) = shared() else { return };
    // A long ack deadline: a message lost to a dropped pull would be gone for 10 min.
    let t = connect(&emu.url, &namespace(), Duration::from_secs(600)).await;
    troupe_transport_conformance::dropped_receive_loses_nothing(&t).await;
}

#[tokio::test]
async fn close_gives_buffered_messages_back_at_once() {
    let Some(emu) = shared() else { return };
    let ns = namespace();
    let a = connect(&emu.url, &ns, Duration::from_secs(600)).await;
    let b = connect(&emu.url, &ns, Duration::from_secs(600)).await;
    troupe_transport_conformance::close_gives_buffered_messages_back(
        &a,
        &b,
        Duration::from_millis(1000),
    )
    .await;
}

#[tokio::test]
async fn vanished_topics_and_subscriptions_are_created_again() {
    let Some(emu) = shared() else { return };
    let t = connect(&emu.url, &namespace(), VIS).await;
    let q = t.queue_name("vanish");
    t.send(&q, Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    emu.raw(Method::DELETE, &format!("subscriptions/{q}"), None)
        .await;
    emu.raw(Method::DELETE, &format!("topics/{q}"), None).await;
    t.send(&q, Bytes::from_static(b"{\"n\":2}")).await.unwrap();
    let d = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&d.body[..], b"{\"n\":2}");
    t.ack(&d).await.unwrap();
    let topic: Value = emu.raw(Method::GET, &format!("topics/{q}"), None).await;
    assert_eq!(topic["name"], format!("projects/{PROJECT}/topics/{q}"));
    t.close().await;
}

/// An identity that may use but not create topics (Asya provisions no Pub/Sub DLQ):
/// without a DLQ the transport still works, it just never dead-letters.
#[tokio::test]
async fn without_permission_to_create_the_dlq_nothing_is_dead_lettered() {
    let pubsub = Stub::start(|s| {
        let denied = (
            403,
            r#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#.to_owned(),
        );
        let missing = (
            404,
            r#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#.to_owned(),
        );
        match (
            s.line.split(' ').next().unwrap_or(""),
            s.line.contains("asya-ns-dlq"),
        ) {
            ("PUT", _) => denied,
            ("GET", true) => missing,
            ("GET", false) => (200, r#"{"ackDeadlineSeconds":300}"#.to_owned()),
            _ => (200, r#"{"messageIds":["1"]}"#.to_owned()),
        }
    })
    .await;
    let c = stub_config(&pubsub.url, Credentials::Token("t".to_owned()));
    let t = PubSubTransport::connect(c, options("ns", VIS))
        .await
        .unwrap();
    t.send(&t.queue_name("a"), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let lines: Vec<String> = pubsub.seen().into_iter().map(|s| s.line).collect();
    assert_eq!(
        lines.iter().filter(|l| l.contains("asya-ns-dlq")).count(),
        2,
        "one failed try at the DLQ, not one per queue: {lines:?}"
    );
    assert!(lines
        .last()
        .unwrap()
        .starts_with("POST /v1/projects/troupe-test/topics/asya-ns-a:publish"));
    t.close().await;
}

/// `create_queue` makes the topic and subscription as a first send would, `delete_queue`
/// removes both, and a name Pub/Sub cannot take is refused with the queue's name.
#[tokio::test]
async fn create_and_delete_queue_manage_topic_and_subscription() {
    let Some(emu) = shared() else { return };
    let ns = namespace();
    let t = connect(&emu.url, &ns, Duration::from_secs(45)).await;
    let q = t.queue_name("managed");
    t.create_queue(&q).await.unwrap();
    let sub = emu
        .raw(Method::GET, &format!("subscriptions/{q}"), None)
        .await;
    assert_eq!(sub["topic"], format!("projects/{PROJECT}/topics/{q}"));
    assert_eq!(sub["ackDeadlineSeconds"], 45);
    t.delete_queue(&q).await.unwrap();
    for path in [format!("subscriptions/{q}"), format!("topics/{q}")] {
        let gone = emu.raw(Method::GET, &path, None).await;
        assert!(gone.get("name").is_none(), "{path} still there: {gone}");
    }

    let err = t.create_queue("goog-reserved").await.unwrap_err();
    let text = err.to_string();
    let TransportError::QueueRefused { kind, queue, .. } = &err else {
        panic!("expected QueueRefused, got {err:?}");
    };
    assert_eq!((*kind, queue.as_str()), ("pubsub", "goog-reserved"));
    println!("refused: {text}");
    t.close().await;
}
