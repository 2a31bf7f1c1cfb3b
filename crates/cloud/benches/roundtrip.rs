//! What the cloud backend adds to a request over loopback: a full streamed
//! answer (headers, six SSE chunks, `[DONE]`) and a non-streamed one, both
//! on a kept-alive connection to an in-process HTTP/1.1 server. The figure
//! shows the client's own overhead; a Nagle/delayed-ACK stall would show as
//! ~40 ms per request instead of well under one.
//!
//! Run: `cargo bench -p cloud --bench roundtrip`; the median is in
//! `$CARGO_TARGET_DIR/criterion/roundtrip/<case>/new/estimates.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use api::{Backend, ChatRequest, Generate};
use cloud::{BreakerConfig, CloudBackend, CloudTierConfig, EndpointConfig, ProcessEnv};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use serde_json::json;
use support::{Server, Step, hello};

fn roundtrip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::start_keep_alive(|n| match n % 2 {
        0 => hello(),
        _ => vec![Step::Status(
            200,
            vec![],
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}]}),
        )],
    }));
    let cfg = CloudTierConfig {
        name: "bench".into(),
        endpoints: vec![EndpointConfig {
            url: server.url.clone(),
            model: "m".into(),
            api_key_env: None,
            api_key_file: None,
            allow_http: true,
            priority: None,
        }],
        connect_timeout_ms: 2_000,
        first_token_timeout_ms: 5_000,
        idle_timeout_ms: 5_000,
        ping_after_idle_ms: 5_000,
        request_timeout_ms: 5_000,
        retries: 0,
        backoff_base_ms: 1,
        backoff_max_ms: 1,
        breaker: BreakerConfig::default(),
        extra_ca_file: None,
        supports_tools: true,
        http2: true,
    };
    let b = rt.block_on(async { CloudBackend::new(&cfg, &ProcessEnv).unwrap() });
    let body = br#"{"model":"auto","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#;
    let req = ChatRequest::from_slice(body).unwrap();

    let mut group = c.benchmark_group("roundtrip");
    // The server alternates answers: keep the two cases in step with it by
    // running one of each per iteration.
    group.bench_function("stream_then_complete", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let events: Vec<_> = b.stream(Generate::new(req.clone())).await.unwrap().collect().await;
                assert_eq!(events.len(), 4);
                b.complete_raw(Generate::new(req.clone())).await.unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
