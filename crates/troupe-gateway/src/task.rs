//! The stored task record, its wire form (gateway.md §2.2) and the pure merge of a
//! posted status event into it (§2.3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use troupe_protocol::clock::{format_ts, parse_ts};

use crate::event::EventData;
use crate::progress::{merge_progress, progress_for};
use crate::raw::RawJson;
use crate::status::TaskStatus;

/// `data` of a task, without `status` (which is always the record's status and is
/// added when serialised). Members are omitted from the wire when empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskData {
    /// Actor that last reported (entry actor at creation).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// Percent in [0, 100] (§2.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Human-readable progress message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Remaining actors from the last posted route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_next: Vec<String>,
    /// Creation payload, as posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<RawJson>,
    /// Creation headers (as published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    /// RFC 3339 SLA deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<String>,
    /// From `x-asya-a2a-context-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Trace id from `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Parent task of a fan-out child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Final result, as posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RawJson>,
    /// Error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Structured error details, as posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<RawJson>,
    /// The `x-asya-pause` metadata of a resumable pause, as posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_metadata: Option<RawJson>,
}

impl TaskData {
    /// Bytes the JSON text will take, about: the raw members plus room for the rest.
    fn text_len_hint(&self) -> usize {
        [
            &self.payload,
            &self.result,
            &self.error_details,
            &self.pause_metadata,
        ]
        .iter()
        .map(|m| m.as_ref().map_or(0, RawJson::len))
        .sum::<usize>()
            + 4096
    }
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Task id (= envelope id).
    pub id: String,
    /// Stored status; compare-and-set key.
    pub status: TaskStatus,
    /// Task data.
    pub data: TaskData,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Time of the last applied change.
    pub updated_at: OffsetDateTime,
    /// SLA budget left when the task paused; not part of the wire form.
    pub sla_remaining_s: Option<u64>,
}

/// `data` with `status` first, as sent in messages and SSE `status` events.
#[derive(Serialize)]
struct DataView<'a> {
    status: TaskStatus,
    #[serde(flatten)]
    data: &'a TaskData,
}

/// The §2.2 Message; serialised straight to the response, never through a tree.
#[derive(Serialize)]
pub struct MessageView<'a> {
    id: &'a str,
    status: TaskStatus,
    data: DataView<'a>,
    created_at: String,
    updated_at: String,
}

impl Task {
    /// A new pending task.
    pub fn new(id: String, data: TaskData, now: OffsetDateTime) -> Self {
        Task {
            id,
            status: TaskStatus::Pending,
            data,
            created_at: now,
            updated_at: now,
            sla_remaining_s: None,
        }
    }

    /// The parsed `data.deadline_at`.
    pub fn deadline(&self) -> Option<OffsetDateTime> {
        self.data.deadline_at.as_deref().and_then(parse_ts)
    }

    /// The parent id, for fan-out children.
    pub fn parent_id(&self) -> Option<&str> {
        self.data.parent_id.as_deref()
    }

    /// `data` as JSON text without `status` (what the stores keep), written into a
    /// buffer sized for the payload and result so a large one is not copied on regrowth.
    pub fn data_text(&self) -> Result<String, serde_json::Error> {
        let mut buf = Vec::with_capacity(self.data.text_len_hint());
        serde_json::to_writer(&mut buf, &self.data)?;
        // serde_json writes UTF-8 only.
        Ok(String::from_utf8(buf).unwrap_or_default())
    }

    /// `data` as JSON text, `status` included (SSE `status` event data).
    pub fn data_json(&self) -> String {
        let mut buf = Vec::with_capacity(self.data.text_len_hint());
        if serde_json::to_writer(&mut buf, &self.data_view()).is_err() {
            return "{}".to_owned();
        }
        String::from_utf8(buf).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The §2.2 Message as a JSON value (parses the payload and result: tests and
    /// small tasks only; responses serialise [`Task::message`]).
    pub fn to_message(&self) -> Value {
        serde_json::to_value(self.message()).unwrap_or(Value::Null)
    }

    /// The §2.2 Message, ready to serialise.
    pub fn message(&self) -> MessageView<'_> {
        MessageView {
            id: &self.id,
            status: self.status,
            data: self.data_view(),
            created_at: format_ts_millis(self.created_at),
            updated_at: format_ts_millis(self.updated_at),
        }
    }

    fn data_view(&self) -> DataView<'_> {
        DataView {
            status: self.status,
            data: &self.data,
        }
    }
}

/// `2026-01-01T00:00:00.123Z` (UTC, milliseconds).
pub fn format_ts_millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let secs = format_ts(t);
    let base = secs.trim_end_matches('Z');
    format!("{base}.{:03}Z", t.millisecond())
}

/// Applies a posted status event to `task` (already decided to apply, see
/// [`crate::status::should_apply`]): `new` is the normalised status, `posted` the
/// status string as posted, `data` the posted `data`.
pub fn merge_update(
    task: &Task,
    new: TaskStatus,
    posted: &str,
    data: &EventData,
    now: OffsetDateTime,
) -> Task {
    let mut out = task.clone();
    out.status = new;
    out.updated_at = now;

    let prev = data.prev.as_ref();
    let next = data.next.as_ref();
    let curr = data.curr.as_deref();

    if let Some(c) = curr.filter(|c| !c.is_empty()) {
        c.clone_into(&mut out.data.actor);
    } else if let Some(last) = prev.and_then(|p| p.last()) {
        last.clone_into(&mut out.data.actor);
    }
    if let Some(next) = next {
        out.data.route_next.clone_from(next);
    }

    let computed = progress_for(
        posted,
        prev.map_or(0, Vec::len),
        curr.is_some_and(|c| !c.is_empty()),
        next.map_or(0, Vec::len),
    );
    out.data.progress = merge_progress(task.data.progress, computed, new);

    if let Some(m) = data.message.as_deref() {
        m.clone_into(&mut out.data.message);
    }
    if let Some(v) = &data.pause_metadata {
        out.data.pause_metadata = Some(v.clone());
    }
    if let Some(v) = &data.result {
        out.data.result = Some(v.clone());
    }
    if let Some(v) = &data.error {
        // A string error is kept as its text; any other JSON as its JSON text.
        out.data.error =
            Some(serde_json::from_str::<String>(v.get()).unwrap_or_else(|_| v.get().to_owned()));
    }
    if let Some(v) = &data.error_details {
        out.data.error_details = Some(v.clone());
    }
    if new == TaskStatus::Paused {
        out.sla_remaining_s = task.deadline().map(|d| remaining_secs(d, now));
    }
    out
}

/// Whole seconds from `now` until `deadline`, 0 when past.
pub fn remaining_secs(deadline: OffsetDateTime, now: OffsetDateTime) -> u64 {
    u64::try_from((deadline - now).whole_seconds()).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn ev(v: Value) -> EventData {
        serde_json::from_str(&v.to_string()).unwrap()
    }

    fn base() -> Task {
        let data = TaskData {
            actor: "a".into(),
            payload: Some(json!({"x": 1}).into()),
            headers: Some(obj(json!({"h": "v"}))),
            deadline_at: Some("2026-01-01T00:10:00Z".into()),
            context_id: Some("ctx".into()),
            trace_id: Some("tr".into()),
            ..TaskData::default()
        };
        Task::new("t1".into(), data, datetime!(2026-01-01 00:00:00.5 UTC))
    }

    #[test]
    fn message_shape_and_empty_members_omitted() {
        let t = base();
        let m = t.to_message();
        assert_eq!(m["id"], "t1");
        assert_eq!(m["status"], "pending");
        assert_eq!(m["data"]["status"], "pending");
        assert_eq!(m["data"]["actor"], "a");
        assert_eq!(m["created_at"], "2026-01-01T00:00:00.500Z");
        let data = m["data"].as_object().unwrap();
        for absent in [
            "progress",
            "message",
            "route_next",
            "result",
            "error",
            "pause_metadata",
            "parent_id",
        ] {
            assert!(!data.contains_key(absent), "{absent}");
        }
        let dj: Value = serde_json::from_str(&t.data_json()).unwrap();
        assert_eq!(&dj, &m["data"]);
    }

    #[test]
    fn merge_progress_event_keeps_creation_fields() {
        let t = base();
        let now = datetime!(2026-01-01 00:00:01 UTC);
        let data = ev(
            json!({"prev": [], "curr": "a", "next": ["b", "c"], "status": "processing",
                             "message": "Processing in a", "progress": 99.0}),
        );
        let out = merge_update(&t, TaskStatus::Running, "processing", &data, now);
        assert_eq!(out.status, TaskStatus::Running);
        assert_eq!(out.data.actor, "a");
        assert_eq!(out.data.route_next, vec!["b", "c"]);
        assert_eq!(out.data.message, "Processing in a");
        assert!((out.data.progress.unwrap() - 16.666).abs() < 0.01);
        assert_eq!(out.updated_at, now);
        assert_eq!(out.created_at, t.created_at);
        assert_eq!(out.data.payload, t.data.payload);
        assert_eq!(out.data.headers, t.data.headers);
        assert_eq!(out.data.deadline_at, t.data.deadline_at);
        assert_eq!(out.data.context_id, t.data.context_id);
        assert_eq!(out.data.trace_id, t.data.trace_id);
    }

    #[test]
    fn actor_falls_back_to_last_prev_and_progress_never_drops() {
        let mut t = base();
        t.status = TaskStatus::Running;
        t.data.progress = Some(70.0);
        let data = ev(json!({"prev": ["a", "b"], "curr": "", "next": []}));
        let out = merge_update(&t, TaskStatus::Running, "completed", &data, t.created_at);
        assert_eq!(out.data.actor, "b");
        assert_eq!(out.data.progress, Some(100.0));

        let data = ev(json!({"prev": [], "curr": "a", "next": ["b"]}));
        let out = merge_update(&t, TaskStatus::Running, "received", &data, t.created_at);
        assert_eq!(out.data.progress, Some(70.0));
    }

    #[test]
    fn succeeded_copies_result_and_sets_100() {
        let t = base();
        let data =
            ev(json!({"id": "t1", "status": "succeeded", "progress": 1.0, "result": {"r": 2}}));
        let out = merge_update(&t, TaskStatus::Succeeded, "succeeded", &data, t.created_at);
        assert_eq!(out.data.progress, Some(100.0));
        assert_eq!(out.data.result, Some(json!({"r": 2}).into()));
        assert_eq!(out.data.actor, "a", "no route posted: actor kept");
    }

    #[test]
    fn failed_copies_error_and_details_and_route() {
        let mut t = base();
        t.data.progress = Some(40.0);
        let data = ev(
            json!({"status": "failed", "error": "boom", "error_details": {"type": "ValueError"},
                              "prev": ["a"], "curr": "b", "next": ["c"]}),
        );
        let out = merge_update(&t, TaskStatus::Failed, "failed", &data, t.created_at);
        assert_eq!(out.data.error.as_deref(), Some("boom"));
        assert_eq!(
            out.data.error_details,
            Some(json!({"type": "ValueError"}).into())
        );
        assert_eq!(out.data.actor, "b");
        assert_eq!(out.data.progress, Some(40.0));
        // non-string error is kept as its JSON text
        let data = ev(json!({"error": {"m": 1}}));
        let out = merge_update(&t, TaskStatus::Failed, "failed", &data, t.created_at);
        assert_eq!(out.data.error.as_deref(), Some("{\"m\":1}"));
    }

    #[test]
    fn paused_stores_metadata_and_remaining_sla() {
        let t = base();
        let now = datetime!(2026-01-01 00:07:30 UTC);
        let data = ev(
            json!({"prev": ["a", "x-pause"], "curr": "x-resume", "next": ["b"],
                              "pause_metadata": {"prompt": "ok?", "fields": []}}),
        );
        let out = merge_update(&t, TaskStatus::Paused, "completed", &data, now);
        assert_eq!(
            out.data.pause_metadata,
            Some(json!({"prompt": "ok?", "fields": []}).into())
        );
        assert_eq!(out.sla_remaining_s, Some(150));
        // past the deadline: clamped to zero
        let out = merge_update(
            &t,
            TaskStatus::Paused,
            "completed",
            &data,
            datetime!(2026-01-02 00:00 UTC),
        );
        assert_eq!(out.sla_remaining_s, Some(0));
        // no deadline: nothing stored
        let mut nd = base();
        nd.data.deadline_at = None;
        let out = merge_update(&nd, TaskStatus::Paused, "completed", &data, now);
        assert_eq!(out.sla_remaining_s, None);
    }

    #[test]
    fn null_members_are_not_copied() {
        let mut t = base();
        t.data.result = Some(json!(1).into());
        let data = ev(json!({"result": null, "message": null}));
        let out = merge_update(&t, TaskStatus::Running, "running", &data, t.created_at);
        assert_eq!(out.data.result, Some(json!(1).into()));
    }

    #[test]
    fn millis_format() {
        assert_eq!(
            format_ts_millis(datetime!(2026-03-04 05:06:07.089 UTC)),
            "2026-03-04T05:06:07.089Z"
        );
        assert_eq!(
            format_ts_millis(datetime!(2026-03-04 07:06:07 +2)),
            "2026-03-04T05:06:07.000Z"
        );
    }
}
