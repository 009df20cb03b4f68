//! Test helper for the crash tests, killed with SIGKILL by the test.
//!
//! `embedded-crash-helper <dir> <count> [concurrency]` sends `count` messages to queue
//! `crash` in the store at `dir`, printing `sent <i>` after each send returned, so the
//! test can check that every reported message survived.
//!
//! `embedded-crash-helper <dir> <count> 1 ack` receives and acks `count` messages, printing
//! `acked <i>` after each ack, then prints `paused` and sleeps until killed.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use troupe_transport::Transport;
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: embedded-crash-helper <dir> <count> [concurrency]");
        return std::process::ExitCode::from(2);
    }
    let dir = PathBuf::from(&args[1]);
    let count: u64 = args[2].parse().unwrap_or(0);
    let concurrency: u64 = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(1).max(1);
    let ack_mode = args.get(4).is_some_and(|m| m == "ack");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let t = match EmbeddedTransport::open(&dir, EmbeddedOptions::default()) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                eprintln!("open failed: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        if ack_mode {
            for _ in 0..count {
                let d = match t.receive("crash").await {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("receive failed: {e}");
                        return std::process::ExitCode::from(1);
                    }
                };
                if let Err(e) = t.ack(&d).await {
                    eprintln!("ack failed: {e}");
                    return std::process::ExitCode::from(1);
                }
                if let Ok(mut o) = out.lock() {
                    let _ = writeln!(o, "acked {}", String::from_utf8_lossy(&d.body));
                    let _ = o.flush();
                }
            }
            if let Ok(mut o) = out.lock() {
                let _ = writeln!(o, "paused");
                let _ = o.flush();
            }
            std::future::pending::<()>().await;
        }
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let t = t.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while i < count {
                    let body = Bytes::from(format!("msg-{i}"));
                    if let Err(e) = t.send("crash", body).await {
                        eprintln!("send {i} failed: {e}");
                        return;
                    }
                    // Printed only after send returned: these are the promises to check.
                    if let Ok(mut o) = out.lock() {
                        let _ = writeln!(o, "sent {i}");
                        let _ = o.flush();
                    }
                    i += concurrency;
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        std::process::ExitCode::SUCCESS
    })
}
