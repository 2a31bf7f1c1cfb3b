//! Direct-drive benchmark: the model through llama-cpp-2 alone (no gateway,
//! no queue, no channel), as the baseline the HTTP benchmark is compared to.
//!
//! ```text
//! OMP_WAIT_POLICY=passive cargo run --release -p local --example direct_bench -- \
//!     --model models/gemma-3-270m-q4_k_m.gguf --prompt-file bench/prompt.txt \
//!     --n-predict 128 [--threads 2] [--ctx 2048] [--n-batch 512] [--template gemma|raw]
//! ```
//!
//! The prompt file is wrapped as one user message with the chat template
//! (as the gateway does), unless `--template raw`. Generation is greedy and
//! stops at `--n-predict` tokens or the end of the turn. Prints one JSON
//! object: load_ms, prompt_tokens, prompt_tps, ttft_ms, gen_tokens, gen_tps,
//! peak_rss_bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;

struct Args {
    model: String,
    prompt_file: String,
    n_predict: usize,
    threads: i32,
    ctx: u32,
    n_batch: u32,
    template: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        model: "models/gemma-3-270m-q4_k_m.gguf".into(),
        prompt_file: String::new(),
        n_predict: 128,
        threads: 2,
        ctx: 2048,
        n_batch: 512,
        template: "gemma".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--model" => a.model = val(),
            "--prompt-file" => a.prompt_file = val(),
            "--n-predict" => a.n_predict = val().parse().unwrap_or_else(|_| usage("--n-predict: a number")),
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage("--threads: a number")),
            "--ctx" => a.ctx = val().parse().unwrap_or_else(|_| usage("--ctx: a number")),
            "--n-batch" => a.n_batch = val().parse().unwrap_or_else(|_| usage("--n-batch: a number")),
            "--template" => a.template = val(),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.prompt_file.is_empty() {
        usage("--prompt-file is required");
    }
    a
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "direct_bench: {msg}\nusage: direct_bench --model M.gguf --prompt-file P.txt [--n-predict N] [--threads T] \
         [--ctx C] [--n-batch B] [--template gemma|chatml|…|raw]"
    );
    std::process::exit(2)
}

fn main() {
    let args = parse_args();
    let text = std::fs::read_to_string(&args.prompt_file).expect("read the prompt file");
    let mut backend = LlamaBackend::init().expect("llama backend");
    backend.void_logs();

    let t_load = Instant::now();
    let model = LlamaModel::load_from_file(&backend, &args.model, &LlamaModelParams::default()).expect("load model");
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(args.ctx))
        .with_n_batch(args.n_batch)
        .with_n_ubatch(args.n_batch)
        .with_n_threads(args.threads)
        .with_n_threads_batch(args.threads);
    let mut ctx = model.new_context(&backend, params).expect("context");
    let load_ms = t_load.elapsed().as_secs_f64() * 1000.0;

    let prompt = if args.template == "raw" {
        text
    } else {
        let tmpl = LlamaChatTemplate::new(&args.template).expect("template name");
        let msg = LlamaChatMessage::new("user".into(), text).expect("prompt without NUL");
        model.apply_chat_template(&tmpl, &[msg], true).expect("apply template")
    };
    let vocab = model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
    assert!(
        tokens.len() + args.n_predict < args.ctx as usize,
        "prompt + n_predict exceed --ctx"
    );

    let n_batch = args.n_batch as usize;
    let mut batch = LlamaBatch::new(n_batch, 1);
    let t_prompt = Instant::now();
    let mut pos = 0i32;
    let mut last = 0;
    for chunk in tokens.chunks(n_batch) {
        batch.clear();
        for &t in chunk {
            let is_last = pos as usize + 1 == tokens.len();
            batch.add(t, pos, &[0], is_last).expect("batch");
            pos += 1;
        }
        ctx.decode(&mut batch).expect("decode prompt");
        last = batch.n_tokens() - 1;
    }
    let prompt_s = t_prompt.elapsed().as_secs_f64();

    let mut sampler = LlamaSampler::greedy();
    let mut ttft_ms = 0.0;
    let t_gen = Instant::now();
    let mut generated = 0usize;
    while generated < args.n_predict {
        let tok = sampler.sample(&ctx, last);
        if generated == 0 {
            ttft_ms = t_prompt.elapsed().as_secs_f64() * 1000.0;
        }
        if vocab.is_eog(tok) {
            break;
        }
        let _piece = vocab.token_to_piece(tok, false, None);
        generated += 1;
        batch.clear();
        batch.add(tok, pos, &[0], true).expect("batch");
        pos += 1;
        ctx.decode(&mut batch).expect("decode");
        last = 0;
    }
    let gen_s = t_gen.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "load_ms": load_ms,
        "prompt_tokens": tokens.len(),
        "prompt_tps": tokens.len() as f64 / prompt_s,
        "ttft_ms": ttft_ms,
        "gen_tokens": generated,
        "gen_tps": generated as f64 / gen_s,
        "peak_rss_bytes": local::peak_rss_bytes(),
        "threads": args.threads,
        "n_batch": args.n_batch,
    });
    println!("{out}");
}
