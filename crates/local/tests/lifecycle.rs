//! Start-up errors (missing or corrupt model, unknown template, memory
//! guard), loading on demand and unloading when idle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use api::Backend;
use common::{greedy, run, tier};
use local::{LoadMode, LocalBackend, LocalError, LocalOptions, LocalTierConfig, ModelState};
use serde_json::json;

#[test]
fn missing_model_is_a_clear_error_naming_the_path() {
    let cfg = LocalTierConfig::new("gone", "/nonexistent/dir/model.gguf");
    let e = LocalBackend::new(&cfg).err().expect("error");
    assert!(matches!(e, LocalError::ModelMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/dir/model.gguf"), "{e}");
    // Also when the model would load later.
    let cfg = LocalTierConfig {
        load: LoadMode::OnDemand,
        ..cfg
    };
    assert!(matches!(LocalBackend::new(&cfg), Err(LocalError::ModelMissing { .. })));
}

#[test]
fn corrupt_model_is_a_clear_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.gguf");
    std::fs::write(&path, b"this is not a model at all, just some bytes".repeat(1000)).unwrap();
    let e = LocalBackend::new(&LocalTierConfig::new("bad", &path))
        .err()
        .expect("error");
    assert!(matches!(e, LocalError::ModelCorrupt { .. }), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    // A real GGUF header cut short.
    let real = std::fs::read(common::model_path()).unwrap();
    std::fs::write(&path, &real[..4096]).unwrap();
    let e = LocalBackend::new(&LocalTierConfig::new("bad", &path))
        .err()
        .expect("error");
    assert!(matches!(e, LocalError::ModelCorrupt { .. }), "{e:?}");
}

#[test]
fn invalid_config_is_refused_naming_the_field() {
    let cfg = LocalTierConfig {
        queue_wait_ms: 0,
        ..tier("cfg")
    };
    let e = LocalBackend::new(&cfg).err().expect("error");
    assert!(
        matches!(e, LocalError::Config(_)) && e.to_string().contains("queue_wait_ms"),
        "{e}"
    );
}

#[test]
fn unknown_template_and_missing_gguf_template_are_refused_at_load() {
    let cfg = LocalTierConfig {
        chat_template: "no-such-template".into(),
        ..tier("tmpl")
    };
    let e = LocalBackend::new(&cfg).err().expect("error");
    assert!(matches!(e, LocalError::Template { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-template"), "{e}");
    // The test model is a base model without a template of its own.
    let cfg = LocalTierConfig {
        chat_template: "gguf".into(),
        ..tier("tmpl")
    };
    let e = LocalBackend::new(&cfg).err().expect("error");
    assert!(
        matches!(e, LocalError::Template { .. }) && e.to_string().contains("gemma"),
        "{e}"
    );
}

#[test]
fn memory_guard_refuses_an_impossible_reserve() {
    let cfg = LocalTierConfig {
        mem_reserve_mb: 64 << 20, // 64 TiB
        ..tier("mem")
    };
    let e = LocalBackend::new(&cfg).err().expect("refused");
    let LocalError::Memory { reason, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        reason.contains("MemAvailable") && reason.contains("weights"),
        "{reason}"
    );
}

#[test]
fn memory_guard_reads_the_injected_meminfo() {
    let dir = tempfile::tempdir().unwrap();
    let meminfo = dir.path().join("meminfo");
    // 200 MiB available: less than the weights alone.
    std::fs::write(&meminfo, "MemTotal: 4000000 kB\nMemAvailable: 204800 kB\n").unwrap();
    let opts = LocalOptions { meminfo_path: meminfo };
    let e = LocalBackend::with_options(&tier("mem2"), opts).err().expect("refused");
    let LocalError::Memory { reason, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(reason.contains("200 MiB MemAvailable"), "{reason}");
}

#[tokio::test]
async fn on_demand_load_is_shared_and_idle_unload_frees_the_model() {
    let cfg = LocalTierConfig {
        load: LoadMode::OnDemand,
        idle_unload_secs: Some(1),
        ..tier("lazy")
    };
    let b = LocalBackend::new(&cfg).unwrap();
    let st = b.status();
    assert!(!st.loaded && st.loads == 0 && st.rss_bytes.is_none(), "{st:?}");
    assert_eq!(st.state, ModelState::Unloaded);
    // The memory guard's estimate is known before the first load.
    assert!(st.estimated_bytes > 250 << 20, "{st:?}");

    // Two first requests at once: one load serves both.
    let (a1, a2) = tokio::join!(run(&b, greedy(3, json!({}))), run(&b, greedy(3, json!({}))));
    assert!(
        a1.error.is_none() && a2.error.is_none(),
        "{:?} {:?}",
        a1.error,
        a2.error
    );
    let st = b.status();
    assert!(st.loaded, "{st:?}");
    assert_eq!(st.loads, 1);
    assert!(st.rss_bytes.unwrap() > 0);

    // Idle for a second: unloaded. Polled, not timed: the bound only stops
    // a broken unload from hanging the test.
    let t0 = Instant::now();
    while b.status().state != ModelState::Unloaded {
        assert!(t0.elapsed() < Duration::from_secs(30), "never unloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.status().rss_bytes.is_none());

    // The next request loads it again.
    let a = run(&b, greedy(2, json!({}))).await;
    assert!(a.error.is_none());
    assert_eq!(b.status().loads, 2);
    assert_eq!(b.name(), "lazy");
}

#[tokio::test]
async fn failed_on_demand_load_is_the_requests_error() {
    let dir = tempfile::tempdir().unwrap();
    let meminfo = dir.path().join("meminfo");
    std::fs::write(&meminfo, "MemAvailable: 102400 kB\n").unwrap();
    let cfg = LocalTierConfig {
        load: LoadMode::OnDemand,
        ..tier("lazy-fail")
    };
    let b = LocalBackend::with_options(&cfg, LocalOptions { meminfo_path: meminfo }).unwrap();
    let a = run(&b, greedy(2, json!({}))).await;
    let e = a.error.expect("load failure");
    assert_eq!(e.kind, api::BackendErrorKind::Unavailable);
    assert!(e.failover_allowed());
    let st = b.status();
    assert!(!st.loaded && st.last_load_error.unwrap().contains("memory"));
    assert_eq!(st.last_load_error_secs, Some(0));

    // Memory freed: the next request loads the model, and the error is gone.
    std::fs::write(dir.path().join("meminfo"), "MemAvailable: 8388608 kB\n").unwrap();
    let a = run(&b, greedy(2, json!({}))).await;
    assert!(a.error.is_none(), "{:?}", a.error);
    let st = b.status();
    assert!(st.loaded, "{st:?}");
    assert_eq!((st.last_load_error, st.last_load_error_secs), (None, None));
}
