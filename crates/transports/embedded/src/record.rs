//! On-disk format of segment files.
//!
//! ```text
//! segment = header record*
//! header  = "TRPQSEG1" next_seq:u64le                       (16 bytes)
//! record  = len:u32le crc:u32le payload[len]                 (crc = CRC-32 of payload)
//! payload = 0x01 seq:u64le due_ms:u64le qlen:u16le queue body   (send; due_ms 0 = now)
//!         | 0x02 count:u32le seq:u64le*count                      (acks)
//! ```
//! `due_ms` is wall-clock milliseconds since the Unix epoch so that delays survive restarts.
//! Records carry no sync marker: a reader finds the next record after damage by trying
//! each following offset until a frame verifies ([`crate::scan`]).

use crate::crc::Crc32;

/// Magic bytes that open every segment file (format version 1).
pub(crate) const SEG_MAGIC: &[u8; 8] = b"TRPQSEG1";
/// Length of the segment header.
pub(crate) const SEG_HEADER_LEN: usize = 16;
/// Length of the frame header (length + CRC).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Fixed part of a send payload: type, seq, due, queue length.
pub(crate) const SEND_FIXED_LEN: usize = 1 + 8 + 8 + 2;

/// Payload type of a send record.
pub(crate) const REC_SEND: u8 = 1;
/// Payload type of an ack record.
pub(crate) const REC_ACK: u8 = 2;

/// Segment header bytes.
pub(crate) fn segment_header(next_seq: u64) -> [u8; SEG_HEADER_LEN] {
    let mut h = [0u8; SEG_HEADER_LEN];
    h[..8].copy_from_slice(SEG_MAGIC);
    h[8..].copy_from_slice(&next_seq.to_le_bytes());
    h
}

fn send_fixed(seq: u64, due_ms: u64, queue_len: u16) -> [u8; SEND_FIXED_LEN] {
    let mut f = [0u8; SEND_FIXED_LEN];
    f[0] = REC_SEND;
    f[1..9].copy_from_slice(&seq.to_le_bytes());
    f[9..17].copy_from_slice(&due_ms.to_le_bytes());
    f[17..19].copy_from_slice(&queue_len.to_le_bytes());
    f
}

/// A send record prepared outside any lock: the checksum is the expensive part.
pub(crate) struct EncodedSend {
    fixed: [u8; SEND_FIXED_LEN],
    crc: u32,
    len: u32,
}

impl EncodedSend {
    /// Prepares the record; the caller has checked that the sizes fit.
    pub(crate) fn new(seq: u64, due_ms: u64, queue: &[u8], body: &[u8]) -> Self {
        let fixed = send_fixed(seq, due_ms, queue.len() as u16);
        let mut c = Crc32::new();
        c.update(&fixed);
        c.update(queue);
        c.update(body);
        let len = (SEND_FIXED_LEN + queue.len() + body.len()) as u32;
        EncodedSend {
            fixed,
            crc: c.finish(),
            len,
        }
    }

    /// Bytes this record takes in the log.
    pub(crate) fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.len as usize
    }

    /// Appends the framed record to `buf`.
    pub(crate) fn append(&self, buf: &mut Vec<u8>, queue: &[u8], body: &[u8]) {
        buf.reserve(self.frame_len());
        buf.extend_from_slice(&self.len.to_le_bytes());
        buf.extend_from_slice(&self.crc.to_le_bytes());
        buf.extend_from_slice(&self.fixed);
        buf.extend_from_slice(queue);
        buf.extend_from_slice(body);
    }
}

/// Appends one ack record listing `seqs` (must be non-empty).
pub(crate) fn append_acks(buf: &mut Vec<u8>, seqs: impl ExactSizeIterator<Item = u64> + Clone) {
    let count = seqs.len();
    let len = 1 + 4 + 8 * count;
    buf.reserve(FRAME_HEADER_LEN + len);
    let frame_start = buf.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    let payload_start = buf.len();
    buf.push(REC_ACK);
    buf.extend_from_slice(&(count as u32).to_le_bytes());
    for s in seqs {
        buf.extend_from_slice(&s.to_le_bytes());
    }
    let mut c = Crc32::new();
    c.update(&buf[payload_start..]);
    buf[frame_start + 4..frame_start + 8].copy_from_slice(&c.finish().to_le_bytes());
}

/// One decoded record, borrowing from the segment buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// A message was sent.
    Send {
        seq: u64,
        due_ms: u64,
        queue: &'a str,
        body: &'a [u8],
    },
    /// Messages were acked; little-endian u64 sequence numbers.
    Ack(&'a [u8]),
}

/// Result of decoding at one offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// A valid record and the bytes it took.
    Record(Record<'a>, usize),
    /// Clean end of data.
    End,
    /// Incomplete or corrupt record (a torn write after a crash, or damage).
    Torn(&'static str),
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Decodes the record at the start of `data`.
pub(crate) fn parse(data: &[u8]) -> Parsed<'_> {
    if data.is_empty() {
        return Parsed::End;
    }
    if data.len() < FRAME_HEADER_LEN {
        return Parsed::Torn("incomplete frame header");
    }
    let len = u32_at(data, 0) as usize;
    let crc = u32_at(data, 4);
    if len == 0 {
        return Parsed::Torn("zero-length frame");
    }
    if data.len() - FRAME_HEADER_LEN < len {
        return Parsed::Torn("incomplete record");
    }
    let payload = &data[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    let mut c = Crc32::new();
    c.update(payload);
    if c.finish() != crc {
        return Parsed::Torn("checksum mismatch");
    }
    let used = FRAME_HEADER_LEN + len;
    match payload[0] {
        REC_SEND => {
            if payload.len() < SEND_FIXED_LEN {
                return Parsed::Torn("short send record");
            }
            let seq = u64_at(payload, 1);
            let due_ms = u64_at(payload, 9);
            let qlen = u16::from_le_bytes([payload[17], payload[18]]) as usize;
            if payload.len() < SEND_FIXED_LEN + qlen {
                return Parsed::Torn("send record queue name overruns record");
            }
            let Ok(queue) = std::str::from_utf8(&payload[SEND_FIXED_LEN..SEND_FIXED_LEN + qlen])
            else {
                return Parsed::Torn("queue name is not UTF-8");
            };
            let body = &payload[SEND_FIXED_LEN + qlen..];
            Parsed::Record(
                Record::Send {
                    seq,
                    due_ms,
                    queue,
                    body,
                },
                used,
            )
        }
        REC_ACK => {
            if payload.len() < 5 {
                return Parsed::Torn("short ack record");
            }
            let count = u32_at(payload, 1) as usize;
            if payload.len() != 5 + count.saturating_mul(8) {
                return Parsed::Torn("ack record length mismatch");
            }
            Parsed::Record(Record::Ack(&payload[5..]), used)
        }
        _ => Parsed::Torn("unknown record type"),
    }
}

/// Iterates the sequence numbers of an ack record.
pub(crate) fn ack_seqs(raw: &[u8]) -> impl Iterator<Item = u64> + '_ {
    raw.chunks_exact(8).map(|c| u64_at(c, 0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn send_and_ack_round_trip() {
        let mut buf = Vec::new();
        let e = EncodedSend::new(42, 7, b"orders", b"{\"id\":1}");
        e.append(&mut buf, b"orders", b"{\"id\":1}");
        assert_eq!(buf.len(), e.frame_len());
        append_acks(&mut buf, [1u64, 42, 9].into_iter());
        let Parsed::Record(r, n) = parse(&buf) else {
            panic!("expected record")
        };
        assert_eq!(
            r,
            Record::Send {
                seq: 42,
                due_ms: 7,
                queue: "orders",
                body: b"{\"id\":1}"
            }
        );
        let Parsed::Record(Record::Ack(raw), m) = parse(&buf[n..]) else {
            panic!("expected ack")
        };
        assert_eq!(ack_seqs(raw).collect::<Vec<_>>(), vec![1, 42, 9]);
        assert_eq!(parse(&buf[n + m..]), Parsed::End);
    }

    #[test]
    fn torn_and_corrupt_records_are_detected() {
        let mut buf = Vec::new();
        let e = EncodedSend::new(1, 0, b"q", b"hello");
        e.append(&mut buf, b"q", b"hello");
        for cut in 1..buf.len() {
            assert!(matches!(parse(&buf[..cut]), Parsed::Torn(_)), "cut {cut}");
        }
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(parse(&bad), Parsed::Torn("checksum mismatch"));
        assert_eq!(parse(&[0u8; 32]), Parsed::Torn("zero-length frame"));
    }
}
