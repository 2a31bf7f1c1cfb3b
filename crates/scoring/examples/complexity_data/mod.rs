//! Shared by the complexity examples: loading the routing sets (read from the
//! shared data folder, never copied into the repository), AUROC, the CPT
//! figures and the built-in everyday prompts.

#![allow(dead_code, reason = "each example uses a different part")]

use std::fs;
use std::path::Path;

use serde::Deserialize;

/// One row of `routing/*.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub id: String,
    pub set: String,
    pub prompt: String,
    /// Multi-turn sets (mt-bench) give every user turn.
    #[serde(default)]
    pub turns: Option<Vec<String>>,
    #[serde(default)]
    pub small_correct: Option<bool>,
    #[serde(default)]
    pub large_correct: Option<bool>,
    #[serde(default)]
    pub needs_strong: Option<bool>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// Reads every `routing/*.jsonl` under `data_dir`, files in name order.
pub fn load_routing(data_dir: &Path) -> Result<Vec<Row>, String> {
    let dir = data_dir.join("routing");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: Row = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", f.display(), i + 1))?;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The names of the sets, in first-seen order.
pub fn set_names(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        if !names.contains(&r.set) {
            names.push(r.set.clone());
        }
    }
    names
}

/// Area under the ROC curve (ties count half); `None` without both classes.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut pos, mut neg) = (0f64, 0f64);
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            j += 1;
        }
        // Average rank (1-based) of the tie block i..j.
        let avg = (i + j + 1) as f64 / 2.0;
        for &k in &idx[i..j] {
            if labels[k] {
                pos += 1.0;
                rank_sum += avg;
            } else {
                neg += 1.0;
            }
        }
        i = j;
    }
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// RouteLLM's call-performance threshold: the smallest share of requests sent
/// to the large model (highest scores first) that recovers `target` of the
/// quality gap between answering everything small and everything large.
/// `rows` are (score, small_correct, large_correct).
pub fn cpt(rows: &[(f64, bool, bool)], target: f64) -> Option<f64> {
    let n = rows.len();
    if n == 0 {
        return None;
    }
    let small: f64 = rows.iter().filter(|r| r.1).count() as f64;
    let large: f64 = rows.iter().filter(|r| r.2).count() as f64;
    let gap = large - small;
    if gap <= 0.0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| rows[b].0.total_cmp(&rows[a].0));
    let mut quality = small;
    if target <= 0.0 {
        return Some(0.0);
    }
    let mut k = 0;
    while k < n {
        // Ties go to the cloud together: a threshold cannot split them.
        let mut j = k;
        while j < n && rows[idx[j]].0 == rows[idx[k]].0 {
            let r = rows[idx[j]];
            quality += f64::from(u8::from(r.2)) - f64::from(u8::from(r.1));
            j += 1;
        }
        k = j;
        if (quality - small) / gap >= target {
            return Some(k as f64 / n as f64);
        }
    }
    Some(1.0)
}

/// A stable 64-bit FNV-1a hash, for folds that keep one prompt in one fold.
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
