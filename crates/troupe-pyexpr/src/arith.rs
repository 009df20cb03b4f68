//! Python's arithmetic operators over JSON values: int/float promotion, floor division and
//! modulo with CPython's rounding and signs, `**`, and `+`/`*` on str and list.

use serde_json::Value;

use crate::ast::BinOp;
use crate::value::{as_int, float_value, int_overflow, num_value, size, type_name, Num};
use crate::{PyError, MAX_ITEMS};

/// The operator as Python spells it in messages, `+=` for an augmented assignment.
pub(crate) fn symbol(op: BinOp, inplace: bool) -> String {
    let s = match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::FloorDiv => "//",
        BinOp::Mod => "%",
        BinOp::Pow => "**",
    };
    if inplace {
        format!("{s}=")
    } else if op == BinOp::Pow {
        "** or pow()".to_string()
    } else {
        s.to_string()
    }
}

fn unsupported(op: BinOp, inplace: bool, a: &Value, b: &Value) -> PyError {
    PyError::type_error(format!(
        "unsupported operand type(s) for {}: '{}' and '{}'",
        symbol(op, inplace),
        type_name(a),
        type_name(b)
    ))
}

/// `a op b` (or `a op= b` when `inplace`, which only changes the messages here; a list's
/// in-place `+=` is the caller's).
pub(crate) fn binop(op: BinOp, a: &Value, b: &Value, inplace: bool) -> Result<Value, PyError> {
    if let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) {
        return num_value(numeric(op, x, y)?);
    }
    match (op, a, b) {
        (BinOp::Add, Value::String(x), Value::String(y)) => Ok(Value::String(format!("{x}{y}"))),
        (BinOp::Add, Value::Array(x), Value::Array(y)) => {
            Ok(Value::Array(x.iter().chain(y.iter()).cloned().collect()))
        }
        (BinOp::Add, Value::String(_) | Value::Array(_), _) => {
            let what = if a.is_string() { "str" } else { "list" };
            Err(PyError::type_error(format!(
                "can only concatenate {what} (not \"{}\") to {what}",
                type_name(b)
            )))
        }
        (BinOp::Mul, Value::String(_) | Value::Array(_), _) => repeat(a, b),
        // In place, CPython tries the right operand's repetition only when the left has no
        // sequence methods at all, and a dict has some (`in`): `d *= [1]` is unsupported.
        (BinOp::Mul, _, Value::String(_) | Value::Array(_)) if !(inplace && a.is_object()) => {
            repeat(b, a)
        }
        (BinOp::Mod, Value::String(fmt), _) => crate::format::printf(fmt, b).map(Value::String),
        _ => Err(unsupported(op, inplace, a, b)),
    }
}

/// `seq * n` for a str or list `seq`.
pub(crate) fn repeat(seq: &Value, n: &Value) -> Result<Value, PyError> {
    let Some(n) = as_int(n) else {
        return Err(PyError::type_error(format!(
            "can't multiply sequence by non-int of type '{}'",
            type_name(n)
        )));
    };
    if i64::try_from(n).is_err() {
        return Err(PyError::new(
            "OverflowError",
            "cannot fit 'int' into an index-sized integer",
        ));
    }
    let times = usize::try_from(n.max(0)).unwrap_or(0);
    // Python repeats references; a JSON list repeats copies, so its cost is every value
    // nested in it.
    let weight = match seq {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.iter().map(size).sum(),
        _ => 0,
    };
    if weight.saturating_mul(times) > MAX_ITEMS {
        return Err(too_many_items());
    }
    // An empty sequence stays empty however many times it is repeated (no loop of 2**63).
    let times = if weight == 0 { 0 } else { times };
    Ok(match seq {
        Value::String(s) => Value::String(s.repeat(times)),
        Value::Array(a) => Value::Array(
            std::iter::repeat_n(a, times)
                .flat_map(|a| a.iter().cloned())
                .collect(),
        ),
        other => other.clone(),
    })
}

pub(crate) fn too_many_items() -> PyError {
    PyError::new(
        "MemoryError",
        format!("result would exceed {MAX_ITEMS} items, the native evaluator's limit"),
    )
}

/// `-v`.
pub(crate) fn neg(v: &Value) -> Result<Value, PyError> {
    match Num::of(v) {
        Some(Num::Int(i)) => num_value(Num::Int(-i)),
        Some(Num::Float(f)) => float_value(-f),
        None => Err(bad_unary("-", v)),
    }
}

/// `+v`.
pub(crate) fn pos(v: &Value) -> Result<Value, PyError> {
    match Num::of(v) {
        Some(n) => num_value(n),
        None => Err(bad_unary("+", v)),
    }
}

fn bad_unary(op: &str, v: &Value) -> PyError {
    PyError::type_error(format!(
        "bad operand type for unary {op}: '{}'",
        type_name(v)
    ))
}

fn zero_div(message: &str) -> PyError {
    PyError::new("ZeroDivisionError", message)
}

/// A binary operation on two numbers, CPython's rules for int and float.
fn numeric(op: BinOp, a: Num, b: Num) -> Result<Num, PyError> {
    use Num::{Float, Int};
    let checked = |r: Option<i128>| r.map(Int).ok_or_else(int_overflow);
    match (op, a, b) {
        (BinOp::Add, Int(x), Int(y)) => checked(x.checked_add(y)),
        (BinOp::Sub, Int(x), Int(y)) => checked(x.checked_sub(y)),
        (BinOp::Mul, Int(x), Int(y)) => checked(x.checked_mul(y)),
        (BinOp::Div, Int(x), Int(y)) => {
            if y == 0 {
                Err(zero_div("division by zero"))
            } else {
                Ok(Float(int_true_div(x, y)))
            }
        }
        (BinOp::FloorDiv, Int(x), Int(y)) => {
            if y == 0 {
                Err(zero_div("integer division or modulo by zero"))
            } else {
                let q = x / y - i128::from(x % y != 0 && ((x < 0) != (y < 0)));
                checked(Some(q))
            }
        }
        (BinOp::Mod, Int(x), Int(y)) => {
            if y == 0 {
                Err(zero_div("integer modulo by zero"))
            } else {
                Ok(Int(floor_mod(x, y)))
            }
        }
        (BinOp::Pow, Int(x), Int(y)) => {
            if y < 0 {
                float_pow(x as f64, y as f64).map(Float)
            } else {
                int_pow(x, y).map(Int)
            }
        }
        (_, a, b) => float_op(op, a.to_f64(), b.to_f64()).map(Float),
    }
}

/// `x % y` for ints, the result taking the sign of `y`.
fn floor_mod(x: i128, y: i128) -> i128 {
    let r = x % y;
    if r != 0 && ((r < 0) != (y < 0)) {
        r + y
    } else {
        r
    }
}

fn int_pow(x: i128, y: i128) -> Result<i128, PyError> {
    match x {
        0 => Ok(i128::from(y == 0)),
        1 => Ok(1),
        -1 => Ok(if y % 2 == 0 { 1 } else { -1 }),
        _ => u32::try_from(y)
            .ok()
            .and_then(|y| x.checked_pow(y))
            .ok_or_else(int_overflow),
    }
}

/// `x / y` for ints, correctly rounded as CPython's `long_true_divide` is.
fn int_true_div(x: i128, y: i128) -> f64 {
    const EXACT: u128 = 1 << 53;
    let negative = (x < 0) != (y < 0);
    let (a, b) = (x.unsigned_abs(), y.unsigned_abs());
    if a <= EXACT && b <= EXACT {
        // Both convert exactly, so one float division rounds once, like CPython's fast path.
        return x as f64 / y as f64;
    }
    let magnitude = if a == 0 {
        0.0
    } else {
        // Scale a so the quotient has at least 55 bits, keep a sticky bit for the remainder,
        // and let the one int-to-float conversion do the rounding (to nearest, ties to even).
        let bits = |v: u128| 128 - v.leading_zeros() as i32;
        let shift = (56 + bits(b) - bits(a)).max(0);
        let scaled = a << shift;
        let (q, r) = (scaled / b, scaled % b);
        let with_sticky = (q << 1) | u128::from(r != 0);
        let exponent = -(shift + 1);
        with_sticky as f64 * f64::from_bits(((1023 + exponent) as u64) << 52)
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// A binary operation on floats, CPython's `float_*` functions step by step.
fn float_op(op: BinOp, x: f64, y: f64) -> Result<f64, PyError> {
    Ok(match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => {
            if y == 0.0 {
                return Err(zero_div("float division by zero"));
            }
            x / y
        }
        BinOp::Mod => {
            if y == 0.0 {
                return Err(zero_div("float modulo"));
            }
            let m = x % y;
            if m != 0.0 {
                if (y < 0.0) != (m < 0.0) {
                    m + y
                } else {
                    m
                }
            } else {
                0.0f64.copysign(y)
            }
        }
        BinOp::FloorDiv => {
            if y == 0.0 {
                return Err(zero_div("float floor division by zero"));
            }
            let m = x % y;
            let mut div = (x - m) / y;
            if m != 0.0 && ((y < 0.0) != (m < 0.0)) {
                div -= 1.0;
            }
            if div != 0.0 {
                let mut floordiv = div.floor();
                if div - floordiv > 0.5 {
                    floordiv += 1.0;
                }
                floordiv
            } else {
                0.0f64.copysign(x / y)
            }
        }
        BinOp::Pow => return float_pow(x, y),
    })
}

/// `x ** y` for floats, CPython's `float_pow` for finite operands.
fn float_pow(x: f64, y: f64) -> Result<f64, PyError> {
    if y == 0.0 {
        return Ok(1.0);
    }
    if x.is_nan() || y.is_nan() || x.is_infinite() || y.is_infinite() {
        return Ok(x.powf(y));
    }
    let y_is_odd = (y.abs() % 2.0) == 1.0;
    if x == 0.0 {
        if y < 0.0 {
            return Err(zero_div("0.0 cannot be raised to a negative power"));
        }
        return Ok(if y_is_odd { x } else { 0.0 });
    }
    let (base, negate) = if x < 0.0 {
        if y != y.floor() {
            // CPython computes a complex power, whose modulus is |x| ** y: when that
            // overflows it raises OverflowError itself, else it returns the complex number.
            if (-x).powf(y).is_infinite() {
                return Err(PyError::new("OverflowError", "complex exponentiation"));
            }
            return Err(PyError::new(
                "ValueError",
                "negative number cannot be raised to a fractional power (Python gives a complex number, which a JSON payload cannot hold)",
            ));
        }
        (-x, y_is_odd)
    } else {
        (x, false)
    };
    if base == 1.0 {
        return Ok(if negate { -1.0 } else { 1.0 });
    }
    let r = base.powf(y);
    if r.is_infinite() {
        return Err(PyError::new(
            "OverflowError",
            "(34, 'Numerical result out of range')",
        ));
    }
    Ok(if negate { -r } else { r })
}
