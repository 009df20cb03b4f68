//! A Pub/Sub emulator for the integration tests, started and stopped with
//! `scripts/services/pubsub.sh`, and a scripted HTTP stub for what the emulator cannot
//! show (credentials).
//!
//! Without the emulator (the machine image has it; no reachable registry serves it), the
//! tests that need it print why and pass, unless `TROUPE_REQUIRE_PUBSUB=1` makes them
//! fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use troupe_transport::ConnectOptions;
use troupe_transport_pubsub::{PubSubConfig, PubSubTransport};

pub const PROJECT: &str = "troupe-test";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/services/pubsub.sh")
}

/// One emulator process in its own directory.
pub struct Emulator {
    dir: tempfile::TempDir,
    pub url: String,
}

impl Emulator {
    /// Starts an emulator; `None` (after saying why) when it cannot run here.
    pub fn start() -> Option<Emulator> {
        let dir = tempfile::tempdir().unwrap();
        // The script's watchdog stops the emulator if this process dies without Drop.
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .arg(std::process::id().to_string())
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            if std::env::var("TROUPE_REQUIRE_PUBSUB").is_ok_and(|v| v == "1") {
                panic!("TROUPE_REQUIRE_PUBSUB=1 but the Pub/Sub emulator could not start: {why}");
            }
            eprintln!("SKIPPED: the Pub/Sub emulator could not start: {why}");
            return None;
        }
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(Emulator { dir, url })
    }

    /// Stops the emulator and starts it again on the same port (empty: it keeps
    /// nothing across restarts).
    pub fn restart(&self) {
        self.run("restart");
    }

    /// Stops the emulator, keeping its port for [`Emulator::restart`].
    pub fn stop(&self) {
        self.run("stop");
    }

    fn run(&self, what: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(what)
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pubsub.sh {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A raw REST call (`path` under `/v1/projects/{PROJECT}/`), for setting up and
    /// inspecting topics behind the transport's back.
    pub async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/v1/projects/{PROJECT}/{path}", self.url);
        let mut request = reqwest::Client::new().request(method, url);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let text = request.send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// The emulator shared by every test of one test binary; stopped by the script's
/// watchdog when the binary exits.
pub fn shared() -> Option<&'static Emulator> {
    static SHARED: OnceLock<Option<Emulator>> = OnceLock::new();
    SHARED.get_or_init(Emulator::start).as_ref()
}

/// A namespace no other test uses.
pub fn namespace() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for the emulator at `url`, with a short retry window.
pub fn config(url: &str) -> PubSubConfig {
    let mut c = PubSubConfig::from_url(&format!("pubsub://{PROJECT}?endpoint={url}")).unwrap();
    c.retry_for = Duration::from_secs(20);
    c
}

/// Connect options for `namespace` with the given visibility (ack deadline).
pub fn options(namespace: &str, visibility: Duration) -> ConnectOptions {
    ConnectOptions {
        visibility_timeout: visibility,
        ..ConnectOptions::new(namespace)
    }
}

/// A transport on the emulator at `url` in `namespace`.
pub async fn connect(url: &str, namespace: &str, visibility: Duration) -> PubSubTransport {
    PubSubTransport::connect(config(url), options(namespace, visibility))
        .await
        .unwrap()
}

/// One request the stub saw: request line and `authorization` header.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub authorization: Option<String>,
}

/// A loopback HTTP server answering every request with what `answer` returns
/// (status, JSON body) and recording the requests.
pub struct Stub {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    pub async fn start(answer: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let log = log.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Head, then as much body as Content-Length says.
                    let head_end = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_owned())
                        })
                    };
                    let length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let s = Seen {
                        line: head.lines().next().unwrap_or("").to_owned(),
                        authorization: header("authorization"),
                    };
                    log.lock().unwrap().push(s.clone());
                    let (status, body) = answer(&s);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Stub { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
