//! Latency summaries.

use std::time::Duration;

/// p50/p99/mean of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Arithmetic mean.
    pub mean: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// Nearest-rank percentile of an ascending slice; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises `samples` (any order).
pub fn summarize(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    let mean = u32::try_from(samples.len())
        .ok()
        .filter(|n| *n > 0)
        .map_or(Duration::ZERO, |n| total / n);
    Latency {
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
        mean,
        max: samples.last().copied().unwrap_or_default(),
    }
}

/// Median of per-run figures (the middle one of an odd count, the mean of the two
/// middle ones of an even count); zero when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `count` per second over `elapsed`.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let c = count as f64;
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        c / s
    } else {
        0.0
    }
}

/// CPU seconds per 1,000 items.
pub fn per_thousand(cpu_seconds: f64, count: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let c = count as f64;
    if c > 0.0 {
        cpu_seconds * 1000.0 / c
    } else {
        0.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 50.0), ms(50));
        assert_eq!(percentile(&v, 99.0), ms(99));
        assert_eq!(percentile(&v, 100.0), ms(100));
        assert_eq!(percentile(&v, 0.0), ms(1));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn summary_sorts_and_averages() {
        let s = summarize(vec![ms(30), ms(10), ms(20), ms(40)]);
        assert_eq!(
            (s.p50, s.p99, s.mean, s.max),
            (ms(20), ms(40), ms(25), ms(40))
        );
        assert_eq!(summarize(Vec::new()).mean, Duration::ZERO);
    }

    #[test]
    fn medians() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(vec![4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-12);
        assert!(median(Vec::new()).abs() < f64::EPSILON);
    }

    #[test]
    fn rates() {
        assert!((rate(3000, Duration::from_millis(1500)) - 2000.0).abs() < 1e-9);
        assert!(rate(5, Duration::ZERO).abs() < f64::EPSILON);
        assert!((per_thousand(0.5, 2000) - 0.25).abs() < 1e-12);
    }
}
