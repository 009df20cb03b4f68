//! Native flow routers (platform.md §4.2, issue 11): a frame whose next actor is a
//! router the engine can run itself goes through it here, in the sidecar that finished the
//! previous step, with no queue hop and no Python process.

use serde_json::Value;
use tracing::{debug, warn};
use troupe_protocol::envelope::{Envelope, Reason};
use troupe_protocol::{errors, headers, lifecycle, report};

use super::{Engine, SendFailed};
use crate::flow_routers::RoutersOutcome;
use crate::metrics as m;

impl Engine {
    /// Whether `actor` is a router this engine runs itself.
    pub(super) fn native_router(&self, actor: &str) -> bool {
        self.settings
            .native_routers
            .as_ref()
            .is_some_and(|r| r.contains(actor))
    }

    /// Runs `entering` (its `route.curr` is a native router) through the native routers and
    /// sends what they emit: one envelope, or a fan-out's slices (slice 0 keeps the id, the
    /// others become children of it, protocol.md §12). A router that fails (a condition
    /// raising, a loop over its limit, a compiled `raise`) fails the task at x-sink with the
    /// router as the failing actor, as its Python router actor would.
    pub(super) async fn through_routers(
        &self,
        entering: Envelope,
        gateway: Option<&str>,
        duration_ms: u64,
    ) -> Result<(), SendFailed> {
        let Some(routers) = self.settings.native_routers.clone() else {
            let target = lifecycle::Target::Actor(entering.route.curr.clone());
            return self.deliver(entering, target, gateway, duration_ms).await;
        };
        match crate::flow_routers::run(
            &routers,
            &entering,
            &self.settings.sink,
            &self.settings.sump,
            self.now(),
        ) {
            RoutersOutcome::Send(outs) => {
                for (k, (out, target)) in outs.into_iter().enumerate() {
                    if k >= 1 {
                        if let Some(gw) = gateway {
                            self.reporter
                                .register_child(
                                    gw,
                                    &entering.id,
                                    report::child(&out.id, &entering.id, &out.route),
                                )
                                .await;
                        }
                    }
                    debug!(actor = %self.settings.actor, router = %entering.route.curr, id = %out.id, target = ?target, "native router dispatched");
                    self.deliver(out, target, gateway, duration_ms).await?;
                }
                Ok(())
            }
            RoutersOutcome::Failed(env) => {
                let (router, error) = env
                    .status
                    .as_ref()
                    .map(|s| {
                        (
                            s.actor.clone(),
                            s.error
                                .as_ref()
                                .map(|e| format!("{}: {}", e.error_type, e.message))
                                .unwrap_or_default(),
                        )
                    })
                    .unwrap_or_default();
                warn!(actor = %self.settings.actor, router = %router, id = %entering.id, error = %error, "flow router failed");
                metrics::counter!(m::MESSAGES_FAILED, "queue" => router, "reason" => m::failed::RUNTIME_ERROR).increment(1);
                self.to_sink(&env).await
            }
        }
    }

    /// Sends a dispatched envelope where `target` says (§8.2 steps 4–7).
    pub(super) async fn deliver(
        &self,
        out: Envelope,
        target: lifecycle::Target,
        gateway: Option<&str>,
        duration_ms: u64,
    ) -> Result<(), SendFailed> {
        match target {
            lifecycle::Target::Paused => {
                if let Some(gw) = gateway {
                    let meta = out
                        .headers
                        .get(headers::PAUSE)
                        .cloned()
                        .unwrap_or(Value::Null);
                    self.reporter
                        .post_event(gw, &out.id, report::paused(&out.route, duration_ms, &meta))
                        .await;
                }
                self.processed(m::processed::PAUSED);
                Ok(())
            }
            lifecycle::Target::Sink => self.to_sink(&out).await,
            lifecycle::Target::Actor(actor) => {
                if let Some(known) = &self.settings.known_actors {
                    if !known.contains(&actor) {
                        let text = format!(
                            "Unknown actor '{actor}' in route: no actor of that name runs in this mesh (check the route or the handler's SET .route.next)"
                        );
                        let err = errors::error_envelope(
                            &out,
                            Reason::RuntimeError,
                            &text,
                            None,
                            &self.settings.actor,
                            self.now(),
                        );
                        return self
                            .to_sump(
                                &err,
                                m::failed::ROUTING_ERROR,
                                format!("{}: {text}", out.id),
                            )
                            .await;
                    }
                }
                let queue = self.transport.queue_name(&actor);
                self.send(&queue, &out, m::sent::ROUTING).await
            }
        }
    }
}
