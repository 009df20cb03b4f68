//! Go duration strings (`500ms`, `1.5s`, `1m30s`, `5m0s`), as used by Asya's env vars and
//! the AsyncActor resource.
//!
//! Parsing follows Go's `time.ParseDuration` (including its float arithmetic for fractions,
//! so `1.1s` and friends resolve to the same nanosecond count as in Asya's Go sidecar), except
//! that negative durations are rejected. Formatting reproduces `time.Duration.String()`.

use std::time::Duration;

/// A duration string that is not valid Go syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration '{input}': {why} (use Go syntax such as 500ms, 1.5s, 1m30s, 2h)")]
pub struct DurationError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub why: String,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Go's `time.Duration` is an `int64` of nanoseconds; larger values are rejected as in Go.
const MAX_NANOS: u64 = i64::MAX as u64;

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU, both accepted by Go.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parses a Go duration string. Negative durations are rejected.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |why: &str| DurationError {
        input: input.to_owned(),
        why: why.to_owned(),
    };
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(fail("empty string"));
    }

    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(fail("expected a number"));
        }
        // Integer part; Go rejects it on overflow.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for b in s[..int_len].bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|v| *v <= MAX_NANOS)
                .ok_or_else(|| fail("number too large"))?;
        }
        s = &s[int_len..];
        let pre = int_len > 0;

        // Fraction part; digits beyond what fits are ignored, as in Go.
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            post = frac_len > 0;
            let mut overflow = false;
            for b in rest[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                match frac
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .filter(|v| *v <= MAX_NANOS)
                {
                    Some(v) => {
                        frac = v;
                        scale *= 10.0;
                    }
                    None => overflow = true,
                }
            }
            s = &rest[frac_len..];
        }
        if !pre && !post {
            return Err(fail("expected digits around '.'"));
        }

        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(fail("missing unit (ns, us, ms, s, m or h)"));
        }
        let unit_str = &s[..unit_len];
        s = &s[unit_len..];
        let unit = unit_nanos(unit_str).ok_or_else(|| {
            fail(&format!(
                "unknown unit '{unit_str}'; units are ns, us, ms, s, m, h"
            ))
        })?;

        let mut v = whole
            .checked_mul(unit)
            .filter(|v| *v <= MAX_NANOS)
            .ok_or_else(|| fail("duration too large"))?;
        if frac > 0 {
            // Same float arithmetic as Go so fractional values round identically.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let extra = (frac as f64 * (unit as f64 / scale)) as u64;
            v = v
                .checked_add(extra)
                .filter(|v| *v <= MAX_NANOS)
                .ok_or_else(|| fail("duration too large"))?;
        }
        total = total
            .checked_add(v)
            .filter(|v| *v <= MAX_NANOS)
            .ok_or_else(|| fail("duration too large"))?;
    }
    if negative && total > 0 {
        return Err(fail("negative durations are not allowed"));
    }
    Ok(Duration::from_nanos(total))
}

/// Formats like Go's `time.Duration.String()`: `5m0s`, `1.5s`, `500ms`, `0s`.
///
/// Durations beyond Go's range (about 292 years) are clamped to Go's maximum.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .min(MAX_NANOS);
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < NANOS_PER_SEC {
        return if nanos < 1_000 {
            format!("{nanos}ns")
        } else if nanos < 1_000_000 {
            format!("{}\u{b5}s", with_fraction(nanos, 3))
        } else {
            format!("{}ms", with_fraction(nanos, 6))
        };
    }
    let secs_total = nanos / NANOS_PER_SEC;
    let sub = nanos % NANOS_PER_SEC;
    let secs = secs_total % 60;
    let mins_total = secs_total / 60;
    let mut out = String::new();
    if mins_total > 0 {
        let hours = mins_total / 60;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        out.push_str(&format!("{}m", mins_total % 60));
    }
    out.push_str(&with_fraction(secs * NANOS_PER_SEC + sub, 9));
    out.push('s');
    out
}

/// `v / 10^prec` with the fractional digits printed without trailing zeros.
fn with_fraction(v: u64, prec: u32) -> String {
    let div = 10u64.pow(prec);
    let whole = v / div;
    let frac = v % div;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn parses_go_examples() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("300ms", ms(300)),
            ("1.5s", ms(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("1us", Duration::from_micros(1)),
            ("1\u{b5}s", Duration::from_micros(1)),
            ("1\u{3bc}s", Duration::from_micros(1)),
            ("7ns", Duration::from_nanos(7)),
            ("5m", Duration::from_secs(300)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("+5s", Duration::from_secs(5)),
            ("1h1m1s1ms1us1ns", Duration::from_nanos(3_661_001_001_001)),
            ("1.0000000001s", Duration::from_secs(1)),
            ("0.1ns", Duration::ZERO),
            ("1.1s", Duration::from_nanos(1_100_000_000)),
            ("30s", Duration::from_secs(30)),
            ("1s500ms", ms(1500)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input).unwrap(), *want, "{input}");
        }
    }

    #[test]
    fn rejects_invalid() {
        for input in [
            "",
            "-",
            "+",
            "1",
            "10",
            "s",
            ".s",
            "-1s",
            "-1.5h",
            "1x",
            "1 s",
            " 1s",
            "1s ",
            "abc",
            "1sm",
            "1.5.5s",
            "1e3s",
            "1S",
            "3000000h",
            "9223372037s",
            "1h-1m",
        ] {
            let err = parse_go_duration(input).unwrap_err();
            assert_eq!(err.input, input);
        }
    }

    #[test]
    fn error_message_names_problem() {
        let err = parse_go_duration("5").unwrap_err();
        assert!(err.to_string().contains("missing unit"), "{err}");
        let err = parse_go_duration("5y").unwrap_err();
        assert!(err.to_string().contains("unknown unit 'y'"), "{err}");
        let err = parse_go_duration("-5s").unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        assert!(err.to_string().contains("'-5s'"), "{err}");
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_micros(1), "1\u{b5}s"),
            (Duration::from_nanos(1_500), "1.5\u{b5}s"),
            (ms(1), "1ms"),
            (ms(500), "500ms"),
            (Duration::from_nanos(1_234_567), "1.234567ms"),
            (Duration::from_secs(1), "1s"),
            (ms(1500), "1.5s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(2 * 3600 + 45 * 60), "2h45m0s"),
            (Duration::from_nanos(3_661_001_001_001), "1h1m1.001001001s"),
            (Duration::from_nanos(MAX_NANOS), "2562047h47m16.854775807s"),
            (Duration::MAX, "2562047h47m16.854775807s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(*d), *want, "{d:?}");
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for nanos in [
            0u64,
            1,
            999,
            1_000,
            1_001,
            999_999,
            1_000_000,
            123_456_789,
            1_000_000_000,
            59_999_999_999,
            3_600_000_000_000,
            86_400_123_000_000,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
        }
    }
}
