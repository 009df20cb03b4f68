//! x-sump: dead end for infrastructure failures (protocol.md §14.1).

use async_trait::async_trait;
use troupe_engine::handler::{EndHandler, EndOutcome, Requeue};
use troupe_protocol::{Envelope, Phase};

use crate::config::CrewConfig;
use crate::store;

/// The x-sump end handler: logs, persists direct arrivals, never routes.
pub struct Sump {
    config: CrewConfig,
}

impl Sump {
    /// A sump with the given configuration.
    pub fn new(config: CrewConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl EndHandler for Sump {
    async fn handle(&self, env: &Envelope) -> Result<EndOutcome, Requeue> {
        let body = String::from_utf8_lossy(&env.to_vec()).into_owned();
        if env.status.as_ref().map(|s| s.phase) == Some(Phase::Failed) {
            tracing::error!(id = %env.id, envelope = %body, "envelope reached the sump");
        } else {
            tracing::debug!(id = %env.id, envelope = %body, "envelope reached the sump");
        }

        // Envelopes that passed the sink (failed sink hooks) were already persisted
        // and reported there.
        let passed_sink = env.route.prev.contains(&self.config.sink_name);
        if !passed_sink {
            if let Some(mount) = &self.config.mount {
                match store::file_path(mount, "failed", &env.id) {
                    Some(path) => {
                        let pretty = serde_json::to_vec_pretty(env).map_err(|e| {
                            Requeue(format!("cannot serialise envelope {}: {e}", env.id))
                        })?;
                        store::write_result(&path, &pretty).await.map_err(|e| {
                            Requeue(format!(
                                "cannot persist envelope to {}: {e}; check ASYA_PERSISTENCE_MOUNT",
                                path.display()
                            ))
                        })?;
                    }
                    None => {
                        tracing::warn!(id = ?env.id, "envelope id has no usable file name; not persisted");
                    }
                }
            }
        }
        Ok(EndOutcome {
            sends: Vec::new(),
            skip_report: passed_sink,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use super::*;
    use crate::testutil::{env, value};

    fn sump(mount: Option<&Path>) -> Sump {
        Sump::new(CrewConfig {
            mount: mount.map(Path::to_path_buf),
            ..CrewConfig::default()
        })
    }

    fn failed(prev: &[&str]) -> Envelope {
        env(json!({
            "id": "t9",
            "route": {"prev": prev, "curr": "b", "next": []},
            "headers": {"x-asya-gateway-url": "http://gw"},
            "status": {"phase": "failed", "reason": "RouteMismatch", "actor": "b", "attempt": 1,
                        "max_attempts": 1, "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z"},
            "payload": {"error": "Route mismatch", "original_payload": {"q": 1}}
        }))
    }

    #[tokio::test]
    async fn direct_arrival_is_persisted_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let e = failed(&["a"]);
        let out = sump(Some(tmp.path())).handle(&e).await.unwrap();
        assert!(!out.skip_report);
        assert!(out.sends.is_empty());
        let saved: Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("failed/t9.json")).unwrap())
                .unwrap();
        assert_eq!(saved, value(&e));
    }

    #[tokio::test]
    async fn after_the_sink_nothing_is_persisted_nor_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let out = sump(Some(tmp.path()))
            .handle(&failed(&["a", "x-sink", "audit"]))
            .await
            .unwrap();
        assert!(out.skip_report);
        assert!(out.sends.is_empty());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn path_traversal_id_stays_in_failed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = failed(&[]);
        e.id = "../../evil".into();
        sump(Some(tmp.path())).handle(&e).await.unwrap();
        assert!(tmp.path().join("failed/evil.json").exists());
        assert!(!tmp.path().join("evil.json").exists());
    }

    #[tokio::test]
    async fn non_failed_phase_is_persisted_too() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = failed(&[]);
        e.status = None;
        let out = sump(Some(tmp.path())).handle(&e).await.unwrap();
        assert!(!out.skip_report);
        assert!(tmp.path().join("failed/t9.json").exists());
    }

    #[tokio::test]
    async fn without_mount_only_logs() {
        let out = sump(None).handle(&failed(&[])).await.unwrap();
        assert!(!out.skip_report);
    }

    #[tokio::test]
    async fn storage_failure_requeues() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("failed"), b"x").unwrap();
        assert!(sump(Some(tmp.path())).handle(&failed(&[])).await.is_err());
    }
}
