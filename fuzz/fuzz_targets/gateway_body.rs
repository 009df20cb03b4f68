//! The gateway's request bodies (gateway.md §2): create, events, children (and the
//! legacy child form) and resume, through the same `Gateway` methods the HTTP routes
//! call, on an in-memory store. No body panics the gateway or yields a server error,
//! a rejected body changes nothing, and what an accepted one publishes is an envelope
//! that parses.
//!
//! Input: one byte choosing the route, then the request body.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use troupe_gateway::{Gateway, GatewayConfig, GatewayError, Ingress, MemoryStore, TaskStatus};
use troupe_protocol::Envelope;

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Bytes)>>);

#[async_trait]
impl Ingress for Recorder {
    fn has_actor(&self, _actor: &str) -> bool {
        true
    }
    async fn publish(&self, actor: &str, body: Bytes) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((actor.to_owned(), body));
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, Bytes)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

fn check(r: &Result<impl Sized, GatewayError>, what: &str) {
    if let Err(e) = r {
        assert!(
            e.status_code() < 500,
            "{what} answered {}: {e}",
            e.status_code()
        );
    }
}

fn published(rec: &Recorder, actor: &str, id: &str) {
    let sent = rec.take();
    assert_eq!(sent.len(), 1, "one envelope published");
    assert_eq!(sent[0].0, actor);
    let env = Envelope::from_slice(&sent[0].1)
        .unwrap_or_else(|e| panic!("published envelope does not parse ({e}): {:?}", sent[0].1));
    assert_eq!(env.id, id);
}

async fn one(op: u8, body: &[u8]) {
    let rec = Arc::new(Recorder::default());
    let gw = Gateway::new(
        GatewayConfig::with_internal_url("http://127.0.0.1:8080"),
        Arc::new(MemoryStore::new()),
        rec.clone(),
    );
    let running = gw
        .create("a", None, br#"{"payload":{"n":1}}"#)
        .await
        .expect("create");
    let paused = gw.create("a", None, b"{}").await.expect("create");
    let pm = json!({"type": "status", "status": "paused", "data": {"pause_metadata": {
        "prompt": "ok?", "fields": [{"name": "approved", "type": "boolean", "required": true}]}}});
    gw.apply_event(&paused, pm).await.expect("pause");
    rec.take();

    match op % 5 {
        0 => {
            let r = gw.create("a", None, body).await;
            check(&r, "create");
            match r {
                Ok(id) => {
                    published(&rec, "a", &id);
                    let t = gw.get(&id).await.expect("created task is stored");
                    let _ = t.to_message().to_string();
                }
                Err(_) => assert!(rec.take().is_empty(), "a rejected create published"),
            }
        }
        1 => {
            let before = gw.get(&running).await.expect("get");
            let r = gw.apply_event_bytes(&running, body).await.map(|_| ());
            check(&r, "events");
            let after = gw.get(&running).await.expect("task survives an event");
            if r.is_err() {
                assert_eq!(
                    after.status, before.status,
                    "a rejected event changed the task"
                );
            }
            let data: Value = serde_json::from_str(&after.data_json()).expect("data JSON");
            assert!(data.is_object());
            let _ = after.to_message().to_string();
        }
        2 | 3 => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return;
            };
            let r = if op % 5 == 2 {
                gw.register_child(&running, &v).await
            } else {
                gw.register_child_legacy(&v).await
            };
            check(&r, "children");
            if r.is_ok() {
                let id = v.get("id").and_then(Value::as_str).expect("child id");
                let t = gw.get(id).await.expect("registered child is stored");
                assert!(t.data.parent_id.is_some());
            }
        }
        _ => {
            let r = gw.resume(&paused, body).await;
            check(&r, "resume");
            let t = gw.get(&paused).await.expect("get");
            match r {
                Ok(()) => {
                    published(&rec, "x-resume", &paused);
                    assert_eq!(t.status, TaskStatus::Running);
                }
                Err(_) => {
                    assert_eq!(t.status, TaskStatus::Paused, "a rejected resume unpaused");
                    assert!(rec.take().is_empty(), "a rejected resume published");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else {
        return;
    };
    runtime().block_on(one(op, body));
});
