# Shared by the bench/*.sh scripts (sourced, not run): building, starting
# mock-cloud and tandem on free loopback ports, waiting for readiness,
# reading a process's CPU time, and tearing everything down on exit.
#
# Every process started here is recorded in BENCH_PIDS and ended by PID in
# the EXIT trap; nothing is killed by name.

set -euo pipefail

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BENCH_ROOT/target}"
BIN="$CARGO_TARGET_DIR/release"
RESULTS="$BENCH_ROOT/bench/results"
# libgomp reads this before main: without it, llama.cpp's threads spin and
# any other busy process makes generation collapse (LLAMA-NOTES.md). tandem
# re-executes itself with it; direct_bench does not.
export OMP_WAIT_POLICY=passive
BENCH_PIDS=()
BENCH_TMP=""

bench_init() { # NAME
  BENCH_NAME="$1"
  BENCH_TMP="$(mktemp -d "/tmp/tandem-bench-$BENCH_NAME.XXXXXX")"
  BENCH_STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$RESULTS"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    # Give each process up to 5 s to stop cleanly, then force it.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$BENCH_TMP" ] && [ -z "${BENCH_KEEP_TMP:-}" ]; then
    rm -rf "$BENCH_TMP"
  fi
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The binaries every script uses. One feature set for all three packages, so
# repeated runs reuse the same artifacts. BENCH_NO_BUILD=1 uses the binaries
# already in $CARGO_TARGET_DIR/release as they are.
bench_build() {
  if [ -n "${BENCH_NO_BUILD:-}" ]; then
    log "BENCH_NO_BUILD set: using the binaries in $BIN as built"
    return 0
  fi
  log "building tandem, mock-cloud and loadgen (release)"
  (cd "$BENCH_ROOT" && cargo build --release --locked -p gateway -p mock-cloud -p loadgen --bins)
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_mock NAME [mock-cloud flags...]: TLS with a generated CA written to
# $BENCH_TMP/NAME-ca.pem. Sets MOCK_URL (https://127.0.0.1:PORT), MOCK_PID
# and MOCK_CA.
start_mock() {
  local name="$1"; shift
  local out="$BENCH_TMP/$name.out"
  MOCK_CA="$BENCH_TMP/$name-ca.pem"
  "$BIN/mock-cloud" --ca-out "$MOCK_CA" "$@" >"$out" 2>"$BENCH_TMP/$name.err" &
  MOCK_PID=$!
  BENCH_PIDS+=("$MOCK_PID")
  for _ in $(seq 100); do
    if grep -q 'listening on' "$out" 2>/dev/null; then
      MOCK_URL="$(sed -n 's/^mock-cloud listening on //p' "$out")"
      return 0
    fi
    kill -0 "$MOCK_PID" 2>/dev/null || { cat "$BENCH_TMP/$name.err" >&2; return 1; }
    sleep 0.1
  done
  log "mock-cloud $name did not start"; return 1
}

# start_tandem NAME CONFIG: serves CONFIG on a free port. Sets TANDEM_URL
# (http://127.0.0.1:PORT) and TANDEM_PID once /readyz answers 200 (the model,
# when configured, is loaded before the port is bound). TANDEM_LAUNCH, an
# array, prefixes the command (e.g. `env -u OMP_WAIT_POLICY`); TANDEM_BIN
# names another tandem executable than $BIN/tandem.
start_tandem() {
  local name="$1" config="$2" port
  port="$(free_port)"
  ${TANDEM_LAUNCH[@]+"${TANDEM_LAUNCH[@]}"} "${TANDEM_BIN:-$BIN/tandem}" serve --config "$config" --listen "127.0.0.1:$port" \
    >"$BENCH_TMP/$name.out" 2>"$BENCH_TMP/$name.err" &
  TANDEM_PID=$!
  BENCH_PIDS+=("$TANDEM_PID")
  TANDEM_URL="http://127.0.0.1:$port"
  for _ in $(seq 1200); do
    if curl -sf -o /dev/null "$TANDEM_URL/readyz"; then
      return 0
    fi
    kill -0 "$TANDEM_PID" 2>/dev/null || { tail -20 "$BENCH_TMP/$name.err" >&2; return 1; }
    sleep 0.1
  done
  log "tandem $name not ready after 120 s"; tail -20 "$BENCH_TMP/$name.err" >&2; return 1
}

# cpu_ms PID: user + system CPU time of the process, in milliseconds
# (fields 14 and 15 of /proc/PID/stat, counted after the command name).
cpu_ms() {
  local stat
  stat="$(cat "/proc/$1/stat")"
  stat="${stat##*) }"
  # shellcheck disable=SC2086
  set -- $stat
  echo $(( (${12} + ${13}) * 10 ))
}

# peak_rss_bytes PID: VmHWM of a running process.
peak_rss_bytes() {
  awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$1/status"
}

# wait_load_quiet: benchmarks on a shared 2-core machine are noisy; wait (at
# most 60 s) until the 1-minute load average is under BENCH_MAX_LOAD (2.5 by
# default) and say what it was.
wait_load_quiet() {
  local max="${BENCH_MAX_LOAD:-2.5}" load
  for _ in $(seq 60); do
    load="$(cut -d' ' -f1 /proc/loadavg)"
    if python3 -c "import sys; sys.exit(0 if $load < $max else 1)"; then
      break
    fi
    sleep 1
  done
  log "load average before measuring: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Pieces of a daemon config written by the scripts. MODEL is the test model.
MODEL="$BENCH_ROOT/models/gemma-3-270m-q4_k_m.gguf"

# chat_body MODEL STREAM: the gateway benchmarks' chat request (a system and
# a short user message, at most 64 tokens), STREAM true or false, as JSON.
chat_body() {
  python3 - "$1" "$2" <<'PY'
import json, sys
print(json.dumps({"model": sys.argv[1], "stream": sys.argv[2] == "true", "max_tokens": 64,
                  "messages": [{"role": "system", "content": "You are a helpful assistant."},
                               {"role": "user", "content": "Write two short sentences about the sea and the wind "
                                                           "over the harbour at dawn."}]}))
PY
}

# config_head POLICY DIR [LOG_LEVEL] [SERVER_LINES]: copies POLICY to
# DIR/policy.toml and prints the common head: loopback (plus SERVER_LINES
# in [server]), logging, that policy, no device sensors.
config_head() {
  cp "$1" "$2/policy.toml"
  cat <<EOF
[server]
listen = "127.0.0.1:0"
${4:-}

[logging]
level = "${3:-info}"

[policy]
file = "policy.toml"

[device]
source = "none"
EOF
}

# local_tier [KEY=VALUE]...: the test model as tier `local` (context 2048,
# 2 threads, one slot, loaded at start); arguments override or add keys.
local_tier() {
  local ctx=2048 threads=2 extra=() kv
  for kv in "$@"; do
    case "$kv" in
      context_len=*) ctx="${kv#*=}" ;;
      threads=*) threads="${kv#*=}" ;;
      *) extra+=("${kv%%=*} = ${kv#*=}") ;;
    esac
  done
  printf '\n[[local]]\nname = "local"\nmodel = "%s"\nchat_template = "gemma"\ncontext_len = %s\nthreads = %s\n' \
    "$MODEL" "$ctx" "$threads"
  [ "${#extra[@]}" -eq 0 ] || printf '%s\n' "${extra[@]}"
  printf 'parallel_slots = 1\nload = "startup"\n'
}

# cloud_tier NAME CA URL [LINE]...: a cloud tier with one mock endpoint; each
# LINE is a key of the tier, written before the endpoint.
cloud_tier() {
  local name="$1" ca="$2" url="$3"
  shift 3
  printf '\n[[cloud]]\nname = "%s"\nextra_ca_file = "%s"\n' "$name" "$ca"
  [ "$#" -eq 0 ] || printf '%s\n' "$@"
  printf '[[cloud.endpoints]]\nurl = "%s/v1"\nmodel = "mock-large"\n' "$url"
}

# wrk_json URL C BODY_FILE: a closed-loop wrk run of $DURATION seconds, C
# connections each posting BODY_FILE to URL; prints one JSON line:
# {"requests" (answered without an error status), "errors", "rps", "p50_ms",
# "p90_ms", "p99_ms"}.
wrk_json() {
  BODY_FILE="$3" wrk -t1 -c"$2" -d"${DURATION}s" --timeout 30s -s "$BENCH_ROOT/bench/lib/post.lua" "$1" |
    sed -n 's/^JSON //p' | python3 -c 'import json, sys
w = json.load(sys.stdin)
n = w["requests"] - w["err_status"]
print(json.dumps({"requests": n,
    "errors": w["err_status"] + w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"],
    "rps": n / (w["duration_us"] / 1e6),
    "p50_ms": w["p50_us"] / 1e3, "p90_ms": w["p90_us"] / 1e3, "p99_ms": w["p99_us"] / 1e3}))'
}

# Open-loop arrivals (loadgen --rate, wrk2's constant-throughput model) at the
# rate that keeps C requests in flight on average (Little's law): C / L
# requests per second, L the direct arm's mean latency at concurrency 1.
# calibrate_open MODE measures L once per open-loop mode (a 2 s closed-loop
# run against the paced mock, $PACED_URL with $PACED_CA, of
# $BENCH_TMP/body-cloud-paced-STREAM.json, written by chat_bodies); open_rate
# MODE C prints the rate.
declare -A OPEN_LATENCY_MS=()
calibrate_open() {
  local mode="$1" stream=true
  [[ "$mode" == *-open && -z "${OPEN_LATENCY_MS[$mode]:-}" ]] || return 0
  [[ "$mode" == json* ]] && stream=false
  OPEN_LATENCY_MS[$mode]="$("$BIN/loadgen" run --url "$PACED_URL/v1/chat/completions" --ca "$PACED_CA" \
    --body-file "$BENCH_TMP/body-cloud-paced-$stream.json" --duration-s 2 --warmup-s 0.5 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["last_byte_ms"]["mean"])')"
  log "$mode: direct latency ${OPEN_LATENCY_MS[$mode]} ms at concurrency 1"
}
open_rate() {
  python3 -c "print(round($2 * 1000 / ${OPEN_LATENCY_MS[$1]}, 1))"
}

# chat_bodies: the chat request for each benchmark tier ("cloud", the mock
# that answers at once; "cloud-paced"), streamed and not, in
# $BENCH_TMP/body-MODEL-STREAM.json.
chat_bodies() {
  local model s
  for model in cloud cloud-paced; do for s in true false; do
    chat_body "$model" "$s" >"$BENCH_TMP/body-$model-$s.json"
  done; done
}
