//! `DeviceConfig`: the `[device]` table the gateway embeds, validated into `DeviceSettings`,
//! and the choice of source (`auto` resolved against the filesystem).
//!
//! ```toml
//! [device]
//! source = "auto"          # auto | sysfs | file | battery-crate | none
//! sysfs_root = "/sys"
//! file = "/run/tandem/device.json"   # only with source = "file"
//! meminfo = "/proc/meminfo"
//! refresh_ms = 5000
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{BatteryCrateSource, FileSource, NoSource, PowerSource, SysfsSource};

/// Refreshing faster than this costs CPU for no routing benefit.
pub const MIN_REFRESH_MS: u64 = 100;
/// Slower than this and a hot or drained device goes unnoticed too long.
pub const MAX_REFRESH_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// sysfs on Linux and Android when `<sysfs_root>/class/power_supply` exists, else
    /// starship-battery.
    #[default]
    Auto,
    Sysfs,
    /// A JSON snapshot a host app writes (see `FileSource`).
    File,
    BatteryCrate,
    /// No power or thermal data: a cool, mains-powered device.
    None,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Auto => "auto",
            SourceKind::Sysfs => "sysfs",
            SourceKind::File => "file",
            SourceKind::BatteryCrate => "battery-crate",
            SourceKind::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    #[serde(default)]
    pub source: SourceKind,
    /// Where sysfs is mounted; tests and containers point it elsewhere.
    #[serde(default = "default_sysfs_root")]
    pub sysfs_root: PathBuf,
    /// The host app's JSON snapshot; required with, and only allowed with, `source = "file"`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default = "default_meminfo")]
    pub meminfo: PathBuf,
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
}

fn default_sysfs_root() -> PathBuf {
    PathBuf::from("/sys")
}

fn default_meminfo() -> PathBuf {
    PathBuf::from("/proc/meminfo")
}

fn default_refresh_ms() -> u64 {
    5000
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            source: SourceKind::Auto,
            sysfs_root: default_sysfs_root(),
            file: None,
            meminfo: default_meminfo(),
            refresh_ms: default_refresh_ms(),
        }
    }
}

/// A field of `DeviceConfig` that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DeviceConfigError {
    /// The field's name inside the device table (`refresh_ms`, `file`, …).
    pub field: &'static str,
    pub message: String,
}

/// Which source to read, with everything it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChoice {
    /// Decided at `resolve()` time from `sysfs_root`.
    Auto {
        sysfs_root: PathBuf,
    },
    Sysfs {
        root: PathBuf,
    },
    File {
        path: PathBuf,
    },
    BatteryCrate,
    None,
}

/// A validated `DeviceConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSettings {
    pub source: SourceChoice,
    pub meminfo: PathBuf,
    pub refresh: Duration,
}

impl DeviceConfig {
    /// Makes relative `sysfs_root`, `file` and `meminfo` relative to `base` (the directory of
    /// the config file that named them), so the daemon's working directory does not matter.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.sysfs_root);
        resolve(&mut self.meminfo);
        if let Some(file) = &mut self.file {
            resolve(file);
        }
    }

    pub fn validate(&self) -> Result<DeviceSettings, DeviceConfigError> {
        let err = |field, message: String| DeviceConfigError { field, message };
        if !(MIN_REFRESH_MS..=MAX_REFRESH_MS).contains(&self.refresh_ms) {
            return Err(err(
                "refresh_ms",
                format!("{} is outside {MIN_REFRESH_MS}..={MAX_REFRESH_MS}", self.refresh_ms),
            ));
        }
        if self.meminfo.as_os_str().is_empty() {
            return Err(err("meminfo", "must not be empty".to_owned()));
        }
        if self.sysfs_root.as_os_str().is_empty() {
            return Err(err("sysfs_root", "must not be empty".to_owned()));
        }
        let file = self.file.as_ref().filter(|f| !f.as_os_str().is_empty());
        if self.file.is_some() && file.is_none() {
            return Err(err("file", "must not be empty".to_owned()));
        }
        let source = match (self.source, file) {
            (SourceKind::File, Some(path)) => SourceChoice::File { path: path.clone() },
            (SourceKind::File, None) => return Err(err("file", "required when source = \"file\"".to_owned())),
            (other, Some(_)) => {
                return Err(err(
                    "file",
                    format!("only used with source = \"file\", but source = \"{}\"", other.as_str()),
                ));
            }
            (SourceKind::Auto, None) => SourceChoice::Auto {
                sysfs_root: self.sysfs_root.clone(),
            },
            (SourceKind::Sysfs, None) => SourceChoice::Sysfs {
                root: self.sysfs_root.clone(),
            },
            (SourceKind::BatteryCrate, None) => SourceChoice::BatteryCrate,
            (SourceKind::None, None) => SourceChoice::None,
        };
        Ok(DeviceSettings {
            source,
            meminfo: self.meminfo.clone(),
            refresh: Duration::from_millis(self.refresh_ms),
        })
    }
}

impl SourceChoice {
    /// Resolves `Auto`: sysfs on Linux and Android when `<sysfs_root>/class/power_supply`
    /// exists, starship-battery elsewhere. Other choices are returned unchanged.
    pub fn resolve(&self) -> SourceChoice {
        match self {
            SourceChoice::Auto { sysfs_root } => {
                Self::resolve_auto(sysfs_root, cfg!(any(target_os = "linux", target_os = "android")))
            }
            other => other.clone(),
        }
    }

    /// `resolve` with the platform passed in, so both branches are testable anywhere.
    pub fn resolve_auto(sysfs_root: &Path, linux_like: bool) -> SourceChoice {
        if linux_like && SysfsSource::has_power_supply_class(sysfs_root) {
            SourceChoice::Sysfs {
                root: sysfs_root.to_owned(),
            }
        } else {
            SourceChoice::BatteryCrate
        }
    }

    /// Builds the source (resolving `Auto` first).
    pub fn build(&self) -> Arc<dyn PowerSource> {
        match self.resolve() {
            SourceChoice::Sysfs { root } => Arc::new(SysfsSource::new(root)),
            SourceChoice::File { path } => Arc::new(FileSource::new(path)),
            SourceChoice::BatteryCrate | SourceChoice::Auto { .. } => Arc::new(BatteryCrateSource::new()),
            SourceChoice::None => Arc::new(NoSource),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> Result<DeviceConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg, DeviceConfig::default());
        let s = cfg.validate().unwrap();
        assert_eq!(
            s.source,
            SourceChoice::Auto {
                sysfs_root: "/sys".into()
            }
        );
        assert_eq!(s.meminfo, PathBuf::from("/proc/meminfo"));
        assert_eq!(s.refresh, Duration::from_secs(5));
    }

    #[test]
    fn every_source_kind_parses() {
        for (name, want) in [
            ("sysfs", SourceKind::Sysfs),
            ("battery-crate", SourceKind::BatteryCrate),
            ("none", SourceKind::None),
            ("auto", SourceKind::Auto),
        ] {
            let cfg = parse(&format!("source = \"{name}\"")).unwrap();
            assert_eq!(cfg.source, want);
            assert_eq!(want.as_str(), name);
            cfg.validate().unwrap();
        }
        let file = parse("source = \"file\"\nfile = \"/run/state.json\"\nrefresh_ms = 250").unwrap();
        let s = file.validate().unwrap();
        assert_eq!(
            s.source,
            SourceChoice::File {
                path: "/run/state.json".into()
            }
        );
        assert_eq!(s.refresh, Duration::from_millis(250));
    }

    #[test]
    fn unknown_fields_and_values_are_refused() {
        assert!(
            parse("sauce = \"sysfs\"")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
        assert!(
            parse("source = \"upower\"")
                .unwrap_err()
                .to_string()
                .contains("unknown variant")
        );
        assert!(parse("refresh_ms = -1").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            ("refresh_ms = 10", "refresh_ms"),
            ("refresh_ms = 99999999", "refresh_ms"),
            ("source = \"file\"", "file"),
            ("source = \"sysfs\"\nfile = \"/x.json\"", "file"),
            ("source = \"file\"\nfile = \"\"", "file"),
            ("meminfo = \"\"", "meminfo"),
            ("sysfs_root = \"\"", "sysfs_root"),
        ];
        for (text, field) in cases {
            let err = parse(text).unwrap().validate().unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
            assert!(err.to_string().starts_with(field));
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let mut cfg = parse("source = \"file\"\nfile = \"run/device.json\"\nsysfs_root = \"fixtures/sys\"").unwrap();
        cfg.resolve_paths(Path::new("/etc/tandem"));
        assert_eq!(cfg.file, Some(PathBuf::from("/etc/tandem/run/device.json")));
        assert_eq!(cfg.sysfs_root, PathBuf::from("/etc/tandem/fixtures/sys"));
        assert_eq!(cfg.meminfo, PathBuf::from("/proc/meminfo"), "absolute paths stay");
    }

    #[test]
    fn auto_prefers_sysfs_only_where_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SourceChoice::resolve_auto(dir.path(), true), SourceChoice::BatteryCrate);
        std::fs::create_dir_all(dir.path().join("class/power_supply")).unwrap();
        assert_eq!(
            SourceChoice::resolve_auto(dir.path(), true),
            SourceChoice::Sysfs {
                root: dir.path().to_owned()
            }
        );
        assert_eq!(
            SourceChoice::resolve_auto(dir.path(), false),
            SourceChoice::BatteryCrate
        );
        let built = SourceChoice::Auto {
            sysfs_root: dir.path().to_owned(),
        }
        .build();
        let want = if cfg!(any(target_os = "linux", target_os = "android")) {
            "sysfs"
        } else {
            "battery-crate"
        };
        assert_eq!(built.name(), want);
        assert_eq!(SourceChoice::None.build().name(), "none");
    }
}
