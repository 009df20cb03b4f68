//! The status decisions of the sidecar's per-message algorithm (protocol.md §8, §9.3,
//! §10), as pure functions over envelopes. The engine performs the I/O around them.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::clock::{format_ts, parse_ts};
use crate::envelope::{Envelope, ErrorInfo, Frame, Phase, Reason, Route, Status};
use crate::headers;
use crate::route::{self, Destination};

/// A *retry arrival*: `status.phase == retrying && status.actor == self` (§8 step 9).
pub fn is_retry_arrival(env: &Envelope, self_actor: &str) -> bool {
    env.status
        .as_ref()
        .is_some_and(|s| s.phase == Phase::Retrying && s.actor == self_actor)
}

/// §8 step 9: stamps the status block and `x-asya-first-attempt` for processing.
pub fn stamp(env: &mut Envelope, self_actor: &str, now: OffsetDateTime) {
    let retry = is_retry_arrival(env, self_actor);
    let now_s = format_ts(now);
    match env.status.as_mut() {
        None => {
            env.status = Some(Status {
                phase: Phase::Processing,
                reason: None,
                actor: self_actor.to_owned(),
                attempt: 1,
                max_attempts: 0,
                created_at: now_s.clone(),
                updated_at: now_s.clone(),
                deadline_at: None,
                error: None,
            });
        }
        Some(s) => {
            if !retry {
                s.attempt = 1;
            }
            if s.attempt == 0 {
                s.attempt = 1;
            }
            s.phase = Phase::Processing;
            s.reason = None;
            s.error = None;
            s.actor = self_actor.to_owned();
            s.max_attempts = 0;
            s.updated_at = now_s.clone();
            if s.created_at.is_empty() {
                s.created_at = now_s.clone();
            }
        }
    }
    if !retry || !env.headers.contains_key(headers::FIRST_ATTEMPT) {
        env.headers
            .insert(headers::FIRST_ATTEMPT.to_owned(), Value::String(now_s));
    }
}

/// Mutable status block, created with `created_at = now` when missing (attempt and
/// max_attempts 1: §2 counts attempts from 1, and 1 is the value outside errors).
fn status_mut(env: &mut Envelope, now: OffsetDateTime) -> &mut Status {
    env.status.get_or_insert_with(|| Status {
        attempt: 1,
        max_attempts: 1,
        created_at: format_ts(now),
        ..Status::default()
    })
}

/// §8 step 4: the task was canceled or paused at the gateway; divert to x-sink.
pub fn divert_preflight(
    env: &mut Envelope,
    gateway_status: Phase,
    self_actor: &str,
    now: OffsetDateTime,
) {
    let reason = if gateway_status == Phase::Paused {
        Reason::PreFlightPaused
    } else {
        Reason::PreFlightCanceled
    };
    let s = status_mut(env, now);
    s.phase = gateway_status;
    s.reason = Some(reason);
    s.actor = self_actor.to_owned();
    s.updated_at = format_ts(now);
}

/// The envelope's SLA deadline, if set and parseable.
pub fn deadline(env: &Envelope) -> Option<OffsetDateTime> {
    env.status
        .as_ref()
        .and_then(|s| s.deadline_at.as_deref())
        .and_then(parse_ts)
}

/// §8 step 5: is the SLA deadline already in the past?
pub fn sla_expired(env: &Envelope, now: OffsetDateTime) -> bool {
    deadline(env).is_some_and(|d| d < now)
}

/// §8 step 5 / 10: status for an expired SLA (sent to x-sink).
pub fn mark_sla_timeout(env: &mut Envelope, self_actor: &str, now: OffsetDateTime) {
    let s = status_mut(env, now);
    s.phase = Phase::Failed;
    s.reason = Some(Reason::Timeout);
    // The block is replaced (§8 step 5): a stale retry error must not become the
    // reported cause of a timeout.
    s.error = None;
    s.actor = self_actor.to_owned();
    s.attempt = 1;
    s.max_attempts = 1;
    s.updated_at = format_ts(now);
    if s.created_at.is_empty() {
        s.created_at = format_ts(now);
    }
}

/// §8 step 10: the time budget for the runtime call, or `None` when the SLA leaves
/// less than one second (or nothing).
pub fn effective_timeout(
    actor_timeout: Duration,
    env: &Envelope,
    now: OffsetDateTime,
) -> Option<Duration> {
    match deadline(env) {
        None => (!actor_timeout.is_zero()).then_some(actor_timeout),
        Some(d) => {
            let left = d - now;
            if left < time::Duration::seconds(1) {
                return None;
            }
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            let budget = left.min(actor_timeout);
            (!budget.is_zero()).then_some(budget)
        }
    }
}

/// §8 step 12: zero frames; the stamped input goes to x-sink as succeeded.
pub fn mark_zero_frames(env: &mut Envelope, self_actor: &str, now: OffsetDateTime) {
    let s = status_mut(env, now);
    s.phase = Phase::Succeeded;
    s.reason = Some(Reason::Completed);
    s.actor = self_actor.to_owned();
    s.attempt = 1;
    s.max_attempts = 1;
    s.updated_at = format_ts(now);
}

/// §8 step 7: accepts an Asya-style exhaustion hand-off (`PolicyRouted` with
/// `route.next[0] == self`) by advancing it first. Returns true when it did.
pub fn accept_policy_routed(env: &mut Envelope, self_actor: &str) -> bool {
    let routed = env
        .status
        .as_ref()
        .is_some_and(|s| s.reason == Some(Reason::PolicyRouted));
    if routed
        && env.route.curr != self_actor
        && env.route.next.first().map(String::as_str) == Some(self_actor)
    {
        env.route = route::advance(&env.route);
        return true;
    }
    false
}

/// §9.3 not exhausted: the envelope to send to the own queue with a delay.
pub fn retry_envelope(
    stamped: &Envelope,
    error: ErrorInfo,
    max_attempts: u32,
    now: OffsetDateTime,
) -> Envelope {
    let mut env = stamped.clone();
    let s = status_mut(&mut env, now);
    s.phase = Phase::Retrying;
    s.reason = None;
    s.error = (!error.is_empty()).then_some(error);
    s.attempt = s.attempt.saturating_add(1);
    s.max_attempts = max_attempts;
    s.updated_at = format_ts(now);
    env
}

/// §9.3 exhausted with `onExhausted`: rerouted envelope (route shifted, `PolicyRouted`).
/// `on_exhausted` must be non-empty.
pub fn policy_routed_envelope(
    stamped: &Envelope,
    on_exhausted: &[String],
    error: ErrorInfo,
    max_attempts: u32,
    now: OffsetDateTime,
) -> Envelope {
    let mut env = stamped.clone();
    let mut prev = env.route.prev.clone();
    prev.push(env.route.curr.clone());
    env.route = Route {
        prev,
        curr: on_exhausted.first().cloned().unwrap_or_default(),
        next: on_exhausted.iter().skip(1).cloned().collect(),
    };
    let s = status_mut(&mut env, now);
    s.phase = Phase::Failed;
    s.reason = Some(Reason::PolicyRouted);
    s.error = (!error.is_empty()).then_some(error);
    s.max_attempts = max_attempts;
    s.updated_at = format_ts(now);
    env
}

/// Where a dispatched frame goes (§8.2 steps 4–5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The queue of this (physical) actor.
    Actor(String),
    /// x-sink (end of route).
    Sink,
    /// Not routed: the frame carries `x-asya-pause`.
    Paused,
}

/// §8.2: the outgoing envelope for frame `index`. `child_id` is the fresh id for
/// `index >= 1` (ignored for frame 0).
#[allow(clippy::too_many_arguments)]
pub fn outgoing(
    stamped: &Envelope,
    frame: Frame,
    index: usize,
    child_id: impl FnOnce() -> String,
    self_actor: &str,
    sink: &str,
    sump: &str,
    now: OffsetDateTime,
) -> (Envelope, Target) {
    let (id, parent_id) = if index == 0 {
        (stamped.id.clone(), stamped.parent_id.clone())
    } else {
        (child_id(), Some(stamped.id.clone()))
    };
    let mut headers = frame
        .headers
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| stamped.headers.clone());
    let frame_status: Option<Status> = frame.status.and_then(|v| serde_json::from_value(v).ok());
    let input_status = stamped.status.as_ref();
    let pick = |f: fn(&Status) -> Option<String>| {
        frame_status
            .as_ref()
            .and_then(f)
            .or_else(|| input_status.and_then(f))
    };
    let created_at = pick(|s| Some(s.created_at.clone()).filter(|c| !c.is_empty()))
        .unwrap_or_else(|| format_ts(now));
    let deadline_at = pick(|s| s.deadline_at.clone());

    let paused = headers.contains_key(headers::PAUSE);
    let target = if paused {
        Target::Paused
    } else {
        match route::destination(&frame.route, &mut headers, self_actor, sink, sump) {
            Destination::Sink => Target::Sink,
            Destination::Actor(a) => Target::Actor(a),
        }
    };
    let status = match &target {
        Target::Sink => {
            let from = frame_status.as_ref().or(input_status);
            Status {
                phase: Phase::Succeeded,
                reason: Some(Reason::Completed),
                actor: from
                    .map(|s| s.actor.clone())
                    .unwrap_or_else(|| self_actor.to_owned()),
                attempt: from.map_or(1, |s| s.attempt.max(1)),
                // 0 is the "policy unknown" placeholder of a processing status; a
                // finished envelope says 1 unless a policy set more (§2 status table).
                max_attempts: from.map_or(1, |s| s.max_attempts.max(1)),
                created_at,
                updated_at: format_ts(now),
                deadline_at,
                error: None,
            }
        }
        Target::Actor(_) | Target::Paused => Status {
            phase: Phase::Pending,
            reason: None,
            actor: frame.route.curr.clone(),
            attempt: 1,
            max_attempts: 1,
            created_at,
            updated_at: format_ts(now),
            deadline_at,
            error: None,
        },
    };
    let env = Envelope {
        id,
        parent_id,
        route: frame.route,
        headers,
        status: Some(status),
        payload: frame.payload,
    };
    (env, target)
}
