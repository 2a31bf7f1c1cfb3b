//! The status page (`GET /`) as a person sees it: the real `tandem` binary
//! with the real local model and two cloud tiers on in-process TLS mock
//! clouds (one always failing, so a request fails over), a device state file,
//! a few requests of every kind, then headless Chromium renders the page and
//! the rendered DOM is checked: signals, policy and the decisions the page
//! polled are filled in, and no request text reached it. A screenshot is
//! saved to `<target>/status-page.png` for people to look at.
//!
//! Chromium (Debian's `chromium` package) is required: without it the test
//! fails and says to run `scripts/install-deps.sh`; it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mock_cloud::{Fault, MockConfig, MockHandle};
use serde_json::{Value, json};

/// A bound on waits for something that must happen (never reached when
/// things work; nothing here asserts speed).
const PATIENCE: Duration = Duration::from_secs(120);

/// Words of the prompts below; none may appear in what the page shows.
const SECRETS: &[&str] = &["Hamlet", "jane.doe", "4111", "infinitely", "France", "hello"];

const POLICY: &str = r#"version = 1
default_local = "local"
default_cloud = "cloud"

[[rule]]
name = "private-stays-local"
description = "Sensitive text stays on the device."
when = "privacy >= 0.5"
target = "local"
cloud = "never"

[[rule]]
name = "flaky-app"
description = "The flaky app's requests try the flaky tier first."
when = "app == 'flaky'"
target = "flaky"
fallbacks = ["cloud"]

[[rule]]
name = "hard-goes-to-cloud"
when = "complexity >= 0.6"
target = "cloud"
fallbacks = ["local"]

[[rule]]
name = "default"
when = "true"
target = "local"
fallbacks = ["cloud"]
"#;

/// Chromium from `PATH`; a missing browser fails the test.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium is not installed: run scripts/install-deps.sh (the status page test renders the page in headless Chromium)")
        })
}

fn model_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        p.is_file(),
        "the test model {} is missing: run ./scripts/fetch-model.sh",
        p.display()
    );
    p.canonicalize().unwrap()
}

async fn mock(fault: &str) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock_cloud::spawn(
        listener,
        MockConfig {
            default_fault: Fault::parse(fault).unwrap(),
            ..MockConfig::default()
        },
    )
    .await
    .unwrap()
}

/// `tandem serve` as a child process; killed (by its id) when dropped.
struct Daemon {
    child: Child,
    addr: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The config, policy and device files (the test edits the policy).
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(good: &MockHandle, flaky: &MockHandle) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("ca-cloud.pem"), good.ca_pem.as_deref().unwrap()).unwrap();
    std::fs::write(p.join("ca-flaky.pem"), flaky.ca_pem.as_deref().unwrap()).unwrap();
    std::fs::write(p.join("policy.toml"), POLICY).unwrap();
    std::fs::write(
        p.join("device.json"),
        r#"{"battery": 0.62, "charging": false, "thermal": "fair", "temperature_c": 41.0}"#,
    )
    .unwrap();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[policy]
file = "policy.toml"
reload_ms = 100
[device]
source = "file"
file = "device.json"
[[local]]
name = "local"
model = {model:?}
chat_template = "gemma"
context_len = 1024
threads = 2
parallel_slots = 1
self_bench = false
load = "startup"
[[cloud]]
name = "cloud"
extra_ca_file = "ca-cloud.pem"
[[cloud.endpoints]]
url = "{good}/v1"
model = "mock-large"
[[cloud]]
name = "flaky"
extra_ca_file = "ca-flaky.pem"
retries = 0
[[cloud.endpoints]]
url = "{flaky}/v1"
model = "mock-large"
"#,
        model = model_path().display().to_string(),
        good = good.url,
        flaky = flaky.url,
    );
    std::fs::write(p.join("tandem.toml"), config).unwrap();
    let (child, addr, stderr) = common::spawn_binary(&p.join("tandem.toml"));
    Daemon {
        child,
        addr,
        stderr,
        dir,
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().timeout(PATIENCE).build().unwrap()
}

/// Sends one chat request; returns status, `x-tandem-route`, `x-tandem-rule` and the body.
async fn chat(d: &Daemon, body: Value, headers: &[(&str, &str)]) -> (u16, String, String, String) {
    let mut rb = client()
        .post(format!("http://{}/v1/chat/completions", d.addr))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (route, rule) = (header("x-tandem-route"), header("x-tandem-rule"));
    let status = resp.status().as_u16();
    (status, route, rule, resp.text().await.unwrap())
}

/// One request the test sends and where the daemon must route it.
struct Case {
    body: Value,
    /// `x-tandem-app`, which the policy's `flaky-app` rule reads.
    app: Option<&'static str>,
    status: u16,
    route: &'static str,
    rule: &'static str,
}

impl Case {
    fn new(body: Value, status: u16, route: &'static str, rule: &'static str) -> Self {
        Case {
            body,
            app: None,
            status,
            route,
            rule,
        }
    }
}

fn msg(model: &str, text: &str, max_tokens: u32, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": text}]})
}

async fn get_json(d: &Daemon, path: &str) -> Value {
    let r = client().get(format!("http://{}{path}", d.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// Runs Chromium headless on `url` with `args`; returns its stdout and
/// stderr. The page polls forever, so the virtual-time budget is what ends
/// the run.
fn run_chromium(url: &str, args: &[String]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish: {}", err_reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    (stdout, stderr)
}

/// Replaces the entities the DOM serializer writes in text and attributes.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The text of the element with this id (its text up to the first child tag).
fn text_by_id(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in the page"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find('<').unwrap();
    unescape(&dom[start..end])
}

/// An attribute of the first tag in `fragment`.
fn attr(fragment: &str, name: &str) -> String {
    let tag_end = fragment.find('>').unwrap();
    let tag = &fragment[..tag_end];
    let key = format!(" {name}=\"");
    let Some(i) = tag.find(&key) else {
        return String::new();
    };
    let rest = &tag[i + key.len()..];
    unescape(&rest[..rest.find('"').unwrap()])
}

/// The decision rows of the table: (route, rule, status, handovers).
fn table_rows(dom: &str) -> Vec<(String, String, String, String)> {
    dom.match_indices("<tr class=\"decision")
        .map(|(i, _)| {
            let f = &dom[i..];
            (
                attr(f, "data-route"),
                attr(f, "data-rule"),
                attr(f, "data-status"),
                attr(f, "data-handovers"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_signals_policy_and_decisions() {
    let browser = chromium();
    let started = Instant::now();
    let good = mock("").await;
    let flaky = mock("status=503").await;
    // Waiting for the model to load blocks; the mocks run on the other worker.
    let d = tokio::task::block_in_place(|| start(&good, &flaky));

    // The page itself: HTML, locked down, behind the same Host check.
    let page = client().get(format!("http://{}/", d.addr)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.starts_with(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"
        ),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(!html.contains("innerHTML"), "the page inserts text only");
    assert!(!html.contains(" src="), "no external scripts or images");
    assert!(
        html.match_indices(" href=\"")
            .all(|(i, m)| html[i + m.len()..].starts_with("data:")),
        "no external links or styles"
    );
    let foreign = client()
        .get(format!("http://{}/", d.addr))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert!(foreign.status().is_client_error(), "{}", foreign.status());

    // One request of each kind, so the table and the chart have rows.
    let cases = [
        Case::new(msg("auto", "Say hello", 8, false), 200, "local", "default"),
        Case::new(
            msg("auto", "Summarise the plot of Hamlet in two sentences.", 8, true),
            200,
            "local",
            "default",
        ),
        Case::new(
            msg(
                "auto",
                "My card is 4111 1111 1111 1111 and my email is jane.doe@example.com, remind me to pay",
                8,
                false,
            ),
            200,
            "local",
            "private-stays-local",
        ),
        Case::new(
            msg(
                "auto",
                "Prove that there are infinitely many primes, then write a Rust function that computes the first n \
                 primes with a sieve, and analyse its time complexity step by step. Then derive the recurrence and \
                 solve it.",
                16,
                false,
            ),
            200,
            "cloud",
            "hard-goes-to-cloud",
        ),
        Case {
            app: Some("flaky"),
            ..Case::new(
                msg("auto", "What is the capital of France?", 16, false),
                200,
                "cloud",
                "flaky-app",
            )
        },
        Case::new(msg("cloud", "Say hello again", 16, true), 200, "cloud", "model"),
        Case::new(msg("no-such-model", "Say hello", 8, false), 404, "", ""),
    ];
    for c in &cases {
        let headers: Vec<(&str, &str)> = c.app.map(|a| ("x-tandem-app", a)).into_iter().collect();
        let (status, route, rule, text) = chat(&d, c.body.clone(), &headers).await;
        assert_eq!(status, c.status, "{}: {text}", c.body);
        if c.status == 200 {
            assert_eq!((route.as_str(), rule.as_str()), (c.route, c.rule), "{}: {text}", c.body);
        }
    }

    // The JSON the page polls: one entry per request, oldest first, no text.
    let decisions = get_json(&d, "/v1/status/decisions").await;
    let list = decisions.as_array().unwrap();
    assert_eq!(list.len(), cases.len(), "{decisions}");
    assert!(list.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    let failover = list.iter().find(|e| e["rule"] == "flaky-app").unwrap();
    assert_eq!(failover["handovers"][0]["from"], "flaky", "{failover}");
    assert_eq!(failover["handovers"][0]["to"], "cloud", "{failover}");
    let private = list.iter().find(|e| e["rule"] == "private-stays-local").unwrap();
    assert_eq!(private["cloud"], "never", "{private}");
    assert!(private["privacy"].as_f64().unwrap() >= 0.5, "{private}");
    let raw = decisions.to_string();
    for s in SECRETS {
        assert!(!raw.contains(s), "request text `{s}` in the decisions: {raw}");
    }
    let status = get_json(&d, "/v1/status").await;
    let hash = status["policy"]["hash"].as_str().unwrap().to_owned();
    assert!(!hash.is_empty());

    // A refused edit whose error quotes markup: the page must show it as text.
    std::fs::write(
        d.dir.path().join("policy.toml"),
        "version = 1\ndefault_local = \"local\"\n[[rule]]\nname = \"<b>bold</b>\"\nwhen = \"true\"\ntarget = \"local\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while get_json(&d, "/v1/status").await["policy"]["reloads_failed"] != 1 {
        assert!(Instant::now() < deadline, "the broken edit was never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The page as Chromium renders it, after several polls.
    let url = format!("http://{}/", d.addr);
    let (dom, console) = tokio::task::spawn_blocking({
        let url = url.clone();
        // The page's console goes to stderr: a script error or a CSP
        // violation (the page and its header disagreeing) shows there.
        let args = ["--dump-dom", "--enable-logging=stderr", "--v=0"].map(str::to_owned);
        move || run_chromium(&url, &args)
    })
    .await
    .unwrap();
    let messages: Vec<&str> = console.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(messages.is_empty(), "the page logged to its console: {messages:#?}");
    assert!(
        dom.contains("<tbody id=\"decision-rows\">"),
        "not the status page: {dom}"
    );
    assert_eq!(
        text_by_id(&dom, "cloud-state"),
        "up",
        "both cloud tiers answer /v1/status: one is up"
    );
    assert_eq!(text_by_id(&dom, "policy-hash"), hash);
    assert!(text_by_id(&dom, "policy-file").ends_with("policy.toml"));
    assert_eq!(text_by_id(&dom, "policy-reloads"), "0 applied · 1 refused");
    let error_box = &dom[dom.find("class=\"error-box\">").expect("the reload error is shown")..];
    let error_text = unescape(&error_box[error_box.find('>').unwrap() + 1..error_box.find("</div>").unwrap()]);
    assert!(error_text.contains("rule name '<b>bold</b>'"), "{error_text}");
    assert!(!dom.contains("<b>bold</b>"), "the error's markup stayed text");
    assert_eq!(text_by_id(&dom, "battery"), "62%");
    assert_eq!(text_by_id(&dom, "charging"), "on battery");
    assert_eq!(text_by_id(&dom, "thermal"), "fair");
    let tps = text_by_id(&dom, "local-tps");
    let tps_value: f64 = tps
        .strip_suffix(" tok/s")
        .unwrap_or_else(|| panic!("{tps}"))
        .parse()
        .unwrap();
    assert!(tps_value > 0.0, "measured on the real requests: {tps}");
    assert_eq!(text_by_id(&dom, "local-queue"), "0");
    assert!(text_by_id(&dom, "live").starts_with("live"), "the polls succeeded");
    assert!(dom.contains("id=\"error\" hidden"), "no error banner");
    assert_eq!(
        dom.matches("<li data-rule=").count(),
        4,
        "every rule of the policy is listed"
    );

    let rows = table_rows(&dom);
    assert_eq!(rows.len(), cases.len(), "{rows:?}");
    // Newest first: the table is the request order reversed.
    for ((route, rule, status, _), c) in rows.iter().rev().zip(&cases) {
        assert_eq!(
            (route.as_str(), rule.as_str(), status.as_str()),
            (c.route, c.rule, c.status.to_string().as_str())
        );
    }
    assert!(
        rows.iter().any(|r| r.1 == "flaky-app" && r.3 == "1"),
        "the failover shows its handover"
    );
    assert!(
        dom.contains("flaky → cloud (status)"),
        "the handover is spelled out in the table"
    );
    let points = dom.matches("<g class=\"pt\"").count();
    assert_eq!(points, cases.len(), "one chart point per decision");
    assert!(dom.contains("<circle"), "scored decisions are dots");
    for s in SECRETS {
        assert!(!dom.contains(s), "request text `{s}` reached the page");
    }

    // The screenshot people look at.
    let target = Path::new(env!("CARGO_BIN_EXE_tandem"))
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    let png = target.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    tokio::task::spawn_blocking({
        let png = png.clone();
        move || {
            run_chromium(
                &url,
                &[
                    format!("--screenshot={}", png.display()),
                    "--window-size=1280,900".to_owned(),
                ],
            )
        }
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    assert!(
        bytes.len() > 40_000,
        "a rendered page, not a blank one: {} bytes",
        bytes.len()
    );

    let logs = d.stderr.lock().unwrap().clone();
    for s in SECRETS {
        assert!(!logs.contains(s), "request text `{s}` in the logs");
    }
    eprintln!(
        "status page: {} decisions rendered, screenshot {} ({} bytes), in {:.1} s with {}",
        rows.len(),
        png.display(),
        bytes.len(),
        started.elapsed().as_secs_f64(),
        browser.display()
    );
}
