//! The HTTP surface: the OpenAI endpoints and the `/mock/*` control endpoints.
//!
//! `POST /v1/chat/completions` goes through, in order: body read (16 MiB
//! limit) → auth → fault (default, then the random mix, then the
//! `x-mock-fault` header) → JSON and request checks → `fail_first` → `status`
//! → the answer. The request is recorded with the status decided, then the
//! `latency` is waited, then the response goes out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

use crate::answer::{self, DEFAULT_CHUNKS, mix};
use crate::body::{Meta, SseStream, StreamGuard, completion};
use crate::clock;
use crate::config::{MockConfig, RandomFaults};
use crate::error::HttpError;
use crate::fault::Fault;
use crate::record::{Record, RecordedRequest};
use crate::stats::Counters;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 16 << 20;

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub api_key: Option<String>,
    pub default_fault: Fault,
    pub random: RandomFaults,
    pub models: Vec<String>,
    /// Every answer echoes, as with `x-mock-echo: 1`.
    pub echo: bool,
    pub record: Record,
    pub counters: Arc<Counters>,
    /// Arrival number of the next chat request: the record's `seq`, the
    /// answer's id, and the random mix's draw.
    seq: AtomicU64,
    /// Requests seen per `x-mock-key` among those asking for `fail_first`.
    fail_counts: Mutex<HashMap<String, u64>>,
}

impl Shared {
    pub fn new(cfg: &MockConfig) -> Self {
        Shared {
            api_key: cfg.api_key.clone(),
            default_fault: cfg.default_fault,
            random: cfg.random,
            models: cfg.models.clone(),
            echo: cfg.echo,
            record: Record::new(cfg.record_limit),
            counters: Arc::new(Counters::default()),
            seq: AtomicU64::new(0),
            fail_counts: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/mock/requests", get(list_requests).delete(clear_requests))
        .route("/mock/stats", get(stats))
        .fallback(|| async { HttpError::new(StatusCode::NOT_FOUND, "no such endpoint").into_response() })
        .method_not_allowed_fallback(|| async {
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response()
        })
        .with_state(shared)
}

fn json_response(v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn list_requests(State(sh): State<Arc<Shared>>) -> Response {
    json_response(&sh.record.all())
}

async fn clear_requests(State(sh): State<Arc<Shared>>) -> StatusCode {
    sh.record.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(sh): State<Arc<Shared>>) -> Response {
    json_response(&sh.counters.snapshot())
}

impl Shared {
    fn check_auth(&self, headers: &HeaderMap) -> Result<(), HttpError> {
        let Some(key) = &self.api_key else { return Ok(()) };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if g == key => Ok(()),
            Some(_) => {
                Err(HttpError::new(StatusCode::UNAUTHORIZED, "Incorrect API key provided.").code("invalid_api_key"))
            }
            None => Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "You didn't provide an API key. Send `Authorization: Bearer <key>`.",
            )
            .code("missing_api_key")),
        }
    }

    /// Applies the request's `x-mock-fault` header over `fault`.
    fn header_fault(headers: &HeaderMap, fault: &mut Fault) -> Result<(), HttpError> {
        let Some(v) = headers.get("x-mock-fault") else {
            return Ok(());
        };
        let s = v
            .to_str()
            .map_err(|_| HttpError::bad_request("invalid x-mock-fault header: not ASCII", None))?;
        fault
            .apply(s)
            .map_err(|e| HttpError::bad_request(format!("invalid x-mock-fault header: {e}"), None).code("mock_fault"))
    }

    /// The random mix's fault for request `seq`, if any.
    fn random_fault(&self, seq: u64, fault: &mut Fault) {
        let r = &self.random;
        if !r.is_active() {
            return;
        }
        let h = mix(r.seed ^ mix(seq));
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        let h2 = mix(h);
        let at = (h2 % (u64::from(fault.chunks.unwrap_or(DEFAULT_CHUNKS)) + 1)) as u32;
        if u < r.cut_rate {
            fault.cut_after = Some(at);
        } else if u < r.cut_rate + r.status_rate {
            fault.status = Some([429, 500, 503][(h2 % 3) as usize]);
        } else if u < r.cut_rate + r.status_rate + r.stall_rate {
            fault.stall_after = Some(at);
        }
    }

    /// `fail_first` and `status`: the error this request gets, if any.
    fn injected_error(&self, headers: &HeaderMap, fault: &Fault) -> Option<HttpError> {
        if let Some(k) = fault.fail_first {
            let key = headers
                .get("x-mock-key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let seen = {
                let mut counts = self.fail_counts.lock().unwrap_or_else(|p| p.into_inner());
                let n = counts.entry(key).or_insert(0);
                *n += 1;
                *n
            };
            if seen <= u64::from(k) {
                let mut e = HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("mock: fail_first={k}, this is request {seen} for its x-mock-key"),
                )
                .code("mock_fail_first");
                e.retry_after = fault.retry_after;
                return Some(e);
            }
        }
        let code = fault.status?;
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (message, code_str) = match code {
            429 => ("Rate limit reached for requests (mock)", Some("rate_limit_exceeded")),
            500 => ("The server had an error while processing your request (mock)", None),
            503 => (
                "The engine is currently overloaded, please try again later (mock)",
                None,
            ),
            _ => ("mock fault: status", None),
        };
        let mut e = HttpError::new(status, format!("{message} [status={code}]"));
        e.code = code_str;
        e.retry_after = fault.retry_after.or((code == 429).then_some(1));
        Some(e)
    }
}

async fn models(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut fault = sh.default_fault;
    let result = sh
        .check_auth(&headers)
        .and_then(|()| Shared::header_fault(&headers, &mut fault))
        .and_then(|()| sh.injected_error(&headers, &fault).map_or(Ok(()), Err));
    clock::sleep_ms(fault.latency_ms).await;
    if let Err(e) = result {
        return e.into_response();
    }
    let data: Vec<Value> = sh
        .models
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "mock-cloud"}))
        .collect();
    json_response(&serde_json::json!({"object": "list", "data": data}))
}

async fn read_body(body: Body) -> Result<Bytes, HttpError> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return HttpError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {BODY_LIMIT} bytes"),
                );
            }
            source = s.source();
        }
        HttpError::bad_request(format!("could not read the request body: {e}"), None)
    })
}

async fn chat(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    sh.counters.requests.fetch_add(1, Relaxed);
    let seq = sh.seq.fetch_add(1, Relaxed);
    let (parts, body) = req.into_parts();
    let mut rec = RecordedRequest::new(seq, parts.uri.path(), &parts.headers);
    let mut fault = sh.default_fault;
    let result = match read_body(body).await {
        Ok(bytes) => {
            let parsed = serde_json::from_slice::<Value>(&bytes);
            let result = respond(&sh, seq, &parts.headers, parsed.as_ref(), &mut fault);
            rec.body = parsed.unwrap_or(Value::Null);
            result
        }
        Err(e) => Err(e),
    };
    rec.status = match &result {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.status.as_u16(),
    };
    sh.record.push(rec);
    clock::sleep_ms(fault.latency_ms).await;
    result.unwrap_or_else(HttpError::into_response)
}

/// Everything between the body and the response (see the module doc).
fn respond(
    sh: &Arc<Shared>,
    seq: u64,
    headers: &HeaderMap,
    parsed: Result<&Value, &serde_json::Error>,
    fault: &mut Fault,
) -> Result<Response, HttpError> {
    sh.check_auth(headers)?;
    sh.random_fault(seq, fault);
    Shared::header_fault(headers, fault)?;
    let value = parsed.map_err(|e| HttpError::bad_request(format!("malformed JSON body: {e}"), None))?;
    let conv = answer::read_request(value)?;
    if let Some(e) = sh.injected_error(headers, fault) {
        return Err(e);
    }
    let echo = sh.echo
        || headers
            .get("x-mock-echo")
            .is_some_and(|v| matches!(v.as_bytes(), b"1" | b"true"));
    let ans = answer::answer(&conv, fault.chunks.unwrap_or(DEFAULT_CHUNKS), echo);
    let meta = Meta {
        id: format!("chatcmpl-mock-{seq}"),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        model: conv.model.to_owned(),
        prompt_tokens: conv.prompt_tokens,
    };
    let mut resp = if conv.stream {
        let guard = StreamGuard::new(Arc::clone(&sh.counters));
        let body = SseStream::new(&meta, ans, conv.max_tokens, conv.include_usage, *fault, guard).into_body();
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    } else {
        let (body, len) = completion(&meta, &ans, conv.max_tokens, fault);
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    };
    resp.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_str(&meta.id).unwrap_or(HeaderValue::from_static("mock")),
    );
    Ok(resp)
}
