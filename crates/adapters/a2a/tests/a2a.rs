//! The A2A adapter over real HTTP: a gateway on a memory store, a fake ingress, actors
//! simulated by posting sidecar-shaped events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use troupe_a2a::{A2aAdapter, A2aConfig, A2aError};
use troupe_gateway::{Gateway, GatewayConfig, Ingress, MemoryStore};

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

struct H {
    base: String,
    gw: Gateway,
    ingress: Arc<FakeIngress>,
    http: reqwest::Client,
    adapter: A2aAdapter,
    _stop: oneshot::Sender<()>,
}

fn agents() -> Vec<Value> {
    vec![
        json!({"name": "research", "actor": "research", "description": "Web research",
               "streaming": true, "timeout": 60,
               "skills": [{"id": "web", "name": "Web search", "description": "Searches", "tags": ["web"]}]}),
        json!({"name": "echo", "actor": "echo", "description": "Echoes",
               "inputModes": ["application/json"], "outputModes": ["application/json"]}),
    ]
}

fn config(agents: Vec<Value>) -> A2aConfig {
    A2aConfig {
        inline_agents: agents,
        ..A2aConfig::default()
    }
}

async fn start(cfg: A2aConfig) -> H {
    let ingress = Arc::new(FakeIngress {
        actors: ["research", "echo", "x-resume", "slow"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    });
    let gw_cfg = GatewayConfig {
        backstop_interval: Duration::from_millis(100),
        ..GatewayConfig::with_internal_url("http://gateway.internal:8081")
    };
    let gw = Gateway::new(gw_cfg, Arc::new(MemoryStore::new()), ingress.clone());
    let adapter = A2aAdapter::new(gw.clone(), cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = oneshot::channel::<()>();
    let router = adapter.router();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    H {
        base,
        gw,
        ingress,
        http: reqwest::Client::new(),
        adapter,
        _stop: stop,
    }
}

fn user_msg(parts: Value) -> Value {
    json!({"kind": "message", "role": "user", "messageId": uuid(), "parts": parts})
}

fn uuid() -> String {
    format!(
        "m-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn text(t: &str) -> Value {
    json!([{"kind": "text", "text": t}])
}

impl H {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn rpc_at(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        method: &str,
        params: Value,
    ) -> Value {
        let mut req = self
            .http
            .post(self.url(path))
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{method}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], 7);
        v
    }

    async fn rpc(&self, method: &str, params: Value) -> Value {
        self.rpc_at("/a2a/", &[], method, params).await
    }

    async fn stream_at(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        method: &str,
        params: Value,
    ) -> Sse {
        let mut req = self
            .http
            .post(self.url(path))
            .json(&json!({"jsonrpc": "2.0", "id": "s1", "method": method, "params": params}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Sse {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
            raw: String::new(),
        }
    }

    async fn stream(&self, method: &str, params: Value) -> Sse {
        self.stream_at("/a2a/", &[], method, params).await
    }

    /// The envelope published for the `n`-th create/resume (waits for it).
    async fn published(&self, n: usize) -> (String, Value) {
        for _ in 0..500 {
            if let Some(p) = self.ingress.published.lock().unwrap().get(n) {
                return p.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no envelope #{n} published");
    }

    async fn subscribed(&self, id: &str) {
        for _ in 0..500 {
            if self.gw.subscriber_count(id) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nobody follows {id}");
    }

    async fn event(&self, id: &str, body: Value) {
        self.gw.apply_event(id, body).await.unwrap();
    }

    async fn running(&self, id: &str, actor: &str) {
        self.event(
            id,
            json!({"type": "status", "status": "processing", "data": {
                "prev": [], "curr": actor, "next": [], "status": "processing",
                "message": format!("Processing in {actor}")}}),
        )
        .await;
    }

    async fn succeed(&self, id: &str, result: Value) {
        self.event(
            id,
            json!({"type": "status", "status": "succeeded", "data": {
                "id": id, "status": "succeeded", "timestamp": "2026-01-01T00:00:01Z",
                "progress": 1.0, "result": result}}),
        )
        .await;
    }

    async fn fail(&self, id: &str, error: &str) {
        self.event(
            id,
            json!({"type": "status", "status": "failed", "data": {
                "id": id, "status": "failed", "error": error, "timestamp": "t"}}),
        )
        .await;
    }

    async fn pause(&self, id: &str) {
        self.event(
            id,
            json!({"type": "status", "status": "completed", "data": {
                "prev": ["echo", "x-pause"], "curr": "x-resume", "next": ["finalize"],
                "status": "completed", "message": "Paused: waiting for external input",
                "pause_metadata": {"prompt": "Approve?", "fields": [{"name": "approved"}]}}}),
        )
        .await;
    }

    async fn fly(&self, id: &str, obj: Value) {
        self.event(id, json!({"type": "fly", "data": {"payload": obj}}))
            .await;
    }
}

struct Sse {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    raw: String,
}

impl Sse {
    /// The next `data:` frame's JSON-RPC response, `None` at the end of the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let data: Vec<&str> = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some(serde_json::from_str(&data.join("\n")).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("no SSE data within 10 s")?
                .unwrap();
            let s = String::from_utf8_lossy(&chunk).to_string();
            self.raw.push_str(&s);
            self.buf.push_str(&s);
        }
    }

    /// The next event's `result`.
    async fn result(&mut self) -> Value {
        let v = self.next().await.expect("stream ended");
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], "s1");
        v.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("not a result: {v}"))
    }

    /// Results up to the end of the stream.
    async fn rest(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.next().await {
            out.push(v["result"].clone());
        }
        out
    }
}

fn state(v: &Value) -> &str {
    v["status"]["state"].as_str().unwrap()
}

// ---------- card ----------

#[tokio::test]
async fn agent_card_from_config_and_registry() {
    let h = start(config(agents())).await;
    for path in ["/.well-known/agent.json", "/.well-known/agent-card.json"] {
        let card: Value = h
            .http
            .get(h.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(card["protocolVersion"], "0.3.0");
        assert_eq!(card["url"], format!("{}/a2a/", h.base), "derived from Host");
        assert_eq!(card["preferredTransport"], "JSONRPC");
        assert_eq!(card["capabilities"]["streaming"], true);
        assert_eq!(card["capabilities"]["pushNotifications"], false);
        assert_eq!(
            card["defaultInputModes"],
            json!(["text/plain", "application/json"]),
            "first agent's modes"
        );
        let skills = card["skills"].as_array().unwrap();
        assert_eq!(skills.len(), 2);
        assert_eq!(skills[0]["id"], "web");
        assert_eq!(skills[0]["tags"], json!(["web"]));
        assert_eq!(
            skills[1],
            json!({"id": "echo", "name": "echo", "description": "Echoes", "tags": []})
        );
        assert!(card.get("securitySchemes").is_none());
        assert!(card.get("provider").is_none());
    }

    let h = start(A2aConfig {
        name: Some("Acme agents".into()),
        description: Some("desc".into()),
        version: Some("2.1.0".into()),
        public_url: Some("https://agents.example.com/a2a/".into()),
        provider_org: Some("Acme".into()),
        provider_url: Some("https://acme.example.com".into()),
        api_key: Some("k".into()),
        jwt_jwks_url: Some("http://127.0.0.1:9/jwks".into()),
        inline_agents: vec![json!({"name": "echo", "actor": "echo"})],
        ..A2aConfig::default()
    })
    .await;
    // Public even with auth on.
    let r = h
        .http
        .get(h.url("/.well-known/agent.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let card: Value = r.json().await.unwrap();
    assert_eq!(card["name"], "Acme agents");
    assert_eq!(card["description"], "desc");
    assert_eq!(card["version"], "2.1.0");
    assert_eq!(card["url"], "https://agents.example.com/a2a/");
    assert_eq!(
        card["provider"],
        json!({"organization": "Acme", "url": "https://acme.example.com"})
    );
    assert_eq!(card["capabilities"]["streaming"], false);
    assert_eq!(
        card["securitySchemes"]["apiKey"],
        json!({"type": "apiKey", "in": "header", "name": "X-API-Key"})
    );
    assert_eq!(card["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(card["security"], json!([{"apiKey": []}, {"bearer": []}]));
    // The extended card needs credentials.
    let v = h
        .rpc_at(
            "/a2a/",
            &[("x-api-key", "k")],
            "agent/getAuthenticatedExtendedCard",
            json!({}),
        )
        .await;
    assert_eq!(v["result"]["name"], "Acme agents");
}

// ---------- send ----------

#[tokio::test]
async fn send_blocks_until_completed_with_result_artifact() {
    let h = start(config(agents())).await;
    let params = json!({"message": user_msg(json!([{"kind": "data", "data": {"url": "u", "n": 2}}])),
                        "metadata": {"skill": "web"}});
    let call = {
        let http = h.http.clone();
        let url = h.url("/a2a/");
        tokio::spawn(async move {
            http.post(url)
                .json(
                    &json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": params}),
                )
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let (actor, env) = h.published(0).await;
    assert_eq!(actor, "research");
    let id = env["id"].as_str().unwrap().to_owned();
    // Payload: a copy of the single data part plus the a2a namespace.
    assert_eq!(env["payload"]["url"], "u");
    assert_eq!(env["payload"]["n"], 2);
    assert_eq!(env["payload"]["a2a"]["task"]["id"], id.as_str());
    let ctx = env["payload"]["a2a"]["task"]["context_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env["payload"]["a2a"]["task"]["history"][0]["role"], "user");
    assert_eq!(
        env["payload"]["a2a"]["task"]["history"][0]["data"],
        json!({"url": "u", "n": 2})
    );
    assert_eq!(env["headers"]["x-asya-a2a-task-id"], id.as_str());
    assert_eq!(env["headers"]["x-asya-a2a-context-id"], ctx.as_str());
    assert!(
        env["headers"].get("x-troupe-a2a-owner").is_none(),
        "auth off: no owner"
    );
    assert!(
        env["status"]["deadline_at"].is_string(),
        "agent timeout sets an SLA"
    );
    assert_eq!(
        h.gw.get(&id).await.unwrap().data.context_id.as_deref(),
        Some(ctx.as_str())
    );

    h.running(&id, "research").await;
    h.succeed(&id, json!({"answer": 42})).await;
    let v = call.await.unwrap();
    let task = &v["result"];
    assert_eq!(task["kind"], "task");
    assert_eq!(task["id"], id.as_str());
    assert_eq!(task["contextId"], ctx.as_str());
    assert_eq!(state(task), "completed");
    let arts = task["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 1);
    assert_eq!(arts[0]["artifactId"], "result");
    assert_eq!(arts[0]["name"], "Task result");
    assert_eq!(arts[0]["parts"][0]["kind"], "text");
    let result: Value =
        serde_json::from_str(arts[0]["parts"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(result, json!({"answer": 42}));
    assert_eq!(task["history"][0]["role"], "user");

    // tasks/get sees the same.
    let v = h.rpc("tasks/get", json!({"id": id})).await;
    assert_eq!(state(&v["result"]), "completed");
    assert_eq!(v["result"]["artifacts"][0]["artifactId"], "result");
    assert_eq!(v["result"]["contextId"], ctx.as_str());
}

#[tokio::test]
async fn text_and_data_parts_map_to_query_and_merged_data() {
    let h = start(config(agents())).await;
    let v = h
        .rpc_at(
            "/a2a/echo",
            &[],
            "message/send",
            json!({"message": user_msg(json!([
                {"kind": "text", "text": "first"}, {"kind": "data", "data": {"a": 1, "b": 1}},
                {"kind": "text", "text": "second"}, {"kind": "data", "data": {"b": 2}}])),
                "configuration": {"blocking": false}}),
        )
        .await;
    assert_eq!(
        state(&v["result"]),
        "submitted",
        "non-blocking answers at once"
    );
    let (actor, env) = h.published(0).await;
    assert_eq!(actor, "echo", "/a2a/{{agent}} preselects the agent");
    let p = &env["payload"];
    assert_eq!(p["query"], "first\nsecond");
    assert_eq!((p["a"].clone(), p["b"].clone()), (json!(1), json!(2)));
    assert_eq!(p["a2a"]["task"]["history"][0]["text"], "first\nsecond");
}

#[tokio::test]
async fn agent_selection_rejects_with_the_specs_messages() {
    let h = start(config(agents())).await;
    let v = h
        .rpc("message/send", json!({"message": user_msg(text("hi"))}))
        .await;
    assert_eq!(state(&v["result"]), "rejected");
    assert_eq!(
        v["result"]["status"]["message"]["parts"][0]["text"],
        "skill not specified. Available agents: [research, echo]"
    );
    let v = h
        .rpc(
            "message/send",
            json!({"message": user_msg(text("hi")), "metadata": {"skill": "nope"}}),
        )
        .await;
    assert_eq!(
        v["result"]["status"]["message"]["parts"][0]["text"],
        "skill \"nope\" not found"
    );
    assert!(h.ingress.published.lock().unwrap().is_empty());
    // An agent name is accepted as the skill hint; so is message metadata.
    let mut m = user_msg(text("hi"));
    m["metadata"] = json!({"skill": "echo"});
    let v = h
        .rpc(
            "message/send",
            json!({"message": m, "configuration": {"blocking": false}}),
        )
        .await;
    assert_eq!(state(&v["result"]), "submitted");
    assert_eq!(h.published(0).await.0, "echo");

    // A single agent needs no hint.
    let h = start(config(vec![json!({"name": "only", "actor": "echo"})])).await;
    let v = h
        .rpc(
            "message/send",
            json!({"message": user_msg(text("hi")), "configuration": {"blocking": false}}),
        )
        .await;
    assert_eq!(state(&v["result"]), "submitted");
    assert_eq!(h.published(0).await.0, "echo");
}

#[tokio::test]
async fn failed_task_carries_the_error() {
    let h = start(config(agents())).await;
    let mut s = h
        .stream(
            "message/stream",
            json!({"message": user_msg(text("x")), "metadata": {"skill": "echo"}}),
        )
        .await;
    let first = s.result().await;
    assert_eq!(first["kind"], "task");
    assert_eq!(state(&first), "submitted");
    let id = first["id"].as_str().unwrap().to_owned();
    h.subscribed(&id).await;
    h.fail(&id, "boom").await;
    let rest = s.rest().await;
    let last = rest.last().unwrap();
    assert_eq!(last["kind"], "status-update");
    assert_eq!(last["final"], true);
    assert_eq!(state(last), "failed");
    assert_eq!(last["status"]["message"]["role"], "agent");
    assert_eq!(last["status"]["message"]["parts"][0]["text"], "boom");
    let v = h.rpc("tasks/get", json!({"id": id})).await;
    assert_eq!(state(&v["result"]), "failed");
    assert_eq!(v["result"]["status"]["message"]["parts"][0]["text"], "boom");
}

// ---------- stream ----------

#[tokio::test]
async fn stream_relays_status_and_fly_events() {
    let h = start(config(agents())).await;
    let mut s = h
        .stream(
            "message/stream",
            json!({"message": user_msg(text("go")), "metadata": {"skill": "web"}}),
        )
        .await;
    let first = s.result().await;
    assert_eq!(
        (first["kind"].as_str(), state(&first)),
        (Some("task"), "submitted")
    );
    let id = first["id"].as_str().unwrap().to_owned();
    let ctx = first["contextId"].as_str().unwrap().to_owned();
    // The task is followed before the first event is answered: nothing to wait for.
    h.running(&id, "research").await;
    let ev = s.result().await;
    assert_eq!(ev["kind"], "status-update");
    assert_eq!(state(&ev), "working");
    assert_eq!(ev["final"], false);
    assert_eq!(ev["taskId"], id.as_str());
    assert_eq!(ev["contextId"], ctx.as_str());
    // A progress refresh does not repeat `working`.
    h.running(&id, "research").await;

    h.fly(&id, json!({"partial": true, "text": "Hel"})).await;
    h.fly(&id, json!({"partial": true, "text": "lo"})).await;
    let c1 = s.result().await;
    let c2 = s.result().await;
    for (c, append) in [(&c1, false), (&c2, true)] {
        assert_eq!(c["kind"], "artifact-update");
        assert_eq!(c["artifact"]["artifactId"], "fly-stream");
        assert_eq!(c["append"], append);
        assert_eq!(c["lastChunk"], false);
    }
    let t: Value =
        serde_json::from_str(c1["artifact"]["parts"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(t, json!({"partial": true, "text": "Hel"}));

    h.fly(
        &id,
        json!({"artifact_update": {"artifact_id": "report", "name": "Report",
                                        "data": {"rows": 3}, "last_chunk": true}}),
    )
    .await;
    let a = s.result().await;
    assert_eq!(a["kind"], "artifact-update");
    assert_eq!(a["artifact"]["artifactId"], "report");
    assert_eq!(a["artifact"]["name"], "Report");
    assert_eq!(
        a["artifact"]["parts"],
        json!([{"kind": "data", "data": {"rows": 3}}])
    );
    assert_eq!(a["lastChunk"], true);

    h.fly(&id, json!({"message": "searching the web"})).await;
    let m = s.result().await;
    assert_eq!(m["kind"], "status-update");
    assert_eq!(state(&m), "working");
    assert_eq!(
        m["status"]["message"]["parts"][0]["text"],
        "searching the web"
    );
    h.fly(
        &id,
        json!({"status_update": {"message": {"text": "step 2"}}}),
    )
    .await;
    let m = s.result().await;
    assert_eq!(m["status"]["message"]["parts"][0]["text"], "step 2");

    h.succeed(&id, json!({"text": "Hello"})).await;
    let rest = s.rest().await;
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert_eq!(rest[0]["artifact"]["artifactId"], "fly-stream");
    assert_eq!(
        (rest[0]["append"].clone(), rest[0]["lastChunk"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(rest[0]["artifact"]["parts"], json!([]));
    assert_eq!(rest[1]["artifact"]["artifactId"], "result");
    assert_eq!(
        (rest[1]["append"].clone(), rest[1]["lastChunk"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(state(&rest[2]), "completed");
    assert_eq!(rest[2]["final"], true);
    assert!(s.raw.contains("data: {"), "SSE data frames");
}

#[tokio::test]
async fn stream_sends_keepalives() {
    let h = start(config(agents())).await;
    let _ = h.adapter.clone().with_keepalive(Duration::from_millis(50));
    let mut s = h
        .stream(
            "message/stream",
            json!({"message": user_msg(text("go")), "metadata": {"skill": "echo"}}),
        )
        .await;
    let first = s.result().await;
    let id = first["id"].as_str().unwrap().to_owned();
    h.subscribed(&id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.succeed(&id, json!(1)).await;
    let _ = s.rest().await;
    assert!(s.raw.contains(": keep-alive\n\n"), "{}", s.raw);
}

#[tokio::test]
async fn errors_of_streaming_methods_arrive_as_sse() {
    let h = start(config(agents())).await;
    let mut s = h
        .stream("tasks/resubscribe", json!({"id": "missing"}))
        .await;
    let v = s.next().await.unwrap();
    assert_eq!(v["error"]["code"], -32001);
    assert!(s.next().await.is_none());
}

// ---------- pause, resume ----------

#[tokio::test]
async fn paused_is_input_required_and_a_reply_resumes() {
    let h = start(config(agents())).await;
    let call = |params: Value| {
        let http = h.http.clone();
        let url = h.url("/a2a/");
        tokio::spawn(async move {
            http.post(url)
                .json(
                    &json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": params}),
                )
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let first = call(
        json!({"message": user_msg(json!([{"kind": "data", "data": {"ticket": 1}}])),
                            "metadata": {"skill": "echo"}}),
    );
    let (_, env) = h.published(0).await;
    let id = env["id"].as_str().unwrap().to_owned();
    let ctx = env["headers"]["x-asya-a2a-context-id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.running(&id, "echo").await;
    h.pause(&id).await;
    let v = first.await.unwrap();
    let task = &v["result"];
    assert_eq!(state(task), "input-required");
    let msg = &task["status"]["message"];
    assert_eq!(
        msg["parts"][0]["text"],
        "Paused: waiting for external input"
    );
    assert_eq!(
        msg["parts"][1]["data"]["pause_metadata"]["prompt"],
        "Approve?"
    );
    let v = h.rpc("tasks/get", json!({"id": id})).await;
    assert_eq!(state(&v["result"]), "input-required");

    // The reply names the task: resume with the mapped payload and the two headers.
    let mut reply = user_msg(json!([{"kind": "data", "data": {"approved": true}}]));
    reply["taskId"] = json!(id);
    reply["contextId"] = json!(ctx);
    let second = call(json!({"message": reply}));
    let (actor, env) = h.published(1).await;
    assert_eq!(actor, "x-resume");
    assert_eq!(env["id"], id.as_str());
    assert_eq!(env["headers"]["x-asya-resume-task"], id.as_str());
    assert_eq!(env["headers"]["x-asya-a2a-task-id"], id.as_str());
    assert_eq!(env["headers"]["x-asya-a2a-context-id"], ctx.as_str());
    assert_eq!(env["payload"]["approved"], true);
    assert_eq!(env["payload"]["a2a"]["task"]["id"], id.as_str());
    h.subscribed(&id).await;
    h.running(&id, "finalize").await;
    h.succeed(&id, json!({"status": "sent"})).await;
    let v = second.await.unwrap();
    assert_eq!(state(&v["result"]), "completed");
    assert_eq!(v["result"]["id"], id.as_str());
    let art = v["result"]["artifacts"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(art["artifactId"], "result");

    // A finished task cannot be resumed.
    let mut again = user_msg(text("more"));
    again["taskId"] = json!(id);
    let v = h.rpc("message/send", json!({"message": again})).await;
    assert_eq!(v["error"]["code"], -32602);
}

#[tokio::test]
async fn resume_over_a_stream_emits_working_then_relays() {
    let h = start(config(agents())).await;
    let v = h
        .rpc(
            "message/send",
            json!({"message": user_msg(text("q")), "metadata": {"skill": "echo"},
                                    "configuration": {"blocking": false}}),
        )
        .await;
    let id = v["result"]["id"].as_str().unwrap().to_owned();
    h.running(&id, "echo").await;
    h.pause(&id).await;
    let mut reply = user_msg(text("yes"));
    reply["taskId"] = json!(id);
    let mut s = h.stream("message/stream", json!({"message": reply})).await;
    let first = s.result().await;
    assert_eq!(first["kind"], "task");
    assert_eq!(state(&first), "working");
    let w = s.result().await;
    assert_eq!(
        (w["kind"].as_str(), state(&w)),
        (Some("status-update"), "working")
    );
    let (_, env) = h.published(1).await;
    assert_eq!(env["payload"]["query"], "yes");
    h.subscribed(&id).await;
    h.pause(&id).await; // several pauses per task are allowed
    let rest = s.rest().await;
    assert_eq!(state(rest.last().unwrap()), "input-required");
    assert_eq!(rest.last().unwrap()["final"], true);
}

#[tokio::test]
async fn externally_paused_task_cannot_be_resumed() {
    let h = start(config(agents())).await;
    let v = h
        .rpc(
            "message/send",
            json!({"message": user_msg(text("q")), "metadata": {"skill": "echo"},
                                    "configuration": {"blocking": false}}),
        )
        .await;
    let id = v["result"]["id"].as_str().unwrap().to_owned();
    let r = h
        .http
        .post(h.url(&format!("/a2a/tasks/{id}:pause")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(state(&t), "input-required");
    let mut reply = user_msg(text("x"));
    reply["taskId"] = json!(id);
    let v = h.rpc("message/send", json!({"message": reply})).await;
    assert_eq!(v["error"]["code"], -32602);
    assert!(v["error"]["message"].as_str().unwrap().contains("canceled"));
    // It can be canceled.
    let r = h
        .http
        .post(h.url(&format!("/a2a/tasks/{id}:cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(state(&t), "canceled");
    let r = h
        .http
        .post(h.url(&format!("/a2a/tasks/{id}:cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = h
        .http
        .post(h.url(&format!("/a2a/tasks/{id}:pause")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = h
        .http
        .post(h.url("/a2a/tasks/nope:cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .post(h.url(&format!("/a2a/tasks/{id}:explode")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

// ---------- get, list, cancel, resubscribe ----------

#[tokio::test]
async fn cancel_get_list_and_resubscribe() {
    let h = start(config(agents())).await;
    let mut ids = Vec::new();
    for ctx in ["c1", "c1", "c2"] {
        let mut m = user_msg(text("q"));
        m["contextId"] = json!(ctx);
        let v = h
            .rpc(
                "message/send",
                json!({"message": m, "metadata": {"skill": "echo"},
                                        "configuration": {"blocking": false}}),
            )
            .await;
        assert_eq!(v["result"]["contextId"], ctx);
        ids.push(v["result"]["id"].as_str().unwrap().to_owned());
    }
    // A task created through the mesh API directly is not an A2A task.
    h.gw.create_task(troupe_gateway::NewTask {
        actor: "echo".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let v = h.rpc("tasks/list", json!({})).await;
    assert_eq!(v["result"]["totalSize"], 3);
    assert_eq!(
        v["result"]["tasks"][0]["id"],
        ids[2].as_str(),
        "newest first"
    );
    let v = h.rpc("tasks/list", json!({"contextId": "c1"})).await;
    assert_eq!(v["result"]["totalSize"], 2);
    let v = h.rpc("tasks/list", json!({"pageSize": 2})).await;
    assert_eq!(v["result"]["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(v["result"]["nextPageToken"], "2");
    let v = h
        .rpc("tasks/list", json!({"pageSize": 2, "pageToken": "2"}))
        .await;
    assert_eq!(v["result"]["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(v["result"]["nextPageToken"], "");

    // resubscribe to a running task, then cancel it from elsewhere
    h.running(&ids[0], "echo").await;
    let mut s = h.stream("tasks/resubscribe", json!({"id": ids[0]})).await;
    let first = s.result().await;
    assert_eq!(
        (first["kind"].as_str(), state(&first)),
        (Some("task"), "working")
    );
    h.subscribed(&ids[0]).await;
    h.fly(&ids[0], json!({"tok": 1})).await;
    assert_eq!(s.result().await["artifact"]["artifactId"], "fly-stream");

    let v = h.rpc("tasks/cancel", json!({"id": ids[0]})).await;
    assert_eq!(state(&v["result"]), "canceled");
    let rest = s.rest().await;
    assert_eq!(rest[0]["lastChunk"], true, "fly-stream closed");
    assert_eq!(state(rest.last().unwrap()), "canceled");
    assert_eq!(rest.last().unwrap()["final"], true);

    let v = h.rpc("tasks/cancel", json!({"id": ids[0]})).await;
    assert_eq!(v["error"]["code"], -32002);
    let v = h.rpc("tasks/cancel", json!({"id": "missing"})).await;
    assert_eq!(v["error"]["code"], -32001);
    let v = h.rpc("tasks/get", json!({"id": "missing"})).await;
    assert_eq!(v["error"]["code"], -32001);
    let v = h.rpc("tasks/list", json!({"status": "canceled"})).await;
    assert_eq!(v["result"]["totalSize"], 1);

    // resubscribe to a finished task: its end, then the stream closes
    h.succeed(&ids[1], json!({"ok": true})).await;
    let mut s = h.stream("tasks/resubscribe", json!({"id": ids[1]})).await;
    let all = [vec![s.result().await], s.rest().await].concat();
    assert_eq!(state(&all[0]), "completed");
    assert_eq!(all[1]["artifact"]["artifactId"], "result");
    assert_eq!(state(all.last().unwrap()), "completed");
}

#[tokio::test]
async fn deadline_without_status_ends_unknown() {
    let h = start(config(vec![
        json!({"name": "slow", "actor": "slow", "timeout": 1}),
    ]))
    .await;
    let mut s = h
        .stream("message/stream", json!({"message": user_msg(text("q"))}))
        .await;
    let first = s.result().await;
    assert_eq!(state(&first), "submitted");
    let rest = s.rest().await;
    let last = rest.last().unwrap();
    assert_eq!(state(last), "unknown");
    assert_eq!(last["final"], true);
}

#[tokio::test]
async fn protocol_errors() {
    let h = start(config(agents())).await;
    let r: Value = h
        .http
        .post(h.url("/a2a/"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32700);
    let r: Value = h
        .http
        .post(h.url("/a2a/"))
        .json(&json!([{"jsonrpc": "2.0"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32600);
    let v = h.rpc("nope/nope", json!({})).await;
    assert_eq!(v["error"]["code"], -32601);
    for m in [
        "tasks/pushNotificationConfig/set",
        "tasks/pushNotificationConfig/get",
        "tasks/pushNotificationConfig/list",
        "tasks/pushNotificationConfig/delete",
    ] {
        let v = h.rpc(m, json!({"id": "x"})).await;
        assert_eq!(v["error"]["code"], -32003, "{m}");
        assert_eq!(v["error"]["message"], "push notifications not supported");
    }
    let v = h
        .rpc(
            "message/send",
            json!({"message": user_msg(json!([{"kind": "file", "file": {"uri": "x"}}]))}),
        )
        .await;
    assert_eq!(v["error"]["code"], -32005);
    let v = h.rpc("message/send", json!({})).await;
    assert_eq!(v["error"]["code"], -32602);
    let v = h.rpc("tasks/get", json!({})).await;
    assert_eq!(v["error"]["code"], -32602);
}

// ---------- auth ----------

const KID: &str = "test-key-1";
const ISS: &str = "https://issuer.test";
const AUD: &str = "troupe-a2a";

fn now_s() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn jwt(sub: &str, iss: &str, aud: &str, exp: i64) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("fixtures/test_rsa_key.pem"))
        .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.into());
    let claims =
        json!({"sub": sub, "iss": iss, "aud": aud, "exp": exp, "iat": now_s(), "nbf": now_s() - 5});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A JWKS endpoint serving the fixture key; returns its URL.
async fn jwks_server() -> String {
    let jwks: Value = serde_json::from_str(include_str!("fixtures/test_jwks.json")).unwrap();
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

async fn auth_harness() -> H {
    start(A2aConfig {
        api_key: Some("s3cret".into()),
        jwt_jwks_url: Some(jwks_server().await),
        jwt_issuer: Some(ISS.into()),
        jwt_audience: Some(AUD.into()),
        ..config(agents())
    })
    .await
}

#[tokio::test]
async fn api_key_and_jwt_are_checked() {
    let h = auth_harness().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/list", "params": {}});
    let status = |hdrs: Vec<(&'static str, String)>| {
        let mut req = h.http.post(h.url("/a2a/")).json(&body);
        for (k, v) in hdrs {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(vec![]).await, 401);
    assert_eq!(status(vec![("x-api-key", "wrong".into())]).await, 401);
    assert_eq!(status(vec![("x-api-key", "s3cret".into())]).await, 200);
    let good = jwt("alice", ISS, AUD, now_s() + 600);
    assert_eq!(
        status(vec![("authorization", format!("Bearer {good}"))]).await,
        200
    );
    for bad in [
        jwt("alice", "https://evil.test", AUD, now_s() + 600),
        jwt("alice", ISS, "someone-else", now_s() + 600),
        jwt("alice", ISS, AUD, now_s() - 3600),
        "not.a.jwt".to_owned(),
    ] {
        assert_eq!(
            status(vec![("authorization", format!("Bearer {bad}"))]).await,
            401
        );
    }
    // A token whose claims were swapped after signing fails.
    let other = jwt("mallory", ISS, AUD, now_s() + 600);
    let g: Vec<&str> = good.split('.').collect();
    let o: Vec<&str> = other.split('.').collect();
    let forged = format!("{}.{}.{}", g[0], o[1], g[2]);
    assert_eq!(
        status(vec![("authorization", format!("Bearer {forged}"))]).await,
        401
    );
    // REST aliases are authenticated as well.
    let r = h
        .http
        .post(h.url("/a2a/tasks/x:cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The card is public.
    let r = h
        .http
        .get(h.url("/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn callers_only_see_their_own_tasks() {
    let h = auth_harness().await;
    let alice = format!("Bearer {}", jwt("alice", ISS, AUD, now_s() + 600));
    let bob = format!("Bearer {}", jwt("bob", ISS, AUD, now_s() + 600));
    let as_alice = [("authorization", alice.as_str())];
    let as_bob = [("authorization", bob.as_str())];
    let as_key = [("x-api-key", "s3cret")];

    let v = h
        .rpc_at(
            "/a2a/",
            &as_alice,
            "message/send",
            json!({"message": user_msg(text("mine")), "metadata": {"skill": "echo"},
                   "configuration": {"blocking": false}}),
        )
        .await;
    let id = v["result"]["id"].as_str().unwrap().to_owned();
    let (_, env) = h.published(0).await;
    assert_eq!(env["headers"]["x-troupe-a2a-owner"], "jwt:alice");
    let v = h
        .rpc_at(
            "/a2a/",
            &as_key,
            "message/send",
            json!({"message": user_msg(text("keyed")), "metadata": {"skill": "echo"},
                   "configuration": {"blocking": false}}),
        )
        .await;
    let key_task = v["result"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.published(1).await.1["headers"]["x-troupe-a2a-owner"],
        "api-key"
    );

    let v = h
        .rpc_at("/a2a/", &as_alice, "tasks/get", json!({"id": id}))
        .await;
    assert_eq!(v["result"]["id"], id.as_str());
    for who in [&as_bob[..], &as_key[..]] {
        let v = h.rpc_at("/a2a/", who, "tasks/get", json!({"id": id})).await;
        assert_eq!(v["error"]["code"], -32001);
        let v = h
            .rpc_at("/a2a/", who, "tasks/cancel", json!({"id": id}))
            .await;
        assert_eq!(v["error"]["code"], -32001);
        let mut s = h
            .stream_at("/a2a/", who, "tasks/resubscribe", json!({"id": id}))
            .await;
        assert_eq!(s.next().await.unwrap()["error"]["code"], -32001);
    }
    let r = h
        .http
        .post(h.url(&format!("/a2a/tasks/{id}:cancel")))
        .header("authorization", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let ids = |v: Value| -> Vec<String> {
        v["result"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(h.rpc_at("/a2a/", &as_alice, "tasks/list", json!({})).await),
        std::slice::from_ref(&id)
    );
    assert_eq!(
        ids(h.rpc_at("/a2a/", &as_key, "tasks/list", json!({})).await),
        [key_task]
    );
    assert!(ids(h.rpc_at("/a2a/", &as_bob, "tasks/list", json!({})).await).is_empty());

    // Bob cannot resume Alice's paused task; Alice can.
    h.running(&id, "echo").await;
    h.pause(&id).await;
    let mut reply = user_msg(text("ok"));
    reply["taskId"] = json!(id);
    let v = h
        .rpc_at(
            "/a2a/",
            &as_bob,
            "message/send",
            json!({"message": reply.clone(), "configuration": {"blocking": false}}),
        )
        .await;
    assert_eq!(v["error"]["code"], -32001);
    let v = h
        .rpc_at(
            "/a2a/",
            &as_alice,
            "message/send",
            json!({"message": reply, "configuration": {"blocking": false}}),
        )
        .await;
    assert_eq!(state(&v["result"]), "working");
    let v = h
        .rpc_at("/a2a/", &as_alice, "tasks/cancel", json!({"id": id}))
        .await;
    assert_eq!(state(&v["result"]), "canceled");
}

// ---------- registry ----------

#[tokio::test]
async fn registry_reload_swaps_and_keeps_the_old_set_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.yaml");
    std::fs::write(&file, "agents:\n  - {name: one, actor: echo}\n").unwrap();
    std::fs::write(
        dir.path().join("tools.yaml"),
        "tools: [{name: t, actor: a}]\n",
    )
    .unwrap();
    let h = start(A2aConfig {
        config_dir: Some(dir.path().to_path_buf()),
        poll_interval: Duration::from_millis(50),
        inline_agents: vec![json!({"name": "inline", "actor": "research"})],
        ..A2aConfig::default()
    })
    .await;
    assert_eq!(h.adapter.agent_names(), ["one", "inline"]);
    let (stop, stopped) = oneshot::channel::<()>();
    let reload = h.adapter.spawn_reload(async move {
        let _ = stopped.await;
    });

    let wait_for = |want: Vec<&'static str>| {
        let adapter = h.adapter.clone();
        async move {
            for _ in 0..200 {
                if adapter.agent_names() == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("agents stayed {:?}, wanted {want:?}", adapter.agent_names());
        }
    };
    std::fs::write(
        &file,
        "agents:\n  - {name: one, actor: echo}\n  - {name: two, actor: echo, skills: [{id: s2}]}\n",
    )
    .unwrap();
    wait_for(vec!["one", "two", "inline"]).await;
    let card: Value = h
        .http
        .get(h.url("/.well-known/agent.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["one", "s2", "inline"]);

    // A broken file keeps the previous agents.
    std::fs::write(&file, "agents:\n  - {name: broken}\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.adapter.agent_names(), ["one", "two", "inline"]);
    assert!(!h.adapter.reload());
    std::fs::write(&file, "agents:\n  - {name: three, actor: echo}\n").unwrap();
    wait_for(vec!["three", "inline"]).await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), reload)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bad_initial_registry_fails_new() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yml"), "agents:\n  - {name: x}\n").unwrap();
    let gw = Gateway::new(
        GatewayConfig::default(),
        Arc::new(MemoryStore::new()),
        Arc::new(FakeIngress::default()),
    );
    let err = A2aAdapter::new(
        gw.clone(),
        A2aConfig {
            config_dir: Some(dir.path().to_path_buf()),
            ..A2aConfig::default()
        },
    )
    .err()
    .unwrap();
    let A2aError::Registry(msg) = &err else {
        panic!("{err}")
    };
    assert!(msg.contains("bad.yml") && msg.contains("actor"), "{msg}");
    let err = A2aAdapter::new(gw, config(vec![json!({"actor": "a"})]))
        .err()
        .unwrap();
    assert!(err.to_string().contains("inline agents[0]"), "{err}");
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let h = start(config(agents())).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let reload = h.adapter.spawn_reload(async move {
        let _ = stopped.await;
    });
    let mut s = h
        .stream(
            "message/stream",
            json!({"message": user_msg(text("q")), "metadata": {"skill": "echo"}}),
        )
        .await;
    let first = s.result().await;
    h.subscribed(first["id"].as_str().unwrap()).await;
    stop.send(()).unwrap();
    reload.await.unwrap();
    assert!(s.next().await.is_none(), "stream ended at shutdown");
}

/// Issue 9 item 2: without a key, a web page must not reach the agents (text/plain
/// "simple" requests and foreign origins), and a loopback listener checks `Host`.
#[tokio::test]
async fn cross_site_requests_are_refused_without_a_key() {
    let h = start(config(agents())).await;
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
        "params": {"message": user_msg(json!([{"kind": "text", "text": "hi"}]))}});
    let r = h
        .http
        .post(h.url("/a2a/"))
        .header("content-type", "text/plain")
        .body(send.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = h
        .http
        .post(h.url("/a2a/"))
        .header("origin", "http://evil.example")
        .json(&send)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = h
        .http
        .get(h.url("/.well-known/agent-card.json"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        h.ingress.published.lock().unwrap().is_empty(),
        "no task was created"
    );
}

#[test]
fn debug_output_never_shows_the_api_key() {
    let config = A2aConfig {
        api_key: Some("sekret-a2a-key".into()),
        ..Default::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("sekret-a2a-key"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
