//! Percentiles of latency samples, as JSON in milliseconds.

use std::time::Duration;

use serde_json::{Value, json};

/// p50/p90/p99/mean/max of `samples` in milliseconds (microsecond
/// precision), by nearest rank; `null` when there are none.
pub fn summary(samples: &mut [Duration]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    samples.sort_unstable();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let total: Duration = samples.iter().sum();
    let mean = total / u32::try_from(samples.len()).unwrap_or(u32::MAX);
    json!({
        "p50": ms(percentile(samples, 50.0)),
        "p90": ms(percentile(samples, 90.0)),
        "p99": ms(percentile(samples, 99.0)),
        "mean": ms(mean),
        "max": ms(samples[samples.len() - 1]),
        "n": samples.len(),
    })
}

/// Nearest-rank percentile of sorted, non-empty samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summary(&mut v);
        assert_eq!(s["p50"], 50.0);
        assert_eq!(s["p90"], 90.0);
        assert_eq!(s["p99"], 99.0);
        assert_eq!(s["max"], 100.0);
        assert_eq!(s["mean"], 50.5);
        assert_eq!(percentile(&[Duration::from_millis(7)], 99.0), Duration::from_millis(7));
        assert_eq!(summary(&mut []), Value::Null);
    }
}
