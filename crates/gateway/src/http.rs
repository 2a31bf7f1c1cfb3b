//! The HTTP edge: routes, the security checks in front of them, and the one
//! place where errors become responses.
//!
//! Layer order, outermost first (a request meets them in this order):
//! 1. `guard` — the `Host` check against DNS rebinding, then the client
//!    bearer token when one is configured; both before any body is read;
//! 2. CORS, only when origins are configured (off by default);
//! 3. the handlers, which read the body themselves so the size limit, the
//!    content type and a slow-drip timeout all answer in the OpenAI error
//!    shape instead of axum's plain-text rejections.
//!
//! Architecture invariant: only this crate knows axum.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api::{Aggregate, ApiError, BackendError, ChatRequest, Event, FinishReason, Renderer, TandemInfo, Usage};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::engine::Run;
use crate::state::AppState;
use crate::telemetry;

/// An `ApiError` on its way out: the single place statuses are rendered.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.0.to_json()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    telemetry::handle();
    let mut app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/route", post(route))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/status/decisions", get(decisions))
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(cors) = state.security.cors_layer() {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // Liveness and readiness say nothing a web page could abuse, and
    // orchestrators probe them by IP: they skip both checks.
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    if !probe && let Err(e) = state.security.check_host(&req) {
        return HttpError(e).into_response();
    }
    // CORS preflights carry no credentials.
    let open = probe || req.method() == Method::OPTIONS;
    if !open && let Err(e) = state.security.check_token(req.headers()) {
        return HttpError(e).into_response();
    }
    next.run(req).await
}

async fn not_found(req: Request) -> HttpError {
    HttpError(ApiError::not_found(
        format!("no route for {} {}", req.method(), req.uri().path()),
        "unknown_url",
    ))
}

async fn method_not_allowed(req: Request) -> HttpError {
    HttpError(ApiError::new(
        405,
        "invalid_request_error",
        Some("method_not_allowed"),
        format!("method {} is not allowed on {}", req.method(), req.uri().path()),
    ))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({"ready": ready}))).into_response()
}

async fn status(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(state.status())
}

async fn decisions() -> impl IntoResponse {
    axum::Json(telemetry::recent_decisions())
}

/// The status page: one self-contained file (inline CSS and JS, no external
/// assets) that polls `/v1/status` and `/v1/status/decisions`.
const STATUS_PAGE: &str = include_str!("status.html");

/// Nothing but the page's own inline code and same-origin fetches may run:
/// data from the daemon can never turn into markup or a request elsewhere.
const STATUS_PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn status_page() -> Response {
    let mut resp = (StatusCode::OK, STATUS_PAGE).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(STATUS_PAGE_CSP),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = telemetry::render(&state);
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn models(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let created = unix_now();
    let data: Vec<Value> = state
        .model_names()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "tandem"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}

/// Reads a JSON body under the configured size limit and read deadline.
pub async fn read_json_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            "invalid_request_error",
            Some("unsupported_media_type"),
            format!(
                "Content-Type must be application/json, got {:?}",
                if ct.is_empty() { "nothing" } else { ct }
            ),
        ));
    }
    let limit = state.security.max_body_bytes;
    let too_large = || {
        ApiError::new(
            413,
            "invalid_request_error",
            Some("request_too_large"),
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    let read = axum::body::to_bytes(body, limit);
    match tokio::time::timeout(state.security.body_timeout, read).await {
        Err(_) => Err(ApiError::new(
            408,
            "invalid_request_error",
            Some("request_timeout"),
            "the request body was not received in time",
        )),
        Ok(Err(e)) => {
            // `to_bytes` reports the limit through a boxed error; anything else
            // is a broken connection, still the client's side.
            if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit")
            {
                Err(too_large())
            } else {
                Err(ApiError::invalid_request(
                    format!("could not read the request body: {e}"),
                    None,
                ))
            }
        }
        Ok(Ok(b)) => Ok(b),
    }
}

/// The decision for a chat request, without generating anything.
async fn route(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let bytes = read_json_body(&state, &headers, body).await?;
        let req = ChatRequest::from_slice(&bytes)?;
        Ok::<_, ApiError>(state.routing.explain(&req, &headers, Some(&state.tiers)))
    }
    .await;
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => HttpError(e).into_response(),
    }
}

async fn chat_completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let id = new_id();
    let span = tracing::info_span!("request", id = %id);
    tokio::select! {
        biased;
        resp = chat(state, headers, body, id).instrument(span) => resp,
        // The shutdown grace period is over: an answer not yet under way
        // gets an error status rather than a reset connection (a stream
        // already under way ends with an error event, in `Pump`).
        () = crate::server::aborted() => HttpError(shutting_down()).into_response(),
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        503,
        "server_error",
        Some("shutting_down"),
        "the daemon is shutting down; the answer was not finished",
    )
}

async fn chat(state: Arc<AppState>, headers: HeaderMap, body: Body, id: String) -> Response {
    let started = Instant::now();
    let mut run = match prepare(&state, &headers, body).await {
        Ok(run) => run,
        Err(e) => {
            telemetry::record(&telemetry::Outcome {
                info: &TandemInfo::default(),
                status: e.status,
                stream: false,
                ttft: None,
                total: started.elapsed(),
                usage: None,
            });
            return HttpError(e).into_response();
        }
    };
    let renderer = Renderer::new(id, unix_now(), run.request().model.clone());
    let stream = run.request().stream;
    let outcome = |run: &Run, status: u16, usage: Option<Usage>| {
        telemetry::record(&telemetry::Outcome {
            info: &run.info,
            status,
            stream,
            ttft: None,
            total: started.elapsed(),
            usage,
        })
    };
    if !stream && let Some((resp, usage)) = passthrough(&mut run, &renderer).await {
        outcome(&run, resp.status().as_u16(), usage);
        return resp;
    }
    if let Err(e) = run.start().await {
        outcome(&run, e.status, None);
        return HttpError(e).into_response();
    }
    if stream {
        return stream_response(run, renderer, started);
    }
    let mut agg = Aggregate::default();
    while let Some(ev) = run.next_event().await {
        match ev {
            Ok(ev) => agg.push(ev),
            Err(e) => {
                outcome(&run, e.status, None);
                return HttpError(e).into_response();
            }
        }
    }
    if let Some(u) = run.usage() {
        agg.usage = u;
    }
    telemetry::content(&run.request().messages, &agg.text);
    let usage = agg.usage;
    let body = agg.into_completion(&renderer, &run.info);
    outcome(&run, 200, Some(usage));
    json_response(&run.info, &body)
}

/// Reads, parses and routes the request.
async fn prepare(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Run, ApiError> {
    let bytes = read_json_body(state, headers, body).await?;
    let req = ChatRequest::from_slice(&bytes)?;
    let plan = state.plan(&req, headers)?;
    if let Some(r) = &plan.redact {
        telemetry::redaction(r.redaction.map.len());
    }
    Ok(Run::new(req, plan))
}

/// A non-stream answer from a backend that speaks OpenAI itself (the cloud)
/// goes back as it came, apart from `model` and the added `tandem` object:
/// every choice, log-probabilities, `system_fingerprint`, vendor fields.
/// Backends are tried in order while they offer it; `None` at the first
/// that does not (the local model: the run goes on from there), or when
/// none is left. With `n` > 1 only such a backend can answer: one that
/// cannot is skipped, its refusal recorded.
async fn passthrough(run: &mut Run, renderer: &Renderer) -> Option<(Response, Option<Usage>)> {
    let several = run.request().n.is_some_and(|n| n > 1);
    // The cascade needs the local model's tokens, never a cloud's whole
    // body; but the local model cannot give several choices at all.
    if run.is_cascade() && !several {
        return None;
    }
    loop {
        let backend = run.peek_backend()?;
        let Some(fut) = backend.complete_raw(run.generate_for(backend.as_ref())) else {
            if !several {
                return None;
            }
            run.skip_backend();
            let refusal = BackendError::unsupported(backend.name(), "`n` > 1: this backend gives one answer");
            run.note_failure(backend.name(), refusal);
            continue;
        };
        run.skip_backend();
        match fut.await {
            Ok(mut v) => {
                run.restore_completion(backend.as_ref(), &mut v);
                run.info.route = backend.name().to_owned();
                let usage = serde_json::from_value::<Usage>(v["usage"].clone()).ok();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("model".into(), Value::String(renderer.model().to_owned()));
                    obj.insert("tandem".into(), json!(run.info));
                }
                return Some((json_response(&run.info, &v), usage));
            }
            Err(e) => {
                let allowed = e.failover_allowed();
                run.note_failure(backend.name(), e);
                if !allowed {
                    return Some((HttpError(run.take_error()).into_response(), None));
                }
            }
        }
    }
}

fn route_headers(resp: &mut Response, info: &TandemInfo) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&info.route) {
        h.insert("x-tandem-route", v);
    }
    if let Ok(v) = HeaderValue::from_str(&info.rule) {
        h.insert("x-tandem-rule", v);
    }
}

fn json_response(info: &TandemInfo, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    route_headers(&mut resp, info);
    resp
}

/// Streams the run as SSE. The response body pulls each chunk from the run
/// when hyper is ready to write it: no task or channel between the backend
/// and the socket, and backpressure all the way to the backend. When the
/// app disconnects, hyper drops the body, and dropping the run stops the
/// backends working for it.
fn stream_response(run: Run, renderer: Renderer, started: Instant) -> Response {
    let route_info = run.info.clone();
    let pump = Pump {
        run,
        renderer,
        started,
        ttft: None,
        status: 200,
        answer: String::new(),
        logging: crate::logging::content_logging(),
        phase: Phase::Role,
        finish: None,
        span: tracing::Span::current(),
    };
    let chunks = futures::stream::unfold(pump, |mut p| async move {
        let span = p.span.clone();
        let chunk = p.next_chunk().instrument(span).await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), p))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(chunks)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    route_headers(&mut resp, &route_info);
    resp
}

#[derive(PartialEq, Eq)]
enum Phase {
    /// The role chunk opens the stream.
    Role,
    Events,
    /// The final chunk or an error event was written.
    Done,
}

/// One answer's events on their way to the app, as SSE chunks.
struct Pump {
    run: Run,
    renderer: Renderer,
    started: Instant,
    ttft: Option<std::time::Duration>,
    /// 200, the error's status, or 499 when the app went away.
    status: u16,
    /// The answer, kept only when content logging is on.
    answer: String,
    logging: bool,
    phase: Phase,
    /// The finish chunk waits for the end of the run: it carries the
    /// `tandem` object (complete only then) or comes just before the usage.
    finish: Option<FinishReason>,
    /// The request's span: logs written while streaming carry its id.
    span: tracing::Span,
}

impl Pump {
    /// The next chunk to write; `None` once the stream is complete.
    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.phase {
                Phase::Done => return None,
                Phase::Role => {
                    self.phase = Phase::Events;
                    if let Some(role) = self.renderer.role_chunk() {
                        return Some(role);
                    }
                }
                Phase::Events => {
                    let next = tokio::select! {
                        biased;
                        _ = crate::server::aborted() => return Some(self.error(&shutting_down())),
                        ev = self.run.next_event() => ev,
                    };
                    match next {
                        Some(Ok(Event::Usage(_))) => {}
                        Some(Ok(Event::Finish(reason))) => self.finish = Some(reason),
                        Some(Ok(ev)) => {
                            if self.ttft.is_none() && ev.is_content() {
                                self.ttft = Some(self.started.elapsed());
                            }
                            if self.logging
                                && let Event::Text { text, .. } = &ev
                            {
                                self.answer.push_str(text);
                            }
                            if let Some(chunk) = self.renderer.event_chunk(&ev) {
                                return Some(chunk);
                            }
                        }
                        Some(Err(e)) => return Some(self.error(&e)),
                        None => {
                            self.phase = Phase::Done;
                            // An answer that ended without a finish reason
                            // (a server that sent none) ended normally.
                            let reason = self.finish.unwrap_or(FinishReason::Stop);
                            let include = self.run.request().include_usage();
                            let usage = self.run.usage();
                            return Some(self.renderer.end(reason, include, usage, &self.run.info));
                        }
                    }
                }
            }
        }
    }

    /// The explicit error event that ends the stream.
    fn error(&mut self, e: &ApiError) -> Vec<u8> {
        self.phase = Phase::Done;
        self.status = e.status;
        self.renderer.error_chunk(e, &self.run.info)
    }
}

/// The stream is over, completed or dropped by hyper because the app went
/// away: the outcome is recorded either way.
impl Drop for Pump {
    fn drop(&mut self) {
        let _enter = self.span.enter();
        if self.phase != Phase::Done {
            self.status = 499;
            tracing::info!("the app went away; the backends working for it were stopped");
        }
        telemetry::content(&self.run.request().messages, &self.answer);
        telemetry::record(&telemetry::Outcome {
            info: &self.run.info,
            status: self.status,
            stream: true,
            ttft: self.ttft,
            total: self.started.elapsed(),
            usage: self.run.usage(),
        });
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_id() -> String {
    format!("chatcmpl-{:024x}", rand::random::<u128>() >> 32)
}

/// How long a body may take to arrive before the request is refused (408).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
