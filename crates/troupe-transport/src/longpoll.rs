//! Cancel-safe receiving from brokers whose receive call is a long poll over HTTP.
//!
//! Dropping an HTTP request in the middle of a long poll can lose a message to the
//! dropped request: the broker hands it out and it stays invisible until its visibility
//! timeout. So `receive` never owns the request. One background puller per queue runs
//! the long polls while someone is waiting and parks what it gets in a small buffer; a
//! receiver takes from the buffer. A receiver that is dropped leaves the message in the
//! buffer for the next receive on the same transport.
//!
//! The puller fetches only as many messages as there are waiting receivers (minus what
//! is already buffered), so a transport never hoards messages that other consumers could
//! take; at most one long poll per queue runs at a time.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::TransportError;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One fetch: at most `demand` messages (possibly none), or the error that ended the
/// fetcher's own retries.
pub type Fetch<M> = Arc<
    dyn Fn(usize) -> Pin<Box<dyn Future<Output = Result<Vec<M>, TransportError>> + Send>>
        + Send
        + Sync,
>;

/// The buffer and puller of one queue.
pub struct Inbox<M> {
    state: Mutex<State<M>>,
    notify: Notify,
}

struct State<M> {
    /// Fetched, not yet handed out, with the time they were fetched.
    ready: VecDeque<(M, Instant)>,
    /// Receivers waiting now.
    waiters: usize,
    /// The running puller, if any.
    puller: Option<JoinHandle<()>>,
    /// Why the last puller gave up, for the next waiting receiver.
    error: Option<TransportError>,
    closed: bool,
}

impl<M: Send + 'static> Inbox<M> {
    /// An empty inbox with no puller.
    pub fn new() -> Arc<Self> {
        Arc::new(Inbox {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                waiters: 0,
                puller: None,
                error: None,
                closed: false,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next message and when it was fetched. Cancel-safe: a message is only taken
    /// out of the buffer in the same step that returns it.
    pub async fn next(self: &Arc<Self>, fetch: &Fetch<M>) -> Result<(M, Instant), TransportError> {
        let mut waiter = Waiter::register(self);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    waiter.leave(&mut st);
                    return Err(TransportError::Closed);
                }
                if let Some(item) = st.ready.pop_front() {
                    waiter.leave(&mut st);
                    return Ok(item);
                }
                if let Some(e) = st.error.take() {
                    waiter.leave(&mut st);
                    return Err(e);
                }
                if st.puller.is_none() {
                    st.puller = Some(tokio::spawn(pull(self.clone(), fetch.clone())));
                }
            }
            notified.await;
        }
    }

    /// The next message fetched less than `keep_for` ago (see [`keep_for`]); older ones
    /// are passed to `stale` (to log, or to forget their lease) and dropped, since the
    /// broker has made them receivable again by now. Cancel-safe as [`Inbox::next`].
    pub async fn next_fresh(
        self: &Arc<Self>,
        fetch: &Fetch<M>,
        keep_for: Duration,
        mut stale: impl FnMut(M),
    ) -> Result<M, TransportError> {
        loop {
            let (item, fetched) = self.next(fetch).await?;
            if fetched.elapsed() < keep_for {
                return Ok(item);
            }
            stale(item);
        }
    }

    /// Puts a message back at the front of the buffer.
    #[cfg(test)]
    pub fn unget(&self, item: M, fetched: Instant) {
        let mut st = self.lock();
        if !st.closed {
            st.ready.push_front((item, fetched));
        }
        drop(st);
        self.notify.notify_waiters();
    }

    /// Stops the puller, fails waiting receivers with `Closed` and returns the messages
    /// that were fetched but never handed out, so the caller can release them.
    pub fn close(&self) -> Vec<M> {
        let mut st = self.lock();
        st.closed = true;
        if let Some(p) = st.puller.take() {
            p.abort();
        }
        let left = st.ready.drain(..).map(|(m, _)| m).collect();
        drop(st);
        self.notify.notify_waiters();
        left
    }
}

/// How long a fetched message may wait in the buffer when the broker makes it
/// receivable again after `visibility`: a margin short of that (a quarter, 5 s at most),
/// since handing out a message that is already back with other consumers would only
/// make a duplicate.
pub fn keep_for(visibility: Duration) -> Duration {
    visibility.saturating_sub((visibility / 4).min(Duration::from_secs(5)))
}

/// The puller: fetches while receivers wait for more than the buffer holds.
async fn pull<M: Send + 'static>(inbox: Arc<Inbox<M>>, fetch: Fetch<M>) {
    loop {
        let demand = {
            let mut st = inbox.lock();
            let demand = st.waiters.saturating_sub(st.ready.len());
            if demand == 0 || st.closed {
                st.puller = None;
                return;
            }
            demand
        };
        let result = fetch(demand).await;
        {
            let mut st = inbox.lock();
            match result {
                Ok(items) => {
                    let now = Instant::now();
                    st.ready.extend(items.into_iter().map(|m| (m, now)));
                }
                Err(e) => {
                    // Only a receiver that is still waiting hears about it; a later one
                    // starts a fresh puller instead of getting a stale error.
                    if st.waiters > 0 {
                        st.error = Some(e);
                    }
                    st.puller = None;
                    drop(st);
                    inbox.notify.notify_waiters();
                    return;
                }
            }
        }
        inbox.notify.notify_waiters();
    }
}

/// Counts a receiver as waiting for as long as it is inside [`Inbox::next`].
struct Waiter<M: Send + 'static> {
    inbox: Arc<Inbox<M>>,
    left: bool,
}

impl<M: Send + 'static> Waiter<M> {
    fn register(inbox: &Arc<Inbox<M>>) -> Self {
        inbox.lock().waiters += 1;
        Waiter {
            inbox: inbox.clone(),
            left: false,
        }
    }

    /// Stops counting, under the lock the caller already holds, so the puller never sees
    /// a receiver that took its message as still waiting.
    fn leave(&mut self, st: &mut State<M>) {
        if !self.left {
            st.waiters -= 1;
            self.left = true;
        }
    }
}

impl<M: Send + 'static> Drop for Waiter<M> {
    fn drop(&mut self) {
        if !self.left {
            self.inbox.lock().waiters -= 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake broker: a queue of numbers; each fetch sleeps like a long poll.
    fn broker(items: Arc<Mutex<VecDeque<u32>>>, fetches: Arc<AtomicUsize>) -> Fetch<u32> {
        Arc::new(move |demand| {
            let items = items.clone();
            let fetches = fetches.clone();
            Box::pin(async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                loop {
                    {
                        let mut q = items.lock().unwrap();
                        if !q.is_empty() {
                            let n = demand.min(q.len());
                            return Ok(q.drain(..n).collect());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
    }

    #[test]
    fn keep_for_leaves_a_margin() {
        assert_eq!(keep_for(Duration::from_secs(8)), Duration::from_secs(6));
        assert_eq!(keep_for(Duration::from_secs(600)), Duration::from_secs(595));
        assert_eq!(keep_for(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn stale_messages_are_dropped() {
        let items = Arc::new(Mutex::new((0..3).collect::<VecDeque<u32>>()));
        let fetch = broker(items, Arc::new(AtomicUsize::new(0)));
        let inbox = Inbox::new();
        inbox.unget(9, Instant::now() - Duration::from_secs(10));
        let mut dropped = Vec::new();
        let got = inbox
            .next_fresh(&fetch, Duration::from_secs(5), |m| dropped.push(m))
            .await
            .unwrap();
        assert_eq!((got, dropped), (0, vec![9]));
    }

    #[tokio::test]
    async fn a_dropped_receive_loses_nothing() {
        let items = Arc::new(Mutex::new(VecDeque::new()));
        let fetch = broker(items.clone(), Arc::new(AtomicUsize::new(0)));
        let inbox = Inbox::new();
        // The receive gives up while the long poll is still running...
        let r = tokio::time::timeout(Duration::from_millis(50), inbox.next(&fetch)).await;
        assert!(r.is_err());
        // ...then the message arrives: it lands in the buffer, not in the void.
        items.lock().unwrap().push_back(7);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (got, _) = inbox.next(&fetch).await.unwrap();
        assert_eq!(got, 7);
    }

    #[tokio::test]
    async fn fetches_only_what_waiters_want() {
        let items = Arc::new(Mutex::new((0..10).collect::<VecDeque<u32>>()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let fetch = broker(items.clone(), fetches.clone());
        let inbox = Inbox::new();
        let (a, _) = inbox.next(&fetch).await.unwrap();
        let (b, _) = inbox.next(&fetch).await.unwrap();
        assert_eq!((a, b), (0, 1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            items.lock().unwrap().len(),
            8,
            "nothing prefetched beyond demand"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_reach_the_waiter_and_the_next_receive_retries() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let fetch: Fetch<u32> = Arc::new(move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    Err(TransportError::Closed)
                } else {
                    Ok(vec![42])
                }
            })
        });
        let inbox = Inbox::new();
        assert!(inbox.next(&fetch).await.is_err());
        assert_eq!(inbox.next(&fetch).await.unwrap().0, 42);
    }

    #[tokio::test]
    async fn close_wakes_waiters_and_returns_the_buffer() {
        let items = Arc::new(Mutex::new(VecDeque::new()));
        let fetch = broker(items.clone(), Arc::new(AtomicUsize::new(0)));
        let inbox = Inbox::new();
        inbox.unget(5, Instant::now());
        let waiting = {
            let inbox = inbox.clone();
            let fetch = fetch.clone();
            tokio::spawn(async move {
                // Takes the buffered 5, then waits on the empty broker.
                let first = inbox.next(&fetch).await.unwrap().0;
                (first, inbox.next(&fetch).await)
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        inbox.unget(6, Instant::now());
        // 6 may have been taken by the waiter already; closing returns it otherwise.
        let left = inbox.close();
        let (first, second) = waiting.await.unwrap();
        assert_eq!(first, 5);
        match second {
            Ok((6, _)) => assert!(left.is_empty()),
            Err(TransportError::Closed) => assert_eq!(left, vec![6]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
