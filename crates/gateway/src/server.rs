//! Serving: the accept loop with `TCP_NODELAY`, a deadline on request
//! headers, and graceful shutdown.
//!
//! `run` takes its listener and its shutdown signal as arguments (as in
//! mini-redis), so tests bind `127.0.0.1:0` and run the real server.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::state::AppState;

/// Serves until `shutdown` resolves, then stops accepting and waits for the
/// requests in flight.
///
/// A client must send a request's headers within the configured body
/// timeout (`server.body_timeout_ms`), or its connection is closed: a
/// slow-header client (slowloris) cannot hold a connection open forever.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.security.body_timeout;
    let app = crate::http::router(state);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin; connections already open carry on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, Nagle's algorithm meets the client's delayed
        // ACK and adds ~40 ms to small responses (PERF-NOTES.md).
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Resets and timeouts end the connection; nothing to report.
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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
