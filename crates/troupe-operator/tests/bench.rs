//! Benchmark (ignored; run by hand, figures in docs/benchmarks.md): N AsyncActors (200)
//! created at once against a real kube-apiserver and RabbitMQ, reconciled by the
//! `troupe operator` binary as a child process. Prints, per run and as the median of
//! the runs, the time from the first create until every actor's children are applied
//! and its status written (condition `ChildrenApplied` True, N Deployments), and the
//! operator's peak RSS (VmHWM of /proc/PID/status).
//!
//! ```text
//! cargo build --release -p troupe-cli
//! TROUPE_BIN=$CARGO_TARGET_DIR/release/troupe \
//!   cargo test -p troupe-operator --test bench -- --ignored --nocapture
//! ```
//! `TROUPE_BENCH_ACTORS` (200) and `TROUPE_BENCH_RUNS` (3) change the size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use troupe_resource::AsyncActor;
use troupe_transport_conformance::server::{self, Server};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmHWM` (peak RSS) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `GET /metrics` over a plain TCP stream.
async fn metrics_text(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by hand with TROUPE_BIN set"]
async fn many_actors_reconciled() {
    let Some(client) = client().await else { return };
    let Ok(bin) = std::env::var("TROUPE_BIN") else {
        panic!("set TROUPE_BIN to a troupe binary (cargo build --release -p troupe-cli)");
    };
    let kubeconfig = troupe_transport_conformance::kube::kubeconfig().unwrap();
    let Some(mq) = Server::start(&server::RABBITMQ, &[]) else {
        return;
    };
    let n = env_number("TROUPE_BENCH_ACTORS", 200);
    let runs = env_number("TROUPE_BENCH_RUNS", 3);
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for run in 1..=runs {
        let ns = namespace(&client, "op-bench").await;
        transport_secret(&client, &ns, &[("ASYA_RABBITMQ_URL", mq.url.as_str())]).await;
        let metrics_addr = format!("127.0.0.1:{}", server::free_port());
        let mut child = Command::new(&bin)
            .args([
                "operator",
                "--namespace",
                &ns,
                "--metrics-addr",
                &metrics_addr,
            ])
            .arg("--no-leader-election")
            .env("KUBECONFIG", kubeconfig)
            .env("ASYA_TRANSPORT", "rabbitmq")
            .env("ASYA_RABBITMQ_URL", &mq.url)
            .env(
                "TROUPE_LOG_LEVEL",
                std::env::var("TROUPE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Let it start watching (an empty namespace), so the figure is reconciling only.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let actors: Api<AsyncActor> = Api::namespaced(client.clone(), &ns);
        let started = Instant::now();
        futures::stream::iter(0..n)
            .map(|i| {
                let actors = actors.clone();
                async move {
                    let name = format!("actor-{i}");
                    let spec =
                        serde_json::json!({"actor": name, "image": "acme/a:1", "handler": "m.f"});
                    actors
                        .create(
                            &PostParams::default(),
                            &actor(&name, serde_json::json!({}), spec),
                        )
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        let created = started.elapsed();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        eventually(
            "every actor applied and its status written",
            Duration::from_secs(600),
            || async {
                let list = actors.list(&ListParams::default()).await.ok()?;
                let done = list
                    .items
                    .iter()
                    .filter(|a| {
                        a.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.type_ == "ChildrenApplied" && c.status == "True")
                        })
                    })
                    .count();
                (done == n).then_some(())
            },
        )
        .await;
        let took = started.elapsed();
        let deployed = deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        assert_eq!(deployed, n);
        let kib = peak_rss_kib(child.id());
        let text = metrics_text(&metrics_addr).await;
        let pick = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        println!(
            "run {run}: {} reconciles taking {} s in all",
            pick("troupe_operator_reconcile_duration_seconds_count"),
            pick("troupe_operator_reconcile_duration_seconds_sum"),
        );
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "run {run}: {n} AsyncActors created in {:.2} s, all applied with status in {:.2} s; operator peak RSS {:.1} MiB",
            created.as_secs_f64(),
            took.as_secs_f64(),
            kib as f64 / 1024.0
        );
        times.push(took.as_secs_f64());
        rss.push(kib);
    }
    times.sort_by(f64::total_cmp);
    rss.sort_unstable();
    println!(
        "median of {runs}: {n} actors reconciled in {:.2} s; operator peak RSS {:.1} MiB",
        times[times.len() / 2],
        rss[rss.len() / 2] as f64 / 1024.0
    );
}
