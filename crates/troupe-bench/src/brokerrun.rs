//! Troupe on a broker: the in-process mesh of `troupe up` with `transport:` set to the
//! broker's URL, the 3-step pipeline on it, measured in the same phases as the Celery and
//! Dramatiq runs (`bench/brokers/harness.py`) and the raw-broker floor.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use troupe_mesh::Mesh;
use troupe_protocol::{Envelope, Phase};
use troupe_runtime::launcher::RUNTIME_FILE_NAME;

use crate::brokers::{tree_cpu_seconds, Phases, RunResult, Work};
use crate::procstat;
use crate::project::ACTORS;
use crate::stats;

/// The handler module every system runs (`noop`, `spin`).
pub const WORK_PY: &str = include_str!("../../../bench/brokers/work.py");

/// Longest wait for runtimes to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for one sequential pipeline (the first waits for everything to start).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Preload sends in flight at once (each waits for its broker confirm).
const PRELOAD_CONCURRENCY: usize = 64;

/// The mesh file: three actors on the broker, one replica each, `concurrency` messages in
/// flight per sidecar (the runtime still handles one at a time), no result files (Celery
/// and Dramatiq store no results either).
pub fn mesh_yaml(
    python: &str,
    namespace: &str,
    transport: &str,
    work: Work,
    concurrency: usize,
    pipeline: Option<usize>,
) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let mut y = format!(
        "namespace: {namespace}\npython: {}\ntransport: {}\ncrew: {{persist_results: false}}\nactors:\n",
        q(python),
        q(transport)
    );
    for actor in ACTORS {
        y.push_str(&format!(
            "  - actor: {actor}\n    handler: work.{}\n    replicas: 1\n    scaling: {{enabled: false}}\n    concurrency: {concurrency}\n",
            work.handler()
        ));
        if let Some(p) = pipeline {
            y.push_str(&format!("    pipeline: {p}\n"));
        }
    }
    y
}

/// The envelope the pipeline starts with (the same payload the Python harness sends).
pub fn envelope(id: &str, seq: usize) -> Result<bytes::Bytes> {
    let v = serde_json::json!({
        "id": id,
        "route": {"prev": [], "curr": ACTORS[0], "next": &ACTORS[1..]},
        "payload": {"seq": seq, "text": "hello"},
    });
    Ok(bytes::Bytes::from(serde_json::to_vec(&v)?))
}

/// Where and how the mesh runs.
pub struct TroupeRun<'a> {
    /// Project folder to write.
    pub dir: &'a Path,
    /// Interpreter of the runtimes.
    pub python: &'a str,
    /// Queue namespace.
    pub namespace: &'a str,
    /// Broker URL (`transport:`).
    pub transport: &'a str,
    /// Broker process, for its CPU time.
    pub broker_pid: u32,
    /// Per-step workload.
    pub work: Work,
    /// Messages in flight per sidecar.
    pub concurrency: usize,
    /// `pipeline:` of the actors; `None` keeps the engine's default.
    pub pipeline: Option<usize>,
}

/// Writes the project, runs the mesh on the broker, measures, stops it.
pub async fn run(r: TroupeRun<'_>, phases: Phases) -> Result<RunResult> {
    let (dir, broker_pid) = (r.dir, r.broker_pid);
    std::fs::create_dir_all(dir)?;
    let mesh_file = dir.join(troupe_mesh::config::MESH_FILE_NAME);
    std::fs::write(
        &mesh_file,
        mesh_yaml(
            r.python,
            r.namespace,
            r.transport,
            r.work,
            r.concurrency,
            r.pipeline,
        ),
    )?;
    std::fs::write(dir.join("work.py"), WORK_PY)?;
    let (mesh, mut rx) = crate::meshrun::start_tapped(&mesh_file)
        .await
        .context("starting the mesh on the broker")?;
    let result = measure(&mesh, &mut rx, broker_pid, phases).await;
    mesh.stop().await;
    result
}

async fn arrival(rx: &mut UnboundedReceiver<Envelope>, timeout: Duration) -> Result<Envelope> {
    let env = match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(env)) => env,
        Ok(None) => bail!("the mesh stopped delivering to x-sink"),
        Err(_) => bail!("no pipeline reached x-sink for {timeout:?}"),
    };
    let phase = env.status.as_ref().map(|s| s.phase);
    if phase != Some(Phase::Succeeded) {
        bail!("pipeline {} reached x-sink with phase {phase:?}", env.id);
    }
    Ok(env)
}

async fn sequential(
    mesh: &Mesh,
    rx: &mut UnboundedReceiver<Envelope>,
    n: usize,
    first_timeout: Duration,
) -> Result<Vec<Duration>> {
    let queue = mesh.transport().queue_name(ACTORS[0]);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        let body = envelope(&id, i)?;
        let timeout = if i == 0 { first_timeout } else { STEP_TIMEOUT };
        let start = Instant::now();
        mesh.transport().send(&queue, body).await?;
        loop {
            if arrival(rx, timeout).await?.id == id {
                break;
            }
        }
        out.push(start.elapsed());
    }
    Ok(out)
}

/// CPU seconds of this process, of each live runtime, and of the broker.
struct Cpu {
    troupe: f64,
    python: f64,
    broker: f64,
}

impl Cpu {
    fn take(broker_pid: u32) -> Result<Cpu> {
        let mut python = 0.0;
        for r in procstat::children_running(std::process::id(), RUNTIME_FILE_NAME)? {
            python += procstat::cpu_seconds(r.pid).unwrap_or(0.0);
        }
        Ok(Cpu {
            troupe: procstat::self_cpu_seconds()?,
            python,
            broker: tree_cpu_seconds(broker_pid),
        })
    }
}

async fn wait_ready(mesh: &Mesh) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !mesh.pools().iter().all(|p| p.ready() >= 1) {
        if Instant::now() > deadline {
            bail!("runtimes not ready after {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn measure(
    mesh: &Mesh,
    rx: &mut UnboundedReceiver<Envelope>,
    broker_pid: u32,
    phases: Phases,
) -> Result<RunResult> {
    wait_ready(mesh).await?;
    sequential(mesh, rx, phases.warmup, READY_TIMEOUT).await?;

    let c0 = Cpu::take(broker_pid)?;
    let lat = sequential(mesh, rx, phases.unloaded, STEP_TIMEOUT).await?;
    let c1 = Cpu::take(broker_pid)?;
    let unloaded = stats::summarize(lat);
    let unloaded_cpu = (c1.troupe - c0.troupe) + (c1.python - c0.python);

    // Loaded: actor a's only replica is stopped while the batch is queued.
    let pool_a = mesh
        .pools()
        .iter()
        .find(|p| p.config.name == ACTORS[0])
        .ok_or_else(|| anyhow!("actor {} missing", ACTORS[0]))?
        .clone();
    pool_a.scale_to(0).await;
    let queue = mesh.transport().queue_name(ACTORS[0]);
    let mut ids = HashMap::with_capacity(phases.pipelines);
    let mut bodies = Vec::with_capacity(phases.pipelines);
    for i in 0..phases.pipelines {
        let id = uuid::Uuid::new_v4().to_string();
        bodies.push(envelope(&id, i)?);
        ids.insert(id, i);
    }
    let t = mesh.transport().clone();
    let preload_start = Instant::now();
    let mut sends = futures::stream::iter(bodies)
        .map(|b| {
            let t = t.clone();
            let q = queue.clone();
            async move { t.send(&q, b).await }
        })
        .buffer_unordered(PRELOAD_CONCURRENCY);
    while let Some(r) = sends.next().await {
        r.context("preloading queue a")?;
    }
    let preload = preload_start.elapsed();
    pool_a.scale_to(1).await;

    let deadline = Instant::now() + phases.time_limit;
    let mut seen = vec![false; phases.pipelines];
    let mut arrivals: Vec<Instant> = Vec::with_capacity(phases.pipelines);
    let mut first: Option<Cpu> = None;
    while arrivals.len() < phases.pipelines {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "troupe: time limit reached after {} pipelines",
                arrivals.len()
            );
            break;
        }
        let env = match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(env)) => env,
            Ok(None) => bail!("the mesh stopped delivering to x-sink"),
            Err(_) => continue,
        };
        let now = Instant::now();
        if let Some(slot) = ids.get(&env.id).and_then(|&i| seen.get_mut(i)) {
            if !*slot {
                *slot = true;
                arrivals.push(now);
                if first.is_none() {
                    first = Some(Cpu::take(broker_pid)?);
                }
            }
        }
    }
    let last = Cpu::take(broker_pid)?;
    let first = first.ok_or_else(|| anyhow!("no pipeline completed in the loaded phase"))?;
    if arrivals.len() < 2 {
        bail!(
            "only {} pipelines completed in the loaded phase",
            arrivals.len()
        );
    }
    let wall = arrivals[arrivals.len() - 1] - arrivals[0];
    Ok(RunResult {
        pipelines: arrivals.len() - 1,
        requested: phases.pipelines,
        timed_out: arrivals.len() < phases.pipelines,
        wall,
        cpu_system: (last.troupe - first.troupe) + (last.python - first.python),
        cpu_parts: vec![
            ("troupe".to_owned(), last.troupe - first.troupe),
            ("python".to_owned(), last.python - first.python),
        ],
        cpu_broker: last.broker - first.broker,
        unloaded,
        unloaded_cpu,
        unloaded_broker_cpu: c1.broker - c0.broker,
        preload,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn mesh_file_loads_with_a_broker_transport() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(troupe_mesh::config::MESH_FILE_NAME);
        std::fs::write(
            &f,
            mesh_yaml(
                "python3",
                "bench-r1",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                Work::Cpu1ms,
                4,
                Some(3),
            ),
        )
        .unwrap();
        let (mesh, warnings) = troupe_mesh::MeshConfig::load(&f).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(mesh.transport, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(mesh.namespace, "bench-r1");
        assert!(!mesh.crew.persist_results);
        let handlers: Vec<&str> = mesh.actors.iter().map(|a| a.handler.as_str()).collect();
        assert_eq!(handlers, ["work.spin", "work.spin", "work.spin"]);
        assert!(mesh.actors.iter().all(|a| a.pipeline == 3));
        assert!(mesh.actors.iter().all(|a| a.concurrency == 4));
    }

    #[test]
    fn work_module_has_both_handlers() {
        assert!(WORK_PY.contains("def noop(p)"));
        assert!(WORK_PY.contains("def spin(p)"));
    }
}
