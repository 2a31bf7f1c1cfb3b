"""Summarises bench/hybrid.sh's JSON lines as Markdown tables."""

import json
import statistics
import sys
from collections import defaultdict

MOCK_CUT_PAUSE_MS = 20.0  # the mock waits this long after the last chunk before it closes


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def verdict(ok):
    return "met" if ok else "MISSED"


def main(path, cut):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    out, targets = [], []

    fo = [r for r in rows if r["kind"] == "failover"]
    if fo:
        out.append(f"Failover gap (cloud cut after {cut} chunks, local continues), medians:")
        out.append("")
        out.append("| prompt | runs | handed over after content | gap ms (max) | gap minus mock's 20 ms pause | next local chunk gap ms |")
        out.append("|---|---|---|---|---|---|")
        for arm in ("short", "long"):
            rs = [r for r in fo if r["arm"] == arm]
            if not rs:
                continue
            handed = sum(1 for r in rs if any(h.get("after_content") and h.get("to") == "local" for h in r["handovers"]))
            gaps = [r.get("gap_ms") for r in rs if r.get("gap_ms") is not None]
            g = med(gaps)
            out.append(f"| {arm} | {len(rs)} | {handed} | {g:.1f} ({max(gaps) if gaps else float('nan'):.1f}) | "
                       f"{g - MOCK_CUT_PAUSE_MS:.1f} | {med(r.get('next_gap_ms') for r in rs):.1f} |")
            targets.append(f"- failover gap, {arm} prompt: {g:.0f} ms median, {max(gaps) if gaps else float('nan'):.0f} ms worst "
                           f"(<= 300 ms): {verdict(bool(gaps) and max(gaps) <= 300)}")
        bad = [r for r in fo if not r["ok"]]
        if bad:
            out.append(f"\n{len(bad)} failover run(s) did not end properly.")
        out.append("")

    cas = defaultdict(dict)
    for r in rows:
        if r["kind"] == "cascade":
            cas[r["round"]][r["arm"]] = r
    pairs = [v for v in cas.values() if len(v) == 2]
    if pairs:
        kept = [p for p in pairs if not p["cascade"]["handovers"]]
        esc = [p for p in pairs if p["cascade"]["handovers"]]
        out.append(f"Cascade against plain local, {len(pairs)} interleaved rounds ({len(esc)} escalated to the cloud):")
        out.append("")
        out.append("| | time to first token ms (median) | added ms (median of pairs) | token gap after the 9th, ms |")
        out.append("|---|---|---|---|")
        out.append(f"| plain local | {med(p['local']['ttft_ms'] for p in pairs):.1f} | | "
                   f"{med(p['local'].get('gap_med_ms') for p in pairs):.1f} |")
        if kept:
            add = med(p["cascade"]["ttft_ms"] - p["local"]["ttft_ms"] for p in kept)
            out.append(f"| cascade, kept local ({len(kept)}) | {med(p['cascade']['ttft_ms'] for p in kept):.1f} | {add:+.1f} | "
                       f"{med(p['cascade'].get('gap_med_ms') for p in kept):.1f} |")
            targets.append(f"- cascade adds {add:.0f} ms to the first token when the local answer is kept")
        if esc:
            add = med(p["cascade"]["ttft_ms"] - p["local"]["ttft_ms"] for p in esc)
            out.append(f"| cascade, escalated ({len(esc)}) | {med(p['cascade']['ttft_ms'] for p in esc):.1f} | {add:+.1f} | |")
        out.append("")

    ver = next((r for r in rows if r["kind"] == "redact-verify"), None)
    red = defaultdict(dict)
    for r in rows:
        if r["kind"] == "redact":
            red[r["round"]][r["arm"]] = r
    rp = [v for v in red.values() if len(v) == 2]
    if rp:
        out.append(f"Redact-then-cloud against plain cloud, same prompt, streamed, one at a time, {len(rp)} interleaved rounds:")
        out.append("")
        out.append("| | requests | first token p50 ms | last byte p50 / p99 ms | tandem CPU µs/request |")
        out.append("|---|---|---|---|---|")
        for arm in ("plain", "redact"):
            out.append(f"| {arm} | {sum(p[arm]['requests'] for p in rp)} | {med(p[arm]['first_p50'] for p in rp):.3f} | "
                       f"{med(p[arm]['last_p50'] for p in rp):.3f} / {med(p[arm]['last_p99'] for p in rp):.3f} | "
                       f"{med(p[arm]['tandem_cpu_us_per_req'] for p in rp):.0f} |")
        d_first = med(p["redact"]["first_p50"] - p["plain"]["first_p50"] for p in rp)
        d_last = med(p["redact"]["last_p50"] - p["plain"]["last_p50"] for p in rp)
        d_cpu = med(p["redact"]["tandem_cpu_us_per_req"] - p["plain"]["tandem_cpu_us_per_req"] for p in rp)
        out.append(f"| redaction's cost | | {d_first * 1000:+.0f} µs | {d_last * 1000:+.0f} µs | {d_cpu:+.0f} |")
        out.append("")
        targets.append(f"- redaction round trip through Tandem: {d_last * 1000:+.0f} µs per request at p50 (last byte), "
                       f"{d_cpu:+.0f} µs of tandem CPU")
    if ver:
        out.append(f"Redaction check: entities {ver['entities']}; e-mail reached the cloud: {ver['email_left_device']}; "
                   f"name reached the cloud: {ver['name_left_device']}; answer restored: {ver['answer_restored']}")
        out.append("")
    crit = next((r for r in rows if r["kind"] == "criterion"), None)
    if crit and crit["median"]:
        out.append("cargo bench -p redact (criterion medians): " + ", ".join(f"{k} {v}" for k, v in crit["median"].items()))
        out.append("")
    out.append("Targets:")
    out.extend(targets)
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
