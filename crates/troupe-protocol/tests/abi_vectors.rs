#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs the shared ABI path conformance vectors (`testdata/abi_paths.json`), which the
//! Python runtime is tested against too.

use serde_json::Value;
use troupe_protocol::path::Path;

fn vectors() -> Vec<Value> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/abi_paths.json");
    let text = std::fs::read_to_string(file).expect("testdata/abi_paths.json is readable");
    let root: Value = serde_json::from_str(&text).expect("vectors are valid JSON");
    root["cases"].as_array().expect("cases array").clone()
}

fn run(case: &Value) -> Result<Option<Value>, String> {
    let doc = case["doc"].clone();
    let path = case["path"].as_str().expect("path is a string");
    let parsed = Path::parse(path).map_err(|e| e.python_type().to_owned())?;
    match case["op"].as_str().expect("op") {
        "get" => parsed
            .get(&doc)
            .map(Some)
            .map_err(|e| e.python_type().to_owned()),
        "set" => {
            let mut doc = doc;
            let value = case.get("value").cloned().expect("set case has a value");
            match parsed.set(&mut doc, value) {
                Ok(()) => Ok(Some(doc)),
                Err(e) => {
                    assert_eq!(doc, case["doc"], "failed SET must leave the doc unchanged");
                    Err(e.python_type().to_owned())
                }
            }
        }
        "del" => {
            let mut doc = doc;
            match parsed.del(&mut doc) {
                Ok(()) => Ok(Some(doc)),
                Err(e) => {
                    assert_eq!(doc, case["doc"], "failed DEL must leave the doc unchanged");
                    Err(e.python_type().to_owned())
                }
            }
        }
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn all_vectors_pass() {
    let cases = vectors();
    assert!(cases.len() >= 60, "expected at least 60 vectors");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let got = run(case);
        let ok = match (&got, case.get("error")) {
            (Err(kind), Some(Value::String(want))) => kind == want,
            (Ok(Some(v)), None) => {
                let key = if case["op"] == "get" {
                    "result"
                } else {
                    "after"
                };
                case.get(key) == Some(v)
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: path {} → got {got:?}", case["path"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vectors_are_well_formed() {
    let mut names = std::collections::HashSet::new();
    for case in vectors() {
        let name = case["name"].as_str().expect("name");
        assert!(names.insert(name.to_owned()), "duplicate name {name}");
        let op = case["op"].as_str().expect("op");
        assert!(["get", "set", "del"].contains(&op), "{name}");
        assert!(case["path"].is_string(), "{name}");
        assert_eq!(
            case.get("value").is_some(),
            op == "set",
            "{name}: value only for set"
        );
        match case.get("error") {
            Some(e) => {
                let e = e.as_str().expect("error is a string");
                assert!(
                    ["ValueError", "KeyError", "IndexError", "TypeError"].contains(&e),
                    "{name}"
                );
                assert!(
                    case.get("result").is_none() && case.get("after").is_none(),
                    "{name}"
                );
            }
            None => {
                assert_eq!(case.get("result").is_some(), op == "get", "{name}");
                assert_eq!(case.get("after").is_some(), op != "get", "{name}");
            }
        }
    }
}

#[test]
fn vectors_cover_every_grammar_form_and_error() {
    let cases = vectors();
    let paths: Vec<&str> = cases.iter().map(|c| c["path"].as_str().unwrap()).collect();
    for needle in [".", "[\"", "[0]", "[-1]", "[:0]", "[999:]", "[1:3]", "[:]"] {
        assert!(
            paths.iter().any(|p| p.contains(needle)),
            "no vector uses {needle}"
        );
    }
    for (op, err) in [
        ("get", "ValueError"),
        ("get", "KeyError"),
        ("get", "IndexError"),
        ("get", "TypeError"),
        ("set", "ValueError"),
        ("set", "IndexError"),
        ("set", "TypeError"),
        ("del", "ValueError"),
        ("del", "KeyError"),
        ("del", "IndexError"),
        ("del", "TypeError"),
    ] {
        assert!(
            cases.iter().any(|c| c["op"] == op && c["error"] == err),
            "no {op} vector raising {err}"
        );
    }
}
