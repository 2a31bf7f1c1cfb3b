//! The `tandem` binary as a process: what its logs hold, and how it shuts
//! down. The cloud is the mock over TLS, in this test's process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mock_cloud::{Fault, MockConfig, MockHandle};

struct Daemon {
    child: Child,
    addr: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

async fn mock(fault: Fault) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock_cloud::spawn(
        listener,
        MockConfig {
            default_fault: fault,
            ..MockConfig::default()
        },
    )
    .await
    .unwrap()
}

/// Starts `tandem serve` with a cloud-only config pointing at `mock`.
fn start(mock: &MockHandle, extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), mock.ca_pem.as_deref().unwrap()).unwrap();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 700
{extra}
[policy]
file = "policy.toml"
[device]
source = "none"
[[cloud]]
name = "cloud"
extra_ca_file = "ca.pem"
idle_timeout_ms = 20000
[[cloud.endpoints]]
url = "{}/v1"
model = "mock-large"
"#,
        mock.url
    );
    std::fs::write(dir.path().join("tandem.toml"), config).unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "version = 1\n[[rule]]\nname = \"all-cloud\"\nwhen = \"true\"\ntarget = \"cloud\"\n",
    )
    .unwrap();
    // The listening line carries the port; stderr is collected after it.
    let (child, addr, stderr) = common::spawn_binary(&dir.path().join("tandem.toml"));
    Daemon {
        child,
        addr,
        stderr,
        _dir: dir,
    }
}

fn terminate(d: &mut Daemon) -> std::process::ExitStatus {
    if d.child.try_wait().unwrap().is_none() {
        let _ = Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "tandem did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Plain HTTP to the daemon; reqwest is built without a default TLS
/// provider, so it is handed an (unused) rustls config.
fn client() -> reqwest::Client {
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

async fn chat(addr: &str, body: serde_json::Value) -> reqwest::Response {
    client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn prompts_reach_the_logs_only_when_the_operator_allows() {
    let m = mock(Fault::default()).await;
    let secret = "zebra-quartz-7177 violet";
    // Tandem's crates log at debug here (`spawn_binary`), where every
    // request gets its line: still no content unless the operator allows it.
    for (extra, want) in [("", false), ("[logging]\nlog_content = true\n", true)] {
        let mut d = start(&m, extra);
        let body = serde_json::json!({"model": "cloud", "messages": [{"role": "user", "content": secret}]});
        assert_eq!(chat(&d.addr, body.clone()).await.status(), 200);
        let mut stream_body = body;
        stream_body["stream"] = true.into();
        let text = chat(&d.addr, stream_body).await.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        let status = terminate(&mut d);
        std::thread::sleep(Duration::from_millis(200));
        let logs = d.stderr.lock().unwrap().clone();
        assert!(status.success(), "{status:?}; logs:\n{logs}");
        assert!(logs.contains("request done"), "the run logged its requests: {logs}");
        assert_eq!(logs.contains(secret), want, "log_content={want}; logs:\n{logs}");
    }
}

#[tokio::test]
async fn sigterm_lets_streams_finish_then_ends_them_with_an_error_event() {
    // 40 chunks, 100 ms apart: four seconds, far past the 700 ms grace.
    let m = mock(Fault {
        chunk_delay_ms: 100,
        chunks: Some(40),
        ..Fault::default()
    })
    .await;
    let mut d = start(&m, "");
    let body =
        serde_json::json!({"model": "cloud", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let resp = chat(&d.addr, body).await;
    assert_eq!(resp.status(), 200);
    let pid = d.child.id().to_string();
    let reader = tokio::spawn(async move { resp.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let text = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("shutting_down"), "an explicit error event: {text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let status = terminate(&mut d);
    assert!(status.success(), "exit 0 after a graceful shutdown: {status:?}");
    // New connections are refused once shutdown began.
    assert!(client().get(format!("http://{}/healthz", d.addr)).send().await.is_err());
}

#[tokio::test]
async fn sigterm_answers_requests_not_yet_under_way_with_an_error_status() {
    // The cloud takes 8 s to its headers: neither answer has started when
    // the 700 ms grace period ends.
    let m = mock(Fault {
        latency_ms: 8000,
        ..Fault::default()
    })
    .await;
    let mut d = start(&m, "");
    let pid = d.child.id().to_string();
    let requests: Vec<_> = [false, true]
        .into_iter()
        .map(|stream| {
            let addr = d.addr.clone();
            let body = serde_json::json!({"model": "cloud", "stream": stream,
                "messages": [{"role": "user", "content": "hello"}]});
            tokio::spawn(async move {
                let resp = chat(&addr, body).await;
                (resp.status().as_u16(), resp.text().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    for r in requests {
        let (status, body) = tokio::time::timeout(Duration::from_secs(6), r).await.unwrap().unwrap();
        assert_eq!(status, 503, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "shutting_down", "{body}");
    }
    assert!(terminate(&mut d).success());
}
