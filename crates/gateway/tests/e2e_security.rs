//! The daemon's edge over real sockets: the `Host` check against DNS
//! rebinding, the client token, and the body limit. Raw HTTP/1.1 where the
//! bytes matter (a client library would fix the `Host` header). Each refused
//! request is checked not to have reached the cloud.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Spec, chat, client, mock_with, raw_body, raw_http, reply};
use serde_json::json;

const CLOUD_POLICY: &str = r#"
version = 1
default_local = "local"
default_cloud = "cloud"

[[rule]]
name = "everything-to-cloud"
when = "true"
target = "cloud"
"#;

fn raw_post(host: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn raw_get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn host_header_is_checked_against_dns_rebinding() {
    let m = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY)
        .server("allowed_hosts = [\"tandem.internal\"]")
        .cloud("cloud", &[&m], "retries = 0")
        .start()
        .await;
    let port = d.addr.port();
    let body = chat("cloud", "hello", 8).to_string();

    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.nip.io",
        "localhost.evil.example",
    ] {
        let (status, resp) = raw_http(d.addr, &raw_post(host, &body, "")).await;
        assert_eq!(status, 403, "Host {host}: {resp}");
        let v = raw_body(&resp);
        assert_eq!(v["error"]["code"], "host_not_allowed", "{v}");
        assert!(v["error"]["type"].is_string());
        let (status, _) = raw_http(d.addr, &raw_get("/v1/models", host)).await;
        assert_eq!(status, 403, "GET with Host {host}");
    }
    assert!(m.requests().is_empty(), "a refused request reached the cloud");

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "tandem.internal".to_owned(),
        "TANDEM.internal:8080".to_owned(),
    ] {
        let (status, resp) = raw_http(d.addr, &raw_post(&host, &body, "")).await;
        assert_eq!(status, 200, "Host {host}: {resp}");
    }
    assert_eq!(m.requests().len(), 4);
}

#[tokio::test]
async fn client_token_is_required_when_configured() {
    let m = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY)
        .server("client_token_env = \"E2E_CLIENT_TOKEN\"")
        .env("E2E_CLIENT_TOKEN", "s3cret-token")
        .cloud("cloud", &[&m], "retries = 0")
        .start()
        .await;
    let body = chat("cloud", "hello", 8);
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("s3cret-token"),
        Some("Basic s3cret-token"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let r = reply(d.post_with(&body, &headers).await).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert_eq!(r.body["error"]["type"], "authentication_error", "{}", r.body);
        let models = client()
            .get(format!("{}/v1/models", d.url))
            .headers(
                headers
                    .iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                    .collect(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(models.status(), 401, "{auth:?}");
    }
    assert!(m.requests().is_empty(), "an unauthenticated request reached the cloud");

    let r = reply(d.post_with(&body, &[("authorization", "Bearer s3cret-token")]).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(m.requests().len(), 1);
    let models = client()
        .get(format!("{}/v1/models", d.url))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    // Probes carry no credentials.
    let health = client().get(format!("{}/healthz", d.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let m = mock_with("").await;
    let d = Spec::new(CLOUD_POLICY)
        .server("max_body_bytes = 2048")
        .cloud("cloud", &[&m], "retries = 0")
        .start()
        .await;
    let big = chat("cloud", &"word ".repeat(1000), 8);
    assert!(big.to_string().len() > 4096);

    // Announced by Content-Length.
    let r = reply(d.post(&big).await).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.error_code(), "request_too_large");

    // Chunked, with no length announced: refused once the limit is crossed.
    let bytes = serde_json::to_vec(&big).unwrap();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
    let resp = client()
        .post(d.chat_url())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    let r = reply(resp).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.error_code(), "request_too_large");
    assert!(m.requests().is_empty(), "an oversized request reached the cloud");

    // Under the limit it goes through.
    let r = reply(d.post(&chat("cloud", "short", 8)).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(m.requests().len(), 1);
    assert_eq!(
        m.requests()[0].body["messages"],
        json!([{"role": "user", "content": "short"}])
    );
}
