//! The input of a decision: [`Signals`], the names rules may use
//! ([`SIGNAL_NAMES`]), and the CEL variable resolver that exposes a
//! `Signals` value to the compiled conditions without copying it.

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use std::sync::OnceLock;

/// Everything a rule may look at for one request: what the text needs
/// (scoring), what the device can give now (device), how the backends are
/// doing (health), what the request asks for, and the app's hints.
///
/// The gateway fills it per request; the policy only reads it. Every field is
/// a CEL variable of the same name (see [`SIGNAL_NAMES`]): `f64` fields are
/// CEL `double`, `i64` fields `int`, `bool` fields `bool`, strings `string`,
/// and `entities` a `list(string)`. CEL compares `double` with `int`
/// numerically, so `local_tps < 8` and `local_tps < 8.0` mean the same.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// 0..1: how likely a small model fails this request.
    pub complexity: f64,
    /// 0..1: how sensitive the text is, already raised to the app's hint
    /// (the gateway passes max(text score, hint); a hint never lowers it).
    /// A NaN is read by conditions as 1.0: a broken score fails closed.
    pub privacy: f64,
    /// Labels of the entities found (`credit_card`, `email`, `health`, …),
    /// never their values.
    pub entities: Vec<String>,
    /// 0..1 state of charge; 1.0 on a device without a battery.
    pub battery: f64,
    pub charging: bool,
    /// The OS power-saver / low-power mode is on.
    pub power_saver: bool,
    /// `nominal`, `fair`, `serious` or `critical`.
    pub thermal: String,
    /// The same as `thermal`, as 0..3, for comparisons (`thermal_level >= 2`).
    pub thermal_level: i64,
    /// The cloud's circuit breaker is closed (requests may be sent).
    pub cloud_up: bool,
    /// Moving average of the cloud's round-trip time, milliseconds.
    pub cloud_rtt_ms: f64,
    /// The local model is loaded and can take a request.
    pub local_ready: bool,
    /// Requests waiting for a local slot.
    pub local_queue: i64,
    /// Generation speed measured on this device, tokens per second.
    pub local_tps: f64,
    pub mem_available_mb: i64,
    /// Cheap estimate of the prompt's length in tokens.
    pub est_prompt_tokens: i64,
    /// `max_tokens` as requested; 0 when the request did not set it.
    pub max_tokens: i64,
    /// Tools were offered to the model.
    pub has_tools: bool,
    /// The app's privacy hint header: `""` or `"high"`.
    pub hint_privacy: String,
    /// The app's route hint header: `""` or `"local"`. `"local"` forbids the
    /// cloud whatever the rules say (see `Policy::decide`).
    pub hint_route: String,
    /// The calling app's name from its header; `""` when none was sent.
    pub app: String,
}

/// The names of the signals, in the order of [`Signals`]' fields: the only
/// variables a condition may reference.
pub const SIGNAL_NAMES: &[&str] = &[
    "complexity",
    "privacy",
    "entities",
    "battery",
    "charging",
    "power_saver",
    "thermal",
    "thermal_level",
    "cloud_up",
    "cloud_rtt_ms",
    "local_ready",
    "local_queue",
    "local_tps",
    "mem_available_mb",
    "est_prompt_tokens",
    "max_tokens",
    "has_tools",
    "hint_privacy",
    "hint_route",
    "app",
];

impl Default for Signals {
    /// A plugged-in, cool, idle device with the cloud reachable and the local
    /// model ready, and an empty, non-sensitive request: the quiet state that
    /// tests and `/v1/route` examples start from.
    fn default() -> Self {
        Signals {
            complexity: 0.0,
            privacy: 0.0,
            entities: Vec::new(),
            battery: 1.0,
            charging: true,
            power_saver: false,
            thermal: "nominal".to_owned(),
            thermal_level: 0,
            cloud_up: true,
            cloud_rtt_ms: 100.0,
            local_ready: true,
            local_queue: 0,
            local_tps: 30.0,
            mem_available_mb: 4096,
            est_prompt_tokens: 0,
            max_tokens: 0,
            has_tools: false,
            hint_privacy: String::new(),
            hint_route: String::new(),
            app: String::new(),
        }
    }
}

impl Signals {
    /// Whether the app asked for the request to stay on the device.
    /// Compared leniently (case, surrounding blanks) because a stricter
    /// reading could only ever let text leave that the app wanted kept.
    pub fn hint_route_local(&self) -> bool {
        self.hint_route.trim().eq_ignore_ascii_case("local")
    }
}

/// Exposes one [`Signals`] value to CEL. Conditions look variables up by
/// name through it, so no per-request map of variables is built: a lookup
/// is one string match and a small value. The entity list, borrowing the
/// labels, is built on the first lookup and lent to the later ones, which
/// `'x' in entities || 'y' in entities` makes many.
pub(crate) struct SignalResolver<'a> {
    signals: &'a Signals,
    entities: OnceLock<CelList<'a>>,
}

impl<'a> SignalResolver<'a> {
    pub(crate) fn new(signals: &'a Signals) -> Self {
        SignalResolver {
            signals,
            entities: OnceLock::new(),
        }
    }
}

/// A privacy score that is not a number is treated as the highest: a broken
/// score must never be the reason text leaves the device.
pub(crate) fn fail_closed_privacy(privacy: f64) -> f64 {
    if privacy.is_nan() { 1.0 } else { privacy }
}

fn double<'b>(v: f64) -> Option<CowVal<'b, 'b>> {
    Some(CowVal::owned(CelDouble::from(v)))
}

fn int<'b>(v: i64) -> Option<CowVal<'b, 'b>> {
    Some(CowVal::owned(CelInt::from(v)))
}

fn boolean<'b>(v: bool) -> Option<CowVal<'b, 'b>> {
    Some(CowVal::owned(CelBool::from(v)))
}

fn string(v: &str) -> Option<CowVal<'_, '_>> {
    Some(CowVal::owned(CelString::from(v)))
}

impl VariableResolver for SignalResolver<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let s = self.signals;
        match variable {
            "complexity" => double(s.complexity),
            "privacy" => double(fail_closed_privacy(s.privacy)),
            "entities" => {
                let list = self.entities.get_or_init(|| {
                    let items: Vec<Box<dyn Val + '_>> = s
                        .entities
                        .iter()
                        .map(|e| Box::new(CelString::from(e.as_str())) as Box<dyn Val + '_>)
                        .collect();
                    CelList::from(items)
                });
                Some(CowVal::Borrowed(list))
            }
            "battery" => double(s.battery),
            "charging" => boolean(s.charging),
            "power_saver" => boolean(s.power_saver),
            "thermal" => string(&s.thermal),
            "thermal_level" => int(s.thermal_level),
            "cloud_up" => boolean(s.cloud_up),
            "cloud_rtt_ms" => double(s.cloud_rtt_ms),
            "local_ready" => boolean(s.local_ready),
            "local_queue" => int(s.local_queue),
            "local_tps" => double(s.local_tps),
            "mem_available_mb" => int(s.mem_available_mb),
            "est_prompt_tokens" => int(s.est_prompt_tokens),
            "max_tokens" => int(s.max_tokens),
            "has_tools" => boolean(s.has_tools),
            "hint_privacy" => string(&s.hint_privacy),
            "hint_route" => string(&s.hint_route),
            "app" => string(&s.app),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resolver and the list of names must not drift apart: every name
    /// resolves, and nothing else does.
    #[test]
    fn every_signal_name_resolves() {
        let s = Signals::default();
        let r = SignalResolver::new(&s);
        for name in SIGNAL_NAMES {
            assert!(r.resolve(name).is_some(), "{name} does not resolve");
        }
        assert!(r.resolve("prompt").is_none());
        assert_eq!(SIGNAL_NAMES.len(), 20);
    }
}
