//! Gateway settings (gateway.md §1, §7).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Default `ASYA_MESH_API_PREFIX`; also the prefix sidecars always call.
pub const DEFAULT_API_PREFIX: &str = "/api/v1";

/// Gateway configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Path prefix of the mesh API (`ASYA_MESH_API_PREFIX`).
    pub api_prefix: String,
    /// Base URL sidecars call back on (`ASYA_INTERNAL_URL`), stamped as `x-asya-gateway-url`.
    pub internal_url: String,
    /// Queue namespace (`ASYA_NAMESPACE`); a create naming another namespace finds no actor.
    pub namespace: String,
    /// External listener (`ASYA_MESH_EXTERNAL_PORT`), used by [`crate::Gateway::serve_configured`].
    pub external_addr: SocketAddr,
    /// Separate internal listener (`ASYA_MESH_INTERNAL_PORT`); `None` serves the internal
    /// routes on the external listener.
    pub internal_addr: Option<SocketAddr>,
    /// SLA backstop period (`ASYA_BACKSTOP_INTERVAL`).
    pub backstop_interval: Duration,
    /// SSE keepalive comment period.
    pub keepalive_interval: Duration,
    /// Events buffered per SSE subscriber before the overflow rule applies.
    pub subscriber_buffer: usize,
    /// Body sizes, timeouts and the connection cap of every listener.
    pub limits: crate::limits::Limits,
    /// Credentials and cross-site rules (docs/security.md).
    pub security: crate::security::SecurityConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            api_prefix: DEFAULT_API_PREFIX.to_owned(),
            internal_url: String::new(),
            namespace: "default".to_owned(),
            external_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            internal_addr: None,
            backstop_interval: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(15),
            subscriber_buffer: 100,
            limits: crate::limits::Limits::default(),
            security: crate::security::SecurityConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// Defaults with the given internal URL (e.g. `http://127.0.0.1:8080`).
    pub fn with_internal_url(internal_url: impl Into<String>) -> Self {
        GatewayConfig {
            internal_url: internal_url.into(),
            ..Self::default()
        }
    }

    /// The prefix without a trailing slash (`""` for the root).
    pub(crate) fn prefix(&self) -> &str {
        self.api_prefix.trim_end_matches('/')
    }
}
