//! What `troupe flow compile` writes for a compiled [`Flow`] (platform.md §4.3): the graph
//! ([`graph()`], `graph.json`), its Mermaid ([`mermaid()`], `flow.mmd`) and DOT ([`dot()`],
//! `flow.dot`) drawings, and, with the `manifests` feature, the Kubernetes manifests
//! ([`manifests::manifests`]). Everything here is pure: the CLI writes the files.
//!
//! The graph is derived from the [`Program`](crate::Program) alone, by following the routes
//! its routers build ([`graph()`] explains how), so what is drawn is what runs.

pub mod dot;
pub mod graph;
pub mod groups;
#[cfg(feature = "manifests")]
pub mod manifests;
pub mod mermaid;

pub use dot::dot;
pub use graph::{graph, Edge, Graph, Group, Node, NodeKind};
pub use groups::add_groups;
pub use mermaid::mermaid;

use crate::Flow;

/// File names of the compiled outputs, as `troupe flow compile` writes them.
pub mod files {
    /// The Python routers (Asya's format).
    pub const ROUTERS_PY: &str = "routers.py";
    /// [`super::Graph`] as JSON.
    pub const GRAPH_JSON: &str = "graph.json";
    /// Mermaid flowchart.
    pub const MERMAID: &str = "flow.mmd";
    /// Graphviz DOT.
    pub const DOT: &str = "flow.dot";
    /// The compiled program(s), `[Flow]` as JSON: what the sidecars read for native routers.
    pub const PROGRAM_JSON: &str = "program.json";
}

/// The compiled text outputs of one flow and its graph ([`graph()`], with
/// [`add_groups`] when the IR is at hand), by file name (manifests excluded).
pub fn compiled_files(flow: &Flow, g: &Graph) -> Vec<(&'static str, String)> {
    vec![
        (
            files::ROUTERS_PY,
            crate::routers_py(std::slice::from_ref(flow)),
        ),
        (files::GRAPH_JSON, g.to_json()),
        (files::MERMAID, mermaid(g)),
        (files::DOT, dot(g)),
        (
            files::PROGRAM_JSON,
            program_json(std::slice::from_ref(flow)),
        ),
    ]
}

/// `[Flow]` as pretty JSON (the `TROUPE_FLOWS` format: the serde form of [`Flow`]s).
pub fn program_json(flows: &[Flow]) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(flows).unwrap_or_default() + "\n"
}

/// Shortens a label for drawing: first line kept whole up to `max` characters, `…` after.
pub(crate) fn short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_shortened_on_one_line() {
        assert_eq!(short("a\n  b", 10), "a b");
        assert_eq!(short("abcdefghij", 5), "abcd…");
        assert_eq!(short("abcde", 5), "abcde");
    }
}
