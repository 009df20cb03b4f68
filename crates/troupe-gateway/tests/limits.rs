//! What one client can make the gateway hold (issue 9, items 3–5), over real HTTP on a
//! loopback listener: body and event limits named in every 413, route caps, header and
//! body read timeouts, and the connection cap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use troupe_gateway::{Gateway, GatewayConfig, Ingress, Limits, MemoryStore};

#[derive(Default)]
struct Recorder {
    published: Mutex<Vec<bytes::Bytes>>,
}

#[async_trait]
impl Ingress for Recorder {
    fn has_actor(&self, actor: &str) -> bool {
        actor == "echo"
    }
    async fn publish(&self, _actor: &str, body: bytes::Bytes) -> Result<(), String> {
        self.published.lock().unwrap().push(body);
        Ok(())
    }
}

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    ingress: Arc<Recorder>,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(limits: Limits) -> Self {
        let config = GatewayConfig {
            limits,
            ..GatewayConfig::with_internal_url("http://gw")
        };
        let ingress = Arc::new(Recorder::default());
        let gw = Gateway::new(config, Arc::new(MemoryStore::new()), ingress.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            gw.serve(listener, async move {
                let _ = rx.await;
            })
            .await
        });
        Server {
            base: format!("http://{addr}"),
            addr,
            ingress,
            http: reqwest::Client::new(),
            _stop: stop,
        }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn create(&self) -> String {
        let (code, text) = self
            .post("/api/v1/mesh/?actor=echo", r#"{"payload": {"q": 1}}"#)
            .await;
        assert_eq!(code, 201, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// `[0,0,…]` of about `n` bytes.
fn zeros(n: usize) -> String {
    let mut s = String::with_capacity(n + 2);
    s.push('[');
    s.push_str(&"0,".repeat(n / 2));
    s.push('0');
    s.push(']');
    s
}

// ---------- item 3: per-route limits and route caps ----------

#[tokio::test]
async fn progress_event_over_the_event_limit_is_413_naming_it_but_a_big_result_passes() {
    let s = Server::start(Limits::default()).await;
    let id = s.create().await;
    let events = format!("/api/v1/mesh/{id}/events");

    let big_message = json!({"type": "status", "status": "processing",
        "data": {"prev": [], "curr": "echo", "next": [], "message": "m".repeat(100 << 10)}});
    let (code, text) = s.post(&events, big_message.to_string()).await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("64 KiB"), "{text}");
    assert!(text.contains("TROUPE_GATEWAY_MAX_EVENT_BYTES"), "{text}");

    // A result is carried up to the body limit, and read back byte for byte.
    let result = zeros(4 << 20);
    let done = format!(
        r#"{{"type":"status","status":"succeeded","data":{{"id":"{id}","result":{result}}}}}"#
    );
    let (code, text) = s.post(&events, done).await;
    assert_eq!(code, 204, "{text}");
    let got: Value = s
        .http
        .get(format!("{}/api/v1/mesh/{id}", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "succeeded");
    assert_eq!(
        got["data"]["result"].as_array().unwrap().len(),
        (4 << 20) / 2 + 1
    );
}

#[tokio::test]
async fn hostile_event_bodies_are_refused_without_building_them() {
    let s = Server::start(Limits::default()).await;
    let id = s.create().await;
    let events = format!("/api/v1/mesh/{id}/events");

    // A route of 2 million entries (as the audit posted) and one just over the cap.
    let huge: Vec<&str> = vec!["a"; 2_000_000];
    for next in [huge.clone(), vec!["a"; troupe_gateway::MAX_ROUTE_LEN + 1]] {
        let body = json!({"type": "status", "status": "succeeded",
            "data": {"prev": [], "curr": "echo", "next": next, "result": 1}});
        let (code, text) = s.post(&events, body.to_string()).await;
        assert_eq!(code, 413, "{} entries: {text}", next.len());
        assert!(text.contains("1024"), "{text}");
    }
    // `[0,0,…]` is not an event: refused at its first byte.
    let (code, text) = s.post(&events, zeros(29_000_000)).await;
    assert_eq!(code, 400, "{text}");
}

#[tokio::test]
async fn children_with_huge_routes_are_refused() {
    let s = Server::start(Limits::default()).await;
    let parent = s.create().await;
    let path = format!("/api/v1/mesh/{parent}/children");

    let million = json!({"id": "c1", "parent_id": parent,
        "route": {"prev": [], "curr": "echo", "next": vec!["a"; 1_000_000]}});
    let (code, text) = s.post(&path, million.to_string()).await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("TROUPE_GATEWAY_MAX_EVENT_BYTES"), "{text}");

    let over_cap = json!({"id": "c2", "parent_id": parent,
        "route": {"prev": [], "curr": "echo", "next": vec!["a"; troupe_gateway::MAX_ROUTE_LEN + 1]}});
    let (code, text) = s.post(&path, over_cap.to_string()).await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("1024"), "{text}");

    let fine = json!({"id": "c3", "parent_id": parent,
        "route": {"prev": [], "curr": "echo", "next": ["a", "b"]}});
    let (code, text) = s.post(&path, fine.to_string()).await;
    assert_eq!(code, 201, "{text}");
}

#[tokio::test]
async fn create_near_the_body_limit_is_accepted_and_one_over_is_413_naming_it() {
    let s = Server::start(Limits::default()).await;
    let limit = Limits::default().max_body_bytes;
    let payload = zeros(limit - 1024);
    let body = format!(r#"{{"payload":{payload}}}"#);
    assert!(body.len() < limit);
    let (code, text) = s.post("/api/v1/mesh/?actor=echo", body).await;
    assert_eq!(code, 201, "{}", &text[..text.len().min(300)]);
    // The envelope carries the payload as posted.
    let published = s.ingress.published.lock().unwrap().pop().unwrap();
    let text = String::from_utf8(published.to_vec()).unwrap();
    assert!(text.contains(&payload), "payload altered");

    let over = format!(r#"{{"payload":{}}}"#, zeros(limit + 16));
    let (code, text) = s.post("/api/v1/mesh/?actor=echo", over).await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("32 MiB"), "{text}");
    assert!(text.contains("TROUPE_GATEWAY_MAX_BODY_BYTES"), "{text}");

    // Sent chunked (no Content-Length), the same limit and text apply.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok("{\"payload\":".to_owned()),
        Ok(zeros(limit + 16)),
        Ok("}".to_owned()),
    ];
    let (code, text) = s
        .post(
            "/api/v1/mesh/?actor=echo",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("TROUPE_GATEWAY_MAX_BODY_BYTES"), "{text}");
}

// ---------- item 4: timeouts and the connection cap ----------

/// Reads until the server closes the connection; `true` when it did within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn two_thousand_half_sent_requests_are_closed_within_the_header_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let s = Server::start(limits).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2000 {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"POST /api/v1/mesh/?actor=echo HTTP/1.1\r\nHost: x\r\nContent-Le")
                .await
                .unwrap();
            closed_within(&mut c, Duration::from_secs(30)).await
        }));
    }
    let mut closed = 0;
    for t in tasks {
        closed += usize::from(t.await.unwrap());
    }
    assert_eq!(closed, 2000, "half-sent requests left open");
    // 2,000 over 1,024 slots: two rounds of the 300 ms timeout, plus scheduling.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );

    // The listener still serves.
    let r = s
        .http
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_body_that_never_arrives_is_timed_out() {
    let limits = Limits {
        body_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let s = Server::start(limits).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /api/v1/mesh/?actor=echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"pay",
    )
    .await
    .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    reply.extend_from_slice(&buf[..n]);
                    if reply.windows(4).any(|w| w == b"\r\n\r\n") && reply.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("TROUPE_GATEWAY_BODY_TIMEOUT"), "{text}");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let s = Server::start(Limits::default()).await;
    let r = s
        .http
        .get(format!("{}/health", s.base))
        .header("x-big", "a".repeat(100 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_a_slot_frees() {
    let limits = Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let s = Server::start(limits).await;
    let mut holders = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        holders.push(c);
    }
    // Let the server accept the four.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut fifth = TcpStream::connect(s.addr).await.unwrap();
    fifth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(800), fifth.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a fifth connection was served past a cap of 4"
    );

    drop(holders);
    let n = tokio::time::timeout(Duration::from_secs(5), fifth.read(&mut buf))
        .await
        .expect("the queued connection was never served")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
