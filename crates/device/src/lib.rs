//! Device signals: battery, charging, power saver, thermal state, available memory.
//!
//! A [`PowerSource`] reads the platform ([`SysfsSource`] on Linux and Android,
//! [`BatteryCrateSource`] on macOS and Windows, [`FileSource`] for a host app's JSON snapshot,
//! [`FakeSource`] in tests, [`NoSource`]); [`MemInfo`] reads `/proc/meminfo`. A
//! [`DeviceMonitor`] refreshes them in the background, smooths the readings ([`Smoother`]: thermal
//! rises at once and falls with hysteresis, battery holds whole-percent steps) and publishes a
//! [`DeviceState`] that the router copies per request.
//!
//! Architecture invariant: only [`DeviceMonitor`] spawns or touches tokio; sources are
//! blocking and synchronous, the smoother is pure.

mod battery_crate;
mod config;
mod error;
mod file;
mod meminfo;
mod monitor;
mod smooth;
mod source;
mod state;
mod sysfs;

pub use battery_crate::BatteryCrateSource;
pub use config::{
    DeviceConfig, DeviceConfigError, DeviceSettings, MAX_REFRESH_MS, MIN_REFRESH_MS, SourceChoice, SourceKind,
};
pub use error::DeviceError;
pub use file::FileSource;
pub use meminfo::{MemInfo, Memory, parse_meminfo};
pub use monitor::{DeviceMonitor, MonitorSettings, MonitorStatus};
pub use smooth::{Smoother, Smoothing};
pub use source::{FakeSource, NoSource, PowerSource};
pub use state::{DeviceState, RawReading, Thermal, ThermalThresholds, ThermalZone, TripKind, UnknownThermal};
pub use sysfs::SysfsSource;
