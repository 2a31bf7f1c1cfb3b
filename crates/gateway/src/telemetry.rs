//! Prometheus metrics (`GET /metrics`) and the per-request log line.
//!
//! Counters and histograms are recorded where things happen (one call per
//! request, never per chunk); gauges that describe state (battery, queue,
//! breakers) are sampled when `/metrics` is scraped, so an idle daemon does
//! no work for them.
//!
//! The status page's record of recent decisions lives here too: a bounded
//! ring of where each request went and why, never what it said.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::{Handover, TandemInfo, Usage};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use crate::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets for latencies, from sub-millisecond proxying to long answers.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the process-wide recorder once; later calls reuse it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Drains the histograms' recorded samples into their buckets every few
/// seconds. With `install_recorder` nothing else does: without this, every
/// request's samples stayed in memory until the next scrape of `/metrics`,
/// and a daemon nobody scrapes grew by a few bytes per request forever.
///
/// It also gives freed heap memory back to the system once a tick passes
/// with no request finishing after some did ([`crate::memory`]).
pub async fn upkeep() {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut trimmed) = (finished(), finished());
    loop {
        tick.tick().await;
        if let Some(h) = handle() {
            h.run_upkeep();
        }
        let done = finished();
        if done == seen && done != trimmed {
            crate::memory::release_free_memory();
            trimmed = done;
        }
        seen = done;
    }
}

/// Requests finished since start.
fn finished() -> u64 {
    RECENT.lock().unwrap_or_else(PoisonError::into_inner).0
}

const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What one finished request reports.
pub struct Outcome<'a> {
    pub info: &'a TandemInfo,
    pub status: u16,
    pub stream: bool,
    pub ttft: Option<Duration>,
    pub total: Duration,
    pub usage: Option<Usage>,
}

pub fn record(o: &Outcome<'_>) {
    remember(o);
    let route = o.info.route.clone();
    counter!("tandem_requests_total", "route" => route.clone(), "rule" => o.info.rule.clone(), "status" => o.status.to_string())
        .increment(1);
    histogram!("tandem_request_duration_seconds", "backend" => route.clone()).record(o.total.as_secs_f64());
    if let Some(t) = o.ttft {
        histogram!("tandem_time_to_first_token_seconds", "backend" => route.clone()).record(t.as_secs_f64());
    }
    if let Some(u) = o.usage {
        counter!("tandem_tokens_total", "backend" => route.clone(), "kind" => "prompt")
            .increment(u64::from(u.prompt_tokens));
        counter!("tandem_tokens_total", "backend" => route.clone(), "kind" => "completion")
            .increment(u64::from(u.completion_tokens));
    }
    for h in &o.info.handovers {
        counter!(
            "tandem_failovers_total",
            "from" => h.from.clone(),
            "to" => h.to.clone(),
            "reason" => h.reason.clone(),
            "after_content" => h.after_content.to_string()
        )
        .increment(1);
        if !h.from.is_empty() {
            counter!("tandem_backend_errors_total", "backend" => h.from.clone(), "kind" => h.reason.clone())
                .increment(1);
        }
    }
    // One line per request: at info when something went wrong or a backend
    // was replaced, at debug for a plain success. A line costs 12–30 µs of
    // CPU (formatting and a write to stderr), as much as a fifth of what the
    // gateway spends on a request; the metrics and `/v1/status/decisions`
    // record every request anyway.
    macro_rules! done {
        ($level:ident) => {
            tracing::$level!(
                status = o.status,
                route = %o.info.route,
                rule = %o.info.rule,
                stream = o.stream,
                ttft_ms = o.ttft.map(|t| t.as_secs_f64() * 1000.0),
                total_ms = o.total.as_secs_f64() * 1000.0,
                prompt_tokens = o.usage.map(|u| u.prompt_tokens),
                completion_tokens = o.usage.map(|u| u.completion_tokens),
                handovers = o.info.handovers.len(),
                "request done"
            )
        };
    }
    if o.status >= 400 || !o.info.handovers.is_empty() {
        done!(info);
    } else {
        done!(debug);
    }
}

/// Decisions the status page can show; older ones drop off the front.
pub const RECENT_CAPACITY: usize = 200;

/// One finished request as `GET /v1/status/decisions` shows it: where it
/// went and why, never what it said (entity labels, not their values).
#[derive(Debug, Clone, Serialize)]
pub struct RecentDecision {
    /// Increases by one per request, so a reader can tell new entries apart.
    pub seq: u64,
    /// When the request finished, Unix milliseconds.
    pub at_ms: u64,
    /// The backend that produced the answer; empty when none was chosen
    /// (the request failed before routing: bad body, unknown model).
    pub route: String,
    pub rule: String,
    pub complexity: Option<f64>,
    pub privacy: Option<f64>,
    /// The policy's privacy verdict: `never`, `redacted` or `allowed`.
    pub cloud: Option<String>,
    pub cloud_allowed: bool,
    pub entities: Vec<String>,
    pub status: u16,
    pub stream: bool,
    pub ttft_ms: Option<f64>,
    pub total_ms: f64,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub handovers: Vec<Handover>,
}

/// Process-wide like the metrics recorder: one daemon per process.
static RECENT: Mutex<(u64, VecDeque<RecentDecision>)> = Mutex::new((0, VecDeque::new()));

fn remember(o: &Outcome<'_>) {
    let scores = o.info.scores.as_ref();
    let score = |key: &str| scores.and_then(|s| s[key].as_f64());
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut entry = RecentDecision {
        seq: 0,
        at_ms,
        route: o.info.route.clone(),
        rule: o.info.rule.clone(),
        complexity: score("complexity"),
        privacy: score("privacy"),
        cloud: scores.and_then(|s| s["cloud"].as_str()).map(str::to_owned),
        cloud_allowed: o.info.cloud_allowed,
        entities: o.info.entities.clone(),
        status: o.status,
        stream: o.stream,
        ttft_ms: o.ttft.map(|t| t.as_secs_f64() * 1000.0),
        total_ms: o.total.as_secs_f64() * 1000.0,
        prompt_tokens: o.usage.map(|u| u.prompt_tokens),
        completion_tokens: o.usage.map(|u| u.completion_tokens),
        handovers: o.info.handovers.clone(),
    };
    // A panic elsewhere while holding the lock leaves a ring that is still
    // consistent (pushes and pops are whole), so keep using it.
    let mut ring = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    ring.0 += 1;
    entry.seq = ring.0;
    if ring.1.len() >= RECENT_CAPACITY {
        ring.1.pop_front();
    }
    ring.1.push_back(entry);
}

/// The recent decisions, oldest first.
pub fn recent_decisions() -> Vec<RecentDecision> {
    let ring = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    ring.1.iter().cloned().collect()
}

pub fn redaction(placeholders: usize) {
    counter!("tandem_redactions_total").increment(1);
    counter!("tandem_redacted_values_total").increment(placeholders as u64);
}

/// Samples the state gauges and renders the Prometheus text.
pub fn render(state: &AppState) -> String {
    let Some(h) = handle() else {
        return String::new();
    };
    for t in &state.tiers.tiers {
        let health = t.probe.health();
        if t.is_local() {
            if let Some(tps) = health.tps {
                gauge!("tandem_local_tokens_per_second", "tier" => t.name.clone()).set(tps);
            }
            gauge!("tandem_local_queue_depth", "tier" => t.name.clone()).set(f64::from(health.queue));
        } else {
            gauge!("tandem_cloud_up", "tier" => t.name.clone()).set(if health.ready { 1.0 } else { 0.0 });
            gauge!("tandem_cloud_rtt_ms", "tier" => t.name.clone()).set(health.rtt_ms);
            if let Some(eps) = t.probe.status()["endpoints"].as_array() {
                for ep in eps {
                    let state = match ep["state"].as_str() {
                        Some("closed") => 0.0,
                        Some("half_open") => 1.0,
                        _ => 2.0,
                    };
                    let url = ep["url"].as_str().unwrap_or("").to_owned();
                    gauge!("tandem_breaker_state", "tier" => t.name.clone(), "endpoint" => url).set(state);
                }
            }
        }
    }
    if let Some(dev) = &state.routing.device {
        let d = dev.current();
        gauge!("tandem_battery_level").set(f64::from(d.battery.unwrap_or(1.0)));
        gauge!("tandem_charging").set(if d.charging { 1.0 } else { 0.0 });
        gauge!("tandem_thermal_level").set(d.thermal as u8 as f64);
        gauge!("tandem_mem_available_bytes").set(d.mem_available as f64);
    }
    let r = &state.routing;
    gauge!("tandem_policy_reloads", "result" => "ok")
        .set(r.reloads_ok.load(std::sync::atomic::Ordering::Relaxed) as f64);
    gauge!("tandem_policy_reloads", "result" => "failed")
        .set(r.reloads_failed.load(std::sync::atomic::Ordering::Relaxed) as f64);
    h.render()
}

/// Logs prompt and answer only when the operator turned it on.
pub fn content(messages: &[api::Message], answer: &str) {
    if crate::logging::content_logging() {
        let prompt = serde_json::to_string(messages).unwrap_or_default();
        tracing::info!(prompt = %prompt, answer = %answer, "content");
    }
}
