//! `routers.py`: every router of the given flows as a generator handler on the yield ABI
//! (protocol.md §6.3), standard library only. Each function does what [`crate::native`]
//! does for the same [`Op`]; the shared helpers below carry the parts both need to agree
//! on (loop counters, jumps, fan-out frames, exceptions).

use std::fmt::Write as _;

use serde_json::Value;

use crate::ir::{Adapter, PathKey};
use crate::program::{
    code_name, Code, CodeStmt, Flow, Op, RouterInfo, ERROR_HEADER, FANOUT_HEADER, LOOP_HEADER,
};

/// A Python string literal (JSON's escapes are all valid Python).
fn lit(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// A Python list of strings.
fn list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| lit(s)).collect();
    format!("[{}]", parts.join(", "))
}

const PRELUDE: &str = r#"
import ast as _ast
import builtins as _builtins
import importlib as _importlib
import json as _json

_LOOP = __LOOP__
_ERROR = __ERROR__
_FAN_IN = "x-asya-fan-in"
_FANOUT = __FANOUT__
_user_ns = None


def _ns(native):
    """Globals of a router expression: none for the native subset, else the flow's module
    (inline code calls the functions it imports)."""
    global _user_ns
    if native:
        return {}
    if _user_ns is None:
        _user_ns = vars(_importlib.import_module(MODULE))
    return _user_ns


def _ev(code, p, native, var=None, value=None):
    g = dict(_ns(native))
    g["p"] = p
    if var is not None:
        g[var] = value
    return eval(code, g)


def _ex(code, p, native):
    g = dict(_ns(native))
    g["p"] = p
    exec(code, g)
    return g["p"]


def _fresh(p):
    # Native statements copy what they assign; a JSON round trip between them gives
    # routers.py the same (no aliasing between keys of the state).
    return _json.loads(_json.dumps(p))


def _emit(value):
    if value is None:
        raise TypeError("the flow state is None: a router cannot emit None")
    if isinstance(value, tuple):
        return list(value)
    return value


def _count(loops, name):
    v = loops.get(name) if loops else None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    return 0


def _loop(name, go, body, at, limit):
    h = yield "GET", ".headers"
    loops = h.get(_LOOP)
    loops = dict(loops) if isinstance(loops, dict) else None
    if go:
        n = _count(loops, name) + 1
        if n > limit:
            raise RuntimeError("loop at %s exceeded %d iterations" % (at, limit))
        loops = loops or {}
        loops[name] = n
        yield "SET", ".headers." + _LOOP, loops
        yield "SET", ".route.next[:0]", body + [name]
    elif loops is not None and name in loops:
        del loops[name]
        yield "SET", ".headers." + _LOOP, loops


def _prune(new):
    h = yield "GET", ".headers"
    loops = h.get(_LOOP)
    if isinstance(loops, dict):
        kept = {k: v for k, v in loops.items() if k in new}
        if kept != loops:
            yield "SET", ".headers." + _LOOP, kept


def _jump(marker, inclusive, pre):
    nxt = yield "GET", ".route.next"
    if marker not in nxt:
        raise RuntimeError(
            "route.next has no %s: the flow's route was changed outside its routers" % marker)
    i = nxt.index(marker) + (1 if inclusive else 0)
    new = pre + nxt[i:]
    yield "SET", ".route.next", new
    yield from _prune(new)


def _except(steps, keep_error):
    yield "SET", ".route.next", steps
    if keep_error:
        st = yield "GET", ".status"
        err = st.get("error") if isinstance(st, dict) else None
        if isinstance(err, dict):
            yield "SET", ".headers." + _ERROR, {
                "type": err.get("type", ""), "message": err.get("message", ""),
                "mro": err.get("mro", [])}
    yield from _prune(steps)


def _exc_class(name, mro):
    """The class the runtime reports as `name` with bases `mro`: a built-in, or classes
    made here on top of the nearest built-in base (Exception when none)."""
    pending, base = [], Exception
    for n in [name] + list(mro or []):
        b = getattr(_builtins, n, None) if "." not in n else None
        if isinstance(b, type) and issubclass(b, BaseException):
            base = b
            break
        pending.append(n)
    for n in reversed(pending):
        mod, _, qual = n.rpartition(".")
        base = type(qual, (base,), {"__module__": mod or "builtins"})
    return base


def _raise(name, message):
    cls = _exc_class(name, None)
    raise cls() if message is None else cls(message)


def _reraise():
    h = yield "GET", ".headers"
    err = h.get(_ERROR)
    if not isinstance(err, dict):
        raise RuntimeError("No active exception to reraise")
    cls = _exc_class(err.get("type") or "Exception", err.get("mro") or None)
    m = err.get("message") or ""
    if not m:
        raise cls()
    if issubclass(cls, KeyError):
        # str(KeyError(k)) is repr(k): give back the key whose repr the message is.
        try:
            k = _ast.literal_eval(m)
        except (ValueError, SyntaxError):
            k = None
        if isinstance(k, str) and repr(k) == m:
            raise cls(k)
    raise cls(m)


def _handler(actor, default):
    """The function behind a tool-style actor: ASYA_HANDLER_<ACTOR> (platform.md 4.2), else
    the handler the compiler found; the longest importable module prefix is the module."""
    import os
    path = os.environ.get("ASYA_HANDLER_" + actor.upper().replace("-", "_")) or default
    if not path:
        raise RuntimeError("no handler for actor %s: set ASYA_HANDLER_%s=module.func"
                           % (actor, actor.upper().replace("-", "_")))
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = _importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError("cannot import handler %s of actor %s" % (path, actor))


def _store(p, path, value):
    target = p
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return p


def _fan_out(p, fanin, key, slices):
    nxt = yield "GET", ".route.next"
    eid = yield "GET", ".id"
    for k, (_, arg) in enumerate(slices, 1):
        if arg is None:
            raise TypeError("fan-out argument %d is None: a slice payload cannot be None" % k)
    count = len(slices) + 1
    h = yield "GET", ".headers"
    rnd = _count(h, _FANOUT) + 1
    yield "SET", ".headers." + _FANOUT, rnd

    def header(k):
        return {"actor": fanin, "origin_id": eid, "slice_index": k, "slice_count": count,
                "aggregation_key": key, "round": rnd}

    yield "SET", ".route.next", [fanin] + nxt
    yield "SET", ".headers." + _FAN_IN, header(0)
    yield _emit(p)
    for k, (actor, arg) in enumerate(slices, 1):
        yield "SET", ".route.next", [actor, fanin] + nxt
        yield "SET", ".headers." + _FAN_IN, header(k)
        yield _emit(arg)
"#;

/// Generates routers.py for every router of `flows` (native ones included: with native
/// routers off, or for Asya, all of them run here).
pub fn routers_py(flows: &[Flow]) -> String {
    let mut out = String::new();
    let names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
    let module = flows
        .iter()
        .map(|f| f.program.module.as_str())
        .find(|m| !m.is_empty())
        .unwrap_or("");
    let files: Vec<&str> = flows
        .iter()
        .map(|f| f.program.file.as_str())
        .filter(|f| !f.is_empty())
        .collect();
    let _ = writeln!(
        out,
        "# DO NOT EDIT: generated by the troupe flow compiler from {} (flows: {}).",
        if files.is_empty() {
            "-".to_owned()
        } else {
            files.join(", ")
        },
        names.join(", ")
    );
    out.push_str(
        "\"\"\"Flow routers: generator handlers on the yield ABI (protocol.md 6.3).\"\"\"\n",
    );
    out.push_str(
        &PRELUDE
            .replace("__LOOP__", &lit(LOOP_HEADER))
            .replace("__ERROR__", &lit(ERROR_HEADER))
            .replace("__FANOUT__", &lit(FANOUT_HEADER)),
    );
    let _ = writeln!(out, "\nMODULE = {}", lit(module));
    let mut registry = Vec::new();
    for f in flows {
        for r in f.routers() {
            let fname = r.code_name();
            out.push_str("\n\n");
            out.push_str(&router_fn(
                r,
                &fname,
                f.program.max_iterations,
                &f.program.file,
            ));
            registry.push(format!("    {}: {fname},", lit(&r.name)));
        }
    }
    let mut adapters = Vec::new();
    for f in flows {
        for a in f.actors() {
            if let Some(ad) = &a.adapter {
                let fname = format!("adapter_{}", code_name(&a.name));
                if adapters.iter().any(|(n, _)| n == &a.name) {
                    continue;
                }
                out.push_str("\n\n");
                out.push_str(&adapter_fn(
                    &fname,
                    &a.name,
                    a.handler.as_deref(),
                    ad,
                    &f.program.file,
                    a.line,
                ));
                adapters.push((a.name.clone(), fname));
            }
        }
    }
    out.push_str("\n\nADAPTERS = {\n");
    for (actor, fname) in &adapters {
        let _ = writeln!(out, "    {}: {fname},", lit(actor));
    }
    out.push_str("}\n");
    out.push_str("\n\nROUTERS = {\n");
    for line in &registry {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("}\n\n\ndef resolve(actor):\n    \"\"\"The router function of an actor name.\"\"\"\n    return ROUTERS[actor]\n");
    out
}

/// `compile(...)` of an expression or statement, at module level.
fn compiled(consts: &mut String, name: &str, code: &str, mode: &str, at: &str) -> String {
    let _ = writeln!(
        consts,
        "{name} = compile({}, {}, {})",
        lit(code),
        lit(at),
        lit(mode)
    );
    name.to_owned()
}

fn ev_call(consts: &mut String, prefix: &str, c: &Code, at: &str, var: Option<&str>) -> String {
    let cn = compiled(consts, prefix, &c.code, "eval", at);
    let native = if c.native.is_some() { "True" } else { "False" };
    match var {
        Some(v) => format!("_ev({cn}, p, {native}, {}, x)", lit(v)),
        None => format!("_ev({cn}, p, {native})"),
    }
}

fn router_fn(r: &RouterInfo, fname: &str, max_iterations: u32, file: &str) -> String {
    let at = format!("{file}:{}", r.line);
    let mut consts = String::new();
    let mut body = String::new();
    let k = fname.to_uppercase();
    match &r.op {
        Op::Prepend { steps } => {
            let _ = writeln!(
                body,
                "    yield \"SET\", \".route.next[:0]\", {}",
                list(steps)
            );
            body.push_str("    yield _emit(p)\n");
        }
        Op::Pass => body.push_str("    yield _emit(p)\n"),
        Op::Seq { stmts } => {
            for (i, s) in stmts.iter().enumerate() {
                seq_stmt(&mut consts, &mut body, &k, i, s, file, i + 1 < stmts.len());
            }
            body.push_str("    yield _emit(p)\n");
        }
        Op::If { test, then, orelse } => {
            let t = ev_call(&mut consts, &format!("_{k}_TEST"), test, &at, None);
            let _ = writeln!(
                body,
                "    yield \"SET\", \".route.next[:0]\", {} if {t} else {}",
                list(then),
                list(orelse)
            );
            body.push_str("    yield _emit(p)\n");
        }
        Op::While {
            test,
            body: steps,
            at: loop_at,
        } => {
            let go = match test {
                Some(t) => ev_call(&mut consts, &format!("_{k}_TEST"), t, &at, None),
                None => "True".to_owned(),
            };
            let _ = writeln!(
                body,
                "    yield from _loop({}, {go}, {}, {}, {max_iterations})",
                lit(&r.name),
                list(steps),
                lit(loop_at)
            );
            body.push_str("    yield _emit(p)\n");
        }
        Op::Jump {
            marker,
            inclusive,
            prepend,
        } => {
            let _ = writeln!(
                body,
                "    yield from _jump({}, {}, {})",
                lit(marker),
                if *inclusive { "True" } else { "False" },
                list(prepend)
            );
            body.push_str("    yield _emit(p)\n");
        }
        Op::Except { steps, keep_error } => {
            let _ = writeln!(
                body,
                "    yield from _except({}, {})",
                list(steps),
                if *keep_error { "True" } else { "False" }
            );
            body.push_str("    yield _emit(p)\n");
        }
        Op::Raise {
            error_type,
            message,
        } => match error_type {
            Some(t) => {
                let m = message
                    .as_deref()
                    .map(lit)
                    .unwrap_or_else(|| "None".to_owned());
                let _ = writeln!(body, "    _raise({}, {m})", lit(t));
                // Unreachable, but makes the function a generator like every router.
                body.push_str("    yield\n");
            }
            None => body.push_str("    yield from _reraise()\n"),
        },
        Op::Fanout { fanin, key, calls } => {
            body.push_str("    slices = [\n");
            for (i, c) in calls.iter().enumerate() {
                let e = ev_call(&mut consts, &format!("_{k}_ARG{i}"), &c.arg, &at, None);
                let _ = writeln!(body, "        ({}, {e}),", lit(&c.actor));
            }
            body.push_str("    ]\n");
            let _ = writeln!(
                body,
                "    yield from _fan_out(p, {}, {}, slices)",
                lit(fanin),
                lit(key)
            );
        }
        Op::FanoutEach {
            fanin,
            key,
            actor,
            var,
            iterable,
            arg,
        } => {
            let it = ev_call(&mut consts, &format!("_{k}_ITER"), iterable, &at, None);
            let e = ev_call(&mut consts, &format!("_{k}_ARG"), arg, &at, Some(var));
            let _ = writeln!(body, "    items = list({it})");
            let _ = writeln!(body, "    slices = [({}, {e}) for x in items]", lit(actor));
            let _ = writeln!(
                body,
                "    yield from _fan_out(p, {}, {}, slices)",
                lit(fanin),
                lit(key)
            );
        }
    }
    let why = r.why.as_deref().unwrap_or("native");
    format!(
        "{consts}\n\ndef {fname}(p):\n    \"\"\"{} router at {at} ({}).\"\"\"\n{body}",
        r.kind.as_str(),
        why.replace('\\', "\\\\").replace('"', "'")
    )
}

fn seq_stmt(
    consts: &mut String,
    body: &mut String,
    k: &str,
    i: usize,
    s: &CodeStmt,
    file: &str,
    more: bool,
) {
    let at = format!("{file}:{}", s.line);
    let cn = compiled(consts, &format!("_{k}_S{i}"), &s.code, "exec", &at);
    let native = s.native.is_some();
    let _ = writeln!(
        body,
        "    p = _ex({cn}, p, {})",
        if native { "True" } else { "False" }
    );
    if native && more {
        body.push_str("    p = _fresh(p)\n");
    }
}

/// A tool-style actor's handler: evaluates the arguments from the state, calls the
/// function and writes its result at the target (platform.md §4.1).
fn adapter_fn(
    fname: &str,
    actor: &str,
    handler: Option<&str>,
    ad: &Adapter,
    file: &str,
    line: u32,
) -> String {
    let at = format!("{file}:{line}");
    let k = fname.to_uppercase();
    let mut consts = String::new();
    let mut args = Vec::new();
    for (i, a) in ad.args.iter().enumerate() {
        args.push(ev_call(
            &mut consts,
            &format!("_{k}_A{i}"),
            &code_of(a),
            &at,
            None,
        ));
    }
    for (name, a) in &ad.kwargs {
        let e = ev_call(
            &mut consts,
            &format!("_{k}_K_{name}"),
            &code_of(a),
            &at,
            None,
        );
        args.push(format!("{name}={e}"));
    }
    let call = format!(
        "_handler({}, {})({})",
        lit(actor),
        handler.map(lit).unwrap_or_else(|| "None".to_owned()),
        args.join(", ")
    );
    let body = match &ad.target {
        Some(path) => {
            let keys: Vec<String> = path
                .iter()
                .map(|k| match k {
                    PathKey::Key(s) => lit(s),
                    PathKey::Index(i) => i.to_string(),
                })
                .collect();
            format!("    return _store(p, [{}], {call})\n", keys.join(", "))
        }
        None => format!("    {call}\n    return p\n"),
    };
    format!("{consts}\n\ndef {fname}(p):\n    \"\"\"Adapter of tool-style actor {actor} ({at}).\"\"\"\n{body}")
}

fn code_of(e: &crate::ir::Expr) -> Code {
    Code {
        code: e.code.clone(),
        native: e.native.clone(),
    }
}
