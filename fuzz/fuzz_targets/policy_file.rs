//! `policy::Policy::parse` on arbitrary UTF-8 text, with the tiers of the
//! shipped configuration and examples (`local`, `cloud`, `cloud-66b`,
//! `cloud-175b`).
//!
//! A refused file names a position inside it (line and column from 1, the
//! line at most one past the last); an accepted one decides a few sets of
//! signals without a panic, and every decision that forbids the cloud names
//! only local tiers (the privacy invariant).
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use policy::{CloudAllowed, Policy, Signals, Target, Targets, TierKind};

static TARGETS: LazyLock<Targets> = LazyLock::new(|| {
    Targets::new()
        .with_local("local")
        .with_cloud("cloud")
        .with_cloud("cloud-66b")
        .with_cloud("cloud-175b")
});

static SIGNALS: LazyLock<Vec<Signals>> = LazyLock::new(|| {
    vec![
        Signals::default(),
        Signals {
            complexity: 0.9,
            privacy: 0.8,
            entities: vec!["email".into(), "health".into()],
            battery: 0.1,
            thermal: "critical".into(),
            thermal_level: 3,
            cloud_up: true,
            local_ready: true,
            local_queue: 7,
            max_tokens: 4096,
            has_tools: true,
            hint_privacy: "high".into(),
            hint_route: "local".into(),
            app: "fuzz".into(),
            ..Signals::default()
        },
        Signals {
            complexity: f64::NAN,
            privacy: -1.0,
            battery: f64::INFINITY,
            cloud_rtt_ms: f64::MAX,
            local_queue: i64::MAX,
            mem_available_mb: i64::MIN,
            est_prompt_tokens: i64::MAX,
            max_tokens: i64::MIN,
            ..Signals::default()
        },
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::parse(text, Path::new("fuzz.toml"), &TARGETS) {
        Ok(p) => p,
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}: {e}", e.line);
            assert!(e.column >= 1, "{e}");
            assert_eq!(e.file, Path::new("fuzz.toml"));
            return;
        }
    };
    for signals in SIGNALS.iter() {
        let d = policy.decide(signals);
        if d.cloud == CloudAllowed::Never {
            assert!(
                matches!(d.target, Target::Tier { local: true, .. }),
                "cloud never, target {:?}",
                d.target
            );
            for f in &d.fallbacks {
                assert_eq!(TARGETS.kind(f), Some(TierKind::Local), "cloud never, fallback {f}");
            }
        }
    }
});
