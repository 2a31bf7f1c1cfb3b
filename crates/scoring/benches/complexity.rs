//! Criterion benchmark of complexity scoring for 100 B, 1 KB and 10 KB prompts
//! (English, Chinese and Indonesian text mixed), with the automata built once.

use std::hint::black_box;

use api::Role;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scoring::complexity::ComplexityScorer;
use scoring::{RequestShape, Turn};

/// Mixed-language text with numbers, code words and constraints, so every
/// part of the scorer does work.
const SEED: &str = "A train leaves at 3:15 pm and travels 240 km at 80 km/h; how many minutes late is it \
if it stops twice for 12 minutes each? Explain step by step and answer in JSON. \
请计算这个方程的解，并用表格列出每一步。Tolong hitung rata-rata dari 12, 15 dan 18, lalu jelaskan. \
def total(xs): return sum(x * 1.2 for x in xs)  # fix the bug in this Python function\n";

fn prompt(len: usize) -> String {
    let mut s = String::with_capacity(len + SEED.len());
    while s.len() < len {
        s.push_str(SEED);
    }
    // Cut on a char boundary at or below `len`.
    let mut cut = len.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn bench(c: &mut Criterion) {
    let scorer = ComplexityScorer::new();
    let mut group = c.benchmark_group("complexity");
    for (name, len) in [("100B", 100), ("1KB", 1024), ("10KB", 10 * 1024)] {
        let text = prompt(len);
        let turns = [Turn {
            role: Role::User,
            text: &text,
        }];
        let shape = RequestShape {
            max_tokens: Some(1024),
            has_tools: false,
            has_schema: false,
        };
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &turns, |b, turns| {
            b.iter(|| scorer.score(black_box(turns), black_box(shape)))
        });
    }
    group.finish();
    c.bench_function("complexity/new", |b| b.iter(ComplexityScorer::new));
}

criterion_group!(benches, bench);
criterion_main!(benches);
