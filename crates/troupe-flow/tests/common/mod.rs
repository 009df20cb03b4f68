//! Test support: the Python harness (tests/harness.py) and a small in-process mesh that
//! runs a compiled flow the way sidecars would — actors through the harness, routers
//! natively or through routers.py, errors through each actor's resiliency (protocol.md
//! §9.3), fan-in as protocol.md §14.4 describes it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};
use troupe_flow::{Flow, NativeRouters, RouterFailure};
use troupe_protocol::envelope::ErrorInfo;
use troupe_protocol::resiliency::Resiliency;
use troupe_protocol::route::advance;
use troupe_protocol::{Envelope, Phase, Reason, Route, Status};

/// The JSON-lines harness process.
pub struct Harness {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Harness {
    pub fn start() -> Harness {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the harness");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Harness {
            child,
            stdin,
            stdout,
        }
    }

    pub fn call(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).expect("harness reply");
        if let Some(e) = reply.get("harness_error") {
            panic!("harness failed on {req}:\n{}", e.as_str().unwrap_or(""));
        }
        reply
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the mesh runs routers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Native routers through `NativeRouters::run` (a chain at a time), others in Python.
    Native,
    /// Every router through routers.py; each native router is also stepped natively and
    /// both outputs must be identical.
    Compare,
}

/// The outcome of a run, in the reference's form.
pub fn ok(payload: Value) -> Value {
    json!({"ok": payload})
}

pub fn err(error_type: &str, message: &str) -> Value {
    let short = error_type.rsplit('.').next().unwrap_or(error_type);
    json!({"error": {"type": short, "message": message}})
}

pub fn envelope(id: &str, route: &[String], payload: &Value) -> Envelope {
    let (curr, next) = route
        .split_first()
        .map(|(c, n)| (c.clone(), n.to_vec()))
        .unwrap_or_default();
    serde_json::from_value(
        json!({"id": id, "route": {"prev": [], "curr": curr, "next": next}, "payload": payload}),
    )
    .unwrap()
}

pub fn payload(env: &Envelope) -> Value {
    serde_json::from_str(env.payload.get()).unwrap()
}

/// What a comparison looks at: payload, route and headers (and a routed error's type and
/// message).
pub fn visible(env: &Envelope) -> Value {
    let err = env
        .status
        .as_ref()
        .and_then(|s| s.error.as_ref())
        .map(|e| json!([e.error_type, e.message]));
    json!({"payload": payload(env), "route": env.route, "headers": env.headers, "error": err})
}

/// The sidecar after a handler error (protocol.md §9.3): retry (deterministic handlers
/// fail again), then `onExhausted`, else fail.
pub fn after_error(resiliency: &Value, env: &Envelope, details: &Value) -> Result<Envelope, Value> {
    let error_type = details["type"].as_str().unwrap_or("").to_owned();
    let message = details["message"].as_str().unwrap_or("").to_owned();
    let mro: Vec<String> = details["mro"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let res = Resiliency::from_values(resiliency.get("policies"), resiliency.get("rules")).unwrap();
    let policy = res.as_ref().and_then(|r| r.select(&error_type, &mro));
    match policy {
        Some(p) if !p.on_exhausted.is_empty() => {
            let mut out = env.clone();
            let mut prev = env.route.prev.clone();
            prev.push(env.route.curr.clone());
            out.route = Route {
                prev,
                curr: p.on_exhausted[0].clone(),
                next: p.on_exhausted[1..].to_vec(),
            };
            let mut st = env.status.clone().unwrap_or_else(|| Status {
                actor: env.route.curr.clone(),
                attempt: 1,
                max_attempts: 1,
                ..Status::default()
            });
            st.phase = Phase::Failed;
            st.reason = Some(Reason::PolicyRouted);
            st.error = Some(ErrorInfo {
                message: message.clone(),
                error_type: error_type.clone(),
                mro,
                ..ErrorInfo::default()
            });
            out.status = Some(st);
            Ok(out)
        }
        _ => Err(err(&error_type, &message)),
    }
}

fn frames_to_envelopes(input: &Envelope, frames: &[Value]) -> Vec<Envelope> {
    frames
        .iter()
        .map(|f| {
            let mut env = input.clone();
            env.route = serde_json::from_value(f["route"].clone()).unwrap();
            env.payload = serde_json::value::to_raw_value(&f["payload"]).unwrap();
            if let Some(h) = f.get("headers").and_then(Value::as_object) {
                env.headers = h.clone();
            }
            env
        })
        .collect()
}

fn set_pointer(doc: &mut Value, pointer: &str, value: Value) {
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut cur = doc;
    for (i, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().unwrap();
        if i + 1 == keys.len() {
            map.insert(k.clone(), value);
            return;
        }
        cur = map.entry(k.clone()).or_insert_with(|| json!({}));
    }
}

/// One flow in a simulated mesh.
pub struct Mesh<'a> {
    pub flow: &'a Flow,
    pub native: NativeRouters,
    pub harness: &'a mut Harness,
    /// actor → handler function in corpus/handlers.py.
    pub handlers: &'a HashMap<String, String>,
    pub mode: Mode,
    /// Per-router native/Python disagreements found in Compare mode.
    pub mismatches: Vec<String>,
    /// Router applications (native and Python).
    pub router_hops: usize,
}

impl<'a> Mesh<'a> {
    pub fn new(
        flow: &'a Flow,
        harness: &'a mut Harness,
        handlers: &'a HashMap<String, String>,
        mode: Mode,
    ) -> Self {
        Mesh {
            flow,
            native: NativeRouters::new(std::slice::from_ref(flow)),
            harness,
            handlers,
            mode,
            mismatches: Vec::new(),
            router_hops: 0,
        }
    }

    /// Runs one task to its end: `{"ok": payload}` or `{"error": {type, message}}`.
    pub fn run(&mut self, input: &Value) -> Value {
        let mut queue = VecDeque::from([envelope("task-1", &self.flow.entry_route(), input)]);
        let mut fanin: HashMap<String, BTreeMap<u64, Value>> = HashMap::new();
        let mut results = Vec::new();
        let mut children = 0;
        let mut steps = 0;
        while let Some(env) = queue.pop_front() {
            steps += 1;
            assert!(steps < 50_000, "the flow does not end");
            let curr = env.route.curr.clone();
            if curr.is_empty() {
                results.push(ok(payload(&env)));
                continue;
            }
            let out = if self.flow.router(&curr).is_some() {
                self.router(env)
            } else if self.flow.fanins().any(|f| f == curr) {
                Ok(self.fan_in(env, &mut fanin))
            } else {
                self.actor(env)
            };
            match out {
                Ok(envs) => {
                    let n = envs.len();
                    for (k, mut e) in envs.into_iter().enumerate() {
                        if n > 1 && k > 0 {
                            // The engine gives fan-out slices 1..N child ids (§12).
                            children += 1;
                            e.parent_id = Some(e.id.clone());
                            e.id = format!("{}.{children}", e.id);
                        }
                        queue.push_back(e);
                    }
                }
                Err(failure) => results.push(failure),
            }
        }
        assert_eq!(results.len(), 1, "one result per task, got {results:?}");
        results.pop().unwrap()
    }

    fn fan_in(
        &mut self,
        env: Envelope,
        state: &mut HashMap<String, BTreeMap<u64, Value>>,
    ) -> Vec<Envelope> {
        let h = env
            .headers
            .get("x-asya-fan-in")
            .cloned()
            .expect("slice header");
        let origin = h["origin_id"].as_str().unwrap().to_owned();
        let slots = state.entry(origin.clone()).or_default();
        slots.insert(h["slice_index"].as_u64().unwrap(), payload(&env));
        if slots.len() as u64 != h["slice_count"].as_u64().unwrap() {
            return Vec::new();
        }
        let slots = state.remove(&origin).unwrap();
        let mut base = slots[&0].clone();
        let results: Vec<Value> = slots
            .iter()
            .filter(|(k, _)| **k > 0)
            .map(|(_, v)| v.clone())
            .collect();
        set_pointer(
            &mut base,
            h["aggregation_key"].as_str().unwrap(),
            Value::Array(results),
        );
        let mut out = env.clone();
        out.headers.remove("x-asya-fan-in");
        out.headers.insert("x-asya-origin-id".into(), json!(origin));
        out.id = origin;
        out.parent_id = None;
        out.route = advance(&env.route);
        out.payload = serde_json::value::to_raw_value(&base).unwrap();
        vec![out]
    }

    fn actor(&mut self, env: Envelope) -> Result<Vec<Envelope>, Value> {
        let curr = env.route.curr.clone();
        let handler = self
            .handlers
            .get(&curr)
            .cloned()
            .unwrap_or_else(|| curr.replace('-', "_"));
        let reply = self
            .harness
            .call(json!({"op": "actor", "handler": handler, "payload": payload(&env)}));
        if let Some(p) = reply.get("ok") {
            let mut out = env.clone();
            out.route = advance(&env.route);
            out.payload = serde_json::value::to_raw_value(p).unwrap();
            return Ok(vec![out]);
        }
        if reply.get("none").is_some() {
            return Err(ok(payload(&env)));
        }
        let res = self
            .flow
            .actors()
            .find(|a| a.name == curr)
            .map(|a| a.resiliency.clone())
            .unwrap_or(Value::Null);
        after_error(&res, &env, &reply["error"]).map(|e| vec![e])
    }

    fn python_router(&mut self, env: &Envelope) -> Result<Vec<Envelope>, Value> {
        let reply = self
            .harness
            .call(json!({"op": "router", "name": env.route.curr, "env": env}));
        if let Some(frames) = reply.get("frames").and_then(Value::as_array) {
            return Ok(frames_to_envelopes(env, frames));
        }
        let r = self.flow.router(&env.route.curr).unwrap();
        after_error(&r.resiliency, env, &reply["error"]).map(|e| vec![e])
    }

    fn router(&mut self, env: Envelope) -> Result<Vec<Envelope>, Value> {
        self.router_hops += 1;
        let native = self.native.contains(&env.route.curr);
        match self.mode {
            Mode::Native if native => self.native.run(env).map_err(failure),
            Mode::Native => self.python_router(&env),
            Mode::Compare => {
                let py = self.python_router(&env);
                if native {
                    let nat = self.native.step(env.clone()).map_err(failure);
                    let show = |r: &Result<Vec<Envelope>, Value>| match r {
                        Ok(v) => Value::Array(v.iter().map(visible).collect()),
                        Err(e) => e.clone(),
                    };
                    if show(&py) != show(&nat) {
                        self.mismatches.push(format!(
                            "router {} on {}:\n  python: {}\n  native: {}",
                            env.route.curr,
                            visible(&env),
                            show(&py),
                            show(&nat)
                        ));
                    }
                }
                py
            }
        }
    }
}

fn failure(f: RouterFailure) -> Value {
    err(&f.error_type, &f.message)
}

/// A scratch folder under the target dir (kept for a failing test to be looked at).
pub fn scratch(name: &str) -> PathBuf {
    let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    dir.keep()
}
