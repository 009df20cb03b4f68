//! A real nats-server with JetStream per test, started by `scripts/services/nats.sh` in a
//! temp dir on a free loopback port and stopped when the [`Server`] drops.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use troupe_transport::{ConnectOptions, Transport};
use troupe_transport_conformance::{Capabilities, Harness};
use troupe_transport_nats::{dead_letter_queue, NatsTransport};

/// Visibility timeout (AckWait) of the test transports: short, so redelivery tests are
/// quick.
pub const VISIBILITY: Duration = Duration::from_secs(2);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/services/nats.sh")
}

/// Whether nats-server is installed; without it tests are skipped, unless
/// `TROUPE_REQUIRE_NATS=1` (CI), which makes that a failure.
fn available() -> bool {
    let found = Command::new("sh")
        .args([
            "-c",
            "command -v nats-server || test -x /usr/sbin/nats-server",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("TROUPE_REQUIRE_NATS").as_deref() != Ok("1"),
            "TROUPE_REQUIRE_NATS=1 but nats-server is not installed (apt-get install nats-server)"
        );
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
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

/// A nats-server of this test.
pub struct Server {
    dir: tempfile::TempDir,
    /// `nats://127.0.0.1:PORT`, without credentials.
    pub url: String,
}

impl Server {
    /// Starts a server with extra nats-server `args`; `None` if NATS is not installed.
    pub fn start(args: &[&str]) -> Option<Server> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        Some(Self::start_in(dir, args))
    }

    /// Starts a server with a config file holding `config` (e.g. `max_payload`).
    pub fn start_with_config(config: &str) -> Option<Server> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("extra.conf");
        std::fs::write(&conf, config).unwrap();
        let conf = conf.to_str().unwrap().to_owned();
        Some(Self::start_in(dir, &["-c", &conf]))
    }

    fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Server {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path().join("srv"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nats.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        watchdog(&dir.path().join("srv"));
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Server { dir, url }
    }

    /// The URL with `user:password` in it.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        self.url
            .replacen("nats://", &format!("nats://{user}:{password}@"), 1)
    }

    /// Stops the server and starts it again on the same port with the same data.
    pub fn restart(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("restart")
            .arg(self.dir.path().join("srv"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nats.sh restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (also done on drop).
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path().join("srv"))
            .output();
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
pub struct NatsHarness {
    pub server: Server,
    pub namespace: String,
}

impl NatsHarness {
    /// `None` when NATS is not installed (see [`Server::start`]).
    pub fn new() -> Option<Arc<NatsHarness>> {
        let server = Server::start(&[])?;
        Some(Arc::new(NatsHarness {
            server,
            namespace: namespace("conf"),
        }))
    }
}

#[async_trait]
impl Harness for NatsHarness {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(
            NatsTransport::connect(&self.server.url, options(&self.namespace))
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
            // AckWait plus the server's redelivery timer granularity.
            redelivery_after: VISIBILITY * 2,
            ..Capabilities::default()
        }
    }
}
