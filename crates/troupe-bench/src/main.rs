//! `troupe-bench`: a 3-actor pipeline of no-op Python handlers through the embedded
//! mesh (preloaded, one replica per actor, concurrency 1), next to a floor where one
//! Python client makes the same three `/invoke` round trips directly.
//!
//! `cargo run --release -p troupe-bench -- [--pipelines N] [--skip-floor] [--json]`
//!
//! `troupe-bench gateway [...]`: the same pipeline through the mesh's gateway (overhead,
//! sustained creates, SSE fan-out); see [`gateway`].
//!
//! `troupe-bench brokers [...]`: the same pipeline on RabbitMQ and Redis, side by side with
//! Celery, Dramatiq and a raw-broker floor; see [`brokers`].
//!
//! `troupe-bench flows [...]`: a compiled flow (5 actor calls, 6 control points) with
//! native routers against Python router actors, on the embedded queue and on RabbitMQ;
//! see [`flowbench`].

mod brokerrun;
mod brokers;
mod floor;
mod floor_broker;
mod flowbench;
mod flowrun;
mod gateway;
mod gwclient;
mod gwreport;
mod meshrun;
mod procstat;
mod project;
mod report;
mod sse;
mod stats;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// The same allocator as the `troupe` binary, so the figures describe it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "troupe-bench",
    about = "3-actor no-op pipeline through the embedded mesh, next to a direct-runtime floor"
)]
pub struct Args {
    /// Pipelines preloaded onto the first actor's queue for the throughput run.
    #[arg(long, default_value_t = 20_000)]
    pipelines: usize,
    /// Pipelines sent one at a time for the unloaded latency line.
    #[arg(long, default_value_t = 500)]
    unloaded: usize,
    /// Pipelines sent one at a time first and not measured (mesh and floor each).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Skip the direct-runtime floor.
    #[arg(long)]
    skip_floor: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Tokio worker threads running the mesh; 0 = one current-thread runtime, as
    /// `troupe up` runs it.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Python interpreter for the runtimes and the floor client.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Folder in which to create the throwaway project (default: the system temp folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the project folder (queues, x-sink files) and print its path.
    #[arg(long)]
    keep: bool,
    /// Run with `crew: {persist_results: false}`: x-sink does not write one file per
    /// finished task (isolates the cost of the mesh itself from the filesystem's).
    #[arg(long)]
    no_persist: bool,
    /// Another benchmark instead of the pipeline one.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Benchmarks other than the default pipeline one.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// The mesh's gateway: create-to-SSE overhead, sustained creates, 1,000 SSE subscribers.
    Gateway(gateway::GatewayArgs),
    /// The pipeline on RabbitMQ and Redis: Troupe, Celery, Dramatiq and a raw-broker floor.
    Brokers(brokers::BrokersArgs),
    /// A compiled flow with native routers against Python router actors (issue 11).
    Flows(flowbench::FlowsArgs),
    /// The gateway benchmark's HTTP client process (started by `gateway`).
    #[command(hide = true)]
    GatewayClient(gwclient::ClientArgs),
}

/// The runtime the mesh runs on: current-thread as `troupe up`, or `workers` threads.
pub fn mesh_runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match &args.command {
        Some(Command::Gateway(g)) => return gateway::main(g),
        Some(Command::GatewayClient(c)) => return gwclient::main(c),
        Some(Command::Brokers(b)) => return brokers::main(b),
        Some(Command::Flows(f)) => return flowbench::main(f),
        None => {}
    }
    let machine = report::Machine::probe(&args.python);
    let runtime = mesh_runtime(args.workers)?;
    let result = runtime.block_on(run(&args, &machine));
    // Runtime processes are already stopped; do not wait on stray blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let result = result?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(&args, &machine, &result))?
        );
    } else {
        print!("{}", report::text(&result));
    }
    Ok(())
}

async fn run(args: &Args, machine: &report::Machine) -> Result<report::Results> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("troupe-bench-")
        .tempdir_in(&parent)
        .context("creating the project folder")?;
    let project = project::write(tmp.path(), &args.python, !args.no_persist)
        .context("writing the benchmark project")?;
    if !args.json {
        // The header goes out first so a stuck run still shows the machine and load.
        print!("{}", report::header(args, machine));
        let _ = std::io::Write::flush(&mut std::io::stdout());
        eprintln!("running the mesh ...");
    }
    let mesh = meshrun::run(
        &project,
        meshrun::MeshRun {
            pipelines: args.pipelines,
            unloaded: args.unloaded,
            warmup: args.warmup,
        },
    )
    .await?;
    let floor = if args.skip_floor {
        None
    } else {
        if !args.json {
            eprintln!("running the floor ...");
        }
        Some(floor::run(&project, &args.python, args.pipelines, args.warmup).await?)
    };
    if args.keep {
        let kept = tmp.keep();
        eprintln!("project kept at {}", kept.display());
    }
    Ok(report::Results { mesh, floor })
}
