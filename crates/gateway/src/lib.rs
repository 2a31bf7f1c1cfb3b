//! The Tandem daemon: the HTTP API, configuration, and the wiring of routing
//! to the local and cloud backends. `main.rs` is only the command line.

pub mod config;
pub mod daemon;
pub mod engine;
pub mod http;
pub mod logging;
pub mod memory;
pub mod offline;
pub mod routing;
pub mod security;
pub mod server;
pub mod state;
pub mod telemetry;
