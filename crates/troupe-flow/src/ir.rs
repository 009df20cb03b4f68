//! The flow IR, version 1 (docs/flow-ir.md): what the Python front end prints and the
//! lowering consumes. Field names and shapes follow that document section by section.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use troupe_pyexpr::{Expr as NExpr, Stmt as NStmt};

/// The IR version this crate reads.
pub const VERSION: u32 = 1;

/// One front-end run over one source file ("Module").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    /// IR version; must be [`VERSION`].
    pub version: u32,
    /// The source file as given to the front end.
    pub file: String,
    /// The Python module name of the source.
    #[serde(default)]
    pub module: String,
    /// Compile errors; non-empty means the flows must be ignored.
    #[serde(default)]
    pub errors: Vec<Diagnostic>,
    /// The flows requested.
    #[serde(default)]
    pub flows: Vec<FlowDef>,
    /// Every actor called by an emitted flow, keyed by actor name.
    #[serde(default)]
    pub actors: BTreeMap<String, ActorDef>,
}

/// A located compile error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Source file.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// An actor called by a flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorDef {
    /// The called name as written (`write_draft`, `obj.method`).
    #[serde(default)]
    pub function: String,
    /// `module.func` when the front end can tell, else the mesh file must declare it.
    #[serde(default)]
    pub handler: Option<String>,
    /// Manifest values from decorators and the rules file (see [`Config`]).
    #[serde(default)]
    pub config: Config,
}

/// Resiliency values in AsyncActor field names: `{actorTimeout?, policies?: {..}}`.
pub type Config = Map<String, Value>;

/// One flow function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowDef {
    /// The function name.
    pub name: String,
    /// Line of the `def`.
    #[serde(default)]
    pub line: u32,
    /// Column of the `def`.
    #[serde(default)]
    pub col: u32,
    /// The body, parameter renamed to `p`.
    #[serde(default)]
    pub body: Vec<Stmt>,
}

/// A statement with its location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stmt {
    /// 1-based line.
    #[serde(default)]
    pub line: u32,
    /// 1-based column.
    #[serde(default)]
    pub col: u32,
    /// What the statement is.
    #[serde(flatten)]
    pub kind: StmtKind,
}

/// The statement kinds of flow-ir.md "Stmt".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StmtKind {
    /// `p = h(p)` and friends.
    Call {
        /// Actor name.
        actor: String,
        /// Tool-style argument mapping, if any.
        #[serde(default)]
        adapter: Option<Adapter>,
    },
    /// One mutation or inline call.
    Code {
        /// Python source.
        code: String,
        /// The native form, when within the subset.
        #[serde(default)]
        native: Option<NStmt>,
        /// Why it is not native.
        #[serde(default)]
        why: Option<String>,
    },
    /// `if/elif/else`.
    If {
        /// The condition.
        test: Expr,
        /// Then branch.
        #[serde(default)]
        then: Vec<Stmt>,
        /// Else branch (an `elif` is an else holding one `if`).
        #[serde(default, rename = "else")]
        orelse: Vec<Stmt>,
    },
    /// `while test:`; `test` is null for `while True:`.
    While {
        /// The condition, or none for an endless loop.
        #[serde(default)]
        test: Option<Expr>,
        /// Loop body.
        #[serde(default)]
        body: Vec<Stmt>,
    },
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `return p`.
    Return,
    /// `raise E(...)`, `raise E`, bare `raise`.
    Raise {
        /// Python source.
        #[serde(default)]
        code: String,
        /// Type as written (dotted kept); none for a bare re-raise.
        #[serde(default)]
        error_type: Option<String>,
        /// The string literal argument, if any.
        #[serde(default)]
        message: Option<String>,
    },
    /// `try/except[/finally]`.
    Try {
        /// Protected body.
        #[serde(default)]
        body: Vec<Stmt>,
        /// Except clauses in order.
        #[serde(default)]
        handlers: Vec<Handler>,
        /// `finally` body.
        #[serde(default)]
        finally: Vec<Stmt>,
    },
    /// Fan-out over a list literal or `gather`.
    Fanout {
        /// Where the results go.
        target: Path,
        /// One call per slice.
        calls: Vec<FanoutCall>,
    },
    /// Fan-out over a comprehension.
    FanoutEach {
        /// Where the results go.
        target: Path,
        /// The actor called per item.
        actor: String,
        /// The comprehension variable.
        var: String,
        /// What is iterated.
        iterable: Expr,
        /// The argument per item (may use `var`).
        arg: Expr,
    },
    /// An inlined `@flow` sub-flow.
    Group {
        /// Sub-flow name.
        flow: String,
        /// Its inlined body.
        #[serde(default)]
        body: Vec<Stmt>,
    },
    /// An inlined local def.
    Unfold {
        /// Function name.
        function: String,
        /// Its inlined body.
        #[serde(default)]
        body: Vec<Stmt>,
    },
    /// A configuration `with` block.
    Config {
        /// Values applying to every actor called in `body`.
        #[serde(default)]
        values: Config,
        /// The block.
        #[serde(default)]
        body: Vec<Stmt>,
    },
}

/// An expression: Python source plus its native form when within the subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    /// Python source (`ast.unparse`, parameter renamed to `p`).
    pub code: String,
    /// The native form.
    #[serde(default)]
    pub native: Option<NExpr>,
    /// Why it is not native.
    #[serde(default)]
    pub why: Option<String>,
}

/// One except clause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handler {
    /// Exception types as written; empty = bare `except`.
    #[serde(default)]
    pub types: Vec<String>,
    /// Line of `except`.
    #[serde(default)]
    pub line: u32,
    /// Column of `except`.
    #[serde(default)]
    pub col: u32,
    /// Handler body.
    #[serde(default)]
    pub body: Vec<Stmt>,
}

/// One call of a list-literal fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutCall {
    /// Actor name.
    pub actor: String,
    /// The argument sent as the slice payload.
    pub arg: Expr,
    /// Line of the call.
    #[serde(default)]
    pub line: u32,
    /// Column of the call.
    #[serde(default)]
    pub col: u32,
}

/// Tool-style call mapping (platform.md §4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Expr>,
    /// Keyword arguments.
    #[serde(default)]
    pub kwargs: BTreeMap<String, Expr>,
    /// Where the result goes; none drops it.
    #[serde(default)]
    pub target: Option<Path>,
}

/// Constant keys from `p`: `p["a"][0]` is `["a", 0]`.
pub type Path = Vec<PathKey>;

/// One key of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathKey {
    /// A dict key.
    Key(String),
    /// A list index.
    Index(i64),
}

/// The JSON Pointer (RFC 6901) of a path: `["hits", 0]` → `/hits/0`.
pub fn json_pointer(path: &[PathKey]) -> String {
    let mut out = String::new();
    for key in path {
        out.push('/');
        match key {
            PathKey::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            PathKey::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_statement_kind() {
        let text = json!({
            "version": 1, "file": "f.py", "module": "f", "errors": [],
            "actors": {"a": {"function": "a", "handler": "f.a", "config": {"actorTimeout": "30s"}}},
            "flows": [{"name": "main", "line": 1, "col": 1, "body": [
                {"kind": "call", "actor": "a", "adapter": null, "line": 2, "col": 5},
                {"kind": "code", "code": "p['k'] = 1", "native": {"assign": [[{"const": "k"}], {"const": 1}]}, "why": null, "line": 3, "col": 5},
                {"kind": "if", "test": {"code": "p['k']", "native": null, "why": "x"}, "then": [{"kind": "break", "line": 5, "col": 9}], "else": [], "line": 4, "col": 5},
                {"kind": "while", "test": null, "body": [{"kind": "continue", "line": 7, "col": 9}], "line": 6, "col": 5},
                {"kind": "raise", "code": "raise ValueError('x')", "error_type": "ValueError", "message": "x", "line": 8, "col": 5},
                {"kind": "try", "body": [], "handlers": [{"types": [], "line": 10, "col": 5, "body": []}], "finally": [], "line": 9, "col": 5},
                {"kind": "fanout", "target": ["r", 0], "calls": [{"actor": "a", "arg": {"code": "p", "native": {"name": "p"}, "why": null}, "line": 11, "col": 5}], "line": 11, "col": 5},
                {"kind": "fanout_each", "target": ["r"], "actor": "a", "var": "x", "iterable": {"code": "p['i']", "native": null, "why": "y"}, "arg": {"code": "x", "native": {"name": "x"}, "why": null}, "line": 12, "col": 5},
                {"kind": "group", "flow": "sub", "body": [{"kind": "return", "line": 20, "col": 5}], "line": 13, "col": 5},
                {"kind": "unfold", "function": "g", "body": [], "line": 14, "col": 5},
                {"kind": "config", "values": {"actorTimeout": "30s"}, "body": [], "line": 15, "col": 5}
            ]}]
        });
        let m: Module = serde_json::from_value(text).unwrap();
        let body = &m.flows[0].body;
        assert_eq!(body.len(), 11);
        assert!(matches!(body[2].kind, StmtKind::If { .. }));
        assert!(
            matches!(&body[6].kind, StmtKind::Fanout { target, .. } if json_pointer(target) == "/r/0")
        );
        assert_eq!(body[9].line, 14);
        assert_eq!(m.actors["a"].handler.as_deref(), Some("f.a"));
    }

    #[test]
    fn pointer_escapes() {
        let p = vec![PathKey::Key("a/b~c".into()), PathKey::Index(2)];
        assert_eq!(json_pointer(&p), "/a~1b~0c/2");
    }
}
