//! The routing policy: ordered TOML rules whose conditions are Common
//! Expression Language over the request's [`Signals`]; the first rule that
//! holds decides the [`Decision`]: a target, its fallbacks, and whether the
//! text may leave the device ([`CloudAllowed`]).
//!
//! ```
//! use std::path::Path;
//! use policy::{CloudAllowed, Policy, Signals, Targets};
//!
//! let text = r#"
//! version = 1
//! [[rule]]
//! name = "private-stays-local"
//! when = "privacy >= 0.5"
//! target = "local"
//! cloud = "never"
//! [[rule]]
//! name = "default"
//! when = "true"
//! target = "local"
//! fallbacks = ["cloud"]
//! "#;
//! let targets = Targets::new().with_local("local").with_cloud("cloud");
//! let policy = Policy::parse(text, Path::new("policy.toml"), &targets).unwrap();
//! let d = policy.decide(&Signals { privacy: 0.9, ..Signals::default() });
//! assert_eq!(d.rule, "private-stays-local");
//! assert_eq!(d.cloud, CloudAllowed::Never);
//! assert!(!d.may_use(false));
//! ```
//!
//! Architecture invariant: no IO and no clock. The gateway reads and watches
//! the file, measures the signals and passes both in; validation errors
//! carry the path it gave, with line and column.
//!
//! Architecture invariant: privacy is a hard constraint carried by the
//! decision. When [`Decision::cloud`] is [`CloudAllowed::Never`], the target
//! and every fallback are local tiers, and [`Decision::may_use`] refuses any
//! cloud tier.

mod decision;
mod error;
mod load;
mod policy;
mod signals;
mod targets;

pub use decision::{CloudAllowed, Decision, Target};
pub use error::{ErrorKind, PolicyError};
pub use policy::Policy;
pub use signals::{SIGNAL_NAMES, Signals};
pub use targets::{STRATEGY_CASCADE, STRATEGY_NAMES, STRATEGY_REDACT_THEN_CLOUD, Targets, TierKind};
