//! In-memory [`TaskStore`] with indexes for listing order, children and deadlines, so
//! lookups by id are one hash probe and the backstop never scans every task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::status::TaskStatus;
use crate::store::{CasOutcome, ListFilter, StoreError, TaskPage, TaskStore};
use crate::task::Task;

/// Keeps every task in process memory (nothing is evicted).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<String, Entry>,
    /// Insertion sequence → id; iterated backwards for newest-first listing.
    order: BTreeMap<u64, String>,
    children: HashMap<String, Vec<String>>,
    /// Deadlines of tasks that the backstop may fail (pending or running).
    deadlines: BTreeSet<(OffsetDateTime, String)>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    task: Task,
}

fn backstop_key(task: &Task) -> Option<(OffsetDateTime, String)> {
    match task.status {
        TaskStatus::Pending | TaskStatus::Running => task.deadline().map(|d| (d, task.id.clone())),
        _ => None,
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored tasks.
    pub fn len(&self) -> usize {
        self.read().tasks.len()
    }

    /// True when no task is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while holding the lock cannot leave the maps half-updated in a way that
    // breaks invariants callers rely on, so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn insert(&self, task: Task) -> Result<bool, StoreError> {
        let mut g = self.write();
        if g.tasks.contains_key(&task.id) {
            return Ok(false);
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.order.insert(seq, task.id.clone());
        if let Some(p) = task.parent_id() {
            g.children
                .entry(p.to_owned())
                .or_default()
                .push(task.id.clone());
        }
        if let Some(k) = backstop_key(&task) {
            g.deadlines.insert(k);
        }
        g.tasks.insert(task.id.clone(), Entry { seq, task });
        Ok(true)
    }

    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        Ok(self.read().tasks.get(id).map(|e| e.task.clone()))
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, StoreError> {
        Ok(self.read().tasks.get(id).map(|e| e.task.status))
    }

    async fn compare_and_set(
        &self,
        expected: TaskStatus,
        task: Task,
    ) -> Result<CasOutcome, StoreError> {
        let mut g = self.write();
        let inner = &mut *g;
        let Some(entry) = inner.tasks.get_mut(&task.id) else {
            return Ok(CasOutcome::NotFound);
        };
        if entry.task.status != expected {
            return Ok(CasOutcome::Conflict);
        }
        if let Some(k) = backstop_key(&entry.task) {
            inner.deadlines.remove(&k);
        }
        if let Some(k) = backstop_key(&task) {
            inner.deadlines.insert(k);
        }
        entry.task = task;
        Ok(CasOutcome::Applied)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut g = self.write();
        let Some(entry) = g.tasks.remove(id) else {
            return Ok(false);
        };
        g.order.remove(&entry.seq);
        if let Some(k) = backstop_key(&entry.task) {
            g.deadlines.remove(&k);
        }
        if let Some(p) = entry.task.parent_id() {
            if let Some(kids) = g.children.get_mut(p) {
                kids.retain(|k| k != id);
                if kids.is_empty() {
                    g.children.remove(p);
                }
            }
        }
        Ok(true)
    }

    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError> {
        let g = self.read();
        let matches = |t: &Task| {
            !matches!(filter.status, Some(s) if s != t.status)
                && !matches!(filter.parent_id.as_deref(), Some(p) if t.parent_id() != Some(p))
        };
        let mut page = TaskPage::default();
        for id in g.order.values().rev() {
            let Some(e) = g.tasks.get(id) else { continue };
            if !matches(&e.task) {
                continue;
            }
            if page.total >= filter.offset && page.tasks.len() < filter.limit {
                page.tasks.push(e.task.clone());
            }
            page.total += 1;
        }
        Ok(page)
    }

    async fn children(&self, parent_id: &str) -> Result<Vec<Task>, StoreError> {
        let g = self.read();
        Ok(g.children
            .get(parent_id)
            .map(|kids| {
                kids.iter()
                    .filter_map(|k| g.tasks.get(k).map(|e| e.task.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn overdue(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Task>, StoreError> {
        let g = self.read();
        Ok(g.deadlines
            .iter()
            .take_while(|(d, _)| *d < now)
            .filter_map(|(_, id)| g.tasks.get(id).map(|e| e.task.clone()))
            .take(limit)
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::task::TaskData;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn task(id: &str, deadline: Option<&str>, parent: Option<&str>) -> Task {
        Task::new(
            id.into(),
            TaskData {
                deadline_at: deadline.map(str::to_owned),
                parent_id: parent.map(str::to_owned),
                ..TaskData::default()
            },
            T0,
        )
    }

    #[tokio::test]
    async fn children_and_delete_keep_indexes_consistent() {
        let s = MemoryStore::new();
        s.insert(task("p", None, None)).await.unwrap();
        s.insert(task("c1", None, Some("p"))).await.unwrap();
        s.insert(task("c2", None, Some("p"))).await.unwrap();
        let kids: Vec<_> = s
            .children("p")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(kids, ["c1", "c2"]);
        assert!(s.delete("c1").await.unwrap());
        assert!(!s.delete("c1").await.unwrap());
        let kids: Vec<_> = s
            .children("p")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(kids, ["c2"]);
        assert_eq!(s.list(&ListFilter::default()).await.unwrap().total, 2);
        assert!(s.children("none").await.unwrap().is_empty());
    }
}
