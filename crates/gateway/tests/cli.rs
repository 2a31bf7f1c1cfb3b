//! The commands that need no daemon, run as the `tandem` binary:
//! `tandem score`, `tandem route --explain` and `tandem policy check`, with
//! the shipped configuration and policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A file of the repository's `config/`.
fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name)
}

/// `tandem ARGS --config config/tandem.toml`, fed `stdin`.
fn tandem(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .arg("--config")
        .arg(shipped("tandem.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A value that appears only outside the message contents (an earlier tool
/// call's arguments, a message's `name`) is found, reported as `side`, and
/// keeps the request on the device.
#[test]
fn score_reads_tool_call_arguments_and_names() {
    let line = serde_json::json!({"id": 1, "messages": [
        {"role": "user", "content": "Pay the usual invoice."},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "pay", "arguments": "{\"card\":\"4111 1111 1111 1111\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "user", "name": "wei.zhang@example.com", "content": "Thanks, and the same next month."}
    ]});
    let out = tandem(&["score"], &line.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let l = &json_lines(&out.stdout)[0];
    let entities = l["entities"].as_array().unwrap();
    for label in ["credit_card", "email"] {
        let e = entities
            .iter()
            .find(|e| e["label"] == label)
            .unwrap_or_else(|| panic!("no {label}: {l}"));
        assert!(e["side"].is_u64() && e.get("message").is_none(), "{e}");
    }
    assert_eq!(l["route"], "local", "private stays on the device: {l}");
    assert!(l["privacy"].as_f64().unwrap() >= 0.5, "{l}");
}

#[test]
fn score_answers_every_line_with_character_offsets_and_survives_bad_lines() {
    let text = "我叫张伟, mail me at wei.zhang@example.com";
    let input = [
        serde_json::json!({"id": 1, "prompt": text}).to_string(),
        r#"{"id": "two", "prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}"#.into(),
        "not json".into(),
        String::new(),
        r#"{"id": 4, "messages": [{"role": "user", "content": "Convert 5 km to miles."}], "set": "everyday"}"#.into(),
    ]
    .join("\n");
    let out = tandem(&["score"], &input);
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 4, "one line out per non-empty line in: {lines:?}");

    // Offsets count characters (Unicode scalar values), not bytes.
    let byte = text.find("wei.zhang").unwrap();
    let start = text[..byte].chars().count();
    let end = start + "wei.zhang@example.com".chars().count();
    assert_eq!(lines[0]["id"], 1);
    let email = lines[0]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == "email")
        .unwrap_or_else(|| panic!("no e-mail found: {}", lines[0]));
    assert_eq!(
        (email["start"].as_u64(), email["end"].as_u64()),
        (Some(start as u64), Some(end as u64))
    );
    assert!(lines[0]["privacy"].as_f64().unwrap() >= 0.5, "{}", lines[0]);
    assert_eq!(lines[0]["route"], "local", "private stays on the device: {}", lines[0]);
    assert!(!lines[0].to_string().contains("example.com"), "never the values");

    assert_eq!(lines[1]["id"], "two");
    assert!(
        lines[1]["error"].as_str().unwrap().contains("exactly one"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["id"], Value::Null);
    assert!(lines[2]["error"].as_str().unwrap().contains("not JSON"), "{}", lines[2]);

    // Fields besides id/prompt/messages ride along without harm.
    assert_eq!(lines[3]["id"], 4);
    assert!(lines[3]["complexity"].as_f64().unwrap() < 0.25, "{}", lines[3]);
    assert!(lines[3]["rule"].is_string(), "{}", lines[3]);

    assert_eq!(out.status.code(), Some(1), "bad lines make the exit status 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 of 4 lines"), "{stderr}");

    // All lines good: exit 0.
    let out = tandem(&["score"], r#"{"id": 9, "prompt": "Hello!"}"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out.stdout)[0]["id"], 9);
}

#[test]
fn route_explains_the_decision_without_the_values() {
    let out = tandem(&["route", "--explain", "My card is 4111 1111 1111 1111"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["route"], "local");
    assert_eq!(v["rule"], "private-stays-local");
    assert_eq!(v["cloud_allowed"], false);
    assert_eq!(v["entities"][0]["label"], "credit_card");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("4111"),
        "never the values"
    );

    let out = tandem(&["route", "Hello there"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("local (rule "));
}

#[test]
fn policy_check_accepts_the_shipped_policy_and_refuses_a_bad_one_with_its_line() {
    let policy = shipped("policy.toml");
    let out = tandem(&["policy", "check", policy.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n\n[[rule]]\nname = \"r\"\ntarget = \"no-such-tier\"\nwhen = \"true\"\n",
    )
    .unwrap();
    let out = tandem(&["policy", "check", bad.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:5"), "file:line of the bad target: {stderr}");
    assert!(stderr.contains("no-such-tier"), "{stderr}");
}
