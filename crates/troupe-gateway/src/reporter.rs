//! In-process sidecar reporting (`troupe up`): the engine's report bodies are applied
//! to the store and hub directly, through the same code as the internal HTTP routes.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use troupe_engine::report::Reporter;

use crate::gateway::{Gateway, GatewayError};

/// A [`Reporter`] that writes straight into a [`Gateway`], ignoring the gateway URL.
#[derive(Clone)]
pub struct InProcessReporter {
    gateway: Gateway,
}

impl InProcessReporter {
    /// A reporter for `gateway`.
    pub fn new(gateway: Gateway) -> Self {
        InProcessReporter { gateway }
    }
}

impl Gateway {
    /// An in-process reporter for the engine.
    pub fn reporter(&self) -> Arc<dyn Reporter> {
        Arc::new(InProcessReporter::new(self.clone()))
    }
}

fn log_failure(what: &str, id: &str, e: &GatewayError) {
    // Envelopes without a gateway record (benchmarks, stealth callers) are routine.
    if !matches!(e, GatewayError::NotFound(_)) {
        tracing::debug!(task = id, error = %e, "in-process {what} report rejected");
    }
}

#[async_trait]
impl Reporter for InProcessReporter {
    async fn knows(&self, _gateway: &str, id: &str) -> bool {
        matches!(self.gateway.store().status(id).await, Ok(Some(_)))
    }

    async fn task_status(&self, _gateway: &str, id: &str) -> Option<String> {
        match self.gateway.store().status(id).await {
            Ok(s) => s.map(|s| s.as_str().to_owned()),
            Err(e) => {
                tracing::debug!(task = id, error = %e, "pre-flight status lookup failed");
                None
            }
        }
    }

    async fn post_event(&self, _gateway: &str, id: &str, body: Value) {
        if let Err(e) = self.gateway.apply_event(id, body).await {
            log_failure("event", id, &e);
        }
    }

    async fn register_child(&self, _gateway: &str, parent_id: &str, body: Value) {
        if let Err(e) = self.gateway.register_child(parent_id, &body).await {
            log_failure("child", parent_id, &e);
        }
    }

    async fn adopt(&self, _gateway: &str, id: &str, actor: &str, payload: Value) -> bool {
        match self.gateway.adopt(id, actor, payload).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(task = id, error = %e, "could not record a parse failure in the task store; it is stored in failed/ only");
                false
            }
        }
    }
}
