//! `troupe`: run a mesh (`troupe up`) and talk to a running one.

mod client;
mod flow;
mod gateway;
mod logging;
mod operator;
mod render;
mod scaler;
mod sidecar;
mod signals;
mod up;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the per-message path allocates and frees small buffers at a high rate,
/// which glibc's allocator answers with heap trims and page faults (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Troupe: an actor mesh for AI/ML inference and agentic workloads.
#[derive(Debug, Parser)]
#[command(name = "troupe", version, about)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (default info; `troupe sidecar` also
    /// reads ASYA_LOG_LEVEL).
    #[arg(long, global = true, env = "TROUPE_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", env = "TROUPE_LOG_FORMAT")]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole mesh on this machine from a mesh file (PATH/troupe.yaml or a file).
    Up {
        /// Folder holding troupe.yaml, or the mesh file itself.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Grace period for in-flight messages on Ctrl-C / SIGTERM.
        #[arg(long, default_value = "30s")]
        grace: String,
        /// Run without the gateway: no mesh API, MCP or A2A; sidecars do not report.
        #[arg(long)]
        no_gateway: bool,
        /// Run every flow router as a Python router actor (Asya's model) instead of inside
        /// the sidecars; also TROUPE_NATIVE_ROUTERS=off.
        #[arg(long)]
        no_native_routers: bool,
    },
    /// Run the gateway alone (mesh API, MCP, A2A), configured by the ASYA_* / TROUPE_*
    /// environment variables of gateway.md section 7.
    Gateway,
    /// Run one actor's sidecar (a pod's sidecar container), configured by the ASYA_* /
    /// TROUPE_* environment variables of protocol.md section 15.
    Sidecar,
    /// Run KEDA's external-push scaler (gRPC): tells KEDA the moment an actor's queue
    /// holds a message, so it scales from zero without waiting for a poll. The broker
    /// comes from the sidecar's ASYA_TRANSPORT / ASYA_* variables.
    Scaler {
        /// host:port to serve gRPC on (a ScaledObject trigger's scalerAddress).
        #[arg(long, default_value = "0.0.0.0:9090", env = "TROUPE_SCALER_LISTEN")]
        listen: String,
        /// Time between depth samples of a queue KEDA watches (Go duration; default 250ms).
        #[arg(long, env = "TROUPE_SCALER_POLL_INTERVAL")]
        poll_interval: Option<String>,
    },
    /// Run the Python runtime shipped in this binary (ASYA_HANDLER, ASYA_SOCKET_DIR, ...).
    Runtime {
        /// Python interpreter.
        #[arg(long, default_value = "python3", env = "TROUPE_PYTHON")]
        python: String,
        /// Folder to write the runtime file to (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Send a payload to an actor; prints the task id (or the result with --wait).
    Send {
        /// Entry actor.
        actor: String,
        /// Payload JSON, or '-' to read it from stdin (default: {}).
        payload: Option<String>,
        /// Actors that follow ACTOR, comma-separated.
        #[arg(long, value_delimiter = ',')]
        route: Vec<String>,
        /// Follow the task: live progress, streamed tokens, then the result.
        #[arg(long)]
        wait: bool,
        /// Task SLA (Go duration); with --wait, also how long to wait.
        #[arg(long)]
        timeout: Option<String>,
        #[command(flatten)]
        mesh: client::MeshArg,
    },
    /// Show every actor: queue depth, in flight, replicas, counts, last error.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        mesh: client::MeshArg,
    },
    /// Resume a task paused by x-pause, with the human's input as payload JSON.
    Resume {
        /// Task id.
        id: String,
        /// Input payload JSON, or '-' for stdin (default: {}).
        payload: Option<String>,
        /// Follow the resumed task like `send --wait`.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        mesh: client::MeshArg,
    },
    /// Print Kubernetes manifests for the mesh (Deployments, KEDA ScaledObjects, crew,
    /// gateway), or with `--crd` the AsyncActor CustomResourceDefinition.
    Render {
        /// Folder holding troupe.yaml, or the mesh file itself.
        #[arg(default_value = ".")]
        mesh: PathBuf,
        /// Kubernetes namespace, also the queue namespace (default: the mesh file's `namespace`).
        #[arg(long)]
        namespace: Option<String>,
        /// Broker URL for the cluster (default: the mesh file's `transport`; `embedded` is refused).
        #[arg(long)]
        transport: Option<String>,
        /// Write one YAML file per object and a kustomization.yaml into DIR (default: stdout).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the AsyncActor CRD (apiextensions.k8s.io/v1), e.g. `troupe render --crd | kubectl apply -f -`.
        #[arg(long)]
        crd: bool,
        /// host:port of the KEDA push scaler each ScaledObject's external-push trigger
        /// calls (scale from zero without polling), or `off` (default:
        /// troupe-operator.NAMESPACE.svc:9090).
        #[arg(long, value_name = "ADDR|off", env = "TROUPE_PUSH_SCALER")]
        push_scaler: Option<String>,
    },
    /// Run the AsyncActor operator: provisions queues, applies each actor's Deployment,
    /// ScaledObject and friends, writes status. The cluster's default transport comes
    /// from ASYA_TRANSPORT and the broker's ASYA_* variables, as for `troupe sidecar`.
    Operator {
        /// Watch only this namespace (default: all).
        #[arg(long, env = "TROUPE_WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Address of /metrics and /healthz.
        #[arg(
            long,
            default_value = "0.0.0.0:8080",
            env = "TROUPE_OPERATOR_METRICS_ADDR"
        )]
        metrics_addr: String,
        /// Skip leader election (run a single replica only).
        #[arg(long)]
        no_leader_election: bool,
        /// Where to serve KEDA's external-push scaler (gRPC), or `off`. Every replica
        /// serves it, leader or not.
        #[arg(
            long,
            default_value = "0.0.0.0:9090",
            env = "TROUPE_SCALER_ADDR",
            value_name = "ADDR|off"
        )]
        scaler_addr: String,
        /// host:port KEDA reaches that scaler at, written into each ScaledObject's
        /// external-push trigger, or `off` (default: troupe-operator.POD_NAMESPACE.svc:9090
        /// in a pod, off elsewhere).
        #[arg(long, env = "TROUPE_PUSH_SCALER", value_name = "ADDR|off")]
        push_scaler: Option<String>,
    },
    /// Compile Python flows for Kubernetes: routers, graphs (Mermaid, DOT, JSON) and
    /// AsyncActor manifests; validate them; print their graphs.
    Flow {
        #[command(subcommand)]
        command: flow::FlowCommand,
    },
    /// Print a finished task's stored envelope.
    Result {
        /// Task id.
        id: String,
        #[command(flatten)]
        mesh: client::MeshArg,
    },
}

/// Writes a line to stdout; a closed pipe (`troupe status | head -1`) ends the program
/// quietly instead of panicking.
pub fn stdout_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = logging::level(
        cli.log_level.as_deref(),
        std::env::var("ASYA_LOG_LEVEL").ok().as_deref(),
        matches!(cli.command, Command::Sidecar),
    );
    if let Err(e) = logging::init(&level, cli.log_format) {
        eprintln!("troupe: {e}");
        return ExitCode::from(2);
    }
    // The mesh runs on one thread: a message hop is a chain of short steps whose
    // cross-thread wake-ups cost more than the work itself (docs/benchmarks.md). Python
    // runtimes, the queue's log thread and the crew's writer thread use the other cores.
    let mut builder = match cli.command {
        Command::Up { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("troupe: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cli.command));
    ExitCode::from(code)
}

async fn run(command: Command) -> u8 {
    let result = match command {
        Command::Up {
            path,
            grace,
            no_gateway,
            no_native_routers,
        } => {
            let no_native = no_native_routers
                || std::env::var("TROUPE_NATIVE_ROUTERS").is_ok_and(|v| v == "off");
            return up::run(&path, &grace, no_gateway, no_native).await;
        }
        Command::Gateway => return gateway::run().await,
        Command::Sidecar => return sidecar::run().await,
        Command::Scaler {
            listen,
            poll_interval,
        } => {
            return scaler::run(scaler::Args {
                listen,
                poll_interval,
            })
            .await
        }
        Command::Runtime { python, dir } => return sidecar::exec_runtime(&python, dir),
        Command::Flow { command } => return flow::run(command),
        Command::Render {
            mesh,
            namespace,
            transport,
            out,
            crd,
            push_scaler,
        } => {
            return render::run(render::Args {
                mesh,
                namespace,
                transport,
                out,
                crd,
                push_scaler,
            })
        }
        Command::Operator {
            namespace,
            metrics_addr,
            no_leader_election,
            scaler_addr,
            push_scaler,
        } => {
            return operator::run(operator::Args {
                namespace,
                metrics_addr,
                no_leader_election,
                scaler_addr,
                push_scaler,
            })
            .await
        }
        Command::Send {
            actor,
            payload,
            route,
            wait,
            timeout,
            mesh,
        } => {
            client::send(
                &mesh,
                &actor,
                payload.as_deref(),
                &route,
                wait,
                timeout.as_deref(),
            )
            .await
        }
        Command::Status { json, mesh } => client::status(&mesh, json).await,
        Command::Resume {
            id,
            payload,
            wait,
            mesh,
        } => client::resume(&mesh, &id, payload.as_deref(), wait).await,
        Command::Result { id, mesh } => client::result(&mesh, &id).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("troupe: {e:#}");
            1
        }
    }
}
