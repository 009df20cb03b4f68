//! The segment codec and resync scanner behind a small owned API, for the fuzz targets
//! in `fuzz/` and their seed corpus. Not part of the transport's API: the formats it
//! exposes are those of [`crate`]'s module docs and may change with them.

use crate::record::{self, Parsed, Record, SEG_HEADER_LEN};
use crate::scan::{self, Item};

/// Length of a segment file's header; records start at this offset.
pub const SEGMENT_HEADER_LEN: usize = SEG_HEADER_LEN;

/// One piece of a segment as the recovery reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A send record that verified.
    Send {
        /// Offset of its frame in the file.
        at: usize,
        /// Frame length (header included).
        len: usize,
        /// Sequence number.
        seq: u64,
        /// Due time, ms since the epoch (0 = now).
        due_ms: u64,
        /// Queue name.
        queue: String,
        /// Message body.
        body: Vec<u8>,
    },
    /// An ack record that verified.
    Ack {
        /// Offset of its frame in the file.
        at: usize,
        /// Frame length (header included).
        len: usize,
        /// Acked sequence numbers.
        seqs: Vec<u64>,
    },
    /// Bytes that are not records, followed by a record or a damaged tail.
    Damaged {
        /// Offset.
        at: usize,
        /// Length.
        len: usize,
    },
    /// A torn write from `at` to the end of the file.
    Torn {
        /// Offset.
        at: usize,
    },
}

/// The 16-byte segment header for a segment whose first record has `next_seq`.
pub fn segment_header(next_seq: u64) -> Vec<u8> {
    record::segment_header(next_seq).to_vec()
}

/// Appends a framed send record, exactly as the transport writes one. `queue` must fit
/// in a u16 length and the whole record in a u32 (the transport checks both).
pub fn append_send(buf: &mut Vec<u8>, seq: u64, due_ms: u64, queue: &str, body: &[u8]) {
    record::EncodedSend::new(seq, due_ms, queue.as_bytes(), body).append(
        buf,
        queue.as_bytes(),
        body,
    );
}

/// Appends a framed ack record; `seqs` must not be empty.
pub fn append_acks(buf: &mut Vec<u8>, seqs: &[u64]) {
    record::append_acks(buf, seqs.iter().copied());
}

/// Decodes the record at the start of `data`: `Some((piece, used))` if one verifies.
pub fn decode_record(data: &[u8]) -> Option<(Piece, usize)> {
    match record::parse(data) {
        Parsed::Record(r, used) => Some((piece(0, used, r), used)),
        Parsed::End | Parsed::Torn(_) => None,
    }
}

/// Every piece of a whole segment file (header included), in file order, as the
/// recovery reader walks it.
pub fn scan_segment(data: &[u8]) -> Vec<Piece> {
    scan::scan(data, SEG_HEADER_LEN)
        .map(|item| match item {
            Item::Record { at, record } => {
                let used = match record::parse(&data[at..]) {
                    Parsed::Record(_, used) => used,
                    Parsed::End | Parsed::Torn(_) => 0,
                };
                piece(at, used, record)
            }
            Item::Damaged { at, len, .. } => Piece::Damaged { at, len },
            Item::Torn { at, .. } => Piece::Torn { at },
        })
        .collect()
}

fn piece(at: usize, len: usize, r: Record<'_>) -> Piece {
    match r {
        Record::Send {
            seq,
            due_ms,
            queue,
            body,
        } => Piece::Send {
            at,
            len,
            seq,
            due_ms,
            queue: queue.to_owned(),
            body: body.to_vec(),
        },
        Record::Ack(raw) => Piece::Ack {
            at,
            len,
            seqs: record::ack_seqs(raw).collect(),
        },
    }
}

/// Seed segments for the `queue_record` fuzz target, written by the real encoder.
#[cfg(test)]
fn seed_segments() -> Vec<(&'static str, Vec<u8>)> {
    let body = |i: u64| {
        format!("{{\"id\":\"m{i}\",\"route\":{{\"prev\":[],\"curr\":\"a\",\"next\":[]}},\"payload\":{i}}}")
    };
    let mut clean = segment_header(1);
    for i in 1..=3 {
        append_send(&mut clean, i, 0, "asya-default-a", body(i).as_bytes());
    }
    append_acks(&mut clean, &[1, 3]);
    append_send(&mut clean, 4, 1_767_225_600_000, "asya-default-ключ", b"");
    let mut flipped = clean.clone();
    flipped[SEG_HEADER_LEN + 40] ^= 0x40;
    let mut torn = clean.clone();
    torn.truncate(clean.len() - 5);
    let mut zeros = clean.clone();
    zeros.extend_from_slice(&[0u8; 64]);
    let mut record = Vec::new();
    append_send(&mut record, 9, 0, "q", b"{}");
    vec![
        ("segment-clean", clean),
        ("segment-flipped-byte", flipped),
        ("segment-torn-tail", torn),
        ("segment-zero-tail", zeros),
        ("segment-header-only", segment_header(7)),
        ("record-without-header", record),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The checked-in seed corpus is what the encoder writes today (set
    /// `TROUPE_WRITE_FUZZ_SEEDS=1` to rewrite it after a format change), and the scanner
    /// reads each seed as the recovery reader should.
    #[test]
    fn seed_corpus_is_what_the_encoder_writes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../fuzz/corpus/queue_record");
        for (name, bytes) in seed_segments() {
            let path = dir.join(name);
            if std::env::var_os("TROUPE_WRITE_FUZZ_SEEDS").is_some() {
                std::fs::write(&path, &bytes).unwrap();
            }
            let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(stored, bytes, "{name} differs from what the encoder writes");
        }
        let seeds = seed_segments();
        let sends = |data: &[u8]| {
            scan_segment(data)
                .iter()
                .filter(|p| matches!(p, Piece::Send { .. }))
                .count()
        };
        assert_eq!(sends(&seeds[0].1), 4);
        assert_eq!(scan_segment(&seeds[0].1).len(), 5);
        // The flipped byte costs its own record only.
        assert_eq!(sends(&seeds[1].1), 3);
        assert!(matches!(
            scan_segment(&seeds[2].1).last(),
            Some(Piece::Torn { .. })
        ));
        assert!(matches!(
            scan_segment(&seeds[3].1).last(),
            Some(Piece::Torn { .. })
        ));
        assert!(scan_segment(&seeds[4].1).is_empty());
        let (piece, used) = decode_record(&seeds[5].1).unwrap();
        assert_eq!(used, seeds[5].1.len());
        assert!(matches!(piece, Piece::Send { seq: 9, ref queue, .. } if queue == "q"));
    }
}
