//! A moto server for the integration tests, started and stopped with
//! `scripts/services/sqs.sh` (`troupe_transport_conformance::server`).
//!
//! Without moto (and without PyPI to install it from), the tests that need it print
//! why and pass, unless `TROUPE_REQUIRE_SQS=1` makes them fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use troupe_transport::ConnectOptions;
use troupe_transport_conformance::server::{self, Server};
use troupe_transport_sqs::{SqsConfig, SqsTransport};

/// One moto process in its own directory; stopped on drop.
pub struct Moto(Server);

impl Deref for Moto {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Moto {
    /// Starts a server; `None` (after saying why) when moto cannot run here. The
    /// script's watchdog stops the server if this process dies without Drop.
    pub fn start() -> Option<Moto> {
        Server::start(&server::SQS, &[]).map(Moto)
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
    troupe_transport_conformance::unique_namespace("t")
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
