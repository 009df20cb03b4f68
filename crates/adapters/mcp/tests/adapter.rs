//! The MCP adapter over real HTTP on a loopback listener, with an in-memory gateway
//! whose actors are simulated by posting sidecar-shaped events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use troupe_gateway::{Gateway, GatewayConfig, Ingress, MemoryStore};
use troupe_mcp::{McpAdapter, McpConfig, McpError};

// ---------- fixtures ----------

#[derive(Default)]
struct FakeIngress {
    actors: HashSet<String>,
    published: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl Ingress for FakeIngress {
    fn has_actor(&self, actor: &str) -> bool {
        self.actors.contains(actor)
    }
    async fn publish(&self, actor: &str, body: bytes::Bytes) -> Result<(), String> {
        let v: Value = serde_json::from_slice(&body).unwrap();
        self.published.lock().unwrap().push((actor.to_owned(), v));
        Ok(())
    }
}

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

const TOOLS: &str = r#"
tools:
  - name: summarize
    actor: summarize
    description: Summarize a document
    timeout: 30
    progress: true
    inputSchema:
      type: object
      properties:
        url: {type: string, description: Document URL}
        style: {type: string, enum: [short, long]}
      required: [url]
  - name: quiet
    actor: summarize
  - name: slow
    actor: summarize
    timeout: 1
"#;

struct Harness {
    base: String,
    gw: Gateway,
    adapter: McpAdapter,
    ingress: Arc<FakeIngress>,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    stop_reload: Option<oneshot::Sender<()>>,
}

struct Opts {
    api_key: Option<String>,
    poll: Duration,
    gateway: GatewayConfig,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            api_key: None,
            poll: Duration::from_secs(3600),
            gateway: GatewayConfig::with_internal_url("http://gw.internal"),
        }
    }
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(Opts::default()).await
    }

    async fn start_with(opts: Opts) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tools.yaml"), TOOLS).unwrap();
        let ingress = Arc::new(FakeIngress {
            actors: ["summarize".to_owned()].into(),
            ..Default::default()
        });
        let gw = Gateway::new(opts.gateway, Arc::new(MemoryStore::new()), ingress.clone());
        let adapter = McpAdapter::new(
            gw.clone(),
            McpConfig {
                config_dir: Some(dir.path().to_owned()),
                inline_tools: vec![json!({"name": "inline", "actor": "summarize"})],
                poll_interval: opts.poll,
                api_key: opts.api_key,
            },
        )
        .unwrap();
        let (stop_reload, rx) = oneshot::channel::<()>();
        adapter.spawn_reload(async move {
            let _ = rx.await;
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = adapter.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Harness {
            base,
            gw,
            adapter,
            ingress,
            http: reqwest::Client::new(),
            dir,
            stop_reload: Some(stop_reload),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn post(&self, session: Option<&str>, accept: &str, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(self.url("/mcp"))
            .header("accept", accept)
            .json(body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    async fn initialize_version(&self, version: &str) -> (String, Value) {
        let r = self
            .post(
                None,
                ACCEPT_BOTH,
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                        "params": {"protocolVersion": version, "capabilities": {},
                                   "clientInfo": {"name": "test", "version": "1"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        let r = self
            .post(
                Some(&sid),
                ACCEPT_BOTH,
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        (sid, body)
    }

    async fn initialize(&self) -> String {
        self.initialize_version("2025-11-25").await.0
    }

    /// A request answered as plain JSON.
    async fn rpc(&self, sid: &str, method: &str, params: Value) -> Value {
        let r = self
            .post(
                Some(sid),
                "application/json",
                &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// A `tools/call` answered as an SSE stream.
    async fn call_sse(&self, sid: &str, params: Value) -> Sse {
        let r = self
            .post(
                Some(sid),
                ACCEPT_BOTH,
                &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Sse::new(r)
    }

    /// The id of the `n`-th task published to the actor (waits for it).
    async fn published(&self, n: usize) -> (String, Value) {
        for _ in 0..500 {
            if let Some((actor, env)) = self.ingress.published.lock().unwrap().get(n).cloned() {
                assert_eq!(actor, "summarize");
                return (env["id"].as_str().unwrap().to_owned(), env);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no task #{n} was published");
    }

    /// Waits until the adapter follows task `id`, so no simulated event is missed.
    async fn followed(&self, id: &str) {
        for _ in 0..500 {
            if self.gw.subscriber_count(id) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("task {id} is not followed");
    }

    async fn event(&self, id: &str, body: Value) {
        self.gw.apply_event(id, body).await.unwrap();
    }

    fn published_count(&self) -> usize {
        self.ingress.published.lock().unwrap().len()
    }
}

fn status_event(status: &str, prev: &[&str], curr: &str, next: &[&str]) -> Value {
    json!({"type": "status", "status": status,
           "data": {"prev": prev, "curr": curr, "next": next, "status": status,
                    "message": format!("{status} in {curr}")}})
}

fn fly(obj: Value) -> Value {
    json!({"type": "fly", "data": {"payload": obj}})
}

fn result_text(resp: &Value) -> (String, bool) {
    let r = &resp["result"];
    (
        r["content"][0]["text"].as_str().unwrap().to_owned(),
        r["isError"].as_bool().unwrap(),
    )
}

/// Reads `event:`/`data:` frames from an SSE response.
struct Sse {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    fn new(r: reqwest::Response) -> Self {
        Sse {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event as (name, data); `None` at the end of the stream.
    async fn next_raw(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut name = "message".to_owned();
                let mut data = None;
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        n.clone_into(&mut name);
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(d.to_owned());
                    }
                }
                match data {
                    Some(d) => return Some((name, d)),
                    None => continue, // keepalive comment
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("SSE stream stalled")?
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn next_message(&mut self) -> Option<Value> {
        let (name, data) = self.next_raw().await?;
        assert_eq!(name, "message");
        Some(serde_json::from_str(&data).unwrap())
    }

    async fn assert_ended(&mut self) {
        assert_eq!(self.next_raw().await, None, "stream should have ended");
    }
}

// ---------- lifecycle ----------

#[tokio::test]
async fn initialize_negotiates_version_and_opens_a_session() {
    let h = Harness::start().await;
    let (sid, body) = h.initialize_version("2025-06-18").await;
    assert!(!sid.is_empty());
    let r = &body["result"];
    assert_eq!(body["id"], 0);
    assert_eq!(r["protocolVersion"], "2025-06-18");
    assert_eq!(r["serverInfo"]["name"], "asya-mcp-adapter");
    assert_eq!(r["capabilities"]["tools"], json!({"listChanged": true}));
    assert_eq!(r["capabilities"]["logging"], json!({}));
    for v in ["2024-11-05", "2025-03-26", "2025-11-25"] {
        let (_, body) = h.initialize_version(v).await;
        assert_eq!(body["result"]["protocolVersion"], v);
    }
    let (_, body) = h.initialize_version("1999-01-01").await;
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");

    // ping, unknown method, log level
    assert_eq!(h.rpc(&sid, "ping", json!({})).await["result"], json!({}));
    let r = h.rpc(&sid, "resources/list", json!({})).await;
    assert_eq!(r["error"]["code"], -32601);
    let r = h
        .rpc(&sid, "logging/setLevel", json!({"level": "warning"}))
        .await;
    assert_eq!(r["result"], json!({}));
    let r = h
        .rpc(&sid, "logging/setLevel", json!({"level": "loud"}))
        .await;
    assert_eq!(r["error"]["code"], -32602);
}

#[tokio::test]
async fn session_header_rules_and_delete() {
    let h = Harness::start().await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let r = h.post(None, ACCEPT_BOTH, &ping).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .post(Some("nope"), ACCEPT_BOTH, &ping)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let sid = h.initialize().await;
    let r = h
        .post(Some(&sid), ACCEPT_BOTH, &ping)
        .header("mcp-protocol-version", "1900-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .post(Some(&sid), ACCEPT_BOTH, &ping)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h.post(Some(&sid), "text/html", &ping).send().await.unwrap();
    assert_eq!(r.status(), 406);

    // malformed bodies
    let r = h
        .http
        .post(h.url("/mcp"))
        .header("mcp-session-id", &sid)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32700);
    let r = h
        .post(Some(&sid), ACCEPT_BOTH, &json!({"id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32600);

    let n = h.adapter.session_count();
    let r = h
        .http
        .delete(h.url("/mcp"))
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(h.adapter.session_count(), n - 1);
    let r = h.post(Some(&sid), ACCEPT_BOTH, &ping).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn batches_only_for_versions_that_have_them() {
    let h = Harness::start().await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}},
    ]);
    let (old, _) = h.initialize_version("2025-03-26").await;
    let r = h
        .post(Some(&old), "application/json", &batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answers: Vec<Value> = r.json().await.unwrap();
    assert_eq!(answers.len(), 3);
    let by_id = |id: i64| answers.iter().find(|a| a["id"] == id).unwrap().clone();
    assert_eq!(by_id(1)["result"], json!({}));
    assert!(by_id(2)["result"]["tools"].is_array());
    assert_eq!(by_id(3)["error"]["code"], -32600);
    // notifications only → 202
    let r = h
        .post(
            Some(&old),
            ACCEPT_BOTH,
            &json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let new = h.initialize().await;
    let r = h
        .post(Some(&new), ACCEPT_BOTH, &batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

// ---------- tools ----------

#[tokio::test]
async fn tools_list_advertises_schemas_as_written() {
    let h = Harness::start().await;
    let sid = h.initialize().await;
    let r = h.rpc(&sid, "tools/list", json!({})).await;
    let tools = r["result"]["tools"].as_array().unwrap();
    let names: Vec<_> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["summarize", "quiet", "slow", "inline"]);
    assert_eq!(
        tools[0],
        json!({"name": "summarize", "description": "Summarize a document",
               "inputSchema": {"type": "object",
                               "properties": {"url": {"type": "string", "description": "Document URL"},
                                              "style": {"type": "string", "enum": ["short", "long"]}},
                               "required": ["url"]}})
    );
    assert_eq!(
        tools[1],
        json!({"name": "quiet", "inputSchema": {"type": "object"}})
    );
}

#[tokio::test]
async fn call_streams_progress_fly_logs_then_result() {
    let h = Harness::start().await;
    let sid = h.initialize().await;
    let mut sse = h
        .call_sse(
            &sid,
            json!({"name": "summarize", "arguments": {"url": "http://doc"},
                   "_meta": {"progressToken": "p1"}}),
        )
        .await;
    let (id, env) = h.published(0).await;
    assert_eq!(env["payload"], json!({"url": "http://doc"}));
    assert!(
        env["status"]["deadline_at"].is_string(),
        "timeout 30 s: {env}"
    );
    h.followed(&id).await;

    // catch-up (pending)
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["method"], "notifications/progress");
    assert_eq!(m["params"]["progressToken"], "p1");
    assert_eq!(m["params"]["progress"], 0.0);
    assert_eq!(m["params"]["total"], 100);

    h.event(
        &id,
        status_event("processing", &[], "summarize", &["review"]),
    )
    .await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["method"], "notifications/progress");
    assert_eq!(m["params"]["progress"], 25.0);
    assert_eq!(m["params"]["message"], "processing in summarize");

    h.event(&id, fly(json!({"partial": true, "text": "Hel"})))
        .await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(
        m,
        json!({"jsonrpc": "2.0", "method": "notifications/message",
               "params": {"level": "info", "logger": "summarize",
                          "data": {"partial": true, "text": "Hel"}}})
    );

    h.event(
        &id,
        json!({"type": "status", "status": "succeeded", "data": {"result": {"summary": "short"}}}),
    )
    .await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["id"], 7);
    assert_eq!(
        result_text(&m),
        (r#"{"summary":"short"}"#.to_owned(), false)
    );
    sse.assert_ended().await;
}

#[tokio::test]
async fn progress_needs_token_and_tool_flag_and_logs_follow_set_level() {
    let h = Harness::start().await;
    let sid = h.initialize().await;
    // `quiet` has progress off: a token does not help; FLY still logs.
    let mut sse = h
        .call_sse(
            &sid,
            json!({"name": "quiet", "arguments": {}, "_meta": {"progressToken": 5}}),
        )
        .await;
    let (id, _) = h.published(0).await;
    h.followed(&id).await;
    h.event(&id, status_event("processing", &[], "summarize", &[]))
        .await;
    h.event(&id, fly(json!({"n": 1}))).await;
    h.event(
        &id,
        json!({"type": "status", "status": "succeeded", "data": {"message": "done"}}),
    )
    .await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["method"], "notifications/message");
    let m = sse.next_message().await.unwrap();
    assert_eq!(result_text(&m), ("done".to_owned(), false));

    // at level warning, info logs are not sent
    h.rpc(&sid, "logging/setLevel", json!({"level": "warning"}))
        .await;
    let mut sse = h
        .call_sse(
            &sid,
            json!({"name": "summarize", "arguments": {"url": "u"}}),
        )
        .await;
    let (id, _) = h.published(1).await;
    h.followed(&id).await;
    h.event(&id, fly(json!({"n": 2}))).await;
    h.event(
        &id,
        json!({"type": "status", "status": "succeeded", "data": {}}),
    )
    .await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(result_text(&m), ("completed".to_owned(), false));
}

#[tokio::test]
async fn failed_canceled_and_paused_results() {
    let h = Harness::start().await;
    let sid = h.initialize().await;
    // JSON response mode: the client accepts only application/json.
    let call = || h.rpc(&sid, "tools/call", json!({"name": "quiet"}));
    let task = |n: usize| {
        let h = &h;
        async move {
            let (id, _) = h.published(n).await;
            h.followed(&id).await;
            id
        }
    };

    let (resp, _) = tokio::join!(call(), async {
        let id = task(0).await;
        h.event(
            &id,
            json!({"type": "status", "status": "failed", "data": {"error": "boom"}}),
        )
        .await;
    });
    assert_eq!(result_text(&resp), ("boom".to_owned(), true));

    let (resp, _) = tokio::join!(call(), async {
        let id = task(1).await;
        h.gw.cancel(&id).await.unwrap();
    });
    assert_eq!(result_text(&resp), ("task was canceled".to_owned(), true));

    let (resp, id) = tokio::join!(call(), async {
        let id = task(2).await;
        h.event(
            &id,
            json!({"type": "status", "status": "completed", "data": {
                "prev": ["summarize", "x-pause"], "curr": "x-resume", "next": [],
                "message": "Paused: waiting for input",
                "pause_metadata": {"prompt": "Approve?"}}}),
        )
        .await;
        id
    });
    let (text, is_error) = result_text(&resp);
    assert!(!is_error);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        json!({"status": "paused", "message": "Paused: waiting for input", "id": id,
               "pause_metadata": {"prompt": "Approve?"}})
    );
}

#[tokio::test]
async fn unknown_tool_and_missing_argument() {
    let h = Harness::start().await;
    let sid = h.initialize().await;
    let r = h
        .rpc(&sid, "tools/call", json!({"name": "nope", "arguments": {}}))
        .await;
    assert_eq!(r["error"]["code"], -32602);
    assert!(r["error"]["message"].as_str().unwrap().contains("nope"));

    let r = h
        .rpc(
            &sid,
            "tools/call",
            json!({"name": "summarize", "arguments": {"style": "short"}}),
        )
        .await;
    let (text, is_error) = result_text(&r);
    assert!(is_error);
    assert!(text.contains("url"), "{text}");
    assert_eq!(h.published_count(), 0, "no task for an invalid call");

    let r = h
        .rpc(
            &sid,
            "tools/call",
            json!({"name": "quiet", "arguments": [1]}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602);
}

#[tokio::test]
async fn deadline_gives_timeout_result() {
    let h = Harness::start().await;
    let sid = h.initialize().await;
    let t0 = std::time::Instant::now();
    let r = h.rpc(&sid, "tools/call", json!({"name": "slow"})).await;
    assert_eq!(
        result_text(&r),
        ("timeout: no result received".to_owned(), true)
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test]
async fn lost_subscription_falls_back_to_polling() {
    // A one-event subscriber buffer: a burst of status events drops the follower.
    let h = Harness::start_with(Opts {
        gateway: GatewayConfig {
            subscriber_buffer: 1,
            ..GatewayConfig::with_internal_url("http://gw.internal")
        },
        ..Opts::default()
    })
    .await;
    let sid = h.initialize().await;
    let (resp, _) = tokio::join!(h.rpc(&sid, "tools/call", json!({"name": "quiet"})), async {
        let (id, _) = h.published(0).await;
        h.followed(&id).await;
        // No await point yields to the follower between these on this runtime, so a
        // status event finds its queue full and the hub drops the follower.
        h.event(&id, status_event("processing", &[], "summarize", &["b"]))
            .await;
        h.event(&id, status_event("processing", &["summarize"], "b", &[]))
            .await;
        h.event(&id, status_event("processing", &["summarize"], "b", &[]))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            h.gw.subscriber_count(&id),
            0,
            "the follower was not dropped"
        );
        // The call still waits: it now polls the store.
        h.event(
            &id,
            json!({"type": "status", "status": "succeeded", "data": {"result": 42}}),
        )
        .await;
    });
    assert_eq!(result_text(&resp), ("42".to_owned(), false));
}

// ---------- auth ----------

#[tokio::test]
async fn bearer_key_is_required_when_set() {
    let h = Harness::start_with(Opts {
        api_key: Some("s3cret".into()),
        ..Opts::default()
    })
    .await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                      "params": {"protocolVersion": "2025-11-25"}});
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic s3cret"),
        Some("Bearer s3cre"),
    ] {
        let mut r = h.post(None, ACCEPT_BOTH, &init);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"asya-gateway\""
        );
    }
    let r = h.http.get(h.url("/mcp/sse")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .post(None, ACCEPT_BOTH, &init)
        .header("authorization", "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // other routes of a host stay outside the check
    let r = h.http.get(h.url("/elsewhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn foreign_origin_is_refused_without_a_key() {
    let h = Harness::start().await;
    let ping = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    let r = h
        .post(None, ACCEPT_BOTH, &ping)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = h
        .post(None, ACCEPT_BOTH, &ping)
        .header("origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// ---------- registry ----------

#[tokio::test]
async fn initial_registry_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yml"), "tools:\n  - name: x\n").unwrap();
    let gw = Gateway::new(
        GatewayConfig::default(),
        Arc::new(MemoryStore::new()),
        Arc::new(FakeIngress::default()),
    );
    let err = McpAdapter::new(
        gw.clone(),
        McpConfig {
            config_dir: Some(dir.path().to_owned()),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    let McpError::Registry(msg) = err;
    assert!(
        msg.contains("bad.yml") && msg.contains("`actor` is required"),
        "{msg}"
    );

    let err = McpAdapter::new(
        gw,
        McpConfig {
            inline_tools: vec![
                json!({"name": "a", "actor": "x"}),
                json!({"name": "a", "actor": "y"}),
            ],
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("not unique"), "{err}");
}

#[tokio::test]
async fn registry_reloads_keeps_old_set_on_errors_and_notifies() {
    let h = Harness::start_with(Opts {
        poll: Duration::from_millis(50),
        ..Opts::default()
    })
    .await;
    let sid = h.initialize().await;
    let r = h
        .http
        .get(h.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = Sse::new(r);
    // Let the GET register before the change.
    tokio::time::sleep(Duration::from_millis(50)).await;

    std::fs::write(
        h.dir().join("more.yml"),
        "tools:\n  - {name: translate, actor: summarize}\n",
    )
    .unwrap();
    let m = stream.next_message().await.unwrap();
    assert_eq!(
        m,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    );
    let names = |r: Value| -> Vec<String> {
        r["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(names(h.rpc(&sid, "tools/list", json!({})).await).contains(&"translate".to_owned()));

    // A broken file: the previous set stays, and reload says which file.
    std::fs::write(h.dir().join("broken.yaml"), "tools: [{name: x}]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = h.adapter.reload().await.unwrap_err();
    assert!(err.to_string().contains("broken.yaml"), "{err}");
    assert_eq!(
        names(h.rpc(&sid, "tools/list", json!({})).await),
        // files by name (more.yml < tools.yaml), then inline tools
        ["translate", "summarize", "quiet", "slow", "inline"]
    );
    // A duplicate name is an error too.
    std::fs::write(
        h.dir().join("broken.yaml"),
        "tools: [{name: quiet, actor: x}]\n",
    )
    .unwrap();
    let err = h.adapter.reload().await.unwrap_err();
    assert!(err.to_string().contains("not unique"), "{err}");
    assert_eq!(h.adapter.tools().len(), 5);

    // Fixed: the new set is taken and announced.
    std::fs::remove_file(h.dir().join("broken.yaml")).unwrap();
    std::fs::remove_file(h.dir().join("more.yml")).unwrap();
    let m = stream.next_message().await.unwrap();
    assert_eq!(m["method"], "notifications/tools/list_changed");
    assert_eq!(h.adapter.tools().len(), 4);

    // Shutdown ends the open stream.
    let mut h = h;
    let _ = h.stop_reload.take().unwrap().send(());
    stream.assert_ended().await;
}

// ---------- legacy HTTP+SSE ----------

#[tokio::test]
async fn legacy_sse_transport() {
    let h = Harness::start().await;
    let r = h.http.get(h.url("/mcp/sse")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut sse = Sse::new(r);
    let (name, endpoint) = sse.next_raw().await.unwrap();
    assert_eq!(name, "endpoint");
    assert!(
        endpoint.starts_with("/mcp/message?sessionId="),
        "{endpoint}"
    );
    assert_eq!(h.adapter.session_count(), 1);
    let post = |body: Value| {
        let url = h.url(&endpoint);
        let http = h.http.clone();
        async move { http.post(url).json(&body).send().await.unwrap().status() }
    };

    let code = post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"protocolVersion": "2024-11-05", "capabilities": {}}}))
    .await;
    assert_eq!(code, 202);
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["id"], 1);
    assert_eq!(m["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await,
        202
    );

    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "summarize", "arguments": {"url": "u"},
                               "_meta": {"progressToken": "t"}}}))
        .await,
        202
    );
    let (id, _) = h.published(0).await;
    h.followed(&id).await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["method"], "notifications/progress");
    h.event(&id, fly(json!({"tok": "a"}))).await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["params"]["data"], json!({"tok": "a"}));
    h.event(
        &id,
        json!({"type": "status", "status": "succeeded", "data": {"result": [1, 2]}}),
    )
    .await;
    let m = sse.next_message().await.unwrap();
    assert_eq!(m["id"], 2);
    assert_eq!(result_text(&m), ("[1,2]".to_owned(), false));

    // bad session, bad body
    let r = h
        .http
        .post(h.url("/mcp/message?sessionId=nope"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .post(h.url(&endpoint))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // closing the stream ends the session
    drop(sse);
    for _ in 0..200 {
        if h.adapter.session_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.adapter.session_count(), 0);
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})).await,
        404
    );
}

/// Issue 9 item 2: a text/plain body (a browser's "simple" request) is refused, and a
/// foreign Origin is refused even with the key.
#[tokio::test]
async fn non_json_bodies_and_foreign_origins_are_refused() {
    let h = Harness::start_with(Opts {
        api_key: Some("s3cret".into()),
        ..Opts::default()
    })
    .await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    let r = h
        .http
        .post(h.url("/mcp"))
        .header("authorization", "Bearer s3cret")
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "text/plain")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = h
        .post(None, ACCEPT_BOTH, &init)
        .header("authorization", "Bearer s3cret")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The key is also accepted as X-API-Key (one auth implementation with A2A and the mesh API).
    let r = h
        .post(None, ACCEPT_BOTH, &init)
        .header("x-api-key", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn debug_output_never_shows_the_api_key() {
    let config = McpConfig {
        api_key: Some("sekret-mcp-key".into()),
        ..Default::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("sekret-mcp-key"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
