//! The official OpenAI Python SDK against the real daemon: a chat, a stream,
//! an error (`openai.NotFoundError`), and a stream the mock cuts mid-answer
//! that the local model continues, read by the SDK as one answer. The checks
//! live in `tests/python/sdk_check.py`; this test starts the daemon (real
//! model, mock clouds over TLS) and requires the script to exit 0.
//!
//! Needs `.venv` with the `openai` package: `./scripts/setup-python.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Spec, mock_text, mock_with, on_server_runtime, wait_stats};
use serde_json::json;

const POLICY: &str = r#"
version = 1
default_local = "local"
default_cloud = "cloud"

[[rule]]
name = "cut-then-local"
when = "app == 'cut'"
target = "cloud-cut"
fallbacks = ["local"]

[[rule]]
name = "default"
when = "true"
target = "cloud"
fallbacks = ["local"]
"#;

const TIER: &str = "retries = 0\nbreaker = { failures_to_open = 100000 }\n";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn python() -> PathBuf {
    let py = root().join(".venv/bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run ./scripts/setup-python.sh (creates .venv with the openai SDK)",
        py.display()
    );
    let ok = Command::new(&py).args(["-c", "import openai"]).status().unwrap();
    assert!(
        ok.success(),
        "the openai package is not importable in .venv: run ./scripts/setup-python.sh"
    );
    py
}

#[tokio::test]
async fn the_openai_python_sdk_reads_tandem_as_openai() {
    let py = python();
    let (d, cloud, cut) = on_server_runtime(async {
        let cloud = mock_with("").await;
        let cut = mock_with("cut_after=3").await;
        let d = Spec::new(POLICY)
            .local("")
            .cloud("cloud", &[&cloud], TIER)
            .cloud("cloud-cut", &[&cut], TIER)
            .start()
            .await;
        (d, cloud, cut)
    })
    .await;
    let prompt = "Name a colour of the sea.";
    let cut_prompt = "Describe a mountain lake in summer.";
    let expect = json!({
        "prompt": prompt,
        "answer": mock_text(prompt, 12),
        "cut_prompt": cut_prompt,
        "cut_prefix": mock_text(cut_prompt, 3),
    });
    let script = root().join("tests/python/sdk_check.py");
    let base = format!("{}/v1", d.url);
    // The daemon runs on the server runtime, so blocking here is fine.
    let out = Command::new(&py)
        .arg(&script)
        .arg(&base)
        .arg("all")
        .arg(expect.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sdk_check.py {base} all failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for check in ["chat", "stream", "error", "failover"] {
        assert!(stdout.contains(&format!("sdk_check {check}: ok")), "{stdout}");
    }
    // What the SDK's requests did on the cloud side.
    assert_eq!(cloud.requests().len(), 2, "the chat and the stream");
    assert_eq!(cut.requests().len(), 1);
    wait_stats(&cut, |s| s.streams_cut == 1).await;
}
