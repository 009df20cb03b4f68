//! Mesh API.
