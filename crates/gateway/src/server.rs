//! Serving: the accept loop with `TCP_NODELAY` and graceful shutdown.
//!
//! `run` takes its listener and its shutdown signal as arguments (as in
//! mini-redis), so tests bind `127.0.0.1:0` and run the real server.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::state::AppState;

/// Serves until `shutdown` resolves, then stops accepting and waits for the
/// requests in flight.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY, Nagle's algorithm meets the client's delayed ACK
    // and adds ~40 ms to small responses (PERF-NOTES.md).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = crate::http::router(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Set when the shutdown grace period is over: streams still running end
/// with an explicit error event instead of a silent cut. Process-wide, since
/// a process runs one daemon and shuts it down once.
fn abort_channel() -> &'static tokio::sync::watch::Sender<bool> {
    static ABORT: OnceLock<tokio::sync::watch::Sender<bool>> = OnceLock::new();
    ABORT.get_or_init(|| tokio::sync::watch::channel(false).0)
}

/// Ends every running stream with an error event.
pub fn abort_streams() {
    abort_channel().send_replace(true);
}

/// Resolves when `abort_streams` has been called.
pub async fn aborted() {
    let mut rx = abort_channel().subscribe();
    let _ = rx.wait_for(|a| *a).await;
}
