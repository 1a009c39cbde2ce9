#!/usr/bin/env bash
# Runs every test: unit, in-process integration, the real binary, and the end-to-end suite
# against real peers. Installs the peers first if they are missing (tests/peers/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/peers/install.sh >/dev/null
cargo test --locked "$@"
