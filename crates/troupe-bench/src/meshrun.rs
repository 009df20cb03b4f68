//! The mesh side: the pipeline through `troupe up`'s in-process mesh.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use troupe_mesh::{Mesh, MeshConfig, MeshOptions};
use troupe_protocol::{Envelope, Phase};
use troupe_runtime::launcher::RUNTIME_FILE_NAME;

use crate::procstat::{self, RuntimeChild};
use crate::project::{Project, ACTORS};
use crate::stats::{self, Latency};

/// Longest wait for the next completed pipeline before the run is declared stuck.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for runtimes to come up (Python start plus handler import).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Readiness poll period; bounds the error of the throughput clock's start.
const READY_POLL: Duration = Duration::from_millis(1);

/// What one measured phase cost.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// Pipelines completed.
    pub pipelines: usize,
    /// Wall time of the phase.
    pub wall: Duration,
    /// End-to-end latency.
    pub latency: Latency,
    /// CPU seconds of the three runtimes.
    pub cpu_python: f64,
    /// CPU seconds of this process (mesh plus the benchmark's own bookkeeping).
    pub cpu_troupe: f64,
    /// CPU seconds per runtime, by actor.
    pub cpu_by_actor: Vec<(String, f64)>,
}

/// The preload, measured on its own (no consumer on the queue meanwhile).
#[derive(Debug, Clone, Copy)]
pub struct PreloadResult {
    /// Envelopes sent.
    pub envelopes: usize,
    /// Wall time of the sends.
    pub wall: Duration,
    /// CPU seconds of this process during the sends.
    pub cpu: f64,
}

/// Everything measured through the mesh.
#[derive(Debug, Clone)]
pub struct MeshResult {
    /// The preloaded throughput run.
    pub loaded: PhaseResult,
    /// Sequential pipelines, one at a time.
    pub unloaded: PhaseResult,
    /// The preload itself.
    pub preload: PreloadResult,
}

/// Options of the mesh run.
#[derive(Debug, Clone, Copy)]
pub struct MeshRun {
    /// Preloaded pipelines.
    pub pipelines: usize,
    /// Sequential pipelines for the unloaded latency.
    pub unloaded: usize,
    /// Sequential pipelines run first and not measured.
    pub warmup: usize,
}

pub(crate) fn envelope(id: &str, seq: usize) -> Result<Bytes> {
    let v = serde_json::json!({
        "id": id,
        "route": {"prev": [], "curr": ACTORS[0], "next": &ACTORS[1..]},
        "payload": {"seq": seq, "text": "hello"},
    });
    Ok(Bytes::from(serde_json::to_vec(&v)?))
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) struct CpuSnapshot {
    troupe: f64,
    runtimes: Vec<(String, u32, f64)>,
}

impl CpuSnapshot {
    pub(crate) fn take(runtimes: &[RuntimeChild]) -> Result<CpuSnapshot> {
        let troupe = procstat::self_cpu_seconds().context("reading this process's CPU time")?;
        let mut rs = Vec::new();
        for r in runtimes {
            let cpu = procstat::cpu_seconds(r.pid)
                .with_context(|| format!("reading CPU time of runtime pid {}", r.pid))?;
            rs.push((r.actor.clone().unwrap_or_default(), r.pid, cpu));
        }
        Ok(CpuSnapshot {
            troupe,
            runtimes: rs,
        })
    }

    pub(crate) fn phase(
        &self,
        after: &CpuSnapshot,
        pipelines: usize,
        wall: Duration,
        latency: Latency,
    ) -> PhaseResult {
        let mut by_actor = Vec::new();
        for (actor, pid, before) in &self.runtimes {
            if let Some((_, _, now)) = after.runtimes.iter().find(|(_, p, _)| p == pid) {
                by_actor.push((actor.clone(), now - before));
            }
        }
        PhaseResult {
            pipelines,
            wall,
            latency,
            cpu_python: by_actor.iter().map(|(_, c)| c).sum(),
            cpu_troupe: after.troupe - self.troupe,
            cpu_by_actor: by_actor,
        }
    }
}

pub(crate) fn runtimes() -> Result<Vec<RuntimeChild>> {
    procstat::children_running(std::process::id(), RUNTIME_FILE_NAME)
        .context("listing runtime processes in /proc")
}

pub(crate) async fn wait_all_ready(mesh: &Mesh) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !mesh.pools().iter().all(|p| p.ready() >= 1) {
        if Instant::now() > deadline {
            bail!("runtimes not ready after {READY_TIMEOUT:?}; run with RUST_LOG=debug to see why");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn next_arrival(
    rx: &mut UnboundedReceiver<Envelope>,
    done: usize,
    total: usize,
) -> Result<Envelope> {
    let env = match tokio::time::timeout(IDLE_TIMEOUT, rx.recv()).await {
        Ok(Some(env)) => env,
        Ok(None) => bail!("the mesh stopped delivering to x-sink"),
        Err(_) => bail!(
            "no pipeline completed for {IDLE_TIMEOUT:?} ({done}/{total} done); rerun with RUST_LOG=debug and check x-sump under the project's .troupe folder (--keep)"
        ),
    };
    if let Some(why) = not_succeeded(&env) {
        bail!("pipeline {} reached x-sink {why}", env.id);
    }
    Ok(env)
}

/// Sends `n` pipelines one at a time, each after the previous one reached x-sink.
async fn sequential(
    mesh: &Mesh,
    rx: &mut UnboundedReceiver<Envelope>,
    n: usize,
) -> Result<Vec<Duration>> {
    let queue = mesh.transport().queue_name(ACTORS[0]);
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let id = new_id();
        let body = envelope(&id, i)?;
        let start = Instant::now();
        mesh.transport().send(&queue, body).await?;
        loop {
            let env = next_arrival(rx, i, n).await?;
            if env.id == id {
                break;
            }
        }
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

/// Loads `mesh_file` (printing its warnings) and starts the mesh with a tap on x-sink.
pub async fn start_tapped(
    mesh_file: &std::path::Path,
) -> Result<(Mesh, UnboundedReceiver<Envelope>)> {
    start_tapped_with(mesh_file, false).await
}

/// [`start_tapped`], with every flow router a Python router actor when `no_native_routers`
/// (`troupe up --no-native-routers`).
pub async fn start_tapped_with(
    mesh_file: &std::path::Path,
    no_native_routers: bool,
) -> Result<(Mesh, UnboundedReceiver<Envelope>)> {
    let (config, warnings) = MeshConfig::load(mesh_file).map_err(|e| anyhow!("{e}"))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let (tap, rx) = mpsc::unbounded_channel();
    let mesh = Mesh::start(
        config,
        MeshOptions {
            grace: Some(Duration::from_secs(5)),
            sink_tap: Some(tap),
            skip_handler_check: false,
            no_gateway: false,
            no_native_routers,
        },
    )
    .await?;
    Ok((mesh, rx))
}

/// Starts the mesh from `project`, measures, stops it.
pub async fn run(project: &Project, opts: MeshRun) -> Result<MeshResult> {
    let (mesh, mut rx) = start_tapped(&project.mesh_file)
        .await
        .context("starting the mesh")?;
    let result = measure(&mesh, &mut rx, opts).await;
    mesh.stop().await;
    result
}

async fn measure(
    mesh: &Mesh,
    rx: &mut UnboundedReceiver<Envelope>,
    opts: MeshRun,
) -> Result<MeshResult> {
    wait_all_ready(mesh).await?;
    sequential(mesh, rx, opts.warmup).await?;

    // Unloaded: one pipeline in the mesh at a time.
    let procs = runtimes()?;
    if procs.len() != ACTORS.len() {
        bail!(
            "expected {} runtime processes, found {procs:?}",
            ACTORS.len()
        );
    }
    let before = CpuSnapshot::take(&procs)?;
    let start = Instant::now();
    let lat = sequential(mesh, rx, opts.unloaded).await?;
    let wall = start.elapsed();
    let unloaded = before.phase(
        &CpuSnapshot::take(&procs)?,
        opts.unloaded,
        wall,
        stats::summarize(lat),
    );

    // Preloaded: stop actor a's only replica so the whole batch is queued before anything
    // consumes it, and the preload's cost is measured alone rather than estimated.
    let pool_a = mesh
        .pools()
        .iter()
        .find(|p| p.config.name == ACTORS[0])
        .ok_or_else(|| anyhow!("actor {} missing from the mesh", ACTORS[0]))?
        .clone();
    pool_a.scale_to(0).await;
    let queue = mesh.transport().queue_name(ACTORS[0]);
    let mut ids = HashMap::with_capacity(opts.pipelines);
    let mut bodies = Vec::with_capacity(opts.pipelines);
    for i in 0..opts.pipelines {
        let id = new_id();
        bodies.push(envelope(&id, i)?);
        ids.insert(id, i);
    }
    let cpu0 = procstat::self_cpu_seconds()?;
    let start = Instant::now();
    for body in bodies {
        mesh.transport().send(&queue, body).await?;
    }
    let preload = PreloadResult {
        envelopes: opts.pipelines,
        wall: start.elapsed(),
        cpu: procstat::self_cpu_seconds()? - cpu0,
    };

    pool_a.scale_to(1).await;
    // Find the new runtime while it starts, so reading its CPU at t0 is one file read.
    let deadline = Instant::now() + READY_TIMEOUT;
    let procs = loop {
        let p = runtimes()?;
        if p.len() == ACTORS.len() && p.iter().all(|r| r.actor.is_some()) {
            break p;
        }
        if Instant::now() > deadline {
            bail!("actor {}'s runtime did not restart: {p:?}", ACTORS[0]);
        }
        tokio::time::sleep(READY_POLL).await;
    };
    while pool_a.ready() == 0 {
        if Instant::now() > deadline {
            bail!(
                "actor {}'s runtime not ready after {READY_TIMEOUT:?}",
                ACTORS[0]
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
    let t0 = Instant::now();
    let before = CpuSnapshot::take(&procs)?;
    let mut arrivals: Vec<Option<Instant>> = vec![None; opts.pipelines];
    let mut done = 0;
    while done < opts.pipelines {
        let env = next_arrival(rx, done, opts.pipelines).await?;
        let now = Instant::now();
        // At-least-once delivery may repeat a pipeline; count its first arrival.
        if let Some(slot) = ids.get(&env.id).and_then(|&i| arrivals.get_mut(i)) {
            if slot.is_none() {
                *slot = Some(now);
                done += 1;
            }
        }
    }
    let after = CpuSnapshot::take(&procs)?;
    let t1 = arrivals.iter().flatten().max().copied().unwrap_or(t0);
    // Every envelope was queued before t0, so the wait counts from t0: queueing time.
    let lat = arrivals
        .iter()
        .flatten()
        .map(|a| a.saturating_duration_since(t0))
        .collect();
    let loaded = before.phase(&after, opts.pipelines, t1 - t0, stats::summarize(lat));
    Ok(MeshResult {
        loaded,
        unloaded,
        preload,
    })
}

/// `None` when `env` reached x-sink succeeded, else "with phase P, not succeeded: ERROR".
pub(crate) fn not_succeeded(env: &Envelope) -> Option<String> {
    let phase = env.status.as_ref().map(|s| s.phase);
    if phase == Some(Phase::Succeeded) {
        return None;
    }
    let error = env
        .status
        .as_ref()
        .and_then(|s| s.error.as_ref())
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    Some(format!("with phase {phase:?}, not succeeded: {error}"))
}
