//! CPU time of a process from `/proc/PID/stat` (user + system, all
//! threads): the figure that carries over between machines.

use std::time::Duration;

/// Clock ticks per second in `/proc/PID/stat`: USER_HZ, fixed at 100 by the
/// Linux ABI on every architecture Tandem targets.
const USER_HZ: u64 = 100;

/// utime + stime of `pid` ("self" for this process); `None` when the
/// process is gone or the file is not as expected.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The command name (field 2) may hold spaces and parentheses: fields are
/// counted after its closing parenthesis. utime and stime are fields 14 and
/// 15, so the 12th and 13th after the name.
fn parse_stat(text: &str) -> Option<Duration> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_stat_line() {
        let line = "4242 (tandem (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 31 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(Duration::from_millis(2810)));
        assert!(cpu_time("self").is_some());
        assert_eq!(parse_stat("garbage"), None);
    }
}
