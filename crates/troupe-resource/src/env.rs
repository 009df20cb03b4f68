//! The sidecar's environment names, re-exported from `troupe_protocol::sidecar_env` so that
//! the renderer (which writes them) and `troupe sidecar` (which reads them) share one table.

pub use troupe_protocol::sidecar_env::*;
