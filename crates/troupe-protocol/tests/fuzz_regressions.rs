#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Inputs the fuzz targets in `fuzz/` found, kept as regression tests.

use troupe_protocol::{Envelope, Frame};

/// Found by the `envelope` fuzz target: numbers outside what the typed fields hold
/// (headers, a frame's status) changed in their last digit on every hop, because JSON
/// floats were not parsed to the nearest `f64` (serde_json without `float_roundtrip`).
#[test]
fn json_numbers_survive_a_hop_unchanged() {
    let fuzzed: &[u8] = br#"{"id": "t4", "route": {"prev": ["a"], "curr": "x-sink", "next": []}, "headers": {"x-asya-pause": {"prompt": "ok?", "fields": [{"name": "approved", "type": "boolean"}]}}, "status": {"phase": "paused", "reason": "Completed", "actor": "a", "attempt": 123456789101234567890, "neg -":-1e300, "u": "\u00e9\ud83d\ude00"}}"#;
    let frame: Frame = serde_json::from_slice(fuzzed).unwrap();
    let once = serde_json::to_vec(&frame).unwrap();
    let again: Frame = serde_json::from_slice(&once).unwrap();
    assert_eq!(
        String::from_utf8(serde_json::to_vec(&again).unwrap()).unwrap(),
        String::from_utf8(once).unwrap()
    );

    // The same through an envelope header, as a sidecar forwards it.
    for n in [
        "1.2345678910123457e20",
        "123456789101234567890",
        "2.2250738585072014e-308",
        "0.30000000000000004",
    ] {
        let body = format!(
            r#"{{"id":"t","route":{{"prev":[],"curr":"a","next":[]}},"headers":{{"n":{n}}},"payload":null}}"#
        );
        let env = Envelope::from_slice(body.as_bytes()).unwrap();
        let hop1 = env.to_vec();
        let hop2 = Envelope::from_slice(&hop1).unwrap().to_vec();
        assert_eq!(
            String::from_utf8(hop2).unwrap(),
            String::from_utf8(hop1).unwrap(),
            "{n}"
        );
        let parsed: f64 = n.parse().unwrap();
        assert_eq!(
            env.headers["n"].as_f64(),
            Some(parsed),
            "{n} is not read as the nearest f64"
        );
    }
}
