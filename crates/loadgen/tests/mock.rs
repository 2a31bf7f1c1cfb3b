//! loadgen's request path against the real mock cloud: TLS with the mock's
//! generated CA and plain HTTP, streamed and not, with faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use loadgen::conn::Target;
use loadgen::request::{Spec, send};
use mock_cloud::{MockConfig, spawn};
use tokio::net::TcpListener;

fn body(stream: bool) -> Bytes {
    let v = serde_json::json!({
        "model": "m", "stream": stream,
        "messages": [{"role": "user", "content": "Say something about the sea."}],
    });
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

async fn mock(cfg: MockConfig) -> mock_cloud::MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn(listener, cfg).await.unwrap()
}

fn spec(target: Target, stream: bool, headers: Vec<(String, String)>) -> Spec {
    Spec {
        target,
        body: body(stream),
        headers,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn tls_stream_is_timed_piece_by_piece() {
    let m = mock(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, m.ca_pem.as_deref().unwrap()).unwrap();
    let target = Target::new(&format!("{}/v1/chat/completions", m.url), Some(&ca)).unwrap();
    let mut conn = target.connect().await.unwrap();
    let s = spec(target, true, vec![]);
    // Two requests on one keep-alive connection.
    for _ in 0..2 {
        let o = send(&mut conn, &s, true).await.unwrap();
        assert!(o.ok(), "{o:?}");
        assert_eq!(o.pieces.len(), mock_cloud::DEFAULT_CHUNKS as usize);
        let text: String = o.pieces.iter().map(|(_, t)| t.as_str()).collect();
        let want = mock_cloud::expected_text(
            &serde_json::from_slice(&body(true)).unwrap(),
            mock_cloud::DEFAULT_CHUNKS,
        );
        assert_eq!(Some(text), want);
        let first = o.first_content.unwrap();
        assert!(o.ttfb <= first && first <= o.last_byte);
        assert!(o.pieces.windows(2).all(|w| w[0].0 <= w[1].0));
    }
    assert_eq!(m.stats().connections_total, 1);
}

#[tokio::test]
async fn plain_json_and_failures_are_told_apart() {
    let m = mock(MockConfig::plain()).await;
    let target = Target::new(&format!("{}/v1/chat/completions", m.url), None).unwrap();
    let mut conn = target.connect().await.unwrap();

    let o = send(&mut conn, &spec(target.clone(), false, vec![]), false)
        .await
        .unwrap();
    assert!(o.ok());
    assert_eq!(o.first_content, Some(o.last_byte));

    let fault = |f: &str| vec![("x-mock-fault".to_owned(), f.to_owned())];
    let o = send(&mut conn, &spec(target.clone(), false, fault("status=503")), false)
        .await
        .unwrap();
    assert_eq!(o.status, 503);
    assert!(!o.ok());

    let o = send(
        &mut conn,
        &spec(target.clone(), true, fault("error_event_after=2")),
        false,
    )
    .await
    .unwrap();
    assert!(o.error_event && !o.ok());

    // A cut stream is an error of the request, and the next connection works.
    let r = send(&mut conn, &spec(target.clone(), true, fault("cut_after=3")), true).await;
    if let Ok(o) = r {
        assert!(!o.ok(), "{o:?}");
    }
    let mut conn = target.connect().await.unwrap();
    assert!(send(&mut conn, &spec(target, true, vec![]), false).await.unwrap().ok());
}

/// `burst` sends every request at once and tells the outcomes apart: whole
/// answers (all the same text), HTTP errors, in-band errors and timeouts.
#[tokio::test]
async fn burst_classifies_each_outcome() {
    use std::sync::Arc;
    let m = mock(MockConfig::plain()).await;
    let target = Target::new(&format!("{}/v1/chat/completions", m.url), None).unwrap();
    let fault = |f: &str| vec![("x-mock-fault".to_owned(), f.to_owned())];

    let v = loadgen::burst::burst(Arc::new(spec(target.clone(), true, vec![])), 12)
        .await
        .unwrap();
    assert_eq!(v["requests"], 12, "{v}");
    assert_eq!(v["completed"], 12, "{v}");
    assert_eq!(v["answers"]["distinct"], 1, "{v}");
    assert_eq!(v["answers"]["most_common"], 12, "{v}");
    assert_eq!(v["last_byte_ms"]["n"], 12);
    // Every connection was open at once.
    assert!(m.stats().connections_total >= 12);

    let v = loadgen::burst::burst(Arc::new(spec(target.clone(), true, fault("status=503"))), 3)
        .await
        .unwrap();
    assert_eq!(v["kinds"]["http_503"], 3, "{v}");
    assert_eq!(v["completed"], 0);

    let v = loadgen::burst::burst(Arc::new(spec(target.clone(), true, fault("error_event_after=2"))), 2)
        .await
        .unwrap();
    assert_eq!(v["kinds"]["error_event"], 2, "{v}");
    assert!(
        v["error_examples"][0].as_str().unwrap().contains("upstream overloaded"),
        "{v}"
    );

    let mut stalled = spec(target, true, fault("stall_after=1"));
    stalled.timeout = Duration::from_millis(300);
    let v = loadgen::burst::burst(Arc::new(stalled), 2).await.unwrap();
    assert_eq!(v["kinds"]["timeout"], 2, "{v}");
}

/// `soak` reports interval by interval with a look at the watched process,
/// then the totals, and stops when told to.
#[tokio::test]
async fn soak_reports_intervals_and_totals() {
    use std::sync::{Arc, Mutex};
    let m = mock(MockConfig::plain()).await;
    let target = Target::new(&format!("{}/v1/chat/completions", m.url), None).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let opts = loadgen::burst::SoakOptions {
        concurrency: 2,
        duration: Duration::from_secs(60),
        interval: Duration::from_millis(100),
        watch_pid: Some("self".into()),
    };
    // Stop once three reports are out, well before the duration.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let emit = move |v: serde_json::Value| {
        let mut l = sink.lock().unwrap();
        l.push(v);
        if l.len() == 3
            && let Some(tx) = stop_tx.take()
        {
            let _ = tx.send(());
        }
    };
    let stop = async move {
        let _ = stop_rx.await;
    };
    let total = loadgen::burst::soak(Arc::new(spec(target, true, vec![])), opts, stop, emit)
        .await
        .unwrap();
    let lines = lines.lock().unwrap();
    assert!(lines.len() >= 3, "{lines:?}");
    for l in lines.iter() {
        assert!(l["proc"]["rss_kib"].as_u64().unwrap() > 0, "{l}");
        assert!(l["proc"]["tcp_established"].as_u64().unwrap() >= 2, "{l}");
    }
    let reported: u64 = lines.iter().map(|l| l["requests"].as_u64().unwrap()).sum();
    assert_eq!(total["total"], true);
    assert!(total["requests"].as_u64().unwrap() >= reported);
    assert_eq!(total["failed"], 0, "{total}");
    assert_eq!(total["requests"].as_u64().unwrap(), m.stats().requests);
}

/// `loadgen run --rate`: an open loop whose requests outrun the connections
/// counts their wait. One connection and an answer that takes 100 ms carry
/// 10 requests a second; at 40 due a second, each request waits behind the
/// ones before it, and its time counts from when it was due, so the times
/// grow far past the answer's own 100 ms. With enough connections the same
/// rate is carried in full at about the answer's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_counts_the_wait_for_a_connection() {
    let m = mock(MockConfig::plain()).await;
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, body(false)).unwrap();
    let url = format!("{}/v1/chat/completions", m.url);
    let run = move |concurrency: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["run", "--url", &url, "--body-file"])
            .arg(&body_file)
            .args([
                "--header",
                "x-mock-fault: latency=100",
                "--rate",
                "40",
                "--duration-s",
                "2",
            ])
            .args(["--warmup-s", "0", "--concurrency", concurrency])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (starved, ample) = tokio::task::spawn_blocking(move || (run("1"), run("16")))
        .await
        .unwrap();

    assert_eq!(starved["rate"], 40.0);
    assert_eq!(starved["failed"], 0, "{starved}");
    let starved_n = starved["requests"].as_u64().unwrap();
    assert!((10..=21).contains(&starved_n), "{starved}");
    // Request k (k ≥ 1) waits about k × 75 ms: the median is several times
    // the answer's own 100 ms.
    assert!(starved["last_byte_ms"]["p50"].as_f64().unwrap() > 300.0, "{starved}");

    assert_eq!(ample["failed"], 0, "{ample}");
    let ample_n = ample["requests"].as_u64().unwrap();
    assert!(ample_n >= 60, "{ample}");
    assert!(ample["last_byte_ms"]["p50"].as_f64().unwrap() < 300.0, "{ample}");
}
