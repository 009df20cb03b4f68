//! Task storage seam (gateway.md §1 "Storage"): compare-and-set on `status` and an
//! overdue query are all a backend must offer. [`MemoryStore`] is the in-process one.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::status::TaskStatus;
use crate::task::Task;

pub use crate::memory::MemoryStore;

/// A storage backend failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation.
    #[error("task store unavailable: {0}; check the store's connection settings")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("task store holds an unreadable record for '{id}': {reason}")]
    Corrupt {
        /// Task id.
        id: String,
        /// What was wrong.
        reason: String,
    },
}

/// Result of [`TaskStore::compare_and_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// The record had the expected status and was replaced.
    Applied,
    /// The record's status differed; nothing was written (re-read and re-evaluate).
    Conflict,
    /// No record with that id.
    NotFound,
}

/// Filters and paging for [`TaskStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only children of this task.
    pub parent_id: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Items to skip (newest first).
    pub offset: usize,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            status: None,
            parent_id: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// One page of [`TaskStore::list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPage {
    /// Matching tasks on this page, newest first.
    pub tasks: Vec<Task>,
    /// Number of matching tasks before paging.
    pub total: usize,
}

/// Task storage. Every write of an existing record is a compare-and-set on its status,
/// so replicas and concurrent sidecar posts never move a task backwards.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Inserts a new record; `false` (and nothing written) when the id exists.
    async fn insert(&self, task: Task) -> Result<bool, StoreError>;

    /// The record, if any.
    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError>;

    /// Only the status (cheap pre-flight lookups).
    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, StoreError>;

    /// Replaces the record `task.id` with `task` iff its stored status is `expected`.
    async fn compare_and_set(
        &self,
        expected: TaskStatus,
        task: Task,
    ) -> Result<CasOutcome, StoreError>;

    /// Deletes a record; `false` when there was none.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Filtered page, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError>;

    /// Every child registered under `parent_id`.
    async fn children(&self, parent_id: &str) -> Result<Vec<Task>, StoreError>;

    /// Up to `limit` tasks that are `pending` or `running` with `deadline_at < now`.
    async fn overdue(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Task>, StoreError>;

    /// Succeeds when the backend is reachable (`/ready`).
    async fn ping(&self) -> Result<(), StoreError>;
}
