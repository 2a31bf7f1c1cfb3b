//! The values a source reads (`RawReading`) and the smoothed values the router sees (`DeviceState`),
//! with the thermal scale (`Thermal`) and the temperature → level mapping (`ThermalThresholds`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How hot the device runs, on the scale Apple's `ProcessInfo.ThermalState` and Android's
/// `PowerManager` thermal status share. Ordered: `Nominal < Fair < Serious < Critical`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Thermal {
    /// Normal operating temperature.
    #[default]
    Nominal,
    /// Slightly elevated: fans audible, nothing throttled yet.
    Fair,
    /// High: the system throttles (Linux `passive` cooling); local inference gets slower and adds heat.
    Serious,
    /// About to shed load or shut down: keep work off the device.
    Critical,
}

impl Thermal {
    /// All levels, lowest first.
    pub const ALL: [Thermal; 4] = [Thermal::Nominal, Thermal::Fair, Thermal::Serious, Thermal::Critical];

    /// The lowercase name used in JSON, TOML and policy expressions.
    pub fn as_str(self) -> &'static str {
        match self {
            Thermal::Nominal => "nominal",
            Thermal::Fair => "fair",
            Thermal::Serious => "serious",
            Thermal::Critical => "critical",
        }
    }
}

impl fmt::Display for Thermal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name was not one of `nominal`, `fair`, `serious`, `critical`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown thermal level {0:?} (expected nominal, fair, serious or critical)")]
pub struct UnknownThermal(pub String);

impl FromStr for Thermal {
    type Err = UnknownThermal;

    /// Case-insensitive: hosts write `Serious` as often as `serious`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Thermal::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownThermal(s.to_owned()))
    }
}

/// Temperatures (°C) at which one thermal zone enters each level.
///
/// Always complete and ordered (`fair <= serious <= critical`): levels a zone's trip points do
/// not give are filled from [`ThermalThresholds::DEFAULT`], then lowered to keep the order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThermalThresholds {
    pub fair: f32,
    pub serious: f32,
    pub critical: f32,
}

/// A Linux thermal trip point kind (`trip_point_N_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripKind {
    /// A fan or other active cooling device switches on.
    Active,
    /// The kernel starts throttling.
    Passive,
    /// Userspace is told to shed load.
    Hot,
    /// The kernel powers the machine off.
    Critical,
}

impl TripKind {
    /// Parses the sysfs spelling; `None` for kinds we do not use.
    pub fn parse(s: &str) -> Option<TripKind> {
        match s.trim() {
            "active" => Some(TripKind::Active),
            "passive" => Some(TripKind::Passive),
            "hot" => Some(TripKind::Hot),
            "critical" => Some(TripKind::Critical),
            _ => None,
        }
    }
}

impl ThermalThresholds {
    /// Used for zones without trip points: fair ≥ 70 °C, serious ≥ 85 °C, critical ≥ 95 °C.
    /// Chosen for laptop/desktop CPU packages, which throttle around 90–100 °C.
    pub const DEFAULT: ThermalThresholds = ThermalThresholds {
        fair: 70.0,
        serious: 85.0,
        critical: 95.0,
    };

    /// How far below a `critical` trip we already report `Critical`: at the trip itself the
    /// kernel powers off, so a level reported there would never be seen.
    pub const CRITICAL_TRIP_LEAD_C: f32 = 5.0;

    /// Maps trip points to thresholds: the lowest `active` trip → fair, the lowest `passive` →
    /// serious, the lowest `hot` → critical, else the lowest `critical` trip minus
    /// [`Self::CRITICAL_TRIP_LEAD_C`]. Missing levels come from [`Self::DEFAULT`]; then each level
    /// is capped by the one above it so the order holds (a phone skin zone with a 45 °C passive
    /// trip gives fair = serious = 45 °C).
    pub fn from_trips(trips: &[(TripKind, f32)]) -> ThermalThresholds {
        let lowest = |kind: TripKind| {
            trips
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, t)| *t)
                .fold(None, |acc: Option<f32>, t| Some(acc.map_or(t, |a| a.min(t))))
        };
        let critical = lowest(TripKind::Hot)
            .or_else(|| lowest(TripKind::Critical).map(|t| t - Self::CRITICAL_TRIP_LEAD_C))
            .unwrap_or(Self::DEFAULT.critical);
        let serious = lowest(TripKind::Passive).unwrap_or(Self::DEFAULT.serious).min(critical);
        let fair = lowest(TripKind::Active).unwrap_or(Self::DEFAULT.fair).min(serious);
        ThermalThresholds {
            fair,
            serious,
            critical,
        }
    }

    /// The level a zone at `temp_c` is in (thresholds are inclusive).
    pub fn level(&self, temp_c: f32) -> Thermal {
        if temp_c >= self.critical {
            Thermal::Critical
        } else if temp_c >= self.serious {
            Thermal::Serious
        } else if temp_c >= self.fair {
            Thermal::Fair
        } else {
            Thermal::Nominal
        }
    }
}

impl Default for ThermalThresholds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One temperature sensor and the thresholds that apply to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThermalZone {
    /// The zone's `type` (e.g. `x86_pkg_temp`, `skin-therm`), for logs and `/health`.
    pub name: String,
    pub temp_c: f32,
    pub thresholds: ThermalThresholds,
}

/// What a [`PowerSource`](crate::PowerSource) read, before smoothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawReading {
    /// State of charge in `0.0..=1.0`; `None` when the device has no system battery.
    pub battery: Option<f32>,
    /// On external power (AC, USB, wireless), or no battery at all.
    pub charging: bool,
    pub power_saver: bool,
    /// A level the host or OS stated directly (file source). Combined with `zones` by taking the
    /// higher; sources that only have temperatures leave it `Nominal`.
    pub thermal: Thermal,
    /// Temperatures with their thresholds; the monitor derives levels (and hysteresis) from them.
    pub zones: Vec<ThermalZone>,
    /// A temperature the host stated without zones (file source); informational.
    pub temperature_c: Option<f32>,
    /// Bytes; `None` lets the monitor read `/proc/meminfo`.
    pub mem_available: Option<u64>,
    pub mem_total: Option<u64>,
}

impl RawReading {
    /// A mains-powered device with no battery, cool, memory unknown.
    pub fn no_battery() -> RawReading {
        RawReading {
            battery: None,
            charging: true,
            power_saver: false,
            thermal: Thermal::Nominal,
            zones: Vec::new(),
            temperature_c: None,
            mem_available: None,
            mem_total: None,
        }
    }

    /// The level this reading is in: the highest of the stated level and every zone's level.
    pub fn thermal_level(&self) -> Thermal {
        self.level_with_offset(0.0)
    }

    /// As [`Self::thermal_level`] with every zone `offset_c` warmer (hysteresis uses the margin).
    pub(crate) fn level_with_offset(&self, offset_c: f32) -> Thermal {
        self.zones
            .iter()
            .map(|z| z.thresholds.level(z.temp_c + offset_c))
            .fold(self.thermal, Ord::max)
    }

    /// The hottest zone's temperature, else the stated one.
    pub fn max_temperature_c(&self) -> Option<f32> {
        self.zones
            .iter()
            .map(|z| z.temp_c)
            .fold(None, |acc: Option<f32>, t| Some(acc.map_or(t, |a| a.max(t))))
            .or(self.temperature_c)
    }
}

impl Default for RawReading {
    fn default() -> Self {
        Self::no_battery()
    }
}

/// The device signals the router reads on every request: smoothed, cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceState {
    /// State of charge in `0.0..=1.0`, rounded to whole percent and held steady against jitter;
    /// `None` when there is no system battery (desktop, server) — peripheral batteries never count.
    pub battery: Option<f32>,
    /// On external power, or no battery: running locally costs no battery.
    pub charging: bool,
    /// The OS or the user asked to save power (`platform_profile = low-power`, host flag).
    pub power_saver: bool,
    /// Smoothed level: rises at once, falls only after cooling (see `Smoothing`).
    pub thermal: Thermal,
    /// Hottest sensor, rounded to whole °C; `None` when no sensor is readable.
    pub temperature_c: Option<f32>,
    /// Bytes available for new allocations without swapping (`MemAvailable`); 0 when unknown.
    pub mem_available: u64,
    /// Bytes of RAM; 0 when unknown (no `/proc/meminfo` and the source does not say).
    pub mem_total: u64,
    /// Which source produced this: `sysfs`, `file`, `battery-crate`, `none`, `fake`, `unknown`.
    pub source: &'static str,
}

impl DeviceState {
    /// What the router assumes before the first good reading: plugged in, cool, memory unknown,
    /// so a missing sensor never by itself keeps work off the device.
    pub fn unknown(source: &'static str) -> DeviceState {
        DeviceState {
            battery: None,
            charging: true,
            power_saver: false,
            thermal: Thermal::Nominal,
            temperature_c: None,
            mem_available: 0,
            mem_total: 0,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn thermal_order_names_and_parse() {
        assert!(Thermal::Nominal < Thermal::Fair && Thermal::Fair < Thermal::Serious);
        assert!(Thermal::Serious < Thermal::Critical);
        for t in Thermal::ALL {
            assert_eq!(t.as_str().parse::<Thermal>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
        }
        assert_eq!("Serious".parse::<Thermal>().unwrap(), Thermal::Serious);
        assert!("warm".parse::<Thermal>().is_err());
    }

    #[test]
    fn default_thresholds_without_trips() {
        let t = ThermalThresholds::from_trips(&[]);
        assert_eq!(t, ThermalThresholds::DEFAULT);
        let cases = [
            (20.0, Thermal::Nominal),
            (69.9, Thermal::Nominal),
            (70.0, Thermal::Fair),
            (84.9, Thermal::Fair),
            (85.0, Thermal::Serious),
            (95.0, Thermal::Critical),
            (120.0, Thermal::Critical),
        ];
        for (temp, want) in cases {
            assert_eq!(t.level(temp), want, "{temp} °C");
        }
    }

    #[test]
    fn trips_map_to_levels() {
        use TripKind::*;
        let full = ThermalThresholds::from_trips(&[(Critical, 105.0), (Hot, 100.0), (Passive, 90.0), (Active, 60.0)]);
        assert_eq!(
            full,
            ThermalThresholds {
                fair: 60.0,
                serious: 90.0,
                critical: 100.0
            }
        );
        // Only a critical trip: critical comes early by the lead, the rest are defaults.
        let crit = ThermalThresholds::from_trips(&[(Critical, 98.0)]);
        assert_eq!((crit.fair, crit.serious, crit.critical), (70.0, 85.0, 93.0));
        // A phone skin zone: a low passive trip caps fair too; the lowest of several trips wins.
        let skin = ThermalThresholds::from_trips(&[(Passive, 48.0), (Passive, 45.0)]);
        assert_eq!((skin.fair, skin.serious, skin.critical), (45.0, 45.0, 95.0));
        // A critical trip below the defaults pulls everything down, keeping the order.
        let low = ThermalThresholds::from_trips(&[(Critical, 60.0)]);
        assert_eq!((low.fair, low.serious, low.critical), (55.0, 55.0, 55.0));
    }

    #[test]
    fn reading_level_is_the_highest_of_stated_and_zones() {
        let zone = |temp_c| ThermalZone {
            name: "z".into(),
            temp_c,
            thresholds: ThermalThresholds::DEFAULT,
        };
        let mut r = RawReading {
            zones: vec![zone(40.0), zone(86.0)],
            ..RawReading::no_battery()
        };
        assert_eq!(r.thermal_level(), Thermal::Serious);
        assert_eq!(r.max_temperature_c(), Some(86.0));
        r.thermal = Thermal::Critical;
        assert_eq!(r.thermal_level(), Thermal::Critical);
        assert_eq!(RawReading::no_battery().max_temperature_c(), None);
    }
}
