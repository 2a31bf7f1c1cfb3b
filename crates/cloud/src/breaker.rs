//! One circuit breaker per endpoint: a pure state machine, time passed in.
//!
//! Closed → open after `failures_to_open` consecutive failures → after
//! `open_ms`, half-open: exactly one probe is let through → closed when it
//! succeeds, open again when it fails. A probe whose request is abandoned
//! (the app went away, the request itself was refused) frees the slot for
//! the next probe without changing the state.

use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    failures_to_open: u32,
    open_for: Duration,
    state: State,
    /// Consecutive failures, also counted while open (for health).
    consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_out: bool },
}

/// What `acquire` granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// A normal request through a closed circuit.
    Pass,
    /// The single probe of a half-open circuit.
    Probe,
}

impl Breaker {
    pub(crate) fn new(failures_to_open: u32, open_for: Duration) -> Self {
        Breaker {
            failures_to_open: failures_to_open.max(1),
            open_for,
            state: State::Closed,
            consecutive_failures: 0,
        }
    }

    /// May a request go to this endpoint now?
    pub(crate) fn acquire(&mut self, now: Instant) -> Option<Grant> {
        match self.state {
            State::Closed => Some(Grant::Pass),
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probe_out: true };
                Some(Grant::Probe)
            }
            State::Open { .. } => None,
            State::HalfOpen { probe_out: false } => {
                self.state = State::HalfOpen { probe_out: true };
                Some(Grant::Probe)
            }
            State::HalfOpen { probe_out: true } => None,
        }
    }

    pub(crate) fn success(&mut self) {
        self.consecutive_failures = 0;
        self.state = State::Closed;
    }

    pub(crate) fn failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.state {
            State::Closed => self.consecutive_failures >= self.failures_to_open,
            State::HalfOpen { .. } => true,
            // A request granted before the circuit opened failed late: keep
            // the original reopening time rather than extending it.
            State::Open { .. } => false,
        };
        if open {
            self.state = State::Open {
                until: now + self.open_for,
            };
        }
    }

    /// A probe ended with no verdict on the endpoint's health.
    pub(crate) fn release_probe(&mut self) {
        if let State::HalfOpen { probe_out: true } = self.state {
            self.state = State::HalfOpen { probe_out: false };
        }
    }

    /// The state as health reports it: an open circuit whose time is up is
    /// half-open (the next request would be let through as a probe).
    pub(crate) fn view(&self, now: Instant) -> (BreakerState, u32) {
        let state = match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        (state, self.consecutive_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_n_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, OPEN);
        b.failure(t0);
        b.failure(t0);
        b.success();
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.view(t0), (BreakerState::Closed, 2));
        assert_eq!(b.acquire(t0), Some(Grant::Pass));
        b.failure(t0);
        assert_eq!(b.view(t0), (BreakerState::Open, 3));
        assert_eq!(b.acquire(t0 + OPEN / 2), None);
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        b.failure(t0);
        let later = t0 + OPEN;
        assert_eq!(b.view(later).0, BreakerState::HalfOpen);
        assert_eq!(b.acquire(later), Some(Grant::Probe));
        assert_eq!(b.acquire(later), None, "only one probe at a time");
        b.release_probe();
        assert_eq!(
            b.acquire(later),
            Some(Grant::Probe),
            "an abandoned probe frees the slot"
        );
        b.failure(later);
        assert_eq!(b.view(later), (BreakerState::Open, 2));
        assert_eq!(b.acquire(later + OPEN / 2), None);
        let again = later + OPEN;
        assert_eq!(b.acquire(again), Some(Grant::Probe));
        b.success();
        assert_eq!(b.view(again), (BreakerState::Closed, 0));
        assert_eq!(b.acquire(again), Some(Grant::Pass));
    }

    #[test]
    fn late_failures_do_not_extend_the_open_time() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        b.failure(t0);
        b.failure(t0 + OPEN / 2);
        assert_eq!(b.acquire(t0 + OPEN), Some(Grant::Probe));
    }
}
