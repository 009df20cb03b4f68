//! `/metrics` (platform.md §6.1), `/healthz` and `/readyz` on `ASYA_METRICS_ADDR`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;
use troupe_engine::metrics as m;

use crate::SidecarError;

/// Histogram upkeep period (the exporter drains recorded samples on render or upkeep).
const UPKEEP: Duration = Duration::from_secs(5);

/// What `/readyz` reports: ready once the transport is connected and the handler (the
/// runtime, or the native crew actor) is ready.
#[derive(Debug, Default)]
pub struct Probes {
    transport: AtomicBool,
    handler: AtomicBool,
}

impl Probes {
    /// Marks the transport connected (or lost).
    pub fn set_transport(&self, ok: bool) {
        self.transport.store(ok, Ordering::Relaxed);
    }

    /// Marks the handler ready (or lost).
    pub fn set_handler(&self, ok: bool) {
        self.handler.store(ok, Ordering::Relaxed);
    }

    /// Both parts ready.
    pub fn ready(&self) -> bool {
        self.transport.load(Ordering::Relaxed) && self.handler.load(Ordering::Relaxed)
    }
}

/// Installs the global Prometheus recorder. Must run before any engine is created
/// (engines register their hot metrics when built).
pub(crate) fn install_recorder() -> Result<PrometheusHandle, SidecarError> {
    let err = |e: metrics_exporter_prometheus::BuildError| SidecarError::Metrics(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), m::DURATION_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(m::MESSAGE_SIZE.into()), m::SIZE_BUCKETS)
        .map_err(err)?
        .install_recorder()
        .map_err(err)?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// The exporter's text with the `asya_actor` prefix replaced by `namespace`
/// (`ASYA_METRICS_NAMESPACE`); metric names are defined once, with the default prefix.
fn rename(text: String, namespace: &str) -> String {
    const DEFAULT: &str = "asya_actor_";
    if namespace == "asya_actor" {
        return text;
    }
    let prefix = format!("{namespace}_");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let renamed = if let Some(rest) = line.strip_prefix(DEFAULT) {
            format!("{prefix}{rest}")
        } else if let Some((kind, rest)) = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|k| line.strip_prefix(k).map(|r| (*k, r)))
        {
            match rest.strip_prefix(DEFAULT) {
                Some(name) => format!("{kind}{prefix}{name}"),
                None => line.to_owned(),
            }
        } else {
            line.to_owned()
        };
        out.push_str(&renamed);
        out.push('\n');
    }
    out
}

#[derive(Clone)]
struct ObserveState {
    metrics: Option<PrometheusHandle>,
    namespace: Arc<str>,
    probes: Arc<Probes>,
}

async fn metrics(State(st): State<ObserveState>) -> Response {
    match &st.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            rename(h.render(), &st.namespace),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are disabled (ASYA_METRICS_ENABLED=false)\n",
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<ObserveState>) -> Response {
    if st.probes.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Binds `addr` and serves the probes (and `/metrics` when `handle` is set) until the
/// task is aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    handle: Option<PrometheusHandle>,
    namespace: &str,
    probes: Arc<Probes>,
) -> Result<(SocketAddr, JoinHandle<()>), SidecarError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| SidecarError::Listen {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| SidecarError::Listen {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ObserveState {
            metrics: handle,
            namespace: namespace.into(),
            probes,
        });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
    Ok((local, task))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rename_changes_only_our_prefix() {
        let text = "# HELP asya_actor_x_total help\n# TYPE asya_actor_x_total counter\nasya_actor_x_total{queue=\"a\"} 1\nother_metric 2\n".to_owned();
        let out = rename(text.clone(), "team");
        assert_eq!(out, "# HELP team_x_total help\n# TYPE team_x_total counter\nteam_x_total{queue=\"a\"} 1\nother_metric 2\n");
        assert_eq!(rename(text.clone(), "asya_actor"), text);
    }

    #[test]
    fn ready_needs_both_parts() {
        let p = Probes::default();
        assert!(!p.ready());
        p.set_transport(true);
        assert!(!p.ready());
        p.set_handler(true);
        assert!(p.ready());
        p.set_transport(false);
        assert!(!p.ready());
    }
}
