//! Embedded durable queue transport.
