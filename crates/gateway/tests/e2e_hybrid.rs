//! Cloud and device together, end to end: the real local model (loaded once
//! for this binary) continues a cloud stream the mock cut, answers invisibly
//! when the cloud fails before its first word, answers `model: "local"` in
//! the same format as the cloud, and frees its one slot when the app leaves;
//! redact-then-cloud masks contact details before the (echoing) mock sees
//! them and restores them in the answer.
//!
//! One daemon serves every test: its policy picks a cloud tier by the app's
//! `x-tandem-app` header, each tier on a mock with its own fault. Tests that
//! use the local model take `local_lock` (one slot; counters are compared).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Daemon, Spec, chat, chat_stream, local_lock, mock, mock_text, mock_with, on_server_runtime, read_content_chunks,
    recorded_text, reply, sse, upstream_model, wait_stats,
};
use mock_cloud::{MockConfig, MockHandle};
use serde_json::json;
use tokio::sync::OnceCell;

const POLICY: &str = r#"
version = 1
default_local = "local"
default_cloud = "cloud-echo"

[[rule]]
name = "cut-then-local"
when = "app == 'cut'"
target = "cloud-cut"
fallbacks = ["local"]

[[rule]]
name = "dead-then-local"
when = "app == 'dead'"
target = "cloud-dead"
fallbacks = ["local"]

[[rule]]
name = "mask"
when = "app == 'redact'"
target = "redact-then-cloud"
fallbacks = ["local"]

[[rule]]
name = "default"
when = "true"
target = "local"
"#;

/// Breakers that never open: every test sees the fault it asked for.
const TIER: &str = "retries = 1\nbackoff_base_ms = 10\nbackoff_max_ms = 20\nbreaker = { failures_to_open = 100000 }\n";

struct World {
    d: Daemon,
    /// Cuts every stream after 3 words (a non-stream body halfway).
    cut: MockHandle,
    /// Cuts every stream before its first word.
    dead: MockHandle,
    /// Answers with the last user message.
    echo: MockHandle,
}

async fn world() -> &'static World {
    static WORLD: OnceCell<World> = OnceCell::const_new();
    WORLD
        .get_or_init(|| {
            on_server_runtime(async {
                let cut = mock_with("cut_after=3").await;
                let dead = mock_with("cut_after=0").await;
                let echo = mock(MockConfig {
                    echo: true,
                    ..MockConfig::default()
                })
                .await;
                let d = Spec::new(POLICY)
                    .local("")
                    .cloud("cloud-cut", &[&cut], TIER)
                    .cloud("cloud-dead", &[&dead], TIER)
                    .cloud("cloud-echo", &[&echo], TIER)
                    .start()
                    .await;
                World { d, cut, dead, echo }
            })
        })
        .await
}

fn app(name: &str) -> [(&str, &str); 1] {
    [("x-tandem-app", name)]
}

#[tokio::test]
async fn a_cut_cloud_stream_is_continued_by_the_local_model() {
    let w = world().await;
    let _local = local_lock().await;
    let prompt = "Describe a quiet harbor at dawn.";
    let cuts = w.cut.stats().streams_cut;
    let s = sse(w.d.post_with(&chat_stream("auto", prompt, 16, true), &app("cut")).await).await;
    s.assert_well_formed("auto");
    assert!(s.error().is_none(), "the local model took over: {s:?}");
    // Headers went out while the cloud was answering.
    assert_eq!(s.header("x-tandem-route"), "cloud-cut");
    assert_eq!(s.header("x-tandem-rule"), "cut-then-local");
    let cloud_part = mock_text(prompt, 3);
    let text = s.content();
    assert!(
        text.starts_with(&cloud_part),
        "{text:?} should start with the cloud's {cloud_part:?}"
    );
    assert!(text.len() > cloud_part.len(), "the local model continued: {text:?}");
    assert_eq!(s.finish_reasons().len(), 1, "one answer, one finish: {s:?}");
    assert_eq!(s.usages().len(), 1);
    let t = s.tandem();
    assert_eq!(t["route"], "local", "{t}");
    assert_eq!(
        t["handovers"],
        json!([{"from": "cloud-cut", "to": "local", "reason": "interrupted", "after_content": true}])
    );
    // The mock did the cut, on the request as the app wrote it.
    wait_stats(&w.cut, |st| st.streams_cut > cuts).await;
    let rec = w.cut.requests();
    let last = &rec.last().unwrap().body;
    assert_eq!(last["model"], upstream_model("cloud-cut", 0));
    assert_eq!(last["messages"], json!([{"role": "user", "content": prompt}]));

    // Non-stream: the cut body is a failure before content, so the local
    // model answers the whole question.
    let r = reply(w.d.post_with(&chat("auto", prompt, 8), &app("cut")).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tandem-route"), "local");
    assert!(!r.content().is_empty());
    assert!(
        !r.content().starts_with(&cloud_part),
        "no half cloud answer: {:?}",
        r.content()
    );
    let h = &r.body["tandem"]["handovers"][0];
    assert_eq!(
        (&h["from"], &h["to"], &h["after_content"]),
        (&json!("cloud-cut"), &json!("local"), &json!(false))
    );
}

#[tokio::test]
async fn a_failure_before_content_is_answered_locally_and_invisibly() {
    let w = world().await;
    let _local = local_lock().await;
    let prompt = "Give me a word that rhymes with light.";
    let before = w.dead.requests().len();
    let s = sse(w
        .d
        .post_with(&chat_stream("auto", prompt, 8, false), &app("dead"))
        .await)
    .await;
    s.assert_well_formed("auto");
    assert!(s.error().is_none(), "{s:?}");
    assert!(!s.content().is_empty());
    assert_eq!(s.header("x-tandem-route"), "local", "decided before the headers");
    assert_eq!(s.header("x-tandem-rule"), "dead-then-local");
    let t = s.tandem();
    assert_eq!(t["route"], "local");
    let handovers = t["handovers"].as_array().unwrap();
    assert!(!handovers.is_empty());
    assert!(handovers.iter().all(|h| h["after_content"] == false), "{t}");
    assert_eq!(handovers[0]["from"], "cloud-dead");
    // Both tries reached the mock and were cut before a word.
    assert_eq!(w.dead.requests().len(), before + 2);

    let r = reply(w.d.post_with(&chat("auto", prompt, 8), &app("dead")).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["tandem"]["route"], "local");
    assert!(!r.content().is_empty());
}

#[tokio::test]
async fn redact_then_cloud_masks_contact_details_and_restores_them() {
    let w = world().await;
    let prompt = "Please write to alice.smith@example.com and tell John Smith that the meeting moved to Friday.";
    for stream in [false, true] {
        let before = w.echo.requests().len();
        let (text, tandem) = if stream {
            let s = sse(w
                .d
                .post_with(&chat_stream("auto", prompt, 64, false), &app("redact"))
                .await)
            .await;
            s.assert_well_formed("auto");
            assert!(s.error().is_none(), "{s:?}");
            (s.content(), s.tandem().clone())
        } else {
            let r = reply(w.d.post_with(&chat("auto", prompt, 64), &app("redact")).await).await;
            assert_eq!(r.status, 200, "{}", r.body);
            (r.content().to_owned(), r.body["tandem"].clone())
        };
        assert_eq!(tandem["route"], "cloud-echo", "{tandem}");
        assert_eq!(tandem["rule"], "mask");
        let entities = tandem["entities"].as_array().unwrap();
        assert!(
            entities.contains(&json!("email")) && entities.contains(&json!("person")),
            "{tandem}"
        );
        // What left the device: placeholders, not the values.
        let rec = w.echo.requests();
        assert_eq!(rec.len(), before + 1);
        let sent = recorded_text(&rec[before..]);
        for value in [
            "alice.smith@example.com",
            "alice.smith",
            "example.com",
            "John Smith",
            "Smith",
        ] {
            assert!(
                !sent.contains(value),
                "stream={stream}: {value:?} reached the cloud: {sent}"
            );
        }
        let sent_prompt = rec[before].body["messages"][0]["content"].as_str().unwrap().to_owned();
        assert!(sent_prompt.starts_with("Please write to "), "{sent_prompt}");
        assert!(
            sent_prompt.ends_with(" that the meeting moved to Friday."),
            "{sent_prompt}"
        );
        // The echo came back with the values restored (placeholders split
        // across 3-character chunks included).
        assert_eq!(text, prompt, "stream={stream}; the cloud saw {sent_prompt:?}");
    }
}

#[tokio::test]
async fn the_local_model_answers_in_the_same_format() {
    let w = world().await;
    let _local = local_lock().await;
    let mocks = [&w.cut, &w.dead, &w.echo];
    let seen: Vec<usize> = mocks.iter().map(|m| m.requests().len()).collect();
    let prompt = "Say hello to the team.";

    for (model, rule) in [("local", "model"), ("auto", "default")] {
        let r = reply(w.d.post(&chat(model, prompt, 8)).await).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-tandem-route"), "local");
        assert_eq!(r.header("x-tandem-rule"), rule);
        assert_eq!(r.body["object"], "chat.completion");
        assert_eq!(r.body["model"], model);
        assert!(r.body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(!r.content().is_empty());
        assert!(["stop", "length"].contains(&r.body["choices"][0]["finish_reason"].as_str().unwrap()));
        let u = &r.body["usage"];
        let (p, c) = (
            u["prompt_tokens"].as_u64().unwrap(),
            u["completion_tokens"].as_u64().unwrap(),
        );
        assert!(p > 0 && (1..=8).contains(&c), "{u}");
        assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
        assert_eq!(r.body["tandem"]["route"], "local");
    }

    let s = sse(w.d.post(&chat_stream("local", prompt, 8, true)).await).await;
    s.assert_well_formed("local");
    assert_eq!(s.header("x-tandem-route"), "local");
    assert!(s.error().is_none());
    assert!(!s.content().is_empty());
    assert_eq!(s.finish_reasons().len(), 1);
    let usages = s.usages();
    assert_eq!(usages.len(), 1, "{s:?}");
    let c = usages[0]["completion_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&c), "{}", usages[0]);
    assert_eq!(s.events.last().unwrap()["choices"], json!([]));
    assert_eq!(s.tandem()["route"], "local");

    let s = sse(w.d.post(&chat_stream("local", prompt, 8, false)).await).await;
    s.assert_well_formed("local");
    assert!(s.usages().is_empty(), "usage was not asked for");

    let now: Vec<usize> = mocks.iter().map(|m| m.requests().len()).collect();
    assert_eq!(seen, now, "the local path sent nothing to any cloud");
}

#[tokio::test]
async fn an_app_leaving_a_local_stream_frees_the_slot() {
    let w = world().await;
    let _local = local_lock().await;
    let completed = w.d.local_status().await["completed_requests"].as_u64().unwrap();
    // An answer far longer than the test waits for.
    let mut body = chat_stream(
        "local",
        "Count from one to one thousand, writing every number in words.",
        8,
        false,
    );
    body["max_tokens"] = json!(900);
    let mut resp = w.d.post(&body).await;
    assert_eq!(resp.status(), 200);
    read_content_chunks(&mut resp, 2).await;
    assert_eq!(w.d.local_status().await["busy"], 1, "the slot is generating");
    drop(resp);

    // The one slot serves the next request: the abandoned answer stopped.
    let r = reply(w.d.post(&chat("local", "Say hi.", 8)).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.content().is_empty());
    // The slot is released just after the answer's last event.
    let mut st = w.d.local_status().await;
    for _ in 0..100 {
        if st["busy"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        st = w.d.local_status().await;
    }
    assert_eq!(st["busy"], 0, "{st}");
    assert_eq!(
        st["completed_requests"].as_u64().unwrap(),
        completed + 1,
        "only the second answer completed; the first was stopped: {st}"
    );
}
