#!/usr/bin/env bash
# Two Tandem variants side by side: the same requests sent straight to
# mock-cloud ("direct"), through variant A and through variant B, interleaved
# run by run (direct, A, B, direct, A, B, ...) in one session, so a change is
# measured against its baseline under the same machine noise. Both variants
# run at once on their own ports against the same mocks; only one is loaded
# at a time.
#
# A variant differs by its binary, its environment, its log level, extra
# keys of its [server] section or of its cloud tiers:
#
#   # a build with a change against the one before it
#   cp target/release/tandem /tmp/tandem-before; (make the change; cargo build --release)
#   A_BIN=/tmp/tandem-before bench/ab.sh
#   # a setting
#   B_LOG_LEVEL=warn bench/ab.sh
#   B_TIER='http2 = false' bench/ab.sh
#   B_SERVER='threads = 1' bench/ab.sh
#
# Environment: A_BIN, B_BIN (default: $CARGO_TARGET_DIR/release/tandem),
# A_ENV, B_ENV (space-separated VAR=value pairs), A_LOG_LEVEL, B_LOG_LEVEL
# ("info", as shipped), A_SERVER, B_SERVER (lines added to [server], e.g.
# 'threads = 1'), A_TIER, B_TIER (a line added to each cloud tier, e.g.
# 'http2 = false'), CASES ("json:16 json-paced:1 json-paced:16": MODE:C, with
# the modes of bench/gateway.sh: json and json-paced with wrk in a closed
# loop, json-open and stream-open with loadgen on a schedule; a stream is
# timed to its first content token), ROUNDS (3), DURATION seconds per run (5),
# PACED_LATENCY_MS (20), PACED_CHUNK_DELAY_MS (5), CHUNKS (20).
# Writes bench/results/ab-STAMP.{jsonl,md}.
source "$(dirname "$0")/lib/common.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CASES="${CASES:-json:16 json-paced:1 json-paced:16}"
PACED_LATENCY_MS="${PACED_LATENCY_MS:-20}"
PACED_CHUNK_DELAY_MS="${PACED_CHUNK_DELAY_MS:-5}"
CHUNKS="${CHUNKS:-20}"

bench_init ab
bench_build
command -v wrk >/dev/null || { log "wrk is missing: run scripts/install-deps.sh"; exit 1; }

start_mock paced --chunks "$CHUNKS" --record-limit 16 --latency-ms "$PACED_LATENCY_MS" \
  --chunk-delay-ms "$PACED_CHUNK_DELAY_MS"
PACED_URL="$MOCK_URL" PACED_CA="$MOCK_CA"
start_mock fast --chunks "$CHUNKS" --record-limit 16
FAST_URL="$MOCK_URL" FAST_CA="$MOCK_CA"

# start_variant NAME: starts variant NAME (A or B) from its settings; sets
# NAME_URL and NAME_PID.
start_variant() {
  local v="$1" bin_var="${1}_BIN" env_var="${1}_ENV" level_var="${1}_LOG_LEVEL" tier_var="${1}_TIER"
  local server_var="${1}_SERVER"
  local bin="${!bin_var:-$BIN/tandem}" tier=() dir
  [ -z "${!tier_var:-}" ] || tier=("${!tier_var}")
  dir="$BENCH_TMP/$v"
  mkdir -p "$dir"
  {
    config_head "$BENCH_ROOT/bench/config/cloud-policy.toml" "$dir" "${!level_var:-info}" "${!server_var:-}"
    cloud_tier cloud "$FAST_CA" "$FAST_URL" ${tier[@]+"${tier[@]}"}
    cloud_tier cloud-paced "$PACED_CA" "$PACED_URL" ${tier[@]+"${tier[@]}"}
  } >"$dir/tandem.toml"
  TANDEM_LAUNCH=(env ${!env_var:-})
  TANDEM_BIN="$bin" start_tandem "$v" "$dir/tandem.toml"
  printf -v "${v}_URL" '%s' "$TANDEM_URL"
  printf -v "${v}_PID" '%s' "$TANDEM_PID"
  log "variant $v: $bin, env '${!env_var:-}', log level ${!level_var:-info}, server '${!server_var:-}', tier '${!tier_var:-}': $TANDEM_URL"
}
start_variant A
start_variant B

chat_bodies

out="$RESULTS/ab-$BENCH_STAMP.jsonl"
: >"$out"
wait_load_quiet
for round in $(seq "$ROUNDS"); do
  for case in $CASES; do
    mode="${case%:*}" c="${case#*:}"
    case "$mode" in
      json) model=cloud mock="$FAST_URL" ca="$FAST_CA" ;;
      json-paced | json-open | stream-open) model=cloud-paced mock="$PACED_URL" ca="$PACED_CA" ;;
      *) log "unknown mode $mode (json, json-paced, json-open or stream-open)"; exit 2 ;;
    esac
    calibrate_open "$mode"
    [[ "$mode" != *-open ]] || rate="$(open_rate "$mode" "$c")"
    for arm in direct A B; do
      case "$arm" in
        direct) url="$mock" pid="" ;;
        A) url="$A_URL" pid="$A_PID" ;;
        B) url="$B_URL" pid="$B_PID" ;;
      esac
      t0=0; [ -z "$pid" ] || t0="$(cpu_ms "$pid")"
      if [[ "$mode" == *-open ]]; then
        # loadgen, on a schedule: times count from when each request was due;
        # a stream's times are to its first content token.
        ca_args=(); [ "$arm" != direct ] || ca_args=(--ca "$ca")
        body="$BENCH_TMP/body-$model-false.json" metric=last_byte_ms
        [ "$mode" != stream-open ] || body="$BENCH_TMP/body-$model-true.json" metric=first_content_ms
        line="$("$BIN/loadgen" run --url "$url/v1/chat/completions" ${ca_args[@]+"${ca_args[@]}"} \
          --body-file "$body" --concurrency "$((4 * c))" --rate "$rate" \
          --duration-s "$DURATION" --warmup-s 1 --timeout-s 30 |
          METRIC="$metric" python3 -c 'import json,os,sys; g=json.load(sys.stdin); m=g[os.environ["METRIC"]]
print(json.dumps({"requests": g["requests"], "errors": g["failed"] + sum(g["errors"].values()),
"rps": g["rps"], "p50_ms": m["p50"], "p99_ms": m["p99"]}))')"
      else
        line="$(wrk_json "$url/v1/chat/completions" "$c" "$BENCH_TMP/body-$model-false.json")"
      fi
      t1=0; [ -z "$pid" ] || t1="$(cpu_ms "$pid")"
      printf '{"mode":"%s","c":%s,"round":%s,"arm":"%s","cpu_ms":%s,"run":%s}\n' \
        "$mode" "$c" "$round" "$arm" "$((t1 - t0))" "$line" >>"$out"
      log "$(tail -1 "$out" | cut -c1-200)"
    done
  done
done

python3 - "$out" <<'PY' | tee "$RESULTS/ab-$BENCH_STAMP.md"
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| mode | conc | direct p50 ms | added p50 A / B ms | added p99 A / B ms | req/s direct / A / B | CPU µs/req A / B | errors |")
print("|---|---|---|---|---|---|---|---|")
for key in dict.fromkeys((r["mode"], r["c"]) for r in rows):
    rs = [r for r in rows if (r["mode"], r["c"]) == key]
    arm = {a: [r for r in rs if r["arm"] == a] for a in ("direct", "A", "B")}
    med = lambda a, f: st.median(f(r) for r in arm[a])
    p50 = {a: med(a, lambda r: r["run"]["p50_ms"]) for a in arm}
    p99 = {a: med(a, lambda r: r["run"]["p99_ms"]) for a in arm}
    rps = {a: med(a, lambda r: r["run"]["rps"]) for a in arm}
    cpu = {a: med(a, lambda r: 1000 * r["cpu_ms"] / max(1, r["run"]["requests"])) for a in ("A", "B")}
    errors = sum(r["run"]["errors"] for r in rs)
    print(f"| {key[0]} | {key[1]} | {p50['direct']:.3f} | {p50['A'] - p50['direct']:+.3f} / {p50['B'] - p50['direct']:+.3f} "
          f"| {p99['A'] - p99['direct']:+.3f} / {p99['B'] - p99['direct']:+.3f} "
          f"| {rps['direct']:,.0f} / {rps['A']:,.0f} / {rps['B']:,.0f} | {cpu['A']:.0f} / {cpu['B']:.0f} | {errors} |")
print(f"\nMedians over {len({r['round'] for r in rows})} interleaved rounds; stream-open is timed to the first content token.")
PY
log "raw results: $out"
