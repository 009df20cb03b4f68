//! The native executor on envelopes, router kind by router kind (the Python side of each is
//! checked against it in differential.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use troupe_flow::{compile_file, CompileOptions, Flow, NativeRouters};
use troupe_protocol::Envelope;

fn compile(src: &str) -> Flow {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.py");
    std::fs::write(&path, src).unwrap();
    compile_file(&path, None, &CompileOptions::default())
        .unwrap()
        .remove(0)
}

fn env(curr: &str, next: &[&str], payload: Value, headers: Value) -> Envelope {
    serde_json::from_value(json!({
        "id": "t1", "route": {"prev": ["x"], "curr": curr, "next": next},
        "headers": headers, "payload": payload,
    }))
    .unwrap()
}

fn payload(e: &Envelope) -> Value {
    serde_json::from_str(e.payload.get()).unwrap()
}

fn route(e: &Envelope) -> (Vec<String>, String, Vec<String>) {
    (
        e.route.prev.clone(),
        e.route.curr.clone(),
        e.route.next.clone(),
    )
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn start_seq_and_if_run_as_one_chain_up_to_the_next_actor() {
    let f = compile("def c(p):\n    p['n'] = 1\n    p['n'] += 2\n    if p['n'] > 2:\n        p = big(p)\n    else:\n        p = small(p)\n    p = z(p)\n    return p\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    assert!(nr.contains("start-c") && !nr.contains("big"));
    let out = nr
        .run(env("start-c", &["after"], json!({}), json!({})))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(payload(&out[0]), json!({"n": 3}));
    assert_eq!(
        route(&out[0]),
        (
            s(&["x", "start-c", "router-c-seq-line-2", "router-c-if-line-4"]),
            "big".into(),
            s(&["z", "after"])
        )
    );
    // step applies exactly one router.
    let one = nr.step(env("start-c", &[], json!({}), json!({}))).unwrap();
    assert_eq!(one[0].route.curr, "router-c-seq-line-2");
    // An envelope at an actor is returned unchanged.
    assert_eq!(
        nr.run(env("big", &[], json!(1), json!({}))).unwrap()[0]
            .route
            .curr,
        "big"
    );
}

#[test]
fn while_counts_in_a_header_and_fails_past_the_guard() {
    let f = compile("def w(p):\n    while p['go']:\n        p = a(p)\n    return p\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    let w = "router-w-while-line-2";
    let out = nr
        .run(env(w, &["k"], json!({"go": true}), json!({})))
        .unwrap();
    assert_eq!(route(&out[0]).2, s(&[w, "k"]));
    assert_eq!(out[0].headers["x-troupe-loop"], json!({w: 1}));
    let out = nr
        .run(env(
            w,
            &["k"],
            json!({"go": true}),
            json!({"x-troupe-loop": {w: 99}}),
        ))
        .unwrap();
    assert_eq!(out[0].headers["x-troupe-loop"], json!({w: 100}));
    let fail = nr
        .run(env(
            w,
            &["k"],
            json!({"go": true}),
            json!({"x-troupe-loop": {w: 100}}),
        ))
        .unwrap_err();
    assert_eq!(fail.error_type, "RuntimeError");
    assert_eq!(
        fail.message,
        format!("loop at {}:2 exceeded 100 iterations", f.program.file)
    );
    assert_eq!(fail.router, w);
    assert_eq!(
        fail.envelope.route.curr, w,
        "the failure carries the router's input"
    );
    // A false test ends the loop and drops its counter (the header stays).
    let out = nr
        .run(env(
            w,
            &["k"],
            json!({"go": false}),
            json!({"x-troupe-loop": {w: 5, "other": 1}}),
        ))
        .unwrap();
    assert_eq!(route(&out[0]).1, "k");
    assert_eq!(out[0].headers["x-troupe-loop"], json!({"other": 1}));
}

#[test]
fn break_continue_and_return_drop_the_route_to_their_marker() {
    let f = compile("def j(p):\n    while True:\n        p = a(p)\n        if p['stop']:\n            break\n        if p['skip']:\n            continue\n        if p['out']:\n            return p\n        p = b(p)\n    p = z(p)\n    return p\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    let w = "router-j-while-line-2";
    let loops = json!({"x-troupe-loop": {w: 3}});
    let next = [
        "router-j-if-line-6",
        "router-j-if-line-8",
        "b",
        w,
        "z",
        "end-j",
        "caller",
    ];
    // break: after the loop, counter gone.
    let out = nr
        .run(env(
            "router-j-if-line-4",
            &next,
            json!({"stop": 1}),
            loops.clone(),
        ))
        .unwrap();
    assert_eq!(route(&out[0]).1, "z");
    assert_eq!(route(&out[0]).2, s(&["end-j", "caller"]));
    assert_eq!(out[0].headers["x-troupe-loop"], json!({}));
    // continue: back to the loop router, which counts the next iteration.
    let out = nr
        .run(env(
            "router-j-if-line-4",
            &next,
            json!({"stop": 0, "skip": 1}),
            loops.clone(),
        ))
        .unwrap();
    assert_eq!(route(&out[0]).1, "a");
    assert_eq!(out[0].headers["x-troupe-loop"], json!({w: 4}));
    // return: past the end marker; the caller's tail survives.
    let out = nr
        .run(env(
            "router-j-if-line-4",
            &next,
            json!({"stop": 0, "skip": 0, "out": 1}),
            loops,
        ))
        .unwrap();
    assert_eq!(route(&out[0]).1, "caller");
    assert!(route(&out[0]).2.is_empty());
    // A route without the marker is an error, not a silent end.
    let fail = nr
        .run(env("router-j-break-line-5", &["z"], json!({}), json!({})))
        .unwrap_err();
    assert!(fail.message.contains(w), "{}", fail.message);
}

#[test]
fn raise_reports_cpython_type_mro_and_message() {
    let f = compile("import mylib\n\ndef r(p):\n    if p['k']:\n        raise KeyError('missing')\n    if p['v']:\n        raise ValueError\n    raise mylib.Boom('x')\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    let fail = nr
        .run(env("start-r", &[], json!({"k": 1}), json!({})))
        .unwrap_err();
    assert_eq!(
        (fail.error_type.as_str(), fail.message.as_str()),
        ("KeyError", "'missing'")
    );
    assert_eq!(fail.mro, s(&["LookupError", "Exception"]));
    let fail = nr
        .run(env("start-r", &[], json!({"k": 0, "v": 1}), json!({})))
        .unwrap_err();
    assert_eq!(
        (fail.error_type.as_str(), fail.message.as_str()),
        ("ValueError", "")
    );
    let fail = nr
        .run(env("start-r", &[], json!({"k": 0, "v": 0}), json!({})))
        .unwrap_err();
    assert_eq!(
        (fail.error_type.as_str(), fail.mro.clone()),
        ("mylib.Boom", s(&["Exception"]))
    );
    // Expression errors are CPython's.
    let fail = nr
        .run(env("start-r", &[], json!({}), json!({})))
        .unwrap_err();
    assert_eq!(
        (fail.error_type.as_str(), fail.message.as_str()),
        ("KeyError", "'k'")
    );
}

#[test]
fn router_errors_inside_a_try_continue_at_the_except_router() {
    let f = compile("def t(p):\n    try:\n        p = a(p)\n        p['v'] = p['x'] // p['d']\n    except ZeroDivisionError:\n        p = fix(p)\n        raise\n    except LookupError:\n        p = lookup(p)\n    p = z(p)\n    return p\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    let seq = "router-t-seq-line-4";
    let out = nr
        .run(env(seq, &["z"], json!({"x": 1, "d": 0}), json!({})))
        .unwrap();
    assert_eq!(
        route(&out[0]),
        (
            s(&["x", seq, "router-t-except-line-5"]),
            "fix".into(),
            s(&["router-t-raise-line-7", "z"])
        )
    );
    assert_eq!(
        payload(&out[0]),
        json!({"x": 1, "d": 0}),
        "the except path gets the failing router's input"
    );
    let status = out[0].status.as_ref().unwrap();
    assert_eq!(
        status.error.as_ref().unwrap().error_type,
        "ZeroDivisionError"
    );
    assert_eq!(
        out[0].headers["x-troupe-error"],
        json!({"type": "ZeroDivisionError", "message": "integer division or modulo by zero", "mro": ["ArithmeticError", "Exception"]})
    );
    // The bare raise after the handler re-raises the kept error.
    let mut again = out[0].clone();
    again.route.curr = "router-t-raise-line-7".into();
    again.route.next = s(&["z"]);
    let fail = nr.run(again).unwrap_err();
    assert_eq!(
        (fail.error_type.as_str(), fail.message.as_str()),
        ("ZeroDivisionError", "integer division or modulo by zero")
    );
    // A KeyError matches `except LookupError` through its mro.
    let out = nr
        .run(env(seq, &["z"], json!({"d": 1}), json!({})))
        .unwrap();
    assert_eq!(out[0].route.curr, "lookup");
    // A bare raise with nothing kept.
    let fail = nr
        .run(env("router-t-raise-line-7", &[], json!({}), json!({})))
        .unwrap_err();
    assert_eq!(
        (fail.error_type.as_str(), fail.message.as_str()),
        ("RuntimeError", "No active exception to reraise")
    );
}

#[test]
fn fan_out_emits_slice_zero_and_one_slice_per_call() {
    let f = compile("def f(p):\n    p['r'] = [a(p['x']), b(p['y'])]\n    p = z(p)\n    return p\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    let out = nr
        .run(env(
            "fanout-f-line-2",
            &["z"],
            json!({"x": 1, "y": "s"}),
            json!({"h": 1}),
        ))
        .unwrap();
    assert_eq!(out.len(), 3);
    let fanin = "fanin-f-line-2";
    assert_eq!(route(&out[0]).1, fanin);
    assert_eq!(route(&out[0]).2, s(&["z"]));
    assert_eq!(payload(&out[0]), json!({"x": 1, "y": "s"}));
    assert_eq!(
        (route(&out[1]).1, route(&out[1]).2, payload(&out[1])),
        ("a".into(), s(&[fanin, "z"]), json!(1))
    );
    assert_eq!(
        (route(&out[2]).1, payload(&out[2])),
        ("b".into(), json!("s"))
    );
    for (k, e) in out.iter().enumerate() {
        assert_eq!(e.id, "t1");
        assert_eq!(e.headers["h"], json!(1));
        assert_eq!(
            e.headers["x-asya-fan-in"],
            json!({"actor": fanin, "origin_id": "t1", "slice_index": k, "slice_count": 3, "aggregation_key": "/r", "round": 1})
        );
        assert_eq!(e.headers["x-troupe-fanout"], json!(1));
    }
    // A fan-out run again in the same task (a loop) is the next round.
    let again = nr
        .run(env(
            "fanout-f-line-2",
            &["z"],
            json!({"x": 1, "y": "s"}),
            json!({"x-troupe-fanout": 4}),
        ))
        .unwrap();
    assert!(again
        .iter()
        .all(|e| e.headers["x-asya-fan-in"]["round"] == json!(5)));
}

#[test]
fn comprehension_fan_out_iterates_like_python() {
    let f = compile("def f(p):\n    p['r'] = [a(x) for x in p['it']]\n    return p\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    let run = |it: Value| nr.run(env("fanout-f-line-2", &[], json!({"it": it}), json!({})));
    let payloads = |out: Vec<Envelope>| out.iter().skip(1).map(payload).collect::<Vec<_>>();
    assert_eq!(payloads(run(json!([1, 2])).unwrap()), [json!(1), json!(2)]);
    assert_eq!(
        payloads(run(json!({"b": 1, "a": 2})).unwrap()),
        [json!("a"), json!("b")]
    );
    assert_eq!(
        payloads(run(json!("hé")).unwrap()),
        [json!("h"), json!("é")]
    );
    let empty = run(json!([])).unwrap();
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0].headers["x-asya-fan-in"]["slice_count"], json!(1));
    let fail = run(json!(3)).unwrap_err();
    assert_eq!(
        (fail.error_type.as_str(), fail.message.as_str()),
        ("TypeError", "'int' object is not iterable")
    );
    let fail = run(json!([null])).unwrap_err();
    assert_eq!(fail.error_type, "TypeError");
}

#[test]
fn python_routers_are_not_run_natively() {
    let f = compile("def n(p):\n    if p['x'].startswith('a'):\n        p = a(p)\n    return p\n");
    let nr = NativeRouters::new(std::slice::from_ref(&f));
    assert!(nr.contains("start-n"));
    assert!(!nr.contains("router-n-if-line-2"));
    let out = nr
        .run(env("start-n", &[], json!({"x": "ab"}), json!({})))
        .unwrap();
    assert_eq!(out[0].route.curr, "router-n-if-line-2");
}

#[test]
fn the_builtin_exception_table_matches_this_cpython() {
    let script = "import builtins, json\ndef fqn(c): return c.__qualname__ if c.__module__ == 'builtins' else c.__module__ + '.' + c.__qualname__\nprint(json.dumps({n: [fqn(b) for b in c.__mro__[1:] if b is not object and b is not BaseException] for n, c in vars(builtins).items() if isinstance(c, type) and issubclass(c, BaseException) and n == c.__name__}))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    let table: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert!(table.len() > 50);
    for (name, mro) in &table {
        assert!(
            troupe_flow::errors::builtin_names().any(|n| n == name),
            "{name} missing from the table"
        );
        assert_eq!(&troupe_flow::errors::mro_of(name), mro, "{name}");
    }
    assert_eq!(troupe_flow::errors::mro_of("acme.Error"), s(&["Exception"]));
}
