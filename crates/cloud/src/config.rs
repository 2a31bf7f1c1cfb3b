//! The cloud tier's configuration, as the gateway's config file embeds it,
//! its validation, and where API keys come from.
//!
//! Secrets never appear in the config itself: an endpoint names an
//! environment variable (`api_key_env`) or a file (`api_key_file`), and with
//! `deny_unknown_fields` a literal `api_key = "…"` is refused at parse time.
//! URLs with user info (`https://user:secret@host`) are refused too.

use std::path::PathBuf;

use reqwest::Url;
use serde::Deserialize;

/// One cloud tier: a model class served by one or more OpenAI-compatible
/// endpoints that are tried in priority order.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudTierConfig {
    /// The tier name used in routes, policy rules and errors (`cloud-66b`).
    pub name: String,
    pub endpoints: Vec<EndpointConfig>,
    /// TCP (and TLS) connection set-up bound.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// From sending the request to the first content token, per try; a
    /// try that exceeds it is abandoned and retried.
    #[serde(default = "default_first_token_timeout_ms")]
    pub first_token_timeout_ms: u64,
    /// Longest silence allowed between two pieces of a streamed body.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// An HTTP/2 connection that carried nothing (no request sent, no
    /// answer data received) for longer than this is asked for a PING as
    /// its next request leaves; without an answer within
    /// `connect_timeout_ms` it is closed and the request sent again on a
    /// new one. A connection whose network went away while the device
    /// slept then costs seconds, not `first_token_timeout_ms`.
    #[serde(default = "default_ping_after_idle_ms")]
    pub ping_after_idle_ms: u64,
    /// Whole-response bound for a non-streamed request, per try.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Extra tries per request (so `1 + retries` tries in all), across the
    /// endpoints, and only before the first content token. Each endpoint's
    /// first try is made whatever the count: with N endpoints, at least N
    /// tries.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Full-jitter exponential backoff before trying an endpoint again:
    /// a random wait in `[0, min(backoff_max_ms, backoff_base_ms * 2^n)]`.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// A PEM file of CA certificates trusted in addition to the system roots
    /// (a private vLLM cluster with its own CA).
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// When false, requests that carry `tools` are refused as unsupported
    /// before anything is sent, so the gateway can route them elsewhere.
    #[serde(default = "default_true")]
    pub supports_tools: bool,
    /// Offer HTTP/2 by ALPN and multiplex the tier's requests on one
    /// connection per endpoint and serving thread (the default; a server
    /// that answers `http/1.1` gets HTTP/1.1). `false`: HTTP/1.1 only, one
    /// pooled keep-alive connection per request in flight.
    #[serde(default = "default_true")]
    pub http2: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Base URL, like `https://host/v1`; `/chat/completions` is appended.
    pub url: String,
    /// The upstream model name sent in place of the app's `model`.
    pub model: String,
    /// Name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A file holding the API key (surrounding whitespace is ignored).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Plain `http://` sends the prompt unencrypted; it must be asked for.
    #[serde(default)]
    pub allow_http: bool,
    /// Lower is tried first; endpoints without one keep their list order
    /// (the position in the list is the default priority).
    #[serde(default)]
    pub priority: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open an endpoint's circuit.
    #[serde(default = "default_failures_to_open")]
    pub failures_to_open: u32,
    /// How long an open circuit stays open before one probe is let through.
    #[serde(default = "default_open_ms")]
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: default_failures_to_open(),
            open_ms: default_open_ms(),
        }
    }
}

fn default_connect_timeout_ms() -> u64 {
    3_000
}
fn default_first_token_timeout_ms() -> u64 {
    30_000
}
fn default_idle_timeout_ms() -> u64 {
    15_000
}
fn default_ping_after_idle_ms() -> u64 {
    5_000
}
fn default_request_timeout_ms() -> u64 {
    120_000
}
fn default_retries() -> u32 {
    2
}
fn default_backoff_base_ms() -> u64 {
    100
}
fn default_backoff_max_ms() -> u64 {
    2_000
}
fn default_failures_to_open() -> u32 {
    5
}
fn default_open_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}

/// A config value that cannot work, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the field, prefixed by where the tier sits in the
    /// gateway's file when the caller said so (`cloud[0].endpoints[1].url`).
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(prefix: &str, field: &str, message: impl Into<String>) -> Self {
        let field = if prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{prefix}.{field}")
        };
        ConfigError {
            field,
            message: message.into(),
        }
    }
}

/// Where environment variables are read from. Tests pass a map, so they
/// never mutate the process environment.
pub trait EnvSource: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher + Send + Sync> EnvSource for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// An endpoint after validation, in the order it is tried.
#[derive(Debug, Clone)]
pub(crate) struct ValidEndpoint {
    /// Index in the config list, for field paths in later errors.
    pub index: usize,
    /// The base URL as configured (shown in health; holds no secret).
    pub base: String,
    pub chat_url: Url,
    pub model: String,
}

impl CloudTierConfig {
    /// Checks every field. `path` is where this tier sits in the gateway's
    /// file (`cloud[0]`); it prefixes the field in the error. Keys and the CA
    /// file are read by [`crate::CloudBackend::new`], not here.
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        self.valid_endpoints(path).map(|_| ())
    }

    pub(crate) fn valid_endpoints(&self, path: &str) -> Result<Vec<ValidEndpoint>, ConfigError> {
        let err = |field: &str, msg: &str| Err(ConfigError::new(path, field, msg));
        if self.name.trim().is_empty() {
            return err("name", "must not be empty");
        }
        if self.endpoints.is_empty() {
            return err("endpoints", "at least one endpoint is required");
        }
        for (field, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_token_timeout_ms", self.first_token_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("breaker.open_ms", self.breaker.open_ms),
        ] {
            if v == 0 {
                return err(field, "must be greater than 0");
            }
            // Durations beyond a day are typos, and would overflow Instant
            // arithmetic long before u64 milliseconds do.
            if v > 86_400_000 {
                return err(field, "must be at most 86400000 (one day)");
            }
        }
        // 0 is allowed: a PING as every reused connection's request leaves.
        if self.ping_after_idle_ms > 86_400_000 {
            return err("ping_after_idle_ms", "must be at most 86400000 (one day)");
        }
        if self.retries > 100 {
            return err("retries", "must be at most 100");
        }
        if self.backoff_max_ms > 600_000 {
            return err("backoff_max_ms", "must be at most 600000");
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return err("backoff_base_ms", "must not exceed backoff_max_ms");
        }
        if self.breaker.failures_to_open == 0 {
            return err("breaker.failures_to_open", "must be at least 1");
        }
        let mut out = Vec::with_capacity(self.endpoints.len());
        for (i, ep) in self.endpoints.iter().enumerate() {
            let at = |field: &str| format!("endpoints[{i}].{field}");
            let url = Url::parse(&ep.url).map_err(|e| ConfigError::new(path, &at("url"), format!("not a URL: {e}")))?;
            match url.scheme() {
                "https" => {}
                "http" if ep.allow_http => {}
                "http" => return err(&at("url"), "plain http requires allow_http = true"),
                other => return err(&at("url"), &format!("scheme {other:?} is not http or https")),
            }
            if url.host_str().is_none_or(str::is_empty) {
                return err(&at("url"), "has no host");
            }
            if !url.username().is_empty() || url.password().is_some() {
                return err(
                    &at("url"),
                    "must not contain credentials; use api_key_env or api_key_file",
                );
            }
            if url.query().is_some() || url.fragment().is_some() {
                return err(&at("url"), "must be a base URL without query or fragment");
            }
            if ep.model.trim().is_empty() {
                return err(&at("model"), "must not be empty");
            }
            if let Some(var) = &ep.api_key_env
                && (var.is_empty() || var.contains('='))
            {
                return err(&at("api_key_env"), "must be an environment variable name");
            }
            if ep.api_key_env.is_some() && ep.api_key_file.is_some() {
                return err(&at("api_key_file"), "set api_key_env or api_key_file, not both");
            }
            let mut chat_url = url.clone();
            let base_path = url.path().trim_end_matches('/');
            chat_url.set_path(&format!("{base_path}/chat/completions"));
            out.push((
                ep.priority.unwrap_or(u32::try_from(i).unwrap_or(u32::MAX)),
                ValidEndpoint {
                    index: i,
                    base: ep.url.clone(),
                    chat_url,
                    model: ep.model.clone(),
                },
            ));
        }
        // Stable: equal priorities keep list order.
        out.sort_by_key(|(prio, _)| *prio);
        Ok(out.into_iter().map(|(_, ep)| ep).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(s: &str) -> Result<CloudTierConfig, toml::de::Error> {
        toml::from_str(s)
    }

    const MIN: &str = r#"
        name = "big"
        [[endpoints]]
        url = "https://a.example/v1"
        model = "m-70b"
    "#;

    #[test]
    fn defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.connect_timeout_ms, 3000);
        assert_eq!(c.first_token_timeout_ms, 30000);
        assert_eq!(c.idle_timeout_ms, 15000);
        assert_eq!(c.ping_after_idle_ms, 5000);
        assert_eq!(c.request_timeout_ms, 120000);
        assert_eq!(c.retries, 2);
        assert_eq!((c.backoff_base_ms, c.backoff_max_ms), (100, 2000));
        assert_eq!(
            c.breaker,
            BreakerConfig {
                failures_to_open: 5,
                open_ms: 10000
            }
        );
        assert!(c.supports_tools);
        assert!(!c.endpoints[0].allow_http);
        c.validate("cloud[0]").unwrap();
    }

    #[test]
    fn a_literal_key_cannot_be_written() {
        let s = format!("{MIN}api_key = \"sk-secret\"\n");
        let e = parse(&s).unwrap_err().to_string();
        assert!(e.contains("unknown field `api_key`"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "url = \"http://a/v1\"",
                "cloud[0].endpoints[1].url: plain http requires allow_http = true",
            ),
            (
                "url = \"ftp://a/v1\"",
                "cloud[0].endpoints[1].url: scheme \"ftp\" is not http or https",
            ),
            (
                "url = \"https://u:p@a/v1\"",
                "cloud[0].endpoints[1].url: must not contain credentials; use api_key_env or api_key_file",
            ),
            (
                "url = \"https://a/v1?key=x\"",
                "cloud[0].endpoints[1].url: must be a base URL without query or fragment",
            ),
        ];
        for (line, want) in cases {
            let s = format!("{MIN}[[endpoints]]\n{line}\nmodel = \"x\"\n");
            let c = parse(&s).unwrap();
            assert_eq!(c.validate("cloud[0]").unwrap_err().to_string(), want);
        }
        let s = format!("{MIN}[[endpoints]]\nurl = \"http://a/v1\"\nallow_http = true\nmodel = \"\"\n");
        assert_eq!(
            parse(&s).unwrap().validate("").unwrap_err().to_string(),
            "endpoints[1].model: must not be empty"
        );
        let mut c = parse(MIN).unwrap();
        c.backoff_base_ms = 5000;
        assert_eq!(c.validate("t").unwrap_err().field, "t.backoff_base_ms");
        let mut c = parse(MIN).unwrap();
        c.breaker.failures_to_open = 0;
        assert_eq!(c.validate("t").unwrap_err().field, "t.breaker.failures_to_open");
        let mut c = parse(MIN).unwrap();
        c.endpoints[0].api_key_env = Some("K".into());
        c.endpoints[0].api_key_file = Some("/k".into());
        assert_eq!(c.validate("t").unwrap_err().field, "t.endpoints[0].api_key_file");
    }

    #[test]
    fn priority_orders_endpoints_and_urls_get_the_path() {
        let s = r#"
            name = "big"
            [[endpoints]]
            url = "https://a.example/v1/"
            model = "a"
            priority = 5
            [[endpoints]]
            url = "https://b.example"
            model = "b"
            [[endpoints]]
            url = "https://c.example/v1"
            model = "c"
            priority = 1
        "#;
        let eps = parse(s).unwrap().valid_endpoints("").unwrap();
        let order: Vec<_> = eps.iter().map(|e| e.model.as_str()).collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert_eq!(eps[2].chat_url.as_str(), "https://a.example/v1/chat/completions");
        assert_eq!(eps[0].chat_url.as_str(), "https://b.example/chat/completions");
    }
}
