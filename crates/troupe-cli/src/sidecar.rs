//! `troupe sidecar` (one actor's sidecar, configured by protocol.md §15) and
//! `troupe runtime` (the Python runtime shipped in this binary, for the pod's other
//! container).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use troupe_sidecar::SidecarConfig;
use troupe_transport::ConnectOptions;
use troupe_transports::TransportSpec;

/// Runs the sidecar until SIGTERM / Ctrl-C. Returns the exit code.
pub async fn run() -> u8 {
    let env: HashMap<String, String> = std::env::vars().collect();
    let get = |k: &str| env.get(k).cloned();
    let config = match SidecarConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("troupe sidecar: {e}");
            return e.exit_code();
        }
    };
    let spec = match TransportSpec::from_env(&config.transport, &get) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("troupe sidecar: {e}");
            return 2;
        }
    };
    let mut options = ConnectOptions::new(config.namespace.clone());
    options.visibility_timeout = match troupe_transports::visibility_timeout(None, &get) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("troupe sidecar: {e}");
            return 2;
        }
    };
    options.prefetch = u16::try_from(config.prefetch).unwrap_or(u16::MAX);
    tracing::info!(actor = %config.settings.actor, broker = %spec.describe(), "sidecar starting");
    let shutdown = async {
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
    };
    let connect = || spec.connect(options.clone());
    match troupe_sidecar::run(config, connect, shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("troupe sidecar: {e}");
            e.exit_code()
        }
    }
}

/// Replaces this process with `python runtime.py` (the embedded runtime, written under
/// `dir`); `ASYA_HANDLER`, `ASYA_SOCKET_DIR` etc. pass through. Returns only on failure.
pub fn exec_runtime(python: &str, dir: Option<PathBuf>) -> u8 {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("troupe-runtime-{}", std::process::id()))
    });
    let file = match troupe_runtime::launcher::write_runtime_file(&dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("troupe runtime: {e}");
            return 1;
        }
    };
    let err = std::process::Command::new(python).arg(&file).exec();
    eprintln!(
        "troupe runtime: cannot run {python} {}: {err}",
        file.display()
    );
    1
}
