//! What Python sees in a JSON value: its type name, its truthiness, and numbers as Python's
//! int (kept in an `i128`, wide enough for any JSON int and one operation on it) or float.

use serde_json::{Number, Value};

use crate::{PyError, INT_OVERFLOW};

/// A number as Python sees it; `bool` is an int (`True + 1 == 2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// The number in `v`, if `v` is a bool, an int or a float.
    pub(crate) fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Bool(b) => Some(Num::Int(i128::from(*b))),
            Value::Number(n) => Some(num_of(n)),
            _ => None,
        }
    }

    pub(crate) fn to_f64(self) -> f64 {
        match self {
            // `as` rounds to nearest, ties to even: the conversion CPython's float(int) does.
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

fn num_of(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// The int in `v` (a bool counts), if `v` is one.
pub(crate) fn as_int(v: &Value) -> Option<i128> {
    match Num::of(v) {
        Some(Num::Int(i)) => Some(i),
        _ => None,
    }
}

/// `int` result as a JSON value, or the documented `OverflowError` when JSON cannot hold it.
pub(crate) fn int_value(i: i128) -> Result<Value, PyError> {
    if let Ok(v) = i64::try_from(i) {
        Ok(Value::from(v))
    } else if let Ok(v) = u64::try_from(i) {
        Ok(Value::from(v))
    } else {
        Err(int_overflow())
    }
}

pub(crate) fn int_overflow() -> PyError {
    PyError::new("OverflowError", INT_OVERFLOW)
}

/// `float` result as a JSON value, or the documented `OverflowError` for `inf` and `nan`.
pub(crate) fn float_value(f: f64) -> Result<Value, PyError> {
    match Number::from_f64(f) {
        Some(n) => Ok(Value::Number(n)),
        None => Err(PyError::new(
            "OverflowError",
            format!(
                "float result is {}, which a JSON payload cannot hold",
                crate::convert::float_repr(f)
            ),
        )),
    }
}

pub(crate) fn num_value(n: Num) -> Result<Value, PyError> {
    match n {
        Num::Int(i) => int_value(i),
        Num::Float(f) => float_value(f),
    }
}

/// Python's name of the type of `v`, as error messages print it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) => match num_of(n) {
            Num::Int(_) => "int",
            Num::Float(_) => "float",
        },
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Whether `v` can be a dict key in Python (lists and dicts cannot).
pub(crate) fn check_hashable(v: &Value) -> Result<(), PyError> {
    match v {
        Value::Array(_) | Value::Object(_) => Err(PyError::type_error(format!(
            "unhashable type: '{}'",
            type_name(v)
        ))),
        _ => Ok(()),
    }
}

/// Python truthiness: `None`, `False`, `0`, `0.0`, `""`, `[]` and `{}` are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match num_of(n) {
            Num::Int(i) => i != 0,
            Num::Float(f) => f != 0.0,
        },
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The position `index` names in a sequence of `len` items, negative counting from the end,
/// or `None` when out of range; an index past 64 bits raises as CPython does.
pub(crate) fn seq_index(index: i128, len: usize) -> Result<Option<usize>, PyError> {
    if i64::try_from(index).is_err() {
        return Err(PyError::new(
            "IndexError",
            "cannot fit 'int' into an index-sized integer",
        ));
    }
    let len = len as i128;
    let i = if index < 0 { index + len } else { index };
    Ok(if (0..len).contains(&i) {
        Some(i as usize)
    } else {
        None
    })
}

/// The number of values in `v`, itself and everything nested in it.
pub(crate) fn size(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(size).sum::<usize>(),
        _ => 1,
    }
}
