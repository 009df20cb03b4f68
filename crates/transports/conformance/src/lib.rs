//! The transport conformance suite: the semantics of [`troupe_transport::Transport`]
//! checked against a real broker. Each transport crate runs every case from its own
//! `tests/conformance.rs` with a [`Harness`] that owns a broker process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test library: failures panic

use std::sync::Arc;

use async_trait::async_trait;
use troupe_transport::Transport;

/// What the suite needs from a transport's test setup.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new transport (its own connections) on the harness's broker. Every call in one
    /// test uses the same namespace, so transports see each other's queues.
    async fn connect(&self) -> Arc<dyn Transport>;

    /// Stops the broker process and starts it again on the same address and data;
    /// returns once it accepts connections.
    async fn restart_broker(&self);

    /// The queue that dead-lettered messages of `queue` land in, readable with
    /// [`Transport::receive`] on a transport from [`Harness::connect`].
    fn dead_letter_queue(&self, queue: &str) -> String;
}
