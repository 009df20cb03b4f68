//! The gateway's front doors in `troupe up`: the task store, the MCP and A2A adapters,
//! and the listeners they are served on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use troupe_a2a::{A2aAdapter, A2aConfig};
use troupe_gateway::{AuthConfig, Gateway, MemoryStore, SecurityConfig, SqliteStore, TaskStore};
use troupe_mcp::{McpAdapter, McpConfig};

use crate::config::{AdapterSettings, GatewayStore, MeshConfig};
use crate::MeshError;

/// Registry re-read period when the mesh file sets none (gateway.md §3, §4).
const DEFAULT_POLL: Duration = Duration::from_secs(10);

/// The gateway's credentials and cross-site rules in `troupe up` (docs/security.md).
/// The mesh API accepts `gateway.api_key` and every adapter key (each already lets its
/// holder run tasks) and the A2A JWT settings; the `Host` check is on when every listener
/// of the mesh is on loopback.
pub(crate) fn security(config: &MeshConfig, sidecar_token: String) -> SecurityConfig {
    let g = &config.gateway;
    let a2a = a2a_config(&g.a2a);
    let mut api_keys: Vec<String> = g.api_key.iter().cloned().collect();
    api_keys.extend(mcp_config(&g.mcp).api_key);
    api_keys.extend(a2a.api_key.clone());
    let all_loopback = std::iter::once(config.gateway_listen)
        .chain(g.mcp.listen)
        .chain(g.a2a.listen)
        .all(|a| a.ip().is_loopback());
    SecurityConfig {
        client_auth: AuthConfig {
            api_keys,
            ..a2a.auth_config()
        },
        sidecar_token: Some(sidecar_token),
        cors_origins: g.cors_origins.clone(),
        loopback_hosts: all_loopback.then(|| g.trusted_hosts.clone()),
    }
}

/// Opens the task store named by `gateway.store`.
pub(crate) async fn open_store(config: &MeshConfig) -> Result<Arc<dyn TaskStore>, MeshError> {
    match &config.gateway.store {
        GatewayStore::Memory => Ok(Arc::new(MemoryStore::new())),
        GatewayStore::Sqlite => {
            let db = config.state_dir.join("gateway.db");
            let store = SqliteStore::open(&db).map_err(|e| MeshError::StateDir {
                path: db.display().to_string(),
                message: e.to_string(),
            })?;
            Ok(Arc::new(store))
        }
        GatewayStore::Postgres(url) => open_postgres(url).await,
    }
}

async fn open_postgres(url: &str) -> Result<Arc<dyn TaskStore>, MeshError> {
    let store = troupe_gateway::PostgresStore::connect(url)
        .await
        .map_err(|e| MeshError::Gateway(format!("gateway.store: {e}")))?;
    Ok(Arc::new(store))
}

/// With a shared store, joins the other gateway replicas' event bus so any replica can
/// serve any task's SSE stream.
pub(crate) async fn attach_fanout(config: &MeshConfig, gateway: &Gateway) -> Result<(), MeshError> {
    if let GatewayStore::Postgres(url) = &config.gateway.store {
        troupe_gateway::attach_postgres_fanout(gateway, url)
            .await
            .map_err(|e| MeshError::Gateway(format!("gateway.store fan-out: {e}")))?;
    }
    Ok(())
}

/// An adapter served on a listener of its own.
pub(crate) struct OwnListener {
    /// What it serves, for logs.
    pub(crate) what: &'static str,
    /// The bound listener.
    pub(crate) listener: TcpListener,
    /// Adapter routes plus `/health`.
    pub(crate) router: Router,
}

/// The adapters, ready to serve.
pub(crate) struct Adapters {
    /// Routes to merge into the mesh API listener.
    pub(crate) on_main: Router,
    /// Adapters with their own `listen`.
    pub(crate) own: Vec<OwnListener>,
    /// The MCP endpoint a client pastes (`{base}/mcp`).
    pub(crate) mcp_url: String,
    /// The A2A JSON-RPC endpoint a client pastes (`{base}/a2a/`).
    pub(crate) a2a_url: String,
    /// The adapters, for registry reloads.
    pub(crate) mcp: McpAdapter,
    /// See `mcp`.
    pub(crate) a2a: A2aAdapter,
}

fn option(s: &AdapterSettings, key: &str) -> Option<String> {
    s.options.get(key).filter(|v| !v.is_empty()).cloned()
}

/// The MCP adapter settings of the mesh file.
pub(crate) fn mcp_config(s: &AdapterSettings) -> McpConfig {
    McpConfig {
        config_dir: s.registry_dir.clone(),
        inline_tools: s.inline.clone(),
        poll_interval: s.poll_interval.unwrap_or(DEFAULT_POLL),
        api_key: option(s, "api_key"),
    }
}

/// The A2A adapter settings of the mesh file.
pub(crate) fn a2a_config(s: &AdapterSettings) -> A2aConfig {
    A2aConfig {
        config_dir: s.registry_dir.clone(),
        inline_agents: s.inline.clone(),
        poll_interval: s.poll_interval.unwrap_or(DEFAULT_POLL),
        name: option(s, "name"),
        description: option(s, "description"),
        version: option(s, "version"),
        public_url: option(s, "public_url"),
        provider_org: option(s, "provider_org"),
        provider_url: option(s, "provider_url"),
        api_key: option(s, "api_key"),
        jwt_jwks_url: option(s, "jwt_jwks_url"),
        jwt_issuer: option(s, "jwt_issuer"),
        jwt_audience: option(s, "jwt_audience"),
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<(TcpListener, String), MeshError> {
    let err = |e: std::io::Error| MeshError::Listen {
        addr: format!("{addr} ({what})"),
        message: e.to_string(),
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, format!("http://{local}")))
}

fn with_health(router: Router) -> Router {
    router.route("/health", axum::routing::get(|| async { "ok" }))
}

/// Builds both adapters (loading their registries once) and binds their own listeners.
pub(crate) async fn adapters(
    config: &MeshConfig,
    gateway: &Gateway,
    main_url: &str,
    flows: &[(String, Option<String>)],
) -> Result<Adapters, MeshError> {
    let gw = &config.gateway;
    let mut mcp_settings = mcp_config(&gw.mcp);
    mcp_settings.inline_tools = with_flows(&mcp_settings.inline_tools, flows, false);
    let mut a2a_settings = a2a_config(&gw.a2a);
    a2a_settings.inline_agents = with_flows(&a2a_settings.inline_agents, flows, true);
    let mcp = McpAdapter::new(gateway.clone(), mcp_settings)
        .map_err(|e| MeshError::Gateway(e.to_string()))?;
    let a2a = A2aAdapter::new(gateway.clone(), a2a_settings)
        .map_err(|e| MeshError::Gateway(e.to_string()))?;
    let mut on_main = Router::new();
    let mut own = Vec::new();
    let mut urls = [main_url.to_owned(), main_url.to_owned()];
    for (i, (what, settings, router)) in [
        ("MCP adapter", &gw.mcp, mcp.router()),
        ("A2A adapter", &gw.a2a, a2a.router()),
    ]
    .into_iter()
    .enumerate()
    {
        match settings.listen {
            None => on_main = on_main.merge(router),
            Some(addr) => {
                let (listener, url) = bind(addr, what).await?;
                urls[i] = url;
                own.push(OwnListener {
                    what,
                    listener,
                    router: with_health(router),
                });
            }
        }
    }
    let [mcp_base, a2a_base] = urls;
    let (mcp_url, a2a_url) = (format!("{mcp_base}/mcp"), format!("{a2a_base}/a2a/"));
    Ok(Adapters {
        on_main,
        own,
        mcp_url,
        a2a_url,
        mcp,
        a2a,
    })
}

/// Every flow of the mesh is also an MCP tool and an A2A agent with one skill, under the
/// flow's name, unless the mesh file already registers that name (its entry wins, so a
/// flow can be given a schema, a timeout or progress notifications).
fn with_flows(
    inline: &[serde_json::Value],
    flows: &[(String, Option<String>)],
    agents: bool,
) -> Vec<serde_json::Value> {
    let mut out = inline.to_vec();
    for (name, description) in flows {
        let taken = inline
            .iter()
            .any(|e| e.get("name").and_then(serde_json::Value::as_str) == Some(name.as_str()));
        if taken {
            continue;
        }
        let description = description
            .clone()
            .unwrap_or_else(|| format!("Runs the {name} flow"));
        out.push(if agents {
            serde_json::json!({"name": name, "actor": name, "description": description,
                               "skills": [{"id": name, "name": name, "description": description}]})
        } else {
            serde_json::json!({"name": name, "actor": name, "description": description})
        });
    }
    out
}
