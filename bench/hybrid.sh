#!/usr/bin/env bash
# What the hybrid strategies cost, measured through one Tandem daemon with the
# local model and two mock clouds (bench/config/hybrid-policy.toml; the
# x-tandem-app header picks the strategy):
#
# 1. failover gap: the cloud ("cloud-cut", a mock started with --cut-after
#    CUT_AFTER and a chunk every CUT_CHUNK_DELAY_MS) closes the stream after
#    CUT_AFTER content chunks; the local model continues the answer. The gap
#    is measured on the client from chunk arrival times: the last cloud
#    chunk to the first local one. It includes the mock's own 20 ms pause
#    before it closes the connection (see crates/mock-cloud/README.md); the
#    table shows it with and without. A short and a ~200-token prompt,
#    interleaved.
# 2. cascade: added time to first token of target "cascade" (the local model
#    starts; its first 8 tokens are held back and judged) against plain local
#    (`model: "local"`), same prompts, interleaved; escalations to the cloud
#    are counted, not mixed into the local figures.
# 3. redaction: first a check through the main daemon against a mock that
#    echoes the request's last user message (--echo): what reached the cloud
#    holds placeholders, and the answer comes back restored although the
#    placeholders arrive split across 3-character chunks. Then the cost:
#    redact-then-cloud against plain cloud on the same prompt (a person's
#    name and an e-mail address), streamed, one request at a time,
#    interleaved, through a second, cloud-only daemon
#    (bench/config/redact-policy.toml) whose mock answers 40 chunks whatever
#    the prompt — with the echo, the redacted prompt (shorter) would make a
#    shorter answer and the comparison unfair. Added latency and tandem CPU
#    per request, plus `cargo bench -p redact` (criterion) for the library's
#    own cost.
#
# Environment: ROUNDS (5), CUT_AFTER (10), CUT_CHUNK_DELAY_MS (10),
# REDACT_ROUNDS (3), DURATION (5, seconds per redaction run), SKIP_CRITERION,
# CUT_LATENCY_MS (0: the cut mock's wait before its headers, a cloud's time
# to first token), WARM_STANDBY ("auto": the local model evaluates the prompt while the cloud
# streams; "never" to measure the failover gap without it).
# Writes bench/results/hybrid-STAMP.{jsonl,md}.
source "$(dirname "$0")/lib/common.sh"

ROUNDS="${ROUNDS:-5}"
CUT_AFTER="${CUT_AFTER:-10}"
WARM_STANDBY="${WARM_STANDBY:-auto}"
CUT_CHUNK_DELAY_MS="${CUT_CHUNK_DELAY_MS:-10}"
CUT_LATENCY_MS="${CUT_LATENCY_MS:-0}"
REDACT_ROUNDS="${REDACT_ROUNDS:-3}"
DURATION="${DURATION:-5}"

bench_init hybrid
[ -f "$MODEL" ] || { log "no model at $MODEL: run scripts/fetch-model.sh"; exit 1; }
bench_build

start_mock cut --record-limit 16 --chunks 40 --cut-after "$CUT_AFTER" --chunk-delay-ms "$CUT_CHUNK_DELAY_MS" \
  --latency-ms "$CUT_LATENCY_MS"
CUT_URL="$MOCK_URL" CUT_CA="$MOCK_CA"
start_mock cloud --record-limit 64 --echo
ECHO_URL="$MOCK_URL" ECHO_CA="$MOCK_CA"
start_mock fixed --record-limit 16 --chunks 40
FIXED_URL="$MOCK_URL" FIXED_CA="$MOCK_CA" FIXED_PID="$MOCK_PID"
{
  config_head "$BENCH_ROOT/bench/config/hybrid-policy.toml" "$BENCH_TMP"
  printf '\n[hybrid]\nwarm_standby = "%s"\n' "$WARM_STANDBY"
  local_tier
  cloud_tier cloud "$ECHO_CA" "$ECHO_URL"
  # The cut comes after content: no retry may follow, only the failover.
  cloud_tier cloud-cut "$CUT_CA" "$CUT_URL" "retries = 0"
} >"$BENCH_TMP/tandem.toml"
mkdir -p "$BENCH_TMP/redact"
{
  config_head "$BENCH_ROOT/bench/config/redact-policy.toml" "$BENCH_TMP/redact"
  cloud_tier cloud "$FIXED_CA" "$FIXED_URL"
} >"$BENCH_TMP/redact/tandem.toml"
start_tandem tandem-redact "$BENCH_TMP/redact/tandem.toml"
REDACT_URL="$TANDEM_URL" REDACT_PID="$TANDEM_PID"
start_tandem tandem "$BENCH_TMP/tandem.toml"
log "tandem $TANDEM_URL (pid $TANDEM_PID), cloud-only tandem $REDACT_URL (pid $REDACT_PID)"
log "mocks $CUT_URL (cut after $CUT_AFTER), $ECHO_URL (echo), $FIXED_URL (40 chunks)"

out="$RESULTS/hybrid-$BENCH_STAMP.jsonl"
: >"$out"
CHAT="$TANDEM_URL/v1/chat/completions"

# body FILE MODEL MAX_TOKENS STREAM TEXT_FILE
body() {
  python3 - "$2" "$3" "$4" "$5" >"$1" <<'PY'
import json, sys
model, max_tokens, stream, text = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "true", open(sys.argv[4]).read()
b = {"model": model, "stream": stream, "temperature": 0, "max_tokens": max_tokens,
     "messages": [{"role": "user", "content": text}]}
if stream:
    b["stream_options"] = {"include_usage": True}
print(json.dumps(b))
PY
}

# trace KIND ROUND ARM BODY APP: one streamed request, its pieces reduced to
# the figures that matter, as a JSON line.
trace() {
  local tr
  tr="$("$BIN/loadgen" trace --url "$CHAT" --body-file "$4" --header "x-tandem-app: $5" --timeout-s 300)"
  python3 - "$1" "$2" "$3" "$tr" "$CUT_AFTER" >>"$out" <<'PY'
import json, sys
kind, rnd, arm, tr, cut = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
info = next((o["tandem"] for o in tr["others"] if "tandem" in o), {})
p = tr["pieces"]
usage = next((o["usage"] for o in tr["others"] if o.get("usage")), None)
rec = {"kind": kind, "round": rnd, "arm": arm, "ok": tr["ok"], "route": info.get("route"), "usage": usage,
       "handovers": info.get("handovers", []), "entities": info.get("entities", []),
       "ttft_ms": tr["first_content_ms"], "last_ms": tr["last_byte_ms"], "pieces": len(p),
       "answer": "".join(x[1] for x in p)}
if kind == "cascade" and len(p) > 10:
    # The steady pace after the held tokens: the cascade asks the local
    # model for token statistics, which could slow every token.
    gaps = sorted(b[0] - a[0] for a, b in zip(p[9:], p[10:]))
    rec["gap_med_ms"] = gaps[len(gaps) // 2]
if kind == "failover" and len(p) > cut:
    rec["gap_ms"] = p[cut][0] - p[cut - 1][0]
    rec["max_gap_ms"] = max(b[0] - a[0] for a, b in zip(p, p[1:]))
    # The chunk gap just after the handover, to compare with local speed.
    rec["next_gap_ms"] = p[cut + 1][0] - p[cut][0] if len(p) > cut + 1 else None
print(json.dumps(rec))
PY
  log "$(tail -1 "$out" | cut -c1-230)"
}

wait_load_quiet
# 1. failover gap, a short and a long prompt, interleaved.
for r in $(seq "$ROUNDS"); do
  printf 'Question %s: why do ships have round portholes rather than square windows?' "$r" >"$BENCH_TMP/fo-short-$r.txt"
  { printf 'Failover %s. ' "$r"; cat "$BENCH_ROOT/bench/prompt.txt"; } >"$BENCH_TMP/fo-long-$r.txt"
  for len in short long; do
    body "$BENCH_TMP/fo-$len-$r.json" auto 64 true "$BENCH_TMP/fo-$len-$r.txt"
    trace failover "$r" "$len" "$BENCH_TMP/fo-$len-$r.json" failover
  done
done

# 2. cascade against plain local, same prompt, interleaved.
for r in $(seq "$ROUNDS"); do
  printf 'Question %s: explain in two sentences why the sea looks blue on a clear day.' "$r" >"$BENCH_TMP/cascade-$r.txt"
  body "$BENCH_TMP/cascade-$r-local.json" local 32 true "$BENCH_TMP/cascade-$r.txt"
  body "$BENCH_TMP/cascade-$r-auto.json" auto 32 true "$BENCH_TMP/cascade-$r.txt"
  # The cascade's prompt differs from the local one only in `model`: run the
  # local arm first, then flush the slot, so neither reuses the other's cache.
  trace cascade "$r" local "$BENCH_TMP/cascade-$r-local.json" bench
  printf 'Flush %s: name a colour.' "$r" >"$BENCH_TMP/flush-$r.txt"
  body "$BENCH_TMP/flush-$r.json" local 1 true "$BENCH_TMP/flush-$r.txt"
  "$BIN/loadgen" trace --url "$CHAT" --body-file "$BENCH_TMP/flush-$r.json" >/dev/null
  trace cascade "$r" cascade "$BENCH_TMP/cascade-$r-auto.json" cascade
done

# 3. redaction round trip against plain cloud, same prompt, interleaved.
cat >"$BENCH_TMP/redact.txt" <<'EOF'
Please write a short, friendly reply to Maria Schneider (maria.schneider@example.com) thanking her for the invoice she sent on Monday, and confirm that we will meet on Tuesday at ten in the usual place.
EOF
body "$BENCH_TMP/redact.json" auto 256 true "$BENCH_TMP/redact.txt"
trace redact-check 0 redact "$BENCH_TMP/redact.json" redact
curl -sf --cacert "$ECHO_CA" "$ECHO_URL/mock/requests" >"$BENCH_TMP/recorded.json"
python3 - "$BENCH_TMP/recorded.json" "$out" >>"$out" <<'PY'
import json, sys
rec = json.load(open(sys.argv[1]))[-1]
last = [json.loads(l) for l in open(sys.argv[2])][-1]
sent = json.dumps(rec["body"])
check = {"kind": "redact-verify", "email_left_device": "maria.schneider@example.com" in sent,
         "name_left_device": "Maria Schneider" in sent,
         "answer_restored": "maria.schneider@example.com" in last["answer"] and "Maria Schneider" in last["answer"],
         "entities": last["entities"]}
print(json.dumps(check))
PY
log "$(tail -1 "$out")"
for r in $(seq "$REDACT_ROUNDS"); do
  for arm in plain redact; do
    line="$("$BIN/loadgen" run --url "$REDACT_URL/v1/chat/completions" --body-file "$BENCH_TMP/redact.json" \
      --header "x-tandem-app: $arm" --concurrency 1 --duration-s "$DURATION" --warmup-s 0.5 \
      --cpu-pid "tandem=$REDACT_PID" --cpu-pid "mock=$FIXED_PID")"
    python3 - "$r" "$arm" "$line" >>"$out" <<'PY'
import json, sys
g = json.loads(sys.argv[3])
print(json.dumps({"kind": "redact", "round": int(sys.argv[1]), "arm": sys.argv[2], "requests": g["requests"],
    "failed": g["failed"] + sum(g["errors"].values()), "rps": g["rps"], "routes": g["routes"],
    "first_p50": g["first_content_ms"]["p50"], "first_p99": g["first_content_ms"]["p99"],
    "last_p50": g["last_byte_ms"]["p50"], "last_p99": g["last_byte_ms"]["p99"],
    "tandem_cpu_us_per_req": 1000 * g["cpu"]["tandem"]["cpu_ms"] / max(g["requests"], 1),
    "mock_cpu_us_per_req": 1000 * g["cpu"]["mock"]["cpu_ms"] / max(g["requests"], 1)}))
PY
    log "$(tail -1 "$out")"
  done
done

if [ -z "${SKIP_CRITERION:-}" ]; then
  log "cargo bench -p redact (criterion)"
  (cd "$BENCH_ROOT" && cargo bench --locked -p redact --bench redact -- --warm-up-time 1 --measurement-time 3) \
    2>/dev/null | tee "$BENCH_TMP/criterion.txt" | grep -E '^[a-z_0-9]+ +time:|^[a-z_0-9]+$|time:' || true
  python3 - "$BENCH_TMP/criterion.txt" >>"$out" <<'PY'
import json, re, sys
# "name  time:   [low unit median unit high unit]", the name on its own line
# when it is long.
name, res = None, {}
for line in open(sys.argv[1]):
    if re.match(r"^[A-Za-z_0-9/]+\s*$", line):
        name = line.strip()
    t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
    if t:
        res[line.split()[0] if not line[0].isspace() else name] = t.group(1) + " " + t.group(2)
print(json.dumps({"kind": "criterion", "median": res}))
PY
fi

python3 "$BENCH_ROOT/bench/lib/summarize_hybrid.py" "$out" "$CUT_AFTER" | tee "$RESULTS/hybrid-$BENCH_STAMP.md"
log "raw results: $out"
