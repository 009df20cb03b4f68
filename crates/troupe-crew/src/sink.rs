//! x-sink: first terminal layer (protocol.md §14.1).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use troupe_engine::handler::{EndHandler, EndOutcome, Requeue};
use troupe_protocol::clock::format_ts;
use troupe_protocol::{Clock, Envelope, Phase, Route, Status, SystemClock};

use crate::config::CrewConfig;
use crate::{store, HEADER_FAN_IN, HEADER_MESH_STATUS, HEADER_ORIGIN_ID};

/// The x-sink end handler: persists terminal envelopes and hands them to the hooks.
pub struct Sink {
    config: CrewConfig,
    clock: Arc<dyn Clock>,
}

impl Sink {
    /// A sink using the system clock.
    pub fn new(config: CrewConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A sink with an injected clock (tests).
    pub fn with_clock(config: CrewConfig, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock }
    }

    /// Step (e): the stealth envelope that starts the hook chain.
    fn hook_envelope(&self, env: &Envelope, hooks: &[String]) -> Envelope {
        let now = format_ts(self.clock.now());
        let mut prev = env.route.prev.clone();
        // The sink may already be `curr` (an envelope addressed to it); list it once.
        if !env.route.curr.is_empty() && env.route.curr != self.config.sink_name {
            prev.push(env.route.curr.clone());
        }
        prev.push(self.config.sink_name.clone());
        let mut headers = env.headers.clone();
        headers.insert(HEADER_MESH_STATUS.to_owned(), Value::from("off"));
        let created_at = env
            .status
            .as_ref()
            .map(|s| s.created_at.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| now.clone());
        Envelope {
            id: env.id.clone(),
            parent_id: env.parent_id.clone(),
            route: Route {
                prev,
                curr: hooks[0].clone(),
                next: hooks[1..].to_vec(),
            },
            headers,
            // Hooks are post-terminal work: no SLA applies, so no deadline_at.
            status: Some(Status {
                phase: Phase::Pending,
                reason: None,
                actor: hooks[0].clone(),
                attempt: 1,
                max_attempts: 1,
                created_at,
                updated_at: now,
                deadline_at: None,
                error: None,
            }),
            payload: env.payload.clone(),
        }
    }
}

/// The storage folder for a terminal phase.
fn phase_folder(status: Option<&Status>) -> &'static str {
    match status.map(|s| s.phase) {
        Some(Phase::Succeeded) => "succeeded",
        Some(Phase::Failed) => "failed",
        _ => "checkpoint",
    }
}

/// True when the header is present with a non-null value.
fn has_header(env: &Envelope, name: &str) -> bool {
    env.headers.get(name).is_some_and(|v| !v.is_null())
}

#[async_trait]
impl EndHandler for Sink {
    async fn handle(&self, env: &Envelope) -> Result<EndOutcome, Requeue> {
        let phase = env.status.as_ref().map(|s| s.phase);

        // (a) Back from the hooks (or a hook failed): the task was already finalised.
        if env.route.prev.contains(&self.config.sink_name) {
            if phase == Some(Phase::Failed) {
                tracing::warn!(id = %env.id, route = ?env.route, "envelope failed after passing the sink (sink hook error)");
            } else {
                tracing::debug!(id = %env.id, "envelope returned to the sink after its hooks");
            }
            return Ok(EndOutcome {
                sends: Vec::new(),
                skip_report: true,
            });
        }

        // (b) Fan-in slices are absorbed; the aggregator emits the merged result.
        if has_header(env, HEADER_FAN_IN) {
            tracing::debug!(id = %env.id, "fan-in slice absorbed by the sink");
            return Ok(EndOutcome::default());
        }

        // (c) Persist.
        if let Some(mount) = &self.config.mount {
            let id = env
                .header_str(HEADER_ORIGIN_ID)
                .filter(|s| !s.is_empty())
                .unwrap_or(&env.id);
            match store::file_path(mount, phase_folder(env.status.as_ref()), id) {
                Some(path) => {
                    let body = serde_json::to_vec_pretty(env)
                        .map_err(|e| Requeue(format!("cannot serialise envelope {id}: {e}")))?;
                    store::write_result(&path, &body).await.map_err(|e| {
                        Requeue(format!(
                            "cannot persist envelope to {}: {e}; check ASYA_PERSISTENCE_MOUNT",
                            path.display()
                        ))
                    })?;
                }
                None => {
                    tracing::warn!(id = ?id, "envelope id has no usable file name; not persisted");
                }
            }
        }

        // (d) is the engine's final report. (e) Hooks.
        let hooks = &self.config.sink_hooks;
        let mut sends = Vec::new();
        if !hooks.is_empty() && (env.parent_id.is_none() || self.config.sink_fanout_hooks) {
            sends.push((hooks[0].clone(), self.hook_envelope(env, hooks)));
        }
        Ok(EndOutcome {
            sends,
            skip_report: false,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::testutil::{clock, env, value};

    fn config(mount: Option<&Path>) -> CrewConfig {
        CrewConfig {
            mount: mount.map(Path::to_path_buf),
            ..CrewConfig::default()
        }
    }

    fn sink(config: CrewConfig) -> Sink {
        Sink::with_clock(config, clock())
    }

    fn done(phase: &str) -> Envelope {
        env(json!({
            "id": "t1",
            "route": {"prev": ["a", "b"], "curr": "", "next": []},
            "headers": {"trace": "x"},
            "status": {"phase": phase, "reason": "Completed", "actor": "b", "attempt": 1,
                        "max_attempts": 1, "created_at": "2025-12-31T23:00:00Z",
                        "updated_at": "2025-12-31T23:59:00Z", "deadline_at": "2026-01-02T00:00:00Z"},
            "payload": {"answer": 42}
        }))
    }

    fn read_json(p: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn persists_by_phase() {
        let tmp = tempfile::tempdir().unwrap();
        let s = sink(config(Some(tmp.path())));
        for (phase, folder) in [
            ("succeeded", "succeeded"),
            ("failed", "failed"),
            ("paused", "checkpoint"),
            ("canceled", "checkpoint"),
        ] {
            let e = done(phase);
            let out = s.handle(&e).await.unwrap();
            assert!(!out.skip_report);
            assert!(out.sends.is_empty());
            let saved = read_json(&tmp.path().join(folder).join("t1.json"));
            assert_eq!(saved, value(&e), "{phase}");
        }
    }

    #[tokio::test]
    async fn no_status_goes_to_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let e =
            env(json!({"id": "t1", "route": {"prev": [], "curr": "", "next": []}, "payload": 1}));
        sink(config(Some(tmp.path()))).handle(&e).await.unwrap();
        assert!(tmp.path().join("checkpoint/t1.json").exists());
    }

    #[tokio::test]
    async fn origin_id_names_the_file_and_id_is_a_basename() {
        let tmp = tempfile::tempdir().unwrap();
        let s = sink(config(Some(tmp.path())));
        let mut e = done("succeeded");
        e.headers
            .insert("x-asya-origin-id".into(), json!("../../origin"));
        s.handle(&e).await.unwrap();
        assert!(tmp.path().join("succeeded/origin.json").exists());
        assert!(!tmp.path().join("origin.json").exists());

        let mut e = done("failed");
        e.id = "../escape".into();
        s.handle(&e).await.unwrap();
        assert!(tmp.path().join("failed/escape.json").exists());
        assert!(!tmp.path().join("escape.json").exists());
    }

    #[tokio::test]
    async fn empty_id_is_not_persisted_and_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = done("succeeded");
        e.id.clear();
        let out = sink(config(Some(tmp.path()))).handle(&e).await.unwrap();
        assert!(!out.skip_report);
        assert!(!tmp.path().join("succeeded").exists());
    }

    #[tokio::test]
    async fn no_mount_no_files() {
        let out = sink(config(None)).handle(&done("succeeded")).await.unwrap();
        assert!(!out.skip_report);
        assert!(out.sends.is_empty());
    }

    #[tokio::test]
    async fn already_passed_the_sink_is_dropped_without_report() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(Some(tmp.path()));
        cfg.sink_hooks = vec!["audit".into()];
        let mut e = done("failed");
        e.route.prev.push("x-sink".into());
        e.route.prev.push("audit".into());
        let out = sink(cfg).handle(&e).await.unwrap();
        assert!(out.skip_report);
        assert!(out.sends.is_empty());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn custom_sink_name_is_recognised() {
        let mut cfg = config(None);
        cfg.sink_name = "my-sink".into();
        let mut e = done("succeeded");
        e.route.prev.push("my-sink".into());
        assert!(sink(cfg.clone()).handle(&e).await.unwrap().skip_report);
        // The default name means nothing under a custom sink.
        let mut e = done("succeeded");
        e.route.prev.push("x-sink".into());
        assert!(!sink(cfg).handle(&e).await.unwrap().skip_report);
    }

    #[tokio::test]
    async fn fan_in_slices_are_absorbed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(Some(tmp.path()));
        cfg.sink_hooks = vec!["audit".into()];
        let mut e = done("succeeded");
        e.headers.insert(
            "x-asya-fan-in".into(),
            json!({"actor": "agg", "origin_id": "o", "slice_index": 1, "slice_count": 2}),
        );
        let out = sink(cfg).handle(&e).await.unwrap();
        // The engine decides about the report (slice 0 vs children); no files, no hooks.
        assert!(!out.skip_report);
        assert!(out.sends.is_empty());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn hook_envelope_shape() {
        let mut cfg = config(None);
        cfg.sink_hooks = vec!["audit".into(), "notify".into()];
        let mut e = done("succeeded");
        e.route.curr = "c".into();
        let out = sink(cfg).handle(&e).await.unwrap();
        assert!(!out.skip_report);
        assert_eq!(out.sends.len(), 1);
        let (actor, hook) = &out.sends[0];
        assert_eq!(actor, "audit");
        assert_eq!(
            value(hook),
            json!({
                "id": "t1",
                "route": {"prev": ["a", "b", "c", "x-sink"], "curr": "audit", "next": ["notify"]},
                "headers": {"trace": "x", "x-asya-mesh-status": "off"},
                "status": {"phase": "pending", "actor": "audit", "attempt": 1, "max_attempts": 1,
                            "created_at": "2025-12-31T23:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
                "payload": {"answer": 42}
            })
        );
    }

    #[tokio::test]
    async fn hook_route_skips_empty_curr_and_keeps_parent_id_when_enabled() {
        let mut cfg = config(None);
        cfg.sink_hooks = vec!["audit".into()];
        cfg.sink_fanout_hooks = true;
        let mut e = done("failed");
        e.parent_id = Some("p".into());
        e.status = None;
        let out = sink(cfg).handle(&e).await.unwrap();
        let (_, hook) = &out.sends[0];
        let v = value(hook);
        assert_eq!(v["parent_id"], "p");
        assert_eq!(
            v["route"],
            json!({"prev": ["a", "b", "x-sink"], "curr": "audit", "next": []})
        );
        // No status on input: created_at falls back to now.
        assert_eq!(v["status"]["created_at"], "2026-01-01T00:00:00Z");
    }

    #[tokio::test]
    async fn fan_out_children_skip_hooks_by_default() {
        let mut cfg = config(None);
        cfg.sink_hooks = vec!["audit".into()];
        let mut e = done("succeeded");
        e.parent_id = Some("p".into());
        let out = sink(cfg).handle(&e).await.unwrap();
        assert!(out.sends.is_empty());
        assert!(!out.skip_report);
    }

    #[tokio::test]
    async fn hook_after_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(Some(tmp.path()));
        cfg.sink_hooks = vec!["audit".into()];
        let out = sink(cfg).handle(&done("succeeded")).await.unwrap();
        assert_eq!(out.sends.len(), 1);
        // The persisted file is the received envelope, not the hook envelope.
        let saved = read_json(&tmp.path().join("succeeded/t1.json"));
        assert_eq!(saved["route"]["curr"], "");
        assert_eq!(saved["headers"], json!({"trace": "x"}));
    }

    #[tokio::test]
    async fn storage_failure_requeues() {
        let tmp = tempfile::tempdir().unwrap();
        // `succeeded` is a file, so the folder cannot be created.
        std::fs::write(tmp.path().join("succeeded"), b"x").unwrap();
        let err = sink(config(Some(tmp.path())))
            .handle(&done("succeeded"))
            .await
            .unwrap_err();
        assert!(err.0.contains("ASYA_PERSISTENCE_MOUNT"), "{err}");
    }
}
