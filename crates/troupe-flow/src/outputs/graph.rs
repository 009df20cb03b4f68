//! `graph.json` (platform.md §4.3, Troupe schema):
//!
//! ```json
//! {"flow": "research",
//!  "nodes": [{"id": "start-research", "label": "research", "kind": "start", "router": "start", "native": true},
//!            {"id": "plan", "label": "plan", "kind": "actor", "line": 3},
//!            {"id": "router-research-if-line-4", "label": "if p['needs_search']", "kind": "router",
//!             "router": "if", "native": false, "why": "calls open(), which only a Python router can run"}],
//!  "edges": [{"from": "plan", "to": "router-research-if-line-4"},
//!            {"from": "router-research-if-line-4", "to": "search", "label": "p['needs_search']"},
//!            {"from": "write", "to": "router-research-except-line-8", "label": "except RateLimitError", "error": true}],
//!  "groups": [{"id": "...", "label": "...", "nodes": ["..."]}]}
//! ```
//!
//! Beyond the schema's fields, a router node carries `router` (what it does: `if`, `while`,
//! `seq`, `fanout`, `fanin`, ...), `native` (runs inside the sidecar) and `why` (when it
//! does not), nodes from source carry `line`, and an edge taken on an error carries
//! `error: true`. Exactly one node has kind `start` and one kind `end`: the flow's start and
//! end routers when it has them, else nodes `start-<flow>` / `end-<flow>` standing for the
//! gateway's first send and the finished task (a fixed pipeline has no routers).
//!
//! **How edges are found.** A router's behaviour is an [`Op`] on the route (`route.next`),
//! so the graph is what the routes can become: starting from the entry route, each step
//! takes the route's head and computes every route it can hand on (both branches of an
//! `if`, body and exit of a `while`, each slice of a fan-out, the except router an error
//! leads to through `catch` or the actor's `onExhausted`). Each distinct route is visited
//! once; a loop comes back to a route already seen, so the walk ends. An edge goes from the
//! head to the next route's head, or to the end node when the route is empty.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::short;
use crate::{Flow, Op, RouterInfo, RouterKind};

/// Most distinct routes the walk visits; a compiled flow has far fewer (each loop or branch
/// adds a handful), so reaching it means a program that was not built by the compiler.
const MAX_ROUTES: usize = 50_000;
/// Longest node or edge label, in characters.
const LABEL_MAX: usize = 60;

/// The drawn graph of one flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Flow name.
    pub flow: String,
    /// Nodes: the start node first, the end node last, the rest in the order the walk
    /// reached them.
    pub nodes: Vec<Node>,
    /// Edges in the order the walk found them, each once.
    pub edges: Vec<Edge>,
    /// Sub-flows drawn as groups.
    pub groups: Vec<Group>,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Where a task enters.
    Start,
    /// Where a task finishes.
    End,
    /// A router or a fan-in aggregator.
    Router,
    /// A handler actor.
    Actor,
}

/// One node: an actor, router or fan-in of the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Actor name (the queue's name part).
    pub id: String,
    /// What to print in the box.
    pub label: String,
    /// Start, end, router or actor.
    pub kind: NodeKind,
    /// The group (sub-flow) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What the router does (`start`, `end`, `seq`, `if`, `while`, `break`, `continue`,
    /// `return`, `except`, `raise`, `fanout`, `fanin`); absent on actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Runs inside the sidecar (no Python, no queue hop); absent on actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<bool>,
    /// Why a router is not native.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Source line, when the node comes from source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// One edge: where a message can go next.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Edge {
    /// Node id it leaves.
    pub from: String,
    /// Node id it reaches.
    pub to: String,
    /// Condition, loop exit, slice or except clause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Taken when the source fails with a matching error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
}

/// A sub-flow drawn as a box around its nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Its label (the sub-flow's name).
    pub label: String,
    /// Node ids inside.
    pub nodes: Vec<String>,
}

impl Graph {
    /// `graph.json`: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// The graph of a compiled flow (see the module documentation for how edges are found).
pub fn graph(flow: &Flow) -> Graph {
    Walk::new(flow).run()
}

/// A route the walk may hand on, and how the edge to it is drawn.
struct Next {
    route: Vec<String>,
    label: Option<String>,
    error: bool,
}

impl Next {
    fn plain(route: Vec<String>) -> Next {
        Next {
            route,
            label: None,
            error: false,
        }
    }
    fn labelled(route: Vec<String>, label: impl Into<String>) -> Next {
        Next {
            route,
            label: Some(short(&label.into(), LABEL_MAX)),
            error: false,
        }
    }
}

struct Walk<'a> {
    flow: &'a Flow,
    routers: HashMap<&'a str, &'a RouterInfo>,
    fanins: HashSet<&'a str>,
    start: String,
    end: String,
    order: Vec<String>,
    reached: HashSet<String>,
    edges: Vec<Edge>,
    edge_set: HashSet<Edge>,
}

impl<'a> Walk<'a> {
    fn new(flow: &'a Flow) -> Walk<'a> {
        let routers: HashMap<&str, &RouterInfo> =
            flow.routers().map(|r| (r.name.as_str(), r)).collect();
        let slug = flow.name.replace('_', "-");
        let start = flow
            .routers()
            .find(|r| r.kind == RouterKind::Start)
            .map_or_else(|| format!("start-{slug}"), |r| r.name.clone());
        // The flow's own end marker (`end-<flow>`); an inlined sub-flow's marker
        // (`end-<flow>-<sub>-line-N`) is a router in the middle.
        let end = format!("end-{slug}");
        Walk {
            flow,
            routers,
            fanins: flow.fanins().collect(),
            start,
            end,
            order: Vec::new(),
            reached: HashSet::new(),
            edges: Vec::new(),
            edge_set: HashSet::new(),
        }
    }

    fn run(mut self) -> Graph {
        let entry = self.flow.entry_route();
        let start = self.start.clone();
        self.reach(&start);
        let mut queue: VecDeque<Vec<String>> = VecDeque::new();
        let mut seen: HashSet<Vec<String>> = HashSet::new();
        if entry.first() != Some(&start) {
            // No start router: the gateway sends the entry route itself.
            self.edge(
                &start,
                entry.first().unwrap_or(&self.end.clone()),
                None,
                false,
            );
        }
        if !entry.is_empty() {
            queue.push_back(entry);
        }
        while let Some(route) = queue.pop_front() {
            if seen.len() >= MAX_ROUTES {
                break;
            }
            if !seen.insert(route.clone()) {
                continue;
            }
            let (head, rest) = match route.split_first() {
                Some(split) => split,
                None => continue,
            };
            self.reach(head);
            for next in self.next(head, rest) {
                let to = next
                    .route
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.end.clone());
                if next.route.is_empty() && *head == self.end {
                    continue;
                }
                self.edge(head, &to, next.label, next.error);
                if !next.route.is_empty() && !seen.contains(&next.route) {
                    queue.push_back(next.route);
                }
            }
        }
        self.finish()
    }

    fn reach(&mut self, id: &str) {
        if self.reached.insert(id.to_owned()) {
            self.order.push(id.to_owned());
        }
    }

    fn edge(&mut self, from: &str, to: &str, label: Option<String>, error: bool) {
        let e = Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            label,
            error,
        };
        if self.edge_set.insert(e.clone()) {
            self.edges.push(e);
        }
    }

    /// Every route `head` can hand on when the rest of the route is `rest`.
    fn next(&self, head: &str, rest: &[String]) -> Vec<Next> {
        let then =
            |steps: &[String]| -> Vec<String> { steps.iter().chain(rest).cloned().collect() };
        let Some(r) = self.routers.get(head) else {
            let mut out = vec![Next::plain(rest.to_vec())];
            if let Some(a) = self.flow.actors().find(|a| a.name == head) {
                out.extend(error_edges(&a.resiliency));
            }
            return out;
        };
        let mut out = match &r.op {
            Op::Prepend { steps } => vec![Next::plain(then(steps))],
            Op::Pass | Op::Seq { .. } => vec![Next::plain(rest.to_vec())],
            Op::If {
                test,
                then: t,
                orelse,
            } => vec![
                Next::labelled(then(t), test.code.as_str()),
                Next::labelled(then(orelse), "else"),
            ],
            Op::While { test, body, .. } => {
                let mut looped: Vec<String> = body.clone();
                looped.push(head.to_owned());
                looped.extend(rest.iter().cloned());
                let cond = test.as_ref().map_or("True", |t| t.code.as_str());
                let mut v = vec![Next::labelled(looped, cond)];
                if test.is_some() {
                    v.push(Next::labelled(rest.to_vec(), "exit"));
                }
                v
            }
            Op::Jump {
                marker,
                inclusive,
                prepend,
                ..
            } => {
                let after = match rest.iter().position(|s| s == marker) {
                    Some(i) if *inclusive => &rest[i + 1..],
                    Some(i) => &rest[i..],
                    None => &[],
                };
                vec![Next::plain(prepend.iter().chain(after).cloned().collect())]
            }
            Op::Except { steps, .. } => vec![Next::plain(steps.clone())],
            Op::Raise { .. } => vec![],
            Op::Fanout { fanin, calls, .. } => {
                if calls.is_empty() {
                    vec![Next::plain(then(std::slice::from_ref(fanin)))]
                } else {
                    calls
                        .iter()
                        .map(|c| {
                            Next::labelled(
                                then(&[c.actor.clone(), fanin.clone()]),
                                c.arg.code.as_str(),
                            )
                        })
                        .collect()
                }
            }
            Op::FanoutEach {
                fanin,
                actor,
                var,
                iterable,
                ..
            } => vec![Next::labelled(
                then(&[actor.clone(), fanin.clone()]),
                format!("for {var} in {}", iterable.code),
            )],
        };
        for c in &r.catch {
            out.push(Next {
                route: vec![c.target.clone()],
                label: Some(short(&except_label(&c.errors), LABEL_MAX)),
                error: true,
            });
        }
        if r.catch.is_empty() {
            out.extend(error_edges(&r.resiliency));
        }
        out
    }

    fn finish(mut self) -> Graph {
        // Whatever the walk did not reach is still drawn (nothing the program holds is hidden).
        let unreached: Vec<String> = self
            .flow
            .routers()
            .map(|r| r.name.clone())
            .chain(self.flow.actors().map(|a| a.name.clone()))
            .chain(self.flow.fanins().map(str::to_owned))
            .collect();
        for id in unreached {
            self.reach(&id);
        }
        let end = self.end.clone();
        self.order.retain(|id| *id != end);
        self.order.push(end);
        let mut nodes: Vec<Node> = self.order.iter().map(|id| self.node(id)).collect();
        // An except router is labelled with its clause, which only the edges into it know.
        for n in nodes
            .iter_mut()
            .filter(|n| n.router.as_deref() == Some("except"))
        {
            if let Some(l) = self
                .edges
                .iter()
                .find(|e| e.error && e.to == n.id)
                .and_then(|e| e.label.clone())
            {
                n.label = l;
            }
        }
        Graph {
            flow: self.flow.name.clone(),
            nodes,
            edges: self.edges,
            groups: Vec::new(),
        }
    }

    fn node(&self, id: &str) -> Node {
        let kind = if id == self.start {
            NodeKind::Start
        } else if id == self.end {
            NodeKind::End
        } else if self.routers.contains_key(id) || self.fanins.contains(id) {
            NodeKind::Router
        } else {
            NodeKind::Actor
        };
        let mut node = Node {
            id: id.to_owned(),
            label: id.to_owned(),
            kind,
            group: None,
            router: None,
            native: None,
            why: None,
            line: None,
        };
        if let Some(r) = self.routers.get(id) {
            node.label = router_label(r, &self.flow.name);
            node.router = Some(r.kind.as_str().to_owned());
            node.native = Some(r.native);
            node.why = r.why.clone().filter(|_| !r.native);
            node.line = (r.line > 0).then_some(r.line);
        } else if self.fanins.contains(id) {
            // The fan-in aggregator is a crew actor: no Python, no user code.
            node.label = "fan-in".to_owned();
            node.router = Some("fanin".to_owned());
            node.native = Some(true);
        } else if let Some(a) = self.flow.actors().find(|a| a.name == id) {
            node.line = (a.line > 0).then_some(a.line);
        }
        match kind {
            NodeKind::Start if !self.routers.contains_key(id) => {
                node.label = self.flow.name.clone()
            }
            NodeKind::End => node.label = "end".to_owned(),
            _ => {}
        }
        node
    }
}

fn router_label(r: &RouterInfo, flow: &str) -> String {
    let text = match &r.op {
        Op::Prepend { .. } if r.kind == RouterKind::Start => flow.to_owned(),
        // The flow's own end node is relabelled `end`; others close an inlined sub-flow.
        Op::Pass if r.kind == RouterKind::End => "end of sub-flow".to_owned(),
        Op::If { test, .. } => format!("if {}", test.code),
        Op::While { test, .. } => format!(
            "while {}",
            test.as_ref().map_or("True", |t| t.code.as_str())
        ),
        Op::Seq { stmts } => stmts
            .iter()
            .map(|s| s.code.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        Op::Raise {
            error_type: Some(t),
            message: Some(m),
        } => format!("raise {t}({m:?})"),
        Op::Raise {
            error_type: Some(t),
            ..
        } => format!("raise {t}"),
        Op::Raise { .. } => "raise".to_owned(),
        Op::Fanout { key, .. } | Op::FanoutEach { key, .. } => format!("fan-out {key}"),
        _ => r.kind.as_str().to_owned(),
    };
    short(&text, LABEL_MAX)
}

fn except_label(errors: &[String]) -> String {
    if errors.is_empty() {
        "except".to_owned()
    } else {
        format!("except {}", errors.join(", "))
    }
}

/// Error edges of an AsyncActor `resiliency` value: each rule whose policy has
/// `onExhausted` leads there; a `default` policy no rule names catches everything (a bare
/// `except`).
fn error_edges(resiliency: &Value) -> Vec<Next> {
    let policies: BTreeMap<&str, Vec<String>> = resiliency
        .get("policies")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(name, p)| {
                    let to: Vec<String> = p
                        .get("onExhausted")?
                        .as_array()?
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect();
                    (!to.is_empty()).then_some((name.as_str(), to))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut used = HashSet::new();
    let mut out = Vec::new();
    for rule in resiliency
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(policy) = rule.get("policy").and_then(Value::as_str) else {
            continue;
        };
        let Some(to) = policies.get(policy) else {
            continue;
        };
        used.insert(policy);
        let errors: Vec<String> = rule
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect();
        out.push(Next {
            route: to.clone(),
            label: Some(short(&except_label(&errors), LABEL_MAX)),
            error: true,
        });
    }
    if let Some(to) = policies
        .get("default")
        .filter(|_| !used.contains("default"))
    {
        out.push(Next {
            route: to.clone(),
            label: Some("except".to_owned()),
            error: true,
        });
    }
    out
}

#[cfg(test)]
#[path = "graph_tests.rs"]
pub(crate) mod tests;
