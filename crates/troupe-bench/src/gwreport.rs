//! Printing the gateway benchmark: tables for people, one JSON object for scripts.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::gateway::{self, GatewayArgs, GatewayResults, LoadRun, SeqRun, SseRun};
use crate::gwclient::Delivery;
use crate::meshrun::PhaseResult;
use crate::report::{self, Machine};
use crate::stats::{median, per_thousand, rate};

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[allow(clippy::cast_precision_loss)]
fn f(n: usize) -> f64 {
    n as f64
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn med<T>(runs: &[T], get: impl Fn(&T) -> f64) -> f64 {
    median(runs.iter().map(get).collect())
}

/// The lines printed before the run starts.
pub fn header(args: &GatewayArgs, m: &Machine, command: &str) -> String {
    format!(
        "troupe-bench gateway: 3-actor no-op pipeline a -> b -> c through the embedded mesh and its gateway, 1 replica/actor, concurrency 1\n\
         command: {command}\n\
         machine: {} CPUs, load average {} (before start), {}, tokio: {}\n\
         gateway store: {}; result files: {}; HTTP clients run in a separate process (not counted as troupe)\n\
         part 3 runs in a mesh process of its own with {}={} (freed memory leaves RSS at once)\n",
        m.cpus,
        report::load_text(m),
        m.python,
        match args.workers {
            0 => "current-thread (as troupe up)".to_owned(),
            n => format!("{n} workers"),
        },
        match args.store {
            gateway::Store::Sqlite => "sqlite (gateway.db in the state dir, the default)",
            gateway::Store::Memory => "memory",
        },
        if args.no_persist { "off (--no-persist)" } else { "on (one succeeded/{id}.json per task)" },
        gateway::PURGE_ENV,
        gateway::purge_delay(),
    )
}

struct Row {
    p50: f64,
    p99: f64,
    mean: f64,
    troupe: f64,
    python: f64,
}

fn seq_row(runs: &[SeqRun], pick: impl Fn(&SeqRun) -> &PhaseResult) -> Row {
    Row {
        p50: med(runs, |r| ms(pick(r).latency.p50)),
        p99: med(runs, |r| ms(pick(r).latency.p99)),
        mean: med(runs, |r| ms(pick(r).latency.mean)),
        // CPU time comes in 10 ms ticks, a few dozen per run: pooled over the runs it is
        // several times finer than any one run's figure.
        troupe: per_thousand(
            runs.iter().map(|r| pick(r).cpu_troupe).sum(),
            runs.iter().map(|r| pick(r).pipelines).sum(),
        ),
        python: per_thousand(
            runs.iter().map(|r| pick(r).cpu_python).sum(),
            runs.iter().map(|r| pick(r).pipelines).sum(),
        ),
    }
}

fn part1(out: &mut String, args: &GatewayArgs, runs: &[SeqRun]) {
    let _ = writeln!(
        out,
        "\nPart 1: gateway overhead, {} sequential tasks per run and path (after {} unmeasured); latency: median of {} runs, CPU: the runs pooled",
        args.tasks,
        args.warmup,
        runs.len()
    );
    let _ = writeln!(
        out,
        "{:<48} {:>8} {:>8} {:>8} {:>16} {:>16}",
        "path", "p50 ms", "p99 ms", "mean ms", "CPU-s/1k troupe", "CPU-s/1k python"
    );
    let d = seq_row(runs, |r| &r.direct);
    let g = seq_row(runs, |r| &r.gateway);
    let gf = seq_row(runs, |r| &r.gateway_fresh);
    let diff = |g: &Row| Row {
        p50: g.p50 - d.p50,
        p99: g.p99 - d.p99,
        mean: g.mean - d.mean,
        troupe: g.troupe - d.troupe,
        python: g.python - d.python,
    };
    for (name, r) in [
        ("direct: Transport::send to queue a -> x-sink tap", &d),
        ("gateway, keep-alive: POST tasks -> SSE terminal", &g),
        ("gateway, new connection per request", &gf),
        ("overhead, keep-alive (gateway - direct)", &diff(&g)),
        ("overhead, new connection (gateway - direct)", &diff(&gf)),
    ] {
        let _ = writeln!(
            out,
            "{name:<48} {:>8.3} {:>8.3} {:>8.3} {:>16.3} {:>16.3}",
            r.p50, r.p99, r.mean, r.troupe, r.python
        );
    }
    let per_run: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{:.3}/{:.3}/{:.3}",
                ms(r.direct.latency.p50),
                ms(r.gateway.latency.p50),
                ms(r.gateway_fresh.latency.p50)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "per run p50 direct/keep-alive/new-connection ms: {}",
        per_run.join("  ")
    );
}

fn load_errors(l: &LoadRun) -> usize {
    l.client.errors + l.failed
}

fn part2(out: &mut String, args: &GatewayArgs, runs: &[LoadRun]) {
    let _ = writeln!(
        out,
        "\nPart 2: sustained task creation, {} HTTP clients x {:.1} s per run (at most {} creates), POST /troupe/v1/tasks while a -> b -> c runs",
        args.clients, args.duration, args.max_creates
    );
    let _ = writeln!(
        out,
        "{:<7} {:>8} {:>10} {:>14} {:>7} {:>8} {:>8} {:>16}",
        "run",
        "creates",
        "creates/s",
        "completions/s",
        "errors",
        "backlog",
        "drain s",
        "CPU-s/1k troupe"
    );
    let creates_s = |l: &LoadRun| rate(l.client.created, secs(l.client.wall_s));
    let completions_s = |l: &LoadRun| rate(l.completed, l.window);
    let backlog = |l: &LoadRun| f(l.client.created.saturating_sub(l.completed));
    for (i, l) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<7} {:>8} {:>10.0} {:>14.0} {:>7} {:>8.0} {:>8.2} {:>16.3}",
            i + 1,
            l.client.created,
            creates_s(l),
            completions_s(l),
            load_errors(l),
            backlog(l),
            l.drain.as_secs_f64(),
            gateway::load_cpu_per_1k(l)
        );
    }
    let _ = writeln!(
        out,
        "{:<7} {:>8.0} {:>10.0} {:>14.0} {:>7} {:>8.0} {:>8.2} {:>16.3}",
        "median",
        med(runs, |l| f(l.client.created)),
        med(runs, creates_s),
        med(runs, completions_s),
        runs.iter().map(load_errors).sum::<usize>(),
        med(runs, backlog),
        med(runs, |l| l.drain.as_secs_f64()),
        med(runs, gateway::load_cpu_per_1k)
    );
    let _ = writeln!(
        out,
        "(errors: non-201 answers and failed requests plus pipelines that reached x-sink not succeeded, summed over runs; backlog: created - completed in the window; CPU: troupe process from the window's start to the end of the drain, per task created)"
    );
}

fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(s.max(0.0))
}

fn part3(out: &mut String, args: &GatewayArgs, one: &[SseRun], many: &[SseRun]) {
    let runs = one.len().max(many.len());
    let _ = writeln!(
        out,
        "\nPart 3: {} SSE subscribers on one gateway (one connection each); {} status + {} FLY events posted per run on POST /api/v1/mesh/{{id}}/events; median of {runs} runs",
        args.subscribers, args.events, args.events
    );
    let _ = writeln!(
        out,
        "{:<40} {:<7} {:>20} {:>8} {:>8} {:>8}",
        "case", "event", "delivered/expected", "p50 ms", "p99 ms", "max ms"
    );
    let cases = [
        (
            format!("(a) {} subscribers of 1 task", args.subscribers),
            one,
        ),
        (
            format!("(b) 1 subscriber on each of {} tasks", args.subscribers),
            many,
        ),
    ];
    for (name, runs) in &cases {
        if runs.is_empty() {
            continue;
        }
        for (i, (event, pick)) in [
            (
                "status",
                (|r: &SseRun| r.client.status) as fn(&SseRun) -> Delivery,
            ),
            ("fly", |r: &SseRun| r.client.fly),
        ]
        .into_iter()
        .enumerate()
        {
            let delivered: usize = runs.iter().map(|r| pick(r).delivered).sum();
            let expected: usize = runs.iter().map(|r| pick(r).expected).sum();
            let _ = writeln!(
                out,
                "{:<40} {:<7} {:>20} {:>8.3} {:>8.3} {:>8.3}",
                if i == 0 { name.as_str() } else { "" },
                event,
                format!("{delivered}/{expected}"),
                med(runs, |r| pick(r).p50_ms),
                med(runs, |r| pick(r).p99_ms),
                med(runs, |r| pick(r).max_ms),
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>10} {:>10} {:>9} {:>10} {:>9} {:>11} {:>7} {:>14} {:>7}",
        "troupe process",
        "RSS before",
        "RSS half",
        "RSS open",
        "KiB/sub",
        "KiB/sub 2h",
        "threads",
        "RSS closed",
        "open s",
        "CPU µs/deliv.",
        "errors"
    );
    for (name, runs) in &cases {
        if runs.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<40} {:>6.1} MiB {:>6.1} MiB {:>6.1} MiB {:>9.1} {:>10.1} {:>9} {:>7.1} MiB {:>7.2} {:>14.1} {:>7}",
            name,
            med(runs, |r| mib(r.rss_before_kib)),
            med(runs, |r| mib(r.rss_half_kib)),
            med(runs, |r| mib(r.rss_open_kib)),
            med(runs, kib_per_sub),
            med(runs, kib_per_sub_second_half),
            format!(
                "{:.0}->{:.0}",
                med(runs, |r| u64_f(r.threads_before)),
                med(runs, |r| u64_f(r.threads_open))
            ),
            med(runs, |r| mib(r.rss_after_kib)),
            med(runs, |r| r.client.open_s),
            med(runs, cpu_us_per_delivery),
            runs.iter().map(sse_errors).sum::<usize>(),
        );
    }
    let _ = writeln!(
        out,
        "(latency: from just before the event's POST to the chunk's arrival at each subscriber, each round waiting for every delivery; (b) posts {} at a time. \
         KiB/sub: (RSS open - RSS before) / subscribers; KiB/sub 2h: (RSS open - RSS half) / second half's subscribers, the marginal cost without one-time growth. \
         threads: of the troupe process, before and with all open. CPU: troupe process while posting and delivering, per delivery, the POSTs' handling included)",
        args.clients
    );
}

#[allow(clippy::cast_precision_loss)]
fn u64_f(v: u64) -> f64 {
    v as f64
}

fn kib_per_sub(r: &SseRun) -> f64 {
    let grown = u64_f(r.rss_open_kib) - u64_f(r.rss_before_kib);
    grown / f(r.client.subscribers.max(1))
}

fn kib_per_sub_second_half(r: &SseRun) -> f64 {
    let n = r.client.subscribers - r.client.subscribers / 2;
    (u64_f(r.rss_open_kib) - u64_f(r.rss_half_kib)) / f(n.max(1))
}

fn cpu_us_per_delivery(r: &SseRun) -> f64 {
    let n = r.client.status.delivered + r.client.fly.delivered;
    per_thousand(r.cpu_post, n) * 1000.0
}

fn sse_errors(r: &SseRun) -> usize {
    r.client.post_errors
        + r.client.stream_errors
        + (r.client.status.expected - r.client.status.delivered.min(r.client.status.expected))
        + (r.client.fly.expected - r.client.fly.delivered.min(r.client.fly.expected))
}

/// Part 1's table.
pub fn part1_text(args: &GatewayArgs, runs: &[SeqRun]) -> String {
    let mut out = String::new();
    part1(&mut out, args, runs);
    out
}

/// Part 2's table.
pub fn part2_text(args: &GatewayArgs, runs: &[LoadRun]) -> String {
    let mut out = String::new();
    part2(&mut out, args, runs);
    out
}

/// Part 3's tables and the first error of any part (printed last).
pub fn part3_text(args: &GatewayArgs, r: &GatewayResults) -> String {
    let mut out = String::new();
    if !r.sse_one.is_empty() || !r.sse_many.is_empty() {
        part3(&mut out, args, &r.sse_one, &r.sse_many);
    }
    if let Some(e) = gateway::first_failure(r) {
        let _ = writeln!(out, "first error: {e}");
    }
    out
}

fn phase_json(p: &PhaseResult) -> Value {
    json!({
        "tasks": p.pipelines,
        "wall_s": p.wall.as_secs_f64(),
        "p50_ms": ms(p.latency.p50),
        "p99_ms": ms(p.latency.p99),
        "mean_ms": ms(p.latency.mean),
        "max_ms": ms(p.latency.max),
        "cpu_s_per_1k_troupe": per_thousand(p.cpu_troupe, p.pipelines),
        "cpu_s_per_1k_python": per_thousand(p.cpu_python, p.pipelines),
    })
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "expected": d.expected,
        "delivered": d.delivered,
        "p50_ms": d.p50_ms,
        "p99_ms": d.p99_ms,
        "max_ms": d.max_ms,
    })
}

fn sse_json(runs: &[SseRun]) -> Value {
    json!({
        "runs": runs.iter().map(|r| json!({
            "subscribers": r.client.subscribers,
            "tasks": r.client.tasks,
            "open_s": r.client.open_s,
            "status": delivery_json(&r.client.status),
            "fly": delivery_json(&r.client.fly),
            "errors": sse_errors(r),
            "rss_before_kib": r.rss_before_kib,
            "rss_half_kib": r.rss_half_kib,
            "rss_open_kib": r.rss_open_kib,
            "threads_before": r.threads_before,
            "threads_open": r.threads_open,
            "kib_per_subscriber_second_half": kib_per_sub_second_half(r),
            "rss_after_kib": r.rss_after_kib,
            "kib_per_subscriber": kib_per_sub(r),
            "cpu_us_per_delivery": cpu_us_per_delivery(r),
        })).collect::<Vec<_>>(),
        "median": {
            "status_p50_ms": med(runs, |r| r.client.status.p50_ms),
            "status_p99_ms": med(runs, |r| r.client.status.p99_ms),
            "status_max_ms": med(runs, |r| r.client.status.max_ms),
            "fly_p50_ms": med(runs, |r| r.client.fly.p50_ms),
            "fly_p99_ms": med(runs, |r| r.client.fly.p99_ms),
            "fly_max_ms": med(runs, |r| r.client.fly.max_ms),
            "kib_per_subscriber": med(runs, kib_per_sub),
            "kib_per_subscriber_second_half": med(runs, kib_per_sub_second_half),
        },
        "errors": runs.iter().map(sse_errors).sum::<usize>(),
    })
}

/// The machine-readable report.
pub fn json(args: &GatewayArgs, m: &Machine, command: &str, r: &GatewayResults) -> Value {
    let d = seq_row(&r.seq, |s| &s.direct);
    let g = seq_row(&r.seq, |s| &s.gateway);
    let gf = seq_row(&r.seq, |s| &s.gateway_fresh);
    json!({
        "command": command,
        "machine": {
            "cpus": m.cpus,
            "load_average": m.load.map(|(a, b, c)| vec![a, b, c]),
            "python": m.python,
            "tokio_workers": args.workers,
        },
        "store": match args.store {
            gateway::Store::Sqlite => "sqlite",
            gateway::Store::Memory => "memory",
        },
        "overhead": {
            "runs": r.seq.iter().map(|s| json!({
                "direct": phase_json(&s.direct),
                "gateway": phase_json(&s.gateway),
                "gateway_fresh": phase_json(&s.gateway_fresh),
            })).collect::<Vec<_>>(),
            "median": {
                "direct_p50_ms": d.p50, "direct_p99_ms": d.p99,
                "gateway_p50_ms": g.p50, "gateway_p99_ms": g.p99,
                "overhead_p50_ms": g.p50 - d.p50, "overhead_p99_ms": g.p99 - d.p99,
                "direct_cpu_s_per_1k_troupe": d.troupe,
                "gateway_cpu_s_per_1k_troupe": g.troupe,
                "overhead_cpu_s_per_1k_troupe": g.troupe - d.troupe,
                "gateway_fresh_p50_ms": gf.p50, "gateway_fresh_p99_ms": gf.p99,
                "overhead_fresh_p50_ms": gf.p50 - d.p50, "overhead_fresh_p99_ms": gf.p99 - d.p99,
                "gateway_fresh_cpu_s_per_1k_troupe": gf.troupe,
            },
        },
        "creates": {
            "runs": r.load.iter().map(|l| json!({
                "created": l.client.created,
                "creates_per_s": rate(l.client.created, secs(l.client.wall_s)),
                "completed": l.completed,
                "completions_per_s": rate(l.completed, l.window),
                "errors": load_errors(l),
                "drain_s": l.drain.as_secs_f64(),
                "cpu_s_per_1k_troupe": gateway::load_cpu_per_1k(l),
            })).collect::<Vec<_>>(),
            "median": {
                "creates_per_s": med(&r.load, |l| rate(l.client.created, secs(l.client.wall_s))),
                "completions_per_s": med(&r.load, |l| rate(l.completed, l.window)),
            },
            "errors": r.load.iter().map(load_errors).sum::<usize>(),
        },
        "sse_one_task": sse_json(&r.sse_one),
        "sse_many_tasks": sse_json(&r.sse_many),
        "first_error": gateway::first_failure(r),
    })
}
