//! The envelope parser (`Envelope::from_slice`, `Frame`) and the pure sidecar steps that
//! follow it: whatever a queue delivers must not panic, a parsed envelope must survive a
//! re-serialisation unchanged, and every envelope the steps produce must parse again.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use time::macros::datetime;
use troupe_protocol::envelope::{Envelope, Frame};
use troupe_protocol::{errors, lifecycle, route, Reason};

fn reparse(env: &Envelope, what: &str) -> Envelope {
    let bytes = env.to_vec();
    match Envelope::from_slice(&bytes) {
        Ok(e) => e,
        Err(e) => panic!(
            "{what} does not parse again ({e}): {}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let now = datetime!(2026-01-02 03:04:05.678 UTC);
    // What the sidecar stores in x-sump for an unparseable body must itself parse.
    let sump = errors::error_envelope_unparsed(data, "fuzz", "a", now);
    reparse(&sump, "error_envelope_unparsed");

    if let Ok(frame) = serde_json::from_slice::<Frame>(data) {
        let text = serde_json::to_vec(&frame).unwrap_or_default();
        let again: Frame = serde_json::from_slice(&text).expect("a serialised frame parses");
        assert_eq!(
            serde_json::to_vec(&again).unwrap_or_default(),
            text,
            "frame round trip"
        );
    }

    let Ok(env) = Envelope::from_slice(data) else {
        return;
    };
    let wire = env.to_vec();
    let again = reparse(&env, "a parsed envelope");
    assert_eq!(
        again.to_vec(),
        wire,
        "serialising a parsed envelope is not stable"
    );

    // The per-message steps of protocol.md §8 on this envelope.
    let mut stamped = env.clone();
    lifecycle::stamp(&mut stamped, "a", now);
    reparse(&stamped, "stamped envelope");
    let _ = lifecycle::sla_expired(&stamped, now);
    let _ = lifecycle::effective_timeout(Duration::from_secs(300), &stamped, now);
    let _ = route::accepts(&env.route.curr, "a", &env.headers);
    let frame = Frame {
        payload: env.payload.clone(),
        route: route::advance(&env.route),
        headers: None,
        status: env
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok()),
    };
    for index in 0..2 {
        let (out, _) = lifecycle::outgoing(
            &stamped,
            frame.clone(),
            index,
            || "child".to_owned(),
            "a",
            "x-sink",
            "x-sump",
            now,
        );
        reparse(&out, "outgoing envelope");
    }
    let mut timed_out = stamped.clone();
    lifecycle::mark_sla_timeout(&mut timed_out, "a", now);
    reparse(&timed_out, "SLA timeout envelope");
    let err = errors::error_envelope(&env, Reason::RuntimeError, "boom", None, "a", now);
    reparse(&err, "error envelope");
});
