//! `troupe-bench brokers`: the 3-step pipeline on RabbitMQ and on Redis, side by side with
//! Celery and Dramatiq, and a raw-broker floor, in one run.
//!
//! For each broker (a private node started with `scripts/services/{rabbitmq,redis}.sh`,
//! shared by every system) and each workload (no-op steps, 1 ms of CPU per step), every
//! system runs the same phases: warm-up (sequential, not measured), unloaded (sequential
//! pipelines: end-to-end p50/p99), loaded (the first queue's consumer stopped, N pipelines
//! queued, the consumer started again; pipelines/s and CPU from the first completion to the
//! last). Systems:
//!
//! - `floor`: Rust only, three stage tasks moving the envelopes between three queues
//!   ([`crate::floor_broker`]);
//! - `troupe`: the in-process mesh of `troupe up` with `transport:` the broker's URL
//!   ([`crate::brokerrun`]);
//! - `celery`, `celery-solo`, `dramatiq`: `bench/brokers/harness.py` (prefork or solo pool).
//!
//! Runs are interleaved (run 1 of every system, then run 2, ...) so slow drift of a shared
//! machine spreads over all systems; the table shows medians.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::procstat;
use crate::stats::{self, Latency};

/// The per-step workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Work {
    /// Return the payload.
    Noop,
    /// Spin ~1 ms of CPU, then return the payload.
    Cpu1ms,
}

impl Work {
    /// Name used by the harness (`BENCH_WORK`) and the table.
    pub fn name(self) -> &'static str {
        match self {
            Work::Noop => "noop",
            Work::Cpu1ms => "cpu1ms",
        }
    }

    /// Function of `work.py` the Troupe actors run.
    pub fn handler(self) -> &'static str {
        match self {
            Work::Noop => "noop",
            Work::Cpu1ms => "spin",
        }
    }
}

/// A broker kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerKind {
    /// RabbitMQ (`scripts/services/rabbitmq.sh`).
    Rabbitmq,
    /// Redis (`scripts/services/redis.sh`).
    Redis,
}

impl BrokerKind {
    fn name(self) -> &'static str {
        match self {
            BrokerKind::Rabbitmq => "rabbitmq",
            BrokerKind::Redis => "redis",
        }
    }
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// Rust client moving the envelopes through three queues, no Python.
    Floor,
    /// The in-process mesh with the broker transport, concurrency 1, default pipeline.
    Troupe,
    /// The same with `pipeline: 0`: each message acked before the next is taken (Asya's
    /// sidecar).
    TroupeP0,
    /// The same with `concurrency: 4` (4 messages in flight per sidecar; the runtime still
    /// handles one at a time).
    TroupeC4,
    /// Celery, prefork pool (its default), one child process per worker.
    Celery,
    /// Celery, solo pool.
    CelerySolo,
    /// Dramatiq.
    Dramatiq,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Floor => "floor (Rust, no Python)",
            System::Troupe => "troupe",
            System::TroupeP0 => "troupe (pipeline 0)",
            System::TroupeC4 => "troupe (concurrency 4)",
            System::Celery => "celery (prefork)",
            System::CelerySolo => "celery (solo)",
            System::Dramatiq => "dramatiq",
        }
    }

    fn key(self) -> &'static str {
        match self {
            System::Floor => "floor",
            System::Troupe => "troupe",
            System::TroupeP0 => "troupe-p0",
            System::TroupeC4 => "troupe-c4",
            System::Celery => "celery",
            System::CelerySolo => "celery-solo",
            System::Dramatiq => "dramatiq",
        }
    }
}

/// Options of `troupe-bench brokers`.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokersArgs {
    /// Brokers to run on.
    #[arg(long, value_delimiter = ',', default_value = "rabbitmq,redis")]
    pub brokers: Vec<BrokerKind>,
    /// Workloads.
    #[arg(long, value_delimiter = ',', default_value = "noop,cpu1ms")]
    pub work: Vec<Work>,
    /// Systems.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,troupe,troupe-p0,celery,celery-solo,dramatiq"
    )]
    pub systems: Vec<System>,
    /// Runs of each combination (the table shows medians).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Pipelines queued for the loaded phase of each run.
    #[arg(long, default_value_t = 2000)]
    pub pipelines: usize,
    /// Longest loaded phase, seconds (the run is counted over what completed by then).
    #[arg(long, default_value_t = 60)]
    pub time_limit: u64,
    /// Sequential pipelines first, not measured.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Sequential pipelines for the end-to-end latency.
    #[arg(long, default_value_t = 200)]
    pub unloaded: usize,
    /// `pipeline:` of Troupe's actors (messages settling per worker while the next one
    /// runs); unset keeps the engine's default.
    #[arg(long)]
    pub troupe_pipeline: Option<usize>,
    /// Dramatiq worker threads (`--processes 1 --threads N`).
    #[arg(long, default_value_t = 1)]
    pub dramatiq_threads: usize,
    /// Python with the packages of bench/brokers/requirements.txt; also runs Troupe's
    /// runtimes, so every system uses the same interpreter.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The repository root (bench/brokers, scripts/services); default: this source tree.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Redis `appendfsync` (redis.sh's default is `always`; Redis's own is `everysec`).
    #[arg(long, default_value = "everysec")]
    pub redis_appendfsync: String,
    /// Folder for the brokers' data and the Troupe projects (default: system temp).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print every run as JSON lines too (stdout, after the table).
    #[arg(long)]
    pub json: bool,
}

/// Phase sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Sequential, not measured.
    pub warmup: usize,
    /// Sequential, measured.
    pub unloaded: usize,
    /// Queued for the loaded phase.
    pub pipelines: usize,
    /// Longest loaded phase.
    pub time_limit: Duration,
}

/// What one run of one system measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Pipelines counted in the loaded window (completions after the first one).
    pub pipelines: usize,
    /// Pipelines queued.
    pub requested: usize,
    /// The loaded phase hit its time limit.
    pub timed_out: bool,
    /// From the first completion to the last.
    pub wall: Duration,
    /// CPU seconds of the system (not the broker) in the window.
    pub cpu_system: f64,
    /// The same, by part (troupe process / Python runtimes, or per worker).
    pub cpu_parts: Vec<(String, f64)>,
    /// CPU seconds of the broker in the window.
    pub cpu_broker: f64,
    /// End-to-end latency, one pipeline at a time.
    pub unloaded: Latency,
    /// CPU seconds of the system over the unloaded phase.
    pub unloaded_cpu: f64,
    /// CPU seconds of the broker over the unloaded phase.
    pub unloaded_broker_cpu: f64,
    /// How long queueing the loaded batch took (not counted).
    pub preload: Duration,
}

impl RunResult {
    fn rate(&self) -> f64 {
        stats::rate(self.pipelines, self.wall)
    }

    fn to_json(&self) -> Value {
        json!({
            "pipelines": self.pipelines,
            "requested": self.requested,
            "timed_out": self.timed_out,
            "wall_s": self.wall.as_secs_f64(),
            "pipelines_per_s": self.rate(),
            "cpu_s_per_1k": stats::per_thousand(self.cpu_system, self.pipelines),
            "cpu_parts_s": self.cpu_parts.iter().map(|(k, v)| json!({k: v})).collect::<Vec<_>>(),
            "broker_cpu_s_per_1k": stats::per_thousand(self.cpu_broker, self.pipelines),
            "unloaded_p50_ms": ms(self.unloaded.p50),
            "unloaded_p99_ms": ms(self.unloaded.p99),
            "unloaded_cpu_s": self.unloaded_cpu,
            "unloaded_broker_cpu_s": self.unloaded_broker_cpu,
            "preload_s": self.preload.as_secs_f64(),
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU seconds of `root` and all its descendants; 0 for pid 0 or a process that is gone.
pub fn tree_cpu_seconds(root: u32) -> f64 {
    if root == 0 {
        return 0.0;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut table: Vec<(u32, procstat::ProcStat)> = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(st) = procstat::read_stat(pid) {
            table.push((pid, st));
        }
    }
    let mut total = 0;
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for (p, st) in &table {
            if *p == pid {
                total += st.cpu_ticks;
            }
            if st.ppid == pid {
                todo.push(*p);
            }
        }
    }
    procstat::ticks_to_seconds(total)
}

/// A broker this command started; stopped (by its script, which stops it by pid) on drop.
pub(crate) struct Broker {
    kind: BrokerKind,
    script: PathBuf,
    dir: PathBuf,
    /// The broker's URL (`transport:`).
    pub(crate) url: String,
    /// The broker's process, for its CPU time.
    pub(crate) pid: u32,
}

impl Broker {
    /// Starts a private node in `dir` with `scripts/services/{kind}.sh`.
    pub(crate) fn start(
        kind: BrokerKind,
        repo: &Path,
        dir: &Path,
        appendfsync: &str,
    ) -> Result<Broker> {
        let script = repo
            .join("scripts/services")
            .join(format!("{}.sh", kind.name()));
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script).arg("start").arg(dir);
        if kind == BrokerKind::Redis {
            cmd.args(["--appendfsync", appendfsync]);
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!("{} start failed ({})", script.display(), out.status);
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let pid_file = dir.join(match kind {
            BrokerKind::Rabbitmq => "rabbit.pid",
            BrokerKind::Redis => "redis.pid",
        });
        let mut broker = Broker {
            kind,
            script,
            dir: dir.to_path_buf(),
            url,
            pid: 0,
        };
        broker.pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| anyhow!("no pid in {}", pid_file.display()))?;
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let status = std::process::Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "could not stop the {} broker in {} (pid {})",
                self.kind.name(),
                self.dir.display(),
                self.pid
            );
        }
    }
}

fn repo_root(args: &BrokersArgs) -> PathBuf {
    default_repo(args.repo.as_ref())
}

/// `repo`, else this source tree.
pub(crate) fn default_repo(repo: Option<&PathBuf>) -> PathBuf {
    repo.cloned().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .unwrap_or_else(|_| PathBuf::from("."))
    })
}

/// One Celery or Dramatiq run through `bench/brokers/harness.py`.
async fn run_harness(
    args: &BrokersArgs,
    python: &Path,
    repo: &Path,
    system: System,
    broker: &Broker,
    work: Work,
    prefix: &str,
) -> Result<(RunResult, Value)> {
    let phases = phases(args);
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(repo.join("bench/brokers/harness.py"));
    match system {
        System::Celery => cmd.args(["celery", "--celery-pool", "prefork"]),
        System::CelerySolo => cmd.args(["celery", "--celery-pool", "solo"]),
        System::Dramatiq => cmd.args([
            "dramatiq".to_owned(),
            "--dramatiq-threads".to_owned(),
            args.dramatiq_threads.to_string(),
        ]),
        System::Floor | System::Troupe | System::TroupeP0 | System::TroupeC4 => {
            bail!("not a harness system")
        }
    };
    cmd.arg("--broker-url")
        .arg(&broker.url)
        .args(["--work", work.name()])
        .args(["--pipelines", &phases.pipelines.to_string()])
        .args(["--time-limit", &args.time_limit.to_string()])
        .args(["--warmup", &phases.warmup.to_string()])
        .args(["--unloaded", &phases.unloaded.to_string()])
        .args(["--broker-pid", &broker.pid.to_string()])
        .args(["--prefix", prefix])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = cmd.spawn().context("starting bench/brokers/harness.py")?;
    // Start-up, warm-up, unloaded and loaded phases, and stopping the workers: bounded.
    let limit = Duration::from_secs(args.time_limit) + Duration::from_secs(300);
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out?,
        Err(_) => bail!("harness did not finish within {limit:?} (killed)"),
    };
    if !out.status.success() {
        bail!("harness failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("harness printed {stdout:?}"))?;
    let f = |path: &[&str]| -> Result<f64> {
        let mut cur = &v;
        for p in path {
            cur = cur
                .get(*p)
                .ok_or_else(|| anyhow!("harness output lacks {path:?}: {v}"))?;
        }
        cur.as_f64()
            .ok_or_else(|| anyhow!("harness output {path:?} is not a number: {v}"))
    };
    let pipelines = usize::try_from(
        v.pointer("/loaded/pipelines")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("harness output lacks loaded.pipelines: {v}"))?,
    )?;
    let parts = v
        .pointer("/loaded/cpu_by_queue_s")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .zip(["worker a", "worker b", "worker c"])
                .map(|(x, n)| (n.to_owned(), x.as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    let us = |x: f64| Duration::from_secs_f64(x / 1e6);
    let result = RunResult {
        pipelines,
        requested: phases.pipelines,
        timed_out: v
            .pointer("/loaded/timed_out")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        wall: Duration::from_secs_f64(f(&["loaded", "wall_s"])?),
        cpu_system: f(&["loaded", "cpu_workers_s"])?,
        cpu_parts: parts,
        cpu_broker: f(&["loaded", "cpu_broker_s"])?,
        unloaded: Latency {
            p50: us(f(&["unloaded", "p50_us"])?),
            p99: us(f(&["unloaded", "p99_us"])?),
            mean: Duration::ZERO,
            max: Duration::ZERO,
        },
        unloaded_cpu: f(&["unloaded", "cpu_workers_s"])?,
        unloaded_broker_cpu: f(&["unloaded", "cpu_broker_s"])?,
        preload: Duration::from_secs_f64(f(&["preload_s"])?),
    };
    let settings = v.get("settings").cloned().unwrap_or(Value::Null);
    Ok((result, settings))
}

fn phases(args: &BrokersArgs) -> Phases {
    Phases {
        warmup: args.warmup.max(1),
        unloaded: args.unloaded.max(1),
        pipelines: args.pipelines.max(2),
        time_limit: Duration::from_secs(args.time_limit.max(1)),
    }
}

/// Which Python to use: `--python`, else bench/brokers/.venv, else `python3`.
fn python(args: &BrokersArgs, repo: &Path) -> PathBuf {
    if let Some(p) = &args.python {
        // Absolute, because the meshes run from their own folders; not canonical, which
        // would resolve a venv's python link to the bare interpreter.
        return std::path::absolute(p).unwrap_or_else(|_| p.clone());
    }
    let venv = repo.join("bench/brokers/.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn version_of(python: &Path, code: &str) -> String {
    std::process::Command::new(python)
        .args(["-c", code])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

pub(crate) fn broker_version(kind: BrokerKind) -> String {
    let (cmd, args): (&str, &[&str]) = match kind {
        BrokerKind::Rabbitmq => ("dpkg-query", &["-W", "-f", "${Version}", "rabbitmq-server"]),
        BrokerKind::Redis => ("redis-server", &["--version"]),
    };
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

struct Row {
    broker: BrokerKind,
    work: Work,
    system: System,
    runs: Vec<RunResult>,
    failures: Vec<String>,
}

struct Medians {
    rate: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    broker_cpu: f64,
}

impl Row {
    fn medians(&self) -> Option<Medians> {
        if self.runs.is_empty() {
            return None;
        }
        let m = |f: &dyn Fn(&RunResult) -> f64| stats::median(self.runs.iter().map(f).collect());
        Some(Medians {
            rate: m(&|r| r.rate()),
            p50: m(&|r| ms(r.unloaded.p50)),
            p99: m(&|r| ms(r.unloaded.p99)),
            cpu: m(&|r| stats::per_thousand(r.cpu_system, r.pipelines)),
            broker_cpu: m(&|r| stats::per_thousand(r.cpu_broker, r.pipelines)),
        })
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| broker | work | system | pipelines/s | p50 ms | p99 ms | CPU-s/1k system | CPU-s/1k broker | runs |\n");
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---|\n");
    for r in rows {
        let rates: Vec<String> = r.runs.iter().map(|x| format!("{:.0}", x.rate())).collect();
        let timed_out = r.runs.iter().filter(|x| x.timed_out).count();
        let mut runs = format!("{} ({})", r.runs.len(), rates.join("/"));
        if timed_out > 0 {
            runs.push_str(&format!(", {timed_out} hit the time limit"));
        }
        let runs = if r.failures.is_empty() {
            runs
        } else {
            format!("{runs}, {} failed", r.failures.len())
        };
        match r.medians() {
            Some(m) => s.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.3} | {:.3} | {} |\n",
                r.broker.name(),
                r.work.name(),
                r.system.name(),
                m.rate,
                m.p50,
                m.p99,
                m.cpu,
                m.broker_cpu,
                runs
            )),
            None => s.push_str(&format!(
                "| {} | {} | {} | – | – | – | – | – | all failed |\n",
                r.broker.name(),
                r.work.name(),
                r.system.name()
            )),
        }
    }
    s
}

fn verdict(rows: &[Row]) -> String {
    let mut s = String::new();
    let find = |b: BrokerKind, w: Work, sys: System| {
        rows.iter()
            .find(|r| r.broker == b && r.work == w && r.system == sys)
            .and_then(Row::medians)
    };
    let mut combos: Vec<(BrokerKind, Work)> = rows.iter().map(|r| (r.broker, r.work)).collect();
    combos.dedup();
    for (b, w, troupe) in combos.iter().flat_map(|(b, w)| {
        [System::Troupe, System::TroupeP0, System::TroupeC4].map(|t| (*b, *w, t))
    }) {
        let Some(t) = find(b, w, troupe) else {
            continue;
        };
        for (other, target) in [
            (System::Celery, 3.0),
            (System::CelerySolo, 3.0),
            (System::Dramatiq, 1.5),
        ] {
            if let Some(o) = find(b, w, other) {
                let x = if o.rate > 0.0 {
                    t.rate / o.rate
                } else {
                    f64::INFINITY
                };
                s.push_str(&format!(
                    "{} {}: {} / {} = {:.2}x throughput (target >= {:.1}x: {}), p99 {:.2} vs {:.2} ms ({})\n",
                    b.name(),
                    w.name(),
                    troupe.name(),
                    other.name(),
                    x,
                    target,
                    if x >= target { "met" } else { "MISSED" },
                    t.p99,
                    o.p99,
                    if t.p99 < o.p99 { "lower" } else { "NOT lower" }
                ));
            }
        }
    }
    s
}

/// Entry point of `troupe-bench brokers`.
pub fn main(args: &BrokersArgs) -> Result<()> {
    let repo = repo_root(args);
    let python = python(args, &repo);
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix("troupe-brokers-")
        .tempdir_in(&parent)?;
    let load = procstat::load_average()
        .map(|(a, b, c)| format!("{a:.2} {b:.2} {c:.2}"))
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let py_version = version_of(&python, "import sys; print(sys.version.split()[0])");
    let pkgs = version_of(
        &python,
        "import importlib.metadata as m\nprint(' '.join(f'{p}=={m.version(p)}' for p in ('celery','kombu','dramatiq','pika','redis')))",
    );
    println!("# troupe-bench brokers");
    println!(
        "machine: {cpus} CPUs, load average at start {load}; python {} ({py_version}); {pkgs}",
        python.display()
    );
    println!(
        "each run: {} warm-up + {} unloaded pipelines one at a time, then {} queued (or {} s); medians of {} runs",
        args.warmup, args.unloaded, args.pipelines, args.time_limit, args.runs
    );

    let mut brokers = Vec::new();
    for kind in &args.brokers {
        let dir = tmp.path().join(kind.name());
        let b = Broker::start(*kind, &repo, &dir, &args.redis_appendfsync)?;
        println!(
            "broker: {} {} at {} (pid {})",
            kind.name(),
            broker_version(*kind),
            troupe_transport::redact_url(&b.url),
            b.pid
        );
        brokers.push(b);
    }
    let mut rows: Vec<Row> = Vec::new();
    for b in &brokers {
        for w in &args.work {
            for s in &args.systems {
                rows.push(Row {
                    broker: b.kind,
                    work: *w,
                    system: *s,
                    runs: Vec::new(),
                    failures: Vec::new(),
                });
            }
        }
    }
    let mut json_lines = Vec::new();
    let started = Instant::now();
    for run in 1..=args.runs {
        for row in &mut rows {
            let broker = brokers
                .iter()
                .find(|b| b.kind == row.broker)
                .ok_or_else(|| anyhow!("broker missing"))?;
            let tag = format!("r{run}-{}-{}", row.work.name(), row.system.key());
            eprintln!(
                "[{:>5.0} s] run {run}/{}: {} {} {} (load {:.2})",
                started.elapsed().as_secs_f64(),
                args.runs,
                row.broker.name(),
                row.work.name(),
                row.system.name(),
                procstat::load_average().map_or(0.0, |l| l.0)
            );
            let r = one(args, &python, &repo, tmp.path(), broker, row, &tag);
            match r {
                Ok((res, settings)) => {
                    eprintln!(
                        "    {:.0} pipelines/s, p50 {:.2} ms, p99 {:.2} ms, CPU-s/1k {:.3} (+ broker {:.3})",
                        res.rate(),
                        ms(res.unloaded.p50),
                        ms(res.unloaded.p99),
                        stats::per_thousand(res.cpu_system, res.pipelines),
                        stats::per_thousand(res.cpu_broker, res.pipelines)
                    );
                    json_lines.push(json!({
                        "run": run,
                        "broker": row.broker.name(),
                        "work": row.work.name(),
                        "system": row.system.key(),
                        "settings": settings,
                        "load1": procstat::load_average().map(|l| l.0),
                        "result": res.to_json(),
                    }));
                    row.runs.push(res);
                }
                Err(e) => {
                    eprintln!("    failed: {e:#}");
                    row.failures.push(format!("{e:#}"));
                }
            }
        }
    }
    println!();
    print!("{}", table(&rows));
    println!();
    print!("{}", verdict(&rows));
    if args.json {
        for l in json_lines {
            println!("{l}");
        }
    }
    drop(brokers);
    Ok(())
}

fn one(
    args: &BrokersArgs,
    python: &Path,
    repo: &Path,
    tmp: &Path,
    broker: &Broker,
    row: &Row,
    tag: &str,
) -> Result<(RunResult, Value)> {
    let phases = phases(args);
    // Own queue names per run: nothing left over from an earlier run can interfere.
    let namespace = format!("tb-{tag}");
    // And, on RabbitMQ, an own exchange: the transport binds queue `asya-{ns}-{actor}` with
    // routing key `{actor}` alone, so meshes of different namespaces on one exchange would
    // each get a copy of the others' messages.
    let url = match broker.kind {
        BrokerKind::Rabbitmq => format!("{}?exchange={namespace}", broker.url),
        BrokerKind::Redis => broker.url.clone(),
    };
    match row.system {
        System::Floor => Ok((
            crate::floor_broker::run(&url, &namespace, broker.pid, row.work, phases)?,
            json!({"stages": 3, "prefetch": 1, "runtime": "tokio multi-thread, 3 workers"}),
        )),
        System::Troupe | System::TroupeP0 | System::TroupeC4 => {
            let concurrency = if row.system == System::TroupeC4 { 4 } else { 1 };
            let pipeline = match row.system {
                System::TroupeP0 => Some(0),
                _ => args.troupe_pipeline,
            };
            let rt = crate::mesh_runtime(0)?;
            let dir = tmp.join(&namespace);
            let py = python.display().to_string();
            let r = rt.block_on(crate::brokerrun::run(
                crate::brokerrun::TroupeRun {
                    dir: &dir,
                    python: &py,
                    namespace: &namespace,
                    transport: &url,
                    broker_pid: broker.pid,
                    work: row.work,
                    concurrency,
                    pipeline,
                },
                phases,
            ));
            rt.shutdown_timeout(Duration::from_secs(1));
            Ok((
                r?,
                json!({"replicas": 1, "concurrency": concurrency, "pipeline": pipeline.unwrap_or(troupe_engine::settings::DEFAULT_PIPELINE), "persist_results": false, "runtime": "current-thread"}),
            ))
        }
        System::Celery | System::CelerySolo | System::Dramatiq => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let prefix = format!("tb_{}_", tag.replace('-', "_"));
            rt.block_on(run_harness(
                args, python, repo, row.system, broker, row.work, &prefix,
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tree_cpu_counts_children() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let own = procstat::self_cpu_seconds().unwrap();
        let tree = tree_cpu_seconds(me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree > own, "tree {tree} own {own}");
        assert!(tree_cpu_seconds(0).abs() < f64::EPSILON);
    }

    #[test]
    fn table_and_verdict() {
        let lat = Latency {
            p50: Duration::from_millis(1),
            p99: Duration::from_millis(2),
            mean: Duration::ZERO,
            max: Duration::ZERO,
        };
        let run = |n: usize, secs: f64| RunResult {
            pipelines: n,
            requested: n + 1,
            timed_out: false,
            wall: Duration::from_secs_f64(secs),
            cpu_system: 1.0,
            cpu_parts: Vec::new(),
            cpu_broker: 0.5,
            unloaded: lat,
            unloaded_cpu: 0.0,
            unloaded_broker_cpu: 0.0,
            preload: Duration::ZERO,
        };
        let rows = vec![
            Row {
                broker: BrokerKind::Rabbitmq,
                work: Work::Noop,
                system: System::Troupe,
                runs: vec![run(1000, 1.0), run(1000, 2.0), run(1000, 0.5)],
                failures: Vec::new(),
            },
            Row {
                broker: BrokerKind::Rabbitmq,
                work: Work::Noop,
                system: System::Celery,
                runs: vec![run(100, 1.0)],
                failures: vec!["x".into()],
            },
        ];
        let t = table(&rows);
        assert!(t.contains("| rabbitmq | noop | troupe | 1000 | 1.00 | 2.00 | 1.000 | 0.500 | 3 (1000/500/2000) |"), "{t}");
        assert!(t.contains("1 (100), 1 failed"), "{t}");
        let v = verdict(&rows);
        assert!(
            v.contains("troupe / celery (prefork) = 10.00x throughput (target >= 3.0x: met)"),
            "{v}"
        );
    }
}
