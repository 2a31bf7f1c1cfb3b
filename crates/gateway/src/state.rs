//! What every handler shares: the configured tiers, the security settings
//! and the routing decision.

use std::sync::Arc;

use api::{ApiError, Backend, ChatRequest, TandemInfo};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::engine::Plan;
use crate::security::Security;

/// What routing needs to know about a tier right now, cheaply.
#[derive(Debug, Clone, Copy, Default)]
pub struct TierHealth {
    /// Can answer now (model loaded or loadable; cloud breaker not open everywhere).
    pub ready: bool,
    /// Requests waiting for a slot (local) or in flight (cloud).
    pub queue: u32,
    /// Generation speed measured on this device (local only).
    pub tps: f64,
    /// Smoothed time to response headers (cloud only).
    pub rtt_ms: f64,
}

/// A view of a backend's state for routing and the status endpoint.
pub trait Probe: Send + Sync {
    fn health(&self) -> TierHealth;
    fn status(&self) -> Value;
}

pub struct Tier {
    pub name: String,
    pub backend: Arc<dyn Backend>,
    pub probe: Arc<dyn Probe>,
}

impl Tier {
    pub fn is_local(&self) -> bool {
        self.backend.is_local()
    }
}

/// The configured tiers, local ones first.
pub struct Tiers {
    pub tiers: Vec<Tier>,
    /// The tier `auto` goes to when no policy decides.
    pub default_tier: Option<String>,
}

impl Tiers {
    pub fn get(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    pub fn first_local(&self) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.is_local())
    }

    pub fn first_cloud(&self) -> Option<&Tier> {
        self.tiers.iter().find(|t| !t.is_local())
    }
}

pub struct AppState {
    pub security: Security,
    pub tiers: Tiers,
    /// Chunks buffered between a backend and a slow app before the backend
    /// waits (bounded: a stalled app never grows memory).
    pub stream_buffer: usize,
    pub started: std::time::Instant,
}

impl AppState {
    /// The one place where the route is decided.
    pub fn plan(&self, req: &ChatRequest, _headers: &HeaderMap) -> Result<Plan, ApiError> {
        let (tier, rule): (&Tier, &str) = match req.model.as_str() {
            "auto" => {
                let name = self.tiers.default_tier.as_deref();
                let tier = name
                    .and_then(|n| self.tiers.get(n))
                    .or_else(|| self.tiers.tiers.first())
                    .ok_or_else(no_tiers)?;
                (tier, "default-tier")
            }
            "local" => (self.tiers.first_local().ok_or_else(|| unknown_model("local"))?, "model"),
            "cloud" => (self.tiers.first_cloud().ok_or_else(|| unknown_model("cloud"))?, "model"),
            name => (self.tiers.get(name).ok_or_else(|| unknown_model(name))?, "model"),
        };
        Ok(Plan {
            attempts: vec![tier.backend.clone()],
            info: TandemInfo {
                route: tier.name.clone(),
                rule: rule.to_owned(),
                cloud_allowed: !tier.is_local(),
                ..TandemInfo::default()
            },
            want_token_stats: false,
        })
    }

    pub fn model_names(&self) -> Vec<String> {
        let mut names = vec!["auto".to_owned()];
        if self.tiers.first_local().is_some() {
            names.push("local".to_owned());
        }
        if self.tiers.first_cloud().is_some() {
            names.push("cloud".to_owned());
        }
        names.extend(self.tiers.tiers.iter().map(|t| t.name.clone()));
        names.dedup();
        names
    }

    pub fn ready(&self) -> bool {
        self.tiers.tiers.iter().any(|t| t.probe.health().ready)
    }

    pub fn status(&self) -> Value {
        let tiers: Vec<Value> = self
            .tiers
            .tiers
            .iter()
            .map(|t| json!({"name": t.name, "local": t.is_local(), "status": t.probe.status()}))
            .collect();
        json!({
            "uptime_secs": self.started.elapsed().as_secs(),
            "tiers": tiers,
        })
    }
}

fn unknown_model(name: &str) -> ApiError {
    ApiError::not_found(
        format!("the model `{name}` does not exist; GET /v1/models lists the configured ones"),
        "model_not_found",
    )
    .with_param("model")
}

fn no_tiers() -> ApiError {
    ApiError::new(503, "server_error", Some("no_backend"), "no backend is configured")
}
