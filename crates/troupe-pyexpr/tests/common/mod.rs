//! Builders for expression trees, so that tests read close to the Python they stand for.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use troupe_pyexpr::{eval, exec, BinOp, CmpOp, Expr, PyError, Scope, Stmt};

/// A constant.
pub fn c(v: Value) -> Expr {
    Expr::Const(v)
}

/// `p`.
pub fn p() -> Expr {
    Expr::Name("p".into())
}

/// `v[i]`.
pub fn sub(v: Expr, i: Expr) -> Expr {
    Expr::Sub(Box::new((v, i)))
}

/// `p[k]` with a constant key.
pub fn pk(k: Value) -> Expr {
    sub(p(), c(k))
}

pub fn bin(op: &str, a: Expr, b: Expr) -> Expr {
    let op: BinOp = serde_json::from_value(json!(op)).unwrap();
    Expr::Bin(op, Box::new(a), Box::new(b))
}

pub fn cmp(a: Expr, rest: Vec<(&str, Expr)>) -> Expr {
    Expr::Cmp(
        Box::new(a),
        rest.into_iter()
            .map(|(op, e)| (serde_json::from_value::<CmpOp>(json!(op)).unwrap(), e))
            .collect(),
    )
}

pub fn call(f: &str, a: Expr) -> Expr {
    Expr::Call(f.into(), Box::new(a))
}

/// Evaluates `e` with `p` as the state: `Ok(value)` or `Err("Type: message")`.
pub fn run(e: &Expr, state: &Value) -> Result<Value, String> {
    eval(e, &Scope::new(state)).map_err(|err| err.to_string())
}

/// Evaluates `e` with `p = {}`.
pub fn ev0(e: &Expr) -> Result<Value, String> {
    run(e, &json!({}))
}

/// The error `e` raises with `p = {}`, as `Type: message`.
pub fn err0(e: &Expr) -> String {
    match ev0(e) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(m) => m,
    }
}

/// Runs `s` on a copy of `state`: the new state, or the error as `Type: message`.
pub fn run_stmt(s: &Stmt, state: &Value) -> Result<Value, String> {
    let mut p = state.clone();
    exec(s, &mut p).map_err(|e: PyError| e.to_string())?;
    Ok(p)
}

/// `p[t0][t1]… = v`.
pub fn assign(target: Vec<Expr>, v: Expr) -> Stmt {
    Stmt::Assign(target, v)
}

/// `p[t0][t1]… op= v`.
pub fn augassign(op: &str, target: Vec<Expr>, v: Expr) -> Stmt {
    let op: BinOp = serde_json::from_value(json!(op)).unwrap();
    Stmt::Augassign(op, target, v)
}

/// Asserts that `e` (with `p = {}`) gives `expected`: a value, or `"Type: message"`.
#[track_caller]
pub fn check(e: &Expr, expected: Result<Value, &str>) {
    assert_eq!(
        ev0(e).map(|v| v.to_string()),
        expected.map(|v| v.to_string()).map_err(str::to_string),
        "for {}",
        serde_json::to_string(e).unwrap()
    );
}

/// `a op b` with constant operands.
pub fn binc(op: &str, a: Value, b: Value) -> Expr {
    bin(op, c(a), c(b))
}
