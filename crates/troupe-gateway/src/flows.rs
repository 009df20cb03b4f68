//! Flows a task can be started by name (issue 11): `troupe send FLOW`, the mesh API, MCP
//! tools and A2A skills name a flow like an actor; the gateway turns the name into the
//! flow's route and runs its native start routers before publishing, so a compiled flow
//! costs no extra queue hop at its start either.

use std::collections::HashMap;
use std::sync::Arc;

use time::OffsetDateTime;
use troupe_flow::NativeRouters;

use crate::gateway::{Gateway, SINK_ACTOR, SUMP_ACTOR};

/// The flows of a mesh: name → the route a new task gets, plus the native routers.
#[derive(Default)]
pub struct FlowStarts {
    routes: HashMap<String, Vec<String>>,
    descriptions: HashMap<String, String>,
    routers: Option<Arc<NativeRouters>>,
}

impl FlowStarts {
    /// Flows from `(name, entry route, description)`; `routers` runs the native ones.
    pub fn new(
        flows: impl IntoIterator<Item = (String, Vec<String>, Option<String>)>,
        routers: Option<Arc<NativeRouters>>,
    ) -> Self {
        let mut routes = HashMap::new();
        let mut descriptions = HashMap::new();
        for (name, route, description) in flows {
            if let Some(d) = description {
                descriptions.insert(name.clone(), d);
            }
            routes.insert(name, route);
        }
        Self {
            routes,
            descriptions,
            routers,
        }
    }

    /// The route a task sent to flow `name` starts with.
    pub fn route(&self, name: &str) -> Option<&[String]> {
        self.routes.get(name).map(Vec::as_slice)
    }

    /// The flow names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The flow's description, when it has one.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.descriptions.get(name).map(String::as_str)
    }

    /// The native routers, when `actor` is one of them.
    pub(crate) fn native_for(&self, actor: &str) -> Option<&Arc<NativeRouters>> {
        self.routers.as_ref().filter(|r| r.contains(actor))
    }
}

impl Gateway {
    /// Publishes a new task whose first actor is a native flow router: the routers run here
    /// and their envelopes go straight to the actors they chose (fan-out slices registered
    /// as children, a router failure to x-sink as the task's failure).
    pub(crate) async fn publish_through_routers(
        &self,
        routers: &troupe_flow::NativeRouters,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), String> {
        use troupe_engine::flow_routers::{run, RoutersOutcome};
        use troupe_protocol::lifecycle::Target;
        let entering: troupe_protocol::Envelope = serde_json::from_slice(body)
            .map_err(|e| format!("cannot read the new envelope: {e}"))?;
        match run(routers, &entering, SINK_ACTOR, SUMP_ACTOR, now) {
            RoutersOutcome::Failed(env) => {
                self.inner
                    .ingress
                    .publish(SINK_ACTOR, bytes::Bytes::from(env.to_vec()))
                    .await
            }
            RoutersOutcome::Send(outs) => {
                for (k, (out, target)) in outs.into_iter().enumerate() {
                    if k >= 1 {
                        let child =
                            troupe_protocol::report::child(&out.id, &entering.id, &out.route);
                        if let Err(e) = self.register_child(&entering.id, &child).await {
                            tracing::warn!(task = %entering.id, child = %out.id, error = %e, "could not register a fan-out slice of a flow's start");
                        }
                    }
                    let to = match &target {
                        Target::Actor(a) => a.as_str(),
                        Target::Sink | Target::Paused => SINK_ACTOR,
                    };
                    self.inner
                        .ingress
                        .publish(to, bytes::Bytes::from(out.to_vec()))
                        .await?;
                }
                Ok(())
            }
        }
    }
}
