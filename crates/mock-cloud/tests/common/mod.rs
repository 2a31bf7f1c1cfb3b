//! Helpers shared by the mock's integration tests: clients and an SSE reader.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use serde_json::Value;

/// A reqwest client trusting only `ca_pem`, or nothing at all (plain HTTP).
/// reqwest is built without a default crypto provider, so even a plain-HTTP
/// client gets an explicit ring config.
pub fn client(ca_pem: Option<&str>) -> reqwest::Client {
    let tls = match ca_pem {
        Some(pem) => mock_cloud::client_tls_config(pem).unwrap(),
        None => rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap()
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// The JSON chunks of a stream up to `[DONE]` (which must be last).
pub fn sse_chunks(body: &str) -> Vec<Value> {
    let data = sse_data(body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "stream must end with [DONE]: {body}"
    );
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The content deltas of a stream's chunks.
pub fn contents(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn chat(text: &str) -> Value {
    serde_json::json!({"model": "m-1", "messages": [{"role": "user", "content": text}]})
}

pub fn chat_stream(text: &str) -> Value {
    let mut b = chat(text);
    b["stream"] = Value::Bool(true);
    b
}
