//! HTTP/1.1 client for the runtime's Unix socket (protocol.md §7).
//!
//! Hand-written rather than hyper-based: this sits on the per-message hot path, so a call
//! on a pooled connection costs one `writev` for the request and usually one `read` for
//! the reply, with buffers kept per connection.

use std::fmt;
use std::io::{self, IoSlice, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

pub mod replay;

/// Longest SSE line accepted (protocol.md §7), terminator excluded.
pub const MAX_SSE_LINE: usize = 16 * 1024 * 1024;
/// Longest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// Idle connections kept beyond this are closed; more would only serve bursts of
/// concurrency the runtime (single-threaded in Asya) cannot use anyway.
const MAX_IDLE: usize = 64;
/// Minimum free space offered to each `read`.
const READ_CHUNK: usize = 8 * 1024;
/// Largest single up-front reservation for a `Content-Length` body, so a bogus length
/// cannot make us allocate gigabytes before any byte arrives.
const MAX_RESERVE: usize = 1 << 20;

const INVOKE_PREFIX: &str =
    "POST /invoke HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n";
const HEALTHZ_PREFIX: &str = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";

/// Why a runtime call failed at the infrastructure level.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeCallError {
    /// Connect or I/O error, a non-HTTP or unparseable reply, or SSE EOF before `done`.
    #[error("runtime unreachable at {socket}: {message}")]
    Unreachable {
        /// Socket path.
        socket: PathBuf,
        /// What happened.
        message: String,
    },
    /// No connection could be made: the request never reached the runtime (it is not
    /// running, or is restarting), so the message is safe to requeue.
    #[error("runtime not reachable at {socket}: {message}")]
    NotDelivered {
        /// Socket path.
        socket: PathBuf,
        /// What happened.
        message: String,
    },
    /// The call exceeded its deadline.
    #[error("runtime call timed out after {0:?}")]
    Timeout(Duration),
    /// Something listens on the socket but does not answer HTTP: most likely an Asya
    /// runtime older than the HTTP protocol (length-prefixed JSON frames).
    #[error("the process at {socket} does not speak HTTP ({message}); an Asya runtime older than 0.5.7 uses a length-prefixed socket protocol that Troupe does not implement: run `troupe runtime` or Asya's current asya_runtime.py instead")]
    NotHttp {
        /// Socket path.
        socket: PathBuf,
        /// What was seen.
        message: String,
        /// It accepted the connection and stayed silent (repeat to be sure); otherwise
        /// it answered bytes that are not HTTP (conclusive).
        silent: bool,
    },
}

/// One event of a runtime call, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// `200 application/json`: the whole body `{"frames": [...]}`.
    FramesJson(Bytes),
    /// `204`: the function handler returned `None`.
    NoContent,
    /// SSE `downstream` data: one frame.
    Frame(Bytes),
    /// SSE `upstream` data: `{"payload": <FLY object>}`.
    Upstream(Bytes),
    /// SSE `error` data, or a `400`/`500` JSON body: `{"error", "details"}`.
    /// `status` is the HTTP status (200 for SSE errors).
    Error {
        /// HTTP status code.
        status: u16,
        /// The error body.
        body: Bytes,
    },
}

/// One connection to the runtime with its read buffer, which survives pooling so a
/// steady stream of calls allocates no new read buffers.
struct Conn {
    stream: UnixStream,
    buf: BytesMut,
}

impl Conn {
    /// Reads more bytes into `buf`; `Ok(0)` is EOF.
    async fn read_more(&mut self) -> io::Result<usize> {
        reserve_read(&mut self.buf);
        self.stream.read_buf(&mut self.buf).await
    }
}

/// Makes room for a read, growing geometrically so long lines are not re-copied often.
fn reserve_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK {
        buf.reserve(READ_CHUNK.max(buf.len()));
    }
}

/// A pooled keep-alive client for one runtime socket.
pub struct RuntimeClient {
    socket: PathBuf,
    idle: Mutex<Vec<Conn>>,
}

impl fmt::Debug for RuntimeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeClient")
            .field("socket", &self.socket)
            .field("idle", &self.idle_count())
            .finish()
    }
}

/// How one attempt on a connection failed.
enum AttemptError {
    /// The connection died before any response byte: safe to retry on a fresh one.
    Stale(String),
    /// The request could not even be written: it never reached the runtime.
    Unsent(String),
    /// The runtime closed the connection with the request still unread in its receive
    /// queue (a Unix socket reports that as `ECONNRESET`): it was dying or dead when the
    /// request arrived, so no handler ran.
    Unread(String),
    /// Anything else; never retried (the runtime may have run the handler).
    Fatal(String),
}

impl RuntimeClient {
    /// A client for the runtime listening at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Number of idle keep-alive connections currently pooled.
    pub fn idle_count(&self) -> usize {
        self.pool().len()
    }

    /// Starts `POST /invoke` with `body`; events are read with [`Invocation::next`].
    /// The whole call (connect, write, all events) must finish within `timeout`.
    pub async fn invoke(
        &self,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Invocation<'_>, RuntimeCallError> {
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.start_invoke(&body)).await {
            Ok(Ok(state)) => Ok(Invocation {
                client: self,
                timeout,
                deadline,
                state,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RuntimeCallError::Timeout(timeout)),
        }
    }

    /// `GET /healthz`: `Ok` once the runtime answers `200` (its handler is loaded).
    pub async fn healthz(&self, timeout: Duration) -> Result<(), RuntimeCallError> {
        let call = async {
            let (mut conn, head) = self.exchange(HEALTHZ_PREFIX, &[]).await?;
            let status = head.status;
            self.read_whole_body(&mut conn, &head).await?;
            self.release(conn, &head);
            if status == 200 {
                Ok(())
            } else {
                Err(self.unreachable(format!("GET /healthz answered HTTP {status}")))
            }
        };
        let not_http = |message: String, silent: bool| RuntimeCallError::NotHttp {
            socket: self.socket.clone(),
            message,
            silent,
        };
        match tokio::time::timeout_at(Instant::now() + timeout, call).await {
            Ok(Err(RuntimeCallError::Unreachable { message, .. }))
                if message.contains("not an HTTP response")
                    || message.contains("bad HTTP status line") =>
            {
                Err(not_http(message, false))
            }
            Ok(result) => result,
            // Runtimes bind their socket only once the handler is loaded, so a socket that
            // accepts but stays silent is not a slow start.
            Err(_) => match UnixStream::connect(&self.socket).await {
                Ok(_) => Err(not_http(format!(
                    "it accepts connections but sent no HTTP answer to GET /healthz within {timeout:?}"
                ), true)),
                Err(_) => Err(RuntimeCallError::Timeout(timeout)),
            },
        }
    }

    fn unreachable(&self, message: impl Into<String>) -> RuntimeCallError {
        RuntimeCallError::Unreachable {
            socket: self.socket.clone(),
            message: message.into(),
        }
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Conn>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns `conn` to the pool if the response allows reuse and was fully consumed.
    fn release(&self, conn: Conn, head: &Head) {
        if head.reusable && conn.buf.is_empty() {
            // The runtime sends nothing between responses, so the connection is known to
            // be drained: forget its read readiness now, and the next call's first read
            // waits for the reply instead of costing a syscall that returns EAGAIN.
            // A close by the runtime still raises readiness again.
            let _ = conn.stream.try_io(tokio::io::Interest::READABLE, || {
                Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
            });
            let mut pool = self.pool();
            if pool.len() < MAX_IDLE {
                pool.push(conn);
            }
        }
    }

    async fn start_invoke(&self, body: &[u8]) -> Result<State, RuntimeCallError> {
        let (mut conn, head) = self.exchange(INVOKE_PREFIX, body).await?;
        let event = match head.status {
            204 => {
                // A 204 never has a body, whatever its headers claim.
                RuntimeEvent::NoContent
            }
            200 if head.sse => {
                let mut sse_buf = BytesMut::new();
                let body_state = match head.framing {
                    Framing::Length(n) => {
                        let take = conn.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                        sse_buf = conn.buf.split_to(take);
                        BodyState::Length(n - take as u64)
                    }
                    Framing::Close => {
                        sse_buf = conn.buf.split();
                        BodyState::Close
                    }
                    Framing::Chunked => BodyState::Chunked(Dechunker::default()),
                };
                return Ok(State::Sse(Box::new(SseState {
                    conn,
                    reusable: head.reusable,
                    body: body_state,
                    buf: sse_buf,
                    parser: SseParser::default(),
                })));
            }
            200 => RuntimeEvent::FramesJson(self.read_whole_body(&mut conn, &head).await?),
            400 | 500 => RuntimeEvent::Error {
                status: head.status,
                body: self.read_whole_body(&mut conn, &head).await?,
            },
            other => {
                return Err(
                    self.unreachable(format!("unexpected HTTP status {other} for POST /invoke"))
                )
            }
        };
        self.release(conn, &head);
        Ok(State::Single(Some(event)))
    }

    /// Sends one request and reads the response head, retrying once on a fresh
    /// connection when a pooled one turns out to be dead.
    async fn exchange(&self, prefix: &str, body: &[u8]) -> Result<(Conn, Head), RuntimeCallError> {
        let mut head_buf = [0u8; 128];
        let head_len = {
            let mut w = &mut head_buf[..];
            write!(w, "{prefix}Content-Length: {}\r\n\r\n", body.len())
                .map_err(|e| self.unreachable(format!("cannot build request: {e}")))?;
            128 - w.len()
        };
        let request_head = &head_buf[..head_len];

        let pooled = self.pool().pop();
        // After a pooled connection died mid-request the runtime may have received the
        // request (it can crash while handling it), so a failed reconnect is then an
        // unreachable runtime, not an undelivered request.
        let mut maybe_delivered = false;
        if let Some(conn) = pooled {
            match attempt(conn, request_head, body).await {
                Ok(done) => return Ok(done),
                Err(AttemptError::Fatal(msg)) => return Err(self.unreachable(msg)),
                Err(
                    e
                    @ (AttemptError::Stale(_) | AttemptError::Unsent(_) | AttemptError::Unread(_)),
                ) => {
                    maybe_delivered = matches!(e, AttemptError::Stale(_));
                    // The runtime dropped an idle connection; it most likely restarted or
                    // timed out its idle connections, so the others are suspect too.
                    self.pool().clear();
                }
            }
        }
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            let message = format!("cannot connect ({e}); is the runtime process running?");
            if maybe_delivered {
                self.unreachable(message)
            } else {
                RuntimeCallError::NotDelivered {
                    socket: self.socket.clone(),
                    message,
                }
            }
        })?;
        let conn = Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        };
        attempt(conn, request_head, body)
            .await
            .map_err(|e| match e {
                // After a pooled connection that may have delivered the request, a
                // fresh one that the dying runtime never read proves nothing.
                AttemptError::Unsent(message) | AttemptError::Unread(message)
                    if !maybe_delivered =>
                {
                    RuntimeCallError::NotDelivered {
                        socket: self.socket.clone(),
                        message,
                    }
                }
                AttemptError::Unsent(msg)
                | AttemptError::Unread(msg)
                | AttemptError::Stale(msg)
                | AttemptError::Fatal(msg) => self.unreachable(msg),
            })
    }

    /// Reads a complete non-SSE body according to `head.framing`.
    async fn read_whole_body(
        &self,
        conn: &mut Conn,
        head: &Head,
    ) -> Result<Bytes, RuntimeCallError> {
        match head.framing {
            Framing::Length(n) => {
                let n = usize::try_from(n)
                    .map_err(|_| self.unreachable(format!("Content-Length {n} too large")))?;
                while conn.buf.len() < n {
                    let missing = n - conn.buf.len();
                    if conn.buf.capacity() - conn.buf.len() < missing {
                        conn.buf.reserve(missing.min(MAX_RESERVE));
                    }
                    let read = conn.stream.read_buf(&mut conn.buf).await;
                    match read {
                        Ok(0) => {
                            return Err(self.unreachable(format!(
                                "connection closed after {} of {n} body bytes",
                                conn.buf.len()
                            )))
                        }
                        Ok(_) => {}
                        Err(e) => return Err(self.unreachable(format!("reading body: {e}"))),
                    }
                }
                Ok(conn.buf.split_to(n).freeze())
            }
            Framing::Close => {
                loop {
                    match conn.read_more().await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Err(self.unreachable(format!("reading body: {e}"))),
                    }
                }
                Ok(conn.buf.split().freeze())
            }
            Framing::Chunked => {
                let mut out = BytesMut::new();
                let mut dechunker = Dechunker::default();
                loop {
                    dechunker
                        .decode(&mut conn.buf, &mut out)
                        .map_err(|m| self.unreachable(m))?;
                    if dechunker.is_done() {
                        return Ok(out.freeze());
                    }
                    match conn.read_more().await {
                        Ok(0) => {
                            return Err(self.unreachable("connection closed inside a chunked body"))
                        }
                        Ok(_) => {}
                        Err(e) => return Err(self.unreachable(format!("reading body: {e}"))),
                    }
                }
            }
        }
    }
}

/// Writes the request on `conn` and reads the response head.
async fn attempt(mut conn: Conn, head: &[u8], body: &[u8]) -> Result<(Conn, Head), AttemptError> {
    if let Err(e) = write_request(&mut conn.stream, head, body).await {
        return Err(AttemptError::Unsent(format!("writing request: {e}")));
    }
    // Leftover bytes would belong to no request; `release` never pools such a connection.
    debug_assert!(conn.buf.is_empty());
    loop {
        match parse_head(&conn.buf) {
            Ok(Some((head, used))) => {
                conn.buf.advance(used);
                return Ok((conn, head));
            }
            Ok(None) => {}
            Err(msg) => return Err(AttemptError::Fatal(msg)),
        }
        let got_nothing = conn.buf.is_empty();
        match conn.read_more().await {
            Ok(0) if got_nothing => {
                return Err(AttemptError::Stale(
                    "connection closed before any response byte".to_owned(),
                ))
            }
            Ok(0) => {
                return Err(AttemptError::Fatal(
                    "connection closed inside the response head".to_owned(),
                ))
            }
            Ok(_) => {}
            Err(e) if got_nothing && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(AttemptError::Unread(format!(
                    "the runtime closed the connection without reading the request: {e}"
                )))
            }
            Err(e) if got_nothing && is_reset(&e) => {
                return Err(AttemptError::Stale(format!("reading response: {e}")))
            }
            Err(e) => return Err(AttemptError::Fatal(format!("reading response: {e}"))),
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Writes head and body with as few `writev` calls as the socket allows (one, normally).
async fn write_request(
    stream: &mut UnixStream,
    mut head: &[u8],
    mut body: &[u8],
) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        let n = if head.is_empty() {
            stream.write(body).await?
        } else {
            stream
                .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < head.len() {
            head = &head[n..];
        } else {
            body = &body[n - head.len()..];
            head = &[];
        }
    }
    Ok(())
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// The parts of a response head the client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Framing,
    /// `text/event-stream`.
    sse: bool,
    /// HTTP/1.1 without `Connection: close`, and a self-delimited body.
    reusable: bool,
}

/// Parses a response head from the start of `buf`: `Ok(None)` if incomplete, else the
/// head and the bytes it used. Interim 1xx responses are skipped.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut offset = 0;
    loop {
        match parse_one_head(&buf[offset..])? {
            None => return Ok(None),
            Some((head, used)) => {
                offset += used;
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(Some((head, offset)));
            }
        }
    }
}

fn parse_one_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    // Fail fast on garbage instead of waiting for a blank line that may never come.
    let probe = buf.len().min(5);
    if buf[..probe] != b"HTTP/"[..probe] {
        return Err(format!("not an HTTP response: {}", preview(buf)));
    }
    let mut lines = memchr::memchr_iter(b'\n', buf);
    let Some(first_end) = lines.next() else {
        return too_long_or_incomplete(buf);
    };
    let status_line = trim_cr(&buf[..first_end]);
    let (http11, status) = parse_status_line(status_line)
        .ok_or_else(|| format!("bad HTTP status line: {}", preview(status_line)))?;

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut close = false;
    let mut sse = false;
    let mut start = first_end + 1;
    for end in lines {
        let line = trim_cr(&buf[start..end]);
        start = end + 1;
        if line.is_empty() {
            let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
                Framing::Length(0)
            } else if has_te {
                if chunked {
                    Framing::Chunked
                } else {
                    Framing::Close
                }
            } else if let Some(n) = content_length {
                Framing::Length(n)
            } else {
                Framing::Close
            };
            let reusable = http11 && !close && framing != Framing::Close;
            let head = Head {
                status,
                framing,
                sse,
                reusable,
            };
            return Ok(Some((head, start)));
        }
        let colon = memchr::memchr(b':', line)
            .ok_or_else(|| format!("bad HTTP header line: {}", preview(line)))?;
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(value)
                .ok_or_else(|| format!("bad Content-Length: {}", preview(value)))?;
            if content_length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".to_owned());
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case(b"content-type") {
            let media = value.split(|&b| b == b';').next().unwrap_or_default();
            sse = media
                .trim_ascii()
                .eq_ignore_ascii_case(b"text/event-stream");
        }
    }
    too_long_or_incomplete(buf)
}

fn too_long_or_incomplete<T>(buf: &[u8]) -> Result<Option<T>, String> {
    if buf.len() > MAX_HEAD {
        Err(format!("response head longer than {MAX_HEAD} bytes"))
    } else {
        Ok(None)
    }
}

fn parse_status_line(line: &[u8]) -> Option<(bool, u16)> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    Some((minor >= b'1', status))
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first bytes of `buf`, printable, for error messages.
fn preview(buf: &[u8]) -> String {
    let shown = &buf[..buf.len().min(64)];
    let mut s = String::from_utf8_lossy(shown).escape_debug().to_string();
    if buf.len() > shown.len() {
        s.push('…');
    }
    format!("\"{s}\"")
}

/// Incremental decoder for `Transfer-Encoding: chunked`.
#[derive(Debug, Default)]
struct Dechunker {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Dechunker {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Moves as much decoded data as `input` holds into `out`, consuming what it used.
    fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<(), String> {
        loop {
            match self.state {
                ChunkState::Size | ChunkState::Trailers => {
                    let Some(nl) = memchr::memchr(b'\n', input) else {
                        if input.len() > MAX_CHUNK_LINE {
                            return Err("chunk-size line too long".to_owned());
                        }
                        return Ok(());
                    };
                    let line = trim_cr(&input[..nl]);
                    if self.state == ChunkState::Trailers {
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                        }
                    } else {
                        let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                        let size = parse_hex(digits.trim_ascii())
                            .ok_or_else(|| format!("bad chunk size line: {}", preview(line)))?;
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    input.advance(nl + 1);
                }
                ChunkState::Data(left) => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..take]);
                    input.advance(take);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if input.starts_with(b"\r\n") {
                        input.advance(2);
                    } else if input.starts_with(b"\n") {
                        input.advance(1);
                    } else if input.is_empty() || &input[..] == b"\r" {
                        return Ok(());
                    } else {
                        return Err("chunk data not followed by CRLF".to_owned());
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Done => return Ok(()),
            }
        }
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc * 16 + u64::from(d))
    })
}

/// Where the body bytes of an SSE response come from.
#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked(Dechunker),
    Close,
}

/// A parsed SSE event the client cares about.
#[derive(Debug, PartialEq)]
enum SseItem {
    Event(RuntimeEvent),
    Done,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    #[default]
    Unset,
    Downstream,
    Upstream,
    Error,
    Done,
    Other,
}

/// Data lines of the event being assembled; a single line stays a zero-copy slice.
#[derive(Debug, Default)]
enum Data {
    #[default]
    None,
    One(Bytes),
    Many(BytesMut),
}

impl Data {
    fn push(&mut self, line: Bytes) {
        *self = match std::mem::take(self) {
            Data::None => Data::One(line),
            Data::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + 1 + line.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(b"\n");
                joined.extend_from_slice(&line);
                Data::Many(joined)
            }
            Data::Many(mut joined) => {
                joined.extend_from_slice(b"\n");
                joined.extend_from_slice(&line);
                Data::Many(joined)
            }
        };
    }

    fn take(&mut self) -> Option<Bytes> {
        match std::mem::take(self) {
            Data::None => None,
            Data::One(b) => Some(b),
            Data::Many(b) => Some(b.freeze()),
        }
    }
}

/// Line-based SSE parser that remembers how far it scanned, so a long line arriving
/// in many reads is scanned once.
#[derive(Debug, Default)]
struct SseParser {
    scanned: usize,
    kind: EventKind,
    data: Data,
}

impl SseParser {
    /// The next complete event in `buf` (consuming its lines), or `None` if more bytes
    /// are needed.
    fn next_item(&mut self, buf: &mut BytesMut) -> Result<Option<SseItem>, String> {
        loop {
            let Some(found) = memchr::memchr(b'\n', &buf[self.scanned..]) else {
                self.scanned = buf.len();
                // One byte of slack: a trailing '\r' may still be the terminator.
                if buf.len() > MAX_SSE_LINE + 1 {
                    return Err(line_too_long());
                }
                return Ok(None);
            };
            let nl = self.scanned + found;
            self.scanned = 0;
            let content_len = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if content_len > MAX_SSE_LINE {
                return Err(line_too_long());
            }
            if content_len == 0 {
                buf.advance(nl + 1);
                if let Some(item) = self.dispatch() {
                    return Ok(Some(item));
                }
                continue;
            }
            let line = buf.split_to(nl + 1).freeze();
            self.field(line.slice(..content_len));
        }
    }

    fn field(&mut self, line: Bytes) {
        if line[0] == b':' {
            return; // comment
        }
        let (name, value) = match memchr::memchr(b':', &line) {
            Some(c) => {
                let start = if line.get(c + 1) == Some(&b' ') {
                    c + 2
                } else {
                    c + 1
                };
                (&line[..c], line.slice(start..))
            }
            None => (&line[..], Bytes::new()),
        };
        match name {
            b"event" => {
                self.kind = match &value[..] {
                    b"downstream" => EventKind::Downstream,
                    b"upstream" => EventKind::Upstream,
                    b"error" => EventKind::Error,
                    b"done" => EventKind::Done,
                    _ => EventKind::Other,
                }
            }
            b"data" => self.data.push(value),
            _ => {} // id, retry and unknown fields mean nothing here
        }
    }

    fn dispatch(&mut self) -> Option<SseItem> {
        let kind = std::mem::take(&mut self.kind);
        let data = self.data.take();
        match (kind, data) {
            (EventKind::Done, _) => Some(SseItem::Done),
            (EventKind::Downstream, Some(d)) => Some(SseItem::Event(RuntimeEvent::Frame(d))),
            (EventKind::Upstream, Some(d)) => Some(SseItem::Event(RuntimeEvent::Upstream(d))),
            (EventKind::Error, Some(d)) => Some(SseItem::Event(RuntimeEvent::Error {
                status: 200,
                body: d,
            })),
            // Events without data, and types this protocol does not define, are skipped.
            _ => None,
        }
    }

    /// True if the stream ended right after a `done` event whose blank line was lost.
    fn done_pending(&self) -> bool {
        self.kind == EventKind::Done
    }
}

fn line_too_long() -> String {
    format!("SSE line longer than {MAX_SSE_LINE} bytes")
}

/// An SSE response being read.
struct SseState {
    conn: Conn,
    reusable: bool,
    body: BodyState,
    /// Decoded body bytes not yet parsed.
    buf: BytesMut,
    parser: SseParser,
}

impl SseState {
    /// Appends more decoded body to `buf`; `Ok(false)` at the end of the body.
    async fn fill(&mut self) -> Result<bool, String> {
        match &mut self.body {
            BodyState::Length(0) => Ok(false),
            BodyState::Length(left) => {
                let n = if self.conn.buf.is_empty() {
                    reserve_read(&mut self.buf);
                    (&mut self.conn.stream)
                        .take(*left)
                        .read_buf(&mut self.buf)
                        .await
                        .map_err(|e| format!("reading SSE stream: {e}"))?
                } else {
                    let n = self
                        .conn
                        .buf
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    self.buf.extend_from_slice(&self.conn.buf[..n]);
                    self.conn.buf.advance(n);
                    n
                };
                if n == 0 {
                    return Err("connection closed inside the SSE body".to_owned());
                }
                *left -= n as u64;
                Ok(true)
            }
            BodyState::Close => {
                reserve_read(&mut self.buf);
                let n = self
                    .conn
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|e| format!("reading SSE stream: {e}"))?;
                Ok(n > 0)
            }
            BodyState::Chunked(dechunker) => loop {
                let before = self.buf.len();
                let decoded = dechunker.decode(&mut self.conn.buf, &mut self.buf);
                // Body decoded before a framing error is parsed first, so which events
                // arrive does not depend on how reads split the reply; the decoder stays
                // at the bad bytes and reports them on the next call.
                if self.buf.len() > before {
                    return Ok(true);
                }
                decoded?;
                if dechunker.is_done() {
                    return Ok(false);
                }
                let n = self
                    .conn
                    .read_more()
                    .await
                    .map_err(|e| format!("reading SSE stream: {e}"))?;
                if n == 0 {
                    return Err("connection closed inside a chunked SSE body".to_owned());
                }
            },
        }
    }

    /// Whether the body is fully consumed so the connection could carry another request.
    fn finished_cleanly(&mut self) -> bool {
        if !self.reusable || !self.buf.is_empty() {
            return false;
        }
        match &mut self.body {
            BodyState::Length(left) => *left == 0 && self.conn.buf.is_empty(),
            BodyState::Chunked(d) => {
                let mut scratch = BytesMut::new();
                d.decode(&mut self.conn.buf, &mut scratch).is_ok()
                    && d.is_done()
                    && scratch.is_empty()
                    && self.conn.buf.is_empty()
            }
            BodyState::Close => false,
        }
    }
}

enum State {
    /// A non-SSE reply: its single event, then the end.
    Single(Option<RuntimeEvent>),
    Sse(Box<SseState>),
    Ended,
}

/// An in-progress runtime call. Dropping it mid-stream discards the connection.
pub struct Invocation<'a> {
    client: &'a RuntimeClient,
    timeout: Duration,
    deadline: Instant,
    state: State,
}

impl fmt::Debug for Invocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Single(Some(_)) => "single",
            State::Sse(_) => "sse",
            State::Single(None) | State::Ended => "ended",
        };
        f.debug_struct("Invocation")
            .field("socket", &self.client.socket)
            .field("timeout", &self.timeout)
            .field("state", &state)
            .finish()
    }
}

impl Invocation<'_> {
    /// The next event; `Ok(None)` once the call ended normally (after SSE `done`, or
    /// after the single JSON / 204 / error event of a non-SSE reply).
    pub async fn next(&mut self) -> Result<Option<RuntimeEvent>, RuntimeCallError> {
        let sse = match &mut self.state {
            State::Single(event) => return Ok(event.take()),
            State::Ended => return Ok(None),
            State::Sse(sse) => sse,
        };
        let parsed = match sse.parser.next_item(&mut sse.buf) {
            // An already buffered event needs neither a read nor a timer.
            Ok(Some(item)) if Instant::now() < self.deadline => Ok(item),
            Ok(Some(_)) => Err(None),
            Ok(None) => match tokio::time::timeout_at(self.deadline, read_item(sse)).await {
                Ok(Ok(item)) => Ok(item),
                Ok(Err(msg)) => Err(Some(msg)),
                Err(_) => Err(None),
            },
            Err(msg) => Err(Some(msg)),
        };
        match parsed {
            Ok(SseItem::Event(event)) => Ok(Some(event)),
            Ok(SseItem::Done) => {
                if let State::Sse(mut sse) = std::mem::replace(&mut self.state, State::Ended) {
                    if sse.finished_cleanly() {
                        let mut pool = self.client.pool();
                        if pool.len() < MAX_IDLE {
                            pool.push(sse.conn);
                        }
                    }
                }
                Ok(None)
            }
            Err(message) => {
                self.state = State::Ended;
                Err(match message {
                    Some(message) => self.client.unreachable(message),
                    None => RuntimeCallError::Timeout(self.timeout),
                })
            }
        }
    }
}

/// Reads until the parser yields an item; EOF before `done` is an error.
async fn read_item(sse: &mut SseState) -> Result<SseItem, String> {
    loop {
        if !sse.fill().await? {
            if sse.parser.done_pending() {
                return Ok(SseItem::Done);
            }
            return Err("SSE stream ended before the done event".to_owned());
        }
        if let Some(item) = sse.parser.next_item(&mut sse.buf)? {
            return Ok(item);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing_picks_framing_and_reuse() {
        let (h, used) = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(used, 39);
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.reusable && !h.sse);

        let (h, _) = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);

        let (h, _) = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nConnection: keep-alive, Close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.sse && !h.reusable);
        assert_eq!(h.framing, Framing::Close);

        let (h, _) = parse_head(b"HTTP/1.0 200 OK\nContent-Length: 2\n\n")
            .unwrap()
            .unwrap();
        assert!(!h.reusable, "HTTP/1.0 is never reused");

        let (h, _) = parse_head(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        assert!(h.reusable);
    }

    #[test]
    fn head_parsing_skips_interim_and_rejects_garbage() {
        let (h, _) = parse_head(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, 500);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        assert_eq!(parse_head(b"HT").unwrap(), None);
        assert!(parse_head(b"HELLO").is_err());
        assert!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .is_err()
        );
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert!(parse_head(&long).is_err());
    }

    #[test]
    fn dechunker_handles_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 0..=wire.len() {
            let mut d = Dechunker::default();
            let mut input = BytesMut::from(&wire[..split]);
            let mut out = BytesMut::new();
            d.decode(&mut input, &mut out).unwrap();
            input.extend_from_slice(&wire[split..]);
            d.decode(&mut input, &mut out).unwrap();
            assert!(d.is_done(), "split at {split}");
            assert_eq!(&out[..], b"hello 0123456789");
            assert!(input.is_empty());
        }
        let mut d = Dechunker::default();
        assert!(d
            .decode(&mut BytesMut::from(&b"zz\r\n"[..]), &mut BytesMut::new())
            .is_err());
    }

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<SseItem>, String> {
        let mut p = SseParser::default();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(item) = p.next_item(&mut buf)? {
                items.push(item);
            }
        }
        Ok(items)
    }

    #[test]
    fn sse_parser_is_split_invariant() {
        let wire: &[u8] = b": comment\r\nevent: upstream\r\ndata: {\"payload\":1}\r\n\r\n\
            event: downstream\ndata: {\"a\":\ndata: 2}\nid: 7\n\n\
            event: mystery\ndata: x\n\n\
            event: error\ndata:{\"error\":\"processing_error\"}\n\n\
            event: done\ndata: {}\n\n";
        let expected = vec![
            SseItem::Event(RuntimeEvent::Upstream(Bytes::from_static(
                b"{\"payload\":1}",
            ))),
            SseItem::Event(RuntimeEvent::Frame(Bytes::from_static(b"{\"a\":\n2}"))),
            SseItem::Event(RuntimeEvent::Error {
                status: 200,
                body: Bytes::from_static(b"{\"error\":\"processing_error\"}"),
            }),
            SseItem::Done,
        ];
        for split in 0..=wire.len() {
            assert_eq!(
                parse_all(&[&wire[..split], &wire[split..]]).unwrap(),
                expected
            );
        }
        let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(parse_all(&bytewise).unwrap(), expected);
    }

    #[test]
    fn sse_parser_limits_line_length() {
        let mut ok = b"event: downstream\ndata: ".to_vec();
        ok.resize(18 + MAX_SSE_LINE, b'x');
        ok.extend_from_slice(b"\r\n\n");
        let items = parse_all(&[&ok]).unwrap();
        assert!(
            matches!(&items[0], SseItem::Event(RuntimeEvent::Frame(b)) if b.len() == MAX_SSE_LINE - 6)
        );

        let mut long = b"data: ".to_vec();
        long.resize(MAX_SSE_LINE + 1, b'x');
        long.push(b'\n');
        assert!(parse_all(&[&long]).is_err());
        // Unterminated: rejected as soon as it is provably too long.
        assert!(parse_all(&[&long[..MAX_SSE_LINE], b"xx"]).is_err());
    }
}
