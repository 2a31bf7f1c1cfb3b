//! Building the daemon from its configuration and running it until a signal.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use api::Backend;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::{Config, EMBEDDED_POLICY};
use crate::routing::Routing;
use crate::security::Security;
use crate::state::{AppState, Probe, Tier, TierHealth, Tiers};

struct LocalProbe(Arc<local::LocalBackend>);

/// After a failed load the local tier counts as not ready for this long;
/// then the policy may route to it again, and the next request it gets
/// tries the load again (memory may have been freed since). Requests the
/// policy keeps on the device try it at once either way.
const LOAD_RETRY_SECS: u64 = 30;

/// Whether routing may count on the local tier: loaded, loadable (a model
/// not loaded yet loads on the first request), or its last load failed
/// long enough ago to try again.
fn local_ready(loaded: bool, last_load_error_secs: Option<u64>) -> bool {
    loaded || last_load_error_secs.is_none_or(|secs| secs >= LOAD_RETRY_SECS)
}

impl Probe for LocalProbe {
    fn health(&self) -> TierHealth {
        let s = self.0.status();
        TierHealth {
            ready: local_ready(s.loaded, s.last_load_error_secs),
            queue: u32::try_from(s.queued + s.busy).unwrap_or(u32::MAX),
            tps: s.gen_tps.or(s.bench_gen_tps),
            rtt_ms: 0.0,
        }
    }
    fn status(&self) -> Value {
        json!(self.0.status())
    }
}

struct CloudProbe(Arc<cloud::CloudBackend>);

impl Probe for CloudProbe {
    fn health(&self) -> TierHealth {
        TierHealth {
            ready: self.0.is_up(),
            queue: 0,
            tps: None,
            rtt_ms: self.0.rtt_ms().unwrap_or(0.0),
        }
    }
    fn status(&self) -> Value {
        json!(self.0.health())
    }
}

/// Loads the models, connects the cloud tiers, reads the policy. Cloud keys
/// named by `api_key_env` are read from `env`.
pub async fn build(cfg: &Config, env: &dyn cloud::EnvSource) -> anyhow::Result<AppState> {
    let mut tiers = Vec::new();
    for t in &cfg.local {
        let cfg_t = t.clone();
        let backend = tokio::task::spawn_blocking(move || local::LocalBackend::new(&cfg_t))
            .await
            .context("loading a local model")?
            .with_context(|| format!("local tier `{}`", t.name))?;
        tiers.push(Tier {
            name: t.name.clone(),
            backend: backend.clone() as Arc<dyn Backend>,
            probe: Arc::new(LocalProbe(backend)),
        });
    }
    for t in &cfg.cloud {
        let backend = Arc::new(cloud::CloudBackend::new(t, env).with_context(|| format!("cloud tier `{}`", t.name))?);
        tiers.push(Tier {
            name: t.name.clone(),
            backend: backend.clone() as Arc<dyn Backend>,
            probe: Arc::new(CloudProbe(backend)),
        });
    }
    if cfg.cloud.is_empty() {
        tracing::warn!(
            "no cloud tier configured: running local-only (set TANDEM_CLOUD_URL or add [[cloud]] to the config)"
        );
    }
    if cfg.local.is_empty() {
        tracing::warn!("no local tier configured: every answer comes from the cloud");
    }
    let tiers = Tiers { tiers };
    let targets = Routing::targets_for(&tiers);
    let mut routing = match std::fs::read_to_string(&cfg.policy_file) {
        Ok(text) => Routing::new(&text, &cfg.policy_file, true, targets)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(file = %cfg.policy_file.display(), "policy file not found: using the embedded default policy until it appears");
            Routing::new(
                EMBEDDED_POLICY,
                std::path::Path::new("<embedded config/policy.toml>"),
                false,
                targets,
            )?
            .watching(cfg.policy_file.clone())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", cfg.policy_file.display())),
    };
    let settings = cfg.device.validate().map_err(|e| anyhow::anyhow!("device: {e}"))?;
    routing.device = Some(device::DeviceMonitor::from_config(&settings).await);
    routing.hybrid = cfg.hybrid;
    Ok(AppState {
        security: Security {
            allowed_hosts: cfg.server.allowed_hosts.clone(),
            client_token: cfg.server.client_token.clone(),
            max_body_bytes: cfg.server.max_body_bytes,
            body_timeout: cfg.server.body_timeout,
            cors_origins: cfg.server.cors_origins.clone(),
        },
        tiers,
        routing: Arc::new(routing),
        started: Instant::now(),
    })
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    tracing::info!(config = %cfg.source, "starting tandem");
    let state = Arc::new(build(&cfg, &cloud::ProcessEnv).await?);
    let listener = TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, threads = cfg.server.threads, tiers = ?state.tiers.tiers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), "listening on http://{addr}/v1");
    tokio::spawn(crate::routing::watch_policy(state.routing.clone(), cfg.policy_reload));
    tokio::spawn(crate::telemetry::upkeep());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(crate::server::run(listener, state.clone(), cfg.server.threads, {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    }));
    shutdown_signal().await;
    tracing::info!(
        grace_ms = cfg.server.shutdown_grace.as_millis() as u64,
        "shutting down: no new connections"
    );
    let _ = stop_tx.send(true);
    let mut server = server;
    match tokio::time::timeout(cfg.server.shutdown_grace, &mut server).await {
        Ok(res) => res.context("server task")?.context("serving")?,
        Err(_) => {
            tracing::warn!("grace period over: ending the remaining streams with an error event");
            crate::server::abort_streams();
            // Let the streams write their error event and [DONE].
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut server).await;
        }
    }
    // Dropping the state unloads the models.
    drop(state);
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{LOAD_RETRY_SECS, local_ready};

    #[test]
    fn a_failed_load_is_tried_again_after_a_while() {
        assert!(local_ready(false, None), "not loaded yet: loads on demand");
        assert!(local_ready(true, None));
        assert!(!local_ready(false, Some(0)), "just failed");
        assert!(!local_ready(false, Some(LOAD_RETRY_SECS - 1)));
        assert!(local_ready(false, Some(LOAD_RETRY_SECS)), "time to try again");
    }
}
