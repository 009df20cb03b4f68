#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real Python runtime (`RUNTIME_PY`) started by the launcher and driven by the client.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use troupe_runtime::client::{RuntimeCallError, RuntimeClient, RuntimeEvent};
use troupe_runtime::launcher::{write_runtime_file, RuntimeProcess, RuntimeSpec};

const T: Duration = Duration::from_secs(20);

const HANDLERS: &str = r#"
def echo(payload):
    return {"echo": payload}

def nothing(payload):
    return None

def stream(payload):
    yield ("FLY", {"partial": True, "text": "tok"})
    for i in range(payload["n"]):
        yield {"i": i}
    if payload.get("fail"):
        raise ValueError("stream failed")
"#;

fn have_python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn start(dir: &Path, handler: &str) -> RuntimeProcess {
    let code = dir.join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("e2e_handlers.py"), HANDLERS).unwrap();
    let runtime_file = write_runtime_file(&dir.join("rt")).unwrap();
    let spec = RuntimeSpec {
        python: "python3".into(),
        handler: format!("e2e_handlers.{handler}"),
        socket_dir: dir.join(format!("sock-{handler}")),
        runtime_file,
        env: vec![("ASYA_LOG_LEVEL".into(), "WARN".into())],
        python_path: vec![code],
        cwd: None,
    };
    let mut proc = RuntimeProcess::spawn(spec).unwrap();
    proc.wait_ready(T).await.unwrap();
    proc
}

fn envelope(payload: Value) -> Bytes {
    let env = json!({
        "id": "task-1",
        "route": {"prev": ["a"], "curr": "me", "next": ["b", "c"]},
        "headers": {"trace": "t1"},
        "payload": payload,
    });
    Bytes::from(serde_json::to_vec(&env).unwrap())
}

fn parse(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test]
async fn function_handler_over_keepalive() {
    if !have_python() || troupe_runtime::RUNTIME_PY.is_empty() {
        eprintln!("python3 or the runtime file is missing; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proc = start(dir.path(), "echo").await;
    let client = RuntimeClient::new(proc.socket_path());
    client.healthz(T).await.unwrap();
    for i in 0..20 {
        let mut inv = client.invoke(envelope(json!({"n": i})), T).await.unwrap();
        let Some(RuntimeEvent::FramesJson(body)) = inv.next().await.unwrap() else {
            panic!("expected a JSON reply");
        };
        let frames = parse(&body);
        assert_eq!(frames["frames"][0]["payload"], json!({"echo": {"n": i}}));
        assert_eq!(
            frames["frames"][0]["route"],
            json!({"prev": ["a", "me"], "curr": "b", "next": ["c"]})
        );
        assert_eq!(frames["frames"][0]["headers"], json!({"trace": "t1"}));
        assert_eq!(inv.next().await.unwrap(), None);
    }
    assert_eq!(
        client.idle_count(),
        1,
        "the runtime kept the connection alive"
    );

    // Invalid envelope: 400 msg_parsing_error, still a handler-level error.
    let mut inv = client
        .invoke(Bytes::from_static(b"{\"payload\": 1}"), T)
        .await
        .unwrap();
    let Some(RuntimeEvent::Error { status, body }) = inv.next().await.unwrap() else {
        panic!("expected an error reply");
    };
    assert_eq!(status, 400);
    assert_eq!(parse(&body)["error"], "msg_parsing_error");

    let ready = proc.ready_path().to_path_buf();
    let status = proc.terminate(Duration::from_secs(10)).await.unwrap();
    assert!(status.success() || status.code().is_some(), "{status:?}");
    assert!(
        !ready.exists(),
        "the runtime removes its ready file on SIGTERM"
    );
}

#[tokio::test]
async fn none_result_is_no_content() {
    if !have_python() || troupe_runtime::RUNTIME_PY.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proc = start(dir.path(), "nothing").await;
    let client = RuntimeClient::new(proc.socket_path());
    for _ in 0..3 {
        let mut inv = client.invoke(envelope(json!({})), T).await.unwrap();
        assert_eq!(inv.next().await.unwrap(), Some(RuntimeEvent::NoContent));
        assert_eq!(inv.next().await.unwrap(), None);
    }
    proc.kill().unwrap();
}

#[tokio::test]
async fn generator_handler_streams_sse() {
    if !have_python() || troupe_runtime::RUNTIME_PY.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proc = start(dir.path(), "stream").await;
    let client = RuntimeClient::new(proc.socket_path());
    for _ in 0..2 {
        let mut inv = client.invoke(envelope(json!({"n": 3})), T).await.unwrap();
        let Some(RuntimeEvent::Upstream(fly)) = inv.next().await.unwrap() else {
            panic!("expected the FLY first");
        };
        assert_eq!(
            parse(&fly),
            json!({"payload": {"partial": true, "text": "tok"}})
        );
        for i in 0..3 {
            let Some(RuntimeEvent::Frame(frame)) = inv.next().await.unwrap() else {
                panic!("expected frame {i}");
            };
            let frame = parse(&frame);
            assert_eq!(frame["payload"], json!({"i": i}));
            assert_eq!(frame["route"]["curr"], "b");
        }
        assert_eq!(inv.next().await.unwrap(), None);
    }

    let mut inv = client
        .invoke(envelope(json!({"n": 1, "fail": true})), T)
        .await
        .unwrap();
    assert!(matches!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Upstream(_))
    ));
    assert!(matches!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Frame(_))
    ));
    let Some(RuntimeEvent::Error { status, body }) = inv.next().await.unwrap() else {
        panic!("expected the SSE error");
    };
    assert_eq!(status, 200);
    let body = parse(&body);
    assert_eq!(body["error"], "processing_error");
    assert_eq!(body["details"]["type"], "ValueError");
    assert_eq!(body["details"]["message"], "stream failed");
    assert_eq!(inv.next().await.unwrap(), None, "done follows the error");
    proc.terminate(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn broken_handler_module_reports_the_import_error() {
    if !have_python() || troupe_runtime::RUNTIME_PY.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("broken_mod.py"),
        "import nosuch_dependency_abc\ndef f(p):\n    return p\n",
    )
    .unwrap();
    let spec = RuntimeSpec {
        python: "python3".into(),
        handler: "broken_mod.f".into(),
        socket_dir: dir.path().join("sock"),
        runtime_file: write_runtime_file(&dir.path().join("rt")).unwrap(),
        env: vec![],
        python_path: vec![code],
        cwd: None,
    };
    let mut proc = RuntimeProcess::spawn(spec).unwrap();
    let err = proc.wait_ready(T).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ModuleNotFoundError: No module named 'nosuch_dependency_abc'"),
        "{msg}"
    );
    assert!(msg.contains("exit code 1"), "{msg}");
}

/// Issue 9 item 9: a request that reaches a runtime as it dies (killed while idle, its
/// memory still being torn down, so the connection stays open a moment) is never read, so
/// no handler ran: it must be `NotDelivered` (requeued), never `Unreachable` (x-sump).
/// SIGSTOP makes the moment last: the request lands in the socket buffer, unread.
#[tokio::test]
async fn request_unread_by_a_runtime_killed_while_idle_is_not_delivered() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if !have_python() || troupe_runtime::RUNTIME_PY.is_empty() {
        eprintln!("python3 or the runtime file is missing; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for pooled in [true, false] {
        let mut proc = start(dir.path(), "echo").await;
        let client = std::sync::Arc::new(RuntimeClient::new(proc.socket_path()));
        if pooled {
            let mut inv = client.invoke(envelope(json!({"n": 1})), T).await.unwrap();
            assert!(matches!(
                inv.next().await.unwrap(),
                Some(RuntimeEvent::FramesJson(_))
            ));
            assert_eq!(inv.next().await.unwrap(), None);
            drop(inv);
            assert_eq!(client.idle_count(), 1);
        }
        let pid = Pid::from_raw(i32::try_from(proc.pid()).unwrap());
        kill(pid, Signal::SIGSTOP).unwrap();
        let call = {
            let client = client.clone();
            tokio::spawn(async move {
                match client.invoke(envelope(json!({"n": 2})), T).await {
                    Ok(mut inv) => inv.next().await.map(|_| ()),
                    Err(e) => Err(e),
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        kill(pid, Signal::SIGKILL).unwrap();
        proc.wait().await.unwrap();
        let err = call.await.unwrap().expect_err("the runtime is dead");
        assert!(
            matches!(err, RuntimeCallError::NotDelivered { .. }),
            "pooled={pooled}: {err:?}"
        );
    }
}
