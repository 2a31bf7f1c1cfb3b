"""Summarises bench/local.sh's JSON lines as Markdown tables.

Rounds are paired (the direct and the Tandem request of a round ran back to
back with the same prompt): ratios and differences are medians of the
per-round values; each arm's own figures are medians over its rounds.
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


def main(path, omp):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    out = []
    bad = [r for r in rows if r.get("ok") is False]
    speed = defaultdict(dict)
    for r in rows:
        if r["kind"] == "speed":
            speed[r["round"]][r["arm"]] = r
    pairs = [v for v in speed.values() if "direct" in v and "tandem" in v]
    tandem_rss = next((r["peak_rss_bytes"] for r in rows if r["kind"] == "rss"), None)

    out.append(f"Speed, {len(pairs)} interleaved rounds (medians):")
    out.append("")
    out.append("| | direct (llama-cpp-2) | through Tandem (HTTP, SSE) | Tandem / direct |")
    out.append("|---|---|---|---|")

    def row(name, key, fmt, ratio=True, diff=False):
        d = med(p["direct"][key] for p in pairs)
        t = med(p["tandem"][key] for p in pairs)
        if diff:
            rel = f"{med(p['tandem'][key] - p['direct'][key] for p in pairs):+.1f} ms"
        elif ratio:
            rel = f"{med(p['tandem'][key] / p['direct'][key] for p in pairs if p['direct'][key]):.3f}"
        else:
            rel = ""
        out.append(f"| {name} | {fmt.format(d)} | {fmt.format(t)} | {rel} |")

    row("time to first token, ms", "ttft_ms", "{:.1f}", diff=True)
    row("prompt tokens (evaluated)", "evaluated_prompt_tokens", "{:.0f}", ratio=False)
    row("prompt tokens/s (evaluated / TTFT)", "prompt_tps", "{:.1f}")
    row("generated tokens", "gen_tokens", "{:.0f}", ratio=False)
    row("generation tokens/s", "gen_tps", "{:.2f}")
    d_rss = med(p["direct"]["peak_rss_bytes"] for p in pairs)
    out.append(f"| peak RSS, MiB | {d_rss / 2**20:.0f} | {tandem_rss / 2**20 if tandem_rss else float('nan'):.0f} (whole daemon, VmHWM) | |")
    out.append("")
    gen_ratio = med(p["tandem"]["gen_tps"] / p["direct"]["gen_tps"] for p in pairs if p["direct"]["gen_tps"])
    ttft_diff = med(p["tandem"]["ttft_ms"] - p["direct"]["ttft_ms"] for p in pairs)
    own = med(p["direct"].get("prompt_tps_own") for p in pairs)
    out.append(f"(direct_bench's own prompt tokens/s, prompt evaluation alone: {own:.1f})")
    out.append("")

    mt = defaultdict(dict)
    for r in rows:
        if r["kind"] in ("turn2-reuse", "turn2-fresh"):
            mt[r["round"]][r["kind"]] = r
    mpairs = [v for v in mt.values() if len(v) == 2]
    if mpairs:
        out.append(f"Multi-turn follow-up, {len(mpairs)} rounds (medians):")
        out.append("")
        out.append("| | prompt tokens | reused from the KV cache | evaluated | time to first token, ms |")
        out.append("|---|---|---|---|---|")
        for k, name in (("turn2-reuse", "turn 2, same conversation"), ("turn2-fresh", "turn 2, fresh conversation")):
            out.append(
                f"| {name} | {med(p[k]['prompt_tokens'] for p in mpairs):.0f} | "
                f"{med(p[k]['reused_prompt_tokens'] for p in mpairs):.0f} | "
                f"{med(p[k]['evaluated_prompt_tokens'] for p in mpairs):.0f} | {med(p[k]['ttft_ms'] for p in mpairs):.1f} |"
            )
        saving = med(p["turn2-fresh"]["ttft_ms"] - p["turn2-reuse"]["ttft_ms"] for p in mpairs)
        out.append("")
        out.append(f"Prefix reuse saves {saving:.0f} ms of time to first token on the follow-up turn.")
        out.append("")

    busy = defaultdict(dict)
    loads = [r for r in rows if r["kind"] == "busy-load"]
    for r in rows:
        if r["kind"].startswith("busy-") and r["kind"] != "busy-load":
            busy[r["round"]][r["kind"][5:]] = r
    if busy:
        b = list(busy.values())
        out.append(f"Generation while the daemon serves cloud streams, {len(b)} interleaved rounds (medians):")
        out.append("")
        out.append("| | generation tokens/s | / idle (worst round) | TTFT ms | cloud streams/s beside it | tandem CPU, cores (generation included) |")
        out.append("|---|---|---|---|---|---|")
        paced_loads = [x for x in loads if x["label"] == "paced"]
        fast_loads = [x for x in loads if x["label"] == "fast"]
        for k, name, ld in (("idle", "idle", None), ("paced", "16 paced cloud streams", paced_loads),
                            ("fast", "16 unpaced cloud streams", fast_loads)):
            ratios = [r[k]["gen_tps"] / r["idle"]["gen_tps"] for r in b if k in r and r["idle"]["gen_tps"]]
            extra = f"{med(ratios):.2f} ({min(ratios):.2f})" if k != "idle" else ""
            cl = f"{med(x['cloud_rps'] for x in ld):.0f}" if ld else ""
            cores = f"{med(x['tandem_cores'] for x in ld):.2f}" if ld else ""
            out.append(f"| {name} | {med(r[k]['gen_tps'] for r in b if k in r):.2f} | {extra} | "
                       f"{med(r[k]['ttft_ms'] for r in b if k in r):.0f} | {cl} | {cores} |")
        out.append("")
        busy_ratio = {k: med(r[k]["gen_tps"] / r["idle"]["gen_tps"] for r in b if k in r) for k in ("paced", "fast")}
    else:
        busy_ratio = {}

    out.append("Targets:")
    out.append(f"- generation through Tandem {gen_ratio:.1%} of direct (>= 95%): {verdict(gen_ratio >= 0.95)}")
    out.append(f"- time to first token {ttft_diff:+.1f} ms against direct (at most 10 ms slower): {verdict(ttft_diff <= 10)}")
    for k, v in busy_ratio.items():
        out.append(f"- generation beside {k} cloud streams {v:.0%} of idle (>= 80%): {verdict(v >= 0.8)}")
    out.append(f"- tandem ran with OMP_WAIT_POLICY={omp or 'unset'} (set by its own re-exec)")
    if bad:
        out.append(f"- {len(bad)} request(s) did not end properly: {[(r['kind'], r['round']) for r in bad]}")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
