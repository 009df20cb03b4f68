//! The fan-in aggregator (protocol.md §14.4), durable across a crash at any point, with
//! a timeout that fails an origin whose slices do not all arrive.
//!
//! # Storage (under `{mount or /state/checkpoints}/fanin/`)
//!
//! ```text
//! {origin}/slice-{i}.json   payload of slice i; written once (a redelivery never counts twice)
//!                           ({origin}.{round}/ instead for round ≥ 1 of a Troupe flow, whose
//!                           fan-out may run several times in one task)
//! {origin}/parent.json      {"parent_id"}: slice 0's parent_id, only when it has one
//! {origin}/complete         the claim, created exclusively: {"slice_index", "by"} or {"timeout": true}
//! {origin}/emitted          written after the merged (or failed) envelope was sent
//! .pending/{state}.json     the first slice to arrive, without payload, and when it arrived:
//!                           what the timeout sweep reads; deleted once the origin is emitted
//! ```
//!
//! Every file is written atomically (temp file, then rename or link). The state machine of
//! one origin: slices arrive → the slice that makes the count whole claims `complete` →
//! it emits the merged envelope → after the send, `emitted` is written and the slice files
//! deleted. A crash after the claim and before `emitted` leaves the claim naming a slice
//! index: the redelivered claiming slice merges and emits again (at-least-once), every
//! other arrival emits nothing. The sweep claims `complete` for an origin whose first slice
//! is older than the timeout and sends a failed envelope for it to x-sink, under the same
//! rule (resent until `emitted` exists). Deviations from Asya: docs/decisions.md
//! "Fan-in durability".

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::resume::child;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use troupe_engine::handler::{
    HandlerFailure, NativeError, NativeHandler, NativeReply, Requeue, TaskIdentity,
};
use troupe_protocol::clock::format_ts;
use troupe_protocol::duration::format_go_duration;
use troupe_protocol::envelope::{to_raw, ErrorInfo, Phase, Reason, Status};
use troupe_protocol::{Clock, Envelope, Frame, SystemClock};
use troupe_transport::Transport;

use crate::config::CrewConfig;
use crate::{advance, store, HEADER_FAN_IN, HEADER_ORIGIN_ID};

/// `TROUPE_CREW` value of the fan-in aggregator.
pub const FAN_IN_CREW: &str = "fan-in";
/// Folder of fan-in state under the mount.
pub const FANIN_FOLDER: &str = "fanin";
/// Storage root when no persistence mount is set (Asya's default).
pub const DEFAULT_STATE_ROOT: &str = "/state/checkpoints";
/// `status.error.type` of an origin failed by the timeout.
pub const TIMEOUT_ERROR_TYPE: &str = "FanInTimeout";

const PENDING_FOLDER: &str = ".pending";
const COMPLETE: &str = "complete";
const EMITTED: &str = "emitted";
const PARENT: &str = "parent.json";

/// The `x-asya-fan-in` header (protocol.md §3).
#[derive(Debug, Clone, Deserialize)]
struct SliceHeader {
    origin_id: String,
    slice_index: usize,
    slice_count: usize,
    #[serde(default)]
    aggregation_key: String,
    /// Troupe flows: which fan-out of the task this is (1, 2, …); absent (Asya) = 0.
    #[serde(default)]
    round: u64,
}

impl SliceHeader {
    /// The folder name of this aggregation (see [`state_key`]).
    fn state_key(&self) -> String {
        state_key(&self.origin_id, self.round)
    }
}

/// `basename(origin_id)`, plus `.{round}` for a round other than 0 (docs/decisions.md
/// "Flow routing", fan-in ids).
fn state_key(origin_id: &str, round: u64) -> String {
    let base = store::key(origin_id).unwrap_or_default();
    if round == 0 {
        base.to_owned()
    } else {
        format!("{base}.{round}")
    }
}

/// Who claimed `complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Claim {
    /// The slice whose arrival made the count whole (`by`: its envelope id).
    Slice { slice_index: usize, by: String },
    /// The timeout sweep.
    Timeout { timeout: bool },
}

/// `.pending/{origin}.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    origin_id: String,
    #[serde(default)]
    round: u64,
    slice_count: usize,
    /// Unix milliseconds of the first arrival.
    arrived_at_ms: i64,
    /// The first arriving slice as received, payload `null`: route, headers (gateway URL,
    /// trace context) and status for the failure envelope.
    envelope: Envelope,
}

/// What one slice's arrival leads to.
#[derive(Debug)]
enum Step {
    /// Nothing to emit: the slice is stored (or a late duplicate) and goes to x-sink.
    Absorb,
    /// This slice completes the origin: emit the merged payload.
    Emit {
        payload: Value,
        parent_id: Option<String>,
    },
}

/// An origin the timeout sweep claimed: its failed envelope, for x-sink.
#[derive(Debug)]
pub struct TimedOut {
    /// The failed envelope of the origin task.
    pub envelope: Envelope,
    /// The aggregation's folder name (origin and round).
    key: String,
}

/// The fan-in native handler and its timeout sweep.
pub struct FanIn {
    actor: String,
    root: PathBuf,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Deliveries (`origin/index/id`) whose merged frame `reply` returned and whose
    /// `after_dispatch` has not run yet: only those may write `emitted`.
    emitting: Mutex<HashSet<String>>,
}

fn value_error(message: impl Into<String>) -> NativeError {
    NativeError::Failed(HandlerFailure::new("ValueError", &["Exception"], message))
}

fn requeue(what: &str, e: impl std::fmt::Display) -> NativeError {
    NativeError::Requeue(Requeue(format!("fan-in {what}: {e}")))
}

fn slice_file(i: usize) -> String {
    format!("slice-{i}.json")
}

/// The indexes below `count` that have a `slice-{i}.json` in `dir`.
fn arrived(dir: &Path, count: usize) -> io::Result<BTreeSet<usize>> {
    let mut found = BTreeSet::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let index = name
            .to_str()
            .and_then(|n| n.strip_prefix("slice-"))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(i) = index.filter(|i| *i < count) {
            found.insert(i);
        }
    }
    Ok(found)
}

fn read_claim(dir: &Path) -> io::Result<Option<Result<Claim, String>>> {
    match std::fs::read(dir.join(COMPLETE)) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice::<Claim>(&bytes)
                .map_err(|_| String::from_utf8_lossy(&bytes).into_owned()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` at the JSON Pointer `pointer` (RFC 6901) in `root`, creating
/// intermediate objects; an existing array element can be addressed by index, any other
/// non-object on the way is replaced by an object. `""` replaces the root.
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        *root = value;
        return;
    };
    let mut cur = root;
    for token in parents {
        cur = child(cur, token);
    }
    *child(cur, last) = value;
}

/// Step 5: slice 0's payload with slices 1..N, by numeric index, at `key`.
fn merge(dir: &Path, count: usize, key: &str) -> io::Result<Value> {
    let read = |i: usize| -> io::Result<Value> {
        let bytes = std::fs::read(dir.join(slice_file(i)))?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    let mut base = read(0)?;
    let rest = (1..count).map(read).collect::<io::Result<Vec<_>>>()?;
    set_pointer(&mut base, key, Value::Array(rest));
    Ok(base)
}

fn parent_of(dir: &Path) -> io::Result<Option<String>> {
    match std::fs::read(dir.join(PARENT)) {
        Ok(bytes) => Ok(serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
            v.get("parent_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `path`, a missing file being fine.
fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Step 7 and the end of the pending entry: the origin was emitted.
fn finish_origin(root: &Path, dir: &Path, origin_key: &str, count: usize) -> io::Result<()> {
    if !dir.join(EMITTED).exists() {
        let at = json!({"emitted": true});
        store::write_blocking(&dir.join(EMITTED), at.to_string().as_bytes(), true)?;
    }
    clean_emitted(root, dir, origin_key, count)
}

/// Deletes what an emitted origin no longer needs (left behind by a crash right after
/// `emitted` was written): the slice files, the parent note and the pending entry.
fn clean_emitted(root: &Path, dir: &Path, origin_key: &str, count: usize) -> io::Result<()> {
    for i in arrived(dir, count)? {
        remove(&dir.join(slice_file(i)))?;
    }
    remove(&dir.join(PARENT))?;
    remove(&root.join(PENDING_FOLDER).join(format!("{origin_key}.json")))
}

impl FanIn {
    /// A fan-in actor named `actor`, storing under the crew mount (else
    /// `/state/checkpoints`), with the crew's `fanin_timeout`.
    pub fn new(actor: impl Into<String>, config: &CrewConfig) -> Self {
        Self::with_clock(actor, config, Arc::new(SystemClock))
    }

    /// As [`FanIn::new`] with an injected clock (tests).
    pub fn with_clock(
        actor: impl Into<String>,
        config: &CrewConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let base = config
            .mount
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT));
        Self {
            actor: actor.into(),
            root: base.join(FANIN_FOLDER),
            timeout: config.fanin_timeout,
            clock,
            emitting: Mutex::new(HashSet::new()),
        }
    }

    /// How long an origin may wait for its slices.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn header(input: &Envelope) -> Result<SliceHeader, NativeError> {
        let raw = input.headers.get(HEADER_FAN_IN).ok_or_else(|| {
            value_error(format!(
                "Missing {HEADER_FAN_IN} header: a fan-in actor only takes slices sent by a \
                 fan-out router"
            ))
        })?;
        // A JSON string holding the object is accepted too, as for x-asya-pause.
        let value = match raw {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        };
        let h: SliceHeader = serde_json::from_value(value).map_err(|e| {
            value_error(format!(
                "invalid {HEADER_FAN_IN} header ({e}): it needs origin_id, slice_index, \
                 slice_count and aggregation_key"
            ))
        })?;
        if store::key(&h.origin_id).is_none() {
            return Err(value_error(format!(
                "{HEADER_FAN_IN} origin_id {:?} is not a usable task id",
                h.origin_id
            )));
        }
        if h.slice_index >= h.slice_count {
            return Err(value_error(format!(
                "{HEADER_FAN_IN} slice_index {} is not below slice_count {}",
                h.slice_index, h.slice_count
            )));
        }
        if !(h.aggregation_key.is_empty() || h.aggregation_key.starts_with('/')) {
            return Err(value_error(format!(
                "{HEADER_FAN_IN} aggregation_key {:?} is not a JSON Pointer: write it as /key",
                h.aggregation_key
            )));
        }
        Ok(h)
    }

    fn origin_dir(&self, h: &SliceHeader) -> (String, PathBuf) {
        let key = h.state_key();
        let dir = self.root.join(&key);
        (key, dir)
    }

    fn delivery_key(h: &SliceHeader, input: &Envelope) -> String {
        format!("{}/{}/{}/{}", h.origin_id, h.round, h.slice_index, input.id)
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// Steps 1–5 for one slice (blocking file I/O).
fn arrive(root: &Path, h: &SliceHeader, input: &Envelope, now_ms: i64) -> io::Result<Step> {
    let key = h.state_key();
    let dir = root.join(&key);
    // (1) Late duplicates: the origin was emitted, or someone else claimed it.
    if dir.join(EMITTED).exists() {
        if let Err(e) = clean_emitted(root, &dir, &key, h.slice_count) {
            debug!(origin = %h.origin_id, error = %e, "cannot clean up an emitted fan-in origin");
        }
        return Ok(Step::Absorb);
    }
    match read_claim(&dir)? {
        // The claiming slice again: the process died before `emitted` was written,
        // maybe before the merged envelope was sent. Emit (again).
        Some(Ok(Claim::Slice { slice_index, .. })) if slice_index == h.slice_index => {
            return emit(h, &dir);
        }
        Some(_) => return Ok(Step::Absorb),
        None => {}
    }
    // The first slice to arrive records when and what for the timeout sweep.
    let pending = root.join(PENDING_FOLDER).join(format!("{key}.json"));
    if !pending.exists() {
        let mut first = input.clone();
        first.payload = to_raw(&Value::Null);
        let record = Pending {
            origin_id: h.origin_id.clone(),
            round: h.round,
            slice_count: h.slice_count,
            arrived_at_ms: now_ms,
            envelope: first,
        };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        store::create_exclusive_blocking(&pending, &bytes)?;
    }
    // (2) The slice, once. Slice 0 carries the origin's parent_id (frame 0 of the
    // fan-out router keeps it, §8.2), which the merged envelope restores.
    let slice = dir.join(slice_file(h.slice_index));
    if !slice.exists() {
        if let (0, Some(parent)) = (h.slice_index, &input.parent_id) {
            let note = json!({"parent_id": parent}).to_string();
            store::write_blocking(&dir.join(PARENT), note.as_bytes(), true)?;
        }
        store::write_blocking(&slice, input.payload.get().as_bytes(), true)?;
    }
    // (3) Count.
    if arrived(&dir, h.slice_count)?.len() < h.slice_count {
        return Ok(Step::Absorb);
    }
    // (4) Claim, naming this slice so that only its redelivery may emit again.
    let claim = Claim::Slice {
        slice_index: h.slice_index,
        by: input.id.clone(),
    };
    let bytes = serde_json::to_vec(&claim).map_err(io::Error::other)?;
    if !store::create_exclusive_blocking(&dir.join(COMPLETE), &bytes)? {
        return Ok(Step::Absorb);
    }
    emit(h, &dir)
}

fn emit(h: &SliceHeader, dir: &Path) -> io::Result<Step> {
    Ok(Step::Emit {
        payload: merge(dir, h.slice_count, &h.aggregation_key)?,
        parent_id: parent_of(dir)?,
    })
}

impl FanIn {
    /// Finds origins whose first slice is older than the timeout and that no slice
    /// completed, claims them, and returns a failed envelope for each (also for origins
    /// claimed by an earlier sweep whose failure was not sent yet). Send each to x-sink,
    /// then call [`FanIn::timed_out_sent`].
    pub async fn sweep(self: &Arc<Self>) -> io::Result<Vec<TimedOut>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.sweep_blocking())
            .await
            .map_err(io::Error::other)?
    }

    fn sweep_blocking(&self) -> io::Result<Vec<TimedOut>> {
        let pending_dir = self.root.join(PENDING_FOLDER);
        let entries = match std::fs::read_dir(&pending_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let now_ms = self.now_ms();
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let mut due = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let is_record = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json"));
            if !is_record {
                continue;
            }
            let record: Pending = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    warn!(actor = %self.actor, file = %path.display(), error = %e, "unreadable fan-in pending entry; skipped");
                    continue;
                }
            };
            if store::key(&record.origin_id).is_none() {
                continue;
            }
            let key = state_key(&record.origin_id, record.round);
            let dir = self.root.join(&key);
            if dir.join(EMITTED).exists() {
                clean_emitted(&self.root, &dir, &key, record.slice_count)?;
                continue;
            }
            match read_claim(&dir)? {
                Some(Ok(Claim::Timeout { .. })) => {}
                // A slice claimed it: its redelivery emits.
                Some(_) => continue,
                None => {
                    if now_ms.saturating_sub(record.arrived_at_ms) < timeout_ms {
                        continue;
                    }
                    let claim = serde_json::to_vec(&Claim::Timeout { timeout: true })
                        .map_err(io::Error::other)?;
                    if !store::create_exclusive_blocking(&dir.join(COMPLETE), &claim)? {
                        continue;
                    }
                }
            }
            due.push(TimedOut {
                envelope: self.failure(&record, &dir)?,
                key,
            });
        }
        Ok(due)
    }

    /// The failed envelope of a timed-out origin, for x-sink (protocol.md §11.1 shape).
    fn failure(&self, record: &Pending, dir: &Path) -> io::Result<Envelope> {
        let count = record.slice_count;
        let got = arrived(dir, count)?;
        let missing: Vec<usize> = (0..count).filter(|i| !got.contains(i)).collect();
        let list = missing
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!(
            "fan-in {}: {} of {count} slices arrived within {} (missing {list})",
            self.actor,
            got.len(),
            format_go_duration(self.timeout)
        );
        let first = &record.envelope;
        let mut headers = first.headers.clone();
        headers.remove(HEADER_FAN_IN);
        headers.insert(
            HEADER_ORIGIN_ID.to_owned(),
            Value::String(record.origin_id.clone()),
        );
        let original = if got.contains(&0) {
            std::fs::read(dir.join(slice_file(0)))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        } else {
            None
        };
        let mut payload = json!({
            "error": message,
            "details": {
                "type": TIMEOUT_ERROR_TYPE,
                "fan_in": self.actor,
                "origin_id": record.origin_id,
                "slice_count": count,
                "arrived": got.iter().collect::<Vec<_>>(),
                "missing": missing,
                "timeout": format_go_duration(self.timeout),
            },
        });
        if let (Some(o), Value::Object(m)) = (original, &mut payload) {
            m.insert("original_payload".to_owned(), o);
        }
        let now = format_ts(self.clock.now());
        let created_at = first
            .status
            .as_ref()
            .map(|s| s.created_at.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| now.clone());
        let status = Status {
            phase: Phase::Failed,
            reason: Some(Reason::Timeout),
            actor: self.actor.clone(),
            attempt: 1,
            max_attempts: 1,
            created_at,
            updated_at: now,
            deadline_at: first.status.as_ref().and_then(|s| s.deadline_at.clone()),
            error: Some(ErrorInfo {
                message,
                error_type: TIMEOUT_ERROR_TYPE.to_owned(),
                mro: vec!["TimeoutError".to_owned(), "Exception".to_owned()],
                traceback: String::new(),
            }),
        };
        Ok(Envelope {
            id: record.origin_id.clone(),
            parent_id: parent_of(dir)?,
            route: first.route.clone(),
            headers,
            status: Some(status),
            payload: to_raw(&payload),
        })
    }

    /// Records that the failed envelope of `timed_out` was sent: nothing more is emitted
    /// for it, and its slice files and pending entry go.
    pub async fn timed_out_sent(self: &Arc<Self>, timed_out: &TimedOut) -> io::Result<()> {
        let key = timed_out.key.clone();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let dir = this.root.join(&key);
            // The count is unknown here; every slice index that could be present.
            finish_origin(&this.root, &dir, &key, usize::MAX)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// How often the sweep looks for timed-out origins: a tenth of the timeout, between
    /// 100 ms and 30 s, so an origin fails at most ~10% after its timeout.
    pub fn sweep_interval(&self) -> Duration {
        (self.timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// Runs the timeout sweep until `stop` turns true (or its sender is dropped), sending
    /// failed envelopes to the `sink` actor's queue on `transport`.
    pub fn spawn_sweeper(
        self: Arc<Self>,
        transport: Arc<dyn Transport>,
        sink: String,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let queue = transport.queue_name(&sink);
            let every = self.sweep_interval();
            loop {
                // A dropped sender stops the sweep too.
                let stopped = tokio::select! {
                    _ = tokio::time::sleep(every) => false,
                    r = stop.changed() => r.is_err() || *stop.borrow(),
                };
                if stopped {
                    return;
                }
                let due = match self.sweep().await {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(actor = %self.actor, error = %e, "fan-in timeout sweep failed; retrying");
                        continue;
                    }
                };
                for timed_out in due {
                    let env = &timed_out.envelope;
                    let message = env
                        .status
                        .as_ref()
                        .and_then(|s| s.error.as_ref())
                        .map(|e| e.message.clone())
                        .unwrap_or_default();
                    match transport.send(&queue, Bytes::from(env.to_vec())).await {
                        Ok(()) => {
                            info!(actor = %self.actor, origin = %env.id, error = %message, "fan-in timed out; origin failed");
                            if let Err(e) = self.timed_out_sent(&timed_out).await {
                                warn!(actor = %self.actor, origin = %env.id, error = %e, "cannot record a sent fan-in timeout; it will be sent again");
                            }
                        }
                        Err(e) => {
                            warn!(actor = %self.actor, origin = %env.id, error = %e, "cannot send a fan-in timeout to x-sink; retrying");
                        }
                    }
                }
            }
        })
    }
}

#[async_trait]
impl NativeHandler for FanIn {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        match self.reply(input).await {
            Ok(r) => Ok(r.frames),
            Err(NativeError::Failed(f)) => Err(f),
            Err(NativeError::Requeue(Requeue(m))) => {
                Err(HandlerFailure::new("OSError", &["Exception"], m))
            }
        }
    }

    async fn reply(&self, input: &Envelope) -> Result<NativeReply, NativeError> {
        let h = Self::header(input)?;
        let (root, header, slice, now_ms) =
            (self.root.clone(), h.clone(), input.clone(), self.now_ms());
        let step = tokio::task::spawn_blocking(move || arrive(&root, &header, &slice, now_ms))
            .await
            .map_err(|e| requeue("storage", e))?
            .map_err(|e| requeue("storage", e))?;
        let (payload, parent_id) = match step {
            Step::Absorb => return Ok(NativeReply::default()),
            Step::Emit { payload, parent_id } => (payload, parent_id),
        };
        // (6) The merged envelope is the origin task again; the route continues with the
        // completing slice's next (every slice carries the same continuation).
        let mut headers = input.headers.clone();
        headers.remove(HEADER_FAN_IN);
        headers.insert(
            HEADER_ORIGIN_ID.to_owned(),
            Value::String(h.origin_id.clone()),
        );
        if let Ok(mut set) = self.emitting.lock() {
            set.insert(Self::delivery_key(&h, input));
        }
        Ok(NativeReply {
            frames: vec![Frame {
                payload: to_raw(&payload),
                route: advance(&input.route),
                headers: Some(headers),
                status: input
                    .status
                    .as_ref()
                    .and_then(|s| serde_json::to_value(s).ok()),
            }],
            task: Some(TaskIdentity {
                id: h.origin_id,
                parent_id,
            }),
        })
    }

    /// (7) After the merged envelope was sent: `emitted`, then the slice files go.
    async fn after_dispatch(&self, input: &Envelope) -> Result<(), Requeue> {
        let Ok(h) = Self::header(input) else {
            return Ok(());
        };
        let emitted_here = self
            .emitting
            .lock()
            .map(|mut set| set.remove(&Self::delivery_key(&h, input)))
            .unwrap_or(false);
        if !emitted_here {
            return Ok(());
        }
        let (key, dir) = self.origin_dir(&h);
        let root = self.root.clone();
        let count = h.slice_count;
        let done = tokio::task::spawn_blocking(move || finish_origin(&root, &dir, &key, count))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        done.map_err(|e| {
            Requeue(format!(
                "fan-in cannot record the emitted origin '{}': {e}",
                h.origin_id
            ))
        })
    }
}

#[cfg(test)]
#[path = "fanin_tests.rs"]
mod tests;
