//! Compiling the mesh file's `flows:` when the mesh starts (issue 11): each Python flow is
//! compiled; the actors it needs are added to the mesh (Python routers, fan-in crew actors,
//! called actors the mesh file does not declare but whose handler the flow names), the
//! error policies of `try` blocks are merged into the called actors, and the native routers
//! are handed to every sidecar engine and to the gateway.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use troupe_flow::{CompileOptions, Flow, NativeRouters};
use troupe_protocol::resiliency::Resiliency;

use crate::config::{ActorConfig, FlowBody, MeshConfig};
use crate::error::MeshError;

/// The module name prefix of the generated Python routers, in `<state>/flows/`: one module
/// per flow (`troupe_flow_routers_<flow>`), because each imports its own flow's file for
/// the code only Python can run, and two flow files need not import the same things.
pub(crate) const ROUTERS_MODULE: &str = "troupe_flow_routers";

/// The generated routers module of flow `name`.
fn routers_module(name: &str) -> String {
    format!("{ROUTERS_MODULE}_{}", name.replace('-', "_"))
}

/// A mesh's compiled flows.
pub(crate) struct MeshFlows {
    /// `(flow name, compiled flow, description)` in file order.
    pub(crate) flows: Vec<(String, Flow, Option<String>)>,
    /// The routers sidecars and the gateway run themselves (`None`: native routers off or
    /// no flow has one).
    pub(crate) native: Option<Arc<NativeRouters>>,
}

impl MeshFlows {
    /// `troupe status`'s view: each flow's route start and how each router runs.
    pub(crate) fn status_json(&self) -> Value {
        Value::Array(
            self.flows
                .iter()
                .map(|(name, f, _)| {
                    let routers: Vec<Value> = f
                        .routers()
                        .map(|r| {
                            let native = self.native.as_ref().is_some_and(|n| n.contains(&r.name));
                            serde_json::json!({"name": r.name, "kind": r.kind.as_str(), "native": native, "why": r.why})
                        })
                        .collect();
                    serde_json::json!({"name": name, "entry": f.entry_route(), "routers": routers})
                })
                .collect(),
        )
    }

    /// The gateway's view: every flow's start route.
    pub(crate) fn starts(&self) -> troupe_gateway::FlowStarts {
        troupe_gateway::FlowStarts::new(
            self.flows
                .iter()
                .map(|(name, f, d)| (name.clone(), f.entry_route(), d.clone())),
            self.native.clone(),
        )
    }
}

fn err(message: impl Into<String>) -> MeshError {
    MeshError::Config(message.into())
}

/// Compiles `config.flows`, adds the actors they need to `config.actors` and writes the
/// Python routers module into `<state>/flows/`.
pub(crate) fn expand(config: &mut MeshConfig, native: bool) -> Result<MeshFlows, MeshError> {
    let mut flows = Vec::new();
    if config.flows.is_empty() {
        return Ok(MeshFlows {
            flows,
            native: None,
        });
    }
    let opts = CompileOptions {
        python: config.python.clone().into(),
        native,
        ..CompileOptions::default()
    };
    for entry in config.flows.clone() {
        if config.actor(&entry.name).is_some() {
            return Err(err(format!(
                "{}:{}: flows: '{}' is also an actor's name: rename the flow or the actor (a task sent to the name must mean one thing)",
                config.file.display(), entry.line, entry.name
            )));
        }
        let flow = match &entry.body {
            FlowBody::Route(route) => troupe_flow::pipeline(&entry.name, route),
            FlowBody::Source { file, function } => {
                compile_one(file, function.as_deref(), &entry.name, &opts)?
            }
        };
        flows.push((entry.name.clone(), flow, entry.description.clone()));
    }
    for (name, flow, _) in &flows {
        add_actors(config, name, flow)?;
    }
    let compiled: Vec<Flow> = flows.iter().map(|(_, f, _)| f.clone()).collect();
    let routers_dir = config.state_dir.join("flows");
    let write = |name: &str, flow: &Flow| {
        let source = troupe_flow::routers_py(std::slice::from_ref(flow));
        std::fs::create_dir_all(&routers_dir).and_then(|()| {
            std::fs::write(
                routers_dir.join(format!("{}.py", routers_module(name))),
                source,
            )
        })
    };
    for (name, flow, _) in &flows {
        write(name, flow).map_err(|e| MeshError::StateDir {
            path: routers_dir.display().to_string(),
            message: format!("cannot write the routers of flow '{name}': {e}"),
        })?;
    }
    let natives = NativeRouters::new(&compiled);
    let native = (native && !natives.is_empty()).then(|| Arc::new(natives));
    Ok(MeshFlows { flows, native })
}

fn compile_one(
    file: &Path,
    function: Option<&str>,
    name: &str,
    opts: &CompileOptions,
) -> Result<Flow, MeshError> {
    let mut compiled = troupe_flow::compile_file(file, function, opts)
        .map_err(|e| err(format!("flow '{name}' does not compile:\n{e}")))?;
    match compiled.len() {
        1 => Ok(compiled.remove(0)),
        0 => Err(err(format!(
            "flow '{name}': {} defines no flow function: name one with source: {}:FUNCTION",
            file.display(),
            file.display()
        ))),
        _ => Err(err(format!(
            "flow '{name}': {} defines several flows ({}): name one with source: {}:FUNCTION",
            file.display(),
            compiled
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            file.display()
        ))),
    }
}

/// Adds what flow `name` runs to the mesh: called actors (declared, or generated from the
/// handler the flow names), Python routers and fan-in actors; merges `try` policies.
fn add_actors(config: &mut MeshConfig, name: &str, flow: &Flow) -> Result<(), MeshError> {
    for used in flow.actors() {
        if config.actor(&used.name).is_none() {
            let Some(handler) = used.handler.as_deref() else {
                return Err(err(format!(
                    "flow '{name}' calls actor '{}' ({}:{}), which the mesh file does not declare: add it under actors:\n  - actor: {}\n    handler: module.function",
                    used.name, flow_file(flow), used.line, used.name
                )));
            };
            let actor = ActorConfig::generated(&used.name, handler, config);
            config.actors.push(actor);
        }
        if let Some(actor) = config.actors.iter_mut().find(|a| a.name == used.name) {
            merge_resiliency(actor, &used.resiliency).map_err(|e| {
                err(format!(
                    "flow '{name}': the error handling it gives actor '{}' does not combine with the actor's resiliency: {e}",
                    used.name
                ))
            })?;
        }
    }
    let module = routers_module(name);
    let handler_of = |r: &str| format!("{module}.{}", r.replace('-', "_"));
    let python_routers: BTreeSet<String> = flow.python_routers().map(|r| r.name.clone()).collect();
    for r in flow.routers().filter(|r| python_routers.contains(&r.name)) {
        if config.actor(&r.name).is_some() {
            continue;
        }
        let mut actor = ActorConfig::generated(&r.name, &handler_of(&r.name), config);
        // Routers are on every path of the flow: keep one warm, as Asya's router
        // deployments are.
        actor.scaling.min = 1;
        actor.scaling.max = 2;
        merge_resiliency(&mut actor, &r.resiliency)
            .map_err(|e| err(format!("flow '{name}': router '{}': {e}", r.name)))?;
        config.actors.push(actor);
    }
    for fanin in flow.fanins() {
        if config.actor(fanin).is_none() {
            config.actors.push(ActorConfig::fan_in(fanin, None));
        }
    }
    Ok(())
}

fn flow_file(flow: &Flow) -> String {
    flow.program.file.clone()
}

/// Merges the flow's `{actorTimeout?, policies, rules}` into the actor: the flow's rules
/// come first (they send a `try` block's errors to its except router), the actor's own
/// rules and policies after; a flow timeout applies only where the actor sets none.
fn merge_resiliency(actor: &mut ActorConfig, add: &Value) -> Result<(), String> {
    let Some(add) = add.as_object().filter(|m| !m.is_empty()) else {
        return Ok(());
    };
    if let Some(t) = add.get("actorTimeout").and_then(Value::as_str) {
        if actor.actor_timeout == crate::config::DEFAULT_ACTOR_TIMEOUT {
            actor.actor_timeout = troupe_protocol::duration::parse_go_duration(t)
                .map_err(|e| format!("actorTimeout {t}: {e}"))?;
        }
    }
    let mut policies: Map<String, Value> = actor
        .policies_json
        .as_ref()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(p) = add.get("policies").and_then(Value::as_object) {
        for (k, v) in p {
            if let Some(existing) = policies.get(k) {
                if existing != v && k != "default" {
                    return Err(format!(
                        "policy '{k}' is defined differently by the actor and the flow"
                    ));
                }
            }
            policies.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let mut rules: Vec<Value> = add
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(own) = actor.rules_json.as_ref().and_then(Value::as_array) {
        rules.extend(own.iter().cloned());
    }
    if policies.is_empty() && rules.is_empty() {
        return Ok(());
    }
    let policies = Value::Object(policies);
    let rules = Value::Array(rules);
    actor.resiliency =
        Resiliency::from_values(Some(&policies), Some(&rules)).map_err(|e| e.to_string())?;
    actor.policies_json = Some(policies);
    actor.rules_json = Some(rules);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn actor() -> ActorConfig {
        let (mesh, _) = MeshConfig::from_source(
            Path::new("/tmp/troupe.yaml"),
            "actors:\n  - actor: a\n    handler: h.a\n    resiliency:\n      policies: {slow: {maxAttempts: 3}}\n      rules: [{errors: [TimeoutError], policy: slow}]\n",
        )
        .unwrap();
        mesh.actors[0].clone()
    }

    #[test]
    fn flow_rules_come_before_the_actors_own() {
        let mut a = actor();
        merge_resiliency(
            &mut a,
            &json!({"policies": {"try_except_line_3_0": {"maxAttempts": 1, "onExhausted": ["router-f-except-line-5"]}},
                    "rules": [{"errors": ["ValueError"], "policy": "try_except_line_3_0"}]}),
        )
        .unwrap();
        let rules = a.rules_json.unwrap();
        assert_eq!(rules[0]["policy"], "try_except_line_3_0");
        assert_eq!(rules[1]["policy"], "slow");
        let r = a.resiliency.unwrap();
        let p = r.select("ValueError", &[]).unwrap();
        assert_eq!(p.on_exhausted, vec!["router-f-except-line-5".to_owned()]);
        assert_eq!(r.select("TimeoutError", &[]).unwrap().max_attempts, 3);
    }

    #[test]
    fn a_conflicting_policy_is_refused() {
        let mut a = actor();
        let e = merge_resiliency(&mut a, &json!({"policies": {"slow": {"maxAttempts": 9}}}))
            .unwrap_err();
        assert!(e.contains("policy 'slow'"), "{e}");
    }

    #[test]
    fn the_flow_timeout_applies_where_the_actor_sets_none() {
        let mut a = actor();
        merge_resiliency(&mut a, &json!({"actorTimeout": "30s"})).unwrap();
        assert_eq!(a.actor_timeout, std::time::Duration::from_secs(30));
    }
}
