//! Two gateway replicas on one PostgreSQL database, each on its own loopback listener:
//! SSE streams on one replica follow events posted to the other (gateway.md §1
//! "Replicas"), and concurrent posts to both never move a task backwards (§2.3).
//!
//! Needs `TROUPE_TEST_POSTGRES_URL` (see `scripts/services/postgres.sh`); skipped
//! without it, or failing when `TROUPE_REQUIRE_POSTGRES=1`. Each test creates a
//! database of its own, so NOTIFY traffic and listen connections of parallel tests
//! never meet.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use troupe_gateway::{attach_postgres_fanout, Gateway, GatewayConfig, Ingress, PostgresStore};

// ---------- fixtures ----------

/// Accepts every publish to a known actor and records it.
#[derive(Default)]
struct RecordingIngress {
    published: Mutex<Vec<(String, Value)>>,
}

impl RecordingIngress {
    fn published(&self) -> Vec<(String, Value)> {
        self.published.lock().unwrap().clone()
    }
}

#[async_trait]
impl Ingress for RecordingIngress {
    fn has_actor(&self, actor: &str) -> bool {
        actor == "echo"
    }
    async fn publish(&self, actor: &str, body: bytes::Bytes) -> Result<(), String> {
        let v: Value = serde_json::from_slice(&body).unwrap();
        self.published.lock().unwrap().push((actor.to_owned(), v));
        Ok(())
    }
}

/// The test server's URL; `None` (after one printed note) when the tests should skip.
fn base_url() -> Option<String> {
    match std::env::var("TROUPE_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_owned()),
        _ => {
            assert!(
                std::env::var("TROUPE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "TROUPE_REQUIRE_POSTGRES=1 but TROUPE_TEST_POSTGRES_URL is not set: start a \
                 server with `scripts/services/postgres.sh start DIR` and export the URL it prints"
            );
            static NOTE: Once = Once::new();
            NOTE.call_once(|| {
                // Straight to stderr: the harness captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: PostgreSQL replica tests skipped (TROUPE_TEST_POSTGRES_URL is not set)"
                );
            });
            None
        }
    }
}

/// `url` naming database `db` instead of its own.
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let authority = head.find("://").map_or(0, |i| i + 3);
    let head = match head[authority..].find('/') {
        Some(i) => &head[..authority + i],
        None => head,
    };
    format!("{head}/{db}{query}")
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5/troupe", "x"),
        "postgres://postgres@127.0.0.1:5/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h:5/troupe?sslmode=disable", "x"),
        "postgres://u:p@h:5/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e:?}"));
    tokio::spawn(conn);
    client
}

/// A database of its own for one test.
struct Db {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl Db {
    async fn create() -> Option<Db> {
        let base = base_url()?;
        let admin = connect(&base).await;
        let name = format!("troupe_replicas_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Some(Db {
            url: with_database(&base, &name),
            admin,
            name,
        })
    }

    /// Only reached when the test passed; a failed test leaves its database to look at.
    async fn drop(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// One gateway replica serving its router on 127.0.0.1.
struct Replica {
    gw: Gateway,
    base: String,
    ingress: Arc<RecordingIngress>,
    http: reqwest::Client,
    fanout: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Replica {
    async fn start(url: &str) -> Replica {
        let store = PostgresStore::connect(url).await.unwrap();
        let ingress = Arc::new(RecordingIngress::default());
        let gw = Gateway::new(
            GatewayConfig::with_internal_url("http://gateway.internal:8081"),
            Arc::new(store),
            ingress.clone(),
        );
        let fanout = attach_postgres_fanout(&gw, url).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = gw.router();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Replica {
            gw,
            base,
            ingress,
            http: reqwest::Client::new(),
            fanout,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn create(&self, body: Value) -> String {
        let r = self
            .http
            .post(self.url("/api/v1/mesh/?actor=echo"))
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

    async fn event(&self, id: &str, body: &Value) -> u16 {
        self.http
            .post(self.url(&format!("/api/v1/mesh/{id}/events")))
            .header("X-Asya-Envelope-ID", id)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn get(&self, id: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/mesh/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
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
        Sse {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    fn stop(self) {
        self.gw.close_streams();
        self.server.abort();
        self.fanout.abort();
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
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
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

    async fn expect_status(&mut self, status: &str) -> Value {
        let (name, data) = self.next_event().await.expect("stream ended early");
        assert_eq!(name, "status", "{data}");
        assert_eq!(data["status"], status, "{data}");
        data
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

fn succeeded_event(result: Value) -> Value {
    json!({"type": "status", "status": "succeeded",
           "data": {"prev": ["a", "b", "c"], "curr": "", "next": [], "status": "succeeded",
                    "result": result}})
}

fn progress_of(data: &Value) -> f64 {
    data["progress"].as_f64().unwrap()
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_on_one_replica_follows_events_posted_to_the_other() {
    let Some(db) = Db::create().await else {
        return;
    };
    let a = Replica::start(&db.url).await;
    let b = Replica::start(&db.url).await;

    assert!(
        attach_postgres_fanout(&a.gw, &db.url).await.is_err(),
        "a second fan-out on one gateway must be refused"
    );

    let id = a.create(json!({"payload": {"q": "hi"}})).await;
    assert_eq!(a.ingress.published().len(), 1);
    assert!(b.ingress.published().is_empty());

    let mut on_b = b.sse(&id).await;
    let catchup = on_b.expect_status("pending").await;
    assert_eq!(catchup["payload"], json!({"q": "hi"}));
    // A stream on the posting replica too: it must see each event once, not again when
    // its own NOTIFY comes back.
    let mut on_a = a.sse(&id).await;
    on_a.expect_status("pending").await;

    let posts = [
        progress_event("received", &[], "a", &["b", "c"]),
        progress_event("processing", &[], "a", &["b", "c"]),
        succeeded_event(json!({"answer": 42})),
    ];
    for body in &posts {
        assert_eq!(a.event(&id, body).await, 204);
        // Room for an echo of A's own event to (wrongly) arrive before the next one.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    for stream in [&mut on_b, &mut on_a] {
        let first = stream.expect_status("running").await;
        assert_eq!(first["message"], "received in a");
        assert!((progress_of(&first) - 3.33).abs() < 0.01, "{first}");
        let second = stream.expect_status("running").await;
        assert!((progress_of(&second) - 16.67).abs() < 0.01, "{second}");
        let last = stream.expect_status("succeeded").await;
        assert_eq!(last["result"], json!({"answer": 42}));
        assert_eq!(progress_of(&last), 100.0);
        stream.assert_ended().await;
    }
    assert_eq!(b.get(&id).await["status"], "succeeded");

    a.stop();
    b.stop();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_notify_limit_cross_replicas_intact() {
    let Some(db) = Db::create().await else {
        return;
    };
    let a = Replica::start(&db.url).await;
    let b = Replica::start(&db.url).await;

    // Status events carry the task's data, payload included: 20 kB makes every status
    // event too large for a NOTIFY payload as well.
    let payload = json!({"doc": "p".repeat(20_000)});
    let id = a.create(json!({ "payload": payload })).await;
    let mut on_b = b.sse(&id).await;
    on_b.expect_status("pending").await;

    let small_fly = json!({"payload": {"token": "Hel"}});
    // About 900 kB once JSON-encoded, with multi-byte characters and escapes, under the
    // 1 MiB FLY limit.
    let big_fly = json!({"payload": {"text": "é\"\n".repeat(150_000), "n": 1}});
    assert!(big_fly.to_string().len() > 800_000);
    assert!(big_fly.to_string().len() < troupe_gateway::MAX_FLY_BYTES);

    let fly = |data: &Value| json!({"type": "fly", "data": data});
    assert_eq!(a.event(&id, &fly(&small_fly)).await, 204);
    assert_eq!(a.event(&id, &fly(&big_fly)).await, 204);
    assert_eq!(
        a.event(&id, &progress_event("processing", &[], "a", &[]))
            .await,
        204
    );
    assert_eq!(a.event(&id, &fly(&small_fly)).await, 204);
    assert_eq!(a.event(&id, &succeeded_event(json!("ok"))).await, 204);

    // Inline and side-table events keep their order.
    let (name, data) = on_b.next_event().await.unwrap();
    assert_eq!((name.as_str(), &data), ("fly", &small_fly));
    let (name, data) = on_b.next_event().await.unwrap();
    assert_eq!(name, "fly");
    assert!(data == big_fly, "the large FLY event arrived altered");
    let running = on_b.expect_status("running").await;
    assert_eq!(running["payload"], payload);
    let (name, data) = on_b.next_event().await.unwrap();
    assert_eq!((name.as_str(), &data), ("fly", &small_fly));
    let done = on_b.expect_status("succeeded").await;
    assert_eq!(done["payload"], payload);
    on_b.assert_ended().await;

    let check = connect(&db.url).await;
    let bodies: i64 = check
        .query_one("SELECT COUNT(*) FROM troupe_gateway_event_bodies", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        bodies >= 3,
        "large events should go through the bodies table"
    );

    drop(check);
    a.stop();
    b.stop();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_posts_to_both_replicas_never_move_a_task_backwards() {
    let Some(db) = Db::create().await else {
        return;
    };
    let a = Arc::new(Replica::start(&db.url).await);
    let b = Arc::new(Replica::start(&db.url).await);

    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(a.create(json!({})).await);
    }
    let mut watch = a.sse(&ids[0]).await;
    watch.expect_status("pending").await;

    let mut posts = Vec::new();
    for id in &ids {
        let plan = [
            (a.clone(), progress_event("processing", &["a"], "b", &["c"])),
            (b.clone(), succeeded_event(json!({"id": id}))),
            (b.clone(), progress_event("received", &[], "a", &["b", "c"])),
            (
                a.clone(),
                progress_event("completed", &["a", "b"], "c", &[]),
            ),
        ];
        for (replica, body) in plan {
            let id = id.clone();
            posts.push(tokio::spawn(async move { replica.event(&id, &body).await }));
        }
    }
    for p in futures::future::join_all(posts).await {
        assert_eq!(p.unwrap(), 204);
    }

    for id in &ids {
        for replica in [&a, &b] {
            let m = replica.get(id).await;
            assert_eq!(m["status"], "succeeded", "{m}");
            assert_eq!(m["data"]["result"], json!({"id": id}), "{m}");
            assert_eq!(progress_of(&m["data"]), 100.0, "{m}");
        }
    }
    // The watcher saw running updates at most, then the terminal event, then the end.
    loop {
        let (name, data) = watch.next_event().await.expect("no terminal event");
        assert_eq!(name, "status");
        match data["status"].as_str().unwrap() {
            "running" => continue,
            "succeeded" => break,
            other => panic!("unexpected status {other}: {data}"),
        }
    }
    watch.assert_ended().await;

    for r in [a, b] {
        Arc::into_inner(r).unwrap().stop();
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_listener_reconnects_after_losing_its_connection() {
    let Some(db) = Db::create().await else {
        return;
    };
    let a = Replica::start(&db.url).await;
    let b = Replica::start(&db.url).await;
    let check = connect(&db.url).await;

    let listen_pids = || async {
        check
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'troupe-gateway-listen'
                   AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<HashSet<i32>>()
    };
    let old = listen_pids().await;
    assert_eq!(old.len(), 2, "one listen connection per replica");
    check
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'troupe-gateway-listen'",
            &[],
        )
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = listen_pids().await;
        if now.len() == 2 && now.is_disjoint(&old) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listeners did not reconnect: {now:?} (old {old:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let id = a.create(json!({})).await;
    let mut on_b = b.sse(&id).await;
    on_b.expect_status("pending").await;
    assert_eq!(a.event(&id, &succeeded_event(json!(1))).await, 204);
    on_b.expect_status("succeeded").await;
    on_b.assert_ended().await;

    drop(check);
    a.stop();
    b.stop();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_task_ends_with_its_gateway() {
    let Some(db) = Db::create().await else {
        return;
    };
    let gw = Gateway::new(
        GatewayConfig::with_internal_url("http://gateway.internal:8081"),
        Arc::new(PostgresStore::connect(&db.url).await.unwrap()),
        Arc::new(RecordingIngress::default()),
    );
    let fanout = attach_postgres_fanout(&gw, &db.url).await.unwrap();
    drop(gw);
    tokio::time::timeout(Duration::from_secs(5), fanout)
        .await
        .expect("the fan-out task outlived its gateway")
        .unwrap();

    // Its listen connection is closed with it.
    let check = connect(&db.url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = check
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'troupe-gateway-listen'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listen connection still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(check);
    db.drop().await;
}
