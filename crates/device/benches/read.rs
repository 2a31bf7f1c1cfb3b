//! What device signals cost: `DeviceMonitor::current()` (paid per request) and one
//! `SysfsSource::read` of a phone-sized tree (paid per refresh, off the async workers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use device::{DeviceMonitor, FakeSource, MonitorSettings, PowerSource, RawReading, Smoother, SysfsSource};

fn benches(c: &mut Criterion) {
    // An Android phone has dozens of thermal zones; 60 with three trips each.
    let tree = common::android_phone();
    for n in 4..64 {
        tree.zone(
            n,
            "sensor",
            30.0 + n as f32 / 4.0,
            &[("passive", 95.0), ("hot", 105.0), ("critical", 115.0)],
        );
    }
    let source = SysfsSource::new(tree.root());
    c.bench_function("sysfs_read_phone_64_zones", |b| {
        b.iter(|| black_box(source.read().unwrap()))
    });

    let raw = source.read().unwrap();
    let mut smoother = Smoother::default();
    c.bench_function("smoother_apply_64_zones", |b| {
        b.iter(|| black_box(smoother.apply(black_box(&raw), "sysfs")))
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    let monitor = rt.block_on(DeviceMonitor::start(
        Arc::new(FakeSource::new(RawReading::no_battery())),
        None,
        MonitorSettings::default(),
    ));
    c.bench_function("monitor_current", |b| b.iter(|| black_box(monitor.current())));
}

criterion_group!(device_benches, benches);
criterion_main!(device_benches);
