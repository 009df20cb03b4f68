//! A real nats-server with JetStream per test (`troupe_transport_conformance::server`,
//! `scripts/services/nats.sh`), and the conformance harness on it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use troupe_transport::{ConnectOptions, Transport};
use troupe_transport_conformance::{server, Capabilities, Harness};
use troupe_transport_nats::{dead_letter_queue, NatsTransport};

/// Visibility timeout (AckWait) of the test transports: short, so redelivery tests are
/// quick.
pub const VISIBILITY: Duration = Duration::from_secs(2);

/// A nats-server of this test; stopped on drop.
pub struct Server(server::Server);

impl Deref for Server {
    type Target = server::Server;
    fn deref(&self) -> &server::Server {
        &self.0
    }
}

impl Server {
    /// Starts a server with extra nats-server `args`; `None` if NATS is not installed.
    pub fn start(args: &[&str]) -> Option<Server> {
        server::Server::start(&server::NATS, args).map(Server)
    }

    /// Starts a server with a config file holding `config` (e.g. `max_payload`).
    pub fn start_with_config(config: &str) -> Option<Server> {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("extra.conf");
        std::fs::write(&conf, config).unwrap();
        let conf = conf.to_str().unwrap().to_owned();
        server::Server::start_in(&server::NATS, dir, &["-c", &conf], &[]).map(Server)
    }

    /// The URL with `user:password` in it.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        self.url_with_userinfo(&format!("{user}:{password}"))
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
