//! The stop signals every long-running verb obeys: SIGINT (Ctrl-C) and SIGTERM (what a
//! pod gets from its kubelet).

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Installs the SIGINT and SIGTERM handlers now (a signal that arrives before they are
/// installed kills the process); the future completes at the first of them.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// [`stop_signal`], or a future that never completes where the handlers cannot be
/// installed (the process then stops only by SIGKILL, as it would without handlers).
pub async fn terminated() {
    match stop_signal() {
        Ok(stop) => stop.await,
        Err(e) => {
            tracing::warn!("cannot install SIGINT/SIGTERM handlers: {e}");
            std::future::pending::<()>().await;
        }
    }
}
