//! Python's comparisons: `==` across int, float and bool; ordering of numbers, str and list
//! (lexicographic); `in` for str, list and dict; `is` against `None`, `True` and `False`.

use std::cmp::Ordering;

use serde_json::Value;

use crate::ast::CmpOp;
use crate::value::{check_hashable, type_name, Num};
use crate::PyError;

/// `a op b`.
pub(crate) fn compare(op: CmpOp, a: &Value, b: &Value) -> Result<bool, PyError> {
    match op {
        CmpOp::Eq => Ok(py_eq(a, b)),
        CmpOp::Ne => Ok(!py_eq(a, b)),
        CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => order(op, a, b),
        CmpOp::In => contains(b, a),
        CmpOp::NotIn => contains(b, a).map(|c| !c),
        CmpOp::Is => is(a, b),
        CmpOp::IsNot => is(a, b).map(|i| !i),
    }
}

/// `a is b`, defined only where one side is `None`, `True` or `False` (the singletons the
/// native subset allows `is` with): identity there is equality of kind and value.
fn is(a: &Value, b: &Value) -> Result<bool, PyError> {
    let singleton = |v: &Value| matches!(v, Value::Null | Value::Bool(_));
    if !singleton(a) && !singleton(b) {
        return Err(PyError::type_error(
            "'is' is native only against None, True or False; use == to compare values",
        ));
    }
    Ok(singleton(a) && singleton(b) && a == b)
}

/// `a == b`, which never raises for JSON values.
pub(crate) fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) {
        return num_cmp(x, y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => false,
    }
}

/// Exact comparison of two numbers, as CPython compares int with float (no rounding of the
/// int); `None` when a float is `nan`.
pub(crate) fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::Float(y)) => int_float_cmp(x, y),
        (Num::Float(x), Num::Int(y)) => int_float_cmp(y, x).map(Ordering::reverse),
    }
}

fn int_float_cmp(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Beyond 2**100 a float exceeds every int a JSON value holds; inside, its integral part
    // converts to i128 exactly.
    if f >= 1e30 {
        return Some(Ordering::Less);
    }
    if f <= -1e30 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    match i.cmp(&(t as i128)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)),
        other => Some(other),
    }
}

fn order(op: CmpOp, a: &Value, b: &Value) -> Result<bool, PyError> {
    let ordering = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            // CPython: the first pair of items that differ (by ==) decides, else the lengths.
            match x.iter().zip(y).find(|(p, q)| !py_eq(p, q)) {
                Some((p, q)) => return order(op, p, q),
                None => Some(x.len().cmp(&y.len())),
            }
        }
        _ => match (Num::of(a), Num::of(b)) {
            (Some(x), Some(y)) => num_cmp(x, y),
            _ => {
                return Err(PyError::type_error(format!(
                    "'{}' not supported between instances of '{}' and '{}'",
                    op_symbol(op),
                    type_name(a),
                    type_name(b)
                )))
            }
        },
    };
    Ok(match ordering {
        None => false,
        Some(o) => match op {
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            _ => o != Ordering::Less,
        },
    })
}

fn op_symbol(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::In => "in",
        CmpOp::NotIn => "not in",
        CmpOp::Is => "is",
        CmpOp::IsNot => "is not",
    }
}

/// `item in container`.
pub(crate) fn contains(container: &Value, item: &Value) -> Result<bool, PyError> {
    match container {
        Value::String(s) => match item {
            Value::String(sub) => Ok(s.contains(sub.as_str())),
            _ => Err(PyError::type_error(format!(
                "'in <string>' requires string as left operand, not {}",
                type_name(item)
            ))),
        },
        Value::Array(items) => Ok(items.iter().any(|v| py_eq(v, item))),
        Value::Object(map) => {
            check_hashable(item)?;
            Ok(item.as_str().is_some_and(|k| map.contains_key(k)))
        }
        _ => Err(PyError::type_error(format!(
            "argument of type '{}' is not iterable",
            type_name(container)
        ))),
    }
}
