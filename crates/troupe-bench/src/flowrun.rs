//! One mesh run of `troupe-bench flows`: the flow project started in-process with native
//! or Python routers, tasks created over the mesh API by flow name, completions taken from
//! the x-sink tap, and each closed-loop phase measured.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc::UnboundedReceiver, oneshot};
use troupe_mesh::Mesh;
use troupe_protocol::Envelope;

use crate::brokers::tree_cpu_seconds;
use crate::procstat;
use crate::stats::{self, Latency};

/// The flow's name (what tasks are sent to).
pub const FLOW: &str = "bench";

/// The actors the flow calls, one Python function each.
pub const ACTORS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Handlers: each marks the payload and returns it (no-op-ish: the cost measured is the
/// mesh's).
pub const STEPS_PY: &str = "\
def a(p):
    p[\"a\"] = 1
    return p


def b(p):
    p[\"b\"] = 1
    return p


def c(p):
    p[\"c\"] = p.get(\"c\", 0) + 1
    return p


def d(p):
    if p.get(\"fail\"):
        raise ValueError(\"asked to fail\")
    p[\"d\"] = 1
    return p


def e(p):
    p[\"e\"] = 1
    return p
";

/// The flow: 5 actor calls per run and 6 router executions (`start-bench`, the
/// if/elif/else, the while test twice (enter, leave), the counter mutation in its body,
/// the mutation after the try), all in the native subset; the try/except costs no router
/// on the success path (it is `d`'s resiliency policy). The loop counter comes with the
/// input: a mutation before the first call would be a seventh router.
pub const FLOWS_PY: &str = "\
def bench(p):
    p = a(p)
    if p[\"kind\"] == \"x\":
        p = b(p)
    elif p[\"kind\"] == \"y\":
        p[\"y\"] = True
        p = b(p)
    else:
        p = b(p)
    while p[\"n\"] < 1:
        p[\"n\"] += 1
        p = c(p)
    try:
        p = d(p)
    except ValueError:
        p[\"failed\"] = True
    p[\"done\"] = True
    p = e(p)
    return p
";

/// Longest wait for one task (create plus completion).
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a phase's last completion before the counters are read: the last sidecar
/// acks and counts its message just after handing the envelope to x-sink.
const SETTLE: Duration = Duration::from_millis(200);

/// The mesh file: five actors, one replica each, no autoscaling, no result files, the
/// gateway's in-memory task store (the task store's cost is the gateway benchmark's).
pub fn mesh_yaml(python: &str, namespace: &str, transport: &str) -> String {
    let q = |s: &str| Value::String(s.to_owned()).to_string();
    let mut y = format!(
        "namespace: {namespace}\npython: {}\ntransport: {}\ncrew: {{persist_results: false}}\ngateway: {{store: memory}}\nflows:\n  - {{name: {FLOW}, source: flows.py:{FLOW}}}\nactors:\n",
        q(python),
        q(transport)
    );
    for actor in ACTORS {
        y.push_str(&format!(
            "  - actor: {actor}\n    handler: steps.{actor}\n    replicas: 1\n    scaling: {{enabled: false}}\n"
        ));
    }
    y
}

/// What one closed-loop phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// Tasks in flight at once.
    pub concurrency: usize,
    /// Runs measured.
    pub runs: usize,
    /// From the first create to the last completion.
    pub wall: Duration,
    /// Create → arrival at x-sink.
    pub latency: Latency,
    /// Messages consumed from actor queues (sidecar counters), per run.
    pub hops: f64,
    /// The same from the routes: steps in `route.prev` that are queue-backed actors.
    pub hops_route: f64,
    /// Actor calls per run (steps of `route.prev` that are the flow's actors).
    pub calls: f64,
    /// Router executions per run that ran natively (no queue, no Python).
    pub native_routers: f64,
    /// Router executions per run that ran as Python router actors.
    pub python_routers: f64,
    /// CPU seconds of this process (mesh, gateway, and the benchmark's HTTP client).
    pub cpu_troupe: f64,
    /// CPU seconds of the Python runtimes (actors and router actors).
    pub cpu_python: f64,
    /// CPU seconds of the broker (0 on the embedded queue).
    pub cpu_broker: f64,
}

impl PhaseResult {
    /// Runs per second.
    pub fn rate(&self) -> f64 {
        stats::rate(self.runs, self.wall)
    }

    /// CPU milliseconds per run: (troupe, python, broker).
    pub fn cpu_ms(&self) -> (f64, f64, f64) {
        let per = |s: f64| stats::per_thousand(s, self.runs);
        (
            per(self.cpu_troupe),
            per(self.cpu_python),
            per(self.cpu_broker),
        )
    }

    /// JSON form (`--json`).
    pub fn to_json(&self) -> Value {
        let (t, p, b) = self.cpu_ms();
        json!({
            "concurrency": self.concurrency,
            "runs": self.runs,
            "wall_s": self.wall.as_secs_f64(),
            "runs_per_s": self.rate(),
            "p50_ms": ms(self.latency.p50),
            "p99_ms": ms(self.latency.p99),
            "hops_per_run": self.hops,
            "hops_per_run_from_routes": self.hops_route,
            "calls_per_run": self.calls,
            "native_routers_per_run": self.native_routers,
            "python_routers_per_run": self.python_routers,
            "cpu_ms_per_run_troupe": t,
            "cpu_ms_per_run_python": p,
            "cpu_ms_per_run_broker": b,
            "cpu_ms_per_run": t + p + b,
        })
    }
}

/// Milliseconds of `d`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One mesh run: where, how, and what to measure.
pub struct FlowRun<'a> {
    /// Project folder to write (fresh).
    pub dir: &'a Path,
    /// Interpreter of the runtimes and the flow compiler.
    pub python: &'a str,
    /// Queue namespace.
    pub namespace: &'a str,
    /// `transport:` (`embedded` or a broker URL).
    pub transport: &'a str,
    /// Broker process for its CPU time (0: none).
    pub broker_pid: u32,
    /// `--no-native-routers`.
    pub python_routers: bool,
    /// Runs first, not measured.
    pub warmup: usize,
    /// Runs of each measured phase.
    pub runs: usize,
    /// Tasks in flight, one phase each.
    pub concurrency: &'a [usize],
}

/// What one mesh run measured, plus the steps one task went through.
pub struct MeshMeasure {
    /// One result per concurrency.
    pub phases: Vec<PhaseResult>,
    /// `route.prev` of the first measured task.
    pub steps: Vec<String>,
}

/// Writes the project, starts the mesh, measures each phase, stops it.
pub async fn run(r: &FlowRun<'_>) -> Result<MeshMeasure> {
    std::fs::create_dir_all(r.dir)?;
    let mesh_file = r.dir.join(troupe_mesh::config::MESH_FILE_NAME);
    std::fs::write(&mesh_file, mesh_yaml(r.python, r.namespace, r.transport))?;
    std::fs::write(r.dir.join("steps.py"), STEPS_PY)?;
    std::fs::write(r.dir.join("flows.py"), FLOWS_PY)?;
    let (mesh, rx) = crate::meshrun::start_tapped_with(&mesh_file, r.python_routers)
        .await
        .context("starting the flow mesh")?;
    let waiters = Arc::new(Mutex::new(Waiters::default()));
    let reader = tokio::spawn(dispatch(rx, waiters.clone()));
    let result = measure(&mesh, r, &waiters).await;
    reader.abort();
    mesh.stop().await;
    result
}

/// Completions not yet claimed, and tasks waiting for theirs.
#[derive(Default)]
struct Waiters {
    waiting: HashMap<String, oneshot::Sender<(Instant, Envelope)>>,
    early: HashMap<String, (Instant, Envelope)>,
}

/// Routes every envelope x-sink consumed to the task waiting for it (or keeps it for a
/// task whose create answer has not arrived yet).
async fn dispatch(mut rx: UnboundedReceiver<Envelope>, waiters: Arc<Mutex<Waiters>>) {
    while let Some(env) = rx.recv().await {
        let now = Instant::now();
        let Ok(mut w) = waiters.lock() else { return };
        match w.waiting.remove(&env.id) {
            Some(tx) => {
                let _ = tx.send((now, env));
            }
            None => {
                w.early.insert(env.id.clone(), (now, env));
            }
        }
    }
}

async fn create(client: &reqwest::Client, url: &str, seq: usize) -> Result<String> {
    let body = json!({"actor": FLOW, "payload": {"seq": seq, "kind": "x", "n": 0}});
    let resp = client
        .post(format!("{url}/troupe/v1/tasks"))
        .json(&body)
        .timeout(TASK_TIMEOUT)
        .send()
        .await
        .context("POST /troupe/v1/tasks")?;
    let status = resp.status();
    let answer: Value = resp.json().await.context("reading the create answer")?;
    if status != reqwest::StatusCode::CREATED {
        bail!("create of flow {FLOW} answered {status}: {answer}");
    }
    answer
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("create answer without id: {answer}"))
}

/// One task: create by flow name, wait for its arrival at x-sink; the latency and the
/// envelope x-sink saw.
async fn one_task(
    client: &reqwest::Client,
    url: &str,
    waiters: &Mutex<Waiters>,
    seq: usize,
) -> Result<(Duration, Envelope)> {
    let start = Instant::now();
    let id = create(client, url, seq).await?;
    let rx = {
        let mut w = waiters
            .lock()
            .map_err(|_| anyhow!("completion table poisoned"))?;
        if let Some((at, env)) = w.early.remove(&id) {
            return Ok((at - start, check(env)?));
        }
        let (tx, rx) = oneshot::channel();
        w.waiting.insert(id.clone(), tx);
        rx
    };
    let (at, env) = match tokio::time::timeout(TASK_TIMEOUT, rx).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => bail!("the mesh stopped delivering to x-sink"),
        Err(_) => bail!(
            "task {id} of flow {FLOW} did not finish within {TASK_TIMEOUT:?}; rerun with RUST_LOG=debug"
        ),
    };
    Ok((at - start, check(env)?))
}

/// The task succeeded with the flow's result (same result natively and in Python).
fn check(env: Envelope) -> Result<Envelope> {
    if let Some(why) = crate::meshrun::not_succeeded(&env) {
        bail!(
            "task {} of flow {FLOW} reached x-sink {why} (route.prev {:?})",
            env.id,
            env.route.prev
        );
    }
    let p: Value = serde_json::from_str(env.payload.get())?;
    let ok = ACTORS.iter().all(|a| p.get(*a) == Some(&json!(1)))
        && p.get("n") == Some(&json!(1))
        && p.get("done") == Some(&json!(true));
    if !ok {
        bail!(
            "task {} of flow {FLOW} returned a wrong result: {p}",
            env.id
        );
    }
    Ok(env)
}

/// Messages processed by the actors' sidecars (not the crew's) so far.
async fn consumed(mesh: &Mesh) -> u64 {
    mesh.status()
        .await
        .iter()
        .filter(|a| !a.crew)
        .map(|a| a.succeeded)
        .sum()
}

async fn measure(mesh: &Mesh, r: &FlowRun<'_>, waiters: &Mutex<Waiters>) -> Result<MeshMeasure> {
    crate::meshrun::wait_all_ready(mesh).await?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;
    let url = mesh.url().trim_end_matches('/').to_owned();
    let max_c = r.concurrency.iter().copied().max().unwrap_or(1).max(1);
    // Warm-up at the highest concurrency, so every keep-alive connection exists already.
    futures::stream::iter(0..r.warmup)
        .map(|i| one_task(&client, &url, waiters, i))
        .buffer_unordered(max_c)
        .try_collect::<Vec<_>>()
        .await
        .context("warm-up")?;
    let queued: HashSet<String> = mesh.pools().iter().map(|p| p.config.name.clone()).collect();
    let me = std::process::id();
    let mut phases = Vec::new();
    let mut steps = Vec::new();
    for &c in r.concurrency {
        let c = c.max(1);
        let hops0 = consumed(mesh).await;
        let (self0, tree0, broker0) = (
            procstat::self_cpu_seconds()?,
            tree_cpu_seconds(me),
            tree_cpu_seconds(r.broker_pid),
        );
        let start = Instant::now();
        let done: Vec<(Duration, Envelope)> = futures::stream::iter(0..r.runs)
            .map(|i| one_task(&client, &url, waiters, i))
            .buffer_unordered(c)
            .try_collect()
            .await
            .with_context(|| format!("{c} in flight"))?;
        let wall = start.elapsed();
        tokio::time::sleep(SETTLE).await;
        let (self1, tree1, broker1) = (
            procstat::self_cpu_seconds()?,
            tree_cpu_seconds(me),
            tree_cpu_seconds(r.broker_pid),
        );
        let hops = consumed(mesh).await - hops0;
        if steps.is_empty() {
            steps = done
                .first()
                .map(|(_, e)| e.route.prev.clone())
                .unwrap_or_default();
        }
        let (mut calls, mut native, mut python, mut hops_route) = (0usize, 0usize, 0usize, 0usize);
        for (_, env) in &done {
            for step in &env.route.prev {
                let is_queued = queued.contains(step);
                hops_route += usize::from(is_queued);
                if ACTORS.contains(&step.as_str()) {
                    calls += 1;
                } else if is_queued {
                    python += 1;
                } else {
                    native += 1;
                }
            }
        }
        let per = |n: usize| count_f64(n) / count_f64(r.runs.max(1));
        let hops = usize::try_from(hops).unwrap_or(usize::MAX);
        phases.push(PhaseResult {
            concurrency: c,
            runs: r.runs,
            wall,
            latency: stats::summarize(done.iter().map(|(d, _)| *d).collect()),
            hops: per(hops),
            hops_route: per(hops_route),
            calls: per(calls),
            native_routers: per(native),
            python_routers: per(python),
            cpu_troupe: self1 - self0,
            cpu_python: (tree1 - self1) - (tree0 - self0),
            cpu_broker: broker1 - broker0,
        });
    }
    Ok(MeshMeasure { phases, steps })
}

// Run and step counts stay far below 2^52, where the conversion is exact.
#[allow(clippy::cast_precision_loss)]
fn count_f64(n: usize) -> f64 {
    n as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use troupe_mesh::MeshConfig;

    #[test]
    fn project_loads_with_the_flow_and_five_fixed_actors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(troupe_mesh::config::MESH_FILE_NAME);
        std::fs::write(&file, mesh_yaml("python3", "fb", "embedded")).unwrap();
        std::fs::write(dir.path().join("flows.py"), FLOWS_PY).unwrap();
        let (mesh, warnings) = MeshConfig::load(&file).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let names: Vec<&str> = mesh.actors.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ACTORS);
        assert!(mesh.actors.iter().all(|a| !a.scaling.enabled));
        assert!(!mesh.crew.persist_results);
    }
}
