//! Real crash test: a helper process sends messages and is killed with SIGKILL mid-way;
//! every message whose send returned (the helper printed it) must be in the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

const TOTAL: u64 = 10_000_000;

/// Runs the helper until it reported `kill_after` sends, kills it, returns what it reported.
fn send_and_kill(dir: &Path, kill_after: usize, concurrency: u32) -> HashSet<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_embedded-crash-helper"))
        .arg(dir)
        .arg(TOTAL.to_string())
        .arg(concurrency.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut sent = HashSet::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        sent.insert(line.strip_prefix("sent ").unwrap().parse::<u64>().unwrap());
        if sent.len() >= kill_after {
            break;
        }
    }
    // Child::kill sends SIGKILL on Unix: no destructor, no flush, no close.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "helper must have been killed mid-way");
    // Lines it printed before dying are promises too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(i) = line.strip_prefix("sent ").and_then(|n| n.parse().ok()) {
            sent.insert(i);
        }
    }
    sent
}

fn stored(dir: &Path) -> HashSet<u64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = EmbeddedTransport::open(dir, EmbeddedOptions::default()).unwrap();
        let mut out = HashSet::new();
        while let Some(d) = t.try_receive("crash").unwrap() {
            let s = std::str::from_utf8(&d.body).unwrap();
            let i: u64 = s.strip_prefix("msg-").unwrap().parse().unwrap();
            assert!(i < TOTAL);
            assert!(out.insert(i), "message {i} stored twice");
        }
        out
    })
}

#[cfg(unix)]
#[test]
fn sigkill_loses_no_message_whose_send_returned() {
    for (kill_after, concurrency) in [(20_000, 4), (1, 1), (5_000, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let sent = send_and_kill(dir.path(), kill_after, concurrency);
        assert!(sent.len() >= kill_after);
        let have = stored(dir.path());
        let missing: Vec<_> = sent.difference(&have).take(10).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged sends lost after SIGKILL, e.g. {missing:?}",
            sent.difference(&have).count(),
            sent.len()
        );
        // Reopening twice must give the same result (recovery is idempotent).
        assert_eq!(stored(dir.path()), have);
    }
}

#[cfg(unix)]
#[test]
fn acks_written_before_sigkill_are_not_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let sent = send_and_kill(dir.path(), 3_000, 2);
    let before = stored(dir.path());
    assert!(sent.is_subset(&before));
    let mut child = Command::new(env!("CARGO_BIN_EXE_embedded-crash-helper"))
        .arg(dir.path())
        .arg("1000")
        .arg("1")
        .arg("ack")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = HashSet::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "paused" {
            break;
        }
        let i: u64 = line.strip_prefix("acked msg-").unwrap().parse().unwrap();
        acked.insert(i);
    }
    assert_eq!(acked.len(), 1000);
    // Acks are written lazily (within `ack_flush_delay`, 5 ms): give the log thread time,
    // then kill without any shutdown.
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let after = stored(dir.path());
    assert!(after.is_disjoint(&acked), "acked messages came back");
    let expected: HashSet<u64> = before.difference(&acked).copied().collect();
    assert_eq!(after, expected);
}
