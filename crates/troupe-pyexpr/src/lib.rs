//! The native expression subset of flow routers (docs/flow-ir.md, "Expr and native subset").
//!
//! Flow routers whose conditions and mutations stay within this subset run inside the
//! sidecar instead of a Python process. The contract is CPython 3.11: every expression gives
//! the value CPython gives, or the exception CPython raises (type name and message).
//!
//! Values are JSON values (`serde_json::Value`): payloads are JSON, so `None`, `bool`,
//! `int`, `float`, `str`, `list` and `dict` (string keys) are all a router can see.
//!
//! Where a JSON value cannot hold what CPython would compute, the evaluator raises instead
//! (each is tested against CPython with the same rule applied, see `tests/differential.rs`):
//! - an int result outside `-2**63 ..= 2**64-1` raises `OverflowError` ([`INT_OVERFLOW`]);
//! - a float result that is `inf` or `nan` raises `OverflowError` ("float result is inf, …");
//! - a negative float raised to a fractional power (a complex number in Python) raises
//!   `ValueError: negative number cannot be raised to a fractional power`;
//! - a dict key that is not a str (in a display or an assignment) raises `TypeError`;
//! - `*` repeating a str past [`MAX_ITEMS`] characters, or a list past [`MAX_ITEMS`] values
//!   (counting every value nested in its items, since JSON repeats copies where Python
//!   repeats references), and a `%` conversion whose width or precision would build more
//!   characters than that, raise `MemoryError`;
//! - dicts keep their keys sorted (serde_json's map), where Python keeps insertion order:
//!   `str()` of a dict display with unsorted keys lists them sorted;
//! - each statement copies the value it assigns: `p["a"] = p["b"]` does not make the two
//!   share one list, as Python's objects would for later statements.

mod arith;
mod ast;
mod compare;
mod convert;
mod eval;
mod exec;
mod format;
mod printable;
mod value;

pub use ast::{BinOp, CmpOp, Expr, Stmt, Target};
pub use convert::{py_repr, py_str};
pub use eval::{eval, Scope};
pub use exec::exec;
pub use value::truthy;

/// The message of the `OverflowError` raised for an int result a JSON payload cannot hold.
pub const INT_OVERFLOW: &str =
    "int result does not fit in 64 bits, which a JSON payload needs (keep ints within -2**63 .. 2**64-1)";

/// The most characters, or values (nested ones counted), that `*` may produce, and the
/// largest width or padding precision a `%` conversion may use; past it: `MemoryError`.
pub const MAX_ITEMS: usize = 1_000_000;

/// A Python exception: its type name (`KeyError`) and its message (`'x'`), as CPython
/// prints them in `KeyError: 'x'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct PyError {
    /// The exception class name, such as `TypeError`.
    pub error_type: String,
    /// The exception's message, `str(exc)` in Python.
    pub message: String,
}

impl PyError {
    /// An exception of type `error_type` with `message`.
    pub fn new(error_type: &str, message: impl Into<String>) -> Self {
        PyError {
            error_type: error_type.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", message)
    }
}
