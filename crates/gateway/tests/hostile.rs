//! Hostile input over real sockets: the real server (`server::run` on
//! `127.0.0.1:0`) over fake backends, fed raw bytes from a `TcpStream` so
//! that malformed HTTP, lying lengths and slow drips are possible.
//!
//! Every case the client gets wrong must come back as a 4xx: in OpenAI's
//! JSON error shape when the request reached the gateway, or as hyper's own
//! 4xx or a closed connection when the bytes are not HTTP at all. Never a
//! 5xx, never a panic (a panic hook counts them, in every thread), and no
//! refused request may reach a backend. After all cases the server still
//! answers `/healthz`, and the process's resident memory has not grown
//! without bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{Backend, BackendError, BoxFuture, Event, EventStream, FinishReason, Generate, Usage};
use gateway::routing::Routing;
use gateway::security::Security;
use gateway::state::{AppState, Probe, Tier, TierHealth, Tiers};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Above the 1 MB message, below what a careless server would buffer.
const MAX_BODY: usize = 2 << 20;
/// Short, so the slow drip outlasts it within a second or two.
const BODY_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long any one exchange may take before the test calls it a hang.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(60);
/// Growth of resident memory over the whole suite that counts as bounded:
/// the suite sends a few MB of bodies, so anything near this is a leak or
/// a buffer that follows the input.
const RSS_GROWTH_LIMIT_KB: u64 = 200 * 1024;

/// A backend that answers "ok" and counts its calls.
struct Echo {
    name: &'static str,
    local: bool,
    calls: AtomicUsize,
}

impl Backend for Echo {
    fn name(&self) -> &str {
        self.name
    }
    fn is_local(&self) -> bool {
        self.local
    }
    fn stream(&self, _req: Generate) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let events = vec![
                Ok(Event::text("ok")),
                Ok(Event::Finish(FinishReason::Stop)),
                Ok(Event::Usage(Usage::new(1, 1))),
            ];
            Ok(Box::pin(futures::stream::iter(events)) as EventStream)
        })
    }
}

struct Up;
impl Probe for Up {
    fn health(&self) -> TierHealth {
        TierHealth {
            ready: true,
            tps: Some(50.0),
            ..Default::default()
        }
    }
    fn status(&self) -> Value {
        json!({})
    }
}

struct Backends {
    local: Arc<Echo>,
    cloud: Arc<Echo>,
}

impl Backends {
    fn calls(&self) -> usize {
        self.local.calls.load(Ordering::SeqCst) + self.cloud.calls.load(Ordering::SeqCst)
    }
}

/// The shipped policy over a fake `local` and a fake `cloud` tier, so
/// every request is scored and decided as in the daemon.
fn app_state() -> (Arc<AppState>, Backends) {
    let local = Arc::new(Echo {
        name: "local",
        local: true,
        calls: AtomicUsize::new(0),
    });
    let cloud = Arc::new(Echo {
        name: "cloud",
        local: false,
        calls: AtomicUsize::new(0),
    });
    let tiers = Tiers {
        tiers: [local.clone(), cloud.clone()]
            .into_iter()
            .map(|b| Tier {
                name: b.name.to_owned(),
                backend: b as Arc<dyn Backend>,
                probe: Arc::new(Up),
            })
            .collect(),
    };
    let targets = Routing::targets_for(&tiers);
    let routing = Routing::new(
        gateway::config::EMBEDDED_POLICY,
        std::path::Path::new("config/policy.toml"),
        false,
        targets,
    )
    .unwrap();
    let state = Arc::new(AppState {
        security: Security {
            allowed_hosts: vec![],
            client_token: None,
            max_body_bytes: MAX_BODY,
            body_timeout: BODY_TIMEOUT,
            cors_origins: vec![],
        },
        tiers,
        routing: Arc::new(routing),
        started: std::time::Instant::now(),
    });
    (state, Backends { local, cloud })
}

/// What came back on one connection.
#[derive(Debug)]
enum Outcome {
    Reply(Reply),
    /// The server closed the connection without a (complete) response.
    Closed(String),
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// Lowercase names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses one HTTP/1.1 response (Content-Length, chunked, or up to EOF).
fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let body = if let Some(len) = find("content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut rest = rest;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body
    } else {
        rest.to_vec()
    };
    Some(Reply { status, headers, body })
}

/// How the request bytes go out.
enum Send {
    /// All at once (in the background, so an early answer is still read).
    All(Vec<u8>),
    /// All, then the write side is shut: the body is cut short.
    AllThenShut(Vec<u8>),
    /// The head at once, then the body one byte per `every`, until the
    /// server answers or gives up.
    Drip {
        head: Vec<u8>,
        body: Vec<u8>,
        every: Duration,
    },
}

/// Sends a request on a fresh connection and reads until the server closes
/// it (every request says `Connection: close`).
async fn exchange(addr: SocketAddr, name: &str, send: Send) -> Outcome {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // A server that answers early may close before everything is sent:
        // write errors are expected and say nothing about the server. The
        // write half is returned, not dropped: dropping it would send a FIN
        // the request did not ask for.
        match send {
            Send::All(bytes) => {
                let _ = wr.write_all(&bytes).await;
                wr
            }
            Send::AllThenShut(bytes) => {
                let _ = wr.write_all(&bytes).await;
                let _ = wr.shutdown().await;
                wr
            }
            Send::Drip { head, body, every } => {
                if wr.write_all(&head).await.is_ok() {
                    for b in body {
                        tokio::time::sleep(every).await;
                        if wr.write_all(&[b]).await.is_err() {
                            break;
                        }
                    }
                }
                wr
            }
        }
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_DEADLINE, async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A reset after an early answer (unread body on the server's
                // side) may still leave the whole answer read.
                Err(e) => return Some(e.to_string()),
            }
        }
    })
    .await;
    writer.abort();
    let err = match read {
        Ok(err) => err,
        Err(_) => panic!("{name}: no answer and no close within {EXCHANGE_DEADLINE:?}"),
    };
    match parse_reply(&raw) {
        Some(reply) => Outcome::Reply(reply),
        None => Outcome::Closed(format!(
            "{} bytes before close ({}): {:?}",
            raw.len(),
            err.unwrap_or_else(|| "EOF".into()),
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )),
    }
}

/// `POST /v1/chat/completions` with a JSON content type and a correct
/// Content-Length; `extra` are more header lines, each ending in CRLF.
fn post(body: &[u8], extra: &str) -> Vec<u8> {
    post_with("application/json", body, extra)
}

fn post_with(content_type: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut r = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The same without Content-Length, the body in chunks of `chunk` bytes.
fn post_chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut r = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for c in body.chunks(chunk) {
        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        r.extend_from_slice(c);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

fn chat(content: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"model": "auto", "messages": [{"role": "user", "content": content}]})).unwrap()
}

/// A chat body with one raw JSON fragment as a top-level field.
fn chat_with(field: &str) -> Vec<u8> {
    format!(r#"{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],{field}}}"#).into_bytes()
}

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An OpenAI-shaped JSON error with this status; no backend called.
    Error(u16),
    /// An answer from a backend (the request was fine, only unusual).
    Answer,
    /// The slow drip: a 408 in OpenAI's shape, or the connection closed.
    TimeoutOrClose,
    /// Not HTTP the gateway can read: hyper's own 4xx (it has no JSON to
    /// give) or a closed connection; never a 5xx, no backend called.
    Rejected,
}

struct Case {
    name: String,
    send: Send,
    expect: Expect,
}

fn case(name: impl Into<String>, send: Send, expect: Expect) -> Case {
    Case {
        name: name.into(),
        send,
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let mut v = vec![];
    let mut error = |name: &str, req: Vec<u8>, status: u16| v.push(case(name, Send::All(req), Error(status)));

    // Malformed JSON.
    error("not JSON", post(b"{not json", ""), 400);
    error("empty body", post(b"", ""), 400);
    error(
        "truncated JSON",
        post(br#"{"model":"auto","messages":[{"role":"user","#, ""),
        400,
    );
    error("JSON array", post(b"[1,2,3]", ""), 400);
    error("JSON null", post(b"null", ""), 400);
    error(
        "byte order mark",
        post(&[b"\xEF\xBB\xBF".as_slice(), &chat("hi")].concat(), ""),
        400,
    );
    error(
        "trailing garbage",
        post(&[chat("hi").as_slice(), b" {}garbage"].concat(), ""),
        400,
    );
    error("two objects", post(&[chat("hi"), chat("hi")].concat(), ""), 400);

    // Wrong types.
    error("model is a number", post(br#"{"model":5,"messages":[]}"#, ""), 400);
    error(
        "messages is a string",
        post(br#"{"model":"auto","messages":"hi"}"#, ""),
        400,
    );
    error(
        "messages is an object",
        post(br#"{"model":"auto","messages":{}}"#, ""),
        400,
    );
    error(
        "message is a string",
        post(br#"{"model":"auto","messages":["hi"]}"#, ""),
        400,
    );
    error(
        "content is a number",
        post(br#"{"model":"auto","messages":[{"role":"user","content":5}]}"#, ""),
        400,
    );
    error(
        "content part is a number",
        post(br#"{"model":"auto","messages":[{"role":"user","content":[1]}]}"#, ""),
        400,
    );
    error("stream is a string", post(&chat_with(r#""stream":"yes""#), ""), 400);
    error(
        "temperature is a string",
        post(&chat_with(r#""temperature":"hot""#), ""),
        400,
    );
    error(
        "temperature out of range",
        post(&chat_with(r#""temperature":3"#), ""),
        400,
    );
    error(
        "stop has five entries",
        post(&chat_with(r#""stop":["a","b","c","d","e"]"#), ""),
        400,
    );
    error("tools is an object", post(&chat_with(r#""tools":{"a":1}"#), ""), 400);
    error(
        "empty model",
        post(br#"{"model":"","messages":[{"role":"user","content":"x"}]}"#, ""),
        400,
    );
    error(
        "unknown model",
        post(br#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#, ""),
        404,
    );
    error(
        "missing model",
        post(br#"{"messages":[{"role":"user","content":"x"}]}"#, ""),
        400,
    );

    // Invalid UTF-8 and NUL bytes.
    error(
        "invalid UTF-8 in a string",
        post(
            b"{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\xc3\"}]}",
            "",
        ),
        400,
    );
    error(
        "invalid UTF-8 in a key",
        post(
            b"{\"model\":\"auto\",\"\xc0\xaf\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            "",
        ),
        400,
    );
    error(
        "lone surrogate escape",
        post(
            br#"{"model":"auto","messages":[{"role":"user","content":"\udc00"}]}"#,
            "",
        ),
        400,
    );
    error(
        "raw NUL in a string",
        post(
            b"{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"a\0b\"}]}",
            "",
        ),
        400,
    );
    error(
        "raw NUL between tokens",
        post(&[b"\0".as_slice(), &chat("hi")].concat(), ""),
        400,
    );

    // Empty and unknown.
    error("empty messages", post(br#"{"model":"auto","messages":[]}"#, ""), 400);
    error(
        "unknown role",
        post(br#"{"model":"auto","messages":[{"role":"wizard","content":"x"}]}"#, ""),
        400,
    );
    error(
        "missing role",
        post(br#"{"model":"auto","messages":[{"content":"x"}]}"#, ""),
        400,
    );
    error(
        "role is null",
        post(br#"{"model":"auto","messages":[{"role":null,"content":"x"}]}"#, ""),
        400,
    );

    // max_tokens out of range.
    for (name, value) in [
        ("negative", "-1"),
        ("zero", "0"),
        ("above the limit", "2000000"),
        ("above u32", "4294967296"),
        ("above u64", "18446744073709551616"),
        ("huge float", "1e30"),
        ("fraction", "1.5"),
        ("string", "\"many\""),
    ] {
        error(
            &format!("max_tokens {name}"),
            post(&chat_with(&format!(r#""max_tokens":{value}"#)), ""),
            400,
        );
    }
    error(
        "max_completion_tokens negative",
        post(&chat_with(r#""max_completion_tokens":-5"#), ""),
        400,
    );

    // Content type.
    error("text/plain", post_with("text/plain", &chat("hi"), ""), 415);
    error(
        "form",
        post_with("application/x-www-form-urlencoded", &chat("hi"), ""),
        415,
    );
    error("json look-alike", post_with("application/jsonx", &chat("hi"), ""), 415);
    error(
        "no content type",
        [
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                chat("hi").len()
            )
            .as_bytes(),
            &chat("hi"),
        ]
        .concat(),
        415,
    );

    // Deeply nested JSON, at the top and inside fields kept as raw JSON.
    let deep = "[".repeat(100_000);
    error("100k [ alone", post(deep.as_bytes(), ""), 400);
    error(
        "100k [ as messages",
        post(format!(r#"{{"model":"auto","messages":{deep}"#).as_bytes(), ""),
        400,
    );
    error(
        "100k [ in an unknown field",
        post(&chat_with(&format!(r#""vendor_x":{deep}"#)), ""),
        400,
    );
    error(
        "100k [ in tools",
        post(&chat_with(&format!(r#""tools":[{deep}"#)), ""),
        400,
    );
    let deep_obj = r#"{"a":"#.repeat(50_000);
    error(
        "50k nested objects in metadata",
        post(&chat_with(&format!(r#""metadata":{deep_obj}"#)), ""),
        400,
    );
    let closed = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    error(
        "50k closed [] in an unknown field",
        post(&chat_with(&format!(r#""vendor_x":{closed}"#)), ""),
        400,
    );

    // Bodies over the limit: announced, chunked, and announced with
    // Expect: 100-continue (refused before a byte of body is sent).
    let big = chat(&"x".repeat(MAX_BODY + 1));
    error("over the limit, Content-Length", post(&big, ""), 413);
    error("over the limit, chunked", post_chunked(&big, 64 << 10), 413);
    error(
        "over the limit, chunked in one chunk",
        post_chunked(&big, big.len()),
        413,
    );
    let mut announced = post(b"", "");
    let pos = announced.windows(18).position(|w| w == b"Content-Length: 0\r").unwrap();
    announced.splice(
        pos..pos + 17,
        format!("Content-Length: {}\r\nExpect: 100-continue", MAX_BODY + 1).into_bytes(),
    );
    error("over the limit, Expect: 100-continue", announced, 413);

    // Broken bodies the HTTP layer accepts but the gateway cannot read.
    let mut bad_chunk = post_chunked(&chat("hi"), 8);
    bad_chunk.splice(bad_chunk.len() - 5.., b"zz\r\nxx\r\n0\r\n\r\n".iter().copied());
    v.push(case("invalid chunk size", Send::All(bad_chunk), Error(400)));
    let mut cut = post(&chat("hi"), "");
    cut.truncate(cut.len() - 5);
    v.push(case("body cut short", Send::AllThenShut(cut), Error(400)));

    // Host.
    let mut error = |name: &str, req: Vec<u8>, status: u16| v.push(case(name, Send::All(req), Error(status)));
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
    ] {
        error(&format!("Host {host}"), post(&chat("hi"), "").splice_host(host), 403);
    }
    error("Host evil.example on GET", get("/v1/models", "evil.example"), 403);
    error("Host of 8 KB", get("/v1/models", &"a".repeat(8 << 10)), 403);
    error("no Host (HTTP/1.0)", b"GET /v1/models HTTP/1.0\r\n\r\n".to_vec(), 400);
    error(
        "no Host (HTTP/1.1)",
        b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        400,
    );
    // RFC 9112 section 3.2: more than one Host is a 400, whichever comes first.
    for (first, second) in [("127.0.0.1", "evil.example"), ("evil.example", "127.0.0.1")] {
        error(
            &format!("two Hosts, {first} then {second}"),
            post(&chat("hi"), &format!("Host: {second}\r\n")).splice_host(first),
            400,
        );
    }
    error(
        "Host with invalid UTF-8",
        b"GET /v1/models HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n".to_vec(),
        400,
    );

    // Routes and methods.
    error("unknown path", get("/v1/nothing", "127.0.0.1"), 404);
    error(
        "NUL escaped in the path",
        get("/v1/chat/completions%00", "127.0.0.1"),
        404,
    );
    error("GET on chat", get("/v1/chat/completions", "127.0.0.1"), 405);
    error(
        "PUT on chat",
        post(&chat("hi"), "").replace_prefix(b"POST", b"PUT"),
        405,
    );
    for path in ["/v1/models", "/healthz", "/readyz"] {
        error(
            &format!("DELETE on {path}"),
            get(path, "127.0.0.1").replace_prefix(b"GET", b"DELETE"),
            405,
        );
    }
    error(
        "HTTP/1.1 without Host",
        b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        400,
    );
    error(
        "HTTP/1.1 without Host, absolute URI",
        b"GET http://127.0.0.1/v1/models HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        400,
    );

    // Unusual but valid: these reach a backend.
    let answer = |v: &mut Vec<Case>, name: &str, req: Vec<u8>| v.push(case(name, Send::All(req), Answer));
    let tiny: Vec<Value> = (0..20_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "hi"}))
        .collect();
    let tiny = serde_json::to_vec(&json!({"model": "auto", "messages": tiny})).unwrap();
    assert!(tiny.len() < MAX_BODY);
    answer(&mut v, "20,000 tiny messages", post(&tiny, ""));
    let sentence = "The quick brown fox, 42 times, asks about lunch at 12:30 and the weather in Oslo. ";
    let one_mb: String = sentence.repeat((1 << 20) / sentence.len() + 1);
    answer(&mut v, "one 1 MB message", post(&chat(&one_mb), ""));
    answer(&mut v, "one 1 MB message, chunked", post_chunked(&chat(&one_mb), 1000));
    answer(&mut v, "NUL escaped in content", post(&chat("a\0b\0\0c"), ""));
    answer(
        &mut v,
        "charset parameter",
        post_with("application/json; charset=utf-8", &chat("hi"), ""),
    );
    answer(&mut v, "max_tokens null", post(&chat_with(r#""max_tokens":null"#), ""));
    answer(
        &mut v,
        "a 64 KB header",
        post(&chat("hi"), &format!("X-Junk: {}\r\n", "j".repeat(64 << 10))),
    );

    // Not HTTP the gateway can read: hyper answers or closes.
    let mut rejected = |name: &str, req: Vec<u8>| v.push(case(name, Send::All(req), Rejected));
    rejected("garbage request line", b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec());
    rejected(
        "NUL in the request line",
        b"GET /v1/mod\0els HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
    );
    rejected("NUL in a header value", post(&chat("hi"), "X-Nul: a\0b\r\n"));
    rejected("NUL in a header name", post(&chat("hi"), "X-N\0ul: ab\r\n"));
    rejected(
        "Content-Length not a number",
        post(&chat("hi"), "").replace_header("Content-Length", "abc"),
    );
    rejected(
        "Content-Length negative",
        post(&chat("hi"), "").replace_header("Content-Length", "-1"),
    );
    rejected(
        "a 1 MB header",
        post(&chat("hi"), &format!("X-Junk: {}\r\n", "j".repeat(1 << 20))),
    );
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    rejected("500 headers", post(&chat("hi"), &many));
    // The first frame after the preface must be SETTINGS: DATA on stream 0
    // is a connection error (GOAWAY, then close).
    rejected(
        "HTTP/2 preface then a DATA frame on stream 0",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x05\x00\x00\x00\x00\x00\x00hello".to_vec(),
    );

    // Slow drips: what follows `at` arrives one byte a second, the limit is 1.5 s.
    let drip = |name: &str, bytes: &[u8], at: usize| {
        case(
            name,
            Send::Drip {
                head: bytes[..at].to_vec(),
                body: bytes[at..].to_vec(),
                every: Duration::from_secs(1),
            },
            TimeoutOrClose,
        )
    };
    let body = chat("a slow body that would take minutes to arrive at this rate");
    let full = post(&body, "");
    v.push(drip("slow drip, Content-Length", &full, full.len() - body.len()));
    // Slowloris: the request line at once, then the headers one byte a
    // second. The whole request would take minutes: without a deadline on
    // headers the exchange outlasts the test's own deadline.
    let line_end = full.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    v.push(drip("slow headers", &full, line_end));
    let chunked = post_chunked(&body, 1);
    let split = chunked.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    v.push(drip("slow drip, chunked", &chunked, split));
    v
}

/// Small edits of a raw request.
trait Edit {
    fn splice_host(self, host: &str) -> Vec<u8>;
    fn replace_header(self, name: &str, value: &str) -> Vec<u8>;
    fn replace_prefix(self, old: &[u8], new: &[u8]) -> Vec<u8>;
}

impl Edit for Vec<u8> {
    fn splice_host(self, host: &str) -> Vec<u8> {
        self.replace_header("Host", host)
    }

    /// Replaces the value of the first header line called `name`.
    fn replace_header(self, name: &str, value: &str) -> Vec<u8> {
        let key = format!("\r\n{name}: ");
        let start = self.windows(key.len()).position(|w| w == key.as_bytes()).unwrap() + key.len();
        let end = start + self[start..].windows(2).position(|w| w == b"\r\n").unwrap();
        [&self[..start], value.as_bytes(), &self[end..]].concat()
    }

    fn replace_prefix(self, old: &[u8], new: &[u8]) -> Vec<u8> {
        assert!(self.starts_with(old));
        [new, &self[old.len()..]].concat()
    }
}

/// The OpenAI error shape: `{"error":{"message","type","param","code"}}`
/// served as JSON.
fn assert_openai_error(name: &str, reply: &Reply) {
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{name}: {} with content type {:?}",
        reply.status,
        reply.header("content-type")
    );
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or_else(|e| {
        panic!(
            "{name}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&reply.body)
        )
    });
    let err = &v["error"];
    assert!(err["message"].is_string(), "{name}: {v}");
    assert!(err["type"].is_string(), "{name}: {v}");
    assert!(err.get("param").is_some() && err.get("code").is_some(), "{name}: {v}");
}

fn check(name: &str, expect: Expect, outcome: &Outcome, calls_before: usize, calls_after: usize) {
    if let Outcome::Reply(r) = outcome {
        assert!(r.status < 500, "{name}: a 5xx for the client's mistake: {r:?}");
    }
    match expect {
        Expect::Error(status) => {
            let r = match outcome {
                Outcome::Reply(r) => r,
                Outcome::Closed(why) => panic!("{name}: wanted {status}, the connection closed: {why}"),
            };
            assert_eq!(r.status, status, "{name}: {}", String::from_utf8_lossy(&r.body));
            assert_openai_error(name, r);
        }
        Expect::Answer => {
            let r = match outcome {
                Outcome::Reply(r) => r,
                Outcome::Closed(why) => panic!("{name}: wanted an answer, the connection closed: {why}"),
            };
            assert_eq!(r.status, 200, "{name}: {}", String::from_utf8_lossy(&r.body));
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], "ok", "{name}: {v}");
            assert_eq!(calls_after, calls_before + 1, "{name}: one backend call");
            return;
        }
        Expect::TimeoutOrClose => {
            if let Outcome::Reply(r) = outcome {
                assert_eq!(r.status, 408, "{name}: {}", String::from_utf8_lossy(&r.body));
                assert_openai_error(name, r);
            }
        }
        Expect::Rejected => {
            if let Outcome::Reply(r) = outcome {
                assert!((400..500).contains(&r.status), "{name}: {r:?}");
            }
        }
    }
    assert_eq!(calls_after, calls_before, "{name}: a refused request reached a backend");
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Panics anywhere in the process (server tasks included), as text.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_client_errors_and_the_server_survives() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(info.to_string());
        previous(info);
    }));

    let (state, backends) = app_state();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Two serving threads, as the daemon runs on two cores.
    let server = tokio::spawn(gateway::server::run(listener, state, 2, async move {
        let _ = stopped.await;
    }));

    // Warm up (lexicons, the runtime, the first connection) before measuring.
    let warm = exchange(addr, "warm-up", Send::All(post(&chat("hello"), ""))).await;
    assert!(matches!(&warm, Outcome::Reply(r) if r.status == 200), "{warm:?}");
    let rss_before = rss_kb();

    let cases = cases();
    let n = cases.len();
    for Case { name, send, expect } in cases {
        let before = backends.calls();
        let outcome = exchange(addr, &name, send).await;
        // Shown with --nocapture: what each case got.
        match &outcome {
            Outcome::Reply(r) => println!("{name}: {}", r.status),
            Outcome::Closed(why) => println!("{name}: closed, {why}"),
        }
        check(&name, expect, &outcome, before, backends.calls());
    }

    let health = exchange(addr, "/healthz", Send::All(get("/healthz", "127.0.0.1"))).await;
    let Outcome::Reply(health) = health else {
        panic!("/healthz after {n} hostile cases: {health:?}");
    };
    assert_eq!(health.status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&health.body).unwrap()["status"], "ok");

    let rss_after = rss_kb();
    println!("{n} cases; resident memory {rss_before} kB before, {rss_after} kB after");
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KB,
        "resident memory grew from {rss_before} kB to {rss_after} kB over {n} cases"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let panics = PANICS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(panics.is_empty(), "panics during the suite: {panics:#?}");
}
