#!/usr/bin/env bash
# One command from a fresh clone to a running daemon: system packages, the
# test model, a release build, then `tandem serve` with the embedded defaults
# (local model; a cloud tier when TANDEM_CLOUD_URL is set). Extra arguments go
# to `tandem serve` (for example --listen 127.0.0.1:9000 or --config FILE).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
bash scripts/fetch-model.sh
cargo build --release --locked --bin tandem
exec "${CARGO_TARGET_DIR:-target}/release/tandem" serve "$@"
