//! Table-driven decisions of the shipped default policy, and the decision
//! rules `decide` applies on top of any policy: app hints, evaluation
//! failures, fail-closed privacy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use policy::{CloudAllowed, Policy, Signals, Target, Targets};

fn local() -> Target {
    Target::Tier {
        name: "local".into(),
        local: true,
    }
}

fn cloud() -> Target {
    Target::Tier {
        name: "cloud".into(),
        local: false,
    }
}

/// `(what, signals, rule, target, fallbacks, cloud)`.
type Case = (
    &'static str,
    Signals,
    &'static str,
    Target,
    &'static [&'static str],
    CloudAllowed,
);

#[test]
fn default_policy_decisions() {
    use CloudAllowed::{Allowed, Never};
    let base = Signals::default;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("idle device, easy request", base(), "default", local(), &["cloud"], Allowed),
        ("private text", Signals { privacy: 0.7, ..base() }, "private-stays-local", local(), &[], Never),
        ("privacy exactly at the threshold", Signals { privacy: 0.5, ..base() }, "private-stays-local", local(), &[], Never),
        ("privacy just under", Signals { privacy: 0.49, ..base() }, "default", local(), &["cloud"], Allowed),
        ("card number", Signals { entities: vec!["credit_card".into()], ..base() }, "private-stays-local", local(), &[], Never),
        ("health topic", Signals { entities: vec!["email".into(), "health".into()], ..base() }, "private-stays-local", local(), &[], Never),
        ("an e-mail alone is not enough", Signals { entities: vec!["email".into()], ..base() }, "default", local(), &["cloud"], Allowed),
        ("app asks for privacy", Signals { hint_privacy: "high".into(), complexity: 0.9, ..base() }, "private-stays-local", local(), &[], Never),
        ("app asks for local", Signals { hint_route: "local".into(), complexity: 0.9, ..base() }, "private-stays-local", local(), &[], Never),
        ("hard but private", Signals { complexity: 0.9, privacy: 0.6, ..base() }, "private-stays-local", local(), &[], Never),
        ("offline", Signals { cloud_up: false, ..base() }, "offline-stays-local", local(), &[], Never),
        ("offline and hard", Signals { cloud_up: false, complexity: 0.9, ..base() }, "offline-stays-local", local(), &[], Never),
        ("hard", Signals { complexity: 0.6, ..base() }, "hard-goes-to-cloud", cloud(), &["local"], Allowed),
        ("not quite hard", Signals { complexity: 0.59, ..base() }, "default", local(), &["cloud"], Allowed),
        ("low battery", Signals { battery: 0.15, charging: false, ..base() }, "spare-the-device", cloud(), &["local"], Allowed),
        ("low battery, charging", Signals { battery: 0.15, charging: true, ..base() }, "default", local(), &["cloud"], Allowed),
        ("low battery but private", Signals { battery: 0.1, charging: false, privacy: 0.8, ..base() }, "private-stays-local", local(), &[], Never),
        ("hot", Signals { thermal: "serious".into(), thermal_level: 2, ..base() }, "spare-the-device", cloud(), &["local"], Allowed),
        ("critical", Signals { thermal: "critical".into(), thermal_level: 3, ..base() }, "spare-the-device", cloud(), &["local"], Allowed),
        ("warm is fine", Signals { thermal: "fair".into(), thermal_level: 1, ..base() }, "default", local(), &["cloud"], Allowed),
        ("slow device, unbounded answer", Signals { local_tps: 5.0, max_tokens: 0, ..base() }, "too-slow-for-long-answers", cloud(), &["local"], Allowed),
        ("slow device, long answer", Signals { local_tps: 5.0, max_tokens: 1000, ..base() }, "too-slow-for-long-answers", cloud(), &["local"], Allowed),
        ("slow device, short answer", Signals { local_tps: 5.0, max_tokens: 200, ..base() }, "default", local(), &["cloud"], Allowed),
        ("fast enough device, long answer", Signals { local_tps: 8.0, max_tokens: 1000, ..base() }, "default", local(), &["cloud"], Allowed),
        ("model not loaded", Signals { local_ready: false, ..base() }, "local-not-ready", cloud(), &["local"], Allowed),
        ("local queue long", Signals { local_queue: 3, ..base() }, "local-busy-spills", cloud(), &["local"], Allowed),
        ("local queue short", Signals { local_queue: 2, ..base() }, "default", local(), &["cloud"], Allowed),
        ("queue long but private", Signals { local_queue: 9, entities: vec!["secret".into()], ..base() }, "private-stays-local", local(), &[], Never),
        ("NaN privacy fails closed", Signals { privacy: f64::NAN, ..base() }, "private-stays-local", local(), &[], Never),
        ("NaN complexity is not hard", Signals { complexity: f64::NAN, ..base() }, "default", local(), &["cloud"], Allowed),
    ];
    let (policy, _) = common::default_policy();
    for (what, signals, rule, target, fallbacks, cloud) in cases {
        let d = policy.decide(&signals);
        assert_eq!(d.rule, rule, "{what}: {}", d.explain);
        assert_eq!(d.target, target, "{what}");
        assert_eq!(d.fallbacks, fallbacks, "{what}");
        assert_eq!(d.cloud, cloud, "{what}");
        assert!(d.explain.contains(&format!("rule '{rule}'")), "{what}: {}", d.explain);
    }
}

fn parse(text: &str) -> Policy {
    let targets = Targets::new()
        .with_local("local")
        .with_local("npu")
        .with_cloud("cloud")
        .with_cloud("cloud-b");
    Policy::parse(text, Path::new("t.toml"), &targets).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn hint_route_local_forbids_the_cloud_whatever_the_rule_says() {
    let policy = parse(
        r#"
version = 1
[[rule]]
name = "hard"
when = "complexity >= 0.6"
target = "cloud"
fallbacks = ["cloud-b", "npu", "local"]
[[rule]]
name = "medium"
when = "complexity >= 0.4"
target = "cascade"
fallbacks = ["cloud-b"]
[[rule]]
name = "masked"
when = "size(entities) > 0"
target = "redact-then-cloud"
fallbacks = ["npu"]
[[rule]]
name = "default"
when = "true"
target = "npu"
fallbacks = ["cloud", "local"]
"#,
    );
    let hinted = |s: Signals| Signals {
        hint_route: "local".into(),
        ..s
    };
    let npu = Target::Tier {
        name: "npu".into(),
        local: true,
    };

    let free = policy.decide(&Signals {
        complexity: 0.9,
        ..Signals::default()
    });
    assert_eq!((free.target.clone(), free.cloud), (cloud(), CloudAllowed::Allowed));
    assert_eq!(free.fallbacks, ["cloud-b", "npu", "local"]);

    // A cloud target becomes the default local tier, and the cloud fallbacks go.
    let d = policy.decide(&hinted(Signals {
        complexity: 0.9,
        ..Signals::default()
    }));
    assert_eq!(
        (d.rule.as_str(), d.target.clone(), d.cloud),
        ("hard", local(), CloudAllowed::Never)
    );
    assert_eq!(d.fallbacks, ["npu"], "local dropped as it is now the target");
    assert!(d.explain.contains("hint_route=local"), "{}", d.explain);

    // A cascade keeps only its local part.
    let d = policy.decide(&hinted(Signals {
        complexity: 0.5,
        ..Signals::default()
    }));
    assert_eq!((d.target.clone(), d.cloud), (local(), CloudAllowed::Never));
    assert!(d.fallbacks.is_empty());

    // Redact-then-cloud becomes the default local tier.
    let d = policy.decide(&hinted(Signals {
        entities: vec!["email".into()],
        ..Signals::default()
    }));
    assert_eq!((d.target.clone(), d.cloud), (local(), CloudAllowed::Never));
    assert_eq!(d.fallbacks, ["npu"]);

    // Read leniently: any spelling of "local" keeps the text here.
    let d = policy.decide(&Signals {
        hint_route: " LOCAL ".into(),
        ..Signals::default()
    });
    assert_eq!((d.target.clone(), d.cloud), (npu, CloudAllowed::Never));
    assert_eq!(d.fallbacks, ["local"]);
    assert!(!d.may_use(false) && d.may_use(true));
}

#[test]
fn strategies_resolve_to_the_default_tiers() {
    let policy = parse(
        r#"
version = 1
default_local = "npu"
default_cloud = "cloud-b"
[[rule]]
name = "medium"
when = "complexity >= 0.4"
target = "cascade"
[[rule]]
name = "masked"
when = "size(entities) > 0"
target = "redact-then-cloud"
[[rule]]
name = "default"
when = "true"
target = "npu"
"#,
    );
    let d = policy.decide(&Signals {
        complexity: 0.5,
        ..Signals::default()
    });
    assert_eq!(
        d.target,
        Target::Cascade {
            local: "npu".into(),
            cloud: "cloud-b".into()
        }
    );
    assert_eq!(d.cloud, CloudAllowed::Allowed);
    let d = policy.decide(&Signals {
        entities: vec!["phone".into()],
        ..Signals::default()
    });
    assert_eq!(
        d.target,
        Target::RedactThenCloud {
            cloud: "cloud-b".into()
        }
    );
    assert_eq!(d.cloud, CloudAllowed::Redacted, "redact-then-cloud implies redacted");
    assert!(d.must_redact(false) && d.may_use(false));
    // A rule that names no cloud tier gets cloud = never.
    let d = policy.decide(&Signals::default());
    assert_eq!(d.cloud, CloudAllowed::Never);
}

#[test]
fn a_failing_condition_counts_as_false_and_is_explained() {
    let policy = parse(
        r#"
version = 1
[[rule]]
name = "ratio"
when = "10 / local_queue > 2"
target = "cloud"
[[rule]]
name = "odd"
when = "app == 'weird' ? 1 : true"
target = "cloud"
[[rule]]
name = "default"
when = "true"
target = "local"
"#,
    );
    // local_queue 0: division by zero, so "ratio" is false; "odd" is true.
    let d = policy.decide(&Signals::default());
    assert_eq!(d.rule, "odd");
    assert!(d.explain.contains("rule 'ratio' failed to evaluate"), "{}", d.explain);
    assert!(d.explain.contains("Division by zero"), "{}", d.explain);
    // "odd" gives an int for this app: false, explained.
    let d = policy.decide(&Signals {
        app: "weird".into(),
        local_queue: 9,
        ..Signals::default()
    });
    assert_eq!(d.rule, "default");
    assert!(
        d.explain.contains("rule 'odd' gave a int instead of a bool"),
        "{}",
        d.explain
    );
    let d = policy.decide(&Signals {
        local_queue: 2,
        ..Signals::default()
    });
    assert_eq!(d.rule, "ratio", "{}", d.explain);
}

#[test]
fn conditions_see_every_signal() {
    let policy = parse(
        r#"
version = 1
[[rule]]
name = "all"
when = """
complexity == 0.25 && privacy == 0.125 && 'email' in entities && size(entities) == 2 &&
battery == 0.5 && charging && power_saver && thermal == 'fair' && thermal_level == 1 &&
cloud_up && cloud_rtt_ms == 80.0 && local_ready && local_queue == 2 && local_tps == 12.5 &&
mem_available_mb == 2048 && est_prompt_tokens == 300 && max_tokens == 512 && has_tools &&
hint_privacy == 'high' && hint_route == '' && app.startsWith('com.example')
"""
target = "cloud"
[[rule]]
name = "default"
when = "true"
target = "local"
"#,
    );
    let s = Signals {
        complexity: 0.25,
        privacy: 0.125,
        entities: vec!["phone".into(), "email".into()],
        battery: 0.5,
        charging: true,
        power_saver: true,
        thermal: "fair".into(),
        thermal_level: 1,
        cloud_up: true,
        cloud_rtt_ms: 80.0,
        local_ready: true,
        local_queue: 2,
        local_tps: 12.5,
        mem_available_mb: 2048,
        est_prompt_tokens: 300,
        max_tokens: 512,
        has_tools: true,
        hint_privacy: "high".into(),
        hint_route: String::new(),
        app: "com.example.mail".into(),
    };
    assert_eq!(policy.decide(&s).rule, "all");
    assert_eq!(
        policy
            .decide(&Signals {
                local_queue: 3,
                ..s.clone()
            })
            .rule,
        "default"
    );
}

#[test]
fn describe_lists_rules_for_the_status_page() {
    let (policy, _) = common::default_policy();
    let v = policy.describe();
    assert_eq!(v["version"], 1);
    assert_eq!(v["default_local"], "local");
    assert_eq!(v["default_cloud"], "cloud");
    assert!(v["source"].as_str().unwrap().ends_with("policy.toml"));
    assert_eq!(v["content_hash"].as_str(), Some(policy.content_hash()));
    assert!(policy.content_hash().starts_with("fnv1a64:"));
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), policy.rule_names().count());
    assert_eq!(rules[0]["name"], "private-stays-local");
    assert_eq!(rules[0]["cloud"], "never");
    assert_eq!(rules[0]["target"], "local");
    assert_eq!(rules[0]["route"]["kind"], "tier");
    let signals: Vec<&str> = rules[0]["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(signals, ["privacy", "hint_privacy", "hint_route", "entities"]);
    assert_eq!(rules.last().unwrap()["when"], "true");
    assert_eq!(rules.last().unwrap()["fallbacks"], serde_json::json!(["cloud"]));
}

#[test]
fn the_policy_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<policy::Decision>();
}
