#!/usr/bin/env bash
# The compose harness: Tandem and TLS mock clouds in containers, checked end to
# end (tests/compose/e2e.py), always torn down.
#
#   tests/compose/run.sh
#
# 1. builds the release binaries (scripts/test.sh, which has built them,
#    skips this);
# 2. checks the deployment files (tests/compose/check_deploy.py: systemd unit,
#    launchd plist, Kubernetes manifests, compose file, phone and Termux
#    examples) — also without Docker;
# 3. without a Docker daemon or docker-compose, says so and exits 0;
# 4. builds the images FROM scratch out of this machine's files
#    (deploy/container/build-images.sh), starts docker-compose.yml under a
#    project name of its own (its own network and volume), runs the checks,
#    and tears everything down on any exit.
#
# Environment: KEEP_STACK=1 leaves the stack up for debugging (printing how to
# remove it); E2E_SKIP_BUILD=1 skips the cargo build.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
started=$SECONDS

say() { printf '[compose] %s\n' "$*"; }
fail() { printf '[compose] FAILED: %s\n' "$*" >&2; exit 1; }

if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  say "building release binaries"
  cargo build --release --locked --bins -p gateway -p mock-cloud || fail "cargo build"
fi
bin_dir="$CARGO_TARGET_DIR/release"

# The deployment files: checked with the .venv Python (PyYAML from scripts/setup-python.sh).
bash scripts/setup-python.sh || fail "scripts/setup-python.sh"
say "checking deployment files"
"$root/.venv/bin/python" tests/compose/check_deploy.py --tandem "$bin_dir/tandem" || fail "deployment files (check_deploy.py)"

if ! command -v docker >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 \
  || ! docker info >/dev/null 2>&1; then
  echo "compose harness: not run (docker missing)"
  exit 0
fi
[ -f models/gemma-3-270m-q4_k_m.gguf ] || fail "models/gemma-3-270m-q4_k_m.gguf is missing: run scripts/fetch-model.sh"

project="tandem-e2e-$$"
tag="e2e-$$"
work="$(mktemp -d /tmp/tandem-compose.XXXXXX)"
export TANDEM_IMAGE="tandem:$tag" MOCK_CLOUD_IMAGE="mock-cloud:$tag"
export TANDEM_CONTEXT_DIR="$work/context" TANDEM_BIN_DIR="$bin_dir"
# Random per run: the gateway's client token and the key the mock requires.
TANDEM_CLIENT_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
TANDEM_CLOUD_API_KEY="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export TANDEM_CLIENT_TOKEN TANDEM_CLOUD_API_KEY
# A free host port, picked by docker (compose port tandem 8080 says which).
export TANDEM_HOST_PORT=0
# The policy is a copy the checks edit; the gateway (uid 65532) must read it.
export TANDEM_POLICY_DIR="$work/policy"
mkdir -p "$TANDEM_POLICY_DIR"
cp config/compose/policy/policy.toml "$TANDEM_POLICY_DIR/policy.toml"
chmod 755 "$work" "$TANDEM_POLICY_DIR"
chmod 644 "$TANDEM_POLICY_DIR/policy.toml"
compose=(docker-compose --project-name "$project" --file "$root/docker-compose.yml" --project-directory "$root")

e2e_pid=
teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$e2e_pid" ]; then
    kill "$e2e_pid" 2>/dev/null || true
    wait "$e2e_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    say "logs of the failed run (last 40 lines per service):"
    "${compose[@]}" logs --no-color --tail 40 2>&1 | cut -c1-400 || true
  fi
  if [ "${KEEP_STACK:-0}" = 1 ]; then
    say "KEEP_STACK=1: left running; remove with: ${compose[*]} down -v && docker rmi $TANDEM_IMAGE $MOCK_CLOUD_IMAGE"
  else
    "${compose[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    docker rmi "$TANDEM_IMAGE" "$MOCK_CLOUD_IMAGE" >/dev/null 2>&1 || true
    rm -rf "$work"
    # Nothing of this run may be left behind.
    left="$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(docker network ls -q --filter "label=com.docker.compose.project=$project")$(docker volume ls -q --filter "label=com.docker.compose.project=$project")"
    if [ -n "$left" ]; then
      printf '[compose] FAILED: teardown left containers, networks or volumes of %s\n' "$project" >&2
      rc=1
    else
      say "torn down ($project)"
    fi
  fi
  if [ "$rc" -eq 0 ]; then
    say "passed in $((SECONDS - started)) s"
  else
    printf '[compose] FAILED (exit %s) after %s s\n' "$rc" "$((SECONDS - started))" >&2
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building images $TANDEM_IMAGE, $MOCK_CLOUD_IMAGE"
bash deploy/container/build-images.sh tandem mock-cloud || fail "building the images"

say "starting the stack ($project)"
"${compose[@]}" up --detach --no-build >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "docker-compose up"; }

say "running the end-to-end checks"
E2E_COMPOSE="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${compose[@]}")" \
E2E_TOKEN="$TANDEM_CLIENT_TOKEN" \
E2E_POLICY_FILE="$TANDEM_POLICY_DIR/policy.toml" \
E2E_COMPOSE_POLICY="$root/config/compose/policy/policy.toml" \
E2E_SHIPPED_POLICY="$root/config/policy.toml" \
  python3 tests/compose/e2e.py &
# In the background so that a signal to this script tears down at once
# (bash runs traps only between foreground commands).
e2e_pid=$!
wait "$e2e_pid" || fail "end-to-end checks (see the message above)"
e2e_pid=
