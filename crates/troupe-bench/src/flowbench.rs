//! `troupe-bench flows`: a compiled flow of 5 actor calls and 6 control points (issue 11),
//! with its routers native (inside the sidecars and the gateway) against Python router
//! actors (`--no-native-routers`, Asya's model), on the embedded queue and on RabbitMQ.
//!
//! For each repetition, transport and router mode (interleaved, so drift of a shared
//! machine spreads over all of them) a fresh mesh is started in-process
//! ([`crate::flowrun`]), warmed up, and measured once per concurrency: `--runs` tasks
//! created by flow name over the mesh API with that many in flight (closed loop), each
//! timed from its create request to its arrival at x-sink. The table shows the median over
//! the repetitions with the spread (min–max), and native/Python ratios of the medians.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::brokers::{broker_version, default_repo, Broker, BrokerKind};
use crate::flowrun::{self, ms, FlowRun, PhaseResult};
use crate::procstat;
use crate::stats::median;

/// Where the queues live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// `transport: embedded` (the default queue of `troupe up`).
    Embedded,
    /// RabbitMQ, a private node from `scripts/services/rabbitmq.sh`.
    Rabbitmq,
}

impl TransportKind {
    fn name(self) -> &'static str {
        match self {
            TransportKind::Embedded => "embedded",
            TransportKind::Rabbitmq => "rabbitmq",
        }
    }
}

/// Options of `troupe-bench flows`.
#[derive(Debug, Clone, clap::Args)]
pub struct FlowsArgs {
    /// Tasks (runs of the flow) per measured phase.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Tasks first on each mesh, not measured.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Repetitions (the table shows medians and the spread).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Tasks in flight (closed loop), one measured phase each.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub concurrency: Vec<usize>,
    /// Transports.
    #[arg(long, value_delimiter = ',', default_value = "embedded,rabbitmq")]
    pub transports: Vec<TransportKind>,
    /// Python of the runtimes and the flow compiler (stdlib only).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The repository root (scripts/services); default: this source tree.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Folder for the projects and the broker's data (default: system temp).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object per measured phase instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Router mode of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Native,
    Python,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Python => "python",
        }
    }
}

/// Every repetition of one (transport, mode, concurrency).
struct Row {
    transport: TransportKind,
    mode: Mode,
    concurrency: usize,
    reps: Vec<PhaseResult>,
}

/// Runs the benchmark and prints the table (or JSON lines).
pub fn main(args: &FlowsArgs) -> Result<()> {
    if args.runs == 0 || args.reps == 0 || args.concurrency.is_empty() {
        bail!("--runs, --reps and --concurrency must be at least 1");
    }
    let runtime = crate::mesh_runtime(0)?;
    let result = runtime.block_on(run(args));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn run(args: &FlowsArgs) -> Result<()> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix("troupe-flows-")
        .tempdir_in(&parent)?;
    let load = procstat::load_average()
        .map(|(a, b, c)| format!("{a:.2} {b:.2} {c:.2}"))
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    if !args.json {
        println!("# troupe-bench flows");
        println!(
            "machine: {cpus} CPUs, load average at start {load}; python {}",
            args.python
        );
        println!(
            "flow `{}`: 5 actor calls, 6 router executions per run; each mesh: {} warm-up tasks, then {} tasks per concurrency {:?}; medians of {} reps (min-max)",
            flowrun::FLOW,
            args.warmup,
            args.runs,
            args.concurrency,
            args.reps
        );
    }
    let mut broker = None;
    if args.transports.contains(&TransportKind::Rabbitmq) {
        let repo = default_repo(args.repo.as_ref());
        let b = Broker::start(
            BrokerKind::Rabbitmq,
            &repo,
            &tmp.path().join("rabbitmq"),
            "",
        )
        .context("starting RabbitMQ (scripts/services/rabbitmq.sh)")?;
        if !args.json {
            println!(
                "broker: rabbitmq {} at {} (pid {})",
                broker_version(BrokerKind::Rabbitmq),
                troupe_transport::redact_url(&b.url),
                b.pid
            );
        }
        broker = Some(b);
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut steps: Vec<(Mode, Vec<String>)> = Vec::new();
    for rep in 1..=args.reps {
        for &transport in &args.transports {
            for mode in [Mode::Native, Mode::Python] {
                let (url, broker_pid) = match (transport, &broker) {
                    (TransportKind::Rabbitmq, Some(b)) => (b.url.clone(), b.pid),
                    _ => ("embedded".to_owned(), 0),
                };
                let namespace = format!("flows-r{rep}-{}", mode.name());
                eprintln!(
                    "rep {rep}/{}: {} {} routers (load {:.2})",
                    args.reps,
                    transport.name(),
                    mode.name(),
                    procstat::load_average().map_or(0.0, |l| l.0)
                );
                let m = flowrun::run(&FlowRun {
                    dir: &tmp.path().join(format!("{}-{namespace}", transport.name())),
                    python: &args.python,
                    namespace: &namespace,
                    transport: &url,
                    broker_pid,
                    python_routers: mode == Mode::Python,
                    warmup: args.warmup,
                    runs: args.runs,
                    concurrency: &args.concurrency,
                })
                .await
                .with_context(|| {
                    format!(
                        "flow benchmark, {} with {} routers, rep {rep}",
                        transport.name(),
                        mode.name()
                    )
                })?;
                if !steps.iter().any(|(m, _)| *m == mode) {
                    steps.push((mode, m.steps));
                }
                for phase in m.phases {
                    eprintln!(
                        "    {} in flight: p50 {:.2} ms, p99 {:.2} ms, {:.0} runs/s, {:.2} hops/run, CPU {:.2} ms/run",
                        phase.concurrency,
                        ms(phase.latency.p50),
                        ms(phase.latency.p99),
                        phase.rate(),
                        phase.hops,
                        cpu_total(&phase)
                    );
                    if args.json {
                        let mut v = phase.to_json();
                        v["transport"] = json!(transport.name());
                        v["routers"] = json!(mode.name());
                        v["rep"] = json!(rep);
                        println!("{v}");
                    }
                    match rows.iter_mut().find(|r| {
                        r.transport == transport
                            && r.mode == mode
                            && r.concurrency == phase.concurrency
                    }) {
                        Some(row) => row.reps.push(phase),
                        None => rows.push(Row {
                            transport,
                            mode,
                            concurrency: phase.concurrency,
                            reps: vec![phase],
                        }),
                    }
                }
            }
        }
    }
    drop(broker);
    // Both modes run the same program: the same steps, in the same order.
    if let [(_, a), (_, b)] = steps.as_slice() {
        if a != b {
            bail!("native and Python routers took different routes: {a:?} vs {b:?}");
        }
    }
    if !args.json {
        if let Some((_, s)) = steps.first() {
            println!("route.prev of a run: {}", s.join(" "));
        }
        print!("{}", table(&rows));
    }
    Ok(())
}

fn cpu_total(p: &PhaseResult) -> f64 {
    let (t, py, b) = p.cpu_ms();
    t + py + b
}

/// Median of `f` over a row's repetitions.
fn med(row: &Row, f: impl Fn(&PhaseResult) -> f64) -> f64 {
    median(row.reps.iter().map(f).collect())
}

/// `median (min–max)`, or the median alone for one repetition.
fn spread(row: &Row, f: impl Fn(&PhaseResult) -> f64, digits: usize) -> String {
    let v: Vec<f64> = row.reps.iter().map(&f).collect();
    let m = median(v.clone());
    if v.len() < 2 {
        return format!("{m:.digits$}");
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
}

/// The Markdown table, then one ratio line per (transport, concurrency).
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "\n| transport | routers | in flight | queue hops/run | routers native/python per run | p50 ms | p99 ms | runs/s | CPU ms/run troupe | CPU ms/run python | CPU ms/run broker | CPU ms/run total |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} / {:.2} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {} |\n",
            r.transport.name(),
            r.mode.name(),
            r.concurrency,
            med(r, |p| p.hops),
            med(r, |p| p.native_routers),
            med(r, |p| p.python_routers),
            spread(r, |p| ms(p.latency.p50), 2),
            spread(r, |p| ms(p.latency.p99), 2),
            spread(r, PhaseResult::rate, 0),
            med(r, |p| p.cpu_ms().0),
            med(r, |p| p.cpu_ms().1),
            med(r, |p| p.cpu_ms().2),
            spread(r, cpu_total, 3),
        ));
    }
    out.push('\n');
    for n in rows.iter().filter(|r| r.mode == Mode::Native) {
        let Some(p) = rows.iter().find(|r| {
            r.mode == Mode::Python && r.transport == n.transport && r.concurrency == n.concurrency
        }) else {
            continue;
        };
        let ratio = |f: &dyn Fn(&PhaseResult) -> f64| {
            let d = med(p, f);
            if d > 0.0 {
                med(n, f) / d
            } else {
                0.0
            }
        };
        out.push_str(&format!(
            "{} {} in flight: native/python hops {:.2}x, p50 {:.2}x, p99 {:.2}x, runs/s {:.2}x, CPU/run {:.2}x\n",
            n.transport.name(),
            n.concurrency,
            ratio(&|x| x.hops),
            ratio(&|x| ms(x.latency.p50)),
            ratio(&|x| ms(x.latency.p99)),
            ratio(&PhaseResult::rate),
            ratio(&cpu_total),
        ));
    }
    out
}
