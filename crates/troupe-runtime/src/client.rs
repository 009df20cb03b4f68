//! HTTP/1.1 client for the runtime's Unix socket (protocol.md §7).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

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
    /// The call exceeded its deadline.
    #[error("runtime call timed out after {0:?}")]
    Timeout(Duration),
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

/// A pooled keep-alive client for one runtime socket.
#[derive(Debug)]
pub struct RuntimeClient {
    socket: PathBuf,
}

impl RuntimeClient {
    /// A client for the runtime listening at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into() }
    }

    /// The socket path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Starts `POST /invoke` with `body`; events are read with [`Invocation::next`].
    /// The whole call (connect, write, all events) must finish within `timeout`.
    pub async fn invoke(&self, body: Bytes, timeout: Duration) -> Result<Invocation<'_>, RuntimeCallError> {
        todo!("{body:?}{timeout:?}")
    }
}

/// An in-progress runtime call. Dropping it mid-stream discards the connection.
#[derive(Debug)]
pub struct Invocation<'a> {
    client: &'a RuntimeClient,
}

impl Invocation<'_> {
    /// The next event; `Ok(None)` once the call ended normally (after SSE `done`, or
    /// after the single JSON / 204 / error event of a non-SSE reply).
    pub async fn next(&mut self) -> Result<Option<RuntimeEvent>, RuntimeCallError> {
        todo!("{:?}", self.client)
    }
}
