//! `tools/call` over the mesh API (gateway.md §3 steps 2–7): create the task, relay its
//! events as notifications, map its final state to a tool result.

use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;
use troupe_gateway::{Gateway, NewTask, TaskEvent};

use crate::registry::Tool;
use crate::rpc::Notifier;

/// Period of the fallback poll when the live subscription is lost (§3 step 7).
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Level of FLY log notifications.
const FLY_LEVEL: &str = "info";

/// A `CallToolResult` with one text item.
pub(crate) fn text_result(text: impl Into<String>, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": is_error})
}

/// Runs `tool` with `args`; never fails: every problem is a tool result with `isError`.
pub(crate) async fn call_tool(
    gw: &Gateway,
    tool: &Tool,
    args: Map<String, Value>,
    progress_token: Option<Value>,
    out: &Notifier,
) -> Value {
    let missing: Vec<&str> = tool.required().filter(|k| !args.contains_key(*k)).collect();
    if !missing.is_empty() {
        return text_result(
            format!(
                "missing required argument{}: {}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            ),
            true,
        );
    }
    let timeout = tool.timeout_secs();
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let id = match gw
        .create_task(NewTask {
            actor: tool.actor.clone(),
            payload: Value::Object(args).into(),
            timeout: Some(timeout),
            ..Default::default()
        })
        .await
    {
        Ok(id) => id,
        Err(e) => return text_result(format!("could not start actor '{}': {e}", tool.actor), true),
    };
    let progress_token = progress_token.filter(|_| tool.progress);
    let outcome = tokio::time::timeout_at(
        deadline,
        follow_until_final(gw, tool, &id, progress_token, out),
    )
    .await;
    match outcome {
        Ok(data) => final_result(&id, &data),
        Err(_) => text_result("timeout: no result received", true),
    }
}

/// Relays events of task `id` until a terminal or interrupted status, which it returns.
async fn follow_until_final(
    gw: &Gateway,
    tool: &Tool,
    id: &str,
    progress_token: Option<Value>,
    out: &Notifier,
) -> Value {
    let mut last_progress: Option<f64> = None;
    if let Ok(mut events) = gw.follow(id).await {
        while let Some(ev) = events.next().await {
            match ev {
                TaskEvent::Status(data) => {
                    if is_final(&data) {
                        return data;
                    }
                    if let Some(token) = &progress_token {
                        let p = data.get("progress").and_then(Value::as_f64).unwrap_or(0.0);
                        // MCP requires progress to increase from one notification to the next.
                        if last_progress.is_none_or(|l| p > l) {
                            last_progress = Some(p);
                            out.send(progress_notification(token, p, &data)).await;
                        }
                    }
                }
                TaskEvent::Fly(obj) => out.log(FLY_LEVEL, &tool.name, fly_object(obj)).await,
            }
        }
        tracing::debug!(task = %id, "MCP: task subscription dropped; polling");
    }
    poll_until_final(gw, id).await
}

/// The §3 step 7 fallback: reads the task every 500 ms until it is final.
pub(crate) async fn poll_until_final(gw: &Gateway, id: &str) -> Value {
    loop {
        if let Ok(task) = gw.get(id).await {
            let data = serde_json::from_str::<Value>(&task.data_json()).unwrap_or(Value::Null);
            if is_final(&data) {
                return data;
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The object the handler FLY'd: sidecars post it wrapped as `{"payload": obj}`.
fn fly_object(event: Value) -> Value {
    match event {
        Value::Object(mut m) if m.contains_key("payload") => {
            m.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    }
}

fn status_of(data: &Value) -> &str {
    data.get("status").and_then(Value::as_str).unwrap_or("")
}

/// Terminal, or interrupted waiting for the client (`paused`, `auth_required`).
fn is_final(data: &Value) -> bool {
    matches!(
        status_of(data),
        "succeeded" | "failed" | "canceled" | "paused" | "auth_required"
    )
}

fn progress_notification(token: &Value, progress: f64, data: &Value) -> Value {
    let mut params = Map::new();
    params.insert("progressToken".into(), token.clone());
    params.insert("progress".into(), json!(progress));
    params.insert("total".into(), json!(100));
    if let Some(m) = data
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    {
        params.insert("message".into(), Value::String(m.to_owned()));
    }
    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
}

fn str_field<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// §3 step 6: a final status as a tool result.
pub(crate) fn final_result(id: &str, data: &Value) -> Value {
    match status_of(data) {
        "succeeded" => {
            let text = match data.get("result") {
                Some(r) if !r.is_null() => r.to_string(),
                _ => str_field(data, "message").unwrap_or("completed").to_owned(),
            };
            text_result(text, false)
        }
        "failed" => text_result(
            str_field(data, "error")
                .or_else(|| str_field(data, "message"))
                .unwrap_or("task failed"),
            true,
        ),
        "canceled" => text_result("task was canceled", true),
        st => {
            // paused / auth_required: the client needs the id to resume.
            let body = json!({
                "status": st,
                "message": data.get("message").cloned().unwrap_or(Value::Null),
                "id": id,
                "pause_metadata": data.get("pause_metadata").cloned().unwrap_or(Value::Null),
            });
            text_result(body.to_string(), false)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn text(v: &Value) -> (&str, bool) {
        (
            v["content"][0]["text"].as_str().unwrap(),
            v["isError"].as_bool().unwrap(),
        )
    }

    #[test]
    fn mapping() {
        let r = final_result("t", &json!({"status": "succeeded", "result": {"a": 1}}));
        assert_eq!(text(&r), ("{\"a\":1}", false));
        let r = final_result("t", &json!({"status": "succeeded", "result": "hi"}));
        assert_eq!(text(&r), ("\"hi\"", false));
        let r = final_result("t", &json!({"status": "succeeded", "message": "done"}));
        assert_eq!(text(&r), ("done", false));
        let r = final_result("t", &json!({"status": "succeeded"}));
        assert_eq!(text(&r), ("completed", false));
        let r = final_result(
            "t",
            &json!({"status": "failed", "error": "boom", "message": "m"}),
        );
        assert_eq!(text(&r), ("boom", true));
        let r = final_result("t", &json!({"status": "failed", "message": "m"}));
        assert_eq!(text(&r), ("m", true));
        let r = final_result("t", &json!({"status": "canceled"}));
        assert_eq!(text(&r), ("task was canceled", true));
        let r = final_result(
            "t",
            &json!({"status": "paused", "message": "wait", "pause_metadata": {"prompt": "ok?"}}),
        );
        let (t, err) = text(&r);
        assert!(!err);
        let v: Value = serde_json::from_str(t).unwrap();
        assert_eq!(
            v,
            json!({"status": "paused", "message": "wait", "id": "t", "pause_metadata": {"prompt": "ok?"}})
        );
    }

    #[test]
    fn fly_unwraps_payload() {
        assert_eq!(fly_object(json!({"payload": {"t": 1}})), json!({"t": 1}));
        assert_eq!(fly_object(json!({"t": 1})), json!({"t": 1}));
    }

    #[test]
    fn progress_params() {
        let n = progress_notification(
            &json!("tok"),
            33.3,
            &json!({"status": "running", "message": "x"}),
        );
        assert_eq!(
            n,
            json!({"jsonrpc": "2.0", "method": "notifications/progress",
                   "params": {"progressToken": "tok", "progress": 33.3, "total": 100, "message": "x"}})
        );
        let n = progress_notification(&json!(7), 0.0, &json!({"status": "pending"}));
        assert!(n["params"].get("message").is_none());
    }
}
