//! Shared fakes for the engine tests: a recording transport, a recording reporter, a
//! settable clock, a scripted native handler and a scripted runtime over a Unix socket.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use troupe_engine::handler::{HandlerFailure, NativeHandler, Requeue};
use troupe_engine::metrics::ActorStats;
use troupe_engine::report::Reporter;
use troupe_engine::{ActorSettings, Disposition, Engine, Handler};
use troupe_protocol::{Clock, Envelope, Frame};
use troupe_transport::{
    durable, Delivery, DeliveryHandle, PendingSend, QueueDepth, Transport, TransportError,
};

/// The tests' "now": 2026-01-01T00:00:10Z.
pub const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:10 UTC);
/// [`NOW`] on the wire.
pub const NOW_TS: &str = "2026-01-01T00:00:10Z";
/// `created_at` of the test inputs.
pub const CREATED: &str = "2026-01-01T00:00:00Z";
/// A deadline well in the future.
pub const DEADLINE: &str = "2026-01-01T01:00:00Z";
/// The default gateway URL of the test settings.
pub const GW: &str = "http://gw";

/// Everything the engine did, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A successful send (`delay` set for `send_with_delay`).
    Send {
        queue: String,
        body: Value,
        delay: Option<Duration>,
    },
    /// A send that the fake failed.
    SendFailed { queue: String },
    /// Ack of a delivery.
    Ack(DeliveryHandle),
    /// Nack/requeue of a delivery.
    Nack(DeliveryHandle, Duration),
    /// Pre-flight status lookup.
    TaskStatus { gateway: String, id: String },
    /// `POST /events`.
    Event {
        gateway: String,
        id: String,
        body: Value,
    },
    /// `POST /children`.
    Child {
        gateway: String,
        parent: String,
        body: Value,
    },
    /// A gateway record was created for a task it never saw (a parse failure).
    Adopt {
        gateway: String,
        id: String,
        actor: String,
        payload: Value,
    },
    /// A native handler ran (with the stamped input it got).
    Handled(Value),
    /// A native handler's after-dispatch step ran.
    AfterDispatch,
    /// The engine changed the prefetch of a queue.
    Prefetch(String, u16),
    /// A delivery's visibility was extended (its lease).
    Extend(DeliveryHandle),
}

/// Shared, ordered record of engine effects.
#[derive(Debug, Default)]
pub struct Log(Mutex<Vec<Op>>);

impl Log {
    pub fn push(&self, op: Op) {
        self.0.lock().unwrap().push(op);
    }
    pub fn all(&self) -> Vec<Op> {
        self.0.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Failure plan of the fake transport.
#[derive(Debug, Default)]
pub struct FailPlan {
    /// Sends to these queues fail.
    pub queues: HashSet<String>,
    /// The n-th send (1-based, counting all sends) fails.
    pub nth_send: Option<usize>,
    /// Every receive fails this many more times.
    pub receive_errors: usize,
}

/// An in-memory transport that records every call. Queue names are `q.{actor}`, so a
/// test can tell whether the engine mapped actor names through the transport.
#[derive(Default)]
pub struct FakeTransport {
    pub log: Arc<Log>,
    pub fail: Mutex<FailPlan>,
    sends: AtomicUsize,
    inbox: Mutex<HashMap<String, VecDeque<Delivery>>>,
    arrived: Notify,
    seq: AtomicU64,
    /// When set, each `send_pipelined` confirm waits until [`FakeTransport::confirm`]
    /// releases it, in send order (a broker slow to confirm).
    held: Mutex<Option<VecDeque<tokio::sync::oneshot::Sender<bool>>>>,
    /// What `extend_every` answers (`None`: no leases, as AMQP).
    pub extend_every: Mutex<Option<Duration>>,
}

impl FakeTransport {
    pub fn new(log: Arc<Log>) -> Self {
        Self {
            log,
            ..Default::default()
        }
    }

    /// Makes `body` receivable on `queue`.
    pub fn push(&self, queue: &str, body: impl Into<Bytes>) -> Delivery {
        let d = Delivery {
            queue: Arc::from(queue),
            body: body.into(),
            handle: DeliveryHandle::Seq(self.seq.fetch_add(1, Ordering::Relaxed) + 1),
            delivery_count: Some(1),
        };
        self.inbox
            .lock()
            .unwrap()
            .entry(queue.to_owned())
            .or_default()
            .push_back(d.clone());
        self.arrived.notify_waiters();
        d
    }

    /// From now on, confirms of pipelined sends wait for [`FakeTransport::confirm`].
    pub fn hold_confirms(&self) {
        *self.held.lock().unwrap() = Some(VecDeque::new());
    }

    /// Resolves the oldest held confirm: durable when `ok`, refused otherwise.
    pub fn confirm(&self, ok: bool) {
        let tx = self
            .held
            .lock()
            .unwrap()
            .as_mut()
            .and_then(VecDeque::pop_front);
        tx.expect("a held confirm").send(ok).unwrap();
    }

    /// Confirms waiting for [`FakeTransport::confirm`].
    pub fn held_confirms(&self) -> usize {
        self.held.lock().unwrap().as_ref().map_or(0, VecDeque::len)
    }

    fn record_send(
        &self,
        queue: &str,
        body: &Bytes,
        delay: Option<Duration>,
    ) -> Result<(), TransportError> {
        let n = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = {
            let plan = self.fail.lock().unwrap();
            plan.queues.contains(queue) || plan.nth_send == Some(n)
        };
        if fail {
            self.log.push(Op::SendFailed {
                queue: queue.to_owned(),
            });
            return Err(TransportError::Io {
                queue: queue.to_owned(),
                message: "injected failure".into(),
            });
        }
        let body: Value = serde_json::from_slice(body).expect("engine sends JSON");
        self.log.push(Op::Send {
            queue: queue.to_owned(),
            body,
            delay,
        });
        Ok(())
    }
}

#[async_trait]
impl Transport for FakeTransport {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn queue_name(&self, actor: &str) -> String {
        format!("q.{actor}")
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        loop {
            let notified = self.arrived.notified();
            {
                let mut plan = self.fail.lock().unwrap();
                if plan.receive_errors > 0 {
                    plan.receive_errors -= 1;
                    return Err(TransportError::Io {
                        queue: queue.to_owned(),
                        message: "injected receive failure".into(),
                    });
                }
            }
            if let Some(d) = self
                .inbox
                .lock()
                .unwrap()
                .get_mut(queue)
                .and_then(VecDeque::pop_front)
            {
                return Ok(d);
            }
            notified.await;
        }
    }

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.record_send(queue, &body, None)
    }

    async fn send_pipelined(
        &self,
        queue: &str,
        body: Bytes,
    ) -> Result<PendingSend, TransportError> {
        self.record_send(queue, &body, None)?;
        let mut held = self.held.lock().unwrap();
        let Some(held) = held.as_mut() else {
            return Ok(durable());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        held.push_back(tx);
        let queue = queue.to_owned();
        Ok(Box::pin(async move {
            match rx.await {
                Ok(true) => Ok(()),
                _ => Err(TransportError::Io {
                    queue,
                    message: "injected confirm refusal".into(),
                }),
            }
        }))
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.record_send(queue, &body, Some(delay))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.log.push(Op::Ack(delivery.handle.clone()));
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.log.push(Op::Nack(delivery.handle.clone(), delay));
        Ok(())
    }

    async fn depth(&self, _queue: &str) -> Result<QueueDepth, TransportError> {
        Ok(QueueDepth::default())
    }

    async fn create_queue(&self, _queue: &str) -> Result<(), TransportError> {
        Ok(())
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inbox.lock().unwrap().remove(queue);
        Ok(())
    }

    fn extend_every(&self) -> Option<Duration> {
        *self.extend_every.lock().unwrap()
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.log.push(Op::Extend(delivery.handle.clone()));
        Ok(())
    }

    async fn set_prefetch(&self, queue: &str, prefetch: u16) {
        self.log.push(Op::Prefetch(queue.to_owned(), prefetch));
    }

    async fn close(&self) {}
}

/// A reporter that records every call and answers pre-flight from a table.
#[derive(Default)]
pub struct FakeReporter {
    pub log: Arc<Log>,
    pub statuses: Mutex<HashMap<String, String>>,
    /// When set, the gateway knows only the tasks adopted since (else every task).
    pub only_adopted: std::sync::atomic::AtomicBool,
    adopted: Mutex<HashSet<String>>,
}

impl FakeReporter {
    pub fn new(log: Arc<Log>) -> Self {
        Self {
            log,
            statuses: Mutex::default(),
            only_adopted: Default::default(),
            adopted: Mutex::default(),
        }
    }
    pub fn set_status(&self, id: &str, status: &str) {
        self.statuses
            .lock()
            .unwrap()
            .insert(id.to_owned(), status.to_owned());
    }
}

#[async_trait]
impl Reporter for FakeReporter {
    async fn knows(&self, _gateway: &str, id: &str) -> bool {
        !self.only_adopted.load(Ordering::SeqCst) || self.adopted.lock().unwrap().contains(id)
    }
    async fn adopt(&self, gateway: &str, id: &str, actor: &str, payload: Value) -> bool {
        self.log.push(Op::Adopt {
            gateway: gateway.to_owned(),
            id: id.to_owned(),
            actor: actor.to_owned(),
            payload,
        });
        self.adopted.lock().unwrap().insert(id.to_owned());
        true
    }
    async fn task_status(&self, gateway: &str, id: &str) -> Option<String> {
        self.log.push(Op::TaskStatus {
            gateway: gateway.to_owned(),
            id: id.to_owned(),
        });
        self.statuses.lock().unwrap().get(id).cloned()
    }
    async fn post_event(&self, gateway: &str, id: &str, body: Value) {
        self.log.push(Op::Event {
            gateway: gateway.to_owned(),
            id: id.to_owned(),
            body,
        });
    }
    async fn register_child(&self, gateway: &str, parent_id: &str, body: Value) {
        self.log.push(Op::Child {
            gateway: gateway.to_owned(),
            parent: parent_id.to_owned(),
            body,
        });
    }
}

/// A clock the test sets.
pub struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    pub fn new(t: OffsetDateTime) -> Self {
        Self(Mutex::new(t))
    }
    pub fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

type Script = dyn Fn(&Envelope) -> Result<Vec<Frame>, HandlerFailure> + Send + Sync;

/// A native handler driven by a closure; records its inputs in the shared log.
pub struct Scripted {
    log: Arc<Log>,
    script: Box<Script>,
    pub after_fails: bool,
}

#[async_trait]
impl NativeHandler for Scripted {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        self.log.push(Op::Handled(wire(input)));
        (self.script)(input)
    }
    async fn after_dispatch(&self, _input: &Envelope) -> Result<(), Requeue> {
        self.log.push(Op::AfterDispatch);
        if self.after_fails {
            Err(Requeue("injected after-dispatch failure".into()))
        } else {
            Ok(())
        }
    }
}

/// A test bench around one engine.
pub struct Bench {
    pub engine: Arc<Engine>,
    pub transport: Arc<FakeTransport>,
    pub reporter: Arc<FakeReporter>,
    pub clock: Arc<TestClock>,
    pub stats: Arc<ActorStats>,
    pub log: Arc<Log>,
}

/// Settings of actor `b` reporting to [`GW`].
pub fn settings() -> ActorSettings {
    let mut s = ActorSettings::new("b");
    s.gateway_url = Some(GW.to_owned());
    s
}

impl Bench {
    pub fn new(settings: ActorSettings) -> Self {
        let log = Arc::new(Log::default());
        let transport = Arc::new(FakeTransport::new(log.clone()));
        let reporter = Arc::new(FakeReporter::new(log.clone()));
        let clock = Arc::new(TestClock::new(NOW));
        let stats = Arc::new(ActorStats::default());
        let engine = Arc::new(Engine::new(
            settings,
            transport.clone(),
            reporter.clone(),
            clock.clone(),
            stats.clone(),
        ));
        Self {
            engine,
            transport,
            reporter,
            clock,
            stats,
            log,
        }
    }

    /// A native handler running `script`.
    pub fn native(
        &self,
        script: impl Fn(&Envelope) -> Result<Vec<Frame>, HandlerFailure> + Send + Sync + 'static,
    ) -> Handler {
        Handler::Native(Arc::new(Scripted {
            log: self.log.clone(),
            script: Box::new(script),
            after_fails: false,
        }))
    }

    /// Processes one delivery of `body` (handle `Seq(1)`).
    pub async fn run(&self, handler: &Handler, body: impl Into<Bytes>) -> Disposition {
        let d = Delivery {
            queue: Arc::from("q.b"),
            body: body.into(),
            handle: DeliveryHandle::Seq(1),
            delivery_count: Some(1),
        };
        self.engine.process(handler, &d).await
    }

    /// Processes an envelope given as JSON.
    pub async fn run_json(&self, handler: &Handler, v: &Value) -> Disposition {
        self.run(handler, serde_json::to_vec(v).unwrap()).await
    }

    pub fn ops(&self) -> Vec<Op> {
        self.log.all()
    }

    /// Successful sends: `(queue, body, delay)`.
    pub fn sends(&self) -> Vec<(String, Value, Option<Duration>)> {
        self.ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::Send { queue, body, delay } => Some((queue, body, delay)),
                _ => None,
            })
            .collect()
    }

    /// The only successful send.
    pub fn single_send(&self) -> (String, Value) {
        let sends = self.sends();
        assert_eq!(sends.len(), 1, "expected one send, got {sends:#?}");
        let (q, b, d) = sends.into_iter().next().unwrap();
        assert_eq!(d, None, "plain send expected");
        (q, b)
    }

    /// Posted events: `(id, body)`.
    pub fn events(&self) -> Vec<(String, Value)> {
        self.ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::Event { id, body, .. } => Some((id, body)),
                _ => None,
            })
            .collect()
    }

    /// Event statuses in order (`received`, `processing`, ...; `fly` for FLY events).
    pub fn event_kinds(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|(_, b)| match b["type"].as_str() {
                Some("fly") => "fly".to_owned(),
                _ => b["status"].as_str().unwrap_or("?").to_owned(),
            })
            .collect()
    }

    /// Any reporter call at all?
    pub fn reporter_calls(&self) -> usize {
        self.ops()
            .iter()
            .filter(|op| {
                matches!(
                    op,
                    Op::Event { .. } | Op::Child { .. } | Op::TaskStatus { .. } | Op::Adopt { .. }
                )
            })
            .count()
    }

    /// Stamped inputs the native handler saw.
    pub fn handled(&self) -> Vec<Value> {
        self.ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::Handled(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    /// Asserts the delivery was acked exactly once, as the very last transport effect.
    pub fn assert_acked_last(&self) {
        let ops = self.ops();
        let acks = ops.iter().filter(|o| matches!(o, Op::Ack(_))).count();
        assert_eq!(acks, 1, "one ack expected: {ops:#?}");
        assert!(
            matches!(ops.last(), Some(Op::Ack(_))),
            "ack must come after every send: {ops:#?}"
        );
        assert!(!ops.iter().any(|o| matches!(o, Op::Nack(..))));
    }

    /// Asserts the delivery was requeued and never acked.
    pub fn assert_requeued(&self) {
        let ops = self.ops();
        assert!(
            !ops.iter().any(|o| matches!(o, Op::Ack(_))),
            "no ack on requeue: {ops:#?}"
        );
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::Nack(_, d) if d.is_zero()))
                .count(),
            1,
            "{ops:#?}"
        );
        assert!(matches!(ops.last(), Some(Op::Nack(..))));
    }
}

/// An envelope's wire form as JSON.
pub fn wire(e: &Envelope) -> Value {
    serde_json::from_slice(&e.to_vec()).unwrap()
}

/// A typical input for actor `b`: pending, from `a`, going on to `c`.
pub fn input() -> Value {
    json!({
        "id": "t1",
        "parent_id": "p0",
        "route": {"prev": ["a"], "curr": "b", "next": ["c"]},
        "headers": {"trace": "x"},
        "status": {"phase": "pending", "actor": "b", "attempt": 1, "max_attempts": 1,
                   "created_at": CREATED, "updated_at": "2026-01-01T00:00:05Z",
                   "deadline_at": DEADLINE},
        "payload": {"q": 1}
    })
}

/// A frame as the runtime would emit it from `input` with `next` as the handler left it.
pub fn advanced(input: &Envelope, payload: Value, next: &[&str]) -> Frame {
    let mut prev = input.route.prev.clone();
    prev.push(input.route.curr.clone());
    let (curr, rest) = match next.split_first() {
        Some((c, r)) => ((*c).to_owned(), r.iter().map(|s| (*s).to_owned()).collect()),
        None => (String::new(), Vec::new()),
    };
    serde_json::from_value(json!({
        "payload": payload,
        "route": {"prev": prev, "curr": curr, "next": rest},
        "status": input.status,
    }))
    .unwrap()
}

/// The same frame advanced along the input's own `next`.
pub fn pass_through(input: &Envelope, payload: Value) -> Frame {
    let next: Vec<&str> = input.route.next.iter().map(String::as_str).collect();
    advanced(input, payload, &next)
}

/// A Python-shaped handler failure.
pub fn value_error(msg: &str) -> HandlerFailure {
    let mut f = HandlerFailure::new("ValueError", &["Exception"], msg);
    f.details.traceback = "Traceback ...".into();
    f
}

// ------------------------------------------------------------------ fake runtime

/// How the fake runtime answers one `POST /invoke`.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `status` with a JSON body.
    Json(u16, Value),
    /// `204 No Content`.
    NoContent,
    /// An SSE stream of `(event, data)`; `done` appends the `done` event.
    Sse(Vec<(String, Value)>, bool),
    /// Read the request, then never answer (holds the connection open).
    Hang,
    /// Start an SSE stream with these events, then stall without `done`.
    SseThenHang(Vec<(String, Value)>),
    /// A reply that is not HTTP.
    Garbage,
}

/// SSE `downstream` event.
pub fn downstream(frame: &Frame) -> (String, Value) {
    ("downstream".into(), serde_json::to_value(frame).unwrap())
}

/// SSE `upstream` event carrying a FLY object.
pub fn upstream(obj: Value) -> (String, Value) {
    ("upstream".into(), json!({ "payload": obj }))
}

/// SSE `error` event.
pub fn sse_error(details: Value) -> (String, Value) {
    (
        "error".into(),
        json!({"error": "processing_error", "details": details}),
    )
}

type Responder = dyn Fn(&Envelope) -> Reply + Send + Sync;

/// A tiny HTTP/1.1 runtime on a Unix socket; one request per connection.
pub struct FakeRuntime {
    pub socket: PathBuf,
    pub requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRuntime {
    /// Starts a runtime in `dir` answering with `respond`.
    pub fn start(dir: &Path, respond: impl Fn(&Envelope) -> Reply + Send + Sync + 'static) -> Self {
        let socket = dir.join("asya-runtime.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let reqs = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let respond = respond.clone();
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, respond, reqs).await;
                });
            }
        });
        Self {
            socket,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: UnixStream,
    respond: Arc<Responder>,
    reqs: Arc<Mutex<Vec<Value>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..head_end + len];
    let env = Envelope::from_slice(body).unwrap();
    reqs.lock()
        .unwrap()
        .push(serde_json::from_slice(body).unwrap());
    match respond(&env) {
        Reply::Json(status, v) => {
            let b = v.to_string();
            let out = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            );
            stream.write_all(out.as_bytes()).await?;
        }
        Reply::NoContent => {
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await?;
        }
        Reply::Sse(events, done) => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
                .await?;
            for (ev, data) in events {
                stream
                    .write_all(format!("event: {ev}\ndata: {data}\n\n").as_bytes())
                    .await?;
            }
            if done {
                stream.write_all(b"event: done\ndata: {}\n\n").await?;
            }
        }
        Reply::SseThenHang(events) => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
                .await?;
            for (ev, data) in events {
                stream
                    .write_all(format!("event: {ev}\ndata: {data}\n\n").as_bytes())
                    .await?;
            }
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        }
        Reply::Garbage => {
            stream.write_all(b"this is not http\r\n\r\n").await?;
        }
    }
    stream.shutdown().await?;
    Ok(())
}
