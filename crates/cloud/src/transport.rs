//! How a request reaches an endpoint, and its answer comes back.
//!
//! Two transports behind one interface ([`Lane::send`]):
//! - **HTTP/2, direct** (the h2 crate over tokio-rustls): for `https`
//!   endpoints that negotiate `h2` by ALPN, one multiplexed connection per
//!   endpoint and serving lane. A request's HEADERS and DATA frames leave in
//!   one write, and no pool or dispatch task sits between the request and
//!   the connection: measured against reqwest's HTTP/2 on the same
//!   connection, one request costs ~0.1 ms less from send to answer on the
//!   2-core machine of `bench/` (hyper's client holds the body back until
//!   the connection task has opened the stream, so the request crosses the
//!   connection task twice and leaves in two writes).
//! - **reqwest** (HTTP/1.1 keep-alive, or HTTP/2 through hyper): plain
//!   `http://` endpoints, `http2 = false`, servers that answer ALPN with
//!   `http/1.1`, and endpoints that a proxy in the environment covers
//!   (`HTTPS_PROXY`, `ALL_PROXY`, less `NO_PROXY`), which reqwest honours
//!   and the direct transport does not.
//!
//! A direct connection is made as reqwest's connector makes one: the
//! name's addresses in turn, families alternating, a further attempt every
//! 250 ms while the earlier ones are silent ([`connect_any`]); TCP_NODELAY
//! and keep-alive; TLS with the tier's roots.
//!
//! A direct connection that the server closed (GOAWAY, idle timeout, reset)
//! is replaced on the next request; a request that could not be handed to
//! it is sent once more on the new one, since nothing of it reached the
//! server. A try that timed out drops its connection too ([`Lane::forget`]):
//! one whose network went away says nothing, and the retry must not queue
//! behind it. Dropping the answer's body resets the stream (the server sees
//! the cancellation at once), and the connection stays up for other
//! requests. A connection that has carried nothing (no request sent, no
//! answer data received) for `ping_after_idle_ms` sends a PING beside its
//! next request ([`drive`]): one that does not answer it within
//! the connect timeout is closed and the request sent on a new one, so a
//! connection that died while the device slept costs that long, not a
//! first-token timeout.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use api::BackendErrorKind;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper_util::client::proxy::matcher::Matcher;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{StatusCode, Url};

const UA: &str = concat!("tandem/", env!("CARGO_PKG_VERSION"));
/// Flow-control windows of a direct connection, as hyper's client sets
/// them: a large answer is not held back by window updates.
const STREAM_WINDOW: u32 = 2 << 20;
const CONN_WINDOW: u32 = 5 << 20;
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// A failure to send or to read, classified for the breaker and retries.
#[derive(Debug)]
pub(crate) struct TransportError {
    pub kind: BackendErrorKind,
    /// The cause with its chain, without the endpoint.
    pub message: String,
}

impl TransportError {
    fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    fn from_send(e: &reqwest::Error) -> Self {
        let kind = if e.is_connect() {
            BackendErrorKind::Connect
        } else if e.is_timeout() {
            BackendErrorKind::Timeout
        } else {
            // The connection was made but broke before the response headers.
            BackendErrorKind::Interrupted
        };
        TransportError::new(kind, error_chain(e))
    }

    fn from_body(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            BackendErrorKind::Timeout
        } else {
            BackendErrorKind::Interrupted
        };
        TransportError::new(kind, error_chain(e))
    }

    fn h2(e: &h2::Error) -> Self {
        TransportError::new(BackendErrorKind::Interrupted, error_chain(e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let next = inner.to_string();
        // Some errors repeat their source in their own message.
        if !s.ends_with(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        src = inner.source();
    }
    s
}

pub(crate) type Body = Pin<Box<dyn Stream<Item = Result<Bytes, TransportError>> + Send>>;

/// An endpoint's answer: its status, headers and body.
pub(crate) struct Upstream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

/// One request to send.
pub(crate) struct Outgoing<'a> {
    pub body: Bytes,
    pub accept: &'static str,
    pub auth: Option<&'a HeaderValue>,
}

/// Where an endpoint is, for the direct transport.
#[derive(Debug)]
pub(crate) struct Target {
    uri: http::Uri,
    host: Host,
    port: u16,
    server_name: rustls::pki_types::ServerName<'static>,
}

#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Target {
    /// Whether reqwest would send a request to this target through one of
    /// `proxies`: the direct transport, which knows no proxy, must not
    /// take it then.
    pub(crate) fn proxied(&self, proxies: &Matcher) -> bool {
        proxies.intercept(&self.uri).is_some()
    }

    /// `None` where the direct transport does not apply: plain `http`.
    pub(crate) fn new(url: &Url) -> Option<Target> {
        if url.scheme() != "https" {
            return None;
        }
        let name = url.host_str()?;
        let (host, server_name) = match name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => (Host::Ip(ip), rustls::pki_types::ServerName::IpAddress(ip.into())),
            Err(_) => (
                Host::Name(name.to_owned()),
                rustls::pki_types::ServerName::try_from(name.to_owned()).ok()?,
            ),
        };
        Some(Target {
            uri: url.as_str().parse().ok()?,
            port: url.port_or_known_default()?,
            host,
            server_name,
        })
    }
}

/// What the direct transport knows of one endpoint on one lane.
enum Slot {
    /// Not connected yet, or the last connection is gone.
    Idle,
    /// An open HTTP/2 connection.
    Ready(Conn),
    /// Served through reqwest: no `h2` from this server, or not `https`.
    Reqwest,
}

/// An open direct connection, numbered so that a request that found one
/// closed replaces that one only, never its successor.
#[derive(Clone)]
struct Conn {
    sender: h2::client::SendRequest<Bytes>,
    id: u64,
    watch: Arc<Watch>,
}

/// What a direct connection's task and its requests share: when it last
/// carried anything, and whether it should prove itself alive.
struct Watch {
    /// When a request last left or an answer's data last came in, in
    /// milliseconds since [`epoch_ms`]'s start.
    last_active: AtomicU64,
    /// Wakes the connection's task to send a PING.
    ping: tokio::sync::Notify,
    /// How long a PING may go unanswered.
    ping_timeout: Duration,
    /// Set when the task closed the connection for not answering a PING.
    silent: AtomicBool,
}

/// Milliseconds since the first call: a clock for [`Watch`] that fits in
/// an atomic.
fn epoch_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Watch {
    fn new(ping_timeout: Duration) -> Self {
        Watch {
            last_active: AtomicU64::new(epoch_ms()),
            ping: tokio::sync::Notify::new(),
            ping_timeout,
            silent: AtomicBool::new(false),
        }
    }

    /// Data came in: the connection is alive.
    fn active(&self) {
        self.last_active.store(epoch_ms(), Ordering::Relaxed);
    }

    /// A request is about to leave: if the connection has carried nothing
    /// for longer than `idle`, its task sends a PING beside the request. A
    /// connection busy streaming an answer is never asked.
    fn request(&self, idle: Duration) {
        let now = epoch_ms();
        let last = self.last_active.swap(now, Ordering::Relaxed);
        if u128::from(now.saturating_sub(last)) > idle.as_millis() {
            self.ping.notify_one();
        }
    }
}

/// Drives a direct connection. When a request asks ([`Watch::request`]),
/// sends a PING; a connection that does not answer it in time has lost its network without a word (a device that slept, a NAT that
/// forgot the flow): the task ends, which closes the connection and fails
/// the requests on it, and they are sent again on a new one.
async fn drive(
    mut conn: h2::client::Connection<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Bytes>,
    watch: Arc<Watch>,
    url: Url,
) {
    let timeout = watch.ping_timeout;
    // Taken once, from a connection just made: always there.
    let mut pings = conn.ping_pong();
    let ended = loop {
        tokio::select! {
            r = &mut conn => break r,
            () = watch.ping.notified() => {
                let Some(pp) = pings.as_mut() else { continue };
                let pong = tokio::time::timeout(timeout, pp.ping(h2::Ping::opaque()));
                tokio::pin!(pong);
                tokio::select! {
                    r = &mut conn => break r,
                    answer = &mut pong => match answer {
                        Ok(Ok(_)) => {}
                        // The connection is closing; it says why itself.
                        Ok(Err(e)) => tracing::debug!(endpoint = %url, error = %e, "HTTP/2 PING failed"),
                        Err(_) => {
                            watch.silent.store(true, Ordering::Release);
                            tracing::info!(
                                endpoint = %url,
                                timeout_ms = timeout.as_millis() as u64,
                                "HTTP/2 connection did not answer a PING; closing it"
                            );
                            return;
                        }
                    },
                }
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(endpoint = %url, error = %e, "HTTP/2 connection ended");
    }
}

/// One serving lane's transports: its reqwest client and its direct
/// connections, one slot per endpoint of the tier.
#[derive(Clone)]
pub(crate) struct Lane {
    /// Replaced, pool and all, when a try through it timed out.
    http: Arc<std::sync::Mutex<reqwest::Client>>,
    tls: Arc<rustls::ClientConfig>,
    http2: bool,
    connect_timeout: Duration,
    ping_after_idle: Duration,
    slots: Arc<[tokio::sync::Mutex<Slot>]>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").finish_non_exhaustive()
    }
}

/// The proxies of this process's environment (`HTTPS_PROXY`, `ALL_PROXY`,
/// `NO_PROXY`, …), read by the code reqwest reads them with.
pub(crate) fn env_proxies() -> Matcher {
    Matcher::from_system()
}

impl Lane {
    /// `direct[i]`: whether endpoint `i` may use the direct transport (an
    /// `https` endpoint of a tier that offers HTTP/2, no proxy).
    pub(crate) fn new(
        tls: rustls::ClientConfig,
        http2: bool,
        connect_timeout: Duration,
        ping_after_idle: Duration,
        direct: &[bool],
    ) -> reqwest::Result<Lane> {
        let http = build_client(tls.clone(), http2, connect_timeout)?;
        let slots = direct
            .iter()
            .map(|&d| tokio::sync::Mutex::new(if d { Slot::Idle } else { Slot::Reqwest }))
            .collect();
        Ok(Lane {
            http: Arc::new(std::sync::Mutex::new(http)),
            tls: Arc::new(tls),
            http2,
            connect_timeout,
            ping_after_idle,
            slots,
        })
    }

    /// Sends `out` to endpoint `ep` and returns once its response headers
    /// are in.
    pub(crate) async fn send(
        &self,
        ep: usize,
        target: Option<&Target>,
        url: &Url,
        out: Outgoing<'_>,
    ) -> Result<Upstream, TransportError> {
        if let Some(target) = target {
            // A connection found closed is replaced once: the request never
            // left on it.
            let mut replaced = false;
            while let Some(Conn { sender, id, watch }) = self.direct(ep, target, url).await? {
                let failure = match send_h2(sender, &watch, self.ping_after_idle, target, &out).await {
                    Ok(up) => return Ok(up),
                    Err(H2Failure::Sent(e)) => return Err(e),
                    Err(H2Failure::NotSent(e)) => e,
                };
                if replaced {
                    return Err(TransportError::new(
                        BackendErrorKind::Connect,
                        format!("the HTTP/2 connection failed at once, twice: {}", failure.message),
                    ));
                }
                tracing::debug!(endpoint = %url, error = %failure.message, "HTTP/2 connection lost; reconnecting");
                self.forget(ep, Some(id)).await;
                replaced = true;
            }
        }
        self.send_reqwest(url, out).await
    }

    /// Drops endpoint `ep`'s direct connection (connection `id`, or
    /// whichever is open); the next request makes a new one. A request
    /// that got no answer in time calls it with `None`: a connection
    /// whose network went away answers nothing and reports nothing, and
    /// the retry must not queue behind it. For an endpoint served by
    /// reqwest, whose pool cannot give up one connection, that replaces
    /// the lane's client: its other pooled connections went quiet on the
    /// same network, and each would cost the retry a timeout of its own.
    /// Requests under way keep the old client until they end.
    pub(crate) async fn forget(&self, ep: usize, id: Option<u64>) {
        let mut slot = self.slots[ep].lock().await;
        match &*slot {
            Slot::Ready(open) if id.is_none_or(|id| id == open.id) => *slot = Slot::Idle,
            Slot::Reqwest if id.is_none() => {
                match build_client(rustls::ClientConfig::clone(&self.tls), self.http2, self.connect_timeout) {
                    Ok(fresh) => *self.http.lock().unwrap_or_else(|e| e.into_inner()) = fresh,
                    Err(e) => tracing::warn!(error = %e, "could not renew the HTTP client; keeping its pool"),
                }
            }
            _ => {}
        }
    }

    async fn send_reqwest(&self, url: &Url, out: Outgoing<'_>) -> Result<Upstream, TransportError> {
        let client = self.http.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut rb = client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, out.accept)
            .body(out.body);
        if let Some(auth) = out.auth {
            rb = rb.header(AUTHORIZATION, auth.clone());
        }
        let mut resp = rb.send().await.map_err(|e| TransportError::from_send(&e))?;
        Ok(Upstream {
            status: resp.status(),
            headers: std::mem::take(resp.headers_mut()),
            body: Box::pin(
                resp.bytes_stream()
                    .map(|r| r.map_err(|e| TransportError::from_body(&e))),
            ),
        })
    }

    /// A sender on endpoint `ep`'s direct connection and the connection's
    /// number, connecting where needed; `None` when the endpoint is served
    /// by reqwest.
    async fn direct(&self, ep: usize, target: &Target, url: &Url) -> Result<Option<Conn>, TransportError> {
        static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
        let mut slot = self.slots[ep].lock().await;
        match &*slot {
            Slot::Reqwest => Ok(None),
            Slot::Ready(conn) => Ok(Some(conn.clone())),
            Slot::Idle => match self.connect(target, url).await? {
                Some((sender, watch)) => {
                    let id = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                    let conn = Conn { sender, id, watch };
                    *slot = Slot::Ready(conn.clone());
                    Ok(Some(conn))
                }
                None => {
                    *slot = Slot::Reqwest;
                    Ok(None)
                }
            },
        }
    }

    /// A new connection: `Some` if the server speaks HTTP/2, `None` if it
    /// chose HTTP/1.1 (reqwest serves it from then on).
    async fn connect(
        &self,
        t: &Target,
        url: &Url,
    ) -> Result<Option<(h2::client::SendRequest<Bytes>, Arc<Watch>)>, TransportError> {
        let connect = async {
            let addrs = match &t.host {
                Host::Ip(ip) => vec![SocketAddr::new(*ip, t.port)],
                Host::Name(name) => tokio::net::lookup_host((name.as_str(), t.port))
                    .await
                    .map_err(|e| TransportError::new(BackendErrorKind::Connect, format!("dns error: {e}")))?
                    .collect(),
            };
            let tcp = connect_any(addrs)
                .await
                .map_err(|e| TransportError::new(BackendErrorKind::Connect, format!("tcp connect error: {e}")))?;
            // Nagle plus delayed ACK once cost a peer gateway 42 ms per
            // request: small frames must go out now.
            let _ = tcp.set_nodelay(true);
            let _ =
                socket2::SockRef::from(&tcp).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE));
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(t.server_name.clone(), tcp)
                .await
                .map_err(|e| {
                    TransportError::new(BackendErrorKind::Connect, format!("TLS handshake: {}", error_chain(&e)))
                })?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                return Ok(None);
            }
            let (sender, conn) = h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONN_WINDOW)
                .enable_push(false)
                .handshake::<_, Bytes>(tls)
                .await
                .map_err(|e| {
                    TransportError::new(
                        BackendErrorKind::Connect,
                        format!("HTTP/2 handshake: {}", error_chain(&e)),
                    )
                })?;
            let watch = Arc::new(Watch::new(self.connect_timeout));
            tokio::spawn(drive(conn, Arc::clone(&watch), url.clone()));
            Ok(Some((sender, watch)))
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::new(
                BackendErrorKind::Connect,
                format!("connect timed out after {} ms", self.connect_timeout.as_millis()),
            )),
        }
    }
}

/// How long a connection attempt runs alone before the next address is
/// tried beside it (RFC 8305's "Connection Attempt Delay").
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first of `addrs` that answers ("happy eyeballs", as
/// reqwest's connector does): the address families take turns, and while an
/// attempt has not answered after [`ATTEMPT_DELAY`] the next one starts
/// beside it, so an address that swallows packets (a broken IPv6 route)
/// delays the connection by that much, not by a whole connect timeout. A
/// refused attempt starts the next one at once.
pub(crate) async fn connect_any(addrs: Vec<SocketAddr>) -> std::io::Result<tokio::net::TcpStream> {
    use futures::stream::FuturesUnordered;

    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.iter().partition(|a| a.is_ipv6());
    let first_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let (mut a, mut b) = if first_v6 {
        (v6.into_iter(), v4.into_iter())
    } else {
        (v4.into_iter(), v6.into_iter())
    };
    let mut order = Vec::with_capacity(addrs.len());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => order.extend(x.into_iter().chain(y)),
        }
    }
    let mut rest = order.into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut last_err = None;
    loop {
        if attempts.is_empty() {
            match rest.next() {
                Some(addr) => attempts.push(tokio::net::TcpStream::connect(addr)),
                None => {
                    return Err(last_err.unwrap_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
                    }));
                }
            }
        }
        tokio::select! {
            Some(result) = attempts.next() => match result {
                Ok(tcp) => return Ok(tcp),
                Err(e) => {
                    last_err = Some(e);
                    if let Some(addr) = rest.next() {
                        attempts.push(tokio::net::TcpStream::connect(addr));
                    }
                }
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if rest.len() > 0 => {
                if let Some(addr) = rest.next() {
                    attempts.push(tokio::net::TcpStream::connect(addr));
                }
            }
        }
    }
}

/// Why a direct request failed: before anything of it reached the
/// connection, or on a connection closed for not answering a PING (either
/// way nothing reached the server: safe to send again on a new one), or
/// after.
enum H2Failure {
    NotSent(TransportError),
    Sent(TransportError),
}

/// Sends `out` on a direct connection; `idle`: see [`Watch::request`].
async fn send_h2(
    sender: h2::client::SendRequest<Bytes>,
    watch: &Arc<Watch>,
    idle: Duration,
    t: &Target,
    out: &Outgoing<'_>,
) -> Result<Upstream, H2Failure> {
    watch.request(idle);
    let not_sent = |e: h2::Error| H2Failure::NotSent(TransportError::h2(&e));
    let sent = |e: h2::Error| {
        if watch.silent.load(Ordering::Acquire) {
            H2Failure::NotSent(TransportError::new(
                BackendErrorKind::Connect,
                format!(
                    "the HTTP/2 connection did not answer a PING within {} ms",
                    watch.ping_timeout.as_millis()
                ),
            ))
        } else {
            H2Failure::Sent(TransportError::h2(&e))
        }
    };
    let mut sender = sender.ready().await.map_err(not_sent)?;
    let mut req = http::Request::post(t.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, out.accept)
        .header(CONTENT_LENGTH, out.body.len())
        .header(USER_AGENT, UA);
    if let Some(auth) = out.auth {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    let req = req.body(()).map_err(|e| {
        H2Failure::Sent(TransportError::new(
            BackendErrorKind::Other,
            format!("building the request: {e}"),
        ))
    })?;
    let (response, mut tx) = sender.send_request(req, false).map_err(not_sent)?;
    // Queued before the connection task runs: HEADERS and DATA leave in
    // one write.
    tx.send_data(out.body.clone(), true).map_err(sent)?;
    let (head, body) = response.await.map_err(sent)?.into_parts();
    watch.active();
    let body = futures::stream::unfold(Some((body, Arc::clone(watch))), |state| async move {
        let (mut body, watch) = state?;
        match body.data().await? {
            Ok(bytes) => {
                watch.active();
                // Read means consumed: the window opens again at once.
                let _ = body.flow_control().release_capacity(bytes.len());
                Some((Ok(bytes), Some((body, watch))))
            }
            Err(e) => Some((Err(TransportError::h2(&e)), None)),
        }
    });
    Ok(Upstream {
        status: head.status,
        headers: head.headers,
        body: Box::pin(body),
    })
}

/// The tier's reqwest client for one lane.
fn build_client(tls: rustls::ClientConfig, http2: bool, connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let mut client = reqwest::Client::builder();
    if !http2 {
        client = client.http1_only();
    }
    client
        .use_preconfigured_tls(tls)
        // Nagle plus delayed ACK once cost a peer gateway 42 ms per
        // request: small request bodies and SSE frames must go out now.
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(TCP_KEEPALIVE)
        // A redirected POST would be replayed as a GET, or to a host the
        // operator never named: a redirect is a config error, reported.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(UA)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A listener whose accept queue is full: the kernel drops further
    /// SYNs, so a connect to it hangs, like one to a broken route.
    async fn swallowing_listener() -> (std::net::TcpListener, Vec<tokio::net::TcpStream>) {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        socket.listen(0).unwrap();
        let listener: std::net::TcpListener = socket.into();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
            {
                held.push(s);
            }
        }
        (listener, held)
    }

    #[tokio::test]
    async fn an_address_that_swallows_packets_only_delays_the_next() {
        let (full, _held) = swallowing_listener().await;
        let full = full.local_addr().unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(full))
                .await
                .is_err(),
            "precondition: a connect to the full listener hangs"
        );
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = open.local_addr().unwrap();
        let tcp = tokio::time::timeout(Duration::from_secs(5), connect_any(vec![full, open]))
            .await
            .expect("the second address was tried beside the first")
            .unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), open);
    }

    #[tokio::test]
    async fn a_refused_address_moves_on_at_once_and_the_last_error_is_kept() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = open.local_addr().unwrap();
        let tcp = connect_any(vec![closed, open]).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), open);
        let err = connect_any(vec![closed]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            connect_any(vec![]).await.unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }

    /// A PING goes with a request only after the connection carried
    /// nothing for the idle limit: data coming in counts as use.
    #[test]
    fn a_connection_is_asked_for_a_ping_only_after_carrying_nothing() {
        use futures::FutureExt;
        let pinged = |w: &Watch| w.ping.notified().now_or_never().is_some();
        let idle = Duration::from_millis(30);
        let w = Watch::new(Duration::from_secs(3));
        w.request(idle);
        assert!(!pinged(&w), "a new connection is not asked");
        std::thread::sleep(Duration::from_millis(60));
        w.active();
        w.request(idle);
        assert!(!pinged(&w), "an answer's data just came in");
        std::thread::sleep(Duration::from_millis(60));
        w.request(idle);
        assert!(pinged(&w), "silent for longer than the limit");
        w.request(idle);
        assert!(!pinged(&w), "the request itself was use");
    }

    /// The direct transport steps aside exactly where reqwest would use a
    /// proxy: `NO_PROXY` names (and their subdomains) and networks go
    /// around it.
    #[test]
    fn a_proxy_covers_every_target_but_those_no_proxy_names() {
        let t = |url: &str| Target::new(&url.parse().unwrap()).unwrap();
        let (cloud, lan, sub, ip) = (
            t("https://api.example.com/v1/chat/completions"),
            t("https://vllm.lan:8443/v1/chat/completions"),
            t("https://gpu1.vllm.lan/v1/chat/completions"),
            t("https://10.1.2.3/v1/chat/completions"),
        );
        let none = Matcher::builder().build();
        assert!([&cloud, &lan, &sub, &ip].iter().all(|t| !t.proxied(&none)));
        let https = Matcher::builder()
            .https("http://proxy.corp:3128")
            .no("vllm.lan, 10.0.0.0/8")
            .build();
        assert!(cloud.proxied(&https));
        assert!(!lan.proxied(&https));
        assert!(!sub.proxied(&https));
        assert!(!ip.proxied(&https));
        let http_only = Matcher::builder().http("http://proxy.corp:3128").build();
        assert!(!cloud.proxied(&http_only), "an http proxy is not used for https");
        let all = Matcher::builder().all("socks5://proxy.corp:1080").build();
        assert!(cloud.proxied(&all) && lan.proxied(&all));
    }

    #[test]
    fn targets_split_host_names_from_addresses() {
        let t = Target::new(&"https://[::1]:8443/v1/chat/completions".parse().unwrap()).unwrap();
        assert!(matches!(t.host, Host::Ip(IpAddr::V6(_))));
        assert_eq!(t.port, 8443);
        let t = Target::new(&"https://api.example.com/v1/chat/completions".parse().unwrap()).unwrap();
        assert!(matches!(&t.host, Host::Name(n) if n == "api.example.com"));
        assert_eq!(t.port, 443);
        assert!(Target::new(&"http://127.0.0.1:9/v1/chat/completions".parse().unwrap()).is_none());
    }
}
