//! OpenAI wire types, the internal event stream both backends yield, the
//! backend trait, and the one error shape apps see.
//!
//! Architecture invariant: this crate does no IO; it knows neither axum nor
//! reqwest nor llama.cpp.

pub mod error;
pub mod event;
pub mod render;
pub mod request;
pub mod sse;

pub use error::{ApiError, BackendError, BackendErrorKind, Fault};
pub use event::{Backend, BoxFuture, Event, EventStream, FinishReason, Generate, Prepared, TokenStats, Usage};
pub use render::{Aggregate, Handover, Renderer, TandemInfo};
pub use request::{ChatRequest, Content, Message, Role, Stop};
