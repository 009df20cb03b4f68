//! `flow.dot`: the [`Graph`] in Graphviz DOT, coloured as platform.md §4.3 says: green
//! start and end, wheat condition and loop routers, blue handler actors, yellow condition
//! labels. A native router (run inside the sidecar) has a thick solid border, a Python
//! router actor a dashed one; a legend cluster says so. Error edges are dashed red.
//! Render with `dot -Tsvg flow.dot -o flow.svg`.

use std::collections::HashMap;
use std::fmt::Write;

use super::{Graph, Node, NodeKind};

/// DOT text of a graph.
pub fn dot(g: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Flow {} (troupe flow compile; regenerate instead of editing)",
        g.flow
    );
    let _ = writeln!(out, "digraph {} {{", quote(&g.flow));
    out.push_str("    rankdir=TB; fontname=\"Helvetica\";\n");
    out.push_str("    node [fontname=\"Helvetica\", fontsize=11];\n");
    out.push_str("    edge [fontname=\"Helvetica\", fontsize=10];\n");
    for n in &g.nodes {
        let _ = writeln!(out, "    {} [{}];", quote(&n.id), attributes(n));
    }
    for (i, grp) in g.groups.iter().enumerate() {
        let _ = writeln!(out, "    subgraph cluster_{i} {{");
        let _ = writeln!(out, "        label={}; style=rounded;", quote(&grp.label));
        for id in &grp.nodes {
            let _ = writeln!(out, "        {};", quote(id));
        }
        out.push_str("    }\n");
    }
    let conditions: HashMap<&str, bool> = g
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), is_condition(n)))
        .collect();
    for e in &g.edges {
        let mut attrs = Vec::new();
        if let Some(l) = &e.label {
            if !e.error && conditions.get(e.from.as_str()).copied().unwrap_or(false) {
                attrs.push(format!(
                    "label=<<table border=\"0\" cellborder=\"0\" cellpadding=\"2\" bgcolor=\"yellow\"><tr><td>{}</td></tr></table>>",
                    html(l)
                ));
            } else {
                attrs.push(format!("label={}", quote(l)));
            }
        }
        if e.error {
            attrs.push("style=dashed, color=firebrick, fontcolor=firebrick".to_owned());
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(out, "    {} -> {}{attrs};", quote(&e.from), quote(&e.to));
    }
    out.push_str(concat!(
        "    subgraph cluster_legend {\n",
        "        label=\"Legend\"; style=dashed; fontname=\"Helvetica\";\n",
        "        \"legend: actor\" [label=\"actor\", shape=box, style=\"filled,rounded\", fillcolor=lightblue];\n",
        "        \"legend: native\" [label=\"native router\\n(runs in the sidecar)\", shape=box, style=\"filled,rounded\", fillcolor=white, penwidth=2.5];\n",
        "        \"legend: python\" [label=\"Python router\\n(its own actor)\", shape=box, style=\"filled,rounded,dashed\", fillcolor=white];\n",
        "        \"legend: actor\" -> \"legend: native\" -> \"legend: python\" [style=invis];\n",
        "    }\n",
        "}\n",
    ));
    out
}

fn is_condition(n: &Node) -> bool {
    n.kind == NodeKind::Router && matches!(n.router.as_deref(), Some("if" | "while"))
}

fn attributes(n: &Node) -> String {
    let (shape, fill) = match (n.kind, n.router.as_deref()) {
        (NodeKind::Start | NodeKind::End, _) => ("ellipse", "palegreen"),
        (NodeKind::Actor, _) => ("box", "lightblue"),
        (_, Some("if" | "while")) => ("diamond", "wheat"),
        (_, Some("fanout" | "fanin")) => ("hexagon", "white"),
        _ => ("box", "white"),
    };
    let mut style = vec!["filled"];
    if shape == "box" {
        style.push("rounded");
    }
    let mut extra = String::new();
    match n.native {
        Some(true) => extra.push_str(", penwidth=2.5"),
        Some(false) => style.push("dashed"),
        None => {}
    }
    let mut tooltip = n.id.clone();
    if let Some(why) = &n.why {
        tooltip.push_str(": Python router because ");
        tooltip.push_str(why);
    }
    format!(
        "label={}, shape={shape}, style=\"{}\", fillcolor={fill}, tooltip={}{extra}",
        quote(&n.label),
        style.join(","),
        quote(&tooltip)
    )
}

/// A DOT double-quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text inside a DOT HTML-like label.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::outputs::graph::{graph, tests::sample};
    use crate::pipeline;

    #[test]
    fn a_pipeline_has_green_terminals_and_blue_actors() {
        let d = dot(&graph(&pipeline("p", &["a".to_owned()])));
        assert!(d.contains("digraph \"p\" {\n"), "{d}");
        assert!(d.contains("    \"start-p\" [label=\"p\", shape=ellipse, style=\"filled\", fillcolor=palegreen"), "{d}");
        assert!(
            d.contains(
                "    \"a\" [label=\"a\", shape=box, style=\"filled,rounded\", fillcolor=lightblue"
            ),
            "{d}"
        );
        assert!(
            d.contains("    \"end-p\" [label=\"end\", shape=ellipse"),
            "{d}"
        );
        assert!(
            d.contains("    \"start-p\" -> \"a\";\n    \"a\" -> \"end-p\";\n"),
            "{d}"
        );
        assert!(d.trim_end().ends_with('}'));
        assert_eq!(d.matches('{').count(), d.matches('}').count(), "{d}");
    }

    #[test]
    fn conditions_are_wheat_with_yellow_labels_and_python_routers_dashed() {
        let d = dot(&graph(&sample()));
        assert!(d.contains("    \"router-demo-if-line-4\" [label=\"if p['x']\", shape=diamond, style=\"filled,dashed\", fillcolor=wheat, tooltip=\"router-demo-if-line-4: Python router because calls open()\"];"), "{d}");
        assert!(d.contains("    \"router-demo-while-line-6\" [label=\"while p['n'] < 3\", shape=diamond, style=\"filled\", fillcolor=wheat, tooltip=\"router-demo-while-line-6\", penwidth=2.5];"), "{d}");
        assert!(d.contains("    \"router-demo-if-line-4\" -> \"a\" [label=<<table border=\"0\" cellborder=\"0\" cellpadding=\"2\" bgcolor=\"yellow\"><tr><td>p['x']</td></tr></table>>];"), "{d}");
        assert!(d.contains("    \"router-demo-while-line-6\" -> \"c\" [label=<<table border=\"0\" cellborder=\"0\" cellpadding=\"2\" bgcolor=\"yellow\"><tr><td>p['n'] &lt; 3</td></tr></table>>];"), "{d}");
        assert!(d.contains("    \"w\" -> \"router-demo-except-line-9\" [label=\"except ValueError, KeyError\", style=dashed, color=firebrick, fontcolor=firebrick];"), "{d}");
        assert!(
            d.contains("    \"fanout-demo-line-11\" -> \"s2\" [label=\"p['y']\"];"),
            "{d}"
        );
        assert!(d.contains("subgraph cluster_legend"), "{d}");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(html("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
