//! Memory: what a model will need before it is loaded (weights, KV cache,
//! compute buffers, from the GGUF header), what the device has
//! (`MemAvailable` from `/proc/meminfo`), and what the process holds
//! (`VmRSS`).

use std::path::Path;

use llama_cpp_2::gguf::GgufContext;
use serde::Serialize;

/// The architecture figures the estimate needs, read from the GGUF header
/// without loading any tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMeta {
    pub arch: String,
    pub n_layer: u64,
    pub n_embd: u64,
    /// Width of one token's keys over all KV heads (`n_embd_k_gqa`).
    pub n_embd_k_gqa: u64,
    /// Width of one token's values over all KV heads (`n_embd_v_gqa`).
    pub n_embd_v_gqa: u64,
    pub n_vocab: u64,
}

// GGUF value types (the file format's own numbering, stable across versions).
const GGUF_TYPE_UINT32: u32 = 4;
const GGUF_TYPE_INT32: u32 = 5;
const GGUF_TYPE_STRING: u32 = 8;
const GGUF_TYPE_UINT64: u32 = 10;

/// Used when a header lacks the vocabulary size: the largest vocabulary in
/// common use (Gemma 3), so the estimate errs on the safe side.
const FALLBACK_VOCAB: u64 = 262_144;

fn meta_uint(g: &GgufContext, key: &str) -> Option<u64> {
    let idx = g.find_key(key);
    if idx < 0 {
        return None;
    }
    // Reading a value as the wrong type aborts inside ggml: check first.
    match g.kv_type(idx) {
        GGUF_TYPE_UINT32 => Some(u64::from(g.val_u32(idx))),
        GGUF_TYPE_INT32 => u64::try_from(g.val_i32(idx)).ok(),
        GGUF_TYPE_UINT64 => Some(g.val_u64(idx)),
        _ => None,
    }
}

fn meta_str<'a>(g: &'a GgufContext, key: &str) -> Option<&'a str> {
    let idx = g.find_key(key);
    if idx < 0 || g.kv_type(idx) != GGUF_TYPE_STRING {
        return None;
    }
    g.val_str(idx)
}

/// Reads the header of a GGUF file. `None` when the file is not GGUF or
/// lacks the basic architecture keys.
pub fn read_meta(path: &Path) -> Option<ModelMeta> {
    let g = GgufContext::from_file(path)?;
    let arch = meta_str(&g, "general.architecture")?.to_owned();
    let key = |k: &str| format!("{arch}.{k}");
    let n_layer = meta_uint(&g, &key("block_count"))?;
    let n_embd = meta_uint(&g, &key("embedding_length"))?;
    let n_head = meta_uint(&g, &key("attention.head_count")).filter(|&h| h > 0);
    // A per-layer array (some hybrids) is not read: assume every head has
    // its own KV, the upper bound.
    let n_head_kv = meta_uint(&g, &key("attention.head_count_kv")).or(n_head);
    let head_dim = n_head.map(|h| n_embd / h);
    let k_len = meta_uint(&g, &key("attention.key_length")).or(head_dim);
    let v_len = meta_uint(&g, &key("attention.value_length")).or(head_dim);
    let gqa = |len: Option<u64>| match (len, n_head_kv) {
        (Some(l), Some(h)) => l * h,
        _ => n_embd,
    };
    let n_vocab = meta_uint(&g, &key("vocab_size")).unwrap_or(FALLBACK_VOCAB);
    Some(ModelMeta {
        arch,
        n_layer,
        n_embd,
        n_embd_k_gqa: gqa(k_len),
        n_embd_v_gqa: gqa(v_len),
        n_vocab,
    })
}

/// What loading a model with a given configuration is expected to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// The weights: the file is mapped and every page is read.
    pub weights_bytes: u64,
    /// F16 keys and values for every slot's full context.
    pub kv_bytes: u64,
    /// Scratch for one batch per slot: the logits row buffer plus
    /// activations; an approximation of what llama.cpp touches.
    pub compute_bytes: u64,
    pub total_bytes: u64,
}

/// Bytes per F16 element of the KV cache.
const KV_ELEM: u64 = 2;
/// Fixed per-context overhead (graph metadata, small buffers), rounded up.
const CONTEXT_OVERHEAD: u64 = 16 << 20;

pub fn estimate(meta: &ModelMeta, file_size: u64, n_ctx: u64, n_batch: u64, slots: u64) -> Estimate {
    let kv_per_slot = meta
        .n_layer
        .saturating_mul(n_ctx)
        .saturating_mul(meta.n_embd_k_gqa + meta.n_embd_v_gqa)
        .saturating_mul(KV_ELEM);
    // Activations of one ubatch through one layer at a time (a few tensors
    // of n_embd floats per token), the output logits kept for the rows asked
    // for (one per decode here, plus the sampler's copy), and the overhead.
    let activations = n_batch.saturating_mul(meta.n_embd).saturating_mul(4 * 16);
    let logits = meta.n_vocab.saturating_mul(4 * 4);
    let compute_per_slot = activations + logits + CONTEXT_OVERHEAD;
    let kv_bytes = kv_per_slot.saturating_mul(slots);
    let compute_bytes = compute_per_slot.saturating_mul(slots);
    Estimate {
        weights_bytes: file_size,
        kv_bytes,
        compute_bytes,
        total_bytes: file_size.saturating_add(kv_bytes).saturating_add(compute_bytes),
    }
}

/// Reads `MemAvailable` (bytes) from a meminfo file.
pub fn mem_available(meminfo: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(meminfo).ok()?;
    parse_kib_field(&text, "MemAvailable:")
}

/// Resident memory of this process (bytes), where the OS reports it.
pub fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib_field(&text, "VmRSS:")
}

/// Peak resident memory of this process (bytes).
pub fn peak_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib_field(&text, "VmHWM:")
}

fn parse_kib_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let mut parts = line[field.len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// `Err(message)` when `estimate` does not fit in `available - reserve`.
pub fn check(est: &Estimate, available: u64, reserve: u64) -> Result<(), String> {
    let usable = available.saturating_sub(reserve);
    if est.total_bytes <= usable {
        return Ok(());
    }
    Err(format!(
        "needs about {} MiB (weights {} + KV cache {} + compute {}), but only {} MiB are available \
         ({} MiB MemAvailable minus mem_reserve_mb {})",
        mib(est.total_bytes),
        mib(est.weights_bytes),
        mib(est.kv_bytes),
        mib(est.compute_bytes),
        mib(usable),
        mib(available),
        mib(reserve),
    ))
}

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const MEMINFO: &str = "MemTotal:       16305132 kB\nMemFree:         1021420 kB\nMemAvailable:    8123456 kB\n";

    #[test]
    fn meminfo_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meminfo");
        std::fs::write(&p, MEMINFO).unwrap();
        assert_eq!(mem_available(&p), Some(8_123_456 * 1024));
        std::fs::write(&p, "MemTotal: 5 kB\n").unwrap();
        assert_eq!(mem_available(&p), None);
        assert_eq!(mem_available(&dir.path().join("absent")), None);
    }

    #[test]
    fn rss_is_reported_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().unwrap() > 0);
            assert!(peak_rss_bytes().unwrap() >= rss_bytes().unwrap() / 2);
        }
    }

    fn gemma_270m() -> ModelMeta {
        ModelMeta {
            arch: "gemma3".into(),
            n_layer: 18,
            n_embd: 640,
            n_embd_k_gqa: 256,
            n_embd_v_gqa: 256,
            n_vocab: 262_144,
        }
    }

    #[test]
    fn kv_cache_formula() {
        let e = estimate(&gemma_270m(), 1000, 4096, 512, 2);
        // 18 layers × 4096 positions × (256 + 256) × 2 bytes, per slot.
        assert_eq!(e.kv_bytes, 2 * 18 * 4096 * 512 * 2);
        assert_eq!(e.total_bytes, 1000 + e.kv_bytes + e.compute_bytes);
        let one = estimate(&gemma_270m(), 1000, 4096, 512, 1);
        assert_eq!(one.compute_bytes * 2, e.compute_bytes);
    }

    #[test]
    fn check_names_the_figures() {
        let e = estimate(&gemma_270m(), 250 << 20, 2048, 512, 1);
        assert!(check(&e, 8 << 30, 1 << 30).is_ok());
        let msg = check(&e, 2 << 30, 2 << 30).unwrap_err();
        assert!(
            msg.contains("MemAvailable") && msg.contains("mem_reserve_mb 2048"),
            "{msg}"
        );
        assert!(msg.contains(&format!("weights {}", 250)), "{msg}");
    }
}
