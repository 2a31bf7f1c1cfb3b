#!/usr/bin/env bash
# The local model through Tandem's HTTP API beside the same model driven
# directly through llama-cpp-2 (crates/local/examples/direct_bench.rs), in one
# run, interleaved round by round (direct, tandem, direct, tandem, ...):
#
# 1. speed: time to first token, prompt tokens/s, generation tokens/s and
#    peak RSS; a ~200-token prompt (bench/prompt.txt, prefixed with the round
#    number so no round reuses another's KV cache), 128 generated tokens,
#    temperature 0, streaming, `model: "local"`. Same settings on both sides:
#    2 threads, context 2048, n_batch 512, the `gemma` template.
# 2. multi-turn: time to first token of a follow-up turn whose conversation
#    prefix is still in the slot's KV cache, against the same turn after the
#    cache was taken by another conversation (/v1/status shows the reused
#    prompt tokens).
# 3. busy: generation speed while loadgen keeps 16 cloud streams going
#    through the same daemon, against idle, interleaved. Two cloud loads: a
#    paced mock (a chunk every PACED_CHUNK_DELAY_MS, like a remote model) and
#    an unpaced one (as fast as the 2 cores allow: the worst case).
#
# tandem is started WITHOUT OMP_WAIT_POLICY in its environment, so its own
# re-exec with OMP_WAIT_POLICY=passive is what is measured; direct_bench is
# run with OMP_WAIT_POLICY=passive, as its documentation says.
#
# Environment: ROUNDS (5), MT_ROUNDS (3), BUSY_ROUNDS (3), N_PREDICT (128),
# BUSY_CONCURRENCY (16), PACED_CHUNK_DELAY_MS (20).
# Writes bench/results/local-STAMP.{jsonl,md}.
source "$(dirname "$0")/lib/common.sh"

ROUNDS="${ROUNDS:-5}"
MT_ROUNDS="${MT_ROUNDS:-3}"
BUSY_ROUNDS="${BUSY_ROUNDS:-3}"
N_PREDICT="${N_PREDICT:-128}"
BUSY_CONCURRENCY="${BUSY_CONCURRENCY:-16}"
PACED_CHUNK_DELAY_MS="${PACED_CHUNK_DELAY_MS:-20}"
THREADS=2 CTX=2048 N_BATCH=512

bench_init local
[ -f "$MODEL" ] || { log "no model at $MODEL: run scripts/fetch-model.sh"; exit 1; }
bench_build
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  (cd "$BENCH_ROOT" && cargo build --release --locked -p local --example direct_bench)
fi

start_mock paced --record-limit 16 --chunks 40 --chunk-delay-ms "$PACED_CHUNK_DELAY_MS"
PACED_URL="$MOCK_URL" PACED_CA="$MOCK_CA" PACED_PID="$MOCK_PID"
start_mock cloud --record-limit 16 --chunks 20
FAST_URL="$MOCK_URL" FAST_CA="$MOCK_CA" FAST_PID="$MOCK_PID"
{
  config_head "$BENCH_ROOT/bench/config/local-policy.toml" "$BENCH_TMP"
  local_tier context_len="$CTX" threads="$THREADS" n_batch="$N_BATCH"
  cloud_tier cloud "$FAST_CA" "$FAST_URL"
  cloud_tier cloud-paced "$PACED_CA" "$PACED_URL"
} >"$BENCH_TMP/tandem.toml"
# The daemon's own re-exec must set OMP_WAIT_POLICY: start it without.
TANDEM_LAUNCH=(env -u OMP_WAIT_POLICY)
start_tandem tandem "$BENCH_TMP/tandem.toml"
omp="$(tr '\0' '\n' <"/proc/$TANDEM_PID/environ" | sed -n 's/^OMP_WAIT_POLICY=//p')"
log "tandem $TANDEM_URL (pid $TANDEM_PID, OMP_WAIT_POLICY=${omp:-unset}); mocks $FAST_URL, $PACED_URL (paced)"

out="$RESULTS/local-$BENCH_STAMP.jsonl"
: >"$out"
CHAT="$TANDEM_URL/v1/chat/completions"

# body FILE MAX_TOKENS MODEL MESSAGES_JSON: a streamed, greedy request.
body() {
  python3 - "$2" "$3" "$4" >"$1" <<'PY'
import json, sys
print(json.dumps({"model": sys.argv[2], "stream": True, "stream_options": {"include_usage": True},
                  "temperature": 0, "max_tokens": int(sys.argv[1]), "messages": json.loads(sys.argv[3])}))
PY
}
user_msg() { python3 -c 'import json,sys; print(json.dumps([{"role":"user","content":open(sys.argv[1]).read()}]))' "$1"; }
local_status() { curl -sf "$TANDEM_URL/v1/status" | jq -c '.tiers[] | select(.name=="local") | .status'; }

# trace_local KIND ROUND BODY [extra JSON]: one streamed request through
# Tandem, its timings and the slot's counters around it, as a JSON line.
trace_local() {
  local kind="$1" round="$2" bodyf="$3" extra="${4:-}" s0 s1 tr
  [ -n "$extra" ] || extra='{}'
  s0="$(local_status)"
  tr="$("$BIN/loadgen" trace --url "$CHAT" --body-file "$bodyf" --timeout-s 300)"
  s1="$(local_status)"
  python3 - "$kind" "$round" "$tr" "$s0" "$s1" "$extra" >>"$out" <<'PY'
import json, sys
kind, rnd, tr, s0, s1, extra = sys.argv[1:]
t, s0, s1 = json.loads(tr), json.loads(s0), json.loads(s1)
usage = next((o["usage"] for o in t["others"] if o.get("usage")), {})
pieces = t["pieces"]
n = usage.get("completion_tokens", len(pieces))
# Tandem does not evaluate the last token of an answer cut by max_tokens, so
# between the first and the last piece lie n-2 full token steps (decode and
# sample) plus one more sample: n-2 over that time is the conservative rate.
span = pieces[-1][0] - pieces[0][0] if len(pieces) > 2 else 0
rec = {"kind": kind, "round": int(rnd), "arm": "tandem", "ok": t["ok"], "route": t["route"],
       "ttft_ms": t["first_content_ms"], "last_ms": t["last_byte_ms"],
       "prompt_tokens": usage.get("prompt_tokens"), "gen_tokens": n,
       "gen_tps": (n - 2) / (span / 1000) if span > 0 else None,
       "evaluated_prompt_tokens": s1["evaluated_prompt_tokens"] - s0["evaluated_prompt_tokens"],
       "reused_prompt_tokens": s1["reused_prompt_tokens"] - s0["reused_prompt_tokens"],
       "answer": "".join(p[1] for p in pieces)}
rec["prompt_tps"] = rec["evaluated_prompt_tokens"] / (rec["ttft_ms"] / 1000) if rec["ttft_ms"] else None
rec.update(json.loads(extra))
print(json.dumps(rec))
PY
}

run_direct() { # ROUND PROMPT_FILE
  local line
  if [ -n "${BENCH_NO_BUILD:-}" ]; then
    line="$(OMP_WAIT_POLICY=passive "$BIN/examples/direct_bench" --model "$MODEL" --prompt-file "$2" \
      --n-predict "$N_PREDICT" --threads "$THREADS" --ctx "$CTX" --n-batch "$N_BATCH" --template gemma)"
  else
    line="$(cd "$BENCH_ROOT" && OMP_WAIT_POLICY=passive cargo run --release --locked -q -p local --example direct_bench -- \
      --model "$MODEL" --prompt-file "$2" --n-predict "$N_PREDICT" --threads "$THREADS" --ctx "$CTX" \
      --n-batch "$N_BATCH" --template gemma)"
  fi
  python3 - "$1" "$line" >>"$out" <<'PY'
import json, sys
d = json.loads(sys.argv[2])
print(json.dumps({"kind": "speed", "round": int(sys.argv[1]), "arm": "direct", "ok": True,
    "ttft_ms": d["ttft_ms"], "prompt_tokens": d["prompt_tokens"], "evaluated_prompt_tokens": d["prompt_tokens"],
    "prompt_tps": d["prompt_tokens"] / (d["ttft_ms"] / 1000), "prompt_tps_own": d["prompt_tps"],
    "gen_tokens": d["gen_tokens"], "gen_tps": d["gen_tps"], "peak_rss_bytes": d["peak_rss_bytes"],
    "load_ms": d["load_ms"]}))
PY
}

wait_load_quiet
# 1. speed, interleaved.
for r in $(seq "$ROUNDS"); do
  { printf 'Request %s. ' "$r"; cat "$BENCH_ROOT/bench/prompt.txt"; } >"$BENCH_TMP/prompt-$r.txt"
  body "$BENCH_TMP/speed-$r.json" "$N_PREDICT" local "$(user_msg "$BENCH_TMP/prompt-$r.txt")"
  run_direct "$r" "$BENCH_TMP/prompt-$r.txt"; log "$(tail -1 "$out" | cut -c1-220)"
  trace_local speed "$r" "$BENCH_TMP/speed-$r.json"; log "$(tail -1 "$out" | cut -c1-220)"
done
rss="$(peak_rss_bytes "$TANDEM_PID")"
echo "{\"kind\":\"rss\",\"arm\":\"tandem\",\"peak_rss_bytes\":$rss}" >>"$out"

# 2. multi-turn: the follow-up with its prefix cached, then without.
for r in $(seq "$MT_ROUNDS"); do
  { printf 'Conversation %s. ' "$r"; cat "$BENCH_ROOT/bench/prompt.txt"; } >"$BENCH_TMP/conv-$r.txt"
  body "$BENCH_TMP/turn1-$r.json" 64 local "$(user_msg "$BENCH_TMP/conv-$r.txt")"
  trace_local turn1 "$r" "$BENCH_TMP/turn1-$r.json"
  answer="$(tail -1 "$out" | jq -r .answer)"
  msgs="$(python3 -c '
import json, sys
print(json.dumps([{"role": "user", "content": open(sys.argv[1]).read()},
                  {"role": "assistant", "content": sys.argv[2]},
                  {"role": "user", "content": "Thank you. Now make the Saturday part of the plan shorter, in three bullet points."}]))' \
    "$BENCH_TMP/conv-$r.txt" "$answer")"
  body "$BENCH_TMP/turn2-$r.json" 16 local "$msgs"
  trace_local turn2-reuse "$r" "$BENCH_TMP/turn2-$r.json"; log "$(tail -1 "$out" | cut -c1-220)"
  body "$BENCH_TMP/flush-$r.json" 1 local "[{\"role\":\"user\",\"content\":\"Unrelated $r: name a colour.\"}]"
  trace_local flush "$r" "$BENCH_TMP/flush-$r.json"
  trace_local turn2-fresh "$r" "$BENCH_TMP/turn2-$r.json"; log "$(tail -1 "$out" | cut -c1-220)"
done

# 3. generation speed with cloud streams going through the same daemon.
cloud_body() {
  python3 - "$1" >"$BENCH_TMP/cloud-$1.json" <<'PY'
import json, sys
print(json.dumps({"model": sys.argv[1], "stream": True, "max_tokens": 64,
                  "messages": [{"role": "user", "content": "Write two short sentences about the harbour at dawn."}]}))
PY
}
cloud_body cloud; cloud_body cloud-paced
busy_run() { # ROUND MODEL LABEL
  local lg="$BENCH_TMP/busy-$1-$3.json" lgpid t0 t1
  t0="$(cpu_ms "$TANDEM_PID")"
  "$BIN/loadgen" run --url "$CHAT" --body-file "$BENCH_TMP/cloud-$2.json" --concurrency "$BUSY_CONCURRENCY" \
    --duration-s 120 --warmup-s 0 --timeout-s 60 >"$lg" &
  lgpid=$!
  BENCH_PIDS+=("$lgpid")
  sleep 1
  trace_local "busy-$3" "$1" "$BENCH_TMP/busy-local-$1-$3.json"
  kill -TERM "$lgpid"; wait "$lgpid" || true
  t1="$(cpu_ms "$TANDEM_PID")"
  python3 - "$lg" "$((t1 - t0))" "$3" >>"$out" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
rec = {"kind": "busy-load", "label": sys.argv[3], "cloud_rps": g["rps"], "cloud_requests": g["requests"], "cloud_failed": g["failed"],
       "cloud_ttft_p50_ms": (g["first_content_ms"] or {}).get("p50"), "window_s": g["window_s"],
       "tandem_cores": int(sys.argv[2]) / 1000 / max(g["window_s"], 1e-3)}
print(json.dumps(rec))
PY
}
for r in $(seq "$BUSY_ROUNDS"); do
  for label in idle paced fast; do
    { printf 'Busy test %s %s. ' "$r" "$label"; cat "$BENCH_ROOT/bench/prompt.txt"; } >"$BENCH_TMP/busy-$r-$label.txt"
    body "$BENCH_TMP/busy-local-$r-$label.json" "$N_PREDICT" local "$(user_msg "$BENCH_TMP/busy-$r-$label.txt")"
  done
  trace_local busy-idle "$r" "$BENCH_TMP/busy-local-$r-idle.json"; log "$(tail -1 "$out" | cut -c1-200)"
  busy_run "$r" cloud-paced paced; log "$(tail -2 "$out" | cut -c1-200 | tr '\n' ' ')"
  busy_run "$r" cloud fast; log "$(tail -2 "$out" | cut -c1-200 | tr '\n' ' ')"
done

python3 "$BENCH_ROOT/bench/lib/summarize_local.py" "$out" "$omp" | tee "$RESULTS/local-$BENCH_STAMP.md"
log "raw results: $out"
