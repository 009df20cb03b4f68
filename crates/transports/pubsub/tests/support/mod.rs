//! A Pub/Sub emulator for the integration tests, started and stopped with
//! `scripts/services/pubsub.sh` (`troupe_transport_conformance::server`); for what the
//! emulator cannot show (credentials) the tests use `troupe_transport_conformance::stub`.
//!
//! Without the emulator (the machine image has it; no reachable registry serves it), the
//! tests that need it print why and pass, unless `TROUPE_REQUIRE_PUBSUB=1` makes them
//! fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use troupe_transport::ConnectOptions;
use troupe_transport_conformance::server::{self, Server};
use troupe_transport_pubsub::{PubSubConfig, PubSubTransport};

pub const PROJECT: &str = "troupe-test";

/// One emulator process in its own directory; stopped on drop.
pub struct Emulator(Server);

impl Deref for Emulator {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Emulator {
    /// Starts an emulator; `None` (after saying why) when it cannot run here. The
    /// script's watchdog stops the emulator if this process dies without Drop.
    pub fn start() -> Option<Emulator> {
        Server::start(&server::PUBSUB, &[]).map(Emulator)
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

/// The emulator shared by every test of one test binary; stopped by the script's
/// watchdog when the binary exits.
pub fn shared() -> Option<&'static Emulator> {
    static SHARED: OnceLock<Option<Emulator>> = OnceLock::new();
    SHARED.get_or_init(Emulator::start).as_ref()
}

/// A namespace no other test uses.
pub fn namespace() -> String {
    troupe_transport_conformance::unique_namespace("t")
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
