//! `DeviceError`: why a source could not be read. The monitor keeps the last good state on any of
//! them, so none is fatal to routing; they are reported through `DeviceMonitor::status` and logs.

use std::io;
use std::path::{Path, PathBuf};

/// Clone-able (messages, not `io::Error`) so the last one can be kept in the monitor's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A file the source needs is missing or unreadable.
    #[error("cannot read {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// A file was read but its content is not what the source expects.
    #[error("bad content in {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// The OS battery API (starship-battery) failed.
    #[error("battery API: {0}")]
    Battery(String),
    /// The monitor's task stopped, or a source panicked while reading.
    #[error("device monitor: {0}")]
    Internal(String),
}

impl DeviceError {
    pub(crate) fn io(path: &Path, err: &io::Error) -> DeviceError {
        DeviceError::Io {
            path: path.to_owned(),
            message: err.to_string(),
        }
    }

    pub(crate) fn parse(path: &Path, message: impl Into<String>) -> DeviceError {
        DeviceError::Parse {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
