//! Flows a task can be started by name (issue 11): `troupe send FLOW`, the mesh API, MCP
//! tools and A2A skills name a flow like an actor; the gateway turns the name into the
//! flow's route and runs its native start routers before publishing, so a compiled flow
//! costs no extra queue hop at its start either.

use std::collections::HashMap;
use std::sync::Arc;

use troupe_flow::NativeRouters;

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
