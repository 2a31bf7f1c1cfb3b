//! The output of a decision: [`Decision`], its [`Target`] and the privacy
//! constraint it carries, [`CloudAllowed`].

use serde::{Deserialize, Serialize};

/// May the request's text leave the device, and how. Carried by every
/// decision and binding on every attempt the gateway makes for it: first
/// try, fallback, retry, failover and mid-stream continuation alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudAllowed {
    /// The text stays on the device: no cloud tier may be used at all.
    Never,
    /// The cloud may see the text only with entity values replaced by
    /// placeholders.
    Redacted,
    /// The cloud may see the text as it is.
    Allowed,
}

impl CloudAllowed {
    pub fn as_str(self) -> &'static str {
        match self {
            CloudAllowed::Never => "never",
            CloudAllowed::Redacted => "redacted",
            CloudAllowed::Allowed => "allowed",
        }
    }
}

/// Where the request goes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Target {
    /// One tier, as named in the gateway's configuration.
    Tier {
        name: String,
        /// The tier runs on this device.
        local: bool,
    },
    /// The local tier answers; when its confidence over the first tokens is
    /// low, the request is escalated to the cloud tier before anything is
    /// shown.
    Cascade { local: String, cloud: String },
    /// The cloud tier answers a redacted copy of the request; the entity
    /// values are restored in the answer.
    RedactThenCloud { cloud: String },
}

impl Target {
    /// The tier tried first and whether it is local.
    pub fn first_tier(&self) -> (&str, bool) {
        match self {
            Target::Tier { name, local } => (name, *local),
            Target::Cascade { local, .. } => (local, true),
            Target::RedactThenCloud { cloud } => (cloud, false),
        }
    }

    /// Whether the target may send the text to a cloud tier (escalation
    /// included).
    pub fn uses_cloud(&self) -> bool {
        match self {
            Target::Tier { local, .. } => !local,
            Target::Cascade { .. } | Target::RedactThenCloud { .. } => true,
        }
    }

    /// A short name for headers and logs: the tier's name, or the strategy's.
    pub fn label(&self) -> &str {
        match self {
            Target::Tier { name, .. } => name,
            Target::Cascade { .. } => crate::targets::STRATEGY_CASCADE,
            Target::RedactThenCloud { .. } => crate::targets::STRATEGY_REDACT_THEN_CLOUD,
        }
    }
}

/// What the policy decided for one request.
///
/// Architecture invariant: when `cloud` is [`CloudAllowed::Never`], `target`
/// is a local [`Target::Tier`] and every fallback is a local tier.
/// [`Policy::decide`](crate::Policy::decide) guarantees it whatever the
/// rules say; the gateway still asks [`may_use`](Self::may_use) before every
/// backend attempt, so that no code path of its own can break it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The name of the rule that matched.
    pub rule: String,
    pub target: Target,
    /// Tiers to try, in order, when the target fails before content reaches
    /// the app; already stripped of everything `cloud` forbids.
    pub fallbacks: Vec<String>,
    pub cloud: CloudAllowed,
    /// Why, in one line for people: the rule, its condition, conditions that
    /// failed to evaluate on the way, constraints applied by hints. Holds
    /// signal names and rule text, never request text.
    pub explain: String,
}

impl Decision {
    /// Whether a backend attempt on a tier of this locality is permitted.
    /// A cloud tier under [`CloudAllowed::Redacted`] is permitted only with
    /// the request redacted: see [`must_redact`](Self::must_redact).
    pub fn may_use(&self, tier_is_local: bool) -> bool {
        tier_is_local || self.cloud != CloudAllowed::Never
    }

    /// Whether an attempt on a tier of this locality must send a redacted
    /// copy of the request.
    pub fn must_redact(&self, tier_is_local: bool) -> bool {
        !tier_is_local && self.cloud == CloudAllowed::Redacted
    }

    /// Whether the text may leave the device in any form (the `tandem`
    /// object's `cloud_allowed`).
    pub fn cloud_allowed(&self) -> bool {
        self.cloud != CloudAllowed::Never
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(cloud: CloudAllowed) -> Decision {
        Decision {
            rule: "r".into(),
            target: Target::Tier {
                name: "local".into(),
                local: true,
            },
            fallbacks: vec![],
            cloud,
            explain: String::new(),
        }
    }

    #[test]
    fn may_use_and_must_redact_follow_the_constraint() {
        let never = decision(CloudAllowed::Never);
        assert!(never.may_use(true) && !never.may_use(false) && !never.cloud_allowed());
        let redacted = decision(CloudAllowed::Redacted);
        assert!(redacted.may_use(false) && redacted.must_redact(false) && !redacted.must_redact(true));
        let allowed = decision(CloudAllowed::Allowed);
        assert!(allowed.may_use(false) && !allowed.must_redact(false));
    }
}
