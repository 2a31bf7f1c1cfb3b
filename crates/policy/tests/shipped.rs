//! Every shipped policy (config/policy.toml, config/examples/*.toml) parses
//! against the tiers it declares, and every one of its rules can fire: for
//! each rule, a search over a grid of signal values finds a request that it
//! decides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use policy::{Policy, Signals};

type Mutation = (&'static str, fn(&mut Signals));

/// Each dimension: the values a signal takes besides `Signals::default()`.
fn dimensions() -> Vec<Vec<Mutation>> {
    vec![
        vec![
            ("complexity=0.2", |s| s.complexity = 0.2),
            ("complexity=0.45", |s| s.complexity = 0.45),
            ("complexity=0.65", |s| s.complexity = 0.65),
            ("complexity=0.9", |s| s.complexity = 0.9),
        ],
        vec![
            ("privacy=0.35", |s| s.privacy = 0.35),
            ("privacy=0.6", |s| s.privacy = 0.6),
            ("privacy=0.9", |s| s.privacy = 0.9),
        ],
        vec![
            ("entities=email", |s| s.entities = vec!["email".into()]),
            ("entities=credit_card", |s| s.entities = vec!["credit_card".into()]),
            ("entities=health", |s| s.entities = vec!["health".into()]),
        ],
        vec![
            ("battery=0.5", |s| s.battery = 0.5),
            ("battery=0.1", |s| s.battery = 0.1),
        ],
        vec![("charging=false", |s| s.charging = false)],
        vec![("power_saver", |s| s.power_saver = true)],
        vec![
            ("thermal=fair", |s| (s.thermal, s.thermal_level) = ("fair".into(), 1)),
            ("thermal=serious", |s| {
                (s.thermal, s.thermal_level) = ("serious".into(), 2)
            }),
            ("thermal=critical", |s| {
                (s.thermal, s.thermal_level) = ("critical".into(), 3)
            }),
        ],
        vec![("cloud_up=false", |s| s.cloud_up = false)],
        vec![("cloud_rtt_ms=2000", |s| s.cloud_rtt_ms = 2000.0)],
        vec![("local_ready=false", |s| s.local_ready = false)],
        vec![
            ("local_queue=1", |s| s.local_queue = 1),
            ("local_queue=3", |s| s.local_queue = 3),
            ("local_queue=9", |s| s.local_queue = 9),
        ],
        vec![
            ("local_tps=10", |s| s.local_tps = 10.0),
            ("local_tps=5", |s| s.local_tps = 5.0),
        ],
        vec![("mem=512", |s| s.mem_available_mb = 512)],
        vec![
            ("prompt=50", |s| s.est_prompt_tokens = 50),
            ("prompt=500", |s| s.est_prompt_tokens = 500),
            ("prompt=5000", |s| s.est_prompt_tokens = 5000),
        ],
        vec![
            ("max_tokens=32", |s| s.max_tokens = 32),
            ("max_tokens=200", |s| s.max_tokens = 200),
            ("max_tokens=1000", |s| s.max_tokens = 1000),
        ],
        vec![("has_tools", |s| s.has_tools = true)],
        vec![("hint_privacy=high", |s| s.hint_privacy = "high".into())],
        vec![("hint_route=local", |s| s.hint_route = "local".into())],
        vec![("app=com.example", |s| s.app = "com.example".into())],
    ]
}

/// For each rule, the first request found that it decides (as the list of
/// changes from the default signals): the default alone, then every single
/// change, every pair and every triple of changes to distinct signals,
/// stopping as soon as every rule has one.
fn witnesses(policy: &Policy) -> BTreeMap<String, Vec<&'static str>> {
    let dims = dimensions();
    let want = policy.rule_names().count();
    let mut found: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let try_changes = |changes: &[&Mutation], found: &mut BTreeMap<String, Vec<&'static str>>| {
        let mut s = Signals::default();
        for (_, apply) in changes {
            apply(&mut s);
        }
        let d = policy.decide(&s);
        found
            .entry(d.rule)
            .or_insert_with(|| changes.iter().map(|(n, _)| *n).collect());
    };
    try_changes(&[], &mut found);
    'search: for size in 1..=3 {
        for picks in combinations(dims.len(), size) {
            if found.len() == want {
                break 'search;
            }
            for_each_choice(&dims, &picks, &mut Vec::new(), &mut |changes| {
                try_changes(changes, &mut found)
            });
        }
    }
    found
}

/// The `k`-element subsets of `0..n`, in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for first in 0..n {
        for rest in combinations(n, k - 1) {
            if rest.first().is_none_or(|r| *r > first) {
                let mut c = vec![first];
                c.extend(rest);
                out.push(c);
            }
        }
    }
    out
}

fn for_each_choice<'d>(
    dims: &'d [Vec<Mutation>],
    picks: &[usize],
    chosen: &mut Vec<&'d Mutation>,
    f: &mut dyn FnMut(&[&'d Mutation]),
) {
    match picks.split_first() {
        None => f(chosen),
        Some((first, rest)) => {
            for m in &dims[*first] {
                chosen.push(m);
                for_each_choice(dims, rest, chosen, f);
                chosen.pop();
            }
        }
    }
}

#[test]
fn every_shipped_policy_parses_and_every_rule_can_fire() {
    let paths = common::shipped_policy_paths();
    for path in &paths {
        let (policy, _) = common::load(path);
        let found = witnesses(&policy);
        for name in policy.rule_names() {
            assert!(
                found.contains_key(name),
                "{}: no request in the grid reaches rule '{name}'; reached: {found:?}",
                path.display()
            );
        }
    }
}

#[test]
fn the_search_finds_a_rule_that_needs_three_changes() {
    // Guards the search itself: this rule needs three signals changed at once.
    let text = r#"
version = 1
[[rule]]
name = "three"
when = "battery < 0.2 && !charging && local_queue >= 3"
target = "cloud"
[[rule]]
name = "default"
when = "true"
target = "local"
"#;
    let targets = policy::Targets::new().with_local("local").with_cloud("cloud");
    let policy = Policy::parse(text, std::path::Path::new("t.toml"), &targets).unwrap();
    let found = witnesses(&policy);
    assert_eq!(found["three"], ["battery=0.1", "charging=false", "local_queue=3"]);
}
