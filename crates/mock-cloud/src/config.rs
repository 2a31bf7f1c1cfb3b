//! How a mock server is configured: TLS, the fault every request gets by
//! default, the random fault mix for load tests, the API key, the record size.
//!
//! The config is built in code (by tests or by the binary's flags), never read
//! from a file, so it has no serde layer; [`MockConfig::validate`] checks the
//! few values that can be out of range.

use std::path::PathBuf;

use crate::error::MockError;
use crate::fault::Fault;

/// Entries kept by the request record before the oldest is dropped.
pub const DEFAULT_RECORD_LIMIT: usize = 10_000;

/// The names the generated leaf certificate is valid for when none are given:
/// loopback by name and address, and the compose service name.
pub fn default_sans() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1", "mock-cloud"]
        .map(String::from)
        .to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Generate a CA and a leaf certificate for `sans` at start; the CA's PEM
    /// is in [`crate::MockHandle::ca_pem`] for clients to trust.
    Generate { sans: Vec<String> },
    /// Serve this PEM certificate chain and PEM private key (PKCS#8, PKCS#1 or SEC1).
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge).
    Plain,
}

impl Default for TlsMode {
    fn default() -> Self {
        TlsMode::Generate { sans: default_sans() }
    }
}

/// A random fault mix drawn per request, for load tests. Draws are
/// deterministic in (`seed`, arrival order of the request): one uniform draw
/// in `[0, 1)` picks at most one fault, so the rates must sum to at most 1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RandomFaults {
    /// Share of requests cut after a random number of content chunks.
    pub cut_rate: f64,
    /// Share of requests answered with 429, 500 or 503 (chosen at random).
    pub status_rate: f64,
    /// Share of requests that stall after a random number of content chunks.
    pub stall_rate: f64,
    pub seed: u64,
}

impl RandomFaults {
    pub fn is_active(&self) -> bool {
        self.cut_rate > 0.0 || self.status_rate > 0.0 || self.stall_rate > 0.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    pub tls: TlsMode,
    /// Applied to every request; keys of a request's `x-mock-fault` header
    /// override it key by key.
    pub default_fault: Fault,
    /// When set, `/v1/*` requires `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// Requests kept in the record (a ring: the oldest goes first). 0 keeps none.
    pub record_limit: usize,
    pub random: RandomFaults,
    /// Ids listed by `GET /v1/models`. Chat requests may name any model: the
    /// answer's `model` is always the request's.
    pub models: Vec<String>,
    /// Answer every request as if it carried `x-mock-echo: 1`: for callers
    /// (such as a gateway under test) that forward no headers of their own.
    pub echo: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            tls: TlsMode::default(),
            default_fault: Fault::default(),
            api_key: None,
            record_limit: DEFAULT_RECORD_LIMIT,
            random: RandomFaults::default(),
            models: vec!["mock-large".into()],
            echo: false,
        }
    }
}

impl MockConfig {
    /// Plain HTTP with everything else at its default; the common case for
    /// tests that do not exercise TLS.
    pub fn plain() -> Self {
        MockConfig {
            tls: TlsMode::Plain,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), MockError> {
        let r = &self.random;
        for (field, v) in [
            ("random.cut_rate", r.cut_rate),
            ("random.status_rate", r.status_rate),
            ("random.stall_rate", r.stall_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(MockError::Config {
                    field,
                    message: format!("must be between 0 and 1, got {v}"),
                });
            }
        }
        if r.cut_rate + r.status_rate + r.stall_rate > 1.0 + 1e-9 {
            return Err(MockError::Config {
                field: "random",
                message: "cut_rate + status_rate + stall_rate must be at most 1".into(),
            });
        }
        if let TlsMode::Generate { sans } = &self.tls
            && sans.is_empty()
        {
            return Err(MockError::Config {
                field: "tls.sans",
                message: "a generated certificate needs at least one name".into(),
            });
        }
        if self.api_key.as_deref().is_some_and(str::is_empty) {
            return Err(MockError::Config {
                field: "api_key",
                message: "must not be empty (use None for no authentication)".into(),
            });
        }
        self.default_fault.validate().map_err(|message| MockError::Config {
            field: "default_fault",
            message,
        })
    }
}
