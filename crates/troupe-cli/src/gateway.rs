//! `troupe gateway`: the gateway on its own (a Kubernetes Deployment, or a second
//! replica next to `troupe up`), configured only by the environment of gateway.md §7.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use troupe_a2a::{A2aAdapter, A2aConfig};
use troupe_gateway::{
    AuthConfig, Gateway, GatewayConfig, Ingress, Listener, MemoryStore, SecurityConfig, TaskStore,
};
use troupe_mcp::{McpAdapter, McpConfig};
use troupe_protocol::duration::parse_go_duration;

/// How often the embedded-transport ingress refreshes the mesh's actor list.
const ACTOR_REFRESH: Duration = Duration::from_secs(2);

/// Where tasks are kept (`TROUPE_GATEWAY_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// In memory (default; one replica only).
    Memory,
    /// PostgreSQL at this URL (any number of replicas).
    Postgres(String),
}

/// How created tasks reach the actors' queues (`ASYA_QUEUE_TRANSPORT`).
#[derive(Debug, Clone, PartialEq)]
pub enum TransportChoice {
    /// The embedded queues of a running `troupe up`, reached through its control API
    /// (`TROUPE_MESH_URL`).
    Embedded {
        /// Base URL of the `troupe up` listener.
        mesh_url: String,
    },
    /// A broker, configured by the same variables as a sidecar's (protocol.md §15).
    Broker {
        /// Which broker and how to reach it.
        spec: Box<troupe_transports::TransportSpec>,
        /// `TROUPE_GATEWAY_ACTORS`: the actors that exist (create answers 404 for others);
        /// `None` accepts every actor name, as a broker cannot list its consumers.
        actors: Option<HashSet<String>>,
    },
}

/// Everything `troupe gateway` reads from the environment.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    /// Mesh API settings.
    pub gateway: GatewayConfig,
    /// Task store.
    pub store: StoreChoice,
    /// Queue transport.
    pub transport: TransportChoice,
    /// MCP listener; `None` = disabled (`TROUPE_MCP_PORT=off`).
    pub mcp_addr: Option<SocketAddr>,
    /// MCP adapter settings.
    pub mcp: McpConfig,
    /// A2A listener; `None` = disabled (`TROUPE_A2A_PORT=off`).
    pub a2a_addr: Option<SocketAddr>,
    /// A2A adapter settings.
    pub a2a: A2aConfig,
}

fn required(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    hint: &str,
) -> Result<String, String> {
    get(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{name} is required: {hint}"))
}

fn port(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u16,
    ip: IpAddr,
    can_disable: bool,
) -> Result<Option<SocketAddr>, String> {
    let Some(text) = get(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(Some(SocketAddr::new(ip, default)));
    };
    let text = text.trim();
    if can_disable && matches!(text, "off" | "false" | "disabled") {
        return Ok(None);
    }
    text.parse::<u16>()
        .map(|p| Some(SocketAddr::new(ip, p)))
        .map_err(|_| {
            let off = if can_disable {
                ", or off to disable"
            } else {
                ""
            };
            format!("{name}={text} is not a port: use a number 0-65535 (0 picks a free port){off}")
        })
}

fn duration(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
) -> Result<Duration, String> {
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(text) => parse_go_duration(text.trim())
            .map_err(|e| format!("{name}={text}: {e} (use a Go duration such as 10s)")),
    }
}

fn opt(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.trim().is_empty())
}

fn list(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    opt(get, name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().trim_end_matches('/'))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Credentials and cross-site rules (docs/security.md): the mesh API accepts
/// `TROUPE_GATEWAY_API_KEY` and the adapters' keys, plus the A2A JWT settings; sidecars
/// present `TROUPE_GATEWAY_TOKEN` (a Secret on Kubernetes); the `Host` check is on for a
/// loopback `TROUPE_GATEWAY_BIND`.
fn security_env(
    get: &dyn Fn(&str) -> Option<String>,
    ip: IpAddr,
    mcp: &McpConfig,
    a2a: &A2aConfig,
) -> SecurityConfig {
    let mut api_keys: Vec<String> = opt(get, "TROUPE_GATEWAY_API_KEY").into_iter().collect();
    api_keys.extend(mcp.api_key.clone());
    api_keys.extend(a2a.api_key.clone());
    SecurityConfig {
        client_auth: AuthConfig {
            api_keys,
            ..a2a.auth_config()
        },
        sidecar_token: opt(get, troupe_gateway::SIDECAR_TOKEN_ENV),
        cors_origins: list(get, "TROUPE_GATEWAY_CORS_ORIGINS"),
        loopback_hosts: ip
            .is_loopback()
            .then(|| list(get, "TROUPE_GATEWAY_TRUSTED_HOSTS")),
    }
}

/// Reads the configuration from `get` (the process environment in production).
pub fn parse_env(get: &dyn Fn(&str) -> Option<String>) -> Result<StandaloneConfig, String> {
    let ip: IpAddr = match opt(get, "TROUPE_GATEWAY_BIND") {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(t) => t.trim().parse().map_err(|_| {
            format!("TROUPE_GATEWAY_BIND={t} is not an IP address: use e.g. 127.0.0.1 or 0.0.0.0")
        })?,
    };
    let external = port(get, "ASYA_MESH_EXTERNAL_PORT", 8080, ip, false)?;
    let internal = port(get, "ASYA_MESH_INTERNAL_PORT", 8081, ip, false)?;
    let internal_url = required(
        get,
        "ASYA_INTERNAL_URL",
        "the internal listener's base URL that sidecars call back, e.g. http://gateway:8081",
    )?;
    let namespace = required(get, "ASYA_NAMESPACE", "the queue namespace, e.g. default")?;
    let transport_name = required(
        get,
        "ASYA_QUEUE_TRANSPORT",
        "the queue transport: rabbitmq, sqs, pubsub, nats, redis, or embedded with TROUPE_MESH_URL",
    )?;
    let transport = match transport_name.trim() {
        "embedded" => TransportChoice::Embedded {
            mesh_url: required(
                get,
                "TROUPE_MESH_URL",
                "with ASYA_QUEUE_TRANSPORT=embedded the gateway publishes through a running `troupe up`; set its URL (mesh.json `url`)",
            )?
            .trim_end_matches('/')
            .to_owned(),
        },
        other @ ("rabbitmq" | "sqs" | "pubsub" | "nats" | "redis") => TransportChoice::Broker {
            spec: Box::new(
                troupe_transports::TransportSpec::from_env(other, get).map_err(|e| e.to_string())?,
            ),
            actors: opt(get, "TROUPE_GATEWAY_ACTORS").map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
        },
        other => {
            return Err(format!(
                "ASYA_QUEUE_TRANSPORT={other} is unknown: use rabbitmq, sqs, pubsub, nats, redis, or embedded with TROUPE_MESH_URL"
            ))
        }
    };
    let store = match opt(get, "TROUPE_GATEWAY_STORE").as_deref().map(str::trim) {
        None | Some("memory") => StoreChoice::Memory,
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            StoreChoice::Postgres(url.to_owned())
        }
        Some("stateproxy") => {
            return Err("TROUPE_GATEWAY_STORE=stateproxy: Asya's state-proxy KV is not supported by this build; use memory or a postgres:// URL".into())
        }
        Some(other) => {
            return Err(format!(
                "TROUPE_GATEWAY_STORE={other} is unknown: use memory or postgres://user@host:port/db"
            ))
        }
    };
    let gateway = GatewayConfig {
        api_prefix: opt(get, "ASYA_MESH_API_PREFIX")
            .unwrap_or_else(|| troupe_gateway::DEFAULT_API_PREFIX.to_owned()),
        internal_url,
        namespace,
        external_addr: external.unwrap_or_else(|| SocketAddr::new(ip, 8080)),
        internal_addr: internal,
        backstop_interval: duration(get, "ASYA_BACKSTOP_INTERVAL", Duration::from_secs(5))?,
        limits: troupe_gateway::Limits::from_env(get).map_err(|e| e.to_string())?,
        ..GatewayConfig::default()
    };
    let mcp = McpConfig {
        config_dir: opt(get, "ASYA_MCP_CONFIG_DIR").map(PathBuf::from),
        inline_tools: Vec::new(),
        poll_interval: duration(get, "ASYA_MCP_POLL_INTERVAL", Duration::from_secs(10))?,
        api_key: opt(get, "ASYA_MCP_API_KEY"),
    };
    let a2a = A2aConfig {
        config_dir: opt(get, "ASYA_A2A_CONFIG_DIR").map(PathBuf::from),
        inline_agents: Vec::new(),
        poll_interval: duration(get, "ASYA_A2A_POLL_INTERVAL", Duration::from_secs(10))?,
        name: opt(get, "ASYA_A2A_NAME"),
        description: opt(get, "ASYA_A2A_DESCRIPTION"),
        version: opt(get, "ASYA_A2A_VERSION"),
        public_url: opt(get, "ASYA_A2A_PUBLIC_URL"),
        provider_org: opt(get, "ASYA_A2A_PROVIDER_ORG"),
        provider_url: opt(get, "ASYA_A2A_PROVIDER_URL"),
        api_key: opt(get, "ASYA_A2A_API_KEY"),
        jwt_jwks_url: opt(get, "ASYA_A2A_JWT_JWKS_URL"),
        jwt_issuer: opt(get, "ASYA_A2A_JWT_ISSUER"),
        jwt_audience: opt(get, "ASYA_A2A_JWT_AUDIENCE"),
    };
    let mut gateway = gateway;
    gateway.security = security_env(get, ip, &mcp, &a2a);
    Ok(StandaloneConfig {
        gateway,
        store,
        transport,
        mcp_addr: port(get, "TROUPE_MCP_PORT", 8082, ip, true)?,
        mcp,
        a2a_addr: port(get, "TROUPE_A2A_PORT", 8083, ip, true)?,
        a2a,
    })
}

/// Publishes through the control API of a running `troupe up`
/// (`POST /troupe/v1/queues/{actor}`), knowing its actors from `/troupe/v1/status`.
struct MeshHttpIngress {
    client: reqwest::Client,
    mesh_url: String,
    actors: RwLock<HashSet<String>>,
}

impl MeshHttpIngress {
    async fn refresh(&self) -> Result<(), String> {
        let url = format!("{}/troupe/v1/status", self.mesh_url);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("cannot reach the mesh at {}: {e}", self.mesh_url))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(format!(
                "the mesh at {} refused the gateway (401): give this gateway the mesh's {} (docs/security.md)",
                self.mesh_url,
                troupe_gateway::SIDECAR_TOKEN_ENV
            ));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("unexpected reply from {url}: {e}"))?;
        let names: HashSet<String> = body
            .get("actors")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.get("actor").and_then(serde_json::Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        *self
            .actors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = names;
        Ok(())
    }
}

#[async_trait]
impl Ingress for MeshHttpIngress {
    fn has_actor(&self, actor: &str) -> bool {
        self.actors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(actor)
    }

    async fn publish(&self, actor: &str, body: Bytes) -> Result<(), String> {
        let url = format!("{}/troupe/v1/queues/{actor}", self.mesh_url);
        let resp = self
            .client
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the mesh at {}: {e}", self.mesh_url))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered {}", resp.status()))
        }
    }
}

/// Publishes straight to the actors' broker queues.
struct BrokerIngress {
    transport: Arc<dyn troupe_transport::Transport>,
    actors: Option<HashSet<String>>,
}

#[async_trait]
impl Ingress for BrokerIngress {
    fn has_actor(&self, actor: &str) -> bool {
        troupe_protocol::queue::validate_actor_name(actor).is_ok()
            && self.actors.as_ref().is_none_or(|a| a.contains(actor))
    }

    async fn publish(&self, actor: &str, body: Bytes) -> Result<(), String> {
        let queue = self.transport.queue_name(actor);
        self.transport
            .send(&queue, body)
            .await
            .map_err(|e| e.to_string())
    }
}

async fn open_store(choice: &StoreChoice) -> Result<Arc<dyn TaskStore>, String> {
    match choice {
        StoreChoice::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreChoice::Postgres(url) => troupe_gateway::PostgresStore::connect(url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn TaskStore>)
            .map_err(|e| format!("TROUPE_GATEWAY_STORE: {e}")),
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

fn health_router(router: axum::Router) -> axum::Router {
    router.route("/health", axum::routing::get(|| async { "ok" }))
}

/// Runs the gateway until Ctrl-C / SIGTERM. Returns the exit code.
pub async fn run() -> u8 {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match parse_env(&|k| env.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("troupe gateway: {e}");
            return 2;
        }
    };
    match serve(config).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("troupe gateway: {e}");
            1
        }
    }
}

async fn serve(config: StandaloneConfig) -> Result<(), String> {
    let store = open_store(&config.store).await?;
    let ingress = match &config.transport {
        TransportChoice::Embedded { mesh_url } => {
            // The mesh's raw-publish route wants the sidecar credential.
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(t) = &config.gateway.security.sidecar_token {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| {
                        format!(
                            "{} has characters a header cannot carry",
                            troupe_gateway::SIDECAR_TOKEN_ENV
                        )
                    })?;
                v.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            let ingress = Arc::new(MeshHttpIngress {
                client: reqwest::Client::builder()
                    .default_headers(headers)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| format!("cannot build an HTTP client: {e}"))?,
                mesh_url: mesh_url.clone(),
                actors: RwLock::new(HashSet::new()),
            });
            ingress.refresh().await?;
            let weak = Arc::downgrade(&ingress);
            tokio::spawn(async move {
                let mut failing = false;
                loop {
                    tokio::time::sleep(ACTOR_REFRESH).await;
                    let Some(ingress) = weak.upgrade() else {
                        return;
                    };
                    match ingress.refresh().await {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "cannot refresh the mesh's actor list");
                        }
                        Err(_) => {}
                    }
                }
            });
            ingress as Arc<dyn Ingress>
        }
        TransportChoice::Broker { spec, actors } => {
            let options = troupe_transport::ConnectOptions::new(config.gateway.namespace.clone());
            let transport = spec
                .connect(options)
                .await
                .map_err(|e| format!("ASYA_QUEUE_TRANSPORT={}: {e}", spec.kind()))?;
            Arc::new(BrokerIngress {
                transport,
                actors: actors.clone(),
            }) as Arc<dyn Ingress>
        }
    };
    let sec = &config.gateway.security;
    if sec.sidecar_token.is_none() {
        tracing::warn!(
            "{} is not set: sidecar routes are open on a separate internal listener and closed on a shared one once client auth is configured; see docs/security.md",
            troupe_gateway::SIDECAR_TOKEN_ENV
        );
    }
    if !sec.client_auth.enabled() {
        tracing::warn!("no client auth configured (TROUPE_GATEWAY_API_KEY, ASYA_MCP_API_KEY, ASYA_A2A_API_KEY or ASYA_A2A_JWT_JWKS_URL): anyone who reaches the external listener can create, read and cancel tasks");
    }
    let gateway = Gateway::new(config.gateway.clone(), store, ingress);
    // Flows started by name, with their native start routers (`troupe flow compile`).
    let env_get = |k: &str| std::env::var(k).ok();
    if let Some(flows) = troupe_flow::shipped::from_env(&env_get).map_err(|e| e.to_string())? {
        let routers = troupe_flow::NativeRouters::new(&flows);
        let routers = (!routers.is_empty()).then(|| Arc::new(routers));
        gateway.attach_flows(Arc::new(troupe_gateway::FlowStarts::new(
            flows
                .iter()
                .map(|f| (f.name.clone(), f.entry_route(), None)),
            routers,
        )));
    }
    if let StoreChoice::Postgres(url) = &config.store {
        troupe_gateway::attach_postgres_fanout(&gateway, url)
            .await
            .map_err(|e| format!("TROUPE_GATEWAY_STORE fan-out: {e}"))?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let mut servers = Vec::new();
    let limits = config.gateway.limits.clone();
    let mut spawn = |listener: TcpListener, router: axum::Router, what: &'static str| {
        let shutdown = stopped();
        let limits = limits.clone();
        servers.push(tokio::spawn(async move {
            if let Err(e) =
                troupe_gateway::limits::serve(listener, router, &limits, shutdown, || {}).await
            {
                tracing::warn!(error = %e, "{what} listener stopped");
            }
        }));
    };
    let cfg = &config.gateway;
    let external = bind(cfg.external_addr, "mesh API, external").await?;
    let mut urls = vec![format!("external=http://{}", local(&external))];
    match cfg.internal_addr {
        Some(addr) if addr != cfg.external_addr => {
            let internal = bind(addr, "mesh API, internal").await?;
            urls.push(format!("internal=http://{}", local(&internal)));
            spawn(external, gateway.router_for(Listener::External), "external");
            spawn(internal, gateway.router_for(Listener::Internal), "internal");
        }
        _ => spawn(external, gateway.router(), "mesh API"),
    }
    let mut reloads = Vec::new();
    if let Some(addr) = config.mcp_addr {
        let mcp =
            McpAdapter::new(gateway.clone(), config.mcp.clone()).map_err(|e| e.to_string())?;
        let l = bind(addr, "MCP").await?;
        urls.push(format!("mcp=http://{}/mcp", local(&l)));
        spawn(l, health_router(mcp.router()), "MCP");
        reloads.push(mcp.spawn_reload(stopped()));
    }
    if let Some(addr) = config.a2a_addr {
        let a2a =
            A2aAdapter::new(gateway.clone(), config.a2a.clone()).map_err(|e| e.to_string())?;
        let l = bind(addr, "A2A").await?;
        urls.push(format!("a2a=http://{}/a2a/", local(&l)));
        spawn(l, health_router(a2a.router()), "A2A");
        reloads.push(a2a.spawn_reload(stopped()));
    }
    gateway.spawn_backstop(stopped());
    tracing::info!(listeners = %urls.join(" "), store = ?store_name(&config.store), "gateway up");

    wait_for_signal().await?;
    tracing::info!("gateway stopping");
    stop_tx.send_replace(true);
    gateway.close_streams();
    for s in servers.into_iter().chain(reloads) {
        let abort = s.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), s)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    Ok(())
}

fn store_name(s: &StoreChoice) -> &'static str {
    match s {
        StoreChoice::Memory => "memory",
        StoreChoice::Postgres(_) => "postgres",
    }
}

fn local(l: &TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}

async fn wait_for_signal() -> Result<(), String> {
    crate::signals::stop_signal()
        .map_err(|e| format!("signal handler: {e}"))?
        .await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("ASYA_INTERNAL_URL", "http://gw:8081"),
        ("ASYA_NAMESPACE", "prod"),
        ("ASYA_QUEUE_TRANSPORT", "embedded"),
        ("TROUPE_MESH_URL", "http://127.0.0.1:9000/"),
    ];

    #[test]
    fn defaults_follow_the_spec_table() {
        let c = parse_env(&env(BASE)).unwrap();
        assert_eq!(c.gateway.external_addr.port(), 8080);
        assert_eq!(c.gateway.internal_addr.map(|a| a.port()), Some(8081));
        assert_eq!(c.mcp_addr.map(|a| a.port()), Some(8082));
        assert_eq!(c.a2a_addr.map(|a| a.port()), Some(8083));
        assert_eq!(c.gateway.api_prefix, "/api/v1");
        assert_eq!(c.gateway.namespace, "prod");
        assert_eq!(c.gateway.backstop_interval, Duration::from_secs(5));
        assert_eq!(c.store, StoreChoice::Memory);
        assert_eq!(
            c.transport,
            TransportChoice::Embedded {
                mesh_url: "http://127.0.0.1:9000".into()
            }
        );
        assert_eq!(c.mcp.poll_interval, Duration::from_secs(10));
        assert!(c.mcp.api_key.is_none() && c.a2a.api_key.is_none());
    }

    #[test]
    fn every_setting_is_read() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("TROUPE_GATEWAY_BIND", "127.0.0.1"),
            ("ASYA_MESH_EXTERNAL_PORT", "0"),
            ("ASYA_MESH_INTERNAL_PORT", "9001"),
            ("ASYA_MESH_API_PREFIX", "/mesh-api"),
            ("ASYA_BACKSTOP_INTERVAL", "250ms"),
            ("TROUPE_GATEWAY_STORE", "postgres://u@127.0.0.1:5432/db"),
            ("ASYA_MCP_CONFIG_DIR", "/etc/mcp"),
            ("ASYA_MCP_POLL_INTERVAL", "1s"),
            ("ASYA_MCP_API_KEY", "k"),
            ("TROUPE_MCP_PORT", "off"),
            ("ASYA_A2A_NAME", "Troupe"),
            ("ASYA_A2A_JWT_JWKS_URL", "http://idp/jwks"),
            ("ASYA_A2A_JWT_ISSUER", "iss"),
            ("ASYA_A2A_JWT_AUDIENCE", "aud"),
            ("TROUPE_A2A_PORT", "0"),
        ]);
        let c = parse_env(&env(&pairs)).unwrap();
        assert_eq!(c.gateway.external_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            c.gateway.internal_addr,
            Some("127.0.0.1:9001".parse().unwrap())
        );
        assert_eq!(c.gateway.api_prefix, "/mesh-api");
        assert_eq!(c.gateway.backstop_interval, Duration::from_millis(250));
        assert_eq!(
            c.store,
            StoreChoice::Postgres("postgres://u@127.0.0.1:5432/db".into())
        );
        assert_eq!(c.mcp.config_dir, Some(PathBuf::from("/etc/mcp")));
        assert_eq!(c.mcp.poll_interval, Duration::from_secs(1));
        assert_eq!(c.mcp.api_key.as_deref(), Some("k"));
        assert_eq!(c.mcp_addr, None);
        assert_eq!(c.a2a_addr, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.a2a.name.as_deref(), Some("Troupe"));
        assert_eq!(c.a2a.jwt_issuer.as_deref(), Some("iss"));
        assert_eq!(c.a2a.jwt_audience.as_deref(), Some("aud"));
    }

    #[test]
    fn security_settings_are_read() {
        let c = parse_env(&env(BASE)).unwrap();
        let sec = &c.gateway.security;
        assert!(!sec.client_auth.enabled() && sec.sidecar_token.is_none());
        assert_eq!(sec.loopback_hosts, None, "0.0.0.0 bind: no Host check");
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("TROUPE_GATEWAY_BIND", "127.0.0.1"),
            ("TROUPE_GATEWAY_TOKEN", "tok"),
            ("TROUPE_GATEWAY_API_KEY", "gk"),
            ("ASYA_MCP_API_KEY", "mk"),
            ("ASYA_A2A_API_KEY", "ak"),
            ("ASYA_A2A_JWT_JWKS_URL", "https://idp/jwks"),
            (
                "TROUPE_GATEWAY_CORS_ORIGINS",
                "https://app.example/, http://x:3000",
            ),
            ("TROUPE_GATEWAY_TRUSTED_HOSTS", "troupe.local"),
        ]);
        let c = parse_env(&env(&pairs)).unwrap();
        let sec = &c.gateway.security;
        assert_eq!(sec.sidecar_token.as_deref(), Some("tok"));
        assert_eq!(sec.client_auth.api_keys, ["gk", "mk", "ak"]);
        assert_eq!(
            sec.client_auth.jwt_jwks_url.as_deref(),
            Some("https://idp/jwks")
        );
        assert_eq!(sec.cors_origins, ["https://app.example", "http://x:3000"]);
        assert_eq!(sec.loopback_hosts, Some(vec!["troupe.local".to_owned()]));
        assert!(
            !format!("{c:?}").contains("tok\""),
            "the token stays out of Debug"
        );
    }

    #[test]
    fn broker_transports_read_the_sidecar_variables() {
        let mut pairs: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "ASYA_QUEUE_TRANSPORT" && *k != "TROUPE_MESH_URL")
            .collect();
        pairs.extend([
            ("ASYA_QUEUE_TRANSPORT", "rabbitmq"),
            ("ASYA_RABBITMQ_URL", "amqp://u:p@mq:5672/%2f"),
            ("TROUPE_GATEWAY_ACTORS", "a, b"),
        ]);
        let c = parse_env(&env(&pairs)).unwrap();
        match c.transport {
            TransportChoice::Broker { spec, actors } => {
                assert_eq!(spec.kind(), "rabbitmq");
                assert_eq!(
                    actors,
                    Some(HashSet::from(["a".to_owned(), "b".to_owned()]))
                );
            }
            other => panic!("{other:?}"),
        }
        pairs.retain(|(k, _)| *k != "TROUPE_GATEWAY_ACTORS" && *k != "ASYA_QUEUE_TRANSPORT");
        pairs.push(("ASYA_QUEUE_TRANSPORT", "nats"));
        let e = parse_env(&env(&pairs)).unwrap_err();
        assert!(e.contains("TROUPE_NATS_URL"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (drop, needle) in [
            ("ASYA_INTERNAL_URL", "ASYA_INTERNAL_URL is required"),
            ("ASYA_NAMESPACE", "ASYA_NAMESPACE is required"),
            ("ASYA_QUEUE_TRANSPORT", "ASYA_QUEUE_TRANSPORT is required"),
            ("TROUPE_MESH_URL", "TROUPE_MESH_URL is required"),
        ] {
            let pairs: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != drop).collect();
            let e = parse_env(&env(&pairs)).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        for (k, v, needle) in [
            ("ASYA_MESH_EXTERNAL_PORT", "http", "is not a port"),
            ("ASYA_MESH_INTERNAL_PORT", "off", "is not a port"),
            ("ASYA_BACKSTOP_INTERVAL", "5", "Go duration"),
            ("TROUPE_GATEWAY_STORE", "redis://x", "is unknown"),
            ("TROUPE_GATEWAY_STORE", "stateproxy", "not supported"),
            ("ASYA_QUEUE_TRANSPORT", "kafka", "is unknown"),
            ("TROUPE_GATEWAY_BIND", "localhost", "not an IP"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.retain(|(key, _)| *key != k);
            pairs.push((k, v));
            let e = parse_env(&env(&pairs)).unwrap_err();
            assert!(e.contains(needle), "{k}={v}: {e}");
            assert!(e.contains(k), "{e}");
        }
    }
}
