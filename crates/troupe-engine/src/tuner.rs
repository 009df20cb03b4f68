//! Adaptive pipeline depth (`pipeline:` is its ceiling): how many messages per worker
//! may wait for their sends to be confirmed while the next one runs, and so how many
//! unacked messages the broker may hand a replica (its prefetch).
//!
//! A fast handler needs several messages settling to keep the runtime busy while the
//! broker confirms; a slow one gains almost nothing from it and would only hold messages
//! that an idle replica could take, so it falls back to Asya's one message at a time.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A handler at least this slow (moving average) runs with no pipeline (prefetch 1): the
/// broker round trips it would hide are a few percent of its time.
pub const SLOW_HANDLER: Duration = Duration::from_millis(100);

/// Messages observed between two raises of the depth (a drop to 0 is immediate).
const SETTLE_AFTER: u32 = 8;

/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.2;

/// The depth for a handler taking `head` per message whose sends take `settle` to become
/// durable, at most `max`.
pub fn desired_depth(head: Duration, settle: Duration, max: usize) -> usize {
    if max == 0 || head >= SLOW_HANDLER {
        return 0;
    }
    let head = head.as_secs_f64().max(1e-6);
    let needed = (settle.as_secs_f64() / head).ceil();
    // At least one, so the next delivery is already on its way while a message is acked.
    (needed as usize).clamp(1, max)
}

/// Shared by the workers of one actor; lock-free.
#[derive(Debug)]
pub struct Tuner {
    max: usize,
    concurrency: usize,
    min_prefetch: usize,
    head_us: AtomicU64,
    settle_us: AtomicU64,
    depth: AtomicUsize,
    since_change: AtomicU32,
}

impl Tuner {
    /// A tuner for `concurrency` workers with depth at most `max`, starting at one (or
    /// zero when `max` is zero); the prefetch it asks for is never below `min_prefetch`.
    pub fn new(max: usize, concurrency: usize, min_prefetch: usize) -> Self {
        Self {
            max,
            concurrency: concurrency.max(1),
            min_prefetch,
            head_us: AtomicU64::new(0),
            settle_us: AtomicU64::new(0),
            depth: AtomicUsize::new(max.min(1)),
            since_change: AtomicU32::new(0),
        }
    }

    /// The current depth.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The prefetch that lets every worker run one message with `depth` settling.
    pub fn prefetch_for(&self, depth: usize) -> u16 {
        let n = self
            .concurrency
            .saturating_mul(1 + depth)
            .max(self.min_prefetch);
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// Records one message; returns the new prefetch when the depth changed.
    pub fn observe(&self, head: Duration, settle: Duration) -> Option<u16> {
        let head = average(&self.head_us, head);
        let settle = average(&self.settle_us, settle);
        let seen = self.since_change.fetch_add(1, Ordering::Relaxed) + 1;
        let current = self.depth();
        let desired = desired_depth(head, settle, self.max);
        if desired == current || (desired != 0 && seen < SETTLE_AFTER) {
            return None;
        }
        self.depth.store(desired, Ordering::Relaxed);
        self.since_change.store(0, Ordering::Relaxed);
        Some(self.prefetch_for(desired))
    }
}

/// Folds `sample` into the moving average kept in `slot` (µs; 0 = no sample yet).
fn average(slot: &AtomicU64, sample: Duration) -> Duration {
    let x = sample.as_secs_f64() * 1e6;
    let old = slot.load(Ordering::Relaxed) as f64;
    let new = if old == 0.0 {
        x
    } else {
        old + ALPHA * (x - old)
    };
    slot.store(new.max(1.0) as u64, Ordering::Relaxed);
    Duration::from_micros(new as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn depth_covers_the_settle_time_with_the_handler_time() {
        assert_eq!(desired_depth(MS, 3 * MS, 4), 3);
        assert_eq!(desired_depth(MS, 10 * MS, 4), 4, "capped at the ceiling");
        assert_eq!(
            desired_depth(MS, MS / 10, 4),
            1,
            "never below one for a fast handler"
        );
        assert_eq!(desired_depth(MS / 2, MS, 4), 2);
        assert_eq!(desired_depth(Duration::ZERO, MS, 4), 4);
    }

    #[test]
    fn slow_handlers_and_a_zero_ceiling_get_no_pipeline() {
        assert_eq!(desired_depth(SLOW_HANDLER, 50 * MS, 4), 0);
        assert_eq!(desired_depth(2 * SLOW_HANDLER, Duration::ZERO, 4), 0);
        assert_eq!(desired_depth(MS, 3 * MS, 0), 0);
    }

    #[test]
    fn raises_only_after_enough_samples_and_reports_the_prefetch() {
        let t = Tuner::new(4, 1, 1);
        assert_eq!((t.depth(), t.prefetch_for(t.depth())), (1, 2));
        for _ in 0..SETTLE_AFTER - 1 {
            assert_eq!(t.observe(MS / 4, 2 * MS), None);
        }
        assert_eq!(t.observe(MS / 4, 2 * MS), Some(5));
        assert_eq!(t.depth(), 4);
        // Stable: no further changes.
        for _ in 0..20 {
            assert_eq!(t.observe(MS / 4, 2 * MS), None);
        }
    }

    #[test]
    fn a_slow_handler_drops_to_no_pipeline_at_once_and_recovers() {
        let t = Tuner::new(4, 2, 1);
        assert_eq!(
            t.observe(2 * SLOW_HANDLER, MS),
            Some(2),
            "2 workers, prefetch 1 each"
        );
        assert_eq!(t.depth(), 0);
        // The average has to come down below the threshold, then wait out the samples.
        let mut raised = None;
        for i in 0..100 {
            if let Some(p) = t.observe(MS, 2 * MS) {
                raised = Some((i, p));
                break;
            }
        }
        let (i, p) = raised.expect("raised again for a fast handler");
        assert!(i >= SETTLE_AFTER as usize - 1, "raised after {i} samples");
        assert_eq!(p, 2 * (1 + t.depth() as u16));
        assert!(t.depth() >= 1);
    }

    #[test]
    fn the_prefetch_floor_holds() {
        let t = Tuner::new(4, 1, 10);
        assert_eq!(t.prefetch_for(0), 10);
        assert_eq!(t.prefetch_for(4), 10);
        let t = Tuner::new(4, 1000, 1);
        assert_eq!(t.prefetch_for(100), u16::MAX);
    }
}
