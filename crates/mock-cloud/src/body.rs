//! Response bodies: the OpenAI SSE stream (with its faults) and the
//! non-stream completion (with its faults).
//!
//! Each SSE frame is one allocation: the part every chunk of a stream shares
//! (`id`, `created`, `model`, …) is serialised once per stream and copied in.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;

use crate::answer::Answer;
use crate::clock;
use crate::fault::Fault;
use crate::stats::{Counters, StreamEnd};

/// What every response of one answer shares.
pub(crate) struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub prompt_tokens: u64,
}

/// The in-band error event `error_event_after` sends.
pub(crate) const ERROR_EVENT: &[u8] =
    b"data: {\"error\":{\"message\":\"upstream overloaded\",\"type\":\"server_error\"}}\n\n";
const MALFORMED_EVENT: &[u8] = b"data: {not json\n\n";
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// How long a cut waits before failing the body. hyper drops bytes it has
/// buffered but not written when a body fails (HTTP/1.1 closes the socket,
/// HTTP/2 resets the stream and discards its queued frames), so without the
/// pause the client would not see the chunks sent before the cut.
const CUT_FLUSH: Duration = Duration::from_millis(20);

/// The body error that makes hyper cut the response: the connection is
/// closed (HTTP/1.1) or the stream reset (HTTP/2).
async fn cut() -> io::Error {
    tokio::time::sleep(CUT_FLUSH).await;
    io::Error::other("mock fault: cut_after")
}

fn push_json_str(v: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    if serde_json::to_writer(&mut *v, s).is_err() {
        v.extend_from_slice(b"\"\"");
    }
}

/// Counts a stream's end once, whichever way it ends: a stream dropped
/// before it was marked ended was abandoned by the client.
pub(crate) struct StreamGuard {
    counters: Arc<Counters>,
    end: Option<StreamEnd>,
}

impl StreamGuard {
    pub fn new(counters: Arc<Counters>) -> Self {
        counters.stream_started();
        StreamGuard { counters, end: None }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.counters.stream_ended(self.end.unwrap_or(StreamEnd::Disconnected));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Role,
    ToolHead,
    Content,
    Finish,
    Usage,
    Done,
    End,
}

/// A stream being sent: which frame comes next and which faults are due.
pub(crate) struct SseStream {
    /// `data: {"id":…,"object":…,"created":…,"model":…,"system_fingerprint":"mock",`
    head: Vec<u8>,
    answer: Answer,
    /// Pieces to send: the answer's, capped by `max_tokens`.
    send: usize,
    sent: usize,
    finish: &'static str,
    include_usage: bool,
    prompt_tokens: u64,
    fault: Fault,
    malformed_sent: bool,
    phase: Phase,
    guard: StreamGuard,
}

impl SseStream {
    pub fn new(
        meta: &Meta,
        answer: Answer,
        max_tokens: Option<u64>,
        include_usage: bool,
        fault: Fault,
        guard: StreamGuard,
    ) -> Self {
        let mut head = Vec::with_capacity(128 + meta.model.len());
        head.extend_from_slice(b"data: {\"id\":");
        push_json_str(&mut head, &meta.id);
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        head.extend_from_slice(meta.created.to_string().as_bytes());
        head.extend_from_slice(b",\"model\":");
        push_json_str(&mut head, &meta.model);
        head.extend_from_slice(b",\"system_fingerprint\":\"mock\",");
        let (send, finish) = cap(&answer, max_tokens);
        SseStream {
            head,
            answer,
            send,
            sent: 0,
            finish,
            include_usage,
            prompt_tokens: meta.prompt_tokens,
            fault,
            malformed_sent: false,
            phase: Phase::Role,
            guard,
        }
    }

    pub fn into_body(self) -> Body {
        let stream = futures::stream::unfold(self, |mut s| async move {
            let frame = s.next_frame().await?;
            Some((frame, s))
        });
        Body::from_stream(stream)
    }

    /// One choice chunk: `delta` writes the delta object.
    fn chunk(&self, extra: usize, delta: impl FnOnce(&mut Vec<u8>), finish: Option<&str>) -> Bytes {
        let mut v = Vec::with_capacity(self.head.len() + 96 + extra);
        v.extend_from_slice(&self.head);
        v.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":");
        delta(&mut v);
        v.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                v.push(b'"');
                v.extend_from_slice(f.as_bytes());
                v.push(b'"');
            }
            None => v.extend_from_slice(b"null"),
        }
        v.extend_from_slice(b"}]}\n\n");
        Bytes::from(v)
    }

    /// A fault point `n` chunks in, clamped so that a point past the end
    /// still fires (just before the finish chunk).
    fn due(&self, point: Option<u32>) -> bool {
        point.is_some_and(|n| (n as usize).min(self.send) == self.sent)
    }

    async fn next_frame(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            match self.phase {
                Phase::Role => {
                    let tool = self.answer.tool_call.is_some();
                    self.phase = if tool { Phase::ToolHead } else { Phase::Content };
                    let delta: &[u8] = if tool {
                        b"{\"role\":\"assistant\",\"content\":null}"
                    } else {
                        b"{\"role\":\"assistant\",\"content\":\"\"}"
                    };
                    return Some(Ok(self.chunk(0, |v| v.extend_from_slice(delta), None)));
                }
                Phase::ToolHead => {
                    self.phase = Phase::Content;
                    let Some(call) = &self.answer.tool_call else { continue };
                    let frame = self.chunk(
                        call.id.len() + call.name.len() + 80,
                        |v| {
                            v.extend_from_slice(b"{\"tool_calls\":[{\"index\":0,\"id\":");
                            push_json_str(v, &call.id);
                            v.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                            push_json_str(v, &call.name);
                            v.extend_from_slice(b",\"arguments\":\"\"}}]}");
                        },
                        None,
                    );
                    return Some(Ok(frame));
                }
                Phase::Content => {
                    if self.due(self.fault.cut_after) {
                        self.guard.end = Some(StreamEnd::Cut);
                        self.phase = Phase::End;
                        return Some(Err(cut().await));
                    }
                    if self.due(self.fault.stall_after) {
                        // Until the client goes away, when hyper drops this
                        // body and the guard counts the disconnect.
                        std::future::pending::<()>().await;
                    }
                    if !self.malformed_sent && self.due(self.fault.malformed_after) {
                        self.malformed_sent = true;
                        return Some(Ok(Bytes::from_static(MALFORMED_EVENT)));
                    }
                    if self.due(self.fault.error_event_after) {
                        self.phase = Phase::Done;
                        return Some(Ok(Bytes::from_static(ERROR_EVENT)));
                    }
                    if self.sent == self.send {
                        self.phase = Phase::Finish;
                        continue;
                    }
                    clock::sleep_ms(self.fault.chunk_delay_ms).await;
                    let piece = self.answer.piece(self.sent);
                    let tool = self.answer.tool_call.is_some();
                    let frame = self.chunk(
                        piece.len() + 48,
                        |v| {
                            if tool {
                                v.extend_from_slice(b"{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
                                push_json_str(v, piece);
                                v.extend_from_slice(b"}}]}");
                            } else {
                                v.extend_from_slice(b"{\"content\":");
                                push_json_str(v, piece);
                                v.push(b'}');
                            }
                        },
                        None,
                    );
                    self.sent += 1;
                    return Some(Ok(frame));
                }
                Phase::Finish => {
                    self.phase = if self.include_usage { Phase::Usage } else { Phase::Done };
                    return Some(Ok(self.chunk(0, |v| v.extend_from_slice(b"{}"), Some(self.finish))));
                }
                Phase::Usage => {
                    self.phase = Phase::Done;
                    let (p, c) = (self.prompt_tokens, self.sent as u64);
                    let usage = format!(
                        "\"choices\":[],\"usage\":{{\"prompt_tokens\":{p},\"completion_tokens\":{c},\"total_tokens\":{}}}}}\n\n",
                        p + c
                    );
                    let mut v = Vec::with_capacity(self.head.len() + usage.len());
                    v.extend_from_slice(&self.head);
                    v.extend_from_slice(usage.as_bytes());
                    return Some(Ok(Bytes::from(v)));
                }
                Phase::Done => {
                    self.phase = Phase::End;
                    return Some(Ok(Bytes::from_static(DONE_EVENT)));
                }
                Phase::End => {
                    self.guard.end.get_or_insert(StreamEnd::Completed);
                    return None;
                }
            }
        }
    }
}

/// Pieces to send under `max_tokens`, and the finish reason that follows.
fn cap(answer: &Answer, max_tokens: Option<u64>) -> (usize, &'static str) {
    let n = answer.len();
    match max_tokens {
        Some(m) if (m as usize) < n => (m as usize, "length"),
        _ if answer.tool_call.is_some() => (n, "tool_calls"),
        _ => (n, "stop"),
    }
}

/// A non-stream completion, with the faults that apply to it: `cut_after`
/// and `stall_after` send half the body (after a `content-length` for the
/// whole), `malformed_after` sends `{not json`, `error_event_after` sends an
/// error object with status 200. Returns the body and its `content-length`.
pub(crate) fn completion(meta: &Meta, answer: &Answer, max_tokens: Option<u64>, fault: &Fault) -> (Body, u64) {
    if fault.malformed_after.is_some() {
        return (Body::from(&b"{not json"[..]), 9);
    }
    if fault.error_event_after.is_some() {
        let b = &ERROR_EVENT[b"data: ".len()..ERROR_EVENT.len() - 2];
        return (Body::from(b), b.len() as u64);
    }
    let (send, finish) = cap(answer, max_tokens);
    let text = answer.prefix(send);
    let message = match &answer.tool_call {
        Some(call) => serde_json::json!({
            "role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": text}}],
        }),
        None => serde_json::json!({"role": "assistant", "content": text, "refusal": null}),
    };
    let body = serde_json::json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": "mock",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": meta.prompt_tokens,
            "completion_tokens": send,
            "total_tokens": meta.prompt_tokens + send as u64,
        },
    });
    let bytes = Bytes::from(body.to_string());
    let len = bytes.len() as u64;
    let half = bytes.slice(..bytes.len() / 2);
    let first = futures::stream::iter([Ok::<_, io::Error>(half)]);
    if fault.cut_after.is_some() {
        let cut = futures::stream::once(async { Err(cut().await) });
        return (Body::from_stream(first.chain(cut)), len);
    }
    if fault.stall_after.is_some() {
        return (Body::from_stream(first.chain(futures::stream::pending())), len);
    }
    (Body::from(bytes), len)
}
