"""Summarises bench/gateway.sh's JSON lines as a Markdown table.

Rounds are paired (direct and tandem of the same round ran back to back),
so the added latency is the median over rounds of the per-round difference,
and the throughput ratio the median of the per-round ratios; each arm's own
figures are medians over its rounds. Where the run has a `relay` arm (a
byte relay in front of the same mock), its added latency is shown too: the
price of one more process on the path on this machine, which any gateway
pays before doing any work.
"""

import json
import statistics
import sys
from collections import defaultdict


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def verdict(ok):
    return "met" if ok else "MISSED"


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    groups = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        groups[(r["mode"], r["c"])][r["round"]][r["arm"]] = r

    out = []
    relay = any(r["arm"] == "relay" for r in rows)
    head = "| mode | conc | metric | direct p50 / p90 / p99 ms | tandem p50 / p90 / p99 ms | added p50 / p99 ms |"
    rule = "|---|---|---|---|---|---|"
    if relay:
        head += " relay added p50 / p99 ms | tandem beyond relay p50 ms |"
        rule += "---|---|"
    out.append(head)
    out.append(rule)
    tput = []
    targets = []
    order = {"json": 0, "stream": 1, "json-paced": 2, "stream-paced": 3, "json-open": 4, "stream-open": 5}
    for (mode, c), rounds in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][0], kv[0][1])):
        pairs = [v for v in rounds.values() if "direct" in v and "tandem" in v]
        if not pairs:
            continue
        metrics = [("last", "to last byte")] if mode.startswith("json") else [("first", "to first token"), ("last", "to last byte")]
        for key, name in metrics:
            d = [med(p["direct"][f"{key}_{q}"] for p in pairs) for q in ("p50", "p90", "p99")]
            t = [med(p["tandem"][f"{key}_{q}"] for p in pairs) for q in ("p50", "p90", "p99")]
            a50 = med(p["tandem"][f"{key}_p50"] - p["direct"][f"{key}_p50"] for p in pairs)
            a99 = med(p["tandem"][f"{key}_p99"] - p["direct"][f"{key}_p99"] for p in pairs)
            line = (
                f"| {mode} | {c} | {name} | {d[0]:.3f} / {d[1]:.3f} / {d[2]:.3f} | "
                f"{t[0]:.3f} / {t[1]:.3f} / {t[2]:.3f} | {a50:+.3f} / {a99:+.3f} |"
            )
            if relay:
                rp = [p for p in pairs if "relay" in p]
                r50 = med(p["relay"][f"{key}_p50"] - p["direct"][f"{key}_p50"] for p in rp)
                r99 = med(p["relay"][f"{key}_p99"] - p["direct"][f"{key}_p99"] for p in rp)
                b50 = med(p["tandem"][f"{key}_p50"] - p["relay"][f"{key}_p50"] for p in rp)
                line += f" {r50:+.3f} / {r99:+.3f} | {b50:+.3f} |"
            out.append(line)
            if c == 16 and key == ("last" if mode.startswith("json") else "first"):
                targets.append(f"- {mode}, concurrency 16, added p50 {a50:.3f} ms (< 0.2): {verdict(a50 < 0.2)}; "
                               f"added p99 {a99:.3f} ms (< 1): {verdict(a99 < 1.0)}")
        rps_d = med(p["direct"]["rps"] for p in pairs)
        rps_t = med(p["tandem"]["rps"] for p in pairs)
        ratio = med(p["tandem"]["rps"] / p["direct"]["rps"] for p in pairs if p["direct"]["rps"] > 0)
        cpu_t = med(p["tandem"]["tandem_cpu_ms"] * 1000 / p["tandem"]["requests"] for p in pairs if p["tandem"]["requests"])
        mock_d = med(p["direct"]["mock_cpu_ms"] * 1000 / p["direct"]["requests"] for p in pairs if p["direct"]["requests"])
        mock_t = med(p["tandem"]["mock_cpu_ms"] * 1000 / p["tandem"]["requests"] for p in pairs if p["tandem"]["requests"])
        errs = sum(p[a]["errors"] for p in pairs for a in ("direct", "tandem"))
        tput.append(f"| {mode} | {c} | {rps_d:,.0f} | {rps_t:,.0f} | {ratio:.2f} | {cpu_t:.0f} | {mock_d:.0f} / {mock_t:.0f} | {errs} | {len(pairs)} |")
        if c == 16:
            targets.append(f"- {mode}, concurrency 16, throughput through Tandem {ratio:.0%} of direct (>= 90%): {verdict(ratio >= 0.9)}")

    out.append("")
    out.append("| mode | conc | direct req/s | tandem req/s | ratio | tandem CPU µs/req | mock CPU µs/req direct / via | errors | rounds |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    out.extend(tput)
    out.append("")
    out.append("Targets (concurrency 16):")
    out.extend(targets)
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
