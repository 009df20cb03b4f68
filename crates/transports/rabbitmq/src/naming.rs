//! The pure parts of the RabbitMQ mapping: names, routing keys, wait-queue arguments,
//! delivery counting and settings from the environment (platform.md §1.2, protocol.md
//! §4 and §15).

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use troupe_transport::TransportError;

/// The dead-letter exchange every actor queue's DLQ is bound to.
pub const DEAD_LETTER_EXCHANGE: &str = "asya-dlx";
/// Header carrying how many times a republished message was delivered before.
pub const DELIVERY_COUNT_HEADER: &str = "x-troupe-delivery-count";
/// Header quorum queues set on redeliveries; honoured when present.
const QUORUM_DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// Default exchange when `ASYA_RABBITMQ_EXCHANGE` is unset.
pub const DEFAULT_EXCHANGE: &str = "asya";
/// RabbitMQ's default `max_message_size` (3.8+): 128 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;
/// Longest backoff between retries (dial and queue setup).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Queue of `actor` in `namespace`: `asya-{namespace}-{actor}`.
pub fn queue_name(namespace: &str, actor: &str) -> String {
    format!("asya-{namespace}-{actor}")
}

/// Routing key of `queue`: the bare actor name, i.e. `queue` without its
/// `asya-{namespace}-` prefix (a queue outside the scheme routes by its whole name, as
/// Asya's sidecar does).
pub fn routing_key<'a>(namespace: &str, queue: &'a str) -> &'a str {
    queue
        .strip_prefix("asya-")
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|actor| !actor.is_empty())
        .unwrap_or(queue)
}

/// Dead-letter queue of `queue`: `{queue}-dlq`, i.e. `asya-{ns}-{actor}-dlq`.
pub fn dead_letter_queue_name(queue: &str) -> String {
    format!("{queue}-dlq")
}

/// Whole seconds a delay waits in its wait queue: `max(1, round(d))`; `None` when `d`
/// rounds to zero (then the message is sent at once).
pub fn delay_seconds(delay: Duration) -> Option<u64> {
    let rounded = (delay.as_millis() + 500) / 1000;
    if rounded == 0 {
        None
    } else {
        Some(u64::try_from(rounded).unwrap_or(u64::MAX).max(1))
    }
}

/// Arguments of an actor queue: none, as Asya's sidecar declares them (a queue the
/// platform made with others is still used, see `declare_queue`).
pub fn actor_queue_args() -> FieldTable {
    FieldTable::default()
}

/// Wait queue for delays of `seconds` on `queue`: `{queue}.delay.{seconds}`.
pub fn delay_queue_name(queue: &str, seconds: u64) -> String {
    format!("{queue}.delay.{seconds}")
}

/// Arguments of a wait queue: messages expire after `seconds` and dead-letter back into
/// `exchange` with key `actor`; the queue itself goes away after `2·seconds + 60` s
/// unused.
pub fn delay_queue_args(exchange: &str, actor: &str, seconds: u64) -> FieldTable {
    let ms =
        |s: u64| AMQPValue::LongLongInt(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), ms(seconds));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(exchange)),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(actor)),
    );
    args.insert(
        "x-expires".into(),
        ms(seconds.saturating_mul(2).saturating_add(60)),
    );
    args
}

/// How long a wait-queue declaration may be reused before publishing to it again: the
/// queue expires `2s + 60` s after its last declaration, and a message published now
/// must outlive its `s`-second wait, so redeclare once `s + 50` s have passed.
pub fn delay_queue_redeclare_after(seconds: u64) -> Duration {
    Duration::from_secs(seconds.saturating_add(50))
}

fn as_u64(v: &AMQPValue) -> Option<u64> {
    match v {
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(*n),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn header_u64(props: &BasicProperties, name: &str) -> Option<u64> {
    props
        .headers()
        .as_ref()?
        .inner()
        .get(&ShortString::from(name))
        .and_then(as_u64)
}

/// The delivery number of a message received with `props`: the deliveries recorded in
/// [`DELIVERY_COUNT_HEADER`] by earlier requeues, plus this one, plus the broker's own
/// redeliveries (the `redelivered` flag, or a quorum queue's `x-delivery-count`). A
/// lower bound when a message was redelivered by the broker more than once.
pub fn delivery_count(props: &BasicProperties, redelivered: bool) -> u32 {
    let before = header_u64(props, DELIVERY_COUNT_HEADER).unwrap_or(0);
    let broker = header_u64(props, QUORUM_DELIVERY_COUNT_HEADER)
        .unwrap_or(0)
        .max(u64::from(redelivered));
    u32::try_from(before.saturating_add(1).saturating_add(broker)).unwrap_or(u32::MAX)
}

/// `props` with [`DELIVERY_COUNT_HEADER`] set to `count` (other headers kept) and
/// persistent delivery.
pub fn with_delivery_count(props: &BasicProperties, count: u32) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        DELIVERY_COUNT_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(count)),
    );
    props.clone().with_headers(headers).with_delivery_mode(2)
}

/// Properties of a fresh message: persistent, `application/json` (what Asya sends).
pub fn new_message_properties() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

/// `base · 2^attempt`, at most 30 s.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_BACKOFF)
}

/// The limit in a broker refusal such as `PRECONDITION_FAILED - message size 5242880 is
/// larger than configured max size 4194304`, with the refused size.
pub fn parse_size_refusal(text: &str) -> Option<(usize, usize)> {
    let size = text
        .split("message size ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let limit = text
        .split("max size ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((size, limit))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The AMQP URL from the sidecar environment: `ASYA_RABBITMQ_URL`, else
/// `ASYA_RABBITMQ_HOST` / `_PORT` / `_USERNAME` / `_PASSWORD` (defaults `localhost`,
/// `5672`, `guest` / `guest`) on the default vhost. `get` reads a variable.
pub fn url_from_env(get: impl Fn(&str) -> Option<String>) -> Result<String, TransportError> {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    if let Some(url) = var("ASYA_RABBITMQ_URL") {
        let url = normalize_url(&url);
        validate_url(&url)?;
        return Ok(url);
    }
    let host = var("ASYA_RABBITMQ_HOST").unwrap_or_else(|| "localhost".to_owned());
    let port = var("ASYA_RABBITMQ_PORT").unwrap_or_else(|| "5672".to_owned());
    if port.parse::<u16>().is_err() {
        return Err(TransportError::Config {
            kind: "rabbitmq",
            message: format!("ASYA_RABBITMQ_PORT must be a port number, not '{port}'"),
        });
    }
    let user = var("ASYA_RABBITMQ_USERNAME").unwrap_or_else(|| "guest".to_owned());
    let pass = get("ASYA_RABBITMQ_PASSWORD").unwrap_or_else(|| "guest".to_owned());
    let url = format!(
        "amqp://{}:{}@{host}:{port}/%2f",
        percent_encode(&user),
        percent_encode(&pass)
    );
    validate_url(&url)?;
    Ok(url)
}

/// The URL with its virtual host spelled so that lapin reads it as amqp091-go and pika
/// do (Asya's env files rely on that): no path or a bare `/` means vhost `/` (lapin would
/// read `amqp://host/` as vhost ""), `/foo` is `foo`, `/%2f` is `/`. Query and fragment
/// are kept; a URL that is not `amqp[s]://` comes back unchanged (validation reports it).
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if !(scheme.eq_ignore_ascii_case("amqp") || scheme.eq_ignore_ascii_case("amqps")) {
        return url.to_owned();
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(end);
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    if path.is_empty() || path == "/" {
        format!("{scheme}://{authority}/%2f{query}")
    } else {
        url.to_owned()
    }
}

/// Checks that `url` is an `amqp://` or `amqps://` URL lapin can dial.
pub fn validate_url(url: &str) -> Result<(), TransportError> {
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err(TransportError::Config {
            kind: "rabbitmq",
            message: format!(
                "the RabbitMQ URL must start with amqp:// or amqps://, got '{}'",
                troupe_transport::redact_url(url)
            ),
        });
    }
    url.parse::<lapin::uri::AMQPUri>()
        .map(|_| ())
        .map_err(|e| TransportError::Config {
            kind: "rabbitmq",
            message: format!(
                "invalid RabbitMQ URL '{}': {e}; expected amqp://user:pass@host:port/vhost",
                troupe_transport::redact_url(url)
            ),
        })
}

/// A Go-style duration (`1s`, `500ms`, `2m`, `1.5s`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_protocol() {
        assert_eq!(queue_name("prod", "summarize"), "asya-prod-summarize");
        assert_eq!(routing_key("prod", "asya-prod-summarize"), "summarize");
        assert_eq!(routing_key("prod", "asya-prod-x-sink"), "x-sink");
        assert_eq!(routing_key("prod", "asya-other-a"), "asya-other-a");
        assert_eq!(routing_key("prod", "asya-prod-"), "asya-prod-");
        assert_eq!(routing_key("prod", "plain"), "plain");
        // A namespace that prefixes another does not strip it wrongly.
        assert_eq!(routing_key("pro", "asya-prod-a"), "asya-prod-a");
        assert_eq!(
            dead_letter_queue_name("asya-prod-summarize"),
            "asya-prod-summarize-dlq"
        );
        assert_eq!(
            delay_queue_name("asya-prod-summarize", 5),
            "asya-prod-summarize.delay.5"
        );
    }

    #[test]
    fn delays_round_to_whole_seconds() {
        assert_eq!(delay_seconds(Duration::ZERO), None);
        assert_eq!(delay_seconds(Duration::from_millis(499)), None);
        assert_eq!(delay_seconds(Duration::from_millis(500)), Some(1));
        assert_eq!(delay_seconds(Duration::from_millis(1499)), Some(1));
        assert_eq!(delay_seconds(Duration::from_millis(1500)), Some(2));
        assert_eq!(delay_seconds(Duration::from_secs(2)), Some(2));
        assert_eq!(delay_seconds(Duration::from_secs(3600)), Some(3600));
    }

    #[test]
    fn wait_queue_arguments() {
        let args = delay_queue_args("asya", "summarize", 5);
        let get = |k: &str| args.inner().get(&ShortString::from(k)).cloned();
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(5000)));
        assert_eq!(get("x-expires"), Some(AMQPValue::LongLongInt(70_000)));
        assert_eq!(
            get("x-dead-letter-exchange"),
            Some(AMQPValue::LongString("asya".into()))
        );
        assert_eq!(
            get("x-dead-letter-routing-key"),
            Some(AMQPValue::LongString("summarize".into()))
        );
        assert_eq!(args.inner().len(), 4);
        // Redeclared before a message could outlive its queue.
        assert!(delay_queue_redeclare_after(5) + Duration::from_secs(5) < Duration::from_secs(70));
    }

    #[test]
    fn delivery_counting() {
        let fresh = new_message_properties();
        assert_eq!(delivery_count(&fresh, false), 1);
        assert_eq!(delivery_count(&fresh, true), 2);
        let again = with_delivery_count(&fresh, 1);
        assert_eq!(delivery_count(&again, false), 2);
        assert_eq!(delivery_count(&with_delivery_count(&again, 2), false), 3);
        assert_eq!(again.delivery_mode(), &Some(2));
        assert_eq!(again.content_type(), &Some("application/json".into()));
        let mut quorum = FieldTable::default();
        quorum.insert("x-delivery-count".into(), AMQPValue::LongInt(2));
        let q = BasicProperties::default().with_headers(quorum);
        assert_eq!(delivery_count(&q, true), 3);
        let mut text = FieldTable::default();
        text.insert(
            DELIVERY_COUNT_HEADER.into(),
            AMQPValue::LongString("4".into()),
        );
        let t = BasicProperties::default().with_headers(text);
        assert_eq!(delivery_count(&t, false), 5);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let s = Duration::from_secs(1);
        assert_eq!(backoff(s, 0), s);
        assert_eq!(backoff(s, 3), Duration::from_secs(8));
        assert_eq!(backoff(s, 5), Duration::from_secs(30));
        assert_eq!(backoff(s, 40), Duration::from_secs(30));
    }

    #[test]
    fn size_refusals_parse() {
        assert_eq!(
            parse_size_refusal(
                "PRECONDITION_FAILED - message size 5242880 is larger than configured max size 4194304"
            ),
            Some((5_242_880, 4_194_304))
        );
        assert_eq!(parse_size_refusal("NOT_FOUND - no queue"), None);
    }

    #[test]
    fn url_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            url_from_env(env(&[])).unwrap(),
            "amqp://guest:guest@localhost:5672/%2f"
        );
        assert_eq!(
            url_from_env(env(&[
                ("ASYA_RABBITMQ_HOST", "rmq.svc"),
                ("ASYA_RABBITMQ_PORT", "5673"),
                ("ASYA_RABBITMQ_USERNAME", "asya"),
                ("ASYA_RABBITMQ_PASSWORD", "p@ss:w/rd"),
            ]))
            .unwrap(),
            "amqp://asya:p%40ss%3Aw%2Frd@rmq.svc:5673/%2f"
        );
        assert_eq!(
            url_from_env(env(&[
                ("ASYA_RABBITMQ_URL", "amqp://u:p@h:1/v"),
                ("ASYA_RABBITMQ_HOST", "ignored"),
            ]))
            .unwrap(),
            "amqp://u:p@h:1/v"
        );
        let err = url_from_env(env(&[("ASYA_RABBITMQ_PORT", "http")])).unwrap_err();
        assert!(matches!(err, TransportError::Config { .. }), "{err}");
        let err = url_from_env(env(&[("ASYA_RABBITMQ_URL", "http://u:secret@h/")])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("amqp://") && !text.contains("secret"),
            "{text}"
        );
    }

    /// The vhost lapin dials, as amqp091-go and pika read the same URL.
    fn vhost(url: &str) -> String {
        normalize_url(url)
            .parse::<lapin::uri::AMQPUri>()
            .unwrap()
            .vhost
    }

    #[test]
    fn vhosts_read_as_amqp091_go_and_pika_do() {
        for (url, expected) in [
            ("amqp://guest:guest@host:5672/", "/"),
            ("amqp://guest:guest@host:5672", "/"),
            ("amqp://host/?heartbeat=10", "/"),
            ("amqps://host:5671/", "/"),
            ("amqp://host:5672/%2f", "/"),
            ("amqp://host:5672/%2F", "/"),
            ("amqp://host:5672/foo", "foo"),
            ("amqp://host:5672/foo?heartbeat=10", "foo"),
            ("amqp://host:5672/a%2fb", "a/b"),
        ] {
            assert_eq!(vhost(url), expected, "{url}");
        }
        assert_eq!(
            normalize_url("amqp://u:p@h:5672/?heartbeat=10"),
            "amqp://u:p@h:5672/%2f?heartbeat=10"
        );
        assert_eq!(normalize_url("redis://h/"), "redis://h/");
        let env = |k: &str| (k == "ASYA_RABBITMQ_URL").then(|| "amqp://h:5672/".to_owned());
        assert_eq!(url_from_env(env).unwrap(), "amqp://h:5672/%2f");
    }

    #[test]
    fn urls_are_validated() {
        validate_url("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        validate_url("amqps://u:p@host/vhost").unwrap();
        validate_url("amqp://host").unwrap();
        assert!(validate_url("amqp://host:notaport/").is_err());
        assert!(validate_url("redis://host").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("soon"), None);
    }
}
