//! Live event fan-out to SSE subscribers (gateway.md §2.8), per task id.
//!
//! Each subscriber owns a bounded queue. A full queue drops FLY events for that
//! subscriber only; a status event that does not fit closes its stream instead
//! (the client reconnects and catches up), so a slow client never blocks a publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// What an event is, for the overflow rule and end-of-stream detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A status event; `terminal` closes the stream after it.
    Status {
        /// The status is succeeded, failed or canceled.
        terminal: bool,
    },
    /// A FLY event (never stored).
    Fly,
}

impl EventKind {
    /// SSE `event:` name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::Status { .. } => "status",
            EventKind::Fly => "fly",
        }
    }
}

/// An event with its JSON data, serialised once for all subscribers.
#[derive(Debug, Clone)]
pub(crate) struct HubEvent {
    pub(crate) kind: EventKind,
    pub(crate) data: Arc<str>,
}

struct Sub {
    key: u64,
    tx: mpsc::Sender<HubEvent>,
}

/// Subscribers by task id.
pub(crate) struct EventHub {
    subs: Mutex<HashMap<String, Vec<Sub>>>,
    next_key: AtomicU64,
    buffer: usize,
}

/// A live subscription; unsubscribes when dropped.
pub(crate) struct Subscription {
    pub(crate) rx: mpsc::Receiver<HubEvent>,
    _guard: SubGuard,
}

struct SubGuard {
    hub: Arc<EventHub>,
    id: String,
    key: u64,
}

impl Drop for SubGuard {
    fn drop(&mut self) {
        self.hub.remove(&self.id, self.key);
    }
}

impl EventHub {
    /// A hub whose subscribers buffer up to `buffer` events each.
    pub(crate) fn new(buffer: usize) -> Arc<Self> {
        Arc::new(EventHub {
            subs: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            buffer: buffer.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Sub>>> {
        self.subs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to the live events of `id`.
    pub(crate) fn subscribe(self: &Arc<Self>, id: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(id.to_owned())
            .or_default()
            .push(Sub { key, tx });
        Subscription {
            rx,
            _guard: SubGuard {
                hub: Arc::clone(self),
                id: id.to_owned(),
                key,
            },
        }
    }

    /// Number of live subscribers of `id`.
    pub(crate) fn subscriber_count(&self, id: &str) -> usize {
        self.lock().get(id).map_or(0, Vec::len)
    }

    /// Publishes to the subscribers of `id`; `data` is only built when there are any.
    pub(crate) fn publish(&self, id: &str, kind: EventKind, data: impl FnOnce() -> String) {
        let mut subs = self.lock();
        let Some(list) = subs.get_mut(id) else { return };
        let event = HubEvent {
            kind,
            data: Arc::from(data()),
        };
        list.retain(|sub| match sub.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let keep = kind == EventKind::Fly;
                if !keep {
                    tracing::debug!(
                        task = id,
                        "SSE subscriber too slow for a status event; closing its stream"
                    );
                }
                keep
            }
            Err(TrySendError::Closed(_)) => false,
        });
        if list.is_empty() {
            subs.remove(id);
        }
    }

    fn remove(&self, id: &str, key: u64) {
        let mut subs = self.lock();
        if let Some(list) = subs.get_mut(id) {
            list.retain(|s| s.key != key);
            if list.is_empty() {
                subs.remove(id);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const RUNNING: EventKind = EventKind::Status { terminal: false };

    #[tokio::test]
    async fn delivers_to_subscribers_of_the_id_only() {
        let hub = EventHub::new(10);
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.publish("a", RUNNING, || "{\"x\":1}".into());
        let ev = a.rx.recv().await.unwrap();
        assert_eq!(ev.kind, RUNNING);
        assert_eq!(&*ev.data, "{\"x\":1}");
        assert!(b.rx.try_recv().is_err());
    }

    #[test]
    fn no_subscribers_means_no_serialisation() {
        let hub = EventHub::new(10);
        hub.publish("nobody", EventKind::Fly, || {
            panic!("data built without subscribers")
        });
    }

    #[test]
    fn full_buffer_drops_fly_but_keeps_subscriber() {
        let hub = EventHub::new(2);
        let mut s = hub.subscribe("a");
        for i in 0..5 {
            hub.publish("a", EventKind::Fly, || i.to_string());
        }
        assert_eq!(hub.subscriber_count("a"), 1);
        assert_eq!(&*s.rx.try_recv().unwrap().data, "0");
        assert_eq!(&*s.rx.try_recv().unwrap().data, "1");
        assert!(s.rx.try_recv().is_err());
    }

    #[test]
    fn full_buffer_closes_on_status() {
        let hub = EventHub::new(2);
        let mut slow = hub.subscribe("a");
        let mut fast = hub.subscribe("a");
        hub.publish("a", EventKind::Fly, || "f1".into());
        hub.publish("a", EventKind::Fly, || "f2".into());
        fast.rx.try_recv().unwrap();
        fast.rx.try_recv().unwrap();
        hub.publish("a", RUNNING, || "s".into());
        assert_eq!(hub.subscriber_count("a"), 1);
        // the slow one drains what it had, then ends
        assert_eq!(&*slow.rx.try_recv().unwrap().data, "f1");
        assert_eq!(&*slow.rx.try_recv().unwrap().data, "f2");
        assert!(matches!(
            slow.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(&*fast.rx.try_recv().unwrap().data, "s");
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let hub = EventHub::new(2);
        let s1 = hub.subscribe("a");
        let s2 = hub.subscribe("a");
        assert_eq!(hub.subscriber_count("a"), 2);
        drop(s1);
        assert_eq!(hub.subscriber_count("a"), 1);
        drop(s2);
        assert_eq!(hub.subscriber_count("a"), 0);
        assert!(hub.lock().is_empty());
    }
}
