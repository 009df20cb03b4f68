//! `troupe flow compile|validate|graph` on real Python flows (the front end runs with
//! `python3`): exit codes, `file:line:col` errors, the files compile writes and what graph
//! prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const RESEARCH: &str = include_str!("../../troupe-flow/tests/outputs/research.py");

const TWO_FLOWS: &str = r#"
def first(p):
    p = clean(p)
    return p


def second(p):
    p = clean(p)
    p["n"] = 1
    return p
"#;

const BAD: &str = r#"
def bad(p):
    p = clean(p)
    for x in p["items"]:
        p = clean(p)
    return p
"#;

/// Handlers of research.py's actors (it calls them by names it does not import).
const HANDLERS: [&str; 7] = [
    "plan=h.plan",
    "search=h.search",
    "review=h.review",
    "write=h.write",
    "apologize=h.apologize",
    "summarize=h.summarize",
    "notify=h.notify",
];

fn troupe(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("research.py"), RESEARCH).unwrap();
    std::fs::write(dir.path().join("two.py"), TWO_FLOWS).unwrap();
    std::fs::write(dir.path().join("bad.py"), BAD).unwrap();
    dir
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn compile_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "flow",
        "compile",
        "research.py",
        "--image",
        "ghcr.io/acme/flows:1",
    ];
    for h in &HANDLERS {
        v.extend(["--handler", h]);
    }
    v.extend(extra);
    v
}

#[test]
fn validate_exits_2_with_located_errors_and_0_with_a_summary() {
    let dir = project();
    let out = troupe(&["flow", "validate", "bad.py"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("bad.py:4:5: for loops cannot be compiled"),
        "{err}"
    );
    let out = troupe(&["flow", "validate", "research.py"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("ok research: entry start-research"),
        "{stdout}"
    );
    assert!(
        stdout.contains("router-research-if-line-9 (line 9) runs as a Python router: calls p['topic'].startswith()"),
        "{stdout}"
    );
    let out = troupe(&["flow", "validate", "research.py:nope"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = troupe(&["flow", "validate", "missing.py"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.py is not a file"));
}

#[test]
fn graph_prints_each_format_of_one_flow() {
    let dir = project();
    let out = troupe(
        &["flow", "graph", "research.py", "--format", "json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["flow"], "research");
    let python: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["native"] == false)
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(python, ["router-research-if-line-9"]);
    let out = troupe(&["flow", "graph", "research.py"], dir.path());
    assert!(text(&out.stdout).contains("flowchart TD"));
    let out = troupe(
        &["flow", "graph", "research.py:research", "--format", "dot"],
        dir.path(),
    );
    assert!(text(&out.stdout).starts_with("// Flow research"));
    // Two flows: graph wants one named.
    let out = troupe(&["flow", "graph", "two.py"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("holds flows first, second: name one, e.g. two.py:first"));
    let out = troupe(
        &["flow", "graph", "two.py:second", "--format", "json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = troupe(&["flow", "graph", "bad.py"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn compile_writes_outputs_and_manifests_to_the_default_folders() {
    let dir = project();
    let out = troupe(&compile_args(&[]), dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let compiled = dir.path().join(".asya/compiled/research");
    for f in [
        "routers.py",
        "graph.json",
        "flow.mmd",
        "flow.dot",
        "program.json",
    ] {
        assert!(compiled.join(f).is_file(), "{f} missing");
    }
    let base = dir.path().join(".asya/manifests/research/base");
    let k: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(base.join("kustomization.yaml")).unwrap())
            .unwrap();
    let files: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in &files {
        assert!(base.join(f).is_file(), "{f} listed but missing");
    }
    for f in [
        "configmap-research-routers.yaml",
        "configmap-research-program.yaml",
        "asyncactor-plan.yaml",
        "asyncactor-write.yaml",
        "asyncactor-router-research-if-line-9.yaml",
        "asyncactor-fanin-research-line-8.yaml",
        "asyncactor-fanin-research-line-20.yaml",
    ] {
        assert!(files.contains(&f), "{f} not in {files:?}");
    }
    // Native routers have no AsyncActor.
    assert!(!files.iter().any(|f| f.contains("while")), "{files:?}");
    let write: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(base.join("asyncactor-write.yaml")).unwrap())
            .unwrap();
    assert_eq!(write["metadata"]["labels"]["asya.sh/flow"], "research");
    assert_eq!(
        write["spec"]["resiliency"]["rules"][0]["errors"][1],
        "KeyError"
    );
}

#[test]
fn compile_with_o_and_no_native_routers_writes_every_router_and_clears_stale_ones() {
    let dir = project();
    let out = troupe(
        &compile_args(&["-o", "k8s", "--no-native-routers"]),
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let base = dir.path().join("k8s/research/base");
    assert!(dir.path().join("k8s/research/graph.json").is_file());
    assert!(base
        .join("asyncactor-router-research-while-line-11.yaml")
        .is_file());
    assert!(!base.join("configmap-research-program.yaml").exists());
    // Compiled again with native routers: the while router's manifest goes.
    let out = troupe(&compile_args(&["-o", "k8s"]), dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!base
        .join("asyncactor-router-research-while-line-11.yaml")
        .exists());
    assert!(base.join("configmap-research-program.yaml").is_file());
}

#[test]
fn compile_refuses_what_the_manifests_cannot_guess() {
    let dir = project();
    let out = troupe(
        &["flow", "compile", "research.py", "--image", "x:1"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--handler"),
        "{}",
        text(&out.stderr)
    );
    let mut args = compile_args(&[]);
    args.retain(|a| *a != "--image" && *a != "ghcr.io/acme/flows:1");
    let out = troupe(&args, dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("pass --image IMAGE"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join(".asya").exists(),
        "nothing is written on error"
    );
    let out = troupe(&["flow", "compile", "bad.py", "--image", "x:1"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("bad.py:4:5: "));
    let out = troupe(
        &["flow", "compile", "research.py", "--handler", "nodot"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}
