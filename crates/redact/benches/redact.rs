//! Cost of redact-then-cloud per request: redacting a 1 KB prompt with 5
//! entities, and restoring a 1 KB answer streamed in 20 chunks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use api::ChatRequest;
use criterion::{Criterion, criterion_group, criterion_main};
use redact::{PlaceholderMap, Restorer, Span, redact};

const ENTITIES: [(&str, &str); 5] = [
    ("ann.lee@example.com", "email"),
    ("Ann Lee", "person"),
    ("4111 1111 1111 1111", "credit_card"),
    ("+62 812 5550 0199", "phone"),
    ("张伟", "person"),
];

/// A ~1 KB prompt: filler text with the five values spread through it.
fn prompt() -> (ChatRequest, Vec<Span>) {
    let filler = "Please help me write a short, polite note about the order and the delivery window. ";
    let mut text = String::new();
    for (value, _) in ENTITIES {
        text.push_str(filler);
        text.push_str(filler);
        text.push_str(value);
        text.push_str(". ");
    }
    text.push_str(filler);
    let spans = ENTITIES
        .iter()
        .map(|(value, label)| {
            let start = text.find(value).unwrap();
            Span {
                message: 1,
                byte_start: start,
                byte_end: start + value.len(),
                label,
            }
        })
        .collect();
    let body = serde_json::json!({
        "model": "auto",
        "stream": true,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text},
        ]
    });
    (ChatRequest::from_slice(body.to_string().as_bytes()).unwrap(), spans)
}

/// A ~1 KB answer using every placeholder, cut into 20 chunks at char
/// boundaries, so several placeholders arrive split.
fn answer_chunks(map: &PlaceholderMap) -> Vec<String> {
    let filler = "Here is a draft of the note you asked for, kept short and polite as requested ";
    let mut text = String::new();
    while text.len() < 1024 {
        for (p, _) in map.placeholders() {
            text.push_str(filler);
            text.push_str(p);
            text.push(' ');
        }
    }
    let step = text.len() / 20;
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + step).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        chunks.push(text[at..end].to_owned());
        at = end;
    }
    chunks
}

fn bench(c: &mut Criterion) {
    let (req, spans) = prompt();
    let map = redact(&req, &spans).map;
    assert_eq!(map.len(), 5);
    let chunks = answer_chunks(&map);
    assert!((19..=21).contains(&chunks.len()));

    c.bench_function("redact_1kb_5_entities", |b| {
        b.iter(|| redact(black_box(&req), black_box(&spans)))
    });
    c.bench_function("restore_1kb_20_chunks", |b| {
        b.iter(|| {
            let mut r = Restorer::new(&map);
            let mut n = 0;
            for chunk in &chunks {
                n += r.push(black_box(chunk)).len();
            }
            n + r.finish().len()
        })
    });
    c.bench_function("round_trip_per_request", |b| {
        b.iter(|| {
            let red = redact(black_box(&req), black_box(&spans));
            let mut r = Restorer::new(&red.map);
            let mut n = red.request.messages.len();
            for chunk in &chunks {
                n += r.push(black_box(chunk)).len();
            }
            n + r.finish().len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
