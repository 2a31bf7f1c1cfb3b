//! Serving lanes: each thread that serves requests has its own transports.
//!
//! The daemon serves connections on single-threaded async runtimes, one per
//! core by default (see `gateway::server`), each a *lane*. A request stays
//! on one thread from the accepted socket to the upstream connection and
//! back: no task hand-off between threads, no waking of a parked worker.
//! For that each lane needs its own upstream connections, whose tasks run
//! on its own runtime; [`PerLane`] holds one set per lane, built on the
//! lane's first request.
//! Threads that never called [`set_lane`] (tests, a shared runtime) share
//! lane 0's.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

/// Lanes beyond this share clients (modulo): more cores than this is not a
/// device.
const MAX_LANES: usize = 64;

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as serving lane `i`.
pub fn set_lane(i: usize) {
    LANE.set(i % MAX_LANES);
}

/// One `T` per lane, built on the lane's first use by `make`; where `make`
/// fails, the lane shares lane 0's.
pub(crate) struct PerLane<T> {
    first: T,
    slots: Box<[OnceLock<T>]>,
    make: Box<dyn Fn() -> Option<T> + Send + Sync>,
}

impl<T: Clone> PerLane<T> {
    /// `first` serves lane 0 (built eagerly, so configuration errors show
    /// at start).
    pub(crate) fn new(first: T, make: impl Fn() -> Option<T> + Send + Sync + 'static) -> Self {
        PerLane {
            first,
            slots: (1..MAX_LANES).map(|_| OnceLock::new()).collect(),
            make: Box::new(make),
        }
    }

    /// The calling thread's lane's `T`.
    pub(crate) fn get(&self) -> &T {
        match LANE.get() {
            0 => &self.first,
            i => self.slots[i - 1].get_or_init(|| (self.make)().unwrap_or_else(|| self.first.clone())),
        }
    }
}

impl<T> fmt::Debug for PerLane<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let built = 1 + self.slots.iter().filter(|s| s.get().is_some()).count();
        f.debug_struct("PerLane").field("built", &built).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_lane_builds_its_own_once_and_unmarked_threads_are_lane_0() {
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        let lanes = Arc::new(PerLane::new(0usize, move || Some(m.fetch_add(1, Ordering::SeqCst) + 1)));
        assert_eq!(*lanes.get(), 0);
        let on = |i: usize| {
            let l = lanes.clone();
            std::thread::spawn(move || {
                set_lane(i);
                (*l.get(), *l.get())
            })
            .join()
            .unwrap()
        };
        let (a, a2) = on(1);
        assert_eq!(a, a2, "built once per lane");
        let (b, _) = on(2);
        assert_ne!(a, b);
        assert_eq!(on(1).0, a, "lane 1 keeps its own");
        assert_eq!(on(0).0, 0);
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_lane_whose_build_fails_shares_lane_0() {
        let lanes = Arc::new(PerLane::new(7usize, || None));
        let l = lanes.clone();
        let got = std::thread::spawn(move || {
            set_lane(3);
            *l.get()
        })
        .join()
        .unwrap();
        assert_eq!(got, 7);
    }
}
