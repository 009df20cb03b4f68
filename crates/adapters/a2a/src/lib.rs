//! A2A adapter (gateway.md §4): A2A JSON-RPC and the agent card over the mesh API.
//!
//! Speaks A2A v0.3 (`message/send`, `message/stream`, `tasks/*`, `kind`-tagged objects,
//! hyphenated states such as `input-required`). The adapter runs in-process with the
//! mesh API: an A2A task id is the mesh task id, chosen before creation so the payload
//! can carry it.

mod mapping;
mod registry;
mod relay;
mod rpc;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use troupe_gateway::Gateway;

use crate::registry::{card_skills, Registry, DEFAULT_MODES};
use crate::rpc::{err_body, json_reply, RpcError};
use troupe_gateway::auth::{Auth, AuthConfig, Caller};
use troupe_gateway::security::SiteRules;

/// Registry re-read period when `poll_interval` is zero.
const DEFAULT_POLL: Duration = Duration::from_secs(10);
/// Streaming keep-alive period in milliseconds (§4: 15 s).
const KEEPALIVE_MS: u64 = 15_000;
/// The A2A protocol version this adapter speaks.
pub const PROTOCOL_VERSION: &str = "0.3.0";

/// A2A adapter settings (`ASYA_A2A_*`, or the mesh file's `gateway.a2a`).
#[derive(Clone, Default)]
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

// Written by hand so that the API key never reaches a log line through `{:?}`.
impl std::fmt::Debug for A2aConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aConfig")
            .field("config_dir", &self.config_dir)
            .field("inline_agents", &self.inline_agents)
            .field("poll_interval", &self.poll_interval)
            .field("name", &self.name)
            .field("description", &self.description)
            .field("version", &self.version)
            .field("public_url", &self.public_url)
            .field("provider_org", &self.provider_org)
            .field("provider_url", &self.provider_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("jwt_jwks_url", &self.jwt_jwks_url)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .finish()
    }
}

/// Adapter errors.
#[derive(Debug, thiserror::Error)]
pub enum A2aError {
    /// The registry could not be read or validated.
    #[error("A2A agent registry: {0}")]
    Registry(String),
    /// The settings cannot be used (e.g. the JWKS client could not be built).
    #[error("A2A adapter settings: {0}")]
    Config(String),
}

impl A2aConfig {
    /// The client auth these settings configure (API key, JWT).
    pub fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            api_keys: self.api_key.iter().cloned().collect(),
            jwt_jwks_url: self.jwt_jwks_url.clone(),
            jwt_issuer: self.jwt_issuer.clone(),
            jwt_audience: self.jwt_audience.clone(),
        }
    }
}

/// The A2A adapter.
#[derive(Clone)]
pub struct A2aAdapter {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) gateway: Gateway,
    config: A2aConfig,
    pub(crate) registry: Registry,
    pub(crate) auth: Auth,
    /// Set once the host shuts down: open streams end.
    pub(crate) closing: watch::Sender<bool>,
    keepalive_ms: AtomicU64,
}

impl A2aAdapter {
    /// Loads the registry once; errors name the file and the problem.
    pub fn new(gateway: Gateway, config: A2aConfig) -> Result<Self, A2aError> {
        let registry = Registry::open(config.config_dir.clone(), config.inline_agents.clone())
            .map_err(A2aError::Registry)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| A2aError::Config(format!("HTTP client for the JWKS: {e}")))?;
        let auth = Auth::new(&config.auth_config(), http);
        let (closing, _) = watch::channel(false);
        Ok(A2aAdapter {
            inner: Arc::new(Inner {
                gateway,
                config,
                registry,
                auth,
                closing,
                keepalive_ms: AtomicU64::new(KEEPALIVE_MS),
            }),
        })
    }

    /// The same adapter with another streaming keep-alive period (tests; default 15 s).
    pub fn with_keepalive(self, period: Duration) -> Self {
        let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        self.inner.keepalive_ms.store(ms, Ordering::Relaxed);
        self
    }

    /// Names of the current agents (registry order).
    pub fn agent_names(&self) -> Vec<String> {
        self.inner
            .registry
            .agents()
            .iter()
            .map(|a| a.name.clone())
            .collect()
    }

    /// Re-reads the registry now; `true` when the agent set changed.
    pub fn reload(&self) -> bool {
        self.inner.registry.reload()
    }

    /// Ends every open A2A stream (what `spawn_reload`'s shutdown also does).
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    /// The adapter's routes (`/a2a/`, `/.well-known/…`), without `/health`.
    pub fn router(&self) -> axum::Router {
        let router = axum::Router::new()
            .route("/.well-known/agent.json", get(card_handler))
            .route("/.well-known/agent-card.json", get(card_handler))
            .route("/a2a", post(rpc_root))
            .route("/a2a/", post(rpc_root))
            .route("/a2a/tasks/{op}", post(task_op))
            .route("/a2a/{agent}", post(rpc_agent))
            .with_state(self.inner.clone());
        // Without a key too: a web page must not reach the agents (docs/security.md).
        SiteRules::json(&self.inner.gateway.config().security).apply(router)
    }

    /// Re-reads the registry every `poll_interval` until `shutdown` completes; then
    /// ends the open A2A streams.
    pub fn spawn_reload<F>(&self, shutdown: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = self.inner.clone();
        let period = if inner.config.poll_interval.is_zero() {
            DEFAULT_POLL
        } else {
            inner.config.poll_interval
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tick.tick() => {
                        let inner = inner.clone();
                        // File reads block; keep them off the (possibly single) runtime thread.
                        if let Err(e) = tokio::task::spawn_blocking(move || inner.registry.reload()).await {
                            tracing::warn!(error = %e, "A2A registry reload task failed");
                        }
                    }
                }
            }
            inner.closing.send_replace(true);
        })
    }
}

impl Inner {
    /// The streaming keep-alive period.
    pub(crate) fn keepalive(&self) -> Duration {
        Duration::from_millis(self.keepalive_ms.load(Ordering::Relaxed))
    }

    /// The agent card (§4 "Agent card"); `host_url` is `scheme://host` of the request.
    pub(crate) fn card(&self, host_url: &str) -> Value {
        let agents = self.registry.agents();
        let c = &self.config;
        let url = c
            .public_url
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("{host_url}/a2a/"));
        let modes = |pick: fn(&registry::Agent) -> &Vec<String>| -> Value {
            match agents.first() {
                Some(a) => json!(pick(a)),
                None => json!(DEFAULT_MODES),
            }
        };
        let mut card = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "name": c.name.clone().unwrap_or_else(|| "Troupe".into()),
            "description": c.description.clone().unwrap_or_else(|| "Agents of a Troupe actor mesh".into()),
            "version": c.version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
            "url": url,
            "preferredTransport": "JSONRPC",
            "capabilities": {
                "streaming": agents.iter().any(|a| a.streaming),
                "pushNotifications": false,
                "stateTransitionHistory": false,
            },
            "defaultInputModes": modes(|a| &a.input_modes),
            "defaultOutputModes": modes(|a| &a.output_modes),
            "skills": card_skills(&agents),
        });
        if c.provider_org.is_some() || c.provider_url.is_some() {
            card["provider"] = json!({
                "organization": c.provider_org.clone().unwrap_or_default(),
                "url": c.provider_url.clone().unwrap_or_default(),
            });
        }
        if self.auth.enabled() {
            let mut schemes = serde_json::Map::new();
            let mut security = Vec::new();
            if self.auth.api_key_enabled() {
                schemes.insert(
                    "apiKey".into(),
                    json!({"type": "apiKey", "in": "header", "name": "X-API-Key"}),
                );
                security.push(json!({"apiKey": []}));
            }
            if self.auth.jwt_enabled() {
                schemes.insert(
                    "bearer".into(),
                    json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
                );
                security.push(json!({"bearer": []}));
            }
            card["securitySchemes"] = Value::Object(schemes);
            card["security"] = Value::Array(security);
        }
        card
    }

    async fn caller(&self, headers: &HeaderMap) -> Result<Caller, Response> {
        self.auth.authenticate(headers).await.map_err(|reason| {
            tracing::debug!(reason = %reason, "A2A request rejected");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"troupe-a2a\"")],
                axum::Json(json!({"error": format!("unauthorized: {reason}")})),
            )
                .into_response()
        })
    }
}

/// `scheme://host` of a request (`X-Forwarded-Proto`/`-Host` honoured).
fn host_url(headers: &HeaderMap) -> String {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let proto = h("x-forwarded-proto").unwrap_or("http");
    match h("x-forwarded-host").or_else(|| h("host")) {
        Some(host) => format!("{proto}://{host}"),
        None => String::new(),
    }
}

async fn card_handler(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    axum::Json(inner.card(&host_url(&headers))).into_response()
}

async fn rpc_root(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    rpc(inner, headers, None, body).await
}

async fn rpc_agent(
    State(inner): State<Arc<Inner>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rpc(inner, headers, Some(agent), body).await
}

async fn rpc(
    inner: Arc<Inner>,
    headers: HeaderMap,
    preselected: Option<String>,
    body: Bytes,
) -> Response {
    let caller = match inner.caller(&headers).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let err = RpcError::parse(format!("invalid JSON: {e}"));
            return json_reply(err_body(&Value::Null, &err));
        }
    };
    inner
        .handle_rpc(caller, preselected, req, host_url(&headers))
        .await
}

/// REST aliases `POST /a2a/tasks/{id}:cancel` and `POST /a2a/tasks/{id}:pause`.
async fn task_op(
    State(inner): State<Arc<Inner>>,
    Path(op): Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = match inner.caller(&headers).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let not_found = |m: String| (StatusCode::NOT_FOUND, axum::Json(json!({"error": m})));
    let Some((id, action)) = op.rsplit_once(':') else {
        return not_found(format!(
            "unknown task operation '{op}': use POST /a2a/tasks/ID:cancel or ID:pause"
        ))
        .into_response();
    };
    let res = match action {
        "cancel" => inner.cancel_task(&caller, id).await,
        "pause" => inner.pause_task(&caller, id).await,
        other => {
            return not_found(format!(
                "unknown task operation '{other}': use :cancel or :pause"
            ))
            .into_response()
        }
    };
    match res {
        Ok(task) => axum::Json(task).into_response(),
        Err(e) => {
            let code = match e.code {
                -32001 => StatusCode::NOT_FOUND,
                -32002 => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (code, axum::Json(json!({"error": e.message}))).into_response()
        }
    }
}
