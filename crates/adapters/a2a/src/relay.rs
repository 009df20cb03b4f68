//! Relaying a mesh task's events as A2A events (gateway.md §4 "Execution", steps 4–6),
//! and folding those events back into a `Task` for `message/send`.

use std::future::pending;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use troupe_gateway::{Gateway, GatewayError, TaskEvent, TaskEvents};

use crate::mapping::{
    a2a_state, artifact_event, classify_fly, ends_relay, fly_chunk, fly_close, fly_object,
    result_artifact, status_event, status_message, FlyKind,
};

/// Poll period once the live subscription is gone (§4 step 6).
const POLL_PERIOD: Duration = Duration::from_millis(500);

/// The per-request relay state: which events were already sent.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    task_id: String,
    context_id: String,
    /// A `fly-stream` chunk was sent and not closed yet.
    fly_open: bool,
    /// `working` was already emitted (a progress refresh does not repeat it).
    working_sent: bool,
}

impl Relay {
    /// A relay for task `task_id`; `working_sent` when the caller already emitted `working`.
    pub fn new(task_id: &str, context_id: &str, working_sent: bool) -> Self {
        Relay {
            task_id: task_id.to_owned(),
            context_id: context_id.to_owned(),
            fly_open: false,
            working_sent,
        }
    }

    /// Events for a mesh `status` event (`data` = merged task data); `true` when final.
    pub fn on_status(&mut self, data: &Value) -> (Vec<Value>, bool) {
        let status = data.get("status").and_then(Value::as_str).unwrap_or("");
        if ends_relay(status) {
            return (self.finish(data), true);
        }
        if status == "running" && !self.working_sent {
            self.working_sent = true;
            let ev = status_event(&self.task_id, &self.context_id, "working", None, false);
            return (vec![ev], false);
        }
        (Vec::new(), false)
    }

    /// Events for a mesh `fly` event (`{"payload": <FLY object>}`).
    pub fn on_fly(&mut self, event: &Value) -> Vec<Value> {
        let fly = fly_object(event);
        match classify_fly(fly, &self.task_id, &self.context_id) {
            FlyKind::Artifact(ev) => vec![ev],
            FlyKind::Status(msg) => {
                self.working_sent = true;
                vec![status_event(
                    &self.task_id,
                    &self.context_id,
                    "working",
                    Some(msg),
                    false,
                )]
            }
            FlyKind::Chunk => {
                let ev = fly_chunk(fly, &self.task_id, &self.context_id, self.fly_open);
                self.fly_open = true;
                vec![ev]
            }
        }
    }

    /// The deadline passed with nothing terminal: close the stream, final `unknown`.
    pub fn timed_out(&mut self) -> Vec<Value> {
        let mut out = self.close_fly();
        let msg = crate::mapping::agent_message(
            Some("no final status before the task deadline"),
            None,
            &self.task_id,
            &self.context_id,
        );
        out.push(status_event(
            &self.task_id,
            &self.context_id,
            "unknown",
            Some(msg),
            true,
        ));
        out
    }

    fn close_fly(&mut self) -> Vec<Value> {
        if std::mem::take(&mut self.fly_open) {
            vec![fly_close(&self.task_id, &self.context_id)]
        } else {
            Vec::new()
        }
    }

    /// Step 5: close `fly-stream`, the `result` artifact, the final status.
    fn finish(&mut self, data: &Value) -> Vec<Value> {
        let status = data.get("status").and_then(Value::as_str).unwrap_or("");
        let mut out = self.close_fly();
        if status == "succeeded" {
            if let Some(result) = data.get("result").filter(|r| !r.is_null()) {
                out.push(artifact_event(
                    &self.task_id,
                    &self.context_id,
                    result_artifact(result),
                    false,
                    true,
                ));
            }
        }
        // Completed and canceled carry no message: the result is the artifact.
        let message = match status {
            "failed" | "paused" | "auth_required" => {
                status_message(data, &self.task_id, &self.context_id)
            }
            _ => None,
        };
        out.push(status_event(
            &self.task_id,
            &self.context_id,
            a2a_state(status),
            message,
            true,
        ));
        out
    }
}

/// Follows `task_id` (from `followed` when the caller subscribed already, so no FLY
/// event falls between the create and the subscription) and sends the relay's events to `tx` until a final event, the
/// deadline, shutdown (`closing`), or the receiver going away.
pub(crate) async fn run(
    gw: Gateway,
    mut relay: Relay,
    followed: Option<TaskEvents>,
    deadline: Option<Instant>,
    tx: mpsc::Sender<Value>,
    mut closing: watch::Receiver<bool>,
) {
    let id = relay.task_id.clone();
    let mut events = match followed {
        Some(ev) => Some(ev),
        None => match gw.follow(&id).await {
            Ok(ev) => Some(ev),
            Err(e) => {
                tracing::debug!(task = %id, error = %e, "A2A relay: follow failed; polling");
                None
            }
        },
    };
    let mut polling = events.is_none();
    let mut poll = tokio::time::interval(POLL_PERIOD);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => pending().await,
        }
    };
    tokio::pin!(sleep);
    let shutdown = async {
        // A dropped sender means the adapter is gone: treat it like no shutdown.
        if closing.wait_for(|c| *c).await.is_err() {
            pending::<()>().await;
        }
    };
    tokio::pin!(shutdown);
    loop {
        let next = async {
            match events.as_mut() {
                Some(ev) => ev.next().await,
                None => pending().await,
            }
        };
        let (out, done) = tokio::select! {
            biased;
            _ = tx.closed() => return,
            _ = &mut shutdown => return,
            _ = &mut sleep => (relay.timed_out(), true),
            ev = next => match ev {
                Some(TaskEvent::Status(data)) => relay.on_status(&data),
                Some(TaskEvent::Fly(obj)) => (relay.on_fly(&obj), false),
                None if gw.is_closing() => return,
                None => {
                    tracing::debug!(task = %id, "A2A relay: subscription dropped; polling");
                    events = None;
                    polling = true;
                    poll.reset();
                    (Vec::new(), false)
                }
            },
            _ = poll.tick(), if polling => match gw.get(&id).await {
                Ok(task) => {
                    let data: Value = serde_json::from_str(&task.data_json()).unwrap_or(Value::Null);
                    relay.on_status(&data)
                }
                Err(GatewayError::NotFound(_)) => (relay.timed_out(), true),
                Err(e) => {
                    tracing::debug!(task = %id, error = %e, "A2A relay: poll failed");
                    (Vec::new(), false)
                }
            },
        };
        for ev in out {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        if done {
            return;
        }
    }
}

/// A `Task` built up from the events of one request (`message/send`).
pub(crate) struct TaskFold {
    task: Map<String, Value>,
}

impl TaskFold {
    /// Starts from the Task object sent first.
    pub fn new(initial: Value) -> Self {
        let task = match initial {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        TaskFold { task }
    }

    /// Applies one event; `true` on the final status.
    pub fn apply(&mut self, ev: &Value) -> bool {
        match ev.get("kind").and_then(Value::as_str) {
            Some("status-update") => {
                if let Some(status) = ev.get("status") {
                    if let Some(m) = status.get("message") {
                        self.push_history(m.clone());
                    }
                    self.task.insert("status".into(), status.clone());
                }
                ev.get("final").and_then(Value::as_bool).unwrap_or(false)
            }
            Some("artifact-update") => {
                if let Some(art) = ev.get("artifact") {
                    let append = ev.get("append").and_then(Value::as_bool).unwrap_or(false);
                    self.merge_artifact(art, append);
                }
                false
            }
            _ => false,
        }
    }

    fn push_history(&mut self, m: Value) {
        match self.task.get_mut("history") {
            Some(Value::Array(a)) => a.push(m),
            _ => {
                self.task.insert("history".into(), Value::Array(vec![m]));
            }
        }
    }

    fn merge_artifact(&mut self, art: &Value, append: bool) {
        let id = art.get("artifactId").cloned();
        let list = self
            .task
            .entry("artifacts")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = list else {
            return;
        };
        let existing = list.iter_mut().find(|a| a.get("artifactId") == id.as_ref());
        match (existing, append) {
            (Some(old), true) => {
                let new_parts = art
                    .get("parts")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if let Some(Value::Array(parts)) = old.get_mut("parts") {
                    parts.extend(new_parts);
                }
            }
            (Some(old), false) => *old = art.clone(),
            (None, _) => list.push(art.clone()),
        }
    }

    /// The Task object.
    pub fn into_value(self) -> Value {
        Value::Object(self.task)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn working_once_then_final() {
        let mut r = Relay::new("t", "c", false);
        assert!(r.on_status(&json!({"status": "pending"})).0.is_empty());
        let (ev, fin) = r.on_status(&json!({"status": "running"}));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["status"]["state"], "working");
        assert_eq!(ev[0]["final"], false);
        assert!(!fin);
        assert!(r.on_status(&json!({"status": "running"})).0.is_empty());
        let (ev, fin) = r.on_status(&json!({"status": "succeeded", "result": {"a": 1}}));
        assert!(fin);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0]["artifact"]["artifactId"], "result");
        assert_eq!(ev[0]["artifact"]["name"], "Task result");
        assert_eq!(ev[0]["artifact"]["parts"][0]["text"], "{\"a\":1}");
        assert_eq!(
            (ev[0]["append"].clone(), ev[0]["lastChunk"].clone()),
            (json!(false), json!(true))
        );
        assert_eq!(ev[1]["status"]["state"], "completed");
        assert_eq!(ev[1]["final"], true);
    }

    #[test]
    fn fly_chunks_are_closed() {
        let mut r = Relay::new("t", "c", true);
        let a = r.on_fly(&json!({"payload": {"partial": true, "text": "He"}}));
        let b = r.on_fly(&json!({"payload": {"partial": true, "text": "llo"}}));
        assert_eq!(a[0]["append"], false);
        assert_eq!(b[0]["append"], true);
        assert_eq!(a[0]["artifact"]["artifactId"], "fly-stream");
        assert_eq!(
            a[0]["artifact"]["parts"][0]["text"],
            "{\"partial\":true,\"text\":\"He\"}"
        );
        let (ev, _) = r.on_status(&json!({"status": "failed", "error": "boom"}));
        assert_eq!(ev[0]["artifact"]["artifactId"], "fly-stream");
        assert_eq!(
            (ev[0]["append"].clone(), ev[0]["lastChunk"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(ev[0]["artifact"]["parts"], json!([]));
        assert_eq!(ev[1]["status"]["state"], "failed");
        assert_eq!(ev[1]["status"]["message"]["parts"][0]["text"], "boom");
    }

    #[test]
    fn fold_builds_task() {
        let mut f = TaskFold::new(json!({"kind": "task", "id": "t", "contextId": "c",
            "status": {"state": "submitted"}}));
        let mut r = Relay::new("t", "c", false);
        for ev in r
            .on_fly(&json!({"payload": {"x": 1}}))
            .into_iter()
            .chain(r.on_fly(&json!({"payload": {"x": 2}})))
        {
            assert!(!f.apply(&ev));
        }
        let (evs, _) = r.on_status(&json!({"status": "succeeded", "result": 7}));
        let fin: Vec<bool> = evs.iter().map(|e| f.apply(e)).collect();
        assert_eq!(fin, [false, false, true]);
        let t = f.into_value();
        assert_eq!(t["status"]["state"], "completed");
        let arts = t["artifacts"].as_array().unwrap();
        assert_eq!(arts.len(), 2);
        assert_eq!(arts[0]["parts"].as_array().unwrap().len(), 2);
        assert_eq!(arts[1]["parts"][0]["text"], "7");
    }
}
