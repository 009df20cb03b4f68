//! Calls per second of keep-alive JSON runtime calls.
//!
//! `cargo run --release -p troupe-runtime --example client_bench [calls] [python]`
//!
//! By default the runtime is a minimal fake server on its own thread, so the figure is
//! the client's cost plus one small server. With `python`, the real Python runtime
//! (`RUNTIME_PY`, echo handler) is started instead, which is the end-to-end ceiling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use troupe_runtime::client::{RuntimeClient, RuntimeEvent};
use troupe_runtime::launcher::{write_runtime_file, RuntimeProcess, RuntimeSpec};

const ENVELOPE: &str = r#"{"id":"5b7e3a52-3f0e-4a51-a3c6-3b1f2b6f0d11","route":{"prev":["gateway"],"curr":"echo","next":["summarise"]},"headers":{"x-asya-trace":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},"status":{"phase":"processing","actor":"echo","attempt":1,"max_attempts":3,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"},"payload":{"text":"hello world","n":1}}"#;

const REPLY_BODY: &str = r#"{"frames":[{"payload":{"text":"hello world","n":1},"route":{"prev":["gateway","echo"],"curr":"summarise","next":[]},"headers":{"x-asya-trace":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}]}"#;

/// Serves keep-alive JSON replies as cheaply as possible (buffered, one write per reply).
async fn fake_conn(mut s: UnixStream) {
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{REPLY_BODY}",
        REPLY_BODY.len()
    );
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        // Answer every complete request already buffered.
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.parse().unwrap());
            if buf.len() < end + 4 + len {
                break;
            }
            buf.drain(..end + 4 + len);
            if s.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn start_fake(path: PathBuf) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = UnixListener::bind(&path).unwrap();
            tx.send(()).unwrap();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(fake_conn(s));
            }
        });
    });
    rx.recv().unwrap();
}

async fn start_python(dir: &Path) -> RuntimeProcess {
    let code = dir.join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("bench_handlers.py"),
        "def echo(payload):\n    return payload\n",
    )
    .unwrap();
    let spec = RuntimeSpec {
        python: std::env::var("ASYA_PYTHONEXECUTABLE").unwrap_or_else(|_| "python3".into()),
        handler: "bench_handlers.echo".into(),
        socket_dir: dir.join("sock"),
        runtime_file: write_runtime_file(&dir.join("rt")).unwrap(),
        env: vec![("ASYA_LOG_LEVEL".into(), "WARN".into())],
        python_path: vec![code],
        cwd: None,
    };
    let mut proc = RuntimeProcess::spawn(spec).unwrap();
    proc.wait_ready(Duration::from_secs(30)).await.unwrap();
    proc
}

async fn run(client: Arc<RuntimeClient>, calls: usize, concurrency: usize) -> f64 {
    let body = Bytes::from_static(ENVELOPE.as_bytes());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..calls / concurrency {
                let mut inv = client
                    .invoke(body.clone(), Duration::from_secs(30))
                    .await
                    .unwrap();
                match inv.next().await.unwrap() {
                    Some(RuntimeEvent::FramesJson(b)) => assert!(!b.is_empty()),
                    other => panic!("unexpected {other:?}"),
                }
                assert!(inv.next().await.unwrap().is_none());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (calls / concurrency * concurrency) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = args.get(1).map_or(200_000, |a| a.parse().unwrap());
    let python = args.iter().any(|a| a == "python");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut proc = None;
        let socket = if python {
            let p = start_python(dir.path()).await;
            let s = p.socket_path().to_path_buf();
            proc = Some(p);
            s
        } else {
            let s = dir.path().join("fake.sock");
            start_fake(s.clone());
            s
        };
        let client = Arc::new(RuntimeClient::new(socket));
        let target = if python { "python runtime (echo)" } else { "fake server" };
        // Warm-up opens the connections and sizes the buffers.
        run(client.clone(), calls / 20 + 4, 4).await;
        for concurrency in [1, 4] {
            let rate = run(client.clone(), calls, concurrency).await;
            println!(
                "{target}: concurrency {concurrency}: {rate:.0} calls/s ({:.1} µs/call), {} idle connections",
                1e6 / rate,
                client.idle_count()
            );
        }
        if let Some(mut p) = proc {
            p.terminate(Duration::from_secs(5)).await.unwrap();
        }
    });
}
