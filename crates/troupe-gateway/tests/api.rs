//! Mesh API over real HTTP on a loopback listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use troupe_gateway::{Gateway, GatewayConfig, Ingress, MemoryStore, TaskStatus, TaskStore};
use troupe_protocol::Clock;

// ---------- fixtures ----------

#[derive(Default)]
struct FakeIngress {
    actors: HashSet<String>,
    published: Mutex<Vec<(String, Value)>>,
    fail: AtomicBool,
}

impl FakeIngress {
    fn with(actors: &[&str]) -> Arc<Self> {
        Arc::new(FakeIngress {
            actors: actors.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })
    }
    fn published(&self) -> Vec<(String, Value)> {
        self.published.lock().unwrap().clone()
    }
}

#[async_trait]
impl Ingress for FakeIngress {
    fn has_actor(&self, actor: &str) -> bool {
        self.actors.contains(actor)
    }
    async fn publish(&self, actor: &str, body: bytes::Bytes) -> Result<(), String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("queue unavailable".into());
        }
        let v: Value = serde_json::from_slice(&body).unwrap();
        self.published.lock().unwrap().push((actor.to_owned(), v));
        Ok(())
    }
}

struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    fn advance(&self, secs: i64) {
        *self.0.lock().unwrap() += time::Duration::seconds(secs);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
const GW_URL: &str = "http://gateway.internal:8081";

struct Harness {
    base: String,
    gw: Gateway,
    store: Arc<MemoryStore>,
    ingress: Arc<FakeIngress>,
    clock: Arc<ManualClock>,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(GatewayConfig::with_internal_url(GW_URL)).await
    }

    async fn start_with(config: GatewayConfig) -> Self {
        let store = Arc::new(MemoryStore::new());
        let ingress = FakeIngress::with(&["echo", "a", "x-resume"]);
        let clock = Arc::new(ManualClock(Mutex::new(T0)));
        let gw = Gateway::with_clock(config, store.clone(), ingress.clone(), clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = oneshot::channel::<()>();
        let server = {
            let gw = gw.clone();
            tokio::spawn(async move {
                gw.serve(listener, async move {
                    let _ = rx.await;
                })
                .await
            })
        };
        Harness {
            base,
            gw,
            store,
            ingress,
            clock,
            http: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn create(&self, actor: &str, body: Value) -> String {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/mesh/?actor={actor}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn event(&self, id: &str, body: Value) -> u16 {
        self.http
            .post(self.url(&format!("/api/v1/mesh/{id}/events")))
            .header("X-Asya-Envelope-ID", id)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn get(&self, id: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/mesh/{id}")))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap())
    }

    async fn status_of(&self, id: &str) -> String {
        self.get(id).await.1["status"].as_str().unwrap().to_owned()
    }

    async fn sse(&self, id: &str) -> Sse {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/mesh/{id}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        Sse {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    async fn pause(&self, id: &str) {
        let code = self
            .event(
                id,
                json!({"type": "status", "status": "completed", "data": {
                    "prev": ["a", "x-pause"], "curr": "x-resume", "next": ["b"], "status": "completed",
                    "message": "Paused: waiting for external input",
                    "pause_metadata": {"prompt": "Approve?", "fields": []}}}),
            )
            .await;
        assert_eq!(code, 204);
        assert_eq!(self.status_of(id).await, "paused");
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(5), self.server.take().unwrap())
            .await
            .expect("server did not shut down");
        r.unwrap().unwrap();
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

struct Sse {
    stream: ByteStream,
    buf: String,
}

impl Sse {
    /// Next block (`event:`/`data:` pair or a comment); `None` when the stream ended.
    async fn next_block(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block = self.buf[..i].to_owned();
                self.buf.drain(..i + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .expect("SSE stream stalled");
            match chunk {
                Some(c) => self.buf.push_str(std::str::from_utf8(&c.unwrap()).unwrap()),
                None => return None,
            }
        }
    }

    /// Next event as (name, data), skipping comments.
    async fn next_event(&mut self) -> Option<(String, Value)> {
        loop {
            let block = self.next_block().await?;
            if block.starts_with(':') {
                continue;
            }
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).unwrap());
                }
            }
            return Some((name.unwrap(), data.unwrap()));
        }
    }

    async fn assert_ended(&mut self) {
        assert_eq!(self.next_event().await, None, "stream should have closed");
    }
}

fn progress_event(status: &str, prev: &[&str], curr: &str, next: &[&str]) -> Value {
    json!({"type": "status", "status": status,
           "data": {"prev": prev, "curr": curr, "next": next, "status": status,
                    "message": format!("{status} in {curr}")}})
}

// ---------- create ----------

#[tokio::test]
async fn create_stores_record_and_publishes_envelope() {
    let h = Harness::start().await;
    let id = h
        .create(
            "echo",
            json!({"payload": {"q": "hi"}, "timeout": 300,
                   "headers": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                               "x-asya-a2a-context-id": "ctx-1", "custom": 7}}),
        )
        .await;
    let parsed = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(id, id.to_lowercase());

    let published = h.ingress.published();
    assert_eq!(published.len(), 1);
    let (actor, env) = &published[0];
    assert_eq!(actor, "echo");
    assert_eq!(
        env,
        &json!({
            "id": id,
            "route": {"prev": [], "curr": "echo", "next": []},
            "headers": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                        "x-asya-a2a-context-id": "ctx-1", "custom": 7,
                        "x-asya-gateway-url": GW_URL},
            "payload": {"q": "hi"},
            "status": {"deadline_at": "2026-01-01T00:05:00Z"}
        })
    );

    let (code, msg) = h.get(&id).await;
    assert_eq!(code, 200);
    assert_eq!(msg["id"], id.as_str());
    assert_eq!(msg["status"], "pending");
    assert_eq!(msg["created_at"], "2026-01-01T00:00:00.000Z");
    let data = &msg["data"];
    assert_eq!(data["status"], "pending");
    assert_eq!(data["actor"], "echo");
    assert_eq!(data["payload"], json!({"q": "hi"}));
    assert_eq!(data["headers"]["x-asya-gateway-url"], GW_URL);
    assert_eq!(data["deadline_at"], "2026-01-01T00:05:00Z");
    assert_eq!(data["context_id"], "ctx-1");
    assert_eq!(data["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    h.shutdown().await;
}

#[tokio::test]
async fn create_without_timeout_has_no_status_block() {
    let h = Harness::start().await;
    let r = h
        .http
        .post(h.url("/api/v1/mesh?actor=echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "empty body and no trailing slash are accepted"
    );
    let (_, env) = &h.ingress.published()[0];
    assert!(env.get("status").is_none());
    assert!(env["payload"].is_null());
    assert_eq!(env["headers"], json!({"x-asya-gateway-url": GW_URL}));
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_actor_is_404_and_leaves_no_record() {
    let h = Harness::start().await;
    for q in ["actor=nope", "actor=echo&namespace=elsewhere"] {
        let r = h
            .http
            .post(h.url(&format!("/api/v1/mesh/?{q}")))
            .json(&json!({"payload": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{q}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "actor not found"})
        );
    }
    assert!(h.store.is_empty());
    assert!(h.ingress.published().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn bad_create_requests_are_400_with_error_body() {
    let h = Harness::start().await;
    let cases: Vec<(&str, &str)> = vec![
        (
            "/api/v1/mesh/?actor=echo",
            r#"{"route": {"prev": [], "curr": "a", "next": ["b"]}}"#,
        ),
        ("/api/v1/mesh/?actor=echo", r#"{"route_next": ["b"]}"#),
        (
            "/api/v1/mesh/?actor=echo",
            r#"{"payload": 1, "next": ["b"]}"#,
        ),
        ("/api/v1/mesh/?actor=echo", r#"{"payload": "#),
        ("/api/v1/mesh/?actor=echo", r#"not json"#),
        ("/api/v1/mesh/?actor=echo", r#"{"timeout": "soon"}"#),
        ("/api/v1/mesh/", r#"{}"#),
        ("/api/v1/mesh/?actor=", r#"{}"#),
    ];
    for (path, body) in cases {
        let r = h
            .http
            .post(h.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    let r = h
        .http
        .post(h.url("/api/v1/mesh/?actor=echo"))
        .json(&json!({"route": {}}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("routing fields"),
        "{v}"
    );
    assert!(h.store.is_empty());
    assert!(h.ingress.published().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn publish_failure_is_500_and_record_removed() {
    let h = Harness::start().await;
    h.ingress.fail.store(true, Ordering::SeqCst);
    let r = h
        .http
        .post(h.url("/api/v1/mesh/?actor=echo"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("queue unavailable"));
    assert!(h.store.is_empty());
    h.shutdown().await;
}

// ---------- events, status, progress ----------

#[tokio::test]
async fn progress_follows_the_route_and_stale_updates_are_dropped() {
    let h = Harness::start().await;
    let id = h.create("a", json!({"payload": {}})).await;
    let progress = |v: &Value| v["data"]["progress"].as_f64().unwrap();

    assert_eq!(
        h.event(&id, progress_event("received", &[], "a", &["b", "c"]))
            .await,
        204
    );
    let (_, m) = h.get(&id).await;
    assert_eq!(m["status"], "running");
    assert_eq!(m["data"]["status"], "running");
    assert!((progress(&m) - 3.33).abs() < 0.01);
    assert_eq!(m["data"]["route_next"], json!(["b", "c"]));
    assert_eq!(m["data"]["message"], "received in a");

    h.event(&id, progress_event("processing", &[], "a", &["b", "c"]))
        .await;
    assert!((progress(&h.get(&id).await.1) - 16.67).abs() < 0.01);
    h.event(&id, progress_event("completed", &["a"], "b", &["c"]))
        .await;
    let (_, m) = h.get(&id).await;
    assert!((progress(&m) - 33.33).abs() < 0.01);
    assert_eq!(m["data"]["actor"], "b");
    h.event(&id, progress_event("processing", &["a"], "b", &["c"]))
        .await;
    assert!((progress(&h.get(&id).await.1) - 50.0).abs() < 0.01);
    // the posted progress field is ignored; an earlier step never lowers the bar
    let mut early = progress_event("received", &[], "a", &["b", "c"]);
    early["data"]["progress"] = json!(99.0);
    h.event(&id, early).await;
    assert!((progress(&h.get(&id).await.1) - 50.0).abs() < 0.01);

    // unknown statuses are ignored
    assert_eq!(
        h.event(
            &id,
            json!({"type": "status", "status": "bogus", "data": {}})
        )
        .await,
        204
    );
    assert_eq!(h.status_of(&id).await, "running");

    // final report
    let final_ok = json!({"type": "status", "status": "succeeded",
                          "data": {"id": id, "status": "succeeded", "timestamp": "2026-01-01T00:00:01Z",
                                   "progress": 1.0, "result": {"answer": 42}}});
    assert_eq!(h.event(&id, final_ok).await, 204);
    let (_, m) = h.get(&id).await;
    assert_eq!(m["status"], "succeeded");
    assert_eq!(progress(&m), 100.0);
    assert_eq!(m["data"]["result"], json!({"answer": 42}));

    // terminal never changes
    let failed = json!({"type": "status", "status": "failed", "data": {"error": "late"}});
    assert_eq!(h.event(&id, failed).await, 204);
    let (_, m) = h.get(&id).await;
    assert_eq!(m["status"], "succeeded");
    assert!(m["data"].get("error").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn events_endpoint_errors() {
    let h = Harness::start().await;
    assert_eq!(
        h.event("missing", progress_event("received", &[], "a", &[]))
            .await,
        404
    );
    // FLY for an unknown id is still accepted
    assert_eq!(
        h.event("missing", json!({"type": "fly", "data": {"payload": 1}}))
            .await,
        204
    );
    let id = h.create("a", json!({})).await;
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id}/events")))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(h.event(&id, json!({"type": "weird"})).await, 400);
    let (code, body) = h.get("missing").await;
    assert_eq!(code, 404);
    assert!(body["error"].as_str().unwrap().contains("not found"));
    h.shutdown().await;
}

// ---------- SSE ----------

#[tokio::test]
async fn sse_catch_up_then_live_status_and_fly_then_closes_on_terminal() {
    let h = Harness::start().await;
    let id = h.create("a", json!({"payload": {"n": 1}})).await;
    let mut sse = h.sse(&id).await;

    let (name, data) = sse.next_event().await.unwrap();
    assert_eq!(name, "status");
    assert_eq!(data["status"], "pending");
    assert_eq!(data["actor"], "a");
    assert_eq!(data["payload"], json!({"n": 1}));
    assert_eq!(h.gw.subscriber_count(&id), 1);

    h.event(&id, progress_event("processing", &[], "a", &["b"]))
        .await;
    let (name, data) = sse.next_event().await.unwrap();
    assert_eq!(name, "status");
    assert_eq!(data["status"], "running");
    assert_eq!(data["progress"], json!(25.0));
    assert_eq!(data["route_next"], json!(["b"]));

    h.event(
        &id,
        json!({"type": "fly", "data": {"payload": {"token": "Hel"}}}),
    )
    .await;
    let (name, data) = sse.next_event().await.unwrap();
    assert_eq!(name, "fly");
    assert_eq!(data, json!({"payload": {"token": "Hel"}}));

    h.event(
        &id,
        json!({"type": "status", "status": "failed",
               "data": {"id": id, "status": "failed", "error": "boom", "timestamp": "t"}}),
    )
    .await;
    let (name, data) = sse.next_event().await.unwrap();
    assert_eq!(name, "status");
    assert_eq!(data["status"], "failed");
    assert_eq!(data["error"], "boom");
    sse.assert_ended().await;

    // a terminal task: catch-up only
    let mut again = h.sse(&id).await;
    let (_, data) = again.next_event().await.unwrap();
    assert_eq!(data["status"], "failed");
    again.assert_ended().await;
    h.shutdown().await;
}

#[tokio::test]
async fn sse_unknown_task_is_404() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(h.url("/api/v1/mesh/nope/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(h.gw.subscriber_count("nope"), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn sse_stale_events_are_not_published_and_paused_keeps_stream_open() {
    let h = Harness::start().await;
    let id = h.create("a", json!({})).await;
    let mut sse = h.sse(&id).await;
    assert_eq!(sse.next_event().await.unwrap().1["status"], "pending");

    h.pause(&id).await;
    let (_, data) = sse.next_event().await.unwrap();
    assert_eq!(data["status"], "paused");
    assert_eq!(data["pause_metadata"]["prompt"], "Approve?");

    // stale: running after paused, and pending
    h.event(&id, progress_event("processing", &["a"], "b", &[]))
        .await;
    h.event(
        &id,
        json!({"type": "status", "status": "pending", "data": {}}),
    )
    .await;
    assert_eq!(h.status_of(&id).await, "paused");
    // stream still open; the next thing it carries is the cancel
    let r = h
        .http
        .delete(h.url(&format!("/api/v1/mesh/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, data) = sse.next_event().await.unwrap();
    assert_eq!(data["status"], "canceled");
    sse.assert_ended().await;
    h.shutdown().await;
}

#[tokio::test]
async fn sse_sends_keepalive_comments() {
    let cfg = GatewayConfig {
        keepalive_interval: Duration::from_millis(50),
        ..GatewayConfig::with_internal_url(GW_URL)
    };
    let h = Harness::start_with(cfg).await;
    let id = h.create("a", json!({})).await;
    let mut sse = h.sse(&id).await;
    assert!(sse
        .next_block()
        .await
        .unwrap()
        .starts_with("event: status\n"));
    assert_eq!(sse.next_block().await.unwrap(), ":keepalive");
    assert_eq!(sse.next_block().await.unwrap(), ":keepalive");
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let h = Harness::start().await;
    let id = h.create("a", json!({})).await;
    let mut sse = h.sse(&id).await;
    sse.next_event().await.unwrap();
    h.shutdown().await; // would hang if the stream kept the connection open
    sse.assert_ended().await;
}

// ---------- cancel and children ----------

#[tokio::test]
async fn cancel_is_idempotent_and_cascades_to_children() {
    let h = Harness::start().await;
    let parent = h.create("a", json!({"timeout": 60})).await;
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{parent}/children")))
        .json(&json!({"id": "c1", "parent_id": parent, "route": {"prev": ["a"], "curr": "b", "next": ["c"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = h
        .http
        .post(h.url("/mesh"))
        .json(&json!({"id": "c2", "parent_id": parent, "prev": ["a"], "curr": "b", "next": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // grandchild, and a child that already finished
    h.http
        .post(h.url("/api/v1/mesh/c1/children"))
        .json(&json!({"id": "g1", "parent_id": "c1", "route": {"curr": "d"}}))
        .send()
        .await
        .unwrap();
    h.http
        .post(h.url(&format!("/api/v1/mesh/{parent}/children")))
        .json(&json!({"id": "done", "parent_id": parent, "route": {"curr": "b"}}))
        .send()
        .await
        .unwrap();
    h.event(
        "done",
        json!({"type": "status", "status": "succeeded", "data": {"result": 1}}),
    )
    .await;

    let r = h
        .http
        .delete(h.url(&format!("/api/v1/mesh/{parent}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for id in [parent.as_str(), "c1", "c2", "g1"] {
        let (_, m) = h.get(id).await;
        assert_eq!(m["status"], "canceled", "{id}");
        assert_eq!(m["data"]["status"], "canceled", "{id}");
    }
    assert_eq!(h.status_of("done").await, "succeeded");

    // again: terminal → 204, nothing changes
    let before = h.get(&parent).await.1;
    h.clock.advance(5);
    let r = h
        .http
        .delete(h.url(&format!("/api/v1/mesh/{parent}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(h.get(&parent).await.1, before);

    let r = h
        .http
        .delete(h.url("/api/v1/mesh/unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // a canceled task ignores late sidecar events
    h.event(&parent, progress_event("processing", &[], "a", &[]))
        .await;
    assert_eq!(h.status_of(&parent).await, "canceled");
    h.shutdown().await;
}

#[tokio::test]
async fn children_registration_and_listing() {
    let h = Harness::start().await;
    let parent = h.create("a", json!({"timeout": 120})).await;
    let url = h.url(&format!("/api/v1/mesh/{parent}/children"));
    let body = json!({"id": "kid-1", "parent_id": parent, "route": {"prev": ["a"], "curr": "b", "next": ["c"]}});
    let r = h.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"id": "kid-1"}));
    let r = h.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "idempotent");

    let r = h
        .http
        .post(&url)
        .json(&json!({"id": "kid-2", "parent_id": "someone-else", "route": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .post(&url)
        .json(&json!({"parent_id": parent}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "missing id");
    let r = h
        .http
        .post(h.url("/api/v1/mesh/ghost/children"))
        .json(&json!({"id": "kid-3", "parent_id": "ghost", "route": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let (_, kid) = h.get("kid-1").await;
    assert_eq!(kid["status"], "pending");
    assert_eq!(kid["data"]["actor"], "b");
    assert_eq!(kid["data"]["route_next"], json!(["c"]));
    assert_eq!(kid["data"]["parent_id"], parent.as_str());
    assert_eq!(kid["data"]["deadline_at"], "2026-01-01T00:02:00Z");

    let r = h
        .http
        .get(h.url(&format!("/api/v1/mesh/?parent_id={parent}")))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["messages"][0]["id"], "kid-1");
    h.shutdown().await;
}

#[tokio::test]
async fn adopt_records_a_parse_failure_that_the_final_report_fails() {
    let h = Harness::start().await;
    let url = h.url("/api/v1/mesh/gen-1/adopt");
    let payload = json!({"error": "Failed to parse message: x", "original_body": "x"});
    let r = h
        .http
        .post(&url)
        .json(&json!({"actor": "a", "payload": payload}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (code, task) = h.get("gen-1").await;
    assert_eq!(code, 200);
    assert_eq!(task["status"], "pending");
    assert_eq!(task["data"]["actor"], "a");
    assert_eq!(task["data"]["payload"], payload);
    let failed = json!({"type": "status", "status": "failed", "data": {
        "id": "gen-1", "status": "failed", "error": "Failed to parse message: x"}});
    assert_eq!(h.event("gen-1", failed).await, 204);
    assert_eq!(h.status_of("gen-1").await, "failed");
    // Adopting again leaves the record as it is.
    let r = h
        .http
        .post(&url)
        .json(&json!({"actor": "b", "payload": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, task) = h.get("gen-1").await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["data"]["payload"], payload);
    let r = h
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    h.shutdown().await;
}

#[tokio::test]
async fn list_filters_and_pages_newest_first() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.create("echo", json!({})).await);
    }
    h.event(&ids[1], progress_event("received", &[], "echo", &[]))
        .await;
    h.event(&ids[3], progress_event("received", &[], "echo", &[]))
        .await;

    let get = |q: &str| {
        let url = h.url(&format!("/api/v1/mesh/{q}"));
        let http = h.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (_, all) = get("").await;
    assert_eq!(all["total"], 5);
    let got: Vec<_> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    let want: Vec<_> = ids.iter().rev().map(|i| json!(i)).collect();
    assert_eq!(got, want);

    let (_, running) = get("?status=running").await;
    assert_eq!(running["total"], 2);
    assert_eq!(running["messages"][0]["id"], ids[3].as_str());

    let (_, page) = get("?limit=2&offset=1").await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page["messages"][0]["id"], ids[3].as_str());

    assert_eq!(get("?status=nonsense").await.0, 400);
    assert_eq!(get("?limit=abc").await.0, 400);
    h.shutdown().await;
}

// ---------- resume ----------

#[tokio::test]
async fn resume_publishes_to_x_resume_with_same_id() {
    let h = Harness::start().await;
    let id = h
        .create("a", json!({"timeout": 600, "payload": {"doc": 1}}))
        .await;
    h.event(
        &id,
        progress_event("processing", &[], "a", &["x-pause", "b"]),
    )
    .await;
    h.clock.advance(100);
    h.pause(&id).await;
    let (_, m) = h.get(&id).await;
    assert_eq!(
        m["data"]["pause_metadata"],
        json!({"prompt": "Approve?", "fields": []})
    );

    let mut sse = h.sse(&id).await;
    assert_eq!(sse.next_event().await.unwrap().1["status"], "paused");

    // resuming 50 s later: 500 s of SLA were left when it paused
    h.clock.advance(50);
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id}/resume")))
        .json(&json!({"payload": {"approved": true}, "headers": {"x-asya-a2a-task-id": "a2a-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"id": id}));

    let published = h.ingress.published();
    assert_eq!(published.len(), 2);
    let (actor, env) = &published[1];
    assert_eq!(actor, "x-resume");
    assert_eq!(
        env,
        &json!({
            "id": id,
            "route": {"prev": [], "curr": "x-resume", "next": []},
            "headers": {"x-asya-a2a-task-id": "a2a-1", "x-asya-gateway-url": GW_URL,
                        "x-asya-resume-task": id, "x-asya-resume-timeout": 500},
            "payload": {"approved": true},
            "status": {"deadline_at": "2026-01-01T00:10:50Z"}
        })
    );

    let (_, data) = sse.next_event().await.unwrap();
    assert_eq!(data["status"], "running");
    assert_eq!(data["message"], "Resumed");
    assert!(data.get("pause_metadata").is_none());
    assert_eq!(data["deadline_at"], "2026-01-01T00:10:50Z");
    assert_eq!(data["payload"], json!({"doc": 1}), "creation payload kept");

    // not paused any more
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id}/resume")))
        .json(&json!({"payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = h
        .http
        .post(h.url("/api/v1/mesh/ghost/resume"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id}/resume")))
        .header("content-type", "application/json")
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    h.shutdown().await;
}

/// Issue 9 item 20: a resume is checked against the fields the pause declared, for the
/// resume route and Asya's create-on-x-resume alike; a refusal is a 400 naming the field
/// and the type, and the task stays paused with nothing sent to x-resume.
#[tokio::test]
async fn resume_input_is_checked_against_the_pause_fields() {
    let h = Harness::start().await;
    let id = h.create("a", json!({})).await;
    let code = h
        .event(
            &id,
            json!({"type": "status", "status": "completed", "data": {
                "prev": ["a", "x-pause"], "curr": "x-resume", "next": ["b"], "status": "completed",
                "pause_metadata": {"prompt": "Send?", "fields": [
                    {"name": "approved", "type": "boolean", "required": true}]}}}),
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(h.status_of(&id).await, "paused");
    let resume = |body: Value| {
        let req = h
            .http
            .post(h.url(&format!("/api/v1/mesh/{id}/resume")))
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    for (body, needle) in [
        (
            json!({"payload": {"approved": "yes-please"}}),
            "field 'approved' must be a boolean (true or false), got the string \"yes-please\"",
        ),
        (json!({}), "field 'approved' is required"),
        (json!({"payload": {}}), "field 'approved' is required"),
        (json!({"payload": "yes"}), "must be a JSON object"),
    ] {
        let r = resume(body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let text = r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            text.contains(needle) && text.contains("stays paused"),
            "{text}"
        );
        assert_eq!(h.status_of(&id).await, "paused");
    }
    // Asya's A2A adapter resumes by creating a task on x-resume.
    let r = h
        .http
        .post(h.url("/api/v1/mesh/?actor=x-resume"))
        .json(&json!({"payload": {"approved": 1}, "headers": {"x-asya-resume-task": id}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(h.status_of(&id).await, "paused");
    assert!(
        h.ingress.published().iter().all(|(a, _)| a != "x-resume"),
        "nothing reaches x-resume"
    );
    assert_eq!(
        resume(json!({"payload": {"approved": false}}))
            .await
            .status(),
        202
    );
    assert_eq!(h.status_of(&id).await, "running");
    h.shutdown().await;
}

#[tokio::test]
async fn resume_with_explicit_timeout_and_without_deadline() {
    let h = Harness::start().await;
    let id = h.create("a", json!({})).await;
    h.pause(&id).await;
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id}/resume")))
        .json(&json!({"payload": 1, "timeout": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, env) = h.ingress.published().pop().unwrap();
    assert_eq!(env["headers"]["x-asya-resume-timeout"], 30);
    assert_eq!(env["status"]["deadline_at"], "2026-01-01T00:00:30Z");

    // paused again, resumed without timeout and no deadline: no SLA fields
    let id2 = h.create("a", json!({})).await;
    h.pause(&id2).await;
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id2}/resume")))
        .json(&json!({"payload": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, env) = h.ingress.published().pop().unwrap();
    assert!(env.get("status").is_none());
    assert!(env["headers"].get("x-asya-resume-timeout").is_none());
    assert!(h.get(&id2).await.1["data"].get("deadline_at").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn externally_paused_task_cannot_be_resumed() {
    let h = Harness::start().await;
    let id = h.create("a", json!({})).await;
    h.event(
        &id,
        json!({"type": "status", "status": "paused", "data": {}}),
    )
    .await;
    assert_eq!(h.status_of(&id).await, "paused");
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id}/resume")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("no saved state"));
    h.shutdown().await;
}

#[tokio::test]
async fn resume_publish_failure_restores_paused() {
    let h = Harness::start().await;
    let id = h.create("a", json!({"timeout": 60})).await;
    h.pause(&id).await;
    h.ingress.fail.store(true, Ordering::SeqCst);
    let r = h
        .http
        .post(h.url(&format!("/api/v1/mesh/{id}/resume")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let (_, m) = h.get(&id).await;
    assert_eq!(m["status"], "paused");
    assert!(m["data"]["pause_metadata"].is_object());
    h.shutdown().await;
}

#[tokio::test]
async fn asya_compat_create_for_x_resume_resumes_paused_task() {
    let h = Harness::start().await;
    let id = h.create("a", json!({})).await;
    h.pause(&id).await;
    let r = h
        .http
        .post(h.url("/api/v1/mesh/?actor=x-resume"))
        .json(&json!({"payload": {"ok": 1}, "headers": {"x-asya-resume-task": id}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"id": id}));
    assert_eq!(h.status_of(&id).await, "running");
    let (actor, env) = h.ingress.published().pop().unwrap();
    assert_eq!(actor, "x-resume");
    assert_eq!(env["id"], id.as_str());
    assert_eq!(env["headers"]["x-asya-resume-task"], id.as_str());
    assert_eq!(h.store.len(), 1, "no new task was created");

    // not paused: an ordinary create for x-resume
    let other = h
        .create("x-resume", json!({"headers": {"x-asya-resume-task": id}}))
        .await;
    assert_ne!(other, id);
    h.shutdown().await;
}

// ---------- backstop ----------

#[tokio::test]
async fn backstop_fails_overdue_tasks_but_not_paused_ones() {
    let h = Harness::start().await;
    let overdue = h.create("a", json!({"timeout": 10})).await;
    let running = h.create("a", json!({"timeout": 10})).await;
    h.event(&running, progress_event("processing", &[], "a", &[]))
        .await;
    let paused = h.create("a", json!({"timeout": 10})).await;
    h.pause(&paused).await;
    let later = h.create("a", json!({"timeout": 60})).await;
    let forever = h.create("a", json!({})).await;

    let mut sse = h.sse(&overdue).await;
    sse.next_event().await.unwrap();

    assert_eq!(h.gw.run_backstop_once().await.unwrap(), 0);
    h.clock.advance(11);
    assert_eq!(h.gw.run_backstop_once().await.unwrap(), 2);
    for id in [&overdue, &running] {
        let (_, m) = h.get(id).await;
        assert_eq!(m["status"], "failed");
        assert_eq!(m["data"]["error"], "task timed out");
    }
    for (id, st) in [
        (&paused, "paused"),
        (&later, "pending"),
        (&forever, "pending"),
    ] {
        assert_eq!(h.status_of(id).await, st);
    }
    let (_, data) = sse.next_event().await.unwrap();
    assert_eq!(data["status"], "failed");
    assert_eq!(data["error"], "task timed out");
    sse.assert_ended().await;
    assert_eq!(h.gw.run_backstop_once().await.unwrap(), 0, "already failed");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn spawned_backstop_runs_on_its_interval() {
    let store = Arc::new(MemoryStore::new());
    let ingress = FakeIngress::with(&["a"]);
    let clock = Arc::new(ManualClock(Mutex::new(T0)));
    let cfg = GatewayConfig {
        backstop_interval: Duration::from_secs(5),
        ..GatewayConfig::with_internal_url(GW_URL)
    };
    let gw = Gateway::with_clock(cfg, store.clone(), ingress, clock.clone());
    let id = gw.create("a", None, br#"{"timeout": 3}"#).await.unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let handle = gw.spawn_backstop(async move {
        let _ = rx.await;
    });

    clock.advance(4);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        store.status(&id).await.unwrap(),
        Some(TaskStatus::Pending),
        "no tick yet"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.status(&id).await.unwrap(), Some(TaskStatus::Failed));

    stop.send(()).unwrap();
    handle.await.unwrap();
}

// ---------- in-process reporter ----------

#[tokio::test]
async fn in_process_reporter_applies_reports_like_http() {
    let h = Harness::start().await;
    let rep = h.gw.reporter();
    let id = h.create("a", json!({})).await;
    assert_eq!(
        rep.task_status("ignored", &id).await.as_deref(),
        Some("pending")
    );
    assert_eq!(rep.task_status("ignored", "unknown").await, None);
    assert!(rep.knows("ignored", &id).await);
    assert!(!rep.knows("ignored", "unknown").await);

    let mut sse = h.sse(&id).await;
    sse.next_event().await.unwrap();
    rep.post_event("ignored", &id, progress_event("received", &[], "a", &["b"]))
        .await;
    assert_eq!(sse.next_event().await.unwrap().1["status"], "running");
    rep.post_event(
        "ignored",
        &id,
        json!({"type": "fly", "data": {"payload": "x"}}),
    )
    .await;
    assert_eq!(
        sse.next_event().await.unwrap(),
        ("fly".into(), json!({"payload": "x"}))
    );

    rep.register_child(
        "ignored",
        &id,
        json!({"id": "child", "parent_id": id, "route": {"prev": ["a"], "curr": "b", "next": []}}),
    )
    .await;
    assert_eq!(
        rep.task_status("ignored", "child").await.as_deref(),
        Some("pending")
    );

    // unknown ids: nothing stored, nothing fails
    rep.post_event(
        "ignored",
        "nobody",
        progress_event("received", &[], "a", &[]),
    )
    .await;
    rep.post_event("ignored", "nobody", json!({"type": "fly", "data": {}}))
        .await;
    assert_eq!(h.store.len(), 2);

    rep.post_event(
        "ignored",
        &id,
        json!({"type": "status", "status": "canceled", "data": {}}),
    )
    .await;
    assert_eq!(
        rep.task_status("ignored", &id).await.as_deref(),
        Some("canceled")
    );
    h.shutdown().await;
}

// ---------- probes and prefixes ----------

#[tokio::test]
async fn health_and_ready() {
    let h = Harness::start().await;
    for p in ["/health", "/ready"] {
        let r = h.http.get(h.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn custom_prefix_still_serves_sidecar_routes_under_api_v1() {
    let cfg = GatewayConfig {
        api_prefix: "/mesh-api/".into(),
        ..GatewayConfig::with_internal_url(GW_URL)
    };
    let h = Harness::start_with(cfg).await;
    let r = h
        .http
        .post(h.url("/mesh-api/mesh/?actor=a"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // sidecar paths
    assert_eq!(
        h.event(&id, progress_event("received", &[], "a", &[]))
            .await,
        204
    );
    assert_eq!(h.get(&id).await.1["status"], "running");
    // client paths under the custom prefix
    let r = h
        .http
        .get(h.url(&format!("/mesh-api/mesh/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the client-facing create is not served under /api/v1
    let r = h
        .http
        .post(h.url("/api/v1/mesh/?actor=a"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    h.shutdown().await;
}
