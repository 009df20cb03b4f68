//! `troupe scaler` as KEDA meets it: the binary, configured only by the sidecar's broker
//! variables, serves the external scaler API on `--listen`; a `StreamIsActive` stream on an
//! empty Redis queue answers `false`, then `true` once a message is published. A missing
//! `ASYA_TRANSPORT` is exit 2 with the variable named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use troupe_scaler::proto::external_scaler_client::ExternalScalerClient;
use troupe_scaler::proto::ScaledObjectRef;
use troupe_transport::{ConnectOptions, Transport};
use troupe_transport_conformance::server::{self, free_port, Server};

/// The scaler process; killed on drop.
struct Scaler(Child);

impl Drop for Scaler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn without_a_transport_it_says_which_variable_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["scaler", "--listen", "127.0.0.1:0"])
        .env_remove("ASYA_TRANSPORT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ASYA_TRANSPORT is required"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_keda_from_the_sidecar_variables() {
    let Some(redis) = Server::start(&server::REDIS, &[]) else {
        return;
    };
    let addr = format!("127.0.0.1:{}", free_port());
    let _scaler = Scaler(
        Command::new(env!("CARGO_BIN_EXE_troupe"))
            .args(["scaler", "--listen", &addr, "--poll-interval", "50ms"])
            .env("ASYA_TRANSPORT", "redis")
            .env("TROUPE_REDIS_URL", &redis.url)
            .env("ASYA_NAMESPACE", "cli")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = ExternalScalerClient::connect(format!("http://{addr}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("troupe scaler listens within 10 s");
    // A publisher on the same broker, through the parser `troupe sidecar` uses.
    let publisher: Arc<dyn Transport> = troupe_transports::TransportSpec::from_url(&redis.url)
        .unwrap()
        .connect(ConnectOptions::new("cli"))
        .await
        .unwrap();
    let queue = publisher.queue_name("summarize");
    let r = ScaledObjectRef {
        name: "summarize".into(),
        namespace: "cli".into(),
        scaler_metadata: HashMap::from([("queue".to_owned(), queue.clone())]),
    };
    assert!(
        !client
            .is_active(r.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    let mut stream = client.stream_is_active(r).await.unwrap().into_inner();
    assert!(!next(&mut stream).await, "empty queue: idle");
    publisher
        .send(&queue, bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(next(&mut stream).await, "one message: active");
}

async fn next(
    stream: &mut troupe_scaler::tonic::Streaming<troupe_scaler::proto::IsActiveResponse>,
) -> bool {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a push within 10 s")
        .unwrap()
        .expect("the stream stays open")
        .result
}
