//! Evaluates complexity on the routing sets and on built-in everyday prompts.
//!
//! ```text
//! cargo run --release -p scoring --example complexity_eval -- /work/shared/data
//! ```
//!
//! Prints, per set, the AUROC of complexity against `needs_strong` next to
//! the prompt-length baseline; the macro AUROC over the sets with both
//! classes; RouteLLM's CPT figures over every row with both models' results;
//! the everyday prompts (`tests/complexity_everyday.txt`) against arena-hard;
//! MT-Bench per category; and the mean time per prompt.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a developer tool run by hand")]

#[path = "complexity_data/mod.rs"]
mod data;

use std::path::PathBuf;
use std::time::Instant;

use api::Role;
use scoring::complexity::ComplexityScorer;
use scoring::{RequestShape, Turn};

const EVERYDAY: &str = include_str!("../tests/complexity_everyday.txt");
/// The default policy sends complexity at or above this to the cloud.
const CLOUD_THRESHOLD: f64 = 0.6;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/work/shared/data".into()));
    let rows = data::load_routing(&dir).unwrap_or_else(|e| panic!("{e}"));
    let scorer = ComplexityScorer::new();
    let score =
        |text: &str| -> f64 { f64::from(scorer.score(&[Turn { role: Role::User, text }], RequestShape::default())) };
    let scores: Vec<f64> = rows.iter().map(|r| score(&r.prompt)).collect();
    let lengths: Vec<f64> = rows.iter().map(|r| r.prompt.chars().count() as f64).collect();

    println!("Per set: AUROC of complexity vs needs_strong, and of prompt length (chars)");
    println!(
        "{:<15} {:>5} {:>7} {:>11} {:>8} {:>7} {:>9}",
        "set", "rows", "strong%", "complexity", "length", "mean", ">=0.6 %"
    );
    let (mut sum_c, mut sum_l, mut n_sets) = (0.0, 0.0, 0);
    for set in data::set_names(&rows) {
        let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].set == set).collect();
        let labelled: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| rows[i].needs_strong.is_some())
            .collect();
        let y: Vec<bool> = labelled.iter().map(|&i| rows[i].needs_strong == Some(true)).collect();
        let pick = |v: &[f64]| labelled.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let a_c = data::auroc(&pick(&scores), &y);
        let a_l = data::auroc(&pick(&lengths), &y);
        if let (Some(c), Some(l)) = (a_c, a_l) {
            sum_c += c;
            sum_l += l;
            n_sets += 1;
        }
        let fmt = |a: Option<f64>| a.map_or("-".to_string(), |v| format!("{v:.3}"));
        let strong = if y.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.0}",
                100.0 * y.iter().filter(|&&b| b).count() as f64 / y.len() as f64
            )
        };
        let mean = idx.iter().map(|&i| scores[i]).sum::<f64>() / idx.len().max(1) as f64;
        let cloud = idx.iter().filter(|&&i| scores[i] >= CLOUD_THRESHOLD).count() as f64 / idx.len().max(1) as f64;
        println!(
            "{set:<15} {:>5} {strong:>7} {:>11} {:>8} {mean:>7.3} {:>9.1}",
            idx.len(),
            fmt(a_c),
            fmt(a_l),
            100.0 * cloud
        );
    }
    if n_sets > 0 {
        println!(
            "{:<15} {:>5} {:>7} {:>11.3} {:>8.3}   (over {n_sets} sets with both classes)",
            "macro",
            "",
            "",
            sum_c / f64::from(n_sets),
            sum_l / f64::from(n_sets)
        );
    }

    println!("\nCPT over all rows with small_correct and large_correct (% of requests sent to the cloud");
    println!("to recover that share of the small-to-large quality gap; random routing needs about the share itself)");
    let both: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].small_correct.is_some() && rows[i].large_correct.is_some())
        .collect();
    let small = both.iter().filter(|&&i| rows[i].small_correct == Some(true)).count() as f64;
    let large = both.iter().filter(|&&i| rows[i].large_correct == Some(true)).count() as f64;
    println!(
        "  {} rows; small model {:.1}% correct, large {:.1}%",
        both.len(),
        100.0 * small / both.len().max(1) as f64,
        100.0 * large / both.len().max(1) as f64
    );
    for (name, v) in [("complexity", &scores), ("length", &lengths)] {
        let triples: Vec<(f64, bool, bool)> = both
            .iter()
            .map(|&i| {
                (
                    v[i],
                    rows[i].small_correct == Some(true),
                    rows[i].large_correct == Some(true),
                )
            })
            .collect();
        let cpt: Vec<String> = [0.5, 0.8, 0.95]
            .iter()
            .map(|&t| data::cpt(&triples, t).map_or("-".into(), |c| format!("{:.1}%", 100.0 * c)))
            .collect();
        println!(
            "  {name:<11} CPT(50%) {:>6}  CPT(80%) {:>6}  CPT(95%) {:>6}",
            cpt[0], cpt[1], cpt[2]
        );
    }

    println!("\nEveryday short requests (built in: tests/complexity_everyday.txt) vs arena-hard");
    let everyday: Vec<&str> = EVERYDAY
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let ev: Vec<f64> = everyday.iter().map(|p| score(p)).collect();
    let mut arena: Vec<f64> = (0..rows.len())
        .filter(|&i| rows[i].set == "arena-hard")
        .map(|i| scores[i])
        .collect();
    arena.sort_by(f64::total_cmp);
    let ev_max = ev.iter().copied().fold(0.0, f64::max);
    let ev_mean = ev.iter().sum::<f64>() / ev.len().max(1) as f64;
    println!(
        "  everyday ({} prompts): mean {ev_mean:.3}, max {ev_max:.3}, >=0.6: {}",
        ev.len(),
        ev.iter().filter(|&&s| s >= CLOUD_THRESHOLD).count()
    );
    if !arena.is_empty() {
        let q = |p: f64| arena[((arena.len() - 1) as f64 * p).round() as usize];
        let mean = arena.iter().sum::<f64>() / arena.len() as f64;
        println!(
            "  arena-hard ({} prompts): mean {mean:.3}, min {:.3}, lower quartile {:.3}, median {:.3}, >=0.6: {:.1}%",
            arena.len(),
            q(0.0),
            q(0.25),
            q(0.5),
            100.0 * arena.iter().filter(|&&s| s >= CLOUD_THRESHOLD).count() as f64 / arena.len() as f64
        );
        let below = ev.iter().filter(|&&s| s < q(0.25)).count();
        println!(
            "  everyday prompts below arena-hard's lower quartile: {below}/{}",
            ev.len()
        );
    }
    let mut top: Vec<(f64, &str)> = ev.iter().copied().zip(everyday.iter().copied()).collect();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (s, p) in top.iter().take(3) {
        println!("    highest everyday: {s:.3}  {p}");
    }

    let mut cats: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let (Some(cat), Some(turns)) = (&r.category, &r.turns) else {
            continue;
        };
        // The whole conversation: every user turn, with an empty answer between.
        let mut conv = Vec::new();
        for (k, t) in turns.iter().enumerate() {
            if k > 0 {
                conv.push(Turn {
                    role: Role::Assistant,
                    text: "",
                });
            }
            conv.push(Turn {
                role: Role::User,
                text: t,
            });
        }
        let s_conv = f64::from(scorer.score(&conv, RequestShape::default()));
        match cats.iter_mut().find(|c| &c.0 == cat) {
            Some(c) => {
                c.1.push(scores[i]);
                c.2.push(s_conv);
            }
            None => cats.push((cat.clone(), vec![scores[i]], vec![s_conv])),
        }
    }
    if !cats.is_empty() {
        println!("\nMT-Bench by category: mean complexity of the first turn / of the whole conversation");
        for (cat, first, conv) in &cats {
            let m = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
            println!(
                "  {cat:<12} {:>3} prompts  {:.3} / {:.3}",
                first.len(),
                m(first),
                m(conv)
            );
        }
    }

    // Timing: every prompt, several rounds, one scorer.
    let rounds = 20;
    let bytes: usize = rows.iter().map(|r| r.prompt.len()).sum();
    let start = Instant::now();
    let mut sink = 0.0f32;
    for _ in 0..rounds {
        for r in &rows {
            sink += scorer.score(
                &[Turn {
                    role: Role::User,
                    text: &r.prompt,
                }],
                RequestShape::default(),
            );
        }
    }
    let el = start.elapsed().as_secs_f64();
    let per = el / (rounds * rows.len()) as f64;
    println!(
        "\nSpeed: {:.2} µs per prompt on average ({} prompts, mean {:.0} bytes), {:.2} µs per KB (checksum {sink:.1})",
        1e6 * per,
        rows.len(),
        bytes as f64 / rows.len() as f64,
        1e6 * el / (rounds as f64 * bytes as f64 / 1024.0)
    );
}
