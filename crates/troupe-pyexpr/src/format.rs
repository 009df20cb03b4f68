//! `str % value`: printf-style formatting, CPython 3.11's `PyUnicode_Format` step by step.
//!
//! A JSON value is never a tuple, so the right operand is always one argument; a list or a
//! dict is also a "mapping" for `%(key)s` (CPython's `PyMapping_Check`), which is why
//! `"abc" % []` gives `"abc"` where `"abc" % 5` raises.

use serde_json::Value;

use crate::convert::{py_repr, py_str};
use crate::eval::getitem;
use crate::value::{type_name, Num};
use crate::{PyError, MAX_ITEMS};

const LJUST: u8 = 1;
const SIGN: u8 = 2;
const BLANK: u8 = 4;
const ALT: u8 = 8;
const ZERO: u8 = 16;

/// The arguments still to format: the one value, then nothing (`%(key)` swaps in another).
struct Args<'a> {
    current: std::borrow::Cow<'a, Value>,
    used: bool,
}

impl<'a> Args<'a> {
    fn next(&mut self) -> Result<Value, PyError> {
        if self.used {
            return Err(PyError::type_error(
                "not enough arguments for format string",
            ));
        }
        self.used = true;
        Ok(self.current.clone().into_owned())
    }
}

/// One conversion: `%[(key)][flags][width][.precision][hlL]type`.
struct Spec {
    ch: char,
    flags: u8,
    width: Option<usize>,
    prec: Option<usize>,
    sign: bool,
}

/// `fmt % arg`.
pub(crate) fn printf(fmt: &str, arg: &Value) -> Result<String, PyError> {
    let chars: Vec<char> = fmt.chars().collect();
    let mapping = matches!(arg, Value::Array(_) | Value::Object(_)).then_some(arg);
    let mut args = Args {
        current: std::borrow::Cow::Borrowed(arg),
        used: false,
    };
    let mut out = String::with_capacity(fmt.len());
    let mut pos = 0;
    while pos < chars.len() {
        if chars[pos] != '%' {
            out.push(chars[pos]);
            pos += 1;
            continue;
        }
        pos += 1;
        if chars.get(pos) == Some(&'%') {
            out.push('%');
            pos += 1;
            continue;
        }
        let spec = parse(&chars, &mut pos, mapping, &mut args)?;
        let text = convert(spec, &mut args, pos)?;
        out.push_str(&text);
    }
    if !args.used && mapping.is_none() {
        return Err(PyError::type_error(
            "not all arguments converted during string formatting",
        ));
    }
    Ok(out)
}

fn incomplete() -> PyError {
    PyError::new("ValueError", "incomplete format")
}

/// Parses a conversion after its `%`; `pos` ends after the type character.
fn parse<'a>(
    chars: &[char],
    pos: &mut usize,
    mapping: Option<&'a Value>,
    args: &mut Args<'a>,
) -> Result<Spec, PyError> {
    if chars.get(*pos) == Some(&'(') {
        let Some(map) = mapping else {
            return Err(PyError::type_error("format requires a mapping"));
        };
        let start = *pos + 1;
        let mut depth = 1;
        let mut i = start;
        while depth > 0 {
            match chars.get(i) {
                None => return Err(PyError::new("ValueError", "incomplete format key")),
                Some(')') => depth -= 1,
                Some('(') => depth += 1,
                Some(_) => {}
            }
            i += 1;
        }
        let key: String = chars[start..i - 1].iter().collect();
        args.current = getitem(map, &Value::String(key))?;
        args.used = false;
        *pos = i;
    }
    let mut flags = 0;
    while let Some(c) = chars.get(*pos) {
        let f = match c {
            '-' => LJUST,
            '+' => SIGN,
            ' ' => BLANK,
            '#' => ALT,
            '0' => ZERO,
            _ => break,
        };
        flags |= f;
        *pos += 1;
    }
    let width = if chars.get(*pos) == Some(&'*') {
        *pos += 1;
        let w = star(args, i128::from(i64::MAX), "ssize_t")?;
        if w < 0 {
            flags |= LJUST;
        }
        usize::try_from(w.unsigned_abs()).ok()
    } else {
        digits(chars, pos, i64::MAX as u128, "width")?
    };
    let mut prec = None;
    if chars.get(*pos) == Some(&'.') {
        *pos += 1;
        if chars.get(*pos) == Some(&'*') {
            *pos += 1;
            let p = star(args, i128::from(i32::MAX), "int")?;
            prec = usize::try_from(p.max(0)).ok();
        } else {
            prec = Some(digits(chars, pos, i32::MAX as u128, "precision")?.unwrap_or(0));
        }
    }
    if matches!(chars.get(*pos), Some('h' | 'l' | 'L')) {
        *pos += 1;
    }
    let ch = *chars.get(*pos).ok_or_else(incomplete)?;
    *pos += 1;
    Ok(Spec {
        ch,
        flags,
        width,
        prec,
        sign: false,
    })
}

/// The int a `*` takes from the arguments, within C's `ssize_t` or `int` as CPython needs.
fn star(args: &mut Args, max: i128, c_type: &str) -> Result<i128, PyError> {
    let i = match Num::of(&args.next()?) {
        Some(Num::Int(i)) => i,
        _ => return Err(PyError::type_error("* wants int")),
    };
    if i > max || i < -max - 1 {
        return Err(PyError::new(
            "OverflowError",
            format!("Python int too large to convert to C {c_type}"),
        ));
    }
    Ok(i)
}

/// Refuses a width or precision that would build more than [`MAX_ITEMS`] characters.
fn capped(n: usize) -> Result<usize, PyError> {
    if n > MAX_ITEMS {
        Err(crate::arith::too_many_items())
    } else {
        Ok(n)
    }
}

/// A run of ASCII digits (a width or a precision), if any; past `limit` (CPython's
/// `Py_ssize_t` for a width, C `int` for a precision) it raises `ValueError: {what} too big`.
fn digits(
    chars: &[char],
    pos: &mut usize,
    limit: u128,
    what: &str,
) -> Result<Option<usize>, PyError> {
    let mut n: Option<u128> = None;
    while let Some(d) = chars.get(*pos).and_then(|c| c.to_digit(10)) {
        let next = n.unwrap_or(0) * 10 + u128::from(d);
        if next > limit {
            return Err(PyError::new("ValueError", format!("{what} too big")));
        }
        n = Some(next);
        *pos += 1;
    }
    Ok(n.and_then(|n| usize::try_from(n).ok()))
}

/// Formats one argument by `spec`; `pos` is just past the type character (for messages).
fn convert(mut spec: Spec, args: &mut Args, pos: usize) -> Result<String, PyError> {
    let v = args.next()?;
    let text = match spec.ch {
        's' => py_str(&v),
        'r' => py_repr(&v),
        'a' => ascii(&py_repr(&v)),
        'd' | 'i' | 'u' | 'o' | 'x' | 'X' => {
            spec.sign = true;
            format_int(&spec, &v)?
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            spec.sign = true;
            let Some(n) = Num::of(&v) else {
                return Err(PyError::type_error(format!(
                    "must be real number, not {}",
                    type_name(&v)
                )));
            };
            let prec = capped(spec.prec.unwrap_or(6))?;
            format_float(n.to_f64(), spec.ch, prec, spec.flags & ALT != 0)
        }
        'c' => match (&v, Num::of(&v)) {
            (Value::String(s), _) if s.chars().count() == 1 => s.clone(),
            (_, Some(Num::Int(i))) => u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .map(String::from)
                .ok_or_else(|| PyError::new("OverflowError", "%c arg not in range(0x110000)"))?,
            _ => return Err(PyError::type_error("%c requires int or char")),
        },
        c => {
            let shown = if ('\u{1f}'..='~').contains(&c) {
                c
            } else {
                '?'
            };
            return Err(PyError::new(
                "ValueError",
                format!(
                    "unsupported format character '{shown}' (0x{:x}) at index {}",
                    c as u32,
                    pos - 1
                ),
            ));
        }
    };
    capped(spec.width.unwrap_or(0))?;
    Ok(pad(&spec, &text))
}

/// `ascii()` of a repr: every non-ASCII character escaped.
fn ascii(repr: &str) -> String {
    let mut out = String::with_capacity(repr.len());
    for c in repr.chars() {
        match c as u32 {
            0..=0x7f => out.push(c),
            n @ 0x80..=0xff => out.push_str(&format!("\\x{n:02x}")),
            n @ 0x100..=0xffff => out.push_str(&format!("\\u{n:04x}")),
            n => out.push_str(&format!("\\U{n:08x}")),
        }
    }
    out
}

fn format_int(spec: &Spec, v: &Value) -> Result<String, PyError> {
    let ch = spec.ch;
    let wrong = || {
        let what = if matches!(ch, 'o' | 'x' | 'X') {
            "an integer"
        } else {
            "a real number"
        };
        PyError::type_error(format!(
            "%{ch} format: {what} is required, not {}",
            type_name(v)
        ))
    };
    // The digits (no sign) and whether the number is negative.
    let (negative, mut digits) = match Num::of(v) {
        Some(Num::Int(i)) => (i < 0, radix(i.unsigned_abs(), ch)),
        Some(Num::Float(f)) if !matches!(ch, 'o' | 'x' | 'X') => {
            // int(f) in full: a float's integral part may exceed 64 bits, and Rust prints
            // it exactly, as Python's big int would (JSON floats are finite).
            let t = f.trunc();
            (t < 0.0, format!("{:.0}", t.abs()))
        }
        _ => return Err(wrong()),
    };
    if let Some(p) = spec.prec {
        if p > digits.len() {
            capped(p)?;
            digits = format!("{}{digits}", "0".repeat(p - digits.len()));
        }
    }
    let prefix = match (ch, spec.flags & ALT != 0) {
        ('o', true) => "0o",
        ('x', true) => "0x",
        ('X', true) => "0X",
        _ => "",
    };
    Ok(format!(
        "{}{prefix}{digits}",
        if negative { "-" } else { "" }
    ))
}

fn radix(n: u128, ch: char) -> String {
    match ch {
        'o' => format!("{n:o}"),
        'x' => format!("{n:x}"),
        'X' => format!("{n:X}"),
        _ => n.to_string(),
    }
}

/// `PyOS_double_to_string(x, ch, prec, alt)`: C's `%e`, `%f`, `%g` with Python's rounding
/// (exact, ties to even) and at least two exponent digits.
pub(crate) fn format_float(x: f64, ch: char, prec: usize, alt: bool) -> String {
    let upper = ch.is_ascii_uppercase();
    let s = match ch.to_ascii_lowercase() {
        'f' => {
            let mut s = fixed(x, prec);
            if alt && prec == 0 {
                s.push('.');
            }
            s
        }
        'e' => exp_form(x, prec, alt),
        _ => {
            let p = prec.max(1);
            let exp = if x == 0.0 { 0 } else { exponent_of(x, p) };
            let mut s = if (-4..p as i32).contains(&exp) {
                fixed(x, (p as i32 - 1 - exp) as usize)
            } else {
                exp_form(x, p - 1, alt)
            };
            if alt {
                if !s.contains('.') {
                    match s.find('e') {
                        Some(i) => s.insert(i, '.'),
                        None => s.push('.'),
                    }
                }
            } else {
                s = strip_zeros(&s);
            }
            s
        }
    };
    if upper {
        s.to_ascii_uppercase()
    } else {
        s
    }
}

/// Past this many digits after the point a double's exact decimal expansion (at most 1074
/// fractional digits, 767 significant ones) has only zeros left; Rust's formatter also
/// refuses precisions above `u16::MAX`, so longer ones are zeros appended to this.
const EXACT_DIGITS: usize = 1100;

/// `x` with `prec` digits after the point, exactly rounded.
fn fixed(x: f64, prec: usize) -> String {
    let shown = prec.min(EXACT_DIGITS);
    let mut s = format!("{x:.shown$}");
    s.extend(std::iter::repeat_n('0', prec - shown));
    s
}

/// The decimal exponent of `x` once rounded to `digits` significant digits.
fn exponent_of(x: f64, digits: usize) -> i32 {
    let s = format!("{:.*e}", digits.min(EXACT_DIGITS) - 1, x);
    s.rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0)
}

fn exp_form(x: f64, prec: usize, alt: bool) -> String {
    let shown = prec.min(EXACT_DIGITS);
    let s = format!("{x:.shown$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = format!("{mantissa}{}", "0".repeat(prec - shown));
    let exp: i32 = exp.parse().unwrap_or(0);
    let dot = if alt && prec == 0 { "." } else { "" };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}{dot}e{sign}{:02}", exp.abs())
}

/// `%g` without `#`: trailing zeros of the fraction go, and the point if nothing follows it.
fn strip_zeros(s: &str) -> String {
    let (mantissa, exp) = match s.find('e') {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    format!("{mantissa}{exp}")
}

/// Width, precision (for `s`, `r`, `a`), sign and `#` prefix: `unicode_format_arg_output`.
fn pad(spec: &Spec, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut len = chars.len();
    let fill = if spec.sign && spec.flags & ZERO != 0 {
        '0'
    } else {
        ' '
    };
    let mut width = spec.width.unwrap_or(0);
    if spec.width.is_none_or(|w| w <= len)
        && spec.prec.is_none_or(|p| p >= len)
        && spec.flags & (SIGN | BLANK) == 0
    {
        return text.to_string();
    }
    if matches!(spec.ch, 's' | 'r' | 'a') {
        if let Some(p) = spec.prec {
            len = len.min(p);
        }
    }
    let mut start = 0;
    let mut sign = spec.sign;
    let mut signchar = None;
    if sign {
        match chars.first() {
            Some(c @ ('-' | '+')) => {
                signchar = Some(*c);
                len -= 1;
                start = 1;
            }
            _ if spec.flags & SIGN != 0 => signchar = Some('+'),
            _ if spec.flags & BLANK != 0 => signchar = Some(' '),
            _ => sign = false,
        }
    }
    width = width.max(len);
    let prefixed = spec.flags & ALT != 0 && matches!(spec.ch, 'x' | 'X' | 'o');
    let mut out = String::with_capacity(width + 2);
    if sign {
        if fill != ' ' {
            out.extend(signchar);
        }
        if width > len {
            width -= 1;
        }
    }
    if prefixed {
        if fill != ' ' {
            out.extend(&chars[start..start + 2]);
            start += 2;
        }
        width = width.saturating_sub(2);
        len -= 2;
    }
    if width > len && spec.flags & LJUST == 0 {
        out.extend(std::iter::repeat_n(fill, width - len));
        width = len;
    }
    if fill == ' ' {
        if sign {
            out.extend(signchar);
        }
        if prefixed {
            out.extend(&chars[start..start + 2]);
            start += 2;
        }
    }
    out.extend(&chars[start..start + len]);
    if width > len {
        out.extend(std::iter::repeat_n(' ', width - len));
    }
    out
}
