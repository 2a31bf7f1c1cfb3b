//! Fixture sysfs trees written into temporary directories: one function per device shape.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A fake `/sys`: `set("class/power_supply/BAT0/capacity", "15")` writes the attribute with the
/// trailing newline the kernel adds.
pub struct Tree {
    dir: TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        let tree = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(tree.root().join("class/power_supply")).unwrap();
        fs::create_dir_all(tree.root().join("class/thermal")).unwrap();
        tree
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn set(&self, rel: &str, value: &str) -> &Tree {
        let path = self.root().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("{value}\n")).unwrap();
        self
    }

    pub fn remove(&self, rel: &str) -> &Tree {
        let path = self.root().join(rel);
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
        self
    }

    /// A power supply with `type` and the given attributes.
    pub fn supply(&self, name: &str, kind: &str, attrs: &[(&str, &str)]) -> &Tree {
        self.set(&format!("class/power_supply/{name}/type"), kind);
        for (k, v) in attrs {
            self.set(&format!("class/power_supply/{name}/{k}"), v);
        }
        self
    }

    /// A thermal zone at `temp_c` with `(type, °C)` trip points.
    pub fn zone(&self, n: u32, kind: &str, temp_c: f32, trips: &[(&str, f32)]) -> &Tree {
        let base = format!("class/thermal/thermal_zone{n}");
        self.set(&format!("{base}/type"), kind);
        self.set(&format!("{base}/temp"), &millis(temp_c));
        for (i, (t, c)) in trips.iter().enumerate() {
            self.set(&format!("{base}/trip_point_{i}_type"), t);
            self.set(&format!("{base}/trip_point_{i}_temp"), &millis(*c));
        }
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }
}

fn millis(c: f32) -> String {
    format!("{}", (c * 1000.0).round() as i64)
}

/// A ThinkPad-like laptop on battery at 15 %: BAT0, AC offline, a USB-C port, an ACPI zone with
/// only a critical trip, the CPU package with none, a cooling device, a balanced profile.
pub fn laptop_discharging() -> Tree {
    let t = Tree::new();
    t.supply(
        "BAT0",
        "Battery",
        &[
            ("status", "Discharging"),
            ("present", "1"),
            ("capacity", "15"),
            ("energy_now", "8550000"),
            ("energy_full", "57000000"),
            ("scope", "System"),
        ],
    )
    .supply("AC", "Mains", &[("online", "0")])
    .supply(
        "ucsi-source-psy-USBC000:001",
        "USB",
        &[("online", "0"), ("scope", "Unknown")],
    )
    .zone(0, "acpitz", 45.0, &[("critical", 128.0)])
    .zone(1, "x86_pkg_temp", 52.0, &[])
    .set("class/thermal/cooling_device0/type", "Processor")
    .set("class/thermal/cooling_device0/cur_state", "0")
    .set("firmware/acpi/platform_profile", "balanced");
    t
}

/// A phone-like Android tree: `battery`, `usb`, `ac`, `wireless`, a `bms`, CPU and skin zones.
pub fn android_phone() -> Tree {
    let t = Tree::new();
    t.supply(
        "battery",
        "Battery",
        &[
            ("status", "Discharging"),
            ("capacity", "42"),
            ("present", "1"),
            ("temp", "312"),
        ],
    )
    .supply("usb", "USB", &[("online", "0"), ("present", "0")])
    .supply("ac", "Mains", &[("online", "0")])
    .supply("wireless", "Wireless", &[("online", "0")])
    .supply("bms", "BMS", &[("capacity", "41")])
    .zone(0, "cpu-0-0-usr", 38.0, &[("passive", 95.0), ("critical", 115.0)])
    .zone(1, "skin-therm", 34.0, &[("passive", 45.0)])
    .zone(2, "battery", 31.2, &[])
    .zone(3, "pm8350b-ibat-lvl0", 0.0, &[("passive", 0.0)]);
    t
}

/// A desktop: no battery, an empty power_supply class, one CPU zone.
pub fn desktop() -> Tree {
    let t = Tree::new();
    t.zone(0, "x86_pkg_temp", 41.0, &[]);
    t
}
