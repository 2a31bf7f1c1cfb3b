//! `CloudBackend`: pooled HTTP clients (one per serving lane), endpoints tried in
//! priority order behind per-endpoint circuit breakers, retries before the
//! first content token, and the SSE stream turned into [`Event`]s.
//!
//! A request is a sequence of *tries* (`1 + retries` at most). A try picks
//! the best endpoint (fewest failures in this request, then priority) whose
//! circuit lets it through, waits a full-jitter backoff only when that
//! endpoint already failed in this request, and sends. Before the first
//! content token every upstream failure — connect error, timeout, 5xx, 429,
//! a stream that stalls, breaks or sends garbage — starts the next try, also
//! from inside the stream already handed to the caller. After content, the
//! error goes to the caller: retrying would repeat text the app has seen.
//!
//! Upstream statuses, decided here:
//! - 400, 413, 422, 451: the request itself is refused (too long, invalid
//!   parameter, content policy). Returned as `Status`/`Downstream` with the
//!   upstream's JSON body; no retry, no failover, and the breaker counts the
//!   endpoint as healthy (it answered).
//! - 408, 429, 5xx: transient; retried (429 and 503 honour `retry-after`,
//!   capped at `backoff_max_ms`) and counted by the breaker.
//! - 401, 403, 404 and every other status: a fault of this endpoint's
//!   configuration (its key, its URL, its model name — the app's `model` is
//!   replaced, so a 404 is never the app's doing). Not retried on that
//!   endpoint, but the next endpoint is tried; counted by the breaker.
//!   The app sees a 502, not the upstream's 401: its own credentials are fine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use api::sse::SseParser;
use api::{Backend, BackendError, BackendErrorKind, BoxFuture, Event, EventStream, Fault, Generate};
use futures::{FutureExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::body::Prepared;
use crate::breaker::{Breaker, BreakerState, Grant};
use crate::chunk::{self, ChunkError};
use crate::config::{CloudTierConfig, ConfigError, EnvSource};
use crate::health::{CloudHealth, EndpointHealth, Ewma, Stats};
use crate::lane::PerLane;
use crate::tls;
use crate::transport::{self, Body, Lane, Outgoing, Target, TransportError};

/// Largest non-streamed response body read; more is `Malformed`.
const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Largest error body read from an upstream 4xx.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// How long the rest of a finished stream is read in the background so the
/// connection can go back to the pool.
const DRAIN_FOR: Duration = Duration::from_secs(2);

/// Why [`CloudBackend::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// A config field is invalid, or the key or CA file it names is
    /// missing or unusable.
    #[error("cloud tier {tier:?}: {source}")]
    Config { tier: String, source: ConfigError },
    #[error("cloud tier {tier:?}: cannot build the HTTP client: {message}")]
    Client { tier: String, message: String },
}

/// A cloud tier: any OpenAI-compatible endpoints (vLLM, TGI, SGLang, a
/// hosted API) over HTTPS. Clones share the pool, breakers and counters.
#[derive(Debug, Clone)]
pub struct CloudBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    /// The transports of each serving lane (see [`crate::lane`] and
    /// [`crate::transport`]): connections are reused across requests.
    clients: PerLane<Lane>,
    /// In the order they are tried.
    endpoints: Vec<Endpoint>,
    first_token_timeout: Duration,
    idle_timeout: Duration,
    request_timeout: Duration,
    retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    supports_tools: bool,
    rtt: Ewma,
}

#[derive(Debug)]
struct Endpoint {
    base: String,
    chat_url: Url,
    /// For the direct HTTP/2 transport; `None` for plain `http`.
    target: Option<Target>,
    model: String,
    /// `Bearer KEY`, marked sensitive so it never shows in Debug output.
    auth: Option<HeaderValue>,
    breaker: Mutex<Breaker>,
    stats: Stats,
}

impl Endpoint {
    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        // The breaker's state is valid after any panic elsewhere.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CloudBackend {
    /// Validates the config, reads the API keys (from `env` or the key
    /// files) and the extra CA file, and builds the client. Makes no
    /// network call.
    pub fn new(cfg: &CloudTierConfig, env: &dyn EnvSource) -> Result<Self, CloudError> {
        let tier = cfg.name.clone();
        let config_err = |source| CloudError::Config {
            tier: tier.clone(),
            source,
        };
        let valid = cfg.valid_endpoints("").map_err(config_err)?;
        let mut endpoints = Vec::with_capacity(valid.len());
        for ep in valid {
            let raw = &cfg.endpoints[ep.index];
            let auth = read_key(raw, ep.index, env).map_err(config_err)?;
            endpoints.push(Endpoint {
                base: ep.base,
                target: Target::new(&ep.chat_url),
                chat_url: ep.chat_url,
                model: ep.model,
                auth,
                breaker: Mutex::new(Breaker::new(
                    cfg.breaker.failures_to_open,
                    Duration::from_millis(cfg.breaker.open_ms),
                )),
                stats: Stats::new(),
            });
        }
        let tls = tls::client_config(cfg.extra_ca_file.as_deref(), cfg.http2).map_err(config_err)?;
        let (http2, connect) = (cfg.http2, Duration::from_millis(cfg.connect_timeout_ms));
        let ping_after_idle = Duration::from_millis(cfg.ping_after_idle_ms);
        // reqwest honours the environment's proxies; the direct transport
        // would go around them.
        let proxies = transport::env_proxies();
        let direct: Vec<bool> = endpoints
            .iter()
            .map(|e| http2 && e.target.as_ref().is_some_and(|t| !t.proxied(&proxies)))
            .collect();
        let make = move || Lane::new(tls.clone(), http2, connect, ping_after_idle, &direct);
        let first = make().map_err(|e| CloudError::Client {
            tier: tier.clone(),
            message: e.to_string(),
        })?;
        let clients = PerLane::new(first, move || make().ok());
        Ok(CloudBackend {
            inner: Arc::new(Inner {
                name: cfg.name.clone(),
                clients,
                endpoints,
                first_token_timeout: Duration::from_millis(cfg.first_token_timeout_ms),
                idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
                request_timeout: Duration::from_millis(cfg.request_timeout_ms),
                retries: cfg.retries,
                backoff_base: Duration::from_millis(cfg.backoff_base_ms),
                backoff_max: Duration::from_millis(cfg.backoff_max_ms),
                supports_tools: cfg.supports_tools,
                rtt: Ewma::new(),
            }),
        })
    }

    /// Non-streamed passthrough: the upstream's response JSON, unchanged,
    /// with the same retries, failover and breakers as a stream.
    pub async fn complete_raw(&self, req: Generate) -> Result<Value, BackendError> {
        let mut tries = self.tries(req, false)?;
        loop {
            let mut acc = tries.open().await?;
            // The bound of the whole exchange covers the body too.
            let deadline = acc.sent_at + self.inner.request_timeout;
            let read = tokio::time::timeout_at(deadline.into(), read_body(acc.response.body, MAX_RESPONSE_BYTES));
            let read = read.await.unwrap_or_else(|_| {
                Err(ReadError::Body(TransportError {
                    kind: BackendErrorKind::Timeout,
                    message: format!(
                        "no complete response within {} ms",
                        self.inner.request_timeout.as_millis()
                    ),
                }))
            });
            match read {
                Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) if v.get("error").is_some_and(|e| !e.is_null()) && v.get("choices").is_none() => {
                        let mut err = self.err(BackendErrorKind::InBand, "upstream answered 2xx with an error object");
                        err.upstream_body = Some(v);
                        tries.record(acc.ep, &mut acc.permit, err).await;
                    }
                    Ok(v) if v.is_object() => {
                        acc.permit.success();
                        return Ok(v);
                    }
                    Ok(_) | Err(_) => {
                        let err = self.err(BackendErrorKind::Malformed, "response is not a JSON object");
                        tries.record(acc.ep, &mut acc.permit, err).await;
                    }
                },
                Err(ReadError::TooLarge) => {
                    let err = self.err(BackendErrorKind::Malformed, "response body too large");
                    tries.record(acc.ep, &mut acc.permit, err).await;
                }
                Err(ReadError::Body(e)) => {
                    let err = self.err(e.kind, format!("reading the response: {}", e.message));
                    tries.record(acc.ep, &mut acc.permit, err).await;
                }
            }
        }
    }

    /// The tier's health, for the routing policy and `/health`.
    pub fn health(&self) -> CloudHealth {
        let now = Instant::now();
        let endpoints: Vec<EndpointHealth> = self
            .inner
            .endpoints
            .iter()
            .map(|ep| {
                let (state, consecutive_failures) = ep.breaker().view(now);
                EndpointHealth {
                    url: ep.base.clone(),
                    model: ep.model.clone(),
                    state,
                    consecutive_failures,
                    requests: ep.stats.requests.load(std::sync::atomic::Ordering::Relaxed),
                    errors: ep.stats.errors(),
                    rtt_ms: ep.stats.rtt.get(),
                }
            })
            .collect();
        CloudHealth {
            name: self.inner.name.clone(),
            up: endpoints.iter().any(|e| e.state != BreakerState::Open),
            rtt_ms: self.inner.rtt.get(),
            endpoints,
        }
    }

    /// [`CloudHealth::up`] without allocating.
    pub fn is_up(&self) -> bool {
        let now = Instant::now();
        self.inner
            .endpoints
            .iter()
            .any(|ep| ep.breaker().view(now).0 != BreakerState::Open)
    }

    /// [`CloudHealth::rtt_ms`] without allocating.
    pub fn rtt_ms(&self) -> Option<f64> {
        self.inner.rtt.get()
    }

    fn err(&self, kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
        BackendError::upstream(&self.inner.name, kind, message)
    }

    fn tries(&self, req: Generate, stream: bool) -> Result<Tries, BackendError> {
        let prepared = Prepared::new(req, stream);
        if prepared.has_tools() && !self.inner.supports_tools {
            return Err(BackendError::unsupported(
                &self.inner.name,
                "this cloud tier does not support tools",
            ));
        }
        Ok(Tries::new(Arc::clone(&self.inner), prepared, stream))
    }

    async fn open_stream(&self, req: Generate) -> Result<EventStream, BackendError> {
        // An answer is one stream of events: choices past the first would be
        // dropped. Several choices come back whole, without streaming (the
        // gateway passes such an answer through as the upstream wrote it).
        if req.request.n.is_some_and(|n| n > 1) {
            return Err(BackendError::unsupported(
                &self.inner.name,
                "`n` > 1 is supported without streaming only",
            ));
        }
        let mut tries = self.tries(req, true)?;
        let accepted = tries.open().await?;
        let state = StreamState::new(tries, accepted);
        Ok(Box::pin(futures::stream::unfold(state, |mut s| async move {
            s.next().await.map(|item| (item, s))
        })))
    }
}

impl Backend for CloudBackend {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn is_local(&self) -> bool {
        false
    }

    fn supports_tools(&self) -> bool {
        self.inner.supports_tools
    }

    fn stream(&self, req: Generate) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(self.open_stream(req))
    }

    fn complete_raw(&self, req: Generate) -> Option<BoxFuture<'_, Result<Value, BackendError>>> {
        Some(Box::pin(CloudBackend::complete_raw(self, req)))
    }
}

fn read_key(
    ep: &crate::config::EndpointConfig,
    i: usize,
    env: &dyn EnvSource,
) -> Result<Option<HeaderValue>, ConfigError> {
    let (field, key) = if let Some(var) = &ep.api_key_env {
        let field = format!("endpoints[{i}].api_key_env");
        match env.var(var) {
            Some(k) => (field, k),
            None => {
                return Err(ConfigError::new(
                    "",
                    &field,
                    format!("environment variable {var} is not set"),
                ));
            }
        }
    } else if let Some(path) = &ep.api_key_file {
        let field = format!("endpoints[{i}].api_key_file");
        match std::fs::read_to_string(path) {
            Ok(k) => (field, k),
            Err(e) => {
                return Err(ConfigError::new(
                    "",
                    &field,
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
    } else {
        return Ok(None);
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::new("", &field, "the API key is empty"));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| ConfigError::new("", &field, "the API key holds characters not allowed in an HTTP header"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// What a failed try means for the rest of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The request itself is at fault: give up, count nothing against the endpoint.
    Stop,
    /// This endpoint cannot serve us (its config is wrong): try the others.
    Skip,
    /// Transient: any endpoint, this one included, may be tried again.
    Retry,
}

fn classify_status(status: StatusCode) -> Next {
    match status.as_u16() {
        400 | 413 | 422 | 451 => Next::Stop,
        408 | 429 | 500..=599 => Next::Retry,
        _ => Next::Skip,
    }
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    let secs = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

enum ReadError {
    TooLarge,
    Body(TransportError),
}

async fn read_body(mut body: Body, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await.transpose().map_err(ReadError::Body)? {
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The breaker's grant for one try. An abandoned probe (the caller went
/// away, or the request itself was refused) frees the probe slot on drop.
struct Permit {
    inner: Arc<Inner>,
    ep: usize,
    grant: Grant,
    settled: bool,
}

impl Permit {
    fn success(&mut self) {
        if !self.settled {
            self.settled = true;
            self.inner.endpoints[self.ep].breaker().success();
        }
    }

    /// Counts a failure of the endpoint; also after a success (a stream that
    /// broke after content), so consecutive failures stay truthful.
    fn failure(&mut self) {
        self.settled = true;
        self.inner.endpoints[self.ep].breaker().failure(Instant::now());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled && self.grant == Grant::Probe {
            self.inner.endpoints[self.ep].breaker().release_probe();
        }
    }
}

/// An endpoint answered 2xx.
struct Accepted {
    ep: usize,
    permit: Permit,
    response: transport::Upstream,
    sent_at: Instant,
}

/// The try budget and per-request endpoint bookkeeping.
struct Tries {
    inner: Arc<Inner>,
    prepared: Prepared,
    stream: bool,
    made: u32,
    /// Failures of each endpoint in this request, for ordering and backoff.
    failed: Vec<u32>,
    /// Endpoints this request will not use again (`Next::Skip`).
    skipped: Vec<bool>,
    /// An endpoint's own `retry-after`, honoured before trying it again.
    retry_after: Vec<Option<Duration>>,
    last_error: Option<BackendError>,
}

impl Tries {
    fn new(inner: Arc<Inner>, prepared: Prepared, stream: bool) -> Self {
        let n = inner.endpoints.len();
        Tries {
            inner,
            prepared,
            stream,
            made: 0,
            failed: vec![0; n],
            skipped: vec![false; n],
            retry_after: vec![None; n],
            last_error: None,
        }
    }

    fn err(&self, kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
        BackendError::upstream(&self.inner.name, kind, message)
    }

    /// The error to return when no try is left or possible.
    fn exhausted(&mut self) -> BackendError {
        self.last_error.take().unwrap_or_else(|| {
            self.err(
                BackendErrorKind::Unavailable,
                "every endpoint's circuit breaker is open",
            )
        })
    }

    /// The best endpoint the breakers let through: fewest failures in this
    /// request first, then priority order.
    fn pick(&self) -> Option<Permit> {
        let mut order: Vec<usize> = (0..self.inner.endpoints.len()).filter(|&i| !self.skipped[i]).collect();
        order.sort_by_key(|&i| self.failed[i]);
        let now = Instant::now();
        order.into_iter().find_map(|ep| {
            let grant = self.inner.endpoints[ep].breaker().acquire(now)?;
            Some(Permit {
                inner: Arc::clone(&self.inner),
                ep,
                grant,
                settled: false,
            })
        })
    }

    fn backoff(&self, ep: usize) -> Duration {
        if let Some(d) = self.retry_after[ep] {
            return d.min(self.inner.backoff_max);
        }
        let n = self.failed[ep].saturating_sub(1).min(20);
        let cap = self
            .inner
            .backoff_base
            .saturating_mul(1 << n)
            .min(self.inner.backoff_max);
        full_jitter(cap)
    }

    /// Tries until an endpoint answers 2xx, the request is refused, or the
    /// budget is spent.
    async fn open(&mut self) -> Result<Accepted, BackendError> {
        loop {
            let Some(mut permit) = self.pick() else {
                return Err(self.exhausted());
            };
            let ep = permit.ep;
            // `retries` bounds the tries of endpoints already tried; every
            // endpoint gets its first try whatever the count (failing over
            // is not retrying). `pick` offers untried endpoints first.
            if self.made > self.inner.retries && self.failed[ep] > 0 {
                return Err(self.exhausted());
            }
            if self.failed[ep] > 0 {
                tokio::time::sleep(self.backoff(ep)).await;
            }
            self.made += 1;
            let sent_at = Instant::now();
            match self.send(ep).await {
                Ok(response) => {
                    return Ok(Accepted {
                        ep,
                        permit,
                        response,
                        sent_at,
                    });
                }
                Err((err, Next::Stop)) => {
                    // The endpoint answered; the request was at fault.
                    permit.success();
                    return Err(err);
                }
                Err((err, next)) => {
                    self.record(ep, &mut permit, err).await;
                    if next == Next::Skip {
                        self.skipped[ep] = true;
                    }
                }
            }
        }
    }

    /// A connection that let a try time out or stall may be dead (its
    /// network went away without a word): later tries and requests open a
    /// new one.
    async fn forget_if_silent(&self, ep: usize, err: &BackendError) {
        if matches!(err.kind, BackendErrorKind::Timeout | BackendErrorKind::Stall) {
            self.inner.clients.get().forget(ep, None).await;
        }
    }

    /// A try failed before content (sent or not): count it and let the
    /// next `open` go on.
    async fn record(&mut self, ep: usize, permit: &mut Permit, err: BackendError) {
        self.forget_if_silent(ep, &err).await;
        let endpoint = &self.inner.endpoints[ep];
        tracing::warn!(
            tier = %self.inner.name,
            endpoint = %endpoint.base,
            kind = err.kind.as_str(),
            status = err.upstream_status,
            tries = self.made,
            error = %err.message,
            "cloud try failed"
        );
        endpoint.stats.error(err.kind);
        permit.failure();
        self.failed[ep] += 1;
        self.last_error = Some(err);
    }

    async fn send(&mut self, ep: usize) -> Result<transport::Upstream, (BackendError, Next)> {
        let inner = Arc::clone(&self.inner);
        let endpoint = &inner.endpoints[ep];
        let body = self.prepared.body_for(&endpoint.model).map_err(|e| {
            let err = BackendError::new(
                &inner.name,
                BackendErrorKind::Other,
                Fault::Internal,
                format!("serialising the request: {e}"),
            );
            (err, Next::Stop)
        })?;
        let out = Outgoing {
            body,
            accept: if self.stream {
                "text/event-stream"
            } else {
                "application/json"
            },
            auth: endpoint.auth.as_ref(),
        };
        // A non-stream answer's body is read within the same bound
        // (`complete_raw`).
        let bound = if self.stream {
            inner.first_token_timeout
        } else {
            inner.request_timeout
        };
        endpoint
            .stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let sent = inner
            .clients
            .get()
            .send(ep, endpoint.target.as_ref(), &endpoint.chat_url, out);
        let resp = match tokio::time::timeout(bound, sent).await {
            Err(_) => {
                let err = self.err(
                    BackendErrorKind::Timeout,
                    format!("{}: no response headers within {} ms", endpoint.base, bound.as_millis()),
                );
                return Err((err, Next::Retry));
            }
            Ok(Err(e)) => {
                let err = self.err(e.kind, format!("{}: {}", endpoint.base, e.message));
                return Err((err, Next::Retry));
            }
            Ok(Ok(resp)) => resp,
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        endpoint.stats.rtt.record(ms);
        inner.rtt.record(ms);
        let status = resp.status;
        if status.is_success() {
            self.retry_after[ep] = None;
            return Ok(resp);
        }
        let next = classify_status(status);
        self.retry_after[ep] = if next == Next::Retry {
            retry_after(&resp.headers)
        } else {
            None
        };
        let mut err = self.err(
            BackendErrorKind::Status,
            format!("{}: HTTP {}", endpoint.base, status.as_u16()),
        );
        err.upstream_status = Some(status.as_u16());
        if next == Next::Stop {
            err.fault = Fault::Downstream;
            // The body names the offending parameter; the app gets it as is.
            let body = tokio::time::timeout(inner.idle_timeout, read_body(resp.body, MAX_ERROR_BODY_BYTES)).await;
            if let Ok(Ok(bytes)) = body {
                err.upstream_body = serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object);
            }
        }
        Err((err, next))
    }
}

/// A random wait in `[0, cap]`: retries of many clients spread out instead
/// of arriving together.
fn full_jitter(cap: Duration) -> Duration {
    use rand::Rng;
    let cap_us = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::rng().random_range(0..=cap_us))
}

/// The try whose body is being read.
struct Current {
    ep: usize,
    permit: Permit,
    body: Body,
    /// When this try must have produced content.
    first_deadline: Instant,
}

/// The state behind the `EventStream` handed to the caller.
struct StreamState {
    tries: Tries,
    /// `None` once the stream has ended; dropping it closes the connection.
    cur: Option<Current>,
    parser: SseParser,
    /// Events (and at most one final error) ready for the caller.
    ready: VecDeque<Result<Event, BackendError>>,
    /// Non-content events seen before the first content event; dropped if
    /// this try fails, delivered once content or `[DONE]` arrives.
    held: Vec<Event>,
    content_seen: bool,
    finish_seen: bool,
    scratch: Vec<Event>,
}

impl StreamState {
    fn new(tries: Tries, accepted: Accepted) -> Self {
        let mut s = StreamState {
            tries,
            cur: None,
            parser: SseParser::new(),
            ready: VecDeque::new(),
            held: Vec::new(),
            content_seen: false,
            finish_seen: false,
            scratch: Vec::new(),
        };
        s.start(accepted);
        s
    }

    fn start(&mut self, acc: Accepted) {
        self.parser = SseParser::new();
        self.held.clear();
        self.finish_seen = false;
        self.cur = Some(Current {
            ep: acc.ep,
            permit: acc.permit,
            body: acc.response.body,
            first_deadline: acc.sent_at + self.tries.inner.first_token_timeout,
        });
    }

    async fn next(&mut self) -> Option<Result<Event, BackendError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let cur = self.cur.as_mut()?;
            let idle = self.tries.inner.idle_timeout;
            let now = Instant::now();
            let (wait, first_token_bound) = if self.content_seen {
                (idle, false)
            } else {
                let left = cur.first_deadline.saturating_duration_since(now);
                (idle.min(left), left <= idle)
            };
            let piece = tokio::time::timeout(wait, cur.body.next()).await;
            let failure = match piece {
                Err(_) if first_token_bound => Some(self.tries.err(
                    BackendErrorKind::Timeout,
                    format!(
                        "no content within {} ms",
                        self.tries.inner.first_token_timeout.as_millis()
                    ),
                )),
                Err(_) => Some(
                    self.tries
                        .err(BackendErrorKind::Stall, format!("no data for {} ms", idle.as_millis())),
                ),
                Ok(None) if self.finish_seen && !self.parser.has_partial() => {
                    // Some servers end after the finish chunk without
                    // `[DONE]`; the answer is complete, so it is no cut.
                    self.end();
                    None
                }
                Ok(None) => Some(
                    self.tries
                        .err(BackendErrorKind::Interrupted, "the stream ended without [DONE]"),
                ),
                // A body error mid-stream is a cut, whatever the transport
                // calls it: stream requests carry no transport timeout, ours
                // are above.
                Ok(Some(Err(e))) => Some(self.tries.err(
                    BackendErrorKind::Interrupted,
                    format!("reading the stream: {}", e.message),
                )),
                Ok(Some(Ok(bytes))) => self.feed(&bytes),
            };
            if let Some(err) = failure {
                self.fail(err).await;
            }
        }
    }

    /// Parses a piece of the body; returns the error that ends this try.
    fn feed(&mut self, bytes: &[u8]) -> Option<BackendError> {
        let events = match self.parser.push(bytes) {
            Ok(events) => events,
            Err(e) => return Some(self.tries.err(BackendErrorKind::Malformed, e.to_string())),
        };
        for sse in events {
            self.scratch.clear();
            let done = match chunk::parse(&sse, &mut self.scratch) {
                Ok(done) => done,
                Err(ChunkError::Malformed(msg)) => return Some(self.tries.err(BackendErrorKind::Malformed, msg)),
                Err(ChunkError::Aborted) => {
                    return Some(
                        self.tries
                            .err(BackendErrorKind::Interrupted, "the upstream aborted the answer"),
                    );
                }
                Err(ChunkError::InBand(body)) => {
                    let mut err = self.tries.err(BackendErrorKind::InBand, in_band_summary(&body));
                    err.upstream_body = Some(body);
                    return Some(err);
                }
            };
            for ev in self.scratch.drain(..) {
                if matches!(ev, Event::Finish(_)) {
                    self.finish_seen = true;
                }
                if self.content_seen {
                    self.ready.push_back(Ok(ev));
                } else if ev.is_content() {
                    self.content_seen = true;
                    if let Some(cur) = self.cur.as_mut() {
                        cur.permit.success();
                    }
                    self.ready.extend(self.held.drain(..).map(Ok));
                    self.ready.push_back(Ok(ev));
                } else {
                    self.held.push(ev);
                }
            }
            if done {
                self.end();
                return None;
            }
        }
        None
    }

    /// A clean end: `[DONE]`, or EOF after the finish chunk.
    fn end(&mut self) {
        self.ready.extend(self.held.drain(..).map(Ok));
        let Some(mut cur) = self.cur.take() else { return };
        // An answer with no content that ended cleanly is still a healthy
        // endpoint (a no-op after content).
        cur.permit.success();
        // Read what follows `[DONE]` (usually just the chunked-encoding
        // terminator, already buffered) so the connection returns to the
        // pool instead of being closed; in the background if not there yet.
        let mut body = cur.body;
        if matches!(body.next().now_or_never(), Some(None)) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(DRAIN_FOR, async { while body.next().await.is_some() {} }).await;
            });
        }
    }

    /// Ends this try. Before content the next try starts transparently;
    /// after content the error goes to the caller and the stream ends.
    async fn fail(&mut self, err: BackendError) {
        let Some(mut cur) = self.cur.take() else { return };
        if self.content_seen {
            tracing::warn!(
                tier = %self.tries.inner.name,
                endpoint = %self.tries.inner.endpoints[cur.ep].base,
                kind = err.kind.as_str(),
                "cloud stream failed after content"
            );
            self.tries.forget_if_silent(cur.ep, &err).await;
            self.tries.inner.endpoints[cur.ep].stats.error(err.kind);
            cur.permit.failure();
            self.ready.push_back(Err(err));
            return;
        }
        self.tries.record(cur.ep, &mut cur.permit, err).await;
        // Close this connection before opening the next.
        drop(cur);
        match self.tries.open().await {
            Ok(acc) => self.start(acc),
            Err(e) => self.ready.push_back(Err(e)),
        }
    }
}

/// A short description of an in-band error for logs and messages: its
/// `type` and `code`, never its free text (which may quote the prompt).
fn in_band_summary(body: &Value) -> String {
    let e = body.get("error").unwrap_or(body);
    let field = |k: &str| e.get(k).map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    format!("upstream error event (type {}, code {})", field("type"), field("code"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let c = |n| classify_status(StatusCode::from_u16(n).unwrap_or(StatusCode::IM_A_TEAPOT));
        for n in [400, 413, 422, 451] {
            assert_eq!(c(n), Next::Stop, "{n}");
        }
        for n in [408, 429, 500, 502, 503, 504] {
            assert_eq!(c(n), Next::Retry, "{n}");
        }
        for n in [301, 401, 403, 404, 405] {
            assert_eq!(c(n), Next::Skip, "{n}");
        }
    }

    #[test]
    fn jitter_stays_within_the_cap() {
        let cap = Duration::from_millis(50);
        for _ in 0..1000 {
            assert!(full_jitter(cap) <= cap);
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }
}
