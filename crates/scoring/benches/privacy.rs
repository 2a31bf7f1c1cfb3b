//! Privacy scan latency for prompts of about 100 B, 1 KB and 10 KB, in
//! English, mixed-language and entity-dense variants.
//!
//! The `scorer` group runs the whole `Scorer::score` (complexity and privacy)
//! on the text of the gateway's decision bench: the bulk of the routing
//! decision (issue target: the whole decision p50 ≤ 20 µs at 1 KB).
//!
//! Run: `cargo bench -p scoring --bench privacy`.

use std::hint::black_box;

use api::Role;
use criterion::{Criterion, criterion_group, criterion_main};
use scoring::privacy::PrivacyScanner;
use scoring::{RequestShape, Scorer, Turn};

/// Ordinary prose with a few entities, repeated to the wanted size.
const PROSE: &str = "Hi team, I'm writing about the quarterly planning meeting next Tuesday. \
Please review the attached draft before then and send comments to Maria Gonzalez \
(maria.gonzalez@example.com or +1 415 555 0132). We still need numbers for the Jakarta \
office; Budi said he would ask Ibu Sari. The venue is 221 Baker Street, Suite 4. \
Remember that the budget review moved to Friday and that travel must be booked by the 20th. \
我叫王小明，电话13812345678。Thanks, and have a good weekend. ";

/// Text without entities: what most requests look like.
const PLAIN: &str = "Explain how a hash map handles collisions, compare open addressing with \
separate chaining, and give the time complexity of insert, lookup and delete in the average \
and worst case. Then write a short Rust example that counts word frequencies in a file. ";

/// The seed of `crates/gateway/benches/decision.rs`, so that this measures
/// what the decision measures.
const DECISION: &str = "Hi, I'm planning a trip to Jakarta next month and need help. My colleague said the \
hotel near Jalan Sudirman is good. Could you compare three itineraries, explain the trade-offs step by \
step, and write a short packing list? Also translate 'where is the station' into Indonesian and Chinese \
(车站在哪里). I have a mild allergy, so mention food tips. Budget is about 1200 USD for 5 days. ";

fn sized(base: &str, n: usize) -> String {
    let mut s = String::with_capacity(n + base.len());
    while s.len() < n {
        s.push_str(base);
    }
    let mut cut = n;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn bench(c: &mut Criterion) {
    let scanner = PrivacyScanner::new();
    let mut g = c.benchmark_group("privacy_scan");
    for (name, base) in [("prose", PROSE), ("plain", PLAIN)] {
        for size in [100usize, 1_000, 10_000] {
            let text = sized(base, size);
            let turns = [Turn {
                role: Role::User,
                text: &text,
            }];
            g.bench_function(format!("{name}_{size}B"), |b| {
                b.iter(|| black_box(scanner.scan(black_box(&turns))))
            });
        }
    }
    g.finish();

    let scorer = Scorer::new();
    let mut g = c.benchmark_group("scorer");
    for (name, size) in [("100B", 100usize), ("1KB", 1024), ("10KB", 10 * 1024)] {
        let text = sized(DECISION, size);
        let turns = [Turn {
            role: Role::User,
            text: &text,
        }];
        g.bench_function(format!("score_{name}"), |b| {
            b.iter(|| black_box(scorer.score(black_box(&turns), RequestShape::default())))
        });
        g.bench_function(format!("privacy_{name}"), |b| {
            b.iter(|| black_box(scorer.privacy().scan(black_box(&turns))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
