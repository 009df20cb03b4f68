//! A KEDA external-push scaler (KEDA trigger type `external-push`): KEDA keeps a
//! `StreamIsActive` stream open per ScaledObject, and this service answers `true` the
//! moment the actor's queue holds a message and `false` when it drains, so a Deployment
//! scaled to zero starts without waiting for KEDA's next poll. The queue trigger still
//! drives 1..N replicas; KEDA is active when any trigger is (docs/decisions.md "Push
//! scaler").
//!
//! - [`activity`]: what is active, decided without I/O, and the per-queue watchers.
//! - [`service`]: the gRPC service (`IsActive`, `StreamIsActive`, `GetMetricSpec`,
//!   `GetMetrics`).
//! - [`proto`]: the generated API.
//!
//! `troupe scaler --listen ADDR` runs [`serve`] alone; the operator runs it in-process.

pub mod activity;
mod error;
pub mod proto;
pub mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use troupe_transport::Transport;

pub use activity::{Activity, Observation, Watchers, DEFAULT_POLL_INTERVAL};
pub use error::ScalerError;
pub use proto::external_scaler_server::ExternalScalerServer;
pub use service::PushScaler;
/// The tonic this crate is built with, so a caller (a client, the operator's server) uses
/// the same version.
pub use tonic;

/// How the scaler watches queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalerOptions {
    /// Time between depth samples of a queue some stream watches, when the transport
    /// announces no arrivals or the queue is active (default 250 ms): the longest a
    /// message waits before KEDA hears of it.
    pub poll_interval: Duration,
}

impl Default for ScalerOptions {
    fn default() -> Self {
        ScalerOptions {
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// The gRPC service over `transport`, to add to a tonic server of one's own.
pub fn service(
    transport: Arc<dyn Transport>,
    options: &ScalerOptions,
) -> ExternalScalerServer<PushScaler> {
    // KEDA's requests are a name, a namespace and a few metadata strings: anything near
    // tonic's 4 MiB default is not KEDA.
    ExternalScalerServer::new(PushScaler::new(Watchers::new(
        transport,
        options.poll_interval,
    )))
    .max_decoding_message_size(MAX_REQUEST_BYTES)
}

/// Largest request the scaler decodes (64 KiB).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Serves the scaler on `listener` until the server fails.
pub async fn serve(
    listener: TcpListener,
    transport: Arc<dyn Transport>,
    options: ScalerOptions,
) -> Result<(), ScalerError> {
    serve_with_shutdown(listener, transport, options, std::future::pending()).await
}

/// Serves the scaler on `listener` until `shutdown` completes (open streams are ended).
pub async fn serve_with_shutdown(
    listener: TcpListener,
    transport: Arc<dyn Transport>,
    options: ScalerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ScalerError> {
    let addr = listener.local_addr().map_err(ScalerError::Listener)?;
    tracing::info!(%addr, broker = transport.kind(), poll_ms = options.poll_interval.as_millis() as u64, "push scaler listening");
    tonic::transport::Server::builder()
        .add_service(service(transport, &options))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|source| ScalerError::Serve {
            addr: addr.to_string(),
            source,
        })
}
