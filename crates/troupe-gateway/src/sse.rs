//! The SSE stream of one task (gateway.md §2.8): catch-up, live events, keepalive,
//! end after a terminal status.

use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use crate::gateway::{Gateway, GatewayError};
use crate::hub::{EventKind, Subscription};

const KEEPALIVE: &[u8] = b":keepalive\n\n";

struct SseState {
    catchup: Option<Bytes>,
    end_after_catchup: bool,
    sub: Subscription,
    keepalive: Interval,
    closing: watch::Receiver<bool>,
    done: bool,
}

/// One `event: <name>\ndata: <json>\n\n` frame.
pub(crate) fn frame(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Opens the stream of `id`; unknown ids fail before anything is streamed.
pub(crate) async fn open(
    gw: &Gateway,
    id: &str,
) -> Result<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static, GatewayError> {
    // Subscribe before reading so no update between the read and the subscription is
    // lost; at worst the client sees the catch-up state twice.
    let sub = gw.subscribe(id);
    let task = gw.get(id).await?;
    let period = gw
        .config()
        .keepalive_interval
        .max(std::time::Duration::from_millis(1));
    let mut keepalive = interval_at(Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = SseState {
        catchup: Some(frame("status", &task.data_json())),
        end_after_catchup: task.status.is_terminal(),
        sub,
        keepalive,
        closing: gw.closing(),
        done: false,
    };
    Ok(futures::stream::unfold(state, step))
}

async fn step(mut st: SseState) -> Option<(Result<Bytes, Infallible>, SseState)> {
    if st.done {
        return None;
    }
    if let Some(first) = st.catchup.take() {
        st.done = st.end_after_catchup;
        return Some((Ok(first), st));
    }
    if *st.closing.borrow_and_update() {
        return None;
    }
    tokio::select! {
        ev = st.sub.rx.recv() => {
            // `None`: the hub dropped us (status overflow); the client reconnects.
            let ev = ev?;
            if ev.kind == (EventKind::Status { terminal: true }) {
                st.done = true;
            }
            let bytes = frame(ev.kind.name(), &ev.data);
            Some((Ok(bytes), st))
        }
        _ = st.keepalive.tick() => Some((Ok(Bytes::from_static(KEEPALIVE)), st)),
        _ = st.closing.changed() => None,
    }
}
