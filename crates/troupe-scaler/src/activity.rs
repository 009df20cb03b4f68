//! The source of truth for "does this queue need a consumer": per queue, active means
//! `depth.ready + depth.in_flight > 0` (the backlog, [`QueueDepth::backlog`]).
//!
//! Two halves, like the embedded queue's `state.rs`:
//! - [`Activity`] decides, without I/O: it is fed observations (depth samples, arrival
//!   notices) and answers what to push to KEDA and when to sample next.
//! - [`Watchers`] does the I/O: one task per queue that some `StreamIsActive` stream
//!   watches (and only those), which learns of new messages from the transport's
//!   [`Transport::arrivals`] broadcast where it has one, else by polling
//!   [`Transport::depth`] every `poll_interval`; it stops when its last stream closes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch, Mutex};
use tokio::time::Instant;
use troupe_transport::{QueueDepth, Transport, TransportError};

/// Default time between depth samples of a watched queue.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Whether a queue with `depth` needs a consumer. A transport that cannot count its
/// backlog (`counts_backlog == false`, Pub/Sub) is always active: an autoscaler must then
/// keep one consumer running ([`Transport::counts_backlog`]).
pub fn is_active(depth: QueueDepth, counts_backlog: bool) -> bool {
    !counts_backlog || depth.backlog() > 0
}

/// One thing learnt about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A depth sample.
    Depth(QueueDepth),
    /// The transport announced that a message became receivable on the queue.
    Arrival,
    /// The queue does not exist (yet): nothing can be waiting on it.
    Missing,
}

/// What KEDA has been told about one queue, and what to tell it next. No I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    counts_backlog: bool,
    told: Option<bool>,
}

impl Activity {
    /// A queue nothing is known about yet; `counts_backlog` as [`is_active`] takes it.
    pub fn new(counts_backlog: bool) -> Self {
        Activity {
            counts_backlog,
            told: None,
        }
    }

    /// What KEDA was last told (`None` before the first observation).
    pub fn told(&self) -> Option<bool> {
        self.told
    }

    /// Feeds one observation; `Some(active)` when KEDA must be told (the first
    /// observation always, then each change), `None` when nothing changed.
    pub fn observe(&mut self, observation: Observation) -> Option<bool> {
        let active = match observation {
            Observation::Depth(d) => is_active(d, self.counts_backlog),
            // A message became receivable: active now, before any sample confirms it.
            Observation::Arrival => true,
            Observation::Missing => !self.counts_backlog,
        };
        if self.told == Some(active) {
            return None;
        }
        self.told = Some(active);
        Some(active)
    }

    /// How long until the next depth sample: `interval` while one is needed, `None`
    /// when the transport announces arrivals (`arrivals`) and the queue is idle, so
    /// only an arrival can change the answer and no polling is needed. An active queue
    /// is always sampled: a drain announces nothing.
    pub fn next_sample(&self, interval: Duration, arrivals: bool) -> Option<Duration> {
        match (arrivals, self.told) {
            (true, Some(false)) => None,
            _ => Some(interval),
        }
    }
}

/// The per-queue activity channels and the tasks that feed them.
pub struct Watchers {
    transport: Arc<dyn Transport>,
    poll_interval: Duration,
    queues: Mutex<HashMap<String, watch::Sender<Option<bool>>>>,
}

impl Watchers {
    /// Watchers over `transport`, sampling each watched queue every `poll_interval`
    /// (when it must poll).
    pub fn new(transport: Arc<dyn Transport>, poll_interval: Duration) -> Arc<Self> {
        Arc::new(Watchers {
            transport,
            poll_interval,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// The transport watched.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Subscribes to `queue`'s activity, starting its watcher task if it has none. The
    /// receiver holds `None` until the first sample, then each value pushed; the watcher
    /// stops once every receiver of the queue is dropped.
    pub async fn watch(self: &Arc<Self>, queue: &str) -> watch::Receiver<Option<bool>> {
        let mut queues = self.queues.lock().await;
        if let Some(tx) = queues.get(queue) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        queues.insert(queue.to_owned(), tx.clone());
        tokio::spawn(Arc::clone(self).run(queue.to_owned(), tx));
        rx
    }

    /// The queues watched now, sorted.
    pub async fn watched(&self) -> Vec<String> {
        let mut q: Vec<String> = self.queues.lock().await.keys().cloned().collect();
        q.sort();
        q
    }

    /// Forgets `queue` if nobody watches it any more (checked under the lock, so a
    /// stream that subscribed meanwhile keeps it); `true` when the watcher must stop.
    async fn release(&self, queue: &str, tx: &watch::Sender<Option<bool>>) -> bool {
        let mut queues = self.queues.lock().await;
        if tx.receiver_count() > 0 {
            return false;
        }
        queues.remove(queue);
        true
    }

    /// Samples the depth; `None` (after a WARN on the first of a run of failures) when
    /// the broker did not answer, so the last answer stands.
    async fn sample(&self, queue: &str, failing: &mut bool) -> Option<Observation> {
        match self.transport.depth(queue).await {
            Ok(d) => {
                *failing = false;
                Some(Observation::Depth(d))
            }
            Err(TransportError::NoSuchQueue(_)) => {
                *failing = false;
                Some(Observation::Missing)
            }
            Err(e) => {
                if !*failing {
                    tracing::warn!(queue, error = %e, "push scaler: cannot read the queue depth; keeping the last answer and retrying");
                }
                *failing = true;
                None
            }
        }
    }

    /// One queue's watcher: samples, listens for arrivals, pushes changes into `tx`.
    async fn run(self: Arc<Self>, queue: String, tx: watch::Sender<Option<bool>>) {
        let mut arrivals = self.transport.arrivals();
        let mut activity = Activity::new(self.transport.counts_backlog());
        let mut failing = false;
        let mut sample_now = true;
        let mut next_at: Option<Instant> = None;
        tracing::debug!(queue, "push scaler: watching");
        loop {
            if sample_now {
                sample_now = false;
                if let Some(o) = self.sample(&queue, &mut failing).await {
                    if let Some(active) = activity.observe(o) {
                        tracing::debug!(queue, active, "push scaler: activity changed");
                        tx.send_replace(Some(active));
                    }
                }
                // After a failed sample the queue is sampled again on the interval.
                let wait = if failing {
                    Some(self.poll_interval)
                } else {
                    activity.next_sample(self.poll_interval, arrivals.is_some())
                };
                next_at = wait.map(|w| Instant::now() + w);
            }
            tokio::select! {
                () = tx.closed() => {
                    if self.release(&queue, &tx).await {
                        tracing::debug!(queue, "push scaler: no stream left, stopping");
                        return;
                    }
                }
                () = sleep_until(next_at) => sample_now = true,
                got = recv(&mut arrivals) => match got {
                    Ok(q) if *q == *queue => {
                        if let Some(active) = activity.observe(Observation::Arrival) {
                            tracing::debug!(queue, active, "push scaler: arrival");
                            tx.send_replace(Some(active));
                            // From now on the queue is sampled until it drains.
                            sample_now = true;
                        }
                    }
                    Ok(_) => {}
                    // Missed notices: only a sample can say what happened.
                    Err(broadcast::error::RecvError::Lagged(_)) => sample_now = true,
                    Err(broadcast::error::RecvError::Closed) => {
                        arrivals = None;
                        sample_now = true;
                    }
                },
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv(
    rx: &mut Option<broadcast::Receiver<Arc<str>>>,
) -> Result<Arc<str>, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn depth(ready: u64, in_flight: u64) -> Observation {
        Observation::Depth(QueueDepth {
            ready,
            delayed: 0,
            in_flight,
        })
    }

    #[test]
    fn the_first_sample_is_always_pushed_then_only_changes() {
        let mut a = Activity::new(true);
        assert_eq!(a.told(), None);
        assert_eq!(
            a.observe(depth(0, 0)),
            Some(false),
            "KEDA gets the state at once"
        );
        assert_eq!(a.observe(depth(0, 0)), None);
        assert_eq!(a.observe(depth(1, 0)), Some(true), "a message arrived");
        assert_eq!(a.observe(depth(3, 0)), None);
        assert_eq!(
            a.observe(depth(0, 2)),
            None,
            "in flight still needs the consumer"
        );
        assert_eq!(a.observe(depth(0, 0)), Some(false), "drained");
        let mut b = Activity::new(true);
        assert_eq!(b.observe(depth(0, 1)), Some(true), "first sample active");
    }

    #[test]
    fn delayed_messages_alone_do_not_wake_the_actor() {
        let mut a = Activity::new(true);
        let delayed = Observation::Depth(QueueDepth {
            ready: 0,
            delayed: 4,
            in_flight: 0,
        });
        assert_eq!(a.observe(delayed), Some(false));
    }

    #[test]
    fn an_arrival_is_active_before_any_sample_and_a_drain_needs_one() {
        let mut a = Activity::new(true);
        assert_eq!(a.observe(depth(0, 0)), Some(false));
        assert_eq!(a.observe(Observation::Arrival), Some(true));
        assert_eq!(a.observe(Observation::Arrival), None);
        assert_eq!(a.observe(depth(1, 0)), None);
        assert_eq!(a.observe(depth(0, 0)), Some(false));
    }

    #[test]
    fn a_missing_queue_is_idle() {
        let mut a = Activity::new(true);
        assert_eq!(a.observe(Observation::Missing), Some(false));
        assert_eq!(a.observe(depth(2, 0)), Some(true));
        assert_eq!(a.observe(Observation::Missing), Some(false), "deleted");
    }

    #[test]
    fn a_transport_that_cannot_count_stays_active() {
        let mut a = Activity::new(false);
        assert_eq!(a.observe(depth(0, 0)), Some(true));
        assert_eq!(a.observe(Observation::Missing), None);
        assert_eq!(a.observe(depth(0, 0)), None);
    }

    #[test]
    fn polling_stops_only_while_idle_with_arrival_notices() {
        let i = Duration::from_millis(250);
        let mut a = Activity::new(true);
        assert_eq!(a.next_sample(i, true), Some(i), "nothing known yet");
        a.observe(depth(0, 0));
        assert_eq!(a.next_sample(i, true), None, "idle: arrivals will say");
        assert_eq!(a.next_sample(i, false), Some(i), "no notices: poll");
        a.observe(Observation::Arrival);
        assert_eq!(
            a.next_sample(i, true),
            Some(i),
            "active: poll for the drain"
        );
    }
}
