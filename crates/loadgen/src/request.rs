//! One request and its timings: response headers (TTFB), the first SSE
//! event that carries content, and the last byte.
//!
//! The load mode parses each event's JSON only until the first content is
//! found, so the client spends as little CPU as it can beside the servers it
//! measures; the trace mode keeps every content piece with its arrival time.

use std::time::{Duration, Instant};

use anyhow::Context;
use api::sse::SseParser;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use serde_json::Value;

use crate::conn::Target;

/// How much of a response is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Timings, the outcome and the final `tandem` object: the JSON of each
    /// event is parsed only until the first content (load modes).
    Timings,
    /// Also the whole answer text, to compare answers (`burst`).
    Text,
    /// Also every content piece with its arrival time, and the other events.
    Trace,
}

/// The per-request bound passed: the response did not complete in time.
#[derive(Debug)]
pub struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no complete response within {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

/// Whether `send` failed because the request took longer than its bound.
pub fn is_timeout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<TimedOut>().is_some()
}

/// What to send: the same body and headers on every request.
pub struct Spec {
    pub target: Target,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// What one request did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: u16,
    pub ttfb: Duration,
    /// First SSE event with content (stream), or the whole body (JSON).
    pub first_content: Option<Duration>,
    pub last_byte: Duration,
    /// `x-tandem-route`, when the server sent one.
    pub route: Option<String>,
    /// The stream ended with `data: [DONE]` (always true for JSON bodies).
    pub done: bool,
    /// An in-band error event arrived, or the JSON body is an error.
    pub error_event: bool,
    /// Content pieces with their arrival times (trace mode only).
    pub pieces: Vec<(Duration, String)>,
    /// Every parsed event that has no content: the final `tandem`/usage
    /// chunk, error events (trace mode), or the JSON body.
    pub others: Vec<Value>,
    /// The `tandem` object of the final chunk, error event or error body.
    pub tandem: Option<Value>,
    /// The message of the error event or error body, when there was one.
    pub error_message: Option<String>,
    /// The answer's text ([`Detail::Text`] and [`Detail::Trace`]).
    pub text: String,
}

impl Outcome {
    /// A 200 that ended properly with no error in it.
    pub fn ok(&self) -> bool {
        self.status == 200 && self.done && !self.error_event
    }

    /// `completed`, `http_STATUS`, `error_event` or `no_done` (the stream
    /// ended without `[DONE]`).
    pub fn kind(&self) -> String {
        if self.status != 200 {
            format!("http_{}", self.status)
        } else if self.error_event {
            "error_event".into()
        } else if !self.done {
            "no_done".into()
        } else {
            "completed".into()
        }
    }

    /// Notes an error object (an error event or an error body).
    fn note_error(&mut self, v: &Value) {
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            self.error_event = true;
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("(no message)");
            self.error_message.get_or_insert_with(|| msg.to_owned());
        }
        if let Some(t) = v.get("tandem") {
            self.tandem = Some(t.clone());
        }
    }
}

/// Sends one request on `conn` and reads the whole response.
pub async fn send(conn: &mut SendRequest<Full<Bytes>>, spec: &Spec, trace: bool) -> anyhow::Result<Outcome> {
    let detail = if trace { Detail::Trace } else { Detail::Timings };
    send_detail(conn, spec, detail).await
}

/// [`send`], keeping what `detail` asks for. A request that takes longer than
/// the spec's timeout fails with [`TimedOut`].
pub async fn send_detail(conn: &mut SendRequest<Full<Bytes>>, spec: &Spec, detail: Detail) -> anyhow::Result<Outcome> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(spec.target.path.as_str())
        .header("host", spec.target.host.as_str())
        .header("content-type", "application/json");
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(spec.body.clone()))?;
    conn.ready().await.context("connection not ready")?;
    let t0 = Instant::now();
    tokio::time::timeout(spec.timeout, read(conn, req, t0, detail))
        .await
        .map_err(|_| anyhow::Error::new(TimedOut(spec.timeout)))?
}

async fn read(
    conn: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    t0: Instant,
    detail: Detail,
) -> anyhow::Result<Outcome> {
    let trace = detail == Detail::Trace;
    let resp = conn.send_request(req).await.context("sending the request")?;
    let mut out = Outcome {
        status: resp.status().as_u16(),
        ttfb: t0.elapsed(),
        route: resp
            .headers()
            .get("x-tandem-route")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..Outcome::default()
    };
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut body = resp.into_body();
    if !sse {
        let bytes = body.collect().await.context("reading the body")?.to_bytes();
        out.last_byte = t0.elapsed();
        out.first_content = Some(out.last_byte);
        out.done = true;
        if detail != Detail::Timings || out.status != 200 {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            out.note_error(&v);
            if let Some(t) = v.pointer("/choices/0/message/content").and_then(Value::as_str) {
                out.text.push_str(t);
            }
            out.others.push(v);
        }
        return Ok(out);
    }
    let mut parser = SseParser::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the stream")?;
        let Some(data) = frame.data_ref() else { continue };
        let at = t0.elapsed();
        for ev in parser.push(data)? {
            if ev.data == "[DONE]" {
                out.done = true;
                continue;
            }
            // After the first content, the load mode looks only for errors
            // and the final `tandem` object.
            if out.first_content.is_some()
                && detail == Detail::Timings
                && !ev.data.starts_with("{\"error\"")
                && !ev.data.contains("\"tandem\":")
            {
                continue;
            }
            let v: Value = match serde_json::from_str(&ev.data) {
                Ok(v) => v,
                Err(_) => {
                    out.error_event = true;
                    continue;
                }
            };
            match content_of(&v) {
                Some(text) => {
                    out.first_content.get_or_insert(at);
                    if detail != Detail::Timings {
                        out.text.push_str(&text);
                    }
                    if trace {
                        out.pieces.push((at, text));
                    }
                }
                None => {
                    out.note_error(&v);
                    if trace && (v.get("tandem").is_some() || v.get("error").is_some() || v.get("usage").is_some()) {
                        out.others.push(v);
                    }
                }
            }
        }
    }
    out.last_byte = t0.elapsed();
    Ok(out)
}

/// The text of a chunk that carries content: delta text, or the arguments
/// of a tool call (a tool call's first piece may carry only its name).
fn content_of(chunk: &Value) -> Option<String> {
    let delta = chunk.get("choices")?.get(0)?.get("delta")?;
    if let Some(text) = delta.get("content").and_then(Value::as_str)
        && !text.is_empty()
    {
        return Some(text.to_owned());
    }
    let calls = delta.get("tool_calls")?.as_array()?;
    let args: String = calls
        .iter()
        .filter_map(|c| c.get("function")?.get("arguments")?.as_str())
        .collect();
    Some(args)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn content_detection() {
        let role = json!({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]});
        assert_eq!(content_of(&role), None);
        let text = json!({"choices":[{"index":0,"delta":{"content":"Hi"}}]});
        assert_eq!(content_of(&text).as_deref(), Some("Hi"));
        let finish = json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
        assert_eq!(content_of(&finish), None);
        let usage = json!({"choices":[],"usage":{"completion_tokens":3}});
        assert_eq!(content_of(&usage), None);
        let call = json!({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}}]});
        assert_eq!(content_of(&call).as_deref(), Some("{\"a\""));
    }
}
