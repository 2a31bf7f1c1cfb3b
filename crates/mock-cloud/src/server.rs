//! Starting and stopping a server: the accept loop, TLS, one hyper
//! connection per socket (HTTP/1.1 keep-alive, or HTTP/2 by ALPN or prior
//! knowledge), and the handle tests hold.
//!
//! The server takes its listener as an argument, so tests bind `127.0.0.1:0`
//! and run the real thing. Shutdown: stop accepting, ask every connection to
//! finish gracefully, and drop whatever is still open after [`GRACE`]
//! (stalled streams never finish on their own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::config::{MockConfig, TlsMode};
use crate::error::MockError;
use crate::record::RecordedRequest;
use crate::routes::{Shared, router};
use crate::stats::{Counters, Stats};
use crate::tls;

/// How long open connections get to finish after shutdown is asked.
pub const GRACE: Duration = Duration::from_secs(1);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running mock server. Dropping the handle stops the server too (like
/// [`MockHandle::shutdown`], without waiting): keep it alive for the test.
#[derive(Debug)]
pub struct MockHandle {
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    /// `https://HOST:PORT` (or `http://`) with no trailing slash; an
    /// unspecified bind address (`0.0.0.0`, `::`) is written as loopback.
    pub url: String,
    /// PEM of the generated CA, for clients to trust; `None` unless
    /// [`TlsMode::Generate`].
    pub ca_pem: Option<String>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts a mock server on `listener`; it runs on the current tokio runtime
/// until [`MockHandle::shutdown`] or until the handle is dropped.
pub async fn spawn(listener: TcpListener, cfg: MockConfig) -> Result<MockHandle, MockError> {
    cfg.validate()?;
    let addr = listener.local_addr()?;
    let (acceptor, ca_pem) = match &cfg.tls {
        TlsMode::Plain => (None, None),
        TlsMode::Generate { sans } => {
            let id = tls::generate(sans)?;
            let ca = id.ca_pem.clone();
            (Some(TlsAcceptor::from(tls::server_config(id)?)), ca)
        }
        TlsMode::Files { cert, key } => {
            let id = tls::load(cert, key)?;
            (Some(TlsAcceptor::from(tls::server_config(id)?)), None)
        }
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let mut shown = addr;
    if shown.ip().is_unspecified() {
        shown.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let shared = Arc::new(Shared::new(&cfg));
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(listener, acceptor, Arc::clone(&shared), rx));
    Ok(MockHandle {
        addr,
        url: format!("{scheme}://{shown}"),
        ca_pem,
        shared,
        shutdown: tx,
        task,
    })
}

/// A rustls client config (ring provider, ALPN h2 and http/1.1) that trusts
/// only the certificates in `ca_pem`: pass it to reqwest's
/// `use_preconfigured_tls`.
pub fn client_tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, MockError> {
    tls::client_config(ca_pem)
}

impl MockHandle {
    /// The recorded chat requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.record.all()
    }

    /// Empties the record (the `fail_first` counters and the stats stay).
    pub fn clear(&self) {
        self.shared.record.clear();
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Waits until the stats satisfy `pred` (checked now, then whenever a
    /// stream ends or a connection opens or closes). Bound it with
    /// `tokio::time::timeout`.
    pub async fn wait_stats(&self, pred: impl Fn(&Stats) -> bool) -> Stats {
        self.shared.counters.wait_for(pred).await
    }

    /// A client TLS config trusting only this server's generated CA.
    pub fn client_tls_config(&self) -> Result<rustls::ClientConfig, MockError> {
        match &self.ca_pem {
            Some(pem) => tls::client_config(pem),
            None => Err(MockError::Config {
                field: "tls",
                message: "the server has no generated CA (plain HTTP or certificate files)".into(),
            }),
        }
    }

    /// Stops accepting, lets open connections finish for up to [`GRACE`],
    /// then drops the rest and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Counts a connection open from accept until its task ends.
struct ConnGuard(Arc<Counters>);

impl ConnGuard {
    fn new(c: &Arc<Counters>) -> Self {
        c.connection_opened();
        ConnGuard(Arc::clone(c))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

async fn run(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let tracker = TaskTracker::new();
    let app = router(Arc::clone(&shared));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let guard = ConnGuard::new(&shared.counters);
        let (acceptor, app, builder, stop) = (acceptor.clone(), app.clone(), Arc::clone(&builder), stop.clone());
        tracker.spawn(async move {
            let _guard = guard;
            match acceptor {
                None => serve(&builder, tcp, app, stop).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => serve(&builder, tls, app, stop).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

async fn serve<I>(builder: &auto::Builder<TokioExecutor>, io: I, app: axum::Router, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(GRACE, conn).await;
}
