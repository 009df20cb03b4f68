//! Random damage to segment files (property test): recovery never loses a message whose
//! send record is intact and never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use troupe_transport::Transport;
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

/// Frame header (len, crc) plus the fixed part of a send (type, seq, due, qlen).
const SEND_OVERHEAD: usize = 8 + 1 + 8 + 8 + 2;
const QUEUE: &str = "q";

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Every body still stored in `queue`, taken without acking.
fn bodies(t: &EmbeddedTransport) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(d) = t.try_receive(QUEUE).unwrap() {
        out.push(String::from_utf8_lossy(&d.body).into_owned());
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where the send record of `body` lies in `file`: (frame start, frame end).
fn frame_of(file: &[u8], body: &str) -> Option<(usize, usize)> {
    let at = find(file, body.as_bytes())?;
    Some((at - SEND_OVERHEAD - QUEUE.len(), at + body.len()))
}

/// A unique body of about 180 bytes, so that 20 messages span several 1 KiB segments.
fn body(i: usize) -> String {
    format!(
        "{{\"id\":\"msg-{i:04}\",\"payload\":{{\"n\":{i},\"pad\":\"{}\"}}}}",
        "x".repeat(140)
    )
}

/// What the property test does to the files.
#[derive(Debug, Clone)]
enum Harm {
    /// XOR one byte (never the 8-byte magic: a file that is not a segment is refused).
    Flip {
        seg: prop::sample::Index,
        at: prop::sample::Index,
        mask: u8,
    },
    /// Truncate a segment.
    Cut {
        seg: prop::sample::Index,
        at: prop::sample::Index,
    },
}

fn harm() -> impl Strategy<Value = Harm> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..=255)
            .prop_map(|(seg, at, mask)| Harm::Flip { seg, at, mask }),
        1 => (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(seg, at)| Harm::Cut { seg, at }),
    ]
}

/// Sends `n` messages over several small segments, acks those in `acked`, closes.
async fn fill(dir: &Path, n: usize, acked: &HashSet<usize>) {
    let opts = EmbeddedOptions {
        segment_size: 1024,
        ..EmbeddedOptions::default()
    };
    let t = EmbeddedTransport::open(dir, opts).unwrap();
    for i in 0..n {
        t.send(QUEUE, Bytes::from(body(i))).await.unwrap();
    }
    for i in 0..n {
        let d = t.try_receive(QUEUE).unwrap().unwrap();
        if acked.contains(&i) {
            t.ack(&d).await.unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random flips and cuts at random offsets over several segments never lose a
    /// message whose send record is intact, and never panic.
    #[test]
    fn damage_never_loses_an_undamaged_record(
        n in 20usize..80,
        acked in prop::collection::hash_set(0usize..80, 0..20),
        harms in prop::collection::vec(harm(), 1..8),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(fill(dir.path(), n, &acked));
        let segs = segments(dir.path());
        prop_assert!(segs.len() >= 3, "only {} segments", segs.len());
        let mut files: Vec<Vec<u8>> = segs.iter().map(|p| std::fs::read(p).unwrap()).collect();
        // Where each message's send record is, before any harm.
        let frames: Vec<Option<(usize, usize, usize)>> = (0..n)
            .map(|i| {
                files.iter().enumerate().find_map(|(s, f)| {
                    frame_of(f, &body(i)).map(|(a, b)| (s, a, b))
                })
            })
            .collect();
        let mut flipped: Vec<(usize, usize)> = Vec::new();
        let mut cut_at: Vec<usize> = files.iter().map(Vec::len).collect();
        for h in &harms {
            match h {
                Harm::Flip { seg, at, mask } => {
                    let s = seg.index(files.len());
                    if files[s].len() <= 8 {
                        continue;
                    }
                    let p = 8 + at.index(files[s].len() - 8);
                    files[s][p] ^= mask;
                    flipped.push((s, p));
                }
                Harm::Cut { seg, at } => {
                    let s = seg.index(files.len());
                    let p = at.index(files[s].len() + 1);
                    files[s].truncate(p);
                    cut_at[s] = cut_at[s].min(p);
                }
            }
        }
        for (p, f) in segs.iter().zip(&files) {
            std::fs::write(p, f).unwrap();
        }
        let got: HashSet<String> = rt.block_on(async {
            let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
            let got = bodies(&t).into_iter().collect();
            t.close().await;
            got
        });
        for (i, frame) in frames.iter().enumerate() {
            let Some((s, a, b)) = *frame else { continue };
            let intact = b <= cut_at[s] && !flipped.iter().any(|&(fs, p)| fs == s && p >= a && p < b);
            if intact && !acked.contains(&i) {
                prop_assert!(got.contains(&body(i)), "message {} lost", i);
            }
        }
    }
}
