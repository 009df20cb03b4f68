//! The `flows:` section of the mesh file.
//!
//! ```yaml
//! flows:
//!   - name: research            # started as `troupe send research …`, an MCP tool, an A2A skill
//!     source: flows.py:research # a Python flow (platform.md §4), compiled when `troupe up` starts
//!   - name: text
//!     route: [clean, analyse, summarize]   # a fixed pipeline, no DSL
//! ```

use std::path::PathBuf;

use serde_yaml::Value;

use super::{is_dns_label, Checker, FieldPath, MeshConfig};

const FLOW_FIELDS: &[&str] = &["name", "source", "route", "description"];

/// One entry of `flows:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEntry {
    /// Flow name: what a task is sent to (DNS label, distinct from every actor).
    pub name: String,
    /// What the flow runs.
    pub body: FlowBody,
    /// Shown by `tools/list` and the agent card; the flow's docstring when absent.
    pub description: Option<String>,
    /// 1-based line of the entry's `name` in the mesh file.
    pub line: usize,
}

/// What a flow runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowBody {
    /// A Python flow: the file (absolute) and the function (`None`: the file's only flow).
    Source {
        /// The `.py` file.
        file: PathBuf,
        /// The flow function, `file.py:function`.
        function: Option<String>,
    },
    /// A fixed pipeline of actors.
    Route(Vec<String>),
}

impl Checker<'_> {
    /// `flows:`.
    pub(super) fn flows(&mut self, v: &Value, p: &FieldPath, mesh: &mut MeshConfig) {
        let Some(items) = self.seq(v, p) else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let q = p.index(i);
            if let Some(entry) = self.flow(item, &q, mesh) {
                if mesh.flows.iter().any(|f| f.name == entry.name) {
                    self.error(
                        &q.key("name"),
                        format!(
                            "flow '{}' is defined twice: give each flow its own name",
                            entry.name
                        ),
                    );
                } else {
                    mesh.flows.push(entry);
                }
            }
        }
    }

    fn flow(&mut self, v: &Value, p: &FieldPath, mesh: &MeshConfig) -> Option<FlowEntry> {
        let m = self.mapping(v, p, "a flow {name, source | route}")?;
        let f = self.fields(m, p, FLOW_FIELDS);
        let nq = p.key("name");
        let name = match f.get("name") {
            Some(v) => self.string(v, &nq)?,
            None => {
                self.error(
                    &nq,
                    "missing required field 'name': add name: <flow name> (a DNS label)",
                );
                return None;
            }
        };
        if !is_dns_label(&name) {
            self.error(&nq, format!("invalid flow name '{name}': use a DNS label (lowercase letters, digits and '-', at most 63 characters)"));
            return None;
        }
        let description = f
            .get("description")
            .and_then(|v| self.string(v, &p.key("description")));
        let body = match (f.get("source"), f.get("route")) {
            (Some(s), None) => {
                let sq = p.key("source");
                let text = self.non_empty_string(s, &sq)?;
                let (file, function) = match text.rsplit_once(':') {
                    Some((file, func)) if !func.is_empty() && !func.contains('/') => {
                        (file.to_owned(), Some(func.to_owned()))
                    }
                    _ => (text.clone(), None),
                };
                if !file.ends_with(".py") {
                    self.error(&sq, format!("invalid source '{text}': give a Python file and its flow function, e.g. flows.py:{}", name.replace('-', "_")));
                    return None;
                }
                let path = mesh.root.join(&file);
                if !path.is_file() {
                    self.error(&sq, format!("flow source {} does not exist (paths are relative to the mesh file's folder)", path.display()));
                    return None;
                }
                FlowBody::Source {
                    file: path,
                    function,
                }
            }
            (None, Some(r)) => {
                let rq = p.key("route");
                let items = self.seq(r, &rq)?;
                let mut route = Vec::new();
                for (i, a) in items.iter().enumerate() {
                    route.push(self.actor_name(a, &rq.index(i))?);
                }
                if route.is_empty() {
                    self.error(
                        &rq,
                        "empty route: list the actors the flow runs, e.g. route: [clean, analyse]",
                    );
                    return None;
                }
                FlowBody::Route(route)
            }
            (Some(_), Some(_)) => {
                self.error(p, format!("flow '{name}' has both source and route: keep one (source: a Python flow, route: a fixed list of actors)"));
                return None;
            }
            (None, None) => {
                self.error(p, format!("flow '{name}' has neither source nor route: add source: flows.py:{} or route: [actor, …]", name.replace('-', "_")));
                return None;
            }
        };
        let line = self.line_of(self.doc, &nq);
        Some(FlowEntry {
            name,
            body,
            description,
            line,
        })
    }
}

impl super::ActorConfig {
    /// An actor the mesh adds for a flow (a Python router, an actor whose handler the flow
    /// names): every setting at its default, the mesh's interpreter and runtime.
    pub fn generated(name: &str, handler: &str, mesh: &MeshConfig) -> Self {
        let spec = troupe_resource::AsyncActorSpec {
            actor: name.to_owned(),
            handler: handler.to_owned(),
            ..Default::default()
        };
        Self {
            name: name.to_owned(),
            handler: handler.to_owned(),
            python: mesh.python.clone(),
            runtime: mesh.runtime.clone(),
            env: Vec::new(),
            scaling: super::Scaling::default(),
            actor_timeout: super::DEFAULT_ACTOR_TIMEOUT,
            resiliency: None,
            policies_json: None,
            rules_json: None,
            concurrency: 1,
            pipeline: troupe_engine::settings::DEFAULT_PIPELINE,
            line: 0,
            spec,
            crew: None,
        }
    }
}
