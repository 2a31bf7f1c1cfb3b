//! The Tandem daemon: the HTTP API, configuration, and the wiring of routing
//! to the local and cloud backends. `main.rs` is only the command line.

pub mod engine;
pub mod http;
pub mod security;
pub mod server;
pub mod state;
