//! `troupe sidecar`: one actor's sidecar as its own process, next to a runtime process
//! (a Kubernetes pod), configured only by the environment of protocol.md §15.
//!
//! - [`SidecarConfig`]: the environment, parsed and validated (pure).
//! - [`run`]: waits for the runtime (or runs a native crew actor), consumes the actor's
//!   queue with the engine until SIGTERM, and serves `/metrics`, `/healthz`, `/readyz`.

mod config;
mod error;
mod observe;
mod run;
mod runtime_end;

pub use config::{SidecarConfig, DEFAULT_METRICS_ADDR};
pub use error::SidecarError;
pub use observe::Probes;
pub use run::run;
pub use runtime_end::RuntimeEndHandler;
