//! `troupe operator`: the AsyncActor operator (troupe-operator does the work; this file
//! reads the settings and stops it on SIGTERM / Ctrl-C).

use std::collections::HashMap;
use std::sync::Arc;

use troupe_operator::{Metrics, OperatorConfig};

/// Arguments of `troupe operator`.
pub struct Args {
    /// Watch one namespace; all when absent.
    pub namespace: Option<String>,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics_addr: String,
    /// Run without leader election (a single replica).
    pub no_leader_election: bool,
}

/// Runs the operator: 0 after a clean shutdown, 2 on invalid settings, 1 on failures
/// (including a lost leader lease: the pod restarts as a standby).
pub async fn run(args: Args) -> u8 {
    let metrics_addr = match args.metrics_addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "troupe operator: --metrics-addr '{}' is not HOST:PORT: {e}",
                args.metrics_addr
            );
            return 2;
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match OperatorConfig::from_lookup(
        &|k| env.get(k).cloned(),
        args.namespace,
        metrics_addr,
        !args.no_leader_election,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("troupe operator: {e}");
            return 2;
        }
    };
    let client = match troupe_operator::config::kube_client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("troupe operator: {e}");
            return 2;
        }
    };
    tracing::info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        default_transport = config.default_transport.unwrap_or("<none>"),
        "operator starting"
    );
    match troupe_operator::run(config, client, Arc::new(Metrics::default()), shutdown()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("troupe operator: {e}");
            1
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => futures::future::pending::<()>().await,
    }
}
