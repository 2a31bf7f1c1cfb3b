//! The `mock-cloud` binary as a process: the one stdout line, the CA file,
//! the API key from the environment, default faults, and a clean exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{chat, client};
use serde_json::Value;

struct Proc {
    child: Child,
    url: String,
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-cloud"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("mock-cloud listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Proc { child, url }
}

impl Proc {
    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.child.wait().unwrap()
    }
}

#[tokio::test]
async fn plain_process_answers_and_exits_on_sigterm() {
    let p = start(&["--plain", "--chunks", "3", "--latency-ms", "1"], &[]);
    assert!(p.url.starts_with("http://127.0.0.1:"), "{}", p.url);
    let c = client(None);
    assert_eq!(c.get(format!("{}/healthz", p.url)).send().await.unwrap().status(), 200);
    let v: Value = c
        .post(format!("{}/v1/chat/completions", p.url))
        .json(&chat("hi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let status = p.stop();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn tls_process_writes_its_ca_and_checks_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let p = start(
        &[
            "--ca-out",
            ca.to_str().unwrap(),
            "--san",
            "mock.test",
            "--api-key-env",
            "MOCK_TEST_KEY",
            "--status",
            "503",
        ],
        &[("MOCK_TEST_KEY", "sk-from-env")],
    );
    assert!(p.url.starts_with("https://127.0.0.1:"), "{}", p.url);
    let pem = std::fs::read_to_string(&ca).unwrap();
    let c = client(Some(&pem));
    let url = format!("{}/v1/chat/completions", p.url);
    let resp = c.post(&url).json(&chat("x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(&url)
        .bearer_auth("sk-from-env")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "the default fault applies");
    let resp = c
        .post(&url)
        .bearer_auth("sk-from-env")
        .header("x-mock-fault", "status=off")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(p.stop().success());
}

#[test]
fn missing_key_variable_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_mock-cloud"))
        .args(["--plain", "--api-key-env", "MOCK_TEST_SURELY_UNSET_VAR"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOCK_TEST_SURELY_UNSET_VAR"));
}
