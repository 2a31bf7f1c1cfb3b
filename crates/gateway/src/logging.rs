//! Log setup: `tracing` to stderr, human-readable or JSON lines.
//!
//! No code path logs prompt or answer text unless `logging.log_content` is
//! true; `CONTENT_LOGGING` carries that switch to the few places that may.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

use crate::config::LoggingConfig;

static CONTENT_LOGGING: AtomicBool = AtomicBool::new(false);

/// Whether the operator allowed prompts and answers in the logs.
pub fn content_logging() -> bool {
    CONTENT_LOGGING.load(Ordering::Relaxed)
}

pub fn init(cfg: &LoggingConfig) -> anyhow::Result<()> {
    CONTENT_LOGGING.store(cfg.log_content, Ordering::Relaxed);
    let filter = EnvFilter::try_from_env("TANDEM_LOG").or_else(|_| EnvFilter::try_new(&cfg.level))?;
    // Colours only for a person at a terminal: escape codes in a file or a
    // journal are noise, and cost time on every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = if cfg.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("setting up logging: {e}"))
}
