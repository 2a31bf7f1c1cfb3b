//! The cloud backend: any OpenAI-compatible endpoint (vLLM, TGI, SGLang, a
//! hosted API) over HTTPS with rustls: HTTP/2 through the h2 crate directly,
//! HTTP/1.1 (and proxies) through reqwest.
//!
//! - `config`: the tier's config as the gateway's file embeds it, its
//!   validation, and the injectable environment API keys are read from.
//! - `backend`: [`CloudBackend`], the [`api::Backend`] implementation with
//!   retries, failover, circuit breakers and the SSE-to-event stream.
//! - `breaker`, `health`: the per-endpoint circuit breaker and the health
//!   the routing policy reads.
//! - `body`, `chunk`, `tls`: the upstream request body, one stream chunk
//!   turned into events, and the rustls client config.
//! - `transport`: how a request reaches an endpoint — a direct HTTP/2
//!   connection, or reqwest — behind one interface.
//! - `lane`: each serving thread's own transports ([`set_lane`]).
//!
//! Architecture invariant: only this crate knows reqwest and h2; no prompt or answer
//! text is ever logged, and error messages never quote upstream free text.

mod backend;
mod body;
mod breaker;
mod chunk;
mod config;
mod health;
mod lane;
mod tls;
mod transport;

pub use backend::{CloudBackend, CloudError};
pub use breaker::BreakerState;
pub use config::{BreakerConfig, CloudTierConfig, ConfigError, EndpointConfig, EnvSource, ProcessEnv};
pub use health::{CloudHealth, EndpointHealth};
pub use lane::set_lane;
