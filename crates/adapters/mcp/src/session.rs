//! MCP sessions: the negotiated version, the client's log level and the channel of
//! server-initiated messages (the `GET /mcp` stream, or the legacy SSE stream).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages buffered on a server-to-client stream before broadcasts are dropped for it.
pub(crate) const PUSH_BUFFER: usize = 256;

/// RFC 5424 levels as MCP names them, least severe first.
pub(crate) const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Severity index of a level name.
pub(crate) fn log_level_index(name: &str) -> Option<u8> {
    LOG_LEVELS
        .iter()
        .position(|l| *l == name)
        .and_then(|i| u8::try_from(i).ok())
}

/// One client session.
pub(crate) struct Session {
    /// The `Mcp-Session-Id` (or the legacy `sessionId`).
    pub id: String,
    /// Opened by the legacy HTTP+SSE transport.
    pub legacy: bool,
    /// Least severe level the client wants (`logging/setLevel`); debug until set.
    min_log: AtomicU8,
    state: Mutex<State>,
}

struct State {
    /// Negotiated at `initialize`; empty before.
    version: String,
    push: Option<mpsc::Sender<Value>>,
    last_used: Instant,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under any panic (plain field writes).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The negotiated protocol version (empty before `initialize`).
    pub fn version(&self) -> String {
        self.lock().version.clone()
    }

    /// Records the version `initialize` settled on.
    pub fn set_version(&self, v: &str) {
        v.clone_into(&mut self.lock().version);
    }

    /// Sets the least severe log level to deliver.
    pub fn set_min_log(&self, level: u8) {
        self.min_log.store(level, Ordering::Relaxed);
    }

    /// Whether a log message at `level` goes to the client.
    pub fn logs(&self, level: u8) -> bool {
        level >= self.min_log.load(Ordering::Relaxed)
    }

    /// Makes `tx` the session's server-to-client stream, replacing (and so ending) any
    /// earlier one: a reconnecting client must not wait for the dead stream to time out.
    pub fn set_push(&self, tx: mpsc::Sender<Value>) {
        self.lock().push = Some(tx);
    }

    /// The current server-to-client stream.
    pub fn push(&self) -> Option<mpsc::Sender<Value>> {
        let mut st = self.lock();
        if st.push.as_ref().is_some_and(mpsc::Sender::is_closed) {
            st.push = None;
        }
        st.push.clone()
    }

    fn touch(&self) {
        self.lock().last_used = Instant::now();
    }
}

/// All live sessions.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session with a fresh unguessable id.
    pub fn create(&self, legacy: bool) -> Arc<Session> {
        let s = Arc::new(Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            legacy,
            min_log: AtomicU8::new(0),
            state: Mutex::new(State {
                version: String::new(),
                push: None,
                last_used: Instant::now(),
            }),
        });
        self.lock().insert(s.id.clone(), s.clone());
        s
    }

    /// The session `id`, marked as used.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.lock().get(id).cloned()?;
        s.touch();
        Some(s)
    }

    /// Ends session `id`; `false` when there was none.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Queues `msg` on every session's server-to-client stream; a full stream misses it
    /// rather than holding up the others.
    pub fn broadcast(&self, msg: &Value) -> usize {
        let sessions: Vec<_> = self.lock().values().cloned().collect();
        sessions
            .iter()
            .filter_map(|s| s.push())
            .filter(|tx| tx.try_send(msg.clone()).is_ok())
            .count()
    }

    /// Drops sessions idle for `idle` without an open stream (clients that never sent
    /// `DELETE`).
    pub fn sweep(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.push().is_some() || now.duration_since(s.lock().last_used) < idle);
        before - map.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(log_level_index("debug"), Some(0));
        assert_eq!(log_level_index("emergency"), Some(7));
        assert_eq!(log_level_index("verbose"), None);
    }

    #[tokio::test]
    async fn broadcast_reaches_open_streams_and_sweep_keeps_them() {
        let sessions = Sessions::default();
        let a = sessions.create(false);
        let b = sessions.create(false);
        assert_ne!(a.id, b.id);
        let (tx, mut rx) = mpsc::channel(1);
        a.set_push(tx);
        assert_eq!(sessions.broadcast(&Value::from(1)), 1);
        assert_eq!(rx.recv().await, Some(Value::from(1)));
        // full stream: the message is dropped for it
        assert_eq!(sessions.broadcast(&Value::from(2)), 1);
        assert_eq!(sessions.broadcast(&Value::from(3)), 0);
        assert_eq!(sessions.sweep(Duration::ZERO), 1, "b has no stream");
        assert!(sessions.get(&a.id).is_some());
        drop(rx);
        assert!(a.push().is_none());
        assert_eq!(sessions.sweep(Duration::ZERO), 1);
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn log_filter() {
        let sessions = Sessions::default();
        let s = sessions.create(true);
        assert!(s.logs(1));
        s.set_min_log(log_level_index("warning").unwrap());
        assert!(!s.logs(1));
        assert!(s.logs(4));
        s.set_version("2024-11-05");
        assert_eq!(s.version(), "2024-11-05");
        assert!(sessions.remove(&s.id));
        assert!(!sessions.remove(&s.id));
    }
}
