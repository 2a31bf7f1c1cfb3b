#!/usr/bin/env bash
# Every test, from a fresh clone: system packages, the test model, the Python
# SDK, formatting and lints, the whole workspace's tests (real model, real
# TLS, real sockets), the compose harness, and short fuzzing runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export OMP_WAIT_POLICY=passive

step() { printf '\n==> %s (at %d s)\n' "$*" "$SECONDS"; }

step "system packages";  bash scripts/install-deps.sh
step "test model";       bash scripts/fetch-model.sh
step "python SDK";       bash scripts/setup-python.sh
step "format";           cargo fmt --all -- --check
# One profile (release) for everything: llama.cpp is compiled once. The build
# selects the test targets too, so cargo resolves the features of the
# dependencies as the tests do (dev-dependencies add some) and the tests
# reuse every crate it compiled; with `--bins` alone they were compiled twice.
step "clippy";           cargo clippy --release --locked --workspace --all-targets -- -D warnings
step "build";            cargo build --release --locked --workspace --bins --tests
step "tests";            cargo test --release --locked --workspace --no-fail-fast
if [ -x tests/compose/run.sh ]; then
  # The build above made its binaries.
  step "compose harness"; E2E_SKIP_BUILD=1 bash tests/compose/run.sh
fi
if [ -x scripts/fuzz.sh ]; then
  step "fuzzing";        bash scripts/fuzz.sh
fi
step "all tests passed"
