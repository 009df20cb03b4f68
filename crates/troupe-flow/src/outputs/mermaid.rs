//! `flow.mmd`: the [`Graph`] as a Mermaid flowchart.
//!
//! Start and end are green stadiums, actors blue boxes, `if`/`while` routers wheat diamonds,
//! fan-out and fan-in hexagons, other routers rounded boxes. A native router (run inside the
//! sidecar) has a thick solid border, a Python router actor a dashed one; the legend says
//! so. Error edges (except clauses) are dotted. Node ids are `n0`, `n1`, ... in graph order
//! because actor names such as `end` are Mermaid keywords.

use std::collections::HashMap;
use std::fmt::Write;

use super::{Graph, Node, NodeKind};

/// Mermaid text of a graph.
pub fn mermaid(g: &Graph) -> String {
    let ids: HashMap<&str, String> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), format!("n{i}")))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "%% Flow {} (troupe flow compile; regenerate instead of editing)",
        g.flow
    );
    out.push_str("flowchart TD\n");
    for n in &g.nodes {
        let _ = writeln!(out, "    {}", shape(&ids[n.id.as_str()], n));
    }
    for grp in &g.groups {
        let _ = writeln!(
            out,
            "    subgraph {} [\"{}\"]",
            safe_id(&grp.id),
            text(&grp.label)
        );
        for id in &grp.nodes {
            if let Some(m) = ids.get(id.as_str()) {
                let _ = writeln!(out, "        {m}");
            }
        }
        out.push_str("    end\n");
    }
    for e in &g.edges {
        let (Some(from), Some(to)) = (ids.get(e.from.as_str()), ids.get(e.to.as_str())) else {
            continue;
        };
        let arrow = if e.error { "-.->" } else { "-->" };
        match &e.label {
            Some(l) => {
                let _ = writeln!(out, "    {from} {arrow}|\"{}\"| {to}", text(l));
            }
            None => {
                let _ = writeln!(out, "    {from} {arrow} {to}");
            }
        }
    }
    out.push_str(concat!(
        "    subgraph legend [\"Legend\"]\n",
        "        legend_actor[\"actor\"]\n",
        "        legend_native(\"native router: runs in the sidecar\")\n",
        "        legend_python(\"Python router: its own actor\")\n",
        "    end\n",
    ));
    out.push_str(concat!(
        "    classDef terminal fill:#90ee90,stroke:#2e7d32,color:#000\n",
        "    classDef actor fill:#add8e6,stroke:#1f4e79,color:#000\n",
        "    classDef condition fill:#f5deb3,stroke:#8b6914,color:#000\n",
        "    classDef router fill:#ffffff,stroke:#555555,color:#000\n",
        "    classDef native stroke-width:3px\n",
        "    classDef python stroke-width:2px,stroke-dasharray:6 4\n",
    ));
    // One `class` line per class, listing its nodes.
    let mut classes: Vec<(&str, Vec<String>)> = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let style = match n.native {
            Some(true) => Some("native"),
            Some(false) => Some("python"),
            None => None,
        };
        for c in std::iter::once(class(n)).chain(style) {
            match classes.iter_mut().find(|(name, _)| *name == c) {
                Some((_, ids)) => ids.push(format!("n{i}")),
                None => classes.push((c, vec![format!("n{i}")])),
            }
        }
    }
    for (c, ids) in &classes {
        let _ = writeln!(out, "    class {} {c}", ids.join(","));
    }
    out.push_str("    class legend_actor actor\n");
    out.push_str("    class legend_native,legend_python router\n");
    out.push_str("    class legend_native native\n    class legend_python python\n");
    out
}

fn class(n: &Node) -> &'static str {
    match (n.kind, n.router.as_deref()) {
        (NodeKind::Start | NodeKind::End, _) => "terminal",
        (NodeKind::Actor, _) => "actor",
        (_, Some("if" | "while")) => "condition",
        _ => "router",
    }
}

fn shape(id: &str, n: &Node) -> String {
    let l = text(&n.label);
    match (n.kind, n.router.as_deref()) {
        (NodeKind::Start | NodeKind::End, _) => format!("{id}([\"{l}\"])"),
        (NodeKind::Actor, _) => format!("{id}[\"{l}\"]"),
        (_, Some("if" | "while")) => format!("{id}{{\"{l}\"}}"),
        (_, Some("fanout" | "fanin")) => format!("{id}{{{{\"{l}\"}}}}"),
        _ => format!("{id}(\"{l}\")"),
    }
}

/// A label inside Mermaid's double quotes: its entity codes for the characters that end or
/// break a quoted label.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            // Mermaid ends a statement at `;`, even inside some quoted labels.
            ';' => out.push_str("#59;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn safe_id(s: &str) -> String {
    let id: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("g_{id}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::outputs::graph::{graph, tests::sample};
    use crate::pipeline;

    #[test]
    fn a_pipeline_is_a_chain_of_boxes_between_green_terminals() {
        let g = graph(&pipeline("p", &["a".to_owned(), "end".to_owned()]));
        let m = mermaid(&g);
        assert!(m.contains("flowchart TD\n"), "{m}");
        assert!(m.contains("    n0([\"p\"])\n"), "{m}");
        assert!(m.contains("    n1[\"a\"]\n"), "{m}");
        // An actor named `end` (a Mermaid keyword) is only ever a label.
        assert!(m.contains("    n2[\"end\"]\n"), "{m}");
        assert!(
            m.contains("    n0 --> n1\n    n1 --> n2\n    n2 --> n3\n"),
            "{m}"
        );
        assert!(m.contains("    class n0,n3 terminal\n"), "{m}");
        assert!(m.contains("    class n1,n2 actor\n"), "{m}");
    }

    #[test]
    fn routers_show_conditions_nativeness_and_error_edges() {
        let g = graph(&sample());
        let m = mermaid(&g);
        let id = |name: &str| format!("n{}", g.nodes.iter().position(|n| n.id == name).unwrap());
        let cond = id("router-demo-if-line-4");
        assert!(m.contains(&format!("    {cond}{{\"if p['x']\"}}\n")), "{m}");
        assert!(
            m.contains(&format!("    {cond} -->|\"p['x']\"| {}\n", id("a"))),
            "{m}"
        );
        let lp = id("router-demo-while-line-6");
        assert!(
            m.contains(&format!("    class {cond},{lp} condition\n")),
            "{m}"
        );
        assert!(m.contains(&format!("    class {cond} python\n")), "{m}");
        let native = m
            .lines()
            .find(|l| l.starts_with("    class n") && l.ends_with(" native"))
            .unwrap();
        assert!(native.split([' ', ',']).any(|x| x == lp), "{m}");
        assert!(
            m.contains(&format!(
                "    {} -.->|\"except ValueError, KeyError\"| {}\n",
                id("w"),
                id("router-demo-except-line-9")
            )),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "    {}{{{{\"fan-out /r\"}}}}\n",
                id("fanout-demo-line-11")
            )),
            "{m}"
        );
        assert!(m.contains("subgraph legend [\"Legend\"]"), "{m}");
        assert!(
            m.contains("classDef python stroke-width:2px,stroke-dasharray:6 4"),
            "{m}"
        );
    }

    #[test]
    fn quotes_and_angle_brackets_in_labels_are_entity_codes() {
        assert_eq!(text("p[\"x\"] < 3 #;"), "p[#quot;x#quot;] #lt; 3 #35;#59;");
    }
}
