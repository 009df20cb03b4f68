//! `troupe up`: a whole mesh in one process — embedded queues, one sidecar engine per
//! actor, Python runtime processes per replica with a local autoscaler, the native crew,
//! and the mesh API listener the CLI talks to.

pub mod config;
pub mod control;
pub mod error;
mod flows;
mod front;
pub mod handlers;
pub mod mesh;
pub mod pool;
mod reporting;
pub mod scaler;
pub mod statefile;

pub use config::MeshConfig;
pub use error::MeshError;
pub use mesh::{Mesh, MeshOptions};
