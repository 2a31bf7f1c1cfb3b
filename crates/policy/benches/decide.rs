//! How long `Policy::decide` takes over the shipped default policy
//! (config/policy.toml), for requests decided by its first rule, a middle
//! rule, and the catch-all (every condition evaluated).
//!
//! Run: `cargo bench -p policy --bench decide`; the median is in
//! `$CARGO_TARGET_DIR/criterion/decide/<case>/new/estimates.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use policy::{Policy, Signals, Targets};

const DEFAULT_POLICY: &str = include_str!("../../../config/policy.toml");

fn decide(c: &mut Criterion) {
    let targets = Targets::new().with_local("local").with_cloud("cloud");
    let policy = Policy::parse(DEFAULT_POLICY, Path::new("config/policy.toml"), &targets).unwrap();
    // Signals as a 1 KB prompt with a couple of entities would give them.
    let typical = Signals {
        complexity: 0.35,
        privacy: 0.2,
        entities: vec!["email".into(), "person".into()],
        battery: 0.64,
        charging: false,
        est_prompt_tokens: 260,
        max_tokens: 512,
        app: "com.example.notes".into(),
        ..Signals::default()
    };
    let cases = [
        (
            "first-rule-private",
            Signals {
                privacy: 0.8,
                ..typical.clone()
            },
        ),
        (
            "middle-rule-hard",
            Signals {
                complexity: 0.75,
                ..typical.clone()
            },
        ),
        ("catch-all", typical.clone()),
    ];
    let mut group = c.benchmark_group("decide");
    for (name, signals) in &cases {
        let expected = policy.decide(signals).rule;
        assert!(!expected.is_empty());
        group.bench_function(*name, |b| b.iter(|| policy.decide(black_box(signals))));
    }
    group.finish();

    c.bench_function("parse/default-policy", |b| {
        b.iter(|| Policy::parse(black_box(DEFAULT_POLICY), Path::new("config/policy.toml"), &targets).unwrap())
    });
}

criterion_group!(benches, decide);
criterion_main!(benches);
