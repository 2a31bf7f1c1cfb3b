//! `SysfsSource` against fixture trees: laptops, an Android phone, a desktop, peripheral-only
//! batteries, hot devices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Tree, android_phone, desktop, laptop_discharging};
use device::{DeviceError, PowerSource, RawReading, Smoother, SysfsSource, Thermal};

fn read(tree: &Tree) -> RawReading {
    SysfsSource::new(tree.root()).read().unwrap()
}

#[test]
fn laptop_discharging_at_15_percent() {
    let t = laptop_discharging();
    let r = read(&t);
    assert_eq!(r.battery, Some(0.15));
    assert!(!r.charging);
    assert!(!r.power_saver);
    assert_eq!(r.thermal_level(), Thermal::Nominal);
    assert_eq!(r.max_temperature_c(), Some(52.0));
    let names: Vec<&str> = r.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["acpitz", "x86_pkg_temp"], "cooling devices are not zones");
    // acpitz: only a 128 °C critical trip → critical 5 °C before it, the defaults below.
    let acpi = r.zones[0].thresholds;
    assert_eq!((acpi.fair, acpi.serious, acpi.critical), (70.0, 85.0, 123.0));
    assert_eq!((r.mem_available, r.mem_total), (None, None), "memory is MemInfo's job");
    let state = Smoother::default().apply(&r, "sysfs");
    assert_eq!(state.battery, Some(0.15));
}

#[test]
fn laptop_charging_full_and_held() {
    let t = laptop_discharging();
    t.set("class/power_supply/AC/online", "1")
        .set("class/power_supply/BAT0/status", "Charging")
        .set("class/power_supply/BAT0/capacity", "60");
    let r = read(&t);
    assert_eq!((r.battery, r.charging), (Some(0.6), true));

    t.set("class/power_supply/BAT0/status", "Full")
        .set("class/power_supply/BAT0/capacity", "100");
    assert_eq!((read(&t).battery, read(&t).charging), (Some(1.0), true));

    // A charge threshold: plugged in, battery held at 80 %.
    t.set("class/power_supply/BAT0/status", "Not charging")
        .set("class/power_supply/BAT0/capacity", "80");
    assert!(read(&t).charging);

    // Unplugged at 100 % with the status not updated yet: the AC supply decides.
    t.set("class/power_supply/AC/online", "0")
        .set("class/power_supply/BAT0/status", "Full");
    assert!(!read(&t).charging);

    // Charging through a USB-C port while the AC entry stays offline.
    t.set("class/power_supply/ucsi-source-psy-USBC000:001/online", "1")
        .set("class/power_supply/BAT0/status", "Charging");
    assert!(read(&t).charging);
}

#[test]
fn level_from_energy_or_charge_when_capacity_is_missing() {
    let t = laptop_discharging();
    t.remove("class/power_supply/BAT0/capacity");
    t.set("class/power_supply/BAT0/energy_now", "28500000");
    assert_eq!(read(&t).battery, Some(0.5));

    t.remove("class/power_supply/BAT0/energy_now")
        .remove("class/power_supply/BAT0/energy_full")
        .set("class/power_supply/BAT0/charge_now", "1000000")
        .set("class/power_supply/BAT0/charge_full", "4000000");
    assert_eq!(read(&t).battery, Some(0.25));

    // Over-reporting gauges are clamped.
    t.set("class/power_supply/BAT0/capacity", "104");
    assert_eq!(read(&t).battery, Some(1.0));
}

#[test]
fn a_battery_without_any_level_is_an_error() {
    let t = Tree::new();
    t.supply("BAT0", "Battery", &[("status", "Discharging")]);
    let err = SysfsSource::new(t.root()).read().unwrap_err();
    assert!(matches!(err, DeviceError::Parse { .. }));
    assert!(err.to_string().contains("BAT0"), "{err}");
}

#[test]
fn two_batteries_are_weighted_by_size() {
    let t = Tree::new();
    t.supply(
        "BAT0",
        "Battery",
        &[
            ("capacity", "100"),
            ("energy_full", "20000000"),
            ("status", "Not charging"),
        ],
    )
    .supply(
        "BAT1",
        "Battery",
        &[
            ("capacity", "20"),
            ("energy_full", "60000000"),
            ("status", "Discharging"),
        ],
    )
    .supply("AC", "Mains", &[("online", "0")]);
    let r = read(&t);
    assert!((r.battery.unwrap() - 0.4).abs() < 1e-6, "{:?}", r.battery);
    assert!(!r.charging, "the idle second battery must not read as plugged in");

    // Without sizes, a plain mean.
    t.remove("class/power_supply/BAT0/energy_full");
    assert!((read(&t).battery.unwrap() - 0.6).abs() < 1e-6);
}

#[test]
fn android_phone_on_battery_then_on_usb() {
    let t = android_phone();
    let r = read(&t);
    assert_eq!(r.battery, Some(0.42), "the BMS supply is not a second battery");
    assert!(!r.charging);
    assert_eq!(r.thermal_level(), Thermal::Nominal);
    assert_eq!(r.zones.len(), 4);
    let skin = r.zones.iter().find(|z| z.name == "skin-therm").unwrap();
    assert_eq!((skin.thresholds.fair, skin.thresholds.serious), (45.0, 45.0));

    t.set("class/power_supply/usb/online", "1")
        .set("class/power_supply/usb/present", "1")
        .set("class/power_supply/battery/status", "Charging");
    assert!(read(&t).charging);

    // A hot skin reaches Serious at its 45 °C passive trip, far below the CPU defaults.
    t.set("class/thermal/thermal_zone1/temp", "46000");
    assert_eq!(read(&t).thermal_level(), Thermal::Serious);
}

#[test]
fn android_status_alone_decides_without_supply_online_files() {
    let t = Tree::new();
    t.supply("battery", "Battery", &[("capacity", "100"), ("status", "Full")]);
    assert!(read(&t).charging);
    t.set("class/power_supply/battery/status", "Discharging");
    assert!(!read(&t).charging);
    t.set("class/power_supply/battery/status", "Unknown");
    assert!(!read(&t).charging);
}

#[test]
fn desktop_has_no_battery() {
    let t = desktop();
    let r = read(&t);
    assert_eq!(r.battery, None);
    assert!(r.charging, "no battery counts as on mains");
    assert_eq!(r.max_temperature_c(), Some(41.0));

    // A desktop with a Mains entry only, and one without any power_supply class at all.
    t.supply("ACAD", "Mains", &[("online", "1")]);
    assert_eq!((read(&t).battery, read(&t).charging), (None, true));
    t.remove("class/power_supply");
    assert_eq!((read(&t).battery, read(&t).charging), (None, true));
    t.remove("class/thermal");
    assert_eq!(read(&t).thermal_level(), Thermal::Nominal);
}

#[test]
fn peripheral_batteries_are_not_the_device_battery() {
    let t = desktop();
    t.supply(
        "hidpp_battery_0",
        "Battery",
        &[("scope", "Device"), ("capacity", "5"), ("status", "Discharging")],
    )
    .supply(
        "ps-controller-battery-aa:bb",
        "Battery",
        &[("scope", "Device"), ("capacity", "50")],
    );
    let r = read(&t);
    assert_eq!((r.battery, r.charging), (None, true));

    let laptop = laptop_discharging();
    laptop.supply(
        "hid-00:11:22-battery",
        "Battery",
        &[("scope", "Device"), ("capacity", "3"), ("status", "Discharging")],
    );
    assert_eq!(read(&laptop).battery, Some(0.15));
}

#[test]
fn an_empty_battery_bay_and_a_ups_are_not_batteries() {
    let t = desktop();
    t.supply("BAT1", "Battery", &[("present", "0"), ("status", "Unknown")])
        .supply("ups", "UPS", &[("capacity", "30"), ("status", "Discharging")]);
    assert_eq!(read(&t).battery, None);
}

#[test]
fn trips_map_to_levels() {
    let t = Tree::new();
    t.zone(
        0,
        "cpu",
        92.0,
        &[("active", 60.0), ("passive", 90.0), ("hot", 100.0), ("critical", 105.0)],
    );
    assert_eq!(read(&t).thermal_level(), Thermal::Serious);
    t.set("class/thermal/thermal_zone0/temp", "61000");
    assert_eq!(read(&t).thermal_level(), Thermal::Fair);
    t.set("class/thermal/thermal_zone0/temp", "101000");
    assert_eq!(read(&t).thermal_level(), Thermal::Critical);
    t.set("class/thermal/thermal_zone0/temp", "59999");
    assert_eq!(read(&t).thermal_level(), Thermal::Nominal);
}

#[test]
fn without_trips_fixed_thresholds_apply() {
    let t = Tree::new();
    t.zone(0, "gpu", 69.0, &[]);
    let cases = [
        (69_000, Thermal::Nominal),
        (70_000, Thermal::Fair),
        (85_000, Thermal::Serious),
        (95_000, Thermal::Critical),
    ];
    for (milli, want) in cases {
        t.set("class/thermal/thermal_zone0/temp", &milli.to_string());
        assert_eq!(read(&t).thermal_level(), want, "{milli}");
    }
}

#[test]
fn hot_device_hottest_zone_wins_and_broken_sensors_are_skipped() {
    let t = Tree::new();
    t.zone(0, "acpitz", 50.0, &[("critical", 100.0)])
        .zone(1, "x86_pkg_temp", 97.0, &[])
        .zone(2, "dead", -273.0, &[])
        .zone(3, "garbage", 512.0, &[])
        .zone(4, "iwlwifi_1", 40.0, &[])
        .remove("class/thermal/thermal_zone4/temp")
        .zone(5, "bad-trips", 30.0, &[("passive", 0.0), ("critical", 999.0)])
        .set("class/thermal/thermal_zone6/type", "unparsable")
        .set("class/thermal/thermal_zone6/temp", "hot");
    let r = read(&t);
    let names: Vec<&str> = r.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["acpitz", "x86_pkg_temp", "bad-trips"]);
    assert_eq!(r.thermal_level(), Thermal::Critical);
    assert_eq!(r.max_temperature_c(), Some(97.0));
    assert_eq!(r.zones[2].thresholds, device::ThermalThresholds::DEFAULT);
}

#[test]
fn platform_profile_low_power_is_power_saver() {
    let t = laptop_discharging();
    assert!(!read(&t).power_saver);
    t.set("firmware/acpi/platform_profile", "low-power");
    assert!(read(&t).power_saver);
    t.remove("firmware/acpi/platform_profile");
    assert!(!read(&t).power_saver);
}

#[test]
fn a_missing_root_is_an_error() {
    let t = Tree::new();
    let err = SysfsSource::new(t.path("nope")).read().unwrap_err();
    assert!(matches!(err, DeviceError::Io { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn class_entries_may_be_symlinks_as_in_real_sysfs() {
    let t = Tree::new();
    t.set("devices/platform/PNP0C0A:00/power_supply/BAT0/type", "Battery")
        .set("devices/platform/PNP0C0A:00/power_supply/BAT0/capacity", "77")
        .set("devices/platform/PNP0C0A:00/power_supply/BAT0/status", "Discharging");
    std::os::unix::fs::symlink(
        t.path("devices/platform/PNP0C0A:00/power_supply/BAT0"),
        t.path("class/power_supply/BAT0"),
    )
    .unwrap();
    assert_eq!(read(&t).battery, Some(0.77));
}

#[test]
fn hot_then_cooling_through_the_smoother() {
    let t = laptop_discharging();
    let source = SysfsSource::new(t.root());
    let mut smoother = Smoother::default();
    let mut level_at = |milli: &str| {
        t.set("class/thermal/thermal_zone1/temp", milli);
        smoother.apply(&source.read().unwrap(), "sysfs").thermal
    };
    assert_eq!(level_at("96000"), Thermal::Critical);
    assert_eq!(level_at("93000"), Thermal::Critical, "inside the 3 °C margin");
    assert_eq!(level_at("91500"), Thermal::Serious);
    assert_eq!(level_at("60000"), Thermal::Nominal);
}
