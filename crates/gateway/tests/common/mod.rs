//! Shared setup of the end-to-end tests: the real daemon (`gateway::server::run`
//! on `127.0.0.1:0`, state from `Config::parse` and `daemon::build`), real mock
//! clouds over TLS (`mock_cloud::spawn`, their generated CA written to the
//! daemon's temporary directory and trusted through `extra_ca_file`), the real
//! local model, and a small HTTP/SSE client.
//!
//! A [`Spec`] is written out as a `tandem.toml` in a temporary directory, so
//! every test goes through the same config parsing as the binary.
//! Daemons shared by the tests of one binary (the local model is loaded once
//! per binary) run on [`server_runtime`]: each `#[tokio::test]` has its own
//! runtime, which ends with the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gateway::config::Config;
use gateway::state::AppState;
use mock_cloud::{Fault, MockConfig, MockHandle, RecordedRequest};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A bound on waits for something that must happen; never reached when the
/// daemon works (the tests assert completion, not speed).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The test model. Missing, the tests fail: they never skip.
pub fn model_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        p.is_file(),
        "the test model {} is missing: run ./scripts/fetch-model.sh (the end-to-end tests need the real model)",
        p.display()
    );
    p.canonicalize().unwrap()
}

/// The shipped policy, `config/policy.toml`.
pub fn default_policy_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/policy.toml")
        .canonicalize()
        .unwrap()
}

/// A multi-threaded runtime that lives as long as the test process, for
/// servers shared by several tests.
pub fn server_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("e2e-servers")
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Runs `fut` on [`server_runtime`] (servers it spawns live on there).
pub async fn on_server_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    server_runtime().spawn(fut).await.unwrap()
}

/// A mock cloud over TLS with a generated CA.
pub async fn mock(cfg: MockConfig) -> MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = mock_cloud::spawn(listener, cfg).await.unwrap();
    assert!(m.url.starts_with("https://"), "{}", m.url);
    m
}

/// A TLS mock whose every request gets `fault` (header syntax, `""` for none).
pub async fn mock_with(fault: &str) -> MockHandle {
    mock(MockConfig {
        default_fault: Fault::parse(fault).unwrap(),
        ..MockConfig::default()
    })
    .await
}

/// The model name the daemon sends to endpoint `i` of tier `tier`.
pub fn upstream_model(tier: &str, i: usize) -> String {
    format!("upstream-{tier}-{i}")
}

struct CloudSpec {
    name: String,
    /// Base URL and CA of each endpoint, in priority order.
    endpoints: Vec<(String, String)>,
    settings: String,
    endpoint_lines: String,
}

/// A daemon configuration, written out as TOML.
pub struct Spec {
    policy: PolicySource,
    server: String,
    local: Option<String>,
    clouds: Vec<CloudSpec>,
    env: HashMap<String, String>,
    files: Vec<(String, String)>,
}

enum PolicySource {
    Text(String),
    File(PathBuf),
}

impl Spec {
    /// A daemon with this policy text and no tiers yet.
    pub fn new(policy: &str) -> Self {
        Self::with_policy(PolicySource::Text(policy.to_owned()))
    }

    /// A daemon with the shipped `config/policy.toml`.
    pub fn default_policy() -> Self {
        Self::with_policy(PolicySource::File(default_policy_path()))
    }

    fn with_policy(policy: PolicySource) -> Self {
        Spec {
            policy,
            server: String::new(),
            local: None,
            clouds: vec![],
            env: HashMap::new(),
            files: vec![],
        }
    }

    /// Extra lines of the `[server]` table.
    pub fn server(mut self, lines: &str) -> Self {
        self.server.push_str(lines);
        self.server.push('\n');
        self
    }

    /// The local tier `local` on the test model: one slot, no self-benchmark;
    /// `lines` override or add keys.
    pub fn local(mut self, lines: &str) -> Self {
        self.local = Some(lines.to_owned());
        self
    }

    /// A cloud tier over these mocks (in priority order); `settings` are
    /// extra keys of the tier.
    pub fn cloud(self, name: &str, mocks: &[&MockHandle], settings: &str) -> Self {
        self.cloud_with(name, mocks, settings, "")
    }

    /// [`Spec::cloud`] with extra keys on every endpoint.
    pub fn cloud_with(mut self, name: &str, mocks: &[&MockHandle], settings: &str, endpoint_lines: &str) -> Self {
        self.clouds.push(CloudSpec {
            name: name.to_owned(),
            endpoints: mocks
                .iter()
                .map(|m| (m.url.clone(), m.ca_pem.clone().expect("a TLS mock")))
                .collect(),
            settings: settings.to_owned(),
            endpoint_lines: endpoint_lines.to_owned(),
        });
        self
    }

    /// A variable of the environment `Config::parse` reads.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A file written next to the config (relative paths resolve there).
    pub fn file(mut self, name: &str, contents: &str) -> Self {
        self.files.push((name.to_owned(), contents.to_owned()));
        self
    }

    fn toml(&self) -> String {
        let policy = match &self.policy {
            PolicySource::Text(_) => "policy.toml".to_owned(),
            PolicySource::File(p) => p.display().to_string(),
        };
        let mut t = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[policy]\nfile = {policy:?}\n\n[device]\nsource = \"none\"\n\n",
            self.server
        );
        if let Some(lines) = &self.local {
            let mut keys: Vec<(String, String)> = [
                ("name", "\"local\"".to_owned()),
                ("model", format!("{:?}", model_path().display().to_string())),
                ("chat_template", "\"gemma\"".to_owned()),
                ("context_len", "1024".to_owned()),
                ("threads", "2".to_owned()),
                ("parallel_slots", "1".to_owned()),
                ("self_bench", "false".to_owned()),
                ("queue_len", "8".to_owned()),
                ("queue_wait_ms", "60000".to_owned()),
                ("mem_reserve_mb", "64".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            // `lines` override the defaults key by key (TOML refuses a key twice).
            for line in lines.lines().filter(|l| !l.trim().is_empty()) {
                let (k, v) = line.split_once('=').expect("key = value");
                let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
                match keys.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => keys.push((k, v)),
                }
            }
            t.push_str("[[local]]\n");
            for (k, v) in keys {
                t.push_str(&format!("{k} = {v}\n"));
            }
            t.push('\n');
        }
        for c in &self.clouds {
            t.push_str(&format!(
                "[[cloud]]\nname = {:?}\nextra_ca_file = \"ca-{}.pem\"\n{}\n",
                c.name, c.name, c.settings
            ));
            for (i, (url, _)) in c.endpoints.iter().enumerate() {
                t.push_str(&format!(
                    "[[cloud.endpoints]]\nurl = \"{url}/v1\"\nmodel = {:?}\n{}\n",
                    upstream_model(&c.name, i),
                    c.endpoint_lines
                ));
            }
            t.push('\n');
        }
        t
    }

    /// Builds the state and serves it on the configured serving threads
    /// (`server.threads`, one per core by default), accepting on the
    /// current runtime.
    pub async fn start(self) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        if let PolicySource::Text(p) = &self.policy {
            std::fs::write(dir.path().join("policy.toml"), p).unwrap();
        }
        for c in &self.clouds {
            let cas: String = c.endpoints.iter().map(|(_, ca)| ca.as_str()).collect();
            std::fs::write(dir.path().join(format!("ca-{}.pem", c.name)), cas).unwrap();
        }
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let text = self.toml();
        let cfg = Config::parse(&text, "e2e-tandem.toml", dir.path(), &self.env)
            .unwrap_or_else(|e| panic!("config refused: {e}\n{text}"));
        let state = Arc::new(
            gateway::daemon::build(&cfg, &cloud::ProcessEnv)
                .await
                .unwrap_or_else(|e| panic!("daemon::build failed: {e:#}\n{text}")),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gateway::server::run(
            listener,
            state.clone(),
            cfg.server.threads,
            async move {
                let _ = stopped.await;
            },
        ));
        Daemon {
            url: format!("http://{addr}"),
            addr,
            state,
            _dir: dir,
            _stop: stop,
        }
    }

    /// [`Spec::start`] on [`server_runtime`], for a daemon shared by tests.
    pub async fn start_shared(self) -> Daemon {
        on_server_runtime(self.start()).await
    }
}

/// A running daemon. Dropping it stops the server (gracefully).
pub struct Daemon {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Daemon {
    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.url)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Value {
        let r = client().get(format!("{}/v1/status", self.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }

    /// The local tier's status object (`busy`, `completed_requests`, …).
    pub async fn local_status(&self) -> Value {
        let s = self.status().await;
        s["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["local"] == true)
            .unwrap_or_else(|| panic!("no local tier in {s}"))["status"]
            .clone()
    }

    /// The breaker state of endpoint `i` of cloud tier `tier`.
    pub async fn breaker(&self, tier: &str, i: usize) -> String {
        let s = self.status().await;
        let t = s["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == tier)
            .unwrap()
            .clone();
        t["status"]["endpoints"][i]["state"]
            .as_str()
            .unwrap_or_else(|| panic!("no breaker state in {t}"))
            .to_owned()
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        post(&self.chat_url(), body, &[]).await
    }

    pub async fn post_with(&self, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        post(&self.chat_url(), body, headers).await
    }
}

/// A plain-HTTP client for the daemon. reqwest is built without a default
/// TLS provider; installing ring's keeps the builder happy.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().timeout(PATIENCE).build().unwrap()
}

pub async fn post(url: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = client()
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    tokio::time::timeout(PATIENCE, rb.send())
        .await
        .expect("the daemon answered within PATIENCE")
        .unwrap()
}

/// A chat request with one user message.
pub fn chat(model: &str, prompt: &str, max_tokens: u32) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]})
}

/// The same, streamed; `usage` asks for `stream_options.include_usage`.
pub fn chat_stream(model: &str, prompt: &str, max_tokens: u32, usage: bool) -> Value {
    let mut v = chat(model, prompt, max_tokens);
    v["stream"] = json!(true);
    if usage {
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

/// A non-stream response: status, headers, JSON body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn content(&self) -> &str {
        self.body["choices"][0]["message"]["content"].as_str().unwrap_or("")
    }

    /// Asserts OpenAI's error shape and returns `error.code`.
    pub fn error_code(&self) -> String {
        let e = &self.body["error"];
        assert!(
            e["message"].is_string() && e["type"].is_string(),
            "not an OpenAI error: {}",
            self.body
        );
        e["code"].as_str().unwrap_or("").to_owned()
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = tokio::time::timeout(PATIENCE, resp.bytes())
        .await
        .expect("body within PATIENCE")
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Reply { status, headers, body }
}

/// A whole SSE response, read to its end.
#[derive(Debug)]
pub struct Sse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON of every `data:` event before `[DONE]`.
    pub events: Vec<Value>,
    pub done: bool,
    /// Bytes after `[DONE]` (must be none).
    pub trailing: String,
}

impl Sse {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The answer text: every `delta.content` in order.
    pub fn content(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    /// Events that carry content.
    pub fn content_events(&self) -> usize {
        self.events
            .iter()
            .filter(|e| {
                e["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            })
            .count()
    }

    /// The in-band error event, if any.
    pub fn error(&self) -> Option<&Value> {
        self.events.iter().find(|e| e.get("error").is_some())
    }

    /// The `tandem` object (of the final chunk or the error event).
    pub fn tandem(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find_map(|e| e.get("tandem"))
            .unwrap_or_else(|| panic!("no tandem object in {:?}", self.events))
    }

    pub fn finish_reasons(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e["choices"][0]["finish_reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// Checks what every stream must be: status 200, SSE, chunks sharing one
    /// `id` and `created` and the requested `model`, ended by `[DONE]` with
    /// nothing after it. Returns the id.
    pub fn assert_well_formed(&self, model: &str) -> String {
        assert_eq!(self.status, 200, "{self:?}");
        assert!(self.header("content-type").starts_with("text/event-stream"), "{self:?}");
        assert!(self.done, "no [DONE]: a silent cut: {self:?}");
        assert!(
            self.trailing.trim().is_empty(),
            "bytes after [DONE]: {:?}",
            self.trailing
        );
        let chunks: Vec<&Value> = self.events.iter().filter(|e| e.get("error").is_none()).collect();
        assert!(!chunks.is_empty());
        let ids: BTreeSet<&str> = chunks.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 1, "one id per answer: {ids:?}");
        let created: BTreeSet<u64> = chunks.iter().map(|e| e["created"].as_u64().unwrap()).collect();
        assert_eq!(created.len(), 1, "one created per answer: {created:?}");
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk", "{c}");
            assert_eq!(c["model"], model, "{c}");
            // As OpenAI: a chunk without a choice is the usage chunk, sent
            // only when asked for; SDK loops read `choices[0]` otherwise.
            if c["choices"].as_array().is_some_and(Vec::is_empty) {
                assert!(c.get("usage").is_some(), "a chunk without a choice or usage: {c}");
            }
        }
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["role"], "assistant",
            "the first chunk opens the message"
        );
        let id = ids.into_iter().next().unwrap().to_owned();
        assert!(id.starts_with("chatcmpl-"), "{id}");
        id
    }

    /// The usage objects found in the stream.
    pub fn usages(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter_map(|e| e.get("usage"))
            .filter(|u| !u.is_null())
            .collect()
    }
}

/// Reads an SSE response to its end (bounded by [`PATIENCE`]).
pub async fn sse(resp: reqwest::Response) -> Sse {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = tokio::time::timeout(PATIENCE, resp.bytes())
        .await
        .expect("the stream ended within PATIENCE: no hung connection")
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    parse_sse(status, headers, &text)
}

pub fn parse_sse(status: StatusCode, headers: HeaderMap, text: &str) -> Sse {
    let mut events = Vec::new();
    let mut done = false;
    let mut trailing = String::new();
    let mut rest = text;
    while let Some(end) = rest.find("\n\n") {
        let frame = &rest[..end];
        rest = &rest[end + 2..];
        if done {
            trailing.push_str(frame);
            continue;
        }
        let data = frame
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data event: {frame:?}"));
        assert!(!data.contains('\n'), "one data line per event: {frame:?}");
        if data == "[DONE]" {
            done = true;
        } else {
            events.push(serde_json::from_str(data).unwrap_or_else(|e| panic!("bad JSON event ({e}): {data}")));
        }
    }
    trailing.push_str(rest);
    Sse {
        status,
        headers,
        events,
        done,
        trailing,
    }
}

/// Reads a stream until it has carried `n` content chunks, and returns
/// their text; the response stays open (the caller drops it to leave
/// mid-answer).
pub async fn read_content_chunks(resp: &mut reqwest::Response, n: usize) -> String {
    let mut buf = String::new();
    let mut text = String::new();
    let mut seen = 0;
    while seen < n {
        let chunk = tokio::time::timeout(PATIENCE, resp.chunk())
            .await
            .expect("a chunk within PATIENCE")
            .unwrap()
            .expect("the stream went on");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let data = frame.trim().strip_prefix("data: ").unwrap_or("");
            let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {frame:?}"));
            assert!(v.get("error").is_none(), "the stream failed: {v}");
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str().filter(|c| !c.is_empty()) {
                text.push_str(c);
                seen += 1;
            }
        }
    }
    text
}

/// What the mock answers (12 words) to a prompt, as the gateway sends it.
pub fn mock_text(prompt: &str, chunks: u32) -> String {
    mock_cloud::expected_text(
        &json!({"model": "m", "messages": [{"role": "user", "content": prompt}]}),
        chunks,
    )
    .unwrap()
}

/// Every recorded request body, serialised, for "never contains" checks.
pub fn recorded_text(reqs: &[RecordedRequest]) -> String {
    reqs.iter().map(|r| r.body.to_string()).collect::<Vec<_>>().join("\n")
}

/// Waits until the mock's stats satisfy `pred`.
pub async fn wait_stats(m: &MockHandle, pred: impl Fn(&mock_cloud::Stats) -> bool) -> mock_cloud::Stats {
    tokio::time::timeout(PATIENCE, m.wait_stats(pred))
        .await
        .unwrap_or_else(|_| panic!("mock stats never got there: {:?}", m.stats()))
}

/// Sends raw bytes (one HTTP/1.1 request with `Connection: close`) and
/// returns the status and the whole response, for headers reqwest would fix.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .expect("response within PATIENCE")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}

/// The JSON body of a raw HTTP/1.1 response (not chunked).
pub fn raw_body(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response:?}"))
}

/// A process-wide lock for tests that need the local model to themselves
/// (one slot; the slot-freeing and counter checks must not see other tests).
pub async fn local_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A payment card number with a valid Luhn check digit: `4` and 14 digits
/// from `seed`, then the check digit.
pub fn luhn_card(seed: u64) -> String {
    let mut digits = vec![4u32];
    let mut x = seed;
    for _ in 0..14 {
        x = splitmix(x);
        digits.push((x % 10) as u32);
    }
    // The check digit makes the Luhn sum (doubling every second digit from
    // the right, the check digit being position 0) a multiple of 10.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits.iter().map(|d| char::from_digit(*d, 10).unwrap()).collect()
}

/// SplitMix64: a small deterministic generator for property tests.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn is_luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `tandem serve --config CONFIG` as a child process (info logs on stderr,
/// Tandem's own at debug: every request has its line, and tests that read
/// the logs see everything Tandem could write there):
/// its address from the "listening on" line, and its stderr, which a thread
/// keeps collecting after that line.
pub fn spawn_binary(config: &Path) -> (std::process::Child, String, Arc<std::sync::Mutex<String>>) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--config"])
        .arg(config)
        .env("TANDEM_LOG", "info,gateway=debug,cloud=debug,local=debug,device=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(std::sync::Mutex::new(String::new()));
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let mut line = String::new();
        assert!(std::time::Instant::now() < deadline, "tandem did not start");
        if reader.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("tandem exited early: {}", stderr.lock().unwrap());
        }
        stderr.lock().unwrap().push_str(&line);
        if let Some(i) = line.find("listening on http://") {
            let rest = &line[i + "listening on http://".len()..];
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        sink.lock().unwrap().push_str(&rest);
    });
    (child, addr, stderr)
}
