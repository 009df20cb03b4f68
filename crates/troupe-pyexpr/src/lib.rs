//! The native expression subset of flow routers (docs/flow-ir.md, "Expr and native subset").
//!
//! Flow routers whose conditions and mutations stay within this subset run inside the
//! sidecar instead of a Python process. The contract is CPython: every expression gives the
//! value CPython gives, or the exception CPython raises (type name and message).
//!
//! Values are JSON values (`serde_json::Value`): payloads are JSON, so `None`, `bool`,
//! `int`, `float`, `str`, `list` and `dict` (string keys) are all a router can see.

mod ast;

pub use ast::{BinOp, CmpOp, Expr, Stmt, Target};
