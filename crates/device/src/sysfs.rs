//! `SysfsSource`: Linux and Android power and thermal state from sysfs, under an injectable root
//! (`/sys` in production, a fixture tree in tests).
//!
//! - `class/power_supply/*`: `type = Battery` supplies are system batteries unless `scope = Device`
//!   (a mouse or headset) or `present = 0`; level from `capacity` (percent), else
//!   `energy_now / energy_full`, else `charge_now / charge_full`; several batteries are averaged,
//!   weighted by `energy_full` when all of them have it. Every other type except `UPS` (`Mains`,
//!   `USB*`, `Wireless`, …) is an external supply whose `online` means "on external power".
//! - `class/thermal/thermal_zone*`: `temp` in millidegrees (the kernel ABI), and trip points
//!   (`trip_point_N_type`, `trip_point_N_temp`) turned into thresholds by
//!   `ThermalThresholds::from_trips`. Unreadable zones and readings outside −40..=200 °C are
//!   skipped (disabled sensors report 0, −273 or garbage); so are trips ≤ 0 °C or > 200 °C.
//! - `firmware/acpi/platform_profile`: `low-power` means power saver.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::state::TripKind;
use crate::{DeviceError, PowerSource, RawReading, Thermal, ThermalThresholds, ThermalZone};

/// Plausible sensor range; anything outside is a disabled or broken sensor.
const MIN_PLAUSIBLE_C: f32 = -40.0;
const MAX_PLAUSIBLE_C: f32 = 200.0;
/// Upper bound on trip points read per zone, against a malformed tree.
const MAX_TRIPS: usize = 64;

#[derive(Debug, Clone)]
pub struct SysfsSource {
    root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Charging,
    Discharging,
    Full,
    NotCharging,
    Unknown,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "Charging" => Status::Charging,
            "Discharging" => Status::Discharging,
            "Full" => Status::Full,
            "Not charging" => Status::NotCharging,
            _ => Status::Unknown,
        }
    }
}

struct Battery {
    name: String,
    fraction: Option<f64>,
    /// `energy_full` (µWh), to weight batteries of different sizes.
    energy_full: Option<f64>,
    status: Status,
}

impl SysfsSource {
    /// `root` is the sysfs mount point (`/sys`).
    pub fn new(root: impl Into<PathBuf>) -> SysfsSource {
        SysfsSource { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `root/class/power_supply` exists: what `source = "auto"` checks.
    pub fn has_power_supply_class(root: &Path) -> bool {
        root.join("class/power_supply").is_dir()
    }

    /// `(battery level, on external power)`.
    fn read_power(&self) -> Result<(Option<f32>, bool), DeviceError> {
        let dir = self.root.join("class/power_supply");
        let mut batteries = Vec::new();
        let mut external_online = false;
        let mut external_known = false;
        for supply in sorted_entries(&dir)? {
            let Some(kind) = read_trimmed(&supply.join("type")) else {
                continue;
            };
            if read_trimmed(&supply.join("scope")).is_some_and(|s| s.eq_ignore_ascii_case("device")) {
                continue; // a peripheral's battery says nothing about this device's power
            }
            match kind.as_str() {
                "Battery" => {
                    if read_trimmed(&supply.join("present")).as_deref() == Some("0") {
                        continue; // empty battery bay
                    }
                    batteries.push(read_battery(&supply));
                }
                // A UPS feeds a desktop from outside; its charge is not this device's battery.
                "UPS" => {}
                _ => {
                    if let Some(online) = read_number(&supply.join("online")) {
                        external_known = true;
                        external_online |= online > 0.0;
                    }
                }
            }
        }
        if batteries.is_empty() {
            return Ok((None, true));
        }
        let level = combine_levels(&batteries).ok_or_else(|| {
            let names: Vec<&str> = batteries.iter().map(|b| b.name.as_str()).collect();
            DeviceError::parse(
                &dir,
                format!(
                    "battery {} has no readable capacity, energy_now/energy_full or charge_now/charge_full",
                    names.join(", ")
                ),
            )
        })?;
        let any = |s: Status| batteries.iter().any(|b| b.status == s);
        let charging = if external_online || any(Status::Charging) {
            true
        } else if any(Status::Discharging) || external_known {
            // A secondary battery may sit at "Not charging" while the first one drains.
            false
        } else {
            // No supply says whether it is plugged in: a full or held battery means it is.
            any(Status::Full) || any(Status::NotCharging)
        };
        Ok((Some(level), charging))
    }

    fn read_zones(&self) -> Result<Vec<ThermalZone>, DeviceError> {
        let dir = self.root.join("class/thermal");
        let mut zones = Vec::new();
        for zone in sorted_entries(&dir)? {
            let is_zone = zone
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("thermal_zone"));
            if !is_zone {
                continue; // cooling_device* live in the same class
            }
            let Some(temp_c) = read_number(&zone.join("temp")).map(|m| (m / 1000.0) as f32) else {
                continue; // e.g. a Wi-Fi sensor while the interface is down (ENODATA)
            };
            if !(MIN_PLAUSIBLE_C..=MAX_PLAUSIBLE_C).contains(&temp_c) {
                continue;
            }
            let mut trips = Vec::new();
            for n in 0..MAX_TRIPS {
                let Some(kind) = read_trimmed(&zone.join(format!("trip_point_{n}_type"))) else {
                    break;
                };
                let Some(kind) = TripKind::parse(&kind) else {
                    continue;
                };
                let Some(t) = read_number(&zone.join(format!("trip_point_{n}_temp"))) else {
                    continue;
                };
                let t = (t / 1000.0) as f32;
                if t > 0.0 && t <= MAX_PLAUSIBLE_C {
                    trips.push((kind, t));
                }
            }
            let name = read_trimmed(&zone.join("type"))
                .or_else(|| zone.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            zones.push(ThermalZone {
                name,
                temp_c,
                thresholds: ThermalThresholds::from_trips(&trips),
            });
        }
        Ok(zones)
    }
}

impl PowerSource for SysfsSource {
    fn read(&self) -> Result<RawReading, DeviceError> {
        // A missing class directory is normal (containers, desktops); a missing root is a typo.
        if let Err(e) = fs::metadata(&self.root) {
            return Err(DeviceError::io(&self.root, &e));
        }
        let (battery, charging) = self.read_power()?;
        let zones = self.read_zones()?;
        let power_saver =
            read_trimmed(&self.root.join("firmware/acpi/platform_profile")).is_some_and(|p| p == "low-power");
        Ok(RawReading {
            battery,
            charging,
            power_saver,
            thermal: Thermal::Nominal,
            zones,
            temperature_c: None,
            mem_available: None,
            mem_total: None,
        })
    }

    fn name(&self) -> &'static str {
        "sysfs"
    }
}

fn read_battery(dir: &Path) -> Battery {
    let num = |file: &str| read_number(&dir.join(file));
    let ratio = |now: &str, full: &str| match (num(now), num(full)) {
        (Some(n), Some(f)) if f > 0.0 => Some(n / f),
        _ => None,
    };
    let fraction = num("capacity")
        .map(|pct| pct / 100.0)
        .or_else(|| ratio("energy_now", "energy_full"))
        .or_else(|| ratio("charge_now", "charge_full"))
        .map(|f| f.clamp(0.0, 1.0));
    Battery {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        fraction,
        energy_full: num("energy_full").filter(|e| *e > 0.0),
        status: read_trimmed(&dir.join("status")).map_or(Status::Unknown, |s| Status::parse(&s)),
    }
}

/// Weighted by `energy_full` when every readable battery has it, else a plain mean; `None`
/// when no battery is readable.
fn combine_levels(batteries: &[Battery]) -> Option<f32> {
    let readable: Vec<&Battery> = batteries.iter().filter(|b| b.fraction.is_some()).collect();
    if readable.is_empty() {
        return None;
    }
    let weights: Option<Vec<f64>> = readable.iter().map(|b| b.energy_full).collect();
    let level = match weights {
        Some(w) => {
            let total: f64 = w.iter().sum();
            readable
                .iter()
                .zip(&w)
                .map(|(b, w)| b.fraction.unwrap_or(0.0) * w)
                .sum::<f64>()
                / total
        }
        None => readable.iter().map(|b| b.fraction.unwrap_or(0.0)).sum::<f64>() / readable.len() as f64,
    };
    Some(level as f32)
}

/// Entries of `dir` sorted by name; a missing directory is empty.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DeviceError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DeviceError::io(dir, &e)),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

/// A sysfs attribute without its trailing newline; `None` when absent or unreadable (many
/// attributes fail with EIO or ENODATA while hardware is asleep).
fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn read_number(path: &Path) -> Option<f64> {
    read_trimmed(path)?.parse::<f64>().ok().filter(|v| v.is_finite())
}
