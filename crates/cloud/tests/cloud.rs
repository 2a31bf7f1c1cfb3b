//! The cloud backend against scripted servers on 127.0.0.1: round trips,
//! retries, failover, breakers, every stream failure, secrets, disconnects
//! and TLS trust.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api::{
    Backend, BackendError, BackendErrorKind, ChatRequest, Event, EventStream, Fault, FinishReason, Generate, Usage,
};
use cloud::{BreakerConfig, BreakerState, CloudBackend, CloudError, CloudTierConfig, EndpointConfig, ProcessEnv};
use futures::StreamExt;
use serde_json::{Value, json};
use support::{Relay, Server, Step, dead_url, finish, hello, role, text, usage};

fn endpoint(url: &str) -> EndpointConfig {
    EndpointConfig {
        url: url.into(),
        model: "upstream-70b".into(),
        api_key_env: None,
        api_key_file: None,
        allow_http: true,
        priority: None,
    }
}

/// Short timeouts and backoffs so failures show quickly.
fn tier(urls: &[&str]) -> CloudTierConfig {
    CloudTierConfig {
        name: "cloud-test".into(),
        endpoints: urls.iter().map(|u| endpoint(u)).collect(),
        connect_timeout_ms: 2_000,
        first_token_timeout_ms: 5_000,
        idle_timeout_ms: 2_000,
        ping_after_idle_ms: 5_000,
        request_timeout_ms: 5_000,
        retries: 2,
        backoff_base_ms: 1,
        backoff_max_ms: 5,
        breaker: BreakerConfig {
            failures_to_open: 5,
            open_ms: 10_000,
        },
        extra_ca_file: None,
        supports_tools: true,
        http2: true,
    }
}

fn backend(cfg: &CloudTierConfig) -> CloudBackend {
    CloudBackend::new(cfg, &ProcessEnv).unwrap()
}

fn request(extra: Value) -> Generate {
    let mut body = json!({"model": "auto", "messages": [{"role": "user", "content": "Say hello"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    Generate::new(ChatRequest::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap())
}

fn hi() -> Generate {
    request(json!({}))
}

/// Everything the stream yields, bounded generously so a hang fails.
async fn collect(stream: EventStream) -> Vec<Result<Event, BackendError>> {
    tokio::time::timeout(Duration::from_secs(20), stream.collect::<Vec<_>>())
        .await
        .expect("stream did not end")
}

async fn open(b: &CloudBackend, g: Generate) -> Result<EventStream, BackendError> {
    tokio::time::timeout(Duration::from_secs(20), b.stream(g))
        .await
        .expect("stream() did not resolve")
}

fn hello_events() -> Vec<Result<Event, BackendError>> {
    vec![
        Ok(Event::text("Hel")),
        Ok(Event::text("lo")),
        Ok(Event::Finish(FinishReason::Stop)),
        Ok(Event::Usage(Usage::new(5, 2))),
    ]
}

fn kinds(items: &[Result<Event, BackendError>]) -> Vec<Result<Event, BackendErrorKind>> {
    items.iter().map(|r| r.clone().map_err(|e| e.kind)).collect()
}

#[tokio::test]
async fn stream_round_trip_sends_the_app_request_unchanged_but_for_model() {
    let server = Server::start(|_| {
        vec![
            Step::SseHead,
            Step::Data(role()),
            Step::Raw(": keep-alive comment\n\n"),
            Step::Data(text("Hel")),
            Step::Data(json!({"choices": [{"index": 0, "delta": {"content": "lo"},
                "logprobs": {"content": [{"token": "lo", "logprob": -0.5}]}}]})),
            Step::Data(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"a\":"}}]}}]})),
            Step::Data(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": "1}"}}]}}]})),
            Step::Data(finish("tool_calls")),
            Step::Data(usage(9, 4)),
            Step::Done,
        ]
    })
    .await;
    let mut cfg = tier(&[&server.url]);
    cfg.endpoints[0].api_key_env = Some("TANDEM_CLOUD_TEST_KEY".into());
    let env = HashMap::from([("TANDEM_CLOUD_TEST_KEY".to_owned(), "sk-test-123".to_owned())]);
    let b = CloudBackend::new(&cfg, &env).unwrap();
    assert_eq!(b.name(), "cloud-test");
    assert!(!b.is_local());

    let mut g = request(json!({
        "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "response_format": {"type": "text"}, "logprobs": true, "top_logprobs": 1,
        "seed": 42, "user": "u-1", "vendor_extension": {"nested": [1, 2, 3]}
    }));
    g.continue_from = Some("Hel".into());
    let items = collect(open(&b, g).await.unwrap()).await;
    assert_eq!(
        items,
        vec![
            Ok(Event::text("Hel")),
            Ok(Event::text("lo")),
            Ok(Event::Logprobs(json!({"content": [{"token": "lo", "logprob": -0.5}]}))),
            Ok(Event::ToolCall {
                index: 0,
                id: Some("call_1".into()),
                name: Some("get".into()),
                arguments: "{\"a\":".into()
            }),
            Ok(Event::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "1}".into()
            }),
            Ok(Event::Finish(FinishReason::ToolCalls)),
            Ok(Event::Usage(Usage::new(9, 4))),
        ]
    );

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(r.header("authorization"), Some("Bearer sk-test-123"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = &r.body;
    assert_eq!(body["model"], "upstream-70b");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    for field in [
        "tools",
        "tool_choice",
        "response_format",
        "logprobs",
        "top_logprobs",
        "seed",
        "user",
    ] {
        assert!(body.get(field).is_some(), "{field} was not passed through");
    }
    assert_eq!(body["vendor_extension"], json!({"nested": [1, 2, 3]}));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "Hel"}])
    );

    let h = b.health();
    assert!(h.up);
    assert!(h.rtt_ms.is_some());
    assert_eq!(h.endpoints[0].requests, 1);
    assert!(h.endpoints[0].errors.is_empty());
    assert_eq!(h.endpoints[0].state, BreakerState::Closed);
    let shown = serde_json::to_string(&h).unwrap();
    assert!(!shown.contains("sk-test-123"), "health must not show the key");
    assert!(!format!("{b:?}").contains("sk-test-123"), "Debug must not show the key");
}

#[tokio::test]
async fn non_stream_passthrough_returns_the_upstream_json_unchanged() {
    let answer = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "upstream-70b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        "system_fingerprint": "fp", "vendor": {"kept": true}});
    let reply = answer.clone();
    let server = Server::start(move |_| vec![Step::Status(200, vec![], reply.clone())]).await;
    let b = backend(&tier(&[&server.url]));
    let got = b
        .complete_raw(request(json!({"stream_options": {"include_usage": true}, "user": "u"})))
        .await
        .unwrap();
    assert_eq!(got, answer);
    let body = &server.requests()[0].body;
    assert_eq!(body["model"], "upstream-70b");
    assert!(body.get("stream").is_none_or(|s| s == false));
    assert!(body.get("stream_options").is_none());
    assert_eq!(body["user"], "u");
    assert_eq!(server.requests()[0].header("authorization"), None);
}

/// Several choices cannot travel as one stream of events: a stream with
/// `n` > 1 is refused before anything is sent (never choices silently
/// dropped); without streaming they come back whole.
#[tokio::test]
async fn n_above_one_streams_never_and_passes_through_whole() {
    let answer = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": "B"}, "finish_reason": "stop"}]});
    let reply = answer.clone();
    let server = Server::start(move |_| vec![Step::Status(200, vec![], reply.clone())]).await;
    let b = backend(&tier(&[&server.url]));
    let refused = open(&b, request(json!({"n": 2}))).await.err().expect("refused");
    assert_eq!(refused.kind, BackendErrorKind::Unsupported);
    assert!(refused.failover_allowed());
    assert!(server.requests().is_empty(), "nothing was sent");
    assert_eq!(b.complete_raw(request(json!({"n": 2}))).await.unwrap(), answer);
    assert_eq!(server.requests()[0].body["n"], 2);
}

#[tokio::test]
async fn finished_answers_leave_the_connection_in_the_pool() {
    let server = Server::start_keep_alive(|n| match n % 2 {
        // The end of the body comes a little after `[DONE]`: a stream that
        // dropped its body at `[DONE]` would make the client close the
        // connection.
        0 => {
            let mut steps = hello();
            steps.pop();
            steps.extend([Step::Raw("data: [DONE]\n\n"), Step::Sleep(10), Step::End]);
            steps
        }
        _ => vec![Step::Status(200, vec![], json!({"choices": []}))],
    })
    .await;
    let b = backend(&tier(&[&server.url]));
    for _ in 0..5 {
        assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
        b.complete_raw(hi()).await.unwrap();
        // Returning a connection to the pool is asynchronous; give it a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.count(), 10);
    // Without keep-alive (or if a finished stream's connection were closed
    // instead of drained) every request would open its own.
    assert!(
        server.connections() < 5,
        "{} connections for 10 requests",
        server.connections()
    );
}

#[tokio::test]
async fn a_503_is_retried_then_succeeds() {
    let server = Server::start(|n| match n {
        0 => vec![Step::Status(
            503,
            vec![("retry-after", "0".into())],
            json!({"error": {"message": "busy"}}),
        )],
        _ => hello(),
    })
    .await;
    let b = backend(&tier(&[&server.url]));
    let items = collect(open(&b, hi()).await.unwrap()).await;
    assert_eq!(items, hello_events());
    assert_eq!(server.count(), 2);
    let ep = &b.health().endpoints[0];
    assert_eq!(ep.errors.get("status"), Some(&1));
    assert_eq!(ep.consecutive_failures, 0);
}

#[tokio::test]
async fn non_stream_retries_429_and_500() {
    let server = Server::start(|n| match n {
        0 => vec![Step::Status(
            429,
            vec![("retry-after", "0".into())],
            json!({"error": {}}),
        )],
        1 => vec![Step::Status(500, vec![], json!({"error": {}}))],
        _ => vec![Step::Status(200, vec![], json!({"choices": []}))],
    })
    .await;
    let b = backend(&tier(&[&server.url]));
    assert_eq!(b.complete_raw(hi()).await.unwrap(), json!({"choices": []}));
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = Server::start(|_| vec![Step::Status(502, vec![], json!({}))]).await;
    let mut cfg = tier(&[&server.url]);
    cfg.retries = 1;
    let b = backend(&cfg);
    let err = open(&b, hi()).await.err().unwrap();
    assert_eq!(
        (err.kind, err.fault, err.upstream_status),
        (BackendErrorKind::Status, Fault::Upstream, Some(502))
    );
    assert!(err.failover_allowed());
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn connect_failure_fails_over_to_the_next_endpoint() {
    let dead = dead_url().await;
    let server = Server::start(|_| hello()).await;
    let mut cfg = tier(&[&dead, &server.url]);
    cfg.retries = 1;
    let b = backend(&cfg);
    assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
    let h = b.health();
    assert_eq!(h.endpoints[0].errors.get("connect"), Some(&1));
    assert_eq!(h.endpoints[1].requests, 1);
}

#[tokio::test]
async fn every_endpoint_gets_a_try_whatever_the_retries() {
    let dead = [dead_url().await, dead_url().await, dead_url().await];
    let server = Server::start(|_| hello()).await;
    let mut cfg = tier(&[&dead[0], &dead[1], &dead[2], &server.url]);
    cfg.retries = 0;
    let b = backend(&cfg);
    assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
    assert_eq!(server.count(), 1);
    let h = b.health();
    for ep in &h.endpoints[..3] {
        assert_eq!(ep.errors.get("connect"), Some(&1), "{}", ep.url);
    }

    // `retries` still bounds the tries in all once every endpoint had one.
    for (retries, tries) in [(0, 2), (2, 3)] {
        let a = Server::start(|_| vec![Step::Status(502, vec![], json!({}))]).await;
        let b = Server::start(|_| vec![Step::Status(502, vec![], json!({}))]).await;
        let mut cfg = tier(&[&a.url, &b.url]);
        cfg.retries = retries;
        let err = open(&backend(&cfg), hi()).await.err().unwrap();
        assert_eq!(err.upstream_status, Some(502));
        assert_eq!((a.count() + b.count(), b.count()), (tries, 1), "retries = {retries}");
    }
}

#[tokio::test]
async fn priority_decides_the_order() {
    let first = Server::start(|_| hello()).await;
    let second = Server::start(|_| hello()).await;
    let mut cfg = tier(&[&second.url, &first.url]);
    cfg.endpoints[0].priority = Some(10);
    cfg.endpoints[1].priority = Some(1);
    let b = backend(&cfg);
    collect(open(&b, hi()).await.unwrap()).await;
    assert_eq!((first.count(), second.count()), (1, 0));
    assert_eq!(b.health().endpoints[0].url, first.url);
}

#[tokio::test]
async fn a_config_fault_skips_the_endpoint_without_retrying_it() {
    let not_found = Server::start(|_| {
        vec![Step::Status(
            404,
            vec![],
            json!({"error": {"message": "no such model"}}),
        )]
    })
    .await;
    let flaky = Server::start(|n| match n {
        0 => vec![Step::Status(503, vec![], json!({}))],
        _ => hello(),
    })
    .await;
    let mut cfg = tier(&[&not_found.url, &flaky.url]);
    cfg.retries = 3;
    let b = backend(&cfg);
    assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
    assert_eq!((not_found.count(), flaky.count()), (1, 2));
}

#[tokio::test]
async fn request_faults_are_returned_with_the_upstream_body_and_not_retried() {
    let body = json!({"error": {"message": "max_tokens is too large", "type": "invalid_request_error", "param": "max_tokens"}});
    let reply = body.clone();
    let server = Server::start(move |_| vec![Step::Status(422, vec![], reply.clone())]).await;
    let b = backend(&tier(&[&server.url]));
    let err = open(&b, hi()).await.err().unwrap();
    assert_eq!(err.kind, BackendErrorKind::Status);
    assert_eq!(err.fault, Fault::Downstream);
    assert_eq!(err.upstream_status, Some(422));
    assert_eq!(err.upstream_body.as_ref(), Some(&body));
    assert!(!err.failover_allowed());
    let err = b.complete_raw(hi()).await.unwrap_err();
    assert_eq!((err.fault, err.upstream_status), (Fault::Downstream, Some(422)));
    assert_eq!(server.count(), 2, "one try per request, no retry");
    let ep = &b.health().endpoints[0];
    assert_eq!((ep.consecutive_failures, ep.state), (0, BreakerState::Closed));
    assert_eq!(api::ApiError::from(err).to_json(), serde_json::to_vec(&body).unwrap());
}

#[tokio::test]
async fn breaker_opens_after_n_failures_and_closes_after_a_successful_probe() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h2 = Arc::clone(&healthy);
    let server = Server::start(move |_| {
        if h2.load(Ordering::SeqCst) {
            hello()
        } else {
            vec![Step::Status(500, vec![], json!({}))]
        }
    })
    .await;
    let mut cfg = tier(&[&server.url]);
    cfg.retries = 0;
    cfg.breaker = BreakerConfig {
        failures_to_open: 2,
        open_ms: 200,
    };
    let b = backend(&cfg);
    for _ in 0..2 {
        assert_eq!(open(&b, hi()).await.err().unwrap().upstream_status, Some(500));
    }
    let h = b.health();
    assert_eq!(
        (h.endpoints[0].state, h.endpoints[0].consecutive_failures),
        (BreakerState::Open, 2)
    );
    assert!(!h.up && !b.is_up());
    let err = b.complete_raw(hi()).await.unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::Unavailable);
    assert_eq!(api::ApiError::from(err).status, 503);
    assert_eq!(server.count(), 2, "an open circuit sends nothing");

    healthy.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let items = loop {
        match open(&b, hi()).await {
            Ok(s) => break collect(s).await,
            Err(e) if e.kind == BackendErrorKind::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("breaker did not half-open: {e}"),
        }
    };
    assert_eq!(items, hello_events());
    let h = b.health();
    assert_eq!(
        (h.endpoints[0].state, h.endpoints[0].consecutive_failures),
        (BreakerState::Closed, 0)
    );
    assert!(h.up);
}

#[tokio::test]
async fn cut_before_content_is_retried_transparently() {
    let server = Server::start(|n| match n {
        // Role-only and empty chunks are not content.
        0 => vec![Step::SseHead, Step::Data(role()), Step::Data(text("")), Step::Cut],
        _ => hello(),
    })
    .await;
    let b = backend(&tier(&[&server.url]));
    assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
    assert_eq!(server.count(), 2);
    assert_eq!(b.health().endpoints[0].errors.get("interrupted"), Some(&1));
}

#[tokio::test]
async fn stall_and_garbage_before_content_are_retried_transparently() {
    let server = Server::start(|n| match n {
        0 => vec![Step::SseHead, Step::Data(role()), Step::HoldUntilClosed],
        1 => vec![Step::SseHead, Step::Raw("data: {not json\n\n"), Step::HoldUntilClosed],
        _ => hello(),
    })
    .await;
    let mut cfg = tier(&[&server.url]);
    cfg.idle_timeout_ms = 200;
    let b = backend(&cfg);
    assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
    let errors = b.health().endpoints[0].errors.clone();
    assert_eq!((errors.get("stall"), errors.get("malformed")), (Some(&1), Some(&1)));
    assert!(server.wait_disconnects(2).await, "abandoned tries must be closed");
}

#[tokio::test]
async fn failures_after_content_reach_the_caller() {
    let cases: Vec<(Vec<Step>, BackendErrorKind)> = vec![
        (vec![Step::Cut], BackendErrorKind::Interrupted),
        (vec![Step::End], BackendErrorKind::Interrupted),
        (vec![Step::HoldUntilClosed], BackendErrorKind::Stall),
        (
            vec![Step::Raw("data: {\"choices\": 5}\n\n"), Step::HoldUntilClosed],
            BackendErrorKind::Malformed,
        ),
        (
            vec![
                Step::Data(json!({"error": {"message": "overloaded", "type": "server_error"}})),
                Step::HoldUntilClosed,
            ],
            BackendErrorKind::InBand,
        ),
        (
            vec![Step::Data(finish("abort")), Step::HoldUntilClosed],
            BackendErrorKind::Interrupted,
        ),
    ];
    for (tail, kind) in cases {
        let steps: Vec<Step> = [vec![Step::SseHead, Step::Data(role()), Step::Data(text("Hel"))], tail].concat();
        let server = Server::start(move |_| steps.clone()).await;
        let mut cfg = tier(&[&server.url]);
        cfg.idle_timeout_ms = 300;
        let b = backend(&cfg);
        let items = collect(open(&b, hi()).await.unwrap()).await;
        assert_eq!(kinds(&items), vec![Ok(Event::text("Hel")), Err(kind)], "{kind:?}");
        let err = items[1].clone().unwrap_err();
        assert!(err.failover_allowed());
        assert_eq!(server.count(), 1, "{kind:?}: no retry after content");
        assert_eq!(b.health().endpoints[0].errors.get(kind.as_str()), Some(&1));
        if kind == BackendErrorKind::InBand {
            assert_eq!(err.upstream_body.unwrap()["error"]["message"], "overloaded");
            assert!(
                !err.message.contains("overloaded"),
                "messages never quote upstream text"
            );
        }
    }
}

#[tokio::test]
async fn failures_before_content_with_no_retry_left_reach_the_caller() {
    let cases: Vec<(Vec<Step>, BackendErrorKind)> = vec![
        (
            vec![Step::Data(json!({"error": {"message": "x"}})), Step::HoldUntilClosed],
            BackendErrorKind::InBand,
        ),
        (
            vec![Step::Raw("data: nope\n\n"), Step::HoldUntilClosed],
            BackendErrorKind::Malformed,
        ),
        (vec![Step::Cut], BackendErrorKind::Interrupted),
    ];
    for (tail, kind) in cases {
        let steps: Vec<Step> = [vec![Step::SseHead, Step::Data(role())], tail].concat();
        let server = Server::start(move |_| steps.clone()).await;
        let mut cfg = tier(&[&server.url]);
        cfg.retries = 0;
        let b = backend(&cfg);
        let items = collect(open(&b, hi()).await.unwrap()).await;
        assert_eq!(kinds(&items), vec![Err(kind)], "{kind:?}");
    }
}

#[tokio::test]
async fn first_token_timeout_covers_headers_and_content() {
    // Headers never come: stream() itself times out.
    let server = Server::start(|_| vec![Step::HoldUntilClosed]).await;
    let mut cfg = tier(&[&server.url]);
    cfg.retries = 0;
    cfg.first_token_timeout_ms = 300;
    let b = backend(&cfg);
    assert_eq!(open(&b, hi()).await.err().unwrap().kind, BackendErrorKind::Timeout);

    // Bytes keep coming (so no stall) but never content.
    let mut steps = vec![Step::SseHead, Step::Data(role())];
    for _ in 0..100 {
        steps.extend([Step::Raw(": ping\n\n"), Step::Sleep(50)]);
    }
    let server = Server::start(move |_| steps.clone()).await;
    let mut cfg = tier(&[&server.url]);
    cfg.retries = 0;
    cfg.first_token_timeout_ms = 300;
    cfg.idle_timeout_ms = 200;
    let b = backend(&cfg);
    let items = collect(open(&b, hi()).await.unwrap()).await;
    assert_eq!(kinds(&items), vec![Err(BackendErrorKind::Timeout)]);
}

#[tokio::test]
async fn an_empty_answer_or_a_missing_done_after_finish_ends_cleanly() {
    let server = Server::start(|n| match n {
        0 => vec![
            Step::SseHead,
            Step::Data(role()),
            Step::Data(finish("length")),
            Step::Done,
        ],
        _ => vec![
            Step::SseHead,
            Step::Data(text("a")),
            Step::Data(finish("stop")),
            Step::End,
        ],
    })
    .await;
    let b = backend(&tier(&[&server.url]));
    let items = collect(open(&b, hi()).await.unwrap()).await;
    assert_eq!(items, vec![Ok(Event::Finish(FinishReason::Length))]);
    let items = collect(open(&b, hi()).await.unwrap()).await;
    assert_eq!(items, vec![Ok(Event::text("a")), Ok(Event::Finish(FinishReason::Stop))]);
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_connection() {
    let server = Server::start(|_| {
        vec![
            Step::SseHead,
            Step::Data(role()),
            Step::Data(text("a")),
            Step::HoldUntilClosed,
        ]
    })
    .await;
    let b = backend(&tier(&[&server.url]));
    let mut s = open(&b, hi()).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), Event::text("a"));
    drop(s);
    assert!(
        server.wait_disconnects(1).await,
        "server never saw the connection close"
    );
}

#[tokio::test]
async fn dropping_the_pending_request_closes_the_upstream_connection() {
    let server = Server::start(|_| vec![Step::HoldUntilClosed]).await;
    let b = backend(&tier(&[&server.url]));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b.stream(hi()))
            .await
            .is_err()
    );
    assert!(server.wait_disconnects(1).await, "stream() future");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b.complete_raw(hi()))
            .await
            .is_err()
    );
    assert!(server.wait_disconnects(2).await, "complete_raw() future");
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let mut cfg = tier(&["http://127.0.0.1:9/v1"]);
    cfg.endpoints[0].allow_http = false;
    assert_eq!(
        cfg.validate("cloud[0]").unwrap_err().to_string(),
        "cloud[0].endpoints[0].url: plain http requires allow_http = true"
    );
    let err = CloudBackend::new(&cfg, &ProcessEnv).unwrap_err();
    assert!(
        matches!(&err, CloudError::Config { source, .. } if source.field == "endpoints[0].url"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "cloud tier \"cloud-test\": endpoints[0].url: plain http requires allow_http = true"
    );
}

#[tokio::test]
async fn api_keys_come_from_the_named_env_var_or_file() {
    let mut cfg = tier(&["http://127.0.0.1:9/v1"]);
    cfg.endpoints[0].api_key_env = Some("TANDEM_TEST_UNSET_KEY".into());
    let env: HashMap<String, String> = HashMap::new();
    let err = CloudBackend::new(&cfg, &env).unwrap_err().to_string();
    assert!(
        err.contains("endpoints[0].api_key_env: environment variable TANDEM_TEST_UNSET_KEY is not set"),
        "{err}"
    );

    let server = Server::start(|_| hello()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "sk-from-file\n").unwrap();
    let mut cfg = tier(&[&server.url]);
    cfg.endpoints[0].api_key_file = Some(key_file);
    let b = backend(&cfg);
    collect(open(&b, hi()).await.unwrap()).await;
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer sk-from-file")
    );

    cfg.endpoints[0].api_key_file = Some(dir.path().join("missing"));
    let err = CloudBackend::new(&cfg, &ProcessEnv).unwrap_err().to_string();
    assert!(err.contains("endpoints[0].api_key_file: cannot read"), "{err}");
}

#[tokio::test]
async fn tools_are_refused_before_sending_when_unsupported() {
    let server = Server::start(|_| hello()).await;
    let mut cfg = tier(&[&server.url]);
    cfg.supports_tools = false;
    let b = backend(&cfg);
    let err = open(
        &b,
        request(json!({"tools": [{"type": "function", "function": {"name": "f"}}]})),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind, BackendErrorKind::Unsupported);
    assert!(err.failover_allowed());
    assert_eq!(server.count(), 0);
}

/// Over HTTP/1.1 a timed-out try replaces the lane's pooled connections:
/// when the network went silent under all of them, the retry opens a new
/// one instead of waiting out a timeout on each dead one in turn.
#[tokio::test]
async fn a_timed_out_http1_try_gives_up_the_pooled_connections() {
    // Three slow answers at once leave three connections in the pool.
    let server = Server::start_keep_alive(|n| {
        let mut steps = if n < 3 { vec![Step::Sleep(100)] } else { vec![] };
        steps.extend(hello());
        steps
    })
    .await;
    let relay = Relay::start(&server.url).await;
    let mut cfg = tier(&[&format!("http://{}/v1", relay.addr)]);
    cfg.first_token_timeout_ms = 300;
    cfg.retries = 2;
    let b = backend(&cfg);
    let answers =
        futures::future::join_all((0..3).map(|_| async { collect(open(&b, hi()).await.unwrap()).await })).await;
    assert!(answers.iter().all(|a| *a == hello_events()));
    assert_eq!(
        relay.made.load(Ordering::SeqCst),
        3,
        "precondition: three pooled connections"
    );
    // Let the three connections settle idle in the pool (generously: on a
    // loaded machine a connection still returning would make the next
    // request open a fresh one and skip the dead ones).
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.freeze();
    assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
    assert_eq!(
        relay.made.load(Ordering::SeqCst),
        4,
        "one dead connection tried, then a new one"
    );
    let timeouts = b.health().endpoints[0].errors.values().sum::<u64>();
    assert_eq!(timeouts, 1, "one try timed out");
}

mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A CA (PEM), and a server config for 127.0.0.1 with a leaf it signed.
    fn pki() -> (String, rustls::ServerConfig) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        (ca_cert.pem(), server)
    }

    fn ca_file(dir: &tempfile::TempDir, pem: String) -> std::path::PathBuf {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    #[tokio::test]
    async fn the_extra_ca_is_trusted_and_an_unknown_one_is_not() {
        let (ca_pem, mut server_config) = pki();
        // The scripted server speaks HTTP/1.1 only.
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let server = Server::start_tls(acceptor, |_| hello()).await;
        assert!(server.url.starts_with("https://"));
        let dir = tempfile::tempdir().unwrap();

        let mut cfg = tier(&[&server.url]);
        cfg.endpoints[0].allow_http = false;
        cfg.extra_ca_file = Some(ca_file(&dir, ca_pem));
        let b = backend(&cfg);
        assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());

        cfg.extra_ca_file = None;
        cfg.retries = 0;
        let b = backend(&cfg);
        let err = open(&b, hi()).await.err().unwrap();
        assert_eq!(err.kind, BackendErrorKind::Connect, "{err}");
        assert_eq!(server.count(), 1, "no request crosses an untrusted connection");

        cfg.extra_ca_file = Some(dir.path().join("nope.pem"));
        let err = CloudBackend::new(&cfg, &ProcessEnv).unwrap_err().to_string();
        assert!(err.contains("extra_ca_file"), "{err}");
    }

    /// How the HTTP/2 test server answers.
    #[derive(Clone, Copy, PartialEq)]
    enum H2Mode {
        /// The whole hello answer on every request.
        Hello,
        /// The hello answer, then GOAWAY: one request per connection.
        HelloThenClose,
        /// A role and one text chunk, then nothing until the client resets
        /// the stream.
        Hold,
        /// Nothing at all on the first connection (a network gone silent);
        /// the hello answer on the others.
        SilentFirstConnection,
    }

    /// An HTTP/2-only TLS server (hyper) on 127.0.0.1. Records each request's
    /// version and body, counts connections and the answers whose stream the
    /// client reset before their end.
    struct H2Server {
        url: String,
        ca_pem: String,
        seen: Arc<std::sync::Mutex<Vec<(hyper::Version, Value)>>>,
        connections: Arc<std::sync::atomic::AtomicUsize>,
        reset: Arc<std::sync::atomic::AtomicUsize>,
    }

    /// Counts a response body dropped before its end (the stream was reset).
    struct ResetGuard(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for ResetGuard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl H2Server {
        async fn start(mode: H2Mode) -> H2Server {
            use http_body_util::{BodyExt, StreamBody};
            use hyper::body::Frame;
            use hyper_util::rt::{TokioExecutor, TokioIo};

            let (ca_pem, mut server_config) = pki();
            server_config.alpn_protocols = vec![b"h2".to_vec()];
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("https://{}/v1", listener.local_addr().unwrap());
            let server = H2Server {
                url,
                ca_pem,
                seen: Arc::default(),
                connections: Arc::default(),
                reset: Arc::default(),
            };
            let (seen, connections, reset) = (
                Arc::clone(&server.seen),
                Arc::clone(&server.connections),
                Arc::clone(&server.reset),
            );
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let tls = acceptor.accept(tcp).await.unwrap();
                    let silent =
                        connections.fetch_add(1, Ordering::SeqCst) == 0 && mode == H2Mode::SilentFirstConnection;
                    let (seen, reset) = (Arc::clone(&seen), Arc::clone(&reset));
                    let answered = Arc::new(tokio::sync::Notify::new());
                    let answered2 = Arc::clone(&answered);
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, reset, answered) = (Arc::clone(&seen), Arc::clone(&reset), Arc::clone(&answered2));
                        async move {
                            let version = req.version();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body: Value = serde_json::from_slice(&body).unwrap();
                            let stream = body["stream"] == true;
                            seen.lock().unwrap().push((version, body));
                            if silent {
                                futures::future::pending::<()>().await;
                            }
                            if !stream {
                                let json = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}]});
                                let frame = Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from(
                                    json.to_string(),
                                )));
                                answered.notify_one();
                                return hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(BodyExt::boxed(StreamBody::new(futures::stream::iter([frame]))));
                            }
                            let events: Vec<Value> = match mode {
                                H2Mode::Hold => vec![role(), text("a")],
                                _ => vec![role(), text("Hel"), text("lo"), finish("stop"), usage(5, 2)],
                            };
                            let mut sse: String = events.iter().map(|v| format!("data: {v}\n\n")).collect();
                            if mode != H2Mode::Hold {
                                sse.push_str("data: [DONE]\n\n");
                            }
                            let first = futures::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
                                bytes::Bytes::from(sse),
                            ))]);
                            let body = if mode == H2Mode::Hold {
                                let guard = ResetGuard(reset);
                                let rest = futures::stream::pending().map(move |f| {
                                    let _ = &guard;
                                    f
                                });
                                BodyExt::boxed(StreamBody::new(first.chain(rest)))
                            } else {
                                BodyExt::boxed(StreamBody::new(first))
                            };
                            answered.notify_one();
                            hyper::Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(body)
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service);
                    tokio::spawn(async move {
                        tokio::pin!(conn);
                        if mode == H2Mode::HelloThenClose {
                            tokio::select! {
                                _ = conn.as_mut() => return,
                                () = answered.notified() => conn.as_mut().graceful_shutdown(),
                            }
                        }
                        let _ = conn.await;
                    });
                }
            });
            server
        }

        /// A tier of this server, trusting its CA (written into `dir`).
        fn tier(&self, dir: &tempfile::TempDir) -> CloudTierConfig {
            let mut cfg = tier(&[&self.url]);
            cfg.extra_ca_file = Some(ca_file(dir, self.ca_pem.clone()));
            cfg
        }

        fn backend(&self, dir: &tempfile::TempDir) -> CloudBackend {
            backend(&self.tier(dir))
        }
    }

    /// The client offers HTTP/2 through ALPN and streams over it, every
    /// request on one connection.
    #[tokio::test]
    async fn http2_is_negotiated_when_the_server_offers_it() {
        let server = H2Server::start(H2Mode::Hello).await;
        let dir = tempfile::tempdir().unwrap();
        let b = server.backend(&dir);
        for _ in 0..3 {
            assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
        }
        let answer = b.complete_raw(hi()).await.unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
        let seen = server.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        assert!(seen.iter().all(|(v, _)| *v == hyper::Version::HTTP_2));
        assert_eq!(seen[0].1["model"], "upstream-70b");
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    /// A server that closes its HTTP/2 connection after each answer: the
    /// next request opens a new one, and no request fails or is retried.
    #[tokio::test]
    async fn a_closed_http2_connection_is_replaced_without_a_failed_try() {
        let server = H2Server::start(H2Mode::HelloThenClose).await;
        let dir = tempfile::tempdir().unwrap();
        let b = server.backend(&dir);
        for _ in 0..3 {
            assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
            // Let the GOAWAY and the close arrive.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(server.seen.lock().unwrap().len(), 3, "each request sent once");
        assert_eq!(server.connections.load(Ordering::SeqCst), 3);
        assert_eq!(b.health().endpoints[0].errors.values().sum::<u64>(), 0, "no try failed");
    }

    /// A connection that answers nothing (its network went away without a
    /// word) is given up at the first timeout: the retry opens a new one
    /// instead of queueing behind it.
    #[tokio::test]
    async fn a_silent_http2_connection_is_replaced_after_a_timeout() {
        let server = H2Server::start(H2Mode::SilentFirstConnection).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = server.tier(&dir);
        cfg.first_token_timeout_ms = 300;
        cfg.retries = 2;
        let b = backend(&cfg);
        assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
        assert_eq!(server.seen.lock().unwrap().len(), 2, "one silent try, one answered");
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            b.complete_raw(hi()).await.unwrap()["choices"][0]["message"]["content"],
            "Hello"
        );
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            2,
            "the new connection is kept"
        );
    }

    /// A connection whose network went silent while it sat unused is found
    /// out by a PING as the next request leaves, and that request is sent
    /// again on a new connection within the connect timeout, long before
    /// the first-token timeout would have given up on it.
    #[tokio::test]
    async fn an_idle_http2_connection_that_went_silent_is_found_by_a_ping() {
        let server = H2Server::start(H2Mode::Hello).await;
        let relay = Relay::start(&server.url).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = server.tier(&dir);
        cfg.endpoints[0].url = format!("https://{}/v1", relay.addr);
        cfg.ping_after_idle_ms = 100;
        cfg.connect_timeout_ms = 500;
        cfg.first_token_timeout_ms = 60_000;
        cfg.retries = 0;
        let b = backend(&cfg);
        assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
        // In use again before the idle limit: no PING, nothing in the way.
        assert_eq!(collect(open(&b, hi()).await.unwrap()).await, hello_events());
        relay.freeze();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = tokio::time::timeout(Duration::from_secs(30), async {
            collect(open(&b, hi()).await.unwrap()).await
        })
        .await
        .expect("the silent connection was not found out before the first-token timeout");
        assert_eq!(events, hello_events());
        assert_eq!(relay.made.load(Ordering::SeqCst), 2, "one new connection");
        assert_eq!(
            server.seen.lock().unwrap().len(),
            3,
            "the third request reached the server once"
        );
        assert_eq!(b.health().endpoints[0].errors.values().sum::<u64>(), 0, "no try failed");
    }

    /// Dropping an answer resets its HTTP/2 stream at once; the connection
    /// stays up for the next request.
    #[tokio::test]
    async fn dropping_an_http2_answer_resets_its_stream() {
        let server = H2Server::start(H2Mode::Hold).await;
        let dir = tempfile::tempdir().unwrap();
        let b = server.backend(&dir);
        for n in 1..=2 {
            let mut s = open(&b, hi()).await.unwrap();
            assert_eq!(s.next().await.unwrap().unwrap(), Event::text("a"));
            drop(s);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while server.reset.load(Ordering::SeqCst) < n && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                server.reset.load(Ordering::SeqCst),
                n,
                "the server saw answer {n} cancelled"
            );
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }
}
