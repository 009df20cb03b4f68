//! Following a task over the mesh API's SSE stream (`GET /api/v1/mesh/{id}/events`).

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::Value;

/// Exit code for a paused task.
pub const EXIT_PAUSED: u8 = 3;
/// Exit code when `--timeout` passes before the task ends.
pub const EXIT_WAIT_TIMEOUT: u8 = 4;

/// Streams progress and FLY tokens to stderr until the task ends; prints the result
/// JSON on stdout (exit 0), the failure (exit 1) or the pause prompt (exit 3).
pub async fn follow(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    limit: Option<Duration>,
) -> Result<u8> {
    let fut = follow_inner(client, base, id);
    match limit {
        Some(d) => match tokio::time::timeout(d, fut).await {
            Ok(r) => r,
            Err(_) => {
                eprintln!("\ntroupe: gave up waiting for task {id} after {d:?}");
                Ok(EXIT_WAIT_TIMEOUT)
            }
        },
        None => fut.await,
    }
}

async fn follow_inner(client: &reqwest::Client, base: &str, id: &str) -> Result<u8> {
    let resp = client
        .get(format!("{base}/api/v1/mesh/{id}/events"))
        .send()
        .await
        .with_context(|| format!("cannot reach the mesh at {base}"))?;
    if !resp.status().is_success() {
        bail!("cannot follow task {id}: HTTP {}", resp.status());
    }
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut event = String::new();
    let mut data = String::new();
    let mut streaming_tokens = false;
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.context("stream interrupted")?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\n', '\r'])
                .to_owned();
            if line.is_empty() {
                if !data.is_empty() {
                    if let Some(code) = handle(&event, &data, &mut streaming_tokens)? {
                        return Ok(code);
                    }
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
    bail!("the mesh closed the event stream of task {id} before it finished")
}

fn handle(event: &str, data: &str, streaming: &mut bool) -> Result<Option<u8>> {
    let v: Value = serde_json::from_str(data).with_context(|| format!("bad event data: {data}"))?;
    let mut err = std::io::stderr();
    match event {
        "fly" => {
            let payload = v.get("payload").cloned().unwrap_or(v);
            if let Some(text) = fly_text(&payload) {
                let _ = write!(err, "{text}");
                *streaming = true;
            } else {
                let _ = writeln!(err, "fly: {payload}");
            }
            let _ = err.flush();
            Ok(None)
        }
        "status" => {
            if *streaming {
                let _ = writeln!(err);
                *streaming = false;
            }
            let status = v.get("status").and_then(Value::as_str).unwrap_or_default();
            match status {
                "succeeded" => {
                    let result = v.get("result").cloned().unwrap_or(Value::Null);
                    crate::stdout_line(&serde_json::to_string_pretty(&result)?);
                    Ok(Some(0))
                }
                "failed" | "canceled" => {
                    let details = v.get("error_details");
                    let kind = details.and_then(|d| d.get("type")).and_then(Value::as_str);
                    let message = v.get("error").and_then(Value::as_str).unwrap_or("");
                    let _ = match kind {
                        Some(kind) => writeln!(err, "task {status}: {kind}: {message}"),
                        None => writeln!(err, "task {status}: {message}"),
                    };
                    if let Some(tb) = details
                        .and_then(|d| d.get("traceback"))
                        .and_then(Value::as_str)
                    {
                        let _ = writeln!(err, "{}", tb.trim_end());
                    }
                    Ok(Some(1))
                }
                "paused" => {
                    let meta = v.get("pause_metadata").cloned().unwrap_or(Value::Null);
                    let prompt = meta
                        .get("prompt")
                        .and_then(Value::as_str)
                        .unwrap_or("Task paused");
                    let _ = writeln!(err, "paused: {prompt}");
                    if let Some(fields) = meta
                        .get("fields")
                        .and_then(Value::as_array)
                        .filter(|f| !f.is_empty())
                    {
                        let _ = writeln!(err, "fields: {}", Value::Array(fields.clone()));
                    }
                    crate::stdout_line(&serde_json::to_string(&meta)?);
                    Ok(Some(super::wait::EXIT_PAUSED))
                }
                "pending" => {
                    // News about a task still queued (its actor cannot start).
                    if let Some(msg) = v.get("message").and_then(Value::as_str) {
                        let _ = writeln!(err, "[pending] {msg}");
                    }
                    Ok(None)
                }
                _ => {
                    let actor = v.get("actor").and_then(Value::as_str).unwrap_or("");
                    let pct = v.get("progress").and_then(Value::as_f64).unwrap_or(0.0);
                    let msg = v.get("message").and_then(Value::as_str).unwrap_or(status);
                    // A `completed` event carries the output route, so its actor is
                    // the next one.
                    if msg.starts_with("Completed") && !actor.is_empty() && pct < 100.0 {
                        let _ = writeln!(err, "[{pct:5.1}%] {msg} (next: {actor})");
                    } else {
                        let _ = writeln!(err, "[{pct:5.1}%] {actor}: {msg}");
                    }
                    Ok(None)
                }
            }
        }
        _ => Ok(None),
    }
}

/// The token text of a streaming FLY payload (`{"partial": true, "text": ...}` or an
/// A2A artifact update), if it is one.
fn fly_text(p: &Value) -> Option<String> {
    if let Some(t) = p.get("text").and_then(Value::as_str) {
        return Some(t.to_owned());
    }
    let parts = p.pointer("/artifact_update/artifact/parts")?.as_array()?;
    Some(
        parts
            .iter()
            .filter_map(|x| x.get("text").and_then(Value::as_str))
            .collect(),
    )
}
