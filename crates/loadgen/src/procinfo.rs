//! What a process holds, from `/proc` (Linux): resident memory, open file
//! descriptors and its TCP sockets by state, for the leak checks of
//! `bench/faults.sh`.
//!
//! TCP sockets are found the way `ss -p` finds them: the inodes behind the
//! process's `socket:[N]` descriptors, looked up in `/proc/PID/net/tcp` and
//! `tcp6` (the tables of the process's network namespace).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

/// One look at a process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub rss_kib: u64,
    /// Peak resident memory (VmHWM).
    pub hwm_kib: u64,
    /// The anonymous part of the RSS (heap, stacks), and the part backed
    /// by files (the binary, a memory-mapped model).
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub threads: u64,
    pub fds: u64,
    /// Descriptors that are sockets of any kind.
    pub sockets: u64,
    /// The process's TCP sockets.
    pub tcp: Vec<TcpSocket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub local_port: u16,
    pub remote_port: u16,
    /// The kernel's state number (1 established, 10 listen, …).
    pub state: u8,
    pub inode: u64,
}

const ESTABLISHED: u8 = 1;
const LISTEN: u8 = 10;

/// `/proc/net/tcp` state numbers (include/net/tcp_states.h).
pub fn state_name(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        7 => "close",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        _ => "other",
    }
}

/// Reads everything for `pid` ("self" for this process). A process that
/// is gone, or a `/proc` file that is not readable, is an error.
pub fn snapshot(pid: &str) -> anyhow::Result<Snapshot> {
    use anyhow::Context;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let mut inodes = HashSet::new();
    let mut fds = 0;
    let mut sockets = 0;
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("listing /proc/{pid}/fd"))?;
    for entry in dir {
        let Ok(entry) = entry else { continue };
        fds += 1;
        // A descriptor closed between the listing and here has no link.
        if let Ok(target) = std::fs::read_link(entry.path())
            && let Some(inode) = socket_inode(&target.to_string_lossy())
        {
            sockets += 1;
            inodes.insert(inode);
        }
    }
    let mut tcp = Vec::new();
    for table in ["tcp", "tcp6"] {
        // tcp6 is missing when IPv6 is off.
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            tcp.extend(parse_tcp_table(&text).into_iter().filter(|s| inodes.contains(&s.inode)));
        }
    }
    Ok(Snapshot {
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        rss_anon_kib: status_kib(&status, "RssAnon:").unwrap_or(0),
        rss_file_kib: status_kib(&status, "RssFile:").unwrap_or(0),
        threads: status_kib(&status, "Threads:").unwrap_or(0),
        fds,
        sockets,
        tcp,
    })
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The number after `key` in `/proc/PID/status` (kB for the Vm lines).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The rows of `/proc/net/tcp` or `tcp6`:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …`,
/// addresses as `HEXADDR:HEXPORT`, the state in hex.
fn parse_tcp_table(text: &str) -> Vec<TcpSocket> {
    let port = |addr: &str| u16::from_str_radix(addr.rsplit_once(':')?.1, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            Some(TcpSocket {
                local_port: port(f[1])?,
                remote_port: port(f[2])?,
                state: u8::from_str_radix(f[3], 16).ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

impl Snapshot {
    /// Established connections accepted on one of the process's listening
    /// ports (clients), and the others (connections it opened), the latter
    /// by remote port.
    pub fn established(&self) -> (u64, BTreeMap<u16, u64>) {
        let listening: HashSet<u16> = self
            .tcp
            .iter()
            .filter(|s| s.state == LISTEN)
            .map(|s| s.local_port)
            .collect();
        let mut inbound = 0;
        let mut outbound = BTreeMap::new();
        for s in self.tcp.iter().filter(|s| s.state == ESTABLISHED) {
            if listening.contains(&s.local_port) {
                inbound += 1;
            } else {
                *outbound.entry(s.remote_port).or_insert(0) += 1;
            }
        }
        (inbound, outbound)
    }

    pub fn to_json(&self) -> Value {
        let mut states: BTreeMap<&str, u64> = BTreeMap::new();
        for s in &self.tcp {
            *states.entry(state_name(s.state)).or_insert(0) += 1;
        }
        let (inbound, outbound) = self.established();
        let outbound: BTreeMap<String, u64> = outbound.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
        json!({
            "rss_kib": self.rss_kib,
            "hwm_kib": self.hwm_kib,
            "rss_anon_kib": self.rss_anon_kib,
            "rss_file_kib": self.rss_file_kib,
            "threads": self.threads,
            "fds": self.fds,
            "sockets": self.sockets,
            "tcp_states": states,
            "tcp_established": states.get("established").copied().unwrap_or(0),
            "tcp_established_inbound": inbound,
            "tcp_established_outbound_by_remote_port": outbound,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0 20 4 30 10 -1\n\
   2: 0100007F:C350 0100007F:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 4244 1 0 20 4 30 10 -1\n\
   3: garbage\n";
        let rows = parse_tcp_table(table);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            TcpSocket {
                local_port: 8080,
                remote_port: 54321,
                state: 1,
                inode: 4243
            }
        );
        let snap = Snapshot {
            tcp: rows,
            ..Snapshot::default()
        };
        let (inbound, outbound) = snap.established();
        assert_eq!(inbound, 1);
        assert_eq!(outbound, BTreeMap::from([(443, 1)]));
        assert_eq!(socket_inode("socket:[4243]"), Some(4243));
        assert_eq!(socket_inode("pipe:[4243]"), None);
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "Threads:"), Some(3));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    /// A listener and both ends of one connection, all in this process:
    /// the snapshot finds them and tells inbound from outbound.
    #[test]
    fn finds_this_process_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        let after = snapshot("self").unwrap();
        // Other tests run beside this one: only this test's sockets are exact.
        assert!(after.sockets >= 3 && after.fds >= after.sockets, "{after:?}");
        let mine = |s: &Snapshot| {
            s.tcp
                .iter()
                .filter(|t| t.local_port == port || t.remote_port == port)
                .map(|t| (t.local_port == port, t.state))
                .collect::<Vec<_>>()
        };
        let mut found = mine(&after);
        found.sort_unstable();
        // Listener, the accepted end (local port = the listener's), the client end.
        assert_eq!(found, vec![(false, ESTABLISHED), (true, ESTABLISHED), (true, LISTEN)]);
        let (inbound, outbound) = after.established();
        assert!(inbound >= 1);
        assert_eq!(outbound.get(&port), Some(&1));
        assert!(after.rss_kib > 0 && after.hwm_kib >= after.rss_kib);
        assert!(after.rss_anon_kib > 0 && after.rss_anon_kib + after.rss_file_kib <= after.rss_kib);
        drop((client, server));
    }
}
