//! Reading a segment back record by record, resynchronising past damage.
//!
//! ```text
//! body   = (record | damage)* tail?
//! damage = bytes at which no record parses, up to the next offset where a whole
//!          record (frame header, length, CRC, payload grammar) verifies
//! tail   = torn | damage                (no record verifies anywhere after it)
//! torn   = an incomplete frame (its length runs past the end of the file) or zeros:
//!          what a crash in the middle of a write leaves
//! ```
//!
//! The format has no sync marker: after damage the reader tries every following
//! offset and resumes at the first one whose frame verifies (see docs/decisions.md,
//! "Embedded queue"). A CRC-32 match at a wrong offset has a chance of 2⁻³² per
//! candidate that passed the cheap checks below, and candidates are only tried inside
//! damaged bytes, so in practice a resync never invents a record.

use crate::record::{self, Parsed, Record, FRAME_HEADER_LEN, SEND_FIXED_LEN};

/// One piece of a segment, with its absolute offset in the file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A record that verified.
    Record { at: usize, record: Record<'a> },
    /// Bytes that are not records, followed by a record that verifies (or a damaged
    /// tail that is not a torn write).
    Damaged {
        at: usize,
        len: usize,
        reason: &'static str,
    },
    /// A torn write at the end: everything from `at` to the end of the file.
    Torn { at: usize, reason: &'static str },
}

/// Iterates the pieces of `data` (a whole segment file) from `start` (just past the
/// segment header).
pub(crate) fn scan(data: &[u8], start: usize) -> Scan<'_> {
    Scan {
        data,
        off: start.min(data.len()),
    }
}

/// Iterator returned by [`scan`].
pub(crate) struct Scan<'a> {
    data: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Scan<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let at = self.off;
        let rest = &self.data[at..];
        let reason = match record::parse(rest) {
            Parsed::End => return None,
            Parsed::Record(record, used) => {
                self.off += used;
                return Some(Item::Record { at, record });
            }
            Parsed::Torn(reason) => reason,
        };
        match resync(rest, 1) {
            Some(next) => {
                self.off += next;
                Some(Item::Damaged {
                    at,
                    len: next,
                    reason,
                })
            }
            None => {
                self.off = self.data.len();
                if is_torn(rest) {
                    Some(Item::Torn { at, reason })
                } else {
                    Some(Item::Damaged {
                        at,
                        len: rest.len(),
                        reason,
                    })
                }
            }
        }
    }
}

/// Whether `tail` (from a record boundary to the end of the file, with no record
/// after it) is what an interrupted write leaves: a frame that runs past the end, or
/// zeros (a file extended but not yet written when the machine stopped).
fn is_torn(tail: &[u8]) -> bool {
    if tail.len() < FRAME_HEADER_LEN || tail.iter().all(|&b| b == 0) {
        return true;
    }
    let len = u32_at(tail, 0) as usize;
    tail.len() - FRAME_HEADER_LEN < len
}

/// The first offset at or after `from` in `data` where a whole record verifies.
pub(crate) fn resync(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len())
        .find(|&p| plausible(&data[p..]) && matches!(record::parse(&data[p..]), Parsed::Record(..)))
}

/// Cheap checks that rule out almost every offset before a CRC is computed.
fn plausible(b: &[u8]) -> bool {
    if b.len() < FRAME_HEADER_LEN + 5 {
        return false;
    }
    let len = u32_at(b, 0) as usize;
    if len < 5 || len > b.len() - FRAME_HEADER_LEN {
        return false;
    }
    match b[FRAME_HEADER_LEN] {
        record::REC_SEND => len >= SEND_FIXED_LEN,
        record::REC_ACK => {
            let count = u32_at(b, FRAME_HEADER_LEN + 1) as usize;
            count.checked_mul(8).and_then(|n| n.checked_add(5)) == Some(len)
        }
        _ => false,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::record::{append_acks, EncodedSend, SEG_HEADER_LEN};

    /// A segment of `n` sends with bodies `m0`, `m1`, ... and one ack record; returns
    /// the bytes and each send's frame extent.
    fn segment(n: usize) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut buf = record::segment_header(1).to_vec();
        let mut extents = Vec::new();
        for i in 0..n {
            let body = format!("{{\"id\":\"m{i}\",\"payload\":\"{}\"}}", "x".repeat(i % 7));
            let start = buf.len();
            EncodedSend::new(i as u64 + 1, 0, b"q", body.as_bytes()).append(
                &mut buf,
                b"q",
                body.as_bytes(),
            );
            extents.push((start, buf.len()));
            if i == n / 2 {
                append_acks(&mut buf, [1u64].into_iter());
            }
        }
        (buf, extents)
    }

    fn sends(data: &[u8]) -> Vec<u64> {
        scan(data, SEG_HEADER_LEN)
            .filter_map(|it| match it {
                Item::Record {
                    record: Record::Send { seq, .. },
                    ..
                } => Some(seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn clean_segment_is_all_records() {
        let (data, _) = segment(20);
        let items: Vec<Item> = scan(&data, SEG_HEADER_LEN).collect();
        assert_eq!(items.len(), 21);
        assert!(items.iter().all(|i| matches!(i, Item::Record { .. })));
    }

    #[test]
    fn flipped_byte_mid_file_loses_only_its_record() {
        let (mut data, extents) = segment(200);
        let (s, e) = extents[100];
        data[(s + e) / 2] ^= 0x40;
        let got = sends(&data);
        assert_eq!(got.len(), 199);
        assert!(!got.contains(&101));
        let damaged: Vec<(usize, usize)> = scan(&data, SEG_HEADER_LEN)
            .filter_map(|i| match i {
                Item::Damaged { at, len, .. } => Some((at, len)),
                _ => None,
            })
            .collect();
        assert_eq!(damaged, vec![(s, e - s)]);
    }

    #[test]
    fn damaged_length_field_is_not_a_torn_tail() {
        let (mut data, extents) = segment(50);
        let (s, _) = extents[10];
        // A length far past the end used to read as an incomplete (torn) record.
        data[s + 3] = 0x7f;
        assert_eq!(sends(&data).len(), 49);
    }

    #[test]
    fn tails() {
        let (data, extents) = segment(5);
        let (s, e) = extents[4];
        // Cut mid-record: torn.
        let cut = &data[..e - 3];
        let last = scan(cut, SEG_HEADER_LEN).last().unwrap();
        assert_eq!(
            last,
            Item::Torn {
                at: s,
                reason: "incomplete record"
            }
        );
        // Zeros after the last record: torn.
        let mut zeros = data.clone();
        zeros.extend_from_slice(&[0u8; 300]);
        assert!(matches!(
            scan(&zeros, SEG_HEADER_LEN).last().unwrap(),
            Item::Torn { at, .. } if at == data.len()
        ));
        // A complete last record with a bad checksum: damage, not a torn write.
        let mut bad = data.clone();
        bad[e - 1] ^= 1;
        assert_eq!(
            scan(&bad, SEG_HEADER_LEN).last().unwrap(),
            Item::Damaged {
                at: s,
                len: e - s,
                reason: "checksum mismatch"
            }
        );
    }

    proptest! {
        /// Any flips and an optional cut never lose a record whose bytes are intact and
        /// before the cut, never panic, and account for every byte.
        #[test]
        fn damage_never_loses_intact_records(
            n in 1usize..60,
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let (mut data, extents) = segment(n);
            let mut hit = Vec::new();
            for (at, mask) in &flips {
                let p = SEG_HEADER_LEN + at.index(data.len() - SEG_HEADER_LEN);
                data[p] ^= mask;
                hit.push(p);
            }
            let end = cut.map_or(data.len(), |c| SEG_HEADER_LEN + c.index(data.len() - SEG_HEADER_LEN + 1));
            let data = &data[..end];
            let got = sends(data);
            for (i, &(s, e)) in extents.iter().enumerate() {
                let intact = e <= end && !hit.iter().any(|&p| p >= s && p < e);
                if intact {
                    prop_assert!(got.contains(&(i as u64 + 1)), "record {} lost", i);
                }
            }
            // Pieces tile the file with no gap or overlap.
            let mut off = SEG_HEADER_LEN;
            for item in scan(data, SEG_HEADER_LEN) {
                match item {
                    Item::Record { at, .. } => {
                        prop_assert_eq!(at, off);
                        off = at + match record::parse(&data[at..]) {
                            Parsed::Record(_, used) => used,
                            _ => unreachable!(),
                        };
                    }
                    Item::Damaged { at, len, .. } => {
                        prop_assert_eq!(at, off);
                        prop_assert!(len > 0);
                        off = at + len;
                    }
                    Item::Torn { at, .. } => {
                        prop_assert_eq!(at, off);
                        off = data.len();
                    }
                }
            }
            prop_assert_eq!(off, data.len());
        }
    }
}
