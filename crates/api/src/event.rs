//! The one event stream every backend yields, and the backend trait.
//!
//! A backend turns a [`Generate`] into a stream of [`Event`]s; the gateway
//! renders them as OpenAI chunks (or one completion) with one `id` and one
//! `created`, whichever backend produced them, so a handover between backends
//! is invisible on the wire.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BackendError;
use crate::request::ChatRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::FunctionCall => "function_call",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stop" | "eos" | "end_turn" => Self::Stop,
            "length" | "max_tokens" => Self::Length,
            "tool_calls" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            "function_call" => Self::FunctionCall,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl Usage {
    pub fn new(prompt: u32, completion: u32) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }

    /// Usage of an answer produced by several backends in turn.
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// How sure the local model was of one token, for the cascade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenStats {
    /// Natural-log probability of the chosen token.
    pub logprob: f32,
    /// Entropy of the distribution the token was drawn from, in nats.
    pub entropy: f32,
}

/// One step of an answer, whichever backend produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Answer text. `stats` is set by backends that know token probabilities
    /// when the request asked for them.
    Text {
        text: String,
        stats: Option<TokenStats>,
    },
    /// A fragment of a tool call, as OpenAI streams them: `index` says which
    /// call; `id` and `name` come once, `arguments` in pieces.
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// The model's token log-probabilities for the last text, passed through
    /// from a cloud chunk unchanged.
    Logprobs(Value),
    /// Text of the answer outside `content`, under the `delta` key the cloud
    /// used: `refusal`, or a reasoning model's `reasoning_content` /
    /// `reasoning`. Passed on under the same key.
    Aside {
        key: String,
        text: String,
    },
    Finish(FinishReason),
    Usage(Usage),
}

impl Event {
    pub fn text(s: impl Into<String>) -> Self {
        Event::Text {
            text: s.into(),
            stats: None,
        }
    }

    /// Role-only and empty chunks do not count as content: before the first
    /// content event, a failing backend can be replaced invisibly.
    pub fn is_content(&self) -> bool {
        match self {
            Event::Text { text, .. } | Event::Aside { text, .. } => !text.is_empty(),
            Event::ToolCall { .. } => true,
            Event::Logprobs(_) | Event::Finish(_) | Event::Usage(_) => false,
        }
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, BackendError>> + Send>>;

/// What a backend is asked to do.
#[derive(Debug, Clone)]
pub struct Generate {
    /// The request as the app sent it (possibly with values redacted).
    pub request: ChatRequest,
    /// Text of the answer already sent to the app by another backend: the
    /// backend continues this assistant turn instead of starting a new one.
    pub continue_from: Option<String>,
    /// Report per-token probabilities (`Event::Text::stats`), for the cascade.
    pub want_token_stats: bool,
}

impl Generate {
    pub fn new(request: ChatRequest) -> Self {
        Generate {
            request,
            continue_from: None,
            want_token_stats: false,
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A model that can answer: a local tier or a cloud tier.
///
/// `stream` resolves once the backend has accepted the work (connected and
/// got a success status, or taken a local slot), so an error from it is
/// always before any content. Dropping the stream stops the work behind it.
pub trait Backend: Send + Sync {
    /// The tier name (`local-1b`, `cloud-66b`, …), used in routes and errors.
    fn name(&self) -> &str;

    /// Whether this backend is on the device (the text never leaves it).
    fn is_local(&self) -> bool;

    /// Whether requests with `tools` may come here (a local model only when
    /// its tier says its template describes them; a cloud tier unless its
    /// config says otherwise).
    fn supports_tools(&self) -> bool {
        true
    }

    fn stream(&self, req: Generate) -> BoxFuture<'_, Result<EventStream, BackendError>>;

    /// A non-stream answer as the backend's own OpenAI JSON, for backends
    /// that speak OpenAI natively (the cloud), so fields Tandem does not know
    /// reach the app unchanged. `None`: the gateway collects `stream` instead.
    fn complete_raw(&self, _req: Generate) -> Option<BoxFuture<'_, Result<serde_json::Value, BackendError>>> {
        None
    }

    /// A hint that this backend may soon be asked to continue `req` (it is
    /// a later fallback of an answer another backend is streaming now). A
    /// local backend with an idle slot evaluates the prompt into that slot's
    /// KV cache, so a handover evaluates only the text sent since. Never
    /// queues and never delays real work; the default does nothing.
    ///
    /// `Some` when work started: dropping the [`Prepared`] stops it (the
    /// answer it was for is over, or the app went away).
    fn prepare(&self, _req: Generate) -> Option<Prepared> {
        None
    }
}

/// Work started by [`Backend::prepare`]; dropping it asks that work to stop.
#[derive(Debug)]
#[must_use = "dropping it stops the work at once"]
pub struct Prepared {
    stop: Arc<AtomicBool>,
}

impl Prepared {
    /// The handle, and the flag the backend's worker watches.
    pub fn new() -> (Prepared, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        (Prepared { stop: stop.clone() }, stop)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
