#!/usr/bin/env bash
# arm64 (Graviton) image without an arm64 machine or a registry:
#   1. cross-compiles the static aarch64 musl binary (jemalloc included) with Debian's
#      gcc-aarch64-linux-gnu for the C parts (aws-lc, jemalloc) and Rust's self-contained musl;
#   2. smoke-tests it under qemu-user-static: --help, --version, serving with dummy keys,
#      GET /-/healthy and /-/ready, and the `probe` subcommand (also under qemu) against it;
#   3. builds the arm64 image (deploy/image.sh --arch arm64 -> amp-rw-proxy:<version>-arm64) and
#      a two-architecture manifest list amp-rw-proxy:<version>-multiarch with the amd64 image
#      (built first if missing), checked with `podman manifest inspect`.
#
#   bash deploy/arm64.sh            # root or sudo for apt; takes about as long as a release build
#
# Not run by .ci/run: the second release build (LTO, one codegen unit) does not fit CI's time
# next to the rest. To publish: podman manifest push --all amp-rw-proxy:<version>-multiarch \
#   docker://REGISTRY/amp-rw-proxy:<version>
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRIPLE=aarch64-unknown-linux-musl
WORK="$ROOT/target/arm64"
mkdir -p "$WORK"
started=$SECONDS
fail() { echo "deploy/arm64.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v file >/dev/null 2>&1 || missing+=(file)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$TRIPLE" || rustup target add "$TRIPLE"

echo "=== deploy/arm64.sh: cross-compiling $TRIPLE and building the arm64 image"
bash deploy/image.sh --arch arm64 | tee "$WORK/image.txt"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$TRIPLE/release/amp-rw-proxy"
f="$(file -L "$BIN")"
case "$f" in
  *"ARM aarch64"*"statically linked"* | *"ARM aarch64"*"static-pie linked"*) ok "$f" ;;
  *) fail "not a static aarch64 binary: $f" ;;
esac
# jemalloc is the allocator (tikv-jemallocator): its symbols are prefixed _rjem_ and its
# configuration string is in the binary.
grep -q 'dirty_decay_ms:1000' "$BIN" || fail "jemalloc's configuration string is not in the binary"
ok "jemalloc linked in (its malloc_conf string is in the binary)"

echo "=== deploy/arm64.sh: smoke test under qemu-aarch64-static"
q=(qemu-aarch64-static "$BIN")
"${q[@]}" --help >/dev/null || fail "--help"
"${q[@]}" --version || fail "--version"
rc=0
"${q[@]}" --no-such-flag >/dev/null 2>&1 || rc=$?
[ "$rc" = 64 ] || fail "a bad flag exited $rc, want 64"
ok "--help, --version exit 0; a bad flag exits 64"
env -i AWS_ACCESS_KEY_ID=AKIDSMOKETEST000000 AWS_SECRET_ACCESS_KEY=smoke-test-secret-not-real \
  AWS_EC2_METADATA_DISABLED=true AMP_RW_PROXY_DRAIN_DELAY=0s \
  "${q[@]}" --listen 127.0.0.1:0 --upstream-url http://127.0.0.1:9/api/v1/write --region us-east-1 \
  2>"$WORK/serve.log" &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 300); do
  port="$(grep -o 'listen=127\.0\.0\.1:[0-9]*' "$WORK/serve.log" | sed -n 1p | cut -d: -f2 || true)"
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$WORK/serve.log"; fail "the server exited"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$WORK/serve.log"; fail "no listening line"; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/-/healthy")" = 200 ] || fail "/-/healthy"
ready=""
for _ in $(seq 1 100); do
  ready="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/-/ready")"
  [ "$ready" = 200 ] && break
  sleep 0.1
done
[ "$ready" = 200 ] || fail "/-/ready is $ready"
env -i AMP_RW_PROXY_LISTEN="0.0.0.0:$port" "${q[@]}" probe --ready || fail "probe --ready under qemu"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
trap - EXIT
[ "$rc" = 0 ] || fail "exit code $rc after SIGTERM"
ok "serving under qemu: /-/healthy 200, /-/ready 200, probe --ready 0, SIGTERM -> exit 0"

echo "=== deploy/arm64.sh: manifest list"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)"
podman image exists "localhost/amp-rw-proxy:$version" || bash deploy/image.sh >/dev/null
list="localhost/amp-rw-proxy:$version-multiarch"
podman manifest rm "$list" >/dev/null 2>&1 || true
podman manifest create "$list" >/dev/null
podman manifest add "$list" "containers-storage:localhost/amp-rw-proxy:$version" >/dev/null
podman manifest add "$list" "containers-storage:localhost/amp-rw-proxy:$version-arm64" >/dev/null
podman manifest inspect "$list" >"$WORK/manifest.json"
platforms="$(python3 -c 'import json,sys; print(" ".join(sorted(m["platform"]["os"] + "/" + m["platform"]["architecture"] for m in json.load(open(sys.argv[1]))["manifests"])))' "$WORK/manifest.json")"
[ "$platforms" = "linux/amd64 linux/arm64" ] || fail "manifest list platforms: $platforms"
ok "$list: $platforms"
for a in "" -arm64; do
  echo "  amp-rw-proxy:$version$a: $(podman image inspect --format '{{.Architecture}} {{.Size}} bytes' "localhost/amp-rw-proxy:$version$a")"
done
echo "deploy/arm64.sh: done in $((SECONDS - started))s"
