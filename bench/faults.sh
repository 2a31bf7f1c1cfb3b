#!/usr/bin/env bash
# Load with injected faults, and leaks (issue 7, item 6). Not run in CI.
#
# One Tandem daemon, three mock clouds and (when the model is there) the
# local model:
# - tier `cloud`: endpoint "faulty" first, a mock with a random fault mix
#   (CUT_RATE of the streams cut mid-stream, STATUS_RATE answered 429, 500
#   or 503 — mock-cloud picks among the three —, STALL_RATE stalled after a
#   random number of chunks), then endpoint "retry", a mock without faults.
#   Failures before any content are retried inside the tier (`retries` = 2:
#   the next try goes to "retry"); a stall is noticed after IDLE_TIMEOUT_MS.
# - tier `cloud-backup`: "backup", a third mock without faults. A failure
#   after content (a cut, a stall) hands the answer over to it, and it
#   continues from the text already sent.
# - tier `local` (LOCAL=1): the last fallback.
# Policy bench/config/faults-policy.toml: every request goes to `cloud`, with
# fallbacks `cloud-backup` then `local`. So every request has a failover
# path, and every one should complete.
#
# MODE=burst (default): warm-up (WARMUP_COUNT requests at once), SETTLE
# seconds idle, the baseline; then BURSTS times: COUNT streaming requests
# sent at the same moment (loadgen burst: one connection each), each outcome
# classified (completed = 200 + [DONE] + no error event; error event; HTTP
# error; timeout; transport), the handovers Tandem reports in the final
# chunk's `tandem` object counted, the answers compared (all are the same
# prompt, so all should be the same text), tandem's RSS polled every 100 ms
# for the peak; then SETTLE seconds idle and a look at tandem again.
# MODE=soak: after the same warm-up and baseline, SOAK seconds (600) of
# closed-loop streaming load at SOAK_CONCURRENCY with the same faults, a
# report every SOAK_INTERVAL seconds (RSS, descriptors, TCP connections,
# requests, errors, p50/p99); then SETTLE seconds idle and the last look.
#
# Leak checks (both modes), final look against the baseline, thresholds
# fixed before any run:
# - open descriptors (/proc/PID/fd): at most baseline + FD_SLACK (8);
# - established TCP connections of tandem (its socket inodes looked up in
#   /proc/PID/net/tcp{,6}): at most baseline + TCP_SLACK (4) — the HTTP/2
#   pools may open a few upstream connections — and no client connection
#   left (loadgen has closed all of its own);
# - VmRSS: at most baseline + RSS_SLACK_MIB (16). An allocator keeps some
#   freed memory for reuse (mimalloc in its threads' heaps until they
#   collect; glibc, llama.cpp's, in its arenas until trimmed), so part of a
#   burst's peak may stay resident without a leak: the
#   summary also shows RssAnon, how much of the peak's growth was given
#   back, and the drift from round to round (a leak grows every round; the
#   allocator's retention does not).
#
# Environment: MODE (burst), COUNT (1000), BURSTS (3), WARMUP_COUNT (200),
# SETTLE (20 s), SOAK (600 s), SOAK_INTERVAL (30 s), SOAK_CONCURRENCY (64),
# CUT_RATE (0.10), STATUS_RATE (0.05), STALL_RATE (0.05), SEED (7), CHUNKS
# (20 per answer), CHUNK_DELAY_MS (10), IDLE_TIMEOUT_MS (1500),
# FIRST_TOKEN_TIMEOUT_MS (10000), BREAKER_FAILURES (5, as shipped),
# REQUEST_TIMEOUT_S (60, the client's bound per request), LOCAL (1 when the
# model is there), LOG_LEVEL (info), FD_SLACK, TCP_SLACK, RSS_SLACK_MIB,
# TANDEM_ENV (space-separated VAR=value pairs put in tandem's environment,
# e.g. "MALLOC_ARENA_MAX=2" to see how much of the RSS is the allocator's),
# BENCH_BIN_DIR (a directory holding tandem, mock-cloud and loadgen to use
# instead of $CARGO_TARGET_DIR/release; implies BENCH_NO_BUILD).
# Writes bench/results/faults-MODE-STAMP.{jsonl,md} and the WARN/ERROR lines
# of tandem's log as faults-MODE-STAMP.warn.log.
source "$(dirname "$0")/lib/common.sh"

MODE="${MODE:-burst}"
COUNT="${COUNT:-1000}"
BURSTS="${BURSTS:-3}"
WARMUP_COUNT="${WARMUP_COUNT:-200}"
SETTLE="${SETTLE:-20}"
SOAK="${SOAK:-600}"
SOAK_INTERVAL="${SOAK_INTERVAL:-30}"
SOAK_CONCURRENCY="${SOAK_CONCURRENCY:-64}"
CUT_RATE="${CUT_RATE:-0.10}"
STATUS_RATE="${STATUS_RATE:-0.05}"
STALL_RATE="${STALL_RATE:-0.05}"
SEED="${SEED:-7}"
CHUNKS="${CHUNKS:-20}"
CHUNK_DELAY_MS="${CHUNK_DELAY_MS:-10}"
IDLE_TIMEOUT_MS="${IDLE_TIMEOUT_MS:-1500}"
FIRST_TOKEN_TIMEOUT_MS="${FIRST_TOKEN_TIMEOUT_MS:-10000}"
BREAKER_FAILURES="${BREAKER_FAILURES:-5}"
REQUEST_TIMEOUT_S="${REQUEST_TIMEOUT_S:-60}"
LOG_LEVEL="${LOG_LEVEL:-info}"
FD_SLACK="${FD_SLACK:-8}"
TCP_SLACK="${TCP_SLACK:-4}"
RSS_SLACK_MIB="${RSS_SLACK_MIB:-16}"
if [ -z "${LOCAL:-}" ]; then
  if [ -f "$MODEL" ]; then LOCAL=1; else LOCAL=0; fi
fi
case "$MODE" in burst | soak) ;; *) echo "MODE must be burst or soak" >&2; exit 2 ;; esac

bench_init "faults-$MODE"
if [ -n "${BENCH_BIN_DIR:-}" ]; then
  BIN="$(cd "$BENCH_BIN_DIR" && pwd)"
  log "using the binaries in $BIN"
else
  bench_build
fi
if [ "$LOCAL" = 1 ]; then
  [ -f "$MODEL" ] || { log "LOCAL=1 but no model at $MODEL: run scripts/fetch-model.sh"; exit 1; }
else
  log "no local tier (LOCAL=0): the fallbacks are cloud-backup only"
fi

pace=(--chunks "$CHUNKS" --chunk-delay-ms "$CHUNK_DELAY_MS" --record-limit 16)
start_mock faulty "${pace[@]}" --cut-rate "$CUT_RATE" --status-rate "$STATUS_RATE" \
  --stall-rate "$STALL_RATE" --seed "$SEED"
FAULTY_URL="$MOCK_URL" FAULTY_CA="$MOCK_CA"
start_mock retry "${pace[@]}"
RETRY_URL="$MOCK_URL" RETRY_CA="$MOCK_CA"
start_mock backup "${pace[@]}"
BACKUP_URL="$MOCK_URL" BACKUP_CA="$MOCK_CA"
# One tier, two mocks with their own generated CAs: trust both.
cat "$FAULTY_CA" "$RETRY_CA" >"$BENCH_TMP/cloud-cas.pem"

{
  config_head "$BENCH_ROOT/bench/config/faults-policy.toml" "$BENCH_TMP" "$LOG_LEVEL"
  cat <<EOF

[[cloud]]
name = "cloud"
extra_ca_file = "$BENCH_TMP/cloud-cas.pem"
idle_timeout_ms = $IDLE_TIMEOUT_MS
first_token_timeout_ms = $FIRST_TOKEN_TIMEOUT_MS
retries = 2
[cloud.breaker]
failures_to_open = $BREAKER_FAILURES
[[cloud.endpoints]]
url = "$FAULTY_URL/v1"
model = "mock-large"
[[cloud.endpoints]]
url = "$RETRY_URL/v1"
model = "mock-large"

[[cloud]]
name = "cloud-backup"
extra_ca_file = "$BACKUP_CA"
idle_timeout_ms = $IDLE_TIMEOUT_MS
first_token_timeout_ms = $FIRST_TOKEN_TIMEOUT_MS
[cloud.breaker]
failures_to_open = $BREAKER_FAILURES
[[cloud.endpoints]]
url = "$BACKUP_URL/v1"
model = "mock-large"
EOF
  if [ "$LOCAL" = 1 ]; then
    local_tier
  fi
} >"$BENCH_TMP/tandem.toml"
if [ -n "${TANDEM_ENV:-}" ]; then
  # shellcheck disable=SC2206
  TANDEM_LAUNCH=(env $TANDEM_ENV)
  log "tandem's extra environment: $TANDEM_ENV"
fi
start_tandem tandem "$BENCH_TMP/tandem.toml"
log "tandem $TANDEM_URL (pid $TANDEM_PID); mocks faulty $FAULTY_URL, retry $RETRY_URL, backup $BACKUP_URL"

python3 - "$CHUNKS" >"$BENCH_TMP/body.json" <<'PY'
import json, sys
print(json.dumps({"model": "auto", "stream": True, "stream_options": {"include_usage": True},
                  "max_tokens": 64,
                  "messages": [{"role": "user", "content":
                                "Write two short sentences about the sea and the wind over the harbour at dawn."}]}))
PY
CHAT="$TANDEM_URL/v1/chat/completions"
LINE="$BENCH_ROOT/bench/lib/faults_line.py"
out="$RESULTS/faults-$MODE-$BENCH_STAMP.jsonl"
: >"$out"
python3 - >>"$out" <<PY
import json
print(json.dumps({"kind": "config", "mode": "$MODE", "count": $COUNT, "bursts": $BURSTS,
  "warmup_count": $WARMUP_COUNT, "settle_s": $SETTLE, "soak_s": $SOAK, "soak_interval_s": $SOAK_INTERVAL,
  "soak_concurrency": $SOAK_CONCURRENCY, "cut_rate": $CUT_RATE, "status_rate": $STATUS_RATE,
  "stall_rate": $STALL_RATE, "seed": $SEED, "chunks": $CHUNKS, "chunk_delay_ms": $CHUNK_DELAY_MS,
  "idle_timeout_ms": $IDLE_TIMEOUT_MS, "first_token_timeout_ms": $FIRST_TOKEN_TIMEOUT_MS,
  "breaker_failures": $BREAKER_FAILURES, "local": $LOCAL == 1, "log_level": "$LOG_LEVEL",
  "tandem_env": "${TANDEM_ENV:-}",
  "fd_slack": $FD_SLACK, "tcp_slack": $TCP_SLACK, "rss_slack_mib": $RSS_SLACK_MIB,
  "mock_ports": {"faulty": "$FAULTY_URL".rsplit(":", 1)[1], "retry": "$RETRY_URL".rsplit(":", 1)[1],
                 "backup": "$BACKUP_URL".rsplit(":", 1)[1]}}))
PY

# mock_stats: the three mocks' counters as one JSON object.
mock_stats() {
  printf '{"faulty":%s,"retry":%s,"backup":%s}' \
    "$(curl -sf --cacert "$FAULTY_CA" "$FAULTY_URL/mock/stats")" \
    "$(curl -sf --cacert "$RETRY_CA" "$RETRY_URL/mock/stats")" \
    "$(curl -sf --cacert "$BACKUP_CA" "$BACKUP_URL/mock/stats")"
}

# look PHASE: tandem's memory, descriptors and connections, and the mocks'
# counters, as one JSON line.
look() {
  local p m
  p="$("$BIN/loadgen" proc --pid "$TANDEM_PID")"
  m="$(mock_stats)"
  printf '{"kind":"look","phase":"%s","proc":%s,"mocks":%s}\n' "$1" "$p" "$m" >>"$out"
  log "look $1: $(python3 "$LINE" look "$p")"
}

# poll_rss PID FILE: the largest VmRSS (kB) seen every 100 ms, kept in FILE.
poll_rss() {
  local max=0 v
  while kill -0 "$1" 2>/dev/null; do
    v="$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)"
    if [ "${v:-0}" -gt "$max" ]; then max="$v"; echo "$max" >"$2"; fi
    sleep 0.1
  done
}

# burst PHASE N: N requests at once, with the peak RSS, as one JSON line.
burst() {
  local phase="$1" n="$2" poll res before after
  echo 0 >"$BENCH_TMP/peak"
  poll_rss "$TANDEM_PID" "$BENCH_TMP/peak" &
  poll=$!
  BENCH_PIDS+=("$poll")
  before="$(mock_stats)"
  res="$("$BIN/loadgen" burst --url "$CHAT" --body-file "$BENCH_TMP/body.json" --count "$n" \
    --timeout-s "$REQUEST_TIMEOUT_S")"
  kill "$poll" 2>/dev/null || true
  wait "$poll" 2>/dev/null || true
  after="$(mock_stats)"
  printf '{"kind":"burst","phase":"%s","peak_rss_kib":%s,"result":%s,"mocks_before":%s,"mocks_after":%s}\n' \
    "$phase" "$(cat "$BENCH_TMP/peak")" "$res" "$before" "$after" >>"$out"
  log "burst $phase: $(python3 "$LINE" burst "$res")"
}

wait_load_quiet
burst warmup "$WARMUP_COUNT"
sleep "$SETTLE"
look baseline

if [ "$MODE" = burst ]; then
  for r in $(seq "$BURSTS"); do
    burst "round-$r" "$COUNT"
    sleep "$SETTLE"
    look "after-round-$r"
  done
else
  log "soak: ${SOAK}s at concurrency $SOAK_CONCURRENCY, a report every ${SOAK_INTERVAL}s"
  "$BIN/loadgen" soak --url "$CHAT" --body-file "$BENCH_TMP/body.json" --concurrency "$SOAK_CONCURRENCY" \
    --duration-s "$SOAK" --interval-s "$SOAK_INTERVAL" --watch-pid "$TANDEM_PID" \
    --timeout-s "$REQUEST_TIMEOUT_S" |
    while IFS= read -r line; do
      printf '{"kind":"soak","data":%s}\n' "$line" >>"$out"
      log "soak $(python3 "$LINE" soak "$line")"
    done
  sleep "$SETTLE"
  look after-soak
fi

curl -sf "$TANDEM_URL/v1/status" >"$BENCH_TMP/status.json" || echo '{}' >"$BENCH_TMP/status.json"
printf '{"kind":"status","status":%s}\n' "$(cat "$BENCH_TMP/status.json")" >>"$out"
# tracing colours its output even into a file: strip the escapes first.
sed 's/\x1b\[[0-9;]*m//g' "$BENCH_TMP/tandem.err" >"$BENCH_TMP/tandem.log"
warn_log="$RESULTS/faults-$MODE-$BENCH_STAMP.warn.log"
grep -v '^[^ ]* *INFO ' "$BENCH_TMP/tandem.log" >"$warn_log" || true
printf '{"kind":"log","lines":%s,"warn_lines":%s,"error_lines":%s,"failed":%s}\n' \
  "$(wc -l <"$BENCH_TMP/tandem.log")" "$(grep -c '^[^ ]* *WARN ' "$warn_log" || true)" \
  "$(grep -c '^[^ ]* *ERROR ' "$warn_log" || true)" \
  "$(grep -o 'backend failed backend=[^ ]* kind=[^ ]*' "$warn_log" | tr -d '"' | sort | uniq -c |
    python3 -c 'import json,sys; print(json.dumps({" ".join(l.split()[3:]): int(l.split()[0]) for l in sys.stdin}))')" \
  >>"$out"
python3 "$BENCH_ROOT/bench/lib/summarize_faults.py" "$out" | tee "$RESULTS/faults-$MODE-$BENCH_STAMP.md"
log "raw results: $out"
