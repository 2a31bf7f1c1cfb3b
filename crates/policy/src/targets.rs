//! What a rule may name as its target or fallback: the tiers the gateway has
//! configured ([`Targets`], given at parse time) and the built-in strategies.

/// Where a tier runs, which is all privacy cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TierKind {
    /// On this device: the text does not leave it.
    Local,
    /// A remote endpoint: the text leaves the device.
    Cloud,
}

/// Strategy: local first, escalated to the default cloud tier before
/// anything is shown when the local model's confidence is low.
pub const STRATEGY_CASCADE: &str = "cascade";
/// Strategy: the default cloud tier, with entity values replaced by
/// placeholders before the request leaves and restored in the answer.
pub const STRATEGY_REDACT_THEN_CLOUD: &str = "redact-then-cloud";
/// The strategy names, reserved: no tier may be called so.
pub const STRATEGY_NAMES: &[&str] = &[STRATEGY_CASCADE, STRATEGY_REDACT_THEN_CLOUD];

/// The tiers a policy may name, in the gateway's order. Built by the
/// gateway from its own configuration, so the policy crate never reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    tiers: Vec<(String, TierKind)>,
}

impl Targets {
    pub fn new() -> Self {
        Targets::default()
    }

    /// Adds (or re-kinds) a tier.
    pub fn insert(&mut self, name: impl Into<String>, kind: TierKind) {
        let name = name.into();
        match self.tiers.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = kind,
            None => self.tiers.push((name, kind)),
        }
    }

    /// Builder form of [`insert`](Self::insert) for a local tier.
    pub fn with_local(mut self, name: impl Into<String>) -> Self {
        self.insert(name, TierKind::Local);
        self
    }

    /// Builder form of [`insert`](Self::insert) for a cloud tier.
    pub fn with_cloud(mut self, name: impl Into<String>) -> Self {
        self.insert(name, TierKind::Cloud);
        self
    }

    pub fn kind(&self, name: &str) -> Option<TierKind> {
        self.tiers.iter().find(|(n, _)| n == name).map(|(_, k)| *k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, TierKind)> {
        self.tiers.iter().map(|(n, k)| (n.as_str(), *k))
    }

    /// The names a target may take, for error messages: tiers, then strategies.
    pub(crate) fn known_list(&self) -> String {
        let mut names: Vec<&str> = self.tiers.iter().map(|(n, _)| n.as_str()).collect();
        names.extend_from_slice(STRATEGY_NAMES);
        names.join(", ")
    }

    pub(crate) fn names_of(&self, kind: TierKind) -> String {
        let names: Vec<&str> = self.iter().filter(|(_, k)| *k == kind).map(|(n, _)| n).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

impl<S: Into<String>> FromIterator<(S, TierKind)> for Targets {
    fn from_iter<I: IntoIterator<Item = (S, TierKind)>>(iter: I) -> Self {
        let mut targets = Targets::new();
        for (name, kind) in iter {
            targets.insert(name, kind);
        }
        targets
    }
}
