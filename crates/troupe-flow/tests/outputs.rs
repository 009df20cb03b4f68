//! The outputs of a real compiled flow (tests/outputs/research.py through the front end
//! and lowering): the graph has the edges of its source's control flow, and the drawings
//! and manifests come out of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use troupe_flow::outputs::{self, Graph, NodeKind};
use troupe_flow::{compile_file, CompileOptions, Flow};

fn research(native: bool) -> Flow {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/outputs/research.py"
    ));
    let opts = CompileOptions {
        native,
        ..CompileOptions::default()
    };
    compile_file(path, None, &opts).unwrap().remove(0)
}

fn edge(g: &Graph, from: &str, to: &str) -> Option<String> {
    g.edges
        .iter()
        .find(|e| e.from == from && e.to == to)
        .map(|e| e.label.clone().unwrap_or_default())
}

#[test]
fn the_graph_follows_the_source() {
    let g = outputs::graph(&research(true));
    assert_eq!(g.flow, "research");
    assert_eq!(g.nodes.first().unwrap().kind, NodeKind::Start);
    assert_eq!(g.nodes.last().unwrap().kind, NodeKind::End);
    let e = |from: &str, to: &str| {
        edge(&g, from, to).unwrap_or_else(|| panic!("no edge {from} -> {to}: {:#?}", g.edges))
    };
    assert_eq!(e("start-research", "plan"), "");
    assert_eq!(e("plan", "router-research-if-line-7"), "");
    // if/elif: the condition on the branch taken, `else` on the other.
    assert_eq!(
        e("router-research-if-line-7", "fanout-research-line-8"),
        "p['needs_search']"
    );
    assert_eq!(
        e("router-research-if-line-7", "router-research-if-line-9"),
        "else"
    );
    // Comprehension fan-out: the slices' actor, then the fan-in, then on to the loop.
    assert_eq!(
        e("fanout-research-line-8", "search"),
        "for q in p['queries']"
    );
    assert_eq!(e("search", "fanin-research-line-8"), "");
    assert_eq!(
        e("fanin-research-line-8", "router-research-while-line-11"),
        ""
    );
    // while: body, back edge, exit; break leaves the loop.
    assert_eq!(
        e(
            "router-research-while-line-11",
            "router-research-seq-line-12"
        ),
        "p['rounds'] < 3"
    );
    assert_eq!(e("router-research-while-line-11", "write"), "exit");
    assert_eq!(
        e(
            "router-research-if-line-14",
            "router-research-while-line-11"
        ),
        "else"
    );
    assert_eq!(e("router-research-break-line-15", "write"), "");
    // try/except: the error edge from the actor in the try to its except router.
    let err = g
        .edges
        .iter()
        .find(|x| x.from == "write" && x.to == "router-research-except-line-18")
        .unwrap();
    assert!(err.error);
    assert_eq!(err.label.as_deref(), Some("except ValueError, KeyError"));
    assert_eq!(
        g.node("router-research-except-line-18").unwrap().label,
        "except ValueError, KeyError"
    );
    assert_eq!(e("router-research-except-line-18", "apologize"), "");
    assert_eq!(e("apologize", "fanout-research-line-20"), "");
    // List fan-out: each call with its argument, both into the fan-in.
    assert_eq!(e("fanout-research-line-20", "summarize"), "p");
    assert_eq!(e("fanout-research-line-20", "notify"), "p['hits']");
    assert_eq!(e("notify", "fanin-research-line-20"), "");
    // The method call keeps its router in Python, and the graph says why.
    let py = g.node("router-research-if-line-9").unwrap();
    assert_eq!(py.native, Some(false));
    assert!(py.why.as_deref().unwrap().contains("startswith"), "{py:?}");
    assert_eq!(
        g.nodes.iter().filter(|n| n.native == Some(false)).count(),
        1
    );
}

#[test]
fn with_native_routers_off_every_router_is_python_and_the_edges_stay() {
    let native = outputs::graph(&research(true));
    let python = outputs::graph(&research(false));
    assert_eq!(native.edges, python.edges);
    assert!(python
        .nodes
        .iter()
        .filter(|n| n.router.as_deref().is_some_and(|r| r != "fanin"))
        .all(|n| n.native == Some(false)));
}

#[test]
fn drawings_name_every_node() {
    let g = outputs::graph(&research(true));
    let m = outputs::mermaid(&g);
    let d = outputs::dot(&g);
    for n in &g.nodes {
        assert!(
            d.contains(&format!("\"{}\" [label=", n.id)),
            "{} not in DOT",
            n.id
        );
    }
    assert_eq!(
        m.lines()
            .filter(|l| l.starts_with("    n") && !l.contains("-->") && !l.contains("-.->"))
            .count(),
        g.nodes.len()
    );
}

#[test]
fn a_sub_flow_is_a_group_of_its_routers_and_own_actors() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/outputs/groups.py"
    ));
    let opts = CompileOptions::default();
    let module = troupe_flow::frontend::run(path, Some("main"), &opts.python).unwrap();
    let flows = troupe_flow::compile_ir(&module, &opts).unwrap();
    let flow = flows.iter().find(|f| f.name == "main").unwrap();
    let def = module.flows.iter().find(|d| d.name == "main").unwrap();
    let mut g = outputs::graph(flow);
    outputs::add_groups(&mut g, flow, def);
    assert_eq!(g.groups.len(), 1, "{:#?}", g.groups);
    let grp = &g.groups[0];
    assert_eq!(grp.label, "enrich");
    let group_of = |id: &str| g.node(id).unwrap().group.clone();
    // Its own actor and its routers (the if, the mutation, the early return and its end
    // marker) are inside; `score`, called inside and outside, and the main flow's actors
    // are not.
    assert_eq!(group_of("lookup").as_deref(), Some(grp.id.as_str()));
    for r in flow
        .routers()
        .filter(|r| r.name.contains("-if-") || r.name.contains("-seq-"))
    {
        assert_eq!(
            group_of(&r.name).as_deref(),
            Some(grp.id.as_str()),
            "{}",
            r.name
        );
    }
    for outside in ["intake", "score", "finish", "start-main"] {
        assert_eq!(group_of(outside), None, "{outside}");
    }
    assert!(grp.nodes.contains(&"lookup".to_owned()));
    // The early return inside the group leaves the sub-flow: on to what follows its call.
    let ret = flow
        .routers()
        .find(|r| r.name.contains("-return-"))
        .unwrap();
    let e = g.edges.iter().find(|e| e.from == ret.name).unwrap();
    assert_eq!(e.to, "score", "{e:?}");
    assert_eq!(group_of(&ret.name).as_deref(), Some(grp.id.as_str()));
    assert_eq!(g.nodes.last().unwrap().kind, NodeKind::End);
    let marker = grp
        .nodes
        .iter()
        .find(|n| n.starts_with("end-main-enrich-"))
        .unwrap();
    assert_eq!(g.node(marker).unwrap().label, "end of sub-flow");
    // The drawings draw it.
    assert!(outputs::mermaid(&g).contains("subgraph g_group_main_enrich_line_"));
    assert!(outputs::dot(&g).contains("subgraph cluster_0 {\n        label=\"enrich\";"));
}
