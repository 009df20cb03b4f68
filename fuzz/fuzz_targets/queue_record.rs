//! The embedded queue's record decoder and resync scanner (crates/transports/embedded,
//! record.rs and scan.rs) on arbitrary segment bytes: nothing panics, the pieces tile
//! the file, every record found decodes where it was found, and no record that verifies
//! is hidden inside bytes reported as damaged or torn (the reader resynchronises at the
//! first offset where a record verifies).
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_transport_embedded::fuzzing::{decode_record, scan_segment, Piece, SEGMENT_HEADER_LEN};

fn verifies(data: &[u8], at: usize) -> bool {
    decode_record(&data[at..]).is_some()
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_record(data);
    let pieces = scan_segment(data);
    let mut off = SEGMENT_HEADER_LEN.min(data.len());
    for piece in &pieces {
        match piece {
            Piece::Send { at, len, .. } | Piece::Ack { at, len, .. } => {
                assert_eq!(*at, off, "gap or overlap before a record");
                let (again, used) = decode_record(&data[*at..]).expect("a found record decodes");
                assert_eq!(used, *len);
                match (&again, piece) {
                    (
                        Piece::Send {
                            seq: a, body: b, ..
                        },
                        Piece::Send {
                            seq: c, body: d, ..
                        },
                    ) => {
                        assert_eq!((a, b), (c, d))
                    }
                    (Piece::Ack { seqs: a, .. }, Piece::Ack { seqs: b, .. }) => assert_eq!(a, b),
                    _ => panic!("record kind changed"),
                }
                off = at + len;
            }
            Piece::Damaged { at, len } => {
                assert_eq!(*at, off, "gap or overlap before damage");
                assert!(*len > 0);
                assert!(!verifies(data, *at), "damage starts at a record");
                for p in at + 1..at + len {
                    assert!(
                        !verifies(data, p),
                        "record at {p} hidden in damage at {at}+{len}"
                    );
                }
                off = at + len;
            }
            Piece::Torn { at } => {
                assert_eq!(*at, off, "gap or overlap before a torn tail");
                for p in *at..data.len() {
                    assert!(
                        !verifies(data, p),
                        "record at {p} hidden in a torn tail at {at}"
                    );
                }
                off = data.len();
            }
        }
    }
    assert_eq!(
        off,
        data.len(),
        "the pieces do not reach the end of the file"
    );
});
