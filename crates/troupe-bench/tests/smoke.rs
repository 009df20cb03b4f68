#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs the benchmark binary end to end on a small batch (real mesh, real Python
//! runtimes, real floor client) and checks that what it reports is consistent.

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_troupe-bench"))
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The throwaway project is removed when the run ends.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn small_run_reports_every_pipeline_with_consistent_figures() {
    let v = run(&[
        "--pipelines",
        "300",
        "--unloaded",
        "20",
        "--warmup",
        "10",
        "--json",
    ]);

    assert_eq!(v["mesh"]["pipelines"], 300);
    let wall = f(&v, "/mesh/wall_s");
    assert!(wall > 0.0);
    assert!((f(&v, "/mesh/pipelines_per_s") - 300.0 / wall).abs() < 1e-6 * 300.0 / wall);
    // Queueing latencies of a preloaded batch: the last pipeline finishes at the end of the run.
    assert!(f(&v, "/mesh/p50_ms") <= f(&v, "/mesh/p99_ms"));
    assert!(f(&v, "/mesh/max_ms") <= wall * 1000.0 + 1.0);
    // Three no-op runtimes did real work, and each is accounted for separately.
    let by_actor = v["mesh"]["cpu_s_python_by_actor"].as_object().unwrap();
    let mut actors: Vec<&str> = by_actor.keys().map(String::as_str).collect();
    actors.sort_unstable();
    assert_eq!(actors, ["a", "b", "c"]);
    let sum: f64 = by_actor.values().map(|c| c.as_f64().unwrap()).sum();
    assert!((sum - f(&v, "/mesh/cpu_s_python")).abs() < 1e-9);
    assert!(f(&v, "/mesh/cpu_s_troupe") > 0.0);
    let share = f(&v, "/mesh/troupe_share");
    assert!(share > 0.0 && share < 1.0);

    assert_eq!(v["mesh_unloaded"]["pipelines"], 20);
    assert!(f(&v, "/mesh_unloaded/p50_ms") > 0.0);
    assert!(f(&v, "/mesh_unloaded/p50_ms") <= f(&v, "/mesh_unloaded/p99_ms"));

    assert_eq!(v["preload"]["envelopes"], 300);
    assert!(f(&v, "/preload/wall_s") > 0.0);

    assert_eq!(v["floor"]["pipelines"], 300);
    assert!(f(&v, "/floor/pipelines_per_s") > 0.0);
    assert!(f(&v, "/floor/cpu_s_client") > 0.0);
    assert!(f(&v, "/floor/cpu_s_python") >= 0.0);
    assert!(f(&v, "/floor/p50_ms") > 0.0);

    assert_eq!(
        v["machine"]["tokio_workers"], 0,
        "default: current-thread, as troupe up"
    );
    assert!(v["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(
        v["targets"]["rate_met"],
        Value::Bool(f(&v, "/mesh/pipelines_per_s") >= 3000.0)
    );
}

#[test]
fn skip_floor_omits_it() {
    let v = run(&[
        "--pipelines",
        "50",
        "--unloaded",
        "5",
        "--warmup",
        "5",
        "--skip-floor",
        "--json",
    ]);
    assert!(v["floor"].is_null());
    assert_eq!(v["mesh"]["pipelines"], 50);
}

#[test]
fn gateway_benchmark_reports_every_part_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_troupe-bench"))
        .args([
            "gateway",
            "--runs",
            "1",
            "--tasks",
            "10",
            "--warmup",
            "2",
            "--clients",
            "4",
            "--duration",
            "0.5",
            "--subscribers",
            "20",
            "--events",
            "2",
            "--json",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["store"], "sqlite");
    assert!(v["command"].as_str().unwrap().contains("gateway --runs 1"));

    // Part 1: both paths measured every task; SSE costs more than the queue alone.
    let run = &v["overhead"]["runs"][0];
    for path in ["direct", "gateway", "gateway_fresh"] {
        assert_eq!(run[path]["tasks"], 10, "{path}");
        assert!(f(run, &format!("/{path}/p50_ms")) > 0.0);
        assert!(f(run, &format!("/{path}/p50_ms")) <= f(run, &format!("/{path}/p99_ms")));
    }
    assert!(
        f(&v, "/overhead/median/gateway_fresh_p50_ms") > f(&v, "/overhead/median/direct_p50_ms")
    );

    // Part 2: creates answered 201, every one of them finished, nothing failed.
    assert_eq!(v["creates"]["errors"], 0);
    let load = &v["creates"]["runs"][0];
    assert!(load["created"].as_u64().unwrap() > 0);
    assert!(f(load, "/creates_per_s") > 0.0);

    // Part 3: every posted event reached every subscriber, in both shapes.
    for case in ["sse_one_task", "sse_many_tasks"] {
        let r = &v[case]["runs"][0];
        assert_eq!(v[case]["errors"], 0, "{case}");
        assert_eq!(r["subscribers"], 20);
        assert_eq!(r["tasks"], if case == "sse_one_task" { 1 } else { 20 });
        for kind in ["status", "fly"] {
            assert_eq!(r[kind]["expected"], 40, "{case} {kind}");
            assert_eq!(r[kind]["delivered"], 40, "{case} {kind}");
            assert!(f(r, &format!("/{kind}/p50_ms")) > 0.0);
        }
        assert!(r["rss_open_kib"].as_u64().unwrap() > 0);
    }
    assert!(v["first_error"].is_null());
}
