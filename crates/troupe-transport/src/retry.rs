//! Retrying calls to a broker that went away, and logging each outage once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Doubling delays between retries, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff { next: first, cap }
    }

    /// The delay before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }
}

/// Tracks whether the broker is unreachable, so an outage logs one WARN when it starts
/// and one INFO when it ends rather than one line per failed call.
#[derive(Debug)]
pub struct Outage {
    kind: &'static str,
    url: String,
    down: AtomicBool,
    started: &'static str,
    ended: &'static str,
}

impl Outage {
    /// For the broker of `kind` at `url` (already free of secrets).
    pub fn new(kind: &'static str, url: String) -> Self {
        Outage::with_messages(
            kind,
            url,
            "broker unreachable; retrying with backoff until it is back",
            "broker reachable again",
        )
    }

    /// For another kind of outage (a full disk under the embedded queue): `started` is
    /// logged at WARN on the first failure, `ended` at INFO on the first success after.
    pub fn with_messages(
        kind: &'static str,
        subject: String,
        started: &'static str,
        ended: &'static str,
    ) -> Self {
        Outage {
            kind,
            url: subject,
            down: AtomicBool::new(false),
            started,
            ended,
        }
    }

    /// A call could not reach the broker.
    pub fn failed(&self, message: &str) {
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                transport = self.kind,
                url = %self.url,
                error = %message,
                "{}",
                self.started
            );
        } else {
            tracing::debug!(transport = self.kind, error = %message, "still failing: {}", self.started);
        }
    }

    /// A call reached the broker (whatever it answered), or succeeded.
    pub fn reached(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(transport = self.kind, url = %self.url, "{}", self.ended);
        }
    }
}

/// An error and its sources on one line: reqwest's own message hides the cause
/// ("connection refused") in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, vec![100, 200, 350, 350, 350]);
    }

    #[test]
    fn outage_flips() {
        let o = Outage::new("sqs", "http://x".into());
        o.failed("refused");
        assert!(o.down.load(Ordering::Acquire));
        o.failed("refused again");
        o.reached();
        assert!(!o.down.load(Ordering::Acquire));
    }
}
