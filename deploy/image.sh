#!/usr/bin/env bash
# Builds the container image amp-rw-proxy:<version> from deploy/Dockerfile without a registry:
# the static musl binary is built on this machine (as deploy/validate.sh builds it) and the
# Dockerfile's "host" stage takes it, with the CA bundle and deploy/rootfs/etc/{passwd,group},
# into the FROM scratch image. With podman where it is installed, else docker.
#
#   bash deploy/image.sh                      # x86_64: amp-rw-proxy:<version> (+ :local)
#   bash deploy/image.sh --arch arm64         # aarch64 (cross-compiled): amp-rw-proxy:<version>-arm64
#   bash deploy/image.sh --binary PATH        # take this static binary instead of building one
#   bash deploy/image.sh --tag NAME:TAG       # another image name
#
# Prints the image's name, size, labels and file list. Needs: cargo + rustup (the musl target is
# added if missing), musl-tools, ca-certificates (/etc/ssl/certs/ca-certificates.crt), podman or
# docker; for arm64 also gcc-aarch64-linux-gnu (see deploy/arm64.sh).
# Where a registry is reachable, `docker build -f deploy/Dockerfile .` compiles in the image
# instead (the Dockerfile's default "builder" stage); both give the same final stage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

arch=amd64
binary=""
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "deploy/image.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
case "$arch" in
  amd64) triple=x86_64-unknown-linux-musl ;;
  arm64) triple=aarch64-unknown-linux-musl ;;
  *) echo "deploy/image.sh: --arch must be amd64 or arm64, not $arch" >&2; exit 64 ;;
esac

fail() { echo "deploy/image.sh: $*" >&2; exit 1; }

if command -v podman >/dev/null 2>&1; then
  engine=podman
  # HEALTHCHECK is kept only in the Docker image format (OCI images have no such field).
  format=(--format docker)
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
  format=()
else
  fail "neither podman nor a running Docker engine found (apt-get install podman, see deploy/README.md)"
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)"
[ -n "$version" ] || fail "no version in Cargo.toml"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain -- src proto Cargo.toml Cargo.lock build.rs .cargo 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
source_url="${IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo unknown)}"
if [ -z "$tag" ]; then
  tag="amp-rw-proxy:$version"
  [ "$arch" = amd64 ] || tag="$tag-$arch"
fi

if [ -z "$binary" ]; then
  # The build of deploy/validate.sh step 5 (same target, same settings): reused when fresh.
  if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
  fi
  build_env=(CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TERM_COLOR=never)
  if [ "$arch" = arm64 ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || fail "aarch64-linux-gnu-gcc not found (apt-get install gcc-aarch64-linux-gnu)"
    # ring/aws-lc/jemalloc's C code is compiled with the Debian cross compiler; the static musl
    # libc is Rust's own (self-contained), so no aarch64 musl-gcc is needed.
    build_env+=(CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
                AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
                CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc)
  fi
  nice -n 10 env "${build_env[@]}" cargo build --release --locked --target "$triple"
  binary="${CARGO_TARGET_DIR:-$ROOT/target}/$triple/release/amp-rw-proxy"
fi
[ -x "$binary" ] || fail "$binary is not an executable"
case "$(file -L "$binary")" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) fail "$binary is not statically linked (a scratch image has no libc)" ;;
esac
certs=/etc/ssl/certs/ca-certificates.crt
[ -s "$certs" ] || fail "$certs missing (apt-get install ca-certificates)"

# The context of the Dockerfile's "host" stage: rootfs/ exactly as the image's / will be.
ctx="$ROOT/target/image/$arch"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/ssl/certs"
cp "$binary" "$ctx/rootfs/usr/local/bin/amp-rw-proxy"
cp "$certs" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
cp deploy/rootfs/etc/passwd deploy/rootfs/etc/group "$ctx/rootfs/etc/"
chmod 0755 "$ctx/rootfs/usr/local/bin/amp-rw-proxy"
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"

# A manifest list (deploy/arm64.sh) refers to the image it was made from; replacing that image
# breaks the list, so drop it (deploy/arm64.sh makes it again).
if [ "$engine" = podman ] && podman manifest exists "amp-rw-proxy:$version-multiarch" 2>/dev/null; then
  podman manifest rm "amp-rw-proxy:$version-multiarch" >/dev/null
  echo "deploy/image.sh: removed the manifest list amp-rw-proxy:$version-multiarch (run deploy/arm64.sh to make it again)"
fi
previous="$("$engine" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
echo "deploy/image.sh: $engine build $tag (linux/$arch, binary $binary)"
"$engine" build "${format[@]}" --platform "linux/$arch" \
  --build-arg BINARY_SOURCE=host \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg SOURCE="$source_url" \
  -f deploy/Dockerfile -t "$tag" "$ctx"
if [ "$arch" = amd64 ] && [ "$tag" = "amp-rw-proxy:$version" ]; then
  # deploy/docker-compose.yml's image name, so `compose up` finds it without building.
  "$engine" tag "$tag" amp-rw-proxy:local
fi

# The image this build replaced, if nothing else uses it (keeps vfs storage from growing per build).
if [ -n "$previous" ] && [ "$previous" != "$("$engine" image inspect --format '{{.Id}}' "$tag")" ]; then
  "$engine" rmi "$previous" >/dev/null 2>&1 || true
fi
size="$("$engine" image inspect --format '{{.Size}}' "$tag")"
echo "deploy/image.sh: $tag: $(awk -v s="$size" 'BEGIN { printf "%.1f MiB (%d bytes)", s / 1048576, s }')"
"$engine" image inspect --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} labels={{.Config.Labels}}' "$tag"
echo "deploy/image.sh: files:"
(cd "$ctx/rootfs" && find . -type f -printf '  /%P %s bytes\n' | sort)
