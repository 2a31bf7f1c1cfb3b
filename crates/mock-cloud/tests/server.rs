//! The mock served on 127.0.0.1:0, driven over real sockets (reqwest over
//! TLS and plain HTTP, and a raw TCP client where the bytes on the wire matter).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{chat, chat_stream, client, contents, sse_chunks, sse_data};
use mock_cloud::{Fault, MockConfig, MockHandle, RandomFaults, Stats, TlsMode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bound on waits for something that must happen; never reached when the
/// mock works.
const PATIENCE: Duration = Duration::from_secs(20);

async fn start(cfg: MockConfig) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock_cloud::spawn(listener, cfg).await.unwrap()
}

async fn post(c: &reqwest::Client, mock: &MockHandle, body: &Value, fault: Option<&str>) -> reqwest::Response {
    let mut req = c.post(format!("{}/v1/chat/completions", mock.url)).json(body);
    if let Some(f) = fault {
        req = req.header("x-mock-fault", f);
    }
    req.send().await.unwrap()
}

/// A client that offers only HTTP/1.1 by ALPN (reqwest keeps a
/// preconfigured TLS config's ALPN list as it is).
fn h1_client(mock: &MockHandle) -> reqwest::Client {
    let mut tls = mock.client_tls_config().unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .http1_only()
        .build()
        .unwrap()
}

async fn wait_stats(mock: &MockHandle, pred: impl Fn(&Stats) -> bool) -> Stats {
    tokio::time::timeout(PATIENCE, mock.wait_stats(pred))
        .await
        .unwrap_or_else(|_| panic!("stats never got there: {:?}", mock.stats()))
}

#[tokio::test]
async fn tls_round_trip_trusts_only_the_generated_ca() {
    let mock = start(MockConfig::default()).await;
    assert!(mock.url.starts_with("https://127.0.0.1:"), "{}", mock.url);
    let ca = mock.ca_pem.clone().unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    let c = client(Some(&ca));
    let health = c.get(format!("{}/healthz", mock.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");
    let resp = post(&c, &mock, &chat("hello"), None).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        mock_cloud::expected_text(&chat("hello"), 12).unwrap()
    );

    // HTTP/1.1 over the same TLS works too.
    let h1 = h1_client(&mock);
    let resp = h1.get(format!("{}/healthz", mock.url)).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // The localhost SAN is in the certificate as well.
    let by_name = mock.url.replace("127.0.0.1", "localhost");
    assert_eq!(c.get(format!("{by_name}/healthz")).send().await.unwrap().status(), 200);

    // A client trusting another mock's CA refuses this one.
    let other = start(MockConfig::default()).await;
    let stranger = client(other.ca_pem.as_deref());
    let err = stranger.get(format!("{}/healthz", mock.url)).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    other.shutdown().await;
    mock.shutdown().await;
}

#[tokio::test]
async fn certificate_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // A self-signed pair, trusted directly by the client.
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mock = start(MockConfig {
        tls: TlsMode::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        ..MockConfig::default()
    })
    .await;
    assert!(mock.ca_pem.is_none());
    let c = client(Some(&ck.cert.pem()));
    let url = mock.url.replace("127.0.0.1", "localhost");
    assert_eq!(c.get(format!("{url}/healthz")).send().await.unwrap().status(), 200);
    mock.shutdown().await;

    // A missing key file is an error naming the file.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = mock_cloud::spawn(
        listener,
        MockConfig {
            tls: TlsMode::Files {
                cert,
                key: dir.path().join("missing.pem"),
            },
            ..MockConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn stream_format() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let mut body = json!({"model": "big-1", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好 world"}]});
    let resp = post(&c, &mock, &body, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let chunks = sse_chunks(&text);
    // role, 12 contents, finish, usage
    assert_eq!(chunks.len(), 15, "{text}");
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "big-1");
        assert_eq!(c["system_fingerprint"], "mock");
        assert_eq!(c["created"], chunks[0]["created"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let words = contents(&chunks);
    assert_eq!(words.len(), 12);
    body["stream"] = json!(false);
    assert_eq!(words.concat(), mock_cloud::expected_text(&body, 12).unwrap());
    for c in &chunks[1..13] {
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
    }
    assert_eq!(chunks[13]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[13]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[14]["choices"], json!([]));
    // "Be brief." = 2, "你好 world" = 3
    assert_eq!(
        chunks[14]["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17})
    );

    // Without include_usage there is no usage chunk.
    let text = post(&c, &mock, &chat_stream("hi"), None).await.text().await.unwrap();
    let chunks = sse_chunks(&text);
    assert_eq!(chunks.len(), 14);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    let stats = wait_stats(&mock, |s| s.streams_completed == 2).await;
    assert_eq!(stats.streams_started, 2);
    assert_eq!(stats.streams_client_disconnected, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn non_stream_completion_and_max_tokens() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let full = mock_cloud::expected_text(&chat("question"), 12).unwrap();
    let v: Value = post(&c, &mock, &chat("question"), None).await.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "m-1");
    assert_eq!(v["system_fingerprint"], "mock");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], full);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 1);
    assert_eq!(v["usage"]["completion_tokens"], 12);

    for field in ["max_tokens", "max_completion_tokens"] {
        let mut b = chat("question");
        b[field] = json!(5);
        let v: Value = post(&c, &mock, &b, None).await.json().await.unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 5);
        let five: Vec<&str> = full.split(' ').take(5).collect();
        assert_eq!(v["choices"][0]["message"]["content"], five.join(" "));

        b["stream"] = json!(true);
        let chunks = sse_chunks(&post(&c, &mock, &b, None).await.text().await.unwrap());
        assert_eq!(contents(&chunks).len(), 5);
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    }

    // chunks=3 makes a three-word answer.
    let v: Value = post(&c, &mock, &chat("question"), Some("chunks=3"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        mock_cloud::expected_text(&chat("question"), 3).unwrap()
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn continuation_resumes_the_same_answer() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let full = mock_cloud::expected_text(&chat("story"), 12).unwrap();
    let prefix: String = full
        .split_inclusive(' ')
        .take(4)
        .collect::<String>()
        .trim_end()
        .to_owned();
    let body = json!({"model": "m", "stream": true, "messages": [
        {"role": "user", "content": "story"}, {"role": "assistant", "content": prefix}]});
    let chunks = sse_chunks(&post(&c, &mock, &body, None).await.text().await.unwrap());
    let rest = contents(&chunks);
    assert_eq!(rest.len(), 8);
    assert_eq!(format!("{prefix}{}", rest.concat()), full);
    mock.shutdown().await;
}

#[tokio::test]
async fn echo_mode_shows_what_the_cloud_saw() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let text = "My card is [CARD_1], 谢谢你";
    let resp = c
        .post(format!("{}/v1/chat/completions", mock.url))
        .header("x-mock-echo", "1")
        .json(&chat_stream(text))
        .send()
        .await
        .unwrap();
    let pieces = contents(&sse_chunks(&resp.text().await.unwrap()));
    assert_eq!(pieces.concat(), text);
    assert!(
        pieces
            .iter()
            .all(|p| p.chars().count() == 3 || p == pieces.last().unwrap())
    );
    assert_eq!(pieces.len(), text.chars().count().div_ceil(3));
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_calls_stream_and_complete() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let mut body = json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": "weather in Oslo?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]});
    let chunks = sse_chunks(&post(&c, &mock, &body, None).await.text().await.unwrap());
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .map(|t| &t[0])
        .collect();
    assert!(deltas.len() >= 4, "head + 3 argument pieces at least: {chunks:?}");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    assert_eq!(deltas.iter().filter(|d| d.get("id").is_some()).count(), 1);
    assert_eq!(deltas.iter().filter(|d| d["function"].get("name").is_some()).count(), 1);
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert_eq!(deltas[0]["type"], "function");
    let pieces: Vec<&str> = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .filter(|a| !a.is_empty())
        .collect();
    assert!(pieces.len() >= 3);
    let args: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(args["mock"], true);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    body["stream"] = json!(false);
    let v: Value = post(&c, &mock, &body, None).await.json().await.unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], deltas[0]["id"]);
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], pieces.concat());
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    mock.shutdown().await;
}

#[tokio::test]
async fn status_faults_and_fail_first() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    for (code, kind) in [
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
        (400, "invalid_request_error"),
        (422, "invalid_request_error"),
    ] {
        let resp = post(&c, &mock, &chat_stream("x"), Some(&format!("status={code}"))).await;
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(resp.headers().contains_key("retry-after"), code == 429);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string());
    }
    let resp = post(&c, &mock, &chat("x"), Some("status=503,retry_after=7")).await;
    assert_eq!(resp.headers()["retry-after"], "7");

    let send = |key: &'static str| {
        let c = c.clone();
        let url = format!("{}/v1/chat/completions", mock.url);
        async move {
            c.post(url)
                .header("x-mock-fault", "fail_first=2")
                .header("x-mock-key", key)
                .json(&chat("retry me"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send("k1").await, 503);
    assert_eq!(send("k2").await, 503);
    assert_eq!(send("k1").await, 503);
    assert_eq!(send("k1").await, 200);
    assert_eq!(send("k1").await, 200);
    assert_eq!(send("k2").await, 503);
    assert_eq!(send("k2").await, 200);

    // A bad header is refused, naming the problem.
    let resp = post(&c, &mock, &chat("x"), Some("cut_after=2,explode=1")).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown key `explode`"),
        "{v}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn latency_delays_the_headers() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    // A lower bound only: sleeping at least this long is the feature.
    let t = Instant::now();
    let resp = post(&c, &mock, &chat("x"), Some("latency=300")).await;
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    let resp = post(&c, &mock, &chat_stream("x"), Some("chunk_delay=20,chunks=10")).await;
    let chunks = sse_chunks(&resp.text().await.unwrap());
    assert_eq!(contents(&chunks).len(), 10);
    assert!(t.elapsed() >= Duration::from_millis(200));
    mock.shutdown().await;
}

/// Reads a streaming response until it ends or breaks; returns the bytes and
/// whether it broke.
async fn read_all(mut resp: reqwest::Response) -> (String, bool) {
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => buf.extend_from_slice(&b),
            Ok(None) => return (String::from_utf8(buf).unwrap(), false),
            Err(_) => return (String::from_utf8(buf).unwrap(), true),
        }
    }
}

#[tokio::test]
async fn cut_after_breaks_the_stream_without_done() {
    let mock = start(MockConfig::default()).await;
    let c = client(mock.ca_pem.as_deref());
    let (text, broke) = read_all(post(&c, &mock, &chat_stream("x"), Some("cut_after=3")).await).await;
    assert!(broke, "{text}");
    let data = sse_data(&text);
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let chunks: Vec<Value> = data.iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(contents(&chunks).len(), 3);
    assert!(chunks.iter().all(|c| c["choices"][0]["finish_reason"].is_null()));

    // Non-stream: the body is cut short of its content-length.
    let resp = post(&c, &mock, &chat("x"), Some("cut_after=0")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
    // cut_after past the end still cuts, before the finish chunk.
    let (text, broke) = read_all(post(&c, &mock, &chat_stream("x"), Some("chunks=2,cut_after=9")).await).await;
    assert!(broke);
    assert_eq!(
        contents(
            &sse_data(&text)
                .iter()
                .map(|d| serde_json::from_str(d).unwrap())
                .collect::<Vec<_>>()
        )
        .len(),
        2
    );
    let s = wait_stats(&mock, |s| s.streams_cut == 2).await;
    assert_eq!(s.streams_completed, 0);
    assert_eq!(s.streams_client_disconnected, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn cut_on_the_wire_is_abrupt() {
    // Over raw HTTP/1.1: the chunked body must end without its terminating
    // zero-length chunk, i.e. the server just closes the socket.
    let mock = start(MockConfig::plain()).await;
    let body = chat_stream("raw").to_string();
    let mut s = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-mock-fault: cut_after=2\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("transfer-encoding: chunked"), "{out}");
    assert!(!out.ends_with("0\r\n\r\n"), "{out}");
    assert!(!out.contains("[DONE]"));
    assert_eq!(
        out.matches("\"content\":\"").count(),
        3,
        "role chunk + 2 content chunks: {out}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn malformed_and_error_events() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let text = post(&c, &mock, &chat_stream("x"), Some("malformed_after=2,chunks=4"))
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    // role, 2 contents, the bad line, 2 contents, finish, [DONE]
    assert_eq!(data[3], "{not json", "{text}");
    assert_eq!(data.len(), 8);
    assert_eq!(data.last().unwrap(), "[DONE]");

    let text = post(&c, &mock, &chat_stream("x"), Some("error_event_after=1"))
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.len(), 4, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&data[2]).unwrap(),
        json!({"error": {"message": "upstream overloaded", "type": "server_error"}})
    );
    assert_eq!(data[3], "[DONE]");

    // Non-stream forms.
    let resp = post(&c, &mock, &chat("x"), Some("malformed_after=0")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<Value>().await.is_err());
    let v: Value = post(&c, &mock, &chat("x"), Some("error_event_after=0"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    mock.shutdown().await;
}

#[tokio::test]
async fn stall_holds_until_the_client_leaves() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let mut resp = post(&c, &mock, &chat_stream("x"), Some("stall_after=2")).await;
    let mut buf = String::new();
    while contents(
        &sse_data(&buf)
            .iter()
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect::<Vec<_>>(),
    )
    .len()
        < 2
    {
        let chunk = tokio::time::timeout(PATIENCE, resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    // Nothing more comes, and the connection stays open.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), resp.chunk())
            .await
            .is_err()
    );
    assert_eq!(mock.stats().connections_open, 1);
    assert_eq!(mock.stats().streams_client_disconnected, 0);
    drop(resp);
    drop(c);
    let s = wait_stats(&mock, |s| s.streams_client_disconnected == 1 && s.connections_open == 0).await;
    assert_eq!(s.streams_completed, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_is_counted_over_h1_and_h2() {
    let mock = start(MockConfig::default()).await;
    for http1 in [true, false] {
        let c = if http1 {
            h1_client(&mock)
        } else {
            client(mock.ca_pem.as_deref())
        };
        let mut resp = post(&c, &mock, &chat_stream("long"), Some("chunks=100000,chunk_delay=5")).await;
        assert_eq!(resp.version() == reqwest::Version::HTTP_11, http1);
        for _ in 0..3 {
            tokio::time::timeout(PATIENCE, resp.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        drop(resp);
        drop(c);
        let want = if http1 { 1 } else { 2 };
        wait_stats(&mock, |s| {
            s.streams_client_disconnected == want && s.connections_open == 0
        })
        .await;
    }
    assert_eq!(mock.stats().streams_completed, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn requests_are_recorded() {
    let mock = start(MockConfig {
        record_limit: 3,
        tls: TlsMode::Plain,
        ..MockConfig::default()
    })
    .await;
    let c = client(None);
    let mut body = chat("remember me");
    body["vendor_field"] = json!({"a": 1});
    c.post(format!("{}/v1/chat/completions", mock.url))
        .header("authorization", "Bearer sk-app")
        .header("x-mock-fault", "chunks=2")
        .header("x-mock-key", "t1")
        .header("x-app", "yes")
        .json(&body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let recs = mock.requests();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.body, body);
    assert!(r.has_authorization);
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(r.fault.as_deref(), Some("chunks=2"));
    assert_eq!(r.key.as_deref(), Some("t1"));
    assert_eq!(r.headers["x-app"], "yes");
    assert_eq!(r.status, 200);

    // Over HTTP, the same list.
    let over_http: Vec<mock_cloud::RecordedRequest> = c
        .get(format!("{}/mock/requests", mock.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, recs);

    // Bad bodies are recorded too, with their status; the ring keeps 3.
    for bad in ["{oops", "[]", "{}"] {
        let resp = c
            .post(format!("{}/v1/chat/completions", mock.url))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let recs = mock.requests();
    assert_eq!(
        recs.iter().map(|r| (r.seq, r.status)).collect::<Vec<_>>(),
        [(1, 400), (2, 400), (3, 400)]
    );
    assert_eq!(recs[0].body, Value::Null);
    assert_eq!(recs[1].body, json!([]));

    let resp = c.delete(format!("{}/mock/requests", mock.url)).send().await.unwrap();
    assert!(resp.status().is_success());
    assert!(mock.requests().is_empty());
    mock.clear();
    let stats: Stats = c
        .get(format!("{}/mock/stats", mock.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.requests, 4);
    mock.shutdown().await;
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let mock = start(MockConfig {
        api_key: Some("sk-mock".into()),
        ..MockConfig::plain()
    })
    .await;
    let c = client(None);
    let url = format!("{}/v1/chat/completions", mock.url);
    for auth in [None, Some("Bearer wrong"), Some("sk-mock")] {
        let mut req = c.post(&url).json(&chat("x"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
    }
    let ok = c
        .post(&url)
        .bearer_auth("sk-mock")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let models = c.get(format!("{}/v1/models", mock.url)).send().await.unwrap();
    assert_eq!(models.status(), 401);
    let models: Value = c
        .get(format!("{}/v1/models", mock.url))
        .bearer_auth("sk-mock")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "mock-large");
    // The control endpoints need no key.
    assert_eq!(
        c.get(format!("{}/healthz", mock.url)).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/mock/stats", mock.url)).send().await.unwrap().status(),
        200
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn limits_and_unknown_routes() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let huge = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(mock_cloud::BODY_LIMIT)
    );
    let resp = c
        .post(format!("{}/v1/chat/completions", mock.url))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = c.get(format!("{}/v2/nothing", mock.url)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    let resp = c.get(format!("{}/v1/chat/completions", mock.url)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    mock.shutdown().await;
}

#[tokio::test]
async fn default_fault_applies_and_header_overrides_it() {
    let mock = start(MockConfig {
        default_fault: Fault::parse("chunks=5,status=500").unwrap(),
        ..MockConfig::plain()
    })
    .await;
    let c = client(None);
    assert_eq!(post(&c, &mock, &chat("x"), None).await.status(), 500);
    let v: Value = post(&c, &mock, &chat("x"), Some("status=off"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let v: Value = post(&c, &mock, &chat("x"), Some("status=off,chunks=2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn random_mix_is_reproducible() {
    let cfg = MockConfig {
        random: RandomFaults {
            cut_rate: 0.0,
            status_rate: 0.5,
            stall_rate: 0.0,
            seed: 42,
        },
        ..MockConfig::plain()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mock = start(cfg.clone()).await;
        let c = client(None);
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(post(&c, &mock, &chat("x"), None).await.status().as_u16());
        }
        mock.shutdown().await;
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    let failed = runs[0].iter().filter(|s| **s != 200).count();
    assert!((5..=35).contains(&failed), "{:?}", runs[0]);
    assert!(runs[0].iter().all(|s| [200, 429, 500, 503].contains(s)));

    let bad = MockConfig {
        random: RandomFaults {
            cut_rate: 0.7,
            status_rate: 0.7,
            ..RandomFaults::default()
        },
        ..MockConfig::plain()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(mock_cloud::spawn(listener, bad).await.is_err());
}

#[tokio::test]
async fn shutdown_ends_even_stalled_streams() {
    let mock = start(MockConfig::plain()).await;
    let c = client(None);
    let resp = post(&c, &mock, &chat_stream("x"), Some("stall_after=0")).await;
    assert_eq!(resp.status(), 200);
    let addr = mock.addr;
    tokio::time::timeout(PATIENCE, mock.shutdown()).await.unwrap();
    let (_, broke) = read_all(resp).await;
    assert!(broke);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
