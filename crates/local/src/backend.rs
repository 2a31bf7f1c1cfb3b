//! [`LocalBackend`]: the bounded queue, the slots, loading on demand and
//! unloading when idle, and the event stream a request reads.
//!
//! Threads: one engine thread per loaded model owns the `LlamaModel`, creates
//! the contexts one at a time, runs the self-benchmark, then watches for
//! idleness; one worker thread per slot owns its context and runs requests.
//! All of them share [`Shared`]: one mutex over the scheduling state and one
//! condvar that every change is announced on (a handful of threads wait on it,
//! so `notify_all` costs nothing worth optimising).
//!
//! A request's life: `stream()` checks what the local model cannot do, then
//! hands the job to the free slot whose KV cache shares the longest prefix
//! with it, or queues it (refusing at once when the queue is full). The
//! returned stream yields `overloaded` if the job is still waiting after
//! `queue_wait`. Events go through a bounded channel; dropping the stream
//! closes it, and the worker stops at the next token.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use api::{Backend, BackendError, BackendErrorKind, BoxFuture, Event, EventStream, Fault, Generate, Prepared};
use futures::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{LoadMode, LocalTier, LocalTierConfig};
use crate::engine::{self, Counters, Outcome, Slot};
use crate::error::LocalError;
use crate::memory::{self, Estimate};

/// Events buffered between a worker and a slow reader before the worker
/// waits (backpressure instead of unbounded memory).
const CHANNEL_CAPACITY: usize = 64;

/// Where the backend reads what the device has; tests point it at a file.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub meminfo_path: PathBuf,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            meminfo_path: PathBuf::from("/proc/meminfo"),
        }
    }
}

/// A snapshot of one local tier, for `/status`, metrics and the router's
/// `local_ready` / `local_queue` / `local_tps` signals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocalStatus {
    pub name: String,
    pub model: PathBuf,
    pub state: ModelState,
    /// `state == loaded`: a request can start without waiting for a load.
    pub loaded: bool,
    pub slots: usize,
    /// Slots running a request.
    pub busy: usize,
    /// Requests waiting for a slot.
    pub queued: usize,
    pub context_len: u32,
    /// Running averages over real requests, seeded by the self-benchmark.
    pub prompt_tps: Option<f64>,
    pub gen_tps: Option<f64>,
    /// What the self-benchmark measured at the last load.
    pub bench_prompt_tps: Option<f64>,
    pub bench_gen_tps: Option<f64>,
    /// Resident memory the loaded model added (VmRSS after load and
    /// self-benchmark minus before); approximate when several models load
    /// at once. `None` when no model is held.
    pub rss_bytes: Option<u64>,
    /// The memory guard's estimate for this configuration (weights, KV
    /// cache and compute buffers of every slot), known before any load.
    pub estimated_bytes: u64,
    pub load_ms: Option<u64>,
    /// Times the model was loaded since start.
    pub loads: u64,
    /// Prompt tokens found in a slot's KV cache and not evaluated again.
    pub reused_prompt_tokens: u64,
    /// Prompt tokens evaluated.
    pub evaluated_prompt_tokens: u64,
    pub completed_requests: u64,
    /// Prompts evaluated ahead of a possible handover (warm standby).
    pub prefills: u64,
    pub last_load_error: Option<String>,
    /// Seconds since that failed load (the router tries the model again
    /// after a while: memory may have been freed).
    pub last_load_error_secs: Option<u64>,
}

/// The on-device backend for one GGUF model.
pub struct LocalBackend {
    shared: Arc<Shared>,
}

struct Shared {
    tier: LocalTier,
    opts: LocalOptions,
    /// What the memory guard expects a load to take.
    estimate: Estimate,
    sched: Mutex<Sched>,
    /// Announces every change of `sched` to workers and the engine thread.
    changed: Condvar,
    /// Set when the backend is dropped: everything stops.
    shutdown: AtomicBool,
    /// The engine thread, if one was started: dropping the backend waits
    /// for it (see [`SHUTDOWN_WAIT`]).
    engine: Mutex<Option<std::thread::JoinHandle<()>>>,
    next_job: AtomicU64,
    loads: AtomicU64,
    counters: Counters,
}

/// Where the model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    Unloaded,
    Loading,
    /// Ready to answer.
    Loaded,
    /// Idle unload or shutdown in progress: the memory is still held; a
    /// request arriving now waits for the next load.
    Unloading,
}

use ModelState as LoadState;

struct Sched {
    load: LoadState,
    queue: VecDeque<Arc<Job>>,
    /// Empty unless loaded.
    slots: Vec<SlotState>,
    last_activity: Instant,
    /// The last failed load and when it failed; cleared by a good load.
    last_load_error: Option<(String, Instant)>,
    info: LoadInfo,
}

#[derive(Debug, Default, Clone, Copy)]
struct LoadInfo {
    rss_bytes: Option<u64>,
    load_ms: Option<u64>,
}

struct SlotState {
    /// A job handed to this slot by `stream()` or `prepare()`, not yet
    /// picked up.
    assigned: Option<Arc<Job>>,
    /// The job the worker is running, or has just run (until it looks for
    /// the next one).
    running: Option<Arc<Job>>,
    /// Its worker thread could not start: busy for good.
    no_worker: bool,
    /// What the slot's KV cache holds, as conversation text (see
    /// [`routing_key`]); compared with new requests to reuse the longest
    /// prefix without tokenizing on the async side.
    key: String,
    /// When the slot last finished a request; `None`: its cache is empty.
    last_used: Option<Instant>,
}

impl SlotState {
    fn job(&self) -> Option<&Job> {
        self.assigned.as_deref().or(self.running.as_deref())
    }

    fn busy(&self) -> bool {
        self.no_worker || self.job().is_some()
    }

    /// Busy, but a waiting request gets the slot without waiting behind
    /// real work: its job is a warm-standby prefill (which gives way to any
    /// request that waits), or an answer whose reader has seen the end or
    /// gone away (only bookkeeping is left before the worker takes the next
    /// job).
    fn yielding(&self) -> bool {
        self.job().is_some_and(|j| j.prefill.is_some() || j.ended())
    }
}

/// Share of a slot's cached conversation a request must reuse for the slot
/// to be chosen for it; below, an empty or the least recently used slot is
/// taken, so an unrelated request does not evict a conversation's cache.
const MIN_REUSE: f64 = 0.5;

/// The free slot for a request: the one whose cache it extends most, or
/// else an empty one, or else the least recently used.
fn pick_slot(slots: &[SlotState], key: &str) -> Option<usize> {
    let free = || slots.iter().enumerate().filter(|(_, sl)| !sl.busy());
    let best = free()
        .filter(|(_, sl)| !sl.key.is_empty())
        .map(|(i, sl)| (i, common_prefix_len(&sl.key, key), sl.key.len()))
        .filter(|&(_, lcp, len)| lcp as f64 >= MIN_REUSE * len as f64)
        .max_by_key(|&(i, lcp, _)| (lcp, std::cmp::Reverse(i)));
    if let Some((i, _, _)) = best {
        return Some(i);
    }
    free().min_by_key(|(i, sl)| (sl.last_used, *i)).map(|(i, _)| i)
}

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
/// The stream gave up waiting (queue_wait) or was dropped.
const ABANDONED: u8 = 2;
/// Started, and its reader saw the last event or went away.
const ENDED: u8 = 3;

type Tx = mpsc::Sender<Result<Event, BackendError>>;

struct Job {
    id: u64,
    gen_: Generate,
    key: String,
    enqueued: Instant,
    state: AtomicU8,
    /// Taken by whoever answers the job (the worker, or a failed load), so
    /// the stream ends when they are done with it.
    tx: Mutex<Option<Tx>>,
    /// Only evaluate the prompt into the slot's KV cache (see
    /// [`Backend::prepare`]); nobody reads the events. Set to stop when the
    /// caller dropped its [`Prepared`].
    prefill: Option<Arc<AtomicBool>>,
}

impl Job {
    fn new(sh: &Shared, gen_: Generate, key: String, tx: Tx, prefill: Option<Arc<AtomicBool>>) -> Arc<Job> {
        Arc::new(Job {
            id: sh.next_job.fetch_add(1, Ordering::Relaxed),
            gen_,
            key,
            enqueued: Instant::now(),
            state: AtomicU8::new(QUEUED),
            tx: Mutex::new(Some(tx)),
            prefill,
        })
    }

    fn claim(&self, to: u8) -> bool {
        self.state
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn take_tx(&self) -> Option<Tx> {
        lock(&self.tx).take()
    }

    /// Nobody waits for more of this job's events.
    fn end(&self) {
        let _ = self
            .state
            .compare_exchange(STARTED, ENDED, Ordering::AcqRel, Ordering::Acquire);
    }

    fn ended(&self) -> bool {
        self.state.load(Ordering::Acquire) == ENDED
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; carry on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The conversation as one string: requests that extend a previous one
/// (the next turn of a chat) share a long prefix with the slot that
/// answered it.
fn routing_key(g: &Generate) -> String {
    let mut k = String::new();
    for (role, text) in g.request.texts() {
        k.push_str(role.as_str());
        k.push('\u{1f}');
        k.push_str(&text);
        k.push('\u{1e}');
    }
    k.push_str("assistant\u{1f}");
    if let Some(p) = &g.continue_from {
        k.push_str(p);
    }
    k
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

impl LocalBackend {
    /// Validates the config and checks the model file. With `load =
    /// "startup"` it also loads the model (memory guard, self-benchmark)
    /// and blocks until done, about a second for a small model: call it
    /// before serving, or from `spawn_blocking`.
    pub fn new(cfg: &LocalTierConfig) -> Result<Arc<Self>, LocalError> {
        Self::with_options(cfg, LocalOptions::default())
    }

    pub fn with_options(cfg: &LocalTierConfig, opts: LocalOptions) -> Result<Arc<Self>, LocalError> {
        let tier = cfg.validate()?;
        // A wrong path or a file that is not GGUF is a start-up error even
        // when the model loads later.
        let (file_size, meta) = engine::inspect(&tier)?;
        let estimate = engine::estimate(&tier, file_size, &meta);
        let load_now = tier.load == LoadMode::Startup;
        let shared = Arc::new(Shared {
            tier,
            opts,
            estimate,
            sched: Mutex::new(Sched {
                load: LoadState::Unloaded,
                queue: VecDeque::new(),
                slots: Vec::new(),
                last_activity: Instant::now(),
                last_load_error: None,
                info: LoadInfo::default(),
            }),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            engine: Mutex::new(None),
            next_job: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let backend = Arc::new(LocalBackend { shared });
        if load_now {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            lock(&backend.shared.sched).load = LoadState::Loading;
            spawn_engine(&backend.shared, Some(tx))?;
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(LocalError::Llama {
                        tier: backend.shared.tier.name.clone(),
                        reason: "the engine thread ended during the load".into(),
                    });
                }
            }
        }
        Ok(backend)
    }

    pub fn tier(&self) -> &LocalTier {
        &self.shared.tier
    }

    pub fn status(&self) -> LocalStatus {
        let sh = &self.shared;
        let (state, slots, busy, queued, err, info) = {
            let s = lock(&sh.sched);
            (
                s.load,
                s.slots.len(),
                s.slots.iter().filter(|sl| sl.busy()).count(),
                s.queue.len(),
                s.last_load_error.clone(),
                s.info,
            )
        };
        let speed = sh.counters.speed();
        let loaded = state == LoadState::Loaded;
        let (err, err_secs) = match err {
            Some((e, at)) => (Some(e), Some(at.elapsed().as_secs())),
            None => (None, None),
        };
        LocalStatus {
            name: sh.tier.name.clone(),
            model: sh.tier.model.clone(),
            state,
            loaded,
            slots: if loaded { slots } else { sh.tier.parallel_slots },
            busy,
            queued,
            context_len: sh.tier.context_len.get(),
            prompt_tps: speed.prompt,
            gen_tps: speed.gen_,
            bench_prompt_tps: speed.bench_prompt,
            bench_gen_tps: speed.bench_gen,
            rss_bytes: info.rss_bytes,
            estimated_bytes: sh.estimate.total_bytes,
            load_ms: info.load_ms,
            loads: sh.loads.load(Ordering::Relaxed),
            reused_prompt_tokens: sh.counters.reused.load(Ordering::Relaxed),
            evaluated_prompt_tokens: sh.counters.evaluated.load(Ordering::Relaxed),
            completed_requests: sh.counters.completed.load(Ordering::Relaxed),
            prefills: sh.counters.prefills.load(Ordering::Relaxed),
            last_load_error: err,
            last_load_error_secs: err_secs,
        }
    }

    /// Refuses what the local model cannot honour, before queueing.
    fn check_supported(&self, g: &Generate) -> Result<(), BackendError> {
        let name = &self.shared.tier.name;
        let req = &g.request;
        if req.n.is_some_and(|n| n > 1) {
            return Err(BackendError::unsupported(
                name,
                "`n` > 1 is not supported by the local model",
            ));
        }
        let has_bias = match &req.logit_bias {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Object(m)) => !m.is_empty(),
            Some(_) => true,
        };
        if has_bias {
            return Err(BackendError::unsupported(
                name,
                "`logit_bias` is not supported by the local model",
            ));
        }
        // Asked-for log-probabilities would be missing from the answer
        // without a word; a cloud that has them may answer instead.
        let wants_logprobs = req.extra.get("logprobs").is_some_and(|v| v.as_bool() == Some(true))
            || req.extra.get("top_logprobs").is_some_and(|v| !v.is_null());
        if wants_logprobs {
            return Err(BackendError::unsupported(
                name,
                "`logprobs` / `top_logprobs` are not supported by the local model",
            ));
        }
        if let Some(i) = req.messages.iter().position(|m| m.has_non_text_parts()) {
            return Err(BackendError::unsupported(
                name,
                format!("messages[{i}] has image, audio or file parts; the local model reads text only"),
            ));
        }
        if req.has_tools() && !self.shared.tier.supports_tools {
            return Err(BackendError::unsupported(
                name,
                "`tools` are not supported by this local model",
            ));
        }
        let structured = req
            .response_format
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(|t| t.as_str())
            .is_some_and(|t| t != "text");
        if structured {
            return Err(BackendError::unsupported(
                name,
                "`response_format` other than text is not supported by the local model",
            ));
        }
        Ok(())
    }

    fn submit(&self, g: Generate) -> Result<EventStream, BackendError> {
        self.check_supported(&g)?;
        let sh = &self.shared;
        let name = &sh.tier.name;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let key = routing_key(&g);
        let job = Job::new(sh, g, key, tx, None);
        {
            let mut s = lock(&sh.sched);
            if sh.shutdown.load(Ordering::Acquire) {
                return Err(BackendError::new(
                    name,
                    BackendErrorKind::Unavailable,
                    Fault::Upstream,
                    "the local backend is shutting down",
                ));
            }
            s.last_activity = Instant::now();
            let free = if s.load == LoadState::Loaded {
                pick_slot(&s.slots, &job.key)
            } else {
                None
            };
            // Slots a waiting request will get without waiting behind real
            // work: the yielding ones, or all of them while the model
            // loads. So `queue_len = 0` still admits the request that loads
            // the model, a handover to a slot that was warming for it, and
            // the next request sent the instant an answer ends.
            let yielding = if s.load == LoadState::Loaded {
                s.slots.iter().filter(|sl| sl.yielding()).count()
            } else {
                sh.tier.parallel_slots
            };
            if let Some(i) = free {
                s.slots[i].assigned = Some(job.clone());
            } else if s.queue.len() >= sh.tier.queue_len + yielding {
                return Err(BackendError::upstream(
                    name,
                    BackendErrorKind::Overloaded,
                    format!(
                        "all {} slots busy and {} requests already waiting",
                        sh.tier.parallel_slots,
                        s.queue.len()
                    ),
                ));
            } else {
                s.queue.push_back(job.clone());
                if s.load == LoadState::Unloaded {
                    s.load = LoadState::Loading;
                    if let Err(e) = spawn_engine(sh, None) {
                        s.load = LoadState::Unloaded;
                        s.queue.retain(|j| j.id != job.id);
                        return Err(e.to_backend_error(name));
                    }
                }
            }
        }
        sh.changed.notify_all();
        let deadline = tokio::time::Instant::from_std(job.enqueued + sh.tier.queue_wait);
        Ok(Box::pin(JobStream {
            rx,
            job,
            shared: sh.clone(),
            wait: Some(Box::pin(tokio::time::sleep_until(deadline))),
            done: false,
        }))
    }
}

/// How long dropping the backend waits for the engine to stop: a decode
/// step in progress finishes first, and a slot may be blocked handing text
/// to a stream nobody reads.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

impl Drop for LocalBackend {
    /// Stops everything and waits (at most [`SHUTDOWN_WAIT`]) until the
    /// model is freed: a process that exits while llama.cpp still runs on
    /// another thread can crash in its static destructors.
    fn drop(&mut self) {
        let sh = &self.shared;
        sh.shutdown.store(true, Ordering::Release);
        let waiting: Vec<_> = lock(&sh.sched).queue.drain(..).collect();
        fail_jobs(waiting, &shut_down(&sh.tier.name));
        sh.changed.notify_all();
        let Some(engine) = lock(&sh.engine).take() else { return };
        // The engine announces `Unloaded` once its model is freed, just
        // before its thread ends.
        let (s, waited) = sh
            .changed
            .wait_timeout_while(lock(&sh.sched), SHUTDOWN_WAIT, |s| s.load != LoadState::Unloaded)
            .unwrap_or_else(|p| p.into_inner());
        drop(s);
        if waited.timed_out() {
            tracing::warn!(tier = %sh.tier.name, "local: the engine did not stop in time; leaving it");
            return;
        }
        let _ = engine.join();
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &str {
        &self.shared.tier.name
    }

    fn is_local(&self) -> bool {
        true
    }

    fn supports_tools(&self) -> bool {
        self.shared.tier.supports_tools
    }

    /// Resolves at once: with the job handed to a slot or queued, or with
    /// `overloaded` (queue full) or `unsupported`. Errors found later (a
    /// prompt longer than the context, a failed on-demand load, the queue
    /// wait bound) are the stream's first and only item, before any text.
    fn stream(&self, req: Generate) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async move { self.submit(req) })
    }

    /// Hands a prefill job to an idle slot, when the model is loaded, no
    /// request waits and the slot does not already hold the prompt. The job
    /// yields to any request that queues while it runs, and stops when the
    /// returned [`Prepared`] is dropped.
    fn prepare(&self, req: Generate) -> Option<Prepared> {
        if self.check_supported(&req).is_err() {
            return None;
        }
        let sh = &self.shared;
        let key = routing_key(&req);
        let prepared = {
            let mut s = lock(&sh.sched);
            if sh.shutdown.load(Ordering::Acquire) || s.load != LoadState::Loaded || !s.queue.is_empty() {
                return None;
            }
            let i = pick_slot(&s.slots, &key)?;
            if s.slots[i].key.starts_with(&key) {
                return None;
            }
            // Nobody reads a prefill's events: the receiver goes at once.
            let (tx, _) = mpsc::channel(1);
            let (prepared, stop) = Prepared::new();
            let job = Job::new(sh, req, key, tx, Some(stop));
            s.slots[i].assigned = Some(job);
            sh.counters.prefills.fetch_add(1, Ordering::Relaxed);
            prepared
        };
        sh.changed.notify_all();
        Some(prepared)
    }
}

/// The stream a request reads: the worker's events, or `overloaded` when
/// the job waited longer than `queue_wait`.
struct JobStream {
    rx: mpsc::Receiver<Result<Event, BackendError>>,
    job: Arc<Job>,
    shared: Arc<Shared>,
    /// The queue-wait deadline, until a worker takes the job.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl Stream for JobStream {
    type Item = Result<Event, BackendError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                if item.is_err() {
                    this.done = true;
                }
                if matches!(item, Err(_) | Ok(Event::Finish(_))) {
                    this.job.end();
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.job.end();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(wait) = &mut this.wait {
                    if this.job.state.load(Ordering::Acquire) != QUEUED {
                        this.wait = None;
                    } else if wait.as_mut().poll(cx).is_ready() {
                        this.wait = None;
                        if this.job.claim(ABANDONED) {
                            remove_queued(&this.shared, this.job.id);
                            this.done = true;
                            let waited = this.job.enqueued.elapsed();
                            return Poll::Ready(Some(Err(BackendError::upstream(
                                &this.shared.tier.name,
                                BackendErrorKind::Overloaded,
                                format!(
                                    "no local slot became free within queue_wait_ms ({} ms waited)",
                                    waited.as_millis()
                                ),
                            ))));
                        }
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for JobStream {
    fn drop(&mut self) {
        // Still queued: leave the queue now. Running: the closed channel
        // stops the worker at its next token.
        if self.job.claim(ABANDONED) {
            remove_queued(&self.shared, self.job.id);
        } else {
            self.job.end();
        }
    }
}

fn remove_queued(sh: &Shared, id: u64) {
    let mut s = lock(&sh.sched);
    s.queue.retain(|j| j.id != id);
    for sl in &mut s.slots {
        if sl.assigned.as_ref().is_some_and(|j| j.id == id) {
            // The worker will find the job abandoned and go idle again.
            sl.assigned = None;
        }
    }
    drop(s);
    sh.changed.notify_all();
}

fn shut_down(tier: &str) -> BackendError {
    BackendError::new(
        tier,
        BackendErrorKind::Unavailable,
        Fault::Upstream,
        "the local backend shut down",
    )
}

fn fail_jobs(jobs: Vec<Arc<Job>>, err: &BackendError) {
    for j in jobs {
        if j.claim(STARTED)
            && let Some(tx) = j.take_tx()
        {
            let _ = tx.try_send(Err(err.clone()));
        }
    }
}

type StartupReply = std::sync::mpsc::SyncSender<Result<(), LocalError>>;

fn spawn_engine(sh: &Arc<Shared>, reply: Option<StartupReply>) -> Result<(), LocalError> {
    let shared = sh.clone();
    std::thread::Builder::new()
        .name(format!("local-{}", sh.tier.name))
        .spawn(move || engine_main(&shared, reply))
        // A new engine starts only once the last one has freed its model
        // (the load state says so): the handle replaced here is ending.
        .map(|h| *lock(&sh.engine) = Some(h))
        .map_err(|e| LocalError::Llama {
            tier: sh.tier.name.clone(),
            reason: format!("could not start the engine thread: {e}"),
        })
}

/// The engine thread: load, serve until idle or shutdown, unload; load
/// again if requests arrived meanwhile.
fn engine_main(sh: &Arc<Shared>, mut reply: Option<StartupReply>) {
    loop {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| serve_once(sh, &mut reply))).unwrap_or_else(|_| {
            Err(LocalError::Llama {
                tier: sh.tier.name.clone(),
                reason: "the engine thread panicked".into(),
            })
        });
        let mut s = lock(&sh.sched);
        s.slots.clear();
        s.info.rss_bytes = None;
        if let Err(e) = result {
            tracing::warn!(tier = %sh.tier.name, error = %e, "local: model load failed");
            s.last_load_error = Some((e.to_string(), Instant::now()));
            let waiting: Vec<_> = s.queue.drain(..).collect();
            s.load = LoadState::Unloaded;
            drop(s);
            fail_jobs(waiting, &e.to_backend_error(&sh.tier.name));
            if let Some(r) = reply.take() {
                let _ = r.send(Err(e));
            }
            sh.changed.notify_all();
            return;
        }
        if s.queue.is_empty() || sh.shutdown.load(Ordering::Acquire) {
            s.load = LoadState::Unloaded;
            drop(s);
            sh.changed.notify_all();
            return;
        }
        // Requests came in while unloading: load again.
        s.load = LoadState::Loading;
    }
}

/// One load-serve-unload cycle. `Err` only for a failed load.
fn serve_once(sh: &Arc<Shared>, reply: &mut Option<StartupReply>) -> Result<(), LocalError> {
    let tier = &sh.tier;
    let loading = engine::begin_load();
    let loaded = engine::load(tier, &sh.opts.meminfo_path, &loading)?;
    let model = &loaded.model;
    let mut contexts = Vec::with_capacity(tier.parallel_slots);
    for _ in 0..tier.parallel_slots {
        contexts.push(engine::new_context(model, tier, &loading)?);
    }
    drop(loading);
    if tier.self_bench
        && let Some(ctx) = contexts.first_mut()
    {
        match engine::self_bench(ctx, model, tier.n_batch as usize) {
            Ok(b) => {
                tracing::info!(tier = %tier.name, prompt_tps = b.prompt_tps, gen_tps = b.gen_tps, "local: self-benchmark");
                sh.counters.record_bench(b);
            }
            Err(e) => tracing::warn!(tier = %tier.name, error = %e, "local: self-benchmark failed"),
        }
    }
    let rss = match (loaded.rss_before, memory::rss_bytes()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    sh.loads.fetch_add(1, Ordering::Relaxed);
    {
        let mut s = lock(&sh.sched);
        s.load = LoadState::Loaded;
        s.last_load_error = None;
        s.last_activity = Instant::now();
        s.info = LoadInfo {
            rss_bytes: rss,
            load_ms: Some(loaded.load_ms),
        };
        s.slots = (0..contexts.len())
            .map(|_| SlotState {
                assigned: None,
                running: None,
                no_worker: false,
                key: String::new(),
                last_used: None,
            })
            .collect();
    }
    tracing::info!(tier = %tier.name, load_ms = loaded.load_ms, rss_bytes = ?rss,
        estimated_bytes = loaded.estimate.total_bytes, "local: model loaded");
    if let Some(r) = reply.take() {
        let _ = r.send(Ok(()));
    }
    sh.changed.notify_all();
    std::thread::scope(|scope| {
        for (i, ctx) in contexts.into_iter().enumerate() {
            let slot = Slot::new(ctx, &loaded);
            let spawned = std::thread::Builder::new()
                .name(format!("local-{}-slot{i}", tier.name))
                .spawn_scoped(scope, move || worker(sh, i, slot));
            if let Err(e) = spawned {
                tracing::error!(tier = %tier.name, error = %e, "local: could not start a slot thread");
                // The slot stays busy forever; the others serve.
                lock(&sh.sched).slots[i].no_worker = true;
            }
        }
        supervise(sh);
    });
    tracing::info!(tier = %tier.name, "local: model unloaded");
    Ok(())
}

/// Waits until the backend shuts down or the model has been idle for
/// `idle_unload`, then tells the workers to stop.
fn supervise(sh: &Shared) {
    let mut s = lock(&sh.sched);
    loop {
        if sh.shutdown.load(Ordering::Acquire) {
            break;
        }
        let idle = s.queue.is_empty() && s.slots.iter().all(|sl| !sl.busy());
        let wait = match sh.tier.idle_unload {
            Some(limit) if idle => {
                let since = s.last_activity.elapsed();
                if since >= limit {
                    break;
                }
                limit - since
            }
            // Woken by every change anyway; the timeout is only a backstop.
            _ => Duration::from_secs(3600),
        };
        s = sh
            .changed
            .wait_timeout(s, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
    s.load = LoadState::Unloading;
    drop(s);
    sh.changed.notify_all();
}

fn worker(sh: &Shared, i: usize, mut slot: Slot<'_>) {
    let stopping = || sh.shutdown.load(Ordering::Acquire);
    loop {
        let job = {
            let mut s = lock(&sh.sched);
            loop {
                if s.load == LoadState::Unloading {
                    // Only a shutdown unloads a slot with work handed to it.
                    if let Some(j) = s.slots[i].assigned.take() {
                        drop(s);
                        fail_jobs(vec![j], &shut_down(&sh.tier.name));
                    }
                    return;
                }
                let next = s.slots[i].assigned.take().or_else(|| s.queue.pop_front());
                if let Some(j) = next {
                    s.slots[i].running = Some(j.clone());
                    break j;
                }
                if s.slots[i].running.take().is_some() {
                    // The engine thread starts its idle timer on this.
                    sh.changed.notify_all();
                }
                s = sh.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        };
        // The stream may have given up (queue wait) or gone away.
        if !job.claim(STARTED) {
            continue;
        }
        let Some(tx) = job.take_tx() else { continue };
        // A prefill gives way to any request that queues behind it, and
        // stops once the answer it was for no longer needs it.
        let preempted = || {
            job.prefill.as_ref().is_some_and(|stop| stop.load(Ordering::Acquire)) || !lock(&sh.sched).queue.is_empty()
        };
        let prefill: Option<&dyn Fn() -> bool> = if job.prefill.is_some() { Some(&preempted) } else { None };
        // A panic inside llama-cpp-2 must not take the slot (and every
        // request queued behind it) down with it.
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mode = engine::Mode {
                shutdown: &stopping,
                prefill,
            };
            slot.run(&sh.tier, &job.gen_, &tx, &sh.counters, mode)
        }));
        let out: Outcome = run.unwrap_or_else(|_| {
            slot.reset();
            let _ = tx.try_send(Err(BackendError::new(
                &sh.tier.name,
                BackendErrorKind::Other,
                Fault::Internal,
                "the local generation failed unexpectedly",
            )));
            Outcome::default()
        });
        drop(tx);
        let mut s = lock(&sh.sched);
        let mut key = job.key.clone();
        key.push_str(&out.answer);
        s.slots[i].key = key;
        s.slots[i].last_used = Some(Instant::now());
        s.last_activity = Instant::now();
        drop(s);
        sh.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use api::{ChatRequest, Message, Role};

    fn gen_of(msgs: &[(Role, &str)]) -> Generate {
        Generate::new(ChatRequest {
            messages: msgs.iter().map(|(r, t)| Message::text_message(*r, *t)).collect(),
            ..serde_json::from_str(r#"{"model":"m","messages":[]}"#).unwrap()
        })
    }

    fn slot(key: &str, used_secs_ago: Option<u64>, busy: bool) -> SlotState {
        SlotState {
            assigned: None,
            running: None,
            // As busy as a slot can be without a job to build.
            no_worker: busy,
            key: key.into(),
            last_used: used_secs_ago.map(|s| Instant::now() - Duration::from_secs(s)),
        }
    }

    #[test]
    fn slot_choice_prefers_the_cached_conversation_then_empty_then_oldest() {
        let conv = "user\u{1f}hello\u{1e}assistant\u{1f}hi";
        let next = "user\u{1f}hello\u{1e}assistant\u{1f}hi\u{1e}user\u{1f}more";
        let other = "user\u{1f}unrelated";
        let slots = [
            slot(other, Some(5), false),
            slot(conv, Some(9), false),
            slot("", None, false),
        ];
        assert_eq!(pick_slot(&slots, next), Some(1));
        // An unrelated request takes the empty slot, not a conversation's.
        assert_eq!(pick_slot(&slots, "user\u{1f}something else"), Some(2));
        let slots = [slot(other, Some(5), false), slot(conv, Some(9), false)];
        assert_eq!(pick_slot(&slots, "user\u{1f}something else"), Some(1));
        let slots = [slot(conv, Some(5), true), slot(other, Some(9), false)];
        assert_eq!(pick_slot(&slots, next), Some(1));
        let slots = [slot(conv, Some(5), true)];
        assert_eq!(pick_slot(&slots, next), None);
    }

    #[test]
    fn next_turn_shares_the_previous_key_as_prefix() {
        let first = gen_of(&[(Role::User, "hello")]);
        let mut slot_key = routing_key(&first);
        slot_key.push_str("hi there");
        let second = gen_of(&[
            (Role::User, "hello"),
            (Role::Assistant, "hi there"),
            (Role::User, "more"),
        ]);
        let k2 = routing_key(&second);
        // Up to the end of the answer.
        assert!(common_prefix_len(&slot_key, &k2) >= slot_key.len() - 1);
        let other = gen_of(&[(Role::User, "bye")]);
        assert!(common_prefix_len(&slot_key, &routing_key(&other)) < 8);
    }
}
