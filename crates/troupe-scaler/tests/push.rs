//! The push scaler against real brokers (Redis and RabbitMQ started by
//! `scripts/services/*.sh` through the conformance crate's server harness), driven as KEDA
//! drives it: a tonic client of the same proto opens `StreamIsActive`, a message is
//! published to the empty queue and `true` must arrive, the message is consumed and
//! `false` must follow; `IsActive` and `GetMetrics` report the depth. Each broker case
//! also measures publish → `true` (median of 20) and prints it (run with `--nocapture`;
//! the figures are in docs/benchmarks.md "Push activation").
//!
//! The scaler, the publisher and the consumer each have their own broker connection, as
//! the scaler, the gateway and the actor's sidecar do in a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};
use tonic::Streaming;
use troupe_scaler::proto::external_scaler_client::ExternalScalerClient;
use troupe_scaler::proto::{GetMetricsRequest, IsActiveResponse, ScaledObjectRef};
use troupe_scaler::{ScalerOptions, Watchers};
use troupe_transport::{ConnectOptions, Transport};
use troupe_transport_conformance::server::{self, Server};
use troupe_transport_conformance::{test_options, unique_actor, unique_namespace};

type Client = ExternalScalerClient<tonic::transport::Channel>;

/// How long a push may take before the test fails (the poll interval is 250 ms).
const PUSH_WAIT: Duration = Duration::from_secs(10);
/// Publish → `true` samples per broker.
const SAMPLES: usize = 20;

/// A scaler served on a free loopback port; stopped on drop.
struct Running {
    client: Client,
    _stop: oneshot::Sender<()>,
}

async fn start_scaler(transport: Arc<dyn Transport>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(troupe_scaler::serve_with_shutdown(
        listener,
        transport,
        ScalerOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = ExternalScalerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Running {
        client,
        _stop: stop,
    }
}

fn scaled_object(queue: &str) -> ScaledObjectRef {
    ScaledObjectRef {
        name: "push-test".into(),
        namespace: "default".into(),
        scaler_metadata: HashMap::from([
            ("queue".to_owned(), queue.to_owned()),
            ("queueLength".to_owned(), "2".to_owned()),
            ("scalerAddress".to_owned(), "ignored:9090".to_owned()),
        ]),
    }
}

async fn next(stream: &mut Streaming<IsActiveResponse>, what: &str) -> bool {
    match timeout(PUSH_WAIT, stream.message()).await {
        Ok(Ok(Some(r))) => r.result,
        Ok(Ok(None)) => panic!("{what}: the stream ended"),
        Ok(Err(status)) => panic!("{what}: the stream failed: {status}"),
        Err(_) => panic!("{what}: nothing pushed within {PUSH_WAIT:?}"),
    }
}

async fn backlog(client: &mut Client, r: &ScaledObjectRef) -> (bool, i64) {
    let active = client
        .is_active(r.clone())
        .await
        .unwrap()
        .into_inner()
        .result;
    let metrics = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(r.clone()),
            metric_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metrics.metric_values.len(), 1);
    let v = &metrics.metric_values[0];
    assert_eq!(v.metric_value as f64, v.metric_value_float);
    (active, v.metric_value)
}

/// Consumes one message of `queue` (receive + ack) on a connection of its own that
/// closes after, as an actor's sidecar that starts and is scaled back to zero: a
/// consumer left running would take (prefetch) the next message before the queue ever
/// shows it.
async fn consume(t: Arc<dyn Transport>, queue: &str) {
    let d = timeout(PUSH_WAIT, t.receive(queue))
        .await
        .expect("the message is receivable")
        .unwrap();
    t.ack(&d).await.unwrap();
    t.close().await;
}

/// The whole case on one broker: `scaler` watches, `client` publishes, a connection from
/// `connect` consumes each message. Returns the publish → `true` latencies.
async fn push_activation<F, Fut>(
    broker: &str,
    scaler: Arc<dyn Transport>,
    connect: F,
) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Transport>>,
{
    let client = connect().await;
    let running = start_scaler(scaler).await;
    let mut keda = running.client.clone();
    let queue = client.queue_name(&unique_actor("push"));
    let r = scaled_object(&queue);

    let spec = keda.get_metric_spec(r.clone()).await.unwrap().into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].target_size, 2);
    assert_eq!(spec.metric_specs[0].target_size_float, 2.0);
    assert_eq!(
        backlog(&mut keda, &r).await,
        (false, 0),
        "{broker}: empty queue"
    );

    let mut stream = keda.stream_is_active(r.clone()).await.unwrap().into_inner();
    assert!(
        !next(&mut stream, "first answer").await,
        "{broker}: an empty queue is reported idle at once"
    );

    let mut latencies = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        // Publish at a different point of the poll cycle each time (the previous answer
        // came right after a sample), so the samples cover the whole interval.
        let phase = troupe_scaler::DEFAULT_POLL_INTERVAL.mul_f64(i as f64 / SAMPLES as f64);
        tokio::time::sleep(phase).await;
        let body = Bytes::from(format!("{{\"id\":\"push-{i}\",\"payload\":{{}}}}"));
        let t0 = Instant::now();
        client.send(&queue, body).await.unwrap();
        assert!(
            next(&mut stream, "after publish").await,
            "{broker}: one message makes the queue active"
        );
        latencies.push(t0.elapsed());
        if i == 0 {
            assert_eq!(
                backlog(&mut keda, &r).await,
                (true, 1),
                "{broker}: IsActive and GetMetrics see the message"
            );
        }
        consume(connect().await, &queue).await;
        assert!(
            !next(&mut stream, "after drain").await,
            "{broker}: a drained queue is idle"
        );
    }
    assert_eq!(
        backlog(&mut keda, &r).await,
        (false, 0),
        "{broker}: drained"
    );
    drop(running);
    latencies
}

fn report(broker: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "push activation {broker}: publish -> true median {:.1} ms, min {:.1} ms, max {:.1} ms over {} (poll interval {} ms)",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1]),
        latencies.len(),
        troupe_scaler::DEFAULT_POLL_INTERVAL.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pushes_true_on_publish_and_false_on_drain() {
    let Some(srv) = Server::start(&server::REDIS, &[]) else {
        return;
    };
    let ns = unique_namespace("push");
    let connect = || async {
        Arc::new(
            troupe_transport_redis::RedisTransport::connect(
                &srv.url,
                test_options(&ns, Duration::from_secs(5)),
            )
            .await
            .unwrap(),
        ) as Arc<dyn Transport>
    };
    let latencies = push_activation("redis", connect().await, connect).await;
    report("redis", latencies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_pushes_true_on_publish_and_false_on_drain() {
    let srv = tokio::task::spawn_blocking(|| {
        Server::start_in(&server::RABBITMQ, tempfile::tempdir().unwrap(), &[], &[])
    })
    .await
    .unwrap()
    .expect("RabbitMQ is always required");
    let ns = unique_namespace("push");
    let connect = || async {
        Arc::new(
            troupe_transport_rabbitmq::connect(
                &srv.url,
                "asya",
                ConnectOptions {
                    prefetch: 1,
                    ..test_options(&ns, Duration::from_secs(5))
                },
            )
            .await
            .unwrap(),
        ) as Arc<dyn Transport>
    };
    let latencies = push_activation("rabbitmq", connect().await, connect).await;
    report("rabbitmq", latencies);
}

/// The embedded queue announces arrivals: the watcher does not poll an idle queue, yet
/// `true` still arrives, and a queue is watched only while a stream is open on it.
#[tokio::test]
async fn arrivals_wake_an_idle_queue_and_only_watched_queues_are_watched() {
    let dir = tempfile::tempdir().unwrap();
    let t: Arc<dyn Transport> = Arc::new(
        troupe_transport_embedded::EmbeddedTransport::open(
            dir.path(),
            troupe_transport_embedded::EmbeddedOptions::default(),
        )
        .unwrap(),
    );
    assert!(t.arrivals().is_some());
    // A poll interval far longer than the test: only an arrival can wake the queue.
    let watchers = Watchers::new(t.clone(), Duration::from_secs(3600));
    let queue = t.queue_name("a");
    assert!(watchers.watched().await.is_empty());
    let mut rx = watchers.watch(&queue).await;
    assert_eq!(watchers.watched().await, vec![queue.clone()]);
    let first = timeout(PUSH_WAIT, rx.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap()
        .to_owned();
    assert_eq!(first, Some(false));
    t.send(&queue, Bytes::from_static(b"{}")).await.unwrap();
    timeout(Duration::from_secs(5), rx.wait_for(|v| *v == Some(true)))
        .await
        .expect("the arrival notice pushes true without a poll")
        .unwrap();
    // A second stream on the queue shares its watcher, and keeps it when the first goes.
    let second = watchers.watch(&queue).await;
    assert_eq!(
        *second.borrow(),
        Some(true),
        "a new stream starts from the current state"
    );
    drop(rx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(watchers.watched().await, vec![queue.clone()]);
    drop(second);
    let gone = async {
        while !watchers.watched().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(PUSH_WAIT, gone)
        .await
        .expect("the watcher stops with its last stream");
}

/// The broker goes away under an open stream: the stream stays open (the last answer
/// stands while depth reads fail) and, once the broker is back, a publish still pushes
/// `true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_does_not_end_the_stream() {
    let Some(srv) = Server::start(&server::REDIS, &[]) else {
        return;
    };
    let ns = unique_namespace("push");
    let connect = || async {
        Arc::new(
            troupe_transport_redis::RedisTransport::connect(
                &srv.url,
                test_options(&ns, Duration::from_secs(5)),
            )
            .await
            .unwrap(),
        ) as Arc<dyn Transport>
    };
    let running = start_scaler(connect().await).await;
    let mut keda = running.client.clone();
    let publisher = connect().await;
    let queue = publisher.queue_name(&unique_actor("restart"));
    let mut stream = keda
        .stream_is_active(scaled_object(&queue))
        .await
        .unwrap()
        .into_inner();
    assert!(!next(&mut stream, "first answer").await);
    tokio::task::block_in_place(|| srv.stop());
    // Several poll intervals of failed depth reads.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| srv.restart());
    let mut sent = false;
    for _ in 0..50 {
        if publisher
            .send(&queue, Bytes::from_static(b"{}"))
            .await
            .is_ok()
        {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sent, "the publisher reconnects to the restarted broker");
    assert!(
        next(&mut stream, "after the restart").await,
        "the same stream pushes true once the broker is back"
    );
    drop(running);
}

/// A request far larger than any KEDA sends is refused before it is decoded, and the
/// server goes on answering normal ones.
#[tokio::test]
async fn oversized_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t: Arc<dyn Transport> = Arc::new(
        troupe_transport_embedded::EmbeddedTransport::open(
            dir.path(),
            troupe_transport_embedded::EmbeddedOptions::default(),
        )
        .unwrap(),
    );
    let queue = t.queue_name("a");
    let mut scaler = start_scaler(t).await;
    let mut big = scaled_object(&queue);
    big.scaler_metadata.insert(
        "padding".to_owned(),
        "x".repeat(troupe_scaler::MAX_REQUEST_BYTES + 1),
    );
    let err = scaler.client.is_active(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    let ok = scaler
        .client
        .is_active(scaled_object(&queue))
        .await
        .unwrap();
    assert!(!ok.into_inner().result);
}
