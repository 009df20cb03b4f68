//! The HTTP transports: MCP Streamable HTTP on `/mcp` and the legacy HTTP+SSE transport
//! on `/mcp/sse` + `/mcp/message`, behind the bearer-key and Origin checks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::future::join_all;
use futures::Stream;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use crate::rpc::{
    allows_batches, error, handle_request, Incoming, Notifier, INVALID_REQUEST, PARSE_ERROR,
    SUPPORTED_VERSIONS,
};
use crate::session::{Session, PUSH_BUFFER};
use crate::Inner;
use troupe_gateway::security::SiteRules;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const KEEPALIVE: &[u8] = b": keepalive\n\n";
/// Notifications buffered per tool-call stream.
const CALL_BUFFER: usize = 64;

/// The adapter's routes.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let limit = inner.gateway.config().limits.max_body_bytes;
    let site = SiteRules::json(&inner.gateway.config().security);
    let router = Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .route("/mcp/sse", get(legacy_sse))
        .route("/mcp/message", post(legacy_message))
        // route_layer: the host's own routes and 404s stay outside the key check.
        .route_layer(middleware::from_fn_with_state(inner.clone(), guard))
        .route_layer(DefaultBodyLimit::max(limit))
        .with_state(inner);
    // Without a key too: a web page must not reach the tools (MCP's DNS-rebinding rule).
    site.apply(router)
}

// ---------- auth ----------

/// The client auth (shared with the mesh API and A2A); `Origin`, `Host` and the JSON
/// content type are checked by the gateway's [`SiteRules`] around these routes.
async fn guard(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    if let Err(reason) = inner.auth.authenticate(req.headers()).await {
        tracing::debug!(reason = %reason, "MCP request rejected");
        let mut r = rpc_error_response(
            StatusCode::UNAUTHORIZED,
            Value::Null,
            -32001,
            "unauthorized: send Authorization: Bearer <key>",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"asya-gateway\""),
        );
        return r;
    }
    next.run(req).await
}

// ---------- responses ----------

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn rpc_error_response(status: StatusCode, id: Value, code: i64, msg: &str) -> Response {
    json_response(status, &error(id, code, msg))
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Removes a legacy session when its SSE stream goes away.
struct DropSession {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for DropSession {
    fn drop(&mut self) {
        self.inner.sessions.remove(&self.id);
    }
}

struct SseState {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Value>,
    keepalive: Interval,
    closing: watch::Receiver<bool>,
    _guard: Option<DropSession>,
}

/// An SSE stream of JSON-RPC messages from `rx`, with keepalive comments; it ends when
/// every sender is gone or the adapter shuts down.
fn sse_response(
    inner: &Inner,
    first: Option<Bytes>,
    rx: mpsc::Receiver<Value>,
    guard: Option<DropSession>,
    session_id: Option<&str>,
) -> Response {
    let period = inner
        .gateway
        .config()
        .keepalive_interval
        .max(Duration::from_millis(1));
    let mut keepalive = interval_at(Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = SseState {
        first,
        rx,
        keepalive,
        closing: inner.closing.subscribe(),
        _guard: guard,
    };
    let body = Body::from_stream(sse_stream(state));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(id) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(SESSION_HEADER, id);
    }
    r
}

fn sse_stream(state: SseState) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    futures::stream::unfold(state, |mut st| async move {
        if let Some(first) = st.first.take() {
            return Some((Ok(first), st));
        }
        if *st.closing.borrow_and_update() {
            return None;
        }
        tokio::select! {
            msg = st.rx.recv() => {
                let msg = msg?;
                Some((Ok(frame("message", &msg.to_string())), st))
            }
            _ = st.keepalive.tick() => Some((Ok(Bytes::from_static(KEEPALIVE)), st)),
            _ = st.closing.changed() => None,
        }
    })
}

// ---------- request headers ----------

#[derive(Debug, Clone, Copy)]
struct Accepts {
    json: bool,
    sse: bool,
}

fn accepts(headers: &HeaderMap) -> Accepts {
    let Some(v) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        // No Accept header: the client takes anything; JSON is the plain choice.
        return Accepts {
            json: true,
            sse: false,
        };
    };
    let has = |t: &str| {
        v.split(',')
            .map(|p| p.split(';').next().unwrap_or("").trim())
            .any(|p| p.eq_ignore_ascii_case(t))
    };
    let any = has("*/*");
    Accepts {
        json: any || has("application/json") || has("application/*"),
        sse: has("text/event-stream"),
    }
}

/// Why a request names no usable session.
#[derive(Debug, Clone, Copy)]
enum Refused {
    BadVersion,
    NoSession,
    UnknownSession,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::BadVersion => rpc_error_response(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                &format!(
                    "Bad Request: unsupported MCP-Protocol-Version; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ),
            Refused::NoSession => rpc_error_response(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required (send initialize first)",
            ),
            Refused::UnknownSession => rpc_error_response(
                StatusCode::NOT_FOUND,
                Value::Null,
                INVALID_REQUEST,
                "Session not found: initialize a new session",
            ),
        }
    }
}

/// The session named by `Mcp-Session-Id`.
fn session_of(inner: &Inner, headers: &HeaderMap) -> Result<Arc<Session>, Refused> {
    if let Some(v) = headers.get(VERSION_HEADER) {
        if !v.to_str().is_ok_and(|v| SUPPORTED_VERSIONS.contains(&v)) {
            return Err(Refused::BadVersion);
        }
    }
    let id = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(Refused::NoSession)?;
    match inner.sessions.get(id) {
        Some(s) if !s.legacy => Ok(s),
        _ => Err(Refused::UnknownSession),
    }
}

// ---------- Streamable HTTP ----------

async fn post_mcp(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let acc = accepts(&headers);
    if !acc.json && !acc.sse {
        return rpc_error_response(
            StatusCode::NOT_ACCEPTABLE,
            Value::Null,
            INVALID_REQUEST,
            "Not Acceptable: accept application/json and text/event-stream",
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error_response(
                StatusCode::BAD_REQUEST,
                Value::Null,
                PARSE_ERROR,
                &format!("Parse error: {e}"),
            )
        }
    };
    match value {
        Value::Array(items) => post_batch(inner, &headers, acc, items).await,
        single => post_single(inner, &headers, acc, &single).await,
    }
}

async fn post_single(inner: Arc<Inner>, headers: &HeaderMap, acc: Accepts, v: &Value) -> Response {
    let msg = Incoming::parse(v);
    if let Incoming::Request { id, method, params } = &msg {
        if method == "initialize" {
            return initialize(&inner, id.clone(), params.clone()).await;
        }
    }
    let session = match session_of(&inner, headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match msg {
        Incoming::Invalid { id, message } => {
            rpc_error_response(StatusCode::BAD_REQUEST, id, INVALID_REQUEST, &message)
        }
        Incoming::Notification { .. } | Incoming::Response => accepted(),
        Incoming::Request { id, method, params } => {
            if method == "tools/call" && acc.sse {
                let (tx, rx) = mpsc::channel(CALL_BUFFER);
                let job = inner.clone();
                tokio::spawn(async move {
                    let out = Notifier::new(Some(tx.clone()), session.clone());
                    let work = async {
                        let resp = handle_request(&job, &session, id, &method, params, &out).await;
                        let _ = tx.send(resp).await;
                    };
                    // A client that went away no longer needs the result.
                    tokio::select! {
                        _ = work => {}
                        _ = tx.closed() => {}
                    }
                });
                sse_response(&inner, None, rx, None, None)
            } else {
                let out = Notifier::new(None, session.clone());
                let resp = handle_request(&inner, &session, id, &method, params, &out).await;
                json_response(StatusCode::OK, &resp)
            }
        }
    }
}

async fn initialize(inner: &Arc<Inner>, id: Value, params: Value) -> Response {
    let session = inner.sessions.create(false);
    let out = Notifier::new(None, session.clone());
    let resp = handle_request(inner, &session, id, "initialize", params, &out).await;
    if resp.get("error").is_some() {
        inner.sessions.remove(&session.id);
        return json_response(StatusCode::OK, &resp);
    }
    let mut r = json_response(StatusCode::OK, &resp);
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
    r
}

async fn post_batch(
    inner: Arc<Inner>,
    headers: &HeaderMap,
    acc: Accepts,
    items: Vec<Value>,
) -> Response {
    if items.is_empty() {
        return rpc_error_response(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: empty batch",
        );
    }
    let session = match session_of(&inner, headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let version = session.version();
    if !allows_batches(&version) {
        return rpc_error_response(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            &format!(
                "Invalid Request: JSON-RPC batches are not part of protocol version {version} \
                 (only 2024-11-05 and 2025-03-26 have them)"
            ),
        );
    }
    let mut early = Vec::new();
    let mut requests = Vec::new();
    for item in &items {
        match Incoming::parse(item) {
            Incoming::Invalid { id, message } => early.push(error(id, INVALID_REQUEST, message)),
            Incoming::Request { id, method, .. } if method == "initialize" => early.push(error(
                id,
                INVALID_REQUEST,
                "initialize must not be part of a batch",
            )),
            Incoming::Request { id, method, params } => requests.push((id, method, params)),
            Incoming::Notification { .. } | Incoming::Response => {}
        }
    }
    if early.is_empty() && requests.is_empty() {
        return accepted();
    }
    let streams = acc.sse && requests.iter().any(|(_, m, _)| m == "tools/call");
    if streams {
        let (tx, rx) = mpsc::channel(CALL_BUFFER);
        let job = inner.clone();
        tokio::spawn(async move {
            for e in early {
                let _ = tx.send(e).await;
            }
            let out = Notifier::new(Some(tx.clone()), session.clone());
            let work = join_all(requests.into_iter().map(|(id, method, params)| {
                let (job, session, out, tx) = (&job, &session, &out, &tx);
                async move {
                    let resp = handle_request(job, session, id, &method, params, out).await;
                    let _ = tx.send(resp).await;
                }
            }));
            tokio::select! {
                _ = work => {}
                _ = tx.closed() => {}
            }
        });
        return sse_response(&inner, None, rx, None, None);
    }
    let out = Notifier::new(None, session.clone());
    let answers = join_all(requests.into_iter().map(|(id, method, params)| {
        let (inner, session, out) = (&inner, &session, &out);
        async move { handle_request(inner, session, id, &method, params, out).await }
    }))
    .await;
    early.extend(answers);
    json_response(StatusCode::OK, &Value::Array(early))
}

/// `GET /mcp`: the session's stream of server-initiated messages
/// (`notifications/tools/list_changed`).
async fn get_mcp(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if headers.contains_key(header::ACCEPT) && !accepts(&headers).sse {
        return rpc_error_response(
            StatusCode::NOT_ACCEPTABLE,
            Value::Null,
            INVALID_REQUEST,
            "Not Acceptable: GET /mcp serves text/event-stream",
        );
    }
    let session = match session_of(&inner, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let (tx, rx) = mpsc::channel(PUSH_BUFFER);
    session.set_push(tx);
    sse_response(&inner, None, rx, None, Some(&session.id))
}

async fn delete_mcp(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    match session_of(&inner, &headers) {
        Ok(s) => {
            inner.sessions.remove(&s.id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r.into_response(),
    }
}

// ---------- legacy HTTP+SSE (2024-11-05) ----------

async fn legacy_sse(State(inner): State<Arc<Inner>>) -> Response {
    let session = inner.sessions.create(true);
    let (tx, rx) = mpsc::channel(PUSH_BUFFER);
    session.set_push(tx);
    let endpoint = format!("/mcp/message?sessionId={}", session.id);
    let guard = DropSession {
        inner: inner.clone(),
        id: session.id.clone(),
    };
    sse_response(
        &inner,
        Some(frame("endpoint", &endpoint)),
        rx,
        Some(guard),
        None,
    )
}

async fn legacy_message(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(id) = q.get("sessionId").or_else(|| q.get("session_id")) else {
        return rpc_error_response(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            "Bad Request: sessionId query parameter is required",
        );
    };
    let session = match inner.sessions.get(id) {
        Some(s) if s.legacy => s,
        _ => {
            return rpc_error_response(
                StatusCode::NOT_FOUND,
                Value::Null,
                INVALID_REQUEST,
                "Session not found: open GET /mcp/sse again",
            )
        }
    };
    let Some(push) = session.push() else {
        return rpc_error_response(
            StatusCode::NOT_FOUND,
            Value::Null,
            INVALID_REQUEST,
            "Session stream is closed: open GET /mcp/sse again",
        );
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error_response(
                StatusCode::BAD_REQUEST,
                Value::Null,
                PARSE_ERROR,
                &format!("Parse error: {e}"),
            )
        }
    };
    let items = match value {
        Value::Array(items) if allows_batches(&session.version()) && !items.is_empty() => items,
        Value::Array(_) => {
            return rpc_error_response(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: batches are not accepted here",
            )
        }
        single => vec![single],
    };
    for item in items {
        let msg = Incoming::parse(&item);
        let (inner, session, push) = (inner.clone(), session.clone(), push.clone());
        // Answer 202 at once: the response travels on the SSE stream.
        tokio::spawn(async move {
            let work = async {
                let resp = match msg {
                    Incoming::Invalid { id, message } => error(id, INVALID_REQUEST, message),
                    Incoming::Notification { .. } | Incoming::Response => return,
                    Incoming::Request { id, method, params } => {
                        let out = Notifier::new(Some(push.clone()), session.clone());
                        handle_request(&inner, &session, id, &method, params, &out).await
                    }
                };
                let _ = push.send(resp).await;
            };
            // The session's stream is gone: nobody is left to read the answer.
            tokio::select! {
                _ = work => {}
                _ = push.closed() => {}
            }
        });
    }
    accepted()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn h(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn accept_header() {
        let a = accepts(&h(&[(
            header::ACCEPT,
            "application/json, text/event-stream",
        )]));
        assert!(a.json && a.sse);
        let a = accepts(&h(&[(header::ACCEPT, "application/json;q=0.9")]));
        assert!(a.json && !a.sse);
        let a = accepts(&h(&[(header::ACCEPT, "text/html")]));
        assert!(!a.json && !a.sse);
        let a = accepts(&h(&[]));
        assert!(a.json && !a.sse);
    }
}
