//! MCP adapter (gateway.md §3): MCP Streamable HTTP over the mesh API.
//!
//! - `POST /mcp`, `GET /mcp`, `DELETE /mcp`: Streamable HTTP (protocol versions
//!   [`SUPPORTED_VERSIONS`], sessions in `Mcp-Session-Id`).
//! - `GET /mcp/sse` + `POST /mcp/message?sessionId=`: the legacy HTTP+SSE transport.
//! - Tools come from a registry of YAML files and inline entries, re-read periodically
//!   ([`McpAdapter::spawn_reload`]); a call creates a task at the tool's entry actor and
//!   follows it in-process through [`Gateway::follow`].

mod call;
mod http;
mod registry;
mod rpc;
mod session;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use troupe_gateway::Gateway;

pub use registry::{Tool, DEFAULT_TOOL_TIMEOUT_S};
pub use rpc::{LATEST_VERSION, SERVER_NAME, SUPPORTED_VERSIONS};

use registry::{Registry, RegistrySource};
use session::Sessions;

/// Registry re-read period when `poll_interval` is zero.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Sessions unused this long, with no open stream, are forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// MCP adapter settings (`ASYA_MCP_*`, or the mesh file's `gateway.mcp`).
#[derive(Clone, Default)]
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

// Written by hand so that the API key never reaches a log line through `{:?}`.
impl std::fmt::Debug for McpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpConfig")
            .field("config_dir", &self.config_dir)
            .field("inline_tools", &self.inline_tools)
            .field("poll_interval", &self.poll_interval)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl McpConfig {
    /// The client auth these settings configure (the bearer key).
    pub fn auth_config(&self) -> troupe_gateway::AuthConfig {
        troupe_gateway::AuthConfig {
            api_keys: self.api_key.iter().cloned().collect(),
            ..troupe_gateway::AuthConfig::default()
        }
    }
}

/// Adapter errors.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The registry could not be read or validated.
    #[error("MCP tool registry: {0}")]
    Registry(String),
}

/// State shared by the routes and the reload task.
pub(crate) struct Inner {
    pub(crate) gateway: Gateway,
    pub(crate) registry: Registry,
    source: RegistrySource,
    poll_interval: Duration,
    pub(crate) auth: troupe_gateway::Auth,
    pub(crate) sessions: Sessions,
    /// Set at shutdown: every open SSE stream ends so graceful shutdown can finish.
    pub(crate) closing: watch::Sender<bool>,
    /// The last reload problem, so a broken file is reported once, not every poll.
    last_error: Mutex<Option<String>>,
}

/// The MCP adapter.
#[derive(Clone)]
pub struct McpAdapter {
    inner: Arc<Inner>,
}

impl McpAdapter {
    /// Loads the registry once; errors name the file and the problem.
    pub fn new(gateway: Gateway, config: McpConfig) -> Result<Self, McpError> {
        let auth = troupe_gateway::Auth::from_config(&config.auth_config());
        let source = RegistrySource {
            dir: config.config_dir,
            inline: config.inline_tools,
        };
        let set = source
            .load()
            .map_err(|e| McpError::Registry(e.to_string()))?;
        let poll_interval = if config.poll_interval.is_zero() {
            DEFAULT_POLL_INTERVAL
        } else {
            config.poll_interval
        };
        let (closing, _) = watch::channel(false);
        Ok(McpAdapter {
            inner: Arc::new(Inner {
                gateway,
                registry: Registry::new(set),
                source,
                poll_interval,
                auth,
                sessions: Sessions::default(),
                closing,
                last_error: Mutex::new(None),
            }),
        })
    }

    /// The adapter's routes (`/mcp`, `/mcp/sse`, …), without `/health`.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    /// The tools currently registered.
    pub fn tools(&self) -> Vec<Tool> {
        self.inner.registry.snapshot().tools().to_vec()
    }

    /// Number of open MCP sessions (both transports).
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Re-reads the registry now. `Ok(true)` when the tool set changed (connected
    /// sessions were sent `notifications/tools/list_changed`); on error the previous
    /// set stays.
    pub async fn reload(&self) -> Result<bool, McpError> {
        self.inner.reload().await
    }

    /// Ends every open SSE stream of the adapter (graceful shutdown waits on them).
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Re-reads the registry every `poll_interval` until `shutdown` completes.
    pub fn spawn_reload<F>(&self, shutdown: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let period = inner.poll_interval;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => {
                        inner.closing.send_replace(true);
                        break;
                    }
                    _ = tick.tick() => {
                        // Errors were logged by reload; the old set keeps serving.
                        let _ = inner.reload().await;
                        inner.sessions.sweep(SESSION_IDLE);
                    }
                }
            }
        })
    }
}

impl Inner {
    async fn reload(&self) -> Result<bool, McpError> {
        let source = self.source.clone();
        // File reads off the async threads: `troupe up` runs on a current-thread runtime.
        let loaded = tokio::task::spawn_blocking(move || source.load())
            .await
            .map_err(|e| McpError::Registry(format!("reload task failed: {e}")))?;
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match loaded {
            Ok(set) => {
                *last = None;
                drop(last);
                let count = set.tools().len();
                if !self.registry.replace(set) {
                    return Ok(false);
                }
                tracing::info!(tools = count, "MCP tool registry changed");
                self.sessions.broadcast(&json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/tools/list_changed",
                }));
                Ok(true)
            }
            Err(e) => {
                let text = e.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!(
                        file = %e.source,
                        problem = %e.problem,
                        "MCP tool registry not reloaded; the previous tools stay"
                    );
                    *last = Some(text.clone());
                }
                Err(McpError::Registry(text))
            }
        }
    }
}
