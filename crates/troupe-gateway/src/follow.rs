//! Following one task's events in-process: what the SSE stream sends, as values.
//! The MCP and A2A adapters and the CLI-facing code use it instead of parsing SSE.

use serde_json::Value;

use crate::gateway::{Gateway, GatewayError};
use crate::hub::{EventKind, Subscription};

/// One event of a task (gateway.md §2.8).
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// A `status` event: the task's merged `data` (`data.status` is the status).
    Status(Value),
    /// A `fly` event as the sidecar posted it (`{"payload": …}`).
    Fly(Value),
}

impl TaskEvent {
    /// Whether this is a terminal status event (nothing follows it).
    pub fn is_terminal(&self) -> bool {
        match self {
            TaskEvent::Status(d) => d
                .get("status")
                .and_then(Value::as_str)
                .and_then(crate::TaskStatus::parse)
                .is_some_and(|s| s.is_terminal()),
            TaskEvent::Fly(_) => false,
        }
    }
}

/// A live follow of one task: a catch-up `Status` first, then live events.
pub struct TaskEvents {
    catchup: Option<Value>,
    sub: Subscription,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl TaskEvents {
    /// The next event; `None` when the subscription was dropped (the subscriber fell
    /// too far behind on status events: re-follow to catch up, or poll [`Gateway::get`])
    /// or the gateway is shutting down ([`Gateway::is_closing`]).
    pub async fn next(&mut self) -> Option<TaskEvent> {
        if let Some(first) = self.catchup.take() {
            return Some(TaskEvent::Status(first));
        }
        loop {
            if *self.closing.borrow_and_update() {
                return None;
            }
            let ev = tokio::select! {
                ev = self.sub.rx.recv() => ev?,
                _ = self.closing.changed() => return None,
            };
            let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            return Some(match ev.kind {
                EventKind::Status { .. } => TaskEvent::Status(data),
                EventKind::Fly => TaskEvent::Fly(data),
            });
        }
    }
}

impl Gateway {
    /// Follows task `id`: unknown ids fail before anything is returned.
    pub async fn follow(&self, id: &str) -> Result<TaskEvents, GatewayError> {
        // Subscribe before reading, as the SSE stream does, so nothing falls between.
        let sub = self.subscribe(id);
        let task = self.get(id).await?;
        let catchup = serde_json::from_str(&task.data_json()).unwrap_or(Value::Null);
        Ok(TaskEvents {
            catchup: Some(catchup),
            sub,
            closing: self.closing(),
        })
    }
}
