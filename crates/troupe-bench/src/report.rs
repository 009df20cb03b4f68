//! Printing: the table for people, one JSON object for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::floor::FloorResult;
use crate::meshrun::{MeshResult, PhaseResult};
use crate::stats::{per_thousand, rate};
use crate::Args;

/// Throughput target of the issue, pipelines per second.
pub const TARGET_RATE: f64 = 3000.0;
/// The troupe process may use at most this share of the pipeline's total CPU.
pub const TARGET_TROUPE_SHARE: f64 = 1.0 / 3.0;

/// The machine the numbers come from.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs available to this process.
    pub cpus: usize,
    /// Load averages (1, 5, 15 min) before the benchmark started.
    pub load: Option<(f64, f64, f64)>,
    /// `python --version`, when it runs.
    pub python: String,
}

impl Machine {
    /// Reads CPU count, load average and the interpreter version.
    pub fn probe(python: &str) -> Machine {
        let version = std::process::Command::new(python)
            .arg("--version")
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(if o.stdout.is_empty() {
                    &o.stderr
                } else {
                    &o.stdout
                })
                .trim()
                .to_owned()
            })
            .unwrap_or_else(|| format!("{python} (version unknown)"));
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            load: crate::procstat::load_average(),
            python: version,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Through the mesh.
    pub mesh: MeshResult,
    /// Direct against the runtimes (absent with `--skip-floor`).
    pub floor: Option<FloorResult>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn share(troupe: f64, python: f64) -> f64 {
    let total = troupe + python;
    if total > 0.0 {
        troupe / total
    } else {
        0.0
    }
}

/// Load averages as printed, or `unknown`.
pub fn load_text(m: &Machine) -> String {
    m.load.map_or_else(
        || "unknown".to_owned(),
        |(a, b, c)| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

/// The lines printed before the run starts.
pub fn header(args: &Args, m: &Machine) -> String {
    format!(
        "troupe-bench: 3-actor no-op pipeline a -> b -> c, embedded mesh, 1 replica/actor, concurrency 1\n\
         machine: {} CPUs, load average {} (before start), {}, tokio: {}\n",
        m.cpus,
        load_text(m),
        m.python,
        match args.workers {
            0 => "current-thread (as troupe up)".to_owned(),
            n => format!("{n} workers"),
        }
    )
}

struct Row {
    name: String,
    rate: f64,
    p50: Duration,
    p99: Duration,
    python: f64,
    other: f64,
}

fn mesh_row(name: String, p: &PhaseResult) -> Row {
    Row {
        name,
        rate: rate(p.pipelines, p.wall),
        p50: p.latency.p50,
        p99: p.latency.p99,
        python: per_thousand(p.cpu_python, p.pipelines),
        other: per_thousand(p.cpu_troupe, p.pipelines),
    }
}

fn floor_row(f: &FloorResult) -> Row {
    Row {
        name: format!("floor (direct, {} seq)", f.pipelines),
        rate: rate(f.pipelines, f.wall),
        p50: f.p50,
        p99: f.p99,
        python: per_thousand(f.cpu_python, f.pipelines),
        other: per_thousand(f.cpu_client, f.pipelines),
    }
}

/// The human-readable report (printed after [`header`]).
pub fn text(r: &Results) -> String {
    let mut out = String::new();
    let pre = &r.mesh.preload;
    let _ = writeln!(
        out,
        "preload: {} envelopes sent to queue a in {:.3} s ({:.0}/s), troupe CPU {:.3} s ({:.3} CPU-s/1k); not counted below",
        pre.envelopes,
        pre.wall.as_secs_f64(),
        rate(pre.envelopes, pre.wall),
        pre.cpu,
        per_thousand(pre.cpu, pre.envelopes)
    );
    let mut rows = vec![
        mesh_row(
            format!("mesh (preloaded {})", r.mesh.loaded.pipelines),
            &r.mesh.loaded,
        ),
        mesh_row(
            format!("mesh (unloaded, {} seq)", r.mesh.unloaded.pipelines),
            &r.mesh.unloaded,
        ),
    ];
    if let Some(f) = &r.floor {
        rows.push(floor_row(f));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:>11} {:>9} {:>9} {:>17} {:>24} {:>8}",
        "", "pipelines/s", "p50 ms", "p99 ms", "CPU-s/1k python", "CPU-s/1k troupe|client", "share"
    );
    for row in &rows {
        let _ = writeln!(
            out,
            "{:<28} {:>11.0} {:>9.3} {:>9.3} {:>17.3} {:>24.3} {:>7.1}%",
            row.name,
            row.rate,
            ms(row.p50),
            ms(row.p99),
            row.python,
            row.other,
            100.0 * share(row.other, row.python)
        );
    }
    let _ = writeln!(out, "(share = troupe or client CPU / total CPU; preloaded p50/p99 count from the start of consumption, so they are queueing time)");
    let by_actor: Vec<String> = r
        .mesh
        .loaded
        .cpu_by_actor
        .iter()
        .map(|(a, c)| format!("{a} {:.3}", per_thousand(*c, r.mesh.loaded.pipelines)))
        .collect();
    let _ = writeln!(
        out,
        "mesh (preloaded) python CPU-s/1k by actor: {}",
        by_actor.join(", ")
    );
    let l = &r.mesh.loaded;
    let achieved = rate(l.pipelines, l.wall);
    let troupe_share = share(l.cpu_troupe, l.cpu_python);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(
        out,
        "targets: >= {TARGET_RATE:.0} pipelines/s: {} ({achieved:.0}); troupe <= 1/3 of CPU: {} ({:.1}%)",
        verdict(achieved >= TARGET_RATE),
        verdict(troupe_share <= TARGET_TROUPE_SHARE),
        100.0 * troupe_share
    );
    out
}

fn phase_json(p: &PhaseResult) -> Value {
    json!({
        "pipelines": p.pipelines,
        "wall_s": p.wall.as_secs_f64(),
        "pipelines_per_s": rate(p.pipelines, p.wall),
        "p50_ms": ms(p.latency.p50),
        "p99_ms": ms(p.latency.p99),
        "mean_ms": ms(p.latency.mean),
        "max_ms": ms(p.latency.max),
        "cpu_s_python": p.cpu_python,
        "cpu_s_troupe": p.cpu_troupe,
        "cpu_s_per_1k_python": per_thousand(p.cpu_python, p.pipelines),
        "cpu_s_per_1k_troupe": per_thousand(p.cpu_troupe, p.pipelines),
        "troupe_share": share(p.cpu_troupe, p.cpu_python),
        "cpu_s_python_by_actor": p.cpu_by_actor.iter().map(|(a, c)| (a.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
    })
}

/// The machine-readable report.
pub fn json(args: &Args, m: &Machine, r: &Results) -> Value {
    let l = &r.mesh.loaded;
    let pre = &r.mesh.preload;
    json!({
        "machine": {
            "cpus": m.cpus,
            "load_average": m.load.map(|(a, b, c)| vec![a, b, c]),
            "python": m.python,
            "tokio_workers": args.workers,
        },
        "preload": {
            "envelopes": pre.envelopes,
            "wall_s": pre.wall.as_secs_f64(),
            "cpu_s": pre.cpu,
            "cpu_s_per_1k": per_thousand(pre.cpu, pre.envelopes),
        },
        "mesh": phase_json(l),
        "mesh_unloaded": phase_json(&r.mesh.unloaded),
        "floor": r.floor.as_ref().map(|f| json!({
            "pipelines": f.pipelines,
            "wall_s": f.wall.as_secs_f64(),
            "pipelines_per_s": rate(f.pipelines, f.wall),
            "p50_ms": ms(f.p50),
            "p99_ms": ms(f.p99),
            "cpu_s_python": f.cpu_python,
            "cpu_s_client": f.cpu_client,
            "cpu_s_per_1k_python": per_thousand(f.cpu_python, f.pipelines),
            "cpu_s_per_1k_client": per_thousand(f.cpu_client, f.pipelines),
        })),
        "targets": {
            "pipelines_per_s": TARGET_RATE,
            "troupe_share_max": TARGET_TROUPE_SHARE,
            "rate_met": rate(l.pipelines, l.wall) >= TARGET_RATE,
            "share_met": share(l.cpu_troupe, l.cpu_python) <= TARGET_TROUPE_SHARE,
        },
    })
}
