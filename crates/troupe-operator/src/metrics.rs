//! `/metrics` (Prometheus text format) and `/healthz`.
//!
//! The registry is the operator's own (a few maps behind a mutex), not a process-global
//! recorder: two operators in one test process keep separate numbers.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `troupe_operator_reconciles_total` | counter | `namespace`, `actor` |
//! | `troupe_operator_reconcile_errors_total` | counter | `namespace`, `actor`, `reason` |
//! | `troupe_operator_reconcile_duration_seconds` | histogram | — |
//! | `troupe_operator_actors` | gauge | `phase` (`Creating`, `Ready`, `Napping`) |
//! | `troupe_operator_leader` | gauge | 1 while this operator holds the lease |

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use troupe_resource::Phase;

use crate::OperatorError;

/// Histogram bucket bounds in seconds (5 ms to 1 min).
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Default)]
struct State {
    reconciles: BTreeMap<(String, String), u64>,
    errors: BTreeMap<(String, String, &'static str), u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    phases: BTreeMap<(String, String), Phase>,
}

/// The operator's metrics.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
    leader: AtomicBool,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind: keep counting.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One reconcile of `namespace/actor` took `took`.
    pub fn reconciled(&self, namespace: &str, actor: &str, took: Duration) {
        let mut s = self.lock();
        *s.reconciles
            .entry((namespace.to_owned(), actor.to_owned()))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
    }

    /// A reconcile of `namespace/actor` failed or was held back for `reason`.
    pub fn failed(&self, namespace: &str, actor: &str, reason: &'static str) {
        *self
            .lock()
            .errors
            .entry((namespace.to_owned(), actor.to_owned(), reason))
            .or_default() += 1;
    }

    /// `namespace/actor` is now in `phase`; `None`: it is gone.
    pub fn phase(&self, namespace: &str, actor: &str, phase: Option<Phase>) {
        let key = (namespace.to_owned(), actor.to_owned());
        let mut s = self.lock();
        match phase {
            Some(p) => s.phases.insert(key, p),
            None => s.phases.remove(&key),
        };
    }

    /// Whether this operator holds the lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Total reconciles so far (tests, benchmarks).
    pub fn reconciles_total(&self) -> u64 {
        self.lock().reconciles.values().sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut out = String::new();
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "# HELP troupe_operator_reconciles_total Reconciles of an AsyncActor.\n# TYPE troupe_operator_reconciles_total counter");
        for ((ns, a), n) in &s.reconciles {
            let _ = writeln!(
                out,
                "troupe_operator_reconciles_total{{namespace=\"{}\",actor=\"{}\"}} {n}",
                esc(ns),
                esc(a)
            );
        }
        let _ = writeln!(out, "# HELP troupe_operator_reconcile_errors_total Reconciles that failed or were held back, by reason.\n# TYPE troupe_operator_reconcile_errors_total counter");
        for ((ns, a, r), n) in &s.errors {
            let _ = writeln!(
                out,
                "troupe_operator_reconcile_errors_total{{namespace=\"{}\",actor=\"{}\",reason=\"{r}\"}} {n}",
                esc(ns),
                esc(a)
            );
        }
        let _ = writeln!(out, "# HELP troupe_operator_reconcile_duration_seconds Time of one reconcile.\n# TYPE troupe_operator_reconcile_duration_seconds histogram");
        for (le, n) in BUCKETS.iter().zip(s.buckets.iter()) {
            let _ = writeln!(
                out,
                "troupe_operator_reconcile_duration_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "troupe_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {c}\ntroupe_operator_reconcile_duration_seconds_sum {sum}\ntroupe_operator_reconcile_duration_seconds_count {c}",
            c = s.count,
            sum = s.sum
        );
        let _ = writeln!(out, "# HELP troupe_operator_actors AsyncActors by status phase.\n# TYPE troupe_operator_actors gauge");
        for phase in [Phase::Creating, Phase::Ready, Phase::Napping] {
            let n = s.phases.values().filter(|p| **p == phase).count();
            let _ = writeln!(out, "troupe_operator_actors{{phase=\"{phase:?}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP troupe_operator_leader 1 while this operator holds the leader lease.\n# TYPE troupe_operator_leader gauge\ntroupe_operator_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out
    }
}

/// Binds `addr`; returns the bound address and the server future (runs until
/// `shutdown`). `/healthz` answers `ok` whether or not this operator leads.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), OperatorError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OperatorError::Serve { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| OperatorError::Serve { addr, source })?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "the /metrics server stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn text_format_has_every_family() {
        let m = Metrics::default();
        m.reconciled("prod", "a", Duration::from_millis(20));
        m.reconciled("prod", "a", Duration::from_secs(2));
        m.failed("prod", "b", "SecretMissing");
        m.phase("prod", "a", Some(Phase::Ready));
        m.phase("prod", "b", Some(Phase::Creating));
        m.phase("prod", "c", Some(Phase::Creating));
        m.phase("prod", "c", None);
        m.set_leader(true);
        let text = m.render();
        for line in [
            "troupe_operator_reconciles_total{namespace=\"prod\",actor=\"a\"} 2",
            "troupe_operator_reconcile_errors_total{namespace=\"prod\",actor=\"b\",reason=\"SecretMissing\"} 1",
            "troupe_operator_reconcile_duration_seconds_bucket{le=\"0.025\"} 1",
            "troupe_operator_reconcile_duration_seconds_bucket{le=\"2.5\"} 2",
            "troupe_operator_reconcile_duration_seconds_count 2",
            "troupe_operator_actors{phase=\"Ready\"} 1",
            "troupe_operator_actors{phase=\"Creating\"} 1",
            "troupe_operator_actors{phase=\"Napping\"} 0",
            "troupe_operator_leader 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert_eq!(m.reconciles_total(), 2);
    }

    #[tokio::test]
    async fn serves_metrics_and_healthz() {
        let m = Arc::new(Metrics::default());
        m.reconciled("ns", "x", Duration::from_millis(1));
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), m, std::future::pending())
            .await
            .unwrap();
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            body
        };
        assert!(get("/healthz").await.ends_with("ok"));
        let metrics = get("/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains("troupe_operator_reconciles_total{namespace=\"ns\",actor=\"x\"} 1")
        );
        task.abort();
    }
}
