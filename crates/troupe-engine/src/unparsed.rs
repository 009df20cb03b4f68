//! Messages that are no usable envelope (not JSON, empty, not an object, no `id`): they
//! become failed tasks under a generated id, so x-sump stores them in `failed/` and the
//! mesh API lists them, instead of leaving only a log line (protocol.md §8 step 1,
//! §11.2; docs/decisions.md "Unparseable messages").

use serde_json::{Map, Value};
use time::OffsetDateTime;
use troupe_protocol::envelope::{Envelope, Reason};
use troupe_protocol::errors;

/// The §11.2 error envelope for `body`, with a generated id when the body has none and
/// the raw body (its first 64 KiB, invalid UTF-8 replaced) as `payload.original_body`
/// whenever the id was generated, so the stored failure shows what arrived.
pub(crate) fn failed_envelope(
    body: &[u8],
    text: &str,
    actor: &str,
    now: OffsetDateTime,
) -> Envelope {
    let mut env = errors::error_envelope_unparsed(body, text, actor, now);
    if env.id.is_empty() {
        env.id = uuid::Uuid::new_v4().to_string();
        ensure_original_body(&mut env, body);
    }
    env
}

/// Gives an envelope that reached x-sump with an empty id (an Asya sidecar sends its
/// parse failures so) a generated one, so it can be stored and listed.
pub(crate) fn name_anonymous(env: &mut Envelope) {
    if env.id.is_empty() {
        env.id = uuid::Uuid::new_v4().to_string();
    }
}

/// Whether `env` is the error envelope of a parse failure.
pub(crate) fn is_parse_failure(env: &Envelope) -> bool {
    env.status.as_ref().and_then(|s| s.reason) == Some(Reason::ParseError)
}

fn ensure_original_body(env: &mut Envelope, body: &[u8]) {
    let Ok(mut payload) = serde_json::from_str::<Map<String, Value>>(env.payload.get()) else {
        return;
    };
    if payload.contains_key("original_body") {
        return;
    }
    payload.insert(
        "original_body".into(),
        Value::String(errors::truncated_body(body)),
    );
    if let Ok(raw) = serde_json::value::to_raw_value(&payload) {
        env.payload = raw;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn payload(env: &Envelope) -> Value {
        serde_json::from_str(env.payload.get()).unwrap()
    }

    #[test]
    fn every_kind_of_unparseable_body_gets_an_id_reason_and_raw_body() {
        for body in [
            &b"not json at all"[..],
            b"",
            b"[1, 2, 3]",
            b"{\"payload\": {\"x\": 1}}",
            b"{\"id\": \"\", \"route\": {\"prev\": [], \"curr\": \"a\", \"next\": []}, \"payload\": 1}",
            b"\xff\xfe binary",
        ] {
            let env = failed_envelope(body, "Failed to parse message: x", "a", NOW);
            assert!(uuid::Uuid::parse_str(&env.id).is_ok(), "{:?}", env.id);
            let status = env.status.as_ref().unwrap();
            assert_eq!(status.reason, Some(Reason::ParseError));
            assert_eq!(status.actor, "a");
            let p = payload(&env);
            assert_eq!(p["error"], json!("Failed to parse message: x"));
            assert_eq!(
                p["original_body"],
                json!(String::from_utf8_lossy(body)),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(is_parse_failure(&env));
        }
    }

    #[test]
    fn an_id_the_body_has_is_kept() {
        let env = failed_envelope(b"{\"id\": \"t7\", \"route\": 5}", "bad route", "a", NOW);
        assert_eq!(env.id, "t7");
    }

    #[test]
    fn each_failure_gets_its_own_id() {
        let a = failed_envelope(b"x", "t", "a", NOW);
        let b = failed_envelope(b"x", "t", "a", NOW);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn raw_body_is_cut_at_64_kib() {
        let body = vec![b'z'; 100 * 1024];
        let env = failed_envelope(&body, "t", "a", NOW);
        let p = payload(&env);
        assert_eq!(
            p["original_body"].as_str().unwrap().len(),
            errors::MAX_ORIGINAL_BODY
        );
    }
}
