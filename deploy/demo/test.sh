#!/usr/bin/env bash
# Tests deploy/demo.sh as a user meets it (CI runs this; about a minute and a half):
#   bounded    `--for 20s` exits 0 with series at the receiver, the AMP stand-in rejected nothing,
#              and Account B's secret key appears neither in what it printed nor in the proxy's log
#   ctrl-c     the open-ended demo, once series arrive, gets SIGINT on its whole process group (what
#              a terminal's Ctrl-C sends): exit 130, every process it started is gone, every port
#              it printed is closed, its temporary directory removed
#   sigterm    the same with SIGTERM to the script alone (what a supervisor sends): exit 143
#   refused    with a wrong ExternalId (STS refuses AssumeRole): `--for 6s` exits 1 with one line
#              on stderr saying the proxy is not ready and what /-/ready says
# Each case starts the whole chain afresh (moto, two Prometheus, the stand-in, the proxy).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# Job control: each background demo gets its own process group (so a group-wide SIGINT is a
# real Ctrl-C) and does not start with SIGINT ignored, as background jobs of a script otherwise do.
set -m

ME=deploy/demo/test.sh
T=$(mktemp -d "${TMPDIR:-/tmp}/amp-rw-proxy-demo-test.XXXXXX")
demo_pid=""
finish() {
  local rc=$?
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$T"
  exit "$rc"
}
trap finish EXIT
fail() {
  printf '%s: FAIL: %s\n' "$ME" "$*" >&2
  for f in "$T"/*.out "$T"/*.err; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}
ok() { echo "  ok: $*"; }
started=$SECONDS
case_started=$SECONDS
case_() { case_started=$SECONDS; printf '\n=== %s: %s\n' "$ME" "$*"; }
took() { echo "    (${1}: $((SECONDS - case_started))s)"; }

# Long-running processes below PID $1 (the status loop's transient curl/sleep/ps and subshells left out).
descendants() {
  ps -e -o pid=,ppid=,comm= | awk -v root="$1" '
    { parent[$1] = $2; name[$1] = $3 }
    END {
      for (p in parent) {
        q = p
        while (q in parent && q != root && q > 1) q = parent[q]
        if (q == root && p != root && name[p] !~ /^(bash|curl|sleep|ps|awk|sed|cut|tr|head|python3)$/) print p, name[p]
      }
    }'
}
# Asserts that after the demo ended nothing it started lives on, no port it printed is open, and
# its temporary directory is gone.
assert_all_stopped() {
  local out=$1 procs=$2 p name port dir
  while read -r p name; do
    [ -n "$p" ] || continue
    if kill -0 "$p" 2>/dev/null; then fail "$name (pid $p) still runs after the demo exited"; fi
  done <"$procs"
  for port in $(grep -oE '127\.0\.0\.1:[0-9]+' "$out" | cut -d: -f2 | sort -u); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port still accepts connections"; fi
  done
  dir=$(grep -oE '/[^ ]*amp-rw-proxy-demo\.[A-Za-z0-9]+' "$out" | head -1)
  [ -n "$dir" ] || fail "the demo did not print its temporary directory"
  [ ! -e "$dir" ] || fail "$dir still exists"
  ok "$(wc -l <"$procs") processes gone ($(awk '{ print $2 }' "$procs" | sort | tr '\n' ' ')), $(grep -oE '127\.0\.0\.1:[0-9]+' "$out" | sort -u | wc -l) ports closed, $dir removed"
}
# wait_output FILE REGEX SECONDS WHAT
wait_output() {
  local deadline=$((SECONDS + $3))
  until grep -qE "$2" "$1"; do
    kill -0 "$demo_pid" 2>/dev/null || fail "the demo exited before $4"
    [ $SECONDS -lt $deadline ] || fail "no $4 within $3s"
    sleep 0.5
  done
}
# signal_case NAME SIGNAL TARGET WAIT_REGEX WANT_RC: the open-ended demo, stopped by SIGNAL sent to
# TARGET (group: the whole process group, as Ctrl-C; script: the script's PID only).
signal_case() {
  local name=$1 sig=$2 target=$3 regex=$4 want=$5 rc t
  bash deploy/demo.sh >"$T/$name.out" 2>"$T/$name.err" &
  demo_pid=$!
  wait_output "$T/$name.out" "$regex" 90 "the awaited output ($regex)"
  descendants "$demo_pid" >"$T/$name.procs"
  [ "$(wc -l <"$T/$name.procs")" -ge 5 ] || fail "want at least 5 processes under the demo, found: $(tr '\n' ' ' <"$T/$name.procs")"
  if [ "$target" = group ]; then kill "-$sig" -- "-$demo_pid"; else kill "-$sig" "$demo_pid"; fi
  t=$SECONDS
  rc=0
  wait "$demo_pid" || rc=$?
  demo_pid=""
  [ "$rc" = "$want" ] || fail "$name: exit code $rc, want $want"
  ok "SIG$sig to the $target: exit $rc after $((SECONDS - t))s"
  assert_all_stopped "$T/$name.out" "$T/$name.procs"
}

# ---------------------------------------------------------------------------------------------
case_ "bounded: --for 20s exits 0 with series arrived"
rc=0
bash deploy/demo.sh --for 20s --keep >"$T/bounded.out" 2>"$T/bounded.err" || rc=$?
[ "$rc" = 0 ] || fail "--for 20s exited $rc: $(tail -1 "$T/bounded.err")"
line=$(grep -E '^deploy/demo.sh: ok: [1-9][0-9]* series' "$T/bounded.out") || fail "no 'ok: N series' line"
ok "$line"
kept=$(sed -nE 's/^kept (.*)$/\1/p' "$T/bounded.out")
[ -d "$kept" ] || fail "--keep: no kept directory"
secret=$("$ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret_access_key"])' "$kept/moto.json")
[ -n "$secret" ] || fail "no secret key in $kept/moto.json"
if grep -qF -- "$secret" "$T/bounded.out" "$T/bounded.err" "$kept/proxy.log"; then fail "Account B's secret key was printed or logged"; fi
ok "the secret key is in neither the demo's output nor the proxy's log"
rm -rf "$kept"
took bounded

case_ "ctrl-c: SIGINT to the demo's process group once series arrive"
signal_case ctrl-c INT group 'series at the receiver: [1-9]' 130
took ctrl-c

case_ "sigterm: SIGTERM to the script alone, once the chain is up"
signal_case sigterm TERM script 'Ctrl-C stops everything' 143
took sigterm

case_ "refused: a wrong ExternalId fails the bounded mode with one line"
rc=0
bash deploy/demo.sh --for 6s --external-id wrong-external-id >"$T/refused.out" 2>"$T/refused.err" || rc=$?
[ "$rc" = 1 ] || fail "exit code $rc, want 1"
[ "$(wc -l <"$T/refused.err")" = 1 ] || fail "want one line on stderr, got $(wc -l <"$T/refused.err")"
grep -q 'FAIL: no series arrived at the receiver in 6s: the proxy is not ready, /-/ready says: ' "$T/refused.err" ||
  fail "unexpected reason: $(cat "$T/refused.err")"
ok "exit 1: $(head -c 200 "$T/refused.err")..."
took refused

echo
echo "$ME: all cases passed in $((SECONDS - started))s"
