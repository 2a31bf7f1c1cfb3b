//! Hysteresis: turns a stream of `RawReading`s into `DeviceState`s that do not flap. Pure: no IO,
//! no clock — one call per reading, so tests feed sequences directly.
//!
//! Thermal: the level rises at once. It falls when every zone has cooled `thermal_margin_c`
//! below the threshold it would cross (it falls to the level the zones are in with that margin
//! added), or after `thermal_release_after` consecutive readings below the reported level (then
//! to the raw level) — the only way down for levels a host states without temperatures.
//!
//! Battery: reported rounded to whole percent, and changed only when the raw level has moved at
//! least `battery_step` from the reading last reported, or when the rounded level crosses one of
//! `battery_thresholds` (the levels policies test, so `battery < 0.2` turns true on time).

use crate::{DeviceState, RawReading, Thermal};

#[derive(Debug, Clone, PartialEq)]
pub struct Smoothing {
    /// °C a zone must cool below a level's threshold before that level is left.
    pub thermal_margin_c: f32,
    /// Consecutive lower readings after which the level falls anyway (`≥ 1`).
    pub thermal_release_after: u32,
    /// Smallest battery change reported, as a fraction (0.01 = one percentage point).
    pub battery_step: f32,
    /// Battery levels whose crossing is reported even when smaller than `battery_step`.
    pub battery_thresholds: Vec<f32>,
}

impl Default for Smoothing {
    /// Margin 3 °C, release after 3 readings (15 s at the default 5 s refresh), 1-point steps,
    /// thresholds at 5, 10, 15, 20, 25, 30 and 50 %.
    fn default() -> Self {
        Smoothing {
            thermal_margin_c: 3.0,
            thermal_release_after: 3,
            battery_step: 0.01,
            battery_thresholds: vec![0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.50],
        }
    }
}

/// Absorbs f32 error, so 0.50 → 0.49 counts as a full point.
const STEP_EPSILON: f32 = 1e-4;

#[derive(Debug, Clone)]
pub struct Smoother {
    cfg: Smoothing,
    thermal: Thermal,
    /// Consecutive readings below `thermal`.
    lower_readings: u32,
    /// Zones in the reading that set `thermal`. A later reading with fewer
    /// (a sensor that failed to read) says nothing of the missing ones, so
    /// it cannot prove the margin: the level falls only by the count.
    zones_at_level: usize,
    /// `(raw level at the last report, reported level)`.
    battery: Option<(f32, f32)>,
}

impl Smoother {
    pub fn new(cfg: Smoothing) -> Smoother {
        Smoother {
            cfg,
            thermal: Thermal::Nominal,
            lower_readings: 0,
            zones_at_level: 0,
            battery: None,
        }
    }

    /// The smoothed state for one reading. Memory is passed through (0 when unknown);
    /// temperature is rounded to whole degrees so it does not wake subscribers every refresh.
    pub fn apply(&mut self, raw: &RawReading, source: &'static str) -> DeviceState {
        DeviceState {
            battery: self.battery(raw.battery),
            charging: raw.charging,
            power_saver: raw.power_saver,
            thermal: self.thermal(raw),
            temperature_c: raw.max_temperature_c().map(f32::round),
            mem_available: raw.mem_available.unwrap_or(0),
            mem_total: raw.mem_total.unwrap_or(0),
            source,
        }
    }

    /// The smoothed thermal level after `raw`.
    pub fn thermal(&mut self, raw: &RawReading) -> Thermal {
        let now = raw.thermal_level();
        if now >= self.thermal {
            self.set_thermal(now, raw);
            return self.thermal;
        }
        // Cooler than reported. With temperatures, leave the level once the zones are a margin
        // below it; a stated level alone gives no temperature to measure the margin against,
        // and neither does a reading that lost a zone (the hot one may be the one missing).
        if !raw.zones.is_empty() && raw.zones.len() >= self.zones_at_level {
            let with_margin = raw.level_with_offset(self.cfg.thermal_margin_c);
            if with_margin < self.thermal {
                self.set_thermal(with_margin, raw);
                return self.thermal;
            }
        }
        self.lower_readings += 1;
        if self.lower_readings >= self.cfg.thermal_release_after.max(1) {
            self.set_thermal(now, raw);
        }
        self.thermal
    }

    fn set_thermal(&mut self, level: Thermal, raw: &RawReading) {
        self.thermal = level;
        self.lower_readings = 0;
        self.zones_at_level = raw.zones.len();
    }

    /// The smoothed battery level after a raw level.
    pub fn battery(&mut self, raw: Option<f32>) -> Option<f32> {
        let Some(raw) = raw.filter(|b| b.is_finite()).map(|b| b.clamp(0.0, 1.0)) else {
            self.battery = None;
            return None;
        };
        let rounded = (raw * 100.0).round() / 100.0;
        let report = match self.battery {
            None => true,
            Some((anchor, reported)) => {
                let moved = (raw - anchor).abs() + STEP_EPSILON >= self.cfg.battery_step;
                let crossed = self
                    .cfg
                    .battery_thresholds
                    .iter()
                    .any(|t| (reported < *t) != (rounded < *t));
                moved || crossed
            }
        };
        if report {
            self.battery = Some((raw, rounded));
        }
        self.battery.map(|(_, reported)| reported)
    }

    /// The level currently reported.
    pub fn thermal_level(&self) -> Thermal {
        self.thermal
    }
}

impl Default for Smoother {
    fn default() -> Self {
        Smoother::new(Smoothing::default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{ThermalThresholds, ThermalZone};

    fn hot(temps: &[f32]) -> RawReading {
        RawReading {
            zones: temps
                .iter()
                .map(|t| ThermalZone {
                    name: "cpu".into(),
                    temp_c: *t,
                    thresholds: ThermalThresholds::DEFAULT,
                })
                .collect(),
            ..RawReading::no_battery()
        }
    }

    fn stated(level: Thermal) -> RawReading {
        RawReading {
            thermal: level,
            ..RawReading::no_battery()
        }
    }

    /// Feeds one temperature per reading; returns the reported level after each.
    fn thermal_sequence(temps: &[f32]) -> Vec<Thermal> {
        let mut s = Smoother::default();
        temps.iter().map(|t| s.thermal(&hot(&[*t]))).collect()
    }

    use Thermal::*;

    #[test]
    fn thermal_rises_at_once() {
        assert_eq!(thermal_sequence(&[40.0, 71.0, 96.0]), vec![Nominal, Fair, Critical]);
    }

    #[test]
    fn thermal_falls_only_past_the_margin() {
        // Serious at 85: 84 and 83 are inside the 3 °C margin, 81.9 is past it.
        assert_eq!(
            thermal_sequence(&[86.0, 84.0, 82.5, 81.9]),
            vec![Serious, Serious, Serious, Fair]
        );
        // From Critical, cooling to 91 clears critical's margin (95 − 3) but not serious's.
        assert_eq!(thermal_sequence(&[97.0, 91.0]), vec![Critical, Serious]);
        // Straight down past every margin.
        assert_eq!(thermal_sequence(&[97.0, 40.0]), vec![Critical, Nominal]);
    }

    #[test]
    fn thermal_jitter_at_a_threshold_does_not_flap() {
        let temps = [84.0, 85.0, 84.5, 85.2, 84.1, 85.0, 83.9, 84.8];
        let got = thermal_sequence(&temps);
        assert_eq!(got[0], Fair);
        assert!(got[1..].iter().all(|t| *t == Serious), "{got:?}");
    }

    #[test]
    fn thermal_falls_after_n_lower_readings_inside_the_margin() {
        // Stuck at 83.5 (inside the margin): the third lower reading releases to Fair.
        assert_eq!(
            thermal_sequence(&[86.0, 83.5, 83.5, 83.5, 83.5]),
            vec![Serious, Serious, Serious, Fair, Fair]
        );
        // A reading back at the level resets the count.
        assert_eq!(
            thermal_sequence(&[86.0, 83.5, 83.5, 85.5, 83.5, 83.5, 83.5]),
            vec![Serious, Serious, Serious, Serious, Serious, Serious, Fair]
        );
    }

    #[test]
    fn stated_levels_fall_only_by_count() {
        let mut s = Smoother::new(Smoothing {
            thermal_release_after: 2,
            ..Smoothing::default()
        });
        let got: Vec<Thermal> = [Critical, Fair, Fair, Nominal, Serious]
            .into_iter()
            .map(|l| s.thermal(&stated(l)))
            .collect();
        assert_eq!(got, vec![Critical, Critical, Fair, Fair, Serious]);
    }

    #[test]
    fn hottest_zone_decides() {
        let mut s = Smoother::default();
        assert_eq!(s.thermal(&hot(&[40.0, 90.0])), Serious);
        // The hot zone cooled past the margin but another one is now Fair-hot.
        assert_eq!(s.thermal(&hot(&[72.0, 60.0])), Fair);
    }

    #[test]
    fn a_zone_that_fails_to_read_is_no_proof_of_cooling() {
        let mut s = Smoother::default();
        assert_eq!(s.thermal(&hot(&[97.0, 40.0])), Thermal::Critical);
        // The hot zone's read failed: the cool one alone falls only by count.
        assert_eq!(s.thermal(&hot(&[40.0])), Thermal::Critical);
        assert_eq!(s.thermal(&hot(&[40.0])), Thermal::Critical);
        assert_eq!(s.thermal(&hot(&[40.0])), Thermal::Nominal, "after 3 readings");
        // Both zones read again and cool: the margin applies as before.
        assert_eq!(s.thermal(&hot(&[97.0, 40.0])), Thermal::Critical);
        assert_eq!(s.thermal(&hot(&[40.0, 40.0])), Thermal::Nominal);
    }

    #[test]
    fn battery_is_rounded_and_held() {
        let mut s = Smoother::default();
        let got: Vec<Option<f32>> = [0.423, 0.427, 0.418, 0.432, 0.5, 0.49]
            .into_iter()
            .map(|b| s.battery(Some(b)))
            .collect();
        // 0.427, 0.418 and 0.432 are all within a point of 0.423 (the last report's raw value),
        // even though 0.427 and 0.432 round to 0.43; 0.50 → 0.49 is a whole point despite f32.
        assert_eq!(
            got,
            vec![Some(0.42), Some(0.42), Some(0.42), Some(0.42), Some(0.5), Some(0.49)]
        );
    }

    #[test]
    fn battery_threshold_crossings_are_reported_at_once() {
        let mut s = Smoother::new(Smoothing {
            battery_step: 0.05,
            ..Smoothing::default()
        });
        assert_eq!(s.battery(Some(0.22)), Some(0.22));
        // 0.21 moved less than the 5-point step and crosses nothing.
        assert_eq!(s.battery(Some(0.21)), Some(0.22));
        // 0.196 rounds to 0.20: not below 0.2 yet.
        assert_eq!(s.battery(Some(0.196)), Some(0.22));
        assert_eq!(s.battery(Some(0.194)), Some(0.19));
        // Charging back over 0.2 is a crossing too.
        assert_eq!(s.battery(Some(0.2)), Some(0.2));
    }

    #[test]
    fn battery_disappearing_and_returning() {
        let mut s = Smoother::default();
        assert_eq!(s.battery(Some(0.8)), Some(0.8));
        assert_eq!(s.battery(None), None);
        assert_eq!(s.battery(Some(0.806)), Some(0.81));
        assert_eq!(s.battery(Some(f32::NAN)), None);
        assert_eq!(s.battery(Some(1.7)), Some(1.0));
    }

    #[test]
    fn apply_builds_the_state() {
        let mut s = Smoother::default();
        let raw = RawReading {
            battery: Some(0.1549),
            charging: false,
            power_saver: true,
            mem_available: Some(5),
            mem_total: Some(10),
            ..hot(&[71.4])
        };
        let st = s.apply(&raw, "fake");
        assert_eq!(st.battery, Some(0.15));
        assert!(!st.charging && st.power_saver);
        assert_eq!(st.thermal, Fair);
        assert_eq!(st.temperature_c, Some(71.0));
        assert_eq!((st.mem_available, st.mem_total, st.source), (5, 10, "fake"));
    }
}
