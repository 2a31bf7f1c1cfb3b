//! The `PowerSource` trait every platform reader implements, and the two trivial sources:
//! `FakeSource` (set from tests at runtime) and `NoSource` (`source = "none"`).

use std::sync::{Arc, Mutex, PoisonError};

use crate::{DeviceError, RawReading};

/// Reads the device's power and thermal state once. Implementations do blocking file or OS IO;
/// the monitor calls them from `spawn_blocking`, never on the async workers.
pub trait PowerSource: Send + Sync {
    fn read(&self) -> Result<RawReading, DeviceError>;

    /// Short name reported in `DeviceState::source`.
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// A source whose next reading (or error) tests set at runtime; clones share the value.
#[derive(Debug, Clone)]
pub struct FakeSource {
    next: Arc<Mutex<Result<RawReading, DeviceError>>>,
}

impl FakeSource {
    pub fn new(reading: RawReading) -> FakeSource {
        FakeSource {
            next: Arc::new(Mutex::new(Ok(reading))),
        }
    }

    /// Every following `read` returns `reading`.
    pub fn set(&self, reading: RawReading) {
        *self.lock() = Ok(reading);
    }

    /// Every following `read` fails with `error`.
    pub fn fail(&self, error: DeviceError) {
        *self.lock() = Err(error);
    }

    /// Changes the pending reading in place (e.g. only the temperature).
    pub fn update(&self, change: impl FnOnce(&mut RawReading)) {
        let mut guard = self.lock();
        if let Ok(reading) = guard.as_mut() {
            change(reading);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Result<RawReading, DeviceError>> {
        // A test that panicked while holding the lock left a whole value behind; keep using it.
        self.next.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for FakeSource {
    fn default() -> Self {
        FakeSource::new(RawReading::no_battery())
    }
}

impl PowerSource for FakeSource {
    fn read(&self) -> Result<RawReading, DeviceError> {
        self.lock().clone()
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

/// `source = "none"`: no power or thermal information; reports a cool, mains-powered device
/// (memory still comes from `/proc/meminfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSource;

impl PowerSource for NoSource {
    fn read(&self) -> Result<RawReading, DeviceError> {
        Ok(RawReading::no_battery())
    }

    fn name(&self) -> &'static str {
        "none"
    }
}
