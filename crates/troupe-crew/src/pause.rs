//! x-pause: saves the task and signals the pause (protocol.md §14.2).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use troupe_engine::handler::{HandlerFailure, NativeHandler};
use troupe_protocol::envelope::{null_raw, Headers};
use troupe_protocol::route::{HEADER_ROUTE_OVERRIDE, HEADER_ROUTE_RESOLVED};
use troupe_protocol::{Envelope, Frame, Route};

use crate::config::CrewConfig;
use crate::{advance, py_type_name, store, HEADER_FAN_IN, HEADER_PAUSE, RESUME_ACTOR};

/// Folder of saved paused tasks under the mount.
pub(crate) const PAUSED_FOLDER: &str = "paused";

/// Headers that only make sense for the current hop and are not saved.
const TRANSIENT_HEADERS: [&str; 3] = [HEADER_FAN_IN, HEADER_ROUTE_OVERRIDE, HEADER_ROUTE_RESOLVED];

/// `{mount}/paused/{id}.json` (shared with x-resume).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PausedTask {
    /// Task id.
    #[serde(default)]
    pub id: String,
    /// Parent id of a paused fan-out child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Route at pause time, `x-resume` first in `next`.
    #[serde(default)]
    pub route: Route,
    /// Headers without the transient ones.
    #[serde(default)]
    pub headers: Headers,
    /// Payload at pause time.
    #[serde(default = "null_raw")]
    pub payload: Box<RawValue>,
    /// The pause metadata (prompt and fields) the task was paused with.
    #[serde(
        rename = "_pause_metadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pause_metadata: Option<Value>,
}

/// The x-pause native handler.
pub struct Pause {
    config: CrewConfig,
}

impl Pause {
    /// A pause actor with the given configuration.
    pub fn new(config: CrewConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl NativeHandler for Pause {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        // Asya's x-pause only pauses object payloads, which x-resume later merges into.
        if !input.payload.get().trim_start().starts_with('{') {
            let v: Value = serde_json::from_str(input.payload.get()).unwrap_or(Value::Null);
            return Err(HandlerFailure::new(
                "ValueError",
                &["Exception"],
                format!("Payload must be a dict, got {}", py_type_name(&v)),
            ));
        }
        let Some(mount) = &self.config.mount else {
            return Err(HandlerFailure::new(
                "RuntimeError",
                &["Exception"],
                "x-pause requires ASYA_PERSISTENCE_MOUNT: set it to a writable folder \
                 shared with x-resume",
            ));
        };
        let Some(path) = store::file_path(mount, PAUSED_FOLDER, &input.id) else {
            return Err(HandlerFailure::new(
                "ValueError",
                &["Exception"],
                format!("envelope id {:?} cannot name a saved-task file", input.id),
            ));
        };

        let mut route = input.route.clone();
        if route.next.first().map(String::as_str) != Some(RESUME_ACTOR) {
            route.next.insert(0, RESUME_ACTOR.to_owned());
        }

        let mut saved_headers = input.headers.clone();
        for h in TRANSIENT_HEADERS {
            saved_headers.remove(h);
        }
        let saved = PausedTask {
            id: input.id.clone(),
            parent_id: input.parent_id.clone(),
            route: route.clone(),
            headers: saved_headers,
            payload: input.payload.clone(),
            pause_metadata: Some(self.config.pause_metadata.clone()),
        };
        let body = serde_json::to_vec_pretty(&saved).map_err(|e| {
            HandlerFailure::new(
                "TypeError",
                &["Exception"],
                format!("cannot serialise: {e}"),
            )
        })?;
        store::write_atomic(&path, &body).await.map_err(|e| {
            HandlerFailure::new(
                "OSError",
                &["Exception"],
                format!("cannot save paused task to '{}': {e}", path.display()),
            )
        })?;

        let mut headers = input.headers.clone();
        headers.insert(HEADER_PAUSE.to_owned(), self.config.pause_metadata.clone());
        Ok(vec![Frame {
            payload: input.payload.clone(),
            route: advance(&route),
            headers: Some(headers),
            status: input
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
        }])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::testutil::env;

    fn pause(mount: Option<&Path>) -> Pause {
        Pause::new(CrewConfig {
            mount: mount.map(Path::to_path_buf),
            pause_metadata: json!({"prompt": "Approve?", "fields": [{"name": "ok"}]}),
            ..CrewConfig::default()
        })
    }

    fn input(next: &[&str]) -> Envelope {
        env(json!({
            "id": "t1",
            "parent_id": "p0",
            "route": {"prev": ["a"], "curr": "x-pause", "next": next},
            "headers": {
                "x-asya-gateway-url": "http://gw",
                "x-asya-fan-in": {"origin_id": "o"},
                "x-asya-route-override": {"b": "b2"},
                "x-asya-route-resolved": {"x-pause": {"target": "x-pause", "by": "a"}},
                "custom": [1, 2]
            },
            "status": {"phase": "processing", "actor": "x-pause", "attempt": 1, "max_attempts": 0,
                        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:01Z",
                        "deadline_at": "2026-01-01T01:00:00Z"},
            "payload": {"draft": "hello"}
        }))
    }

    fn saved(tmp: &Path, id: &str) -> Value {
        serde_json::from_slice(
            &std::fs::read(tmp.join("paused").join(format!("{id}.json"))).unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn saves_task_and_emits_paused_frame() {
        let tmp = tempfile::tempdir().unwrap();
        let e = input(&["b", "c"]);
        let frames = pause(Some(tmp.path())).handle(&e).await.unwrap();

        assert_eq!(
            saved(tmp.path(), "t1"),
            json!({
                "id": "t1",
                "parent_id": "p0",
                "route": {"prev": ["a"], "curr": "x-pause", "next": ["x-resume", "b", "c"]},
                "headers": {"x-asya-gateway-url": "http://gw", "custom": [1, 2]},
                "payload": {"draft": "hello"},
                "_pause_metadata": {"prompt": "Approve?", "fields": [{"name": "ok"}]}
            })
        );

        assert_eq!(frames.len(), 1);
        let f = &frames[0];
        assert_eq!(f.payload.get(), e.payload.get());
        assert_eq!(
            f.route,
            Route {
                prev: vec!["a".into(), "x-pause".into()],
                curr: "x-resume".into(),
                next: vec!["b".into(), "c".into()],
            }
        );
        let h = f.headers.as_ref().unwrap();
        assert_eq!(
            h["x-asya-pause"],
            json!({"prompt": "Approve?", "fields": [{"name": "ok"}]})
        );
        // The frame keeps every input header; only the saved copy drops transient ones.
        assert_eq!(h["x-asya-fan-in"], json!({"origin_id": "o"}));
        assert_eq!(h["custom"], json!([1, 2]));
        assert_eq!(
            f.status,
            Some(serde_json::to_value(e.status.as_ref().unwrap()).unwrap())
        );
    }

    #[tokio::test]
    async fn x_resume_already_first_is_not_duplicated() {
        let tmp = tempfile::tempdir().unwrap();
        let frames = pause(Some(tmp.path()))
            .handle(&input(&["x-resume", "b"]))
            .await
            .unwrap();
        assert_eq!(
            saved(tmp.path(), "t1")["route"]["next"],
            json!(["x-resume", "b"])
        );
        assert_eq!(frames[0].route.curr, "x-resume");
        assert_eq!(frames[0].route.next, vec!["b".to_owned()]);
    }

    #[tokio::test]
    async fn empty_next_gets_x_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let frames = pause(Some(tmp.path())).handle(&input(&[])).await.unwrap();
        assert_eq!(
            saved(tmp.path(), "t1")["route"]["next"],
            json!(["x-resume"])
        );
        assert_eq!(frames[0].route.curr, "x-resume");
        assert!(frames[0].route.next.is_empty());
    }

    #[tokio::test]
    async fn no_parent_id_is_omitted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = input(&["b"]);
        e.parent_id = None;
        pause(Some(tmp.path())).handle(&e).await.unwrap();
        assert!(saved(tmp.path(), "t1").get("parent_id").is_none());
    }

    #[tokio::test]
    async fn requires_mount() {
        let err = pause(None).handle(&input(&["b"])).await.unwrap_err();
        assert_eq!(err.code, "processing_error");
        assert_eq!(err.details.error_type, "RuntimeError");
        assert!(err.details.message.contains("ASYA_PERSISTENCE_MOUNT"));
    }

    #[tokio::test]
    async fn non_object_payload_is_a_value_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = input(&["b"]);
        e.payload = troupe_protocol::envelope::raw_json("[1, 2]");
        let err = pause(Some(tmp.path())).handle(&e).await.unwrap_err();
        assert_eq!(err.details.error_type, "ValueError");
        assert_eq!(err.details.message, "Payload must be a dict, got list");
        assert!(!tmp.path().join("paused").exists());
    }

    #[tokio::test]
    async fn id_is_a_basename() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = input(&["b"]);
        e.id = "../../t2".into();
        pause(Some(tmp.path())).handle(&e).await.unwrap();
        assert_eq!(saved(tmp.path(), "t2")["id"], "../../t2");
    }

    #[tokio::test]
    async fn storage_failure_is_an_os_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("paused"), b"x").unwrap();
        let err = pause(Some(tmp.path()))
            .handle(&input(&["b"]))
            .await
            .unwrap_err();
        assert_eq!(err.details.error_type, "OSError");
    }
}
