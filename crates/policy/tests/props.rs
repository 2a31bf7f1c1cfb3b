//! Properties over arbitrary signals: privacy holds for every request, and
//! `decide` never panics, for every shipped policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::LazyLock;

use policy::{CloudAllowed, Decision, Policy, Signals, Target, Targets, TierKind};
use proptest::prelude::*;

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..=1.0f64,
        2 => -10.0..10_000.0f64,
        1 => any::<f64>(),
        1 => Just(f64::NAN),
    ]
}

fn count() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0..5000i64, 1 => any::<i64>()]
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("high".to_owned()),
        Just("local".to_owned()),
        Just("nominal".to_owned()),
        Just("critical".to_owned()),
        ".{0,12}",
    ]
}

fn entities() -> impl Strategy<Value = Vec<String>> {
    let label = prop_oneof![
        Just("email".to_owned()),
        Just("phone".to_owned()),
        Just("credit_card".to_owned()),
        Just("health".to_owned()),
        Just("person".to_owned()),
        ".{0,10}",
    ];
    prop::collection::vec(label, 0..4)
}

fn signals() -> impl Strategy<Value = Signals> {
    (
        (
            number(),
            number(),
            entities(),
            number(),
            any::<bool>(),
            any::<bool>(),
            word(),
            count(),
        ),
        (
            any::<bool>(),
            number(),
            any::<bool>(),
            count(),
            number(),
            count(),
            count(),
            count(),
        ),
        (any::<bool>(), word(), word(), word()),
    )
        .prop_map(
            |(
                (complexity, privacy, entities, battery, charging, power_saver, thermal, thermal_level),
                (
                    cloud_up,
                    cloud_rtt_ms,
                    local_ready,
                    local_queue,
                    local_tps,
                    mem_available_mb,
                    est_prompt_tokens,
                    max_tokens,
                ),
                (has_tools, hint_privacy, hint_route, app),
            )| Signals {
                complexity,
                privacy,
                entities,
                battery,
                charging,
                power_saver,
                thermal,
                thermal_level,
                cloud_up,
                cloud_rtt_ms,
                local_ready,
                local_queue,
                local_tps,
                mem_available_mb,
                est_prompt_tokens,
                max_tokens,
                has_tools,
                hint_privacy,
                hint_route,
                app,
            },
        )
}

/// The decision sends nothing to a cloud tier: by its constraint, its target
/// and each fallback (looked up in the tiers the policy was loaded with).
fn stays_local(d: &Decision, targets: &Targets) -> Result<(), TestCaseError> {
    prop_assert_eq!(d.cloud, CloudAllowed::Never, "{}", d.explain);
    prop_assert!(!d.may_use(false));
    prop_assert!(!d.cloud_allowed());
    match &d.target {
        Target::Tier { name, local } => {
            prop_assert!(*local, "target {} is not local", name);
            prop_assert_eq!(targets.kind(name), Some(TierKind::Local));
        }
        other => prop_assert!(false, "target {:?} uses the cloud", other),
    }
    for f in &d.fallbacks {
        prop_assert_eq!(targets.kind(f), Some(TierKind::Local), "fallback {} is not local", f);
    }
    Ok(())
}

/// Loaded once: compiling every file for every case would dominate the run.
static SHIPPED: LazyLock<Vec<(Policy, Targets)>> =
    LazyLock::new(|| common::shipped_policy_paths().iter().map(|p| common::load(p)).collect());

static DEFAULT: LazyLock<(Policy, Targets)> = LazyLock::new(common::default_policy);

/// A policy that ignores the app's hints and sends text to the cloud every
/// way it can: `decide` alone must keep hinted requests on the device.
static CLOUD_HUNGRY: LazyLock<(Policy, Targets)> = LazyLock::new(|| {
    let text = r#"
version = 1
[[rule]]
name = "cascade"
when = "complexity >= 0.3 && complexity < 0.6"
target = "cascade"
fallbacks = ["cloud-b", "npu"]
[[rule]]
name = "masked"
when = "size(entities) > 0"
target = "redact-then-cloud"
fallbacks = ["cloud-b"]
[[rule]]
name = "hot"
when = "thermal_level >= 2"
target = "cloud-b"
cloud = "redacted"
fallbacks = ["npu", "cloud"]
[[rule]]
name = "local-first"
when = "local_tps > 20.0"
target = "npu"
fallbacks = ["cloud", "local"]
[[rule]]
name = "everything-else"
when = "true"
target = "cloud"
fallbacks = ["cloud-b", "local"]
"#;
    let targets = Targets::new()
        .with_local("local")
        .with_local("npu")
        .with_cloud("cloud")
        .with_cloud("cloud-b");
    let policy = Policy::parse(text, std::path::Path::new("hungry.toml"), &targets).unwrap();
    (policy, targets)
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn private_requests_never_reach_the_cloud_under_the_default_policy(
        s in signals(),
        privacy in prop_oneof![0.5..=1.0f64, Just(f64::NAN)],
        by_hint in any::<bool>(),
    ) {
        let (policy, targets) = &*DEFAULT;
        let s = if by_hint { Signals { hint_route: "local".into(), ..s } } else { Signals { privacy, ..s } };
        stays_local(&policy.decide(&s), targets)?;
    }

    #[test]
    fn hint_route_local_keeps_text_on_the_device_whatever_the_rules(s in signals()) {
        let (policy, targets) = &*CLOUD_HUNGRY;
        let hinted = Signals { hint_route: "local".into(), ..s };
        let d = policy.decide(&hinted);
        stays_local(&d, targets)?;
    }

    #[test]
    fn any_shipped_policy_decides_any_signals(s in signals()) {
        for (policy, targets) in SHIPPED.iter() {
            let d = policy.decide(&s);
            prop_assert!(policy.rule_names().any(|r| r == d.rule), "{}", d.rule);
            if d.cloud == CloudAllowed::Never {
                stays_local(&d, targets)?;
            }
            // Fallbacks are tiers the policy was loaded with, never the first tier again.
            for f in &d.fallbacks {
                prop_assert!(targets.kind(f).is_some());
                prop_assert_ne!(f.as_str(), d.target.first_tier().0);
            }
            let hinted = Signals { hint_route: "local".into(), ..s.clone() };
            stays_local(&policy.decide(&hinted), targets)?;
        }
    }
}
