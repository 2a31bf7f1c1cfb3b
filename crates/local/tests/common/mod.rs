//! Helpers shared by the real-model tests: where the test model is, how to
//! build requests, and how to read a whole answer from a stream.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use api::{BackendError, ChatRequest, Event, EventStream, FinishReason, Generate, TokenStats, Usage};
use futures::StreamExt;
use local::LocalTierConfig;
use serde_json::{Value, json};

/// The Gemma 3 270M test model. Missing is a failure, not a skip: the
/// tests of the local backend mean nothing without it.
pub fn model_path() -> PathBuf {
    let p = match std::env::var_os("TANDEM_TEST_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/gemma-3-270m-q4_k_m.gguf"),
    };
    assert!(
        p.is_file(),
        "test model not found at {}: run scripts/fetch-model.sh (or set TANDEM_TEST_MODEL)",
        p.display()
    );
    p
}

/// A tier for the test model: gemma template (it is a base model with
/// none), small context, one thread per slot so parallel test binaries do
/// not fight over the cores, no self-benchmark unless a test wants it.
pub fn tier(name: &str) -> LocalTierConfig {
    LocalTierConfig {
        context_len: 1024,
        threads: Some(1),
        chat_template: "gemma".into(),
        self_bench: false,
        mem_reserve_mb: 0,
        ..LocalTierConfig::new(name, model_path())
    }
}

pub fn request(extra: Value) -> ChatRequest {
    let mut v =
        json!({"model": "local", "messages": [{"role": "user", "content": "Write a short story about a cat."}]});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

pub fn greedy(max_tokens: u32, extra: Value) -> Generate {
    let mut r = request(extra);
    r.temperature.get_or_insert(0.0);
    r.max_tokens = Some(max_tokens);
    Generate::new(r)
}

#[derive(Debug, Default)]
pub struct Answer {
    pub text: String,
    /// The text of every `Text` event, in order.
    pub pieces: Vec<String>,
    pub stats: Vec<Option<TokenStats>>,
    pub usage: Option<Usage>,
    pub finish: Option<FinishReason>,
    pub error: Option<BackendError>,
}

/// Reads a stream to its end, checking the documented order: text, then
/// one usage, then one finish, and nothing after.
pub async fn collect(mut s: EventStream) -> Answer {
    let mut a = Answer::default();
    while let Some(item) = s.next().await {
        assert!(a.finish.is_none(), "event after Finish: {item:?}");
        assert!(a.error.is_none(), "event after an error: {item:?}");
        match item {
            Ok(Event::Text { text, stats }) => {
                assert!(a.usage.is_none(), "text after usage");
                // Characters are never split; only one cut by the token
                // budget shows, as U+FFFD at the very end of the answer.
                assert!(!a.text.ends_with('\u{FFFD}'), "text after a cut character: {text:?}");
                assert!(
                    !text.trim_end_matches('\u{FFFD}').contains('\u{FFFD}') && text.matches('\u{FFFD}').count() <= 1,
                    "replacement character in {text:?}"
                );
                a.text.push_str(&text);
                a.pieces.push(text);
                a.stats.push(stats);
            }
            Ok(Event::Usage(u)) => {
                assert!(a.usage.is_none(), "two usage events");
                a.usage = Some(u);
            }
            Ok(Event::Finish(f)) => {
                assert!(a.usage.is_some(), "finish before usage");
                a.finish = Some(f);
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(e) => {
                assert!(a.text.is_empty(), "error after content: {e}");
                a.error = Some(e);
            }
        }
    }
    assert!(
        a.finish.is_some() || a.error.is_some(),
        "stream ended without finish or error"
    );
    a
}

pub async fn run(b: &local::LocalBackend, g: Generate) -> Answer {
    use api::Backend;
    collect(b.stream(g).await.unwrap()).await
}

/// A conversation of one long question: the same ~17-token sentence
/// `repeats` times.
pub fn long_question(repeats: usize) -> Value {
    let question = "Explain, step by step, how a refrigerator moves heat from inside to outside. ".repeat(repeats);
    json!({"messages": [{"role": "user", "content": question}]})
}

/// Waits (at most 60 s) until no slot is busy; `what` says what failed.
pub async fn wait_idle(b: &local::LocalBackend, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while b.status().busy > 0 {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
