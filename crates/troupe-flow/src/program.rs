//! The compiled form of a flow (`Program`), shipped as JSON to sidecars (native routers)
//! and to the gateway (entry route). Lowering builds it; [`crate::native`] and
//! [`crate::python`] execute the same [`Op`]s, so both paths agree by construction.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ir::{NExpr, NStmt};

/// Default loop guard (`--max-iterations`).
pub const DEFAULT_MAX_ITERATIONS: u32 = 100;
/// Header holding the routers' loop counters `{while-router: iterations}`.
pub const LOOP_HEADER: &str = "x-troupe-loop";
/// Header counting the fan-outs a task has run; each slice's `x-asya-fan-in` carries the
/// count as `round`, so that a fan-out run again (in a loop) is a new aggregation.
pub const FANOUT_HEADER: &str = "x-troupe-fanout";
/// Header where an except router keeps the caught error for a bare `raise`.
pub const ERROR_HEADER: &str = "x-troupe-error";

/// A named flow and its compiled program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Flow name (as written in the source or the mesh file).
    pub name: String,
    /// The compiled program.
    pub program: Program,
}

/// Everything the runtime needs to start and route one flow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Program {
    /// Source file (`""` for a fixed pipeline).
    #[serde(default)]
    pub file: String,
    /// Python module of the source (routers.py imports it for non-native inline code).
    #[serde(default)]
    pub module: String,
    /// The route a new task gets; its first entry is the entry actor.
    pub entry: Vec<String>,
    /// Handler actors in order of first call.
    #[serde(default)]
    pub actors: Vec<ActorUse>,
    /// Routers in order of creation.
    #[serde(default)]
    pub routers: Vec<RouterInfo>,
    /// Fan-in aggregator actors (run by the crew, `TROUPE_CREW=fan-in`).
    #[serde(default)]
    pub fanins: Vec<String>,
    /// Loop guard: a while router fails the envelope past this many iterations.
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
}

fn default_max_iterations() -> u32 {
    DEFAULT_MAX_ITERATIONS
}

/// One handler actor used by a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorUse {
    /// Actor name.
    pub name: String,
    /// `module.func`, when known.
    #[serde(default)]
    pub handler: Option<String>,
    /// AsyncActor `resiliency` shape: `{actorTimeout?, policies: {..}, rules: [..]}`
    /// (`null` when there is nothing to configure).
    #[serde(default)]
    pub resiliency: Value,
    /// Line of the first call.
    #[serde(default)]
    pub line: u32,
    /// Column of the first call.
    #[serde(default)]
    pub col: u32,
    /// Tool-style call: how the actor maps the state to its arguments and its result back
    /// (platform.md §4.1); every call of the actor has the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<crate::ir::Adapter>,
}

/// What a router does, for graphs and `troupe status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// Entry: prepends the flow's steps.
    Start,
    /// End marker of a flow or an inlined body that has an early `return`.
    End,
    /// Batched mutations / inline code.
    Seq,
    /// `if/elif/else`.
    If,
    /// `while`.
    While,
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// Early `return`.
    Return,
    /// Entry of an except clause (reached through `onExhausted`).
    Except,
    /// `raise`.
    Raise,
    /// Fan-out (list literal, gather or comprehension).
    Fanout,
}

impl RouterKind {
    /// The lowercase name used in names and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            RouterKind::Start => "start",
            RouterKind::End => "end",
            RouterKind::Seq => "seq",
            RouterKind::If => "if",
            RouterKind::While => "while",
            RouterKind::Break => "break",
            RouterKind::Continue => "continue",
            RouterKind::Return => "return",
            RouterKind::Except => "except",
            RouterKind::Raise => "raise",
            RouterKind::Fanout => "fanout",
        }
    }
}

/// One router actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterInfo {
    /// Actor name (`router-research-if-line-5`).
    pub name: String,
    /// What it does.
    pub kind: RouterKind,
    /// Runs inside the sidecar (every condition and mutation in the native subset).
    pub native: bool,
    /// Why it is not native.
    #[serde(default)]
    pub why: Option<String>,
    /// Source line.
    #[serde(default)]
    pub line: u32,
    /// Source column.
    #[serde(default)]
    pub col: u32,
    /// The behaviour, executed by native.rs and generated into routers.py.
    pub op: Op,
    /// Except clauses covering this router, innermost try first (native error handling).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catch: Vec<Catch>,
    /// Resiliency for the router's own AsyncActor when it runs as a Python actor
    /// inside a try (same shape as [`ActorUse::resiliency`]).
    #[serde(default)]
    pub resiliency: Value,
}

impl RouterInfo {
    /// The Python function name in routers.py (`-` → `_`).
    pub fn code_name(&self) -> String {
        code_name(&self.name)
    }
}

/// The routers.py function name of a router actor.
pub fn code_name(actor: &str) -> String {
    actor.replace('-', "_")
}

/// An except clause that catches errors raised by a router (§9.2 matching).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catch {
    /// Patterns as written; empty = bare `except` (matches every error).
    pub errors: Vec<String>,
    /// The except router to continue at.
    pub target: String,
}

/// An expression with its Python source and, when in the subset, its native form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Code {
    /// Python source (`p` is the state).
    pub code: String,
    /// Native form.
    #[serde(default)]
    pub native: Option<NExpr>,
}

/// A statement with its Python source and, when in the subset, its native form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeStmt {
    /// Python source.
    pub code: String,
    /// Native form.
    #[serde(default)]
    pub native: Option<NStmt>,
    /// Source line (error locations).
    #[serde(default)]
    pub line: u32,
}

/// One call of a list-literal fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceCall {
    /// The actor of the slice.
    pub actor: String,
    /// Its payload.
    pub arg: Code,
}

/// A router's behaviour. `route.next` below is the input's; every op ends by emitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `next := steps + next` (start router).
    Prepend {
        /// Steps to prepend.
        steps: Vec<String>,
    },
    /// Emit unchanged (end marker reached normally).
    Pass,
    /// Run the statements on `p` in order.
    Seq {
        /// Mutations.
        stmts: Vec<CodeStmt>,
    },
    /// Prepend `then` when `test` is truthy, else `orelse`.
    If {
        /// Condition.
        test: Code,
        /// Steps when true.
        then: Vec<String>,
        /// Steps when false.
        orelse: Vec<String>,
    },
    /// Loop head: true → count, prepend `body + [self]`; false → clear the count.
    While {
        /// Condition; none = `while True`.
        test: Option<Code>,
        /// Body steps.
        body: Vec<String>,
        /// `FILE:LINE` for the loop guard message.
        at: String,
    },
    /// Drop `next` through (or up to) the first `marker`, prepend `prepend` (break,
    /// continue, return). Loop counters of routers no longer on the route are removed.
    Jump {
        /// A while router or an end marker.
        marker: String,
        /// Drop the marker too (break, return) or keep it (continue).
        inclusive: bool,
        /// `finally` steps of the try statements left.
        prepend: Vec<String>,
    },
    /// `next := steps` (the continuation was replaced by `onExhausted`); keep the caught
    /// error in a header when the handler re-raises; loop counters as for `Jump`.
    Except {
        /// Handler, finally and static continuation.
        steps: Vec<String>,
        /// Copy `status.error` into [`ERROR_HEADER`].
        keep_error: bool,
    },
    /// Fail: `error_type(message)`; none = re-raise the error in [`ERROR_HEADER`].
    Raise {
        /// Exception type as written.
        error_type: Option<String>,
        /// The literal message; none = raised without arguments.
        message: Option<String>,
    },
    /// List-literal fan-out: one slice per call.
    Fanout {
        /// Fan-in actor.
        fanin: String,
        /// JSON Pointer of the result key.
        key: String,
        /// The calls.
        calls: Vec<SliceCall>,
    },
    /// Comprehension fan-out: one slice per item of `iterable`.
    FanoutEach {
        /// Fan-in actor.
        fanin: String,
        /// JSON Pointer of the result key.
        key: String,
        /// The actor of every slice.
        actor: String,
        /// The comprehension variable.
        var: String,
        /// What is iterated.
        iterable: Code,
        /// The payload per item.
        arg: Code,
    },
}

impl Flow {
    /// The actor a new task is sent to (start router or first actor).
    pub fn entry(&self) -> &str {
        self.program.entry.first().map(String::as_str).unwrap_or("")
    }

    /// The route a new task gets: `[entry, ...rest]`.
    pub fn entry_route(&self) -> Vec<String> {
        self.program.entry.clone()
    }

    /// Handler actors, in order of first call.
    pub fn actors(&self) -> impl Iterator<Item = &ActorUse> {
        self.program.actors.iter()
    }

    /// Every router.
    pub fn routers(&self) -> impl Iterator<Item = &RouterInfo> {
        self.program.routers.iter()
    }

    /// The router with this actor name.
    pub fn router(&self, name: &str) -> Option<&RouterInfo> {
        self.program.routers.iter().find(|r| r.name == name)
    }

    /// Routers that must run as Python actors: the non-native ones (all of them when the
    /// flow was compiled with native routers off).
    pub fn python_routers(&self) -> impl Iterator<Item = &RouterInfo> {
        self.program.routers.iter().filter(|r| !r.native)
    }

    /// Fan-in aggregator actor names.
    pub fn fanins(&self) -> impl Iterator<Item = &str> {
        self.program.fanins.iter().map(String::as_str)
    }
}

/// A fixed pipeline (`flows: [{name, route: [a, b, c]}]`): no routers.
pub fn pipeline(name: &str, route: &[String]) -> Flow {
    Flow {
        name: name.to_owned(),
        program: Program {
            entry: route.to_vec(),
            actors: route
                .iter()
                .enumerate()
                .filter(|(i, a)| !route[..*i].contains(a))
                .map(|(_, a)| ActorUse {
                    name: a.clone(),
                    handler: None,
                    resiliency: Value::Null,
                    line: 0,
                    col: 0,
                    adapter: None,
                })
                .collect(),
            max_iterations: DEFAULT_MAX_ITERATIONS,
            ..Program::default()
        },
    }
}
