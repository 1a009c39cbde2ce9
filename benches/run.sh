#!/usr/bin/env bash
# One command for the whole benchmark (benches/suite.py runs benches/bench.py and benches/tls.py): installs wrk,
# hey, nginx, openssl, valgrind and vmagent (Debian), the STS peer (tests/peers/install.sh) and a venv for
# the report, builds the release binary, runs every scenario — plain-HTTP comparison, TLS
# upstream, senders / body size / routes series — and writes target/bench/results.md,
# results.json, chart.png (plain) and tls.md, tls.json, tls.png, senders.png, bodies.png,
# routes.png. Extra arguments go to benches/suite.py (--quick: 3 s runs; --sections tls,senders; ...).
# About 25 minutes on 2 cores (10 with --quick).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
# The release build compiles aws-lc and jemalloc (C): cc and make.
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v hey >/dev/null 2>&1 || missing+=(hey)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v vmagent >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# callgrind: instructions per request for the route counts (benches/profile.py).
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts system services on install; the benchmark runs its own instances.
$sudo service nginx stop >/dev/null 2>&1 || true
$sudo service victoria-metrics stop >/dev/null 2>&1 || true

bash tests/peers/install.sh >/dev/null
venv="$root/target/bench-venv"
if ! "$venv/bin/python" -c 'import cramjam, matplotlib' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check cramjam==2.14.0 matplotlib==3.11.2
fi
cargo build --release --locked --bin amp-rw-proxy --example sha256_cost --example aes_gcm_cost --example payload_cost --example paced
# 1,000 senders: wrk's sockets, the proxy's inbound and upstream ones, nginx's.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "$venv/bin/python" benches/suite.py "$@"
