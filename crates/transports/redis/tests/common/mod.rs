//! A real redis-server per test, started by `scripts/services/redis.sh` in a temp dir on
//! a free loopback port and stopped when the [`Server`] drops.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use troupe_transport::{ConnectOptions, Transport};
use troupe_transport_conformance::{Capabilities, Harness};
use troupe_transport_redis::{dead_letter_queue, RedisTransport};

/// Visibility timeout of the test transports: short, so reclaim tests are quick.
pub const VISIBILITY: Duration = Duration::from_secs(2);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/services/redis.sh")
}

/// `None` (the test is skipped) when redis-server is not installed, unless
/// `TROUPE_REQUIRE_REDIS=1` (CI), which makes that a failure.
fn available() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("TROUPE_REQUIRE_REDIS").as_deref() != Ok("1"),
            "TROUPE_REQUIRE_REDIS=1 but redis-server is not installed (apt-get install redis-server)"
        );
        eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
    }
    found
}

/// Stops the server in `dir` if this test process dies without dropping its [`Server`]
/// (killed by a timeout, say), so no server outlives the tests.
fn watchdog(dir: &std::path::Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' stop '{dir}'",
        pid = std::process::id(),
        script = script().display(),
        dir = dir.display()
    );
    let _ = Command::new("setsid")
        .args(["bash", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// A redis-server of this test.
pub struct Server {
    dir: tempfile::TempDir,
    /// `redis://127.0.0.1:PORT/0`, without a password.
    pub url: String,
}

impl Server {
    /// Starts a server with extra redis-server `args`; `None` if Redis is not installed.
    pub fn start(args: &[&str]) -> Option<Server> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        watchdog(dir.path());
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(Server { dir, url })
    }

    /// The URL with `password` in it.
    pub fn url_with_password(&self, password: &str) -> String {
        self.url
            .replacen("redis://", &format!("redis://:{password}@"), 1)
    }

    /// Stops the server and starts it again on the same port with the same data.
    pub fn restart(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("restart")
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis.sh restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (also done on drop).
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }

    /// Runs `redis-cli` against the server.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.url.rsplit(':').next().unwrap().trim_end_matches("/0");
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Options for a test transport: its own consumer name, a short visibility timeout.
pub fn options(namespace: &str) -> ConnectOptions {
    let mut o = ConnectOptions::new(namespace);
    o.consumer_name = format!(
        "test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    o.visibility_timeout = VISIBILITY;
    o
}

/// A namespace no other test uses.
pub fn namespace(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The conformance harness: one server per test, one namespace per harness.
pub struct RedisHarness {
    pub server: Server,
    pub namespace: String,
}

impl RedisHarness {
    /// `None` when Redis is not installed (see [`Server::start`]).
    pub fn new() -> Option<Arc<RedisHarness>> {
        let server = Server::start(&[])?;
        Some(Arc::new(RedisHarness {
            server,
            namespace: namespace("conf"),
        }))
    }
}

#[async_trait]
impl Harness for RedisHarness {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(
            RedisTransport::connect(&self.server.url, options(&self.namespace))
                .await
                .unwrap(),
        )
    }

    async fn restart_broker(&self) {
        tokio::task::block_in_place(|| self.server.restart());
    }

    fn dead_letter_queue(&self, _queue: &str) -> String {
        dead_letter_queue(&self.namespace)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Visibility timeout, then at most one reclaim interval (a quarter of it).
            redelivery_after: VISIBILITY * 2,
            ..Capabilities::default()
        }
    }
}
