//! Pure translations between A2A v0.3 objects and the mesh (gateway.md §4): message →
//! payload, mesh status → task state, and the A2A objects the adapter emits.

use serde_json::{json, Map, Value};
use troupe_gateway::Task;

/// Mesh header carrying the A2A task id.
pub(crate) const HEADER_TASK_ID: &str = "x-asya-a2a-task-id";
/// Mesh header carrying the A2A context id.
pub(crate) const HEADER_CONTEXT_ID: &str = "x-asya-a2a-context-id";
/// Mesh header recording who created the task (`jwt:<sub>` or `api-key`).
pub(crate) const HEADER_OWNER: &str = "x-troupe-a2a-owner";
/// Artifact id of the FLY chunks that are not A2A-shaped.
pub(crate) const FLY_ARTIFACT_ID: &str = "fly-stream";
/// Artifact id of the final result.
pub(crate) const RESULT_ARTIFACT_ID: &str = "result";
/// Name of the final result artifact.
pub(crate) const RESULT_ARTIFACT_NAME: &str = "Task result";

/// A message part the adapter can map; file parts are refused by the caller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PartContent {
    Text(String),
    Data(Map<String, Value>),
    File,
}

/// Why a message could not be mapped (JSON-RPC invalid params or content type).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MessageError {
    /// Malformed message (-32602).
    Invalid(String),
    /// A part kind the mesh cannot take (-32005).
    Unsupported(String),
}

/// The parts of an A2A message, in order. Accepts v0.3 `kind` and the older `type`.
pub(crate) fn message_parts(msg: &Map<String, Value>) -> Result<Vec<PartContent>, MessageError> {
    let parts = match msg.get("parts") {
        Some(Value::Array(p)) => p,
        None | Some(Value::Null) => {
            return Err(MessageError::Invalid(
                "message.parts is required: a list of {kind: text|data} parts".into(),
            ))
        }
        Some(_) => {
            return Err(MessageError::Invalid(
                "message.parts must be a list of parts".into(),
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(p) = part else {
            return Err(MessageError::Invalid(format!(
                "message.parts[{i}] must be an object"
            )));
        };
        let kind = p
            .get("kind")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                if p.contains_key("text") {
                    "text"
                } else if p.contains_key("data") {
                    "data"
                } else {
                    ""
                }
            });
        match kind {
            "text" => match p.get("text") {
                Some(Value::String(s)) => out.push(PartContent::Text(s.clone())),
                _ => {
                    return Err(MessageError::Invalid(format!(
                        "message.parts[{i}].text must be a string"
                    )))
                }
            },
            "data" => match p.get("data") {
                Some(Value::Object(d)) => out.push(PartContent::Data(d.clone())),
                _ => {
                    return Err(MessageError::Invalid(format!(
                        "message.parts[{i}].data must be a JSON object"
                    )))
                }
            },
            "file" => out.push(PartContent::File),
            other => {
                return Err(MessageError::Invalid(format!(
                    "message.parts[{i}] has unknown kind '{other}': use text or data"
                )))
            }
        }
    }
    if out.contains(&PartContent::File) {
        return Err(MessageError::Unsupported(
            "file parts are not supported: send text or data parts".into(),
        ));
    }
    Ok(out)
}

/// Texts joined with `\n` (`None` without text parts) and data parts merged, later keys
/// winning (`None` without data parts).
fn texts_and_data(parts: &[PartContent]) -> (Option<String>, Option<Map<String, Value>>) {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            PartContent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let mut data: Option<Map<String, Value>> = None;
    for p in parts {
        if let PartContent::Data(d) = p {
            let merged = data.get_or_insert_with(Map::new);
            for (k, v) in d {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    ((!texts.is_empty()).then(|| texts.join("\n")), data)
}

/// The mesh payload of a message (§4 "Message → payload").
pub(crate) fn message_to_payload(
    msg: &Map<String, Value>,
    parts: &[PartContent],
    task_id: &str,
    context_id: &str,
) -> Value {
    let data_parts = parts
        .iter()
        .filter(|p| matches!(p, PartContent::Data(_)))
        .count();
    let (text, merged) = texts_and_data(parts);
    let mut payload = if data_parts == 1 && text.is_none() {
        // A single data part is the payload itself (a copy: `a2a` is added below).
        merged.unwrap_or_default()
    } else {
        let mut p = merged.unwrap_or_default();
        if let Some(t) = text {
            p.insert("query".into(), Value::String(t));
        }
        p
    };
    payload.insert(
        "a2a".into(),
        json!({"task": {
            "id": task_id,
            "context_id": context_id,
            "history": [history_entry(msg, parts)],
        }}),
    );
    Value::Object(payload)
}

/// `{id, role, text?, data?}` of the current message (texts joined, data merged).
fn history_entry(msg: &Map<String, Value>, parts: &[PartContent]) -> Value {
    let mut entry = Map::new();
    entry.insert(
        "id".into(),
        msg.get("messageId").cloned().unwrap_or(Value::Null),
    );
    entry.insert(
        "role".into(),
        msg.get("role")
            .cloned()
            .unwrap_or_else(|| Value::from("user")),
    );
    let (text, data) = texts_and_data(parts);
    if let Some(t) = text {
        entry.insert("text".into(), Value::String(t));
    }
    if let Some(d) = data {
        entry.insert("data".into(), Value::Object(d));
    }
    Value::Object(entry)
}

/// A2A task state of a mesh status (§4 "State mapping"; v0.3 spells with hyphens).
pub(crate) fn a2a_state(status: &str) -> &'static str {
    match status {
        "pending" => "submitted",
        "running" => "working",
        "succeeded" => "completed",
        "failed" => "failed",
        "canceled" => "canceled",
        "paused" => "input-required",
        "auth_required" => "auth-required",
        _ => "unknown",
    }
}

/// Whether a mesh status ends a relay: terminal, or interrupted (paused, auth_required).
pub(crate) fn ends_relay(status: &str) -> bool {
    matches!(
        status,
        "succeeded" | "failed" | "canceled" | "paused" | "auth_required"
    )
}

/// Now as RFC 3339 UTC (status timestamps).
pub(crate) fn now_ts() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An agent message with an optional text and an optional data part.
pub(crate) fn agent_message(
    text: Option<&str>,
    data: Option<Value>,
    task_id: &str,
    context_id: &str,
) -> Value {
    let mut parts = Vec::new();
    if let Some(t) = text {
        parts.push(json!({"kind": "text", "text": t}));
    }
    if let Some(d) = data {
        parts.push(json!({"kind": "data", "data": d}));
    }
    agent_message_with_parts(parts, task_id, context_id)
}

fn agent_message_with_parts(parts: Vec<Value>, task_id: &str, context_id: &str) -> Value {
    json!({
        "kind": "message",
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "agent",
        "parts": parts,
        "taskId": task_id,
        "contextId": context_id,
    })
}

/// `TaskStatus` (`{state, message?, timestamp}`).
pub(crate) fn task_status(state: &str, message: Option<Value>) -> Value {
    let mut s = Map::new();
    s.insert("state".into(), Value::from(state));
    if let Some(m) = message {
        s.insert("message".into(), m);
    }
    s.insert("timestamp".into(), Value::String(now_ts()));
    Value::Object(s)
}

/// A `TaskStatusUpdateEvent`.
pub(crate) fn status_event(
    task_id: &str,
    context_id: &str,
    state: &str,
    message: Option<Value>,
    is_final: bool,
) -> Value {
    json!({
        "kind": "status-update",
        "taskId": task_id,
        "contextId": context_id,
        "status": task_status(state, message),
        "final": is_final,
    })
}

/// A `TaskArtifactUpdateEvent`.
pub(crate) fn artifact_event(
    task_id: &str,
    context_id: &str,
    artifact: Value,
    append: bool,
    last_chunk: bool,
) -> Value {
    json!({
        "kind": "artifact-update",
        "taskId": task_id,
        "contextId": context_id,
        "artifact": artifact,
        "append": append,
        "lastChunk": last_chunk,
    })
}

/// The `result` artifact: text = JSON of the result.
pub(crate) fn result_artifact(result: &Value) -> Value {
    json!({
        "artifactId": RESULT_ARTIFACT_ID,
        "name": RESULT_ARTIFACT_NAME,
        "parts": [{"kind": "text", "text": result.to_string()}],
    })
}

/// The status message of a mesh status `data` at the end of a relay or in `tasks/get`:
/// `failed` → the error; `paused` → the message and the pause metadata; otherwise
/// `data.message` when present.
pub(crate) fn status_message(data: &Value, task_id: &str, context_id: &str) -> Option<Value> {
    let status = data.get("status").and_then(Value::as_str).unwrap_or("");
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    match status {
        "failed" => {
            let error = data
                .get("error")
                .and_then(Value::as_str)
                .or(message)
                .unwrap_or("task failed");
            let details = data
                .get("error_details")
                .filter(|d| !d.is_null())
                .map(|d| json!({"error": error, "error_details": d}));
            Some(agent_message(Some(error), details, task_id, context_id))
        }
        "paused" => {
            let pm = data
                .get("pause_metadata")
                .filter(|p| !p.is_null())
                .map(|p| json!({"pause_metadata": p}));
            let text = message.unwrap_or("input required");
            Some(agent_message(Some(text), pm, task_id, context_id))
        }
        _ => message.map(|m| agent_message(Some(m), None, task_id, context_id)),
    }
}

/// Normalises an agent-supplied part list or single part into A2A parts.
fn normalise_parts(v: &Value) -> Vec<Value> {
    let one = |p: &Value| -> Option<Value> {
        match p {
            Value::String(s) => Some(json!({"kind": "text", "text": s})),
            Value::Object(o) => {
                if o.contains_key("kind") {
                    Some(p.clone())
                } else if let Some(t) = o.get("text") {
                    let text = t.as_str().map_or_else(|| t.to_string(), str::to_owned);
                    Some(json!({"kind": "text", "text": text}))
                } else if let Some(d @ Value::Object(_)) = o.get("data") {
                    Some(json!({"kind": "data", "data": d}))
                } else {
                    Some(json!({"kind": "data", "data": p}))
                }
            }
            Value::Null => None,
            other => Some(json!({"kind": "text", "text": other.to_string()})),
        }
    };
    match v {
        Value::Array(a) => a.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// Parts of an artifact or message object given by an agent: `parts`, else `text`
/// and/or `data`.
fn parts_of(o: &Map<String, Value>) -> Vec<Value> {
    if let Some(p) = o.get("parts") {
        return normalise_parts(p);
    }
    let mut parts = Vec::new();
    if let Some(t) = o.get("text") {
        parts.extend(normalise_parts(t));
    }
    if let Some(d) = o.get("data").filter(|d| !d.is_null()) {
        let data = if d.is_object() {
            d.clone()
        } else {
            json!({"value": d})
        };
        parts.push(json!({"kind": "data", "data": data}));
    }
    parts
}

fn first_str<'a>(o: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| o.get(*k).and_then(Value::as_str))
}

fn first_bool(o: &Map<String, Value>, keys: &[&str]) -> bool {
    keys.iter()
        .find_map(|k| o.get(*k).and_then(Value::as_bool))
        .unwrap_or(false)
}

/// What one FLY object becomes (§4 execution step 4).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FlyKind {
    /// An A2A artifact update built from `artifact_update`.
    Artifact(Value),
    /// A `working` status carrying this agent message.
    Status(Value),
    /// A chunk of the `fly-stream` artifact.
    Chunk,
}

/// The FLY object of a sidecar FLY event (`{"payload": obj}`), or the event as is.
pub(crate) fn fly_object(event: &Value) -> &Value {
    match event {
        Value::Object(o) if o.len() == 1 && o.contains_key("payload") => &o["payload"],
        other => other,
    }
}

/// Classifies a FLY object and builds its A2A event (artifact or status) when it has one.
pub(crate) fn classify_fly(fly: &Value, task_id: &str, context_id: &str) -> FlyKind {
    let Value::Object(o) = fly else {
        return FlyKind::Chunk;
    };
    if let Some(Value::Object(u)) = o.get("artifact_update") {
        // Either a TaskArtifactUpdateEvent-like object with `artifact`, or the
        // artifact's own fields with append/lastChunk beside them.
        let art_src = match u.get("artifact") {
            Some(Value::Object(a)) => a,
            _ => u,
        };
        let mut artifact = Map::new();
        let id = first_str(art_src, &["artifactId", "artifact_id", "id"])
            .map_or_else(|| "artifact".to_owned(), str::to_owned);
        artifact.insert("artifactId".into(), Value::String(id));
        for key in ["name", "description"] {
            if let Some(s) = art_src.get(key).and_then(Value::as_str) {
                artifact.insert(key.into(), Value::from(s));
            }
        }
        if let Some(m @ Value::Object(_)) = art_src.get("metadata") {
            artifact.insert("metadata".into(), m.clone());
        }
        artifact.insert("parts".into(), Value::Array(parts_of(art_src)));
        let append = first_bool(u, &["append"]);
        let last = first_bool(u, &["lastChunk", "last_chunk"]);
        return FlyKind::Artifact(artifact_event(
            task_id,
            context_id,
            Value::Object(artifact),
            append,
            last,
        ));
    }
    let msg_src = o
        .get("status_update")
        .map(|s| match s {
            // `{"status_update": {"message": …}}` or the message fields directly.
            Value::Object(so) => so.get("message").unwrap_or(s),
            other => other,
        })
        .or_else(|| o.get("message"));
    if let Some(m) = msg_src.filter(|m| !m.is_null()) {
        let parts = match m {
            Value::Object(mo) => parts_of(mo),
            other => normalise_parts(other),
        };
        return FlyKind::Status(agent_message_with_parts(parts, task_id, context_id));
    }
    FlyKind::Chunk
}

/// A chunk of the `fly-stream` artifact: text = JSON of the FLY object.
pub(crate) fn fly_chunk(fly: &Value, task_id: &str, context_id: &str, append: bool) -> Value {
    artifact_event(
        task_id,
        context_id,
        json!({
            "artifactId": FLY_ARTIFACT_ID,
            "name": FLY_ARTIFACT_ID,
            "parts": [{"kind": "text", "text": fly.to_string()}],
        }),
        append,
        false,
    )
}

/// The closing chunk of `fly-stream` (no parts).
pub(crate) fn fly_close(task_id: &str, context_id: &str) -> Value {
    artifact_event(
        task_id,
        context_id,
        json!({"artifactId": FLY_ARTIFACT_ID, "name": FLY_ARTIFACT_ID, "parts": []}),
        true,
        true,
    )
}

/// The A2A context id of a mesh task (its `context_id`, else the task id).
pub(crate) fn context_of(task: &Task) -> String {
    task.data
        .context_id
        .clone()
        .unwrap_or_else(|| task.id.clone())
}

/// The user message a task was created with, rebuilt from `payload.a2a.task.history`.
fn creation_message(task: &Task, context_id: &str) -> Option<Value> {
    // A2A tasks' payloads are the adapter's own (small) message; parsed here only.
    let payload = task.data.payload.as_ref()?.to_value();
    let entry = payload.get("a2a")?.get("task")?.get("history")?.get(0)?;
    let mut parts = Vec::new();
    if let Some(t) = entry.get("text").and_then(Value::as_str) {
        parts.push(json!({"kind": "text", "text": t}));
    }
    if let Some(d @ Value::Object(_)) = entry.get("data") {
        parts.push(json!({"kind": "data", "data": d}));
    }
    Some(json!({
        "kind": "message",
        "messageId": entry.get("id").and_then(Value::as_str).unwrap_or_default(),
        "role": entry.get("role").and_then(Value::as_str).unwrap_or("user"),
        "parts": parts,
        "taskId": task.id,
        "contextId": context_id,
    }))
}

/// The A2A `Task` of a stored mesh task (`tasks/get`, `tasks/list`, cancel replies).
pub(crate) fn task_object(task: &Task) -> Value {
    let context_id = context_of(task);
    let data: Value = serde_json::from_str(&task.data_json()).unwrap_or(Value::Null);
    let state = a2a_state(task.status.as_str());
    let message = status_message(&data, &task.id, &context_id);
    let mut status = Map::new();
    status.insert("state".into(), Value::from(state));
    if let Some(m) = message {
        status.insert("message".into(), m);
    }
    status.insert(
        "timestamp".into(),
        Value::String(troupe_gateway::format_ts_millis(task.updated_at)),
    );
    let mut out = Map::new();
    out.insert("kind".into(), Value::from("task"));
    out.insert("id".into(), Value::String(task.id.clone()));
    out.insert("contextId".into(), Value::String(context_id.clone()));
    out.insert("status".into(), Value::Object(status));
    if let Some(result) = task
        .data
        .result
        .as_ref()
        .filter(|_| task.status.as_str() == "succeeded")
    {
        out.insert(
            "artifacts".into(),
            json!([result_artifact(&result.to_value())]),
        );
    }
    if let Some(m) = creation_message(task, &context_id) {
        out.insert("history".into(), json!([m]));
    }
    out.insert(
        "metadata".into(),
        json!({"actor": task.data.actor, "progress": task.data.progress}),
    );
    Value::Object(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn msg(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn payload_of(m: Value) -> Value {
        let m = msg(m);
        let parts = message_parts(&m).unwrap();
        message_to_payload(&m, &parts, "t1", "c1")
    }

    #[test]
    fn single_data_part_is_copied() {
        let p = payload_of(json!({"messageId": "m1", "role": "user",
            "parts": [{"kind": "data", "data": {"x": 1, "y": [2]}}]}));
        assert_eq!(p["x"], 1);
        assert_eq!(p["y"], json!([2]));
        assert!(p.get("query").is_none());
        assert_eq!(
            p["a2a"],
            json!({"task": {"id": "t1", "context_id": "c1",
                "history": [{"id": "m1", "role": "user", "data": {"x": 1, "y": [2]}}]}})
        );
    }

    #[test]
    fn texts_join_and_data_merge() {
        let p = payload_of(json!({"messageId": "m2", "role": "user", "parts": [
            {"kind": "text", "text": "hello"},
            {"kind": "data", "data": {"a": 1, "b": 1}},
            {"kind": "text", "text": "world"},
            {"kind": "data", "data": {"b": 2}},
        ]}));
        assert_eq!(p["query"], "hello\nworld");
        assert_eq!(p["a"], 1);
        assert_eq!(p["b"], 2, "later keys win");
        let h = &p["a2a"]["task"]["history"][0];
        assert_eq!(h["text"], "hello\nworld");
        assert_eq!(h["data"], json!({"a": 1, "b": 2}));
    }

    #[test]
    fn text_only_and_empty() {
        let p = payload_of(json!({"messageId": "m", "role": "user",
            "parts": [{"kind": "text", "text": "q"}]}));
        assert_eq!(
            p.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["a2a", "query"]
        );
        assert_eq!(p["a2a"]["task"]["history"][0].get("data"), None);
        let p = payload_of(json!({"messageId": "m", "role": "user", "parts": []}));
        assert_eq!(p.as_object().unwrap().len(), 1);
        // two data parts, no text: merged, no query
        let p = payload_of(json!({"messageId": "m", "role": "user", "parts": [
            {"kind": "data", "data": {"a": 1}}, {"kind": "data", "data": {"b": 2}}]}));
        assert_eq!((p["a"].clone(), p["b"].clone()), (json!(1), json!(2)));
        assert!(p.get("query").is_none());
    }

    #[test]
    fn bad_parts() {
        let e = |v: Value| message_parts(&msg(v)).unwrap_err();
        assert!(matches!(e(json!({})), MessageError::Invalid(_)));
        assert!(matches!(
            e(json!({"parts": [{"kind": "data", "data": 3}]})),
            MessageError::Invalid(_)
        ));
        assert!(matches!(
            e(json!({"parts": [{"kind": "file", "file": {"uri": "x"}}]})),
            MessageError::Unsupported(_)
        ));
        assert!(matches!(
            e(json!({"parts": [{"kind": "video"}]})),
            MessageError::Invalid(_)
        ));
        // v0.2 `type` is accepted
        assert_eq!(
            message_parts(&msg(json!({"parts": [{"type": "text", "text": "x"}]}))).unwrap(),
            vec![PartContent::Text("x".into())]
        );
    }

    #[test]
    fn states() {
        for (m, a) in [
            ("pending", "submitted"),
            ("running", "working"),
            ("succeeded", "completed"),
            ("failed", "failed"),
            ("canceled", "canceled"),
            ("paused", "input-required"),
            ("auth_required", "auth-required"),
            ("weird", "unknown"),
        ] {
            assert_eq!(a2a_state(m), a);
        }
        assert!(ends_relay("paused") && ends_relay("auth_required") && ends_relay("failed"));
        assert!(!ends_relay("running") && !ends_relay("pending"));
    }

    #[test]
    fn fly_classification() {
        let fly = json!({"artifact_update": {"artifact_id": "a1", "name": "doc",
            "text": "hi", "append": true, "last_chunk": true}});
        let FlyKind::Artifact(ev) = classify_fly(&fly, "t", "c") else {
            panic!()
        };
        assert_eq!(ev["kind"], "artifact-update");
        assert_eq!(ev["artifact"]["artifactId"], "a1");
        assert_eq!(ev["artifact"]["name"], "doc");
        assert_eq!(
            ev["artifact"]["parts"],
            json!([{"kind": "text", "text": "hi"}])
        );
        assert_eq!(
            (ev["append"].clone(), ev["lastChunk"].clone()),
            (json!(true), json!(true))
        );

        let fly = json!({"artifact_update": {"artifact": {"artifactId": "z",
            "parts": [{"kind": "data", "data": {"k": 1}}]}, "lastChunk": true}});
        let FlyKind::Artifact(ev) = classify_fly(&fly, "t", "c") else {
            panic!()
        };
        assert_eq!(ev["artifact"]["parts"][0]["data"], json!({"k": 1}));
        assert_eq!(ev["append"], false);

        let FlyKind::Status(m) = classify_fly(&json!({"message": "thinking"}), "t", "c") else {
            panic!()
        };
        assert_eq!(m["role"], "agent");
        assert_eq!(m["parts"], json!([{"kind": "text", "text": "thinking"}]));
        let FlyKind::Status(m) = classify_fly(
            &json!({"status_update": {"message": {"text": "step 2", "data": {"n": 2}}}}),
            "t",
            "c",
        ) else {
            panic!()
        };
        assert_eq!(m["parts"][0]["text"], "step 2");
        assert_eq!(m["parts"][1]["data"], json!({"n": 2}));

        assert_eq!(
            classify_fly(&json!({"partial": true, "text": "x"}), "t", "c"),
            FlyKind::Chunk
        );
        assert_eq!(classify_fly(&json!(5), "t", "c"), FlyKind::Chunk);
        assert_eq!(fly_object(&json!({"payload": {"a": 1}})), &json!({"a": 1}));
    }

    #[test]
    fn status_messages() {
        let m = status_message(
            &json!({"status": "failed", "error": "boom", "message": "x"}),
            "t",
            "c",
        )
        .unwrap();
        assert_eq!(m["parts"][0]["text"], "boom");
        let m = status_message(
            &json!({"status": "paused", "message": "Paused", "pause_metadata": {"prompt": "ok?"}}),
            "t",
            "c",
        )
        .unwrap();
        assert_eq!(m["parts"][0]["text"], "Paused");
        assert_eq!(m["parts"][1]["data"]["pause_metadata"]["prompt"], "ok?");
        assert!(status_message(&json!({"status": "running"}), "t", "c").is_none());
    }
}
