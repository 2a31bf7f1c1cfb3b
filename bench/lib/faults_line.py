"""One-line progress messages for bench/faults.sh: `look|burst|soak JSON`."""
import json
import sys


def p99(summary):
    return summary["p99"] if summary else None


def main():
    what, d = sys.argv[1], json.loads(sys.argv[2])
    if what == "look":
        print(f"rss {d['rss_kib'] / 1024:.1f} MiB (anon {d['rss_anon_kib'] / 1024:.1f}), fds {d['fds']}, "
              f"tcp established {d['tcp_established']} (inbound {d['tcp_established_inbound']})")
    elif what == "burst":
        lb = d["last_byte_ms"] or {}
        print(f"{d['completed']}/{d['requests']} completed, kinds {d['kinds']}, "
              f"{d['handovers']['requests']} with a handover, last byte p50 {lb.get('p50')} / p99 {lb.get('p99')} ms, "
              f"{d['wall_s']:.1f} s")
    elif d.get("total"):
        print(f"total: {d['completed']}/{d['requests']} completed, kinds {d['kinds']}, "
              f"{d['handovers']['requests']} with a handover, last byte p99 {p99(d['last_byte_ms'])} ms")
    else:
        pr = d.get("proc", {})
        print(f"t={d['t_s']} s: rss {pr.get('rss_kib', 0) / 1024:.1f} MiB, fds {pr.get('fds')}, "
              f"{d['requests']} requests, {d['failed']} failed, last byte p99 {p99(d['last_byte_ms'])} ms")


main()
