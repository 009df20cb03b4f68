//! Evaluation of a native expression against the state `p` (and a comprehension variable).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::ast::Expr;
use crate::compare::compare;
use crate::convert::{py_float, py_int, py_len, py_repr, py_str};
use crate::value::{as_int, check_hashable, seq_index, truthy, type_name};
use crate::{arith, PyError};

/// The names an expression can read: `p`, and the variable of a `fanout_each` comprehension.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    p: &'a Value,
    vars: Vec<(String, &'a Value)>,
}

impl<'a> Scope<'a> {
    /// A scope where `p` is the state.
    pub fn new(p: &'a Value) -> Self {
        Scope {
            p,
            vars: Vec::new(),
        }
    }

    /// This scope with the comprehension variable `name` bound to `value`.
    pub fn with_var(mut self, name: &str, value: &'a Value) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value));
        self
    }

    fn lookup(&self, name: &str) -> Result<&'a Value, PyError> {
        if let Some((_, v)) = self.vars.iter().find(|(n, _)| n == name) {
            return Ok(v);
        }
        if name == "p" {
            return Ok(self.p);
        }
        Err(PyError::new(
            "NameError",
            format!("name '{name}' is not defined"),
        ))
    }
}

/// The value of `expr` in `scope`, or the exception CPython raises for it.
pub fn eval(expr: &Expr, scope: &Scope) -> Result<Value, PyError> {
    ev(expr, scope).map(Cow::into_owned)
}

/// Evaluation that borrows parts of the state and of the expression's constants instead of
/// copying them, so that `p["big"]["x"]` copies nothing.
pub(crate) fn ev<'a>(expr: &'a Expr, scope: &Scope<'a>) -> Result<Cow<'a, Value>, PyError> {
    Ok(match expr {
        Expr::Const(v) => Cow::Borrowed(v),
        Expr::Name(n) => Cow::Borrowed(scope.lookup(n)?),
        Expr::Sub(pair) => {
            let (value, index) = &**pair;
            let container = ev(value, scope)?;
            let key = ev(index, scope)?;
            match container {
                Cow::Borrowed(c) => getitem(c, &key)?,
                Cow::Owned(c) => Cow::Owned(getitem(&c, &key)?.into_owned()),
            }
        }
        Expr::Cmp(left, rest) => {
            let mut left = ev(left, scope)?;
            for (op, right) in rest {
                let right = ev(right, scope)?;
                if !compare(*op, &left, &right)? {
                    return Ok(Cow::Owned(Value::Bool(false)));
                }
                left = right;
            }
            Cow::Owned(Value::Bool(true))
        }
        Expr::And(items) => short_circuit(items, scope, false)?,
        Expr::Or(items) => short_circuit(items, scope, true)?,
        Expr::Not(e) => Cow::Owned(Value::Bool(!truthy(&*ev(e, scope)?))),
        Expr::Bin(op, a, b) => {
            let a = ev(a, scope)?;
            let b = ev(b, scope)?;
            Cow::Owned(arith::binop(*op, &a, &b, false)?)
        }
        Expr::Neg(e) => Cow::Owned(arith::neg(&*ev(e, scope)?)?),
        Expr::Pos(e) => Cow::Owned(arith::pos(&*ev(e, scope)?)?),
        Expr::Call(name, arg) => {
            let f = call_fn(name)?;
            Cow::Owned(f(&*ev(arg, scope)?)?)
        }
        Expr::List(items) => Cow::Owned(Value::Array(
            items
                .iter()
                .map(|e| eval(e, scope))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Dict(pairs) => Cow::Owned(dict_display(pairs, scope)?),
        Expr::Ifexp(parts) => {
            let (test, body, orelse) = &**parts;
            if truthy(&*ev(test, scope)?) {
                ev(body, scope)?
            } else {
                ev(orelse, scope)?
            }
        }
    })
}

type Builtin = fn(&Value) -> Result<Value, PyError>;

fn call_fn(name: &str) -> Result<Builtin, PyError> {
    Ok(match name {
        "len" => py_len,
        "str" => |v| Ok(Value::String(py_str(v))),
        "int" => py_int,
        "float" => py_float,
        "bool" => |v| Ok(Value::Bool(truthy(v))),
        _ => {
            return Err(PyError::new(
                "NameError",
                format!("name '{name}' is not defined"),
            ))
        }
    })
}

/// `a and b and …` / `a or b or …`: the first operand that decides, else the last.
fn short_circuit<'a>(
    items: &'a [Expr],
    scope: &Scope<'a>,
    stop_when: bool,
) -> Result<Cow<'a, Value>, PyError> {
    let mut last = Cow::Owned(Value::Bool(!stop_when));
    for (i, e) in items.iter().enumerate() {
        last = ev(e, scope)?;
        if truthy(&last) == stop_when && i + 1 < items.len() {
            return Ok(last);
        }
    }
    Ok(last)
}

/// A dict display: every key and value is evaluated first (key before value), then the dict
/// is built; the first key that is not a str raises.
fn dict_display(pairs: &[(Expr, Expr)], scope: &Scope) -> Result<Value, PyError> {
    let mut evaluated = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let k = eval(k, scope)?;
        let v = eval(v, scope)?;
        evaluated.push((k, v));
    }
    let mut map = Map::new();
    for (k, v) in evaluated {
        map.insert(dict_key(k)?, v);
    }
    Ok(Value::Object(map))
}

/// A key for a JSON dict: a str; a list or dict is unhashable as in Python, and any other
/// key raises because a JSON object's keys are strings.
pub(crate) fn dict_key(k: Value) -> Result<String, PyError> {
    check_hashable(&k)?;
    match k {
        Value::String(s) => Ok(s),
        other => Err(PyError::type_error(format!(
            "dict keys must be str in a JSON payload, not {} ({}); convert it with str()",
            type_name(&other),
            py_repr(&other)
        ))),
    }
}

/// `container[key]`, borrowing the item of a list or dict.
pub(crate) fn getitem<'a>(container: &'a Value, key: &Value) -> Result<Cow<'a, Value>, PyError> {
    match container {
        Value::String(s) => {
            let Some(i) = as_int(key) else {
                return Err(PyError::type_error(format!(
                    "string indices must be integers, not '{}'",
                    type_name(key)
                )));
            };
            let len = s.chars().count();
            seq_index(i, len)?
                .and_then(|i| s.chars().nth(i))
                .map(|c| Cow::Owned(Value::String(c.to_string())))
                .ok_or_else(|| PyError::new("IndexError", "string index out of range"))
        }
        _ => item(container, key).map(Cow::Borrowed),
    }
}

/// `container[key]` for a list or dict (what an assignment target walks through).
pub(crate) fn item<'a>(container: &'a Value, key: &Value) -> Result<&'a Value, PyError> {
    match container {
        Value::Object(map) => {
            check_hashable(key)?;
            key.as_str()
                .and_then(|k| map.get(k))
                .ok_or_else(|| PyError::new("KeyError", py_repr(key)))
        }
        Value::Array(items) => {
            let Some(i) = as_int(key) else {
                return Err(PyError::type_error(format!(
                    "list indices must be integers or slices, not {}",
                    type_name(key)
                )));
            };
            seq_index(i, items.len())?
                .and_then(|i| items.get(i))
                .ok_or_else(|| PyError::new("IndexError", "list index out of range"))
        }
        _ => Err(PyError::type_error(format!(
            "'{}' object is not subscriptable",
            type_name(container)
        ))),
    }
}
