//! Which way a sidecar report goes in `troupe up`: tasks of this mesh's own gateway are
//! written in-process; an envelope stamped with another gateway's URL (a task created on
//! a `troupe gateway` replica) is reported to that gateway over HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use troupe_engine::http_report::HttpReporter;
use troupe_engine::report::Reporter;

/// Routes each report by the gateway URL the engine resolved for the envelope.
pub(crate) struct RoutedReporter {
    /// This mesh's gateway URL (what it stamps as `x-asya-gateway-url`).
    pub(crate) local_url: String,
    /// The in-process reporter of this mesh's gateway.
    pub(crate) local: Arc<dyn Reporter>,
    /// Reporter for every other gateway.
    pub(crate) remote: HttpReporter,
}

impl RoutedReporter {
    fn pick(&self, gateway: &str) -> &dyn Reporter {
        if gateway == self.local_url {
            self.local.as_ref()
        } else {
            &self.remote
        }
    }
}

#[async_trait]
impl Reporter for RoutedReporter {
    async fn knows(&self, gateway: &str, id: &str) -> bool {
        self.pick(gateway).knows(gateway, id).await
    }

    async fn task_status(&self, gateway: &str, id: &str) -> Option<String> {
        self.pick(gateway).task_status(gateway, id).await
    }

    async fn post_event(&self, gateway: &str, id: &str, body: Value) {
        self.pick(gateway).post_event(gateway, id, body).await;
    }

    async fn register_child(&self, gateway: &str, parent_id: &str, body: Value) {
        self.pick(gateway)
            .register_child(gateway, parent_id, body)
            .await;
    }

    async fn adopt(&self, gateway: &str, id: &str, actor: &str, payload: Value) -> bool {
        self.pick(gateway).adopt(gateway, id, actor, payload).await
    }
}
