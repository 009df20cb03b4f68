//! Sidecar engine: the per-message algorithm of `docs/spec/protocol.md` §8 for one actor,
//! over any [`troupe_transport::Transport`], calling a Python runtime over its Unix socket
//! or a native (Rust) handler.

pub mod consumer;
pub mod flow_routers;
pub mod handler;
pub mod http_report;
pub mod metrics;
pub mod outage;
pub mod report;
pub mod settings;
pub mod sidecar;
pub mod tuner;
mod unparsed;

pub use settings::ActorSettings;
pub use sidecar::{Disposition, Engine, Handler};
