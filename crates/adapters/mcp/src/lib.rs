//! MCP adapter (gateway.md §3): MCP Streamable HTTP over the mesh API.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use troupe_gateway::Gateway;

/// MCP adapter settings (`ASYA_MCP_*`, or the mesh file's `gateway.mcp`).
#[derive(Debug, Clone, Default)]
pub struct McpConfig {
    /// Registry folder (`ASYA_MCP_CONFIG_DIR`): every `*.yaml`/`*.yml` with top-level `tools:`.
    pub config_dir: Option<PathBuf>,
    /// Tools declared inline (mesh file), entries shaped as in a registry file.
    pub inline_tools: Vec<Value>,
    /// Registry re-read period (`ASYA_MCP_POLL_INTERVAL`, default 10 s).
    pub poll_interval: Duration,
    /// Bearer key (`ASYA_MCP_API_KEY`); `None` = no auth.
    pub api_key: Option<String>,
}

/// Adapter errors.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The registry could not be read or validated.
    #[error("MCP tool registry: {0}")]
    Registry(String),
}

/// The MCP adapter.
#[derive(Clone)]
pub struct McpAdapter {
    #[allow(dead_code)]
    gateway: Gateway,
}

impl McpAdapter {
    /// Loads the registry once; errors name the file and the problem.
    pub fn new(gateway: Gateway, config: McpConfig) -> Result<Self, McpError> {
        let _ = config;
        Ok(McpAdapter { gateway })
    }

    /// The adapter's routes (`/mcp`, `/mcp/sse`, …), without `/health`.
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
