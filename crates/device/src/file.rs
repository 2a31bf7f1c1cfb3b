//! `FileSource`: device state that a host app writes as JSON — how an Android or iOS app, which
//! can ask its OS for battery and thermal state, hands it to the daemon.
//!
//! ```json
//! {"battery": 0.42, "charging": false, "power_saver": true, "thermal": "serious",
//!  "temperature_c": 41.5, "mem_available_mb": 1234, "mem_total_mb": 7680}
//! ```
//!
//! Every field is optional; each file is a whole snapshot, so a missing field means "unknown",
//! not "unchanged": no `battery` (or `null`) means no battery, `charging` then defaults to true
//! (else false), `power_saver` to false, `thermal` to nominal, and missing memory is read from
//! `/proc/meminfo` by the monitor. Unknown fields, values out of range, a missing file and a
//! half-written (truncated) file are errors: the monitor keeps the last good state and reports
//! the error. Hosts should write a temporary file and rename it over this one.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{DeviceError, PowerSource, RawReading, Thermal};

/// Larger files are refused: the snapshot is a few dozen bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024;
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSnapshot {
    battery: Option<f32>,
    charging: Option<bool>,
    power_saver: Option<bool>,
    /// A string, parsed case-insensitively.
    thermal: Option<String>,
    temperature_c: Option<f32>,
    mem_available_mb: Option<u64>,
    mem_total_mb: Option<u64>,
}

impl FileSource {
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses one snapshot; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &[u8]) -> Result<RawReading, DeviceError> {
        let snap: HostSnapshot = serde_json::from_slice(text).map_err(|e| DeviceError::parse(path, e.to_string()))?;
        if let Some(b) = snap.battery
            && !(0.0..=1.0).contains(&b)
        {
            return Err(DeviceError::parse(path, format!("battery {b} is outside 0..=1")));
        }
        if let Some(t) = snap.temperature_c
            && !(-40.0..=200.0).contains(&t)
        {
            return Err(DeviceError::parse(
                path,
                format!("temperature_c {t} is outside -40..=200"),
            ));
        }
        let thermal = match snap.thermal {
            Some(name) => name
                .parse::<Thermal>()
                .map_err(|e| DeviceError::parse(path, format!("thermal: {e}")))?,
            None => Thermal::Nominal,
        };
        let to_bytes = |field: &str, mb: Option<u64>| -> Result<Option<u64>, DeviceError> {
            mb.map(|mb| {
                mb.checked_mul(MIB)
                    .ok_or_else(|| DeviceError::parse(path, format!("{field} is too large")))
            })
            .transpose()
        };
        let mem_available = to_bytes("mem_available_mb", snap.mem_available_mb)?;
        let mem_total = to_bytes("mem_total_mb", snap.mem_total_mb)?;
        if let (Some(a), Some(t)) = (mem_available, mem_total)
            && a > t
        {
            return Err(DeviceError::parse(path, "mem_available_mb exceeds mem_total_mb"));
        }
        Ok(RawReading {
            battery: snap.battery,
            charging: snap.charging.unwrap_or(snap.battery.is_none()),
            power_saver: snap.power_saver.unwrap_or(false),
            thermal,
            zones: Vec::new(),
            temperature_c: snap.temperature_c,
            mem_available,
            mem_total,
        })
    }
}

impl PowerSource for FileSource {
    fn read(&self) -> Result<RawReading, DeviceError> {
        let file = File::open(&self.path).map_err(|e| DeviceError::io(&self.path, &e))?;
        let mut text = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| DeviceError::io(&self.path, &e))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(DeviceError::parse(
                &self.path,
                format!("larger than {MAX_FILE_BYTES} bytes"),
            ));
        }
        Self::parse(&self.path, &text)
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> Result<RawReading, DeviceError> {
        FileSource::parse(Path::new("state.json"), text.as_bytes())
    }

    #[test]
    fn full_snapshot() {
        let r = parse(
            r#"{"battery": 0.42, "charging": false, "power_saver": true, "thermal": "serious",
                "temperature_c": 41.5, "mem_available_mb": 1234, "mem_total_mb": 4096}"#,
        )
        .unwrap();
        assert_eq!(r.battery, Some(0.42));
        assert!(!r.charging && r.power_saver);
        assert_eq!(r.thermal, Thermal::Serious);
        assert_eq!(r.temperature_c, Some(41.5));
        assert_eq!(r.mem_available, Some(1234 * MIB));
        assert_eq!(r.mem_total, Some(4096 * MIB));
    }

    #[test]
    fn missing_fields_mean_unknown() {
        let empty = parse("{}").unwrap();
        assert_eq!(empty, RawReading::no_battery());
        let battery_only = parse(r#"{"battery": 0.9, "thermal": "Fair"}"#).unwrap();
        assert!(
            !battery_only.charging,
            "a battery with no charging flag is taken as discharging"
        );
        assert_eq!(battery_only.thermal, Thermal::Fair);
        assert_eq!(battery_only.mem_available, None);
        assert_eq!(parse(r#"{"battery": null}"#).unwrap().battery, None);
    }

    #[test]
    fn bad_snapshots_are_errors_naming_the_problem() {
        let cases = [
            (r#"{"battery": 0.42, "charg"#, "EOF"),
            ("", "EOF"),
            ("not json", "expected"),
            (r#"{"battery": 42}"#, "outside 0..=1"),
            (r#"{"battery": "high"}"#, "invalid type"),
            (r#"{"thermal": "warm"}"#, "unknown thermal level"),
            (r#"{"batery": 0.5}"#, "unknown field"),
            (r#"{"mem_available_mb": 10, "mem_total_mb": 5}"#, "exceeds"),
            (r#"{"mem_available_mb": 18446744073709551615}"#, "too large"),
            (r#"{"temperature_c": 900}"#, "outside"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, DeviceError::Parse { .. }), "{text}: {err}");
            assert!(err.to_string().contains(want), "{text}: {err}");
            assert!(err.to_string().contains("state.json"), "{err}");
        }
    }

    #[test]
    fn reads_files_and_refuses_missing_or_huge_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let source = FileSource::new(&path);
        assert!(matches!(source.read(), Err(DeviceError::Io { .. })));
        std::fs::write(&path, r#"{"battery": 0.5}"#).unwrap();
        assert_eq!(source.read().unwrap().battery, Some(0.5));
        std::fs::write(&path, vec![b' '; 70 * 1024]).unwrap();
        assert!(source.read().unwrap_err().to_string().contains("larger than"));
    }
}
