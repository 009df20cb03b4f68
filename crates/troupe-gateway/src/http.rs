//! HTTP surface of the mesh API (gateway.md §2): thin axum handlers over [`Gateway`].

use std::collections::BTreeMap;
use std::future::Future;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use futures::FutureExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::config::DEFAULT_API_PREFIX;
use crate::gateway::{ChildOutcome, Gateway, GatewayError};
use crate::security::{require, Access, Guard, RouteGuard, SiteRules};
use crate::status::TaskStatus;
use crate::store::ListFilter;
use crate::task::{MessageView, Task};

/// A listener whose connections send small writes at once (`TCP_NODELAY`). SSE and
/// JSON replies are small back-to-back writes; with Nagle's algorithm the second one
/// waits for the client's delayed ACK, about 40 ms per event on a keep-alive connection.
pub type NoDelayListener = axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)>;

/// Wraps `listener` so every accepted connection has `TCP_NODELAY` set.
pub fn no_delay(listener: TcpListener) -> NoDelayListener {
    use axum::serve::ListenerExt;
    fn set(stream: &mut tokio::net::TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

/// Largest `limit` a list request may ask for.
const MAX_LIST_LIMIT: usize = 1000;

/// Which listener a router serves (gateway.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Client-facing routes.
    External,
    /// Sidecar callbacks.
    Internal,
    /// Both on one listener (`troupe up`).
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    Create,
    List,
    Get,
    Stream,
    Cancel,
    Resume,
    Pause,
    PostEvent,
    Children,
    Adopt,
    Legacy,
    Health,
    Ready,
}

impl Route {
    fn method(self) -> &'static str {
        match self {
            Route::List | Route::Get | Route::Stream | Route::Health | Route::Ready => "GET",
            Route::Cancel => "DELETE",
            _ => "POST",
        }
    }

    fn add(self, mr: MethodRouter<Gateway>) -> MethodRouter<Gateway> {
        match self {
            Route::Create => mr.post(create),
            Route::List => mr.get(list),
            Route::Get => mr.get(get_task),
            Route::Stream => mr.get(stream),
            Route::Cancel => mr.delete(cancel),
            Route::Resume => mr.post(resume),
            Route::Pause => mr.post(pause),
            Route::PostEvent => mr.post(post_event),
            Route::Children => mr.post(children),
            Route::Adopt => mr.post(adopt),
            Route::Legacy => mr.post(legacy_child),
            Route::Health => mr.get(health),
            Route::Ready => mr.get(ready),
        }
    }

    /// Who may call it (docs/security.md).
    fn access(self) -> Access {
        match self {
            Route::Health | Route::Ready => Access::Open,
            Route::PostEvent | Route::Children | Route::Adopt | Route::Legacy => Access::Sidecar,
            _ => Access::Client,
        }
    }
}

impl Gateway {
    /// External and internal routes on one router (one listener).
    pub fn router(&self) -> Router {
        self.router_for(Listener::Both)
    }

    /// The routes of one listener; when the prefix is not `/api/v1`, the internal
    /// routes are also served under `/api/v1` because sidecars always call it.
    pub fn router_for(&self, which: Listener) -> Router {
        let p = self.config().prefix().to_owned();
        let ext = which != Listener::Internal;
        let int = which != Listener::External;
        let mut table: BTreeMap<String, Vec<Route>> = BTreeMap::new();
        let mut add = |path: String, r: Route| {
            let routes = table.entry(path).or_default();
            if !routes.iter().any(|x| x.method() == r.method()) {
                routes.push(r);
            }
        };
        if ext {
            for path in [format!("{p}/mesh"), format!("{p}/mesh/")] {
                add(path.clone(), Route::Create);
                add(path, Route::List);
            }
            add(format!("{p}/mesh/{{id}}"), Route::Get);
            add(format!("{p}/mesh/{{id}}"), Route::Cancel);
            add(format!("{p}/mesh/{{id}}/events"), Route::Stream);
            add(format!("{p}/mesh/{{id}}/resume"), Route::Resume);
            add(format!("{p}/mesh/{{id}}/pause"), Route::Pause);
        }
        if int {
            let mut prefixes = vec![p.clone()];
            if p != DEFAULT_API_PREFIX {
                prefixes.push(DEFAULT_API_PREFIX.to_owned());
            }
            for q in prefixes {
                add(format!("{q}/mesh/{{id}}"), Route::Get);
                add(format!("{q}/mesh/{{id}}/events"), Route::PostEvent);
                add(format!("{q}/mesh/{{id}}/children"), Route::Children);
                add(format!("{q}/mesh/{{id}}/adopt"), Route::Adopt);
            }
            add("/mesh".to_owned(), Route::Legacy);
        }
        add("/health".to_owned(), Route::Health);
        add("/ready".to_owned(), Route::Ready);

        let security = &self.config().security;
        let guard = Guard::new(security, which == Listener::Internal);
        let mut router = Router::new();
        for (path, routes) in table {
            let mr = routes.into_iter().fold(MethodRouter::new(), |mr, r| {
                // The internal listener serves sidecars only (their pre-flight `GET`).
                let access = match (which, r.access()) {
                    (Listener::Internal, Access::Client) => Access::Sidecar,
                    (_, a) => a,
                };
                let gate = RouteGuard {
                    guard: guard.clone(),
                    access,
                };
                mr.merge(
                    r.add(MethodRouter::new())
                        .route_layer(axum::middleware::from_fn_with_state(gate, require)),
                )
            });
            router = router.route(&path, mr);
        }
        crate::limits::apply(
            SiteRules::json(security)
                .apply(router)
                .with_state(self.clone()),
            &self.config().limits,
        )
    }

    /// Serves [`Gateway::router`] on `listener` until `shutdown` completes.
    pub async fn serve<F>(&self, listener: TcpListener, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.serve_router(listener, self.router(), shutdown).await
    }

    /// Serves `router` (e.g. [`Gateway::router`] merged with the mesh's own routes) on
    /// `listener`; on `shutdown`, open SSE streams end so the shutdown can complete.
    pub async fn serve_router<F>(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: F,
    ) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let gw = self.clone();
        let limits = self.config().limits.clone();
        crate::limits::serve(listener, router, &limits, shutdown, move || {
            gw.close_streams();
        })
        .await
    }

    /// Binds `external_addr` (and `internal_addr`, when set) and serves until `shutdown`.
    pub async fn serve_configured<F>(&self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cfg = self.config();
        let external = TcpListener::bind(cfg.external_addr).await?;
        match cfg.internal_addr {
            None => self.serve(external, shutdown).await,
            Some(addr) => {
                let internal = TcpListener::bind(addr).await?;
                let shutdown = shutdown.shared();
                let (a, b) = tokio::join!(
                    self.serve_router(
                        external,
                        self.router_for(Listener::External),
                        shutdown.clone()
                    ),
                    self.serve_router(internal, self.router_for(Listener::Internal), shutdown),
                );
                a.and(b)
            }
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let code =
            StatusCode::from_u16(self.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code.is_server_error() {
            tracing::warn!(error = %self, "mesh API request failed");
        }
        error_response(code, &self.to_string())
    }
}

fn error_response(code: StatusCode, text: &str) -> Response {
    (code, Json(json!({ "error": text }))).into_response()
}

fn bad_request(text: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(text.into())
}

/// A request body that could not be read (too large, aborted) or parsed.
struct BodyError {
    code: StatusCode,
    text: String,
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        error_response(self.code, &self.text)
    }
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, BodyError> {
    body.map_err(|r| BodyError {
        code: r.status(),
        text: r.body_text(),
    })
}

/// A JSON body held to the event limit (child registrations carry no payload).
fn small_json_body(gw: &Gateway, body: Result<Bytes, BytesRejection>) -> Result<Value, BodyError> {
    let bytes = body_bytes(body)?;
    let limits = &gw.config().limits;
    if bytes.len() > limits.max_event_bytes {
        return Err(BodyError {
            code: StatusCode::PAYLOAD_TOO_LARGE,
            text: limits.event_too_large("child registration", bytes.len()),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| BodyError {
        code: StatusCode::BAD_REQUEST,
        text: format!("invalid JSON body: {e}"),
    })
}

#[derive(Deserialize)]
struct CreateQuery {
    actor: Option<String>,
    namespace: Option<String>,
}

async fn create(
    State(gw): State<Gateway>,
    q: Result<Query<CreateQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_request("invalid query string").into_response();
    };
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let actor = q.actor.unwrap_or_default();
    match gw.create_owned(&actor, q.namespace.as_deref(), body).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Serialize)]
struct ListView<'a> {
    messages: Vec<MessageView<'a>>,
    total: usize,
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    parent_id: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn parse_list(q: ListQuery) -> Result<ListFilter, GatewayError> {
    let num = |v: Option<String>, name: &str, default: usize| -> Result<usize, GatewayError> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| bad_request(format!("{name} must be a non-negative integer"))),
        }
    };
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            bad_request(
                "status must be one of pending, running, paused, succeeded, failed, canceled",
            )
        })?),
    };
    let limit = match num(q.limit, "limit", 100)? {
        0 => 100,
        n => n.min(MAX_LIST_LIMIT),
    };
    Ok(ListFilter {
        status,
        parent_id: q.parent_id.filter(|s| !s.is_empty()),
        limit,
        offset: num(q.offset, "offset", 0)?,
    })
}

async fn list(State(gw): State<Gateway>, q: Result<Query<ListQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else {
        return bad_request("invalid query string").into_response();
    };
    let filter = match parse_list(q) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match gw.list(&filter).await {
        Ok(page) => {
            // Serialised from the records: payloads and results are never parsed.
            let messages: Vec<_> = page.tasks.iter().map(Task::message).collect();
            Json(ListView {
                messages,
                total: page.total,
            })
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn get_task(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    match gw.get(&id).await {
        Ok(t) => Json(t.message()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stream(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    match crate::sse::open(&gw, &id).await {
        Ok(s) => {
            let mut resp = Response::new(Body::from_stream(s));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn cancel(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    match gw.cancel(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn resume(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match gw.resume(&id, &body).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pause(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    match gw.pause(&id).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn post_event(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match gw.apply_event_bytes(&id, &body).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

fn child_response(r: Result<ChildOutcome, GatewayError>, id: Option<&Value>) -> Response {
    let id = id.cloned().unwrap_or(Value::Null);
    match r {
        Ok(ChildOutcome::Created) => {
            (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
        }
        Ok(ChildOutcome::Exists) => (StatusCode::OK, Json(json!({ "id": id }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn children(
    State(gw): State<Gateway>,
    Path(parent): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match small_json_body(&gw, body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let r = gw.register_child(&parent, &body).await;
    child_response(r, body.get("id"))
}

/// `POST {p}/mesh/{id}/adopt` `{"actor", "payload"}` (Troupe, internal): x-sump records a
/// parse failure the gateway never created (see [`Gateway::adopt`]).
async fn adopt(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    #[derive(Deserialize)]
    struct AdoptBody<'a> {
        #[serde(default)]
        actor: crate::event::LenientStr,
        #[serde(borrow, default)]
        payload: Option<&'a serde_json::value::RawValue>,
    }
    let bytes = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return bad_request("adopt body must be a JSON object {\"actor\", \"payload\"}")
            .into_response();
    }
    let body: AdoptBody<'_> = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("invalid JSON body: {e}")).into_response(),
    };
    let actor = body.actor.as_deref().unwrap_or_default();
    let payload = body
        .payload
        .map_or_else(crate::raw::RawJson::null, crate::raw::RawJson::from);
    match gw.adopt(&id, actor, payload).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn legacy_child(State(gw): State<Gateway>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match small_json_body(&gw, body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let r = gw.register_child_legacy(&body).await;
    child_response(r, body.get("id"))
}

async fn health() -> Response {
    (StatusCode::OK, "ok").into_response()
}

async fn ready(State(gw): State<Gateway>) -> Response {
    match gw.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn q(status: Option<&str>, limit: Option<&str>, offset: Option<&str>) -> ListQuery {
        ListQuery {
            status: status.map(Into::into),
            parent_id: None,
            limit: limit.map(Into::into),
            offset: offset.map(Into::into),
        }
    }

    #[test]
    fn list_query_defaults_and_bounds() {
        let f = parse_list(q(None, None, None)).unwrap();
        assert_eq!((f.limit, f.offset, f.status), (100, 0, None));
        assert_eq!(parse_list(q(None, Some("5000"), None)).unwrap().limit, 1000);
        assert_eq!(parse_list(q(None, Some("7"), Some("3"))).unwrap().offset, 3);
        assert_eq!(
            parse_list(q(Some("paused"), None, None)).unwrap().status,
            Some(TaskStatus::Paused)
        );
        assert!(parse_list(q(Some("bogus"), None, None)).is_err());
        assert!(parse_list(q(None, Some("-1"), None)).is_err());
        assert!(parse_list(q(None, None, Some("x"))).is_err());
    }
}
