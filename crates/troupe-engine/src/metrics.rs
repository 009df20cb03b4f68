//! Metric names (platform.md §6.1), defined in one place, and the per-actor counters
//! `troupe status` reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Messages received (`queue`, `transport`).
pub const MESSAGES_RECEIVED: &str = "asya_actor_messages_received_total";
/// Messages processed (`queue`, `status`).
pub const MESSAGES_PROCESSED: &str = "asya_actor_messages_processed_total";
/// Messages sent (`destination_queue`, `message_type`).
pub const MESSAGES_SENT: &str = "asya_actor_messages_sent_total";
/// Failures (`queue`, `reason`).
pub const MESSAGES_FAILED: &str = "asya_actor_messages_failed_total";
/// Runtime errors (`queue`, `error_type`).
pub const RUNTIME_ERRORS: &str = "asya_actor_runtime_errors_total";
/// In-flight messages.
pub const ACTIVE_MESSAGES: &str = "asya_actor_active_messages";
/// Receive → ack (`queue`), seconds.
pub const PROCESSING_DURATION: &str = "asya_actor_processing_duration_seconds";
/// One runtime call (`queue`), seconds.
pub const RUNTIME_EXECUTION_DURATION: &str = "asya_actor_runtime_execution_duration_seconds";
/// Waiting in `receive` (`queue`, `transport`), seconds.
pub const QUEUE_RECEIVE_DURATION: &str = "asya_actor_queue_receive_duration_seconds";
/// One send (`destination_queue`, `transport`), seconds.
pub const QUEUE_SEND_DURATION: &str = "asya_actor_queue_send_duration_seconds";
/// Envelope sizes (`direction` = `received` | `sent`), bytes.
pub const MESSAGE_SIZE: &str = "asya_actor_message_size_bytes";

/// Bucket bounds of the duration histograms: 5 ms to 10 min (platform.md §6.1).
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Bucket bounds of [`MESSAGE_SIZE`]: 256 B to 64 MiB.
pub const SIZE_BUCKETS: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// `status` label values of [`MESSAGES_PROCESSED`].
pub mod processed {
    /// Frames routed.
    pub const SUCCESS: &str = "success";
    /// Zero frames.
    pub const EMPTY_RESPONSE: &str = "empty_response";
    /// End actor consumed it.
    pub const END_CONSUMED: &str = "end_consumed";
    /// Handler failure to x-sink.
    pub const ERROR: &str = "error";
    /// Scheduled for a delayed retry.
    pub const RETRIED: &str = "retried";
    /// Rerouted by `onExhausted`.
    pub const POLICY_ROUTED: &str = "policy_routed";
    /// Frame carried `x-asya-pause`; not routed.
    pub const PAUSED: &str = "paused";
    /// Pre-flight saw a canceled task.
    pub const PREFLIGHT_CANCELED: &str = "preflight_canceled";
    /// Pre-flight saw a paused task.
    pub const PREFLIGHT_PAUSED: &str = "preflight_paused";
    /// SLA expired.
    pub const SLA_EXPIRED: &str = "sla_expired";
}

/// `reason` label values of [`MESSAGES_FAILED`].
pub mod failed {
    /// Body not an envelope.
    pub const PARSE_ERROR: &str = "parse_error";
    /// Wrong actor.
    pub const ROUTE_MISMATCH: &str = "route_mismatch";
    /// Runtime unreachable.
    pub const RUNTIME_ERROR: &str = "runtime_error";
    /// A send failed; input requeued.
    pub const TRANSPORT_ERROR: &str = "transport_error";
    /// A frame was routed to an actor that does not exist.
    pub const ROUTING_ERROR: &str = "routing_error";
    /// Policy exhausted.
    pub const POLICY_EXHAUSTED: &str = "policy_exhausted";
    /// Runtime call or SLA timeout.
    pub const SLA_TIMEOUT: &str = "sla_timeout";
}

/// `message_type` label values of [`MESSAGES_SENT`].
pub mod sent {
    /// To the next actor.
    pub const ROUTING: &str = "routing";
    /// To x-sink.
    pub const SINK: &str = "sink";
    /// To x-sump.
    pub const SUMP: &str = "sump";
    /// To the `onExhausted` actor.
    pub const ON_EXHAUSTED: &str = "on_exhausted";
    /// Delayed retry to the own queue.
    pub const RETRY: &str = "retry";
    /// x-sink hook.
    pub const HOOK: &str = "hook";
}

/// Handles of the counters every message touches, registered once per actor so the
/// per-message path builds no label strings.
#[derive(Debug, Clone)]
pub struct HotCounters {
    /// [`MESSAGES_RECEIVED`] for this actor.
    pub received: metrics::Counter,
    /// [`MESSAGES_PROCESSED`] with status `success`.
    pub success: metrics::Counter,
    /// [`MESSAGES_PROCESSED`] with status `end_consumed`.
    pub end_consumed: metrics::Counter,
    /// [`MESSAGES_SENT`] to the sink queue.
    pub sent_sink: metrics::Counter,
    /// [`PROCESSING_DURATION`] of this actor.
    pub processing: metrics::Histogram,
    /// [`RUNTIME_EXECUTION_DURATION`] of this actor.
    pub runtime_execution: metrics::Histogram,
    /// [`MESSAGE_SIZE`] of received envelopes.
    pub size_received: metrics::Histogram,
    /// [`MESSAGE_SIZE`] of sent envelopes.
    pub size_sent: metrics::Histogram,
    /// [`ACTIVE_MESSAGES`].
    pub active: metrics::Gauge,
    /// [`QUEUE_RECEIVE_DURATION`] of this actor's queue.
    pub receive_wait: metrics::Histogram,
}

impl HotCounters {
    /// Registers the counters of `actor` (whose sink queue is `sink_queue`) on a
    /// transport of kind `transport`.
    pub fn register(actor: &str, sink_queue: &str, transport: &'static str) -> Self {
        let q = actor.to_owned();
        Self {
            received: metrics::counter!(MESSAGES_RECEIVED, "queue" => q.clone(), "transport" => transport),
            success: metrics::counter!(MESSAGES_PROCESSED, "queue" => q.clone(), "status" => processed::SUCCESS),
            end_consumed: metrics::counter!(MESSAGES_PROCESSED, "queue" => q.clone(), "status" => processed::END_CONSUMED),
            sent_sink: metrics::counter!(MESSAGES_SENT, "destination_queue" => sink_queue.to_owned(), "message_type" => sent::SINK),
            processing: metrics::histogram!(PROCESSING_DURATION, "queue" => q.clone()),
            runtime_execution: metrics::histogram!(RUNTIME_EXECUTION_DURATION, "queue" => q.clone()),
            size_received: metrics::histogram!(MESSAGE_SIZE, "direction" => "received"),
            size_sent: metrics::histogram!(MESSAGE_SIZE, "direction" => "sent"),
            active: metrics::gauge!(ACTIVE_MESSAGES, "queue" => q.clone()),
            receive_wait: metrics::histogram!(QUEUE_RECEIVE_DURATION, "queue" => q, "transport" => transport),
        }
    }
}

/// [`QUEUE_SEND_DURATION`] handles by destination queue, registered on first use: an
/// actor sends to a handful of queues, so the map stays small and the label strings
/// are built once per queue rather than per message.
#[derive(Debug, Default)]
pub struct SendDurations {
    by_queue: Mutex<std::collections::HashMap<String, metrics::Histogram>>,
}

impl SendDurations {
    /// Records one send to `queue` over `transport`.
    pub fn record(&self, queue: &str, transport: &'static str, took: std::time::Duration) {
        let Ok(mut map) = self.by_queue.lock() else {
            return;
        };
        if let Some(h) = map.get(queue) {
            h.record(took.as_secs_f64());
            return;
        }
        let h = metrics::histogram!(QUEUE_SEND_DURATION, "destination_queue" => queue.to_owned(), "transport" => transport);
        h.record(took.as_secs_f64());
        map.insert(queue.to_owned(), h);
    }
}

/// Live counters of one actor, shared by all its replicas.
#[derive(Debug, Default)]
pub struct ActorStats {
    /// Messages currently being processed.
    pub in_flight: AtomicU64,
    /// Messages processed without a handler failure.
    pub succeeded: AtomicU64,
    /// Messages that ended in x-sink as failed or in x-sump.
    pub failed: AtomicU64,
    /// Delayed retries scheduled.
    pub retried: AtomicU64,
    /// Inputs requeued after a send failure.
    pub requeued: AtomicU64,
    /// Runtime processes started again after one failed to start, crashed or hung.
    pub restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ActorStats {
    /// Records a failure with its description.
    pub fn record_error(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    /// The last recorded failure.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Increments a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
