//! [`HttpReporter`]: sidecar reports over HTTP to the gateway's internal listener
//! (protocol.md §13), for sidecars that do not share a process with their gateway.
//!
//! Events and child registrations go through one ordered background queue, so a slow
//! or dead gateway never holds a message up (reporting never changes routing). Only the
//! pre-flight status lookup waits for an answer, bounded by a short timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::report::Reporter;

/// Reports queued before new ones are dropped (with a WARN) while the gateway is slow.
const QUEUE: usize = 10_000;
/// Bound on one pre-flight lookup: a gateway that does not answer lets the message run.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one event post.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

struct Post {
    url: String,
    body: Value,
}

/// Reports to whichever gateway URL the engine resolved for each envelope.
#[derive(Clone)]
pub struct HttpReporter {
    client: reqwest::Client,
    queue: mpsc::Sender<Post>,
    dropped: Arc<AtomicU64>,
}

/// Logs the first failure of an outage at WARN and the rest at DEBUG.
#[derive(Default)]
struct OutageLog {
    failing: AtomicBool,
}

impl OutageLog {
    fn failed(&self, url: &str, what: &str) {
        if self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(url, error = what, "gateway report failed");
        } else {
            tracing::warn!(url, error = what, "gateway report failed; messages keep flowing, reports are dropped until the gateway answers");
        }
    }

    fn ok(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("gateway reports delivered again");
        }
    }
}

impl HttpReporter {
    /// A reporter with its background sender; needs a tokio runtime.
    pub fn new() -> Result<Self, String> {
        Self::with_token(None)
    }

    /// A reporter that presents the sidecar credential (`TROUPE_GATEWAY_TOKEN`) as
    /// `Authorization: Bearer <token>` on every report and lookup.
    pub fn with_token(token: Option<&str>) -> Result<Self, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            let mut v =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    "the gateway token has characters a header cannot carry: use letters and digits"
                        .to_owned()
                })?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the gateway HTTP client: {e}"))?;
        let (queue, mut rx) = mpsc::channel::<Post>(QUEUE);
        let sender = client.clone();
        tokio::spawn(async move {
            let log = OutageLog::default();
            while let Some(post) = rx.recv().await {
                let sent = sender
                    .post(&post.url)
                    .timeout(POST_TIMEOUT)
                    .json(&post.body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => log.ok(),
                    // The gateway answered: it rejected this report (unknown task,
                    // oversized FLY); nothing to retry.
                    Ok(r) => {
                        log.ok();
                        tracing::debug!(url = %post.url, status = %r.status(), "gateway rejected a report");
                    }
                    Err(e) => log.failed(&post.url, &e.to_string()),
                }
            }
        });
        Ok(HttpReporter {
            client,
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Reports dropped because the queue to the gateway was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn enqueue(&self, url: String, body: Value) {
        if self.queue.try_send(Post { url, body }).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "gateway report queue full; dropping reports"
                );
            }
        }
    }
}

#[async_trait]
impl Reporter for HttpReporter {
    async fn task_status(&self, gateway: &str, id: &str) -> Option<String> {
        let url = format!("{gateway}/api/v1/mesh/{id}");
        let resp = self
            .client
            .get(&url)
            .timeout(LOOKUP_TIMEOUT)
            .send()
            .await
            .map_err(|e| tracing::debug!(url, error = %e, "pre-flight lookup failed"))
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body: Value = resp.json().await.ok()?;
        body.get("status")
            .or_else(|| body.pointer("/data/status"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    async fn post_event(&self, gateway: &str, id: &str, body: Value) {
        self.enqueue(format!("{gateway}/api/v1/mesh/{id}/events"), body);
    }

    async fn register_child(&self, gateway: &str, parent_id: &str, body: Value) {
        self.enqueue(format!("{gateway}/api/v1/mesh/{parent_id}/children"), body);
    }

    /// Queued like the reports, so the gateway has the record before the final report
    /// that follows it arrives.
    async fn adopt(&self, gateway: &str, id: &str, actor: &str, payload: Value) -> bool {
        self.enqueue(
            format!("{gateway}/api/v1/mesh/{id}/adopt"),
            serde_json::json!({"actor": actor, "payload": payload}),
        );
        true
    }
}
