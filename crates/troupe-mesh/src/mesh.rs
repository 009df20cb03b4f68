//! Starting, running and stopping a whole mesh in one process.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use troupe_crew::{CrewConfig, FanIn, Pause, Resume, Sink, Sump};
use troupe_engine::consumer::run_replica;
use troupe_engine::handler::{EndHandler, EndOutcome, Requeue};
use troupe_engine::metrics::ActorStats;
use troupe_engine::{ActorSettings, Engine, Handler};
use troupe_gateway::{Gateway, GatewayConfig, Ingress, Task, TaskData, TaskStatus, TaskStore};
use troupe_protocol::{Envelope, SystemClock};
use troupe_runtime::launcher::{write_runtime_file, RuntimeSpec};
use troupe_transport::Transport;
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

use crate::config::{ActorConfig, CrewActor, MeshConfig};
use crate::control::{self, ActorView};
use crate::pool::{ActorPool, ReplicaTemplate};
use crate::{scaler, statefile, MeshError};

/// Crew actor names in the order they start.
pub const CREW: [&str; 4] = ["x-sink", "x-sump", "x-pause", "x-resume"];

/// Knobs of `troupe up` that are not in the mesh file.
#[derive(Clone, Default)]
pub struct MeshOptions {
    /// Grace period for in-flight messages on shutdown (default 30 s).
    pub grace: Option<Duration>,
    /// Receives `(id, phase)` of every envelope x-sink consumes (benchmarks, tests).
    pub sink_tap: Option<mpsc::UnboundedSender<Envelope>>,
    /// Skip the handler import check (already done by the caller).
    pub skip_handler_check: bool,
    /// `troupe up --no-gateway`: no mesh API, MCP or A2A routes; sidecars do not report
    /// (stealth mode). The control routes (`troupe status`, `troupe result`) stay.
    pub no_gateway: bool,
    /// `troupe up --no-native-routers`: every flow router runs as a Python router actor
    /// (Asya's model), for comparison and for debugging the compiled flow.
    pub no_native_routers: bool,
}

/// A running mesh.
pub struct Mesh {
    config: MeshConfig,
    transport: Arc<dyn Transport>,
    pools: Vec<Arc<ActorPool>>,
    crew: Vec<(Arc<Engine>, watch::Sender<bool>, JoinHandle<()>)>,
    scalers: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    adapter_servers: Vec<JoinHandle<()>>,
    gateway: Gateway,
    url: String,
    grace: Duration,
}

struct MeshIngress {
    transport: Arc<dyn Transport>,
    actors: HashSet<String>,
}

#[async_trait]
impl Ingress for MeshIngress {
    fn has_actor(&self, actor: &str) -> bool {
        self.actors.contains(actor)
    }

    async fn publish(&self, actor: &str, body: Bytes) -> Result<(), String> {
        let queue = self.transport.queue_name(actor);
        self.transport
            .send(&queue, body)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Forwards what x-sink consumed to a tap, after the real sink handled it.
struct TappedSink {
    inner: Sink,
    tap: mpsc::UnboundedSender<Envelope>,
}

#[async_trait]
impl EndHandler for TappedSink {
    async fn handle(&self, envelope: &Envelope) -> Result<EndOutcome, Requeue> {
        let outcome = self.inner.handle(envelope).await?;
        let _ = self.tap.send(envelope.clone());
        Ok(outcome)
    }
}

fn state_err(path: &Path, e: impl std::fmt::Display) -> MeshError {
    MeshError::StateDir {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Mesh {
    /// Checks handlers, opens the queues, starts the crew, the mesh API and the
    /// autoscalers. Returns once the listener is up and `mesh.json` is written.
    pub async fn start(mut config: MeshConfig, options: MeshOptions) -> Result<Mesh, MeshError> {
        let state = config.state_dir.clone();
        for sub in ["", "queues", "run", "runtime"] {
            std::fs::create_dir_all(state.join(sub)).map_err(|e| state_err(&state.join(sub), e))?;
        }
        if let Some(prev) = statefile::read(&state) {
            if statefile::pid_alive(prev.pid) && prev.pid != std::process::id() {
                return Err(state_err(
                    &state,
                    format!(
                        "a mesh is already running here (pid {}, {}); stop it first",
                        prev.pid, prev.url
                    ),
                ));
            }
        }
        // Compiled first: a flow that does not compile stops the start (exit 2), and the
        // actors it adds must exist before handlers are checked and pools created.
        let flows = crate::flows::expand(&mut config, !options.no_native_routers)?;
        let runtime_file =
            write_runtime_file(&state.join("runtime")).map_err(|e| state_err(&state, e))?;
        if !options.skip_handler_check {
            crate::handlers::check_handlers(&config, &runtime_file).await?;
        }
        let transport = open_transport(&config, &state).await?;
        let listener = tokio::net::TcpListener::bind(config.gateway_listen)
            .await
            .map_err(|e| MeshError::Listen {
                addr: config.gateway_listen.to_string(),
                message: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| MeshError::Listen {
            addr: config.gateway_listen.to_string(),
            message: e.to_string(),
        })?;
        let url = format!("http://{addr}");

        let mut actors: HashSet<String> = config.actors.iter().map(|a| a.name.clone()).collect();
        actors.extend(CREW.iter().map(|c| (*c).to_owned()));
        let ingress = Arc::new(MeshIngress {
            transport: transport.clone(),
            actors,
        });
        let store = crate::front::open_store(&config).await?;
        restore_paused(store.as_ref(), &state).await;
        // The sidecar credential: shared with `troupe gateway` replicas and standalone
        // sidecars through the environment, else fresh for this run. Only a shared one is
        // sent to other gateways: a generated token never leaves the process, so an
        // envelope naming a foreign gateway URL cannot harvest it.
        let shared_token = std::env::var(troupe_gateway::SIDECAR_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty());
        let sidecar_token = shared_token
            .clone()
            .unwrap_or_else(troupe_gateway::security::generate_token);
        let mut gateway_config = GatewayConfig {
            internal_url: url.clone(),
            namespace: config.namespace.clone(),
            security: crate::front::security(&config, sidecar_token.clone()),
            ..GatewayConfig::default()
        };
        if let Some(every) = config.gateway.backstop_interval {
            gateway_config.backstop_interval = every;
        }
        gateway_config.limits = troupe_gateway::Limits::from_env(|k| std::env::var(k).ok())
            .map_err(|e| MeshError::Gateway(e.to_string()))?;
        let limits = gateway_config.limits.clone();
        let gateway = Gateway::new(gateway_config, store.clone(), ingress);
        gateway.attach_flows(Arc::new(flows.starts()));
        if !options.no_gateway {
            crate::front::attach_fanout(&config, &gateway).await?;
        }
        let reporter: Arc<dyn troupe_engine::report::Reporter> = if options.no_gateway {
            Arc::new(troupe_engine::report::NoReporter)
        } else {
            Arc::new(crate::reporting::RoutedReporter {
                local_url: url.clone(),
                local: gateway.reporter(),
                remote: troupe_engine::http_report::HttpReporter::with_token(
                    shared_token.as_deref(),
                )
                .map_err(MeshError::Gateway)?,
            })
        };
        let gateway_url = (!options.no_gateway).then(|| url.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let grace = options.grace.unwrap_or(Duration::from_secs(30));
        let dyn_transport = transport.clone();

        let known_actors: Arc<HashSet<String>> = Arc::new(
            config
                .actors
                .iter()
                .map(|a| a.name.clone())
                .chain(CREW.iter().map(|c| (*c).to_owned()))
                .collect(),
        );
        // The SSRF allow-list of x-asya-gateway-url (protocol.md §13), as a sidecar reads it.
        let allowed_hosts: Vec<String> = std::env::var("TROUPE_GATEWAY_ALLOWED_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        let settings_for = |name: &str, timeout: Duration, concurrency: usize| {
            let mut s = ActorSettings::new(name);
            s.gateway_allowed_hosts = allowed_hosts.clone();
            s.known_actors = Some(known_actors.clone());
            s.native_routers = flows.native.clone();
            s.actor_timeout = timeout;
            s.concurrency = concurrency;
            s.gateway_url = gateway_url.clone();
            s.shutdown_grace = grace;
            s
        };

        // Crew first, so the first user message always finds x-sink consuming.
        let crew_config = CrewConfig {
            mount: Some(state.clone()),
            sink_hooks: config.crew.sink_hooks.clone(),
            pause_metadata: config
                .crew
                .pause_metadata
                .clone()
                .unwrap_or_else(|| CrewConfig::default().pause_metadata),
            resume_merge_mode: config.crew.resume_merge_mode,
            ..CrewConfig::default()
        };
        let results_config = CrewConfig {
            mount: crew_config
                .mount
                .clone()
                .filter(|_| config.crew.persist_results),
            ..crew_config.clone()
        };
        let sink_handler: Arc<dyn EndHandler> = match options.sink_tap.clone() {
            Some(tap) => Arc::new(TappedSink {
                inner: Sink::new(results_config.clone()),
                tap,
            }),
            None => Arc::new(Sink::new(results_config.clone())),
        };
        // Every other actor hands its finished tasks to this engine directly.
        let mut local_sink: Option<Arc<Engine>> = None;
        let mut crew = Vec::new();
        for name in CREW {
            let handler = match name {
                "x-sink" => Handler::End(sink_handler.clone()),
                "x-sump" => Handler::End(Arc::new(Sump::new(results_config.clone()))),
                "x-pause" => Handler::Native(Arc::new(Pause::new(crew_config.clone()))),
                _ => Handler::Native(Arc::new(Resume::new(crew_config.clone()))),
            };
            let mut engine = Engine::new(
                settings_for(name, Duration::from_secs(300), 2),
                dyn_transport.clone(),
                reporter.clone(),
                Arc::new(SystemClock),
                Arc::new(ActorStats::default()),
            );
            if let (Some(sink), Handler::Native(_)) = (&local_sink, &handler) {
                engine = engine.with_local_sink(sink.clone(), sink_handler.clone());
            }
            let engine = Arc::new(engine);
            if name == "x-sink" {
                local_sink = Some(engine.clone());
            }
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn({
                let engine = engine.clone();
                async move {
                    run_replica(engine, handler, stop_rx).await;
                }
            });
            crew.push((engine, stop, task));
        }

        let mut pools = Vec::new();
        let mut scalers = Vec::new();
        for actor in &config.actors {
            if let Some(CrewActor::FanIn { timeout }) = &actor.crew {
                // Runs like the crew: in-process, one replica, no runtime.
                let fan_in = Arc::new(FanIn::new(
                    &actor.name,
                    &CrewConfig {
                        fanin_timeout: *timeout,
                        ..crew_config.clone()
                    },
                ));
                let engine = Engine::new(
                    settings_for(&actor.name, actor.actor_timeout, 2),
                    dyn_transport.clone(),
                    reporter.clone(),
                    Arc::new(SystemClock),
                    Arc::new(ActorStats::default()),
                );
                let engine = Arc::new(match &local_sink {
                    Some(sink) => engine.with_local_sink(sink.clone(), sink_handler.clone()),
                    None => engine,
                });
                let (stop, stop_rx) = watch::channel(false);
                let sweeper = fan_in.clone().spawn_sweeper(
                    dyn_transport.clone(),
                    engine.settings().sink.clone(),
                    stop_rx.clone(),
                );
                let handler = Handler::Native(fan_in);
                let task = tokio::spawn({
                    let engine = engine.clone();
                    async move {
                        run_replica(engine, handler, stop_rx).await;
                        let _ = sweeper.await;
                    }
                });
                crew.push((engine, stop, task));
                continue;
            }
            let mut settings =
                settings_for(&actor.name, actor.actor_timeout, actor.concurrency.max(1));
            settings.pipeline = actor.pipeline;
            settings.resiliency = actor.resiliency.clone();
            let mut engine = Engine::new(
                settings,
                dyn_transport.clone(),
                reporter.clone(),
                Arc::new(SystemClock),
                Arc::new(ActorStats::default()),
            );
            if let Some(sink) = &local_sink {
                engine = engine.with_local_sink(sink.clone(), sink_handler.clone());
            }
            let engine = Arc::new(engine);
            let template = ReplicaTemplate {
                engine,
                spec: runtime_spec(&config, actor, &runtime_file),
                run_dir: state.join("run"),
                grace,
                gateway: (!options.no_gateway).then(|| gateway.clone()),
            };
            let pool = Arc::new(ActorPool::new(actor.clone(), template));
            scalers.push(tokio::spawn(scaler::run(
                pool.clone(),
                transport.arrivals(),
                shutdown_rx.clone(),
            )));
            pools.push(pool);
        }

        let control = control::router(control::ControlState {
            pools: pools.clone(),
            crew: crew.iter().map(|(e, _, _)| e.clone()).collect(),
            state_dir: state.clone(),
            gateway: gateway.clone(),
            transport: dyn_transport.clone(),
            flows: flows.status_json(),
        });
        let mut adapter_servers = Vec::new();
        let mut adapter_urls = (None, None);
        let router = if options.no_gateway {
            control
        } else {
            let flow_names: Vec<(String, Option<String>)> = flows
                .flows
                .iter()
                .map(|(name, _, d)| (name.clone(), d.clone()))
                .collect();
            let adapters = crate::front::adapters(&config, &gateway, &url, &flow_names).await?;
            for own in adapters.own {
                let mut stop = shutdown_rx.clone();
                let what = own.what;
                let own_limits = limits.clone();
                adapter_servers.push(tokio::spawn(async move {
                    let serve = troupe_gateway::limits::serve(
                        own.listener,
                        own.router,
                        &own_limits,
                        async move {
                            let _ = stop.wait_for(|s| *s).await;
                        },
                        || {},
                    );
                    if let Err(e) = serve.await {
                        warn!(error = %e, "{what} listener stopped");
                    }
                }));
            }
            for reload in [
                adapters
                    .mcp
                    .spawn_reload(wait_shutdown(shutdown_rx.clone())),
                adapters
                    .a2a
                    .spawn_reload(wait_shutdown(shutdown_rx.clone())),
            ] {
                adapter_servers.push(reload);
            }
            adapter_urls = (Some(adapters.mcp_url), Some(adapters.a2a_url));
            gateway.router().merge(adapters.on_main).merge(control)
        };
        let mut server_shutdown = shutdown_rx.clone();
        let server = tokio::spawn(async move {
            let serve = troupe_gateway::limits::serve(
                listener,
                router,
                &limits,
                async move {
                    let _ = server_shutdown.wait_for(|s| *s).await;
                },
                || {},
            );
            if let Err(e) = serve.await {
                warn!(error = %e, "mesh API listener stopped");
            }
        });
        if !options.no_gateway {
            gateway.spawn_backstop(wait_shutdown(shutdown_rx.clone()));
        }
        statefile::write(
            &state,
            &statefile::MeshState {
                url: url.clone(),
                pid: std::process::id(),
                mcp_url: adapter_urls.0,
                a2a_url: adapter_urls.1,
            },
        )
        .map_err(|e| state_err(&state, e))?;
        info!(url = %url, actors = config.actors.len(), state_dir = %state.display(), "mesh up");
        Ok(Mesh {
            config,
            transport,
            pools,
            crew,
            scalers,
            shutdown,
            server,
            adapter_servers,
            gateway,
            url,
            grace,
        })
    }

    /// Base URL of the mesh API.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The mesh's transport (benchmarks preload through it).
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The actor pools.
    pub fn pools(&self) -> &[Arc<ActorPool>] {
        &self.pools
    }

    /// Per-actor view, as `troupe status` shows it.
    pub async fn status(&self) -> Vec<ActorView> {
        control::collect(
            &self.pools,
            &self
                .crew
                .iter()
                .map(|(e, _, _)| e.clone())
                .collect::<Vec<_>>(),
        )
        .await
    }

    /// Runs until `signal` resolves, then stops gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.stop().await;
    }

    /// Stops receiving, lets in-flight messages finish (bounded by the grace period),
    /// stops runtimes and the crew, flushes the queues.
    pub async fn stop(self) {
        info!("mesh stopping");
        self.shutdown.send_replace(true);
        for s in self.scalers {
            s.abort();
        }
        let stops = self.pools.iter().map(|p| p.stop_all());
        futures::future::join_all(stops).await;
        for (_, stop, _) in &self.crew {
            stop.send_replace(true);
        }
        for (engine, _, task) in self.crew {
            if tokio::time::timeout(self.grace, task).await.is_err() {
                warn!(actor = %engine.settings().actor, "crew actor did not finish within the grace period");
            }
        }
        // Open SSE streams and adapter calls would hold the listeners' graceful shutdown.
        self.gateway.close_streams();
        for server in std::iter::once(self.server).chain(self.adapter_servers) {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.transport.close().await;
        statefile::remove(&self.config.state_dir);
        info!("mesh stopped");
    }
}

/// Opens the mesh file's transport: the embedded queue under the state dir, or a broker.
async fn open_transport(
    config: &MeshConfig,
    state: &Path,
) -> Result<Arc<dyn Transport>, MeshError> {
    if config.transport == "embedded" {
        let t = EmbeddedTransport::open(
            &state.join("queues"),
            EmbeddedOptions {
                fsync: config.fsync,
                visibility_timeout: visibility_timeout(config),
                ..EmbeddedOptions::default()
            },
        )
        .map_err(|e| MeshError::Transport(e.to_string()))?;
        return Ok(Arc::new(t));
    }
    let spec = troupe_transports::TransportSpec::from_url(&config.transport)
        .map_err(|e| MeshError::Transport(e.to_string()))?;
    let mut options = troupe_transport::ConnectOptions::new(config.namespace.clone());
    // A broker's window is short (every handler extends its lease while it runs), so
    // that messages of a mesh killed with -9 come back within it, not the actor timeout.
    options.visibility_timeout =
        troupe_transports::visibility_timeout(Some(&config.transport), &|k| std::env::var(k).ok())
            .map_err(|e| MeshError::Transport(e.to_string()))?;
    options.prefetch = config
        .actors
        .iter()
        .map(|a| a.concurrency.max(1).saturating_mul(1 + a.pipeline.min(1)))
        .max()
        .unwrap_or(1)
        .clamp(1, usize::from(u16::MAX)) as u16;
    // One attempt at start: `troupe up` is interactive, so a dead broker is reported now
    // rather than retried in the background.
    spec.connect(options)
        .await
        .map_err(|e| MeshError::Transport(e.to_string()))
}

/// Resolves when the mesh's shutdown flag is set.
async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn runtime_spec(config: &MeshConfig, actor: &ActorConfig, runtime_file: &Path) -> RuntimeSpec {
    let mut env = actor.env.clone();
    env.push(("ASYA_ACTOR_NAME".to_owned(), actor.name.clone()));
    env.push(("ASYA_NAMESPACE".to_owned(), config.namespace.clone()));
    RuntimeSpec {
        python: actor.python.clone(),
        handler: actor.handler.clone(),
        socket_dir: PathBuf::new(),
        // `runtime:` swaps the built-in file for the user's; everything else is the same.
        runtime_file: actor
            .runtime
            .clone()
            .unwrap_or_else(|| runtime_file.to_path_buf()),
        env,
        // `<state>/flows` holds the generated Python routers of the mesh's flows.
        python_path: vec![config.root.clone(), config.state_dir.join("flows")],
        cwd: Some(config.root.clone()),
    }
}

/// How long a message received from the embedded queue stays invisible before
/// redelivery: twice the longest actor timeout (as the SQS default, platform.md §1.2),
/// at least the queue's default, so a slow handler's message is never handed to a
/// second worker mid-call. (The queue lives in this process: a crash loses every
/// holder at once and a restart makes everything receivable again.)
fn visibility_timeout(config: &MeshConfig) -> Duration {
    let longest = config
        .actors
        .iter()
        .map(|a| a.actor_timeout)
        .max()
        .unwrap_or_default();
    EmbeddedOptions::default()
        .visibility_timeout
        .max(longest.saturating_mul(2))
}

/// Re-registers the tasks x-pause persisted (`{state_dir}/paused/{id}.json`) that the
/// task store does not hold (a store deleted or written by an older build), so a task
/// paused before a restart can still be resumed by id.
async fn restore_paused(store: &dyn TaskStore, state: &Path) {
    let Ok(entries) = std::fs::read_dir(state.join("paused")) else {
        return;
    };
    let now = troupe_protocol::Clock::now(&SystemClock);
    let mut restored = 0usize;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(saved) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            warn!(file = %path.display(), "unreadable paused task; it cannot be resumed by id");
            continue;
        };
        let Some(id) = saved.get("id").and_then(|v| v.as_str()).map(str::to_owned) else {
            continue;
        };
        let str_list = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        };
        let route = saved.get("route");
        let data = TaskData {
            actor: "x-pause".to_owned(),
            message: "Paused: waiting for external input".to_owned(),
            route_next: str_list(route.and_then(|r| r.get("next"))),
            payload: saved
                .get("payload")
                .map(troupe_gateway::RawJson::from_value),
            headers: saved.get("headers").and_then(|h| h.as_object().cloned()),
            parent_id: saved
                .get("parent_id")
                .and_then(|p| p.as_str())
                .map(str::to_owned),
            pause_metadata: Some(
                saved
                    .get("_pause_metadata")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({}))
                    .into(),
            ),
            ..TaskData::default()
        };
        let mut task = Task::new(id, data, now);
        task.status = TaskStatus::Paused;
        if matches!(store.insert(task).await, Ok(true)) {
            restored += 1;
        }
    }
    if restored > 0 {
        info!(tasks = restored, "paused tasks restored; resume them by id");
    }
}
