//! Statement lowering: each statement gives its steps; routers are created on the way.

use super::{CatchCtx, Ctx, FuncCtx, LoopCtx, Lowerer};
use crate::ir::{self, json_pointer, Handler, Stmt, StmtKind};
use crate::program::{Code, CodeStmt, Op, RouterKind, SliceCall};

/// A unit of lowering: one statement, or a run of consecutive `code` statements (batched
/// into one seq router).
enum Unit<'s> {
    Seq(Vec<&'s Stmt>),
    One(&'s Stmt),
}

fn units(stmts: &[Stmt]) -> Vec<Unit<'_>> {
    let mut out: Vec<Unit<'_>> = Vec::new();
    for s in stmts {
        if matches!(s.kind, StmtKind::Code { .. }) {
            if let Some(Unit::Seq(run)) = out.last_mut() {
                run.push(s);
                continue;
            }
            out.push(Unit::Seq(vec![s]));
        } else {
            out.push(Unit::One(s));
        }
    }
    out
}

fn concat(parts: &[&[String]]) -> Vec<String> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

fn code(e: &ir::Expr) -> Code {
    Code {
        code: e.code.clone(),
        native: e.native.clone(),
    }
}

/// Why an expression keeps its router out of the sidecar.
fn why(e: &ir::Expr) -> Option<String> {
    if e.native.is_some() {
        None
    } else {
        Some(
            e.why
                .clone()
                .unwrap_or_else(|| format!("`{}` is outside the native subset", e.code)),
        )
    }
}

/// Does a `return` in this function body need an end marker (is any not in tail
/// position)? Conservative: only returns last in `if`/`with` chains that end the body are
/// tail returns; the lowering may find more and then leaves the marker unused.
pub(crate) fn needs_marker(body: &[Stmt]) -> bool {
    fn walk(body: &[Stmt], tail: bool) -> bool {
        body.iter().enumerate().any(|(i, s)| {
            let t = tail && i + 1 == body.len();
            match &s.kind {
                StmtKind::Return => !t,
                StmtKind::If { then, orelse, .. } => walk(then, t) || walk(orelse, t),
                StmtKind::Config { body, .. } => walk(body, t),
                StmtKind::While { body, .. } => walk(body, false),
                StmtKind::Try {
                    body,
                    handlers,
                    finally,
                } => {
                    walk(body, false)
                        || handlers.iter().any(|h| walk(&h.body, false))
                        || walk(finally, false)
                }
                _ => false,
            }
        })
    }
    walk(body, true)
}

/// Does an except clause's body re-raise (a bare `raise` not inside a nested handler)?
fn reraises(body: &[Stmt]) -> bool {
    body.iter().any(|s| match &s.kind {
        StmtKind::Raise { error_type, .. } => error_type.is_none(),
        StmtKind::If { then, orelse, .. } => reraises(then) || reraises(orelse),
        StmtKind::While { body, .. }
        | StmtKind::Config { body, .. }
        | StmtKind::Group { body, .. }
        | StmtKind::Unfold { body, .. } => reraises(body),
        StmtKind::Try { body, finally, .. } => reraises(body) || reraises(finally),
        _ => false,
    })
}

/// The context of a fan-out's slice actors: no except clauses. A failed slice would reach
/// the except router with the slice's payload instead of the state while the fan-in keeps
/// waiting for it, so slice errors are not caught: they fail the task (docs/decisions.md
/// "Flow routing"). The fan-out router's own errors are caught as usual.
fn slice_ctx(ctx: &Ctx) -> Ctx {
    let mut c = ctx.clone();
    c.catches.clear();
    c
}

impl Lowerer<'_> {
    /// The steps of a block whose static continuation is `cont`.
    pub(crate) fn block(&mut self, stmts: &[Stmt], ctx: &Ctx, cont: &[String]) -> Vec<String> {
        let mut after: Vec<String> = Vec::new();
        for unit in units(stmts).iter().rev() {
            let unit_cont = concat(&[&after, cont]);
            let mut steps = match unit {
                Unit::Seq(run) => self.seq(run, ctx),
                Unit::One(s) => self.stmt(s, ctx, &unit_cont),
            };
            steps.append(&mut after);
            after = steps;
        }
        after
    }

    fn seq(&mut self, run: &[&Stmt], ctx: &Ctx) -> Vec<String> {
        let first = run[0];
        let mut stmts = Vec::new();
        let mut why_not = None;
        for s in run {
            if let StmtKind::Code { code, native, why } = &s.kind {
                if native.is_none() && why_not.is_none() {
                    why_not = Some(
                        why.clone()
                            .unwrap_or_else(|| format!("`{code}` is outside the native subset")),
                    );
                }
                stmts.push(CodeStmt {
                    code: code.clone(),
                    native: native.clone(),
                    line: s.line,
                });
            }
        }
        let name = self.router_name(RouterKind::Seq, first.line);
        self.push_router(
            &name,
            RouterKind::Seq,
            first.line,
            first.col,
            Op::Seq { stmts },
            why_not,
            &ctx.catches,
        );
        vec![name]
    }

    fn stmt(&mut self, s: &Stmt, ctx: &Ctx, cont: &[String]) -> Vec<String> {
        let (line, col) = (s.line, s.col);
        match &s.kind {
            StmtKind::Call { actor, adapter } => {
                self.call(actor, adapter.as_ref(), line, col, ctx);
                vec![actor.clone()]
            }
            StmtKind::Code { .. } => self.seq(&[s], ctx),
            StmtKind::If { test, then, orelse } => {
                let then = self.block(then, ctx, cont);
                let orelse = self.block(orelse, ctx, cont);
                let name = self.router_name(RouterKind::If, line);
                let op = Op::If {
                    test: code(test),
                    then,
                    orelse,
                };
                self.push_router(
                    &name,
                    RouterKind::If,
                    line,
                    col,
                    op,
                    why(test),
                    &ctx.catches,
                );
                vec![name]
            }
            StmtKind::While { test, body } => {
                let head = self.router_name(RouterKind::While, line);
                let mut inner = ctx.clone();
                inner.loop_ = Some(LoopCtx {
                    head: head.clone(),
                    finallys: Vec::new(),
                });
                let body_cont = concat(&[std::slice::from_ref(&head), cont]);
                let body = self.block(body, &inner, &body_cont);
                let op = Op::While {
                    test: test.as_ref().map(code),
                    body,
                    at: format!("{}:{line}", self.m.file),
                };
                let why_not = test.as_ref().and_then(why);
                self.push_router(
                    &head,
                    RouterKind::While,
                    line,
                    col,
                    op,
                    why_not,
                    &ctx.catches,
                );
                vec![head]
            }
            StmtKind::Break | StmtKind::Continue => {
                let kind = if matches!(s.kind, StmtKind::Break) {
                    RouterKind::Break
                } else {
                    RouterKind::Continue
                };
                let Some(lp) = &ctx.loop_ else {
                    self.diag(line, col, format!("`{}` outside a while loop: remove it or put it inside a loop of this flow", kind.as_str()));
                    return Vec::new();
                };
                let op = Op::Jump {
                    marker: lp.head.clone(),
                    inclusive: kind == RouterKind::Break,
                    prepend: lp.finallys.concat(),
                };
                let name = self.router_name(kind, line);
                self.push_router(&name, kind, line, col, op, None, &ctx.catches);
                vec![name]
            }
            StmtKind::Return => self.ret(ctx, cont, line, col),
            StmtKind::Raise {
                error_type,
                message,
                ..
            } => {
                let name = self.router_name(RouterKind::Raise, line);
                let op = Op::Raise {
                    error_type: error_type.clone(),
                    message: message.clone(),
                };
                self.push_router(&name, RouterKind::Raise, line, col, op, None, &ctx.catches);
                vec![name]
            }
            StmtKind::Try {
                body,
                handlers,
                finally,
            } => self.try_stmt(s, body, handlers, finally, ctx, cont),
            StmtKind::Fanout { target, calls } => {
                let (name, fanin) = self.fanout_names(line);
                let slice_ctx = slice_ctx(ctx);
                for c in calls {
                    self.call(&c.actor, None, c.line, c.col, &slice_ctx);
                }
                let why_not = calls.iter().find_map(|c| why(&c.arg));
                let op = Op::Fanout {
                    fanin,
                    key: json_pointer(target),
                    calls: calls
                        .iter()
                        .map(|c| SliceCall {
                            actor: c.actor.clone(),
                            arg: code(&c.arg),
                        })
                        .collect(),
                };
                self.push_router(
                    &name,
                    RouterKind::Fanout,
                    line,
                    col,
                    op,
                    why_not,
                    &ctx.catches,
                );
                vec![name]
            }
            StmtKind::FanoutEach {
                target,
                actor,
                var,
                iterable,
                arg,
            } => {
                let (name, fanin) = self.fanout_names(line);
                self.call(actor, None, line, col, &slice_ctx(ctx));
                let why_not = why(iterable).or_else(|| why(arg));
                let op = Op::FanoutEach {
                    fanin,
                    key: json_pointer(target),
                    actor: actor.clone(),
                    var: var.clone(),
                    iterable: code(iterable),
                    arg: code(arg),
                };
                self.push_router(
                    &name,
                    RouterKind::Fanout,
                    line,
                    col,
                    op,
                    why_not,
                    &ctx.catches,
                );
                vec![name]
            }
            StmtKind::Group { flow, body } => self.inlined(flow, body, ctx, cont, line, col),
            StmtKind::Unfold { function, body } => {
                self.inlined(function, body, ctx, cont, line, col)
            }
            StmtKind::Config { values, body } => {
                let mut inner = ctx.clone();
                super::resiliency::merge(&mut inner.config, values);
                self.block(body, &inner, cont)
            }
        }
    }

    fn ret(&mut self, ctx: &Ctx, cont: &[String], line: u32, col: u32) -> Vec<String> {
        let within = &cont[..cont.len().saturating_sub(ctx.func.outer_len)];
        let marker = ctx.func.marker.clone();
        let tail = ctx.func.finallys.is_empty()
            && (within.is_empty() || (within.len() == 1 && Some(&within[0]) == marker.as_ref()));
        if tail {
            return Vec::new();
        }
        let Some(marker) = marker else {
            // needs_marker() is conservative, so this is a lowering bug, not a user error.
            self.diag(
                line,
                col,
                "internal error: early return without an end marker; please report this flow",
            );
            return Vec::new();
        };
        let op = Op::Jump {
            marker,
            inclusive: true,
            prepend: ctx.func.finallys.concat(),
        };
        let name = self.router_name(RouterKind::Return, line);
        self.push_router(&name, RouterKind::Return, line, col, op, None, &ctx.catches);
        vec![name]
    }

    /// An inlined sub-flow or local def: its own function context and end marker.
    fn inlined(
        &mut self,
        what: &str,
        body: &[Stmt],
        ctx: &Ctx,
        cont: &[String],
        line: u32,
        col: u32,
    ) -> Vec<String> {
        let marker = needs_marker(body).then(|| {
            self.alloc(&format!(
                "end-{}-{}-line-{line}",
                self.flow,
                what.replace(['_', '.'], "-")
            ))
        });
        let mut inner = ctx.clone();
        inner.loop_ = None;
        inner.func = FuncCtx {
            marker: marker.clone(),
            finallys: Vec::new(),
            outer_len: cont.len(),
        };
        let body_cont = concat(&[&marker.iter().cloned().collect::<Vec<_>>(), cont]);
        let mut steps = self.block(body, &inner, &body_cont);
        if let Some(mk) = marker {
            self.end_marker(&mk, line, col);
            steps.push(mk);
        }
        steps
    }

    fn try_stmt(
        &mut self,
        s: &Stmt,
        body: &[Stmt],
        handlers: &[Handler],
        finally: &[Stmt],
        ctx: &Ctx,
        cont: &[String],
    ) -> Vec<String> {
        if ctx.in_finally {
            self.diag(s.line, s.col, "a try statement inside a finally block cannot be compiled: move it into an @actor function, or out of the finally block");
            return Vec::new();
        }
        let mut fin_ctx = ctx.clone();
        fin_ctx.in_finally = true;
        let fin = self.block(finally, &fin_ctx, cont);
        // Inside the body and the handlers, break/continue/return run the finally first.
        let mut guarded = ctx.clone();
        if !fin.is_empty() {
            if let Some(lp) = &mut guarded.loop_ {
                lp.finallys.insert(0, fin.clone());
            }
            guarded.func.finallys.insert(0, fin.clone());
        }
        let after_handler = concat(&[&fin, cont]);
        // An error in the body or a handler that an outer clause catches runs this
        // try's finally first.
        let outer: Vec<CatchCtx> = ctx
            .catches
            .iter()
            .map(|c| self.via(c, &fin, s.line, s.col, ctx))
            .collect();
        guarded.catches = outer.clone();
        let mut clauses = Vec::new();
        for (i, h) in handlers.iter().enumerate() {
            let h_steps = self.block(&h.body, &guarded, &after_handler);
            let name = self.router_name(RouterKind::Except, h.line);
            let steps = concat(&[&h_steps, &after_handler]);
            let keep_error = reraises(&h.body);
            let op = Op::Except {
                steps: steps.clone(),
                keep_error,
            };
            self.push_router(
                &name,
                RouterKind::Except,
                h.line,
                h.col,
                op,
                None,
                &ctx.catches,
            );
            clauses.push(CatchCtx {
                errors: h.types.clone(),
                target: name,
                policy: format!("try_except_line_{}_{i}", s.line),
                steps,
                keep_error,
            });
        }
        if !clauses.iter().any(|c| c.errors.is_empty()) {
            clauses.extend(outer);
        }
        let mut body_ctx = guarded;
        body_ctx.catches = clauses;
        let body_steps = self.block(body, &body_ctx, &after_handler);
        concat(&[&body_steps, &fin])
    }

    /// An outer clause as seen from inside a try with a `finally`: a router that runs the
    /// finally, then the outer handler.
    fn via(
        &mut self,
        outer: &CatchCtx,
        fin: &[String],
        line: u32,
        col: u32,
        ctx: &Ctx,
    ) -> CatchCtx {
        if fin.is_empty() {
            return outer.clone();
        }
        let name = self.alloc(&format!("{}-via-line-{line}", outer.target));
        let steps = concat(&[fin, &outer.steps]);
        let op = Op::Except {
            steps: steps.clone(),
            keep_error: outer.keep_error,
        };
        self.push_router(&name, RouterKind::Except, line, col, op, None, &ctx.catches);
        CatchCtx {
            errors: outer.errors.clone(),
            target: name,
            policy: format!("{}_via_{line}", outer.policy),
            steps,
            keep_error: outer.keep_error,
        }
    }

    fn fanout_names(&mut self, line: u32) -> (String, String) {
        let name = self.alloc(&format!("fanout-{}-line-{line}", self.flow));
        let fanin = format!("fanin-{}", &name["fanout-".len()..]);
        self.fanins.push(fanin.clone());
        (name, fanin)
    }
}
