//! The sidecar process: connect, wait for the handler, consume until asked to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use troupe_protocol::sidecar_env as env;

use tokio::sync::watch;
use tracing::{error, info, warn};
use troupe_crew::{FanIn, Pause, Resume, Sink, Sump, FAN_IN_CREW};
use troupe_engine::consumer::{run_replica, ReplicaExit};
use troupe_engine::http_report::HttpReporter;
use troupe_engine::metrics::ActorStats;
use troupe_engine::{Engine, Handler};
use troupe_protocol::SystemClock;
use troupe_runtime::client::{RuntimeCallError, RuntimeClient};
use troupe_transport::{Transport, TransportError};

use crate::observe::{self, Probes};
use crate::runtime_end::RuntimeEndHandler;
use crate::{SidecarConfig, SidecarError};

/// Poll period while waiting for the runtime's `/healthz`.
const READY_POLL: Duration = Duration::from_millis(200);
/// Longest pause between broker connection attempts.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the sidecar until `shutdown` completes (then drains in-flight messages within
/// the grace period) or a fatal error (runtime timeout, bad credentials). `connect`
/// opens the transport; it is retried with backoff while the broker is unreachable.
pub async fn run<C, CF, S>(
    config: SidecarConfig,
    connect: C,
    shutdown: S,
) -> Result<(), SidecarError>
where
    C: Fn() -> CF,
    CF: Future<Output = Result<Arc<dyn Transport>, TransportError>>,
    S: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let probes = Arc::new(Probes::default());
    // The recorder must exist before the engine registers its metrics.
    let handle = if config.metrics_enabled {
        Some(observe::install_recorder()?)
    } else {
        None
    };
    let (addr, server) = observe::serve(
        config.metrics_addr,
        handle,
        &config.metrics_namespace,
        probes.clone(),
    )
    .await?;
    info!(addr = %addr, actor = %config.settings.actor, "sidecar probes listening");
    let result = consume(&config, connect, &probes, &mut shutdown).await;
    server.abort();
    result
}

async fn consume<C, CF, S>(
    config: &SidecarConfig,
    connect: C,
    probes: &Arc<Probes>,
    shutdown: &mut std::pin::Pin<&mut S>,
) -> Result<(), SidecarError>
where
    C: Fn() -> CF,
    CF: Future<Output = Result<Arc<dyn Transport>, TransportError>>,
    S: Future<Output = ()>,
{
    let Some(transport) = connect_with_backoff(&connect, shutdown).await? else {
        return Ok(());
    };
    probes.set_transport(true);
    let actor = config.settings.actor.clone();

    let (fatal_tx, mut fatal_rx) = watch::channel(None::<String>);
    let client = Arc::new(RuntimeClient::new(&config.socket));
    // Stops background work of the crew (the fan-in timeout sweep) when consuming ends.
    let (_crew_stop, crew_stop_rx) = watch::channel(false);
    let handler = match config.crew.as_deref() {
        Some("x-sink") => Handler::End(Arc::new(Sink::new(config.crew_config.clone()))),
        Some("x-sump") => Handler::End(Arc::new(Sump::new(config.crew_config.clone()))),
        Some("x-pause") => Handler::Native(Arc::new(Pause::new(config.crew_config.clone()))),
        Some(FAN_IN_CREW) => {
            let fan_in = Arc::new(FanIn::new(&actor, &config.crew_config));
            fan_in.clone().spawn_sweeper(
                transport.clone(),
                config.settings.sink.clone(),
                crew_stop_rx,
            );
            Handler::Native(fan_in)
        }
        Some(_) => Handler::Native(Arc::new(Resume::new(config.crew_config.clone()))),
        None if config.is_end_actor => Handler::End(Arc::new(RuntimeEndHandler::new(
            client.clone(),
            config.settings.actor_timeout,
            fatal_tx.clone(),
        ))),
        None => Handler::Runtime(client.clone()),
    };
    // The sidecar credential the gateway wants on its sidecar routes (docs/security.md);
    // on Kubernetes it comes from a Secret.
    let token = std::env::var(env::GATEWAY_TOKEN).ok();
    if token.is_some() && config.settings.gateway_allowed_hosts.is_empty() {
        // The token goes wherever an envelope's x-asya-gateway-url points.
        tracing::warn!("TROUPE_GATEWAY_TOKEN is set but TROUPE_GATEWAY_ALLOWED_HOSTS is empty: a message naming another gateway URL would receive the token; list the gateway's host:port there");
    }
    let reporter =
        Arc::new(HttpReporter::with_token(token.as_deref()).map_err(SidecarError::Runtime)?);
    let engine = Arc::new(Engine::new(
        config.settings.clone(),
        transport.clone(),
        reporter,
        Arc::new(SystemClock),
        Arc::new(ActorStats::default()),
    ));
    let needs_runtime = config.crew.is_none();

    loop {
        if needs_runtime {
            probes.set_handler(false);
            tokio::select! {
                r = wait_runtime(&client, config.runtime_ready_timeout) => r?,
                _ = shutdown.as_mut() => { transport.close().await; return Ok(()) }
            }
        }
        probes.set_handler(true);
        info!(actor = %actor, queue = %engine.queue(), transport = transport.kind(), "sidecar consuming");
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut replica = tokio::spawn(run_replica(engine.clone(), handler.clone(), stop_rx));
        let exit = tokio::select! {
            exit = &mut replica => exit.unwrap_or(ReplicaExit::Stopped),
            _ = shutdown.as_mut() => {
                info!(actor = %actor, "stopping: finishing in-flight messages");
                engine.begin_stop();
                stop_tx.send_replace(true);
                if tokio::time::timeout(config.settings.shutdown_grace, &mut replica).await.is_err() {
                    warn!(actor = %actor, "in-flight messages did not finish within the grace period; they will be redelivered");
                    replica.abort();
                }
                transport.close().await;
                return Ok(());
            }
            _ = fatal_rx.changed() => {
                stop_tx.send_replace(true);
                let _ = tokio::time::timeout(config.settings.shutdown_grace, &mut replica).await;
                transport.close().await;
                let text = fatal_rx.borrow().clone().unwrap_or_default();
                return Err(SidecarError::Runtime(text));
            }
        };
        match exit {
            ReplicaExit::Stopped => {
                transport.close().await;
                return Ok(());
            }
            ReplicaExit::RuntimeTimedOut => {
                transport.close().await;
                // The runtime may still be running the handler; a new pod gets a new one.
                return Err(SidecarError::Runtime(format!(
                    "a runtime call exceeded the actor timeout ({}s); the message went to {} and the sidecar exits so the runtime is replaced",
                    config.settings.actor_timeout.as_secs(),
                    config.settings.sump
                )));
            }
            ReplicaExit::RuntimeLost => {
                warn!(actor = %actor, socket = %config.socket.display(), "runtime stopped answering; waiting for it to come back");
            }
        }
    }
}

/// Connects, retrying unreachable brokers with backoff (1 s doubling, 30 s cap) and a
/// WARN per attempt naming the broker. Bad credentials and bad settings fail at once.
/// `None` when shutdown came first.
async fn connect_with_backoff<C, CF, S>(
    connect: &C,
    shutdown: &mut std::pin::Pin<&mut S>,
) -> Result<Option<Arc<dyn Transport>>, SidecarError>
where
    C: Fn() -> CF,
    CF: Future<Output = Result<Arc<dyn Transport>, TransportError>>,
    S: Future<Output = ()>,
{
    let mut wait = Duration::from_secs(1);
    loop {
        let attempt = tokio::select! {
            r = connect() => r,
            _ = shutdown.as_mut() => return Ok(None),
        };
        match attempt {
            Ok(t) => return Ok(Some(t)),
            Err(e @ (TransportError::Auth { .. } | TransportError::Config { .. })) => {
                error!(error = %e, "cannot connect to the broker");
                return Err(SidecarError::Config(e.to_string()));
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?wait, "cannot connect to the broker; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.as_mut() => return Ok(None),
                }
                wait = (wait * 2).min(MAX_CONNECT_BACKOFF);
            }
        }
    }
}

/// Consecutive silent `/healthz` answers after which the process on the socket is taken
/// for a runtime that does not speak HTTP.
const SILENT_PROBES: u32 = 3;

async fn wait_runtime(client: &RuntimeClient, limit: Duration) -> Result<(), SidecarError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut silent = 0;
    loop {
        match client.healthz(Duration::from_secs(2)).await {
            Ok(()) => return Ok(()),
            Err(e @ RuntimeCallError::NotHttp { silent: quiet, .. }) => {
                silent += 1;
                // A reply that is not HTTP is conclusive; silence is, once it repeats.
                if !quiet || silent >= SILENT_PROBES {
                    error!(socket = %client.socket().display(), error = %e, "the runtime does not speak HTTP");
                    return Err(SidecarError::Runtime(e.to_string()));
                }
            }
            Err(_) => silent = 0,
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SidecarError::RuntimeNotReady {
                socket: client.socket().display().to_string(),
                seconds: limit.as_secs(),
            });
        }
        tokio::time::sleep(READY_POLL).await;
    }
}
