//! Serving: the accept loop with `TCP_NODELAY` and graceful shutdown.
//!
//! `run` takes its listener and its shutdown signal as arguments (as in
//! mini-redis), so tests bind `127.0.0.1:0` and run the real server.

use std::future::Future;
use std::sync::Arc;

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
