//! Task status model (gateway.md §2.3): ranks, normalisation of posted statuses and
//! the apply/stale decision. Pure functions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stored task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Created, not yet picked up by any actor.
    Pending,
    /// Some actor reported progress.
    Running,
    /// Waiting for human input (resumable when it carries pause metadata).
    Paused,
    /// Finished successfully (terminal).
    Succeeded,
    /// Finished with an error or timed out (terminal).
    Failed,
    /// Canceled through the gateway (terminal).
    Canceled,
}

impl TaskStatus {
    /// Every status, in rank order.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Paused,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Canceled,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Paused => "paused",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
        }
    }

    /// Parses a stored status string (not a posted progress status; see [`normalise`]).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Rank: pending 0 < running 1 < paused 2 < terminal 3.
    pub fn rank(self) -> u8 {
        match self {
            TaskStatus::Pending => 0,
            TaskStatus::Running => 1,
            TaskStatus::Paused => 2,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Canceled => 3,
        }
    }

    /// True for succeeded, failed and canceled.
    pub fn is_terminal(self) -> bool {
        self.rank() == 3
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps a status posted by a sidecar to the status to store, or `None` when the
/// event is to be ignored. `has_pause_metadata` = `data.pause_metadata` is present.
pub fn normalise(posted: &str, has_pause_metadata: bool) -> Option<TaskStatus> {
    match posted {
        "completed" if has_pause_metadata => Some(TaskStatus::Paused),
        "received" | "processing" | "completed" => Some(TaskStatus::Running),
        other => TaskStatus::parse(other),
    }
}

/// Whether an update from `current` to `new` is applied (otherwise it is stale):
/// strictly higher rank, or a running → running progress refresh.
pub fn should_apply(current: TaskStatus, new: TaskStatus) -> bool {
    new.rank() > current.rank() || (new == TaskStatus::Running && current == TaskStatus::Running)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::TaskStatus::*;
    use super::*;

    #[test]
    fn ranks_order_statuses() {
        assert_eq!(Pending.rank(), 0);
        assert_eq!(Running.rank(), 1);
        assert_eq!(Paused.rank(), 2);
        for t in [Succeeded, Failed, Canceled] {
            assert_eq!(t.rank(), 3);
            assert!(t.is_terminal());
        }
        for t in [Pending, Running, Paused] {
            assert!(!t.is_terminal());
        }
    }

    #[test]
    fn parse_round_trips_and_rejects_progress_statuses() {
        for st in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(st.as_str()), Some(st));
            assert_eq!(st.to_string(), st.as_str());
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        for s in [
            "received",
            "processing",
            "completed",
            "",
            "RUNNING",
            "auth_required",
        ] {
            assert_eq!(TaskStatus::parse(s), None, "{s}");
        }
    }

    #[test]
    fn normalise_table() {
        let cases: &[(&str, bool, Option<TaskStatus>)] = &[
            ("received", false, Some(Running)),
            ("processing", false, Some(Running)),
            ("completed", false, Some(Running)),
            ("completed", true, Some(Paused)),
            // pause metadata only turns `completed` into paused
            ("received", true, Some(Running)),
            ("processing", true, Some(Running)),
            ("running", false, Some(Running)),
            ("running", true, Some(Running)),
            ("paused", false, Some(Paused)),
            ("succeeded", false, Some(Succeeded)),
            ("succeeded", true, Some(Succeeded)),
            ("failed", false, Some(Failed)),
            ("canceled", false, Some(Canceled)),
            ("pending", false, Some(Pending)),
            ("cancelled", false, None),
            ("retrying", false, None),
            ("", false, None),
            ("Completed", false, None),
        ];
        for (posted, pm, want) in cases {
            assert_eq!(normalise(posted, *pm), *want, "{posted} pm={pm}");
        }
    }

    #[test]
    fn apply_matrix_is_exhaustive() {
        for cur in TaskStatus::ALL {
            for new in TaskStatus::ALL {
                let want = match (cur, new) {
                    (Running, Running) => true,
                    _ => new.rank() > cur.rank(),
                };
                assert_eq!(should_apply(cur, new), want, "{cur} -> {new}");
            }
        }
    }

    #[test]
    fn terminal_never_changes_and_paused_never_goes_back_by_event() {
        for cur in [Succeeded, Failed, Canceled] {
            for new in TaskStatus::ALL {
                assert!(!should_apply(cur, new), "{cur} -> {new}");
            }
        }
        assert!(!should_apply(Paused, Running));
        assert!(!should_apply(Paused, Paused));
        assert!(should_apply(Paused, Failed));
        assert!(should_apply(Pending, Running));
        assert!(should_apply(Running, Paused));
        assert!(!should_apply(Pending, Pending));
    }
}
