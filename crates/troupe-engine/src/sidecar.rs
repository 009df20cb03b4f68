//! The per-message algorithm (protocol.md §8) for one actor.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, error, warn};
use troupe_protocol::clock::{format_ts, parse_ts, Clock};
use troupe_protocol::duration::format_go_duration;
use troupe_protocol::envelope::{Envelope, ErrorInfo, Frame, Phase, Reason};
use troupe_protocol::{errors, headers, lifecycle, report, route};
use troupe_runtime::client::{RuntimeCallError, RuntimeClient, RuntimeEvent};
use troupe_transport::{Delivery, PendingSend, Transport};

use crate::handler::{EndHandler, NativeError, NativeHandler, NativeReply};
use crate::metrics::{self as m, ActorStats};
use crate::outage::SendOutage;
use crate::report::Reporter;
use crate::settings::ActorSettings;
use crate::tuner::Tuner;
use crate::unparsed;

mod native;

/// How one replica runs the handler.
#[derive(Clone)]
pub enum Handler {
    /// A Python runtime behind its Unix socket.
    Runtime(Arc<RuntimeClient>),
    /// A native regular actor (x-pause, x-resume, fan-in).
    Native(Arc<dyn NativeHandler>),
    /// A native end actor (x-sink, x-sump).
    End(Arc<dyn EndHandler>),
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Acked.
    Acked,
    /// Requeued for redelivery (a send or storage failure).
    Requeued,
    /// Acked after a runtime call timeout: the runtime must be replaced (§10).
    RuntimeTimedOut,
    /// Acked after the runtime became unreachable mid-call (the message went to
    /// x-sump, §11): the runtime must be replaced.
    RuntimeUnreachable,
    /// Requeued because no connection to the runtime could be made: the message never
    /// reached a handler, so it waits in the queue for a fresh runtime instead of going
    /// to x-sump.
    RuntimeNotReached,
}

impl Disposition {
    /// True when the replica must stop and its runtime be replaced.
    pub fn runtime_lost(&self) -> bool {
        matches!(
            self,
            Disposition::RuntimeTimedOut
                | Disposition::RuntimeUnreachable
                | Disposition::RuntimeNotReached
        )
    }
}

/// Counts one message in [`ActorStats::in_flight`] while alive.
struct InFlight(Arc<ActorStats>);

impl InFlight {
    fn enter(stats: &Arc<ActorStats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A failed send; the input must be requeued.
#[derive(Debug)]
struct SendFailed;

/// One send of the current message whose broker confirm is still outstanding.
struct Pending {
    queue: String,
    started: Instant,
    confirm: PendingSend,
}

tokio::task_local! {
    /// The outstanding sends of the message [`Engine::begin`] is processing. A task-local
    /// rather than a parameter because sends happen deep in frame dispatch, the local
    /// sink and hook delivery; outside a scope a send waits for its confirm itself.
    static PENDING: RefCell<Vec<Pending>>;
}

/// A message whose handler part is done (see [`Engine::begin`]); what is left is to wait
/// for its sends to become durable and then ack or requeue it ([`Engine::settle`]).
pub struct Begun {
    outcome: Result<Disposition, SendFailed>,
    pending: Vec<Pending>,
    started: Instant,
    /// How long the handler part took.
    head: Duration,
    _in_flight: InFlight,
}

impl Begun {
    /// True when the replica must stop and its runtime be replaced.
    pub fn runtime_lost(&self) -> bool {
        matches!(&self.outcome, Ok(d) if d.runtime_lost())
    }

    /// True when sends still wait for the broker.
    pub fn has_pending_sends(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The engine of one actor, shared by its replicas.
pub struct Engine {
    settings: ActorSettings,
    transport: Arc<dyn Transport>,
    reporter: Arc<dyn Reporter>,
    clock: Arc<dyn Clock>,
    stats: Arc<ActorStats>,
    own_queue: Arc<str>,
    sink_queue: String,
    sump_queue: String,
    hot: m::HotCounters,
    send_durations: m::SendDurations,
    tuner: Tuner,
    local_sink: Option<LocalEnd>,
    outage: SendOutage,
    /// Set by [`Engine::begin_stop`]: the pod is shutting down.
    stopping: std::sync::atomic::AtomicBool,
}

/// An end actor hosted in the same process, fed directly instead of through its queue.
struct LocalEnd {
    engine: Arc<Engine>,
    handler: Arc<dyn EndHandler>,
}

/// The runtime's error body (`{"error", "details"}`).
#[derive(Debug, Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    details: Option<Value>,
}

/// `{"frames": [...]}`.
#[derive(Debug, Deserialize)]
struct FramesBody {
    #[serde(default)]
    frames: Vec<Frame>,
}

impl Engine {
    /// Marks the pod as shutting down: a runtime lost mid-call from now on requeues the
    /// message instead of sending it to x-sump.
    pub fn begin_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// True after [`Engine::begin_stop`].
    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An engine for `settings.actor` over `transport`.
    pub fn new(
        settings: ActorSettings,
        transport: Arc<dyn Transport>,
        reporter: Arc<dyn Reporter>,
        clock: Arc<dyn Clock>,
        stats: Arc<ActorStats>,
    ) -> Self {
        let own_queue: Arc<str> = transport.queue_name(&settings.actor).into();
        let sink_queue = transport.queue_name(&settings.sink);
        let sump_queue = transport.queue_name(&settings.sump);
        let hot = m::HotCounters::register(&settings.actor, &sink_queue, transport.kind());
        let outage = SendOutage::new(&settings.actor);
        let tuner = Tuner::new(
            settings.pipeline,
            settings.concurrency,
            settings.min_prefetch,
        );
        Self {
            settings,
            transport,
            reporter,
            clock,
            stats,
            own_queue,
            sink_queue,
            sump_queue,
            hot,
            send_durations: m::SendDurations::default(),
            tuner,
            local_sink: None,
            outage,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Delivers this actor's x-sink envelopes straight to `sink` (an end-actor engine in
    /// the same process, protocol.md §1 "embedded mode") instead of its queue, saving a
    /// queue write, a wake-up and a parse per finished task. Messages already on the
    /// x-sink queue (from elsewhere) are still consumed there.
    pub fn with_local_sink(mut self, sink: Arc<Engine>, handler: Arc<dyn EndHandler>) -> Self {
        self.local_sink = Some(LocalEnd {
            engine: sink,
            handler,
        });
        self
    }

    /// The actor's settings.
    pub fn settings(&self) -> &ActorSettings {
        &self.settings
    }

    /// The actor's queue.
    pub fn queue(&self) -> &str {
        &self.own_queue
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Records how long a `receive` waited (platform.md §6.1 receive duration).
    pub fn record_receive_wait(&self, waited: Duration) {
        self.hot.receive_wait.record(waited.as_secs_f64());
    }

    /// The actor's live counters.
    pub fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }

    /// Processes one delivery end to end, acking or requeueing it.
    pub async fn process(&self, handler: &Handler, delivery: &Delivery) -> Disposition {
        let begun = self.begin(handler, delivery).await;
        self.settle(begun, delivery).await
    }

    /// The first part of [`Engine::process`]: runs the message through the handler and
    /// hands its output to the transport, without waiting for the broker to confirm it.
    /// The caller may begin the next message before settling this one (pipelining).
    pub async fn begin(&self, handler: &Handler, delivery: &Delivery) -> Begun {
        // A guard, so a caller that drops this message (shutdown grace expired) does not
        // leave the in-flight count raised for good.
        let in_flight = InFlight::enter(&self.stats);
        let started = Instant::now();
        self.hot.received.increment(1);
        self.hot.active.increment(1.0);
        self.hot.size_received.record(delivery.body.len() as f64);
        let run = async {
            let outcome = match handler {
                Handler::End(h) => self.process_end(h.as_ref(), &delivery.body).await,
                _ => self.process_regular(handler, &delivery.body).await,
            };
            (outcome, PENDING.with(RefCell::take))
        };
        let (outcome, pending) = PENDING.scope(RefCell::new(Vec::new()), run).await;
        Begun {
            outcome,
            pending,
            started,
            head: started.elapsed(),
            _in_flight: in_flight,
        }
    }

    /// The second part of [`Engine::process`]: waits until every send of the message is
    /// durable, then acks it; a send the broker did not take requeues it instead.
    pub async fn settle(&self, begun: Begun, delivery: &Delivery) -> Disposition {
        let Begun {
            mut outcome,
            pending,
            started,
            head,
            _in_flight,
        } = begun;
        let settling = Instant::now();
        for p in pending {
            match p.confirm.await {
                Ok(()) => {
                    self.send_durations.record(
                        &p.queue,
                        self.transport.kind(),
                        p.started.elapsed(),
                    );
                }
                Err(e) => {
                    if outcome.is_ok() {
                        self.outage.failed(&p.queue, &e);
                    }
                    if !matches!(outcome, Ok(Disposition::RuntimeNotReached)) {
                        outcome = Err(SendFailed);
                    }
                }
            }
        }
        let disposition = match outcome {
            Ok(Disposition::RuntimeNotReached) => {
                if let Err(e) = self.transport.requeue(delivery).await {
                    warn!(actor = %self.settings.actor, error = %e, "requeue failed; the message returns after its visibility timeout");
                }
                Disposition::RuntimeNotReached
            }
            Ok(d) => match self.transport.ack(delivery).await {
                Ok(()) => {
                    self.outage.succeeded();
                    d
                }
                Err(e) => {
                    // The message will be redelivered after its visibility timeout;
                    // downstream sees a duplicate, which at-least-once allows.
                    warn!(actor = %self.settings.actor, error = %e, "ack failed");
                    d
                }
            },
            Err(SendFailed) => {
                ActorStats::bump(&self.stats.requeued);
                metrics::counter!(m::MESSAGES_FAILED, "queue" => self.settings.actor.clone(), "reason" => m::failed::TRANSPORT_ERROR).increment(1);
                if let Err(e) = self.transport.requeue(delivery).await {
                    warn!(actor = %self.settings.actor, error = %e, "requeue failed; the message returns after its visibility timeout");
                }
                Disposition::Requeued
            }
        };
        self.hot.active.decrement(1.0);
        self.hot.processing.record(started.elapsed().as_secs_f64());
        if let Some(prefetch) = self.tuner.observe(head, settling.elapsed()) {
            debug!(actor = %self.settings.actor, depth = self.tuner.depth(), prefetch, "pipeline depth changed");
            self.transport.set_prefetch(&self.own_queue, prefetch).await;
        }
        disposition
    }

    /// While sends keep failing: when the actor may take its next message.
    pub fn paused_until(&self) -> Option<tokio::time::Instant> {
        self.outage.resume_at()
    }

    /// How many messages per worker may settle behind the one in the handler now.
    pub fn pipeline_depth(&self) -> usize {
        self.tuner.depth()
    }

    fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    fn processed(&self, status: &'static str) {
        match status {
            m::processed::SUCCESS => return self.hot.success.increment(1),
            m::processed::END_CONSUMED => return self.hot.end_consumed.increment(1),
            _ => {}
        }
        metrics::counter!(m::MESSAGES_PROCESSED, "queue" => self.settings.actor.clone(), "status" => status).increment(1);
    }

    async fn send(
        &self,
        queue: &str,
        env: &Envelope,
        kind: &'static str,
    ) -> Result<(), SendFailed> {
        let body = Bytes::from(env.to_vec());
        let size = body.len();
        let started = Instant::now();
        match self.transport.send_pipelined(queue, body).await {
            Ok(mut confirm) => {
                // Most transports are durable on return: settle those here, so only a
                // send the broker still has to confirm makes the message pipelined.
                let ready = match confirm
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                };
                if let Some(r) = ready {
                    if let Err(e) = r {
                        self.outage.failed(queue, &e);
                        return Err(SendFailed);
                    }
                    self.send_durations
                        .record(queue, self.transport.kind(), started.elapsed());
                } else if PENDING.try_with(|_| ()).is_ok() {
                    let queue = queue.to_owned();
                    PENDING.with(|p| {
                        p.borrow_mut().push(Pending {
                            queue,
                            started,
                            confirm,
                        })
                    });
                } else if let Err(e) = confirm.await {
                    self.outage.failed(queue, &e);
                    return Err(SendFailed);
                } else {
                    self.send_durations
                        .record(queue, self.transport.kind(), started.elapsed());
                }
                self.hot.size_sent.record(size as f64);
                if kind == m::sent::SINK {
                    self.hot.sent_sink.increment(1);
                } else {
                    metrics::counter!(m::MESSAGES_SENT, "destination_queue" => queue.to_owned(), "message_type" => kind).increment(1);
                }
                Ok(())
            }
            Err(e) => {
                self.outage.failed(queue, &e);
                Err(SendFailed)
            }
        }
    }

    async fn to_sink(&self, env: &Envelope) -> Result<(), SendFailed> {
        if let Some(sink) = &self.local_sink {
            // Embedded mode: x-sink runs in this process, so hand it the envelope
            // directly. The input is acked only after the sink finished, exactly as
            // after a durable send; a sink failure requeues the input instead.
            self.hot.sent_sink.increment(1);
            let _in_flight = InFlight::enter(&sink.engine.stats);
            sink.engine.hot.received.increment(1);
            let stored = sink.engine.end_parsed(sink.handler.as_ref(), env).await;
            if stored.is_err() {
                // x-sink logged why; this actor requeues its input and must back off too.
                self.outage
                    .failed(&self.sink_queue, &"x-sink could not store the result");
            }
            return stored;
        }
        self.send(&self.sink_queue, env, m::sent::SINK).await
    }

    async fn to_sump(
        &self,
        env: &Envelope,
        reason: &'static str,
        what: String,
    ) -> Result<(), SendFailed> {
        ActorStats::bump(&self.stats.failed);
        self.stats.record_error(what);
        metrics::counter!(m::MESSAGES_FAILED, "queue" => self.settings.actor.clone(), "reason" => reason).increment(1);
        self.send(&self.sump_queue, env, m::sent::SUMP).await
    }

    /// §8 step 1: a body that is no usable envelope goes to x-sump as a failed task under
    /// a generated id (when it has none), with the reason and the raw body.
    async fn unparseable(&self, body: &[u8], text: String) -> Result<(), SendFailed> {
        let err = unparsed::failed_envelope(body, &text, &self.settings.actor, self.now());
        warn!(actor = %self.settings.actor, id = %err.id, error = %text, "unparseable message; sent to x-sump as a failed task");
        let what = format!("{}: {text}", err.id);
        self.to_sump(&err, m::failed::PARSE_ERROR, what).await
    }

    /// The gateway to report `env` to, if reporting is on and the gateway knows the task.
    async fn gateway(&self, env: &Envelope) -> Option<String> {
        let gw = report::gateway_target(
            env,
            self.settings.gateway_url.as_deref(),
            &self.settings.gateway_allowed_hosts,
        )?;
        self.reporter.knows(&gw, &env.id).await.then_some(gw)
    }

    async fn process_regular(
        &self,
        handler: &Handler,
        body: &[u8],
    ) -> Result<Disposition, SendFailed> {
        let actor = self.settings.actor.as_str();
        // Step 1: parse.
        let mut env = match Envelope::from_slice(body) {
            Ok(env) if !env.id.is_empty() => env,
            Ok(_) => {
                self.unparseable(body, errors::TEXT_MISSING_ID.to_owned())
                    .await?;
                return Ok(Disposition::Acked);
            }
            Err(e) => {
                self.unparseable(body, format!("{}: {e}", errors::TEXT_PARSE_FAILED))
                    .await?;
                return Ok(Disposition::Acked);
            }
        };
        let gateway = self.gateway(&env).await;
        // Step 4: pre-flight.
        if let Some(gw) = gateway.as_deref() {
            let phase = match self.reporter.task_status(gw, &env.id).await.as_deref() {
                Some("canceled") => Some(Phase::Canceled),
                Some("paused") => Some(Phase::Paused),
                _ => None,
            };
            if let Some(phase) = phase {
                lifecycle::divert_preflight(&mut env, phase, actor, self.now());
                self.processed(if phase == Phase::Paused {
                    m::processed::PREFLIGHT_PAUSED
                } else {
                    m::processed::PREFLIGHT_CANCELED
                });
                self.to_sink(&env).await?;
                return Ok(Disposition::Acked);
            }
        }
        // Step 5: SLA pre-check.
        if lifecycle::sla_expired(&env, self.now()) {
            self.sla_timeout(&mut env, gateway.as_deref()).await?;
            return Ok(Disposition::Acked);
        }
        // Step 6.
        if let Some(gw) = gateway.as_deref() {
            self.reporter
                .post_event(gw, &env.id, report::received(&env.route, body.len()))
                .await;
        }
        // Step 7: route check.
        if !route::accepts(&env.route.curr, actor, &env.headers)
            && !lifecycle::accept_policy_routed(&mut env, actor)
        {
            let text = errors::route_mismatch_text(actor, &env.route.curr);
            let err =
                errors::error_envelope(&env, Reason::RouteMismatch, &text, None, actor, self.now());
            self.to_sump(&err, m::failed::ROUTE_MISMATCH, text).await?;
            return Ok(Disposition::Acked);
        }
        // Step 8.
        if let Some(gw) = gateway.as_deref() {
            self.reporter
                .post_event(gw, &env.id, report::processing(&env.route, actor))
                .await;
        }
        // Step 9.
        lifecycle::stamp(&mut env, actor, self.now());
        // Step 10.
        let Some(budget) =
            lifecycle::effective_timeout(self.settings.actor_timeout, &env, self.now())
        else {
            self.sla_timeout(&mut env, gateway.as_deref()).await?;
            return Ok(Disposition::Acked);
        };
        // Step 11.
        match handler {
            Handler::Runtime(client) => self.invoke_runtime(client, env, gateway, budget).await,
            Handler::Native(native) => self.invoke_native(native.as_ref(), env, gateway).await,
            Handler::End(_) => Ok(Disposition::Acked),
        }
    }

    async fn sla_timeout(
        &self,
        env: &mut Envelope,
        gateway: Option<&str>,
    ) -> Result<(), SendFailed> {
        let now = self.now();
        lifecycle::mark_sla_timeout(env, &self.settings.actor, now);
        if let Some(gw) = gateway {
            self.reporter
                .post_event(
                    gw,
                    &env.id,
                    report::final_error(&env.id, &format_ts(now), "SLA deadline expired"),
                )
                .await;
        }
        self.processed(m::processed::SLA_EXPIRED);
        ActorStats::bump(&self.stats.failed);
        self.stats
            .record_error(format!("{}: SLA deadline expired", env.id));
        self.to_sink(env).await
    }

    async fn invoke_native(
        &self,
        native: &dyn NativeHandler,
        env: Envelope,
        gateway: Option<String>,
    ) -> Result<Disposition, SendFailed> {
        let started = Instant::now();
        match native.reply(&env).await {
            Ok(NativeReply { frames, task }) => {
                // Frames emitted as another task (fan-in: the origin) take its identity;
                // the zero-frames case still sends the input itself to x-sink.
                let rebound = task.filter(|_| !frames.is_empty()).map(|t| {
                    let mut as_task = env.clone();
                    as_task.id = t.id;
                    as_task.parent_id = t.parent_id;
                    as_task
                });
                let mut dispatch = Dispatch::new(
                    self,
                    rebound.as_ref().unwrap_or(&env),
                    gateway.as_deref(),
                    started,
                );
                for frame in frames {
                    dispatch.frame(frame).await?;
                }
                dispatch.finish().await?;
                if let Err(e) = native.after_dispatch(&env).await {
                    self.outage.failed(&self.own_queue, &e);
                    return Err(SendFailed);
                }
                Ok(Disposition::Acked)
            }
            Err(NativeError::Requeue(e)) => {
                self.outage.failed(&self.own_queue, &e);
                Err(SendFailed)
            }
            Err(NativeError::Failed(failure)) => {
                // A native failure plays the runtime's error reply, whose `details`
                // object also goes to the failure payload (§11.1).
                let details = serde_json::to_value(&failure.details).ok();
                self.handler_error(&env, &failure.code, details.as_ref(), failure.details)
                    .await?;
                Ok(Disposition::Acked)
            }
        }
    }

    async fn invoke_runtime(
        &self,
        client: &RuntimeClient,
        env: Envelope,
        gateway: Option<String>,
        budget: Duration,
    ) -> Result<Disposition, SendFailed> {
        let started = Instant::now();
        let body = Bytes::from(env.to_vec());
        let mut dispatch = Dispatch::new(self, &env, gateway.as_deref(), started);
        let result: Result<(), DispatchAbort> = async {
            let mut call = client.invoke(body, budget).await?;
            while let Some(event) = call.next().await? {
                match event {
                    RuntimeEvent::Frame(bytes) => match serde_json::from_slice::<Frame>(&bytes) {
                        Ok(frame) => dispatch.frame(frame).await.map_err(DispatchAbort::Send)?,
                        Err(e) => return Err(bad_reply(client, format!("unparseable frame: {e}"))),
                    },
                    RuntimeEvent::FramesJson(bytes) => match serde_json::from_slice::<FramesBody>(&bytes) {
                        Ok(body) => {
                            for frame in body.frames {
                                dispatch.frame(frame).await.map_err(DispatchAbort::Send)?;
                            }
                        }
                        Err(e) => return Err(bad_reply(client, format!("unparseable frames body: {e}"))),
                    },
                    RuntimeEvent::NoContent => {}
                    RuntimeEvent::Upstream(bytes) => {
                        if let Some(gw) = dispatch.gateway {
                            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                                self.reporter.post_event(gw, &env.id, report::fly(v)).await;
                            }
                        } else {
                            debug!(actor = %self.settings.actor, id = %env.id, fly = %String::from_utf8_lossy(&bytes), "FLY");
                        }
                    }
                    RuntimeEvent::Error { body, .. } => {
                        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                        dispatch.failed = Some(parsed);
                        // An error frame ends the call; later frames are ignored (§8 step 11).
                        break;
                    }
                }
            }
            Ok(())
        }
        .await;
        self.hot
            .runtime_execution
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                if let Some(err) = dispatch.failed.take() {
                    let info: ErrorInfo = err
                        .details
                        .as_ref()
                        .and_then(|d| serde_json::from_value(d.clone()).ok())
                        .unwrap_or_default();
                    let code = if err.error.is_empty() {
                        "processing_error".to_owned()
                    } else {
                        err.error
                    };
                    self.handler_error(&env, &code, err.details.as_ref(), info)
                        .await?;
                    return Ok(Disposition::Acked);
                }
                dispatch.finish().await?;
                Ok(Disposition::Acked)
            }
            Err(DispatchAbort::Send(failed)) => Err(failed),
            Err(DispatchAbort::Call(RuntimeCallError::Timeout(_))) => {
                let text = format!(
                    "Runtime timeout exceeded after {}",
                    format_go_duration(budget)
                );
                metrics::counter!(m::RUNTIME_ERRORS, "queue" => self.settings.actor.clone(), "error_type" => "timeout").increment(1);
                error!(actor = %self.settings.actor, id = %env.id, error_type = "Timeout", error = %text, "handler timed out; the task goes to x-sump and the runtime is replaced");
                let err = errors::error_envelope(
                    &env,
                    Reason::Timeout,
                    &text,
                    None,
                    &self.settings.actor,
                    self.now(),
                );
                self.to_sump(&err, m::failed::SLA_TIMEOUT, format!("{}: {text}", env.id))
                    .await?;
                Ok(Disposition::RuntimeTimedOut)
            }
            Err(DispatchAbort::Call(e @ RuntimeCallError::Unreachable { .. }))
                if self.stopping() =>
            {
                // The runtime was stopped with the pod (its grace ran out before the
                // handler returned): not the message's fault, so the next consumer gets it.
                warn!(actor = %self.settings.actor, id = %env.id, error = %e, "runtime stopped mid-call during shutdown; the message is requeued for the next consumer");
                Ok(Disposition::RuntimeNotReached)
            }
            Err(DispatchAbort::Call(
                e @ (RuntimeCallError::Unreachable { .. } | RuntimeCallError::NotHttp { .. }),
            )) => {
                let text = e.to_string();
                metrics::counter!(m::RUNTIME_ERRORS, "queue" => self.settings.actor.clone(), "error_type" => "execution_error").increment(1);
                error!(actor = %self.settings.actor, id = %env.id, error_type = "RuntimeError", error = %text, "runtime lost mid-call; the task goes to x-sump");
                let err = errors::error_envelope(
                    &env,
                    Reason::RuntimeError,
                    &text,
                    None,
                    &self.settings.actor,
                    self.now(),
                );
                self.to_sump(
                    &err,
                    m::failed::RUNTIME_ERROR,
                    format!("{}: {text}", env.id),
                )
                .await?;
                Ok(Disposition::RuntimeUnreachable)
            }
            Err(DispatchAbort::Call(e @ RuntimeCallError::NotDelivered { .. })) => {
                debug!(actor = %self.settings.actor, id = %env.id, error = %e, "runtime not reachable; requeueing");
                Ok(Disposition::RuntimeNotReached)
            }
        }
    }

    /// §9: a handler failure goes through the resiliency policy.
    async fn handler_error(
        &self,
        stamped: &Envelope,
        code: &str,
        details: Option<&Value>,
        info: ErrorInfo,
    ) -> Result<(), SendFailed> {
        let actor = self.settings.actor.as_str();
        let now = self.now();
        let what = format!("{}: {}: {}", stamped.id, info.error_type, info.message);
        let policy = self
            .settings
            .resiliency
            .as_ref()
            .and_then(|r| r.select(&info.error_type, &info.mro));
        let Some(policy) = policy else {
            error!(actor, id = %stamped.id, attempt = 1, error_type = %info.error_type, error = %info.message, "handler failed");
            let env = errors::failure_envelope(
                stamped,
                code,
                details,
                info,
                Reason::RuntimeError,
                1,
                actor,
                now,
            );
            return self.fail(&env, what, m::failed::RUNTIME_ERROR).await;
        };
        let attempt = stamped.status.as_ref().map_or(1, |s| s.attempt.max(1));
        let since_first = stamped
            .header_str(headers::FIRST_ATTEMPT)
            .and_then(parse_ts)
            .and_then(|t| Duration::try_from(now - t).ok());
        if !policy.is_exhausted(attempt, since_first) {
            let delay = policy.delay(attempt, rand::random::<f64>());
            let next = format!(
                "attempt {}/{} in {}: {}: {}",
                attempt + 1,
                policy.max_attempts,
                human_delay(delay),
                info.error_type,
                info.message
            );
            warn!(actor, id = %stamped.id, attempt, max_attempts = policy.max_attempts, error_type = %info.error_type, error = %info.message, retry_in = ?delay, "handler failed; retrying");
            let env = lifecycle::retry_envelope(stamped, info, policy.max_attempts, now);
            self.transport
                .send_with_delay(&self.own_queue, Bytes::from(env.to_vec()), delay)
                .await
                .map_err(|e| {
                    self.outage.failed(&self.own_queue, &e);
                    SendFailed
                })?;
            metrics::counter!(m::MESSAGES_SENT, "destination_queue" => self.own_queue.to_string(), "message_type" => m::sent::RETRY).increment(1);
            self.processed(m::processed::RETRIED);
            ActorStats::bump(&self.stats.retried);
            self.stats.record_error(what);
            if let Some(gw) = self.gateway(stamped).await {
                self.reporter
                    .post_event(&gw, &stamped.id, report::retrying(&stamped.route, next))
                    .await;
            }
            return Ok(());
        }
        if !policy.on_exhausted.is_empty() {
            warn!(actor, id = %stamped.id, attempt, error_type = %info.error_type, error = %info.message, to = ?policy.on_exhausted, "handler failed; attempts exhausted, handing the task to onExhausted");
            // The receiver's sidecar clears status.error when it stamps the envelope
            // (§8 step 9), so the error also travels in a header: a flow's Python except
            // router re-raises it from there, as the native one does.
            let error_header = serde_json::json!({
                "type": info.error_type, "message": info.message, "mro": info.mro,
            });
            let mut env = lifecycle::policy_routed_envelope(
                stamped,
                &policy.on_exhausted,
                info,
                policy.max_attempts,
                now,
            );
            env.headers
                .insert(troupe_flow::ERROR_HEADER.to_owned(), error_header);
            let target = route::override_target(&env.headers, &env.route.curr).map(str::to_owned);
            let physical = match target {
                Some(t) => {
                    stamp_resolved(&mut env, &t, actor);
                    t
                }
                None => env.route.curr.clone(),
            };
            if physical == env.route.curr && self.native_router(&physical) {
                // An except router of a compiled flow: run it here, not through its queue.
                let gw = self.gateway(stamped).await;
                self.through_routers(env, gw.as_deref(), 0).await?;
            } else {
                let queue = self.transport.queue_name(&physical);
                self.send(&queue, &env, m::sent::ON_EXHAUSTED).await?;
            }
            self.processed(m::processed::POLICY_ROUTED);
            self.stats.record_error(what);
            return Ok(());
        }
        error!(actor, id = %stamped.id, attempt, max_attempts = policy.max_attempts, error_type = %info.error_type, error = %info.message, "handler failed; attempts exhausted");
        let env = errors::failure_envelope(
            stamped,
            code,
            details,
            info,
            Reason::PolicyExhausted,
            policy.max_attempts,
            actor,
            now,
        );
        self.fail(&env, what, m::failed::POLICY_EXHAUSTED).await
    }

    async fn fail(
        &self,
        env: &Envelope,
        what: String,
        reason: &'static str,
    ) -> Result<(), SendFailed> {
        self.processed(m::processed::ERROR);
        ActorStats::bump(&self.stats.failed);
        self.stats.record_error(what);
        metrics::counter!(m::MESSAGES_FAILED, "queue" => self.settings.actor.clone(), "reason" => reason).increment(1);
        self.to_sink(env).await
    }

    /// §14.1: end-actor processing.
    async fn process_end(
        &self,
        handler: &dyn EndHandler,
        body: &[u8],
    ) -> Result<Disposition, SendFailed> {
        let is_sump = self.settings.actor == self.settings.sump;
        let env = match Envelope::from_slice(body) {
            Ok(mut env) => {
                if is_sump {
                    unparsed::name_anonymous(&mut env);
                }
                env
            }
            Err(e) => {
                // Troupe stores it as a failed task where Asya only logs it (§14.1).
                let text = format!("{}: {e}", errors::TEXT_PARSE_FAILED);
                let err = unparsed::failed_envelope(body, &text, &self.settings.actor, self.now());
                error!(actor = %self.settings.actor, id = %err.id, error = %text, "unparseable message at end actor; stored as a failed task");
                if !is_sump {
                    let what = format!("{}: {text}", err.id);
                    self.to_sump(&err, m::failed::PARSE_ERROR, what).await?;
                    return Ok(Disposition::Acked);
                }
                self.stats.record_error(format!("{}: {text}", err.id));
                err
            }
        };
        self.end_parsed(handler, &env).await?;
        Ok(Disposition::Acked)
    }

    /// §14.1 steps 2–5 on a parsed envelope.
    async fn end_parsed(&self, handler: &dyn EndHandler, env: &Envelope) -> Result<(), SendFailed> {
        let outcome = match handler.handle(env).await {
            Ok(o) => {
                // With a local sink this engine settles no delivery of its own.
                self.outage.succeeded();
                o
            }
            Err(e) => {
                self.outage.failed(&self.own_queue, &e);
                return Err(SendFailed);
            }
        };
        if !outcome.skip_report {
            if self.settings.actor == self.settings.sump && unparsed::is_parse_failure(env) {
                self.adopt(env).await;
            }
            self.final_report(env).await;
        }
        for (actor, hook) in &outcome.sends {
            let queue = self.transport.queue_name(actor);
            self.send(&queue, hook, m::sent::HOOK).await?;
        }
        let phase = env.status.as_ref().map(|s| s.phase);
        debug!(actor = %self.settings.actor, id = %env.id, phase = ?phase, "task reached the end actor");
        if self.settings.actor == self.settings.sink {
            // Paused and canceled tasks (pre-flight diversions) count as neither.
            match phase {
                Some(Phase::Failed) => ActorStats::bump(&self.stats.failed),
                Some(Phase::Succeeded) | None => ActorStats::bump(&self.stats.succeeded),
                Some(_) => {}
            }
        } else {
            ActorStats::bump(&self.stats.failed);
        }
        self.processed(m::processed::END_CONSUMED);
        Ok(())
    }

    /// Gives a parse failure the gateway never saw (its id was generated, or it was
    /// published straight to a queue) a gateway record, so the mesh API lists it. Asked
    /// whether or not the gateway knows the id (a remote gateway cannot be asked
    /// cheaply): adopting leaves an existing record as it is.
    async fn adopt(&self, env: &Envelope) {
        let Some(gw) = report::gateway_target(
            env,
            self.settings.gateway_url.as_deref(),
            &self.settings.gateway_allowed_hosts,
        ) else {
            return;
        };
        let actor = env.status.as_ref().map_or("", |s| s.actor.as_str());
        let payload: Value = serde_json::from_str(env.payload.get()).unwrap_or(Value::Null);
        if !self.reporter.adopt(&gw, &env.id, actor, payload).await {
            debug!(actor = %self.settings.actor, id = %env.id, gateway = %gw, "the gateway keeps no record of this parse failure; it is stored in failed/ only");
        }
    }

    /// §14.1 step 4.
    async fn final_report(&self, env: &Envelope) {
        let Some(gw) = self.gateway(env).await else {
            return;
        };
        let s = &self.settings;
        if env.route.prev.iter().any(|a| a == &s.sink) {
            return;
        }
        if env.headers.contains_key(headers::FAN_IN) && env.parent_id.is_none() {
            return;
        }
        let is_sink = s.actor == s.sink;
        let phase = env.status.as_ref().map(|st| st.phase);
        if is_sink && !matches!(phase, Some(Phase::Succeeded | Phase::Failed)) {
            return;
        }
        let ts = format_ts(self.now());
        let payload: Value = serde_json::from_str(env.payload.get()).unwrap_or(Value::Null);
        let body = if is_sink && phase == Some(Phase::Succeeded) {
            report::final_succeeded(&env.id, &ts, payload)
        } else {
            let status_error = if is_sink {
                env.status.as_ref().and_then(|st| st.error.as_ref())
            } else {
                None
            };
            let error = status_error
                .map(|e| e.message.clone())
                .filter(|m| !m.is_empty())
                .or_else(|| {
                    payload
                        .get("error")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let details = status_error
                .and_then(|e| serde_json::to_value(e).ok())
                .or_else(|| payload.get("details").cloned());
            report::final_failed(&env.id, &ts, &error, details, &env.route)
        };
        self.reporter.post_event(&gw, &env.id, body.clone()).await;
        if let Some(origin) = env.header_str(headers::ORIGIN_ID).filter(|o| *o != env.id) {
            let mut body = body;
            if let Some(d) = body.get_mut("data").and_then(Value::as_object_mut) {
                d.insert("id".into(), Value::String(origin.to_owned()));
            }
            self.reporter.post_event(&gw, origin, body).await;
        }
    }
}

/// `400 ms`, `1.6 s`: a retry delay as `send --wait` shows it.
fn human_delay(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Either a send failure (requeue) or a runtime call failure.
enum DispatchAbort {
    Send(SendFailed),
    Call(RuntimeCallError),
}

impl From<RuntimeCallError> for DispatchAbort {
    fn from(e: RuntimeCallError) -> Self {
        DispatchAbort::Call(e)
    }
}

fn bad_reply(client: &RuntimeClient, message: String) -> DispatchAbort {
    DispatchAbort::Call(RuntimeCallError::Unreachable {
        socket: client.socket().to_path_buf(),
        message,
    })
}

fn stamp_resolved(env: &mut Envelope, target: &str, by: &str) {
    let curr = env.route.curr.clone();
    let entry = env
        .headers
        .entry(route::HEADER_ROUTE_RESOLVED.to_owned())
        .or_insert_with(|| Value::Object(Default::default()));
    if !entry.is_object() {
        *entry = Value::Object(Default::default());
    }
    if let Some(map) = entry.as_object_mut() {
        map.insert(curr, serde_json::json!({"target": target, "by": by}));
    }
}

/// Frame dispatch state of one message (§8.2).
struct Dispatch<'a> {
    engine: &'a Engine,
    input: &'a Envelope,
    gateway: Option<&'a str>,
    started: Instant,
    index: usize,
    failed: Option<ErrorBody>,
}

impl<'a> Dispatch<'a> {
    fn new(
        engine: &'a Engine,
        input: &'a Envelope,
        gateway: Option<&'a str>,
        started: Instant,
    ) -> Self {
        Self {
            engine,
            input,
            gateway,
            started,
            index: 0,
            failed: None,
        }
    }

    async fn frame(&mut self, frame: Frame) -> Result<(), SendFailed> {
        let e = self.engine;
        let s = &e.settings;
        let index = self.index;
        self.index += 1;
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (out, target) = lifecycle::outgoing(
            self.input,
            frame,
            index,
            || uuid::Uuid::new_v4().to_string(),
            &s.actor,
            &s.sink,
            &s.sump,
            e.now(),
        );
        if let Some(gw) = self.gateway {
            if index == 0 && target != lifecycle::Target::Paused {
                e.reporter
                    .post_event(gw, &out.id, report::completed(&out.route, duration_ms))
                    .await;
            }
            if index >= 1 {
                e.reporter
                    .register_child(
                        gw,
                        &self.input.id,
                        report::child(&out.id, &self.input.id, &out.route),
                    )
                    .await;
            }
        }
        debug!(actor = %s.actor, id = %out.id, index, target = ?target, "frame dispatched");
        match target {
            lifecycle::Target::Actor(actor) if e.native_router(&actor) => {
                e.through_routers(out, self.gateway, duration_ms).await
            }
            target => e.deliver(out, target, self.gateway, duration_ms).await,
        }
    }

    /// After the last frame: zero frames → the stamped input goes to x-sink (§8 step 12).
    async fn finish(&mut self) -> Result<(), SendFailed> {
        let e = self.engine;
        ActorStats::bump(&e.stats.succeeded);
        if self.index > 0 {
            e.processed(m::processed::SUCCESS);
            return Ok(());
        }
        let mut env = self.input.clone();
        lifecycle::mark_zero_frames(&mut env, &e.settings.actor, e.now());
        e.processed(m::processed::EMPTY_RESPONSE);
        e.to_sink(&env).await
    }
}
