//! `MemInfo`: available and total memory from `/proc/meminfo` (path injectable for tests).

use std::fs;
use std::path::{Path, PathBuf};

use crate::DeviceError;

/// Bytes of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `MemAvailable`: what can be allocated without swapping. Kernels before 3.14 lack it; then
    /// `MemFree + Buffers + Cached`, which overestimates a little.
    pub available: u64,
    pub total: u64,
}

#[derive(Debug, Clone)]
pub struct MemInfo {
    path: PathBuf,
}

impl MemInfo {
    pub fn new(path: impl Into<PathBuf>) -> MemInfo {
        MemInfo { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&self) -> Result<Memory, DeviceError> {
        let text = fs::read_to_string(&self.path).map_err(|e| DeviceError::io(&self.path, &e))?;
        parse_meminfo(&text).map_err(|m| DeviceError::parse(&self.path, m))
    }
}

impl Default for MemInfo {
    fn default() -> Self {
        MemInfo::new("/proc/meminfo")
    }
}

/// Parses `/proc/meminfo` text (`Key:   123 kB` lines; values in KiB).
pub fn parse_meminfo(text: &str) -> Result<Memory, String> {
    let mut total = None;
    let mut available = None;
    let (mut free, mut buffers, mut cached) = (None, None, None);
    for (n, line) in text.lines().enumerate() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut free,
            "Buffers" => &mut buffers,
            "Cached" => &mut cached,
            _ => continue,
        };
        *slot = Some(parse_value(rest).map_err(|m| format!("line {}: {key}: {m}", n + 1))?);
    }
    let total = total.ok_or("no MemTotal line")?;
    let available = match (available, free) {
        (Some(a), _) => a,
        (None, Some(f)) => f
            .saturating_add(buffers.unwrap_or(0))
            .saturating_add(cached.unwrap_or(0)),
        (None, None) => return Err("neither MemAvailable nor MemFree".to_owned()),
    };
    Ok(Memory {
        available: available.min(total),
        total,
    })
}

fn parse_value(rest: &str) -> Result<u64, String> {
    let mut parts = rest.split_whitespace();
    let number: u64 = parts
        .next()
        .ok_or("no value")?
        .parse()
        .map_err(|e| format!("not a number: {e}"))?;
    let scale = match parts.next() {
        Some(u) if u.eq_ignore_ascii_case("kB") => 1024,
        None => 1,
        Some(other) => return Err(format!("unknown unit {other:?}")),
    };
    number.checked_mul(scale).ok_or_else(|| "value too large".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn modern_kernel() {
        let text = "MemTotal:       24684092 kB\nMemFree:        20715828 kB\n\
                    MemAvailable:   22861104 kB\nBuffers:           21948 kB\nCached:          2276992 kB\n\
                    HugePages_Total:       0\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total, 24_684_092 * 1024);
        assert_eq!(m.available, 22_861_104 * 1024);
    }

    #[test]
    fn old_kernel_estimates_available() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n";
        assert_eq!(parse_meminfo(text).unwrap().available, 420 * 1024);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse_meminfo("MemAvailable: 1 kB\n").unwrap_err().contains("MemTotal"));
        assert!(parse_meminfo("MemTotal: 10 kB\n").unwrap_err().contains("MemAvailable"));
        let bad = parse_meminfo("MemTotal: ten kB\nMemAvailable: 1 kB\n").unwrap_err();
        assert!(bad.contains("line 1") && bad.contains("MemTotal"), "{bad}");
        assert!(
            parse_meminfo("MemTotal: 10 MB\nMemAvailable: 1 kB")
                .unwrap_err()
                .contains("unit")
        );
        assert!(parse_meminfo("").is_err());
    }

    #[test]
    fn reads_a_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meminfo");
        std::fs::write(&path, "MemTotal: 2048 kB\nMemAvailable: 1024 kB\n").unwrap();
        let m = MemInfo::new(&path).read().unwrap();
        assert_eq!((m.available, m.total), (1024 * 1024, 2048 * 1024));
        let err = MemInfo::new(dir.path().join("absent")).read().unwrap_err();
        assert!(matches!(err, DeviceError::Io { .. }), "{err}");
    }
}
