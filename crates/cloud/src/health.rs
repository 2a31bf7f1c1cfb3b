//! What the routing policy reads about a cloud tier: is it up, how fast does
//! it answer, and per endpoint the breaker state and counters. Counters are
//! atomics; the breaker sits behind a mutex held for nanoseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use api::BackendErrorKind;
use serde::Serialize;

use crate::breaker::BreakerState;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudHealth {
    pub name: String,
    /// Some endpoint's circuit is not open (a half-open one would take a probe).
    pub up: bool,
    /// Moving average of the time from sending a request to its response
    /// headers, over all endpoints; `None` before the first response.
    pub rtt_ms: Option<f64>,
    pub endpoints: Vec<EndpointHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointHealth {
    /// The base URL as configured.
    pub url: String,
    pub model: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Tries sent to this endpoint.
    pub requests: u64,
    /// Failed tries by error kind (`connect`, `status`, `stall`, …); kinds
    /// never seen are left out.
    pub errors: BTreeMap<&'static str, u64>,
    pub rtt_ms: Option<f64>,
}

const KINDS: [BackendErrorKind; 12] = [
    BackendErrorKind::Connect,
    BackendErrorKind::Timeout,
    BackendErrorKind::Stall,
    BackendErrorKind::Interrupted,
    BackendErrorKind::Malformed,
    BackendErrorKind::Status,
    BackendErrorKind::InBand,
    BackendErrorKind::Overloaded,
    BackendErrorKind::Unsupported,
    BackendErrorKind::Unavailable,
    BackendErrorKind::Cancelled,
    BackendErrorKind::Other,
];

fn kind_index(kind: BackendErrorKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len() - 1)
}

#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) requests: AtomicU64,
    errors: [AtomicU64; KINDS.len()],
    pub(crate) rtt: Ewma,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            requests: AtomicU64::new(0),
            errors: Default::default(),
            rtt: Ewma::new(),
        }
    }

    pub(crate) fn error(&self, kind: BackendErrorKind) {
        self.errors[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn errors(&self) -> BTreeMap<&'static str, u64> {
        KINDS
            .iter()
            .zip(&self.errors)
            .filter_map(|(k, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then_some((k.as_str(), n))
            })
            .collect()
    }
}

/// Exponentially weighted moving average in milliseconds, lock-free.
#[derive(Debug)]
pub(crate) struct Ewma(AtomicU64);

/// Weight of the newest sample: about the last ten samples matter.
const ALPHA: f64 = 0.2;

impl Ewma {
    pub(crate) fn new() -> Self {
        Ewma(AtomicU64::new(f64::NAN.to_bits()))
    }

    pub(crate) fn record(&self, ms: f64) {
        // fetch_update retries on a concurrent update, so no sample is lost.
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            let old = f64::from_bits(bits);
            let new = if old.is_nan() { ms } else { old + ALPHA * (ms - old) };
            Some(new.to_bits())
        });
    }

    pub(crate) fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.0.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_starts_empty_and_moves_toward_samples() {
        let e = Ewma::new();
        assert_eq!(e.get(), None);
        e.record(100.0);
        assert_eq!(e.get(), Some(100.0));
        e.record(200.0);
        assert_eq!(e.get(), Some(120.0));
    }

    #[test]
    fn errors_by_kind() {
        let s = Stats::new();
        s.error(BackendErrorKind::Stall);
        s.error(BackendErrorKind::Stall);
        s.error(BackendErrorKind::Other);
        assert_eq!(s.errors(), BTreeMap::from([("other", 1), ("stall", 2)]));
    }
}
