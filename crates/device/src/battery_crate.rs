//! `BatteryCrateSource`: battery level and charging through `starship-battery` (IOKit on macOS,
//! the Win32 battery API on Windows, sysfs on Linux, where `SysfsSource` is used instead).
//!
//! Those OS APIs give no system thermal level a process can read without private frameworks,
//! so this source reports `Thermal::Nominal` and no temperature; power saver is not reported
//! either (false). Hosts that know them (an app using `ProcessInfo.thermalState`) use
//! `FileSource`.

use starship_battery::units::ratio::ratio;
use starship_battery::{Manager, State};

use crate::{DeviceError, PowerSource, RawReading};

#[derive(Debug, Clone, Copy, Default)]
pub struct BatteryCrateSource;

impl BatteryCrateSource {
    pub fn new() -> BatteryCrateSource {
        BatteryCrateSource
    }
}

impl PowerSource for BatteryCrateSource {
    fn read(&self) -> Result<RawReading, DeviceError> {
        // A manager per read: cheap every few seconds, and it keeps this type Send + Sync
        // whatever the platform handle inside is.
        let manager = Manager::new().map_err(|e| DeviceError::Battery(e.to_string()))?;
        let batteries = manager.batteries().map_err(|e| DeviceError::Battery(e.to_string()))?;
        let mut levels = Vec::new();
        let mut states = Vec::new();
        for battery in batteries {
            let battery = battery.map_err(|e| DeviceError::Battery(e.to_string()))?;
            let level = battery.state_of_charge().get::<ratio>();
            if level.is_finite() {
                levels.push(level.clamp(0.0, 1.0));
            }
            states.push(battery.state());
        }
        if states.is_empty() {
            return Ok(RawReading::no_battery());
        }
        if levels.is_empty() {
            return Err(DeviceError::Battery("no battery reports a state of charge".to_owned()));
        }
        let level = levels.iter().sum::<f32>() / levels.len() as f32;
        let charging = states.contains(&State::Charging)
            || (!states.contains(&State::Discharging)
                && states.iter().any(|s| matches!(s, State::Full | State::Paused)));
        Ok(RawReading {
            battery: Some(level),
            charging,
            ..RawReading::no_battery()
        })
    }

    fn name(&self) -> &'static str {
        "battery-crate"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's answer is whatever it is (CI runners have no battery); what must hold is
    /// that reading never panics and a reading, when there is one, is in range.
    #[test]
    fn reads_without_panicking() {
        if let Ok(r) = BatteryCrateSource::new().read() {
            assert!(r.battery.is_none_or(|b| (0.0..=1.0).contains(&b)));
            assert!(r.battery.is_some() || r.charging);
        }
    }
}
