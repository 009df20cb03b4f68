//! The ABI path grammar (protocol.md §6.4) with GET/SET/DEL on JSON values.
//!
//! This is the reference implementation the flow routers use; the Python runtime
//! implements the same semantics and both are checked against `testdata/abi_paths.json`.
//!
//! Semantics follow Python's `dict`/`list`/`str` subscription, applied to the JSON data
//! model, with three deliberate rules on top:
//! - Misplaced slices (any slice in GET/DEL, a non-terminal slice in SET) and grammar
//!   errors are reported as `ValueError` before anything is navigated.
//! - A slice SET needs a list value (Python would also splice strings and dict keys).
//! - An integer index SET on an object is a `TypeError` (Python would create a non-string
//!   key that JSON cannot carry). Reading or deleting one is a `KeyError`, as in Python.
//!
//! Failed operations leave the document unchanged.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// A failed ABI path operation, mapped to the Python exception the runtime raises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    /// Malformed path, or a slice where none is allowed (`ValueError`).
    #[error("{0}")]
    Value(String),
    /// Missing object key (`KeyError`).
    #[error("{0}")]
    Key(String),
    /// Array index out of range (`IndexError`).
    #[error("{0}")]
    Index(String),
    /// Operation not supported by the value's type (`TypeError`).
    #[error("{0}")]
    Type(String),
    /// Write to a read-only part of the context (`PermissionError`).
    #[error("{0}")]
    Permission(String),
}

impl AbiError {
    /// Name of the Python exception type for this error.
    pub fn python_type(&self) -> &'static str {
        match self {
            AbiError::Value(_) => "ValueError",
            AbiError::Key(_) => "KeyError",
            AbiError::Index(_) => "IndexError",
            AbiError::Type(_) => "TypeError",
            AbiError::Permission(_) => "PermissionError",
        }
    }

    /// The message without the type name.
    pub fn message(&self) -> &str {
        match self {
            AbiError::Value(m)
            | AbiError::Key(m)
            | AbiError::Index(m)
            | AbiError::Type(m)
            | AbiError::Permission(m) => m,
        }
    }
}

/// Path prefixes that SET/DEL may write (§6.5).
pub const WRITABLE_PREFIXES: [&str; 3] = [".route.next", ".headers", ".status"];

/// §6.5: SET/DEL are allowed only when the path string starts with `.route.next`,
/// `.headers` or `.status`.
pub fn check_write_access(path: &str) -> Result<(), AbiError> {
    if WRITABLE_PREFIXES.iter().any(|p| path.starts_with(p)) {
        Ok(())
    } else {
        Err(AbiError::Permission(format!(
            "path '{path}' is read-only: SET/DEL may only change .route.next, .headers or .status"
        )))
    }
}

/// One path segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `.ident` or `["key"]`.
    Key(String),
    /// `[int]`; negative counts from the end.
    Index(i64),
    /// `[start:stop]`, either bound optional.
    Slice(Option<i64>, Option<i64>),
}

/// A parsed ABI path: one or more segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    segments: Vec<Segment>,
}

impl Path {
    /// Parses a path string (§6.4). Any character the grammar does not consume is a
    /// `ValueError`.
    pub fn parse(input: &str) -> Result<Path, AbiError> {
        if input.is_empty() {
            return Err(AbiError::Value(
                "empty path: use a path such as .headers or .route.next".to_owned(),
            ));
        }
        if !input.starts_with('.') {
            return Err(AbiError::Value(format!(
                "path must start with '.': {input:?} (for example .headers or .route.next[0])"
            )));
        }
        let bytes = input.as_bytes();
        let mut pos = 0;
        let mut segments = Vec::new();
        while pos < bytes.len() {
            let (segment, next) = parse_segment(input, pos)?;
            segments.push(segment);
            pos = next;
        }
        Ok(Path { segments })
    }

    /// Builds a path from segments; `None` when `segments` is empty.
    pub fn from_segments(segments: Vec<Segment>) -> Option<Path> {
        (!segments.is_empty()).then_some(Path { segments })
    }

    /// The segments, in order (never empty).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// GET: a copy of the value at this path. Slices are rejected.
    pub fn get(&self, doc: &Value) -> Result<Value, AbiError> {
        self.reject_slices("GET", self.segments.len())?;
        let mut node: Cow<'_, Value> = Cow::Borrowed(doc);
        for (i, seg) in self.segments.iter().enumerate() {
            node = match node {
                Cow::Borrowed(v) => self.step(v, i, seg)?,
                Cow::Owned(v) => Cow::Owned(self.step(&v, i, seg)?.into_owned()),
            };
        }
        Ok(node.into_owned())
    }

    /// SET: writes a copy of `value` at this path. Missing intermediate object keys are
    /// created; the last segment may be a key, an index or a slice (Python slice
    /// assignment; the value must then be a list).
    pub fn set(&self, doc: &mut Value, value: Value) -> Result<(), AbiError> {
        let last = self.segments.len() - 1;
        self.reject_slices("SET", last)?;
        let mut created_at = None;
        let result = self.set_inner(doc, value, &mut created_at);
        if result.is_err() {
            if let Some(i) = created_at {
                self.undo_create(doc, i);
            }
        }
        result
    }

    /// DEL: removes the key or array element at this path. Slices are rejected.
    pub fn del(&self, doc: &mut Value) -> Result<(), AbiError> {
        self.reject_slices("DEL", self.segments.len())?;
        let last = self.segments.len() - 1;
        let mut node = doc;
        for i in 0..last {
            node = match self.step_mut(node, i)? {
                StepMut::Ref(next) => next,
                StepMut::Char(c) => return Err(self.str_tail_error(c, i + 1, Op::Del)),
            };
        }
        let at = self.at(last);
        match (&self.segments[last], node) {
            (Segment::Key(k), Value::Object(map)) => match map.remove(k) {
                Some(_) => Ok(()),
                None => Err(missing_key(k, &at)),
            },
            (Segment::Index(i), Value::Array(items)) => {
                let idx = normalize_index(*i, items.len()).ok_or_else(|| {
                    AbiError::Index(format!(
                        "cannot delete index {i}: out of range for a list of length {} at {at}",
                        items.len()
                    ))
                })?;
                items.remove(idx);
                Ok(())
            }
            (Segment::Index(i), Value::Object(_)) => Err(missing_int_key(*i, &at)),
            (seg, v) => Err(AbiError::Type(format!(
                "cannot delete {} from {} at {at}",
                describe(seg),
                type_name(v)
            ))),
        }
    }

    fn reject_slices(&self, op: &str, upto: usize) -> Result<(), AbiError> {
        match self.segments[..upto]
            .iter()
            .find(|s| matches!(s, Segment::Slice(..)))
        {
            Some(seg) => Err(AbiError::Value(format!(
                "slice {} in path {self} is not allowed in {op}: a slice may only be the last segment of a SET path",
                render_segment(seg)
            ))),
            None => Ok(()),
        }
    }

    /// Rendering of the first `n` segments, for messages.
    fn at(&self, n: usize) -> String {
        if n == 0 {
            return "the root".to_owned();
        }
        let mut out = String::new();
        for seg in &self.segments[..n] {
            out.push_str(&render_segment(seg));
        }
        out
    }

    /// One read-only navigation step (segment `i` applied to `v`).
    fn step<'v>(&self, v: &'v Value, i: usize, seg: &Segment) -> Result<Cow<'v, Value>, AbiError> {
        let at = self.at(i);
        match (seg, v) {
            (Segment::Key(k), Value::Object(map)) => map
                .get(k)
                .map(Cow::Borrowed)
                .ok_or_else(|| missing_key(k, &at)),
            (Segment::Index(n), Value::Array(items)) => normalize_index(*n, items.len())
                .map(|idx| Cow::Borrowed(&items[idx]))
                .ok_or_else(|| out_of_range(*n, items.len(), "list", &at)),
            (Segment::Index(n), Value::Object(_)) => Err(missing_int_key(*n, &at)),
            (Segment::Index(n), Value::String(s)) => char_at(s, *n)
                .map(|c| Cow::Owned(Value::String(c)))
                .ok_or_else(|| out_of_range(*n, s.chars().count(), "string", &at)),
            (seg, v) => Err(not_subscriptable(seg, v, &at)),
        }
    }

    /// One mutable navigation step without creating anything.
    fn step_mut<'v>(&self, v: &'v mut Value, i: usize) -> Result<StepMut<'v>, AbiError> {
        let at = self.at(i);
        match (&self.segments[i], v) {
            (Segment::Key(k), Value::Object(map)) => map
                .get_mut(k)
                .map(StepMut::Ref)
                .ok_or_else(|| missing_key(k, &at)),
            (Segment::Index(n), Value::Array(items)) => {
                let len = items.len();
                match normalize_index(*n, len) {
                    Some(idx) => Ok(StepMut::Ref(&mut items[idx])),
                    None => Err(out_of_range(*n, len, "list", &at)),
                }
            }
            (Segment::Index(n), Value::Object(_)) => Err(missing_int_key(*n, &at)),
            (Segment::Index(n), Value::String(s)) => char_at(s, *n)
                .map(StepMut::Char)
                .ok_or_else(|| out_of_range(*n, s.chars().count(), "string", &at)),
            (seg, v) => Err(not_subscriptable(seg, v, &at)),
        }
    }

    /// A write or delete went through a string index: Python keeps navigating the
    /// one-character string (which can still fail with IndexError) and then refuses to
    /// modify it. `from` is the index of the first segment applied to `c`.
    fn str_tail_error(&self, c: String, from: usize, op: Op) -> AbiError {
        let last = self.segments.len() - 1;
        let mut node = Value::String(c);
        for i in from..last {
            match self.step(&node, i, &self.segments[i]) {
                Ok(next) => node = next.into_owned(),
                Err(e) => return e,
            }
        }
        AbiError::Type(format!(
            "cannot {} {} of {} at {}: strings are immutable",
            op.verb(),
            describe(&self.segments[last]),
            type_name(&node),
            self.at(last)
        ))
    }

    fn set_inner(
        &self,
        doc: &mut Value,
        value: Value,
        created_at: &mut Option<usize>,
    ) -> Result<(), AbiError> {
        let last = self.segments.len() - 1;
        let mut node = doc;
        for i in 0..last {
            if let (Segment::Key(k), Value::Object(map)) = (&self.segments[i], &mut *node) {
                if !map.contains_key(k) {
                    map.insert(k.clone(), Value::Object(Map::new()));
                    created_at.get_or_insert(i);
                }
            }
            node = match self.step_mut(node, i)? {
                StepMut::Ref(next) => next,
                StepMut::Char(c) => return Err(self.str_tail_error(c, i + 1, Op::Set)),
            };
        }
        let at = self.at(last);
        match (&self.segments[last], node) {
            (Segment::Key(k), Value::Object(map)) => {
                map.insert(k.clone(), value);
                Ok(())
            }
            (Segment::Index(i), Value::Array(items)) => {
                let idx = normalize_index(*i, items.len()).ok_or_else(|| {
                    AbiError::Index(format!(
                        "cannot set index {i}: out of range for a list of length {} at {at} (use a slice such as [999:] to append)",
                        items.len()
                    ))
                })?;
                items[idx] = value;
                Ok(())
            }
            (Segment::Index(i), Value::Object(_)) => Err(AbiError::Type(format!(
                "cannot set integer index [{i}] on an object at {at}: object keys are strings, use [\"{i}\"]"
            ))),
            (Segment::Slice(start, stop), Value::Array(items)) => match value {
                Value::Array(new_items) => {
                    let (from, to) = slice_bounds(*start, *stop, items.len());
                    items.splice(from..to, new_items);
                    Ok(())
                }
                other => Err(AbiError::Type(format!(
                    "can only assign a list to slice {} at {at}, got {}",
                    render_segment(&self.segments[last]),
                    type_name(&other)
                ))),
            },
            (seg, v) => Err(AbiError::Type(format!(
                "cannot set {} on {} at {at}",
                describe(seg),
                type_name(v)
            ))),
        }
    }

    /// Removes the object key auto-created at segment `i` (which holds everything created
    /// after it), restoring the document after a failed SET.
    fn undo_create(&self, doc: &mut Value, i: usize) {
        let mut node = doc;
        for j in 0..i {
            node = match self.step_mut(node, j) {
                Ok(StepMut::Ref(next)) => next,
                _ => return,
            };
        }
        if let (Segment::Key(k), Value::Object(map)) = (&self.segments[i], node) {
            map.remove(k);
        }
    }
}

impl fmt::Display for Path {
    /// Renders the canonical form: `.ident` where the key allows it, else `["key"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.segments {
            f.write_str(&render_segment(seg))?;
        }
        Ok(())
    }
}

impl FromStr for Path {
    type Err = AbiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::parse(s)
    }
}

/// GET at a path string.
pub fn get(doc: &Value, path: &str) -> Result<Value, AbiError> {
    Path::parse(path)?.get(doc)
}

/// SET at a path string.
pub fn set(doc: &mut Value, path: &str, value: Value) -> Result<(), AbiError> {
    Path::parse(path)?.set(doc, value)
}

/// DEL at a path string.
pub fn del(doc: &mut Value, path: &str) -> Result<(), AbiError> {
    Path::parse(path)?.del(doc)
}

/// True when `key` can be written as `.key` (the `ident` production).
pub fn is_ident(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Renders one segment in canonical form.
pub fn render_segment(seg: &Segment) -> String {
    match seg {
        Segment::Key(k) if is_ident(k) => format!(".{k}"),
        Segment::Key(k) => format!("[\"{k}\"]"),
        Segment::Index(i) => format!("[{i}]"),
        Segment::Slice(a, b) => format!(
            "[{}:{}]",
            a.map(|v| v.to_string()).unwrap_or_default(),
            b.map(|v| v.to_string()).unwrap_or_default()
        ),
    }
}

enum StepMut<'v> {
    Ref(&'v mut Value),
    /// One character taken out of a string by index.
    Char(String),
}

#[derive(Clone, Copy)]
enum Op {
    Set,
    Del,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Del => "delete",
        }
    }
}

fn parse_segment(input: &str, pos: usize) -> Result<(Segment, usize), AbiError> {
    let bytes = input.as_bytes();
    let bad = |why: &str| {
        AbiError::Value(format!(
            "invalid path {input:?} at offset {pos}: {why} (segments are .name, [\"key\"], [index] or [start:stop])"
        ))
    };
    match bytes[pos] {
        b'.' => {
            let start = pos + 1;
            let first = bytes.get(start).copied();
            if !first.is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') {
                return Err(bad(
                    "'.' must be followed by a name starting with a letter or '_'",
                ));
            }
            let len = bytes[start..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'-')
                .count();
            Ok((
                Segment::Key(input[start..start + len].to_owned()),
                start + len,
            ))
        }
        b'[' => {
            if bytes.get(pos + 1) == Some(&b'"') {
                let key_start = pos + 2;
                let close = input[key_start..]
                    .find('"')
                    .map(|i| key_start + i)
                    .ok_or_else(|| bad("unterminated [\"key\"]"))?;
                if close == key_start {
                    return Err(bad("empty key in [\"\"]"));
                }
                if bytes.get(close + 1) != Some(&b']') {
                    return Err(bad("expected ']' after the closing '\"' of a key"));
                }
                return Ok((Segment::Key(input[key_start..close].to_owned()), close + 2));
            }
            let (first, after_first) = parse_int(bytes, pos + 1);
            match bytes.get(after_first) {
                Some(b']') => match first {
                    Some(i) => Ok((Segment::Index(i), after_first + 1)),
                    None => Err(bad("expected an integer index")),
                },
                Some(b':') => {
                    if first.is_none() && after_first != pos + 1 {
                        return Err(bad("'-' must be followed by digits"));
                    }
                    let (second, after_second) = parse_int(bytes, after_first + 1);
                    if second.is_none() && after_second != after_first + 1 {
                        return Err(bad("'-' must be followed by digits"));
                    }
                    if bytes.get(after_second) != Some(&b']') {
                        return Err(bad(
                            "expected ']' to close a slice (steps are not supported)",
                        ));
                    }
                    Ok((Segment::Slice(first, second), after_second + 1))
                }
                _ => Err(bad("expected [\"key\"], [index] or [start:stop]")),
            }
        }
        _ => Err(bad("unexpected character")),
    }
}

/// Parses `["-"] digit {digit}` at `pos`. Returns the value (saturated to `i64`, which
/// behaves like Python's unbounded ints for indexing and slicing) and the position after
/// what was consumed; `None` if no digits (a lone `-` is consumed but yields `None`).
fn parse_int(bytes: &[u8], pos: usize) -> (Option<i64>, usize) {
    let negative = bytes.get(pos) == Some(&b'-');
    let digits_start = if negative { pos + 1 } else { pos };
    let digits = bytes
        .get(digits_start..)
        .unwrap_or_default()
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let end = digits_start + digits;
    if digits == 0 {
        return (None, end);
    }
    let mut value: i64 = 0;
    for &c in &bytes[digits_start..end] {
        let d = i64::from(c - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(d)
        } else {
            value.saturating_mul(10).saturating_add(d)
        };
    }
    (Some(value), end)
}

/// Python index normalisation: negative counts from the end.
fn normalize_index(i: i64, len: usize) -> Option<usize> {
    let len = i128::try_from(len).ok()?;
    let idx = if i < 0 {
        i128::from(i) + len
    } else {
        i128::from(i)
    };
    if (0..len).contains(&idx) {
        usize::try_from(idx).ok()
    } else {
        None
    }
}

/// Python slice bounds for step 1: negative bounds count from the end, everything is
/// clamped to `[0, len]`, and `stop < start` selects the empty range at `start`.
pub fn slice_bounds(start: Option<i64>, stop: Option<i64>, len: usize) -> (usize, usize) {
    let n = i128::try_from(len).unwrap_or(i128::MAX);
    let clamp = |v: Option<i64>, default: i128| -> i128 {
        match v {
            None => default,
            Some(v) if v < 0 => (i128::from(v) + n).max(0),
            Some(v) => i128::from(v).min(n),
        }
    };
    let from = clamp(start, 0);
    let to = clamp(stop, n).max(from);
    (
        usize::try_from(from).unwrap_or(len),
        usize::try_from(to).unwrap_or(len),
    )
}

fn char_at(s: &str, i: i64) -> Option<String> {
    let idx = normalize_index(i, s.chars().count())?;
    s.chars().nth(idx).map(String::from)
}

/// Python's name for the value's type, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn describe(seg: &Segment) -> String {
    match seg {
        Segment::Key(k) => format!("key \"{k}\""),
        Segment::Index(i) => format!("index [{i}]"),
        Segment::Slice(..) => format!("slice {}", render_segment(seg)),
    }
}

fn missing_key(key: &str, at: &str) -> AbiError {
    AbiError::Key(format!("no key \"{key}\" in the dict at {at}"))
}

fn missing_int_key(i: i64, at: &str) -> AbiError {
    AbiError::Key(format!(
        "no key {i} in the dict at {at} (dict keys are strings; use [\"{i}\"])"
    ))
}

fn out_of_range(i: i64, len: usize, what: &str, at: &str) -> AbiError {
    AbiError::Index(format!(
        "index {i} out of range for a {what} of length {len} at {at}"
    ))
}

fn not_subscriptable(seg: &Segment, v: &Value, at: &str) -> AbiError {
    let hint = match (seg, v) {
        (Segment::Key(_), Value::Array(_)) => " (lists take integer indexes such as [0])",
        (Segment::Key(_), Value::String(_)) => " (strings take integer indexes only)",
        _ => "",
    };
    AbiError::Type(format!(
        "cannot read {} of {} at {at}{hint}",
        describe(seg),
        type_name(v)
    ))
}
