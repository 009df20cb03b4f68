//! Sends that keep failing (a full disk under the embedded queue, a broker gone): the
//! input is requeued as protocol.md §12 asks, but the actor then pauses before taking
//! its next message, doubling the pause while failures go on, instead of running the
//! same message again at once. The outage is logged once at WARN when it starts, at
//! DEBUG while it lasts and once at INFO when a message goes through again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use troupe_transport::retry::Backoff;

/// First pause after a failed send.
pub const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause between tries while sends keep failing.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The send-failure state of one actor, shared by its replicas and workers.
#[derive(Debug)]
pub(crate) struct SendOutage {
    actor: String,
    /// Fast path: read on every message, written only when an outage starts or ends.
    down: AtomicBool,
    state: Mutex<OutageState>,
}

#[derive(Debug)]
struct OutageState {
    since: Option<Instant>,
    failures: u64,
    backoff: Backoff,
    /// No worker takes a message before this.
    resume_at: Option<Instant>,
}

impl SendOutage {
    pub(crate) fn new(actor: &str) -> Self {
        SendOutage {
            actor: actor.to_owned(),
            down: AtomicBool::new(false),
            state: Mutex::new(OutageState {
                since: None,
                failures: 0,
                backoff: Backoff::new(FIRST_PAUSE, MAX_PAUSE),
                resume_at: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutageState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A send to `queue` (or an end actor's storage) failed with `error`; the input will
    /// be requeued. Failures in the same round of tries share one pause, so several
    /// workers failing together do not multiply the backoff.
    pub(crate) fn failed(&self, queue: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut s = self.lock();
        s.failures += 1;
        let pause = match s.resume_at {
            Some(at) if at > now => at - now,
            _ => {
                let d = s.backoff.next_delay();
                s.resume_at = Some(now + d);
                d
            }
        };
        if s.since.is_none() {
            s.since = Some(now);
            self.down.store(true, Ordering::Release);
            tracing::warn!(
                actor = %self.actor,
                queue,
                error = %error,
                ?pause,
                "send failed; the input is requeued and this actor retries with backoff until sends succeed (further failures are logged at DEBUG)"
            );
        } else {
            tracing::debug!(actor = %self.actor, queue, error = %error, ?pause, "send failed again; requeueing the input");
        }
    }

    /// A message went through: ends an outage, if one is on.
    pub(crate) fn succeeded(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut s = self.lock();
        if let Some(since) = s.since.take() {
            self.down.store(false, Ordering::Release);
            tracing::info!(
                actor = %self.actor,
                failures = s.failures,
                lasted = ?since.elapsed(),
                "sends succeed again; the actor is back to full speed"
            );
            s.failures = 0;
            s.resume_at = None;
            s.backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
        }
    }

    /// When the actor may take its next message, while an outage pauses it.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        self.lock().resume_at.filter(|&at| at > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_per_round_and_reset_on_success() {
        let o = SendOutage::new("a");
        assert_eq!(o.resume_at(), None);
        let t0 = Instant::now();
        o.failed("q", &"disk full");
        // A second worker failing in the same round does not double the pause.
        o.failed("q", &"disk full");
        assert_eq!(o.resume_at(), Some(t0 + FIRST_PAUSE));
        tokio::time::advance(FIRST_PAUSE).await;
        assert_eq!(o.resume_at(), None, "the pause is over");
        o.failed("q", &"disk full");
        assert_eq!(o.resume_at(), Some(Instant::now() + FIRST_PAUSE * 2));
        o.succeeded();
        assert_eq!(o.resume_at(), None);
        o.failed("q", &"disk full");
        assert_eq!(o.resume_at(), Some(Instant::now() + FIRST_PAUSE));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_is_capped() {
        let o = SendOutage::new("a");
        for _ in 0..20 {
            o.failed("q", &"disk full");
            tokio::time::advance(MAX_PAUSE).await;
        }
        o.failed("q", &"disk full");
        assert_eq!(o.resume_at(), Some(Instant::now() + MAX_PAUSE));
    }
}
