//! The seam to the mesh's queues: the gateway publishes envelopes through it.

use async_trait::async_trait;

/// Publishes envelopes to actor queues. The mesh implements it (one queue per actor).
#[async_trait]
pub trait Ingress: Send + Sync + 'static {
    /// Whether a queue for `actor` exists (create answers 404 `actor not found` otherwise).
    fn has_actor(&self, actor: &str) -> bool;

    /// Sends `body` (a serialised envelope) to the queue of `actor`.
    async fn publish(&self, actor: &str, body: bytes::Bytes) -> Result<(), String>;
}
