//! `DeviceMonitor` end to end: background refresh on a paused clock, explicit refreshes,
//! last-good-state on errors (fake and file sources), memory from `/proc/meminfo`, config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use device::{
    DeviceConfig, DeviceError, DeviceMonitor, FakeSource, FileSource, MemInfo, MonitorSettings, RawReading, SourceKind,
    Thermal, ThermalThresholds, ThermalZone,
};

const MIB: u64 = 1024 * 1024;

fn cpu_at(temp_c: f32) -> Vec<ThermalZone> {
    vec![ThermalZone {
        name: "cpu".into(),
        temp_c,
        thresholds: ThermalThresholds::DEFAULT,
    }]
}

fn on_battery(level: f32) -> RawReading {
    RawReading {
        battery: Some(level),
        charging: false,
        zones: cpu_at(40.0),
        mem_available: Some(100),
        mem_total: Some(200),
        ..RawReading::no_battery()
    }
}

async fn start_fake(fake: &FakeSource) -> DeviceMonitor {
    DeviceMonitor::start(Arc::new(fake.clone()), None, MonitorSettings::default()).await
}

fn write_meminfo(path: &Path, available_kb: u64, total_kb: u64) {
    std::fs::write(
        path,
        format!("MemTotal: {total_kb} kB\nMemAvailable: {available_kb} kB\n"),
    )
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn first_reading_is_there_before_start_returns() {
    let fake = FakeSource::new(on_battery(0.5));
    let monitor = start_fake(&fake).await;
    let s = monitor.current();
    assert_eq!((s.battery, s.charging, s.source), (Some(0.5), false, "fake"));
    assert_eq!((s.mem_available, s.mem_total), (100, 200));
    assert_eq!(s.temperature_c, Some(40.0));
    let status = monitor.status();
    assert_eq!((status.source, status.ok_reads, status.failed_reads), ("fake", 1, 0));
}

#[tokio::test(start_paused = true)]
async fn refreshes_in_the_background_every_interval() {
    let fake = FakeSource::new(on_battery(0.8));
    let settings = MonitorSettings {
        refresh: Duration::from_secs(5),
        ..MonitorSettings::default()
    };
    let monitor = DeviceMonitor::start(Arc::new(fake.clone()), None, settings).await;
    let mut rx = monitor.subscribe();
    let t0 = tokio::time::Instant::now();
    fake.set(on_battery(0.7));
    // The paused clock jumps to the next tick; nothing here sleeps for real.
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().battery, Some(0.7));
    assert_eq!(t0.elapsed(), Duration::from_secs(5));

    fake.update(|r| r.zones = cpu_at(90.0));
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().thermal, Thermal::Serious);
    assert_eq!(t0.elapsed(), Duration::from_secs(10));
    assert_eq!(monitor.status().ok_reads, 3);
}

#[tokio::test(start_paused = true)]
async fn unchanged_readings_do_not_wake_subscribers() {
    let fake = FakeSource::new(on_battery(0.5));
    let monitor = start_fake(&fake).await;
    let rx = monitor.subscribe();
    assert!(!rx.has_changed().unwrap(), "the state at subscription counts as seen");
    fake.set(on_battery(0.503)); // within the 1-point hold
    monitor.refresh().await.unwrap();
    monitor.refresh().await.unwrap();
    assert!(!rx.has_changed().unwrap());
    fake.set(on_battery(0.49));
    monitor.refresh().await.unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(monitor.current().battery, Some(0.49));
}

#[tokio::test(start_paused = true)]
async fn thermal_hysteresis_through_the_monitor() {
    let fake = FakeSource::new(on_battery(0.5));
    let monitor = start_fake(&fake).await;
    let level = async |temp_c: f32| {
        fake.update(|r| r.zones = cpu_at(temp_c));
        monitor.refresh().await.unwrap().thermal
    };
    assert_eq!(level(96.0).await, Thermal::Critical);
    assert_eq!(level(94.0).await, Thermal::Critical);
    assert_eq!(level(86.0).await, Thermal::Serious);
    assert_eq!(level(83.0).await, Thermal::Serious);
    assert_eq!(level(81.0).await, Thermal::Fair);
    assert_eq!(level(30.0).await, Thermal::Nominal);
}

#[tokio::test(start_paused = true)]
async fn errors_keep_the_last_good_state_and_are_reported() {
    let fake = FakeSource::new(on_battery(0.3));
    let monitor = start_fake(&fake).await;
    let good = monitor.current();
    fake.fail(DeviceError::Battery("gone".into()));
    for n in 1..=3 {
        let err = monitor.refresh().await.unwrap_err();
        assert_eq!(err, DeviceError::Battery("gone".into()));
        assert_eq!(monitor.current(), good);
        assert_eq!(monitor.status().consecutive_failures, n);
    }
    // Errors are not "cooler readings": a hot level survives a failing source.
    fake.set(RawReading {
        zones: cpu_at(90.0),
        ..on_battery(0.3)
    });
    assert_eq!(monitor.refresh().await.unwrap().thermal, Thermal::Serious);
    fake.fail(DeviceError::Battery("gone".into()));
    for _ in 0..5 {
        monitor.refresh().await.unwrap_err();
    }
    assert_eq!(monitor.current().thermal, Thermal::Serious);

    fake.set(on_battery(0.29));
    monitor.refresh().await.unwrap();
    let status = monitor.status();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.failed_reads, 8);
    assert_eq!(status.last_error, Some(DeviceError::Battery("gone".into())));
}

#[tokio::test(start_paused = true)]
async fn a_failing_first_read_reports_a_neutral_state() {
    let fake = FakeSource::default();
    fake.fail(DeviceError::Battery("no battery API".into()));
    let monitor = start_fake(&fake).await;
    let s = monitor.current();
    assert_eq!((s.battery, s.charging, s.thermal), (None, true, Thermal::Nominal));
    assert_eq!(monitor.status().failed_reads, 1);
}

#[tokio::test(start_paused = true)]
async fn file_source_good_partial_malformed_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let meminfo = dir.path().join("meminfo");
    write_meminfo(&meminfo, 2048, 8192);
    std::fs::write(
        &path,
        r#"{"battery": 0.42, "charging": false, "power_saver": true, "thermal": "serious", "mem_available_mb": 1234}"#,
    )
    .unwrap();
    let monitor = DeviceMonitor::start(
        Arc::new(FileSource::new(&path)),
        Some(MemInfo::new(&meminfo)),
        MonitorSettings::default(),
    )
    .await;
    let good = monitor.current();
    assert_eq!(good.source, "file");
    assert_eq!(
        (good.battery, good.charging, good.power_saver),
        (Some(0.42), false, true)
    );
    assert_eq!(good.thermal, Thermal::Serious);
    // The host's figure wins; the total it left out comes from meminfo.
    assert_eq!((good.mem_available, good.mem_total), (1234 * MIB, 8192 * 1024));

    // Half-written, malformed, wrong field, missing: each is an error and the state is kept.
    let bad = [
        Some(r#"{"battery": 0.1, "charg"#),
        Some("<html>"),
        Some(r#"{"battery_level": 0.1}"#),
        None,
    ];
    for (n, content) in bad.into_iter().enumerate() {
        match content {
            Some(text) => std::fs::write(&path, text).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        let err = monitor.refresh().await.unwrap_err();
        assert!(err.to_string().contains("device.json"), "{err}");
        assert_eq!(monitor.current(), good, "case {n}");
        assert_eq!(monitor.status().consecutive_failures, n as u32 + 1);
    }

    // A valid snapshot with some fields: the rest are unknown, not carried over.
    std::fs::write(&path, r#"{"battery": 0.9}"#).unwrap();
    let s = monitor.refresh().await.unwrap();
    assert_eq!((s.battery, s.charging, s.power_saver), (Some(0.9), false, false));
    // A stated level falls by count only (3 readings), not at once.
    assert_eq!(s.thermal, Thermal::Serious);
    monitor.refresh().await.unwrap();
    assert_eq!(monitor.refresh().await.unwrap().thermal, Thermal::Nominal);
    assert_eq!(s.mem_available, 2048 * 1024, "no host figure: meminfo's");
}

#[tokio::test(start_paused = true)]
async fn memory_comes_from_meminfo_and_survives_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let meminfo = dir.path().join("meminfo");
    write_meminfo(&meminfo, 1000, 4000);
    let fake = FakeSource::new(RawReading::no_battery());
    let monitor = DeviceMonitor::start(
        Arc::new(fake.clone()),
        Some(MemInfo::new(&meminfo)),
        MonitorSettings::default(),
    )
    .await;
    assert_eq!(
        (monitor.current().mem_available, monitor.current().mem_total),
        (1000 * 1024, 4000 * 1024)
    );

    write_meminfo(&meminfo, 500, 4000);
    assert_eq!(monitor.refresh().await.unwrap().mem_available, 500 * 1024);

    std::fs::write(&meminfo, "garbage").unwrap();
    let err = monitor.refresh().await.unwrap_err();
    assert!(matches!(err, DeviceError::Parse { .. }), "{err}");
    assert_eq!(monitor.current().mem_available, 500 * 1024);

    // Memory keeps refreshing while the power source is failing.
    write_meminfo(&meminfo, 300, 4000);
    fake.fail(DeviceError::Battery("x".into()));
    monitor.refresh().await.unwrap_err();
    assert_eq!(monitor.current().mem_available, 300 * 1024);
}

#[tokio::test(start_paused = true)]
async fn from_config_with_a_fixture_sysfs_tree() {
    let tree = common::laptop_discharging();
    let meminfo = tree.path("meminfo");
    write_meminfo(&meminfo, 3 * 1024 * 1024, 16 * 1024 * 1024);
    let config = DeviceConfig {
        source: SourceKind::Sysfs,
        sysfs_root: tree.root().to_owned(),
        meminfo,
        refresh_ms: 1000,
        ..DeviceConfig::default()
    };
    let monitor = DeviceMonitor::from_config(&config.validate().unwrap()).await;
    let s = monitor.current();
    assert_eq!(s.source, "sysfs");
    assert_eq!(
        (s.battery, s.charging, s.thermal),
        (Some(0.15), false, Thermal::Nominal)
    );
    assert_eq!(s.mem_available, 3 * 1024 * 1024 * 1024);
    assert_eq!(monitor.status().ok_reads, 1);

    // Plug in; the next background tick (1 s later on the paused clock) sees it.
    let mut rx = monitor.subscribe();
    tree.set("class/power_supply/AC/online", "1")
        .set("class/power_supply/BAT0/status", "Charging");
    rx.changed().await.unwrap();
    assert!(rx.borrow().charging);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_monitor_stops_its_task() {
    let monitor = start_fake(&FakeSource::default()).await;
    let mut rx = monitor.subscribe();
    drop(monitor);
    let closed = tokio::time::timeout(Duration::from_secs(60), rx.changed()).await;
    assert!(matches!(closed, Ok(Err(_))), "the sender must be gone: {closed:?}");
}
