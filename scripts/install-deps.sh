#!/usr/bin/env bash
# Installs the system packages Tandem's build and tests need on a Debian
# machine: cmake and libclang-dev build llama.cpp through llama-cpp-sys-2;
# wrk and socat (a plain relay, the floor of one extra hop) drive the benchmarks;
# chromium (headless) renders the status page in its test.
# Does nothing for packages already present, so it is cheap to call each time.
set -euo pipefail
need=()
for pkg in cmake libclang-dev wrk socat chromium fonts-liberation; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
