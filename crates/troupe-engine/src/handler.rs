//! Native (Rust) handlers: crew actors run inside the sidecar without a Python runtime.

use async_trait::async_trait;
use troupe_protocol::{Envelope, ErrorInfo, Frame};

/// A handler failure, shaped like the runtime's error reply (protocol.md §7).
#[derive(Debug, Clone)]
pub struct HandlerFailure {
    /// Error code, e.g. `processing_error`.
    pub code: String,
    /// `{message, type, mro, traceback}`; `type` drives policy matching (§9.2).
    pub details: ErrorInfo,
}

impl HandlerFailure {
    /// A `processing_error` with a Python-style type name (`ValueError`, `FileNotFoundError`).
    pub fn new(error_type: &str, mro: &[&str], message: impl Into<String>) -> Self {
        Self {
            code: "processing_error".to_owned(),
            details: ErrorInfo {
                message: message.into(),
                error_type: error_type.to_owned(),
                mro: mro.iter().map(|s| (*s).to_owned()).collect(),
                traceback: String::new(),
            },
        }
    }
}

/// A storage or other infrastructure failure: the input is requeued (protocol.md §14).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Requeue(pub String);

/// The task a native handler's frames belong to, when it is not the input's: frame 0
/// takes this `id` and `parent_id` instead of the input's (§8.2 step 1), and further
/// frames become its children. The fan-in aggregator emits the merged envelope as the
/// origin task, whichever slice completed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    /// Id of frame 0.
    pub id: String,
    /// `parent_id` of frame 0.
    pub parent_id: Option<String>,
}

/// The full answer of a native handler (see [`NativeHandler::reply`]).
#[derive(Debug, Default)]
pub struct NativeReply {
    /// Frames, routes already advanced.
    pub frames: Vec<Frame>,
    /// Emit as this task instead of the input's; `None` = the input's identity.
    pub task: Option<TaskIdentity>,
}

/// Why a native handler produced no reply.
#[derive(Debug)]
pub enum NativeError {
    /// A handler error: goes through the resiliency policy (§9).
    Failed(HandlerFailure),
    /// A storage or other infrastructure failure: the input is requeued (§14).
    Requeue(Requeue),
}

/// A regular actor implemented in Rust (x-pause, x-resume, fan-in; later flow routers).
/// Gets the status-stamped input, returns frames whose routes are already advanced
/// (as the Python runtime would, §5.1), or a handler failure that goes through the
/// resiliency policy like any handler error.
#[async_trait]
pub trait NativeHandler: Send + Sync + 'static {
    /// Processes one envelope.
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure>;

    /// What the engine calls: [`NativeHandler::handle`] unless the handler needs more,
    /// i.e. to emit as another task or to requeue its input on a storage failure.
    async fn reply(&self, input: &Envelope) -> Result<NativeReply, NativeError> {
        match self.handle(input).await {
            Ok(frames) => Ok(NativeReply { frames, task: None }),
            Err(f) => Err(NativeError::Failed(f)),
        }
    }

    /// Called once every frame of `input` was sent and before the ack (x-resume deletes
    /// its saved state here, so a requeue never loses it). An error requeues the input.
    async fn after_dispatch(&self, _input: &Envelope) -> Result<(), Requeue> {
        Ok(())
    }
}

/// What an end actor wants the engine to do besides the final report.
#[derive(Debug, Default)]
pub struct EndOutcome {
    /// Envelopes to send: `(actor, envelope)` (x-sink hooks).
    pub sends: Vec<(String, Envelope)>,
    /// Skip the final report (the envelope already passed the sink, §14.1 (a)).
    pub skip_report: bool,
}

/// An end actor (x-sink, x-sump; protocol.md §14.1) implemented in Rust. The engine
/// does the parse, final report and ack; the handler persists and decides on hooks.
#[async_trait]
pub trait EndHandler: Send + Sync + 'static {
    /// Processes one parsed envelope. `Err` requeues it (storage failure).
    async fn handle(&self, envelope: &Envelope) -> Result<EndOutcome, Requeue>;
}
