//! `@flow` sub-flows as groups of a [`Graph`] (platform.md §4.1: "inlined, shown as a
//! group"). The [`Program`](crate::Program) does not say which sub-flow a router came
//! from, so groups are read from the IR the program was lowered from: a router belongs to
//! the innermost group whose inlined body holds a statement on the router's source line (a
//! sub-flow's body keeps the lines of its own `def`), the group's end marker and a fan-out's
//! fan-in belong with them, and an actor belongs to a group when every call of it is in
//! that group's body (an actor called from two places is one node, drawn outside).
//!
//! A sub-flow inlined twice has the same lines in both groups: its routers are drawn in the
//! first.

use std::collections::{BTreeMap, HashSet};

use super::{Graph, Group};
use crate::ir::{FlowDef, Stmt, StmtKind};
use crate::{Flow, Op};

struct Found {
    id: String,
    label: String,
    marker: String,
    lines: HashSet<u32>,
}

#[derive(Default)]
struct Scan {
    groups: Vec<Found>,
    /// Per actor, the innermost group of each call (`None`: outside every group).
    calls: BTreeMap<String, HashSet<Option<usize>>>,
}

impl Scan {
    fn block(&mut self, body: &[Stmt], group: Option<usize>, flow: &str) {
        for s in body {
            self.stmt(s, group, flow);
        }
    }

    fn stmt(&mut self, s: &Stmt, group: Option<usize>, flow: &str) {
        if let Some(g) = group {
            self.groups[g].lines.insert(s.line);
        }
        let mut call = |actor: &str| {
            self.calls
                .entry(actor.replace('_', "-"))
                .or_default()
                .insert(group);
        };
        match &s.kind {
            StmtKind::Call { actor, .. } | StmtKind::FanoutEach { actor, .. } => call(actor),
            StmtKind::Fanout { calls, .. } => calls.iter().for_each(|c| call(&c.actor)),
            StmtKind::If { then, orelse, .. } => {
                self.block(then, group, flow);
                self.block(orelse, group, flow);
            }
            StmtKind::While { body, .. }
            | StmtKind::Unfold { body, .. }
            | StmtKind::Config { body, .. } => self.block(body, group, flow),
            StmtKind::Try {
                body,
                handlers,
                finally,
            } => {
                self.block(body, group, flow);
                for h in handlers {
                    if let Some(g) = group {
                        self.groups[g].lines.insert(h.line);
                    }
                    self.block(&h.body, group, flow);
                }
                self.block(finally, group, flow);
            }
            StmtKind::Group { flow: sub, body } => {
                let slug = sub.replace(['_', '.'], "-");
                self.groups.push(Found {
                    id: format!("group-{flow}-{slug}-line-{}", s.line),
                    label: sub.clone(),
                    marker: format!("end-{flow}-{slug}-line-{}", s.line),
                    lines: HashSet::new(),
                });
                let g = self.groups.len() - 1;
                self.block(body, Some(g), flow);
            }
            StmtKind::Code { .. }
            | StmtKind::Break
            | StmtKind::Continue
            | StmtKind::Return
            | StmtKind::Raise { .. } => {}
        }
    }
}

/// Fills `g.groups` and each member node's `group` from the flow's IR definition.
pub fn add_groups(g: &mut Graph, flow: &Flow, def: &FlowDef) {
    let slug = flow.name.replace('_', "-");
    let mut scan = Scan::default();
    scan.block(&def.body, None, &slug);
    if scan.groups.is_empty() {
        return;
    }
    let mut member: BTreeMap<String, usize> = BTreeMap::new();
    for r in flow.routers() {
        let by_marker = scan.groups.iter().position(|x| x.marker == r.name);
        // Innermost: the last group (in source order) holding the line.
        let by_line = || scan.groups.iter().rposition(|x| x.lines.contains(&r.line));
        if let Some(i) = by_marker.or_else(by_line) {
            member.insert(r.name.clone(), i);
            if let Op::Fanout { fanin, .. } | Op::FanoutEach { fanin, .. } = &r.op {
                member.insert(fanin.clone(), i);
            }
        }
    }
    for (actor, groups) in &scan.calls {
        if let (1, Some(Some(i))) = (groups.len(), groups.iter().next()) {
            member.insert(actor.clone(), *i);
        }
    }
    for n in &mut g.nodes {
        if let Some(i) = member.get(&n.id) {
            n.group = Some(scan.groups[*i].id.clone());
        }
    }
    g.groups = scan
        .groups
        .iter()
        .enumerate()
        .map(|(i, x)| Group {
            id: x.id.clone(),
            label: x.label.clone(),
            nodes: g
                .nodes
                .iter()
                .filter(|n| member.get(&n.id) == Some(&i))
                .map(|n| n.id.clone())
                .collect(),
        })
        .filter(|grp| !grp.nodes.is_empty())
        .collect();
}
