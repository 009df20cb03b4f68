//! The deferral attribute `x-troupe-deliver-at` (platform.md §1.1): a message that
//! must not be processed before a wall-clock time the broker cannot delay to.

use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Attribute carrying the due time, RFC 3339 UTC with milliseconds.
pub const DELIVER_AT: &str = "x-troupe-deliver-at";

/// `2026-01-31T12:00:00.250Z` for `at`.
pub fn format_deliver_at(at: SystemTime) -> String {
    let t = OffsetDateTime::from(at);
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    // Formatting a UTC time with a fixed description only fails for years past 9999.
    t.format(&fmt)
        .unwrap_or_else(|_| "9999-12-31T23:59:59.999Z".to_owned())
}

/// Parses any RFC 3339 time (other writers may use offsets or more digits); `None`
/// when it is not one, so a garbled attribute never blocks a message.
pub fn parse_deliver_at(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Time left until `at`; zero once it has passed.
pub fn remaining(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// Whole seconds, rounded up, so a delay is never shortened by the brokers' 1-second
/// granularity.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn formats_utc_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_767_225_600_250);
        assert_eq!(format_deliver_at(at), "2026-01-01T00:00:00.250Z");
        assert_eq!(parse_deliver_at("2026-01-01T00:00:00.250Z"), Some(at));
    }

    #[test]
    fn parses_offsets_and_rejects_garbage() {
        let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(parse_deliver_at("2026-01-01T01:00:00+01:00"), Some(at));
        assert_eq!(parse_deliver_at(" 2026-01-01T00:00:00Z "), Some(at));
        assert_eq!(parse_deliver_at("tomorrow"), None);
        assert_eq!(parse_deliver_at(""), None);
    }

    #[test]
    fn round_trips_now() {
        let now = SystemTime::now();
        let back = parse_deliver_at(&format_deliver_at(now)).unwrap();
        let diff = now.duration_since(back).unwrap();
        assert!(diff < Duration::from_millis(1), "{diff:?}");
    }

    #[test]
    fn remaining_and_ceil() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(
            remaining(now + Duration::from_secs(5), now),
            Duration::from_secs(5)
        );
        assert_eq!(remaining(now - Duration::from_secs(5), now), Duration::ZERO);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
