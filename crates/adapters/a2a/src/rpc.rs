//! The A2A v0.3 JSON-RPC methods (gateway.md §4) over the in-process mesh API.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use troupe_gateway::{GatewayError, ListFilter, NewTask, Task, TaskEvents, TaskStatus};

use crate::mapping::{
    a2a_state, agent_message, context_of, message_parts, message_to_payload, status_event,
    task_object, task_status, MessageError, HEADER_CONTEXT_ID, HEADER_OWNER, HEADER_TASK_ID,
};
use crate::registry::select;
use crate::relay::{self, Relay, TaskFold};
use crate::Inner;
use troupe_gateway::auth::Caller;

/// Tasks scanned per `tasks/list` store page, and the most scanned in all.
const LIST_SCAN_PAGE: usize = 500;
const LIST_SCAN_MAX: usize = 10_000;
/// `tasks/list` page size: default and largest.
const LIST_DEFAULT_PAGE: usize = 50;
const LIST_MAX_PAGE: usize = 100;
/// Relay events buffered between the relay task and the HTTP response.
const RELAY_BUFFER: usize = 64;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
    pub fn parse(m: impl Into<String>) -> Self {
        Self::new(-32700, m)
    }
    pub fn invalid_request(m: impl Into<String>) -> Self {
        Self::new(-32600, m)
    }
    fn method_not_found(method: &str) -> Self {
        Self::new(-32601, format!("method '{method}' not found"))
    }
    fn invalid_params(m: impl Into<String>) -> Self {
        Self::new(-32602, m)
    }
    fn internal(m: impl Into<String>) -> Self {
        Self::new(-32603, m)
    }
    fn task_not_found(id: &str) -> Self {
        Self::new(-32001, format!("task {id} not found"))
    }
    fn not_cancelable(id: &str, state: &str) -> Self {
        Self::new(
            -32002,
            format!("task {id} is {state} and cannot be canceled"),
        )
    }
    fn push_not_supported() -> Self {
        Self::new(-32003, "push notifications not supported")
    }
    fn content_type(m: impl Into<String>) -> Self {
        Self::new(-32005, m)
    }

    fn to_value(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

/// A JSON-RPC success response.
pub(crate) fn ok_body(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC error response.
pub(crate) fn err_body(id: &Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e.to_value()})
}

/// How a request started: an answer right away, or a relay to run.
enum Started {
    /// Nothing to follow (a rejected task).
    Done(Value),
    /// Follow the task: `initial` is the Task sent first, `lead` events follow it.
    Relay {
        initial: Value,
        lead: Vec<Value>,
        relay: Relay,
        /// Subscribed right after the create/resume.
        events: Option<TaskEvents>,
        deadline: Option<Instant>,
    },
}

fn obj_param<'a>(params: &'a Value, what: &str) -> Result<&'a Map<String, Value>, RpcError> {
    params
        .as_object()
        .ok_or_else(|| RpcError::invalid_params(format!("params must be an object ({what})")))
}

fn id_param(params: &Value) -> Result<String, RpcError> {
    obj_param(params, "{id}")?
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| RpcError::invalid_params("params.id (the task id) is required"))
}

fn gateway_error(e: GatewayError) -> RpcError {
    RpcError::internal(e.to_string())
}

impl Inner {
    /// Dispatches one JSON-RPC request. `preselected` is the `/a2a/{agent}` path agent.
    pub(crate) async fn handle_rpc(
        &self,
        caller: Caller,
        preselected: Option<String>,
        req: Value,
        host_url: String,
    ) -> Response {
        let Value::Object(req) = req else {
            let msg = if req.is_array() {
                "batch requests are not supported"
            } else {
                "request must be a JSON-RPC 2.0 object"
            };
            return json_reply(err_body(&Value::Null, &RpcError::invalid_request(msg)));
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
            let e = RpcError::invalid_request("id must be a string, a number or null");
            return json_reply(err_body(&Value::Null, &e));
        }
        if req.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            let e = RpcError::invalid_request("jsonrpc must be \"2.0\"");
            return json_reply(err_body(&id, &e));
        }
        let Some(method) = req.get("method").and_then(Value::as_str) else {
            let e = RpcError::invalid_request("method is required");
            return json_reply(err_body(&id, &e));
        };
        let params = req.get("params").cloned().unwrap_or(Value::Null);
        let res = match method {
            "message/send" => self.message_send(&caller, preselected, &params).await,
            "message/stream" => {
                return match self.start(&caller, preselected, &params).await {
                    Ok(s) => self.stream_started(id, s),
                    Err(e) => sse_error(&id, &e),
                };
            }
            "tasks/resubscribe" => {
                return match self.resubscribe(&caller, &params).await {
                    Ok(s) => self.stream_started(id, s),
                    Err(e) => sse_error(&id, &e),
                };
            }
            "tasks/get" => self.tasks_get(&caller, &params).await,
            "tasks/list" => self.tasks_list(&caller, &params).await,
            "tasks/cancel" => self.tasks_cancel(&caller, &params).await,
            // v0.3 names the method `agent/getAuthenticatedExtendedCard`; gateway.md
            // writes `agent/authenticatedExtendedCard`. Both answer the card.
            "agent/getAuthenticatedExtendedCard" | "agent/authenticatedExtendedCard" => {
                Ok(self.card(&host_url))
            }
            m if m.starts_with("tasks/pushNotificationConfig/") => {
                Err(RpcError::push_not_supported())
            }
            other => Err(RpcError::method_not_found(other)),
        };
        json_reply(match res {
            Ok(v) => ok_body(&id, v),
            Err(e) => err_body(&id, &e),
        })
    }

    /// A task the caller may see; others' tasks are "not found" (§4 "Auth").
    pub(crate) async fn visible_task(&self, caller: &Caller, id: &str) -> Result<Task, RpcError> {
        let task = match self.gateway.get(id).await {
            Ok(t) => t,
            Err(GatewayError::NotFound(_)) => return Err(RpcError::task_not_found(id)),
            Err(e) => return Err(gateway_error(e)),
        };
        if self.owns(caller, &task) {
            Ok(task)
        } else {
            Err(RpcError::task_not_found(id))
        }
    }

    fn owns(&self, caller: &Caller, task: &Task) -> bool {
        if !self.auth.enabled() {
            return true;
        }
        let owner = task
            .data
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_OWNER))
            .and_then(Value::as_str);
        owner.is_some() && owner.map(str::to_owned) == caller.owner()
    }

    /// When a relay gives up: the task deadline plus one backstop period, so the
    /// backstop's `failed` normally arrives before the relay's `unknown`.
    fn relay_deadline(&self, task: &Task) -> Option<Instant> {
        let grace = self.gateway.config().backstop_interval;
        let left = task.deadline()? - time::OffsetDateTime::now_utc();
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        Some(Instant::now() + left + grace)
    }

    async fn message_send(
        &self,
        caller: &Caller,
        preselected: Option<String>,
        params: &Value,
    ) -> Result<Value, RpcError> {
        // `configuration.blocking: false` answers right after creation; the default
        // (and absent) is to wait for the terminal or interrupted state.
        let blocking = params
            .get("configuration")
            .and_then(|c| c.get("blocking"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        match self.start(caller, preselected, params).await? {
            Started::Done(task) => Ok(task),
            Started::Relay {
                initial,
                lead,
                relay,
                events,
                deadline,
            } => {
                let mut fold = TaskFold::new(initial);
                for ev in &lead {
                    fold.apply(ev);
                }
                if !blocking {
                    return Ok(fold.into_value());
                }
                let mut rx = self.spawn_relay(relay, events, deadline);
                while let Some(ev) = rx.recv().await {
                    if fold.apply(&ev) {
                        break;
                    }
                }
                Ok(fold.into_value())
            }
        }
    }

    fn spawn_relay(
        &self,
        relay: Relay,
        events: Option<TaskEvents>,
        deadline: Option<Instant>,
    ) -> mpsc::Receiver<Value> {
        let (tx, rx) = mpsc::channel(RELAY_BUFFER);
        tokio::spawn(relay::run(
            self.gateway.clone(),
            relay,
            events,
            deadline,
            tx,
            self.closing.subscribe(),
        ));
        rx
    }

    /// `message/send` and `message/stream` up to the relay: a new task, or a resume
    /// when the message names a task.
    async fn start(
        &self,
        caller: &Caller,
        preselected: Option<String>,
        params: &Value,
    ) -> Result<Started, RpcError> {
        let p = obj_param(params, "{message, configuration?, metadata?}")?;
        let Some(Value::Object(msg)) = p.get("message") else {
            return Err(RpcError::invalid_params(
                "params.message is required: {role, parts, messageId}",
            ));
        };
        let parts = message_parts(msg).map_err(|e| match e {
            MessageError::Invalid(m) => RpcError::invalid_params(m),
            MessageError::Unsupported(m) => RpcError::content_type(m),
        })?;
        if let Some(task_id) = msg
            .get("taskId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return self.resume(caller, task_id, msg, &parts).await;
        }

        let task_id = uuid::Uuid::new_v4().to_string();
        let context_id = msg
            .get("contextId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let user_msg = echo_message(msg, &task_id, &context_id);
        let skill = [p.get("metadata"), msg.get("metadata")]
            .into_iter()
            .flatten()
            .find_map(|m| m.get("skill").and_then(Value::as_str));
        let agents = self.registry.agents();
        let agent = match select(&agents, preselected.as_deref(), skill) {
            Ok(a) => a,
            Err(reason) => {
                let m = agent_message(Some(&reason), None, &task_id, &context_id);
                return Ok(Started::Done(json!({
                    "kind": "task", "id": task_id, "contextId": context_id,
                    "status": task_status("rejected", Some(m)),
                    "history": [user_msg],
                })));
            }
        };
        let payload = message_to_payload(msg, &parts, &task_id, &context_id);
        let mut headers = Map::new();
        headers.insert(HEADER_TASK_ID.into(), Value::from(task_id.as_str()));
        headers.insert(HEADER_CONTEXT_ID.into(), Value::from(context_id.as_str()));
        if let Some(owner) = caller.owner() {
            headers.insert(HEADER_OWNER.into(), Value::String(owner));
        }
        self.gateway
            .create_task(NewTask {
                actor: agent.actor.clone(),
                payload: payload.into(),
                headers,
                timeout: Some(agent.timeout_s()),
                id: Some(task_id.clone()),
                ..NewTask::default()
            })
            .await
            .map_err(|e| match e {
                GatewayError::NotFound(m) => RpcError::internal(format!(
                    "agent \"{}\": entry actor '{}': {m}",
                    agent.name, agent.actor
                )),
                other => gateway_error(other),
            })?;
        let events = self.gateway.follow(&task_id).await.ok();
        let deadline = match self.gateway.get(&task_id).await {
            Ok(t) => self.relay_deadline(&t),
            Err(_) => Some(Instant::now() + Duration::from_secs(agent.timeout_s())),
        };
        Ok(Started::Relay {
            initial: json!({
                "kind": "task", "id": task_id, "contextId": context_id,
                "status": task_status("submitted", None),
                "history": [user_msg],
            }),
            lead: Vec::new(),
            relay: Relay::new(&task_id, &context_id, false),
            events,
            deadline,
        })
    }

    /// A message naming a task: resume it when it waits for input (§4 "Resume").
    async fn resume(
        &self,
        caller: &Caller,
        task_id: &str,
        msg: &Map<String, Value>,
        parts: &[crate::mapping::PartContent],
    ) -> Result<Started, RpcError> {
        let task = self.visible_task(caller, task_id).await?;
        let state = a2a_state(task.status.as_str());
        match task.status {
            TaskStatus::Paused if task.data.pause_metadata.is_some() => {}
            TaskStatus::Paused => {
                return Err(RpcError::invalid_params(format!(
                    "task {task_id} was paused externally and has no saved state; it can only be canceled"
                )))
            }
            s if s.is_terminal() => {
                return Err(RpcError::invalid_params(format!(
                    "task {task_id} is {state}; send a message without taskId to start a new task"
                )))
            }
            _ => {
                return Err(RpcError::invalid_params(format!(
                    "task {task_id} is {state}, not input-required; wait for it to ask for input"
                )))
            }
        }
        let context_id = context_of(&task);
        let payload = message_to_payload(msg, parts, task_id, &context_id);
        let mut headers = Map::new();
        headers.insert(HEADER_TASK_ID.into(), Value::from(task_id));
        headers.insert(HEADER_CONTEXT_ID.into(), Value::from(context_id.as_str()));
        match self
            .gateway
            .resume_task(task_id, payload, headers, None)
            .await
        {
            Ok(()) => {}
            Err(GatewayError::NotFound(_)) => return Err(RpcError::task_not_found(task_id)),
            Err(GatewayError::Conflict(m) | GatewayError::BadRequest(m)) => {
                return Err(RpcError::invalid_params(m))
            }
            Err(e) => return Err(gateway_error(e)),
        }
        let events = self.gateway.follow(task_id).await.ok();
        let after = self.gateway.get(task_id).await.ok();
        let deadline = after.as_ref().and_then(|t| self.relay_deadline(t));
        let mut initial = after.as_ref().map_or_else(
            || json!({"kind": "task", "id": task_id, "contextId": context_id}),
            task_object,
        );
        let user_msg = echo_message(msg, task_id, &context_id);
        if let Value::Object(t) = &mut initial {
            match t.get_mut("history") {
                Some(Value::Array(h)) => h.push(user_msg),
                _ => {
                    t.insert("history".into(), json!([user_msg]));
                }
            }
            t.insert("status".into(), task_status("working", None));
        }
        Ok(Started::Relay {
            initial,
            lead: vec![status_event(task_id, &context_id, "working", None, false)],
            relay: Relay::new(task_id, &context_id, true),
            events,
            deadline,
        })
    }

    async fn resubscribe(&self, caller: &Caller, params: &Value) -> Result<Started, RpcError> {
        let id = id_param(params)?;
        let task = self.visible_task(caller, &id).await?;
        let context_id = context_of(&task);
        let working = task.status == TaskStatus::Running;
        Ok(Started::Relay {
            initial: task_object(&task),
            lead: Vec::new(),
            relay: Relay::new(&id, &context_id, working),
            events: None,
            deadline: self.relay_deadline(&task),
        })
    }

    async fn tasks_get(&self, caller: &Caller, params: &Value) -> Result<Value, RpcError> {
        let id = id_param(params)?;
        Ok(task_object(&self.visible_task(caller, &id).await?))
    }

    /// Cancels a visible task; terminal → TaskNotCancelable.
    pub(crate) async fn cancel_task(&self, caller: &Caller, id: &str) -> Result<Value, RpcError> {
        let task = self.visible_task(caller, id).await?;
        if task.status.is_terminal() {
            return Err(RpcError::not_cancelable(
                id,
                a2a_state(task.status.as_str()),
            ));
        }
        match self.gateway.cancel(id).await {
            Ok(()) => {}
            Err(GatewayError::NotFound(_)) => return Err(RpcError::task_not_found(id)),
            Err(e) => return Err(gateway_error(e)),
        }
        let after = self.gateway.get(id).await.map_err(gateway_error)?;
        if after.status != TaskStatus::Canceled {
            // Lost the race against a terminal update.
            return Err(RpcError::not_cancelable(
                id,
                a2a_state(after.status.as_str()),
            ));
        }
        Ok(task_object(&after))
    }

    async fn tasks_cancel(&self, caller: &Caller, params: &Value) -> Result<Value, RpcError> {
        let id = id_param(params)?;
        self.cancel_task(caller, &id).await
    }

    /// Soft-pauses a visible task (§6.1).
    pub(crate) async fn pause_task(&self, caller: &Caller, id: &str) -> Result<Value, RpcError> {
        self.visible_task(caller, id).await?;
        match self.gateway.pause(id).await {
            Ok(()) => {}
            Err(GatewayError::NotFound(_)) => return Err(RpcError::task_not_found(id)),
            Err(GatewayError::Conflict(m)) => return Err(RpcError::new(-32002, m)),
            Err(e) => return Err(gateway_error(e)),
        }
        let after = self.gateway.get(id).await.map_err(gateway_error)?;
        Ok(task_object(&after))
    }

    /// `tasks/list` (not in A2A v0.3; shaped like A2A 1.0's ListTasks): the caller's
    /// A2A tasks, newest first, optionally by `contextId` and `status` (an A2A state).
    async fn tasks_list(&self, caller: &Caller, params: &Value) -> Result<Value, RpcError> {
        let empty = Map::new();
        let p = match params {
            Value::Null => &empty,
            other => obj_param(other, "{contextId?, status?, pageSize?, pageToken?}")?,
        };
        let context = p.get("contextId").and_then(Value::as_str);
        let state = p.get("status").and_then(Value::as_str);
        let page_size = p
            .get("pageSize")
            .and_then(Value::as_u64)
            .map_or(LIST_DEFAULT_PAGE, |n| {
                usize::try_from(n).unwrap_or(LIST_MAX_PAGE)
            })
            .clamp(1, LIST_MAX_PAGE);
        let offset = match p.get("pageToken") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) if s.is_empty() => 0,
            Some(Value::String(s)) => s
                .parse::<usize>()
                .map_err(|_| RpcError::invalid_params("pageToken is not one this server gave"))?,
            Some(_) => return Err(RpcError::invalid_params("pageToken must be a string")),
        };
        let mut matched = Vec::new();
        let mut scanned = 0;
        while scanned < LIST_SCAN_MAX {
            let page = self
                .gateway
                .list(&ListFilter {
                    limit: LIST_SCAN_PAGE,
                    offset: scanned,
                    ..ListFilter::default()
                })
                .await
                .map_err(gateway_error)?;
            let n = page.tasks.len();
            scanned += n;
            for t in page.tasks {
                let is_a2a = t
                    .data
                    .headers
                    .as_ref()
                    .is_some_and(|h| h.contains_key(HEADER_TASK_ID));
                if !is_a2a || !self.owns(caller, &t) {
                    continue;
                }
                if context.is_some_and(|c| t.data.context_id.as_deref() != Some(c)) {
                    continue;
                }
                if state.is_some_and(|s| a2a_state(t.status.as_str()) != s) {
                    continue;
                }
                matched.push(t);
            }
            if n < LIST_SCAN_PAGE || scanned >= page.total {
                break;
            }
        }
        let total = matched.len();
        let tasks: Vec<Value> = matched
            .iter()
            .skip(offset)
            .take(page_size)
            .map(task_object)
            .collect();
        let next = if offset + page_size < total {
            (offset + page_size).to_string()
        } else {
            String::new()
        };
        Ok(json!({
            "tasks": tasks,
            "totalSize": total,
            "pageSize": page_size,
            "nextPageToken": next,
        }))
    }

    /// An SSE response: the initial Task, the lead events, then the relay's events.
    fn stream_started(&self, id: Value, started: Started) -> Response {
        let (first, rx) = match started {
            Started::Done(task) => (vec![task], None),
            Started::Relay {
                initial,
                lead,
                relay,
                events,
                deadline,
            } => {
                let mut first = vec![initial];
                first.extend(lead);
                (first, Some(self.spawn_relay(relay, events, deadline)))
            }
        };
        sse_response(id, first, rx, self.keepalive())
    }
}

/// The user's message as recorded in the task history (with its task and context ids).
fn echo_message(msg: &Map<String, Value>, task_id: &str, context_id: &str) -> Value {
    let mut m = msg.clone();
    m.insert("kind".into(), Value::from("message"));
    m.insert("taskId".into(), Value::from(task_id));
    m.insert("contextId".into(), Value::from(context_id));
    if !m.contains_key("messageId") {
        m.insert(
            "messageId".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    Value::Object(m)
}

/// A JSON response with status 200 (JSON-RPC errors travel in the body).
pub(crate) fn json_reply(body: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn sse_headers(body: Body) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONNECTION, "keep-alive"),
        ],
        body,
    )
        .into_response()
}

/// One SSE frame carrying a JSON-RPC response.
fn frame(body: &Value) -> Bytes {
    Bytes::from(format!("data: {body}\n\n"))
}

/// A stream holding one JSON-RPC error (streaming clients only read SSE).
fn sse_error(id: &Value, e: &RpcError) -> Response {
    let bytes = frame(&err_body(id, e));
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(bytes) });
    sse_headers(Body::from_stream(stream))
}

struct SseState {
    id: Value,
    first: VecDeque<Value>,
    rx: Option<mpsc::Receiver<Value>>,
    keepalive: tokio::time::Interval,
}

fn sse_response(
    id: Value,
    first: Vec<Value>,
    rx: Option<mpsc::Receiver<Value>>,
    keepalive: Duration,
) -> Response {
    let period = keepalive.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = SseState {
        id,
        first: first.into(),
        rx,
        keepalive: tick,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if let Some(ev) = st.first.pop_front() {
            let bytes = frame(&ok_body(&st.id, ev));
            return Some((Ok::<_, Infallible>(bytes), st));
        }
        let rx = st.rx.as_mut()?;
        tokio::select! {
            ev = rx.recv() => {
                let ev = ev?;
                let bytes = frame(&ok_body(&st.id, ev));
                Some((Ok(bytes), st))
            }
            _ = st.keepalive.tick() => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st)),
        }
    });
    sse_headers(Body::from_stream(stream))
}
