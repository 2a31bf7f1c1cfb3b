//! Shared by the integration tests: the shipped policy files and the tiers
//! each one declares in its header comment.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use policy::{Policy, Targets, TierKind};

/// The line of each shipped file that lists the tiers it expects.
const TIERS_LINE: &str = "# Tiers this file expects in tandem.toml:";

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

pub fn default_policy_path() -> PathBuf {
    config_dir().join("policy.toml")
}

/// Every shipped policy: config/policy.toml and config/examples/*.toml.
pub fn shipped_policy_paths() -> Vec<PathBuf> {
    let mut paths = vec![default_policy_path()];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(config_dir().join("examples"))
        .expect("config/examples exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "expected the shipped examples, found {examples:?}");
    paths.extend(examples);
    paths
}

/// The tiers a file declares: `# Tiers this file expects in tandem.toml:
/// local (local), cloud (cloud)`.
pub fn declared_targets(text: &str, path: &Path) -> Targets {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(TIERS_LINE))
        .unwrap_or_else(|| panic!("{} lacks the line '{TIERS_LINE} ...'", path.display()));
    let mut targets = Targets::new();
    for item in line.split(',') {
        let (name, kind) = item.trim().split_once(' ').expect("`name (kind)`");
        let kind = match kind.trim() {
            "(local)" => TierKind::Local,
            "(cloud)" => TierKind::Cloud,
            other => panic!("{}: unknown tier kind {other}", path.display()),
        };
        targets.insert(name.trim(), kind);
    }
    targets
}

pub fn load(path: &Path) -> (Policy, Targets) {
    let text = std::fs::read_to_string(path).expect("readable policy");
    let targets = declared_targets(&text, path);
    let policy = Policy::parse(&text, path, &targets).unwrap_or_else(|e| panic!("{e}"));
    (policy, targets)
}

pub fn default_policy() -> (Policy, Targets) {
    load(&default_policy_path())
}
