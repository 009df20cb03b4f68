//! In-memory index: per-queue ready FIFO, delayed heap and in-flight table, plus the
//! live-message accounting that decides when a segment file can be deleted.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use troupe_transport::{Delivery, DeliveryHandle, QueueDepth};

/// One stored message.
#[derive(Debug)]
pub(crate) struct Msg {
    /// Log-wide identity, written in send and ack records.
    pub(crate) seq: u64,
    /// Segment holding the send record.
    pub(crate) segment: u64,
    pub(crate) body: Bytes,
    /// Deliveries so far (in memory only).
    pub(crate) deliveries: u32,
}

#[derive(Debug)]
struct DelayedMsg {
    due: Instant,
    /// Tie-breaker that keeps equal due times in arrival order.
    order: u64,
    msg: Msg,
}

impl PartialEq for DelayedMsg {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for DelayedMsg {}
impl PartialOrd for DelayedMsg {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DelayedMsg {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

#[derive(Debug)]
struct InFlight {
    msg: Msg,
    deadline: Instant,
}

/// State of one queue.
#[derive(Debug)]
pub(crate) struct QueueState {
    pub(crate) name: Arc<str>,
    ready: VecDeque<Msg>,
    delayed: BinaryHeap<Reverse<DelayedMsg>>,
    /// Keyed by delivery tag. Tags grow with time and the visibility timeout is one
    /// constant, so the first entry always has the earliest deadline.
    in_flight: BTreeMap<u64, InFlight>,
    /// Wakes receivers waiting on this queue.
    pub(crate) notify: Arc<Notify>,
}

impl QueueState {
    fn new(name: Arc<str>) -> Self {
        QueueState {
            name,
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            in_flight: BTreeMap::new(),
            notify: Arc::new(Notify::new()),
        }
    }

    /// Moves due delayed messages and expired deliveries to ready; returns how many.
    fn promote(&mut self, now: Instant) -> usize {
        let mut moved = 0;
        // Expired deliveries go back to the front, oldest first, like a requeue.
        let mut expired = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            expired.push(entry.remove().msg);
        }
        for msg in expired.into_iter().rev() {
            self.ready.push_front(msg);
            moved += 1;
        }
        while let Some(Reverse(head)) = self.delayed.peek() {
            if head.due > now {
                break;
            }
            if let Some(Reverse(d)) = self.delayed.pop() {
                self.ready.push_back(d.msg);
                moved += 1;
            }
        }
        for _ in 0..moved {
            self.notify.notify_one();
        }
        moved
    }

    /// Earliest time something in this queue changes on its own.
    fn next_event(&self) -> Option<Instant> {
        let d = self.delayed.peek().map(|Reverse(d)| d.due);
        let v = self.in_flight.first_key_value().map(|(_, f)| f.deadline);
        match (d, v) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn depth(&self) -> QueueDepth {
        QueueDepth {
            ready: self.ready.len() as u64,
            delayed: self.delayed.len() as u64,
            in_flight: self.in_flight.len() as u64,
        }
    }
}

/// Bookkeeping for one segment file.
#[derive(Debug, Default)]
pub(crate) struct SegInfo {
    /// Messages whose send record is in this segment and that are not acked.
    pub(crate) live: u64,
    /// Older segments that this segment's ack records refer to: deleting this segment
    /// first would resurrect those acked messages on recovery.
    pub(crate) ack_targets: BTreeSet<u64>,
    /// The segment currently appended to.
    pub(crate) active: bool,
}

/// What a state change asks the caller to do once the lock is released.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Queues on which messages became receivable (for the arrivals broadcast).
    pub(crate) arrived: Vec<Arc<str>>,
    /// Segment files to delete, in this order.
    pub(crate) deletes: Vec<u64>,
    /// The timer must recompute its deadline.
    pub(crate) wake_timer: bool,
}

impl Effects {
    fn arrived(&mut self, q: &Arc<str>) {
        if !self.arrived.iter().any(|a| Arc::ptr_eq(a, q)) {
            self.arrived.push(q.clone());
        }
    }
}

/// Why an ack or nack was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HandleError {
    Unknown,
}

/// The whole in-memory index.
#[derive(Debug)]
pub(crate) struct State {
    /// Queues in creation order; never removed, so indices stay valid.
    queues: Vec<QueueState>,
    index: HashMap<Arc<str>, usize>,
    pub(crate) segments: BTreeMap<u64, SegInfo>,
    next_tag: u64,
    next_order: u64,
    /// Deadline the timer task sleeps towards (None: nothing scheduled).
    timer_target: Option<Instant>,
    visibility: Duration,
    pub(crate) closed: bool,
}

impl State {
    pub(crate) fn new(visibility: Duration) -> Self {
        State {
            queues: Vec::new(),
            index: HashMap::new(),
            segments: BTreeMap::new(),
            next_tag: 1,
            next_order: 0,
            timer_target: None,
            visibility,
            closed: false,
        }
    }

    pub(crate) fn queue_mut(&mut self, name: &str) -> &mut QueueState {
        let idx = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let name: Arc<str> = Arc::from(name);
                self.queues.push(QueueState::new(name.clone()));
                self.index.insert(name, self.queues.len() - 1);
                self.queues.len() - 1
            }
        };
        &mut self.queues[idx]
    }

    fn queue_get(&mut self, name: &str) -> Option<&mut QueueState> {
        let idx = *self.index.get(name)?;
        self.queues.get_mut(idx)
    }

    fn schedule(&mut self, at: Instant, fx: &mut Effects) {
        if !matches!(self.timer_target, Some(t) if t <= at) {
            self.timer_target = Some(at);
            fx.wake_timer = true;
        }
    }

    /// Adds a message whose send record is now written to `segment`.
    pub(crate) fn insert(
        &mut self,
        queue: &str,
        msg: Msg,
        due: Option<Instant>,
        now: Instant,
        fx: &mut Effects,
    ) {
        if let Some(seg) = self.segments.get_mut(&msg.segment) {
            seg.live += 1;
        }
        match due {
            Some(due) if due > now => {
                let order = self.next_order;
                self.next_order += 1;
                self.queue_mut(queue)
                    .delayed
                    .push(Reverse(DelayedMsg { due, order, msg }));
                self.schedule(due, fx);
            }
            _ => {
                let q = self.queue_mut(queue);
                q.ready.push_back(msg);
                q.notify.notify_one();
                let name = q.name.clone();
                fx.arrived(&name);
            }
        }
    }

    /// Promotes due messages in one queue (receive and depth do this so they never
    /// depend on the timer task having run).
    pub(crate) fn promote_queue(&mut self, queue: &str, now: Instant, fx: &mut Effects) {
        if let Some(q) = self.queue_get(queue) {
            if q.promote(now) > 0 {
                fx.arrived(&q.name.clone());
            }
        }
    }

    /// Promotes due messages everywhere; returns the next time anything is due.
    pub(crate) fn promote_all(&mut self, now: Instant, fx: &mut Effects) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for q in self.queues.iter_mut() {
            if q.promote(now) > 0 {
                fx.arrived(&q.name.clone());
            }
            if let Some(t) = q.next_event() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        self.timer_target = next;
        next
    }

    /// Takes the next ready message of `queue`, marking it in flight.
    pub(crate) fn take_ready(
        &mut self,
        queue: &str,
        now: Instant,
        fx: &mut Effects,
    ) -> Option<Delivery> {
        let deadline = now + self.visibility;
        let tag = self.next_tag;
        let idx = *self.index.get(queue)?;
        let q = self.queues.get_mut(idx)?;
        let mut msg = q.ready.pop_front()?;
        self.next_tag += 1;
        msg.deliveries = msg.deliveries.saturating_add(1);
        let delivery = Delivery {
            queue: q.name.clone(),
            body: msg.body.clone(),
            handle: DeliveryHandle::Seq(tag),
            delivery_count: Some(msg.deliveries),
        };
        q.in_flight.insert(tag, InFlight { msg, deadline });
        self.schedule(deadline, fx);
        Some(delivery)
    }

    fn take_in_flight(&mut self, queue: &str, handle: &DeliveryHandle) -> Result<Msg, HandleError> {
        let DeliveryHandle::Seq(tag) = handle else {
            return Err(HandleError::Unknown);
        };
        let q = self.queue_get(queue).ok_or(HandleError::Unknown)?;
        q.in_flight
            .remove(tag)
            .map(|f| f.msg)
            .ok_or(HandleError::Unknown)
    }

    /// Acks a delivery; returns (seq, segment) for the ack record.
    pub(crate) fn ack(
        &mut self,
        queue: &str,
        handle: &DeliveryHandle,
        fx: &mut Effects,
    ) -> Result<(u64, u64), HandleError> {
        let msg = self.take_in_flight(queue, handle)?;
        let mut freed = false;
        if let Some(seg) = self.segments.get_mut(&msg.segment) {
            seg.live = seg.live.saturating_sub(1);
            freed = seg.live == 0;
        }
        if freed {
            self.gc(fx);
        }
        Ok((msg.seq, msg.segment))
    }

    /// Drops every message of `queue` (ready, delayed and in flight; a later ack of one
    /// in flight is an unknown delivery) and returns (seq, segment) of each for the ack
    /// records that make the removal survive a restart.
    pub(crate) fn purge(&mut self, queue: &str, fx: &mut Effects) -> Vec<(u64, u64)> {
        let Some(q) = self.queue_get(queue) else {
            return Vec::new();
        };
        let msgs: Vec<Msg> = q
            .ready
            .drain(..)
            .chain(q.delayed.drain().map(|Reverse(d)| d.msg))
            .chain(
                std::mem::take(&mut q.in_flight)
                    .into_values()
                    .map(|f| f.msg),
            )
            .collect();
        for m in &msgs {
            if let Some(seg) = self.segments.get_mut(&m.segment) {
                seg.live = seg.live.saturating_sub(1);
            }
        }
        if !msgs.is_empty() {
            self.gc(fx);
        }
        msgs.into_iter().map(|m| (m.seq, m.segment)).collect()
    }

    /// Gives a delivery back, at once (front of the queue) or after `delay`.
    pub(crate) fn nack(
        &mut self,
        queue: &str,
        handle: &DeliveryHandle,
        delay: Duration,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), HandleError> {
        let msg = self.take_in_flight(queue, handle)?;
        if delay.is_zero() {
            let q = self.queue_mut(queue);
            q.ready.push_front(msg);
            q.notify.notify_one();
            let name = q.name.clone();
            fx.arrived(&name);
        } else {
            let due = now + delay;
            let order = self.next_order;
            self.next_order += 1;
            self.queue_mut(queue)
                .delayed
                .push(Reverse(DelayedMsg { due, order, msg }));
            self.schedule(due, fx);
        }
        Ok(())
    }

    /// Switches the active segment after a rotation.
    pub(crate) fn rotated(&mut self, old: u64, new: u64, fx: &mut Effects) {
        if let Some(s) = self.segments.get_mut(&old) {
            s.active = false;
        }
        self.segments.entry(new).or_default().active = true;
        self.gc(fx);
    }

    /// Records that ack records written to `segment` refer to messages in `target`.
    pub(crate) fn add_ack_target(&mut self, segment: u64, target: u64) {
        if segment == target || !self.segments.contains_key(&target) {
            return;
        }
        if let Some(s) = self.segments.get_mut(&segment) {
            s.ack_targets.insert(target);
        }
    }

    /// Drops every segment that holds nothing live, is not being appended to, and whose
    /// ack records only refer to segments already dropped. Acks only ever point to
    /// older segments, so one ascending pass reaches the fixed point.
    pub(crate) fn gc(&mut self, fx: &mut Effects) {
        let ids: Vec<u64> = self.segments.keys().copied().collect();
        for id in ids {
            let Some(s) = self.segments.get(&id) else {
                continue;
            };
            let deletable = s.live == 0
                && !s.active
                && s.ack_targets.iter().all(|t| !self.segments.contains_key(t));
            if deletable {
                self.segments.remove(&id);
                fx.deletes.push(id);
            }
        }
    }

    pub(crate) fn depth(&self, queue: &str) -> QueueDepth {
        self.index
            .get(queue)
            .and_then(|&i| self.queues.get(i))
            .map(QueueState::depth)
            .unwrap_or_default()
    }

    pub(crate) fn all_depths(&self) -> Vec<(Arc<str>, QueueDepth)> {
        let mut v: Vec<_> = self
            .queues
            .iter()
            .map(|q| (q.name.clone(), q.depth()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Wakes every receiver so it can observe `closed`.
    pub(crate) fn wake_all(&self) {
        for q in &self.queues {
            q.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn msg(seq: u64, segment: u64) -> Msg {
        Msg {
            seq,
            segment,
            body: Bytes::from(format!("m{seq}")),
            deliveries: 0,
        }
    }

    #[test]
    fn gc_waits_for_ack_targets() {
        let mut st = State::new(Duration::from_secs(60));
        let mut fx = Effects::default();
        st.segments.entry(1).or_default();
        st.segments.entry(2).or_default();
        st.segments.entry(3).or_default().active = true;
        let now = Instant::now();
        st.insert("q", msg(1, 1), None, now, &mut fx);
        st.insert("q", msg(2, 2), None, now, &mut fx);
        // Segment 2 holds acks for segment 1.
        st.add_ack_target(2, 1);
        let d2 = {
            let _ = st.take_ready("q", now, &mut fx).unwrap();
            st.take_ready("q", now, &mut fx).unwrap()
        };
        let mut fx = Effects::default();
        st.ack("q", &d2.handle, &mut fx).unwrap();
        assert!(fx.deletes.is_empty(), "segment 2 still protects acks of 1");
        let mut fx = Effects::default();
        st.ack("q", &DeliveryHandle::Seq(1), &mut fx).unwrap();
        assert_eq!(fx.deletes, vec![1, 2]);
        assert!(st.segments.contains_key(&3));
    }
}
