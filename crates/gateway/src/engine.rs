//! Running one answer over an ordered list of backends.
//!
//! A [`Plan`] is what routing decided: the backends allowed to answer, in
//! order, and the `tandem` object describing why. [`Run`] walks it:
//!
//! - before the first content event, a failing backend is replaced by the
//!   next one invisibly (the app has seen nothing yet, not even headers);
//! - after content has reached the app, a broken stream is continued by the
//!   next backend from the text already sent (`Generate::continue_from`), so
//!   the app sees one uninterrupted answer; every handover is listed in the
//!   `tandem` object;
//! - tool-call deltas are held back while a successor could take over and
//!   handed out whole: a call cut halfway is made again by the successor
//!   (with the same indexes), never shown half;
//! - when nothing may continue, the caller gets the error and ends the stream
//!   with an explicit error event, never a silent cut.
//!
//! Architecture invariant: a backend that is not on the device is never
//! called when the plan says the cloud is not allowed; `Run::next_backend`
//! checks it again before every attempt, whatever the plan's list says.

use std::collections::VecDeque;
use std::sync::Arc;

use api::{
    ApiError, Backend, BackendError, BackendErrorKind, ChatRequest, Event, EventStream, Fault, Generate, Handover,
    Prepared, TandemInfo, Usage,
};
use futures::StreamExt;

/// Pieces of a cloud answer between two updates of the warm local fallback.
const WARM_EVERY: u32 = 16;

/// What routing decided for one request.
pub struct Plan {
    /// Backends allowed to answer, in the order to try them.
    pub attempts: Vec<Arc<dyn Backend>>,
    /// Route, rule, scores; `cloud_allowed` is the privacy verdict.
    pub info: TandemInfo,
    /// Escalate a local answer whose first tokens are unsure (the cascade).
    pub cascade: Option<Cascade>,
    /// Cloud backends get a redacted copy of the request (redact-then-cloud).
    pub redact: Option<Redact>,
    /// While a cloud backend answers, a later local fallback evaluates the
    /// prompt ahead of a possible handover ([`Backend::prepare`]).
    pub warm_standby: bool,
}

/// The cascade's test: the local model starts; its first `hold_tokens`
/// tokens are held back, and when their mean log-probability is below
/// `min_mean_logprob` the local answer is dropped before anything is shown
/// and the next backend (the cloud) answers instead.
///
/// Mean log-probability (the per-token log-likelihood, as in perplexity) is
/// used rather than the lowest probability, which one legitimately rare word
/// (a name, a number) drags down, or the entropy, which is high wherever many
/// phrasings are fine.
#[derive(Debug, Clone, Copy)]
pub struct Cascade {
    pub hold_tokens: usize,
    pub min_mean_logprob: f32,
}

/// A redacted copy of the request and the map that restores the answer.
pub struct Redact {
    pub redaction: redact::Redaction,
}

impl Redact {
    pub fn new(req: &ChatRequest, scores: &scoring::Scores) -> Self {
        let spans: Vec<redact::Span> = scores
            .entities
            .iter()
            .filter(|e| !e.label.is_topic())
            .map(|e| redact::Span {
                message: e.message,
                byte_start: e.byte_start,
                byte_end: e.byte_end,
                label: e.label.as_str(),
            })
            .collect();
        Redact {
            redaction: redact::redact(req, &spans),
        }
    }
}

/// Restores placeholders in a cloud backend's events as they stream.
fn restoring(inner: EventStream, restorer: redact::EventRestorer) -> EventStream {
    type Queue = VecDeque<Result<Event, BackendError>>;
    let state = (inner, restorer, Queue::new(), false);
    Box::pin(futures::stream::unfold(
        state,
        |(mut inner, mut r, mut q, mut done)| async move {
            loop {
                if let Some(item) = q.pop_front() {
                    return Some((item, (inner, r, q, done)));
                }
                if done {
                    return None;
                }
                match inner.next().await {
                    Some(Ok(ev)) => q.extend(r.push(ev).into_iter().map(Ok)),
                    Some(Err(e)) => {
                        // A held start of a placeholder is not shown raw:
                        // the successor continues from what was shown.
                        r.abandon();
                        q.push_back(Err(e));
                        done = true;
                    }
                    None => {
                        q.extend(r.finish().into_iter().map(Ok));
                        done = true;
                    }
                }
            }
        },
    ))
}

/// Warm standby over one answer (see [`Plan::warm_standby`]).
enum Warm {
    Off,
    /// To start when a cloud backend is asked.
    Pending,
    /// This local fallback is given the text sent so far every
    /// [`WARM_EVERY`] pieces while a cloud backend streams. The prefill it
    /// is doing stops when the run ends (its [`Prepared`] drops with it).
    Keeping(Arc<dyn Backend>, Option<Prepared>),
}

/// One answer in progress.
pub struct Run {
    request: ChatRequest,
    attempts: VecDeque<Arc<dyn Backend>>,
    cascade: Option<Cascade>,
    /// The local backend a cascade escalated away from: tried when every
    /// backend after it failed, whatever the failure.
    last_resort: Option<Arc<dyn Backend>>,
    redact: Option<Redact>,
    warm: Warm,
    pub info: TandemInfo,
    /// The backend producing events now.
    current: Option<(Arc<dyn Backend>, EventStream)>,
    /// Events read while looking for the first content, not yet handed out.
    pending: VecDeque<Event>,
    /// The answer text already handed out: a successor continues from it.
    sent: String,
    /// Tool-call deltas of the current backend not handed out yet, with any
    /// log-probabilities among them (see [`Run::holds_tool_calls`]).
    held_tools: Vec<Event>,
    /// A tool call was streamed: a successor cannot continue half a call.
    tool_call_sent: bool,
    content_sent: bool,
    /// Content events handed out, over all backends: the answer budget a
    /// successor has left (one token each for the local model and for
    /// OpenAI-style servers).
    pieces_sent: u32,
    /// Content events from the current backend, and the last usage it
    /// reported: a backend cut before its usage is counted by its pieces.
    /// Its reports are running totals (vLLM's `continuous_usage_stats` sends
    /// one with every chunk): the last one counts, not their sum.
    current_pieces: u32,
    current_usage: Option<Usage>,
    /// The usage of the backends before the current one.
    usage: Usage,
    saw_usage: bool,
    /// The backend sent its finish: a later break loses nothing.
    finished: bool,
    /// The last error, reported when no backend is left.
    last_error: Option<BackendError>,
}

impl Run {
    pub fn new(request: ChatRequest, plan: Plan) -> Self {
        Run {
            request,
            attempts: plan.attempts.into(),
            cascade: plan.cascade,
            last_resort: None,
            redact: plan.redact,
            warm: if plan.warm_standby { Warm::Pending } else { Warm::Off },
            info: plan.info,
            current: None,
            pending: VecDeque::new(),
            sent: String::new(),
            held_tools: Vec::new(),
            tool_call_sent: false,
            content_sent: false,
            pieces_sent: 0,
            current_pieces: 0,
            current_usage: None,
            usage: Usage::default(),
            saw_usage: false,
            finished: false,
            last_error: None,
        }
    }

    pub fn request(&self) -> &ChatRequest {
        &self.request
    }

    /// What `backend` is asked: a cloud backend under redact-then-cloud gets
    /// the redacted copy, and the redacted text already sent to continue.
    /// A successor gets what is left of the answer's token budget.
    pub fn generate_for(&self, backend: &dyn Backend) -> Generate {
        let sent = self.content_sent.then(|| self.sent.clone());
        let want_token_stats = self.cascade.is_some() && backend.is_local() && !self.content_sent;
        match &self.redact {
            Some(r) if !backend.is_local() => Generate {
                request: self.budgeted(&r.redaction.request),
                continue_from: sent.map(|s| r.redaction.map.redact_str(&s)),
                want_token_stats,
            },
            _ => Generate {
                request: self.budgeted(&self.request),
                continue_from: sent,
                want_token_stats,
            },
        }
    }

    /// `req` with its `max_tokens` (either spelling) reduced by the pieces
    /// already sent, never below one.
    fn budgeted(&self, req: &ChatRequest) -> ChatRequest {
        let mut req = req.clone();
        if self.pieces_sent > 0 {
            let left = |m: u32| m.saturating_sub(self.pieces_sent).max(1);
            req.max_tokens = req.max_tokens.map(left);
            req.max_completion_tokens = req.max_completion_tokens.map(left);
        }
        req
    }

    /// Restores placeholders in a cloud's non-stream answer.
    pub fn restore_completion(&self, backend: &dyn Backend, completion: &mut serde_json::Value) {
        if let Some(r) = &self.redact
            && !backend.is_local()
        {
            redact::restore_completion(completion, &r.redaction.map);
        }
    }

    pub fn is_cascade(&self) -> bool {
        self.cascade.is_some()
    }

    /// The backend `start` would try first, without taking it.
    pub fn peek_backend(&self) -> Option<Arc<dyn Backend>> {
        self.attempts
            .front()
            .filter(|b| b.is_local() || self.info.cloud_allowed)
            .cloned()
    }

    /// Drops the first backend (the caller used it directly).
    pub fn skip_backend(&mut self) {
        self.attempts.pop_front();
    }

    /// Records that `from` failed before anything was sent.
    pub fn note_failure(&mut self, from: &str, err: BackendError) {
        self.record_handover(from, &err);
        self.fail(from, err);
    }

    pub fn take_error(&mut self) -> ApiError {
        self.final_error()
    }

    /// The next backend the decision allows.
    fn next_backend(&mut self) -> Option<Arc<dyn Backend>> {
        while let Some(b) = self.attempts.pop_front().or_else(|| self.last_resort.take()) {
            if b.is_local() || self.info.cloud_allowed {
                return Some(b);
            }
            tracing::error!(
                backend = b.name(),
                "plan listed a cloud backend for a local-only request; skipped"
            );
        }
        None
    }

    fn fail(&mut self, from: &str, err: BackendError) {
        tracing::warn!(backend = from, kind = err.kind.as_str(), error = %err.message, "backend failed");
        self.last_error = Some(err);
    }

    fn final_error(&mut self) -> ApiError {
        match self.last_error.take() {
            Some(e) => ApiError::from(e),
            None => ApiError::new(
                503,
                "server_error",
                Some("no_backend"),
                "no backend may answer this request",
            ),
        }
    }

    /// Opens backends in order until one yields its first content event (or
    /// finishes without content). Errors here are before anything was sent.
    pub async fn start(&mut self) -> Result<(), ApiError> {
        debug_assert!(!self.content_sent);
        loop {
            let Some(backend) = self.next_backend() else {
                return Err(self.final_error());
            };
            if !self.open(backend.clone()).await {
                continue;
            }
            if let Some(c) = self.cascade.filter(|_| backend.is_local() && !self.attempts.is_empty())
                && !self.confident(c).await
            {
                let e = BackendError::new(
                    backend.name(),
                    BackendErrorKind::Other,
                    Fault::Upstream,
                    "low confidence over the first tokens: escalated",
                );
                self.handover_from_current(&e);
                if let Some(h) = self.info.handovers.last_mut() {
                    h.reason = "low_confidence".into();
                }
                self.pending.clear();
                // The test runs once. Should every backend after it fail
                // (even with an error no other backend would be tried
                // after), the unsure local answer beats none: the local
                // model stays the last resort.
                self.cascade = None;
                self.last_resort = Some(backend);
                continue;
            }
            // Read up to the first content event.
            while let Some((_, stream)) = self.current.as_mut() {
                match stream.next().await {
                    Some(Ok(ev)) => {
                        let Some(ev) = self.hold_tool_call(ev) else { continue };
                        let released = self.release_tool_calls();
                        let content = ev.is_content();
                        let finish = matches!(ev, Event::Finish(_));
                        self.pending.push_back(ev);
                        if released || content || finish {
                            self.info.route = backend.name().to_owned();
                            return Ok(());
                        }
                    }
                    Some(Err(e)) => {
                        let allowed = e.failover_allowed();
                        self.handover_from_current(&e);
                        self.fail(backend.name(), e);
                        self.pending.clear();
                        if !allowed {
                            self.attempts.clear();
                            if self.last_resort.is_none() {
                                return Err(self.final_error());
                            }
                        }
                        break;
                    }
                    None => {
                        // Ended without a finish: what it said, or an empty answer.
                        self.release_tool_calls();
                        self.info.route = backend.name().to_owned();
                        self.current = None;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads the local model's first tokens into `pending` and tests their
    /// mean log-probability. A stream that ends or fails first is judged
    /// confident: its end or its error is handled as usual afterwards.
    async fn confident(&mut self, c: Cascade) -> bool {
        let (mut sum, mut n) = (0.0f32, 0usize);
        while n < c.hold_tokens {
            let Some((_, stream)) = self.current.as_mut() else {
                return true;
            };
            match stream.next().await {
                Some(Ok(ev)) => {
                    if let Event::Text { stats: Some(st), .. } = &ev {
                        sum += st.logprob;
                        n += 1;
                    }
                    let finish = matches!(ev, Event::Finish(_));
                    self.pending.push_back(ev);
                    if finish {
                        break;
                    }
                }
                Some(Err(e)) => {
                    // Hand the error to the normal path after the held events.
                    let restart = futures::stream::iter([Err(e)]);
                    if let Some((_, s)) = self.current.as_mut() {
                        *s = Box::pin(restart);
                    }
                    return true;
                }
                None => break,
            }
        }
        let mean = if n == 0 { 0.0 } else { sum / n as f32 };
        let ok = n == 0 || mean >= c.min_mean_logprob;
        tracing::debug!(tokens = n, mean_logprob = mean, escalate = !ok, "cascade check");
        ok
    }

    /// Starts `backend`; false (with the error recorded) when it refused.
    async fn open(&mut self, backend: Arc<dyn Backend>) -> bool {
        // Before waiting for the cloud's first byte: its time to first token
        // is time the local fallback can spend on the prompt.
        if !backend.is_local() {
            self.warm_local_fallback();
        }
        let generate = self.generate_for(backend.as_ref());
        let restorer = self
            .redact
            .as_ref()
            .filter(|_| !backend.is_local())
            .map(|r| redact::EventRestorer::new(&r.redaction.map));
        match backend.stream(generate).await {
            Ok(stream) => {
                let stream = match restorer {
                    Some(r) => restoring(stream, r),
                    None => stream,
                };
                self.current = Some((backend, stream));
                true
            }
            Err(e) => {
                let name = backend.name().to_owned();
                self.record_handover(&name, &e);
                let allowed = e.failover_allowed();
                self.fail(&name, e);
                if !allowed {
                    self.attempts.clear();
                }
                false
            }
        }
    }

    /// Once per answer: the first local backend still in the plan evaluates
    /// the prompt it would be given on a handover now, while the cloud
    /// streams. Only the text sent before the break is left to evaluate then.
    fn warm_local_fallback(&mut self) {
        if !matches!(self.warm, Warm::Pending) {
            return;
        }
        self.warm = match self.attempts.iter().find(|b| b.is_local()).cloned() {
            Some(local) => {
                let mut generate = self.generate_for(local.as_ref());
                generate.continue_from = None;
                let prepared = local.prepare(generate);
                Warm::Keeping(local, prepared)
            }
            None => Warm::Off,
        };
    }

    /// Keeps the warm local fallback level with the answer: every
    /// [`WARM_EVERY`] pieces from a cloud backend, it evaluates the text sent
    /// so far (only the new part: the rest is in its cache).
    fn keep_warm(&mut self) {
        if !self.current_pieces.is_multiple_of(WARM_EVERY) {
            return;
        }
        let cloud_answering = self.current.as_ref().is_some_and(|(b, _)| !b.is_local());
        if let Warm::Keeping(local, _) = &self.warm
            && cloud_answering
            && let Some(p) = local.prepare(self.generate_for(local.as_ref()))
        {
            // The prefill before it, if still running on another slot, is
            // superseded by this one.
            if let Warm::Keeping(_, prepared) = &mut self.warm {
                *prepared = Some(p);
            }
        }
    }

    /// Whether tool-call deltas are held back until the call is whole (the
    /// backend's next other event, or its end): while a later backend could
    /// still take over. Half a call cannot be continued by another model; a
    /// call never shown can be made again by the successor, with the same
    /// indexes, from the text sent so far.
    fn holds_tool_calls(&self) -> bool {
        self.attempts
            .iter()
            .chain(self.last_resort.iter())
            .any(|b| (b.is_local() || self.info.cloud_allowed) && b.supports_tools())
    }

    /// `Some(ev)` to pass on; `None` when `ev` is a tool-call delta now held
    /// (or log-probabilities that arrived between two held deltas).
    fn hold_tool_call(&mut self, ev: Event) -> Option<Event> {
        let held = match ev {
            Event::ToolCall { .. } => self.holds_tool_calls(),
            Event::Logprobs(_) => !self.held_tools.is_empty(),
            _ => false,
        };
        if held {
            self.held_tools.push(ev);
            return None;
        }
        Some(ev)
    }

    /// Moves the held tool-call deltas to the events to hand out; true when
    /// there were any.
    fn release_tool_calls(&mut self) -> bool {
        let any = !self.held_tools.is_empty();
        self.pending.extend(self.held_tools.drain(..));
        any
    }

    /// The current backend failed: it is dropped (with any half tool call it
    /// was making) and the handover recorded.
    fn handover_from_current(&mut self, e: &BackendError) {
        self.held_tools.clear();
        if let Some((b, _)) = self.current.take() {
            self.record_handover(b.name(), e);
        }
        // What the cut backend produced counts in the answer's usage even
        // when it never reported it (its prompt tokens stay unknown).
        match self.current_usage.take() {
            Some(u) => self.usage.add(u),
            None if self.current_pieces > 0 => self.usage.add(Usage::new(0, self.current_pieces)),
            None => {}
        }
        self.current_pieces = 0;
    }

    /// A handover away from `from`, to the next backend in the plan.
    fn record_handover(&mut self, from: &str, e: &BackendError) {
        let to = self
            .attempts
            .front()
            .or(self.last_resort.as_ref())
            .map(|n| n.name().to_owned())
            .unwrap_or_default();
        self.info.handovers.push(Handover {
            from: from.to_owned(),
            to,
            reason: e.kind.as_str().to_owned(),
            after_content: self.content_sent,
        });
    }

    /// The next event of the answer, across handovers. `None` at the end.
    pub async fn next_event(&mut self) -> Option<Result<Event, ApiError>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(self.note(ev)));
            }
            let (backend, stream) = self.current.as_mut()?;
            let name = backend.name().to_owned();
            match stream.next().await {
                Some(Ok(ev)) => {
                    let Some(ev) = self.hold_tool_call(ev) else { continue };
                    if self.release_tool_calls() {
                        self.pending.push_back(ev);
                        continue;
                    }
                    return Some(Ok(self.note(ev)));
                }
                None => {
                    self.current = None;
                    if self.release_tool_calls() {
                        continue;
                    }
                    return None;
                }
                // Usage may follow the finish; a break after the finish loses nothing.
                Some(Err(_)) if self.finished => {
                    self.current = None;
                    return None;
                }
                Some(Err(e)) => {
                    let allowed = e.failover_allowed() && !self.tool_call_sent;
                    self.handover_from_current(&e);
                    self.fail(&name, e);
                    if !allowed {
                        return Some(Err(self.final_error()));
                    }
                    if let Err(err) = self.continue_elsewhere().await {
                        return Some(Err(err));
                    }
                }
            }
        }
    }

    /// After a mid-answer failure: the next allowed backend continues.
    async fn continue_elsewhere(&mut self) -> Result<(), ApiError> {
        loop {
            let Some(backend) = self.next_backend() else {
                return Err(self.final_error());
            };
            if self.open(backend.clone()).await {
                self.info.route = backend.name().to_owned();
                return Ok(());
            }
        }
    }

    fn note(&mut self, ev: Event) -> Event {
        match &ev {
            Event::Text { text, .. } if !text.is_empty() => {
                self.sent.push_str(text);
                self.content_sent = true;
                self.pieces_sent += 1;
                self.current_pieces += 1;
                self.keep_warm();
            }
            Event::ToolCall { .. } => {
                self.tool_call_sent = true;
                self.content_sent = true;
            }
            Event::Usage(u) => {
                self.current_usage = Some(*u);
                self.saw_usage = true;
            }
            Event::Finish(_) => self.finished = true,
            _ => {}
        }
        ev
    }

    pub fn usage(&self) -> Option<Usage> {
        self.saw_usage.then(|| {
            let mut u = self.usage;
            if let Some(c) = self.current_usage {
                u.add(c);
            }
            u
        })
    }
}
