//! Hand-off between a queue's background fetch task and the `receive` calls waiting on
//! that queue, for brokers whose read call must not be dropped half-way (NATS pull
//! requests, Redis `XREADGROUP`).
//!
//! Broker reads run in a spawned task, never in the `receive` future itself: a read
//! whose future is dropped may still hand a message to this consumer on the server (a
//! NATS pull request that is answered anyway, an `XREADGROUP` that claims the entry),
//! and that message would then stay unseen until the broker redelivers it. The task
//! instead puts what it read here, where the next `receive` finds it, so dropping a
//! `receive` loses nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::TransportError;

/// Items read for one queue and not yet handed to a `receive` call.
pub struct Inbox<T> {
    items: Mutex<VecDeque<(Instant, Result<T, TransportError>)>>,
    /// Woken on every push and on close.
    notify: Notify,
    waiters: AtomicUsize,
    fetching: AtomicBool,
    /// The fetch task last started, to abort when the transport closes or drops.
    task: Mutex<Option<AbortHandle>>,
}

/// Counts one waiting `receive` for as long as it lives.
pub struct Waiter<'a, T> {
    inbox: &'a Inbox<T>,
}

impl<T> Drop for Waiter<'_, T> {
    fn drop(&mut self) {
        self.inbox.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Inbox<T> {
    /// An empty inbox with no fetch task.
    pub fn new() -> Self {
        Inbox {
            items: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
            fetching: AtomicBool::new(false),
            task: Mutex::new(None),
        }
    }

    /// Registers a waiting `receive` until the guard drops.
    pub fn waiter(&self) -> Waiter<'_, T> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        Waiter { inbox: self }
    }

    /// The body of a cancel-safe `receive`: waits as a registered waiter until an item
    /// younger than `max_age` is here. `check` runs before every look (it fails once the
    /// transport is closed); `start_fetch` is called whenever this call claims the
    /// fetch slot and must spawn the fetch task, whose handle it returns.
    pub async fn next(
        &self,
        max_age: Duration,
        check: impl Fn() -> Result<(), TransportError>,
        mut start_fetch: impl FnMut() -> AbortHandle,
    ) -> Result<T, TransportError> {
        let _waiter = self.waiter();
        loop {
            // Armed before looking, so a push between the look and the wait still wakes.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            check()?;
            if let Some(item) = self.pop(max_age) {
                return item;
            }
            if self.start_fetching() {
                let task = start_fetch();
                *lock(&self.task) = Some(task);
            }
            notified.await;
        }
    }

    /// The oldest item. Messages held longer than `max_age` are dropped: the broker has
    /// made them receivable again by now, possibly to another consumer.
    pub fn pop(&self, max_age: Duration) -> Option<Result<T, TransportError>> {
        let mut items = lock(&self.items);
        while let Some((at, item)) = items.pop_front() {
            if item.is_ok() && at.elapsed() >= max_age {
                tracing::debug!("dropping a message held past the visibility timeout");
                continue;
            }
            return Some(item);
        }
        None
    }

    /// Adds an item and wakes the waiters.
    pub fn push(&self, item: Result<T, TransportError>) {
        lock(&self.items).push_back((Instant::now(), item));
        self.notify.notify_waiters();
    }

    /// Takes every held message (at close).
    pub fn drain(&self) -> Vec<T> {
        lock(&self.items)
            .drain(..)
            .filter_map(|(_, item)| item.ok())
            .collect()
    }

    /// More waiters than held items: the fetch task should read on.
    pub fn want_more(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > lock(&self.items).len()
    }

    /// Claims the fetch task slot; `true` means the caller must start the task.
    pub fn start_fetching(&self) -> bool {
        !self.fetching.swap(true, Ordering::SeqCst)
    }

    /// Called by the fetch task when nobody wants more. Returns `true` if it must go on
    /// after all: a waiter arrived after the check and saw the slot still taken.
    pub fn stop_fetching(&self) -> bool {
        self.fetching.store(false, Ordering::SeqCst);
        self.want_more() && self.start_fetching()
    }

    /// Asked by the fetch task before each read: `true` while waiters want more, and
    /// `false` once it has released the slot (it must end then).
    pub fn fetch_on(&self) -> bool {
        self.want_more() || self.stop_fetching()
    }

    /// Releases the fetch slot for good (the task ends because the transport closed).
    pub fn abandon(&self) {
        self.fetching.store(false, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Aborts the fetch task, if one runs, and releases its slot for good (the
    /// transport closes or drops).
    pub fn abort_fetch(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        self.abandon();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waiters_drive_the_fetch_slot() {
        let inbox: Inbox<u32> = Inbox::new();
        assert!(!inbox.want_more());
        let w = inbox.waiter();
        assert!(inbox.want_more());
        assert!(inbox.start_fetching());
        assert!(!inbox.start_fetching(), "one fetch task at a time");
        inbox.push(Ok(7));
        assert!(!inbox.want_more(), "one waiter, one item");
        assert!(!inbox.stop_fetching());
        assert_eq!(inbox.pop(Duration::from_secs(1)).unwrap().unwrap(), 7);
        assert!(inbox.want_more());
        assert!(inbox.stop_fetching(), "a waiter is left: the task goes on");
        drop(w);
        assert!(!inbox.stop_fetching());
    }

    #[test]
    fn stale_messages_are_dropped_errors_kept() {
        let inbox: Inbox<u32> = Inbox::new();
        inbox.push(Ok(1));
        inbox.push(Err(TransportError::Closed));
        assert!(matches!(
            inbox.pop(Duration::ZERO),
            Some(Err(TransportError::Closed))
        ));
        assert!(inbox.pop(Duration::ZERO).is_none());
        inbox.push(Ok(2));
        assert_eq!(inbox.drain(), vec![2]);
    }

    #[tokio::test]
    async fn next_starts_one_fetch_and_a_dropped_wait_loses_nothing() {
        let inbox: Arc<Inbox<u32>> = Arc::new(Inbox::new());
        let starts = AtomicUsize::new(0);
        let fetch = || {
            starts.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async {}).abort_handle()
        };
        let wait = inbox.next(Duration::from_secs(60), || Ok(()), fetch);
        assert!(tokio::time::timeout(Duration::from_millis(20), wait)
            .await
            .is_err());
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert!(!inbox.want_more(), "the dropped wait no longer counts");
        // The fetch task delivers after the wait was dropped: the item stays here.
        inbox.push(Ok(3));
        assert!(!inbox.fetch_on(), "nobody waits: the task ends");
        let got = inbox.next(Duration::from_secs(60), || Ok(()), fetch).await;
        assert_eq!(got.unwrap(), 3);
        assert_eq!(
            starts.load(Ordering::SeqCst),
            1,
            "an item was waiting: no fetch started"
        );
        let closed = inbox
            .next(
                Duration::from_secs(60),
                || Err(TransportError::Closed),
                || unreachable!("closed: no fetch"),
            )
            .await;
        assert!(matches!(closed, Err(TransportError::Closed)));
        inbox.abort_fetch();
        assert!(inbox.start_fetching(), "the slot is free again");
    }
}
