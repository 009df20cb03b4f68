//! The floor: fresh runtimes for the same handler, driven directly by a Python client
//! making the pipeline's three `POST /invoke` round trips. No queues, no sidecar.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use troupe_runtime::launcher::{write_runtime_file, RuntimeProcess, RuntimeSpec};

use crate::project::{Project, ACTORS};

/// Longest wait for a floor runtime to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the floor measured.
#[derive(Debug, Clone)]
pub struct FloorResult {
    /// Pipelines completed in the measured loop.
    pub pipelines: usize,
    /// Wall time of the measured loop.
    pub wall: Duration,
    /// Per-pipeline latency (three round trips).
    pub p50: Duration,
    /// 99th percentile of the same.
    pub p99: Duration,
    /// CPU seconds of the three runtimes.
    pub cpu_python: f64,
    /// CPU seconds of the client during the measured loop.
    pub cpu_client: f64,
}

fn secs(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow!("floor client output lacks '{key}': {v}"))
}

/// Starts three runtimes under `project.root/floor`, runs the client, stops them.
pub async fn run(
    project: &Project,
    python: &str,
    pipelines: usize,
    warmup: usize,
) -> Result<FloorResult> {
    let base = project.root.join("floor");
    let runtime_file =
        write_runtime_file(&base).context("writing the runtime file for the floor")?;
    let mut procs = Vec::new();
    for actor in ACTORS {
        let spec = RuntimeSpec {
            python: python.to_owned(),
            handler: "noop.noop".to_owned(),
            socket_dir: base.join(actor),
            runtime_file: runtime_file.clone(),
            env: vec![("ASYA_ACTOR_NAME".to_owned(), actor.to_owned())],
            python_path: vec![project.root.clone()],
            cwd: Some(project.root.clone()),
        };
        std::fs::create_dir_all(&spec.socket_dir)?;
        let mut p = RuntimeProcess::spawn(spec)
            .with_context(|| format!("starting floor runtime {actor}"))?;
        p.wait_ready(READY_TIMEOUT)
            .await
            .with_context(|| format!("floor runtime {actor}"))?;
        procs.push(p);
    }
    let result = measure(project, python, pipelines, warmup, &procs).await;
    for p in &mut procs {
        let _ = p.terminate(Duration::from_secs(5)).await;
    }
    result
}

async fn measure(
    project: &Project,
    python: &str,
    pipelines: usize,
    warmup: usize,
    procs: &[RuntimeProcess],
) -> Result<FloorResult> {
    // The client reads the runtimes' CPU itself around its measured loop, so warm-up
    // calls and interpreter start-up stay out of the figures.
    let pids: Vec<String> = procs.iter().map(|p| p.pid().to_string()).collect();
    let output = tokio::process::Command::new(python)
        .arg(&project.floor_client)
        .arg(pipelines.to_string())
        .arg(warmup.to_string())
        .arg(pids.join(","))
        .args(
            ACTORS
                .iter()
                .zip(procs)
                .map(|(a, p)| format!("{a}={}", socket_arg(p.socket_path()))),
        )
        .current_dir(&project.root)
        .output()
        .await
        .context("running the floor client")?;
    if !output.status.success() {
        bail!(
            "floor client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("floor client printed {stdout:?}"))?;
    Ok(FloorResult {
        pipelines,
        wall: Duration::from_secs_f64(secs(&v, "elapsed_s")?),
        p50: Duration::from_secs_f64(secs(&v, "p50_us")? / 1e6),
        p99: Duration::from_secs_f64(secs(&v, "p99_us")? / 1e6),
        cpu_python: secs(&v, "runtime_cpu_s")?,
        cpu_client: secs(&v, "cpu_s")?,
    })
}

fn socket_arg(p: &Path) -> String {
    p.display().to_string()
}
