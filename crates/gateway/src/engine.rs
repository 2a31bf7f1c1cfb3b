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
//! - when nothing may continue, the caller gets the error and ends the stream
//!   with an explicit error event, never a silent cut.
//!
//! Architecture invariant: a backend that is not on the device is never
//! called when the plan says the cloud is not allowed; `Run::next_backend`
//! checks it again before every attempt, whatever the plan's list says.

use std::collections::VecDeque;
use std::sync::Arc;

use api::{ApiError, Backend, BackendError, ChatRequest, Event, EventStream, Generate, Handover, TandemInfo, Usage};
use futures::StreamExt;

/// What routing decided for one request.
pub struct Plan {
    /// Backends allowed to answer, in the order to try them.
    pub attempts: Vec<Arc<dyn Backend>>,
    /// Route, rule, scores; `cloud_allowed` is the privacy verdict.
    pub info: TandemInfo,
    /// Ask the local model for token statistics (the cascade reads them).
    pub want_token_stats: bool,
}

/// One answer in progress.
pub struct Run {
    request: ChatRequest,
    attempts: VecDeque<Arc<dyn Backend>>,
    want_token_stats: bool,
    pub info: TandemInfo,
    /// The backend producing events now.
    current: Option<(Arc<dyn Backend>, EventStream)>,
    /// Events read while looking for the first content, not yet handed out.
    pending: VecDeque<Event>,
    /// The answer text already handed out: a successor continues from it.
    sent: String,
    /// A tool call was streamed: a successor cannot continue half a call.
    tool_call_sent: bool,
    content_sent: bool,
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
            want_token_stats: plan.want_token_stats,
            info: plan.info,
            current: None,
            pending: VecDeque::new(),
            sent: String::new(),
            tool_call_sent: false,
            content_sent: false,
            usage: Usage::default(),
            saw_usage: false,
            finished: false,
            last_error: None,
        }
    }

    pub fn request(&self) -> &ChatRequest {
        &self.request
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
        while let Some(b) = self.attempts.pop_front() {
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
            // Read up to the first content event.
            loop {
                let Some((_, stream)) = self.current.as_mut() else {
                    break;
                };
                match stream.next().await {
                    Some(Ok(ev)) => {
                        let content = ev.is_content();
                        let finish = matches!(ev, Event::Finish(_));
                        self.pending.push_back(ev);
                        if content || finish {
                            self.info.route = backend.name().to_owned();
                            return Ok(());
                        }
                    }
                    Some(Err(e)) => {
                        let allowed = e.failover_allowed();
                        self.handover_from_current(&e, false);
                        self.fail(backend.name(), e);
                        self.pending.clear();
                        if !allowed {
                            return Err(self.final_error());
                        }
                        break;
                    }
                    None => {
                        // Ended without content or finish: an empty answer.
                        self.info.route = backend.name().to_owned();
                        self.current = None;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Starts `backend`; false (with the error recorded) when it refused.
    async fn open(&mut self, backend: Arc<dyn Backend>) -> bool {
        let generate = Generate {
            request: self.request.clone(),
            continue_from: self.content_sent.then(|| self.sent.clone()),
            want_token_stats: self.want_token_stats,
        };
        match backend.stream(generate).await {
            Ok(stream) => {
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

    fn handover_from_current(&mut self, e: &BackendError, after_content: bool) {
        if let Some((b, _)) = self.current.take() {
            let to = self.attempts.front().map(|n| n.name().to_owned()).unwrap_or_default();
            self.info.handovers.push(Handover {
                from: b.name().to_owned(),
                to,
                reason: e.kind.as_str().to_owned(),
                after_content,
            });
        }
    }

    fn record_handover(&mut self, from: &str, e: &BackendError) {
        let to = self.attempts.front().map(|n| n.name().to_owned()).unwrap_or_default();
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
            let Some((backend, stream)) = self.current.as_mut() else {
                return None;
            };
            let name = backend.name().to_owned();
            match stream.next().await {
                Some(Ok(ev)) => return Some(Ok(self.note(ev))),
                None => {
                    self.current = None;
                    return None;
                }
                // Usage may follow the finish; a break after the finish loses nothing.
                Some(Err(_)) if self.finished => {
                    self.current = None;
                    return None;
                }
                Some(Err(e)) => {
                    let allowed = e.failover_allowed() && !self.tool_call_sent;
                    self.handover_from_current(&e, self.content_sent);
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
            }
            Event::ToolCall { .. } => {
                self.tool_call_sent = true;
                self.content_sent = true;
            }
            Event::Usage(u) => {
                self.usage.add(*u);
                self.saw_usage = true;
            }
            Event::Finish(_) => self.finished = true,
            _ => {}
        }
        ev
    }

    pub fn usage(&self) -> Option<Usage> {
        self.saw_usage.then_some(self.usage)
    }
}
