//! Hand-off between a queue's background fetch task and the `receive` calls waiting on
//! that queue.
//!
//! Broker reads run in a spawned task, never in the `receive` future itself: a pull
//! request whose future is dropped may still have a message delivered to it, which would
//! then stay invisible until its AckWait ends. The task instead puts what it read here,
//! where the next `receive` finds it, so dropping a `receive` loses nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use troupe_transport::TransportError;

/// Items read for one queue and not yet handed to a `receive` call.
pub(crate) struct Inbox<T> {
    items: Mutex<VecDeque<(Instant, Result<T, TransportError>)>>,
    /// Woken on every push and on close.
    pub(crate) notify: Notify,
    waiters: AtomicUsize,
    fetching: AtomicBool,
}

/// Counts one waiting `receive` for as long as it lives.
pub(crate) struct Waiter<'a, T> {
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

impl<T> Inbox<T> {
    /// An empty inbox with no fetch task.
    pub(crate) fn new() -> Self {
        Inbox {
            items: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
            fetching: AtomicBool::new(false),
        }
    }

    /// Registers a waiting `receive` until the guard drops.
    pub(crate) fn waiter(&self) -> Waiter<'_, T> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        Waiter { inbox: self }
    }

    /// The oldest item. Messages held longer than `max_age` are dropped: the broker has
    /// made them receivable again by now, possibly to another consumer.
    pub(crate) fn pop(&self, max_age: Duration) -> Option<Result<T, TransportError>> {
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
    pub(crate) fn push(&self, item: Result<T, TransportError>) {
        lock(&self.items).push_back((Instant::now(), item));
        self.notify.notify_waiters();
    }

    /// Takes every held message (at close).
    pub(crate) fn drain(&self) -> Vec<T> {
        lock(&self.items)
            .drain(..)
            .filter_map(|(_, item)| item.ok())
            .collect()
    }

    /// More waiters than held items: the fetch task should read on.
    pub(crate) fn want_more(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > lock(&self.items).len()
    }

    /// Claims the fetch task slot; `true` means the caller must start the task.
    pub(crate) fn start_fetching(&self) -> bool {
        !self.fetching.swap(true, Ordering::SeqCst)
    }

    /// Called by the fetch task when nobody wants more. Returns `true` if it must go on
    /// after all: a waiter arrived after the check and saw the slot still taken.
    pub(crate) fn stop_fetching(&self) -> bool {
        self.fetching.store(false, Ordering::SeqCst);
        self.want_more() && self.start_fetching()
    }

    /// Releases the fetch slot for good (the task ends because the transport closed).
    pub(crate) fn abandon(&self) {
        self.fetching.store(false, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
}
