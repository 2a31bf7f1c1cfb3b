//! Counters of what the mock did, readable in-process and at `GET /mock/stats`.
//!
//! Streams are counted by a guard that lives inside the response body: when
//! the body is dropped before its end, the server could not deliver the rest,
//! which with hyper means the client went away (its connection closed or its
//! HTTP/2 stream was reset).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Chat completion requests received (any outcome).
    pub requests: u64,
    /// Streaming answers begun (status 200, `stream: true`).
    pub streams_started: u64,
    /// Streams whose body was sent to its end (`[DONE]` included).
    pub streams_completed: u64,
    /// Streams the client left before their end (including stalled ones).
    pub streams_client_disconnected: u64,
    /// Streams the mock cut on purpose (`cut_after`).
    pub streams_cut: u64,
    /// Connections accepted and not yet closed (TLS handshakes included).
    pub connections_open: u64,
    /// Connections accepted over the server's life.
    pub connections_total: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_client_disconnected: AtomicU64,
    streams_cut: AtomicU64,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    /// Woken whenever a stream ends or a connection opens or closes, for
    /// [`crate::MockHandle::wait_stats`]. Not on every request: that path
    /// stays one atomic add.
    changed: Notify,
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(Relaxed),
            streams_started: self.streams_started.load(Relaxed),
            streams_completed: self.streams_completed.load(Relaxed),
            streams_client_disconnected: self.streams_client_disconnected.load(Relaxed),
            streams_cut: self.streams_cut.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
        }
    }

    pub async fn wait_for(&self, pred: impl Fn(&Stats) -> bool) -> Stats {
        loop {
            // Register before reading so a change between the two is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let s = self.snapshot();
            if pred(&s) {
                return s;
            }
            notified.await;
        }
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
        self.changed.notify_waiters();
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
        self.changed.notify_waiters();
    }

    pub fn stream_started(&self) {
        self.streams_started.fetch_add(1, Relaxed);
    }

    pub fn stream_ended(&self, end: StreamEnd) {
        let c = match end {
            StreamEnd::Completed => &self.streams_completed,
            StreamEnd::Cut => &self.streams_cut,
            StreamEnd::Disconnected => &self.streams_client_disconnected,
        };
        c.fetch_add(1, Relaxed);
        self.changed.notify_waiters();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    Completed,
    Cut,
    Disconnected,
}
