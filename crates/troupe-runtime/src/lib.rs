//! The Python side of an actor: the runtime file shipped inside the binary, the
//! sidecar's client for the runtime socket (protocol.md §7), and the launcher that starts
//! and stops runtime processes.

pub mod client;
pub mod launcher;

/// The stdlib-only Python runtime (`troupe_runtime.py`), written out at start.
pub const RUNTIME_PY: &str = include_str!("../python/troupe_runtime.py");
