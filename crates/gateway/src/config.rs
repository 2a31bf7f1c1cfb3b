//! The daemon's configuration file (`config/tandem.toml`).
//!
//! Raw structs refuse unknown fields; `Config::load` checks them and resolves
//! relative paths against the file's directory, so nothing is an `Option`
//! filled in later. Errors name the file, the line when one is known, and the
//! field.
//!
//! With no `--config`, the defaults embedded in the binary are used as if
//! they were `./config/tandem.toml` (so, from a checkout, the model under
//! `./models` and the policy in `./config/policy.toml`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The shipped configuration, compiled in.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../config/tandem.toml");
/// The shipped policy, used when the configured policy file does not exist.
pub const EMBEDDED_POLICY: &str = include_str!("../../../config/policy.toml");

#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    logging: LoggingConfig,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    device: device::DeviceConfig,
    #[serde(default)]
    local: Vec<local::LocalTierConfig>,
    #[serde(default)]
    cloud: Vec<cloud::CloudTierConfig>,
    #[serde(default)]
    hybrid: HybridConfig,
}

/// How answers move between backends (`[hybrid]`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridConfig {
    /// Evaluate the prompt on an idle local slot while a cloud answer that
    /// has the local model as a fallback streams, so a failover mid-answer
    /// evaluates only the text already sent.
    #[serde(default)]
    pub warm_standby: WarmStandby,
    /// The cascade holds this many of the local model's first tokens back
    /// and judges them before anything is shown.
    #[serde(default = "default_hold_tokens")]
    pub cascade_hold_tokens: usize,
    /// Below this mean log-probability of the held tokens, the cascade
    /// escalates to the next backend.
    #[serde(default = "default_min_mean_logprob")]
    pub cascade_min_mean_logprob: f32,
}

impl Default for HybridConfig {
    fn default() -> Self {
        HybridConfig {
            warm_standby: WarmStandby::default(),
            cascade_hold_tokens: default_hold_tokens(),
            cascade_min_mean_logprob: default_min_mean_logprob(),
        }
    }
}

fn default_hold_tokens() -> usize {
    8
}
fn default_min_mean_logprob() -> f32 {
    -2.5
}

/// When to keep the local fallback warm. Evaluating a prompt that the cloud
/// usually answers alone costs energy, hence `auto`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmStandby {
    /// On external power (or no battery), not in power-saver mode and not
    /// hot (thermal below `serious`).
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    client_token_env: Option<String>,
    #[serde(default)]
    client_token_file: Option<PathBuf>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_body_timeout")]
    body_timeout_ms: u64,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default = "default_grace")]
    shutdown_grace_ms: u64,
    #[serde(default)]
    threads: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            allowed_hosts: vec![],
            client_token_env: None,
            client_token_file: None,
            max_body_bytes: default_max_body(),
            body_timeout_ms: default_body_timeout(),
            cors_origins: vec![],
            shutdown_grace_ms: default_grace(),
            threads: 0,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    4 << 20
}
fn default_body_timeout() -> u64 {
    30_000
}
/// More serving threads than this is a typo, not a device.
const MAX_THREADS: usize = 64;

fn default_grace() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A tracing filter (`info`, `tandem=debug,warn`, …).
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub json: bool,
    /// Prompts and answers are never logged unless this is true.
    #[serde(default)]
    pub log_content: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: default_level(),
            json: false,
            log_content: false,
        }
    }
}

fn default_level() -> String {
    "info".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: Option<PathBuf>,
    /// Seconds between checks of the policy file for changes.
    #[serde(default)]
    reload_ms: Option<u64>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from, for messages (`<embedded>` for the defaults).
    pub source: String,
    pub server: ServerConfig,
    pub logging: LoggingConfig,
    pub policy_file: PathBuf,
    pub policy_reload: Duration,
    pub device: device::DeviceConfig,
    pub local: Vec<local::LocalTierConfig>,
    pub cloud: Vec<cloud::CloudTierConfig>,
    pub hybrid: HybridConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub allowed_hosts: Vec<String>,
    pub client_token: Option<String>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub cors_origins: Vec<String>,
    pub shutdown_grace: Duration,
    /// Threads serving connections, each with its own single-threaded
    /// runtime and upstream connections (see `server::run`); `threads = 0`
    /// in the file means one per core.
    pub threads: usize,
}

/// Variables are read through a trait so tests never touch the process
/// environment (the cloud crate's, so both read them alike).
pub use cloud::{EnvSource as Env, ProcessEnv};

impl Config {
    /// Loads `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    file: p.display().to_string(),
                    line: None,
                    reason: format!("cannot read: {e}"),
                })?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                Self::parse(&text, &p.display().to_string(), &base, env)
            }
            None => Self::parse(
                EMBEDDED_CONFIG,
                "<embedded config/tandem.toml>",
                Path::new("config"),
                env,
            ),
        }
    }

    /// Parses config text; relative paths resolve against `base`.
    pub fn parse(text: &str, file: &str, base: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            reason: e.message().to_owned(),
        })?;
        let err = |key: &str, reason: String| ConfigError {
            file: file.to_owned(),
            line: find_key_line(text, key),
            reason,
        };
        let s = raw.server;
        let client_token = match (&s.client_token_env, &s.client_token_file) {
            (Some(var), _) => Some(env.var(var).ok_or_else(|| {
                err(
                    "client_token_env",
                    format!("server.client_token_env: environment variable {var} is not set"),
                )
            })?),
            (None, Some(f)) => {
                let p = resolve(base, f);
                let t = std::fs::read_to_string(&p).map_err(|e| {
                    err(
                        "client_token_file",
                        format!("server.client_token_file {}: {e}", p.display()),
                    )
                })?;
                Some(t.trim().to_owned())
            }
            (None, None) => None,
        };
        if client_token.as_deref() == Some("") {
            return Err(err("client_token", "server: the client token is empty".into()));
        }
        if s.max_body_bytes < 1024 {
            return Err(err(
                "max_body_bytes",
                "server.max_body_bytes must be at least 1024".into(),
            ));
        }
        if s.threads > MAX_THREADS {
            return Err(err(
                "threads",
                format!("server.threads must be at most {MAX_THREADS} (0: one per core)"),
            ));
        }
        for o in &s.cors_origins {
            crate::security::check_origin(o).map_err(|e| err("cors_origins", format!("server.cors_origins: {e}")))?;
        }
        let server = ServerConfig {
            listen: s.listen,
            // Written as a Host header would carry them: port, brackets, a
            // trailing dot and case do not matter.
            allowed_hosts: s.allowed_hosts.iter().map(|h| crate::security::host_name(h)).collect(),
            client_token,
            max_body_bytes: s.max_body_bytes,
            body_timeout: Duration::from_millis(s.body_timeout_ms),
            cors_origins: s.cors_origins,
            shutdown_grace: Duration::from_millis(s.shutdown_grace_ms),
            threads: match s.threads {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            },
        };

        let mut local = raw.local;
        for (i, t) in local.iter_mut().enumerate() {
            t.model = resolve(base, &t.model);
            t.validate().map_err(|e| err("model", format!("local[{i}]: {e}")))?;
        }
        let mut cloud = raw.cloud;
        if cloud.is_empty()
            && let Some(url) = env.var("TANDEM_CLOUD_URL")
        {
            cloud.push(cloud_from_env(&url, env).map_err(|e| err("cloud", e))?);
        }
        for (i, t) in cloud.iter_mut().enumerate() {
            if let Some(ca) = &t.extra_ca_file {
                t.extra_ca_file = Some(resolve(base, ca));
            }
            for e in &mut t.endpoints {
                if let Some(f) = &e.api_key_file {
                    e.api_key_file = Some(resolve(base, f));
                }
            }
            t.validate(&format!("cloud[{i}]"))
                .map_err(|e| err("url", e.to_string()))?;
        }
        let mut names: Vec<&str> = local
            .iter()
            .map(|t| t.name.as_str())
            .chain(cloud.iter().map(|t| t.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(err("name", format!("tier name {:?} is used twice", w[0])));
        }
        if let Some(reserved) = names.iter().find(|n| ["auto"].contains(n)) {
            return Err(err("name", format!("tier name {reserved:?} is reserved")));
        }
        let hybrid = raw.hybrid;
        if hybrid.cascade_hold_tokens == 0 || hybrid.cascade_hold_tokens > 256 {
            return Err(err(
                "cascade_hold_tokens",
                "hybrid.cascade_hold_tokens must be between 1 and 256".into(),
            ));
        }
        if !(hybrid.cascade_min_mean_logprob.is_finite() && hybrid.cascade_min_mean_logprob <= 0.0) {
            return Err(err(
                "cascade_min_mean_logprob",
                "hybrid.cascade_min_mean_logprob must be a log-probability (a finite number <= 0)".into(),
            ));
        }
        let mut device = raw.device;
        device.validate().map_err(|e| err("device", format!("device: {e}")))?;
        device.resolve_paths(base);

        let config = Config {
            source: file.to_owned(),
            server,
            logging: raw.logging,
            policy_file: resolve(base, raw.policy.file.as_deref().unwrap_or(Path::new("policy.toml"))),
            policy_reload: Duration::from_millis(raw.policy.reload_ms.unwrap_or(1000).max(50)),
            device,
            local,
            cloud,
            hybrid,
        };
        config.check_listen().map_err(|mut e| {
            e.line = find_key_line(text, "listen");
            e
        })?;
        Ok(config)
    }

    /// A non-loopback listen address needs a client token: anyone on the
    /// network could otherwise use the models and the cloud key.
    pub fn check_listen(&self) -> Result<(), ConfigError> {
        if !self.server.listen.ip().is_loopback() && self.server.client_token.is_none() {
            return Err(ConfigError {
                file: self.source.clone(),
                line: None,
                reason: format!(
                    "server.listen = {}: a non-loopback address needs a client token (client_token_env or client_token_file)",
                    self.server.listen
                ),
            });
        }
        Ok(())
    }
}

/// `TANDEM_CLOUD_URL` (+ `TANDEM_CLOUD_API_KEY`, `TANDEM_CLOUD_MODEL`) adds
/// one cloud tier named `cloud` when the file configures none.
fn cloud_from_env(url: &str, env: &dyn Env) -> Result<cloud::CloudTierConfig, String> {
    let endpoint = serde_json::json!({
        "url": url,
        "model": env.var("TANDEM_CLOUD_MODEL").unwrap_or_else(|| "default".into()),
        "api_key_env": env.var("TANDEM_CLOUD_API_KEY").map(|_| "TANDEM_CLOUD_API_KEY"),
        "allow_http": env.var("TANDEM_CLOUD_ALLOW_HTTP").is_some_and(|v| v == "1" || v == "true"),
    });
    let tier = serde_json::json!({
        "name": "cloud",
        "endpoints": [endpoint],
        "extra_ca_file": env.var("TANDEM_CLOUD_CA_FILE"),
    });
    serde_json::from_value(tier).map_err(|e| format!("TANDEM_CLOUD_URL: {e}"))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of the first `key =` in the text, for errors found after parsing.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::HashMap;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "t.toml", Path::new("/tmp"), &HashMap::<String, String>::new())
    }

    #[test]
    fn the_embedded_config_parses_with_hybrid_defaults() {
        let c = Config::load(None, &HashMap::<String, String>::new()).unwrap();
        assert_eq!(c.hybrid.warm_standby, WarmStandby::Auto);
        assert_eq!(c.hybrid.cascade_hold_tokens, 8);
        assert!(c.server.listen.ip().is_loopback());
    }

    #[test]
    fn hybrid_settings_are_read_and_bad_ones_refused_with_their_line() {
        let c = parse("[hybrid]\nwarm_standby = \"never\"\ncascade_hold_tokens = 4\n").unwrap();
        assert_eq!(c.hybrid.warm_standby, WarmStandby::Never);
        assert_eq!(c.hybrid.cascade_hold_tokens, 4);
        let e = parse("[hybrid]\nwarm_standby = \"sometimes\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
        let e = parse("[hybrid]\n\ncascade_hold_tokens = 0\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
        assert!(e.reason.contains("cascade_hold_tokens"), "{e:?}");
        let e = parse("[hybrid]\ncascade_min_mean_logprob = 0.5\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
        let e = parse("[hybrid]\nwarm = true\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
    }

    #[test]
    fn a_non_loopback_listen_address_needs_a_client_token() {
        let e = parse("[server]\nlisten = \"0.0.0.0:8080\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
        assert!(e.reason.contains("client token"), "{e:?}");
        let env = HashMap::from([("TANDEM_TOKEN".to_owned(), "t0ken".to_owned())]);
        let text = "[server]\nlisten = \"0.0.0.0:8080\"\nclient_token_env = \"TANDEM_TOKEN\"\n";
        let c = Config::parse(text, "t.toml", Path::new("/tmp"), &env).unwrap();
        assert_eq!(c.server.client_token.as_deref(), Some("t0ken"));
        assert!(parse("[server]\nlisten = \"[::1]:8080\"\n").is_ok());
    }

    #[test]
    fn server_hosts_are_normalised_and_cors_origins_checked() {
        let c = parse("[server]\nallowed_hosts = [\"Box.LAN.\", \"[fd00::1]:8080\"]\n").unwrap();
        assert_eq!(c.server.allowed_hosts, ["box.lan", "fd00::1"]);
        let c = parse("[server]\ncors_origins = [\"http://localhost:3000\"]\n").unwrap();
        assert_eq!(c.server.cors_origins, ["http://localhost:3000"]);
        for bad in ["*", "localhost:3000", "https://a.example/app"] {
            let e = parse(&format!("[server]\n\ncors_origins = [\"{bad}\"]\n")).unwrap_err();
            assert_eq!(e.line, Some(3), "{e:?}");
            assert!(e.reason.contains("cors_origins"), "{e:?}");
        }
    }

    #[test]
    fn serving_threads_default_to_one_per_core_and_are_bounded() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(parse("").unwrap().server.threads, cores);
        assert_eq!(parse("[server]\nthreads = 0\n").unwrap().server.threads, cores);
        assert_eq!(parse("[server]\nthreads = 3\n").unwrap().server.threads, 3);
        let e = parse("[server]\n\nthreads = 65\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
        assert!(e.reason.contains("server.threads"), "{e:?}");
        assert!(parse("[server]\nthreads = -1\n").is_err());
    }
}
