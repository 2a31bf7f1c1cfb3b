//! What every handler shares: the configured tiers, the security settings
//! and the routing decision.

use std::sync::Arc;

use api::{ApiError, Backend, ChatRequest};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::engine::Plan;
use crate::routing::Routing;
use crate::security::Security;

/// What routing needs to know about a tier right now, cheaply.
#[derive(Debug, Clone, Copy, Default)]
pub struct TierHealth {
    /// Can answer now (model loaded or loadable; cloud breaker not open everywhere).
    pub ready: bool,
    /// Requests waiting for a slot (local) or in flight (cloud).
    pub queue: u32,
    /// Generation speed measured on this device (local only); `None` until
    /// measured (a model not loaded yet), when routing assumes an adequate
    /// speed rather than a device too slow to answer.
    pub tps: Option<f64>,
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
    pub routing: Arc<Routing>,
    pub started: std::time::Instant,
}

impl AppState {
    /// The one place where the route is decided.
    pub fn plan(&self, req: &ChatRequest, headers: &HeaderMap) -> Result<Plan, ApiError> {
        self.routing.plan(req, headers, &self.tiers)
    }

    pub fn model_names(&self) -> Vec<String> {
        let mut names = vec!["auto".to_owned()];
        if self.tiers.first_local().is_some() {
            names.push("local".to_owned());
        }
        if self.tiers.first_cloud().is_some() {
            names.push("cloud".to_owned());
        }
        // A tier may itself be named `local` or `cloud`: each name once.
        for t in &self.tiers.tiers {
            if !names.contains(&t.name) {
                names.push(t.name.clone());
            }
        }
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
        let device = self.routing.device.as_ref().map(|d| {
            let st = d.status();
            json!({
                "state": d.current(),
                "source": st.source,
                "ok_reads": st.ok_reads,
                "failed_reads": st.failed_reads,
                "last_error": st.last_error.map(|e| e.to_string()),
            })
        });
        json!({
            "uptime_secs": self.started.elapsed().as_secs(),
            "tiers": tiers,
            "device": device,
            "policy": self.routing.status(),
        })
    }
}
