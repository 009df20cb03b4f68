//! Sidecar engine.
