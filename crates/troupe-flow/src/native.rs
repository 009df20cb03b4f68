//! Native router execution: routers whose conditions and mutations are in the native
//! subset run here, in the sidecar that finished the previous step (no Python, no queue
//! hop). Behaviour is the one routers.py gives the same router ([`crate::python`]); the
//! differential test in `tests/` runs both on the same envelopes.

use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use troupe_protocol::envelope::{ErrorInfo, Headers};
use troupe_protocol::headers::FAN_IN;
use troupe_protocol::resiliency::pattern_matches;
use troupe_protocol::route::advance;
use troupe_protocol::{Envelope, Phase, Reason, Route, Status};
use troupe_pyexpr::{eval, exec, truthy, PyError, Scope};

use crate::errors::{mro_of, raised_message};
use crate::program::{Code, Flow, Op, RouterInfo, ERROR_HEADER, FANOUT_HEADER, LOOP_HEADER};

/// The native routers of a set of flows, by actor name.
#[derive(Debug, Clone, Default)]
pub struct NativeRouters {
    routers: HashMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    info: RouterInfo,
    max_iterations: u32,
}

/// A router raised and no enclosing except clause of the flow caught it: the envelope
/// fails (the engine sends the failure to x-sink, protocol.md §11.1).
#[derive(Debug, Clone, thiserror::Error)]
#[error("router {router} raised {error_type}: {message}")]
pub struct RouterFailure {
    /// The router that raised.
    pub router: String,
    /// Python exception type (`KeyError`, `openai.RateLimitError`).
    pub error_type: String,
    /// `str(exc)`.
    pub message: String,
    /// The type's bases, as the runtime reports them in `details.mro`.
    pub mro: Vec<String>,
    /// The input the failing router got (boxed: the error stays small on the happy path).
    pub envelope: Box<Envelope>,
}

/// An error raised while applying one router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raised {
    pub error_type: String,
    pub message: String,
    pub mro: Vec<String>,
}

impl Raised {
    pub(crate) fn new(error_type: &str, message: impl Into<String>) -> Self {
        Raised {
            error_type: error_type.to_owned(),
            message: message.into(),
            mro: mro_of(error_type),
        }
    }
}

impl From<PyError> for Raised {
    fn from(e: PyError) -> Self {
        Raised::new(&e.error_type, e.message)
    }
}

impl NativeRouters {
    /// The native routers (`native == true`) of `flows`.
    pub fn new(flows: &[Flow]) -> Self {
        let mut routers = HashMap::new();
        for f in flows {
            for r in f.routers().filter(|r| r.native) {
                routers.entry(r.name.clone()).or_insert_with(|| Entry {
                    info: r.clone(),
                    max_iterations: f.program.max_iterations,
                });
            }
        }
        NativeRouters { routers }
    }

    /// Is `actor` a native router?
    pub fn contains(&self, actor: &str) -> bool {
        self.routers.contains_key(actor)
    }

    /// Number of native routers.
    pub fn len(&self) -> usize {
        self.routers.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }

    /// `env` has arrived at a native router (`route.curr` is one). Applies routers while
    /// `route.curr` is a native router, advancing the route each time as the runtime does
    /// (protocol.md §5.1), and returns the envelopes to send: `route.curr` is then a
    /// non-native actor, or `""` (end of route → x-sink). A fan-out returns its N + 1
    /// slices, all with the input id (the engine gives slices 1..N child ids, §12). A
    /// router error inside a try whose clause matches continues at that clause's except
    /// router, as the sidecar's `onExhausted` would route a Python router's failure.
    pub fn run(&self, env: Envelope) -> Result<Vec<Envelope>, RouterFailure> {
        let mut env = env;
        loop {
            if !self.contains(&env.route.curr) {
                return Ok(vec![env]);
            }
            let mut out = self.step(env)?;
            if out.len() != 1 {
                return Ok(out);
            }
            match out.pop() {
                Some(next) => env = next,
                None => return Ok(out),
            }
        }
    }

    /// Applies exactly one router, the native router at `route.curr` (an envelope at any
    /// other actor comes back unchanged): its output envelopes, the envelope routed to
    /// the except router that catches its error, or the failure.
    pub fn step(&self, env: Envelope) -> Result<Vec<Envelope>, RouterFailure> {
        let Some(entry) = self.routers.get(&env.route.curr) else {
            return Ok(vec![env]);
        };
        match apply(&entry.info, entry.max_iterations, &env) {
            Ok(out) => Ok(out),
            Err(raised) => match catch(&entry.info, &raised) {
                Some(target) => Ok(vec![routed(env, target, &raised)]),
                None => Err(RouterFailure {
                    router: entry.info.name.clone(),
                    error_type: raised.error_type,
                    message: raised.message,
                    mro: raised.mro,
                    envelope: Box::new(env),
                }),
            },
        }
    }
}

/// The except router that catches `raised` at `router` (§9.2 matching, clauses innermost
/// first; a bare except matches anything).
fn catch<'a>(router: &'a RouterInfo, raised: &Raised) -> Option<&'a str> {
    router
        .catch
        .iter()
        .find(|c| {
            c.errors.is_empty()
                || c.errors
                    .iter()
                    .any(|p| pattern_matches(p, &raised.error_type, &raised.mro))
        })
        .map(|c| c.target.as_str())
}

/// What the sidecar does with an exhausted policy whose `onExhausted` is `[target]`
/// (protocol.md §9.3): route `{prev + [curr], target, []}`, payload unchanged, status
/// failed / PolicyRouted with the error.
fn routed(mut env: Envelope, target: &str, raised: &Raised) -> Envelope {
    let mut prev = std::mem::take(&mut env.route.prev);
    prev.push(std::mem::take(&mut env.route.curr));
    let failed_at = prev.last().cloned().unwrap_or_default();
    env.route = Route {
        prev,
        curr: target.to_owned(),
        next: Vec::new(),
    };
    let mut status = env.status.take().unwrap_or_else(|| Status {
        actor: failed_at,
        attempt: 1,
        max_attempts: 1,
        ..Status::default()
    });
    status.phase = Phase::Failed;
    status.reason = Some(Reason::PolicyRouted);
    status.error = Some(ErrorInfo {
        message: raised.message.clone(),
        error_type: raised.error_type.clone(),
        mro: raised.mro.clone(),
        ..ErrorInfo::default()
    });
    env.status = Some(status);
    env
}

fn parse_payload(env: &Envelope) -> Result<Value, Raised> {
    serde_json::from_str(env.payload.get()).map_err(|e| {
        Raised::new(
            "ValueError",
            format!("the payload is not JSON the router can read: {e}"),
        )
    })
}

fn raw(v: &Value) -> Result<Box<RawValue>, Raised> {
    serde_json::value::to_raw_value(v)
        .map_err(|e| Raised::new("TypeError", format!("the state cannot be serialised: {e}")))
}

fn ev(code: &Code, scope: &Scope) -> Result<Value, Raised> {
    match &code.native {
        Some(e) => Ok(eval(e, scope)?),
        None => Err(not_native(&code.code)),
    }
}

fn not_native(code: &str) -> Raised {
    Raised::new(
        "RuntimeError",
        format!("`{code}` is not in the native subset; this router must run as a Python actor"),
    )
}

/// The output envelope of a router that emits `payload` with `next` and `headers`.
fn emit(
    env: &Envelope,
    payload: Option<Box<RawValue>>,
    next: Vec<String>,
    headers: Headers,
) -> Envelope {
    let route = advance(&Route {
        prev: env.route.prev.clone(),
        curr: env.route.curr.clone(),
        next,
    });
    Envelope {
        id: env.id.clone(),
        parent_id: env.parent_id.clone(),
        route,
        headers,
        status: env.status.clone(),
        payload: payload.unwrap_or_else(|| env.payload.clone()),
    }
}

/// Applies one router to `env`.
pub(crate) fn apply(
    r: &RouterInfo,
    max_iterations: u32,
    env: &Envelope,
) -> Result<Vec<Envelope>, Raised> {
    let next = env.route.next.clone();
    let mut headers = env.headers.clone();
    let one = |payload, next, headers| Ok(vec![emit(env, payload, next, headers)]);
    match &r.op {
        Op::Prepend { steps } => one(None, prepend(steps, next), headers),
        Op::Pass => one(None, next, headers),
        Op::Seq { stmts } => {
            let mut p = parse_payload(env)?;
            for s in stmts {
                match &s.native {
                    Some(n) => exec(n, &mut p)?,
                    None => return Err(not_native(&s.code)),
                }
            }
            one(Some(raw(&p)?), next, headers)
        }
        Op::If { test, then, orelse } => {
            let p = parse_payload(env)?;
            let branch = if truthy(&ev(test, &Scope::new(&p))?) {
                then
            } else {
                orelse
            };
            one(None, prepend(branch, next), headers)
        }
        Op::While { test, body, at } => {
            let go = match test {
                None => true,
                Some(t) => {
                    let p = parse_payload(env)?;
                    truthy(&ev(t, &Scope::new(&p))?)
                }
            };
            let mut loops = match headers.get(LOOP_HEADER) {
                Some(Value::Object(m)) => Some(m.clone()),
                _ => None,
            };
            if go {
                let done = count_of(loops.as_ref().and_then(|m| m.get(&r.name)));
                let n = done + 1;
                if n > u64::from(max_iterations) {
                    return Err(Raised::new(
                        "RuntimeError",
                        format!("loop at {at} exceeded {max_iterations} iterations"),
                    ));
                }
                let mut m = loops.unwrap_or_default();
                m.insert(r.name.clone(), json!(n));
                headers.insert(LOOP_HEADER.to_owned(), Value::Object(m));
                let mut steps = body.clone();
                steps.push(r.name.clone());
                one(None, prepend(&steps, next), headers)
            } else {
                if let Some(m) = loops.as_mut() {
                    if m.remove(&r.name).is_some() {
                        headers.insert(LOOP_HEADER.to_owned(), Value::Object(m.clone()));
                    }
                }
                one(None, next, headers)
            }
        }
        Op::Jump {
            marker,
            inclusive,
            prepend: pre,
        } => {
            let Some(i) = next.iter().position(|s| s == marker) else {
                return Err(Raised::new(
                    "RuntimeError",
                    format!("route.next has no {marker}: the flow's route was changed outside its routers"),
                ));
            };
            let from = if *inclusive { i + 1 } else { i };
            let new = prepend(pre, next[from..].to_vec());
            prune_loops(&mut headers, &new);
            one(None, new, headers)
        }
        Op::Except { steps, keep_error } => {
            if *keep_error {
                if let Some(err) = env.status.as_ref().and_then(|s| s.error.as_ref()) {
                    headers.insert(
                        ERROR_HEADER.to_owned(),
                        json!({"type": err.error_type, "message": err.message, "mro": err.mro}),
                    );
                }
            }
            let new = steps.clone();
            prune_loops(&mut headers, &new);
            one(None, new, headers)
        }
        Op::Raise {
            error_type,
            message,
        } => Err(match error_type {
            Some(t) => Raised::new(t, raised_message(t, message.as_deref())),
            None => reraise(&headers),
        }),
        Op::Fanout { fanin, key, calls } => {
            let p = parse_payload(env)?;
            let scope = Scope::new(&p);
            let mut slices = Vec::with_capacity(calls.len());
            for c in calls {
                slices.push((c.actor.clone(), ev(&c.arg, &scope)?));
            }
            fan_out(env, fanin, key, slices, next, headers)
        }
        Op::FanoutEach {
            fanin,
            key,
            actor,
            var,
            iterable,
            arg,
        } => {
            let p = parse_payload(env)?;
            let items = iterate(ev(iterable, &Scope::new(&p))?)?;
            let mut slices = Vec::with_capacity(items.len());
            for item in &items {
                let scope = Scope::new(&p).with_var(var, item);
                slices.push((actor.clone(), ev(arg, &scope)?));
            }
            fan_out(env, fanin, key, slices, next, headers)
        }
    }
}

/// A counter read from a header: a non-negative int, else 0.
fn count_of(v: Option<&Value>) -> u64 {
    v.filter(|v| !v.is_boolean())
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn prepend(steps: &[String], next: Vec<String>) -> Vec<String> {
    let mut out = steps.to_vec();
    out.extend(next);
    out
}

/// After a jump or an except, the loops whose router is no longer on the route have ended:
/// their counters go (the header itself stays, so that a frame never loses every header).
fn prune_loops(headers: &mut Headers, next: &[String]) {
    if let Some(Value::Object(m)) = headers.get_mut(LOOP_HEADER) {
        m.retain(|k, _| next.contains(k));
    }
}

/// A bare `raise`: the error the except router kept.
fn reraise(headers: &Headers) -> Raised {
    let Some(Value::Object(err)) = headers.get(ERROR_HEADER) else {
        return Raised::new("RuntimeError", "No active exception to reraise");
    };
    let text = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut error_type = text("type");
    if error_type.is_empty() {
        error_type = "Exception".to_owned();
    }
    let mro = match err.get("mro") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => mro_of(&error_type),
    };
    Raised {
        error_type,
        message: text("message"),
        mro,
    }
}

/// `for x in value` in Python: a list's items, a dict's keys, a str's characters.
fn iterate(v: Value) -> Result<Vec<Value>, Raised> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(m) => Ok(m.into_iter().map(|(k, _)| Value::String(k)).collect()),
        Value::String(s) => Ok(s.chars().map(|c| Value::String(c.to_string())).collect()),
        other => Err(Raised::new(
            "TypeError",
            format!("'{}' object is not iterable", py_type(&other)),
        )),
    }
}

pub(crate) fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// platform.md §4.2: slice 0 = `p` to the fan-in; slice k = the k-th argument to its
/// actor, then the fan-in; every slice has the same continuation and `x-asya-fan-in`.
fn fan_out(
    env: &Envelope,
    fanin: &str,
    key: &str,
    slices: Vec<(String, Value)>,
    next: Vec<String>,
    mut headers: Headers,
) -> Result<Vec<Envelope>, Raised> {
    let count = slices.len() + 1;
    let round = count_of(headers.get(FANOUT_HEADER)) + 1;
    headers.insert(FANOUT_HEADER.to_owned(), json!(round));
    let header = |k: usize| json!({"actor": fanin, "origin_id": env.id, "slice_index": k, "slice_count": count, "aggregation_key": key, "round": round});
    let mut out = Vec::with_capacity(count);
    let mut h0 = headers.clone();
    h0.insert(FAN_IN.to_owned(), header(0));
    out.push(emit(
        env,
        None,
        prepend(&[fanin.to_owned()], next.clone()),
        h0,
    ));
    for (k, (actor, arg)) in slices.into_iter().enumerate() {
        if arg.is_null() {
            // A generator cannot emit None (it is the ABI's no-op), so routers.py could
            // not send this slice either.
            return Err(Raised::new(
                "TypeError",
                format!(
                    "fan-out argument {} is None: a slice payload cannot be None",
                    k + 1
                ),
            ));
        }
        let mut h = headers.clone();
        h.insert(FAN_IN.to_owned(), header(k + 1));
        out.push(emit(
            env,
            Some(raw(&arg)?),
            prepend(&[actor, fanin.to_owned()], next.clone()),
            h,
        ));
    }
    Ok(out)
}
