//! IR → [`Program`]: control flow in continuation-passing style (platform.md §4.2,
//! docs/decisions.md "Flow routing").
//!
//! A block lowers to its *steps*, the actor and router names it puts on `route.next`.
//! Routers prepend the steps they choose to `route.next`, so the tail of `route.next` is
//! always the continuation; blocks are lowered last statement first so that the static
//! continuation of every statement is known, which except routers need (the sidecar's
//! `onExhausted` replaced the continuation, so they write it back from the program).

mod resiliency;
mod stmt;

use std::collections::HashSet;

use serde_json::Value;

use crate::ir::{self, Config, Diagnostic, Module};
use crate::program::{ActorUse, Catch, Flow, Op, Program, RouterInfo, RouterKind};
use crate::CompileOptions;

/// Lowers every flow of a module; all errors are collected, each with its location.
pub(crate) fn lower_module(
    m: &Module,
    opts: &CompileOptions,
) -> Result<Vec<Flow>, Vec<Diagnostic>> {
    let mut flows = Vec::new();
    let mut diags = Vec::new();
    let mut sites = Vec::new();
    for def in &m.flows {
        let mut l = Lowerer::new(m, def, opts);
        let program = l.run(def);
        diags.append(&mut l.diags);
        sites.append(&mut l.sites);
        flows.push(Flow {
            name: def.name.clone(),
            program,
        });
    }
    diags.extend(resiliency::conflicts(&m.file, &sites));
    if diags.is_empty() {
        Ok(flows)
    } else {
        diags.sort_by_key(|d| (d.line, d.col));
        diags.dedup();
        Err(diags)
    }
}

/// One call of an actor, with what its manifest would get from this call.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub actor: String,
    pub resiliency: Value,
    pub adapter: Option<ir::Adapter>,
    pub line: u32,
    pub col: u32,
    pub flow: String,
}

/// An except clause in scope, innermost try first.
#[derive(Debug, Clone)]
pub(crate) struct CatchCtx {
    /// Patterns as written; empty = bare.
    pub errors: Vec<String>,
    /// The except router.
    pub target: String,
    /// Policy name in the actors' manifests.
    pub policy: String,
    /// The except router's steps (a `finally` in between prepends to them).
    pub steps: Vec<String>,
    /// The except router keeps the error for a bare `raise`.
    pub keep_error: bool,
}

/// The innermost loop.
#[derive(Debug, Clone)]
pub(crate) struct LoopCtx {
    /// Its while router.
    pub head: String,
    /// `finally` steps of the try statements entered inside it, innermost first.
    pub finallys: Vec<Vec<String>>,
}

/// The innermost function (the flow, or an inlined group or unfold).
#[derive(Debug, Clone)]
pub(crate) struct FuncCtx {
    /// End marker, when a `return` needs one.
    pub marker: Option<String>,
    /// `finally` steps of the try statements entered inside it, innermost first.
    pub finallys: Vec<Vec<String>>,
    /// Length of the continuation after the function.
    pub outer_len: usize,
}

/// What a statement is lowered within.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub config: Config,
    pub catches: Vec<CatchCtx>,
    pub loop_: Option<LoopCtx>,
    pub func: FuncCtx,
    pub in_finally: bool,
}

pub(crate) struct Lowerer<'a> {
    pub m: &'a Module,
    pub flow: String,
    pub opts: &'a CompileOptions,
    pub routers: Vec<RouterInfo>,
    pub actors: Vec<ActorUse>,
    pub sites: Vec<Site>,
    pub fanins: Vec<String>,
    pub diags: Vec<Diagnostic>,
    names: HashSet<String>,
}

impl<'a> Lowerer<'a> {
    fn new(m: &'a Module, def: &ir::FlowDef, opts: &'a CompileOptions) -> Self {
        Lowerer {
            m,
            flow: def.name.replace('_', "-"),
            opts,
            routers: Vec::new(),
            actors: Vec::new(),
            sites: Vec::new(),
            fanins: Vec::new(),
            diags: Vec::new(),
            names: HashSet::new(),
        }
    }

    fn run(&mut self, def: &ir::FlowDef) -> Program {
        let start = self.alloc(&format!("start-{}", self.flow));
        let marker =
            stmt::needs_marker(&def.body).then(|| self.alloc(&format!("end-{}", self.flow)));
        let ctx = Ctx {
            config: Config::new(),
            catches: Vec::new(),
            loop_: None,
            func: FuncCtx {
                marker: marker.clone(),
                finallys: Vec::new(),
                outer_len: 0,
            },
            in_finally: false,
        };
        let tail: Vec<String> = marker.iter().cloned().collect();
        let mut steps = self.block(&def.body, &ctx, &tail);
        if let Some(mk) = &marker {
            self.end_marker(mk, def.line, def.col);
            steps.push(mk.clone());
        }
        let entry = if self.routers.is_empty() && !steps.is_empty() {
            // A fixed sequence of actor calls needs no router at all (platform.md §4.2).
            steps
        } else {
            self.push_router(
                &start,
                RouterKind::Start,
                def.line,
                def.col,
                Op::Prepend { steps },
                None,
                &[],
            );
            vec![start]
        };
        // Creation order is last-statement-first; sources read top to bottom.
        self.routers
            .sort_by_key(|r| (r.kind != RouterKind::Start, r.line, r.col));
        self.actors.sort_by_key(|a| (a.line, a.col));
        self.sites.sort_by_key(|s| (s.line, s.col));
        let order: Vec<&str> = self
            .routers
            .iter()
            .filter_map(|r| match &r.op {
                Op::Fanout { fanin, .. } | Op::FanoutEach { fanin, .. } => Some(fanin.as_str()),
                _ => None,
            })
            .collect();
        self.fanins
            .sort_by_key(|f| order.iter().position(|o| o == f));
        Program {
            file: self.m.file.clone(),
            module: self.m.module.clone(),
            entry,
            actors: std::mem::take(&mut self.actors),
            routers: std::mem::take(&mut self.routers),
            fanins: std::mem::take(&mut self.fanins),
            max_iterations: self.opts.max_iterations,
        }
    }

    /// A fresh router name: `base`, or `base-2`, `base-3`… when an inlined body repeats it.
    pub(crate) fn alloc(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut n = 2;
        while self.names.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// `router-{flow}-{kind}-line-{N}`.
    pub(crate) fn router_name(&mut self, kind: RouterKind, line: u32) -> String {
        self.alloc(&format!(
            "router-{}-{}-line-{line}",
            self.flow,
            kind.as_str()
        ))
    }

    pub(crate) fn end_marker(&mut self, name: &str, line: u32, col: u32) {
        self.push_router(name, RouterKind::End, line, col, Op::Pass, None, &[]);
    }

    /// Adds a router. `why`: why it cannot run natively (None = native).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push_router(
        &mut self,
        name: &str,
        kind: RouterKind,
        line: u32,
        col: u32,
        op: Op,
        why: Option<String>,
        catches: &[CatchCtx],
    ) {
        let (native, why) = match why {
            Some(w) => (false, Some(w)),
            None if !self.opts.native => (false, Some("native routers are off".to_owned())),
            None => (true, None),
        };
        let catch = catches
            .iter()
            .map(|c| Catch {
                errors: c.errors.clone(),
                target: c.target.clone(),
            })
            .collect();
        let resiliency = resiliency::build(&Config::new(), catches);
        self.routers.push(RouterInfo {
            name: name.to_owned(),
            kind,
            native,
            why,
            line,
            col,
            op,
            catch,
            resiliency,
        });
    }

    /// Records a call of `actor` at `line:col` within `ctx`.
    pub(crate) fn call(
        &mut self,
        actor: &str,
        adapter: Option<&ir::Adapter>,
        line: u32,
        col: u32,
        ctx: &Ctx,
    ) {
        let def = self.m.actors.get(actor);
        let mut config = def.map(|d| d.config.clone()).unwrap_or_default();
        resiliency::merge(&mut config, &ctx.config);
        let res = resiliency::build(&config, &ctx.catches);
        self.sites.push(Site {
            actor: actor.to_owned(),
            resiliency: res.clone(),
            adapter: adapter.cloned(),
            line,
            col,
            flow: self.flow.clone(),
        });
        if let Some(a) = self.actors.iter_mut().find(|a| a.name == actor) {
            // Blocks are lowered last statement first: keep the earliest call.
            if (line, col) < (a.line, a.col) {
                a.line = line;
                a.col = col;
            }
        } else {
            self.actors.push(ActorUse {
                name: actor.to_owned(),
                handler: def.and_then(|d| d.handler.clone()),
                resiliency: res,
                line,
                col,
                adapter: adapter.cloned(),
            });
        }
    }

    pub(crate) fn diag(&mut self, line: u32, col: u32, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.m.file.clone(),
            line,
            col,
            message: message.into(),
        });
    }
}
