//! `loadgen`: the load client behind the scripts in `bench/`.
//!
//! `--concurrency` keep-alive HTTP/1.1 connections (plain, or TLS trusting
//! one CA) each send the same request back to back for a bounded time; every
//! request's time to response headers, to the first content chunk of an SSE
//! stream, and to the last byte is kept, and percentiles, requests per
//! second and the CPU time of chosen processes over the measured window are
//! printed as one JSON object. `trace` sends one streamed request and prints
//! every content piece with its arrival time (failover gaps, generation
//! speed through the API). `burst` sends exactly N requests at once and
//! classifies each outcome; `soak` reports a steady load interval by
//! interval beside the memory, descriptors and connections of a watched
//! process (`proc` prints one such look).

pub mod burst;
pub mod conn;
pub mod cpu;
pub mod procinfo;
pub mod request;
pub mod stats;
pub mod tally;
