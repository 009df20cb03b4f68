//! Timestamps (RFC 3339, UTC, whole seconds, `Z`) and an injectable clock.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Source of the current time; injected so tests can control it.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Formats as `2026-01-01T00:00:00Z` (UTC, whole seconds). Hand-rolled: it runs
/// several times per message and the `fmt` machinery costs more than the clock read.
pub fn format_ts(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = u32::try_from(t.year()).unwrap_or(0).min(9999);
    let mut b = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u32::from(u8::from(t.month())));
    put(8, 2, u32::from(t.day()));
    put(11, 2, u32::from(t.hour()));
    put(14, 2, u32::from(t.minute()));
    put(17, 2, u32::from(t.second()));
    b.iter().map(|&c| char::from(c)).collect()
}

/// Parses any RFC 3339 timestamp.
pub fn parse_ts(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_utc_whole_seconds_with_z() {
        assert_eq!(
            format_ts(datetime!(2026-01-02 03:04:05.987 UTC)),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            format_ts(datetime!(0999-12-31 23:59:59 UTC)),
            "0999-12-31T23:59:59Z"
        );
        // Other offsets are converted to UTC first.
        assert_eq!(
            format_ts(datetime!(2026-01-01 01:30:00 +02:00)),
            "2025-12-31T23:30:00Z"
        );
    }

    #[test]
    fn round_trips_through_parse() {
        let t = datetime!(2026-11-26 11:08:17 UTC);
        assert_eq!(parse_ts(&format_ts(t)), Some(t));
    }
}
