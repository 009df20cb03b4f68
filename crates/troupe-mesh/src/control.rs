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
    Json(json!({"actors": collect(&st.pools, &st.crew).await}))
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
/// a create that may carry a route tail (`troupe send --route`).
async fn create_task(State(st): State<Arc<ControlState>>, body: axum::body::Bytes) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({"error": m}))).into_response();
    let mut v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Object(m)) => serde_json::Value::Object(m),
        Ok(_) => return bad("body must be a JSON object".into()),
        Err(e) => return bad(format!("invalid JSON body: {e}")),
    };
    let Some(obj) = v.as_object_mut() else {
        return bad("body must be a JSON object".into());
    };
    let actor = match obj.remove("actor") {
        Some(serde_json::Value::String(a)) => a,
        _ => return bad("\"actor\" (string) is required".into()),
    };
    let next: Vec<String> = match obj.remove("route_next") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(n) => match serde_json::from_value(n) {
            Ok(n) => n,
            Err(_) => return bad("\"route_next\" must be an array of actor names".into()),
        },
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
    let rest = serde_json::to_vec(&v).unwrap_or_default();
    match st.gateway.create_routed(&actor, None, &rest, &next).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => {
            let code =
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(json!({"error": e.to_string()}))).into_response()
        }
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
