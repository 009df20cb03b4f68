//! JSON-RPC 2.0 messages and the MCP methods the adapter serves, independent of the
//! transport that carried them.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::call::call_tool;
use crate::session::{log_level_index, Session, LOG_LEVELS};
use crate::Inner;

/// Protocol versions served through the `initialize` handshake, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The version offered when the client's is not supported.
pub const LATEST_VERSION: &str = "2025-11-25";
/// Server name in `initialize`.
pub const SERVER_NAME: &str = "asya-mcp-adapter";

pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;

/// Versions whose JSON-RPC batches are accepted: 2025-06-18 removed batching.
pub(crate) fn allows_batches(version: &str) -> bool {
    matches!(version, "2024-11-05" | "2025-03-26")
}

/// One parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    /// A request: it gets exactly one response.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A notification (no `id`).
    Notification { method: String },
    /// A response to a server request (the adapter sends none; accepted and dropped).
    Response,
    /// Not a valid message; answered with this error (`id` when one could be read).
    Invalid { id: Value, message: String },
}

impl Incoming {
    /// Classifies one JSON value.
    pub fn parse(v: &Value) -> Incoming {
        let Some(obj) = v.as_object() else {
            return invalid(Value::Null, "a JSON-RPC message must be an object");
        };
        let id = obj.get("id").cloned();
        let id_ok = matches!(&id, Some(Value::String(_)) | Some(Value::Number(_)));
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid(
                id.filter(|_| id_ok).unwrap_or(Value::Null),
                "\"jsonrpc\" must be \"2.0\"",
            );
        }
        match obj.get("method") {
            Some(Value::String(m)) => match id {
                None => Incoming::Notification { method: m.clone() },
                Some(id) if id_ok => Incoming::Request {
                    id,
                    method: m.clone(),
                    params: obj.get("params").cloned().unwrap_or(Value::Null),
                },
                Some(_) => invalid(Value::Null, "\"id\" must be a string or a number"),
            },
            Some(_) => invalid(
                id.filter(|_| id_ok).unwrap_or(Value::Null),
                "\"method\" must be a string",
            ),
            None if obj.contains_key("result") || obj.contains_key("error") => Incoming::Response,
            None => invalid(
                id.filter(|_| id_ok).unwrap_or(Value::Null),
                "\"method\" is required",
            ),
        }
    }
}

fn invalid(id: Value, message: &str) -> Incoming {
    Incoming::Invalid {
        id,
        message: message.to_owned(),
    }
}

/// A success response.
pub(crate) fn response(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub(crate) fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// Where notifications that belong to one request go: its SSE stream, the legacy
/// session stream, or nowhere (a plain JSON response carries only the result).
pub(crate) struct Notifier {
    tx: Option<mpsc::Sender<Value>>,
    session: Arc<Session>,
}

impl Notifier {
    /// A notifier writing to `tx` for `session`.
    pub fn new(tx: Option<mpsc::Sender<Value>>, session: Arc<Session>) -> Self {
        Notifier { tx, session }
    }

    /// Sends a notification; a gone client loses it.
    pub async fn send(&self, msg: Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg).await;
        }
    }

    /// `notifications/message`, if the session wants `level`.
    pub async fn log(&self, level: &str, logger: &str, data: Value) {
        if log_level_index(level).is_some_and(|l| self.session.logs(l)) {
            self.send(json!({"jsonrpc": "2.0", "method": "notifications/message",
                             "params": {"level": level, "logger": logger, "data": data}}))
                .await;
        }
    }
}

/// Answers one request. `initialize` records the negotiated version on `session`.
pub(crate) async fn handle_request(
    inner: &Inner,
    session: &Arc<Session>,
    id: Value,
    method: &str,
    params: Value,
    out: &Notifier,
) -> Value {
    let params = match params {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        _ => return error(id, INVALID_PARAMS, "\"params\" must be an object"),
    };
    match method {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = if SUPPORTED_VERSIONS.contains(&asked) {
                asked
            } else {
                LATEST_VERSION
            };
            session.set_version(version);
            response(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": true}, "logging": {}},
                    "serverInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")},
                }),
            )
        }
        "ping" => response(id, json!({})),
        "tools/list" => {
            let set = inner.registry.snapshot();
            let tools: Vec<Value> = set.tools().iter().map(|t| t.to_listing()).collect();
            response(id, json!({"tools": tools}))
        }
        "tools/call" => {
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return error(id, INVALID_PARAMS, "tools/call needs a string \"name\"");
            };
            let set = inner.registry.snapshot();
            let Some(tool) = set.get(name) else {
                return error(id, INVALID_PARAMS, format!("Unknown tool: {name}"));
            };
            let args = match params.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => return error(id, INVALID_PARAMS, "\"arguments\" must be an object"),
            };
            let token = params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .filter(|t| t.is_string() || t.is_number())
                .cloned();
            let result = call_tool(&inner.gateway, tool, args, token, out).await;
            response(id, result)
        }
        "logging/setLevel" => {
            let level = params.get("level").and_then(Value::as_str).unwrap_or("");
            match log_level_index(level) {
                Some(l) => {
                    session.set_min_log(l);
                    response(id, json!({}))
                }
                None => error(
                    id,
                    INVALID_PARAMS,
                    format!(
                        "unknown log level {level:?}: one of {}",
                        LOG_LEVELS.join(", ")
                    ),
                ),
            }
        }
        other => error(id, METHOD_NOT_FOUND, format!("Method not found: {other}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert_eq!(
            Incoming::parse(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
            Incoming::Request {
                id: json!(1),
                method: "ping".into(),
                params: Value::Null
            }
        );
        assert_eq!(
            Incoming::parse(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            Incoming::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            Incoming::parse(&json!({"jsonrpc": "2.0", "id": "a", "result": {}})),
            Incoming::Response
        );
        for bad in [
            json!([]),
            json!({"id": 1, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 3}),
            json!({"jsonrpc": "2.0", "id": 1}),
        ] {
            assert!(
                matches!(Incoming::parse(&bad), Incoming::Invalid { .. }),
                "{bad}"
            );
        }
        let Incoming::Invalid { id, .. } = Incoming::parse(&json!({"jsonrpc": "1.0", "id": 9}))
        else {
            panic!()
        };
        assert_eq!(id, json!(9));
    }

    #[test]
    fn batches_by_version() {
        assert!(allows_batches("2025-03-26"));
        assert!(!allows_batches("2025-06-18"));
        assert!(!allows_batches("2025-11-25"));
    }
}
