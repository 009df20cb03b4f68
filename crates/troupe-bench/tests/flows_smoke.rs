#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs `troupe-bench flows` end to end on the embedded queue with a few runs (real mesh,
//! real flow compiler, real Python runtimes) so the subcommand cannot rot, and checks that
//! what it reports is consistent: the same steps in both modes, queue hops only for the
//! steps that ran in a sidecar.

use std::process::Command;

use serde_json::Value;

fn f(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn small_flow_run_counts_hops_and_routers_per_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_troupe-bench"))
        .args([
            "flows",
            "--runs",
            "20",
            "--warmup",
            "5",
            "--reps",
            "1",
            "--concurrency",
            "1,4",
            "--transports",
            "embedded",
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
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for v in &lines {
        assert_eq!(v["transport"], "embedded");
        assert_eq!(v["runs"], 20);
        assert!((f(v, "calls_per_run") - 5.0).abs() < 1e-9, "{v}");
        let routers = f(v, "native_routers_per_run") + f(v, "python_routers_per_run");
        assert!((routers - 6.0).abs() < 1e-9, "{v}");
        // The sidecars' counters agree with the routes: every step that is not a native
        // router was one message taken from a queue.
        assert!(
            (f(v, "hops_per_run") - f(v, "hops_per_run_from_routes")).abs() < 1e-9,
            "{v}"
        );
        assert!(
            (f(v, "hops_per_run") - 5.0 - f(v, "python_routers_per_run")).abs() < 1e-9,
            "{v}"
        );
        assert!(
            f(v, "p50_ms") > 0.0 && f(v, "p50_ms") <= f(v, "p99_ms"),
            "{v}"
        );
        assert!(f(v, "cpu_ms_per_run_troupe") > 0.0, "{v}");
        assert!(f(v, "cpu_ms_per_run_broker").abs() < 1e-12, "{v}");
        match v["routers"].as_str().unwrap() {
            "native" => assert!(f(v, "python_routers_per_run").abs() < 1e-9, "{v}"),
            "python" => assert!(f(v, "native_routers_per_run").abs() < 1e-9, "{v}"),
            other => panic!("unexpected mode {other}"),
        }
    }
    let concurrencies: Vec<u64> = lines
        .iter()
        .map(|v| v["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(concurrencies, [1, 4, 1, 4]);
}
