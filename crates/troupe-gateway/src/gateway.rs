//! Mesh API operations (gateway.md §2), independent of HTTP: the router in
//! [`crate::http`] and the in-process reporter both call these.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use troupe_protocol::clock::format_ts;
use troupe_protocol::resume_input::{declared_fields, validate_resume_input};
use troupe_protocol::{Clock, SystemClock};

use crate::config::GatewayConfig;
use crate::event::{self, EventData, EventError, Posted, MAX_ROUTE_LEN};
use crate::fanout::EventFanout;
use crate::flows::FlowStarts;
use crate::hub::{EventHub, EventKind, Subscription};
use crate::ingress::Ingress;
use crate::raw::RawJson;
use crate::status::{normalise, should_apply, TaskStatus};
use crate::store::{CasOutcome, ListFilter, StoreError, TaskPage, TaskStore};
use crate::task::{merge_update, Task, TaskData};

const HEADER_GATEWAY_URL: &str = "x-asya-gateway-url";
const HEADER_RESUME_TASK: &str = "x-asya-resume-task";
const HEADER_RESUME_TIMEOUT: &str = "x-asya-resume-timeout";
const HEADER_A2A_CONTEXT: &str = "x-asya-a2a-context-id";
const HEADER_TRACEPARENT: &str = "traceparent";
const RESUME_ACTOR: &str = "x-resume";
/// Where a flow that ends (or fails) inside its start routers goes.
pub(crate) const SINK_ACTOR: &str = "x-sink";
/// Never a target here; `lifecycle::outgoing` needs the name.
pub(crate) const SUMP_ACTOR: &str = "x-sump";
const TIMED_OUT: &str = "task timed out";
/// Compare-and-set attempts before giving up on a hot record.
const CAS_ATTEMPTS: usize = 16;
/// Largest FLY event data relayed to subscribers.
pub const MAX_FLY_BYTES: usize = 1 << 20;
/// Overdue tasks handled per store query.
const BACKSTOP_BATCH: usize = 1000;

/// A mesh API failure; each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Malformed request (400).
    #[error("{0}")]
    BadRequest(String),
    /// Unknown task or actor (404).
    #[error("{0}")]
    NotFound(String),
    /// The task is in the wrong state for the request (409).
    #[error("{0}")]
    Conflict(String),
    /// The request body is over a limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Storage failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing to a queue failed (500).
    #[error("{0}")]
    Publish(String),
}

impl GatewayError {
    /// The HTTP status code for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_) => 400,
            GatewayError::NotFound(_) => 404,
            GatewayError::Conflict(_) => 409,
            GatewayError::TooLarge(_) => 413,
            GatewayError::Store(_) | GatewayError::Publish(_) => 500,
        }
    }
}

/// What a posted event did (all answer 204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// A status update was stored and published.
    Applied,
    /// A status update lost to the stored status; not published.
    Stale,
    /// The posted status is not one the gateway tracks.
    Ignored,
    /// A FLY event was relayed to live subscribers.
    Fly,
}

/// What [`Gateway::transition`] should do with the record it read.
enum Step<T> {
    /// Write this record, then answer `T`.
    Write(Box<Task>, T),
    /// Leave the record as it is and answer `T`.
    Keep(T),
}

/// Result of a child registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildOutcome {
    /// A new child record was stored (201).
    Created,
    /// The child was already registered (200).
    Exists,
}

/// The mesh API. Cheap to clone; all clones share one store, hub and ingress.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: GatewayConfig,
    pub(crate) store: Arc<dyn TaskStore>,
    pub(crate) ingress: Arc<dyn Ingress>,
    pub(crate) hub: Arc<EventHub>,
    clock: Arc<dyn Clock>,
    closing: watch::Sender<bool>,
    pub(crate) fanout: std::sync::OnceLock<Arc<dyn EventFanout>>,
    flows: std::sync::OnceLock<Arc<FlowStarts>>,
}

/// A task to create ([`Gateway::create_task`]): the typed form of a create request.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// Entry actor (`?actor=`).
    pub actor: String,
    /// `?namespace=`; another namespace than the gateway's finds no actor.
    pub namespace: Option<String>,
    /// The payload as JSON text (`null` when absent); a `Value` converts with `.into()`.
    pub payload: RawJson,
    /// Request headers; the gateway adds `x-asya-gateway-url`.
    pub headers: Map<String, Value>,
    /// Seconds until the SLA deadline; `None` or 0 for none.
    pub timeout: Option<u64>,
    /// Route tail after `actor` (Troupe's `troupe send --route`; empty for compatible creates).
    pub next: Vec<String>,
    /// A caller-chosen id (A2A makes the task id known before creation); `None` for a new UUIDv4.
    pub id: Option<String>,
}

/// Parsed create / resume body.
struct RequestBody {
    payload: RawJson,
    headers: Map<String, Value>,
    timeout: Option<u64>,
}

#[derive(Serialize)]
struct OutEnvelope<'a> {
    id: &'a str,
    route: OutRoute<'a>,
    headers: &'a Map<String, Value>,
    payload: &'a RawJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<DeadlineOnly<'a>>,
}

#[derive(Serialize)]
struct OutRoute<'a> {
    prev: [&'a str; 0],
    curr: &'a str,
    next: &'a [String],
}

#[derive(Serialize)]
struct DeadlineOnly<'a> {
    deadline_at: &'a str,
}

impl Gateway {
    /// A gateway on the system clock.
    pub fn new(
        config: GatewayConfig,
        store: Arc<dyn TaskStore>,
        ingress: Arc<dyn Ingress>,
    ) -> Self {
        Self::with_clock(config, store, ingress, Arc::new(SystemClock))
    }

    /// A gateway on an injected clock (tests, simulations).
    pub fn with_clock(
        config: GatewayConfig,
        store: Arc<dyn TaskStore>,
        ingress: Arc<dyn Ingress>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let hub = EventHub::new(config.subscriber_buffer);
        let (closing, _) = watch::channel(false);
        Gateway {
            inner: Arc::new(Inner {
                config,
                store,
                ingress,
                hub,
                clock,
                closing,
                fanout: std::sync::OnceLock::new(),
                flows: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Attaches a cross-replica bus; every later event also goes to it. Only the first
    /// bus attached counts (`false` when one was already attached).
    pub fn attach_fanout(&self, bus: Arc<dyn EventFanout>) -> bool {
        self.inner.fanout.set(bus).is_ok()
    }

    /// Makes the mesh's flows startable by name. Only the first set attached counts.
    pub fn attach_flows(&self, flows: Arc<FlowStarts>) -> bool {
        self.inner.flows.set(flows).is_ok()
    }

    /// The flows tasks can be sent to, when attached.
    pub fn flows(&self) -> Option<&Arc<FlowStarts>> {
        self.inner.flows.get()
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The task store.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.inner.store
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Ends every open SSE stream (graceful shutdown would otherwise wait on them).
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Whether [`Gateway::close_streams`] was called (the process is shutting down).
    pub fn is_closing(&self) -> bool {
        *self.inner.closing.borrow()
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Number of open SSE streams for `id`.
    pub fn subscriber_count(&self, id: &str) -> usize {
        self.inner.hub.subscriber_count(id)
    }

    pub(crate) fn subscribe(&self, id: &str) -> Subscription {
        self.inner.hub.subscribe(id)
    }

    /// `POST {p}/mesh/?actor=` (§2.1): returns the new (or, for the x-resume
    /// compatibility rule, the resumed) task id.
    pub async fn create(
        &self,
        actor: &str,
        namespace: Option<&str>,
        body: &[u8],
    ) -> Result<String, GatewayError> {
        self.create_routed(actor, namespace, body, &[]).await
    }

    /// [`Gateway::create`] taking the body by value: it is dropped once the payload is
    /// copied out of it, so a large body is not held twice while the task is stored.
    pub async fn create_owned(
        &self,
        actor: &str,
        namespace: Option<&str>,
        body: bytes::Bytes,
    ) -> Result<String, GatewayError> {
        let req = parse_body(&body, true, &self.inner.config)?;
        drop(body);
        self.create_task(NewTask {
            actor: actor.to_owned(),
            namespace: namespace.map(str::to_owned),
            payload: req.payload,
            headers: req.headers,
            timeout: req.timeout,
            next: Vec::new(),
            id: None,
        })
        .await
    }

    /// Troupe's create with a route tail: the task enters at `actor` and continues
    /// through `next` (used by `troupe send --route`; the compatible create above
    /// rejects routing fields in its body).
    pub async fn create_routed(
        &self,
        actor: &str,
        namespace: Option<&str>,
        body: &[u8],
        next: &[String],
    ) -> Result<String, GatewayError> {
        let req = parse_body(body, next.is_empty(), &self.inner.config)?;
        self.create_parsed(actor, namespace, req, next).await
    }

    /// Troupe's create (`POST /troupe/v1/tasks`): `body` may also carry the members the
    /// caller already read (`actor`, `route_next`); only payload, headers and timeout are
    /// taken from it, the payload as text.
    pub async fn create_with_route(
        &self,
        actor: &str,
        body: bytes::Bytes,
        next: &[String],
    ) -> Result<String, GatewayError> {
        let req = parse_body(&body, false, &self.inner.config)?;
        drop(body);
        self.create_parsed(actor, None, req, next).await
    }

    async fn create_parsed(
        &self,
        actor: &str,
        namespace: Option<&str>,
        req: RequestBody,
        next: &[String],
    ) -> Result<String, GatewayError> {
        self.create_task(NewTask {
            actor: actor.to_owned(),
            namespace: namespace.map(str::to_owned),
            payload: req.payload,
            headers: req.headers,
            timeout: req.timeout,
            next: next.to_vec(),
            id: None,
        })
        .await
    }

    /// Creates a task from typed parts (the adapters' entry point; §2.1 steps 1–7).
    pub async fn create_task(&self, req: NewTask) -> Result<String, GatewayError> {
        let actor = req.actor.as_str();
        if actor.is_empty() {
            return Err(GatewayError::BadRequest(
                "actor query parameter is required: POST {prefix}/mesh/?actor=NAME".into(),
            ));
        }
        if actor == RESUME_ACTOR {
            if let Some(target) = req.headers.get(HEADER_RESUME_TASK).and_then(Value::as_str) {
                if self.inner.store.status(target).await? == Some(TaskStatus::Paused) {
                    let target = target.to_owned();
                    self.resume_parsed(
                        &target,
                        RequestBody {
                            payload: req.payload,
                            headers: req.headers,
                            timeout: req.timeout,
                        },
                    )
                    .await?;
                    return Ok(target);
                }
            }
        }

        let foreign_ns = req
            .namespace
            .as_deref()
            .is_some_and(|ns| !ns.is_empty() && ns != self.inner.config.namespace);
        // A flow name stands for its route; the actors before `req.next` are the flow's.
        let flows = self.inner.flows.get();
        let flow_route = flows
            .filter(|_| !self.inner.ingress.has_actor(actor))
            .and_then(|f| f.route(actor))
            .filter(|r| !r.is_empty());
        let (actor, next): (&str, Vec<String>) = match flow_route {
            Some(route) => (
                route[0].as_str(),
                route[1..].iter().chain(req.next.iter()).cloned().collect(),
            ),
            None => (actor, req.next.clone()),
        };
        let native = flows.and_then(|f| f.native_for(actor));
        if foreign_ns || (native.is_none() && !self.inner.ingress.has_actor(actor)) {
            return Err(GatewayError::NotFound("actor not found".into()));
        }

        let now = self.now();
        let id = match req.id {
            Some(id) if !id.is_empty() => id,
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let mut headers = req.headers;
        self.stamp_gateway_url(&mut headers);
        let deadline_at = deadline(now, req.timeout)?;
        let body = envelope(
            &id,
            actor,
            &next,
            &headers,
            &req.payload,
            deadline_at.as_deref(),
        );
        let data = TaskData {
            actor: actor.to_owned(),
            // Moved, not copied: a payload may be tens of megabytes.
            payload: (!req.payload.is_null()).then_some(req.payload),
            deadline_at: deadline_at.clone(),
            context_id: headers
                .get(HEADER_A2A_CONTEXT)
                .and_then(Value::as_str)
                .map(str::to_owned),
            trace_id: headers
                .get(HEADER_TRACEPARENT)
                .and_then(Value::as_str)
                .and_then(trace_id),
            headers: Some(headers),
            ..TaskData::default()
        };
        if !self
            .inner
            .store
            .insert(Task::new(id.clone(), data, now))
            .await?
        {
            return Err(GatewayError::Conflict(format!(
                "task id {id} already exists; retry the request"
            )));
        }
        let published = match native {
            Some(routers) => self.publish_through_routers(routers, &body, now).await,
            None => self.inner.ingress.publish(actor, body).await,
        };
        if let Err(e) = published {
            // The task never started: leave no record behind.
            if let Err(de) = self.inner.store.delete(&id).await {
                tracing::warn!(task = %id, error = %de, "could not delete task after failed publish");
            }
            return Err(GatewayError::Publish(format!(
                "could not publish to actor '{actor}': {e}"
            )));
        }
        Ok(id)
    }

    /// Resumes a paused task from typed parts (§2.6; what A2A follow-up messages use).
    pub async fn resume_task(
        &self,
        id: &str,
        payload: Value,
        headers: Map<String, Value>,
        timeout: Option<u64>,
    ) -> Result<(), GatewayError> {
        self.resume_parsed(
            id,
            RequestBody {
                payload: payload.into(),
                headers,
                timeout,
            },
        )
        .await
    }

    /// `GET {p}/mesh/{id}`.
    pub async fn get(&self, id: &str) -> Result<Task, GatewayError> {
        self.inner.store.get(id).await?.ok_or_else(|| not_found(id))
    }

    /// `GET {p}/mesh/` (§2.2).
    pub async fn list(&self, filter: &ListFilter) -> Result<TaskPage, GatewayError> {
        Ok(self.inner.store.list(filter).await?)
    }

    /// `POST {p}/mesh/{id}/events` (§2.5) with a parsed body (the in-process reporter).
    pub async fn apply_event(&self, id: &str, body: Value) -> Result<EventOutcome, GatewayError> {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        self.apply_event_bytes(id, &bytes).await
    }

    /// `POST {p}/mesh/{id}/events` (§2.5) with the body as posted. The members that
    /// carry a result or an error may use the whole body limit; the rest of the event
    /// must fit the event limit, and route lists [`MAX_ROUTE_LEN`] entries.
    pub async fn apply_event_bytes(
        &self,
        id: &str,
        body: &[u8],
    ) -> Result<EventOutcome, GatewayError> {
        let posted = event::parse(body).map_err(|e| match e {
            EventError::Malformed(m) => GatewayError::BadRequest(m),
            EventError::RouteTooLong(m) => GatewayError::TooLarge(m),
        })?;
        let limits = &self.inner.config.limits;
        match posted {
            Posted::Status { posted, data } => {
                let rest = body.len().saturating_sub(data.carried_bytes());
                if rest > limits.max_event_bytes {
                    return Err(GatewayError::TooLarge(limits.event_too_large(
                        "status event (without result, error, error_details, pause_metadata)",
                        rest,
                    )));
                }
                self.apply_status(id, &posted, &data).await
            }
            Posted::Fly(text) => {
                if text.len() > MAX_FLY_BYTES {
                    return Err(GatewayError::TooLarge(format!(
                        "FLY event of {} bytes exceeds the 1 MiB limit; stream smaller chunks",
                        text.len()
                    )));
                }
                self.emit(id, EventKind::Fly, move || text);
                Ok(EventOutcome::Fly)
            }
        }
    }

    async fn apply_status(
        &self,
        id: &str,
        posted: &str,
        data: &EventData,
    ) -> Result<EventOutcome, GatewayError> {
        let has_pm = data.pause_metadata.is_some();
        let Some(new) = normalise(posted, has_pm) else {
            // Unknown ids are still 404, whatever was posted.
            self.get(id).await?;
            return Ok(EventOutcome::Ignored);
        };
        let outcome = self
            .transition(id, |current| {
                Ok(if should_apply(current.status, new) {
                    Step::Write(
                        Box::new(merge_update(current, new, posted, data, self.now())),
                        EventOutcome::Applied,
                    )
                } else {
                    Step::Keep(EventOutcome::Stale)
                })
            })
            .await?;
        Ok(outcome.unwrap_or_else(|| {
            tracing::warn!(
                task = id,
                "status update kept losing compare-and-set; dropped as stale"
            );
            EventOutcome::Stale
        }))
    }

    /// Streams `message` to the followers of task `id` as a status event with its current
    /// status, storing nothing: news about a task that is waiting (its actor cannot start)
    /// and changes no state. Terminal or unknown tasks get nothing.
    pub async fn notify(&self, id: &str, message: &str) -> Result<(), GatewayError> {
        let mut task = self.get(id).await?;
        if task.status.is_terminal() {
            return Ok(());
        }
        message.clone_into(&mut task.data.message);
        self.emit(id, EventKind::Status { terminal: false }, || {
            task.data_json()
        });
        Ok(())
    }

    fn publish_status(&self, task: &Task) {
        let kind = EventKind::Status {
            terminal: task.status.is_terminal(),
        };
        self.emit(&task.id, kind, || task.data_json());
    }

    /// `DELETE {p}/mesh/{id}` (§2.9), children included.
    pub async fn cancel(&self, id: &str) -> Result<(), GatewayError> {
        if !self.cancel_one(id).await? {
            return Ok(());
        }
        let mut seen = HashSet::from([id.to_owned()]);
        let mut stack = vec![id.to_owned()];
        while let Some(parent) = stack.pop() {
            for child in self.inner.store.children(&parent).await? {
                if !seen.insert(child.id.clone()) || child.status.is_terminal() {
                    continue;
                }
                match self.cancel_one(&child.id).await {
                    Ok(true) => stack.push(child.id),
                    Ok(false) | Err(GatewayError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Cancels one task; `false` when it was already terminal.
    async fn cancel_one(&self, id: &str) -> Result<bool, GatewayError> {
        self.transition(id, |current| {
            if current.status.is_terminal() {
                return Ok(Step::Keep(false));
            }
            let mut next = current.clone();
            next.status = TaskStatus::Canceled;
            next.updated_at = self.now();
            Ok(Step::Write(Box::new(next), true))
        })
        .await?
        .ok_or_else(|| {
            GatewayError::Conflict(format!("task {id} is changing too fast to cancel; retry"))
        })
    }

    /// `POST {p}/mesh/{id}/pause` (§6.1): an external soft pause. The task becomes
    /// `paused` with no saved state; the next sidecar pre-flight diverts its envelope to
    /// x-sink, where it stops. Already paused → no change; terminal → 409.
    pub async fn pause(&self, id: &str) -> Result<(), GatewayError> {
        self.transition(id, |current| {
            match current.status {
                TaskStatus::Paused => return Ok(Step::Keep(())),
                s if s.is_terminal() => {
                    return Err(GatewayError::Conflict(format!(
                        "task {id} is {s}; only pending or running tasks can be paused"
                    )))
                }
                _ => {}
            }
            let now = self.now();
            let mut next = current.clone();
            next.status = TaskStatus::Paused;
            next.updated_at = now;
            "Paused by request".clone_into(&mut next.data.message);
            next.data.pause_metadata = None;
            next.sla_remaining_s = next.deadline().map(|d| crate::task::remaining_secs(d, now));
            Ok(Step::Write(Box::new(next), ()))
        })
        .await?
        .ok_or_else(|| {
            GatewayError::Conflict(format!("task {id} is changing too fast to pause; retry"))
        })
    }

    /// Reads task `id`, lets `decide` pick the new record, and writes it with a
    /// compare-and-set on the status it read, re-reading on conflict (§2.3). An applied
    /// write is published. `None` when every attempt lost the race.
    async fn transition<T>(
        &self,
        id: &str,
        mut decide: impl FnMut(&Task) -> Result<Step<T>, GatewayError>,
    ) -> Result<Option<T>, GatewayError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get(id).await?;
            let (next, value) = match decide(&current)? {
                Step::Keep(v) => return Ok(Some(v)),
                Step::Write(next, v) => (*next, v),
            };
            match self
                .inner
                .store
                .compare_and_set(current.status, next.clone())
                .await?
            {
                CasOutcome::Applied => {
                    self.publish_status(&next);
                    return Ok(Some(value));
                }
                CasOutcome::Conflict => continue,
                CasOutcome::NotFound => return Err(not_found(id)),
            }
        }
        Ok(None)
    }

    /// `POST {p}/mesh/{id}/resume` (§2.6).
    pub async fn resume(&self, id: &str, body: &[u8]) -> Result<(), GatewayError> {
        let req = parse_body(body, false, &self.inner.config)?;
        self.resume_parsed(id, req).await
    }

    async fn resume_parsed(&self, id: &str, req: RequestBody) -> Result<(), GatewayError> {
        let mut attempt = 0;
        let (before, after, secs) = loop {
            attempt += 1;
            let task = self.get(id).await?;
            if task.status != TaskStatus::Paused {
                return Err(GatewayError::Conflict(format!(
                    "task {id} is {}; only paused tasks can be resumed",
                    task.status
                )));
            }
            let Some(metadata) = &task.data.pause_metadata else {
                return Err(GatewayError::Conflict(
                    "no saved state: the task was paused externally and can only be canceled"
                        .into(),
                ));
            };
            // Checked here, before the task leaves `paused`, so that every client (mesh
            // API, CLI, A2A, Asya's create-on-x-resume) is refused alike and can retry.
            let metadata = metadata.to_value();
            if !declared_fields(&metadata).is_empty() {
                validate_resume_input(&metadata, &req.payload.to_value()).map_err(|e| {
                    GatewayError::BadRequest(format!(
                        "cannot resume task {id}: {e}; the task stays paused"
                    ))
                })?;
            }
            if !self.inner.ingress.has_actor(RESUME_ACTOR) {
                return Err(GatewayError::Publish(
                    "actor 'x-resume' is not running in this mesh; deploy the x-resume crew actor to resume tasks".into(),
                ));
            }
            let now = self.now();
            let secs = req.timeout.or(task.sla_remaining_s);
            let mut next = task.clone();
            next.status = TaskStatus::Running;
            next.updated_at = now;
            "Resumed".clone_into(&mut next.data.message);
            next.data.pause_metadata = None;
            next.data.deadline_at = deadline(now, secs)?;
            next.sla_remaining_s = None;
            match self
                .inner
                .store
                .compare_and_set(TaskStatus::Paused, next.clone())
                .await?
            {
                CasOutcome::Applied => break (task, next, secs),
                CasOutcome::Conflict if attempt < CAS_ATTEMPTS => continue,
                CasOutcome::Conflict => {
                    return Err(GatewayError::Conflict(format!(
                        "task {id} changed while resuming; retry"
                    )))
                }
                CasOutcome::NotFound => return Err(not_found(id)),
            }
        };
        self.publish_status(&after);

        let mut headers = req.headers;
        self.stamp_gateway_url(&mut headers);
        headers.insert(HEADER_RESUME_TASK.into(), Value::String(id.to_owned()));
        match secs {
            Some(s) => {
                headers.insert(HEADER_RESUME_TIMEOUT.into(), Value::from(s));
            }
            None => {
                headers.remove(HEADER_RESUME_TIMEOUT);
            }
        }
        let body = envelope(
            id,
            RESUME_ACTOR,
            &[],
            &headers,
            &req.payload,
            after.data.deadline_at.as_deref(),
        );
        if let Err(e) = self.inner.ingress.publish(RESUME_ACTOR, body).await {
            // Put the task back so the client can retry the resume.
            let restored = Task {
                updated_at: self.now(),
                ..before
            };
            if let Ok(CasOutcome::Applied) = self
                .inner
                .store
                .compare_and_set(TaskStatus::Running, restored.clone())
                .await
            {
                self.publish_status(&restored);
            }
            return Err(GatewayError::Publish(format!(
                "could not publish to actor 'x-resume': {e}"
            )));
        }
        Ok(())
    }

    /// `POST {p}/mesh/{parent}/children` (§2.7): `body` is
    /// `{"id", "parent_id", "route": {prev, curr, next}}`.
    pub async fn register_child(
        &self,
        parent: &str,
        body: &Value,
    ) -> Result<ChildOutcome, GatewayError> {
        let bad = |m: &str| GatewayError::BadRequest(m.to_owned());
        let obj = body.as_object().ok_or_else(|| {
            bad("child body must be a JSON object {\"id\", \"parent_id\", \"route\"}")
        })?;
        let child = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("child body needs a non-empty string \"id\""))?;
        if obj.get("parent_id").and_then(Value::as_str) != Some(parent) {
            return Err(bad("\"parent_id\" must equal the parent id in the path"));
        }
        let route = match obj.get("route") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(r)) => r.clone(),
            Some(_) => return Err(bad("\"route\" must be an object {prev, curr, next}")),
        };
        let curr = match route.get("curr") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(bad("\"route.curr\" must be a string")),
        };
        let next = match route.get("next") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("\"route.next\" must be a list of actor names"))?,
            Some(_) => return Err(bad("\"route.next\" must be a list of actor names")),
        };
        if next.len() > MAX_ROUTE_LEN {
            return Err(GatewayError::TooLarge(format!(
                "child route.next has {} entries, over the limit of {MAX_ROUTE_LEN} for a route; split the flow",
                next.len()
            )));
        }
        let parent_task = self.get(parent).await?;
        let data = TaskData {
            actor: curr.to_owned(),
            route_next: next,
            parent_id: Some(parent.to_owned()),
            deadline_at: parent_task.data.deadline_at,
            ..TaskData::default()
        };
        let created = self
            .inner
            .store
            .insert(Task::new(child.to_owned(), data, self.now()))
            .await?;
        Ok(if created {
            ChildOutcome::Created
        } else {
            ChildOutcome::Exists
        })
    }

    /// Legacy `POST /mesh` with `{id, parent_id, prev, curr, next}` (Asya sidecars).
    pub async fn register_child_legacy(&self, body: &Value) -> Result<ChildOutcome, GatewayError> {
        let obj = body.as_object().ok_or_else(|| {
            GatewayError::BadRequest(
                "body must be a JSON object {id, parent_id, prev, curr, next}".into(),
            )
        })?;
        let parent = obj
            .get("parent_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GatewayError::BadRequest("\"parent_id\" is required".into()))?;
        let mut route = Map::new();
        for k in ["prev", "curr", "next"] {
            if let Some(v) = obj.get(k) {
                route.insert(k.into(), v.clone());
            }
        }
        let std_body = serde_json::json!({
            "id": obj.get("id").cloned().unwrap_or(Value::Null),
            "parent_id": parent,
            "route": route,
        });
        self.register_child(parent, &std_body).await
    }

    /// Records a task this gateway never created: a message x-sump stored as a parse
    /// failure (under a generated id when it had none). `actor` is where parsing failed,
    /// `payload` the error payload (reason and raw body); the final report that follows
    /// marks it failed. An existing record is left as it is.
    pub async fn adopt(
        &self,
        id: &str,
        actor: &str,
        payload: impl Into<RawJson>,
    ) -> Result<(), GatewayError> {
        if id.is_empty() {
            return Err(GatewayError::BadRequest(
                "an adopted task needs an id".into(),
            ));
        }
        let data = TaskData {
            actor: actor.to_owned(),
            payload: Some(payload.into()),
            ..TaskData::default()
        };
        self.inner
            .store
            .insert(Task::new(id.to_owned(), data, self.now()))
            .await?;
        Ok(())
    }

    /// One SLA backstop pass (§2.10): fails overdue pending/running tasks. Returns how
    /// many were failed.
    pub async fn run_backstop_once(&self) -> Result<usize, GatewayError> {
        let now = self.now();
        let mut failed = 0;
        loop {
            let batch = self.inner.store.overdue(now, BACKSTOP_BATCH).await?;
            let full = batch.len() == BACKSTOP_BATCH;
            let mut progressed = false;
            for task in batch {
                if self.fail_overdue(task, now).await? {
                    failed += 1;
                    progressed = true;
                }
            }
            if !full || !progressed {
                return Ok(failed);
            }
        }
    }

    async fn fail_overdue(
        &self,
        mut task: Task,
        now: OffsetDateTime,
    ) -> Result<bool, GatewayError> {
        for _ in 0..CAS_ATTEMPTS {
            let overdue = matches!(task.status, TaskStatus::Pending | TaskStatus::Running)
                && task.deadline().is_some_and(|d| d < now);
            if !overdue {
                return Ok(false);
            }
            let mut next = task.clone();
            next.status = TaskStatus::Failed;
            next.updated_at = now;
            next.data.error = Some(TIMED_OUT.to_owned());
            match self
                .inner
                .store
                .compare_and_set(task.status, next.clone())
                .await?
            {
                CasOutcome::Applied => {
                    self.publish_status(&next);
                    return Ok(true);
                }
                CasOutcome::Conflict => match self.inner.store.get(&task.id).await? {
                    Some(t) => task = t,
                    None => return Ok(false),
                },
                CasOutcome::NotFound => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Runs the backstop every `backstop_interval` until `shutdown` completes.
    pub fn spawn_backstop<F>(&self, shutdown: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let gw = self.clone();
        let period = self
            .inner
            .config
            .backstop_interval
            .max(std::time::Duration::from_millis(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tick.tick() => {
                        match gw.run_backstop_once().await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(count = n, "SLA backstop failed overdue tasks"),
                            Err(e) => tracing::warn!(error = %e, "SLA backstop pass failed"),
                        }
                    }
                }
            }
        })
    }

    /// Whether the store is reachable (`/ready`).
    pub async fn ready(&self) -> Result<(), GatewayError> {
        Ok(self.inner.store.ping().await?)
    }

    fn stamp_gateway_url(&self, headers: &mut Map<String, Value>) {
        let url = &self.inner.config.internal_url;
        if !url.is_empty() {
            headers.insert(HEADER_GATEWAY_URL.into(), Value::String(url.clone()));
        }
    }
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::NotFound(format!("task {id} not found"))
}

/// `now + secs` as RFC 3339 UTC seconds; `None` without a positive timeout.
fn deadline(now: OffsetDateTime, secs: Option<u64>) -> Result<Option<String>, GatewayError> {
    let Some(secs) = secs.filter(|s| *s > 0) else {
        return Ok(None);
    };
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| now.checked_add(time::Duration::seconds(s)))
        .ok_or_else(|| GatewayError::BadRequest(format!("timeout {secs}s is too large")))?;
    Ok(Some(format_ts(at)))
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> Option<String> {
    let id = traceparent.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

fn envelope(
    id: &str,
    actor: &str,
    next: &[String],
    headers: &Map<String, Value>,
    payload: &RawJson,
    deadline_at: Option<&str>,
) -> bytes::Bytes {
    let env = OutEnvelope {
        id,
        route: OutRoute {
            prev: [],
            curr: actor,
            next,
        },
        headers,
        payload,
        status: deadline_at.map(|d| DeadlineOnly { deadline_at: d }),
    };
    // Sized up front: a payload of tens of megabytes is not copied on regrowth.
    let mut buf = Vec::with_capacity(payload.len() + 4096);
    // Serialising string-keyed maps and JSON text cannot fail.
    if serde_json::to_writer(&mut buf, &env).is_err() {
        buf.clear();
    }
    bytes::Bytes::from(buf)
}

/// A create or resume body; the payload is kept as text (never parsed into a tree).
#[derive(serde::Deserialize)]
struct BodyFields<'a> {
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headers: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timeout: Option<&'a RawValue>,
    #[serde(default)]
    route: Option<IgnoredAny>,
    #[serde(default)]
    route_next: Option<IgnoredAny>,
    #[serde(default)]
    next: Option<IgnoredAny>,
}

/// Longest `timeout` text read as a number (anything longer is not one).
const MAX_TIMEOUT_TEXT: usize = 64;

/// Parses a create (`reject_routing`) or resume body. An empty body is `{}`.
fn parse_body(
    body: &[u8],
    reject_routing: bool,
    config: &GatewayConfig,
) -> Result<RequestBody, GatewayError> {
    let bad = |m: String| GatewayError::BadRequest(m);
    let shape = "body must be a JSON object {\"payload\", \"headers\", \"timeout\"}";
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let fields: BodyFields<'_> = match first {
        None => {
            serde_json::from_slice(b"{}").map_err(|e| bad(format!("invalid JSON body: {e}")))?
        }
        Some(b'{') => {
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?
        }
        Some(_) => {
            // Still report broken JSON as such.
            serde_json::from_slice::<IgnoredAny>(body)
                .map_err(|e| bad(format!("invalid JSON body: {e}")))?;
            return Err(bad(shape.into()));
        }
    };
    if reject_routing
        && (fields.route.is_some() || fields.route_next.is_some() || fields.next.is_some())
    {
        return Err(bad(
            "routing fields (route, route_next, next) are not allowed: a task enters the mesh at one \
             actor (?actor=NAME); start multi-step flows at their router actor"
                .into(),
        ));
    }
    let headers = match fields.headers {
        None => Map::new(),
        Some(raw) if raw.get().len() > config.limits.max_event_bytes => {
            return Err(GatewayError::TooLarge(
                config
                    .limits
                    .event_too_large("\"headers\"", raw.get().len()),
            ))
        }
        Some(raw) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Null) => Map::new(),
            Ok(Value::Object(h)) => h,
            _ => return Err(bad("\"headers\" must be a JSON object".into())),
        },
    };
    let not_seconds = || bad("\"timeout\" must be a number of seconds".into());
    let timeout = match fields.timeout {
        None => None,
        Some(raw) if raw.get().len() > MAX_TIMEOUT_TEXT => return Err(not_seconds()),
        Some(raw) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Null) => None,
            Ok(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    Some(u)
                } else if n.as_i64().is_some() {
                    None // negative: no deadline
                } else {
                    // Whole seconds: a fractional timeout is truncated.
                    n.as_f64().filter(|f| *f >= 1.0).map(|f| f as u64)
                }
            }
            _ => return Err(not_seconds()),
        },
    };
    Ok(RequestBody {
        payload: fields.payload.map_or_else(RawJson::null, RawJson::from),
        headers,
        timeout,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn body_parsing() {
        let b = parse_body(b"", true, &GatewayConfig::default()).unwrap();
        assert!(b.payload.is_null() && b.headers.is_empty() && b.timeout.is_none());
        let b = parse_body(
            br#"{"payload": {"a": 1}, "headers": {"h": 1}, "timeout": 30}"#,
            true,
            &GatewayConfig::default(),
        )
        .unwrap();
        assert_eq!(b.payload.to_value(), serde_json::json!({"a": 1}));
        assert_eq!(b.headers.get("h"), Some(&Value::from(1)));
        assert_eq!(b.timeout, Some(30));
        assert_eq!(
            parse_body(br#"{"timeout": -3}"#, true, &GatewayConfig::default())
                .unwrap()
                .timeout,
            None
        );
        assert_eq!(
            parse_body(br#"{"timeout": 2.9}"#, true, &GatewayConfig::default())
                .unwrap()
                .timeout,
            Some(2)
        );
        assert_eq!(
            parse_body(br#"{"timeout": 0.5}"#, true, &GatewayConfig::default())
                .unwrap()
                .timeout,
            None
        );
        for bad in [
            &br#"{"timeout": "30"}"#[..],
            br#"{"headers": []}"#,
            br#"[1]"#,
            br#"{"payload": "#,
            br#"{"route": {"curr": "a"}}"#,
            br#"{"route_next": ["a"]}"#,
            br#"{"next": []}"#,
        ] {
            assert!(
                matches!(
                    parse_body(bad, true, &GatewayConfig::default()),
                    Err(GatewayError::BadRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // resume bodies may carry anything else
        assert!(parse_body(br#"{"next": []}"#, false, &GatewayConfig::default()).is_ok());
    }

    #[test]
    fn deadline_and_trace_helpers() {
        let now = datetime!(2026-01-01 00:00:00.7 UTC);
        assert_eq!(
            deadline(now, Some(300)).unwrap().as_deref(),
            Some("2026-01-01T00:05:00Z")
        );
        assert_eq!(deadline(now, Some(0)).unwrap(), None);
        assert_eq!(deadline(now, None).unwrap(), None);
        assert!(deadline(now, Some(u64::MAX)).is_err());
        assert_eq!(
            trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn envelope_shape_matches_spec() {
        let mut h = Map::new();
        h.insert("x-asya-gateway-url".into(), "http://gw".into());
        let body = envelope(
            "id1",
            "echo",
            &[],
            &h,
            &serde_json::json!({"q": 1}).into(),
            None,
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "id1", "route": {"prev": [], "curr": "echo", "next": []},
                               "headers": {"x-asya-gateway-url": "http://gw"}, "payload": {"q": 1}})
        );
        let body = envelope(
            "id1",
            "echo",
            &[],
            &h,
            &RawJson::null(),
            Some("2026-01-01T00:05:00Z"),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["status"],
            serde_json::json!({"deadline_at": "2026-01-01T00:05:00Z"})
        );
        assert!(v["payload"].is_null());
        // key order follows the spec for readability
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with("{\"id\":\"id1\",\"route\":"), "{text}");
    }

    #[test]
    fn error_codes() {
        assert_eq!(GatewayError::BadRequest(String::new()).status_code(), 400);
        assert_eq!(GatewayError::NotFound(String::new()).status_code(), 404);
        assert_eq!(GatewayError::Conflict(String::new()).status_code(), 409);
        assert_eq!(GatewayError::TooLarge(String::new()).status_code(), 413);
        assert_eq!(GatewayError::Publish(String::new()).status_code(), 500);
        assert_eq!(
            GatewayError::Store(StoreError::Unavailable("x".into())).status_code(),
            500
        );
    }
}
