#!/usr/bin/env bash
# Short fuzzing runs of every target in fuzz/ (cargo fuzz, libFuzzer):
# builds them, then runs each for FUZZ_SECONDS (default 60) from the seed
# corpus in fuzz/corpus/<target>/, and fails on the first crash, panic,
# failed assertion, hang (an input taking over FUZZ_TIMEOUT seconds) or
# memory blow-up (over 2 GB).
#
#   scripts/fuzz.sh                 every target
#   scripts/fuzz.sh sse_parser      some targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#
# The toolchain is stable Rust; libFuzzer's instrumentation needs `-Z`
# flags, which RUSTC_BOOTSTRAP=1 lets a stable compiler accept (for this
# script's builds only: the fuzz crate is not a workspace member and builds
# in its own target directory).
#
# What the fuzzer finds on the way goes to a scratch corpus, never into the
# committed seeds; a crashing input is kept in fuzz/artifacts/<target>/ and
# replayed with `cargo fuzz run <target> <file>` (with RUSTC_BOOTSTRAP=1).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

seconds="${FUZZ_SECONDS:-60}"
timeout_s="${FUZZ_TIMEOUT:-10}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz: $(rustc --version), $(cargo fuzz --version), ${seconds}s per target"
start=$(date +%s)
cargo fuzz build
echo "fuzz: targets built in $(($(date +%s) - start))s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
summary=()
for t in "${targets[@]}"; do
  echo "==> fuzz $t"
  mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
  log="$scratch/$t.log"
  # The first corpus directory receives new inputs: the scratch one.
  if cargo fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb=2048 \
      -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    summary+=("$t: ${runs:-?} executions in ${seconds}s")
  else
    grep -A 12 -m 1 'panicked at' "$log" || true
    tail -n 30 "$log"
    failed+=("$t")
    summary+=("$t: FAILED (input in fuzz/artifacts/$t/)")
  fi
done

echo
printf 'fuzz: %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
