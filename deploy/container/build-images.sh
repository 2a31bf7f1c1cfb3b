#!/usr/bin/env bash
# Builds Tandem's container images from the release binaries of this machine,
# with no base image to pull: assembles a build context (the binaries, the
# shared libraries `ldd` says they need, the CA bundle) and runs
# `docker build` on deploy/container/Dockerfile for each target.
#
#   deploy/container/build-images.sh            # tandem:local and mock-cloud:local
#   TANDEM_IMAGE=registry.example/tandem:1.0 deploy/container/build-images.sh tandem
#
# Arguments: the targets to build (`tandem`, `mock-cloud`; default both).
# Environment: TANDEM_IMAGE, MOCK_CLOUD_IMAGE (image names),
# TANDEM_CONTEXT_DIR (where the context is assembled; default
# target/container-context), TANDEM_BIN_DIR (default target/release).
# The binaries must be built first:
#   cargo build --release --locked --bins -p gateway -p mock-cloud
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="${TANDEM_BIN_DIR:-$root/target/release}"
ctx="${TANDEM_CONTEXT_DIR:-$root/target/container-context}"
tandem_image="${TANDEM_IMAGE:-tandem:local}"
mock_image="${MOCK_CLOUD_IMAGE:-mock-cloud:local}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tandem mock-cloud)

die() { echo "build-images: $*" >&2; exit 1; }

for t in "${targets[@]}"; do
  case "$t" in
    tandem|mock-cloud) [ -x "$bin_dir/$t" ] || die "$bin_dir/$t is missing: run cargo build --release --locked --bins -p gateway -p mock-cloud" ;;
    *) die "unknown target $t (tandem or mock-cloud)" ;;
  esac
done
command -v ldd >/dev/null || die "ldd is needed to find the shared libraries"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca_bundle" ] || die "$ca_bundle is missing (install ca-certificates)"

rm -rf "$ctx"
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/bin" "$ctx/ca"
cp "$root/deploy/container/Dockerfile" "$ctx/Dockerfile"
cp "$ca_bundle" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\ntandem:x:65532:65532:tandem:/:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\ntandem:x:65532:\n' >"$ctx/rootfs/etc/group"

# Every library a binary loads, at the path where the loader looks for it:
# `libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)` and the loader
# itself, `/lib64/ld-linux-x86-64.so.2 (0x...)`. Symlinks are followed.
copy_libs() {
  local exe="$1" lib
  ldd "$exe" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | while read -r lib; do
    [ -e "$ctx/rootfs$lib" ] && continue
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
}

for t in "${targets[@]}"; do
  # Debug info is half a gigabyte of llama.cpp symbols: drop it from the copy.
  if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$bin_dir/$t" "$ctx/bin/$t"
  else
    cp "$bin_dir/$t" "$ctx/bin/$t"
  fi
  copy_libs "$bin_dir/$t"
done
# The mock image carries a shell for its compose healthcheck (`test -s`).
sh_path="$(command -v dash || true)"
[ -n "$sh_path" ] || sh_path=/bin/sh
cp -L "$sh_path" "$ctx/bin/sh"
copy_libs "$ctx/bin/sh"
: >"$ctx/ca/.keep"

export DOCKER_BUILDKIT=0 # the legacy builder is enough for COPY-only images
for t in "${targets[@]}"; do
  image="$tandem_image"
  [ "$t" = mock-cloud ] && image="$mock_image"
  # Quiet unless it fails (the legacy builder warns that it is deprecated).
  if ! out="$(docker build --quiet --target "$t" --tag "$image" "$ctx" 2>&1)"; then
    echo "$out" >&2
    die "docker build --target $t failed"
  fi
  echo "built $image ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
done
