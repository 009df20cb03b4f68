//! Differential test over the flow corpus of tests/flows (and its seeded generated flows):
//! every case is compiled, then run in a simulated mesh (tests/common) twice —
//! (1) `Mode::Compare`: every router through the generated routers.py on Troupe's real
//!     Python ABI, each native router also stepped natively, and the two outputs
//!     (payload, route, headers, routed error) must be identical;
//! (2) `Mode::Native`: native routers through `NativeRouters::run`;
//! and both results must equal the plain-Python reference result of the case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Harness, Mesh, Mode};
use serde_json::{json, Value};
use troupe_flow::{compile_file, routers_py, CompileOptions, Flow};

const SEEDS: u64 = 40;

/// Compile errors the compiler gives on purpose (docs/decisions.md "Flow routing"): the
/// generated flows sometimes call one actor inside and outside a try, and resiliency is
/// per actor.
const BY_DESIGN: &[&str] = &["is called here with different"];

/// Front-end rejections of corpus code that plain Python runs (reported to the front end).
const FRONT_END_KNOWN: &[&str] = &["class instantiation with arguments"];

/// Cases where a compiled flow cannot give CPython's result, and why.
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[
    ("big_numbers-2", "troupe-pyexpr raises OverflowError for ints beyond 64 bits (JSON payloads)"),
    ("big_numbers-3", "troupe-pyexpr raises OverflowError for ints beyond 64 bits (JSON payloads)"),
    ("fan_const_args-0", "a generator cannot emit None (the yield ABI's no-op), so a None slice fails in both router kinds"),
];

#[test]
fn corpus_native_and_python_routers_agree_with_plain_python() {
    let dir = common::scratch("troupe-flow-diff");
    let mut h = Harness::start();
    let cases = h.call(json!({"op": "cases", "dir": dir, "seeds": SEEDS}));
    let cases = cases["cases"].as_array().unwrap().clone();
    let mut by_flow: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for c in cases {
        let key = (
            c["file"].as_str().unwrap().to_owned(),
            c["func"].as_str().unwrap().to_owned(),
        );
        by_flow.entry(key).or_default().push(c);
    }
    let mut failures = Vec::new();
    let mut rejected = Vec::new();
    let (mut ran, mut hops) = (0, 0);
    for ((file, func), cases) in &by_flow {
        let path = dir.join(file);
        let flows = match compile_file(&path, Some(func), &CompileOptions::default()) {
            Ok(f) => f,
            Err(e) => {
                let text = e.to_string();
                let known = text.lines().all(|l| {
                    BY_DESIGN
                        .iter()
                        .chain(FRONT_END_KNOWN)
                        .any(|k| l.contains(k))
                });
                if known {
                    rejected.push(format!(
                        "{file}:{func}: {}",
                        text.lines().next().unwrap_or("")
                    ));
                } else {
                    failures.push(format!("{file}:{func} does not compile:\n{e}"));
                }
                continue;
            }
        };
        let flow: &Flow = flows.iter().find(|f| &f.name == func).unwrap();
        let routers = dir.join(format!("routers_{}.py", file.trim_end_matches(".py")));
        std::fs::write(&routers, routers_py(&flows)).unwrap();
        h.call(json!({"op": "load", "path": routers}));
        for case in cases {
            let id = case["id"].as_str().unwrap();
            if let Some((_, why)) = KNOWN_DEVIATIONS.iter().find(|(k, _)| *k == id) {
                eprintln!("skipped {id}: {why}");
                continue;
            }
            let handlers: HashMap<String, String> =
                serde_json::from_value(case["actors"].clone()).unwrap();
            let expected = &case["expected"];
            for mode in [Mode::Compare, Mode::Native] {
                let mut mesh = Mesh::new(flow, &mut h, &handlers, mode);
                let got = mesh.run(&case["payload"]);
                hops += mesh.router_hops;
                for m in &mesh.mismatches {
                    failures.push(format!(
                        "{} ({file}:{func}): native and Python routers differ: {m}",
                        case["id"]
                    ));
                }
                if &got != expected {
                    failures.push(format!(
                        "{} ({file}:{func}) {mode:?} input {}:\n  expected {expected}\n  got      {got}",
                        case["id"], case["payload"]
                    ));
                }
            }
            ran += 1;
        }
    }
    eprintln!(
        "{ran} cases of {} flows, {hops} router hops; {} flows rejected on purpose or by known front-end limits:\n  {}",
        by_flow.len(),
        rejected.len(),
        rejected.join("\n  ")
    );
    assert!(
        ran > 200,
        "the corpus should give more than 200 cases, got {ran}"
    );
    if !failures.is_empty() {
        panic!("{} failures:\n{}", failures.len(), failures.join("\n\n"));
    }
}
