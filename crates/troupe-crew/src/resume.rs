//! x-resume: restores a paused task and merges the user's input (protocol.md §14.3).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use troupe_engine::handler::{HandlerFailure, NativeHandler, Requeue};
use troupe_protocol::clock::format_ts;
use troupe_protocol::envelope::to_raw;
use troupe_protocol::resume_input::declared_fields;
use troupe_protocol::{Clock, Envelope, Frame, Route, SystemClock};

use crate::config::{CrewConfig, MergeMode};
use crate::pause::{PausedTask, PAUSED_FOLDER};
use crate::{
    advance, py_type_name, store, HEADER_PAUSE, HEADER_RESUME_TASK, HEADER_RESUME_TIMEOUT,
    RESUME_ACTOR,
};

/// The x-resume native handler.
pub struct Resume {
    config: CrewConfig,
    clock: Arc<dyn Clock>,
}

fn value_error(message: impl Into<String>) -> HandlerFailure {
    HandlerFailure::new("ValueError", &["Exception"], message)
}

impl Resume {
    /// A resume actor using the system clock.
    pub fn new(config: CrewConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A resume actor with an injected clock (tests).
    pub fn with_clock(config: CrewConfig, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock }
    }

    /// `{mount}/paused/{basename(task)}.json` for the task named by the input.
    fn saved_path(&self, input: &Envelope) -> Result<PathBuf, HandlerFailure> {
        let task = match input.headers.get(HEADER_RESUME_TASK) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(value_error(format!(
                    "Missing {HEADER_RESUME_TASK} header: x-resume needs the id of the paused \
                     task to resume"
                )))
            }
        };
        let Some(mount) = &self.config.mount else {
            return Err(HandlerFailure::new(
                "RuntimeError",
                &["Exception"],
                "x-resume requires ASYA_PERSISTENCE_MOUNT: set it to the folder x-pause saves to",
            ));
        };
        store::file_path(mount, PAUSED_FOLDER, &task).ok_or_else(|| {
            value_error(format!(
                "{HEADER_RESUME_TASK} {task:?} is not a valid task id"
            ))
        })
    }

    /// Step 5: `now + x-asya-resume-timeout seconds`, if the header is set.
    fn new_deadline(&self, input: &Envelope) -> Result<Option<String>, HandlerFailure> {
        let secs = match input.headers.get(HEADER_RESUME_TIMEOUT) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        let invalid = || {
            value_error(format!(
                "{HEADER_RESUME_TIMEOUT} must be a non-negative number of seconds, got {}",
                input
                    .headers
                    .get(HEADER_RESUME_TIMEOUT)
                    .unwrap_or(&Value::Null)
            ))
        };
        let secs = secs
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(invalid)?;
        let at = time::Duration::checked_seconds_f64(secs)
            .and_then(|d| self.clock.now().checked_add(d))
            .ok_or_else(invalid)?;
        Ok(Some(format_ts(at)))
    }
}

/// Writes `value` at a slash path (`/a/b`), creating intermediate objects. Existing
/// array elements can be addressed by index; any other non-object on the way is
/// replaced by an object.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = segments.split_last() else {
        *root = value;
        return;
    };
    let mut cur = root;
    for seg in parents {
        cur = child(cur, seg);
    }
    match cur {
        Value::Array(items) => match last.parse::<usize>().ok().filter(|i| *i < items.len()) {
            Some(i) => items[i] = value,
            None => {
                let mut obj = Map::new();
                obj.insert((*last).to_owned(), value);
                *cur = Value::Object(obj);
            }
        },
        _ => {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            if let Value::Object(obj) = cur {
                obj.insert((*last).to_owned(), value);
            }
        }
    }
}

/// The member `seg` of `cur` (an array index or an object key), created as `{}` when
/// missing (also used by the fan-in to write its aggregation pointer).
pub(crate) fn child<'a>(cur: &'a mut Value, seg: &str) -> &'a mut Value {
    let index = match cur {
        Value::Array(items) => seg.parse::<usize>().ok().filter(|i| *i < items.len()),
        _ => None,
    };
    if let Some(i) = index {
        if let Value::Array(items) = cur {
            return &mut items[i];
        }
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    match cur {
        Value::Object(obj) => obj
            .entry(seg.to_owned())
            .or_insert_with(|| Value::Object(Map::new())),
        // Just made an object above.
        other => other,
    }
}

/// Merges `input` into `base` at the root.
fn merge_root(base: &mut Value, input: Map<String, Value>, mode: MergeMode) {
    if !base.is_object() {
        if input.is_empty() {
            return;
        }
        *base = Value::Object(Map::new());
    }
    let Value::Object(obj) = base else { return };
    for (k, v) in input {
        match (mode, obj.get_mut(&k), v) {
            (MergeMode::Deep, Some(existing @ Value::Object(_)), Value::Object(inner)) => {
                merge_root(existing, inner, mode);
            }
            (_, _, v) => {
                obj.insert(k, v);
            }
        }
    }
}

#[async_trait]
impl NativeHandler for Resume {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        // (1) Load the saved task.
        let path = self.saved_path(input)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HandlerFailure::new(
                    "FileNotFoundError",
                    &["OSError", "Exception"],
                    format!(
                        "[Errno 2] No such file or directory: '{}' (no paused task with this id, \
                         or it was already resumed)",
                        path.display()
                    ),
                ))
            }
            Err(e) => {
                return Err(HandlerFailure::new(
                    "OSError",
                    &["Exception"],
                    format!("cannot read '{}': {e}", path.display()),
                ))
            }
        };
        let saved: PausedTask = serde_json::from_slice(&bytes).map_err(|e| {
            HandlerFailure::new(
                "json.decoder.JSONDecodeError",
                &["ValueError", "Exception"],
                format!("saved task '{}' is not valid JSON: {e}", path.display()),
            )
        })?;

        // (2) Merge the user's input into the saved payload.
        let mut payload: Value = serde_json::from_str(saved.payload.get()).unwrap_or(Value::Null);
        let user_input = match serde_json::from_str::<Value>(input.payload.get()) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) | Err(_) => Map::new(),
            Ok(other) => {
                return Err(value_error(format!(
                    "Payload must be a dict, got {}",
                    py_type_name(&other)
                )))
            }
        };
        let metadata = saved
            .pause_metadata
            .as_ref()
            .unwrap_or(&self.config.pause_metadata);
        let fields = declared_fields(metadata);
        if fields.is_empty() {
            merge_root(&mut payload, user_input, self.config.resume_merge_mode);
        } else {
            for field in &fields {
                let Some(name) = field.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let Some(v) = user_input.get(name) else {
                    continue;
                };
                let key = field
                    .get("payload_key")
                    .and_then(Value::as_str)
                    .filter(|k| !k.is_empty())
                    .map_or_else(|| format!("/{name}"), str::to_owned);
                set_path(&mut payload, &key, v.clone());
            }
        }

        // (3) Continue with the saved route; the frame leaves this actor for next[0].
        let next: Vec<String> = saved
            .route
            .next
            .iter()
            .skip_while(|a| *a == RESUME_ACTOR)
            .cloned()
            .collect();
        let route = advance(&Route {
            prev: input.route.prev.clone(),
            curr: input.route.curr.clone(),
            next,
        });

        // (4) Saved headers, overlaid with the incoming ones.
        let mut headers = saved.headers;
        headers.extend(input.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        for h in [HEADER_PAUSE, HEADER_RESUME_TASK, HEADER_RESUME_TIMEOUT] {
            headers.remove(h);
        }

        // (5) New SLA.
        let mut status = input
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        if let Some(deadline) = self.new_deadline(input)? {
            let obj = status.get_or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = obj {
                m.insert("deadline_at".to_owned(), Value::String(deadline));
            }
        }

        // (6) Emit.
        Ok(vec![Frame {
            payload: to_raw(&payload),
            route,
            headers: Some(headers),
            status,
        }])
    }

    /// (7) The frame was sent: the saved task is no longer needed.
    async fn after_dispatch(&self, input: &Envelope) -> Result<(), Requeue> {
        let Ok(path) = self.saved_path(input) else {
            return Ok(());
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            // A redelivered resume after an earlier successful delete.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Requeue(format!(
                "cannot delete resumed task '{}': {e}",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::testutil::{clock, env};
    use crate::Pause;

    fn config(mount: &Path, mode: MergeMode) -> CrewConfig {
        CrewConfig {
            mount: Some(mount.to_path_buf()),
            resume_merge_mode: mode,
            ..CrewConfig::default()
        }
    }

    fn resume(mount: &Path) -> Resume {
        Resume::with_clock(config(mount, MergeMode::Shallow), clock())
    }

    fn write_saved(mount: &Path, id: &str, saved: Value) -> PathBuf {
        let dir = mount.join("paused");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{id}.json"));
        std::fs::write(&p, serde_json::to_vec(&saved).unwrap()).unwrap();
        p
    }

    fn saved_task(payload: Value, fields: Value) -> Value {
        json!({
            "id": "t1",
            "route": {"prev": ["a", "x-pause"], "curr": "x-pause", "next": ["x-resume", "b", "c"]},
            "headers": {"keep": "saved", "over": "saved", "x-asya-pause": {"prompt": "p"}},
            "payload": payload,
            "_pause_metadata": {"prompt": "p", "fields": fields}
        })
    }

    fn resume_input(payload: Value, extra_headers: Value) -> Envelope {
        let mut headers = json!({
            "x-asya-resume-task": "t1",
            "over": "incoming",
            "x-asya-gateway-url": "http://gw"
        });
        for (k, v) in extra_headers.as_object().unwrap() {
            headers[k] = v.clone();
        }
        env(json!({
            "id": "t1",
            "route": {"prev": [], "curr": "x-resume", "next": []},
            "headers": headers,
            "status": {"phase": "processing", "actor": "x-resume", "attempt": 1, "max_attempts": 0,
                        "created_at": "2025-12-31T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
            "payload": payload
        }))
    }

    fn payload_of(f: &Frame) -> Value {
        serde_json::from_str(f.payload.get()).unwrap()
    }

    #[tokio::test]
    async fn merges_fields_at_payload_keys() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(
            tmp.path(),
            "t1",
            saved_task(
                json!({"status": "pending", "review": "old"}),
                json!([
                    {"name": "approved", "type": "boolean", "payload_key": "/approved"},
                    {"name": "notes", "payload_key": "/review/notes/text"},
                    {"name": "user"},
                    {"name": "absent", "payload_key": "/absent"}
                ]),
            ),
        );
        let frames = resume(tmp.path())
            .handle(&resume_input(
                json!({"approved": true, "notes": "ok", "user": "al", "ignored": 1}),
                json!({}),
            ))
            .await
            .unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            payload_of(&frames[0]),
            // `review` was a string: replaced by the objects the path needs.
            json!({"status": "pending", "review": {"notes": {"text": "ok"}}, "approved": true, "user": "al"})
        );
    }

    #[tokio::test]
    async fn payload_key_can_address_array_elements() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(
            tmp.path(),
            "t1",
            saved_task(
                json!({"items": [{"v": 1}, {"v": 2}]}),
                json!([{"name": "v", "payload_key": "/items/1/v"}]),
            ),
        );
        let frames = resume(tmp.path())
            .handle(&resume_input(json!({"v": 9}), json!({})))
            .await
            .unwrap();
        assert_eq!(
            payload_of(&frames[0]),
            json!({"items": [{"v": 1}, {"v": 9}]})
        );
    }

    #[tokio::test]
    async fn shallow_root_merge_without_fields() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(
            tmp.path(),
            "t1",
            saved_task(json!({"count": 1, "nested": {"a": 1, "b": 2}}), json!([])),
        );
        let frames = resume(tmp.path())
            .handle(&resume_input(
                json!({"count": 5, "nested": {"a": 9}}),
                json!({}),
            ))
            .await
            .unwrap();
        assert_eq!(
            payload_of(&frames[0]),
            json!({"count": 5, "nested": {"a": 9}})
        );
    }

    #[tokio::test]
    async fn deep_root_merge_without_fields() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(
            tmp.path(),
            "t1",
            saved_task(
                json!({"count": 1, "nested": {"a": 1, "b": {"x": 1, "y": 2}}}),
                json!([]),
            ),
        );
        let r = Resume::with_clock(config(tmp.path(), MergeMode::Deep), clock());
        let frames = r
            .handle(&resume_input(
                json!({"nested": {"a": 9, "b": {"y": 3}, "c": [1]}, "new": true}),
                json!({}),
            ))
            .await
            .unwrap();
        assert_eq!(
            payload_of(&frames[0]),
            json!({"count": 1, "nested": {"a": 9, "b": {"x": 1, "y": 3}, "c": [1]}, "new": true})
        );
    }

    #[tokio::test]
    async fn null_input_keeps_saved_payload() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({"k": 1}), json!([])));
        let frames = resume(tmp.path())
            .handle(&resume_input(Value::Null, json!({})))
            .await
            .unwrap();
        assert_eq!(payload_of(&frames[0]), json!({"k": 1}));
    }

    #[tokio::test]
    async fn non_object_input_is_a_value_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({"k": 1}), json!([])));
        let err = resume(tmp.path())
            .handle(&resume_input(json!("yes"), json!({})))
            .await
            .unwrap_err();
        assert_eq!(err.details.error_type, "ValueError");
        assert_eq!(err.details.message, "Payload must be a dict, got str");
    }

    #[tokio::test]
    async fn route_continues_at_saved_next() {
        let tmp = tempfile::tempdir().unwrap();
        let mut saved = saved_task(json!({}), json!([]));
        saved["route"]["next"] = json!(["x-resume", "x-resume", "b", "c"]);
        write_saved(tmp.path(), "t1", saved);
        let frames = resume(tmp.path())
            .handle(&resume_input(json!({}), json!({})))
            .await
            .unwrap();
        assert_eq!(
            frames[0].route,
            Route {
                prev: vec!["x-resume".into()],
                curr: "b".into(),
                next: vec!["c".into()],
            }
        );
    }

    #[tokio::test]
    async fn last_actor_paused_ends_the_route() {
        let tmp = tempfile::tempdir().unwrap();
        let mut saved = saved_task(json!({}), json!([]));
        saved["route"]["next"] = json!(["x-resume"]);
        write_saved(tmp.path(), "t1", saved);
        let frames = resume(tmp.path())
            .handle(&resume_input(json!({}), json!({})))
            .await
            .unwrap();
        assert_eq!(frames[0].route.curr, "");
        assert!(frames[0].route.next.is_empty());
    }

    #[tokio::test]
    async fn headers_overlay_and_removal() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({}), json!([])));
        let frames = resume(tmp.path())
            .handle(&resume_input(
                json!({}),
                json!({"x-asya-resume-timeout": 60, "x-asya-pause": {"prompt": "again"}}),
            ))
            .await
            .unwrap();
        assert_eq!(
            Value::Object(frames[0].headers.clone().unwrap()),
            json!({"keep": "saved", "over": "incoming", "x-asya-gateway-url": "http://gw"})
        );
    }

    #[tokio::test]
    async fn timeout_sets_deadline() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({}), json!([])));
        let r = resume(tmp.path());
        for (timeout, expected) in [
            (json!(3600), "2026-01-01T01:00:00Z"),
            (json!("90"), "2026-01-01T00:01:30Z"),
            (json!(" 1.5 "), "2026-01-01T00:00:01Z"),
        ] {
            let frames = r
                .handle(&resume_input(
                    json!({}),
                    json!({"x-asya-resume-timeout": timeout}),
                ))
                .await
                .unwrap();
            let status = frames[0].status.as_ref().unwrap();
            assert_eq!(status["deadline_at"], expected);
            // The rest of the stamped status is kept.
            assert_eq!(status["created_at"], "2025-12-31T00:00:00Z");
        }
    }

    #[tokio::test]
    async fn timeout_replaces_an_existing_deadline_and_works_without_status() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({}), json!([])));
        let mut e = resume_input(json!({}), json!({"x-asya-resume-timeout": 10}));
        e.status.as_mut().unwrap().deadline_at = Some("2020-01-01T00:00:00Z".into());
        let frames = resume(tmp.path()).handle(&e).await.unwrap();
        assert_eq!(
            frames[0].status.as_ref().unwrap()["deadline_at"],
            "2026-01-01T00:00:10Z"
        );

        e.status = None;
        let frames = resume(tmp.path()).handle(&e).await.unwrap();
        assert_eq!(
            frames[0].status,
            Some(json!({"deadline_at": "2026-01-01T00:00:10Z"}))
        );
    }

    #[tokio::test]
    async fn no_timeout_keeps_input_status() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({}), json!([])));
        let mut e = resume_input(json!({}), json!({}));
        e.status.as_mut().unwrap().deadline_at = Some("2026-01-01T00:05:00Z".into());
        let frames = resume(tmp.path()).handle(&e).await.unwrap();
        assert_eq!(
            frames[0].status,
            Some(serde_json::to_value(e.status.as_ref().unwrap()).unwrap())
        );
    }

    #[tokio::test]
    async fn invalid_timeout_is_a_value_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({}), json!([])));
        for bad in [json!("soon"), json!(-5), json!([1])] {
            let err = resume(tmp.path())
                .handle(&resume_input(
                    json!({}),
                    json!({"x-asya-resume-timeout": bad}),
                ))
                .await
                .unwrap_err();
            assert_eq!(err.details.error_type, "ValueError");
            assert!(err.details.message.contains("x-asya-resume-timeout"));
        }
    }

    #[tokio::test]
    async fn missing_header_is_a_value_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut e = resume_input(json!({}), json!({}));
        e.headers.remove("x-asya-resume-task");
        let err = resume(tmp.path()).handle(&e).await.unwrap_err();
        assert_eq!(err.code, "processing_error");
        assert_eq!(err.details.error_type, "ValueError");
        assert!(err.details.message.contains("x-asya-resume-task"));
    }

    #[tokio::test]
    async fn missing_file_is_file_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resume(tmp.path())
            .handle(&resume_input(json!({}), json!({})))
            .await
            .unwrap_err();
        assert_eq!(err.details.error_type, "FileNotFoundError");
        assert_eq!(err.details.mro, vec!["OSError", "Exception"]);
    }

    #[tokio::test]
    async fn corrupt_file_is_a_json_decode_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("paused")).unwrap();
        std::fs::write(tmp.path().join("paused/t1.json"), b"{trunc").unwrap();
        let err = resume(tmp.path())
            .handle(&resume_input(json!({}), json!({})))
            .await
            .unwrap_err();
        assert_eq!(err.details.error_type, "json.decoder.JSONDecodeError");
        assert_eq!(err.details.mro, vec!["ValueError", "Exception"]);
    }

    #[tokio::test]
    async fn task_id_is_a_basename() {
        let tmp = tempfile::tempdir().unwrap();
        write_saved(tmp.path(), "t1", saved_task(json!({"k": 1}), json!([])));
        let e = resume_input(json!({}), json!({"x-asya-resume-task": "../paused/../t1"}));
        let frames = resume(tmp.path()).handle(&e).await.unwrap();
        assert_eq!(payload_of(&frames[0]), json!({"k": 1}));
    }

    #[tokio::test]
    async fn file_is_deleted_only_in_after_dispatch() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_saved(tmp.path(), "t1", saved_task(json!({}), json!([])));
        let r = resume(tmp.path());
        let e = resume_input(json!({}), json!({}));
        r.handle(&e).await.unwrap();
        assert!(
            path.exists(),
            "handle must not delete: a requeue would lose the task"
        );
        // A redelivery before the delete still resumes.
        r.handle(&e).await.unwrap();
        r.after_dispatch(&e).await.unwrap();
        assert!(!path.exists());
        // Idempotent.
        r.after_dispatch(&e).await.unwrap();
    }

    #[tokio::test]
    async fn requires_mount() {
        let r = Resume::with_clock(CrewConfig::default(), clock());
        let err = r
            .handle(&resume_input(json!({}), json!({})))
            .await
            .unwrap_err();
        assert_eq!(err.details.error_type, "RuntimeError");
        assert!(err.details.message.contains("ASYA_PERSISTENCE_MOUNT"));
    }

    #[tokio::test]
    async fn pause_then_resume_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = CrewConfig {
            mount: Some(tmp.path().to_path_buf()),
            pause_metadata: json!({"prompt": "Approve?", "fields": [
                {"name": "approved", "payload_key": "/decision/approved"}
            ]}),
            ..CrewConfig::default()
        };
        let paused_in = env(json!({
            "id": "t1",
            "route": {"prev": ["a"], "curr": "x-pause", "next": ["b"]},
            "headers": {"trace": "1", "x-asya-route-override": {"b": "b2"}},
            "status": {"phase": "processing", "actor": "x-pause", "attempt": 1, "max_attempts": 0,
                        "created_at": "2025-12-31T00:00:00Z", "updated_at": "2025-12-31T00:00:00Z"},
            "payload": {"draft": "d"}
        }));
        let pause_frames = Pause::new(cfg.clone()).handle(&paused_in).await.unwrap();
        assert_eq!(pause_frames[0].route.curr, "x-resume");

        let r = Resume::with_clock(cfg, clock());
        let e = resume_input(json!({"approved": false}), json!({}));
        let frames = r.handle(&e).await.unwrap();
        assert_eq!(
            payload_of(&frames[0]),
            json!({"draft": "d", "decision": {"approved": false}})
        );
        assert_eq!(frames[0].route.curr, "b");
        let h = frames[0].headers.as_ref().unwrap();
        assert_eq!(h["trace"], "1");
        assert!(h.get("x-asya-route-override").is_none());
        assert!(h.get("x-asya-pause").is_none());
        r.after_dispatch(&e).await.unwrap();
        assert!(!tmp.path().join("paused/t1.json").exists());
    }

    #[test]
    fn set_path_edge_cases() {
        let mut v = json!({"a": 1});
        set_path(&mut v, "/", json!({"root": true}));
        assert_eq!(v, json!({"root": true}));

        let mut v = json!([1]);
        set_path(&mut v, "x/y", json!(2));
        assert_eq!(v, json!({"x": {"y": 2}}));

        let mut v = json!({"a": [0, 1]});
        set_path(&mut v, "/a/5", json!(2));
        assert_eq!(v, json!({"a": {"5": 2}}));
    }

    #[test]
    fn fields_from_string_metadata() {
        let f = declared_fields(&json!(r#"{"fields": [{"name": "x"}]}"#));
        assert_eq!(f, vec![json!({"name": "x"})]);
        assert!(declared_fields(&json!({"prompt": "p"})).is_empty());
    }
}
