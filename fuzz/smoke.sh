#!/usr/bin/env bash
# Short fuzz run of the payload path (decode, validate, rewrite) for CI: SECONDS (default 45)
# of cargo-fuzz from the checked-in corpus. Fails on any panic, failed property or allocation
# over 256 MiB. New inputs go to target/fuzz-corpus, never into the repository.
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer=address, coverage instrumentation);
# RUSTC_BOOTSTRAP=1 makes the stable toolchain accept them. The first build compiles the whole
# dependency graph instrumented (several minutes); later runs reuse fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-45}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
mkdir -p target/fuzz-corpus
RUSTC_BOOTSTRAP=1 cargo fuzz run remote_write target/fuzz-corpus fuzz/corpus/remote_write -- \
  -max_total_time="$secs" -malloc_limit_mb=256 -max_len=65536 -print_final_stats=1
