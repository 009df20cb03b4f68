//! Damaged segment files: recovery reads around the damage, keeps every intact record
//! and copies the damaged bytes to `quarantine/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use troupe_transport::Transport;
use troupe_transport_conformance::logs::Logs;
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

fn quarantined(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir.join("quarantine")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
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

fn body(i: usize) -> String {
    format!("{{\"id\":\"msg-{i:04}\",\"payload\":{{\"n\":{i}}}}}")
}

/// The case: 200 records in the newest segment, one byte flipped in the middle
/// of the file. Before: the reader stopped at the damage and truncated the file (100 of
/// 200 kept). Now: 199 of 200, and the damaged record's bytes are in quarantine.
#[tokio::test]
async fn one_flipped_byte_loses_one_record_of_200() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        for i in 0..200 {
            t.send(QUEUE, Bytes::from(body(i))).await.unwrap();
        }
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let (start, end) = frame_of(&data, &body(100)).unwrap();
    let flip = start + (end - start) / 2;
    data[flip] ^= 0x20;
    std::fs::write(&seg, &data).unwrap();
    let len_before = data.len() as u64;

    let (logs, _guard) = Logs::capture();
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let got = bodies(&t);
    assert_eq!(
        got.len(),
        199,
        "records saved from the damaged segment: {} of 200",
        got.len()
    );
    let expected: Vec<String> = (0..200).filter(|&i| i != 100).map(body).collect();
    assert_eq!(got, expected);

    // The evidence is kept: the segment is not truncated, the damaged record is copied.
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len_before);
    let q = quarantined(dir.path());
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(std::fs::read(&q[0]).unwrap(), &data[start..end]);
    let text = logs.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains(&format!("offset={start}")), "{text}");
    assert!(text.contains(&format!("bytes={}", end - start)), "{text}");
    assert!(text.contains("quarantine"), "{text}");
    assert!(!text.contains("torn tail"), "{text}");
    drop(t);

    // A second open reads around the same damage without copying it again.
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(bodies(&t).len(), 199);
    assert_eq!(quarantined(dir.path()).len(), 1);
}

/// A torn write at the end is still truncated and not quarantined: it never held a
/// message whose send had returned.
#[tokio::test]
async fn torn_tail_is_not_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
        for i in 0..3 {
            t.send(QUEUE, Bytes::from(body(i))).await.unwrap();
        }
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let good = data.len();
    data.extend_from_slice(&500u32.to_le_bytes());
    data.extend_from_slice(&[7u8; 40]);
    std::fs::write(&seg, &data).unwrap();
    let t = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(bodies(&t).len(), 3);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good as u64);
    assert!(quarantined(dir.path()).is_empty());
}
