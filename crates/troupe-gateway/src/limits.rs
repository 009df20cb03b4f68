//! What one client can make a listener hold (issue 9, items 3–5): the request body
//! limit (one for every route of every listener, named in each 413), the small limit for
//! progress events and child registrations, the header-read and body-read timeouts, and
//! the connection cap. [`serve`] is the accept loop every gateway listener runs.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Setting of the largest request body (payloads, results).
pub const MAX_BODY_SETTING: &str = "TROUPE_GATEWAY_MAX_BODY_BYTES";
/// Setting of the largest progress event or child registration.
pub const MAX_EVENT_SETTING: &str = "TROUPE_GATEWAY_MAX_EVENT_BYTES";
/// Setting of the connection cap per listener.
pub const MAX_CONNECTIONS_SETTING: &str = "TROUPE_GATEWAY_MAX_CONNECTIONS";
/// Setting of the header-read timeout (seconds).
pub const HEADER_TIMEOUT_SETTING: &str = "TROUPE_GATEWAY_HEADER_TIMEOUT";
/// Setting of the body-read timeout (seconds).
pub const BODY_TIMEOUT_SETTING: &str = "TROUPE_GATEWAY_BODY_TIMEOUT";

/// Largest accepted request line plus headers; hyper answers 431 above it.
const MAX_HEADER_BYTES: usize = 64 << 10;
/// Pause after an accept error that is not the client's (e.g. out of descriptors), so
/// the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Listener and body limits (defaults: 32 MiB bodies, 64 KiB events, 1,024
/// connections, 10 s for headers, 120 s for a body).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body: what a payload or a result may take.
    pub max_body_bytes: usize,
    /// Largest progress event (without its result and error members) or child
    /// registration.
    pub max_event_bytes: usize,
    /// Connections served at once per listener; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Time a client has to send a request's headers; also how long an idle
    /// keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_event_bytes: 64 << 10,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(120),
        }
    }
}

/// A limit setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value} is not valid: {expected}")]
pub struct LimitsError {
    /// The setting.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

impl Limits {
    /// Defaults overridden by the `TROUPE_GATEWAY_*` settings `get` returns.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, LimitsError> {
        let mut l = Limits::default();
        let read = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
        let count = |name: &'static str, v: String| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(LimitsError {
                    name,
                    value: v,
                    expected: "a positive whole number",
                })
        };
        let secs = |name: &'static str, v: String| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or(LimitsError {
                    name,
                    value: v,
                    expected: "a positive number of seconds",
                })
        };
        if let Some(v) = read(MAX_BODY_SETTING) {
            l.max_body_bytes = count(MAX_BODY_SETTING, v)?;
        }
        if let Some(v) = read(MAX_EVENT_SETTING) {
            l.max_event_bytes = count(MAX_EVENT_SETTING, v)?;
        }
        if let Some(v) = read(MAX_CONNECTIONS_SETTING) {
            l.max_connections = count(MAX_CONNECTIONS_SETTING, v)?;
        }
        if let Some(v) = read(HEADER_TIMEOUT_SETTING) {
            l.header_read_timeout = secs(HEADER_TIMEOUT_SETTING, v)?;
        }
        if let Some(v) = read(BODY_TIMEOUT_SETTING) {
            l.body_read_timeout = secs(BODY_TIMEOUT_SETTING, v)?;
        }
        Ok(l)
    }

    /// The 413 text for a body of `size` bytes (when known) over the body limit.
    pub fn body_too_large(&self, size: Option<u64>) -> String {
        over_limit("request body", size, self.max_body_bytes, MAX_BODY_SETTING)
    }

    /// The 413 text for a progress event or child registration over the event limit.
    pub fn event_too_large(&self, what: &str, size: usize) -> String {
        over_limit(
            what,
            u64::try_from(size).ok(),
            self.max_event_bytes,
            MAX_EVENT_SETTING,
        )
    }
}

/// `1 MiB`, `64 KiB`, `100 bytes`.
pub fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

fn over_limit(what: &str, size: Option<u64>, limit: usize, setting: &str) -> String {
    let size = size.map_or_else(String::new, |s| format!(" of {s} bytes"));
    format!(
        "{what}{size} is over the {} limit ({limit} bytes); raise {setting} to accept more",
        human_bytes(limit)
    )
}

fn error_json(code: StatusCode, text: String) -> Response {
    (code, Json(serde_json::json!({ "error": text }))).into_response()
}

/// Holds every route of a listener to one body limit and one 413 text, whatever
/// extractor its handler uses, without reading the body here: handlers (behind their
/// auth checks) still read it. A declared `Content-Length` over the limit is answered at
/// once, after the body is read and dropped (at most [`DRAIN_FACTOR`] times the limit,
/// within the body-read timeout) so a client still writing reads the 413 rather than a
/// broken pipe. Otherwise the body is wrapped so reading stops at the limit or the
/// body-read timeout, and the handler's answer is replaced by the named 413 or a 408.
async fn limit_body(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let max = limits.max_body_bytes;
    if declared.is_some_and(|d| d > u64::try_from(max).unwrap_or(u64::MAX)) {
        let (_, body) = req.into_parts();
        let budget = max.saturating_mul(DRAIN_FACTOR);
        let _ = tokio::time::timeout(limits.body_read_timeout, drain(body, budget)).await;
        return too_large(&limits, declared);
    }
    let tripped = Arc::new(std::sync::Mutex::new(None));
    let req = req.map(|body| {
        Body::new(Guarded {
            inner: body,
            left: max,
            deadline: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
            tripped: tripped.clone(),
        })
    });
    let resp = next.run(req).await;
    let why = tripped.lock().map(|t| *t).unwrap_or(None);
    match why {
        Some(Trip::TooLarge) => too_large(&limits, None),
        Some(Trip::Timeout) => error_json(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {:?}; raise {BODY_TIMEOUT_SETTING} for slow clients",
                limits.body_read_timeout
            ),
        ),
        None => resp,
    }
}

fn too_large(limits: &Limits, size: Option<u64>) -> Response {
    let mut resp = error_json(StatusCode::PAYLOAD_TOO_LARGE, limits.body_too_large(size));
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// Bytes past the limit read and dropped before answering 413, as a multiple of the limit.
const DRAIN_FACTOR: usize = 4;

async fn drain(body: Body, budget: usize) {
    use futures::StreamExt;
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        seen = seen.saturating_add(chunk.len());
        if seen > budget {
            return;
        }
    }
}

/// Why a [`Guarded`] body stopped.
#[derive(Debug, Clone, Copy)]
enum Trip {
    TooLarge,
    Timeout,
}

/// A request body that errors past `left` bytes or after its deadline, and records why.
struct Guarded {
    inner: Body,
    left: usize,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    tripped: Arc<std::sync::Mutex<Option<Trip>>>,
}

impl Guarded {
    fn trip(&self, why: Trip) -> axum::Error {
        if let Ok(mut t) = self.tripped.lock() {
            *t = Some(why);
        }
        axum::Error::new(match why {
            Trip::TooLarge => "request body over the limit",
            Trip::Timeout => "request body read timed out",
        })
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > this.left {
                        return Poll::Ready(Some(Err(this.trip(Trip::TooLarge))));
                    }
                    this.left -= data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.trip(Trip::Timeout))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `router` with the body limit, its 413 text and the body-read timeout on every route.
pub fn apply(router: Router, limits: &Limits) -> Router {
    let shared = Arc::new(limits.clone());
    router
        .layer(middleware::from_fn_with_state(shared, limit_body))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
}

/// Serves `router` on `listener` until `shutdown` completes, with [`apply`]'s body rules,
/// the header-read timeout (which also ends idle keep-alive connections), a header size
/// cap, `TCP_NODELAY`, and at most `max_connections` connections at once: past the cap
/// the loop stops accepting, so further clients wait in the kernel's accept queue
/// until a slot frees. On shutdown, connections finish their current request; `on_stop`
/// runs first so long-lived streams can end.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: F,
    on_stop: impl FnOnce() + Send,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let app = apply(router, limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "accept failed; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let res = tokio::select! {
                r = conn.as_mut() => r,
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        while conns.try_join_next().is_some() {}
    }
    on_stop();
    stop_tx.send_replace(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A closed sender also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

/// Errors that concern one client's connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_texts() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(Limits::from_env(env(&[])).unwrap(), Limits::default());
        let l = Limits::from_env(env(&[
            (MAX_BODY_SETTING, "1048576"),
            (HEADER_TIMEOUT_SETTING, "0.5"),
            (MAX_CONNECTIONS_SETTING, "7"),
        ]))
        .unwrap();
        assert_eq!(l.max_body_bytes, 1 << 20);
        assert_eq!(l.header_read_timeout, Duration::from_millis(500));
        assert_eq!(l.max_connections, 7);
        for bad in [
            &[(MAX_BODY_SETTING, "lots")][..],
            &[(MAX_CONNECTIONS_SETTING, "0")],
            &[(BODY_TIMEOUT_SETTING, "-1")],
        ] {
            let e = Limits::from_env(env(bad)).unwrap_err();
            assert!(e.to_string().contains(bad[0].0), "{e}");
        }
        let text = Limits::default().body_too_large(Some(40 << 20));
        assert!(
            text.contains("32 MiB") && text.contains(MAX_BODY_SETTING),
            "{text}"
        );
        assert_eq!(human_bytes(65536), "64 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
