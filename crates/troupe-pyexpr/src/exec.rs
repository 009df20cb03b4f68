//! Execution of a native statement: one assignment or augmented assignment into `p`, with
//! Python's order of evaluation and its errors.

use std::borrow::Cow;

use serde_json::Value;

use crate::arith::{binop, repeat};
use crate::ast::{BinOp, Expr, Stmt};
use crate::eval::{dict_key, ev, getitem, Scope};
use crate::value::{as_int, check_hashable, seq_index, type_name};
use crate::PyError;

/// Runs `stmt` on `p`. Every expression in it reads `p` as it was before the statement, as
/// in Python (the only write is the final store). On error `p` is unchanged.
pub fn exec(stmt: &Stmt, p: &mut Value) -> Result<(), PyError> {
    let (keys, new) = {
        let scope = Scope::new(p);
        match stmt {
            // Python evaluates the value first, then the target's indexes left to right,
            // then stores (which is where a bad last index raises).
            Stmt::Assign(target, value) => {
                let value = ev(value, &scope)?.into_owned();
                let mut keys = Vec::with_capacity(target.len());
                if let Some((container, key)) = walk(target, &scope, p, &mut keys)? {
                    keys.push(store_key(&container, &key, true)?);
                }
                (keys, value)
            }
            // `t op= v`: the target's container, index and current item first (a missing
            // item raises as a read does), then `v`, the operation, and the store.
            Stmt::Augassign(op, target, value) => {
                let mut keys = Vec::with_capacity(target.len());
                let new = match walk(target, &scope, p, &mut keys)? {
                    Some((container, key)) => {
                        let current = getitem(&container, &key)?.into_owned();
                        let operand = ev(value, &scope)?;
                        let new = inplace(*op, &current, &operand)?;
                        keys.push(store_key(&container, &key, true)?);
                        new
                    }
                    None => inplace(*op, p, &*ev(value, &scope)?)?,
                };
                (keys, new)
            }
        }
    };
    store(p, keys, new);
    Ok(())
}

/// An index into a container that is known to accept the store.
enum Key {
    Field(String),
    Index(usize),
}

/// The container an assignment stores into and the index it stores at.
type Slot<'a> = (Cow<'a, Value>, Cow<'a, Value>);

/// Evaluates the target's indexes but the last and reads through them, pushing the path's
/// keys on `keys`; returns the container and the last index, or `None` for a bare `p`.
fn walk<'a>(
    target: &'a [Expr],
    scope: &Scope<'a>,
    p: &'a Value,
    keys: &mut Vec<Key>,
) -> Result<Option<Slot<'a>>, PyError> {
    let Some((last, path)) = target.split_last() else {
        return Ok(None);
    };
    let mut container: Cow<'a, Value> = Cow::Borrowed(p);
    for index in path {
        let key = ev(index, scope)?;
        keys.push(store_key(&container, &key, false)?);
        container = match container {
            Cow::Borrowed(c) => getitem(c, &key)?,
            Cow::Owned(c) => Cow::Owned(getitem(&c, &key)?.into_owned()),
        };
    }
    let key = ev(last, scope)?;
    Ok(Some((container, key)))
}

/// The key for `container[key]`: on the path (`last` false) the getitem that follows raises
/// any error, so a key that fails here is never used; for the store itself, the errors of a
/// Python `container[key] = v`.
fn store_key(container: &Value, key: &Value, last: bool) -> Result<Key, PyError> {
    match container {
        Value::Object(_) => {
            if !last {
                return Ok(Key::Field(key.as_str().unwrap_or_default().to_string()));
            }
            check_hashable(key)?;
            dict_key(key.clone()).map(Key::Field)
        }
        Value::Array(items) => {
            let Some(i) = as_int(key) else {
                return Err(PyError::type_error(format!(
                    "list indices must be integers or slices, not {}",
                    type_name(key)
                )));
            };
            match seq_index(i, items.len())? {
                Some(i) => Ok(Key::Index(i)),
                None if last => Err(PyError::new(
                    "IndexError",
                    "list assignment index out of range",
                )),
                None => Err(PyError::new("IndexError", "list index out of range")),
            }
        }
        _ if !last => Ok(Key::Index(0)),
        _ => Err(PyError::type_error(format!(
            "'{}' object does not support item assignment",
            type_name(container)
        ))),
    }
}

/// `current op= operand`: a list's `+=` extends it with any iterable and its `*=` repeats it;
/// everything else is the binary operator (with `op=` in its messages).
fn inplace(op: BinOp, current: &Value, operand: &Value) -> Result<Value, PyError> {
    match (op, current) {
        (BinOp::Add, Value::Array(items)) => {
            let extra: Vec<Value> = match operand {
                Value::Array(more) => more.clone(),
                Value::String(s) => s.chars().map(|c| Value::String(c.to_string())).collect(),
                Value::Object(map) => map.keys().map(|k| Value::String(k.clone())).collect(),
                other => {
                    return Err(PyError::type_error(format!(
                        "'{}' object is not iterable",
                        type_name(other)
                    )))
                }
            };
            let mut all = items.clone();
            all.extend(extra);
            Ok(Value::Array(all))
        }
        (BinOp::Mul, Value::Array(_)) => repeat(current, operand),
        _ => binop(op, current, operand, true),
    }
}

/// Writes `new` at `keys` below `p`; `walk` has checked every step.
fn store(p: &mut Value, keys: Vec<Key>, new: Value) {
    let mut slot = p;
    for key in keys {
        let next = match (slot, key) {
            (Value::Object(map), Key::Field(k)) => map.entry(k).or_insert(Value::Null),
            (Value::Array(items), Key::Index(i)) => match items.get_mut(i) {
                Some(item) => item,
                None => return,
            },
            _ => return,
        };
        slot = next;
    }
    *slot = new;
}
