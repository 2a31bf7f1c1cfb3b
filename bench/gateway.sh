#!/usr/bin/env bash
# The gateway's added latency, throughput and CPU per request: the same
# requests sent straight to mock-cloud ("direct") and through Tandem
# ("tandem", model "cloud", bench/config/cloud-policy.toml), interleaved
# round by round (direct, tandem, direct, tandem, ...) in one run, at several
# concurrencies, JSON with wrk and SSE streams with loadgen.
#
# Fair transport on both sides: the direct client speaks TLS to the mock
# (HTTP/1.1, one connection per concurrent request); through Tandem the
# client speaks plain HTTP/1.1 on loopback, as apps do, and Tandem speaks TLS
# to the same mock (trusting the mock's generated CA through extra_ca_file;
# the mock offers HTTP/2 by ALPN, so Tandem multiplexes its upstream
# requests over one connection per serving thread). No tier is local: the
# figures are the gateway's own cost, not the model's. The mock serves the
# direct arm HTTP/1.1 and Tandem HTTP/2; UPSTREAM_HTTP2=false makes both
# HTTP/1.1, so the mock does the same work in both arms.
#
#   bench/gateway.sh                       # defaults below
#   ROUNDS=5 DURATION=10 CONCURRENCY="16" bench/gateway.sh
#
# Two upstreams, as two mock-cloud processes behind two cloud tiers:
# - "json" and "stream": a mock that answers at once (20 chunks, no delay).
#   Everything is CPU-bound on the 2 shared cores, so these give the CPU per
#   request and the most each path can carry; latency there is queueing.
# - "json-paced" and "stream-paced": a mock that behaves more like a remote
#   model (PACED_LATENCY_MS before the headers, PACED_CHUNK_DELAY_MS before
#   each chunk). The upstream, not the CPU, bounds throughput, so the added
#   latency is the cost of the extra hop itself, and the throughput ratio
#   says whether the gateway holds the upstream back.
# - "json-open" and "stream-open": the paced mock again, but the requests
#   arrive on a schedule instead of in a closed loop (loadgen --rate, wrk2's
#   constant-throughput model): R = C / L requests per second, L the direct
#   arm's latency measured just before, so that C requests are in flight on
#   average (Little's law), on at most 4 × C connections. In the closed
#   loops above, C clients whose answers all come back together (the paced
#   mock answers each after the same pause) send their next requests in one
#   burst, and each request then queues behind the others' processing; apps
#   of different users do not move in lockstep. A request that finds every
#   connection busy waits, and its times count from when it was due.
#
# A third arm, "relay", measures the floor of any extra process on the path:
# socat relaying the direct client's TLS bytes to the same mock, doing no
# work of its own (no parsing, no TLS). What Tandem adds beyond the relay is
# its own work; what the relay adds is the machine's price of one more hop
# (two more cross-CPU wake-ups per request, costly on an idle VM). RELAY=0
# leaves it out.
#
# Environment: ROUNDS (3), DURATION seconds per run (5), WARMUP seconds
# before loadgen's window (1), CONCURRENCY ("1 16 64"), MODES ("json stream
# json-paced stream-paced json-open stream-open"), CHUNKS per answer (20), PACED_LATENCY_MS (20),
# PACED_CHUNK_DELAY_MS (5), LOG_LEVEL of tandem ("info", as shipped),
# UPSTREAM_HTTP2 ("true"; "false" sets the tiers' `http2 = false`: HTTP/1.1,
# a pooled connection per request in flight).
# Writes bench/results/gateway-STAMP.{jsonl,md}.
source "$(dirname "$0")/lib/common.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
CONCURRENCY="${CONCURRENCY:-1 16 64}"
MODES="${MODES:-json stream json-paced stream-paced json-open stream-open}"
CHUNKS="${CHUNKS:-20}"
PACED_LATENCY_MS="${PACED_LATENCY_MS:-20}"
PACED_CHUNK_DELAY_MS="${PACED_CHUNK_DELAY_MS:-5}"
LOG_LEVEL="${LOG_LEVEL:-info}"
UPSTREAM_HTTP2="${UPSTREAM_HTTP2:-true}"
RELAY="${RELAY:-1}"

bench_init gateway
bench_build
command -v wrk >/dev/null || { log "wrk is missing: run scripts/install-deps.sh"; exit 1; }
[ "$RELAY" = 0 ] || command -v socat >/dev/null || { log "socat is missing: run scripts/install-deps.sh"; exit 1; }

start_mock paced --chunks "$CHUNKS" --record-limit 16 \
  --latency-ms "$PACED_LATENCY_MS" --chunk-delay-ms "$PACED_CHUNK_DELAY_MS"
PACED_URL="$MOCK_URL" PACED_PID="$MOCK_PID" PACED_CA="$MOCK_CA"
start_mock cloud --chunks "$CHUNKS" --record-limit 16
FAST_URL="$MOCK_URL" FAST_PID="$MOCK_PID" FAST_CA="$MOCK_CA"
{
  config_head "$BENCH_ROOT/bench/config/cloud-policy.toml" "$BENCH_TMP" "$LOG_LEVEL"
  cloud_tier cloud "$FAST_CA" "$FAST_URL" "http2 = $UPSTREAM_HTTP2"
  cloud_tier cloud-paced "$PACED_CA" "$PACED_URL" "http2 = $UPSTREAM_HTTP2"
} >"$BENCH_TMP/tandem.toml"
start_tandem tandem "$BENCH_TMP/tandem.toml"
# start_relay MOCK_URL: sets RELAY_URL, a socat TCP relay to that mock.
start_relay() {
  local port
  port="$(free_port)"
  socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,nodelay" "TCP:${1#https://},nodelay" 2>/dev/null &
  BENCH_PIDS+=("$!")
  RELAY_URL="https://127.0.0.1:$port"
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  log "socat relay did not start"; return 1
}
ARMS="direct tandem"
if [ "$RELAY" != 0 ]; then
  ARMS="direct relay tandem"
  start_relay "$PACED_URL"; PACED_RELAY="$RELAY_URL"
  start_relay "$FAST_URL"; FAST_RELAY="$RELAY_URL"
fi
log "mock-cloud $FAST_URL (pid $FAST_PID), paced $PACED_URL (pid $PACED_PID), tandem $TANDEM_URL (pid $TANDEM_PID)"

chat_bodies

# Both paths answer before anything is measured, and Tandem really routes
# to the cloud.
for model in cloud cloud-paced; do
  route="$(curl -s -D - -o /dev/null -H 'content-type: application/json' \
    --data-binary @"$BENCH_TMP/body-$model-false.json" "$TANDEM_URL/v1/chat/completions" | tr -d '\r' |
    sed -n 's/^x-tandem-route: //p')"
  [ "$route" = "$model" ] || { log "tandem did not route to $model (route: '$route')"; exit 1; }
done
curl -sf --cacert "$FAST_CA" -o /dev/null -H 'content-type: application/json' \
  --data-binary @"$BENCH_TMP/body-cloud-false.json" "$FAST_URL/v1/chat/completions"

out="$RESULTS/gateway-$BENCH_STAMP.jsonl"
: >"$out"
wait_load_quiet

# run_arm MODE C ROUND ARM: one measured run, one JSON line appended to $out.
run_arm() {
  local mode="$1" c="$2" round="$3" arm="$4" url ca_args=() t0 m0 t1 m1 line
  local model=cloud mock_url="$FAST_URL" mock_pid="$FAST_PID" mock_ca="$FAST_CA" relay_url="${FAST_RELAY:-}"
  if [[ "$mode" == *-paced || "$mode" == *-open ]]; then
    model=cloud-paced mock_url="$PACED_URL" mock_pid="$PACED_PID" mock_ca="$PACED_CA" relay_url="${PACED_RELAY:-}"
  fi
  if [ "$arm" = direct ]; then
    url="$mock_url/v1/chat/completions"; ca_args=(--ca "$mock_ca")
  elif [ "$arm" = relay ]; then
    url="$relay_url/v1/chat/completions"; ca_args=(--ca "$mock_ca")
  else
    url="$TANDEM_URL/v1/chat/completions"
  fi
  local load_args=(--concurrency "$c") stream=true
  [[ "$mode" == json* ]] && stream=false
  if [[ "$mode" == *-open ]]; then
    load_args=(--concurrency "$((4 * c))" --rate "$(open_rate "$mode" "$c")")
  fi
  if [[ "$mode" == json-paced || "$mode" == json ]]; then
    t0="$(cpu_ms "$TANDEM_PID")"; m0="$(cpu_ms "$mock_pid")"
    line="$(wrk_json "$url" "$c" "$BENCH_TMP/body-$model-false.json")"
    t1="$(cpu_ms "$TANDEM_PID")"; m1="$(cpu_ms "$mock_pid")"
    python3 - "$mode" "$c" "$round" "$arm" "$line" "$((t1 - t0))" "$((m1 - m0))" >>"$out" <<'PY'
import json, sys
mode, c, rnd, arm, line, tcpu, mcpu = sys.argv[1:]
w = json.loads(line)
print(json.dumps({"mode": mode, "c": int(c), "round": int(rnd), "arm": arm, "tool": "wrk",
    "requests": w["requests"], "errors": w["errors"], "rps": w["rps"],
    "last_p50": w["p50_ms"], "last_p90": w["p90_ms"], "last_p99": w["p99_ms"],
    "tandem_cpu_ms": int(tcpu), "mock_cpu_ms": int(mcpu)}))
PY
  else
    line="$("$BIN/loadgen" run --url "$url" "${ca_args[@]}" --body-file "$BENCH_TMP/body-$model-$stream.json" \
      "${load_args[@]}" --duration-s "$DURATION" --warmup-s "$WARMUP" --timeout-s 30 \
      --cpu-pid "tandem=$TANDEM_PID" --cpu-pid "mock=$mock_pid")"
    python3 - "$mode" "$c" "$round" "$arm" "$line" >>"$out" <<'PY'
import json, sys
mode, c, rnd, arm, line = sys.argv[1:]
g = json.loads(line)
print(json.dumps({"mode": mode, "c": int(c), "round": int(rnd), "arm": arm, "tool": "loadgen",
    "rate": g["rate"],
    "requests": g["requests"], "errors": g["failed"] + sum(g["errors"].values()), "rps": g["rps"],
    "first_p50": g["first_content_ms"]["p50"], "first_p90": g["first_content_ms"]["p90"],
    "first_p99": g["first_content_ms"]["p99"],
    "last_p50": g["last_byte_ms"]["p50"], "last_p90": g["last_byte_ms"]["p90"], "last_p99": g["last_byte_ms"]["p99"],
    "tandem_cpu_ms": g["cpu"]["tandem"]["cpu_ms"], "mock_cpu_ms": g["cpu"]["mock"]["cpu_ms"],
    "loadgen_cores": g["cpu"]["loadgen"]["cores_busy"], "routes": g["routes"]}))
PY
  fi
  log "$(tail -1 "$out")"
}

for c in $CONCURRENCY; do
  for mode in $MODES; do
    calibrate_open "$mode"
    for round in $(seq "$ROUNDS"); do
      for arm in $ARMS; do run_arm "$mode" "$c" "$round" "$arm"; done
    done
  done
done

grep -c 'request done' "$BENCH_TMP/tandem.err" >/dev/null 2>&1 &&
  log "tandem wrote $(wc -l <"$BENCH_TMP/tandem.err") log lines at level $LOG_LEVEL"
log "tandem peak RSS: $(( $(peak_rss_bytes "$TANDEM_PID") / 1048576 )) MiB"
python3 "$BENCH_ROOT/bench/lib/summarize_gateway.py" "$out" | tee "$RESULTS/gateway-$BENCH_STAMP.md"
log "raw results: $out"
