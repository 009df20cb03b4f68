//! A moto server for the integration tests, started and stopped with
//! `scripts/services/sqs.sh`.
//!
//! Without moto (and without PyPI to install it from), the tests that need it print
//! why and pass, unless `TROUPE_REQUIRE_SQS=1` makes them fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use troupe_transport::ConnectOptions;
use troupe_transport_sqs::{SqsConfig, SqsTransport};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/services/sqs.sh")
}

/// One moto process in its own directory.
pub struct Moto {
    dir: tempfile::TempDir,
    pub url: String,
}

impl Moto {
    /// Starts a server; `None` (after saying why) when moto cannot run here.
    pub fn start() -> Option<Moto> {
        let dir = tempfile::tempdir().unwrap();
        // The script's watchdog stops the server if this process dies without Drop.
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .arg(std::process::id().to_string())
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            if std::env::var("TROUPE_REQUIRE_SQS").is_ok_and(|v| v == "1") {
                panic!("TROUPE_REQUIRE_SQS=1 but moto could not start: {why}");
            }
            eprintln!("SKIPPED: moto (SQS emulator) could not start: {why}");
            return None;
        }
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(Moto { dir, url })
    }

    /// Stops the server and starts it again on the same port (empty: moto keeps
    /// nothing across restarts).
    pub fn restart(&self) {
        self.run("restart");
    }

    /// Stops the server, keeping its port for [`Moto::restart`].
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
            "sqs.sh {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A raw JSON-protocol call, unsigned (moto does not check signatures unless told
    /// to): for setting up and inspecting queues behind the transport's back.
    pub async fn raw(&self, action: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(&self.url)
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// A raw call of another AWS query-protocol service moto serves (IAM).
    pub async fn raw_query(&self, service: &str, form: &[(&str, &str)]) -> String {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A plain POST to moto's own API (`/moto-api/...`).
    pub async fn moto_api(&self, path: &str, body: &str) -> String {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn urlencode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The server shared by every test of one test binary; stopped by the script's
/// watchdog when the binary exits.
pub fn shared() -> Option<&'static Moto> {
    static SHARED: OnceLock<Option<Moto>> = OnceLock::new();
    SHARED.get_or_init(Moto::start).as_ref()
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

/// Settings for `moto`, with a short retry window so failures show quickly.
pub fn config(moto: &Moto) -> SqsConfig {
    let mut c = SqsConfig::from_url(&format!("sqs://us-east-1?endpoint={}", moto.url)).unwrap();
    c.retry_for = Duration::from_secs(20);
    c
}

/// Connect options for `namespace` with a short visibility timeout.
pub fn options(namespace: &str, visibility: Duration) -> ConnectOptions {
    ConnectOptions {
        visibility_timeout: visibility,
        ..ConnectOptions::new(namespace)
    }
}

/// A transport on `moto` in `namespace`.
pub async fn connect(moto: &Moto, namespace: &str, visibility: Duration) -> SqsTransport {
    SqsTransport::connect(config(moto), options(namespace, visibility))
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
