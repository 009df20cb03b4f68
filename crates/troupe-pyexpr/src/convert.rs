//! `str()`, `repr()`, `len()`, `int()`, `float()` and `bool()` as CPython 3.11 computes them.

use serde_json::Value;

use crate::printable::{decimal_digit, is_printable, is_space};
use crate::value::{float_value, int_value, type_name, Num};
use crate::PyError;

/// `str(v)` exactly as CPython prints it: a str is itself, anything else its `repr`.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        _ => py_repr(v),
    }
}

/// `repr(v)` exactly as CPython prints it (`'a'`, `1.0`, `1e+20`, `{'k': [None, True]}`).
pub fn py_repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(v, &mut out);
    out
}

fn write_repr(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => match Num::of(v) {
            Some(Num::Float(f)) => out.push_str(&float_repr(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(&str_repr(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&str_repr(k));
                out.push_str(": ");
                write_repr(item, out);
            }
            out.push('}');
        }
    }
}

/// `repr(f)`: the shortest digits that read back as `f`, in fixed notation when the decimal
/// point falls within -4 ..= 16 of the first digit, else as `1e+20`, `1.5e-07`.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as Python's repr does.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let decpt = exp + 1;
    let n = digits.len() as i32;
    let body = if (-4 < decpt) && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{}", "0".repeat((-decpt) as usize), digits)
        } else if decpt >= n {
            format!("{}{}.0", digits, "0".repeat((decpt - n) as usize))
        } else {
            let (a, b) = digits.split_at(decpt as usize);
            format!("{a}.{b}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{first}{frac}e{esign}{:02}", exp.abs())
    };
    format!("{sign}{body}")
}

/// `repr(s)`: single quotes unless `s` holds `'` and no `"`, with CPython's escapes.
pub(crate) fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            c if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x7f || is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

/// `len(v)`.
pub(crate) fn py_len(v: &Value) -> Result<Value, PyError> {
    let n = match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => {
            return Err(PyError::type_error(format!(
                "object of type '{}' has no len()",
                type_name(v)
            )))
        }
    };
    Ok(Value::from(n as u64))
}

/// `int(v)`.
pub(crate) fn py_int(v: &Value) -> Result<Value, PyError> {
    match (v, Num::of(v)) {
        (_, Some(Num::Int(i))) => int_value(i),
        (_, Some(Num::Float(f))) => float_to_int(f),
        (Value::String(s), _) => parse_int(s),
        _ => Err(PyError::type_error(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            type_name(v)
        ))),
    }
}

/// `int(f)`: truncation toward zero.
pub(crate) fn float_to_int(f: f64) -> Result<Value, PyError> {
    if f.is_nan() {
        return Err(PyError::new(
            "ValueError",
            "cannot convert float NaN to integer",
        ));
    }
    if f.is_infinite() {
        return Err(PyError::new(
            "OverflowError",
            "cannot convert float infinity to integer",
        ));
    }
    let t = f.trunc();
    // 2**127 bounds what an i128 holds; anything this large overflows JSON's ints anyway.
    if t.abs() >= 1.7e38 {
        return Err(crate::value::int_overflow());
    }
    int_value(t as i128)
}

/// The whitespace `int()` and `float()` ignore around a number: CPython maps non-ASCII
/// whitespace to a space and then strips ASCII whitespace only, so `\x1c`..`\x1f` (which
/// `str.isspace()` accepts) stay and make the literal invalid.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| {
        if c.is_ascii() {
            matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
        } else {
            is_space(c)
        }
    })
}

/// The ASCII form of a run of digits and single underscores between digits (`1_000`), with
/// Unicode decimal digits mapped to ASCII, or `None` when the run is not one.
fn digit_part(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut prev_digit = false;
    for c in s.chars() {
        if c == '_' {
            if !prev_digit {
                return None;
            }
            prev_digit = false;
        } else {
            out.push(char::from(b'0' + decimal_digit(c)?));
            prev_digit = true;
        }
    }
    prev_digit.then_some(out)
}

fn parse_int(original: &str) -> Result<Value, PyError> {
    let invalid = || {
        PyError::new(
            "ValueError",
            // CPython formats this one with `%.200R`: the repr cut at 200 characters.
            format!(
                "invalid literal for int() with base 10: {}",
                str_repr(original).chars().take(200).collect::<String>()
            ),
        )
    };
    let s = py_strip(original);
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = digit_part(body).ok_or_else(invalid)?;
    if digits.len() > 4300 {
        return Err(PyError::new(
            "ValueError",
            format!(
                "Exceeds the limit (4300 digits) for integer string conversion: value has {} digits; use sys.set_int_max_str_digits() to increase the limit",
                digits.len()
            ),
        ));
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 30 {
        return Err(crate::value::int_overflow());
    }
    let magnitude: i128 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().map_err(|_| invalid())?
    };
    int_value(if neg { -magnitude } else { magnitude })
}

/// `float(v)`.
pub(crate) fn py_float(v: &Value) -> Result<Value, PyError> {
    match (v, Num::of(v)) {
        (_, Some(n)) => float_value(n.to_f64()),
        (Value::String(s), _) => float_value(parse_float(s)?),
        _ => Err(PyError::type_error(format!(
            "float() argument must be a string or a real number, not '{}'",
            type_name(v)
        ))),
    }
}

/// `float(s)` with CPython's grammar: `[sign] (digits [. [digits]] | . digits) [e [sign]
/// digits]` or `inf`/`infinity`/`nan` in any case, digits allowing single underscores.
fn parse_float(original: &str) -> Result<f64, PyError> {
    let invalid = || {
        PyError::new(
            "ValueError",
            format!("could not convert string to float: {}", str_repr(original)),
        )
    };
    let s = py_strip(original);
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.to_ascii_lowercase();
    let magnitude = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else {
        let (mant, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (int_part, frac_part) = match mant.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (mant, None),
        };
        let int_digits = if int_part.is_empty() {
            String::new()
        } else {
            digit_part(int_part).ok_or_else(invalid)?
        };
        let frac_digits = match frac_part {
            Some(f) if !f.is_empty() => digit_part(f).ok_or_else(invalid)?,
            _ => String::new(),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let mut ascii = format!("{int_digits}.{frac_digits}");
        if int_digits.is_empty() {
            ascii = format!("0{ascii}");
        }
        if let Some(e) = exp {
            let (esign, edigits) = match e.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", e.strip_prefix('+').unwrap_or(e)),
            };
            let edigits = digit_part(edigits).ok_or_else(invalid)?;
            ascii = format!("{ascii}e{esign}{edigits}");
        }
        ascii.parse::<f64>().map_err(|_| invalid())?
    };
    Ok(if neg { -magnitude } else { magnitude })
}
