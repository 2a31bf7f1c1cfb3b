"""Markdown summary of bench/faults.sh's JSON lines (argument: the .jsonl file)."""
import json
import sys


def mib(kib):
    return kib / 1024


def fmt(x, digits=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def lat(summary, key):
    return fmt(summary[key]) if summary else "–"


def kinds_failed(kinds):
    bad = {k: v for k, v in kinds.items() if k != "completed"}
    return ", ".join(f"{k} {v}" for k, v in sorted(bad.items())) or "none"


def mock_delta(before, after):
    """What each mock did between two looks at its counters."""
    out = {}
    for name in ("faulty", "retry", "backup"):
        b, a = before[name], after[name]
        d = {k: a[k] - b[k] for k in ("requests", "streams_started", "streams_completed",
                                       "streams_client_disconnected", "streams_cut")}
        d["errors"] = d["requests"] - d["streams_started"]
        d["connections_open"] = a["connections_open"]
        out[name] = d
    return out


def port_names(cfg):
    return {str(v): k for k, v in cfg["mock_ports"].items()}


def outbound(proc, names):
    by = proc.get("tcp_established_outbound_by_remote_port", {})
    return ", ".join(f"{names.get(p, p)} {n}" for p, n in sorted(by.items())) or "none"


def main():
    lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    cfg = next(l for l in lines if l["kind"] == "config")
    looks = {l["phase"]: l for l in lines if l["kind"] == "look"}
    bursts = [l for l in lines if l["kind"] == "burst"]
    soak = [l["data"] for l in lines if l["kind"] == "soak"]
    log = next((l for l in lines if l["kind"] == "log"), None)
    names = port_names(cfg)
    out = []
    w = out.append

    w(f"# faults.sh, MODE={cfg['mode']}")
    w("")
    w(f"Faults on the first endpoint of tier `cloud`: {cfg['cut_rate']:.0%} cut mid-stream, "
      f"{cfg['status_rate']:.0%} answered 429/500/503, {cfg['stall_rate']:.0%} stalled (seed {cfg['seed']}); "
      f"{cfg['chunks']} chunks per answer, {cfg['chunk_delay_ms']} ms apart; idle timeout "
      f"{cfg['idle_timeout_ms']} ms, first-token timeout {cfg['first_token_timeout_ms']} ms, breaker opens after "
      f"{cfg['breaker_failures']} failures. Fallbacks: `cloud-backup`"
      f"{' then `local`' if cfg['local'] else ''} (every request has a failover path). "
      f"Logging at `{cfg['log_level']}`."
      + (f" Tandem's extra environment: `{cfg['tandem_env']}`." if cfg.get("tandem_env") else ""))
    w("")

    if bursts:
        w("## Bursts: N streaming requests sent at once")
        w("")
        w("| phase | requests | completed | failed | with handover (after content) | last byte p50 / p99 / max ms "
          "| first content p50 / p99 ms | wall s | peak RSS MiB | faulty mock: requests, 4xx/5xx, cut, left by tandem "
          "| retry mock | backup mock | distinct answers |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        paths = {}
        examples = []
        for b in bursts:
            r = b["result"]
            d = mock_delta(b["mocks_before"], b["mocks_after"])
            f = d["faulty"]
            for k, v in r["handovers"]["paths"].items():
                if b["phase"] != "warmup":
                    paths[k] = paths.get(k, 0) + v
            examples += [e for e in r["error_examples"] if e not in examples]
            w(f"| {b['phase']} | {r['requests']} | {r['completed']} | {kinds_failed(r['kinds'])} "
              f"| {r['handovers']['requests']} ({r['handovers']['after_content']}) "
              f"| {lat(r['last_byte_ms'], 'p50')} / {lat(r['last_byte_ms'], 'p99')} / {lat(r['last_byte_ms'], 'max')} "
              f"| {lat(r['first_content_ms'], 'p50')} / {lat(r['first_content_ms'], 'p99')} "
              f"| {r['wall_s']:.1f} | {mib(b['peak_rss_kib']):.1f} "
              f"| {f['requests']}, {f['errors']}, {f['streams_cut']}, {f['streams_client_disconnected']} "
              f"| {d['retry']['requests']} | {d['backup']['requests']} "
              f"| {r['answers']['distinct']} ({r['answers']['most_common']} alike) |")
        w("")
        w("Handovers between tiers (measured rounds, from the final chunk's `tandem.handovers`): "
          + (", ".join(f"`{k}` {v}" for k, v in sorted(paths.items())) or "none") + ". Retries inside "
          "tier `cloud` (faulty → retry endpoint) are not handovers; the retry mock's requests count them.")
        if examples:
            w("")
            w("Failures seen (first of each kind):")
            for e in examples[:8]:
                w(f"- `{e[:300]}`")
        w("")

    if soak:
        intervals = [d for d in soak if not d.get("total")]
        total = next((d for d in soak if d.get("total")), None)
        w(f"## Soak: {cfg['soak_concurrency']} streams in a closed loop")
        w("")
        w("| t s | RSS MiB | anon MiB | fds | TCP est. (clients / upstream) | threads | requests | failed "
          "| with handover | last byte p50 / p99 ms | first content p99 ms |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for d in intervals:
            p = d.get("proc", {})
            up = p.get("tcp_established", 0) - p.get("tcp_established_inbound", 0)
            w(f"| {d['t_s']:.0f} | {mib(p.get('rss_kib', 0)):.1f} | {mib(p.get('rss_anon_kib', 0)):.1f} "
              f"| {p.get('fds')} | {p.get('tcp_established_inbound')} / {up} | {p.get('threads')} | {d['requests']} "
              f"| {d['failed']} | {d['handovers']['requests']} "
              f"| {lat(d['last_byte_ms'], 'p50')} / {lat(d['last_byte_ms'], 'p99')} "
              f"| {lat(d['first_content_ms'], 'p99')} |")
        if total:
            w("")
            w(f"Totals over {total['duration_s']:.0f} s: {total['requests']} requests, {total['completed']} "
              f"completed, failed: {kinds_failed(total['kinds'])}; {total['handovers']['requests']} with a "
              f"handover ({total['handovers']['after_content']} after content); last byte p50 "
              f"{lat(total['last_byte_ms'], 'p50')} / p99 {lat(total['last_byte_ms'], 'p99')} / max "
              f"{lat(total['last_byte_ms'], 'max')} ms. Handover paths: "
              + (", ".join(f"`{k}` {v}" for k, v in sorted(total['handovers']['paths'].items())) or "none") + ".")
            for e in total["error_examples"][:8]:
                w(f"- `{e[:300]}`")
        if "baseline" in looks and "after-soak" in looks:
            d = mock_delta(looks["baseline"]["mocks"], looks["after-soak"]["mocks"])
            f = d["faulty"]
            w("")
            w(f"Mocks during the soak: faulty {f['requests']} requests ({f['errors']} answered 4xx/5xx, "
              f"{f['streams_cut']} cut, {f['streams_client_disconnected']} left by tandem — stalls and "
              f"abandoned streams), retry {d['retry']['requests']}, backup {d['backup']['requests']}.")
        w("")

    # Leak checks: the last look against the baseline.
    final_phase = [p for p in looks if p != "baseline"]
    if "baseline" in looks and final_phase:
        base = looks["baseline"]["proc"]
        last_name = final_phase[-1]
        last = looks[last_name]["proc"]
        w(f"## Leak checks: `{last_name}` ({cfg['settle_s']} s idle after the load) against the baseline "
          f"(after the warm-up and {cfg['settle_s']} s idle)")
        w("")
        w("| check | baseline | after | threshold | verdict |")
        w("|---|---|---|---|---|")
        verdicts = []

        def check(name, b, a, limit, unit=""):
            ok = a <= limit
            verdicts.append(ok)
            w(f"| {name} | {fmt(b)}{unit} | {fmt(a)}{unit} | ≤ {fmt(limit)}{unit} | {'PASS' if ok else 'FAIL'} |")

        check("open descriptors", base["fds"], last["fds"], base["fds"] + cfg["fd_slack"])
        check("established TCP connections", base["tcp_established"], last["tcp_established"],
              base["tcp_established"] + cfg["tcp_slack"])
        check("client connections left open", base["tcp_established_inbound"], last["tcp_established_inbound"],
              base["tcp_established_inbound"])
        check("VmRSS", mib(base["rss_kib"]), mib(last["rss_kib"]), mib(base["rss_kib"]) + cfg["rss_slack_mib"],
              " MiB")
        w(f"| RssAnon (heap; information) | {mib(base['rss_anon_kib']):.1f} MiB "
          f"| {mib(last['rss_anon_kib']):.1f} MiB | – | – |")
        w("")
        w(f"Upstream connections (by mock): baseline {outbound(base, names)}; after {outbound(last, names)}. "
          f"TCP states after: {last['tcp_states']}. Threads {base['threads']} → {last['threads']}.")
        peak_kib = max([b["peak_rss_kib"] for b in bursts if b["phase"] != "warmup"]
                       + [d.get("proc", {}).get("rss_kib", 0) for d in soak if not d.get("total")] + [0])
        if peak_kib > base["rss_kib"]:
            kept = (last["rss_kib"] - base["rss_kib"]) / (peak_kib - base["rss_kib"])
            w(f"RSS: baseline {mib(base['rss_kib']):.1f} MiB, peak {mib(peak_kib):.1f} MiB (sampled), "
              f"after {mib(last['rss_kib']):.1f} MiB: {min(max(kept, 0), 1):.0%} of the growth stayed resident.")
        rounds = [p for p in final_phase if p.startswith("after-round-")]
        if len(rounds) > 1:
            w("After each round: " + ", ".join(
                f"{p[len('after-round-'):]}: {mib(looks[p]['proc']['rss_kib']):.1f} MiB "
                f"(anon {mib(looks[p]['proc']['rss_anon_kib']):.1f}), {looks[p]['proc']['fds']} fds, "
                f"{looks[p]['proc']['tcp_established']} TCP" for p in rounds)
                + f" — drift from the first to the last round: "
                f"{mib(looks[rounds[-1]]['proc']['rss_kib'] - looks[rounds[0]]['proc']['rss_kib']):+.1f} MiB.")
        if soak:
            iv = [d for d in soak if not d.get("total") and d.get("proc")]
            if len(iv) > 2:
                w(f"During the soak: RSS {mib(iv[0]['proc']['rss_kib']):.1f} MiB at t={iv[0]['t_s']:.0f} s → "
                  f"{mib(iv[-1]['proc']['rss_kib']):.1f} MiB at t={iv[-1]['t_s']:.0f} s; highest "
                  f"{mib(max(d['proc']['rss_kib'] for d in iv)):.1f} MiB.")
        w("")
        w(f"Overall: {'PASS' if all(verdicts) else 'FAIL'} ({sum(verdicts)} of {len(verdicts)} checks).")
        w("")

    if log:
        w(f"Tandem's log: {log['lines']} lines, {log['warn_lines']} WARN, {log['error_lines']} ERROR; "
          "`backend failed` by backend and kind: "
          + (", ".join(f"{k} {v}" for k, v in sorted(log["failed"].items())) or "none") + ".")
    print("\n".join(out))


main()
