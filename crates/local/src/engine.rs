//! The llama.cpp side: loading a model (with the memory guard), the
//! self-benchmark, and one request's generation on a slot's context.
//!
//! Architecture invariant: everything here runs on the backend's own OS
//! threads (the engine thread that owns the model, one worker per slot that
//! owns its context), never on the async runtime's workers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use api::{BackendError, BackendErrorKind, Event, FinishReason, Generate, Role, TokenStats, Usage};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::config::{LocalTier, TemplateChoice};
use crate::error::LocalError;
use crate::markers::ControlText;
use crate::memory::{self, Estimate};
use crate::text::{StopMatcher, Utf8Decoder};

/// The process-wide llama.cpp backend: `llama_backend_init` may run once.
static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// One model loads at a time in the process, from the memory check until
/// its contexts exist: two tiers loading at once would each count the
/// memory the other is about to take as available, and creating contexts
/// concurrently is unsound in llama.cpp (it mutates the model).
static LOAD_LOCK: Mutex<()> = Mutex::new(());

/// Proof that the caller holds [`LOAD_LOCK`]: [`load`] and [`new_context`]
/// ask for it.
pub(crate) struct Loading {
    _guard: MutexGuard<'static, ()>,
}

pub(crate) fn begin_load() -> Loading {
    Loading {
        _guard: LOAD_LOCK.lock().unwrap_or_else(|p| p.into_inner()),
    }
}

pub(crate) fn backend(tier: &str) -> Result<&'static LlamaBackend, LocalError> {
    let b = BACKEND.get_or_init(|| {
        let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
        // llama.cpp prints ~400 lines per load to stderr otherwise. They are
        // voided rather than forwarded: some could carry prompt text.
        b.void_logs();
        Ok(b)
    });
    b.as_ref().map_err(|e| LocalError::Llama {
        tier: tier.into(),
        reason: format!("backend init: {e}"),
    })
}

/// Checks that the model file exists and has a readable GGUF header, and
/// returns its size and header figures.
pub(crate) fn inspect(tier: &LocalTier) -> Result<(u64, memory::ModelMeta), LocalError> {
    let path = &tier.model;
    let md = std::fs::metadata(path).map_err(|e| LocalError::ModelMissing {
        tier: tier.name.clone(),
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if !md.is_file() {
        return Err(LocalError::ModelMissing {
            tier: tier.name.clone(),
            path: path.clone(),
            reason: "not a regular file".into(),
        });
    }
    // GgufContext needs a UTF-8 path; llama.cpp does too.
    if path.to_str().is_none() {
        return Err(LocalError::ModelMissing {
            tier: tier.name.clone(),
            path: path.clone(),
            reason: "path is not valid UTF-8".into(),
        });
    }
    backend(&tier.name)?;
    let meta = memory::read_meta(path).ok_or_else(|| LocalError::ModelCorrupt {
        tier: tier.name.clone(),
        path: path.clone(),
        reason: "no GGUF header with the architecture keys (truncated, or not a GGUF file)".into(),
    })?;
    Ok((md.len(), meta))
}

/// A loaded model and what was measured while loading it.
pub(crate) struct Loaded {
    pub model: LlamaModel,
    pub template: LlamaChatTemplate,
    /// The vocabulary's control-token texts, defused in message bodies.
    pub markers: ControlText,
    pub estimate: Estimate,
    pub load_ms: u64,
    pub rss_before: Option<u64>,
}

/// The memory a tier's model is expected to take once loaded.
pub(crate) fn estimate(tier: &LocalTier, file_size: u64, meta: &memory::ModelMeta) -> Estimate {
    memory::estimate(
        meta,
        file_size,
        u64::from(tier.context_len.get()),
        u64::from(tier.n_batch),
        tier.parallel_slots as u64,
    )
}

pub(crate) fn load(tier: &LocalTier, meminfo: &Path, _: &Loading) -> Result<Loaded, LocalError> {
    // Read again: the file may have been replaced since start.
    let (file_size, meta) = inspect(tier)?;
    let estimate = estimate(tier, file_size, &meta);
    match memory::mem_available(meminfo) {
        Some(available) => {
            memory::check(&estimate, available, tier.mem_reserve_bytes).map_err(|reason| LocalError::Memory {
                tier: tier.name.clone(),
                path: tier.model.clone(),
                reason,
            })?
        }
        None => tracing::warn!(tier = %tier.name, meminfo = %meminfo.display(),
            "local: MemAvailable unknown; memory guard skipped"),
    }
    let backend = backend(&tier.name)?;
    let rss_before = memory::rss_bytes();
    let t0 = Instant::now();
    let model = LlamaModel::load_from_file(backend, &tier.model, &LlamaModelParams::default()).map_err(|e| {
        LocalError::ModelCorrupt {
            tier: tier.name.clone(),
            path: tier.model.clone(),
            reason: format!("llama.cpp could not load it ({e})"),
        }
    })?;
    let load_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let template = match &tier.chat_template {
        TemplateChoice::Gguf => model.chat_template(None).map_err(|e| LocalError::Template {
            tier: tier.name.clone(),
            reason: format!(
                "chat_template = \"gguf\" but {} has none ({e}); name a llama.cpp template such as \"gemma\" or \"chatml\"",
                tier.model.display()
            ),
        })?,
        TemplateChoice::Builtin(name) => LlamaChatTemplate::new(name).map_err(|e| LocalError::Template {
            tier: tier.name.clone(),
            reason: e.to_string(),
        })?,
    };
    // An unknown name fails only when applied: try it now, not on a request.
    let probe = [
        LlamaChatMessage::new("user".into(), "hi".into()).map_err(|e| LocalError::Template {
            tier: tier.name.clone(),
            reason: e.to_string(),
        })?,
    ];
    model
        .apply_chat_template(&template, &probe, true)
        .map_err(|e| LocalError::Template {
            tier: tier.name.clone(),
            reason: format!("llama.cpp does not know chat_template `{}` ({e})", template_name(tier)),
        })?;
    let markers = {
        let vocab = model.vocab();
        ControlText::new(
            vocab
                .tokens()
                .filter(|&t| vocab.is_control(t))
                .filter_map(|t| vocab.text(t).and_then(|c| c.to_str().ok()).map(str::to_owned)),
        )
    };
    Ok(Loaded {
        model,
        template,
        markers,
        estimate,
        load_ms,
        rss_before,
    })
}

fn template_name(tier: &LocalTier) -> &str {
    match &tier.chat_template {
        TemplateChoice::Gguf => "gguf",
        TemplateChoice::Builtin(n) => n,
    }
}

pub(crate) fn new_context<'m>(
    model: &'m LlamaModel,
    tier: &LocalTier,
    _: &Loading,
) -> Result<LlamaContext<'m>, LocalError> {
    let threads = i32::try_from(tier.threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(Some(tier.context_len))
        .with_n_batch(tier.n_batch)
        .with_n_ubatch(tier.n_batch)
        .with_n_seq_max(1)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let backend = backend(&tier.name)?;
    model.new_context(backend, params).map_err(|e| LocalError::Llama {
        tier: tier.name.clone(),
        reason: format!("could not create a context of {} tokens: {e}", tier.context_len),
    })
}

/// Speeds measured by the self-benchmark.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bench {
    pub prompt_tps: f64,
    pub gen_tps: f64,
}

/// English text long enough for 64 tokens with any common tokenizer.
const BENCH_TEXT: &str = "The committee met on a rainy Tuesday to review the quarterly figures. Sales in the \
northern region rose while costs in the south fell, and the board asked for a plan that would keep both trends \
going through the winter. Several members wanted more detail on shipping delays, staffing, and the new \
warehouse, so the chair promised a written summary before the next meeting, along with";
const BENCH_PROMPT_TOKENS: usize = 64;
const BENCH_GEN_TOKENS: usize = 16;

/// A short prompt and a few greedy tokens, then the context is cleared.
pub(crate) fn self_bench(ctx: &mut LlamaContext<'_>, model: &LlamaModel, n_batch: usize) -> Result<Bench, String> {
    let vocab = model.vocab();
    let mut tokens = vocab.tokenize(BENCH_TEXT.as_bytes(), true, false);
    let room = (ctx.n_ctx() as usize).saturating_sub(BENCH_GEN_TOKENS + 1);
    tokens.truncate(BENCH_PROMPT_TOKENS.min(room));
    if tokens.is_empty() {
        return Err("context too small for the self-benchmark".into());
    }
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(n_batch.max(1), 1);
    let t0 = Instant::now();
    let mut pos = 0usize;
    let mut last_idx = 0;
    for chunk in tokens.chunks(n_batch.max(1)) {
        batch.clear();
        for (j, &t) in chunk.iter().enumerate() {
            let last = pos + j + 1 == tokens.len();
            batch.add(t, pos_i32(pos + j), &[0], last).map_err(|e| e.to_string())?;
        }
        ctx.decode(&mut batch).map_err(|e| e.to_string())?;
        last_idx = batch.n_tokens() - 1;
        pos += chunk.len();
    }
    let prompt_s = t0.elapsed().as_secs_f64();
    let mut sampler = LlamaSampler::greedy();
    let t1 = Instant::now();
    for _ in 0..BENCH_GEN_TOKENS {
        let t = sampler.sample(ctx, last_idx);
        batch.clear();
        batch.add(t, pos_i32(pos), &[0], true).map_err(|e| e.to_string())?;
        ctx.decode(&mut batch).map_err(|e| e.to_string())?;
        last_idx = 0;
        pos += 1;
    }
    let gen_s = t1.elapsed().as_secs_f64();
    ctx.clear_kv_cache();
    Ok(Bench {
        prompt_tps: tokens.len() as f64 / prompt_s.max(1e-9),
        gen_tps: BENCH_GEN_TOKENS as f64 / gen_s.max(1e-9),
    })
}

fn pos_i32(p: usize) -> i32 {
    // Positions are bounded by the context length, itself a u32 ≤ i32::MAX
    // in practice; saturate rather than wrap if it ever is not.
    i32::try_from(p).unwrap_or(i32::MAX)
}

/// What one request left behind: the answer text sent, for the slot's
/// prefix-routing key.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub answer: String,
}

/// Weight of the newest request in the running speed averages.
const EWMA_ALPHA: f64 = 0.2;

/// Figures every slot adds to, read by `status()`. Updated before the
/// events that end an answer are sent, so a reader that saw `Finish` sees
/// the counts of that answer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub reused: AtomicU64,
    pub evaluated: AtomicU64,
    pub completed: AtomicU64,
    /// Prompts evaluated ahead of a possible handover ([`api::Backend::prepare`]).
    pub prefills: AtomicU64,
    pub speed: Mutex<Speed>,
}

/// Tokens per second: the self-benchmark's, and running averages over real
/// requests seeded by it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Speed {
    pub bench_prompt: Option<f64>,
    pub bench_gen: Option<f64>,
    pub prompt: Option<f64>,
    pub gen_: Option<f64>,
}

impl Counters {
    pub fn speed(&self) -> Speed {
        *self.speed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_bench(&self, b: Bench) {
        let mut sp = self.speed.lock().unwrap_or_else(|p| p.into_inner());
        sp.bench_prompt = Some(b.prompt_tps);
        sp.bench_gen = Some(b.gen_tps);
        // A fresh load seeds the running averages with what the device can
        // do now.
        sp.prompt = Some(b.prompt_tps);
        sp.gen_ = Some(b.gen_tps);
    }

    fn record_request(&self, prompt_tps: Option<f64>, gen_tps: Option<f64>) {
        let ewma = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + EWMA_ALPHA * (new - o)));
        let mut sp = self.speed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = prompt_tps {
            sp.prompt = ewma(sp.prompt, p);
        }
        if let Some(g) = gen_tps {
            sp.gen_ = ewma(sp.gen_, g);
        }
        drop(sp);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-slot state that outlives one request: the context and the tokens
/// its KV cache holds, in order, from position 0.
pub(crate) struct Slot<'m> {
    pub ctx: LlamaContext<'m>,
    pub model: &'m LlamaModel,
    pub template: &'m LlamaChatTemplate,
    pub markers: &'m ControlText,
    pub cached: Vec<LlamaToken>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
}

type Tx = mpsc::Sender<Result<Event, BackendError>>;

/// How a job runs, and what stops it early.
pub(crate) struct Mode<'a> {
    /// The backend is shutting down.
    pub shutdown: &'a dyn Fn() -> bool,
    /// A prefill, with its preemption test: the prompt is only evaluated
    /// into the KV cache, nothing is sent, and the work stops between
    /// batches once the test says another request waits.
    pub prefill: Option<&'a dyn Fn() -> bool>,
}

/// Prompt tokens a prefill evaluates between two looks at the queue: about
/// a quarter of a second on a phone-class CPU with a 1B model.
const PREFILL_STEP: usize = 64;

/// Why generation ended early, without an answer to finish.
enum Abort {
    /// The app went away (or the backend is shutting down): send nothing more.
    Gone,
    Failed(BackendError),
}

impl<'m> Slot<'m> {
    pub fn new(ctx: LlamaContext<'m>, loaded: &'m Loaded) -> Self {
        let n_batch = (ctx.n_batch() as usize).max(1);
        Slot {
            ctx,
            model: &loaded.model,
            template: &loaded.template,
            markers: &loaded.markers,
            cached: Vec::new(),
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
        }
    }

    /// Runs one request to its end, sending events through `tx`. Events:
    /// text (one per token when stats are asked for), then `Usage`, then
    /// `Finish`; or a single error, before any text unless the backend is
    /// shutting down. See [`Mode`] for a prefill.
    pub fn run(&mut self, tier: &LocalTier, job: &Generate, tx: &Tx, counters: &Counters, mode: Mode<'_>) -> Outcome {
        let mut out = Outcome::default();
        match self.generate(tier, job, tx, counters, &mode, &mut out) {
            Ok(()) => {}
            // The app is still there: the backend is shutting down.
            Err(Abort::Gone) if !tx.is_closed() => {
                let _ = tx.blocking_send(Err(BackendError::new(
                    &tier.name,
                    BackendErrorKind::Unavailable,
                    api::Fault::Upstream,
                    "the local backend shut down",
                )));
            }
            Err(Abort::Gone) => {}
            Err(Abort::Failed(e)) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
        out
    }

    fn generate(
        &mut self,
        tier: &LocalTier,
        job: &Generate,
        tx: &Tx,
        counters: &Counters,
        mode: &Mode<'_>,
        out: &mut Outcome,
    ) -> Result<(), Abort> {
        let name = tier.name.as_str();
        let prefill = mode.prefill;
        let gone = || (mode.shutdown)() || prefill.map_or_else(|| tx.is_closed(), |preempted| preempted());
        let prompt_text = render(self.model, self.template, self.markers, tier, job)?;
        let prompt = self.tokenize_prompt(name, &prompt_text)?;
        let n_ctx = self.ctx.n_ctx() as usize;
        if prompt.is_empty() {
            return Err(Abort::Failed(BackendError::unsupported(
                name,
                "the prompt rendered to no tokens",
            )));
        }
        if prompt.len() >= n_ctx {
            return Err(Abort::Failed(BackendError::unsupported(
                name,
                format!(
                    "the prompt is {} tokens; this model's context is {n_ctx} tokens (prompt plus answer)",
                    prompt.len()
                ),
            )));
        }
        let room = n_ctx - prompt.len();
        let max_tokens = job.request.max_tokens().map_or(room, |m| (m as usize).min(room));

        // Prefix reuse: keep the longest common prefix in the KV cache and
        // evaluate only the rest (at least the last token, for its logits).
        let mut n_keep = common_prefix(&self.cached, &prompt).min(prompt.len() - 1);
        if n_keep < self.cached.len() {
            let removed = u32::try_from(n_keep)
                .ok()
                .and_then(|p0| self.ctx.clear_kv_cache_seq(Some(0), Some(p0), None).ok())
                .unwrap_or(false);
            if !removed {
                n_keep = 0;
            }
        }
        // A cache that lost early positions (sliding-window eviction) cannot
        // continue from the middle: start over.
        if n_keep > 0 && self.ctx.kv_cache_seq_pos_min(0) > 0 {
            n_keep = 0;
        }
        if n_keep == 0 {
            self.ctx.clear_kv_cache();
        }
        self.cached.truncate(n_keep);
        counters.reused.fetch_add(n_keep as u64, Ordering::Relaxed);

        let t_prompt = Instant::now();
        let mut last_idx = 0;
        // A prefill checks for waiting requests more often than once per batch.
        let step = if prefill.is_some() {
            self.n_batch.min(PREFILL_STEP)
        } else {
            self.n_batch
        };
        for chunk in prompt[n_keep..].chunks(step) {
            if gone() {
                return Err(Abort::Gone);
            }
            self.batch.clear();
            let start = self.cached.len();
            for (j, &t) in chunk.iter().enumerate() {
                let last = start + j + 1 == prompt.len();
                self.batch
                    .add(t, pos_i32(start + j), &[0], last)
                    .map_err(|e| self.fail(name, format!("batch: {e}")))?;
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| self.fail(name, format!("prompt evaluation failed: {e}")))?;
            self.cached.extend_from_slice(chunk);
            counters.evaluated.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            last_idx = self.batch.n_tokens() - 1;
        }
        if prefill.is_some() {
            return Ok(());
        }
        let evaluated = prompt.len() - n_keep;
        // Too few tokens say more about overheads than about speed.
        let prompt_tps = (evaluated >= 16).then(|| evaluated as f64 / t_prompt.elapsed().as_secs_f64().max(1e-9));

        let req = &job.request;
        let temperature = req.temperature.unwrap_or(1.0);
        let mut sampler = sampler_for(self.model, req, temperature, n_ctx);
        let vocab = self.model.vocab();
        let mut utf8 = Utf8Decoder::new();
        let stops = req.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default();
        // A continuation of another backend's answer: a stop string may
        // begin in the text the app has already seen.
        let mut stopper = match &job.continue_from {
            Some(shown) => StopMatcher::after(stops, shown),
            None => StopMatcher::new(stops),
        };
        let mut completion = 0usize;
        let mut piece = Vec::with_capacity(32);
        let mut gen_time = Duration::ZERO;
        let finish = loop {
            if gone() {
                return Err(Abort::Gone);
            }
            let t_tok = Instant::now();
            let stats = job
                .want_token_stats
                .then(|| token_stats_prepare(self.ctx.get_logits_ith(last_idx), temperature));
            let token = sampler.sample(&self.ctx, last_idx);
            if vocab.is_eog(token) {
                gen_time += t_tok.elapsed();
                break FinishReason::Stop;
            }
            completion += 1;
            let stats = stats.map(|s| s.for_token(self.ctx.get_logits_ith(last_idx), token.0));
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            let released = stopper.push(&utf8.push(&piece));
            let done_by_length = completion >= max_tokens;
            // The app gets the token's text before the next decode, which is
            // most of a token's time: sending after it would delay every
            // piece, the first one included, by one forward pass.
            if !released.text.is_empty() || stats.is_some() {
                out.answer.push_str(&released.text);
                let ev = Event::Text {
                    text: released.text,
                    stats,
                };
                tx.blocking_send(Ok(ev)).map_err(|_| Abort::Gone)?;
            }
            if released.stopped || done_by_length {
                gen_time += t_tok.elapsed();
                break if released.stopped {
                    FinishReason::Stop
                } else {
                    FinishReason::Length
                };
            }
            self.batch.clear();
            self.batch
                .add(token, pos_i32(self.cached.len()), &[0], true)
                .map_err(|e| self.fail(name, format!("batch: {e}")))?;
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| self.fail(name, format!("generation failed: {e}")))?;
            self.cached.push(token);
            last_idx = 0;
            gen_time += t_tok.elapsed();
        };
        // No stop string came: release what was held back. An unfinished
        // UTF-8 character at the very end (the budget ran out inside it)
        // becomes U+FFFD, as a lossy decoder writes it: the app sees that a
        // character was cut rather than losing it without a trace.
        let mut tail = stopper.push(&utf8.push(&[])).text;
        if utf8.finish() > 0 {
            tail.push_str(&stopper.push("\u{FFFD}").text);
        }
        tail.push_str(&stopper.finish());
        if !tail.is_empty() {
            out.answer.push_str(&tail);
            tx.blocking_send(Ok(Event::text(tail))).map_err(|_| Abort::Gone)?;
        }
        let gen_tps = (completion >= 4).then(|| completion as f64 / gen_time.as_secs_f64().max(1e-9));
        counters.record_request(prompt_tps, gen_tps);
        let usage = Usage::new(to_u32(prompt.len()), to_u32(completion));
        tx.blocking_send(Ok(Event::Usage(usage))).map_err(|_| Abort::Gone)?;
        tx.blocking_send(Ok(Event::Finish(finish))).map_err(|_| Abort::Gone)?;
        Ok(())
    }

    /// Forgets the KV cache (after a failure that may have left it half
    /// written).
    pub fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    /// A failed decode leaves the KV cache in an unknown state: forget it.
    fn fail(&mut self, name: &str, msg: String) -> Abort {
        self.reset();
        Abort::Failed(BackendError::new(
            name,
            BackendErrorKind::Other,
            api::Fault::Upstream,
            msg,
        ))
    }

    fn tokenize_prompt(&self, name: &str, text: &str) -> Result<Vec<LlamaToken>, Abort> {
        // llama.cpp counts bytes in an i32; a prompt this big cannot fit any
        // context anyway.
        if text.len() > (i32::MAX / 2) as usize {
            return Err(Abort::Failed(BackendError::unsupported(
                name,
                "the prompt is too large",
            )));
        }
        let vocab = self.model.vocab();
        // Built-in templates emit no BOS; a template that writes the BOS
        // text itself must not get a second one.
        let add_bos = vocab.should_add_bos() && {
            let bos = vocab.token_to_piece(vocab.bos(), true, None);
            bos.is_empty() || !text.as_bytes().starts_with(&bos)
        };
        // parse_special: the template's turn markers must become their
        // control tokens.
        Ok(vocab.tokenize(text.as_bytes(), add_bos, true))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Bytes per token beyond which a prompt is refused without tokenizing.
const MAX_BYTES_PER_TOKEN: usize = 256;

/// Renders the conversation with the chat template, ready for the answer:
/// the assistant turn is opened, and a partial answer (handover) is
/// appended unclosed so the model continues it.
fn render(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    markers: &ControlText,
    tier: &LocalTier,
    job: &Generate,
) -> Result<String, Abort> {
    let name = tier.name.as_str();
    let req = &job.request;
    let bad = |m: String| Abort::Failed(BackendError::unsupported(name, m));
    // No token of any common vocabulary stands for this many bytes on
    // average: such a prompt cannot fit, and is refused before the template
    // and the tokenizer spend time (and 32-bit sizes) on it.
    let bytes: usize =
        req.messages.iter().map(|m| m.text().len()).sum::<usize>() + job.continue_from.as_ref().map_or(0, String::len);
    let limit = (tier.context_len.get() as usize).saturating_mul(MAX_BYTES_PER_TOKEN);
    if bytes > limit {
        return Err(bad(format!(
            "the prompt is {bytes} bytes, far more than this model's context of {} tokens can hold",
            tier.context_len
        )));
    }
    let mut chat = Vec::with_capacity(req.messages.len() + 1);
    if req.has_tools() {
        // The tools are described to the model in a system message; tool
        // calls are not parsed back (they arrive as text).
        let tools = serde_json_string(req.tools.as_deref().unwrap_or_default());
        let text = format!("You can call these tools (JSON definitions):\n{tools}");
        chat.push(LlamaChatMessage::new("system".into(), text).map_err(|e| bad(e.to_string()))?);
    }
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool | Role::Function => "tool",
        };
        // Turn markers come from the template only, never from a message.
        let msg = LlamaChatMessage::new(role.into(), markers.defuse(&m.text()).into_owned())
            .map_err(|_| bad(format!("messages[{i}] contains a NUL character")))?;
        chat.push(msg);
    }
    let mut text = model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| bad(format!("the chat template could not render this conversation: {e}")))?;
    if let Some(partial) = &job.continue_from {
        text.push_str(&markers.defuse(partial));
    }
    Ok(text)
}

fn serde_json_string(v: &[serde_json::Value]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The sampler chain for a request: penalties, then greedy when the
/// temperature is 0, else top-p, temperature and a seeded draw.
fn sampler_for(model: &LlamaModel, req: &api::ChatRequest, temperature: f32, n_ctx: usize) -> LlamaSampler {
    let mut chain = Vec::with_capacity(4);
    let freq = req.frequency_penalty.unwrap_or(0.0);
    let presence = req.presence_penalty.unwrap_or(0.0);
    if freq != 0.0 || presence != 0.0 {
        // Over the whole answer, as OpenAI applies them.
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            i32::try_from(n_ctx).unwrap_or(i32::MAX),
            1.0,
            freq,
            presence,
        ));
    }
    if temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if let Some(p) = req.top_p.filter(|p| *p < 1.0) {
            chain.push(LlamaSampler::top_p(p, 1));
        }
        chain.push(LlamaSampler::temp(temperature));
        chain.push(LlamaSampler::dist(seed_for(req.seed)));
    }
    LlamaSampler::chain(chain, true)
}

/// llama.cpp draws a random seed for `u32::MAX`; any explicit seed maps to
/// a fixed other value so the same seed always gives the same answer.
fn seed_for(seed: Option<i64>) -> u32 {
    match seed {
        None => u32::MAX,
        Some(s) => {
            let folded = (s as u64 ^ ((s as u64) >> 32)) as u32;
            if folded == u32::MAX { u32::MAX - 1 } else { folded }
        }
    }
}

/// The normalisation of one token's distribution (after temperature), from
/// a first pass over the logits; the chosen token's logprob needs the pass.
struct StatsPrep {
    inv_t: f32,
    max: f32,
    log_z: f32,
    entropy: f32,
}

/// Entropy and normaliser of softmax(logits / t). For temperature 0
/// (greedy) the untempered distribution is used: a degenerate one-hot
/// distribution says nothing about confidence.
fn token_stats_prepare(logits: &[f32], temperature: f32) -> StatsPrep {
    let inv_t = if temperature > 0.0 { 1.0 / temperature } else { 1.0 };
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l * inv_t));
    let (mut z, mut weighted) = (0.0f64, 0.0f64);
    for &l in logits {
        let x = l * inv_t - max;
        if x.is_finite() {
            let e = f64::from(x).exp();
            z += e;
            weighted += e * f64::from(x);
        }
    }
    let log_z = z.ln();
    // H = log Z − E[x], with x the shifted scaled logits.
    let entropy = (log_z - weighted / z.max(f64::MIN_POSITIVE)) as f32;
    StatsPrep {
        inv_t,
        max,
        log_z: log_z as f32,
        entropy: entropy.max(0.0),
    }
}

impl StatsPrep {
    fn for_token(&self, logits: &[f32], token: i32) -> TokenStats {
        let l = usize::try_from(token).ok().and_then(|i| logits.get(i)).copied();
        let logprob = l.map_or(f32::NEG_INFINITY, |l| l * self.inv_t - self.max - self.log_z);
        TokenStats {
            logprob,
            entropy: self.entropy,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn stats_of_a_uniform_and_a_peaked_distribution() {
        let uniform = [0.0f32; 4];
        let p = token_stats_prepare(&uniform, 1.0);
        let s = p.for_token(&uniform, 2);
        assert!((s.logprob - (0.25f32).ln()).abs() < 1e-5);
        assert!((s.entropy - (4.0f32).ln()).abs() < 1e-5);
        let peaked = [10.0f32, 0.0, 0.0, f32::NEG_INFINITY];
        let p = token_stats_prepare(&peaked, 1.0);
        let s = p.for_token(&peaked, 0);
        assert!(s.logprob > -1e-3 && s.logprob <= 0.0);
        assert!(s.entropy < 0.01);
        assert_eq!(p.for_token(&peaked, 3).logprob, f32::NEG_INFINITY);
        // A higher temperature flattens the distribution.
        let hot = token_stats_prepare(&peaked, 2.0);
        assert!(hot.entropy > p.entropy);
    }

    #[test]
    fn seeds_are_stable_and_never_random() {
        assert_eq!(seed_for(Some(42)), seed_for(Some(42)));
        assert_ne!(seed_for(Some(1)), seed_for(Some(2)));
        assert_ne!(seed_for(Some(-1)), u32::MAX);
        assert_ne!(seed_for(Some(u32::MAX as i64)), u32::MAX);
        assert_eq!(seed_for(None), u32::MAX);
    }

    #[test]
    fn common_prefix_counts_equal_leading_tokens() {
        let t = |v: &[i32]| v.iter().map(|&i| LlamaToken(i)).collect::<Vec<_>>();
        assert_eq!(common_prefix(&t(&[1, 2, 3]), &t(&[1, 2, 4, 5])), 2);
        assert_eq!(common_prefix(&t(&[]), &t(&[1])), 0);
        assert_eq!(common_prefix(&t(&[1, 2]), &t(&[1, 2])), 2);
    }
}
