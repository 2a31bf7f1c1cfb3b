//! The cloud path end to end over real sockets: the daemon on 127.0.0.1:0,
//! mock clouds over TLS (trusted through `extra_ca_file`), and every fault the
//! mock can inject. The gateway forwards no header of the app's, so each
//! fault is a mock server's default fault, with a daemon of its own (these
//! daemons have no local tier, so they start in milliseconds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    PATIENCE, Spec, chat, chat_stream, mock_text, mock_with, read_content_chunks, reply, sse, upstream_model,
    wait_stats,
};
use mock_cloud::MockHandle;
use serde_json::{Value, json};

/// Everything goes to the tier named `cloud` (there is no local tier).
const CLOUD_POLICY: &str = r#"
version = 1
default_local = "local"
default_cloud = "cloud"

[[rule]]
name = "everything-to-cloud"
when = "true"
target = "cloud"
"#;

/// No retries, short backoff: a fault reaches the gateway at once.
const FAST: &str = "retries = 0\nbackoff_base_ms = 10\nbackoff_max_ms = 20\n";

/// Calls a mock directly (trusting its CA), as the gateway would.
async fn direct(m: &MockHandle, body: &Value) -> (u16, Value) {
    let c = reqwest::Client::builder()
        .use_preconfigured_tls(m.client_tls_config().unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let r = c
        .post(format!("{}/v1/chat/completions", m.url))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
}

fn statuses(m: &MockHandle) -> Vec<u16> {
    m.requests().iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn cloud_round_trips_over_tls() {
    let m = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY).cloud("cloud", &[&m], FAST).start().await;
    let prompt = "Name three rivers of Europe.";
    let expected = mock_text(prompt, 12);
    let mut ids = Vec::new();
    for (model, rule) in [("cloud", "model"), ("auto", "everything-to-cloud")] {
        m.clear();
        // Non-stream: the cloud's own JSON, `model` rewritten, `tandem` added.
        let r = reply(d.post(&chat(model, prompt, 16)).await).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-tandem-route"), "cloud");
        assert_eq!(r.header("x-tandem-rule"), rule);
        assert_eq!(r.content(), expected);
        assert_eq!(r.body["object"], "chat.completion");
        assert_eq!(r.body["model"], model);
        assert_eq!(r.body["usage"]["completion_tokens"], 12);
        let t = &r.body["tandem"];
        assert_eq!(
            (&t["route"], &t["rule"], &t["cloud_allowed"]),
            (&json!("cloud"), &json!(rule), &json!(true))
        );
        assert!(t.get("handovers").is_none(), "{t}");
        let rec = m.requests();
        assert_eq!(rec.len(), 1, "{rec:?}");
        assert_eq!(rec[0].body["model"], upstream_model("cloud", 0));
        assert_eq!(rec[0].body["messages"][0]["content"], prompt);
        assert_eq!(rec[0].status, 200);

        // Streamed with usage: one id and created, usage once at the end.
        let s = sse(d.post(&chat_stream(model, prompt, 16, true)).await).await;
        ids.push(s.assert_well_formed(model));
        assert_eq!(s.header("x-tandem-route"), "cloud");
        assert_eq!(s.header("x-tandem-rule"), rule);
        assert!(s.error().is_none(), "{s:?}");
        assert_eq!(s.content(), expected);
        assert_eq!(s.content_events(), 12);
        assert_eq!(s.finish_reasons(), ["stop"]);
        let usages = s.usages();
        assert_eq!(usages.len(), 1, "{s:?}");
        let u = usages[0];
        assert_eq!(u["completion_tokens"], 12);
        assert!(u["prompt_tokens"].as_u64().unwrap() > 0, "{u}");
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + 12
        );
        let last = s.events.last().unwrap();
        assert!(last.get("usage").is_some(), "usage rides on the last chunk: {last}");
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["tandem"]["route"], "cloud");
        assert_eq!(last["tandem"]["rule"], rule);

        // Streamed without usage: none anywhere.
        let s = sse(d.post(&chat_stream(model, prompt, 16, false)).await).await;
        ids.push(s.assert_well_formed(model));
        assert_eq!(s.content(), expected);
        assert!(s.usages().is_empty(), "usage was not asked for: {s:?}");
        assert_eq!(s.tandem()["route"], "cloud");
        let rec = m.requests();
        assert_eq!(rec.len(), 3);
        assert!(rec[1..].iter().all(|r| r.body["stream"] == true), "{rec:?}");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "every answer has its own id");
}

#[tokio::test]
async fn unknown_fields_pass_through_unchanged() {
    let m = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY).cloud("cloud", &[&m], FAST).start().await;
    let extra = json!({
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_object"},
        "logprobs": true,
        "top_logprobs": 2,
        "seed": 1234,
        "user": "user-42",
        "x_vendor": {"priority": "low", "tags": ["a", "b"], "nested": {"n": 1.5, "none": null}},
    });
    let mut body = chat("cloud", "What is the weather in Oslo?", 16);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }

    let r = reply(d.post(&body).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rec = m.requests();
    assert_eq!(rec.len(), 1);
    let sent = &rec[0].body;
    for k in extra.as_object().unwrap().keys() {
        assert_eq!(sent[k], body[k], "`{k}` reached the cloud changed");
    }
    assert_eq!(sent["messages"], body["messages"]);
    assert_eq!(sent["max_tokens"], 16);
    assert_eq!(sent["model"], upstream_model("cloud", 0), "model is the endpoint's");

    // The answer is the cloud's JSON apart from `model` and `tandem` (and the
    // per-answer `id`/`created`): compare with the mock asked directly.
    assert_eq!(r.body["model"], "cloud");
    assert_eq!(r.body["system_fingerprint"], "mock");
    assert_eq!(r.body["tandem"]["route"], "cloud");
    let call = &r.body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{}", r.body);
    assert_eq!(r.body["choices"][0]["finish_reason"], "tool_calls");
    let (status, mut want) = direct(&m, sent).await;
    assert_eq!(status, 200);
    assert_eq!(want["model"], upstream_model("cloud", 0));
    let mut got = r.body.clone();
    for v in [&mut got, &mut want] {
        let o = v.as_object_mut().unwrap();
        for k in ["id", "created", "model", "tandem"] {
            o.remove(k);
        }
    }
    assert_eq!(got, want, "the cloud's response came back changed");

    // Streamed: the tool call arrives as deltas with the same arguments.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let s = sse(d.post(&sbody).await).await;
    s.assert_well_formed("cloud");
    assert!(s.error().is_none(), "{s:?}");
    let args: String = s
        .events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, call["function"]["arguments"].as_str().unwrap());
    assert_eq!(s.finish_reasons(), ["tool_calls"]);
    let sent = &m.requests()[2].body;
    for k in extra.as_object().unwrap().keys() {
        assert_eq!(sent[k], body[k], "`{k}` reached the cloud changed (stream)");
    }
}

#[tokio::test]
async fn transient_errors_are_retried_until_success() {
    let prompt = "Tell me about retries.";
    for stream in [false, true] {
        // Two 503s, then success: two retries are enough...
        let m = mock_with("fail_first=2").await;
        let d = Spec::new(CLOUD_POLICY)
            .cloud("cloud", &[&m], "retries = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 20")
            .start()
            .await;
        if stream {
            let s = sse(d.post(&chat_stream("cloud", prompt, 16, false)).await).await;
            s.assert_well_formed("cloud");
            assert!(s.error().is_none(), "{s:?}");
            assert_eq!(s.content(), mock_text(prompt, 12));
            assert!(s.tandem().get("handovers").is_none(), "retries are inside the tier");
        } else {
            let r = reply(d.post(&chat("cloud", prompt, 16)).await).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.content(), mock_text(prompt, 12));
        }
        assert_eq!(statuses(&m), [503, 503, 200], "stream={stream}");

        // ...one is not: the app gets an error in OpenAI's shape.
        let m = mock_with("fail_first=2").await;
        let d = Spec::new(CLOUD_POLICY)
            .cloud("cloud", &[&m], "retries = 1\nbackoff_base_ms = 10\nbackoff_max_ms = 20")
            .start()
            .await;
        let body = if stream {
            chat_stream("cloud", prompt, 16, false)
        } else {
            chat("cloud", prompt, 16)
        };
        let r = reply(d.post(&body).await).await;
        assert!(r.status.is_server_error(), "{} {}", r.status, r.body);
        r.error_code();
        assert_eq!(statuses(&m), [503, 503], "stream={stream}");
    }
}

#[tokio::test]
async fn failover_to_the_next_endpoint() {
    let bad = mock_with("status=503").await;
    let good = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY)
        .cloud(
            "cloud",
            &[&bad, &good],
            "retries = 1\nbackoff_base_ms = 10\nbackoff_max_ms = 20",
        )
        .start()
        .await;
    let prompt = "Which endpoint answers?";
    let r = reply(d.post(&chat("cloud", prompt, 16)).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content(), mock_text(prompt, 12));
    let s = sse(d.post(&chat_stream("cloud", prompt, 16, true)).await).await;
    s.assert_well_formed("cloud");
    assert!(s.error().is_none(), "{s:?}");
    assert_eq!(s.content(), mock_text(prompt, 12));
    assert_eq!(statuses(&bad), [503, 503], "the first endpoint is tried first");
    assert_eq!(statuses(&good), [200, 200]);
    assert!(
        good.requests()
            .iter()
            .all(|r| r.body["model"] == upstream_model("cloud", 1))
    );
}

#[tokio::test]
async fn breaker_opens_after_failures_and_closes_after_open_ms() {
    // The first endpoint fails twice, then recovers.
    let flaky = mock_with("fail_first=2").await;
    let good = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY)
        .cloud(
            "cloud",
            &[&flaky, &good],
            "retries = 1\nbackoff_base_ms = 10\nbackoff_max_ms = 20\nbreaker = { failures_to_open = 2, open_ms = 1500 }",
        )
        .start()
        .await;
    let ask = async |n: u32| {
        let r = reply(d.post(&chat("cloud", &format!("Question number {n}"), 16)).await).await;
        assert_eq!(r.status, 200, "request {n}: {}", r.body);
    };
    ask(1).await;
    assert_eq!(d.breaker("cloud", 0).await, "closed");
    ask(2).await;
    assert_eq!(statuses(&flaky), [503, 503]);
    assert_eq!(d.breaker("cloud", 0).await, "open", "two failures open the circuit");
    // Open: the first endpoint is skipped, without a try.
    ask(3).await;
    ask(4).await;
    assert_eq!(flaky.requests().len(), 2, "an open circuit sends nothing");
    assert_eq!(statuses(&good), [200, 200, 200, 200]);
    // After open_ms one probe goes through; it succeeds and closes the circuit.
    tokio::time::timeout(PATIENCE, async {
        while d.breaker("cloud", 0).await == "open" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the circuit leaves `open` after open_ms");
    ask(5).await;
    assert_eq!(statuses(&flaky), [503, 503, 200], "the probe");
    assert_eq!(d.breaker("cloud", 0).await, "closed");
    ask(6).await;
    assert_eq!(statuses(&flaky), [503, 503, 200, 200], "closed again: first in line");
    assert_eq!(good.requests().len(), 4);
}

#[tokio::test]
async fn upstream_4xx_is_returned_as_is_and_not_retried() {
    let refusing = mock_with("status=422").await;
    let spare = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY)
        .cloud(
            "cloud",
            &[&refusing, &spare],
            "retries = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 20",
        )
        .start()
        .await;
    let prompt = "An invalid parameter, says the cloud.";
    let r = reply(d.post(&chat("cloud", prompt, 16)).await).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(refusing.requests().len(), 1, "a 4xx is not retried");
    let s = reply(d.post(&chat_stream("cloud", prompt, 16, false)).await).await;
    assert_eq!(s.status, 422, "refused before anything streamed: {}", s.body);
    assert_eq!(s.body, r.body);
    assert_eq!(refusing.requests().len(), 2);
    assert!(
        spare.requests().is_empty(),
        "the request itself is refused: no failover"
    );
    // The body is the cloud's own.
    let (status, upstream) = direct(&refusing, &refusing.requests()[0].body).await;
    assert_eq!(status, 422);
    assert_eq!(r.body, upstream);
    // The endpoint answered: its circuit stays closed.
    assert_eq!(d.breaker("cloud", 0).await, "closed");
}

#[tokio::test]
async fn a_cut_with_no_successor_ends_with_an_error_event() {
    let prompt = "Stream me something long.";
    for (fault, kind) in [("cut_after=3", "cut"), ("error_event_after=3", "in-band error")] {
        let m = mock_with(fault).await;
        let d = Spec::new(CLOUD_POLICY).cloud("cloud", &[&m], FAST).start().await;
        for model in ["cloud", "auto"] {
            let s = sse(d.post(&chat_stream(model, prompt, 16, true)).await).await;
            assert_eq!(s.status, 200);
            assert!(s.done, "{kind}: [DONE] after the error event: {s:?}");
            assert!(s.trailing.trim().is_empty());
            assert_eq!(
                s.content(),
                mock_text(prompt, 3),
                "{kind}: the text sent before the break"
            );
            let err = s
                .error()
                .unwrap_or_else(|| panic!("{kind}: no error event, a silent cut: {s:?}"));
            assert!(
                err["error"]["message"].is_string() && err["error"]["type"].is_string(),
                "{err}"
            );
            assert_eq!(
                s.events.last().unwrap(),
                err,
                "the error event is the last before [DONE]"
            );
            assert!(s.finish_reasons().is_empty(), "{kind}: no finish after a break: {s:?}");
            let h = &err["tandem"]["handovers"][0];
            assert_eq!(
                (&h["from"], &h["after_content"]),
                (&json!("cloud"), &json!(true)),
                "{err}"
            );
        }
        // Non-stream: the broken answer is an error, not half a completion.
        let r = reply(d.post(&chat("cloud", prompt, 16)).await).await;
        assert!(r.status.is_server_error(), "{kind}: {} {}", r.status, r.body);
        r.error_code();
        if kind == "cut" {
            wait_stats(&m, |s| s.streams_cut >= 2).await;
        }
    }
}

#[tokio::test]
async fn a_stall_is_an_error_within_the_idle_timeout() {
    let prompt = "Stall after two words.";
    let settings = "retries = 0\nidle_timeout_ms = 700\nfirst_token_timeout_ms = 5000\nrequest_timeout_ms = 1500";
    let m = mock_with("stall_after=2").await;
    let d = Spec::new(CLOUD_POLICY).cloud("cloud", &[&m], settings).start().await;

    let s = sse(d.post(&chat_stream("cloud", prompt, 16, false)).await).await;
    assert!(s.done, "{s:?}");
    assert_eq!(s.content(), mock_text(prompt, 2));
    let err = s.error().expect("an error event");
    assert_eq!(err["error"]["code"], "upstream_timeout", "{err}");
    // The gateway let go of the stalled upstream stream.
    wait_stats(&m, |s| s.streams_client_disconnected >= 1).await;

    let r = reply(d.post(&chat("cloud", prompt, 16)).await).await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.error_code(), "upstream_timeout");

    // A stall before the first word: nothing was sent, so a plain 504.
    let m = mock_with("stall_after=0").await;
    let d = Spec::new(CLOUD_POLICY).cloud("cloud", &[&m], settings).start().await;
    let r = reply(d.post(&chat_stream("cloud", prompt, 16, false)).await).await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.error_code(), "upstream_timeout");
    wait_stats(&m, |s| s.streams_client_disconnected >= 1).await;
}

#[tokio::test]
async fn an_app_leaving_a_cloud_stream_disconnects_the_cloud() {
    let m = mock_with("chunks=400,chunk_delay=50").await;
    let d = Spec::new(CLOUD_POLICY).cloud("cloud", &[&m], FAST).start().await;
    let mut body = chat_stream("cloud", "A very long answer, please.", 16, false);
    body.as_object_mut().unwrap().remove("max_tokens");
    let mut resp = d.post(&body).await;
    assert_eq!(resp.status(), 200);
    let text = read_content_chunks(&mut resp, 2).await;
    assert!(!text.is_empty());
    drop(resp);
    let st = wait_stats(&m, |s| s.streams_client_disconnected >= 1).await;
    assert_eq!(st.streams_completed, 0, "{st:?}");
    assert_eq!(st.streams_started, 1, "{st:?}");
}

#[tokio::test]
async fn a_tool_call_cut_halfway_is_made_whole_by_the_next_tier() {
    const POLICY: &str = r#"
version = 1
default_local = "local"
default_cloud = "cloud"

[[rule]]
name = "cut-then-cloud"
when = "true"
target = "cloud-cut"
fallbacks = ["cloud"]
"#;
    // The tool call's arguments come in three or more chunks: the cut falls
    // inside them.
    let cut = mock_with("cut_after=2").await;
    let good = mock_with("").await;
    let d = Spec::new(POLICY)
        .cloud("cloud-cut", &[&cut], FAST)
        .cloud("cloud", &[&good], FAST)
        .start()
        .await;
    let mut body = chat_stream("auto", "What is the weather in Oslo?", 32, true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let s = sse(d.post(&body).await).await;
    s.assert_well_formed("auto");
    assert!(s.error().is_none(), "{s:?}");
    wait_stats(&cut, |st| st.streams_cut >= 1).await;
    let deltas: Vec<&Value> = s
        .events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert!(deltas.iter().all(|d| d["index"] == 0), "one call, index 0: {deltas:?}");
    let ids: Vec<&str> = deltas.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "the call starts once: {deltas:?}");
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    // The whole call is the next tier's, as that mock makes it on its own.
    let mut asked = good.requests().last().unwrap().body.clone();
    asked["stream"] = json!(false);
    asked.as_object_mut().unwrap().remove("stream_options");
    let (_, want) = direct(&good, &asked).await;
    let want_call = &want["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(ids[0], want_call["id"]);
    assert_eq!(args, want_call["function"]["arguments"].as_str().unwrap());
    assert_eq!(s.finish_reasons(), ["tool_calls"]);
    assert_eq!(
        s.tandem()["handovers"],
        json!([{"from": "cloud-cut", "to": "cloud", "reason": "interrupted", "after_content": false}])
    );
}

#[tokio::test]
async fn http2_multiplexes_per_serving_thread_and_http1_pools_a_connection_per_request() {
    let prompt = "Count slowly.";
    // Each serving thread has its own upstream connections: one HTTP/2
    // connection per thread that served a request; HTTP/1.1 one per stream.
    for (threads, setting, connections) in [(1, "", 1), (2, "", 2), (2, "http2 = false\n", 4)] {
        // Chunks 20 ms apart: the four streams overlap.
        let m = mock_with("chunk_delay=20").await;
        let d = Spec::new(CLOUD_POLICY)
            .server(&format!("threads = {threads}\n"))
            .cloud("cloud", &[&m], &format!("{FAST}{setting}"))
            .start()
            .await;
        let body = chat_stream("cloud", prompt, 8, false);
        // One request per serving thread first (each on a connection of its
        // own, handed to the threads in turn): each thread's upstream
        // connection and its protocol are settled before the overlapping
        // ones ask the pool.
        for _ in 0..threads {
            assert_eq!(sse(d.post(&body).await).await.content(), mock_text(prompt, 8));
        }
        // Four overlapping requests, on four more connections.
        let answers = futures::future::join_all((0..4).map(|_| async { sse(d.post(&body).await).await })).await;
        for s in &answers {
            assert_eq!(s.content(), mock_text(prompt, 8), "{s:?}");
        }
        assert_eq!(
            m.stats().connections_total,
            connections,
            "{threads} serving threads, `{}`: upstream connections for 1 then 4 overlapping streams",
            setting.trim()
        );
    }
}
