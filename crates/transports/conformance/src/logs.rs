//! Collecting what a transport logs, for tests of its log lines (one WARN per outage).
//!
//! The collector is the default subscriber of the calling thread only; a test using it
//! belongs in a test binary of its own, since tracing's callsite state is process-wide
//! and other tests' logging would disturb it.

use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// Formatted log lines (INFO and above) of this thread while the guard lives.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Starts collecting; collection ends when the guard drops. Run the test on a
    /// current-thread runtime so that every task of the transport logs here.
    pub fn capture() -> (Logs, DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Everything collected so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
