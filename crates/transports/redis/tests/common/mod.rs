//! A real redis-server per test (`troupe_transport_conformance::server`,
//! `scripts/services/redis.sh`), and the conformance harness on it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use troupe_transport::{ConnectOptions, Transport};
use troupe_transport_conformance::{server, Capabilities, Harness};
use troupe_transport_redis::{dead_letter_queue, RedisTransport};

/// Visibility timeout of the test transports: short, so reclaim tests are quick.
pub const VISIBILITY: Duration = Duration::from_secs(2);

/// A redis-server of this test; stopped on drop.
pub struct Server(server::Server);

impl Deref for Server {
    type Target = server::Server;
    fn deref(&self) -> &server::Server {
        &self.0
    }
}

impl Server {
    /// Starts a server with extra redis-server `args`; `None` if Redis is not installed.
    pub fn start(args: &[&str]) -> Option<Server> {
        server::Server::start(&server::REDIS, args).map(Server)
    }

    /// The URL with `password` in it.
    pub fn url_with_password(&self, password: &str) -> String {
        self.url_with_userinfo(&format!(":{password}"))
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

/// Options for a test transport: its own consumer name, a short visibility timeout.
pub fn options(namespace: &str) -> ConnectOptions {
    troupe_transport_conformance::test_options(namespace, VISIBILITY)
}

/// A namespace no other test uses.
pub fn namespace(prefix: &str) -> String {
    troupe_transport_conformance::unique_namespace(prefix)
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
