//! Prompt reuse across the turns of a conversation, slot routing, and
//! Chinese and emoji text through the real tokenizer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{greedy, long_question, run, tier, wait_idle};
use local::{LocalBackend, LocalTierConfig};
use serde_json::json;

#[tokio::test]
async fn second_turn_evaluates_only_the_new_tokens() {
    let b = LocalBackend::new(&tier("reuse")).unwrap();
    let system = "You are a helpful assistant who answers briefly and precisely. ".repeat(6);
    let turn1 = json!({"messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": "Tell me about rivers."}
    ]});
    let a1 = run(&b, greedy(8, turn1)).await;
    let p1 = a1.usage.unwrap().prompt_tokens;
    let s1 = b.status();
    assert_eq!(s1.evaluated_prompt_tokens + s1.reused_prompt_tokens, u64::from(p1));

    let turn2 = json!({"messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": "Tell me about rivers."},
        {"role": "assistant", "content": a1.text},
        {"role": "user", "content": "And lakes?"}
    ]});
    let a2 = run(&b, greedy(8, turn2)).await;
    assert!(a2.error.is_none());
    let p2 = u64::from(a2.usage.unwrap().prompt_tokens);
    let s2 = b.status();
    let evaluated = s2.evaluated_prompt_tokens - s1.evaluated_prompt_tokens;
    let reused = s2.reused_prompt_tokens - s1.reused_prompt_tokens;
    assert_eq!(evaluated + reused, p2);
    // Everything up to the first answer was in the cache.
    assert!(reused >= u64::from(p1), "reused {reused} of {p2}, first prompt {p1}");
    assert!(evaluated < p2 / 2, "evaluated {evaluated} of {p2}");
}

#[tokio::test]
async fn chinese_and_emoji_come_out_whole() {
    let cfg = LocalTierConfig {
        parallel_slots: 2,
        ..tier("utf8")
    };
    let b = LocalBackend::new(&cfg).unwrap();
    let zh = json!({"messages": [{"role": "user", "content": "请用中文介绍一下长城的历史。"}]});
    let emoji = json!({"messages": [{"role": "user", "content": "Reply only with emoji: 🎉🐱🌏👋🏽🔥"}]});
    let (a, e) = tokio::join!(run(&b, greedy(24, zh)), run(&b, greedy(24, emoji)));
    // `collect` already refuses any U+FFFD.
    assert!(a.error.is_none() && e.error.is_none());
    let cjk = a.text.chars().filter(|c| ('\u{4E00}'..='\u{9FFF}').contains(c)).count();
    assert!(cjk >= 3, "expected Chinese, got {:?}", a.text);
    assert!(!e.text.is_empty());
    // Both slots answered, and each got its own cache.
    assert_eq!(b.status().slots, 2);
}

#[tokio::test]
async fn a_conversation_returns_to_the_slot_holding_its_cache() {
    let cfg = LocalTierConfig {
        parallel_slots: 2,
        ..tier("route")
    };
    let b = LocalBackend::new(&cfg).unwrap();
    let conv = |extra: &[serde_json::Value]| {
        let mut m = vec![json!({"role": "user", "content": "Tell me about mountains and their geology."})];
        m.extend_from_slice(extra);
        json!({ "messages": m })
    };
    let a1 = run(&b, greedy(6, conv(&[]))).await;
    let p1 = u64::from(a1.usage.unwrap().prompt_tokens);
    // An unrelated request in between goes to the other, empty slot.
    let other = json!({"messages": [{"role": "user", "content": "What is the capital of France?"}]});
    run(&b, greedy(6, other)).await;
    let before = b.status().reused_prompt_tokens;
    let turn2 = conv(&[
        json!({"role": "assistant", "content": a1.text}),
        json!({"role": "user", "content": "More."}),
    ]);
    run(&b, greedy(6, turn2)).await;
    let reused = b.status().reused_prompt_tokens - before;
    assert!(reused >= p1, "reused {reused}, first prompt {p1}");
}

#[tokio::test]
async fn characters_built_from_byte_tokens_are_never_split() {
    let b = LocalBackend::new(&tier("bytes")).unwrap();
    // Rare CJK (extension B) characters and new emoji have no token of their
    // own: the model writes them one byte per token. The base model repeats
    // the prompt, so greedy output contains them.
    let rare = "罕见字：𠜎𠜱𠝹𠱓𡃁。再说一遍：𠜎𠜱𠝹𠱓𡃁";
    let mut g = greedy(24, json!({"messages": [{"role": "user", "content": rare}]}));
    g.want_token_stats = true;
    let a = run(&b, g).await;
    assert!(a.text.contains("𠜎𠜱"), "{:?}", a.text);
    // One event per token: while a character is incomplete, the event
    // carries the token's stats and no text.
    assert_eq!(a.pieces.len() as u32, a.usage.unwrap().completion_tokens);
    assert!(a.pieces.iter().filter(|p| p.is_empty()).count() >= 3, "{:?}", a.pieces);
    assert!(a.pieces.iter().any(|p| p == "𠜎"), "{:?}", a.pieces);

    // The budget ends inside a character: it shows as U+FFFD, not nothing.
    let k = a.pieces.iter().position(|p| p.is_empty()).unwrap();
    let cut = run(
        &b,
        greedy(k as u32 + 1, json!({"messages": [{"role": "user", "content": rare}]})),
    )
    .await;
    assert!(cut.text.ends_with('\u{FFFD}'), "{:?}", cut.text);
    assert!(
        a.text.starts_with(cut.text.trim_end_matches('\u{FFFD}')),
        "{:?} / {:?}",
        cut.text,
        a.text
    );
    assert_eq!(cut.finish, Some(api::FinishReason::Length));
}

/// Warm standby: `prepare` evaluates a prompt on an idle slot, so the
/// handover that follows (the same conversation, continuing the text a
/// cloud already sent) evaluates only that text.
#[tokio::test]
async fn a_prepared_prompt_leaves_only_the_handed_over_text_to_evaluate() {
    use api::Backend;
    let b = LocalBackend::new(&tier("prefill")).unwrap();
    // A prefill never waits for a load: load the model first.
    run(&b, greedy(1, json!({"messages": [{"role": "user", "content": "Hi"}]}))).await;
    let conv = long_question(4);

    // A prefill takes only an idle slot: the worker may still be closing
    // the first request when its stream has ended.
    wait_idle(&b, "the slot never became idle").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let before = b.status();
    let warm = b.prepare(greedy(16, conv.clone()));
    assert!(warm.is_some());
    assert_eq!(
        b.status().prefills,
        before.prefills + 1,
        "the idle slot took the prefill"
    );
    while b.status().busy > 0 || b.status().evaluated_prompt_tokens == before.evaluated_prompt_tokens {
        assert!(std::time::Instant::now() < deadline, "the prefill did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let warmed = b.status();
    assert_eq!(warmed.prefills, before.prefills + 1);
    assert_eq!(
        warmed.completed_requests, before.completed_requests,
        "a prefill is not a request"
    );
    let prompt_tokens = warmed.evaluated_prompt_tokens - before.evaluated_prompt_tokens;
    assert!(prompt_tokens > 60, "{prompt_tokens} tokens evaluated by the prefill");

    // The same prompt again is already in the cache: nothing to do.
    assert!(b.prepare(greedy(16, conv.clone())).is_none());
    assert_eq!(b.status().prefills, warmed.prefills);
    drop(warm);

    let mut handover = greedy(8, conv);
    handover.continue_from = Some("A refrigerator works by".into());
    let a = run(&b, handover).await;
    assert!(a.error.is_none(), "{:?}", a.error);
    let after = b.status();
    let evaluated = after.evaluated_prompt_tokens - warmed.evaluated_prompt_tokens;
    let reused = after.reused_prompt_tokens - warmed.reused_prompt_tokens;
    assert_eq!(evaluated + reused, u64::from(a.usage.unwrap().prompt_tokens));
    assert!(
        evaluated <= 8,
        "evaluated {evaluated} tokens after the prefill (reused {reused})"
    );
}

/// A prefill stops when its `Prepared` is dropped (the answer it was for
/// ended, or the app went away): the slot does not go on reading a prompt
/// nobody will continue.
#[tokio::test]
async fn a_dropped_prefill_stops_reading_the_prompt() {
    use api::Backend;
    let b = LocalBackend::new(&tier("prefill-drop")).unwrap();
    run(&b, greedy(1, json!({"messages": [{"role": "user", "content": "Hi"}]}))).await;
    let conv = long_question(40);
    wait_idle(&b, "the slot never became idle").await;
    let before = b.status();
    let warm = b.prepare(greedy(16, conv));
    assert!(warm.is_some(), "the idle slot took the prefill");
    drop(warm);
    wait_idle(&b, "the prefill did not stop").await;
    // The whole prompt is about 700 tokens; a stop is seen between two
    // 64-token steps.
    let evaluated = b.status().evaluated_prompt_tokens - before.evaluated_prompt_tokens;
    assert!(evaluated <= 128, "{evaluated} prompt tokens evaluated after the drop");
}
