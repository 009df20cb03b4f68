//! Lowering per construct (platform.md §4.2, docs/decisions.md "Flow routing"): each test
//! compiles a small flow through the real front end and checks the routers and routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use troupe_flow::{compile_file, CompileOptions, Flow, FlowError, Op, RouterKind};

fn compile_with(src: &str, opts: &CompileOptions) -> Result<Vec<Flow>, FlowError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.py");
    std::fs::write(&path, src).unwrap();
    compile_file(&path, None, opts)
}

fn compile(src: &str) -> Flow {
    compile_with(src, &CompileOptions::default())
        .unwrap()
        .remove(0)
}

fn op(f: &Flow, name: &str) -> Value {
    serde_json::to_value(
        &f.router(name)
            .unwrap_or_else(|| panic!("no router {name}"))
            .op,
    )
    .unwrap()
}

fn steps(f: &Flow, name: &str, key: &str) -> Vec<String> {
    serde_json::from_value(op(f, name)[key].clone()).unwrap()
}

fn errors(src: &str) -> Vec<(u32, u32, String)> {
    match compile_with(src, &CompileOptions::default()) {
        Err(FlowError::Compile(d)) => d.into_iter().map(|d| (d.line, d.col, d.message)).collect(),
        other => panic!("expected compile errors, got {other:?}"),
    }
}

#[test]
fn single_call_and_sequences_compile_to_no_routers() {
    let f = compile("def one(p):\n    p = a(p)\n    return p\n");
    assert_eq!(f.entry_route(), ["a"]);
    assert_eq!(f.entry(), "a");
    assert_eq!(f.routers().count(), 0);
    let f = compile("def three(p):\n    p = a(p)\n    b(p)\n    p = c(p)\n    return p\n");
    assert_eq!(f.entry_route(), ["a", "b", "c"]);
    assert_eq!(
        f.actors().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(f.actors().next().unwrap().line, 2);
}

#[test]
fn consecutive_mutations_batch_into_one_seq_router() {
    let f = compile(
        "def m(p):\n    p['a'] = 1\n    p['b'] += 2\n    p = a(p)\n    p['c'] = 3\n    return p\n",
    );
    assert_eq!(f.entry_route(), ["start-m"]);
    assert_eq!(
        steps(&f, "start-m", "steps"),
        ["router-m-seq-line-2", "a", "router-m-seq-line-5"]
    );
    assert_eq!(
        op(&f, "router-m-seq-line-2")["stmts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(f.routers().all(|r| r.native));
}

#[test]
fn if_elif_else_prepends_the_chosen_branch() {
    let f = compile("def c(p):\n    if p['x'] > 0:\n        p = a(p)\n    elif p['x'] == 0:\n        p = b(p)\n    else:\n        p = d(p)\n    p = e(p)\n    return p\n");
    assert_eq!(steps(&f, "start-c", "steps"), ["router-c-if-line-2", "e"]);
    assert_eq!(steps(&f, "router-c-if-line-2", "then"), ["a"]);
    assert_eq!(
        steps(&f, "router-c-if-line-2", "orelse"),
        ["router-c-if-line-4"]
    );
    assert_eq!(steps(&f, "router-c-if-line-4", "then"), ["b"]);
    assert_eq!(steps(&f, "router-c-if-line-4", "orelse"), ["d"]);
    assert_eq!(f.router("router-c-if-line-2").unwrap().kind, RouterKind::If);
}

#[test]
fn while_with_break_and_continue_jump_to_their_loop_router() {
    let f = compile("def w(p):\n    while p['n'] < 3:\n        p = a(p)\n        if p['skip']:\n            continue\n        if p['stop']:\n            break\n        p = b(p)\n    p = c(p)\n    return p\n");
    let w = "router-w-while-line-2";
    assert_eq!(steps(&f, "start-w", "steps"), [w, "c"]);
    assert_eq!(
        steps(&f, w, "body"),
        ["a", "router-w-if-line-4", "router-w-if-line-6", "b"]
    );
    assert_eq!(op(&f, w)["at"], json!(format!("{}:2", f.program.file)));
    assert_eq!(
        op(&f, "router-w-continue-line-5"),
        json!({"op": "jump", "marker": w, "inclusive": false, "prepend": []})
    );
    assert_eq!(
        op(&f, "router-w-break-line-7"),
        json!({"op": "jump", "marker": w, "inclusive": true, "prepend": []})
    );
    assert_eq!(f.program.max_iterations, 100);
    let opts = CompileOptions {
        max_iterations: 7,
        ..CompileOptions::default()
    };
    assert_eq!(
        compile_with("def w(p):\n    while True:\n        p = a(p)\n", &opts).unwrap()[0]
            .program
            .max_iterations,
        7
    );
    assert_eq!(
        op(
            &compile("def w(p):\n    while True:\n        p = a(p)\n"),
            "router-w-while-line-2"
        )["test"],
        Value::Null
    );
}

#[test]
fn early_return_drops_through_the_end_marker_and_tail_returns_are_free() {
    let f = compile("def r(p):\n    if p['x']:\n        p = a(p)\n        return p\n    p = b(p)\n    return p\n");
    assert_eq!(
        steps(&f, "start-r", "steps"),
        ["router-r-if-line-2", "b", "end-r"]
    );
    assert_eq!(
        steps(&f, "router-r-if-line-2", "then"),
        ["a", "router-r-return-line-4"]
    );
    assert_eq!(
        op(&f, "router-r-return-line-4"),
        json!({"op": "jump", "marker": "end-r", "inclusive": true, "prepend": []})
    );
    assert_eq!(op(&f, "end-r"), json!({"op": "pass"}));
    // Returns in tail position need neither a router nor a marker.
    let f = compile("def t(p):\n    if p['x']:\n        p = a(p)\n        return p\n    else:\n        p = b(p)\n        return p\n");
    assert!(f
        .routers()
        .all(|r| !matches!(r.kind, RouterKind::Return | RouterKind::End)));
}

#[test]
fn try_except_finally_routes_errors_through_the_actors_policies() {
    let f = compile("def t(p):\n    try:\n        p = risky(p)\n    except (ValueError, openai.APITimeoutError):\n        p = fix(p)\n    except:\n        p = other(p)\n    finally:\n        p = clean(p)\n    p = after(p)\n    return p\n");
    assert_eq!(steps(&f, "start-t", "steps"), ["risky", "clean", "after"]);
    assert_eq!(
        steps(&f, "router-t-except-line-4", "steps"),
        ["fix", "clean", "after"]
    );
    assert_eq!(
        steps(&f, "router-t-except-line-6", "steps"),
        ["other", "clean", "after"]
    );
    let risky = f.actors().find(|a| a.name == "risky").unwrap();
    assert_eq!(
        risky.resiliency,
        json!({
            "policies": {
                "try_except_line_2_0": {"maxAttempts": 1, "onExhausted": ["router-t-except-line-4"]},
                "default": {"maxAttempts": 1, "onExhausted": ["router-t-except-line-6"]}
            },
            "rules": [{"errors": ["ValueError", "openai.APITimeoutError"], "policy": "try_except_line_2_0"}]
        })
    );
    assert_eq!(
        f.actors().find(|a| a.name == "clean").unwrap().resiliency,
        Value::Null
    );
}

#[test]
fn nested_try_reaches_outer_clauses_through_the_inner_finally() {
    let f = compile("def n(p):\n    try:\n        try:\n            p = risky(p)\n        except ValueError:\n            p = fix(p)\n        finally:\n            p = clean(p)\n    except Exception:\n        p = outer(p)\n    return p\n");
    let risky = &f.actors().find(|a| a.name == "risky").unwrap().resiliency;
    assert_eq!(
        risky["rules"],
        json!([
            {"errors": ["ValueError"], "policy": "try_except_line_3_0"},
            {"errors": ["Exception"], "policy": "try_except_line_2_0_via_3"}
        ])
    );
    let via = risky["policies"]["try_except_line_2_0_via_3"]["onExhausted"][0]
        .as_str()
        .unwrap();
    assert_eq!(steps(&f, via, "steps"), ["clean", "outer"]);
    // The inner handler is inside the outer try too, behind the inner finally.
    assert_eq!(
        f.actors().find(|a| a.name == "fix").unwrap().resiliency["policies"]
            ["try_except_line_2_0_via_3"]["onExhausted"],
        json!([via])
    );
}

#[test]
fn break_and_return_inside_try_run_its_finally() {
    let f = compile("def b(p):\n    while True:\n        try:\n            p = a(p)\n            if p['stop']:\n                break\n        except ValueError:\n            p = fix(p)\n        finally:\n            p = clean(p)\n    p = z(p)\n    if p['early']:\n        try:\n            return p\n        except KeyError:\n            p = k(p)\n        finally:\n            p = bye(p)\n    p = last(p)\n    return p\n");
    assert_eq!(op(&f, "router-b-break-line-6")["prepend"], json!(["clean"]));
    assert_eq!(
        op(&f, "router-b-return-line-14"),
        json!({"op": "jump", "marker": "end-b", "inclusive": true, "prepend": ["bye"]})
    );
}

#[test]
fn raise_and_bare_reraise() {
    let f = compile("def r(p):\n    try:\n        p = a(p)\n    except ValueError:\n        p = log(p)\n        raise\n    if p['bad']:\n        raise KeyError('missing')\n    return p\n");
    assert_eq!(op(&f, "router-r-except-line-4")["keep_error"], json!(true));
    assert_eq!(
        op(&f, "router-r-raise-line-6"),
        json!({"op": "raise", "error_type": null, "message": null})
    );
    assert_eq!(
        op(&f, "router-r-raise-line-8"),
        json!({"op": "raise", "error_type": "KeyError", "message": "missing"})
    );
}

#[test]
fn fan_out_lists_its_fan_in_and_slices() {
    let f = compile("def f(p):\n    p['r'] = [a(p['x']), b(p['y'])]\n    p['s'] = [c(q) for q in p['qs']]\n    return p\n");
    assert_eq!(
        f.fanins().collect::<Vec<_>>(),
        ["fanin-f-line-2", "fanin-f-line-3"]
    );
    let o = op(&f, "fanout-f-line-2");
    assert_eq!(o["key"], json!("/r"));
    assert_eq!(o["fanin"], json!("fanin-f-line-2"));
    assert_eq!(o["calls"][1]["actor"], json!("b"));
    let o = op(&f, "fanout-f-line-3");
    assert_eq!(
        (o["op"].as_str(), o["actor"].as_str(), o["var"].as_str()),
        (Some("fanout_each"), Some("c"), Some("q"))
    );
    assert_eq!(
        f.router("fanout-f-line-2").unwrap().kind,
        RouterKind::Fanout
    );
}

#[test]
fn groups_with_a_return_get_their_own_end_marker() {
    let f = compile("from asya_lab.flow import flow\n\n@flow\ndef sub(p):\n    if p['x']:\n        return p\n    p = a(p)\n    return p\n\n@flow\ndef main(p):\n    p = sub(p)\n    p = b(p)\n    return p\n");
    assert_eq!(f.name, "sub");
    let main = compile_with("from asya_lab.flow import flow\n\n@flow\ndef sub(p):\n    if p['x']:\n        return p\n    p = a(p)\n    return p\n\n@flow\ndef main(p):\n    p = sub(p)\n    p = b(p)\n    return p\n", &CompileOptions::default()).unwrap().remove(1);
    let start = steps(&main, "start-main", "steps");
    assert_eq!(start.len(), 4, "{start:?}");
    assert!(start[2].starts_with("end-main-sub-line-12"), "{start:?}");
    assert_eq!(start[3], "b");
    let ret = main
        .routers()
        .find(|r| r.kind == RouterKind::Return)
        .unwrap();
    assert_eq!(
        serde_json::to_value(&ret.op).unwrap()["marker"],
        json!(start[2])
    );
}

#[test]
fn with_blocks_and_decorators_configure_the_actors() {
    let f = compile("import asyncio\n\nasync def c(p):\n    async with asyncio.timeout(30):\n        p = await slow(p)\n    p = await fast(p)\n    return p\n");
    let slow = f.actors().find(|a| a.name == "slow").unwrap();
    assert_eq!(slow.resiliency, json!({"actorTimeout": "30s"}));
    assert_eq!(
        f.actors().find(|a| a.name == "fast").unwrap().resiliency,
        Value::Null
    );
}

#[test]
fn non_native_expressions_make_python_routers_and_native_off_makes_all() {
    let src = "def n(p):\n    if p['x'].startswith('a'):\n        p = a(p)\n    if p['y'] > 1:\n        p = b(p)\n    return p\n";
    let f = compile(src);
    let r = f.router("router-n-if-line-2").unwrap();
    assert!(!r.native);
    assert!(r.why.as_deref().unwrap_or("").contains("startswith") || r.why.is_some());
    assert!(f.router("router-n-if-line-4").unwrap().native);
    assert_eq!(f.python_routers().count(), 1);
    let off = compile_with(
        src,
        &CompileOptions {
            native: false,
            ..CompileOptions::default()
        },
    )
    .unwrap()
    .remove(0);
    assert_eq!(off.python_routers().count(), off.routers().count());
    assert!(off.routers().all(|r| r.why.is_some()));
}

#[test]
fn python_routers_in_a_try_get_the_clauses_and_native_ones_a_catch_list() {
    let f = compile("def t(p):\n    try:\n        p['v'] = p['x'].strip()\n        p['w'] = p['x'] + 1\n        p = a(p)\n    except KeyError:\n        p = fix(p)\n    return p\n");
    let seq = f.router("router-t-seq-line-3").unwrap();
    assert!(!seq.native);
    assert_eq!(
        seq.resiliency["rules"],
        json!([{"errors": ["KeyError"], "policy": "try_except_line_2_0"}])
    );
    assert_eq!(
        serde_json::to_value(&seq.catch).unwrap(),
        json!([{"errors": ["KeyError"], "target": "router-t-except-line-6"}])
    );
}

#[test]
fn an_actor_in_two_error_contexts_is_rejected_at_its_call() {
    let errs = errors("def t(p):\n    try:\n        p = risky(p)\n    except ValueError:\n        p = fix(p)\n    p = risky(p)\n    return p\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    let (line, col, msg) = &errs[0];
    assert_eq!((*line, *col), (6, 5));
    assert!(
        msg.contains("actor risky") && msg.contains("line 3") && msg.contains("separate actor"),
        "{msg}"
    );
}

#[test]
fn try_inside_finally_is_rejected_at_the_try() {
    let errs = errors("def t(p):\n    try:\n        p = a(p)\n    except ValueError:\n        p = b(p)\n    finally:\n        try:\n            p = c(p)\n        except KeyError:\n            p = d(p)\n    return p\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].0, errs[0].1), (7, 9));
    assert!(errs[0].2.contains("finally"), "{}", errs[0].2);
}

#[test]
fn front_end_errors_print_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.py");
    std::fs::write(
        &path,
        "def f(p):\n    for x in p['xs']:\n        p = a(p)\n    return p\n",
    )
    .unwrap();
    let err = compile_file(&path, None, &CompileOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:2:5: ", path.display())),
        "{text}"
    );
    assert!(text.contains("for"), "{text}");
}

#[test]
fn a_missing_python_is_a_clear_error() {
    let opts = CompileOptions {
        python: "/nonexistent/python3".into(),
        ..CompileOptions::default()
    };
    let err = compile_with("def f(p):\n    return a(p)\n", &opts).unwrap_err();
    assert!(matches!(err, FlowError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/python3"));
}

#[test]
fn the_rules_file_next_to_the_source_reaches_the_front_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.py");
    std::fs::write(
        &path,
        "from mylib import work\n\ndef f(p):\n    p = work(p)\n    return p\n",
    )
    .unwrap();
    let before = compile_file(&path, None, &CompileOptions::default())
        .unwrap()
        .remove(0);
    assert!(
        before.actors().all(|a| a.name != "work"),
        "an imported name is inline by default"
    );
    std::fs::create_dir_all(dir.path().join(".asya")).unwrap();
    std::fs::write(
        dir.path().join(".asya/config.compiler.rules.yaml"),
        "- match: mylib.work\n  treat-as: actor\n",
    )
    .unwrap();
    let after = compile_file(&path, None, &CompileOptions::default())
        .unwrap()
        .remove(0);
    assert_eq!(after.entry_route(), ["work"]);
    std::fs::write(
        dir.path().join(".asya/config.compiler.rules.yaml"),
        "rules: [oops\n",
    )
    .unwrap();
    let err = compile_file(&path, None, &CompileOptions::default()).unwrap_err();
    assert!(matches!(err, FlowError::RulesParse { .. }), "{err}");
}

#[test]
fn a_pipeline_is_its_route() {
    let f = troupe_flow::pipeline("text", &["clean".into(), "analyse".into(), "clean".into()]);
    assert_eq!(f.entry(), "clean");
    assert_eq!(f.entry_route(), ["clean", "analyse", "clean"]);
    assert_eq!(f.actors().count(), 2);
    assert_eq!(f.routers().count(), 0);
    let back: Flow = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
    assert_eq!(back, f);
}

#[test]
fn programs_round_trip_through_json() {
    let f = compile("def r(p):\n    while p['n'] < 2:\n        p['n'] += 1\n    try:\n        p = a(p)\n    except ValueError:\n        raise\n    p['r'] = [b(x) for x in p['xs']]\n    return p\n");
    let text = serde_json::to_string(&f).unwrap();
    let back: Flow = serde_json::from_str(&text).unwrap();
    assert_eq!(back, f);
    assert!(matches!(
        back.router("router-r-while-line-2").unwrap().op,
        Op::While { .. }
    ));
}

#[test]
fn tool_style_calls_carry_their_adapter() {
    let f = compile("def t(p):\n    p['y'] = summarize(p['text'], n=3)\n    return p\n");
    let a = f.actors().find(|a| a.name == "summarize").unwrap();
    let adapter = serde_json::to_value(a.adapter.as_ref().unwrap()).unwrap();
    assert_eq!(adapter["target"], json!(["y"]));
    assert_eq!(adapter["args"][0]["code"], json!("p['text']"));
    assert_eq!(adapter["kwargs"]["n"]["code"], json!("3"));
}
