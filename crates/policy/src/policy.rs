//! [`Policy`]: a validated policy file with its conditions compiled, and
//! what it does with a request's signals: [`Policy::decide`] and, for the
//! status page, [`Policy::describe`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cel::{Context, Env, Program, Value};
use serde_json::json;

use crate::decision::{CloudAllowed, Decision, Target};
use crate::error::PolicyError;
use crate::signals::{SignalResolver, Signals};
use crate::targets::Targets;

/// A fallback tier and where it runs.
#[derive(Debug, Clone)]
pub(crate) struct Fallback {
    pub(crate) name: String,
    pub(crate) local: bool,
}

/// One validated rule.
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// The condition as written, on one line (for `explain` and `describe`).
    pub(crate) when: String,
    pub(crate) program: Program,
    /// The condition reads no signal and is true: evaluation is skipped.
    pub(crate) always: bool,
    /// The signals the condition reads, in order of appearance.
    pub(crate) signals: Vec<String>,
    pub(crate) target: Target,
    pub(crate) fallbacks: Vec<Fallback>,
    pub(crate) cloud: CloudAllowed,
    /// Where the rule's `[[rule]]` header is, for people reading `explain`.
    pub(crate) line: usize,
}

/// A routing policy: ordered rules, the first whose condition holds decides.
///
/// Architecture invariant: this crate does no IO and reads no clock. The
/// gateway reads and watches the file and hands the text over; on a reload
/// that fails validation it keeps the `Policy` it has.
///
/// Built once per file version and shared (`Send + Sync`); `decide` takes
/// `&self` and allocates only the decision it returns.
pub struct Policy {
    pub(crate) source_path: PathBuf,
    pub(crate) content_hash: String,
    pub(crate) version: i64,
    pub(crate) default_local: String,
    /// `None` when no cloud tier is configured as the default: then no rule
    /// may use a strategy.
    pub(crate) default_cloud: Option<String>,
    pub(crate) rules: Vec<Rule>,
    /// CEL's standard library, built once: every decision's evaluation
    /// context shares it.
    pub(crate) env: Arc<Env>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("source_path", &self.source_path)
            .field("content_hash", &self.content_hash)
            .field("rules", &self.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Validates a policy file's text and compiles its conditions. `path`
    /// only names the file in errors and in [`describe`](Self::describe);
    /// `targets` are the tiers the gateway has configured.
    ///
    /// The format, version 1:
    ///
    /// ```toml
    /// version = 1
    /// default_local = "local"   # optional: the local tier named "local"
    /// default_cloud = "cloud"   # optional: the cloud tier named "cloud"
    ///
    /// [[rule]]
    /// name = "private-stays-local"     # unique; A-Z a-z 0-9 - _ .
    /// description = "..."              # optional
    /// when = "privacy >= 0.5"          # CEL over the signals
    /// target = "local"                 # a tier, "cascade" or "redact-then-cloud"
    /// cloud = "never"                  # never | redacted | allowed (optional)
    /// fallbacks = []                   # tiers, tried in order (optional)
    /// ```
    ///
    /// Refused, with `file:line:column`: TOML errors and unknown fields; a
    /// version other than 1; unknown targets or fallbacks (a fallback must
    /// be a tier, not the target's own first tier, not listed twice);
    /// strategies without a default cloud tier; conditions that are not CEL,
    /// read a variable that is not a signal, or cannot give a bool (checked
    /// by evaluating them against sample signals); `cloud = "never"` with a
    /// cloud target, strategy or fallback; `cloud = "allowed"` with
    /// redact-then-cloud; duplicate or header-unsafe rule names; no rules; a
    /// last rule that is not a catch-all (a condition reading no signal that
    /// is true, such as `"true"`); rules after a catch-all; rules whose
    /// condition is constantly false.
    ///
    /// `cloud` left out means the least the rule needs: `redacted` for
    /// redact-then-cloud, `allowed` if a cloud tier is named as target or
    /// fallback (or the target is cascade), `never` otherwise.
    pub fn parse(text: &str, path: &Path, targets: &Targets) -> Result<Policy, PolicyError> {
        crate::load::parse(text, path, targets)
    }

    /// Decides the route of one request.
    ///
    /// Rules are tried in order; the first whose condition is true decides.
    /// A condition that fails to evaluate (a type mismatch, a division by
    /// zero) or gives something other than a bool counts as false, and the
    /// failure is named in `explain`. Since the last rule is a catch-all,
    /// some rule always matches; were none to, the decision would be the
    /// default local tier with the cloud forbidden.
    ///
    /// Privacy is enforced here, not only by validation: `hint_route ==
    /// "local"` forces [`CloudAllowed::Never`] whatever the rule says; under
    /// `Never` a cloud target becomes the default local tier (a cascade its
    /// local tier) and cloud fallbacks are dropped. A NaN privacy score is
    /// read as 1.0.
    pub fn decide(&self, signals: &Signals) -> Decision {
        let resolver = SignalResolver::new(signals);
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        ctx.set_variable_resolver(&resolver);
        let mut skipped: Vec<String> = Vec::new();
        let matched = self.rules.iter().find(|rule| rule.matches(&ctx, &mut skipped));
        let mut decision = match matched {
            Some(rule) => self.decision_for(rule, signals),
            None => Decision {
                rule: "(none)".to_owned(),
                target: Target::Tier {
                    name: self.default_local.clone(),
                    local: true,
                },
                fallbacks: Vec::new(),
                cloud: CloudAllowed::Never,
                explain: "no rule matched: the default local tier, the cloud forbidden".to_owned(),
            },
        };
        if signals.privacy.is_nan() {
            decision
                .explain
                .push_str("; the privacy score was NaN and was read as 1.0");
        }
        for note in skipped {
            decision.explain.push_str("; ");
            decision.explain.push_str(&note);
        }
        decision
    }

    fn decision_for(&self, rule: &Rule, signals: &Signals) -> Decision {
        let forced = signals.hint_route_local() && rule.cloud != CloudAllowed::Never;
        let cloud = if forced { CloudAllowed::Never } else { rule.cloud };
        let target = match (&rule.target, cloud) {
            (Target::Tier { local: true, .. }, _) => rule.target.clone(),
            (t, CloudAllowed::Never) => self.keep_local(t),
            (t, _) => t.clone(),
        };
        let first = target.first_tier().0;
        let fallbacks = rule
            .fallbacks
            .iter()
            .filter(|f| (f.local || cloud != CloudAllowed::Never) && f.name != first)
            .map(|f| f.name.clone())
            .collect();
        let mut explain = format!("rule '{}' (line {}) matched: {}", rule.name, rule.line, rule.when);
        if forced {
            explain.push_str("; hint_route=local: the cloud is forbidden, cloud tiers removed");
        }
        Decision {
            rule: rule.name.clone(),
            target,
            fallbacks,
            cloud,
            explain,
        }
    }

    /// The local tier standing in for a target that would leave the device.
    fn keep_local(&self, target: &Target) -> Target {
        let name = match target {
            Target::Cascade { local, .. } => local.clone(),
            Target::Tier { name, local: true } => name.clone(),
            _ => self.default_local.clone(),
        };
        Target::Tier { name, local: true }
    }

    /// The policy for a status page: where it came from, its defaults, and
    /// each rule with its condition, the signals it reads, its target,
    /// fallbacks and cloud constraint.
    pub fn describe(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = self
            .rules
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "line": r.line,
                    "description": r.description,
                    "when": r.when,
                    "signals": r.signals,
                    "target": r.target.label(),
                    "route": r.target,
                    "fallbacks": r.fallbacks.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                    "cloud": r.cloud,
                })
            })
            .collect();
        json!({
            "source": self.source_path.display().to_string(),
            "content_hash": self.content_hash,
            "version": self.version,
            "default_local": self.default_local,
            "default_cloud": self.default_cloud,
            "rules": rules,
        })
    }

    /// The file the policy was read from, as given to [`parse`](Self::parse).
    pub fn source_path(&self) -> &Path {
        &self.source_path
    }

    /// A hash of the file's text (`fnv1a64:<16 hex digits>`): tells which
    /// version is in force, and lets a watcher skip reloads of unchanged text.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    pub fn default_local(&self) -> &str {
        &self.default_local
    }

    pub fn default_cloud(&self) -> Option<&str> {
        self.default_cloud.as_deref()
    }

    /// The rules' names, in order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }
}

impl Rule {
    /// Whether the condition holds; an evaluation failure is false, noted.
    fn matches(&self, ctx: &Context<'_, '_>, skipped: &mut Vec<String>) -> bool {
        if self.always {
            return true;
        }
        match self.program.execute(ctx) {
            Ok(Value::Bool(b)) => b,
            Ok(other) => {
                skipped.push(format!(
                    "rule '{}' gave a {} instead of a bool and counted as false",
                    self.name,
                    other.type_of()
                ));
                false
            }
            Err(e) => {
                skipped.push(format!(
                    "rule '{}' failed to evaluate ({e}) and counted as false",
                    self.name
                ));
                false
            }
        }
    }
}
