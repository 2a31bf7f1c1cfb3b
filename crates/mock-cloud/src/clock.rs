//! Pauses to within tens of microseconds, where tokio's own timer works in
//! whole milliseconds.
//!
//! tokio rounds every sleep up to its next 1 ms tick. For a paced mock that
//! is worse than imprecise: requests that arrive within the same millisecond
//! all wake on the same tick, and under a closed-loop load (wrk's
//! connections send again as soon as they are answered) the rounding
//! re-aligns them every cycle, so they stay in lock-step forever and reach
//! the client under test as one burst per cycle. A gateway in between then
//! has to carry the whole burst at once and some requests slip to the next
//! tick: a whole millisecond of "added latency" that no remote model would
//! cause. A real upstream's pauses are not quantised, so the mock's are not
//! either: one thread keeps the deadlines in a heap and waits on a condition
//! variable with a timeout (a futex with a relative timeout: the kernel's
//! high-resolution timers, ~50 µs slack).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Waits `d` (nothing at all for zero).
pub async fn sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    let (tx, rx) = oneshot::channel();
    TIMER.add(Instant::now() + d, tx);
    // A sender dropped without firing cannot happen while the thread runs;
    // should it, the pause just ends early.
    let _ = rx.await;
}

/// Waits `ms` milliseconds.
pub async fn sleep_ms(ms: u64) {
    sleep(Duration::from_millis(ms)).await;
}

/// A deadline and the pause waiting for it; ordered by the deadline alone
/// (pauses due at the same instant may end in any order).
struct Due {
    at: Instant,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

struct Timer {
    /// Earliest deadline on top.
    due: Mutex<BinaryHeap<Reverse<Due>>>,
    wake: Condvar,
}

static TIMER: LazyLock<Timer> = LazyLock::new(|| {
    // The thread lives as long as the process; it holds no resource but
    // the heap.
    std::thread::Builder::new()
        .name("mock-clock".into())
        .spawn(|| TIMER.run())
        .unwrap_or_else(|e| panic!("mock-cloud cannot start its clock thread: {e}"));
    Timer {
        due: Mutex::new(BinaryHeap::new()),
        wake: Condvar::new(),
    }
});

impl Timer {
    fn add(&self, at: Instant, tx: oneshot::Sender<()>) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = due.peek().is_none_or(|Reverse(d)| at < d.at);
        due.push(Reverse(Due { at, tx }));
        drop(due);
        if earliest {
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            match due.peek() {
                None => due = self.wake.wait(due).unwrap_or_else(PoisonError::into_inner),
                Some(Reverse(d)) if d.at <= now => {
                    if let Some(Reverse(d)) = due.pop() {
                        // The waiter may have gone (its request was dropped).
                        let _ = d.tx.send(());
                    }
                }
                Some(Reverse(d)) => {
                    let left = d.at - now;
                    due = self
                        .wake
                        .wait_timeout(due, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_end_in_deadline_order_and_not_before_their_time() {
        let start = Instant::now();
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, us) in [(0u32, 3_000u64), (1, 1_500), (2, 2_200), (3, 0)] {
            let order = std::sync::Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                sleep(Duration::from_micros(us)).await;
                assert!(start.elapsed() >= Duration::from_micros(us), "pause {i} ended early");
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![3, 1, 2, 0]);
    }
}
