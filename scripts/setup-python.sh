#!/usr/bin/env bash
# Creates .venv with the official OpenAI Python SDK, used by the test suite to
# prove real clients work against Tandem, and PyYAML, with which
# tests/compose/check_deploy.py reads the Kubernetes manifests and the compose
# file. Does nothing when both are already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import openai, yaml' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv" 2>/dev/null || { python3 -m pip install --quiet virtualenv && python3 -m virtualenv -q "$venv"; }
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'openai>=1.50,<3' 'pyyaml>=6,<7'
