//! Fits the learned complexity weights and writes `src/complexity/weights.rs`.
//!
//! ```text
//! cargo run --release -p scoring --example complexity_fit -- /work/shared/data [--write]
//! ```
//!
//! Model: logistic regression of `needs_strong` on the features that
//! [`ComplexityScorer::features`] measures, over every routing set that has
//! both classes. The hand-set features enter as a fixed offset; each set gets
//! its own intercept, so the shared weights learn what makes a prompt harder
//! *within* a set (the small models differ: GPT-3 6B fails 78% of GSM8K,
//! Mixtral 35%) and not which benchmark it came from. Each set carries the same
//! total weight; L2 penalty on the standardised weights. Newton's method, no
//! randomness: the same data gives the same file.
//!
//! Exploration knobs (environment): `KEEP_ARITHMETIC` / `KEEP_CHOICE`
//! (comma-separated feature names to learn instead of the spec's), `LAMBDA`
//! (penalty), `NOHAND` (drop the hand-set offset), `DUMP=file` (write each
//! row's set, kind, offset, label, fold, columns and prompt as TSV, for
//! exploring elsewhere; the file stays outside the repository). The committed weights use
//! none of them.
//!
//! It prints 5-fold cross-validated AUROC per set (folds by prompt, so the
//! two GSM8K sets never share a problem across folds) next to the
//! prompt-length baseline, then the in-sample figures of the final fit.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a developer tool run by hand")]

#[path = "complexity_data/mod.rs"]
mod data;

use std::fmt::Write as _;
use std::path::PathBuf;

use api::Role;
use scoring::complexity::{ComplexityScorer, FEATURES, Features, Kind, N_FEATURES, Weighting};
use scoring::{RequestShape, Turn};

/// L2 penalty on standardised weights (per unit of total sample weight).
const LAMBDA: f64 = 0.02;
const FOLDS: u64 = 5;
/// The device base level: how far, in logits, the on-device reference model
/// sits from Mixtral-8x7B towards GPT-3 6B (0 = Mixtral, 1 = GPT-3 6B),
/// measured on the shared GSM8K problems.
const DEVICE_POSITION: f64 = 0.5;

struct Sample {
    set: usize,
    x: Vec<f64>,
    kind: Kind,
    offset: f64,
    y: bool,
    fold: u64,
    len: f64,
}

/// One learned column: a feature on one kind of request.
#[derive(Clone, Copy)]
struct Column {
    feature: usize,
    kind: Kind,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/work/shared/data".into()));
    let write = args.any(|a| a == "--write");
    let rows = data::load_routing(&dir).unwrap_or_else(|e| panic!("{e}"));
    let scorer = ComplexityScorer::new();
    let columns = columns();

    // Sets with both classes only.
    let names = data::set_names(&rows);
    let mut sets: Vec<String> = Vec::new();
    for n in &names {
        let labels: Vec<bool> = rows
            .iter()
            .filter(|r| &r.set == n)
            .filter_map(|r| r.needs_strong)
            .collect();
        if labels.iter().any(|&b| b) && labels.iter().any(|&b| !b) {
            sets.push(n.clone());
        }
    }
    print_feature_means(&scorer, &rows, &names);
    let mut samples = Vec::new();
    for r in &rows {
        let (Some(set), Some(y)) = (sets.iter().position(|s| s == &r.set), r.needs_strong) else {
            continue;
        };
        let turns = [Turn {
            role: Role::User,
            text: &r.prompt,
        }];
        let f = scorer.features(&turns, RequestShape::default());
        samples.push(Sample {
            set,
            x: columns.iter().map(|c| f64::from(f.values[c.feature])).collect(),
            kind: f.kind,
            offset: hand_offset(&f),
            y,
            fold: data::fnv(&r.prompt) % FOLDS,
            len: r.prompt.chars().count() as f64,
        });
    }
    if let Ok(path) = std::env::var("DUMP") {
        let mut out = String::new();
        for (s, r) in samples.iter().zip(
            rows.iter()
                .filter(|r| sets.contains(&r.set) && r.needs_strong.is_some()),
        ) {
            let x: Vec<String> = s.x.iter().map(|v| format!("{v}")).collect();
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                s.set,
                s.kind as usize,
                s.offset,
                u8::from(s.y),
                s.fold,
                x.join(","),
                r.prompt.replace(['\n', '\t'], " ")
            );
        }
        std::fs::write(path, out).unwrap();
    }
    println!(
        "\nfitting {} learned columns on {} rows of {:?}",
        columns.len(),
        samples.len(),
        sets
    );

    // Cross-validation.
    let mut cv_scores = vec![0f64; samples.len()];
    for fold in 0..FOLDS {
        let train: Vec<&Sample> = samples.iter().filter(|s| s.fold != fold).collect();
        let model = fit(&train, &columns, sets.len());
        for (k, s) in samples.iter().enumerate() {
            if s.fold == fold {
                cv_scores[k] = model.shared_logit(s, &columns);
            }
        }
    }
    let all: Vec<&Sample> = samples.iter().collect();
    let model = fit(&all, &columns, sets.len());
    let fit_scores: Vec<f64> = samples.iter().map(|s| model.shared_logit(s, &columns)).collect();
    println!(
        "\n{:<16} {:>6} {:>8} {:>8} {:>8}",
        "set", "rows", "length", "cv", "in-fit"
    );
    let (mut macro_cv, mut macro_fit) = (0.0, 0.0);
    for (si, name) in sets.iter().enumerate() {
        let mut v: [Vec<f64>; 3] = Default::default();
        let mut y = Vec::new();
        for (k, s) in samples.iter().enumerate().filter(|(_, s)| s.set == si) {
            v[0].push(s.len);
            v[1].push(cv_scores[k]);
            v[2].push(fit_scores[k]);
            y.push(s.y);
        }
        let a: Vec<f64> = v.iter().map(|x| data::auroc(x, &y).unwrap_or(f64::NAN)).collect();
        macro_cv += a[1] / sets.len() as f64;
        macro_fit += a[2] / sets.len() as f64;
        println!("{name:<16} {:>6} {:>8.3} {:>8.3} {:>8.3}", y.len(), a[0], a[1], a[2]);
    }
    println!("{:<16} {:>6} {:>8} {macro_cv:>8.3} {macro_fit:>8.3}", "macro", "", "");

    // Unstandardise: raw weights, and per set and kind the intercept at raw
    // zero features.
    let mut w_kind = [[0f64; N_FEATURES]; 3];
    let mut shift = [0f64; 3];
    for (j, c) in columns.iter().enumerate() {
        let w = model.w[j] / model.sd[j];
        w_kind[c.kind as usize][c.feature] = w;
        shift[c.kind as usize] += w * model.mu[j];
    }
    println!("\nweights (per raw feature unit): arithmetic choice");
    for (i, spec) in FEATURES.iter().enumerate() {
        if matches!(spec.weighting, Weighting::Learned { .. }) {
            println!("  {:<18} {:>8.4} {:>8.4}", spec.name, w_kind[1][i], w_kind[2][i]);
        }
    }
    let intercept = |name: &str, kind: Kind| -> f64 {
        sets.iter()
            .position(|s| s == name)
            .map_or(f64::NAN, |i| model.b[i] - shift[kind as usize])
    };
    for s in &sets {
        println!(
            "  intercept {s:<16} arithmetic {:>8.4} choice {:>8.4}",
            intercept(s, Kind::Arithmetic),
            intercept(s, Kind::Choice)
        );
    }
    // The device sits between the two small models measured on the same
    // problems; the same shift applies to multiple choice, where only
    // Mixtral was measured.
    let gpt3 = intercept("gsm8k-gpt3", Kind::Arithmetic);
    let mixtral = intercept("gsm8k-mixtral", Kind::Arithmetic);
    let device_shift = DEVICE_POSITION * (gpt3 - mixtral);
    let arithmetic_bias = mixtral + device_shift;
    let choice_bias = intercept("mmlu-mixtral", Kind::Choice) + device_shift;
    println!("  device: arithmetic bias {arithmetic_bias:.4}, choice bias {choice_bias:.4}");

    if write {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/complexity/weights.rs");
        let mut out = String::new();
        out.push_str("//! Learned complexity weights, generated by `examples/complexity_fit.rs`: do not edit.\n");
        out.push_str("//!\n//! Regenerate: `cargo run --release -p scoring --example complexity_fit -- <shared data> --write`.\n");
        let _ = writeln!(
            out,
            "//! Fitted on {} rows of {}; cross-validated macro AUROC {macro_cv:.3}.",
            samples.len(),
            sets.join(", ")
        );
        let _ = writeln!(
            out,
            "\n/// Device base level of word problems: Mixtral's GSM8K intercept ({mixtral:.3}) moved \
             {DEVICE_POSITION} of the way to GPT-3 6B's ({gpt3:.3})."
        );
        let _ = writeln!(out, "pub(super) const ARITHMETIC_BIAS: f32 = {arithmetic_bias:.4};");
        let _ = writeln!(
            out,
            "\n/// Device base level of multiple choice: Mixtral's MMLU intercept, shifted as above ({device_shift:.3})."
        );
        let _ = writeln!(out, "pub(super) const CHOICE_BIAS: f32 = {choice_bias:.4};");
        for (name, doc, w) in [
            ("ARITHMETIC", "word problems", &w_kind[Kind::Arithmetic as usize]),
            ("CHOICE", "multiple-choice questions", &w_kind[Kind::Choice as usize]),
        ] {
            let _ = writeln!(out, "\n/// Learned weights for {doc}, by feature name.");
            let _ = writeln!(out, "pub(super) const {name}: &[(&str, f32)] = &[");
            for (i, v) in w.iter().enumerate() {
                if *v != 0.0 {
                    let _ = writeln!(out, "    (\"{}\", {v:.4}),", FEATURES[i].name);
                }
            }
            out.push_str("];\n");
        }
        std::fs::write(&path, out).expect("write weights.rs");
        println!("\nwrote {}", path.display());
    }
}

/// The learned columns: every learned feature on the kinds the spec names
/// (`KEEP_ARITHMETIC` / `KEEP_CHOICE`, comma-separated names, override it
/// when exploring).
fn columns() -> Vec<Column> {
    let keep = |var: &str, name: &str, default: bool| match std::env::var(var) {
        Ok(list) => list.split(',').any(|k| k == name),
        Err(_) => default,
    };
    let mut cols = Vec::new();
    for (i, spec) in FEATURES.iter().enumerate() {
        if let Weighting::Learned { arithmetic, choice, .. } = spec.weighting {
            if keep("KEEP_ARITHMETIC", spec.name, arithmetic) {
                cols.push(Column {
                    feature: i,
                    kind: Kind::Arithmetic,
                });
            }
            if keep("KEEP_CHOICE", spec.name, choice) {
                cols.push(Column {
                    feature: i,
                    kind: Kind::Choice,
                });
            }
        }
    }
    cols
}

/// Mean of every feature per set (all sets, labelled or not): shows which
/// hand-set families fire where they should not.
fn print_feature_means(scorer: &ComplexityScorer, rows: &[data::Row], names: &[String]) {
    println!(
        "{:<18} {}",
        "feature",
        names.iter().map(|n| format!("{:>13}", trunc(n))).collect::<String>()
    );
    let per_set: Vec<Vec<Features>> = names
        .iter()
        .map(|n| {
            rows.iter()
                .filter(|r| &r.set == n)
                .map(|r| {
                    scorer.features(
                        &[Turn {
                            role: Role::User,
                            text: &r.prompt,
                        }],
                        RequestShape::default(),
                    )
                })
                .collect()
        })
        .collect();
    let mean =
        |fs: &Vec<Features>, v: &dyn Fn(&Features) -> f64| fs.iter().map(v).sum::<f64>() / fs.len().max(1) as f64;
    for (i, spec) in FEATURES.iter().enumerate() {
        let means: String = per_set
            .iter()
            .map(|fs| format!("{:>13.3}", mean(fs, &|f| f64::from(f.values[i]))))
            .collect();
        let tag = if matches!(spec.weighting, Weighting::Hand(_)) {
            "*"
        } else {
            " "
        };
        println!("{:<17}{tag} {means}", spec.name);
    }
    for kind in Kind::ALL {
        let means: String = per_set
            .iter()
            .map(|fs| format!("{:>13.3}", mean(fs, &|f| f64::from(u8::from(f.kind == kind)))))
            .collect();
        println!("kind {:<13} {means}", kind.as_str());
    }
}

fn lambda() -> f64 {
    std::env::var("LAMBDA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LAMBDA)
}

fn trunc(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// The logit contributed by the hand-set features (fixed during the fit).
fn hand_offset(f: &Features) -> f64 {
    if std::env::var("NOHAND").is_ok() {
        return 0.0;
    }
    let mut z = 0.0;
    for (i, spec) in FEATURES.iter().enumerate() {
        if let Weighting::Hand(w) = spec.weighting {
            z += f64::from(w) * f64::from(f.values[i]);
        }
    }
    z
}

struct Model {
    /// Mean and spread of each column over the rows of its kind.
    mu: Vec<f64>,
    sd: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
}

impl Model {
    /// Standardised column values; a column of the other kind reads 0.
    fn z(&self, s: &Sample, columns: &[Column]) -> Vec<f64> {
        columns
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if c.kind == s.kind {
                    (s.x[j] - self.mu[j]) / self.sd[j]
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The logit without the set intercept: what ranks prompts within a set.
    fn shared_logit(&self, s: &Sample, columns: &[Column]) -> f64 {
        s.offset + self.z(s, columns).iter().zip(&self.w).map(|(a, b)| a * b).sum::<f64>()
    }
}

fn fit(train: &[&Sample], columns: &[Column], n_sets: usize) -> Model {
    let d = columns.len();
    let n = train.len() as f64;
    let mut mu = vec![0f64; d];
    let mut sd = vec![0f64; d];
    for (j, c) in columns.iter().enumerate() {
        let kind: Vec<f64> = train.iter().filter(|s| s.kind == c.kind).map(|s| s.x[j]).collect();
        let m = kind.len().max(1) as f64;
        mu[j] = kind.iter().sum::<f64>() / m;
        sd[j] = (kind.iter().map(|x| (x - mu[j]).powi(2)).sum::<f64>() / m)
            .sqrt()
            .max(1e-6);
    }
    let mut model = Model {
        mu,
        sd,
        w: vec![0.0; d],
        b: vec![0.0; n_sets],
    };
    // Each set carries the same total weight.
    let mut per_set = vec![0f64; n_sets];
    for s in train {
        per_set[s.set] += 1.0;
    }
    let sw: Vec<f64> = per_set
        .iter()
        .map(|&c| if c > 0.0 { n / (n_sets as f64 * c) } else { 0.0 })
        .collect();
    let zs: Vec<Vec<f64>> = train.iter().map(|s| model.z(s, columns)).collect();
    let p = d + n_sets;
    let mut theta = vec![0f64; p];
    for _ in 0..50 {
        let mut g = vec![0f64; p];
        let mut h = vec![vec![0f64; p]; p];
        for (s, z0) in train.iter().zip(&zs) {
            let mut xx = z0.clone();
            xx.resize(p, 0.0);
            xx[d + s.set] = 1.0;
            let z: f64 = s.offset + xx.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>();
            let pr = 1.0 / (1.0 + (-z).exp());
            let wt = sw[s.set];
            let e = wt * (pr - f64::from(u8::from(s.y)));
            let v = wt * pr * (1.0 - pr);
            for a in 0..p {
                if xx[a] == 0.0 {
                    continue;
                }
                g[a] += e * xx[a];
                for b in 0..p {
                    h[a][b] += v * xx[a] * xx[b];
                }
            }
        }
        for j in 0..d {
            g[j] += lambda() * n * theta[j];
            h[j][j] += lambda() * n;
        }
        for (a, row) in h.iter_mut().enumerate() {
            row[a] += 1e-9;
        }
        let step = solve(h, g);
        let mut max = 0f64;
        for (t, s) in theta.iter_mut().zip(&step) {
            *t -= s;
            max = max.max(s.abs());
        }
        if max < 1e-10 {
            break;
        }
    }
    model.w = theta[..d].to_vec();
    model.b = theta[d..].to_vec();
    model
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let piv = (c..n).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs())).unwrap();
        a.swap(c, piv);
        b.swap(c, piv);
        let pivot = a[c].clone();
        if pivot[c] == 0.0 {
            continue;
        }
        for r in 0..n {
            let f = a[r][c] / pivot[c];
            if r != c && f != 0.0 {
                for (x, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                    *x -= f * p;
                }
                b[r] -= f * b[c];
            }
        }
    }
    (0..n)
        .map(|i| if a[i][i] != 0.0 { b[i] / a[i][i] } else { 0.0 })
        .collect()
}
