//! The cloud backend: any OpenAI-compatible endpoint (vLLM, TGI, SGLang, a
//! hosted API) over HTTPS, through reqwest and rustls.
//!
//! - `config`: the tier's config as the gateway's file embeds it, its
//!   validation, and the injectable environment API keys are read from.
//! - `backend`: [`CloudBackend`], the [`api::Backend`] implementation with
//!   retries, failover, circuit breakers and the SSE-to-event stream.
//! - `breaker`, `health`: the per-endpoint circuit breaker and the health
//!   the routing policy reads.
//! - `body`, `chunk`, `tls`: the upstream request body, one stream chunk
//!   turned into events, and the rustls client config.
//! - `lane`: one HTTP client per serving thread ([`set_lane`]).
//!
//! Architecture invariant: only this crate knows reqwest; no prompt or answer
//! text is ever logged, and error messages never quote upstream free text.

mod backend;
mod body;
mod breaker;
mod chunk;
mod config;
mod health;
mod lane;
mod tls;

pub use backend::{CloudBackend, CloudError};
pub use breaker::BreakerState;
pub use config::{BreakerConfig, CloudTierConfig, ConfigError, EndpointConfig, EnvSource, ProcessEnv};
pub use health::{CloudHealth, EndpointHealth};
pub use lane::set_lane;
