//! The whole routing decision per request — complexity, privacy, signals and
//! the shipped policy — for 100 B, 1 KB and 10 KB prompts (issue target:
//! p50 ≤ 20 µs at 1 KB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use api::{ChatRequest, Message, Role};
use axum::http::HeaderMap;
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::config::EMBEDDED_POLICY;
use gateway::routing::Routing;

/// Everyday prose with a little of everything a scanner looks for.
const SEED: &str = "Hi, I'm planning a trip to Jakarta next month and need help. My colleague said the \
hotel near Jalan Sudirman is good. Could you compare three itineraries, explain the trade-offs step by \
step, and write a short packing list? Also translate 'where is the station' into Indonesian and Chinese \
(车站在哪里). I have a mild allergy, so mention food tips. Budget is about 1200 USD for 5 days. ";

fn prompt(bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes {
        s.push_str(SEED);
    }
    let mut end = bytes.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

fn request(text: String) -> ChatRequest {
    let body = serde_json::json!({"model": "auto", "messages": [Message::text_message(Role::User, text)]});
    ChatRequest::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let targets = Routing::targets(["local"].into_iter(), ["cloud"].into_iter());
    let routing = Routing::new(EMBEDDED_POLICY, Path::new("policy.toml"), false, targets).unwrap();
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("decision");
    for (name, size) in [("100B", 100), ("1KB", 1024), ("10KB", 10 * 1024)] {
        let req = request(prompt(size));
        group.bench_function(name, |b| b.iter(|| routing.decide(&req, &headers, None)));
    }
    group.finish();

    // Where the 1 KB decision's time goes: the scores, then the policy alone.
    let req = request(prompt(1024));
    let scores = routing.score(&req);
    let signals = routing.signals(&req, &headers, &scores, None);
    let policy = routing.policy();
    let mut parts = c.benchmark_group("decision-1KB-parts");
    parts.bench_function("scores", |b| b.iter(|| routing.score(&req)));
    parts.bench_function("policy", |b| b.iter(|| policy.policy.decide(&signals)));
    parts.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
