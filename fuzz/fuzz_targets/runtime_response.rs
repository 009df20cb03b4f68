//! The runtime client's HTTP/1.1 + SSE reader (`troupe_runtime::client`), replayed from
//! recorded bytes: no reply panics it, and the events and the outcome do not depend on
//! how the bytes arrive (one read, or split wherever the input says).
//!
//! Input: `n` (one byte) split points (two bytes each, little-endian), then the reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_runtime::client::replay::replay;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8);
    if rest.len() < 2 * n {
        return;
    }
    let (cuts, reply) = rest.split_at(2 * n);
    let mut points: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (reply.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut from = 0;
    for p in points {
        chunks.push(&reply[from..p]);
        from = p;
    }
    chunks.push(&reply[from..]);
    // An empty read is EOF to a socket reader; a recorded split never makes one.
    chunks.retain(|c| !c.is_empty());

    let whole = replay(&[reply]);
    let split = replay(&chunks);
    assert_eq!(
        (&split.events, split.end.is_ok()),
        (&whole.events, whole.end.is_ok()),
        "the outcome depends on how the reply was split: {:?} vs {:?}",
        split.end,
        whole.end
    );
});
