//! `troupe-bench gateway`: what the mesh's gateway costs and sustains, on the same
//! 3-actor no-op pipeline as the default benchmark.
//!
//! 1. Overhead: sequential tasks created with `POST /troupe/v1/tasks` (the mesh API's create
//!    with a route tail `a -> b -> c`) and followed on `GET /api/v1/mesh/{id}/events` until
//!    the terminal status, against the same pipeline published straight to queue `a` and
//!    awaited on the x-sink tap.
//! 2. Sustained creates: K closed-loop HTTP clients for a bounded time.
//! 3. SSE fan-out: many subscribers of one task, and one subscriber on each of many tasks,
//!    with events posted on the internal events route; delivery latency and memory.
//!
//! All HTTP traffic comes from a child process ([`crate::gwclient`]), so this process's
//! CPU time and RSS are the mesh's (plus the tap's bookkeeping).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};
use troupe_mesh::Mesh;
use troupe_protocol::{Envelope, Phase};

use crate::gwclient::{Job, LoadResult, SeqResult, SseResult};
use crate::meshrun::{self, CpuSnapshot, PhaseResult};
use crate::project::{self, ACTORS, HOLD_ACTOR};
use crate::stats::{self, per_thousand};
use crate::{procstat, report};

/// Longest any step of a child may take before the benchmark gives up on it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest the pipeline may take to finish the tasks of a load run after it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The gateway's task store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    /// `{state_dir}/gateway.db` (the mesh's default).
    Sqlite,
    /// In memory.
    Memory,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Memory => "memory",
        }
    }
}

/// Options of `troupe-bench gateway`.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Runs of each part; rates and latencies are reported as their median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Parts to run (1 overhead, 2 sustained creates, 3 SSE subscribers).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub parts: Vec<u8>,
    /// Part 1: sequential tasks per run and path.
    #[arg(long, default_value_t = 300)]
    pub tasks: usize,
    /// Part 1: unmeasured sequential tasks before each run, per path.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// Part 2: concurrent HTTP clients creating tasks; part 3b: concurrent posters.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Part 2: seconds of creating per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Part 2: at most this many creates per run, whatever the time.
    #[arg(long, default_value_t = 50_000)]
    pub max_creates: usize,
    /// Part 3: SSE streams.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Part 3: events posted per kind (status, FLY) and run.
    #[arg(long, default_value_t = 5)]
    pub events: usize,
    /// The gateway's task store.
    #[arg(long, value_enum, default_value_t = Store::Sqlite)]
    pub store: Store,
    /// Run with `crew: {persist_results: false}` (no result file per finished task).
    #[arg(long)]
    pub no_persist: bool,
    /// Tokio worker threads running the mesh; 0 = one current-thread runtime, as
    /// `troupe up` runs it.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Python interpreter for the runtimes.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Folder in which to create the throwaway project (default: the system temp folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the project folder and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Internal: this is the separate mesh process of part 3; print its runs as JSON.
    #[arg(long, hide = true)]
    pub sse_nested: bool,
}

impl GatewayArgs {
    fn part(&self, n: u8) -> bool {
        self.parts.contains(&n)
    }
}

/// One run of part 1.
#[derive(Debug, Clone)]
pub struct SeqRun {
    /// Published to queue `a`, awaited on the x-sink tap.
    pub direct: PhaseResult,
    /// Created over HTTP, awaited on SSE, on keep-alive connections (reqwest's pool).
    pub gateway: PhaseResult,
    /// The same with a new connection for every request.
    pub gateway_fresh: PhaseResult,
}

/// One run of part 2.
#[derive(Debug, Clone)]
pub struct LoadRun {
    /// What the clients saw.
    pub client: LoadResult,
    /// Pipelines that reached x-sink during the window.
    pub completed: usize,
    /// The window as this process saw it (go to result).
    pub window: Duration,
    /// Pipelines that reached x-sink with another phase than succeeded (window and drain).
    pub failed: usize,
    /// From the window's end until every created task reached x-sink.
    pub drain: Duration,
    /// CPU seconds of this process from the window's start to the end of the drain.
    pub cpu_troupe: f64,
}

/// One run of part 3.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SseRun {
    /// What the subscribers saw.
    pub client: SseResult,
    /// RSS before the streams opened (tasks already created).
    pub rss_before_kib: u64,
    /// RSS with half of the streams open.
    pub rss_half_kib: u64,
    /// Threads of this process before the streams opened.
    pub threads_before: u64,
    /// Threads of this process with every stream open.
    pub threads_open: u64,
    /// RSS with every stream open.
    pub rss_open_kib: u64,
    /// RSS once the client exited.
    pub rss_after_kib: u64,
    /// CPU seconds of this process while the events were posted and delivered.
    pub cpu_post: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct GatewayResults {
    /// Part 1.
    pub seq: Vec<SeqRun>,
    /// Part 2.
    pub load: Vec<LoadRun>,
    /// Part 3a.
    pub sse_one: Vec<SseRun>,
    /// Part 3b.
    pub sse_many: Vec<SseRun>,
}

/// The mimalloc option that makes freed memory leave RSS at once (milliseconds).
pub const PURGE_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Part 3's runs, as its separate mesh process prints them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SseRuns {
    one: Vec<SseRun>,
    many: Vec<SseRun>,
}

/// Entry point of `troupe-bench gateway`.
pub fn main(args: &GatewayArgs) -> Result<()> {
    let machine = report::Machine::probe(&args.python);
    let command = command_line();
    if args.sse_nested {
        let runtime = crate::mesh_runtime(args.workers)?;
        let result = runtime.block_on(run(args));
        runtime.shutdown_timeout(Duration::from_secs(1));
        let result = result?;
        let runs = SseRuns {
            one: result.sse_one,
            many: result.sse_many,
        };
        println!("{}", serde_json::to_string(&runs)?);
        return Ok(());
    }
    if !args.json {
        print!("{}", crate::gwreport::header(args, &machine, &command));
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    let mut result = GatewayResults::default();
    if args.part(1) || args.part(2) {
        let runtime = crate::mesh_runtime(args.workers)?;
        let r = runtime.block_on(run(args));
        runtime.shutdown_timeout(Duration::from_secs(1));
        result = r?;
    }
    if args.part(3) {
        let runs = sse_nested(args)?;
        result.sse_one = runs.one;
        result.sse_many = runs.many;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::gwreport::json(
                args, &machine, &command, &result
            ))?
        );
    } else {
        print!("{}", crate::gwreport::part3_text(args, &result));
    }
    Ok(())
}

/// The value of [`PURGE_ENV`] part 3 runs with: the caller's, or 0.
pub fn purge_delay() -> String {
    std::env::var(PURGE_ENV).unwrap_or_else(|_| "0".to_owned())
}

/// Runs part 3 in a mesh process of its own. Memory the allocator kept from parts 1 and
/// 2 (or from the previous run's streams) would otherwise absorb the streams' allocations
/// and hide them from RSS; with a purge delay of 0, mimalloc returns freed pages at once,
/// so each run's RSS before and with the streams open are both live memory.
fn sse_nested(args: &GatewayArgs) -> Result<SseRuns> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["gateway", "--sse-nested", "--parts", "3"])
        .args(["--runs", &args.runs.to_string()])
        .args(["--clients", &args.clients.to_string()])
        .args(["--subscribers", &args.subscribers.to_string()])
        .args(["--events", &args.events.to_string()])
        .args(["--store", args.store.name()])
        .args(["--workers", &args.workers.to_string()])
        .args(["--python", &args.python])
        .env(PURGE_ENV, purge_delay())
        // The event posts of part 3 use sidecar-only routes: the nested mesh and its
        // clients share one token instead of the one `troupe up` would generate.
        .env(
            troupe_protocol::sidecar_env::GATEWAY_TOKEN,
            uuid::Uuid::new_v4().to_string(),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(dir) = &args.dir {
        cmd.arg("--dir").arg(dir);
    }
    if args.no_persist {
        cmd.arg("--no-persist");
    }
    if args.keep {
        cmd.arg("--keep");
    }
    // A rebuild replaces the binary under a running benchmark (/proc/self/exe then
    // reads "... (deleted)"); name the path so that failure explains itself.
    let out = cmd
        .output()
        .with_context(|| format!("starting part 3's mesh process {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "part 3's mesh process failed ({}); see its error above",
            out.status
        );
    }
    serde_json::from_slice(&out.stdout).context("reading part 3's results")
}

fn command_line() -> String {
    let rest: Vec<String> = std::env::args().skip(1).collect();
    format!("troupe-bench {}", rest.join(" "))
}

/// Arrivals at x-sink, counted, with waiters for single ids (the direct path).
#[derive(Default)]
struct Tap {
    succeeded: AtomicUsize,
    failed: AtomicUsize,
    first_failure: Mutex<Option<String>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Option<Phase>>>>,
}

impl Tap {
    fn spawn(mut rx: mpsc::UnboundedReceiver<Envelope>) -> Arc<Tap> {
        let tap = Arc::new(Tap::default());
        let t = tap.clone();
        tokio::spawn(async move {
            while let Some(env) = rx.recv().await {
                let phase = env.status.as_ref().map(|s| s.phase);
                if phase == Some(Phase::Succeeded) {
                    t.succeeded.fetch_add(1, Ordering::Relaxed);
                } else {
                    t.failed.fetch_add(1, Ordering::Relaxed);
                    t.first_failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(|| format!("task {} reached x-sink {phase:?}", env.id));
                }
                let waiter = t
                    .waiters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&env.id);
                if let Some(w) = waiter {
                    let _ = w.send(phase);
                }
            }
        });
        tap
    }

    fn arrived(&self) -> usize {
        self.succeeded.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn wait_for(&self, id: &str) -> oneshot::Receiver<Option<Phase>> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), tx);
        rx
    }

    /// Waits until `count` pipelines arrived in all; whether they did within `within`.
    async fn until_arrived(&self, count: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.arrived() < count {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// A `troupe-bench gateway-client` child and its protocol lines.
struct Client {
    child: tokio::process::Child,
    stdin: Option<ChildStdin>,
    out: Lines<BufReader<ChildStdout>>,
}

impl Client {
    fn spawn(job: Job, url: &str, args: &GatewayArgs, fresh: bool) -> Result<Client> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let job = match job {
            Job::Seq => "seq",
            Job::Load => "load",
            Job::SseOne => "sse-one",
            Job::SseMany => "sse-many",
        };
        let mut child = tokio::process::Command::new(&exe)
            .arg("gateway-client")
            .args(["--url", url, "--job", job])
            .args(["--actor", ACTORS[0], "--route-next", &ACTORS[1..].join(",")])
            .args(["--hold", HOLD_ACTOR])
            .args(["--tasks", &args.tasks.to_string()])
            .args(["--warmup", &args.warmup.to_string()])
            .args(["--clients", &args.clients.to_string()])
            .args(["--duration", &args.duration.to_string()])
            .args(["--max-creates", &args.max_creates.to_string()])
            .args(["--subscribers", &args.subscribers.to_string()])
            .args(["--events", &args.events.to_string()])
            .args(fresh.then_some("--fresh"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the HTTP client process {}", exe.display()))?;
        let stdin = child.stdin.take();
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("client process without stdout"))?;
        Ok(Client {
            child,
            stdin,
            out: BufReader::new(out).lines(),
        })
    }

    /// Reads lines until `word` (or `word <rest>`); returns the rest.
    async fn expect(&mut self, word: &str) -> Result<String> {
        loop {
            let line = tokio::time::timeout(CHILD_TIMEOUT, self.out.next_line())
                .await
                .map_err(|_| anyhow!("no '{word}' from the client within {CHILD_TIMEOUT:?}"))?
                .context("reading the client's output")?;
            let Some(line) = line else {
                let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
                bail!("the client exited before '{word}' ({status:?}); see its error above");
            };
            if line == word {
                return Ok(String::new());
            }
            if let Some(rest) = line.strip_prefix(word).and_then(|r| r.strip_prefix(' ')) {
                return Ok(rest.to_owned());
            }
        }
    }

    async fn go(&mut self) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("client stdin closed"))?;
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .map_err(|_| anyhow!("the client did not exit"))??;
        if !status.success() {
            bail!("the client exited with {status}");
        }
        Ok(())
    }
}

async fn run(args: &GatewayArgs) -> Result<GatewayResults> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("troupe-bench-gw-")
        .tempdir_in(&parent)
        .context("creating the project folder")?;
    let project = project::write_with(
        tmp.path(),
        &project::gateway_mesh_yaml(&args.python, !args.no_persist, args.store.name()),
    )
    .context("writing the benchmark project")?;
    let (mesh, tap_rx) = crate::meshrun::start_tapped(&project.mesh_file)
        .await
        .context("starting the mesh")?;
    let tap = Tap::spawn(tap_rx);
    let result = measure(&mesh, &tap, args).await;
    mesh.stop().await;
    if args.keep {
        let kept = tmp.keep();
        eprintln!("project kept at {}", kept.display());
    }
    result
}

async fn wait_ready(mesh: &Mesh) -> Result<()> {
    let deadline = Instant::now() + meshrun::READY_TIMEOUT;
    while !mesh
        .pools()
        .iter()
        .filter(|p| ACTORS.contains(&p.config.name.as_str()))
        .all(|p| p.ready() >= 1)
    {
        if Instant::now() > deadline {
            bail!("runtimes not ready after {:?}", meshrun::READY_TIMEOUT);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn measure(mesh: &Mesh, tap: &Tap, args: &GatewayArgs) -> Result<GatewayResults> {
    wait_ready(mesh).await?;
    let procs = meshrun::runtimes()?;
    if procs.len() != ACTORS.len() {
        bail!(
            "expected {} runtime processes, found {procs:?}",
            ACTORS.len()
        );
    }
    let mut out = GatewayResults::default();
    let runs = args.runs.max(1);
    if args.part(1) {
        for r in 0..runs {
            progress(args, &format!("part 1, run {}/{runs}", r + 1));
            out.seq.push(seq_run(mesh, tap, &procs, args).await?);
        }
        // Each part's table goes out as soon as it is measured: a later failure keeps it.
        show(args, &crate::gwreport::part1_text(args, &out.seq));
    }
    if args.part(2) {
        for r in 0..runs {
            progress(args, &format!("part 2, run {}/{runs}", r + 1));
            out.load.push(load_run(mesh, tap, args).await?);
        }
        show(args, &crate::gwreport::part2_text(args, &out.load));
    }
    if args.part(3) && args.sse_nested {
        for r in 0..runs {
            progress(args, &format!("part 3a, run {}/{runs}", r + 1));
            out.sse_one
                .push(sse_run(mesh.url(), Job::SseOne, args).await?);
        }
        for r in 0..runs {
            progress(args, &format!("part 3b, run {}/{runs}", r + 1));
            out.sse_many
                .push(sse_run(mesh.url(), Job::SseMany, args).await?);
        }
    }
    Ok(out)
}

fn show(args: &GatewayArgs, table: &str) {
    if !args.json && !args.sse_nested {
        print!("{table}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
}

fn progress(args: &GatewayArgs, what: &str) {
    if !args.json {
        eprintln!("{what} ...");
    }
}

/// `n` pipelines published straight to queue `a`, one at a time.
async fn direct(mesh: &Mesh, tap: &Tap, n: usize) -> Result<Vec<Duration>> {
    let queue = mesh.transport().queue_name(ACTORS[0]);
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let id = meshrun::new_id();
        let body = meshrun::envelope(&id, i)?;
        let arrived = tap.wait_for(&id);
        let start = Instant::now();
        mesh.transport().send(&queue, body).await?;
        let phase = tokio::time::timeout(meshrun::IDLE_TIMEOUT, arrived)
            .await
            .map_err(|_| {
                anyhow!(
                    "pipeline {id} did not reach x-sink within {:?}",
                    meshrun::IDLE_TIMEOUT
                )
            })?
            .map_err(|_| anyhow!("the x-sink tap stopped"))?;
        if phase != Some(Phase::Succeeded) {
            bail!("pipeline {id} reached x-sink with phase {phase:?}");
        }
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

async fn seq_run(
    mesh: &Mesh,
    tap: &Tap,
    procs: &[procstat::RuntimeChild],
    args: &GatewayArgs,
) -> Result<SeqRun> {
    direct(mesh, tap, args.warmup).await?;
    let before = CpuSnapshot::take(procs)?;
    let start = Instant::now();
    let lat = direct(mesh, tap, args.tasks).await?;
    let wall = start.elapsed();
    let direct = before.phase(
        &CpuSnapshot::take(procs)?,
        args.tasks,
        wall,
        stats::summarize(lat),
    );

    let gateway_fresh = gateway_seq(mesh, tap, procs, args, true).await?;
    let gateway = gateway_seq(mesh, tap, procs, args, false).await?;
    Ok(SeqRun {
        direct,
        gateway,
        gateway_fresh,
    })
}

/// Part 1's gateway path: the client's sequential tasks.
async fn gateway_seq(
    mesh: &Mesh,
    tap: &Tap,
    procs: &[procstat::RuntimeChild],
    args: &GatewayArgs,
    fresh: bool,
) -> Result<PhaseResult> {
    let arrived = tap.arrived();
    let mut client = Client::spawn(Job::Seq, mesh.url(), args, fresh)?;
    client.expect("ready").await?;
    // The warm-up tasks were awaited on SSE, so they are through.
    let before = CpuSnapshot::take(procs)?;
    let start = Instant::now();
    client.go().await?;
    let result: SeqResult = serde_json::from_str(&client.expect("result").await?)?;
    let wall = start.elapsed();
    let after = CpuSnapshot::take(procs)?;
    client.finish().await?;
    if result.latencies_us.len() != args.tasks {
        bail!(
            "the client measured {} tasks, not {}",
            result.latencies_us.len(),
            args.tasks
        );
    }
    if !tap
        .until_arrived(arrived + args.warmup + args.tasks, DRAIN_TIMEOUT)
        .await
    {
        bail!("x-sink did not see every gateway task of part 1");
    }
    let lat = result
        .latencies_us
        .iter()
        .map(|us| Duration::from_micros(*us))
        .collect();
    Ok(before.phase(&after, args.tasks, wall, stats::summarize(lat)))
}

async fn load_run(mesh: &Mesh, tap: &Tap, args: &GatewayArgs) -> Result<LoadRun> {
    let base = tap.arrived();
    let failed0 = tap.failed.load(Ordering::Relaxed);
    let mut client = Client::spawn(Job::Load, mesh.url(), args, false)?;
    client.expect("ready").await?;
    // The client's warm-up creates (one per connection) finish before the window opens.
    if !tap
        .until_arrived(base + args.clients.max(1), DRAIN_TIMEOUT)
        .await
    {
        bail!("the load client's warm-up tasks did not reach x-sink");
    }
    let c0 = tap.arrived();
    let cpu0 = procstat::self_cpu_seconds()?;
    let t0 = Instant::now();
    client.go().await?;
    let result: LoadResult = serde_json::from_str(&client.expect("result").await?)?;
    let window = t0.elapsed();
    let completed = tap.arrived() - c0;
    client.finish().await?;
    let t1 = Instant::now();
    if !tap.until_arrived(c0 + result.created, DRAIN_TIMEOUT).await {
        bail!(
            "only {} of {} created tasks reached x-sink {DRAIN_TIMEOUT:?} after the window",
            tap.arrived() - c0,
            result.created
        );
    }
    let drain = t1.elapsed();
    let cpu1 = procstat::self_cpu_seconds()?;
    Ok(LoadRun {
        client: result,
        completed,
        window,
        failed: tap.failed.load(Ordering::Relaxed) - failed0,
        drain,
        cpu_troupe: cpu1 - cpu0,
    })
}

async fn sse_run(url: &str, job: Job, args: &GatewayArgs) -> Result<SseRun> {
    let mut client = Client::spawn(job, url, args, false)?;
    client.expect("ready").await?;
    let rss_before_kib = procstat::self_rss_kib()?;
    let threads_before = procstat::self_threads()?;
    client.go().await?;
    client.expect("half").await?;
    let rss_half_kib = procstat::self_rss_kib()?;
    client.go().await?;
    client.expect("open").await?;
    let rss_open_kib = procstat::self_rss_kib()?;
    let threads_open = procstat::self_threads()?;
    let cpu0 = procstat::self_cpu_seconds()?;
    client.go().await?;
    let result: SseResult = serde_json::from_str(&client.expect("result").await?)?;
    let cpu_post = procstat::self_cpu_seconds()? - cpu0;
    client.finish().await?;
    // Let the server notice the closed connections and drop their streams.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after_kib = procstat::self_rss_kib()?;
    Ok(SseRun {
        client: result,
        rss_before_kib,
        rss_half_kib,
        threads_before,
        threads_open,
        rss_open_kib,
        rss_after_kib,
        cpu_post,
    })
}

/// The first client-side error of any run, for the report.
pub fn first_failure(r: &GatewayResults) -> Option<String> {
    r.load
        .iter()
        .find_map(|l| l.client.first_error.clone())
        .or_else(|| {
            r.sse_one
                .iter()
                .chain(&r.sse_many)
                .find_map(|s| s.client.first_error.clone())
        })
}

/// CPU-seconds per 1,000 tasks of a load run (window plus drain).
pub fn load_cpu_per_1k(l: &LoadRun) -> f64 {
    per_thousand(l.cpu_troupe, l.client.created)
}
