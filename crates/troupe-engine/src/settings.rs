//! Per-actor engine settings (protocol.md §15 sidecar variables).

use std::time::Duration;

use troupe_protocol::resiliency::Resiliency;

/// Default [`ActorSettings::pipeline`]: the ceiling of the adaptive depth
/// ([`crate::tuner`]); fast handlers reach it, slow ones run with none.
pub const DEFAULT_PIPELINE: usize = 4;

/// What one actor's sidecar engine needs to know.
#[derive(Debug, Clone)]
pub struct ActorSettings {
    /// `ASYA_ACTOR_NAME`.
    pub actor: String,
    /// `ASYA_ACTOR_SINK`.
    pub sink: String,
    /// `ASYA_ACTOR_SUMP`.
    pub sump: String,
    /// `ASYA_RESILIENCY_ACTOR_TIMEOUT`.
    pub actor_timeout: Duration,
    /// Parsed `ASYA_RESILIENCY_POLICIES` / `_RULES`; `None` = not configured.
    pub resiliency: Option<Resiliency>,
    /// `TROUPE_CONCURRENCY`: messages in the handler at once per replica.
    pub concurrency: usize,
    /// `TROUPE_PIPELINE`: per worker, at most this many messages whose handler is done
    /// may still wait for the broker to confirm their sends while the next message runs
    /// (0: none). The engine adapts the depth below it ([`crate::tuner`]).
    pub pipeline: usize,
    /// The prefetch never goes below this (`ASYA_RABBITMQ_PREFETCH`).
    pub min_prefetch: usize,
    /// `ASYA_GATEWAY_URL`.
    pub gateway_url: Option<String>,
    /// `TROUPE_GATEWAY_ALLOWED_HOSTS`.
    pub gateway_allowed_hosts: Vec<String>,
    /// Grace period for in-flight messages on shutdown.
    pub shutdown_grace: Duration,
    /// Every actor that consumes a queue, when known (`troupe up` knows its mesh): a frame
    /// routed to any other actor goes to x-sump instead of a queue nobody reads.
    pub known_actors: Option<std::sync::Arc<std::collections::HashSet<String>>>,
    /// Flow routers this engine runs itself instead of sending to their queues.
    pub native_routers: Option<std::sync::Arc<troupe_flow::NativeRouters>>,
}

impl ActorSettings {
    /// Settings with the spec defaults for `actor`.
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            sink: "x-sink".to_owned(),
            sump: "x-sump".to_owned(),
            actor_timeout: Duration::from_secs(300),
            resiliency: None,
            concurrency: 1,
            pipeline: DEFAULT_PIPELINE,
            min_prefetch: 1,
            gateway_url: None,
            gateway_allowed_hosts: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            known_actors: None,
            native_routers: None,
        }
    }

    /// The prefetch a consumer starts with: every worker running one message with one
    /// settling (none with `pipeline: 0`); the engine changes it as it adapts.
    pub fn initial_prefetch(&self) -> usize {
        self.concurrency
            .max(1)
            .saturating_mul(1 + self.pipeline.min(1))
            .max(self.min_prefetch)
    }

    /// True for the end actors (x-sink, x-sump).
    pub fn is_end_actor(&self) -> bool {
        self.actor == self.sink || self.actor == self.sump
    }
}
