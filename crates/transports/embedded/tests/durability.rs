//! Restart, recovery and segment management of the embedded transport.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use troupe_transport::{QueueDepth, Transport};
use troupe_transport_embedded::{EmbeddedError, EmbeddedOptions, EmbeddedTransport, FsyncPolicy};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

async fn drain(t: &EmbeddedTransport, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(d) = t.try_receive(queue).unwrap() {
        out.push(String::from_utf8(d.body.to_vec()).unwrap());
        t.ack(&d).await.unwrap();
    }
    out
}

#[tokio::test]
async fn reopen_restores_unacked_and_forgets_acked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        for i in 0..5 {
            t.send("q", b(&format!("m{i}"))).await.unwrap();
        }
        t.send("other", b("o")).await.unwrap();
        let d0 = t.receive("q").await.unwrap();
        t.ack(&d0).await.unwrap();
        let _in_flight = t.receive("q").await.unwrap();
        let d2 = t.receive("q").await.unwrap();
        t.requeue(&d2).await.unwrap();
        // Dropped without close: Drop flushes the pending ack.
    }
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(
        t.depth("q").await.unwrap(),
        QueueDepth {
            ready: 4,
            delayed: 0,
            in_flight: 0
        }
    );
    // The in-flight message is back, in its original log position; delivery counts
    // restart (they are kept in memory only).
    let d = t.receive("q").await.unwrap();
    assert_eq!(d.body, b("m1"));
    assert_eq!(d.delivery_count, Some(1));
    t.ack(&d).await.unwrap();
    assert_eq!(drain(&t, "q").await, vec!["m2", "m3", "m4"]);
    assert_eq!(drain(&t, "other").await, vec!["o"]);
    t.close().await;
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert!(t.try_receive("q").unwrap().is_none());
    assert!(t.try_receive("other").unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn delayed_messages_keep_their_due_time_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        t.send_with_delay("q", b("later"), Duration::from_secs(3600))
            .await
            .unwrap();
        t.send_with_delay("q", b("soon"), Duration::from_millis(30))
            .await
            .unwrap();
        t.close().await;
    }
    // Real time passes while the process is "down": the short delay expires meanwhile.
    std::thread::sleep(Duration::from_millis(60));
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(
        t.depth("q").await.unwrap(),
        QueueDepth {
            ready: 1,
            delayed: 1,
            in_flight: 0
        }
    );
    let soon = t.receive("q").await.unwrap();
    assert_eq!(soon.body, b("soon"));
    t.ack(&soon).await.unwrap();
    let start = tokio::time::Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(3500), t.receive("q"))
            .await
            .is_err()
    );
    let d = t.receive("q").await.unwrap();
    assert_eq!(d.body, b("later"));
    assert!(start.elapsed() >= Duration::from_secs(3590));
}

#[tokio::test]
async fn torn_tail_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        for i in 0..3 {
            t.send("q", b(&format!("m{i}"))).await.unwrap();
        }
    }
    let last = segments(dir.path()).pop().unwrap();
    let good_len = std::fs::metadata(&last).unwrap().len();
    {
        // A crash in the middle of writing a record: header promises 100 bytes, 5 arrive.
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    }
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        assert_eq!(std::fs::metadata(&last).unwrap().len(), good_len);
        let d = t.receive("q").await.unwrap();
        assert_eq!(d.body, b("m0"));
        t.requeue(&d).await.unwrap();
        t.send("q", b("m3")).await.unwrap();
    }
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(drain(&t, "q").await, vec!["m0", "m1", "m2", "m3"]);
}

#[tokio::test]
async fn corrupt_tail_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        t.send("q", b("kept")).await.unwrap();
        t.send("q", b("damaged")).await.unwrap();
    }
    let last = segments(dir.path()).pop().unwrap();
    let mut data = std::fs::read(&last).unwrap();
    let n = data.len();
    data[n - 1] ^= 0xff; // flips a byte of the last body: checksum mismatch
    std::fs::write(&last, &data).unwrap();
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(drain(&t, "q").await, vec!["kept"]);
}

#[tokio::test]
async fn fully_acked_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_size: 4096,
        ..EmbeddedOptions::default()
    };
    let body = Bytes::from(vec![b'x'; 500]);
    {
        let t = EmbeddedTransport::open(dir.path(), opts.clone()).unwrap();
        for _ in 0..60 {
            t.send("q", body.clone()).await.unwrap();
        }
        let before = segments(dir.path()).len();
        assert!(before >= 6, "60 x 500 B over 4 KiB segments: {before}");
        // Acking the oldest messages frees the oldest segments only.
        for _ in 0..30 {
            let d = t.receive("q").await.unwrap();
            t.ack(&d).await.unwrap();
        }
        t.flush().await.unwrap();
        let mid = segments(dir.path()).len();
        assert!(mid < before && mid > 1, "before {before}, after half {mid}");
        while let Some(d) = t.try_receive("q").unwrap() {
            t.ack(&d).await.unwrap();
        }
        t.close().await;
        // Only segments that still hold ack records for the newest messages remain.
        assert!(segments(dir.path()).len() <= 2);
    }
    {
        let t = EmbeddedTransport::open(dir.path(), opts.clone()).unwrap();
        assert!(t.try_receive("q").unwrap().is_none());
        // Everything before the new active segment was garbage.
        assert_eq!(segments(dir.path()).len(), 1);
    }
}

#[tokio::test]
async fn ack_records_in_newer_segments_survive_gc() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_size: 2048,
        ..EmbeddedOptions::default()
    };
    let body = |i: usize| Bytes::from(format!("{i:04}-{}", "y".repeat(300)));
    {
        let t = EmbeddedTransport::open(dir.path(), opts.clone()).unwrap();
        for i in 0..40 {
            t.send("q", body(i)).await.unwrap();
        }
        // Ack the even messages; their ack records land in later segments while every old
        // segment still holds odd (live) messages.
        for i in 0..40 {
            let d = t.receive("q").await.unwrap();
            if i % 2 == 0 {
                t.ack(&d).await.unwrap();
            }
            // Interleave sends so acks are spread over several new segments.
            t.send("filler", body(i)).await.unwrap();
        }
        drain(&t, "filler").await;
    }
    for round in 0..2 {
        let t = EmbeddedTransport::open(dir.path(), opts.clone()).unwrap();
        assert!(t.try_receive("filler").unwrap().is_none(), "round {round}");
        let mut odd = Vec::new();
        while let Some(d) = t.try_receive("q").unwrap() {
            odd.push(String::from_utf8(d.body[..4].to_vec()).unwrap());
        }
        let want: Vec<String> = (0..40)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("{i:04}"))
            .collect();
        assert_eq!(odd, want, "round {round}");
    }
}

#[tokio::test]
async fn second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let err = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap_err();
    assert!(matches!(err, EmbeddedError::Locked(_)), "{err}");
    drop(t);
    EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
}

#[tokio::test]
async fn foreign_segment_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0000000000000001.seg"),
        b"not a segment at all",
    )
    .unwrap();
    let err = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap_err();
    assert!(matches!(err, EmbeddedError::BadSegment { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_always_and_interval_persist() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(20)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = EmbeddedOptions {
            fsync: policy,
            ..EmbeddedOptions::default()
        };
        {
            let t = std::sync::Arc::new(EmbeddedTransport::open(dir.path(), opts.clone()).unwrap());
            let mut tasks = Vec::new();
            for w in 0..4 {
                let t = t.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..50 {
                        t.send("q", b(&format!("{w}-{i}"))).await.unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let d = t.receive("q").await.unwrap();
            t.ack(&d).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = EmbeddedTransport::open(dir.path(), opts).unwrap();
        assert_eq!(t.depth("q").await.unwrap().ready, 199, "{policy:?}");
    }
}

#[tokio::test]
async fn lone_acks_are_written_soon_without_further_sends() {
    let dir = tempfile::tempdir().unwrap();
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    t.send("q", b("m")).await.unwrap();
    let active = segments(dir.path()).pop().unwrap();
    let before = std::fs::metadata(&active).unwrap().len();
    let d = t.receive("q").await.unwrap();
    t.ack(&d).await.unwrap();
    // The ack record (8-byte frame header + type + count + one seq) is written by the log
    // thread after `ack_flush_delay` (5 ms), without a close or another send.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = std::fs::metadata(&active).unwrap().len();
        if now == before + 8 + 1 + 4 + 8 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ack not written: {before} -> {now}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `delete_queue` drops ready, delayed and in-flight messages of one queue for good
/// (its ack records are on disk when it returns), and leaves other queues alone.
#[tokio::test]
async fn delete_queue_removes_its_messages_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        t.create_queue("q").await.unwrap();
        for i in 0..3 {
            t.send("q", b(&format!("m{i}"))).await.unwrap();
        }
        t.send_with_delay("q", b("later"), Duration::from_secs(3600))
            .await
            .unwrap();
        t.send("other", b("o")).await.unwrap();
        let held = t.receive("q").await.unwrap();
        t.delete_queue("q").await.unwrap();
        assert_eq!(t.depth("q").await.unwrap(), QueueDepth::default());
        assert!(
            t.ack(&held).await.is_err(),
            "a delivery of a deleted queue is unknown"
        );
        t.delete_queue("q").await.unwrap();
        t.delete_queue("never-used").await.unwrap();
        t.send("q", b("fresh")).await.unwrap();
    }
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(drain(&t, "q").await, vec!["fresh"]);
    assert_eq!(t.depth("q").await.unwrap(), QueueDepth::default());
    assert_eq!(drain(&t, "other").await, vec!["o"]);
    t.close().await;
}
