//! Native flow routers as one hop: the pure step shared by the sidecar (after a handler's
//! frame) and the gateway (a new task whose flow starts with a router).

use time::OffsetDateTime;
use troupe_flow::NativeRouters;
use troupe_protocol::envelope::{Envelope, ErrorInfo, Frame, Reason};
use troupe_protocol::{errors, lifecycle};

/// What one pass through the native routers produced.
#[derive(Debug)]
pub enum RoutersOutcome {
    /// Envelopes to send, in order, with their destinations. The first keeps the entering
    /// id; the others (a fan-out's slices) are children of it and must be registered.
    Send(Vec<(Envelope, lifecycle::Target)>),
    /// A router failed: this failure envelope goes to x-sink.
    Failed(Box<Envelope>),
}

/// Runs `entering` (its `route.curr` is a native router) through `routers` and stamps
/// every emitted envelope for its destination exactly as a handler's frames are stamped
/// (protocol.md §8.2), with the router as the sending actor.
pub fn run(
    routers: &NativeRouters,
    entering: &Envelope,
    sink: &str,
    sump: &str,
    now: OffsetDateTime,
) -> RoutersOutcome {
    let router = entering.route.curr.clone();
    match routers.run(entering.clone()) {
        Ok(outs) => RoutersOutcome::Send(
            outs.into_iter()
                .enumerate()
                .map(|(k, o)| {
                    let frame = Frame {
                        payload: o.payload,
                        route: o.route,
                        headers: Some(o.headers),
                        status: None,
                    };
                    lifecycle::outgoing(
                        entering,
                        frame,
                        k,
                        || uuid::Uuid::new_v4().to_string(),
                        &router,
                        sink,
                        sump,
                        now,
                    )
                })
                .collect(),
        ),
        Err(f) => {
            let info = ErrorInfo {
                message: f.message,
                error_type: f.error_type,
                mro: f.mro,
                traceback: String::new(),
            };
            RoutersOutcome::Failed(Box::new(errors::failure_envelope(
                &f.envelope,
                "processing_error",
                None,
                info,
                Reason::RuntimeError,
                1,
                &f.router,
                now,
            )))
        }
    }
}
