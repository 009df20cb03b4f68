#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Engine::process` against the real Python runtime (protocol.md §6, §7, §8): the
//! sidecar and runtime halves of the wire agree. Skipped when `python3` is missing.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use troupe_engine::{Disposition, Handler};
use troupe_runtime::client::RuntimeClient;
use troupe_runtime::launcher::{write_runtime_file, RuntimeProcess, RuntimeSpec};

const HANDLERS: &str = r#"
def fn(payload):
    mode = payload.get("mode")
    if mode == "none":
        return None
    if mode == "fail":
        raise KeyError("missing")
    return {"r": payload["q"] * 2}

def gen(payload):
    yield ("FLY", {"partial": True, "text": "tok"})
    yield {"i": 0}
    yield ("SET", ".route.next", ["d", "e"])
    yield ("SET", ".headers.extra", 1)
    yield {"i": 1}
    if payload.get("mode") == "fail":
        raise ValueError("after two")
"#;

fn python_available() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn start(dir: &Path, handler: &str) -> RuntimeProcess {
    let code = dir.join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("engine_handlers.py"), HANDLERS).unwrap();
    let spec = RuntimeSpec {
        python: "python3".into(),
        handler: format!("engine_handlers.{handler}"),
        socket_dir: dir.join(format!("s-{handler}")),
        runtime_file: write_runtime_file(&dir.join("rt")).unwrap(),
        env: vec![("ASYA_LOG_LEVEL".into(), "WARN".into())],
        python_path: vec![code],
        cwd: None,
    };
    let mut p = RuntimeProcess::spawn(spec).unwrap();
    p.wait_ready(Duration::from_secs(30)).await.unwrap();
    p
}

#[tokio::test]
async fn function_handler_over_the_real_runtime() {
    if !python_available() {
        eprintln!("python3 not found; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rt = start(dir.path(), "fn").await;
    let h = Handler::Runtime(Arc::new(RuntimeClient::new(rt.socket_path())));

    // One frame, advanced by the runtime.
    let b = Bench::new(settings());
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
    let (q, body) = b.single_send();
    assert_eq!(q, "q.c");
    assert_eq!(body["payload"], json!({"r": 2}));
    assert_eq!(
        body["route"],
        json!({"prev": ["a", "b"], "curr": "c", "next": []})
    );
    assert_eq!(body["id"], "t1");
    assert_eq!(body["parent_id"], "p0");
    assert_eq!(
        body["status"],
        json!({"phase": "pending", "actor": "c", "attempt": 1, "max_attempts": 1,
               "created_at": CREATED, "updated_at": NOW_TS, "deadline_at": DEADLINE})
    );
    assert_eq!(body["headers"]["trace"], "x");

    // None → 204 → zero frames → x-sink succeeded.
    let b = Bench::new(settings());
    let mut v = input();
    v["payload"] = json!({"mode": "none"});
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["status"]["reason"], "Completed");
    assert_eq!(body["payload"], json!({"mode": "none"}));

    // raise → 500 → failure envelope with Python's error details.
    let b = Bench::new(settings());
    v["payload"] = json!({"mode": "fail"});
    b.run_json(&h, &v).await;
    let (q, body) = b.single_send();
    assert_eq!(q, "q.x-sink");
    assert_eq!(body["status"]["reason"], "RuntimeError");
    assert_eq!(body["payload"]["error"], "processing_error");
    assert_eq!(body["status"]["error"]["type"], "KeyError");
    assert!(body["status"]["error"]["mro"]
        .as_array()
        .unwrap()
        .contains(&json!("LookupError")));
    assert_eq!(body["payload"]["details"], body["status"]["error"]);
    assert_eq!(body["payload"]["original_payload"], json!({"mode": "fail"}));

    rt.terminate(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn generator_handler_over_the_real_runtime() {
    if !python_available() {
        eprintln!("python3 not found; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rt = start(dir.path(), "gen").await;
    let h = Handler::Runtime(Arc::new(RuntimeClient::new(rt.socket_path())));

    let b = Bench::new(settings());
    assert_eq!(b.run_json(&h, &input()).await, Disposition::Acked);
    let sends = b.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].0, "q.c");
    assert_eq!(sends[0].1["id"], "t1");
    assert_eq!(sends[0].1["payload"], json!({"i": 0}));
    // SET .route.next between the emits gives the second frame another route.
    assert_eq!(sends[1].0, "q.d");
    assert_eq!(
        sends[1].1["route"],
        json!({"prev": ["a", "b"], "curr": "d", "next": ["e"]})
    );
    assert_eq!(sends[1].1["parent_id"], "t1");
    assert_eq!(sends[1].1["headers"]["extra"], 1);
    assert!(
        sends[0].1["headers"].get("extra").is_none(),
        "per-emit snapshot"
    );
    let fly = b
        .events()
        .into_iter()
        .find(|(_, e)| e["type"] == "fly")
        .unwrap();
    assert_eq!(
        fly.1,
        json!({"type": "fly", "data": {"payload": {"partial": true, "text": "tok"}}})
    );
    assert_eq!(
        b.event_kinds(),
        vec!["received", "processing", "fly", "completed"]
    );
    assert_eq!(
        b.ops()
            .iter()
            .filter(|o| matches!(o, Op::Child { .. }))
            .count(),
        1
    );
    b.assert_acked_last();

    // An exception after two emits: the frames stand, the error goes to the policy.
    let b = Bench::new(settings());
    let mut v = input();
    v["payload"] = json!({"mode": "fail"});
    assert_eq!(b.run_json(&h, &v).await, Disposition::Acked);
    let sends = b.sends();
    assert_eq!(sends.len(), 3, "{sends:#?}");
    assert_eq!(sends[2].0, "q.x-sink");
    assert_eq!(sends[2].1["status"]["error"]["type"], "ValueError");
    assert_eq!(sends[2].1["status"]["error"]["message"], "after two");
    b.assert_acked_last();

    rt.terminate(Duration::from_secs(5)).await.unwrap();
}
