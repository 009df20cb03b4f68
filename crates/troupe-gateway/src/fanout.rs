//! Cross-replica event fan-out (gateway.md §1 "Replicas"): every status and FLY event a
//! replica publishes also goes to a shared bus, and events other replicas put on the bus
//! reach this replica's SSE subscribers, so any replica can serve any stream.

use crate::gateway::Gateway;
use crate::hub::EventKind;

/// One event crossing replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutEvent {
    /// Task id.
    pub id: String,
    /// `"status"` or `"fly"`.
    pub kind: String,
    /// For `status`: whether the status is terminal (the stream ends after it).
    pub terminal: bool,
    /// The event's JSON data, exactly as SSE subscribers receive it.
    pub data: String,
}

/// A shared bus between gateway replicas (PostgreSQL LISTEN/NOTIFY, …).
///
/// `publish` is called on the request path and must not block: implementations queue
/// the event and send it in the background. Events from other replicas come back in
/// through [`Gateway::deliver_remote`]; an implementation must not hand a replica its
/// own events (they were already delivered locally).
pub trait EventFanout: Send + Sync + 'static {
    /// Sends an event published on this replica to the other replicas.
    fn publish(&self, event: FanoutEvent);
}

impl Gateway {
    /// Delivers an event that another replica published to this replica's subscribers.
    pub fn deliver_remote(&self, event: FanoutEvent) {
        let kind = match event.kind.as_str() {
            "status" => EventKind::Status {
                terminal: event.terminal,
            },
            "fly" => EventKind::Fly,
            other => {
                tracing::debug!(kind = other, "ignoring fan-out event of unknown kind");
                return;
            }
        };
        let FanoutEvent { id, data, .. } = event;
        self.inner.hub.publish(&id, kind, move || data);
    }

    /// Publishes locally and, when a bus is attached, to the other replicas.
    pub(crate) fn emit(&self, id: &str, kind: EventKind, data: impl FnOnce() -> String) {
        match self.inner.fanout.get() {
            None => self.inner.hub.publish(id, kind, data),
            Some(bus) => {
                let data = data();
                let terminal = matches!(kind, EventKind::Status { terminal: true });
                self.inner.hub.publish(id, kind, || data.clone());
                bus.publish(FanoutEvent {
                    id: id.to_owned(),
                    kind: kind.name().to_owned(),
                    terminal,
                    data,
                });
            }
        }
    }
}
