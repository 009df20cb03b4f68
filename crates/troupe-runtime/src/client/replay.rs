//! A recorded runtime reply decoded without I/O: the same head parser, dechunker and
//! SSE parser as a live call, with each `read` replaced by the next recorded chunk.
//! The fuzz target `runtime_response` (in `fuzz/`) drives this to check that no reply
//! panics the client and that the events do not depend on how the bytes were split.

use bytes::{Buf, BytesMut};

use super::{parse_head, BodyState, Dechunker, Framing, Head, RuntimeEvent, SseItem, SseParser};

/// What a call made of the recorded chunks: its events in order, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// Events delivered before the end.
    pub events: Vec<RuntimeEvent>,
    /// `Ok` if the call ended normally, else the error the client reports.
    pub end: Result<(), String>,
}

/// Decodes the reply made of `chunks` (each one `read`; the connection closes after
/// the last), as `RuntimeClient::invoke` followed by `Invocation::next` until the end.
pub fn replay(chunks: &[&[u8]]) -> Replay {
    let mut events = Vec::new();
    let mut reader = Reader {
        chunks: chunks.iter(),
        conn: BytesMut::new(),
    };
    let end = run(&mut reader, &mut events);
    Replay { events, end }
}

struct Reader<'a> {
    chunks: std::slice::Iter<'a, &'a [u8]>,
    /// What the live client keeps in `Conn::buf`.
    conn: BytesMut,
}

impl Reader<'_> {
    /// One `read` into `conn`; `false` at EOF.
    fn read_more(&mut self) -> bool {
        match self.chunks.next() {
            Some(c) => {
                self.conn.extend_from_slice(c);
                true
            }
            None => false,
        }
    }
}

fn run(r: &mut Reader<'_>, events: &mut Vec<RuntimeEvent>) -> Result<(), String> {
    let head = loop {
        if let Some((head, used)) = parse_head(&r.conn)? {
            r.conn.advance(used);
            break head;
        }
        let got_nothing = r.conn.is_empty();
        if !r.read_more() {
            return Err(if got_nothing {
                "connection closed before any response byte".to_owned()
            } else {
                "connection closed inside the response head".to_owned()
            });
        }
    };
    match head.status {
        204 => events.push(RuntimeEvent::NoContent),
        200 if head.sse => return sse(r, &head, events),
        200 => events.push(RuntimeEvent::FramesJson(whole_body(r, &head)?.freeze())),
        400 | 500 => events.push(RuntimeEvent::Error {
            status: head.status,
            body: whole_body(r, &head)?.freeze(),
        }),
        other => return Err(format!("unexpected HTTP status {other} for POST /invoke")),
    }
    Ok(())
}

/// `RuntimeClient::read_whole_body`.
fn whole_body(r: &mut Reader<'_>, head: &Head) -> Result<BytesMut, String> {
    match head.framing {
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| format!("Content-Length {n} too large"))?;
            while r.conn.len() < n {
                if !r.read_more() {
                    return Err(format!(
                        "connection closed after {} of {n} body bytes",
                        r.conn.len()
                    ));
                }
            }
            Ok(r.conn.split_to(n))
        }
        Framing::Close => {
            while r.read_more() {}
            Ok(r.conn.split())
        }
        Framing::Chunked => {
            let mut out = BytesMut::new();
            let mut dechunker = Dechunker::default();
            loop {
                dechunker.decode(&mut r.conn, &mut out)?;
                if dechunker.is_done() {
                    return Ok(out);
                }
                if !r.read_more() {
                    return Err("connection closed inside a chunked body".to_owned());
                }
            }
        }
    }
}

/// `start_invoke`'s SSE branch, then `Invocation::next` until the end.
fn sse(r: &mut Reader<'_>, head: &Head, events: &mut Vec<RuntimeEvent>) -> Result<(), String> {
    let (mut body, mut buf) = match head.framing {
        Framing::Length(n) => {
            let take = r.conn.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            (BodyState::Length(n - take as u64), r.conn.split_to(take))
        }
        Framing::Close => (BodyState::Close, r.conn.split()),
        Framing::Chunked => (BodyState::Chunked(Dechunker::default()), BytesMut::new()),
    };
    let mut parser = SseParser::default();
    loop {
        let item = match parser.next_item(&mut buf)? {
            Some(item) => item,
            None => loop {
                if !fill(r, &mut body, &mut buf)? {
                    if parser.done_pending() {
                        break SseItem::Done;
                    }
                    return Err("SSE stream ended before the done event".to_owned());
                }
                if let Some(item) = parser.next_item(&mut buf)? {
                    break item;
                }
            },
        };
        match item {
            SseItem::Event(e) => events.push(e),
            SseItem::Done => return Ok(()),
        }
    }
}

/// `SseState::fill`: appends more decoded body to `buf`; `false` at the end.
fn fill(r: &mut Reader<'_>, body: &mut BodyState, buf: &mut BytesMut) -> Result<bool, String> {
    match body {
        BodyState::Length(0) => Ok(false),
        BodyState::Length(left) => {
            let n = if r.conn.is_empty() {
                // A live read is limited to the body (`take(left)`); the rest stays unread.
                match r.chunks.next() {
                    Some(c) => {
                        let n = c.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        buf.extend_from_slice(&c[..n]);
                        r.conn.extend_from_slice(&c[n..]);
                        n
                    }
                    None => 0,
                }
            } else {
                let n = r
                    .conn
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                buf.extend_from_slice(&r.conn[..n]);
                r.conn.advance(n);
                n
            };
            if n == 0 {
                return Err("connection closed inside the SSE body".to_owned());
            }
            *left -= n as u64;
            Ok(true)
        }
        BodyState::Close => {
            let got = r.read_more();
            buf.extend_from_slice(&r.conn.split());
            Ok(got)
        }
        BodyState::Chunked(dechunker) => loop {
            let before = buf.len();
            let decoded = dechunker.decode(&mut r.conn, buf);
            if buf.len() > before {
                return Ok(true);
            }
            decoded?;
            if dechunker.is_done() {
                return Ok(false);
            }
            if !r.read_more() {
                return Err("connection closed inside a chunked SSE body".to_owned());
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const SSE_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
        Transfer-Encoding: chunked\r\n\r\n";

    /// Found by the `runtime_response` fuzz target: a chunked SSE reply whose bad chunk
    /// line arrived in the same read as a complete event lost that event, while the
    /// same bytes split across two reads delivered it.
    #[test]
    fn events_before_a_chunk_error_do_not_depend_on_the_split() {
        let fuzzed: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
            Transfer-Encoding: chunked\r\n\r\n64;ext=1\r\nevent: upstream\ndata:\n\r\n00er: x\r=1\r\n\
            \"a\",\"attempt\":1,\"max\x01\x00\x00\x00\x00\x00\x00\x05s\":0,\"created_at\":\"2026-01-01T00:00:00Z\n";
        let whole = replay(&[fuzzed]);
        let split = replay(&[&fuzzed[..40], &fuzzed[40..200], &fuzzed[200..]]);
        assert_eq!(whole.events, split.events);
        assert!(whole.end.is_err() && split.end.is_err());

        let mut reply = SSE_CHUNKED.to_vec();
        let event = b"event: upstream\ndata: {\"p\":1}\n\n";
        reply.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        reply.extend_from_slice(event);
        reply.extend_from_slice(b"\r\nzz\r\n");
        let got = replay(&[&reply]);
        assert_eq!(
            got.events,
            vec![RuntimeEvent::Upstream(Bytes::from_static(b"{\"p\":1}"))]
        );
        assert_eq!(got.end, Err("bad chunk size line: \"zz\"".to_owned()));
    }

    #[test]
    fn recorded_replies_decode() {
        let json = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"frames\":[]}";
        assert_eq!(
            replay(&[json]),
            Replay {
                events: vec![RuntimeEvent::FramesJson(Bytes::from_static(
                    b"{\"frames\":[]}"
                ))],
                end: Ok(())
            }
        );
        let none = replay(&[b"HTTP/1.1 204 No Content\r\n\r\n"]);
        assert_eq!(none.events, vec![RuntimeEvent::NoContent]);
        assert_eq!(
            replay(&[]).end,
            Err("connection closed before any response byte".to_owned())
        );
    }
}
