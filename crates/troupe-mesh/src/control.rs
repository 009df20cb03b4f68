//! Troupe-specific routes on the mesh API listener: `troupe status` and `troupe result`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use troupe_engine::metrics::ActorStats;
use troupe_engine::Engine;
use troupe_gateway::security::{require, Access, Guard, RouteGuard, SiteRules};
use troupe_gateway::Gateway;

use crate::pool::ActorPool;

/// Shared state of the control routes.
#[derive(Clone)]
pub struct ControlState {
    /// User actor pools.
    pub pools: Vec<Arc<ActorPool>>,
    /// Crew engines.
    pub crew: Vec<Arc<Engine>>,
    /// The mesh's state dir (results live under it).
    pub state_dir: PathBuf,
    /// The mesh API, for creates with a route.
    pub gateway: Gateway,
    /// The queues, for raw publishes.
    pub transport: Arc<dyn troupe_transport::Transport>,
    /// The mesh's flows and how each router runs (`troupe status`).
    pub flows: serde_json::Value,
}

/// One row of `troupe status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ActorView {
    /// Actor name.
    pub actor: String,
    /// Crew actor (native, no runtime).
    pub crew: bool,
    /// Receivable messages.
    pub ready: u64,
    /// Delayed (retry) messages.
    pub delayed: u64,
    /// Messages being processed.
    pub in_flight: u64,
    /// Messages received from the queue and not acknowledged yet, by any consumer, as
    /// the transport counts them (Redis `XPENDING`, JetStream's delivered-unacked, the
    /// embedded queue's leases; RabbitMQ only this mesh's own): more than `in_flight`
    /// when a dead consumer's messages wait for their visibility window.
    #[serde(default)]
    pub unacked: u64,
    /// Replicas with a live runtime.
    pub replicas_running: usize,
    /// Replicas asked for by the autoscaler.
    pub replicas_desired: usize,
    /// Messages processed without failure.
    pub succeeded: u64,
    /// Messages that failed here.
    pub failed: u64,
    /// Retries scheduled here.
    pub retried: u64,
    /// Runtime restarts (start failures, crashes, timeouts).
    #[serde(default)]
    pub restarts: u64,
    /// Last error seen here.
    pub last_error: Option<String>,
}

async fn view(engine: &Engine, crew: bool, running: usize, desired: usize) -> ActorView {
    let depth = engine
        .transport()
        .depth(engine.queue())
        .await
        .unwrap_or_default();
    let s = engine.stats();
    ActorView {
        actor: engine.settings().actor.clone(),
        crew,
        ready: depth.ready,
        delayed: depth.delayed,
        in_flight: ActorStats::get(&s.in_flight),
        unacked: depth.in_flight,
        replicas_running: running,
        replicas_desired: desired,
        succeeded: ActorStats::get(&s.succeeded),
        failed: ActorStats::get(&s.failed),
        retried: ActorStats::get(&s.retried),
        restarts: ActorStats::get(&s.restarts),
        last_error: s.last_error(),
    }
}

/// Collects the status of every actor, user actors first.
pub async fn collect(pools: &[Arc<ActorPool>], crew: &[Arc<Engine>]) -> Vec<ActorView> {
    let mut out = Vec::new();
    for p in pools {
        out.push(view(p.engine(), false, p.ready(), p.desired()).await);
    }
    for e in crew {
        out.push(view(e, true, 1, 1).await);
    }
    out
}

async fn status(State(st): State<Arc<ControlState>>) -> Json<serde_json::Value> {
    Json(json!({"actors": collect(&st.pools, &st.crew).await, "flows": st.flows}))
}

async fn result(State(st): State<Arc<ControlState>>, Path(id): Path<String>) -> Response {
    let name = std::path::Path::new(&id)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty() || name != id {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid task id"})),
        )
            .into_response();
    }
    for dir in ["succeeded", "failed", "paused", "checkpoint"] {
        let path = st.state_dir.join(dir).join(format!("{name}.json"));
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                return Json(json!({"id": id, "state": dir, "envelope": envelope})).into_response();
            }
        }
    }
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no stored result for task {id}")})),
    )
        .into_response()
}

/// `POST /troupe/v1/tasks` `{"actor", "route_next"?, "payload"?, "headers"?, "timeout"?}`:
/// a create that may carry a route tail (`troupe send --route`). The payload is never
/// parsed into a tree: only `actor` and `route_next` are read here.
async fn create_task(State(st): State<Arc<ControlState>>, body: axum::body::Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        actor: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        route_next: Option<&'a serde_json::value::RawValue>,
    }
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({"error": m}))).into_response();
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return bad(format!("invalid JSON body: {e}"));
        }
        return bad("body must be a JSON object".into());
    }
    let head: Head<'_> = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => return bad(format!("invalid JSON body: {e}")),
    };
    let Some(actor) = head
        .actor
        .and_then(|a| serde_json::from_str::<String>(a.get()).ok())
    else {
        return bad("\"actor\" (string) is required".into());
    };
    let next = match route_next(head.route_next) {
        Ok(n) => n,
        Err((code, text)) => return (code, Json(json!({"error": text}))).into_response(),
    };
    let known = |a: &String| {
        st.pools.iter().any(|p| &p.config.name == a)
            || st.crew.iter().any(|e| &e.settings().actor == a)
    };
    if let Some(unknown) = next.iter().find(|a| !known(a)) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("actor '{unknown}' in route_next not found")})),
        )
            .into_response();
    }
    match st.gateway.create_with_route(&actor, body, &next).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => {
            let code =
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(json!({"error": e.to_string()}))).into_response()
        }
    }
}

/// `route_next` as actor names, refused past [`troupe_gateway::MAX_ROUTE_LEN`] entries
/// (and, before parsing, past a text length no such list can reach).
fn route_next(
    raw: Option<&serde_json::value::RawValue>,
) -> Result<Vec<String>, (StatusCode, String)> {
    let max = troupe_gateway::MAX_ROUTE_LEN;
    let too_long = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "\"route_next\" has more than {max} entries, the limit for a route; split the flow"
            ),
        )
    };
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    // 256 bytes per actor name is far beyond any real one.
    if raw.get().len() > max * 256 {
        return Err(too_long());
    }
    match serde_json::from_str::<Option<Vec<String>>>(raw.get()) {
        Ok(n) if n.as_ref().map_or(0, Vec::len) > max => Err(too_long()),
        Ok(n) => Ok(n.unwrap_or_default()),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "\"route_next\" must be an array of actor names".to_owned(),
        )),
    }
}

/// `POST /troupe/v1/queues/{actor}`: puts the raw body on the actor's queue, byte for
/// byte, with no gateway record (replaying an envelope, injecting test input). An Asya
/// client publishing straight to the broker does the same.
async fn publish_raw(
    State(st): State<Arc<ControlState>>,
    Path(actor): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if troupe_protocol::queue::validate_actor_name(&actor).is_err() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("invalid actor name '{actor}'")})),
        )
            .into_response();
    }
    let queue = st.transport.queue_name(&actor);
    match st.transport.send(&queue, body).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// Routes under `/troupe/v1`, behind the gateway's credentials and cross-site rules
/// (docs/security.md): the CLI's routes want the client auth; raw publishing wants the
/// sidecar token (or, with client auth configured, the client key) and takes any bytes.
pub fn router(state: ControlState) -> Router {
    let security = state.gateway.config().security.clone();
    let guard = Guard::new(&security, false);
    let gate = |access| {
        axum::middleware::from_fn_with_state(
            RouteGuard {
                guard: guard.clone(),
                access,
            },
            require,
        )
    };
    let client = Router::new()
        .route("/troupe/v1/status", get(status))
        .route("/troupe/v1/results/{id}", get(result))
        .route("/troupe/v1/tasks", post(create_task))
        .route_layer(gate(Access::Client));
    let publish = Router::new()
        .route("/troupe/v1/queues/{actor}", post(publish_raw))
        .route_layer(gate(Access::Publish));
    SiteRules::json(&security)
        .apply(client)
        .merge(SiteRules::raw(&security).apply(publish))
        .with_state(Arc::new(state))
}
