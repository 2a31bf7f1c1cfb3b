//! An OpenAI-compatible mock server with TLS, fault injection and a request record.
//!
//! It stands in for a cloud LLM endpoint (vLLM, TGI, a hosted API) in Tandem's
//! tests, benchmarks and compose harness. Tests start it in-process:
//!
//! ```no_run
//! # async fn f() -> Result<(), mock_cloud::MockError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let mock = mock_cloud::spawn(listener, mock_cloud::MockConfig::default()).await?;
//! // mock.url is https://127.0.0.1:PORT; trust mock.ca_pem (or mock.client_tls_config()).
//! let seen = mock.requests();
//! mock.shutdown().await;
//! # drop(seen); Ok(()) }
//! ```
//!
//! Answers are deterministic functions of the request (see [`answer`]), and
//! every request can carry an `x-mock-fault` header (see [`Fault`]) that makes
//! the answer fail in one precise way.
//!
//! Architecture invariant: the mock shares no code with the crates it tests
//! (not even the `api` wire types), so a bug there cannot hide itself here.

pub mod answer;
mod body;
mod clock;
pub mod config;
mod error;
pub mod fault;
pub mod record;
mod routes;
mod server;
mod stats;
mod tls;

pub use answer::{DEFAULT_CHUNKS, count_tokens, expected_text};
pub use config::{MockConfig, RandomFaults, TlsMode, default_sans};
pub use error::MockError;
pub use fault::Fault;
pub use record::RecordedRequest;
pub use routes::BODY_LIMIT;
pub use server::{GRACE, MockHandle, client_tls_config, spawn};
pub use stats::Stats;
