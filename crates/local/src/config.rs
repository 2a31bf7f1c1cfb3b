//! The configuration of one local tier: the raw TOML shape
//! ([`LocalTierConfig`], embedded by the gateway in its own config file) and
//! the validated values the backend runs on ([`LocalTier`]).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// One local model as the operator writes it, e.g.
///
/// ```toml
/// name = "local-270m"
/// model = "models/gemma-3-270m-q4_k_m.gguf"
/// chat_template = "gemma"
/// context_len = 4096
/// load = "on_demand"
/// idle_unload_secs = 600
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalTierConfig {
    /// The tier name used in routes, errors and status (`local-1b`, …).
    pub name: String,
    /// Path of the GGUF file.
    pub model: PathBuf,
    /// Tokens per slot: prompt plus answer must fit in it.
    #[serde(default = "default_context_len")]
    pub context_len: u32,
    /// CPU threads per slot. Default: `min(2, cores)`. More threads than
    /// cores are clamped: llama.cpp slows down badly when oversubscribed.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Concurrent generations; each slot owns a context (KV cache) and a
    /// thread. On a phone or a laptop one is usually right.
    #[serde(default = "default_parallel_slots")]
    pub parallel_slots: u32,
    /// `"gguf"` for the template stored in the model, or the name of a
    /// template built into llama.cpp (`gemma`, `chatml`, `llama3`, …) for
    /// models that carry none (base models).
    #[serde(default = "default_chat_template")]
    pub chat_template: String,
    /// When the model is loaded: at start (a failure stops the daemon) or on
    /// the first request (a failure is that request's error).
    #[serde(default)]
    pub load: LoadMode,
    /// Unload the model after this many seconds without a request, to give
    /// the memory back to the device; the next request loads it again.
    #[serde(default)]
    pub idle_unload_secs: Option<u64>,
    /// Requests that may wait for a slot; one more is refused at once
    /// (`overloaded`), so the router can send it elsewhere.
    #[serde(default = "default_queue_len")]
    pub queue_len: u32,
    /// Longest wait for a slot (including an on-demand load) before the
    /// request fails with `overloaded`.
    #[serde(default = "default_queue_wait_ms")]
    pub queue_wait_ms: u64,
    /// Memory left to the rest of the device: the model is not loaded unless
    /// `MemAvailable - mem_reserve_mb` covers its estimated footprint.
    #[serde(default = "default_mem_reserve_mb")]
    pub mem_reserve_mb: u64,
    /// Prompt tokens evaluated per llama.cpp call. Bigger is faster on long
    /// prompts but reserves a bigger compute buffer (n_vocab × n_batch × 4
    /// bytes of logits scratch for Gemma's 262k vocabulary).
    #[serde(default = "default_n_batch")]
    pub n_batch: u32,
    /// Measure prompt and generation speed right after loading.
    #[serde(default = "default_true")]
    pub self_bench: bool,
    /// Whether requests with `tools` may be sent here. When false they are
    /// refused as unsupported, so the router can choose another tier.
    #[serde(default)]
    pub supports_tools: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    #[default]
    Startup,
    OnDemand,
}

fn default_context_len() -> u32 {
    4096
}
fn default_parallel_slots() -> u32 {
    1
}
fn default_chat_template() -> String {
    "gguf".into()
}
fn default_queue_len() -> u32 {
    8
}
fn default_queue_wait_ms() -> u64 {
    10_000
}
fn default_mem_reserve_mb() -> u64 {
    1024
}
fn default_n_batch() -> u32 {
    512
}
fn default_true() -> bool {
    true
}

/// Which chat template renders the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChoice {
    /// The model's own `tokenizer.chat_template`.
    Gguf,
    /// A template built into llama.cpp, by name.
    Builtin(String),
}

/// A validated local tier; every value is in range.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalTier {
    pub name: String,
    pub model: PathBuf,
    pub context_len: NonZeroU32,
    /// Threads per slot, between 1 and the number of cores.
    pub threads: u32,
    pub parallel_slots: usize,
    pub chat_template: TemplateChoice,
    pub load: LoadMode,
    pub idle_unload: Option<Duration>,
    pub queue_len: usize,
    pub queue_wait: Duration,
    pub mem_reserve_bytes: u64,
    pub n_batch: u32,
    pub self_bench: bool,
    pub supports_tools: bool,
}

/// A config value out of range; `field` is the key as written in TOML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("local tier `{tier}`: `{field}`: {message}")]
pub struct ConfigError {
    pub tier: String,
    pub field: &'static str,
    pub message: String,
}

/// Most slots one tier may ask for: each holds a full context in memory.
const MAX_SLOTS: u32 = 64;
/// Smallest useful context: the chat template alone takes a dozen tokens.
const MIN_CONTEXT: u32 = 64;
/// The queue bound keeps memory bounded; beyond this, route elsewhere.
const MAX_QUEUE: u32 = 4096;

fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

impl LocalTierConfig {
    /// A config with every default, for `name` and `model`.
    pub fn new(name: impl Into<String>, model: impl Into<PathBuf>) -> Self {
        LocalTierConfig {
            name: name.into(),
            model: model.into(),
            context_len: default_context_len(),
            threads: None,
            parallel_slots: default_parallel_slots(),
            chat_template: default_chat_template(),
            load: LoadMode::default(),
            idle_unload_secs: None,
            queue_len: default_queue_len(),
            queue_wait_ms: default_queue_wait_ms(),
            mem_reserve_mb: default_mem_reserve_mb(),
            n_batch: default_n_batch(),
            self_bench: true,
            supports_tools: false,
        }
    }

    pub fn validate(&self) -> Result<LocalTier, ConfigError> {
        let err = |field: &'static str, message: String| ConfigError {
            tier: self.name.clone(),
            field,
            message,
        };
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        if self.model.as_os_str().is_empty() {
            return Err(err("model", "must name a GGUF file".into()));
        }
        let context_len = NonZeroU32::new(self.context_len)
            .filter(|c| c.get() >= MIN_CONTEXT)
            .ok_or_else(|| err("context_len", format!("must be at least {MIN_CONTEXT}")))?;
        let cores = cores();
        let threads = match self.threads {
            Some(0) => return Err(err("threads", "must be at least 1".into())),
            Some(t) if t > cores => {
                tracing::warn!(tier = %self.name, threads = t, cores, "local: more threads than cores; clamped");
                cores
            }
            Some(t) => t,
            None => cores.min(2),
        };
        if self.parallel_slots == 0 || self.parallel_slots > MAX_SLOTS {
            return Err(err("parallel_slots", format!("must be between 1 and {MAX_SLOTS}")));
        }
        let chat_template = match self.chat_template.trim() {
            "" => {
                return Err(err(
                    "chat_template",
                    "must be \"gguf\" or a llama.cpp template name".into(),
                ));
            }
            "gguf" => TemplateChoice::Gguf,
            name if name.contains('\0') => return Err(err("chat_template", "must not contain NUL".into())),
            name => TemplateChoice::Builtin(name.to_owned()),
        };
        let idle_unload = match self.idle_unload_secs {
            Some(0) => {
                return Err(err(
                    "idle_unload_secs",
                    "must be at least 1 (omit it to never unload)".into(),
                ));
            }
            Some(s) => Some(Duration::from_secs(s)),
            None => None,
        };
        if self.queue_len > MAX_QUEUE {
            return Err(err("queue_len", format!("must be at most {MAX_QUEUE}")));
        }
        if self.queue_wait_ms == 0 {
            return Err(err("queue_wait_ms", "must be at least 1".into()));
        }
        if self.n_batch == 0 || self.n_batch > self.context_len {
            return Err(err("n_batch", "must be between 1 and context_len".into()));
        }
        let mem_reserve_bytes = self
            .mem_reserve_mb
            .checked_mul(1 << 20)
            .ok_or_else(|| err("mem_reserve_mb", "too large".into()))?;
        Ok(LocalTier {
            name: self.name.clone(),
            model: self.model.clone(),
            context_len,
            threads,
            parallel_slots: self.parallel_slots as usize,
            chat_template,
            load: self.load,
            idle_unload,
            queue_len: self.queue_len as usize,
            queue_wait: Duration::from_millis(self.queue_wait_ms),
            mem_reserve_bytes,
            n_batch: self.n_batch,
            self_bench: self.self_bench,
            supports_tools: self.supports_tools,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn defaults_from_minimal_toml() {
        let cfg: LocalTierConfig = toml::from_str("name = \"l\"\nmodel = \"m.gguf\"").unwrap();
        let t = cfg.validate().unwrap();
        assert_eq!(t.context_len.get(), 4096);
        assert_eq!(t.parallel_slots, 1);
        assert_eq!(t.chat_template, TemplateChoice::Gguf);
        assert_eq!(t.load, LoadMode::Startup);
        assert_eq!(t.queue_len, 8);
        assert_eq!(t.queue_wait, Duration::from_secs(10));
        assert_eq!(t.mem_reserve_bytes, 1024 << 20);
        assert!(t.threads >= 1 && t.threads <= cores());
        assert!(t.self_bench && !t.supports_tools);
        assert_eq!(cfg, LocalTierConfig::new("l", "m.gguf"));
    }

    #[test]
    fn full_toml() {
        let cfg: LocalTierConfig = toml::from_str(
            r#"name = "l"
model = "m.gguf"
context_len = 2048
threads = 1
parallel_slots = 2
chat_template = "gemma"
load = "on_demand"
idle_unload_secs = 30
queue_len = 0
queue_wait_ms = 500
mem_reserve_mb = 0
n_batch = 128
self_bench = false
supports_tools = true"#,
        )
        .unwrap();
        let t = cfg.validate().unwrap();
        assert_eq!(t.chat_template, TemplateChoice::Builtin("gemma".into()));
        assert_eq!(t.load, LoadMode::OnDemand);
        assert_eq!(t.idle_unload, Some(Duration::from_secs(30)));
        assert_eq!((t.threads, t.parallel_slots, t.queue_len, t.n_batch), (1, 2, 0, 128));
    }

    #[test]
    fn unknown_field_is_refused() {
        let e = toml::from_str::<LocalTierConfig>("name = \"l\"\nmodel = \"m\"\nctx = 5").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let base = LocalTierConfig::new("l", "m.gguf");
        let cases: Vec<(LocalTierConfig, &str)> = vec![
            (
                LocalTierConfig {
                    name: " ".into(),
                    ..base.clone()
                },
                "name",
            ),
            (
                LocalTierConfig {
                    model: "".into(),
                    ..base.clone()
                },
                "model",
            ),
            (
                LocalTierConfig {
                    context_len: 8,
                    ..base.clone()
                },
                "context_len",
            ),
            (
                LocalTierConfig {
                    threads: Some(0),
                    ..base.clone()
                },
                "threads",
            ),
            (
                LocalTierConfig {
                    parallel_slots: 0,
                    ..base.clone()
                },
                "parallel_slots",
            ),
            (
                LocalTierConfig {
                    chat_template: "".into(),
                    ..base.clone()
                },
                "chat_template",
            ),
            (
                LocalTierConfig {
                    idle_unload_secs: Some(0),
                    ..base.clone()
                },
                "idle_unload_secs",
            ),
            (
                LocalTierConfig {
                    queue_wait_ms: 0,
                    ..base.clone()
                },
                "queue_wait_ms",
            ),
            (
                LocalTierConfig {
                    n_batch: 0,
                    ..base.clone()
                },
                "n_batch",
            ),
            (
                LocalTierConfig {
                    n_batch: 9000,
                    ..base.clone()
                },
                "n_batch",
            ),
            (
                LocalTierConfig {
                    mem_reserve_mb: u64::MAX,
                    ..base.clone()
                },
                "mem_reserve_mb",
            ),
        ];
        for (cfg, field) in cases {
            let e = cfg.validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(field));
        }
    }

    #[test]
    fn threads_are_clamped_to_cores() {
        let cfg = LocalTierConfig {
            threads: Some(10_000),
            ..LocalTierConfig::new("l", "m")
        };
        assert_eq!(cfg.validate().unwrap().threads, cores());
    }
}
