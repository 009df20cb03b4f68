//! The seam for gateway reporting (protocol.md §13).
//!
//! The engine decides *when* to report and builds the bodies; a [`Reporter`] delivers
//! them. `troupe up` plugs in an in-process reporter that writes straight into its task
//! store; the standalone sidecar will plug in an HTTP reporter. Reporting failures are
//! the reporter's to log: they never change routing, so these methods return nothing.

use async_trait::async_trait;
use serde_json::Value;

/// Delivers sidecar reports to a gateway.
#[async_trait]
pub trait Reporter: Send + Sync + 'static {
    /// Whether the gateway has a record of task `id`. Reports for unknown tasks would
    /// be rejected anyway, so the engine skips building them (envelopes published
    /// straight to a queue have no record). Default: assume it does.
    async fn knows(&self, _gateway: &str, _id: &str) -> bool {
        true
    }

    /// Pre-flight (§8 step 4): the task's gateway status (`"canceled"`, `"paused"`, ...),
    /// or `None` when unknown or on any error. `gateway` is the resolved gateway URL.
    async fn task_status(&self, gateway: &str, id: &str) -> Option<String>;

    /// `POST {gw}/api/v1/mesh/{id}/events` with `body` = `{"type", "status"?, "data"}`.
    async fn post_event(&self, gateway: &str, id: &str, body: Value);

    /// `POST {gw}/api/v1/mesh/{parent_id}/children` with
    /// `{"id", "parent_id", "route": {prev, curr, next}}`.
    async fn register_child(&self, gateway: &str, parent_id: &str, body: Value);

    /// Creates a record for task `id`, which the gateway never created: a message that
    /// could not be parsed, stored by x-sump (under a generated id when it had none).
    /// `actor` is where parsing failed, `payload` the error payload (reason and raw
    /// body). Returns whether the gateway has a record of `id` now, so the final report
    /// that follows can mark it failed. Default: the gateway cannot be told.
    async fn adopt(&self, _gateway: &str, _id: &str, _actor: &str, _payload: Value) -> bool {
        false
    }
}

/// A reporter that reports nothing (reporting disabled).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

#[async_trait]
impl Reporter for NoReporter {
    async fn knows(&self, _gateway: &str, _id: &str) -> bool {
        false
    }
    async fn task_status(&self, _gateway: &str, _id: &str) -> Option<String> {
        None
    }
    async fn post_event(&self, _gateway: &str, _id: &str, _body: Value) {}
    async fn register_child(&self, _gateway: &str, _parent_id: &str, _body: Value) {}
}
