//! Graph tests on hand-built programs (each op kind, error edges, the JSON schema).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::{pipeline, ActorUse, Catch, Code, Program, SliceCall};
use serde_json::json;

fn code(c: &str) -> Code {
    Code {
        code: c.to_owned(),
        native: None,
    }
}

fn router(name: &str, kind: RouterKind, native: bool, op: Op) -> RouterInfo {
    RouterInfo {
        name: name.to_owned(),
        kind,
        native,
        why: (!native).then(|| "calls open()".to_owned()),
        line: 4,
        col: 5,
        op,
        catch: vec![],
        resiliency: Value::Null,
    }
}

fn actor(name: &str, resiliency: Value) -> ActorUse {
    ActorUse {
        name: name.to_owned(),
        handler: Some(format!("flows.{}", name.replace('-', "_"))),
        resiliency,
        line: 3,
        col: 5,
        adapter: None,
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

/// `p = plan(p); if p["x"]: p = a(p) else: p = b(p); while p["n"] < 3: p = c(p);
/// try: p = w(p) except E: p = fix(p); p["r"] = [s1(p), s2(p)]` by hand.
pub(crate) fn sample() -> Flow {
    let policy = json!({
        "policies": {"try_except_line_9_0": {"maxAttempts": 1, "onExhausted": ["router-demo-except-line-9"]}},
        "rules": [{"errors": ["ValueError", "KeyError"], "policy": "try_except_line_9_0"}]
    });
    Flow {
        name: "demo".into(),
        program: Program {
            entry: s(&["start-demo"]),
            actors: vec![
                actor("plan", Value::Null),
                actor("a", Value::Null),
                actor("b", Value::Null),
                actor("c", Value::Null),
                actor("w", policy),
                actor("fix", Value::Null),
                actor("s1", Value::Null),
                actor("s2", Value::Null),
            ],
            routers: vec![
                router(
                    "start-demo",
                    RouterKind::Start,
                    true,
                    Op::Prepend {
                        steps: s(&[
                            "plan",
                            "router-demo-if-line-4",
                            "router-demo-while-line-6",
                            "w",
                            "fanout-demo-line-11",
                            "end-demo",
                        ]),
                    },
                ),
                router(
                    "router-demo-if-line-4",
                    RouterKind::If,
                    false,
                    Op::If {
                        test: code("p['x']"),
                        then: s(&["a"]),
                        orelse: s(&["b"]),
                    },
                ),
                router(
                    "router-demo-while-line-6",
                    RouterKind::While,
                    true,
                    Op::While {
                        test: Some(code("p['n'] < 3")),
                        body: s(&["c"]),
                        at: "flows.py:6".into(),
                    },
                ),
                RouterInfo {
                    catch: vec![Catch {
                        errors: vec![],
                        target: "x".into(),
                    }],
                    ..router(
                        "router-demo-except-line-9",
                        RouterKind::Except,
                        true,
                        Op::Except {
                            steps: s(&["fix", "fanout-demo-line-11", "end-demo"]),
                            keep_error: false,
                        },
                    )
                },
                router(
                    "fanout-demo-line-11",
                    RouterKind::Fanout,
                    true,
                    Op::Fanout {
                        fanin: "fanin-demo-line-11".into(),
                        key: "/r".into(),
                        calls: vec![
                            SliceCall {
                                actor: "s1".into(),
                                arg: code("p"),
                            },
                            SliceCall {
                                actor: "s2".into(),
                                arg: code("p['y']"),
                            },
                        ],
                    },
                ),
                router("end-demo", RouterKind::End, true, Op::Pass),
            ],
            fanins: s(&["fanin-demo-line-11"]),
            ..Program::default()
        },
    }
}

fn has(g: &Graph, from: &str, to: &str, label: Option<&str>) -> bool {
    g.edges
        .iter()
        .any(|e| e.from == from && e.to == to && e.label.as_deref() == label)
}

#[test]
fn a_pipeline_runs_from_a_start_node_through_each_actor_to_an_end_node() {
    let g = graph(&pipeline(
        "text_pipe",
        &s(&["clean", "analyse", "summarize"]),
    ));
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "start-text-pipe",
            "clean",
            "analyse",
            "summarize",
            "end-text-pipe"
        ]
    );
    assert_eq!(g.nodes[0].kind, NodeKind::Start);
    assert_eq!(g.nodes[0].label, "text_pipe");
    assert_eq!(g.nodes[4].kind, NodeKind::End);
    let edges: Vec<(&str, &str)> = g
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("start-text-pipe", "clean"),
            ("clean", "analyse"),
            ("analyse", "summarize"),
            ("summarize", "end-text-pipe")
        ]
    );
    assert!(g.groups.is_empty());
}

#[test]
fn edges_follow_branches_loops_excepts_and_fan_outs() {
    let g = graph(&sample());
    assert!(has(&g, "start-demo", "plan", None));
    assert!(has(&g, "plan", "router-demo-if-line-4", None));
    // if: both branches, the condition on the true one; both join at the loop.
    assert!(has(&g, "router-demo-if-line-4", "a", Some("p['x']")));
    assert!(has(&g, "router-demo-if-line-4", "b", Some("else")));
    assert!(has(&g, "a", "router-demo-while-line-6", None));
    assert!(has(&g, "b", "router-demo-while-line-6", None));
    // while: body, back to the head, exit.
    assert!(has(&g, "router-demo-while-line-6", "c", Some("p['n'] < 3")));
    assert!(has(&g, "c", "router-demo-while-line-6", None));
    assert!(has(&g, "router-demo-while-line-6", "w", Some("exit")));
    // except: the error edge from the actor whose policy names the except router.
    let err = g
        .edges
        .iter()
        .find(|e| e.from == "w" && e.to == "router-demo-except-line-9")
        .unwrap();
    assert!(err.error);
    assert_eq!(err.label.as_deref(), Some("except ValueError, KeyError"));
    assert!(has(&g, "router-demo-except-line-9", "fix", None));
    assert!(has(&g, "fix", "fanout-demo-line-11", None));
    assert!(has(&g, "w", "fanout-demo-line-11", None));
    // A router's own catch is an error edge too.
    assert!(g
        .edges
        .iter()
        .any(|e| e.from == "router-demo-except-line-9" && e.to == "x" && e.error));
    // fan-out → each call → fan-in → continuation.
    assert!(has(&g, "fanout-demo-line-11", "s1", Some("p")));
    assert!(has(&g, "fanout-demo-line-11", "s2", Some("p['y']")));
    assert!(has(&g, "s1", "fanin-demo-line-11", None));
    assert!(has(&g, "s2", "fanin-demo-line-11", None));
    assert!(has(&g, "fanin-demo-line-11", "end-demo", None));
    // No edge twice, none leaves the end.
    let set: HashSet<_> = g.edges.iter().collect();
    assert_eq!(set.len(), g.edges.len());
    assert!(!g.edges.iter().any(|e| e.from == "end-demo"));
}

#[test]
fn nodes_say_their_kind_and_whether_routers_are_native() {
    let g = graph(&sample());
    assert_eq!(g.nodes.first().unwrap().id, "start-demo");
    assert_eq!(g.nodes.last().unwrap().id, "end-demo");
    assert_eq!(g.node("end-demo").unwrap().kind, NodeKind::End);
    let cond = g.node("router-demo-if-line-4").unwrap();
    assert_eq!(cond.kind, NodeKind::Router);
    assert_eq!(cond.router.as_deref(), Some("if"));
    assert_eq!(cond.native, Some(false));
    assert_eq!(cond.why.as_deref(), Some("calls open()"));
    assert_eq!(cond.label, "if p['x']");
    let lp = g.node("router-demo-while-line-6").unwrap();
    assert_eq!((lp.native, lp.why.as_deref()), (Some(true), None));
    let fanin = g.node("fanin-demo-line-11").unwrap();
    assert_eq!(fanin.router.as_deref(), Some("fanin"));
    let plan = g.node("plan").unwrap();
    assert_eq!(
        (plan.kind, plan.native, plan.line),
        (NodeKind::Actor, None, Some(3))
    );
    // Every actor, router and fan-in of the program is a node, each once.
    assert_eq!(g.nodes.len(), 8 + 6 + 1 + 1, "{:?}", g.nodes);
}

#[test]
fn graph_json_has_the_schema_fields() {
    let v: Value = serde_json::from_str(&graph(&sample()).to_json()).unwrap();
    assert_eq!(v["flow"], "demo");
    assert_eq!(v["groups"], json!([]));
    let if_node = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "router-demo-if-line-4")
        .unwrap();
    assert_eq!(if_node["kind"], "router");
    assert_eq!(if_node["native"], false);
    assert!(if_node.get("group").is_none());
    let plain = v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == "start-demo")
        .unwrap();
    assert_eq!(plain, &json!({"from": "start-demo", "to": "plan"}));
    let back: Graph = serde_json::from_value(v).unwrap();
    assert_eq!(back, graph(&sample()));
}

#[test]
fn break_and_return_drop_the_route_up_to_their_marker() {
    let mut f = pipeline("j", &s(&[]));
    f.program.entry = s(&["start-j"]);
    f.program.routers = vec![
        router(
            "start-j",
            RouterKind::Start,
            true,
            Op::Prepend {
                steps: s(&["loop", "after", "end-j"]),
            },
        ),
        router(
            "loop",
            RouterKind::While,
            true,
            Op::While {
                test: None,
                body: s(&["a", "brk"]),
                at: "f.py:2".into(),
            },
        ),
        router(
            "brk",
            RouterKind::Break,
            true,
            Op::Jump {
                marker: "loop".into(),
                inclusive: true,
                prepend: vec![],
            },
        ),
        router("end-j", RouterKind::End, true, Op::Pass),
    ];
    let g = graph(&f);
    assert!(has(&g, "loop", "a", Some("True")));
    assert!(has(&g, "brk", "after", None));
    assert!(!g
        .edges
        .iter()
        .any(|e| e.from == "loop" && e.label.as_deref() == Some("exit")));
    assert!(has(&g, "after", "end-j", None));
}
