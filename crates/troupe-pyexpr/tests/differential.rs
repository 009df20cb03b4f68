//! Differential test against CPython: random native expressions and statements over random
//! payloads, evaluated here and by python3 (tests/oracle.py, one process for the batch); the
//! value (type-exact: 1 and 1.0 differ, so do 0.0 and -0.0) or the exception's type and
//! message must agree. `PYEXPR_DIFF_CASES` sets the cases per kind (default 2000); the seed
//! is fixed, `PYEXPR_DIFF_SEED` (0-255) changes it; `PYEXPR_DIFF_DUMP=dir` writes CPython's
//! side of every case there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod strategies;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use troupe_pyexpr::{eval, exec, Scope, INT_OVERFLOW, MAX_ITEMS};

fn cases() -> usize {
    std::env::var("PYEXPR_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn runner() -> TestRunner {
    let seed: u8 = std::env::var("PYEXPR_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// Runs every case through tests/oracle.py in one python3 process; one output per case.
fn oracle(cases: &[Value]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed: the differential test runs CPython as its oracle");
    let mut stdin = child.stdin.take().unwrap();
    let mut input = json!({"int_overflow": INT_OVERFLOW, "max_items": MAX_ITEMS}).to_string();
    input.push('\n');
    for c in cases {
        input.push_str(&c.to_string());
        input.push('\n');
    }
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let version: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let version = version["python"].as_str().unwrap_or_default().to_string();
    assert!(
        version.starts_with("3.11."),
        "python3 is {version}: the native subset's contract is CPython 3.11 (later versions changed messages)"
    );
    let out: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success(), "tests/oracle.py failed");
    assert_eq!(
        out.len(),
        cases.len(),
        "tests/oracle.py answered every case"
    );
    out
}

/// The result in the oracle's form: `{"ok": value}` or `{"err": [type, message]}`, values
/// compared as JSON text so that int/float and the sign of zero count.
fn canonical(r: Result<Value, troupe_pyexpr::PyError>) -> String {
    match r {
        Ok(v) => json!({ "ok": v }).to_string(),
        Err(e) => json!({"err": [e.error_type, e.message]}).to_string(),
    }
}

fn compare(kind: &str, cases: &[Value], ours: Vec<String>) {
    let started = std::time::Instant::now();
    let theirs = oracle(cases);
    eprintln!("{kind}: CPython took {:?}", started.elapsed());
    let mut failures = Vec::new();
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        let mut expected = theirs.clone();
        let src = expected.as_object_mut().unwrap().remove("src").unwrap();
        // Re-serialized through serde_json, as ours was: same key order, same float text.
        let expected = serde_json::from_value::<Value>(expected)
            .unwrap()
            .to_string();
        if *ours != expected {
            failures.push(format!(
                "case {case}\n  python: {}\n  cpython: {expected}\n  native:  {ours}",
                src.as_str().unwrap_or_default()
            ));
        }
    }
    if let Ok(dir) = std::env::var("PYEXPR_DIFF_DUMP") {
        // For tuning the strategies: every case's Python source and CPython's result.
        let lines: Vec<String> = theirs.iter().map(Value::to_string).collect();
        std::fs::write(format!("{dir}/{kind}.jsonl"), lines.join("\n")).unwrap();
    }
    let n = failures.len();
    for f in failures.iter().take(15) {
        eprintln!("{f}\n");
    }
    let mut raised = std::collections::BTreeMap::<String, usize>::new();
    for t in &theirs {
        if let Some(e) = t.get("err") {
            *raised
                .entry(e[0].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    let errors: usize = raised.values().sum();
    eprintln!(
        "{kind}: {} cases, {errors} raising in CPython {raised:?}, {n} differing",
        cases.len()
    );
    assert_eq!(
        n,
        0,
        "{n} of {} {kind} cases differ from CPython",
        cases.len()
    );
}

#[test]
fn expressions_agree_with_cpython() {
    let started = std::time::Instant::now();
    let mut runner = runner();
    let strategy = (
        strategies::payload(),
        strategies::json_value(),
        strategies::expr(),
    );
    let cases: Vec<Value> = (0..cases())
        .map(|_| {
            let (p, x, e) = strategy.new_tree(&mut runner).unwrap().current();
            json!({"p": p, "x": x, "expr": e})
        })
        .collect();
    eprintln!("expressions: generated in {:?}", started.elapsed());
    let ours = cases
        .iter()
        .map(|c| {
            let e = serde_json::from_value(c["expr"].clone()).unwrap();
            canonical(eval(&e, &Scope::new(&c["p"]).with_var("x", &c["x"])))
        })
        .collect();
    eprintln!("expressions: evaluated in {:?}", started.elapsed());
    compare("expressions", &cases, ours);
}

#[test]
fn statements_agree_with_cpython() {
    let mut runner = runner();
    let strategy = (strategies::payload(), strategies::stmt());
    let cases: Vec<Value> = (0..cases())
        .map(|_| {
            let (p, s) = strategy.new_tree(&mut runner).unwrap().current();
            json!({"p": p, "stmt": s})
        })
        .collect();
    let ours = cases
        .iter()
        .map(|c| {
            let s = serde_json::from_value(c["stmt"].clone()).unwrap();
            let mut p = c["p"].clone();
            canonical(exec(&s, &mut p).map(|()| p))
        })
        .collect();
    compare("statements", &cases, ours);
}
