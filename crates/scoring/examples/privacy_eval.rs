//! Evaluates the privacy scanner on the shared data (never copied into the
//! repository):
//!
//! - sentence recall on `privacy/presidio-synth.jsonl` (a sentence is
//!   sensitive when it has a high-value span) and on `privacy/pupa.jsonl`;
//! - the false-positive rate on the prompts of `routing/*.jsonl`;
//! - per-entity precision and recall on presidio-synth (span overlap);
//! - mean time per sentence and per KB.
//!
//! A sentence counts as flagged when its privacy score is at least 0.5, the
//! default policy's threshold.
//!
//! Run: `cargo run --release -p scoring --example privacy_eval -- /work/shared/data`
//! (`--misses` also prints the missed and the falsely flagged texts).

use std::collections::BTreeMap;
use std::time::Instant;

use api::Role;
use scoring::Turn;
use scoring::privacy::{Label, PrivacyReport, PrivacyScanner};
use serde::Deserialize;

const THRESHOLD: f32 = 0.5;

#[derive(Deserialize)]
struct Row {
    prompt: String,
    #[serde(default)]
    spans: Vec<Span>,
}

#[derive(Deserialize)]
struct Span {
    start: usize,
    end: usize,
    label: String,
}

/// Presidio's high-value labels and ours.
const HIGH_VALUE: [(&str, Label); 8] = [
    ("CREDIT_CARD", Label::CreditCard),
    ("EMAIL_ADDRESS", Label::Email),
    ("IBAN_CODE", Label::Iban),
    ("US_SSN", Label::UsSsn),
    ("PHONE_NUMBER", Label::Phone),
    ("PERSON", Label::Person),
    ("STREET_ADDRESS", Label::StreetAddress),
    ("IP_ADDRESS", Label::IpAddress),
];

fn ours(label: &str) -> Option<Label> {
    HIGH_VALUE.iter().find(|(p, _)| *p == label).map(|(_, l)| *l)
}

fn load(path: &std::path::Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

fn scan(s: &PrivacyScanner, text: &str) -> PrivacyReport {
    s.scan(&[Turn { role: Role::User, text }])
}

/// CPU time of the calling thread in nanoseconds (Linux `schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn short(text: &str) -> String {
    let one_line = text.replace('\n', "⏎");
    one_line.chars().take(160).collect()
}

#[derive(Default)]
struct Counts {
    tp: usize,
    fp: usize,
    gold: usize,
    found: usize,
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let root = std::path::PathBuf::from(args.next().unwrap_or_else(|| "../shared/data".into()));
    let show = args.any(|a| a == "--misses");
    let t0 = Instant::now();
    let scanner = PrivacyScanner::new();
    println!("scanner built in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);

    // Presidio-synth: sentence recall and per-entity figures.
    let presidio = load(&root.join("privacy/presidio-synth.jsonl"))?;
    let mut sensitive = 0;
    let mut caught = 0;
    let mut clean = 0;
    let mut clean_flagged = 0;
    let mut per: BTreeMap<&str, Counts> = BTreeMap::new();
    for row in &presidio {
        let r = scan(&scanner, &row.prompt);
        let gold: Vec<(&Span, Label)> = row
            .spans
            .iter()
            .filter_map(|s| ours(&s.label).map(|l| (s, l)))
            .collect();
        let flagged = r.score >= THRESHOLD;
        if gold.is_empty() {
            clean += 1;
            clean_flagged += usize::from(flagged);
        } else {
            sensitive += 1;
            caught += usize::from(flagged);
            if !flagged && show {
                println!("  MISS {:.2} {}", r.score, short(&row.prompt));
            }
        }
        for (p, l) in HIGH_VALUE {
            let c = per.entry(p).or_default();
            for (s, _) in gold.iter().filter(|(_, gl)| *gl == l) {
                c.gold += 1;
                if r.entities
                    .iter()
                    .any(|e| e.label == l && e.start < s.end && s.start < e.end)
                {
                    c.tp += 1;
                }
            }
            for e in r.entities.iter().filter(|e| e.label == l) {
                c.found += 1;
                // Precision: the found span overlaps a gold span of the same type.
                if !gold
                    .iter()
                    .any(|(s, gl)| *gl == l && e.start < s.end && s.start < e.end)
                {
                    c.fp += 1;
                }
            }
        }
    }
    let pct = |a: usize, b: usize| if b == 0 { f64::NAN } else { 100.0 * a as f64 / b as f64 };
    println!(
        "\npresidio-synth: {} sentences, {sensitive} with high-value spans",
        presidio.len()
    );
    println!(
        "  sentence recall (score >= {THRESHOLD}): {:.1}% ({caught}/{sensitive})   [goal >= 97%]",
        pct(caught, sensitive)
    );
    println!(
        "  flagged among sentences without high-value spans: {:.1}% ({clean_flagged}/{clean})",
        pct(clean_flagged, clean)
    );
    println!("  per entity type (span overlap):");
    println!("    {:<16} {:>6} {:>9} {:>9}", "type", "gold", "recall", "precision");
    for (p, c) in &per {
        println!(
            "    {:<16} {:>6} {:>8.1}% {:>8.1}%",
            p,
            c.gold,
            pct(c.tp, c.gold),
            pct(c.found - c.fp, c.found)
        );
    }

    // PUPA: every prompt carries personal context.
    let pupa = load(&root.join("privacy/pupa.jsonl"))?;
    let pupa_caught = pupa
        .iter()
        .filter(|r| scan(&scanner, &r.prompt).score >= THRESHOLD)
        .count();
    println!(
        "\npupa: sentence recall {:.1}% ({pupa_caught}/{}) (reference)",
        pct(pupa_caught, pupa.len()),
        pupa.len()
    );

    // Routing prompts: ordinary requests, none should be flagged.
    let mut files: Vec<_> = std::fs::read_dir(root.join("routing"))
        .map_err(|e| format!("routing/: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut total = 0;
    let mut flagged = 0;
    let mut routing_texts: Vec<String> = Vec::new();
    println!("\nfalse positives on routing prompts (score >= {THRESHOLD}):");
    for f in &files {
        let rows = load(f)?;
        routing_texts.extend(rows.iter().map(|r| r.prompt.clone()));
        let mut n = 0;
        for row in &rows {
            let r = scan(&scanner, &row.prompt);
            if r.score >= THRESHOLD {
                n += 1;
                if show {
                    let labels: Vec<&str> = r.entities.iter().map(|e| e.label.as_str()).collect();
                    println!("  FP {:.2} {:?} {}", r.score, labels, short(&row.prompt));
                }
            }
        }
        let name = f
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("  {:<22} {:>5.1}% ({n}/{})", name, pct(n, rows.len()), rows.len());
        total += rows.len();
        flagged += n;
    }
    println!(
        "  {:<22} {:>5.1}% ({flagged}/{total})   [goal <= 2%]",
        "all",
        pct(flagged, total)
    );

    // Timing: every presidio sentence, several rounds.
    let rounds: usize = std::env::var("PRIVACY_EVAL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let bytes: usize = presidio.iter().map(|r| r.prompt.len()).sum();
    let t = Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut sink = 0f32;
    for _ in 0..rounds {
        for row in &presidio {
            sink += scan(&scanner, &row.prompt).score;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let scans = (rounds * presidio.len()) as f64;
    let kb = rounds as f64 * bytes as f64 / 1024.0;
    println!(
        "\ntiming over {rounds} rounds (mean sentence {} B; checksum {sink:.0}):",
        bytes / presidio.len()
    );
    println!(
        "  wall: {:.2} µs per sentence, {:.2} µs per KB",
        wall * 1e6 / scans,
        wall * 1e6 / kb
    );
    // CPU time of this thread: the figure that does not depend on what else
    // the machine runs.
    if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
        let cpu = (b - a) as f64 / 1e9;
        println!(
            "  cpu:  {:.2} µs per sentence, {:.2} µs per KB",
            cpu * 1e6 / scans,
            cpu * 1e6 / kb
        );
    }
    // The routing prompts: longer, ordinary requests.
    let rbytes: usize = routing_texts.iter().map(String::len).sum();
    let rounds = (rounds / 4).max(1);
    let cpu0 = thread_cpu_ns();
    let t = Instant::now();
    for _ in 0..rounds {
        for text in &routing_texts {
            sink += scan(&scanner, text).score;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let kb = rounds as f64 * rbytes as f64 / 1024.0;
    println!(
        "routing prompts over {rounds} rounds (mean {} B): wall {:.2} µs per KB",
        rbytes / routing_texts.len().max(1),
        wall * 1e6 / kb
    );
    if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
        println!("  cpu:  {:.2} µs per KB", (b - a) as f64 / 1e3 / kb);
    }
    std::hint::black_box(sink);
    Ok(())
}
