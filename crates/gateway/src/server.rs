//! Serving: the accept loop with `TCP_NODELAY`, a deadline on request
//! headers, serving threads, and graceful shutdown.
//!
//! `run` takes its listener and its shutdown signal as arguments (as in
//! mini-redis), so tests bind `127.0.0.1:0` and run the real server.
//!
//! Connections are served by *lanes*: threads that each run a
//! single-threaded async runtime and have their own upstream connections
//! ([`cloud::set_lane`]). The accept loop hands each new connection to the
//! next lane in turn, and from then on a request stays on its lane's thread,
//! from the app's socket to the cloud's and back: no task moves between
//! threads and no parked worker is woken to steal it. Against tokio's
//! work-stealing runtime this took up to a third less CPU per proxied
//! request at the same or lower latency (bench/README.md). A busy connection cannot borrow an
//! idle lane's core; the local model's generation runs on threads of its
//! own either way.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::state::AppState;

/// What serving one connection needs; each lane has its own copy.
#[derive(Clone)]
struct Connections {
    app: Router,
    builder: auto::Builder<TokioExecutor>,
}

impl Connections {
    fn new(state: Arc<AppState>) -> Self {
        let header_timeout = state.security.body_timeout;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        builder.http2().timer(TokioTimer::new());
        Connections {
            app: crate::http::router(state),
            builder,
        }
    }

    /// A lane: serves the connections it is handed until the accept loop
    /// stops, then waits for the requests in flight.
    async fn serve_handed(self, mut handed: mpsc::UnboundedReceiver<std::net::TcpStream>) {
        let graceful = GracefulShutdown::new();
        while let Some(tcp) = handed.recv().await {
            let tcp = match TcpStream::from_std(tcp) {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot serve an accepted connection");
                    continue;
                }
            };
            let service = TowerToHyperService::new(self.app.clone());
            let conn = self
                .builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                // Resets and timeouts end the connection; nothing to report.
                let _ = conn.await;
            });
        }
        graceful.shutdown().await;
    }
}

/// Starts lane `i` on a thread of its own: where to hand it connections,
/// and what resolves once it has stopped.
fn start_lane(
    i: usize,
    conns: Connections,
) -> std::io::Result<(mpsc::UnboundedSender<std::net::TcpStream>, oneshot::Receiver<()>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::memory::collect_if_asked)
        .build()?;
    let (handed, rx) = mpsc::unbounded_channel();
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("tandem-lane-{i}"))
        .spawn(move || {
            cloud::set_lane(i);
            rt.block_on(conns.serve_handed(rx));
            let _ = done_tx.send(());
        })?;
    Ok((handed, done))
}

/// Serves until `shutdown` resolves, then stops accepting and waits for the
/// requests in flight. Connections are served by `lanes` serving threads
/// (at least one; see the module documentation).
///
/// A client must send a request's headers within the configured body
/// timeout (`server.body_timeout_ms`), or its connection is closed: a
/// slow-header client (slowloris) cannot hold a connection open forever.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    lanes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = Connections::new(state);
    let (handed, done): (Vec<_>, Vec<_>) = (0..lanes.max(1))
        .map(|i| start_lane(i, conns.clone()))
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    tokio::pin!(shutdown);
    for next in 0.. {
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
        match tcp.into_std() {
            // A lane stops only after this loop: sending cannot fail.
            Ok(tcp) => drop(handed[next % handed.len()].send(tcp)),
            Err(e) => tracing::warn!(error = %e, "cannot hand over an accepted connection"),
        }
    }
    drop(listener);
    // Every lane stops taking connections at once, then each finishes the
    // requests it has in flight.
    drop(handed);
    for done in done {
        // A lane that panicked has nothing left to wait for.
        let _ = done.await;
    }
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
