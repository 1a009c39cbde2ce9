#!/usr/bin/env bash
# Try amp-rw-proxy without AWS: the whole chain on this machine, in one command.
#
#   Prometheus (sender) ──unsigned remote write──▶ amp-rw-proxy ──SigV4 as account_a_role──▶ AMP stand-in ──▶ Prometheus (receiver)
#                                                      └─ sts:AssumeRole with ExternalId ─▶ STS stand-in (moto)
#
#   bash deploy/demo.sh                  # runs until Ctrl-C (or SIGTERM), then stops everything
#   bash deploy/demo.sh --for 30s        # bounded (CI): exit 0 only if series arrived, else 1 and one line why
#
# Options:
#   --for DURATION      run this long once the chain is up (30s, 2m, or seconds), then judge and stop
#   --release           run a release build of the proxy (default: the debug build, which `cargo test`
#                       and so `bash tests/run.sh` have already compiled; a release build takes minutes)
#   --external-id ID    the ExternalId the proxy sends (A's trust policy requires "demo"; anything
#                       else shows what a wrong one looks like: /-/ready 503, the sender retrying)
#   --rw2               remote-write 2.0 (needs Prometheus 3.x; the default is 1.0)
#   --keep              keep the temporary directory (configs, data, logs) instead of removing it
#   -- FLAGS...         more flags for the proxy, e.g. -- --accounting on --validate
#
# The pieces, all on 127.0.0.1 with ports the kernel picks:
#   STS stand-in   tests/peers/moto_sts.py: moto laid out as the two accounts (B's principal with
#                  sts:AssumeRole on A's role, A's role trusting it with an sts:ExternalId condition,
#                  aps:RemoteWrite), authentication enforced
#   AMP stand-in   tests/peers/amp_standin.py: checks every request's SigV4 signature with botocore
#                  (an implementation independent of the proxy's), then relays it to the receiver
#   receiver       Prometheus with --web.enable-remote-write-receiver; scrapes nothing itself, so
#                  every series in it came through the proxy
#   sender         Prometheus scraping itself and the proxy's /metrics every 2s, remote-writing to
#                  the proxy
#   the proxy      this tree's build, with Account B's keys from moto in its environment only
# Prometheus is the unpacked 3.x from Debian sid when tests/peers/install.sh has fetched it, else
# Debian's 2.42. Peers are installed by tests/peers/install.sh (the test command's installer: apt
# as root or via sudo, a .venv/ with moto and botocore), so the first run takes a few minutes.
#
# Why a script and not an `amp-rw-proxy demo` subcommand: the chain is third-party programs
# (moto, botocore, two Prometheus) plus the test stand-ins; none of that belongs in the shipped
# binary, whose image holds nothing but the proxy.
#
# Stopping: on Ctrl-C (SIGINT to the whole foreground group), SIGINT or SIGTERM to this script, or
# the end of --for, every process it started gets SIGTERM (SIGKILL after 10 s), is reaped, and the
# temporary directory is removed. deploy/demo/test.sh checks all of this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ME=deploy/demo.sh
TRUSTED_EXTERNAL_ID=demo
REGION=us-east-1
WORKSPACE_PATH=/workspaces/ws-demo/api/v1/remote_write

say() { printf '%s\n' "$*"; }
# The one-line reason is printed last, after everything has stopped (see cleanup).
fail_reason=""
die() {
  fail_reason="$*"
  exit 1
}
usage() {
  sed -n '7,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-64}"
}

run_for=""
profile=debug
external_id=$TRUSTED_EXTERNAL_ID
rw2=0
keep=0
proxy_extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --for) [ $# -ge 2 ] || usage; run_for=$2; shift 2 ;;
    --for=*) run_for=${1#--for=}; shift ;;
    --release) profile=release; shift ;;
    --external-id) [ $# -ge 2 ] || usage; external_id=$2; shift 2 ;;
    --rw2) rw2=1; shift ;;
    --keep) keep=1; shift ;;
    --) shift; proxy_extra=("$@"); break ;;
    -h | --help) usage 0 ;;
    *) echo "$ME: unknown option $1 (--help lists them)" >&2; exit 64 ;;
  esac
done
if [ -n "$run_for" ]; then
  [[ $run_for =~ ^[0-9]+[smh]?$ ]] || { echo "$ME: --for $run_for: expected e.g. 30s, 2m or 90 (seconds)" >&2; exit 64; }
  n=${run_for%[smh]}
  case "$run_for" in *m) seconds=$((n * 60)) ;; *h) seconds=$((n * 3600)) ;; *) seconds=$n ;; esac
  [ "$seconds" -gt 0 ] || { echo "$ME: --for must be more than 0" >&2; exit 64; }
fi

# ---------------------------------------------------------------------------------------------
# Children and cleanup. Every long-running process is started by `start`, which records it;
# cleanup stops them all, whatever ends this script (the end of --for, a failure, a signal).
pids=()
names=()
work=""
line_open=0
end_line() { if [ "$line_open" = 1 ]; then printf '\n'; line_open=0; fi; }
keep_hint() {
  if [ -z "$work" ]; then return; fi
  if [ "$keep" = 1 ]; then printf ' (logs kept in %s)' "$work"; else printf ' (rerun with --keep to keep the logs)'; fi
}
alive() {
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $s != Z* ]]
}
cleanup() {
  local rc=$? i deadline left
  # A second Ctrl-C must not cut the cleanup short.
  trap '' INT TERM
  end_line
  if [ ${#pids[@]} -gt 0 ]; then
    printf 'stopping %d processes ...' "${#pids[@]}"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
    deadline=$((SECONDS + 10))
    while :; do
      left=()
      for i in "${!pids[@]}"; do if alive "${pids[i]}"; then left+=("${names[i]}"); fi; done
      [ ${#left[@]} -eq 0 ] && break
      if [ $SECONDS -ge $deadline ]; then
        printf ' SIGKILL to %s after 10 s ...' "${left[*]}"
        for i in "${!pids[@]}"; do alive "${pids[i]}" && kill -KILL "${pids[i]}" 2>/dev/null; done
        break
      fi
      sleep 0.1
    done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    printf ' done\n'
  fi
  if [ -n "$work" ]; then
    if [ "$keep" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
  fi
  if [ -n "$fail_reason" ]; then printf '%s: FAIL: %s%s\n' "$ME" "$fail_reason" "$(keep_hint)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: runs CMD in the background, output to LOG, and records it.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 </dev/null &
  pids+=($!)
  names+=("$name")
}
# last_line LOG: the last non-empty line of a log, for one-line reasons.
last_line() { awk 'NF { l = $0 } END { print substr(l, 1, 300) }' "$1" 2>/dev/null; }
# wait_for SECONDS NAME LOG CMD...: until CMD succeeds; fails if NAME's process died or time ran out.
wait_for() {
  local limit=$1 name=$2 log=$3 deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    alive "${pids[-1]}" || die "$name exited during start-up: $(last_line "$log")"
    [ $SECONDS -lt $deadline ] || die "$name not up within ${limit}s: $(last_line "$log")"
    sleep 0.2
  done
}
http_ok() { curl -fs -o /dev/null --max-time 2 "$1"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# ---------------------------------------------------------------------------------------------
say "amp-rw-proxy demo: the whole chain on this machine, no AWS account needed"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v ps >/dev/null 2>&1 || missing+=(procps)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
  say "  apt-get install ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: the proxy is built from this tree with the machine's Rust toolchain (rustup)"

umask 077 # the STS stand-in's answer holds Account B's secret key
work=$(mktemp -d "${TMPDIR:-/tmp}/amp-rw-proxy-demo.XXXXXX")

say "  peers: tests/peers/install.sh (nothing to do once installed; the first time takes minutes)"
bash tests/peers/install.sh >"$work/install.log" 2>&1 || die "installing the peers failed (tests/peers/install.sh): $(last_line "$work/install.log")"
# shellcheck disable=SC1091
. target/peers/env
PY=$AMP_E2E_PYTHON
if [ -x "$AMP_E2E_PROMETHEUS3" ]; then PROM=$AMP_E2E_PROMETHEUS3; else PROM=$AMP_E2E_PROMETHEUS; fi
prom_version=$("$PROM" --version 2>&1 | awk 'NR == 1 { print $3 }' | cut -d+ -f1)
case "$prom_version" in 2.*) [ "$rw2" = 0 ] || die "--rw2 needs Prometheus 3.x; only $prom_version is installed" ;; esac

build=(cargo build --locked --bin amp-rw-proxy)
[ "$profile" = release ] && build+=(--release)
say "  building the proxy ($profile): ${build[*]}"
"${build[@]}" >"$work/build.log" 2>&1 || die "cargo build failed: $(grep -m1 -E '^error' "$work/build.log" || last_line "$work/build.log")"
PROXY="${CARGO_TARGET_DIR:-$ROOT/target}/$profile/amp-rw-proxy"
[ -x "$PROXY" ] || die "no binary at $PROXY after cargo build"

# ---------------------------------------------------------------------------------------------
# STS stand-in: prints its URL, B's keys and A's role as one JSON line (stdout) once laid out.
"$PY" tests/peers/moto_sts.py --external-id "$TRUSTED_EXTERNAL_ID" \
  --workspace-arn "arn:aws:aps:$REGION:111111111111:workspace/ws-demo" >"$work/moto.json" 2>"$work/moto.log" </dev/null &
pids+=($!)
names+=("STS stand-in (moto)")
wait_for 60 "STS stand-in (moto)" "$work/moto.log" test -s "$work/moto.json"
MOTO_URL=$(json_field url <"$work/moto.json")
ROLE_ARN=$(json_field role_arn <"$work/moto.json")

RECV_PORT=$(free_port)
RECV_URL="http://127.0.0.1:$RECV_PORT"
printf 'global: {}\n' >"$work/receiver.yml"
recv_flags=(--web.enable-remote-write-receiver)
[ "$rw2" = 1 ] && recv_flags+=(--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request)
start "receiver Prometheus" "$work/receiver.log" "$PROM" --config.file="$work/receiver.yml" \
  --storage.tsdb.path="$work/receiver-data" --web.listen-address="127.0.0.1:$RECV_PORT" "${recv_flags[@]}"
wait_for 60 "receiver Prometheus" "$work/receiver.log" http_ok "$RECV_URL/-/ready"

"$PY" tests/peers/amp_standin.py --moto "$MOTO_URL" --receiver "$RECV_URL" --region "$REGION" \
  >"$work/standin.json" 2>"$work/standin.log" </dev/null &
pids+=($!)
names+=("AMP stand-in")
wait_for 30 "AMP stand-in" "$work/standin.log" test -s "$work/standin.json"
STANDIN_URL="http://127.0.0.1:$(json_field port <"$work/standin.json")"

# The proxy: a clean environment whose only AWS credentials are B's keys (no profile files, no
# instance metadata), so what happens is what the demo shows. The keys are never printed.
AWS_KEY_ID=$(json_field access_key_id <"$work/moto.json")
AWS_SECRET=$(json_field secret_access_key <"$work/moto.json")
: >"$work/aws-config"
proxy_args=(--listen 127.0.0.1:0 --upstream-url "$STANDIN_URL$WORKSPACE_PATH" --region "$REGION"
  --role-arn "$ROLE_ARN" --external-id "$external_id" --sts-endpoint "$MOTO_URL"
  --drain-delay 0s --shutdown-grace 5s ${proxy_extra[@]+"${proxy_extra[@]}"})
start "amp-rw-proxy" "$work/proxy.log" env -i PATH="$PATH" HOME="$work" RUST_LOG="${RUST_LOG:-info}" \
  AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/aws-config" AWS_EC2_METADATA_DISABLED=true \
  AWS_ACCESS_KEY_ID="$AWS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET" "$PROXY" "${proxy_args[@]}"
unset AWS_SECRET
wait_for 30 "amp-rw-proxy" "$work/proxy.log" grep -q "amp-rw-proxy listening" "$work/proxy.log"
PROXY_ADDR=$(grep -m1 "amp-rw-proxy listening" "$work/proxy.log" | sed -E 's/.*listen=([0-9.:]+).*/\1/')
PROXY_URL="http://$PROXY_ADDR"
# Ready = it holds credentials for A's role (AssumeRole answered). Not fatal: with a wrong
# ExternalId the demo goes on to show what the sender then sees.
ready_deadline=$((SECONDS + 10))
until http_ok "$PROXY_URL/-/ready"; do
  alive "${pids[-1]}" || die "amp-rw-proxy exited: $(last_line "$work/proxy.log")"
  if [ $SECONDS -ge $ready_deadline ]; then
    say "  warning: the proxy is not ready after 10s: $(curl -s --max-time 2 "$PROXY_URL/-/ready" | tr '\n' ' ' | head -c 300)"
    break
  fi
  sleep 0.2
done

SEND_PORT=$(free_port)
SEND_URL="http://127.0.0.1:$SEND_PORT"
rw_message=""
[ "$rw2" = 1 ] && rw_message="    protobuf_message: io.prometheus.write.v2.Request"
cat >"$work/sender.yml" <<EOF
global:
  scrape_interval: 2s
scrape_configs:
  - job_name: sender
    static_configs: [{targets: ['127.0.0.1:$SEND_PORT']}]
  - job_name: amp-rw-proxy
    static_configs: [{targets: ['$PROXY_ADDR']}]
remote_write:
  - url: $PROXY_URL/api/v1/write
$rw_message
    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 2s}
EOF
start "sender Prometheus" "$work/sender.log" "$PROM" --config.file="$work/sender.yml" \
  --storage.tsdb.path="$work/sender-data" --web.listen-address="127.0.0.1:$SEND_PORT" \
  --storage.remote.flush-deadline=2s # on SIGTERM it would otherwise keep flushing for a minute
wait_for 60 "sender Prometheus" "$work/sender.log" http_ok "$SEND_URL/-/ready"

rw_name="remote-write 1.0"
[ "$rw2" = 1 ] && rw_name="remote-write 2.0"
row() { printf '  %-28s %-40s %s\n' "$@"; }
say ""
row "sender Prometheus $prom_version" "$SEND_URL/targets" "scrapes itself and the proxy every 2s, $rw_name to the proxy"
row "amp-rw-proxy ($profile build)" "$PROXY_URL/metrics" "and /-/ready: does it hold A's credentials?"
row "AMP stand-in" "$STANDIN_URL/-/stats" "botocore's verdict on every signature"
row "receiver Prometheus $prom_version" "$RECV_URL" "what arrived; query count({__name__!=\"\"})"
row "STS stand-in (moto)" "$MOTO_URL" "AssumeRole $ROLE_ARN, ExternalId $external_id"
row "configs, data and logs" "$work/" "$([ "$keep" = 1 ] && echo "kept" || echo "removed on exit; --keep keeps them")"
say ""
if [ -n "$run_for" ]; then say "running for ${seconds}s"; else say "Ctrl-C stops everything."; fi

# ---------------------------------------------------------------------------------------------
# The live count: series the receiver holds (it scrapes nothing, so all came through the proxy),
# samples it appended, and the stand-in's verdicts.
series=0 samples=0 verified=0 rejected=0
measure() {
  local v
  v=$(curl -s --max-time 2 "$RECV_URL/api/v1/query" --data-urlencode 'query=count({__name__!=""})' |
    sed -nE 's/.*"value":\[[^,]*,"([0-9]+)"\].*/\1/p')
  series=${v:-0}
  v=$(curl -s --max-time 2 "$RECV_URL/metrics" | awk '/^prometheus_tsdb_head_samples_appended_total/ { s += $2 } END { printf "%d", s }')
  samples=${v:-0}
  v=$(curl -s --max-time 2 "$STANDIN_URL/-/stats")
  verified=$(sed -nE 's/.*"accepted": ([0-9]+).*/\1/p' <<<"$v")
  rejected=$(sed -nE 's/.*"rejected": ([0-9]+).*/\1/p' <<<"$v")
  verified=${verified:-0} rejected=${rejected:-0}
}
status_line() {
  printf 'series at the receiver: %s (%s samples) | AMP stand-in: %s requests verified, %s rejected | %ss' \
    "$series" "$samples" "$verified" "$rejected" $((SECONDS - t0))
}
check_children() {
  local i
  for i in "${!pids[@]}"; do
    alive "${pids[i]}" || die "${names[i]} exited unexpectedly"
  done
}

t0=$SECONDS
tty=0
[ -t 1 ] && tty=1
last_print=-100
while :; do
  check_children
  measure
  if [ "$tty" = 1 ]; then
    printf '\r\033[K%s' "$(status_line)"
    line_open=1
  elif [ $((SECONDS - last_print)) -ge 5 ]; then
    # Not a terminal (CI logs): a line every 5 s instead of a refreshing one.
    status_line
    printf '\n'
    last_print=$SECONDS
  fi
  if [ -n "$run_for" ] && [ $((SECONDS - t0)) -ge "$seconds" ]; then break; fi
  sleep 1
done
end_line

# Bounded mode: judge.
if [ "$series" -gt 0 ] && [ "$rejected" -eq 0 ]; then
  say "$ME: ok: $series series ($samples samples) arrived at the receiver through the proxy in ${seconds}s; the AMP stand-in verified $verified signed requests and rejected none"
  exit 0
fi
stats=$(curl -s --max-time 2 "$STANDIN_URL/-/stats" || true)
if [ "$rejected" -gt 0 ]; then
  reason=$("$PY" -c 'import json, sys; r = json.loads(sys.argv[1])["reasons"]; print(r[-1] if r else "")' "$stats" 2>/dev/null || true)
  die "the AMP stand-in rejected $rejected of $((verified + rejected)) requests (last: ${reason:0:200}); $series series arrived"
fi
ready=$(curl -s --max-time 2 -w ' (%{http_code})' "$PROXY_URL/-/ready" | tr '\n' ' ' | head -c 300)
case "$ready" in
  *"(200)")
    sent=$(curl -s --max-time 2 "$SEND_URL/metrics" | awk '/^prometheus_remote_storage_samples_total/ { s += $2 } END { printf "%d", s }')
    die "no series arrived at the receiver in ${seconds}s though the proxy is ready: the sender has sent ${sent:-0} samples (its remote write starts only after it replays its WAL, about 7s: give --for more time)" ;;
  *) die "no series arrived at the receiver in ${seconds}s: the proxy is not ready, /-/ready says: $ready" ;;
esac
