//! Throughput of the embedded queue: concurrent producers and consumers on one queue,
//! each message sent, received and acked.
//!
//! ```text
//! cargo run --release -p troupe-transport-embedded --example embedded_bench -- \
//!     [messages] [body-bytes] [fsync: never|always|interval] [configs e.g. 1x1,4x4,8x8]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use troupe_transport::Transport;
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport, FsyncPolicy};

async fn run(producers: u64, consumers: u64, total: u64, size: usize, fsync: FsyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        fsync,
        ..EmbeddedOptions::default()
    };
    let t = Arc::new(EmbeddedTransport::open(dir.path(), opts).unwrap());
    let body = Bytes::from(vec![b'x'; size]);
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..consumers {
        let t = t.clone();
        let received = received.clone();
        // Consumers share the work: each stops once the shared count reaches the total.
        let quota = total / consumers + u64::from(c < total % consumers);
        tasks.push(tokio::spawn(async move {
            for _ in 0..quota {
                let d = t.receive("bench").await.unwrap();
                t.ack(&d).await.unwrap();
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut send_done = Vec::new();
    for p in 0..producers {
        let t = t.clone();
        let body = body.clone();
        let n = total / producers + u64::from(p < total % producers);
        send_done.push(tokio::spawn(async move {
            for _ in 0..n {
                t.send("bench", body.clone()).await.unwrap();
            }
            Instant::now()
        }));
    }
    let mut sends_end = start;
    for h in send_done {
        sends_end = sends_end.max(h.await.unwrap());
    }
    for h in tasks {
        h.await.unwrap();
    }
    let elapsed = start.elapsed();
    let send_elapsed = sends_end - start;
    assert_eq!(received.load(Ordering::Relaxed), total);
    let depth = t.depth("bench").await.unwrap();
    assert_eq!(depth.backlog() + depth.delayed, 0);
    t.close().await;
    println!(
        "{producers} producers x {consumers} consumers, {total} msgs of {size} B, fsync {fsync:?}: \
         {:>9.0} msgs/s send+receive+ack ({:.2} µs/msg); sends alone finished at {:>9.0} msgs/s",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / total as f64,
        total as f64 / send_elapsed.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let size: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(256);
    let fsync = match args.get(3).map(String::as_str) {
        Some("always") => FsyncPolicy::Always,
        Some("interval") => FsyncPolicy::Interval(Duration::from_millis(100)),
        _ => FsyncPolicy::Never,
    };
    let configs: Vec<(u64, u64)> = args
        .get(4)
        .map(String::as_str)
        .unwrap_or("1x1,2x2,4x4,8x8")
        .split(',')
        .filter_map(|c| {
            let (p, c) = c.split_once('x')?;
            Some((p.parse().ok()?, c.parse().ok()?))
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (p, c) in configs {
            run(p, c, total, size, fsync).await;
        }
    });
}
