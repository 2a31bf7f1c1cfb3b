//! From a request to a [`Plan`]: the signals, the policy's decision, and the
//! backends it allows.
//!
//! The policy sits behind a lock that is only written on reload; a reload
//! parses and validates the whole file first and swaps it in only when it is
//! valid, so a broken edit leaves the old policy in force.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use api::{ApiError, ChatRequest, TandemInfo};
use axum::http::HeaderMap;
use policy::{CloudAllowed, Decision, Policy, PolicyError, Signals, Target, Targets, TierKind};
use scoring::{RequestShape, Scorer, Scores, Turn};
use serde_json::{Value, json};

use crate::config::WarmStandby;
use crate::engine::Plan;
use crate::state::{Tier, Tiers};

/// A policy and when it took effect.
pub struct Loaded {
    pub policy: Policy,
    pub loaded_at: SystemTime,
}

pub struct Routing {
    scorer: Scorer,
    policy: RwLock<Arc<Loaded>>,
    targets: Targets,
    /// The file reloads read; `None` for a policy given as text (tests, embedded).
    policy_file: Option<PathBuf>,
    pub device: Option<device::DeviceMonitor>,
    /// The cascade's test and when to keep the local fallback warm.
    pub hybrid: crate::config::HybridConfig,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
}

/// The headers through which an app hints at routing.
pub const HINT_PRIVACY: &str = "x-tandem-privacy";
pub const HINT_ROUTE: &str = "x-tandem-route";
pub const HINT_APP: &str = "x-tandem-app";

impl Routing {
    /// The policy's targets: every configured tier, plus a `cloud` tier that
    /// is never up when none is configured, so the shipped policy stays valid
    /// on a local-only device (its "offline stays local" rule answers).
    pub fn targets_for(tiers: &Tiers) -> Targets {
        Self::targets(
            tiers.tiers.iter().filter(|t| t.is_local()).map(|t| t.name.as_str()),
            tiers.tiers.iter().filter(|t| !t.is_local()).map(|t| t.name.as_str()),
        )
    }

    pub fn targets<'a>(local: impl Iterator<Item = &'a str>, cloud: impl Iterator<Item = &'a str>) -> Targets {
        let mut targets = Targets::new();
        let (mut any_local, mut any_cloud) = (false, false);
        for name in local {
            targets.insert(name, TierKind::Local);
            any_local = true;
        }
        for name in cloud {
            targets.insert(name, TierKind::Cloud);
            any_cloud = true;
        }
        if !any_cloud {
            targets.insert("cloud", TierKind::Cloud);
        }
        if !any_local {
            targets.insert("local", TierKind::Local);
        }
        targets
    }

    pub fn new(policy_text: &str, policy_path: &Path, from_file: bool, targets: Targets) -> Result<Self, PolicyError> {
        let policy = Policy::parse(policy_text, policy_path, &targets)?;
        Ok(Routing {
            scorer: Scorer::new(),
            policy: RwLock::new(Arc::new(Loaded {
                policy,
                loaded_at: SystemTime::now(),
            })),
            targets,
            policy_file: from_file.then(|| policy_path.to_path_buf()),
            device: None,
            hybrid: crate::config::HybridConfig::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload_error: Mutex::new(None),
        })
    }

    pub fn policy(&self) -> Arc<Loaded> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn policy_file(&self) -> Option<&Path> {
        self.policy_file.as_deref()
    }

    /// Watches `file` for a policy, though the one in force came from
    /// elsewhere (the embedded policy, while the file does not exist yet).
    pub fn watching(mut self, file: PathBuf) -> Self {
        self.policy_file = Some(file);
        self
    }

    /// Re-reads the policy file. A file that fails validation is refused and
    /// the policy in force stays.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.policy_file else {
            return Ok(());
        };
        let result = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))
            .and_then(|text| Policy::parse(&text, path, &self.targets).map_err(|e| e.to_string()));
        match result {
            // The text in force already (the watcher's first look, a touch,
            // an edit undone): nothing to swap, but the file is good again.
            Ok(policy) if policy.content_hash() == self.policy().policy.content_hash() => {
                if let Ok(mut e) = self.last_reload_error.lock() {
                    *e = None;
                }
                Ok(())
            }
            Ok(policy) => {
                let loaded = Arc::new(Loaded {
                    policy,
                    loaded_at: SystemTime::now(),
                });
                match self.policy.write() {
                    Ok(mut p) => *p = loaded,
                    Err(poisoned) => *poisoned.into_inner() = loaded,
                }
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut e) = self.last_reload_error.lock() {
                    *e = None;
                }
                tracing::info!(file = %path.display(), "policy reloaded");
                Ok(())
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "policy edit refused; the previous policy stays in force");
                if let Ok(mut last) = self.last_reload_error.lock() {
                    *last = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    pub fn last_reload_error(&self) -> Option<String> {
        self.last_reload_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn score(&self, req: &ChatRequest) -> Scores {
        let texts: Vec<(api::Role, std::borrow::Cow<'_, str>)> = req.texts().collect();
        let turns: Vec<Turn<'_>> = texts.iter().map(|(role, t)| Turn { role: *role, text: t }).collect();
        let shape = RequestShape {
            max_tokens: req.max_tokens(),
            has_tools: req.has_tools(),
            has_schema: req.response_format.as_ref().is_some_and(|f| {
                f.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t == "json_schema" || t == "json_object")
            }),
        };
        // What leaves besides the contents (a name, earlier tool-call
        // arguments, `user`, `metadata`) is scanned for privacy too, so a
        // value that appears only there still keeps the request local and
        // is redacted (`redact` reads the same list).
        self.scorer.score_with_side(&turns, &req.side_texts(), shape)
    }

    /// All the signals for one request.
    /// `tiers: None` (the offline commands) assumes every backend is up.
    pub fn signals(&self, req: &ChatRequest, headers: &HeaderMap, scores: &Scores, tiers: Option<&Tiers>) -> Signals {
        // A hint can raise privacy, never lower it below what the text shows;
        // repeated headers and comma-separated lists fail closed: the
        // strongest item counts.
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
        let hint_privacy = strongest_hint(headers, HINT_PRIVACY, &["high", "medium"]);
        let hinted = match hint_privacy.as_str() {
            "high" => 1.0,
            "medium" => 0.5,
            _ => 0.0,
        };
        let mut entities: Vec<String> = scores.entities.iter().map(|e| e.label.as_str().to_owned()).collect();
        entities.sort_unstable();
        entities.dedup();
        let mut s = Signals {
            complexity: f64::from(scores.complexity),
            privacy: raise_privacy(f64::from(scores.privacy), hinted),
            entities,
            est_prompt_tokens: i64::from(scores.est_prompt_tokens),
            max_tokens: req.max_tokens().map(i64::from).unwrap_or(0),
            has_tools: req.has_tools(),
            hint_privacy,
            hint_route: strongest_hint(headers, HINT_ROUTE, &["local"]),
            app: header(HINT_APP).to_owned(),
            ..Signals::default()
        };
        if let Some(dev) = &self.device {
            device_signals(&mut s, &dev.current());
        }
        let Some(tiers) = tiers else {
            return s;
        };
        let cloud: Vec<_> = tiers
            .tiers
            .iter()
            .filter(|t| !t.is_local())
            .map(|t| t.probe.health())
            .collect();
        s.cloud_up = cloud.iter().any(|h| h.ready);
        s.cloud_rtt_ms = cloud.iter().map(|h| h.rtt_ms).fold(f64::INFINITY, f64::min);
        if !s.cloud_rtt_ms.is_finite() {
            s.cloud_rtt_ms = 0.0;
        }
        match tiers.first_local().map(|t| t.probe.health()) {
            Some(h) => {
                s.local_ready = h.ready;
                s.local_queue = i64::from(h.queue);
                // Unknown (not measured yet): the default, an adequate speed.
                if let Some(tps) = h.tps {
                    s.local_tps = tps;
                }
            }
            None => {
                s.local_ready = false;
                s.local_queue = 0;
                s.local_tps = 0.0;
            }
        }
        s
    }

    /// Scores, signals and the policy's decision: all the work routing does
    /// per request (what the decision benchmark measures).
    pub fn decide(&self, req: &ChatRequest, headers: &HeaderMap, tiers: Option<&Tiers>) -> (Scores, Signals, Decision) {
        let scores = self.score(req);
        let signals = self.signals(req, headers, &scores, tiers);
        let decision = self.policy().policy.decide(&signals);
        (scores, signals, decision)
    }

    /// The one place where the route is decided.
    pub fn plan(&self, req: &ChatRequest, headers: &HeaderMap, tiers: &Tiers) -> Result<Plan, ApiError> {
        let (scores, signals, decision) = self.decide(req, headers, Some(tiers));
        let explicit = match req.model.as_str() {
            "auto" => None,
            "local" => Some(tiers.first_local().ok_or_else(|| unknown_model("local"))?),
            "cloud" => Some(tiers.first_cloud().ok_or_else(|| unknown_model("cloud"))?),
            name => Some(tiers.get(name).ok_or_else(|| unknown_model(name))?),
        };
        let (attempts, rule, redact) = match explicit {
            // The app named a tier: that tier only, and still never the
            // cloud when the decision keeps the text on the device.
            Some(tier) => {
                if !decision.may_use(tier.is_local()) {
                    return Err(ApiError::forbidden(
                        format!(
                            "the policy keeps this request on the device (rule `{}`); the cloud tier `{}` may not answer it",
                            decision.rule, tier.name
                        ),
                        "privacy_policy",
                    ));
                }
                (vec![tier], "model".to_owned(), decision.must_redact(tier.is_local()))
            }
            None => {
                let names = ordered_tiers(&decision);
                let attempts: Vec<&Tier> = names
                    .iter()
                    .filter_map(|n| tiers.get(n))
                    .filter(|t| decision.may_use(t.is_local()))
                    .collect();
                let redact = attempts.iter().any(|t| decision.must_redact(t.is_local()));
                (attempts, decision.rule.clone(), redact)
            }
        };
        if attempts.is_empty() {
            return Err(ApiError::new(
                503,
                "server_error",
                Some("no_backend"),
                format!(
                    "rule `{}` chose tiers that are not configured or not allowed",
                    decision.rule
                ),
            ));
        }
        let info = TandemInfo {
            route: attempts[0].name.clone(),
            rule,
            scores: Some(json!({
                "complexity": round3(signals.complexity),
                "privacy": round3(signals.privacy),
                "cloud": decision.cloud.as_str(),
            })),
            // Already sorted and deduplicated by `signals`.
            entities: signals.entities.clone(),
            cloud_allowed: decision.cloud_allowed(),
            handovers: vec![],
        };
        Ok(Plan {
            attempts: attempts.iter().map(|t| t.backend.clone()).collect(),
            info,
            cascade: (matches!(decision.target, Target::Cascade { .. }) && explicit.is_none()).then_some(
                crate::engine::Cascade {
                    hold_tokens: self.hybrid.cascade_hold_tokens,
                    min_mean_logprob: self.hybrid.cascade_min_mean_logprob,
                },
            ),
            warm_standby: self.warm_standby(&signals),
            redact: redact.then(|| crate::engine::Redact::new(req, &scores)),
        })
    }

    /// Whether this request's local fallback is kept warm while the cloud
    /// answers (see [`WarmStandby`]).
    fn warm_standby(&self, s: &Signals) -> bool {
        match self.hybrid.warm_standby {
            WarmStandby::Always => true,
            WarmStandby::Never => false,
            WarmStandby::Auto => s.charging && !s.power_saver && s.thermal_level < device::Thermal::Serious as i64,
        }
    }

    /// The decision alone, for `POST /v1/route` and `tandem route`.
    pub fn explain(&self, req: &ChatRequest, headers: &HeaderMap, tiers: Option<&Tiers>) -> Value {
        let (scores, signals, decision) = self.decide(req, headers, tiers);
        explain_json(&decision, &signals, &scores, req.messages.len())
    }

    pub fn status(&self) -> Value {
        let loaded = self.policy();
        let watching = self.policy_file.as_ref().map(|p| p.display().to_string());
        // The file in force; none while the embedded policy stands in for a
        // file that does not exist yet.
        let file = watching
            .clone()
            .filter(|_| self.policy_file.as_deref() == Some(loaded.policy.source_path()));
        json!({
            "file": file,
            "watching": watching,
            "hash": loaded.policy.content_hash(),
            "loaded_at": loaded.loaded_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "reloads_ok": self.reloads_ok.load(Ordering::Relaxed),
            "reloads_failed": self.reloads_failed.load(Ordering::Relaxed),
            "last_reload_error": self.last_reload_error(),
            "rules": loaded.policy.describe(),
        })
    }
}

/// Target first, then fallbacks, without repeats; strategies expand to tiers.
fn ordered_tiers(d: &Decision) -> Vec<String> {
    let mut names: Vec<String> = match &d.target {
        Target::Tier { name, .. } => vec![name.clone()],
        Target::Cascade { local, cloud } => vec![local.clone(), cloud.clone()],
        Target::RedactThenCloud { cloud } => vec![cloud.clone()],
    };
    for f in &d.fallbacks {
        if !names.contains(f) {
            names.push(f.clone());
        }
    }
    names
}

/// The entities for an explanation: each in a message (`message`: its
/// index) or in one of the request's other strings (`side`: its index in
/// `ChatRequest::side_texts`); offsets in characters.
pub fn entities_json(scores: &Scores, messages: usize) -> Vec<Value> {
    scores
        .entities
        .iter()
        .map(|e| {
            let (key, at) = match e.message.checked_sub(messages) {
                Some(k) => ("side", k),
                None => ("message", e.message),
            };
            json!({"label": e.label.as_str(), key: at, "start": e.start, "end": e.end})
        })
        .collect()
}

pub fn explain_json(d: &Decision, s: &Signals, scores: &Scores, messages: usize) -> Value {
    let entities = entities_json(scores, messages);
    json!({
        "route": d.target.label(),
        "rule": d.rule,
        "target": d.target,
        "fallbacks": d.fallbacks,
        "cloud": d.cloud.as_str(),
        "cloud_allowed": d.cloud != CloudAllowed::Never,
        "explain": d.explain,
        "signals": {
            "complexity": round3(s.complexity),
            "privacy": round3(s.privacy),
            "entities": s.entities,
            "battery": s.battery,
            "charging": s.charging,
            "power_saver": s.power_saver,
            "thermal": s.thermal,
            "cloud_up": s.cloud_up,
            "cloud_rtt_ms": s.cloud_rtt_ms,
            "local_ready": s.local_ready,
            "local_queue": s.local_queue,
            "local_tps": s.local_tps,
            "mem_available_mb": s.mem_available_mb,
            "est_prompt_tokens": s.est_prompt_tokens,
            "max_tokens": s.max_tokens,
            "has_tools": s.has_tools,
            "hint_privacy": s.hint_privacy,
            "hint_route": s.hint_route,
        },
        "entities": entities,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The device's part of the signals. What the device cannot tell keeps the
/// defaults (a full battery, plenty of memory): a missing sensor must not by
/// itself move work.
fn device_signals(s: &mut Signals, d: &device::DeviceState) {
    s.battery = f64::from(d.battery.unwrap_or(1.0));
    s.charging = d.charging;
    s.power_saver = d.power_saver;
    s.thermal = d.thermal.as_str().to_owned();
    s.thermal_level = d.thermal as i64;
    // 0 is "unknown" (no /proc/meminfo, nothing from the host app), not a
    // device out of memory.
    if d.mem_available > 0 {
        s.mem_available_mb = i64::try_from(d.mem_available >> 20).unwrap_or(i64::MAX);
    }
}

/// A hint header's value: every instance of the header and every
/// comma-separated item in each, lower-cased; the first of `strongest` found
/// wins, else the first item (so an unknown value still shows in the
/// explanation). Proxies may add a header instance or join values with
/// commas; neither may weaken a hint.
fn strongest_hint(headers: &HeaderMap, name: &str, strongest: &[&str]) -> String {
    let items: Vec<String> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|i| i.trim().to_ascii_lowercase())
        .filter(|i| !i.is_empty())
        .collect();
    strongest
        .iter()
        .find(|s| items.iter().any(|i| i == *s))
        .map(|s| (*s).to_owned())
        .or_else(|| items.into_iter().next())
        .unwrap_or_default()
}

/// A hint raises the text's privacy score, never lowers it; a NaN score
/// stays NaN, which the policy reads as 1.0 (`f64::max` would turn it into
/// the hint, 0 without one: a broken score must fail closed).
fn raise_privacy(text: f64, hinted: f64) -> f64 {
    if text.is_nan() { text } else { text.max(hinted) }
}

fn unknown_model(name: &str) -> ApiError {
    ApiError::not_found(
        format!("the model `{name}` does not exist; GET /v1/models lists the configured ones"),
        "model_not_found",
    )
    .with_param("model")
}

/// Polls the policy file and reloads when its bytes change. Polling (not
/// inotify) works the same on every OS and inside containers with
/// bind-mounted files, at the cost of up to one interval of delay. The
/// content is compared, not the modification time: an edit of the same
/// length within the file system's time granularity (or one that keeps the
/// time, as `cp -p` and some editors do) is seen too. A policy is a few
/// kilobytes: reading it once per interval costs nothing.
pub async fn watch_policy(routing: Arc<Routing>, every: Duration) {
    use std::hash::{Hash, Hasher};
    let Some(path) = routing.policy_file().map(Path::to_path_buf) else {
        return;
    };
    let stamp = |p: &Path| {
        std::fs::read(p).ok().map(|bytes| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        })
    };
    // The first look always reads the file: an edit made after the policy
    // in force was read, before this task started, is not lost (a text
    // already in force is not swapped again).
    let mut last = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now.is_some() && now != last {
            last = now;
            let _ = routing.reload();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{HINT_PRIVACY, HINT_ROUTE, Signals, device_signals, raise_privacy, strongest_hint};
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn hint_headers_fail_closed_over_instances_and_lists() {
        let hints = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            (
                strongest_hint(&h, HINT_PRIVACY, &["high", "medium"]),
                strongest_hint(&h, HINT_ROUTE, &["local"]),
            )
        };
        assert_eq!(hints(&[]), (String::new(), String::new()));
        assert_eq!(hints(&[(HINT_PRIVACY, " High ")]).0, "high");
        // A second instance, added by a proxy, cannot be ignored.
        assert_eq!(hints(&[(HINT_PRIVACY, "normal"), (HINT_PRIVACY, "high")]).0, "high");
        assert_eq!(hints(&[(HINT_PRIVACY, "medium, high")]).0, "high");
        assert_eq!(hints(&[(HINT_PRIVACY, "low,medium")]).0, "medium");
        assert_eq!(hints(&[(HINT_ROUTE, "local, local")]).1, "local");
        assert_eq!(hints(&[(HINT_ROUTE, "cloud"), (HINT_ROUTE, "LOCAL")]).1, "local");
        // An unknown value is kept for the explanation.
        assert_eq!(hints(&[(HINT_ROUTE, "moon")]).1, "moon");
    }

    #[test]
    fn unknown_memory_keeps_the_default_known_memory_is_used() {
        let mut s = Signals::default();
        let default_mb = s.mem_available_mb;
        device_signals(&mut s, &device::DeviceState::unknown("fake"));
        assert_eq!(s.mem_available_mb, default_mb);
        assert_eq!((s.battery, s.thermal.as_str()), (1.0, "nominal"));
        let known = device::DeviceState {
            mem_available: 512 << 20,
            ..device::DeviceState::unknown("fake")
        };
        device_signals(&mut s, &known);
        assert_eq!(s.mem_available_mb, 512);
    }

    #[test]
    fn a_hint_raises_privacy_and_a_nan_score_fails_closed() {
        assert_eq!(raise_privacy(0.2, 1.0), 1.0);
        assert_eq!(raise_privacy(0.9, 0.5), 0.9);
        assert_eq!(raise_privacy(0.9, 0.0), 0.9);
        assert!(raise_privacy(f64::NAN, 0.0).is_nan());
        assert!(raise_privacy(f64::NAN, 1.0).is_nan());
    }
}
