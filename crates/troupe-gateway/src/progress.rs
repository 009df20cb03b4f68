//! Progress math (gateway.md §2.4). Pure functions.
//!
//! The gateway derives progress from the posted route rather than trusting the
//! sidecar's `progress` field, so every sidecar (Asya's included) gets the same bar.

use crate::status::TaskStatus;

/// Weight of the current actor for a `received` event.
const RECEIVED_WEIGHT: f64 = 0.1;
/// Weight of the current actor for a `processing` event.
const PROCESSING_WEIGHT: f64 = 0.5;

/// Progress percent for a posted progress status, from the posted route's shape
/// (`prev_len`, whether `curr` is non-empty, `next_len`). `None` for statuses that
/// carry no progress, or an empty route.
pub fn progress_for(posted: &str, prev_len: usize, has_curr: bool, next_len: usize) -> Option<f64> {
    let prev = prev_len as f64;
    match posted {
        // input route: the current actor always counts as one step
        "received" | "processing" => {
            let w = if posted == "received" {
                RECEIVED_WEIGHT
            } else {
                PROCESSING_WEIGHT
            };
            let total = prev + 1.0 + next_len as f64;
            Some(clamp(100.0 * (prev + w) / total))
        }
        // output route: already advanced, `curr` may be empty at the end of the route
        "completed" => {
            let total = prev_len + usize::from(has_curr) + next_len;
            if total == 0 {
                return None;
            }
            Some(clamp(100.0 * prev / total as f64))
        }
        _ => None,
    }
}

/// The stored progress after an applied update: `succeeded` → 100; otherwise the
/// maximum of the previous and the new value (routes can grow at run time).
pub fn merge_progress(previous: Option<f64>, new: Option<f64>, status: TaskStatus) -> Option<f64> {
    if status == TaskStatus::Succeeded {
        return Some(100.0);
    }
    match (previous, new) {
        (Some(p), Some(n)) => Some(p.max(n)),
        (p, n) => p.or(n),
    }
}

fn clamp(v: f64) -> f64 {
    v.clamp(0.0, 100.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 0.05)
    }

    #[test]
    fn spec_example_route_a_b_c() {
        // input route of a: prev [], curr a, next [b, c]
        assert!(close(progress_for("received", 0, true, 2), 3.3));
        assert!(close(progress_for("processing", 0, true, 2), 16.7));
        // output route of a: prev [a], curr b, next [c]
        assert!(close(progress_for("completed", 1, true, 1), 33.3));
        // input route of b: prev [a], curr b, next [c]
        assert!(close(progress_for("processing", 1, true, 1), 50.0));
        assert!(close(progress_for("received", 1, true, 1), 36.7));
        // output route of c: prev [a, b, c], curr "", next []
        assert!(close(progress_for("completed", 3, false, 0), 100.0));
    }

    #[test]
    fn exact_values() {
        assert_eq!(progress_for("received", 0, true, 0), Some(10.0));
        assert_eq!(progress_for("processing", 0, true, 0), Some(50.0));
        assert_eq!(progress_for("completed", 1, false, 0), Some(100.0));
        assert_eq!(progress_for("completed", 1, true, 0), Some(50.0));
        assert_eq!(progress_for("completed", 0, true, 3), Some(0.0));
        assert_eq!(progress_for("processing", 3, true, 0), Some(87.5));
    }

    #[test]
    fn received_ignores_has_curr_because_input_route_counts_current_actor() {
        assert_eq!(
            progress_for("received", 2, false, 1),
            progress_for("received", 2, true, 1)
        );
    }

    #[test]
    fn no_progress_for_other_statuses_or_empty_route() {
        for s in ["running", "succeeded", "failed", "paused", "canceled", "x"] {
            assert_eq!(progress_for(s, 1, true, 1), None, "{s}");
        }
        assert_eq!(progress_for("completed", 0, false, 0), None);
    }

    #[test]
    fn always_within_bounds() {
        for prev in 0..6 {
            for next in 0..6 {
                for curr in [false, true] {
                    for s in ["received", "processing", "completed"] {
                        if let Some(p) = progress_for(s, prev, curr, next) {
                            assert!((0.0..=100.0).contains(&p), "{s} {prev} {curr} {next}: {p}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn merge_keeps_maximum_and_succeeded_is_100() {
        use TaskStatus::*;
        assert_eq!(merge_progress(Some(50.0), Some(33.3), Running), Some(50.0));
        assert_eq!(merge_progress(Some(20.0), Some(33.3), Running), Some(33.3));
        assert_eq!(merge_progress(None, Some(3.0), Running), Some(3.0));
        assert_eq!(merge_progress(Some(3.0), None, Running), Some(3.0));
        assert_eq!(merge_progress(None, None, Running), None);
        assert_eq!(merge_progress(Some(40.0), None, Succeeded), Some(100.0));
        assert_eq!(merge_progress(None, None, Succeeded), Some(100.0));
        assert_eq!(merge_progress(Some(40.0), None, Failed), Some(40.0));
        assert_eq!(merge_progress(Some(40.0), None, Canceled), Some(40.0));
        assert_eq!(merge_progress(Some(40.0), Some(60.0), Paused), Some(60.0));
    }
}
