//! The privacy invariant end to end, under the shipped `config/policy.toml`:
//! a request the policy keeps on the device never reaches the cloud — not
//! when the local model answers, not when it fails, not when the app names
//! the cloud, and not under any mix of cloud faults. The mock's record of
//! request bodies is the proof of what left the device.
//!
//! One daemon (the local model loaded once) with a cloud tier on a mock that
//! draws a random fault per request (cuts, 429/500/503, stalls). Tests take
//! `local_lock` so each sees the record of its own requests only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Daemon, Spec, chat, chat_stream, is_luhn_valid, local_lock, luhn_card, mock, on_server_runtime, recorded_text,
    reply, splitmix, sse,
};
use mock_cloud::{MockConfig, MockHandle, RandomFaults};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

struct World {
    d: Daemon,
    cloud: MockHandle,
}

async fn world() -> &'static World {
    static WORLD: OnceCell<World> = OnceCell::const_new();
    WORLD
        .get_or_init(|| {
            on_server_runtime(async {
                let cloud = mock(MockConfig {
                    random: RandomFaults {
                        cut_rate: 0.25,
                        status_rate: 0.25,
                        stall_rate: 0.15,
                        seed: 0x5eed,
                    },
                    ..MockConfig::default()
                })
                .await;
                let d = Spec::default_policy()
                    .local("context_len = 512")
                    .cloud(
                        "cloud",
                        &[&cloud],
                        "retries = 0\nidle_timeout_ms = 600\nfirst_token_timeout_ms = 1500\n\
                         request_timeout_ms = 1500\nbreaker = { failures_to_open = 100000 }",
                    )
                    .start()
                    .await;
                World { d, cloud }
            })
        })
        .await
}

const CARD: &str = "4111 1111 1111 1111";

fn card_prompt() -> String {
    format!("My card number is {CARD}, expiry 12/29. Is it safe to keep it in my notes app?")
}

/// Asserts nothing in the record contains any of `secrets`.
fn assert_never_sent(cloud: &MockHandle, secrets: &[String]) {
    let all = recorded_text(&cloud.requests());
    for s in secrets {
        assert!(!all.contains(s.as_str()), "{s:?} reached the cloud: {all}");
    }
}

#[tokio::test]
async fn a_card_number_stays_on_the_device() {
    let w = world().await;
    let _local = local_lock().await;
    w.cloud.clear();
    let prompt = card_prompt();

    let r = reply(w.d.post(&chat("auto", &prompt, 8)).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tandem-route"), "local");
    assert_eq!(r.header("x-tandem-rule"), "private-stays-local");
    let t = &r.body["tandem"];
    assert_eq!(t["cloud_allowed"], false, "{t}");
    assert!(t["entities"].as_array().unwrap().contains(&json!("credit_card")), "{t}");
    assert!(!r.content().is_empty());

    let s = sse(w.d.post(&chat_stream("auto", &prompt, 8, true)).await).await;
    s.assert_well_formed("auto");
    assert!(s.error().is_none(), "{s:?}");
    assert_eq!(s.tandem()["route"], "local");

    // The app names the cloud: refused, not sent.
    for body in [chat("cloud", &prompt, 8), chat_stream("cloud", &prompt, 8, false)] {
        let r = reply(w.d.post(&body).await).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.error_code(), "privacy_policy");
    }
    // The app's hint keeps an ordinary text local too.
    let r = reply(
        w.d.post_with(
            &chat("cloud", "Draft a note about the garden party.", 8),
            &[("x-tandem-privacy", "high")],
        )
        .await,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(w.cloud.requests().is_empty(), "{:?}", w.cloud.requests());
}

#[tokio::test]
async fn a_failing_local_model_does_not_send_private_text_to_the_cloud() {
    let w = world().await;
    let _local = local_lock().await;
    w.cloud.clear();
    // Two realistic local failures: a structured-output request the local
    // model refuses, and a text longer than its context.
    let json_mode = |prompt: &str| {
        let mut b = chat("auto", prompt, 8);
        b["response_format"] = json!({"type": "json_object"});
        b
    };
    let long = |head: &str| format!("{head} {}", "Here are the details of the order again. ".repeat(120));

    let private = card_prompt();
    for (what, body) in [
        ("json mode", json_mode(&private)),
        ("too long", chat("auto", &long(&private), 8)),
        ("too long, stream", chat_stream("auto", &long(&private), 8, false)),
    ] {
        let r = reply(w.d.post(&body).await).await;
        assert_ne!(r.status, 200, "{what}: {}", r.body);
        r.error_code();
        assert_eq!(
            r.body["error"]["code"], "unsupported_parameter",
            "{what}: the local model refused: {}",
            r.body
        );
        assert!(w.cloud.requests().is_empty(), "{what}: private text reached the cloud");
    }
    // The same failures of an ordinary text do fall back to the cloud (the
    // record keeps every request, whatever fault it then got): the guard
    // above is what kept the private ones.
    let ordinary = "Suggest a name for a bakery.";
    reply(w.d.post(&json_mode(ordinary)).await).await;
    reply(w.d.post(&chat("auto", &long(ordinary), 8)).await).await;
    assert_eq!(w.cloud.requests().len(), 2, "{:?}", w.cloud.requests());
    assert_never_sent(&w.cloud, &[CARD.to_owned(), CARD.replace(' ', "")]);
}

const TEMPLATES: [&str; 4] = [
    "Please charge my card {card} for the {marker} order.",
    "My Visa is {card}; the reference is {marker}. Can you store it?",
    "{marker}: card number {card}, expiry 04/28, security code 123.",
    "Transfer from IBAN DE89 3704 0044 0532 0130 00 for invoice {marker}, or use card {card}.",
];

/// For a sequence of random prompts and request shapes, under the mock's
/// random faults, no private text ever reaches the cloud, while ordinary
/// requests in between do (and meet those faults).
#[tokio::test]
async fn private_text_never_reaches_the_cloud_under_random_faults() {
    let w = world().await;
    let _local = local_lock().await;
    w.cloud.clear();
    let mut secrets: Vec<String> = vec!["DE89 3704".into(), "DE89370400440532013000".into()];
    let mut seed = 0x7a11_0c0d_u64;
    let mut ordinary_streams = 0;
    for i in 0..14 {
        seed = splitmix(seed);
        let card = luhn_card(seed);
        assert!(is_luhn_valid(&card), "{card}");
        let groups: Vec<&str> = (0..4).map(|g| &card[g * 4..g * 4 + 4]).collect();
        let written = match seed % 3 {
            0 => groups.join(" "),
            1 => groups.join("-"),
            _ => card.clone(),
        };
        let marker = format!("zq{:08x}", seed as u32);
        let prompt = TEMPLATES[(seed >> 8) as usize % TEMPLATES.len()]
            .replace("{card}", &written)
            .replace("{marker}", &marker);
        secrets.extend([card.clone(), written.clone(), marker.clone()]);
        let stream = (seed >> 16) & 1 == 1;
        let mut body = if stream {
            chat_stream("auto", &prompt, 8, true)
        } else {
            chat("auto", &prompt, 8)
        };
        let mut headers: Vec<(&str, &str)> = vec![];
        let variant = (seed >> 20) % 5;
        let want = match variant {
            0 => 200,
            // The local model refuses structured output: an error, not the cloud.
            1 => {
                body["response_format"] = json!({"type": "json_object"});
                400
            }
            // The app asks for the cloud by name.
            2 => {
                body["model"] = json!("cloud");
                403
            }
            // The private text sits in an earlier turn.
            3 => {
                body["messages"] = json!([
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": "Noted."},
                    {"role": "user", "content": "Thanks. What should I do next?"},
                ]);
                200
            }
            // Nothing detectable, but the app says the text is private.
            _ => {
                body["messages"] = json!([{"role": "user", "content": format!("Summarise the {marker} memo.")}]);
                headers.push(("x-tandem-privacy", "high"));
                200
            }
        };
        let resp = w.d.post_with(&body, &headers).await;
        let status = resp.status().as_u16();
        assert_eq!(status, want, "case {i} (variant {variant}, stream {stream}): {prompt}");
        if status == 200 && stream {
            let s = sse(resp).await;
            s.assert_well_formed("auto");
            assert_eq!(s.tandem()["route"], "local", "case {i}");
        } else if status == 200 {
            let r = reply(resp).await;
            assert_eq!(r.body["tandem"]["route"], "local", "case {i}: {}", r.body);
        } else {
            reply(resp).await.error_code();
        }

        // An ordinary request for the cloud, meeting whatever fault the mock draws.
        let ordinary = format!("Tell me a fact about the number {i}.");
        if i % 2 == 0 {
            let s = sse(w.d.post(&chat_stream("cloud", &ordinary, 8, false)).await).await;
            if s.status == 200 {
                assert!(s.done, "never a silent cut: {s:?}");
                ordinary_streams += 1;
            }
        } else {
            let r = reply(w.d.post(&chat("cloud", &ordinary, 8)).await).await;
            assert!(r.status == 200 || r.body.get("error").is_some(), "{}", r.body);
        }
    }
    let rec = w.cloud.requests();
    assert_eq!(
        rec.len(),
        14,
        "exactly the ordinary requests reached the cloud: {rec:?}"
    );
    let faulted = rec.iter().filter(|r| r.status != 200).count() as u64 + w.cloud.stats().streams_cut;
    assert!(faulted > 0 && ordinary_streams > 0, "the faults fired: {rec:?}");
    assert_never_sent(&w.cloud, &secrets);
    let bodies: Vec<&Value> = rec.iter().map(|r| &r.body).collect();
    assert!(bodies.iter().all(|b| {
        b["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Tell me a fact")
    }));
}
