//! Why a local model could not be set up or loaded.
//!
//! A load failure at start stops the daemon with this message; a failure of
//! an on-demand load becomes the waiting requests' `unavailable` error (and
//! `last_load_error` in the status), so the router can fail over.

use std::path::PathBuf;

use api::{BackendError, BackendErrorKind, Fault};

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("local tier `{tier}`: model file {path} does not exist or cannot be read: {reason}")]
    ModelMissing {
        tier: String,
        path: PathBuf,
        reason: String,
    },
    #[error("local tier `{tier}`: model file {path} is not a valid GGUF model: {reason}")]
    ModelCorrupt {
        tier: String,
        path: PathBuf,
        reason: String,
    },
    #[error("local tier `{tier}`: not enough memory to load {path}: {reason}")]
    Memory {
        tier: String,
        path: PathBuf,
        reason: String,
    },
    #[error("local tier `{tier}`: chat template: {reason}")]
    Template { tier: String, reason: String },
    #[error("local tier `{tier}`: llama.cpp: {reason}")]
    Llama { tier: String, reason: String },
}

impl LocalError {
    /// The error a request sees when the model it waited for failed to load:
    /// the device cannot answer now, another backend may.
    pub fn to_backend_error(&self, tier: &str) -> BackendError {
        BackendError::new(tier, BackendErrorKind::Unavailable, Fault::Upstream, self.to_string())
    }
}
