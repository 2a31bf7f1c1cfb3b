//! The on-device backend: GGUF models through llama-cpp-2.
//!
//! [`LocalBackend`] implements [`api::Backend`] for one model described by a
//! [`LocalTierConfig`] (embedded by the gateway in its config file). It keeps
//! a bounded queue in front of a fixed number of slots, each a llama.cpp
//! context on its own OS thread; reuses the KV cache across the turns of a
//! conversation; loads at start or on the first request and can unload when
//! idle; refuses to load what would not fit in memory; and measures its own
//! speed. [`LocalBackend::status`] reports all of it.
//!
//! Event order of one answer: `Text` events, then one `Usage`, then one
//! `Finish`; or one error and nothing else, before any text. The one
//! exception: when the backend is dropped (daemon shutdown) an answer in
//! progress ends with an `unavailable` error after its text. With
//! `want_token_stats`, every generated token yields one `Text` carrying its
//! [`api::TokenStats`], with empty text while a character or a possible stop
//! string is still held back.
//!
//! Architecture invariant: inference never runs on the async runtime's
//! threads, and no prompt or answer text is ever logged.

mod backend;
mod config;
mod engine;
mod error;
mod markers;
mod memory;
pub mod text;

pub use backend::{LocalBackend, LocalOptions, LocalStatus, ModelState};
pub use config::{ConfigError, LoadMode, LocalTier, LocalTierConfig, TemplateChoice};
pub use error::LocalError;
pub use memory::{Estimate, ModelMeta, estimate, mem_available, peak_rss_bytes, read_meta, rss_bytes};
