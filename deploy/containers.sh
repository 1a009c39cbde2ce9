#!/usr/bin/env bash
# Container tests: the image built by deploy/image.sh, run for real with podman (Docker-compatible;
# there is no Docker engine here), against the end-to-end stand-ins (tests/peers/: moto for STS,
# the botocore-verifying AMP stand-in in front of a real Prometheus receiver).
#
#   bash deploy/containers.sh                      # every scenario
#   bash deploy/containers.sh single failover      # some of them: single compose kube failover
#
# Scenarios (each prints what it proved, with figures; the summary goes to target/containers/results.md):
#   single    the image as `podman run --read-only --cap-drop ALL --user 65532:65532
#             --security-opt no-new-privileges`: ready with credentials from moto; a real Prometheus
#             writes through it over TLS to the stand-in, whose CA is mounted at the image's trust
#             store (and without it the upstream is refused: the trust is real); the image's
#             HEALTHCHECK (`amp-rw-proxy probe`) passes; as PID 1 it drains on `podman stop -t 30`
#             (/-/ready 503, an in-flight request answered, exit code 0)
#   compose   deploy/docker-compose.yml started with podman-compose as users start it, plus
#             tests/containers/compose.override.yml (stand-in settings, the test CA, the test
#             network, no host ports, a locally built Prometheus image); samples arrive at the
#             receiver; `down` removes the containers (`down -v` the volume too)
#   kube      `podman kube play` of the Kustomize overlays sidecar-irsa (Prometheus + proxy in one
#             pod, its ConfigMap) and gateway, rendered by `kubectl kustomize` as `kubectl apply -k`
#             would send them, with env pointed at the stand-ins; samples
#             written by the pod's Prometheus arrive, verified; fields podman ignores are listed
#   failover  three proxy containers behind HAProxy (health-checked on /-/ready), a real Prometheus
#             writing through it; one replica SIGKILLed, another restarted with SIGTERM during the
#             run; the sender's own sample count (its local TSDB) equals the receiver's, and the
#             sender failed or dropped none
#
# On a fresh Debian bookworm machine (root or sudo) it installs what it needs: podman, runc,
# catatonit, the dnsname CNI plugin, haproxy, musl-tools, openssl (apt); podman-compose in the venv
# target/containers-venv; the peers via tests/peers/install.sh (moto, botocore, Prometheus 2.42
# and 3.x from Debian). Podman is configured as /work/shared/PEERS.md says (runc, vfs,
# default_ulimits = []), only where /etc/containers has no such files yet.
#
# CT_BINARY=PATH: take this static binary for the image instead of building one (deploy/image.sh
# --binary); CI leaves it unset, so the image holds the tree's own build.
#
# Network: containers reach the stand-ins (on the host's loopback) through HAProxy relays bound to
# the test network's gateway address; the host reaches containers through ports published on
# 127.0.0.1 or at their addresses on the test network. Nothing leaves the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$ROOT/target/containers"
NET=amp-ct
LABEL=amp-rw-proxy.test=containers
EXTERNAL_ID=ct-external-id
REGION=us-east-1
PODMAN_COMPOSE_PIN=podman-compose==1.6.0
started=$SECONDS

ALL=(single compose kube failover)
if [ $# -gt 0 ]; then scenarios=("$@"); else scenarios=("${ALL[@]}"); fi
for s in "${scenarios[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) echo "deploy/containers.sh: unknown scenario $s (${ALL[*]})" >&2; exit 64 ;; esac
done

step_started=$SECONDS
log() {
  if ((SECONDS > started)); then printf '    (%ss)\n' $((SECONDS - step_started)); fi
  step_started=$SECONDS
  printf '\n=== deploy/containers.sh: %s\n' "$*"
}
fail() {
  printf 'deploy/containers.sh: FAIL: %s\n' "$*" >&2
  exit 1
}
ok() { echo "  ok: $*"; }
note() { echo "  note: $*"; }
results=()
result() { results+=("$*"); echo "  result: $*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then "${SUDO[@]}" apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
log "tools"
missing=()
for pair in podman:podman runc:runc catatonit:catatonit haproxy:haproxy musl-gcc:musl-tools \
  openssl:openssl curl:curl file:file ip:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
# kubectl (with Kustomize) renders the overlays that `podman kube play` plays; it comes with the
# machine image, Debian bookworm has no package for it.
command -v kubectl >/dev/null 2>&1 || fail "kubectl is not on PATH (it comes with the machine image: kubectl 1.32 with Kustomize 5.5)"
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt-get install ${missing[*]}"
  apt_install "${missing[@]}"
fi
# Debian starts a haproxy service on install; the tests run their own instances.
if command -v service >/dev/null 2>&1; then "${SUDO[@]}" service haproxy stop >/dev/null 2>&1 || true; fi
"${SUDO[@]}" mkdir -p /etc/containers
if [ ! -f /etc/containers/storage.conf ]; then
  printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' |
    "${SUDO[@]}" tee /etc/containers/storage.conf >/dev/null
  echo "wrote /etc/containers/storage.conf (vfs)"
fi
if [ ! -f /etc/containers/containers.conf ]; then
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' |
    "${SUDO[@]}" tee /etc/containers/containers.conf >/dev/null
  echo "wrote /etc/containers/containers.conf (runc, cgroupfs, no default ulimits)"
fi
CVENV="$ROOT/target/containers-venv"
if [ "$(cat "$CVENV/.pins" 2>/dev/null)" != "$PODMAN_COMPOSE_PIN" ]; then
  rm -rf "$CVENV"
  python3 -m venv "$CVENV"
  "$CVENV/bin/pip" install -q --disable-pip-version-check "$PODMAN_COMPOSE_PIN"
  echo "$PODMAN_COMPOSE_PIN" >"$CVENV/.pins"
fi
COMPOSE="$CVENV/bin/podman-compose"
bash tests/peers/install.sh >/dev/null 2>"$WORK.peers.log" || { cat "$WORK.peers.log"; fail "tests/peers/install.sh"; }
# shellcheck disable=SC1091
. target/peers/env
PY="$AMP_E2E_PYTHON"
PROM2="$AMP_E2E_PROMETHEUS"
PROM3="$AMP_E2E_PROMETHEUS3"
podman --version
"$COMPOSE" --version 2>/dev/null | sed -n 1p
haproxy -v | sed -n 1p
"$PROM2" --version 2>&1 | sed -n 1p
"$PROM3" --version 2>&1 | sed -n 1p

rm -rf "$WORK"
mkdir -p "$WORK"

# ---------------------------------------------------------------------------------------------
# Cleanup: everything this script started, by name or label or PID.
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  if [ -f "$WORK/compose-env" ]; then
    (cd deploy && set -a && . "$WORK/compose-env" && set +a &&
      "$COMPOSE" -f docker-compose.yml -f ../tests/containers/compose.override.yml down -v >/dev/null 2>&1)
  fi
  for f in "$WORK"/kube-*.yaml; do [ -f "$f" ] && podman kube down "$f" >/dev/null 2>&1; done
  podman volume rm -f prometheus-config >/dev/null 2>&1
  podman ps -aq --filter "label=$LABEL" | xargs -r podman rm -f -t 0 >/dev/null 2>&1
  podman pod rm -f amp-ct-anchor >/dev/null 2>&1
  podman network rm -f "$NET" >/dev/null 2>&1
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() { "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
code() { curl -s -o "$WORK/body.txt" -w '%{http_code}' --max-time 5 "$@" || true; }
# Polls "$@" (a command) every 0.1 s until it succeeds, up to $1 seconds.
wait_until() {
  local limit="$1" what="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < deadline)) || fail "not within ${limit}s: $what"
    sleep 0.1
  done
}
is_ready() { [ "$(code "$1/-/ready")" = 200 ]; }
# Instant-vector query on the receiver: prints the first value (0 if the result is empty).
recv_query() {
  curl -s --max-time 10 --get --data-urlencode "query=$1" ${2:+--data-urlencode "time=$2"} "$RECV_URL/api/v1/query" |
    json 'd["data"]["result"][0]["value"][1] if d["data"]["result"] else 0'
}
prom_query() {
  curl -s --max-time 10 --get --data-urlencode "query=$2" ${3:+--data-urlencode "time=$3"} "$1/api/v1/query" |
    json 'd["data"]["result"][0]["value"][1] if d["data"]["result"] else 0'
}
# The number of raw samples (stale markers excluded) a Prometheus holds for SELECTOR over the last
# hour at TIME: count_samples URL SELECTOR [TIME]. (count_over_time over every metric name would
# collide once the names are dropped.)
count_samples() {
  curl -s --max-time 30 --get --data-urlencode "query=$2[1h]" ${3:+--data-urlencode "time=$3"} "$1/api/v1/query" |
    "$PY" -c 'import json, sys; d = json.load(sys.stdin); assert d["status"] == "success", d; print(sum(len(r["values"]) for r in d["data"]["result"]))'
}
# A metric of a Prometheus' own /metrics, summed over its series (0 when absent).
metric() {
  curl -s --max-time 5 "$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
standin_stat() { curl -s --max-time 5 "$STANDIN_URL/-/stats" | json "d['$1']"; }
int() { printf '%.0f' "$1"; }

# ---------------------------------------------------------------------------------------------
log "images: amp-rw-proxy (deploy/image.sh) and a Prometheus from Debian's package"
bash deploy/image.sh ${CT_BINARY:+--binary "$CT_BINARY"} | tee "$WORK/image.txt"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)"
IMAGE="localhost/amp-rw-proxy:$VERSION"
image_bytes="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
image_mib="$(awk -v s="$image_bytes" 'BEGIN { printf "%.1f", s / 1048576 }')"
[ "$image_bytes" -lt $((20 * 1024 * 1024)) ] || fail "image is $image_mib MiB, over 20 MiB"
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = 65532:65532 ] || fail "image user is not 65532:65532"
for l in version revision source; do
  v="$(podman image inspect --format "{{index .Labels \"org.opencontainers.image.$l\"}}" "$IMAGE")"
  [ -n "$v" ] || fail "image lacks the label org.opencontainers.image.$l"
done
mnt="$(podman image mount "$IMAGE")"
(cd "$mnt" && find . -mindepth 1 -printf '%P %y %U:%G %m\n' | sort) >"$WORK/image-files.txt"
podman image unmount "$IMAGE" >/dev/null
files="$(awk '$2 != "d" { printf "%s ", $1 }' "$WORK/image-files.txt")"
[ "$files" = "etc/group etc/passwd etc/ssl/certs/ca-certificates.crt usr/local/bin/amp-rw-proxy " ] ||
  fail "image holds more than the binary, CA bundle, passwd and group: $files"
if awk '{ print $1 }' "$WORK/image-files.txt" | grep -Eq '(^|/)(sh|bash|busybox)$'; then fail "a shell in the image"; fi
hc="$(podman image inspect --format '{{.Config.Healthcheck.Test}}' "$IMAGE")"
case "$hc" in *"amp-rw-proxy probe"*) ;; *) fail "image HEALTHCHECK is $hc, want amp-rw-proxy probe" ;; esac
ok "$IMAGE: $image_mib MiB, user 65532:65532, OCI labels, files: $files, HEALTHCHECK $hc"
result "image $IMAGE: $image_mib MiB ($image_bytes bytes); files: $files"

PROM_VERSION="$("$PROM3" --version 2>&1 | awk 'NR == 1 { print $3 }' | cut -d+ -f1)"
PROM_IMAGE="localhost/prometheus-debian:$PROM_VERSION"
pctx="$WORK/prometheus-image"
mkdir -p "$pctx/rootfs/bin" "$pctx/rootfs/etc" "$pctx/data"
cp "$PROM3" "$pctx/rootfs/bin/prometheus"
# Every library ldd lists, at the same path (and the dynamic loader).
ldd "$PROM3" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
  mkdir -p "$pctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$pctx/rootfs$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$pctx/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$pctx/rootfs/etc/group"
previous="$(podman image inspect --format '{{.Id}}' "$PROM_IMAGE" 2>/dev/null || true)"
podman build -q --format docker -f tests/containers/prometheus.Dockerfile -t "$PROM_IMAGE" "$pctx" >/dev/null
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$PROM_IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
podman run --rm "$PROM_IMAGE" --version 2>&1 | sed -n 1p | grep -q "prometheus, version $PROM_VERSION" || fail "$PROM_IMAGE does not run"
ok "$PROM_IMAGE: $(ldd "$PROM3" | awk '/=> \//{print $1}' | tr '\n' ' ')+ the loader, $(podman image inspect --format '{{.Size}}' "$PROM_IMAGE" | awk '{ printf "%.0f MiB", $1 / 1048576 }')"

# ---------------------------------------------------------------------------------------------
log "stand-ins: moto (STS), a Prometheus receiver, the AMP stand-in; the test network; relays"
"$PY" tests/peers/moto_sts.py --external-id "$EXTERNAL_ID" >"$WORK/moto.json" 2>"$WORK/moto.log" &
pids+=($!)
wait_until 60 "moto_sts.py ready" test -s "$WORK/moto.json"
MOTO_URL="$(json 'd["url"]' <"$WORK/moto.json")"
ROLE_ARN="$(json 'd["role_arn"]' <"$WORK/moto.json")"
# Account B's base keys (moto's): only ever passed by name (-e NAME) or in 0600 files, never printed.
AWS_ACCESS_KEY_ID="$(json 'd["access_key_id"]' <"$WORK/moto.json")"
AWS_SECRET_ACCESS_KEY="$(json 'd["secret_access_key"]' <"$WORK/moto.json")"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

RECV_PORT="$(free_port)"
RECV_URL="http://127.0.0.1:$RECV_PORT"
printf 'global:\n  scrape_interval: 1m\n' >"$WORK/receiver.yml"
"$PROM2" --config.file="$WORK/receiver.yml" --storage.tsdb.path="$WORK/receiver-data" \
  --web.listen-address="127.0.0.1:$RECV_PORT" --web.enable-remote-write-receiver >"$WORK/receiver.log" 2>&1 &
pids+=($!)
wait_until 60 "receiver ready" is_ready "$RECV_URL"

"$PY" tests/peers/amp_standin.py --moto "$MOTO_URL" --receiver "$RECV_URL" >"$WORK/standin.json" 2>"$WORK/standin.log" &
pids+=($!)
wait_until 30 "amp_standin.py listening" test -s "$WORK/standin.json"
STANDIN_PORT="$(json 'd["port"]' <"$WORK/standin.json")"
STANDIN_URL="http://127.0.0.1:$STANDIN_PORT"

podman network create --label "$LABEL" "$NET" >/dev/null
GW="$(podman network inspect "$NET" --format '{{range .Subnets}}{{.Gateway}}{{end}}')"
[ -n "$GW" ] || fail "no gateway address for network $NET"
# The bridge and its gateway address exist once something is attached: a pod's pause container.
podman pod create --name amp-ct-anchor --network "$NET" --label "$LABEL" >/dev/null
podman pod start amp-ct-anchor >/dev/null
wait_until 30 "gateway $GW on the host" sh -c "ip -o addr | grep -q ' $GW/'"

tls="$WORK/tls"
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=amp-rw-proxy containers test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=aps-workspaces.test" \
  -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=IP:%s,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$GW" >"$tls/ext.cnf"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
  -extfile "$tls/ext.cnf" -out "$tls/server.crt" 2>/dev/null
cat "$tls/server.crt" "$tls/server.key" >"$tls/server.pem"
# The image's own bundle plus the test CA, mounted over the image's /etc/ssl/certs/ca-certificates.crt.
cat "$ROOT/target/image/amd64/rootfs/etc/ssl/certs/ca-certificates.crt" "$tls/ca.crt" >"$tls/bundle.crt"
chmod 0644 "$tls/bundle.crt" "$tls/ca.crt"

STS_RELAY="$(free_port)"
AMP_TLS="$(free_port)"
AMP_SLOW="$(free_port)"
printf 'core.register_action("delay", { "http-req" }, function(txn) core.msleep(300) end)\n' >"$WORK/delay.lua"
cat >"$WORK/edge.cfg" <<EOF
# Relays from the test network's gateway to the stand-ins on loopback (written by deploy/containers.sh).
global
  maxconn 1000
  lua-load $WORK/delay.lua
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend sts
  mode tcp
  bind $GW:$STS_RELAY
  default_backend moto
backend moto
  mode tcp
  server moto 127.0.0.1:${MOTO_URL##*:}
# TLS with the test CA's certificate, then the request as received (Host untouched) to the stand-in.
frontend amp
  mode http
  bind $GW:$AMP_TLS ssl crt $tls/server.pem
  default_backend standin
backend standin
  mode http
  server standin 127.0.0.1:$STANDIN_PORT
# The same, answering 300 ms late: the failover scenario's upstream, so that requests are in
# flight in the proxies long enough for a SIGKILL to catch one.
frontend amp_slow
  mode http
  bind $GW:$AMP_SLOW ssl crt $tls/server.pem
  default_backend standin_slow
backend standin_slow
  mode http
  http-request lua.delay
  server standin 127.0.0.1:$STANDIN_PORT
EOF
haproxy -db -f "$WORK/edge.cfg" >"$WORK/edge.log" 2>&1 &
pids+=($!)
UPSTREAM_URL="https://$GW:$AMP_TLS/workspaces/ws-ct/api/v1/remote_write"
STS_ENDPOINT="http://$GW:$STS_RELAY"
wait_until 10 "TLS relay up" sh -c "curl -s --cacert '$tls/ca.crt' -o /dev/null https://$GW:$AMP_TLS/-/stats"
ok "moto $MOTO_URL, receiver $RECV_URL, stand-in $STANDIN_URL; network $NET (gateway $GW): STS relay $STS_ENDPOINT, TLS upstream $UPSTREAM_URL"

# The proxy's configuration against the stand-ins (as -e flags; the keys by name only).
proxy_env=(-e "AMP_RW_PROXY_UPSTREAM_URL=$UPSTREAM_URL" -e "AMP_RW_PROXY_REGION=$REGION"
  -e "AMP_RW_PROXY_ROLE_ARN=$ROLE_ARN" -e "AMP_RW_PROXY_EXTERNAL_ID=$EXTERNAL_ID"
  -e "AMP_RW_PROXY_STS_ENDPOINT=$STS_ENDPOINT" -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY
  -e AWS_EC2_METADATA_DISABLED=true)
hardening=(--read-only --cap-drop ALL --user 65532:65532 --security-opt no-new-privileges)
# run_proxy NAME HOST_PORT [podman run args...]
run_proxy() {
  local name="$1" port="$2"; shift 2
  podman run -d --name "$name" --label "$LABEL" --network "$NET" -p "127.0.0.1:$port:8080" \
    "${hardening[@]}" "${proxy_env[@]}" "$@" "$IMAGE" >/dev/null 2> >(grep -v 'systemd connection' >&2)
}
# Podman schedules HEALTHCHECKs with systemd timers; without systemd (as here) it logs that and
# runs them only on `podman healthcheck run`, which the scenarios do.

# A Prometheus 2.42 sender on the host (not agent mode: its own TSDB is the sender's count).
# start_sender NAME URL SCENARIO_LABEL [extra scrape targets...]
start_sender() {
  local name="$1" url="$2" scenario="$3"; shift 3
  local port targets
  port="$(free_port)"
  targets="\"127.0.0.1:$port\""
  for t in "$@"; do targets="$targets, \"$t\""; done
  cat >"$WORK/$name.yml" <<EOF
global:
  scrape_interval: ${SCRAPE_INTERVAL:-1s}
  external_labels:
    scenario: $scenario
scrape_configs:
  - job_name: sender
    static_configs:
      - targets: [$targets]
remote_write:
  - url: $url
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 2s
EOF
  grep -v -e '^scrape_configs:' -e '^  - job_name' -e '^    static_configs' -e '^      - targets' "$WORK/$name.yml" >"$WORK/$name.stop.yml"
  "$PROM2" --config.file="$WORK/$name.yml" --storage.tsdb.path="$WORK/$name-data" \
    --web.listen-address="127.0.0.1:$port" --web.enable-lifecycle >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  SENDER_PID=$!
  SENDER_URL="http://127.0.0.1:$port"
  SENDER_CONFIG="$WORK/$name.yml"
  wait_until 60 "sender $name ready" is_ready "$SENDER_URL"
}
# Stops the sender's scraping (config reload without scrape_configs), waits until its queue has
# sent everything it appended, then compares its own count of samples with the receiver's.
# Sets SENT, RECEIVED, FAILED, DROPPED, RETRIED.
finish_sender() {
  local scenario="$1"
  cp "${SENDER_CONFIG%.yml}.stop.yml" "$SENDER_CONFIG"
  curl -s -X POST --max-time 10 "$SENDER_URL/-/reload" >/dev/null || fail "sender reload"
  drained() {
    local h s p
    h="$(metric "$SENDER_URL" prometheus_remote_storage_highest_timestamp_in_seconds)"
    s="$(metric "$SENDER_URL" prometheus_remote_storage_queue_highest_sent_timestamp_seconds)"
    p="$(metric "$SENDER_URL" prometheus_remote_storage_samples_pending)"
    [ "$p" = 0 ] && [ "$s" -ge "$h" ] && [ "$h" -gt 0 ]
  }
  wait_until 120 "the sender's queue drained" drained
  local t
  t="$(date +%s)"
  SENT="$(count_samples "$SENDER_URL" '{__name__=~".+"}' "$t")"
  RECEIVED="$(count_samples "$RECV_URL" "{scenario=\"$scenario\"}" "$t")"
  FAILED="$(metric "$SENDER_URL" prometheus_remote_storage_samples_failed_total)"
  DROPPED="$(metric "$SENDER_URL" prometheus_remote_storage_samples_dropped_total)"
  RETRIED="$(metric "$SENDER_URL" prometheus_remote_storage_samples_retried_total)"
}

# ---------------------------------------------------------------------------------------------
scenario_single() {
  log "single: podman run ${hardening[*]}; TLS upstream with a mounted CA; HEALTHCHECK; SIGTERM as PID 1"
  local port t0 ms
  port="$(free_port)"
  local accepted0 rejected0
  accepted0="$(standin_stat accepted)"
  rejected0="$(standin_stat rejected)"
  t0="$(date +%s%N)"
  run_proxy amp-ct-single "$port" -v "$tls/bundle.crt:/etc/ssl/certs/ca-certificates.crt:ro" -e AMP_RW_PROXY_LOG_FORMAT=json
  local base="http://127.0.0.1:$port"
  wait_until 30 "amp-ct-single ready" is_ready "$base"
  ms=$((($(date +%s%N) - t0) / 1000000))
  ok "ready (credentials from moto via STS) $ms ms after podman run"
  result "single: time to ready ${ms} ms from podman run (image start + AssumeRole)"

  # What the runtime applied, read from the kernel's view of the container's PID 1.
  local pid
  pid="$(podman inspect --format '{{.State.Pid}}' amp-ct-single)"
  [ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" = "/usr/local/bin/amp-rw-proxy " ] || fail "PID 1 is not the proxy"
  [ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' amp-ct-single)" = true ] || fail "root filesystem is not read-only"
  ok "PID 1 is /usr/local/bin/amp-rw-proxy: $(check_pid1 amp-ct-single 65532)"

  # The image's HEALTHCHECK, run by podman (no systemd timers here to run it on its own).
  podman healthcheck run amp-ct-single >/dev/null || fail "podman healthcheck run: unhealthy"
  local health
  health="$(podman inspect --format '{{.State.Health.Status}}' amp-ct-single)"
  [ "$health" = healthy ] || fail "podman inspect: health $health"
  ok "podman healthcheck run: healthy; podman inspect: State.Health.Status=$health, log: $(podman inspect --format '{{range .State.Health.Log}}{{.Output}}{{end}}' amp-ct-single | sed -n 1p)"

  # A real Prometheus writes through it; the stand-in verifies every signature with botocore.
  start_sender single-sender "$base/api/v1/write" single "127.0.0.1:$port"
  wait_until 60 "samples from the single scenario at the receiver" \
    sh -c "[ \"\$(curl -s --get --data-urlencode 'query=count({scenario=\"single\"})' '$RECV_URL/api/v1/query' | grep -c '\"value\"')\" -gt 0 ]"
  sleep_samples=$((SECONDS + 5))
  while ((SECONDS < sleep_samples)); do is_ready "$base" || fail "not ready while sending"; sleep 0.5; done
  finish_sender single
  local accepted rejected
  accepted=$(($(standin_stat accepted) - accepted0))
  rejected=$(($(standin_stat rejected) - rejected0))
  [ "$rejected" = 0 ] || fail "the stand-in rejected $rejected requests: $(standin_stat reasons)"
  [ "$accepted" -gt 0 ] || fail "nothing reached the stand-in"
  [ "$SENT" -gt 0 ] && [ "$SENT" = "$RECEIVED" ] || fail "sender has $SENT samples, receiver $RECEIVED"
  [ "$FAILED" = 0 ] && [ "$DROPPED" = 0 ] || fail "sender failed $FAILED, dropped $DROPPED samples"
  ok "sender's own count $SENT samples = receiver's $RECEIVED; $accepted requests verified by botocore over TLS, 0 rejected"
  result "single: samples sent $SENT (sender's TSDB), received $RECEIVED, failed $FAILED, dropped $DROPPED, retried $RETRIED; $accepted signed requests accepted, 0 rejected"
  local last_body="$WORK/last-body.bin"
  curl -s "$STANDIN_URL/-/last-body" -o "$last_body"

  # Without the test CA the same upstream is refused: the trust above came from the mount.
  local port2
  port2="$(free_port)"
  run_proxy amp-ct-noca "$port2" -e AMP_RW_PROXY_RETRY_DEADLINE=1s
  wait_until 30 "amp-ct-noca ready" is_ready "http://127.0.0.1:$port2"
  local c
  c="$(code -X POST -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: snappy' \
    -H 'X-Prometheus-Remote-Write-Version: 0.1.0' --data-binary "@$last_body" "http://127.0.0.1:$port2/api/v1/write")"
  [ "$c" = 502 ] && grep -qi 'certificate\|UnknownIssuer\|tls' "$WORK/body.txt" ||
    fail "without the CA: want 502 with a certificate error, got $c: $(cat "$WORK/body.txt")"
  ok "without the mounted CA: 502 $(head -c 160 "$WORK/body.txt")"
  podman rm -f -t 0 amp-ct-noca >/dev/null 2> >(grep -v 'systemd connection' >&2)

  # SIGTERM to PID 1: /-/ready 503 during the drain delay, an in-flight request answered, exit 0.
  stop_sender
  local size rate
  size="$(stat -c %s "$last_body")"
  rate=$(((size + 2) / 3))
  [ "$rate" -ge 1 ] || rate=1
  curl -s -o "$WORK/inflight.txt" -w '%{http_code}' --max-time 60 --limit-rate "$rate" -X POST \
    -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: snappy' -H 'X-Prometheus-Remote-Write-Version: 0.1.0' \
    --data-binary "@$last_body" "$base/api/v1/write" >"$WORK/inflight.code" &
  local curl_pid=$!
  # (the /metrics request counts itself: 2 means the slow one is in flight too)
  wait_until 10 "the slow request in flight" sh -c "curl -s '$base/metrics' | awk '\$1 == \"amp_rw_proxy_in_flight_requests\" && \$2 >= 2 { f = 1 } END { exit !f }'"
  local t_stop
  t_stop="$(date +%s%N)"
  podman stop -t 30 amp-ct-single >/dev/null 2> >(grep -v 'systemd connection' >&2) &
  local stop_pid=$!
  wait_until 5 "/-/ready 503 after SIGTERM" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$base/-/ready')\" = 503 ]"
  ok "SIGTERM: /-/ready 503 while draining"
  wait "$curl_pid" || true
  local inflight
  inflight="$(cat "$WORK/inflight.code")"
  [ "$inflight" = 204 ] || fail "the in-flight request got $inflight: $(cat "$WORK/inflight.txt")"
  wait "$stop_pid" || fail "podman stop failed"
  local stop_ms exit_code
  stop_ms=$((($(date +%s%N) - t_stop) / 1000000))
  exit_code="$(podman inspect --format '{{.State.ExitCode}}' amp-ct-single)"
  [ "$exit_code" = 0 ] || fail "exit code $exit_code after SIGTERM"
  podman logs amp-ct-single 2>&1 | grep -q 'drained; exiting' || fail "no 'drained; exiting' in the log"
  if podman logs amp-ct-single 2>&1 | grep -qF "$AWS_SECRET_ACCESS_KEY"; then fail "the secret key reached the log"; fi
  ok "in-flight request (a $size-byte body sent over ~3 s) answered 204 during the drain; exit code 0 after ${stop_ms} ms; no secret in the log"
  result "single: podman stop -t 30: ready 503 at once, in-flight request answered 204, exit 0 after ${stop_ms} ms (drain delay 5 s)"
  podman rm -f amp-ct-single >/dev/null 2> >(grep -v 'systemd connection' >&2)
}
stop_sender() {
  kill "$SENDER_PID" 2>/dev/null || true
  wait "$SENDER_PID" 2>/dev/null || true
}

# What the runtime applied to a container's PID 1, from the kernel's view: check_pid1 NAME UID.
check_pid1() {
  local name="$1" uid="$2" pid status
  pid="$(podman inspect --format '{{.State.Pid}}' "$name")"
  status="$(cat "/proc/$pid/status")"
  grep -Eq "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid$" <<<"$status" || fail "$name: PID 1 does not run as uid $uid"
  grep -Eq '^CapEff:\s+0+$' <<<"$status" || fail "$name: PID 1 has effective capabilities"
  grep -Eq '^CapBnd:\s+0+$' <<<"$status" || fail "$name: PID 1 has a non-empty bounding set"
  grep -Eq '^NoNewPrivs:\s+1$' <<<"$status" || fail "$name: no_new_privs is not set"
  awk '$5 == "/" { n = split($6, o, ","); for (i = 1; i <= n; i++) if (o[i] == "ro") f = 1 } END { exit !f }' "/proc/$pid/mountinfo" ||
    fail "$name: / is not mounted read-only"
  echo "uid $uid, CapEff/CapBnd 0, NoNewPrivs 1, / read-only, Seccomp mode $(awk '/^Seccomp:/ { print $2 }' <<<"$status")"
}

# Compares a Prometheus sender's count of what it sent with the receiver's, at a moment its queue
# is idle and its count stands still (between the 30 s scrapes of the deploy/ configurations).
# snapshot_compare SENDER_URL SELECTOR -> sets SENT (samples_total - retried), RECEIVED, FAILED, DROPPED, RETRIED
snapshot_compare() {
  local url="$1" selector="$2" deadline=$((SECONDS + 120)) a b
  SENT="?" RECEIVED="?" RETRIED="?"
  while ((SECONDS < deadline)); do
    a="$(metric "$url" prometheus_remote_storage_samples_total)"
    if [ "$(metric "$url" prometheus_remote_storage_samples_pending)" = 0 ] && [ "$a" -gt 0 ]; then
      RECEIVED="$(count_samples "$RECV_URL" "$selector")"
      b="$(metric "$url" prometheus_remote_storage_samples_total)"
      RETRIED="$(metric "$url" prometheus_remote_storage_samples_retried_total)"
      if [ "$a" = "$b" ] && [ "$(metric "$url" prometheus_remote_storage_samples_pending)" = 0 ]; then
        SENT=$((a - RETRIED))
        FAILED="$(metric "$url" prometheus_remote_storage_samples_failed_total)"
        DROPPED="$(metric "$url" prometheus_remote_storage_samples_dropped_total)"
        [ "$SENT" = "$RECEIVED" ] && return 0
      fi
    fi
    sleep 0.5
  done
  fail "sender at $url: sent $SENT (samples_total $a - retried $RETRIED), receiver has $RECEIVED for $selector"
}
# Succeeds once the receiver holds a series matching SELECTOR.
received_any() {
  curl -s --max-time 5 --get --data-urlencode "query=count($1)" "$RECV_URL/api/v1/query" | grep -q '"value"'
}
compose() {
  (cd deploy && set -a && . "$WORK/compose-env" && set +a &&
    "$COMPOSE" -f docker-compose.yml -f ../tests/containers/compose.override.yml "$@")
}

# ---------------------------------------------------------------------------------------------
scenario_compose() {
  log "compose: deploy/docker-compose.yml + tests/containers/compose.override.yml with podman-compose"
  local home="$WORK/compose-home"
  mkdir -p "$home/.aws"
  : >"$home/.aws/config"
  : >"$home/.aws/credentials"
  chmod 0644 "$home/.aws/config" "$home/.aws/credentials"
  # What a user exports before `compose up` (the keys are already in the environment), plus the
  # override's stand-in settings. No secrets in this file.
  {
    echo "HOME=$home"
    echo "AMP_RW_PROXY_UPSTREAM_URL=$UPSTREAM_URL"
    echo "AMP_RW_PROXY_ROLE_ARN=$ROLE_ARN"
    echo "AMP_RW_PROXY_EXTERNAL_ID=$EXTERNAL_ID"
    echo "CT_STS_ENDPOINT=$STS_ENDPOINT"
    echo "CT_CA_BUNDLE=$tls/bundle.crt"
    echo "CT_PROMETHEUS_IMAGE=$PROM_IMAGE"
    echo "CT_NETWORK=$NET"
  } >"$WORK/compose-env"
  local accepted0 rejected0 t0 ms
  accepted0="$(standin_stat accepted)"
  rejected0="$(standin_stat rejected)"
  t0="$(date +%s%N)"
  compose up -d >"$WORK/compose-up.log" 2>&1 || { cat "$WORK/compose-up.log"; fail "podman-compose up"; }
  local proxy_c prom_c
  proxy_c="$(podman ps --filter label=com.docker.compose.project=deploy --filter label=com.docker.compose.service=amp-rw-proxy --format '{{.Names}}')"
  prom_c="$(podman ps --filter label=com.docker.compose.project=deploy --filter label=com.docker.compose.service=prometheus --format '{{.Names}}')"
  [ -n "$proxy_c" ] && [ -n "$prom_c" ] || { cat "$WORK/compose-up.log"; fail "compose containers not found"; }
  local base prom
  base="http://$(podman inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$proxy_c"):8080"
  prom="http://$(podman inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$prom_c"):9090"
  wait_until 60 "compose proxy ready at $base" is_ready "$base"
  ms=$((($(date +%s%N) - t0) / 1000000))
  ok "podman-compose up: $proxy_c, $prom_c; proxy ready $ms ms after up started (image already built: up does not rebuild)"
  ok "$proxy_c: $(check_pid1 "$proxy_c" 65532)"
  podman healthcheck run "$proxy_c" >/dev/null || fail "$proxy_c: compose healthcheck unhealthy"
  ok "$proxy_c: compose healthcheck $(podman inspect --format '{{.Config.Healthcheck.Test}}' "$proxy_c"): healthy"
  wait_until 60 "compose Prometheus ready" is_ready "$prom"
  wait_until 90 "samples from the compose Prometheus at the receiver" received_any '{cluster="compose-example"}'
  snapshot_compare "$prom" '{cluster="compose-example"}'
  local accepted rejected
  accepted=$(($(standin_stat accepted) - accepted0))
  rejected=$(($(standin_stat rejected) - rejected0))
  [ "$rejected" = 0 ] && [ "$accepted" -gt 0 ] || fail "stand-in: $accepted accepted, $rejected rejected: $(standin_stat reasons)"
  [ "$FAILED" = 0 ] && [ "$DROPPED" = 0 ] || fail "compose Prometheus failed $FAILED, dropped $DROPPED"
  ok "Prometheus (agent mode) -> amp-rw-proxy:8080 -> TLS stand-in: sender sent $SENT, receiver has $RECEIVED; $accepted requests verified, 0 rejected"
  result "compose: time to ready ${ms} ms from up; samples sent $SENT (samples_total - retried), received $RECEIVED, failed $FAILED, dropped $DROPPED; $accepted signed requests accepted, 0 rejected"

  compose down >"$WORK/compose-down.log" 2>&1 || { cat "$WORK/compose-down.log"; fail "podman-compose down"; }
  local left vols
  left="$(podman ps -a --filter label=com.docker.compose.project=deploy --format '{{.Names}}')"
  [ -z "$left" ] || fail "containers left after down: $left"
  if podman pod exists pod_deploy; then fail "pod pod_deploy left after down"; fi
  vols="$(podman volume ls --filter label=com.docker.compose.project=deploy --format '{{.Name}}' | tr '\n' ' ')"
  compose down -v >>"$WORK/compose-down.log" 2>&1 || { cat "$WORK/compose-down.log"; fail "podman-compose down -v"; }
  [ -z "$(podman volume ls --filter label=com.docker.compose.project=deploy -q)" ] || fail "volumes left after down -v"
  rm -f "$WORK/compose-env"
  ok "down: no containers left (the named volume is kept, as Docker keeps it: ${vols:-none}); down -v: no volumes left"
}

# ---------------------------------------------------------------------------------------------
# What `kubectl apply -k deploy/kubernetes/overlays/NAME` would send: kustomize_overlay NAME writes
# $WORK/kustomize-NAME.yaml.
kustomize_overlay() {
  kubectl kustomize "deploy/kubernetes/overlays/$1" >"$WORK/kustomize-$1.yaml" || fail "kubectl kustomize deploy/kubernetes/overlays/$1"
  ok "kubectl kustomize overlays/$1: $(grep -c '^kind:' "$WORK/kustomize-$1.yaml") objects"
}
# Renders deploy/kubernetes manifests (the rendered overlays) for `podman kube play` against the
# stand-ins, printing each change. render_kube OUT.yaml CONFIGMAP_OUT|- FILES...
render_kube() {
  IMAGE="$IMAGE" PROM_IMAGE="$PROM_IMAGE" UPSTREAM_URL="$UPSTREAM_URL" ROLE_ARN="$ROLE_ARN" EXTERNAL_ID="$EXTERNAL_ID" \
    REGION="$REGION" STS_ENDPOINT="$STS_ENDPOINT" CA_BUNDLE="$tls/bundle.crt" "$PY" - "$@" <<'PY'
import os, socket, sys, yaml
out, cm_out, *files = sys.argv[1:]
docs = [d for f in files for d in yaml.safe_load_all(open(f)) if d]
e = os.environ
def say(s):
    print(f"  manifest change: {s}")
pods, cms = [], []
for d in docs:
    kind = d["kind"]
    if kind == "ConfigMap":
        cms.append(d)
    elif kind in ("Deployment", "Pod"):
        pods.append(d)
    else:
        print(f"  not played: {kind} {d['metadata']['name']} (podman kube play has no {kind}: it is not a cluster)")
for d in pods:
    spec = d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]
    name = d["metadata"]["name"]
    inits = spec.get("initContainers", [])
    for c in [c for c in inits if c.get("restartPolicy") == "Always"]:
        inits.remove(c)
        del c["restartPolicy"]
        spec["containers"].insert(0, c)
        say(f"{name}: init container {c['name']} with restartPolicy: Always (native sidecar) moved to containers: "
            "podman 4.3 runs init containers to completion before the pod's containers, so a native sidecar would block the pod")
    if not inits:
        spec.pop("initContainers", None)
    for c in spec["containers"]:
        for port in c.get("ports", []):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port["hostIP"], port["hostPort"] = "127.0.0.1", sock.getsockname()[1]
            sock.close()
            say(f"{name}/{c['name']}: containerPort {port['containerPort']} pinned to hostIP 127.0.0.1, hostPort {port['hostPort']}: "
                "podman 4.3 publishes every containerPort on the host (0.0.0.0, same number), which a cluster never does")
        if c["name"] == "amp-rw-proxy":
            c["image"] = e["IMAGE"]
            env = {v["name"]: v for v in c.get("env", [])}
            for k, v in (("AMP_RW_PROXY_UPSTREAM_URL", e["UPSTREAM_URL"]), ("AMP_RW_PROXY_ROLE_ARN", e["ROLE_ARN"]),
                         ("AMP_RW_PROXY_EXTERNAL_ID", e["EXTERNAL_ID"])):
                env[k]["value"] = v
            add = [("AMP_RW_PROXY_REGION", e["REGION"]), ("AMP_RW_PROXY_STS_ENDPOINT", e["STS_ENDPOINT"]),
                   ("AWS_ACCESS_KEY_ID", e["AWS_ACCESS_KEY_ID"]), ("AWS_SECRET_ACCESS_KEY", e["AWS_SECRET_ACCESS_KEY"]),
                   ("AWS_EC2_METADATA_DISABLED", "true")]
            c["env"] = list(env.values()) + [{"name": k, "value": v} for k, v in add]
            c.setdefault("volumeMounts", []).append(
                {"name": "test-ca", "mountPath": "/etc/ssl/certs/ca-certificates.crt", "readOnly": True})
            spec.setdefault("volumes", []).append(
                {"name": "test-ca", "hostPath": {"path": e["CA_BUNDLE"], "type": "File"}})
            say(f"{name}/{c['name']}: image {e['IMAGE']}; upstream URL, role ARN, ExternalId set to the stand-ins'; "
                "added AMP_RW_PROXY_REGION, AMP_RW_PROXY_STS_ENDPOINT, static base keys (no IRSA/Pod Identity webhook here), "
                "AWS_EC2_METADATA_DISABLED; the test CA bundle mounted (hostPath) at /etc/ssl/certs/ca-certificates.crt")
        elif c["name"] == "prometheus":
            c["image"] = e["PROM_IMAGE"]
            say(f"{name}/{c['name']}: image {e['PROM_IMAGE']} (built here from Debian's Prometheus; no registry)")
with open(out, "w") as f:
    yaml.safe_dump_all(pods, f, sort_keys=False)
os.chmod(out, 0o600)
if cm_out != "-":
    with open(cm_out, "w") as f:
        yaml.safe_dump_all(cms, f, sort_keys=False)
PY
}

# What podman made of a container's manifest fields. kube_fields CONTAINER
kube_fields() {
  local c="$1"
  echo "  podman applied to $c: user $(podman inspect --format '{{.Config.User}}' "$c"), read-only rootfs $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c"), cap-drop $(podman inspect --format '{{.HostConfig.CapDrop}}' "$c"), memory limit $(podman inspect --format '{{.HostConfig.Memory}}' "$c") bytes, stop timeout $(podman inspect --format '{{.Config.StopTimeout}}' "$c") s, healthcheck $(podman inspect --format '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{else}}none{{end}}' "$c")"
}
pod_ip() {
  podman inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" \
    "$(podman pod inspect --format '{{.InfraContainerID}}' "$1")"
}

scenario_kube() {
  log "kube: podman kube play of the rendered overlays sidecar-irsa and gateway (deploy/kubernetes/overlays)"
  local out="$WORK/kube-sidecar.yaml" cm="$WORK/kube-sidecar-configmap.yaml"
  local accepted0 rejected0
  accepted0="$(standin_stat accepted)"
  rejected0="$(standin_stat rejected)"
  kustomize_overlay sidecar-irsa
  render_kube "$out" "$cm" "$WORK/kustomize-sidecar-irsa.yaml"
  local t0 ms
  t0="$(date +%s%N)"
  podman kube play --network "$NET" --configmap "$cm" "$out" >"$WORK/kube-sidecar.log" 2>&1 ||
    { cat "$WORK/kube-sidecar.log"; fail "podman kube play sidecar"; }
  local pod proxy_c prom_c ip
  pod="$(podman pod ps --format '{{.Name}}' | grep '^prometheus-pod' | sed -n 1p)"
  [ -n "$pod" ] || fail "no prometheus pod"
  proxy_c="$pod-amp-rw-proxy"
  prom_c="$pod-prometheus"
  ip="$(pod_ip "$pod")"
  [ -n "$ip" ] || fail "no address for pod $pod"
  wait_until 60 "sidecar proxy ready at the pod address $ip" is_ready "http://$ip:8080"
  ms=$((($(date +%s%N) - t0) / 1000000))
  ok "pod $pod ($ip): proxy ready $ms ms after kube play"
  ok "$proxy_c: $(check_pid1 "$proxy_c" 65532)"
  ok "$prom_c: $(check_pid1 "$prom_c" 65534)"
  kube_fields "$proxy_c"
  kube_fields "$prom_c"
  if podman healthcheck run "$proxy_c" >/dev/null 2>&1; then
    note "podman's healthcheck made from the livenessProbe passed for $proxy_c"
  else
    note "podman turns the httpGet livenessProbe into a healthcheck that runs curl inside the container; the image has no curl (nor a shell), so under podman it cannot pass (a kubelet probes over HTTP from outside: unaffected)"
  fi
  note "podman 4.3 made the livenessProbe's named port (port: proxy / web) port 0 in that curl command: named probe ports are not resolved"
  note "terminationGracePeriodSeconds (60 s) not applied: podman's stop timeout is $(podman inspect --format '{{.Config.StopTimeout}}' "$proxy_c") s"
  note "ignored by podman 4.3 (no counterpart): startupProbe, readinessProbe, resources.requests, fsGroup, emptyDir.sizeLimit, serviceAccountName, automountServiceAccountToken, strategy, replicas; not played: ServiceAccount, NetworkPolicy"
  wait_until 90 "samples from the sidecar's Prometheus at the receiver" received_any '{cluster="my-cluster"}'
  snapshot_compare "http://$ip:9090" '{cluster="my-cluster"}'
  [ "$FAILED" = 0 ] && [ "$DROPPED" = 0 ] || fail "sidecar Prometheus failed $FAILED, dropped $DROPPED"
  local accepted rejected
  accepted=$(($(standin_stat accepted) - accepted0))
  rejected=$(($(standin_stat rejected) - rejected0))
  [ "$rejected" = 0 ] && [ "$accepted" -gt 0 ] || fail "stand-in: $accepted accepted, $rejected rejected: $(standin_stat reasons)"
  ok "the pod's Prometheus -> 127.0.0.1:8080 (sidecar) -> TLS stand-in: sent $SENT, received $RECEIVED; $accepted requests verified, 0 rejected"
  result "kube sidecar: time to ready ${ms} ms from kube play; samples sent $SENT (samples_total - retried), received $RECEIVED, failed $FAILED, dropped $DROPPED"

  # The gateway Deployment (no replicas: the HPA's; podman makes one pod) with a host sender.
  local gout="$WORK/kube-gateway.yaml"
  kustomize_overlay gateway
  render_kube "$gout" - "$WORK/kustomize-gateway.yaml"
  podman kube play --network "$NET" "$gout" >"$WORK/kube-gateway.log" 2>&1 || { cat "$WORK/kube-gateway.log"; fail "podman kube play gateway"; }
  local gpod gip gc
  gpod="$(podman pod ps --format '{{.Name}}' | grep '^amp-rw-proxy-pod' | sed -n 1p)"
  [ -n "$gpod" ] || fail "no gateway pod"
  gc="$gpod-amp-rw-proxy"
  gip="$(pod_ip "$gpod")"
  wait_until 60 "gateway ready at $gip" is_ready "http://$gip:8080"
  ok "gateway pod $gpod ($gip) ready; $gc: $(check_pid1 "$gc" 65532)"
  kube_fields "$gc"
  note "gateway fields podman ignores: topologySpreadConstraints, revisionHistoryLimit, strategy.rollingUpdate, startupProbe, readinessProbe, terminationGracePeriodSeconds (stop timeout $(podman inspect --format '{{.Config.StopTimeout}}' "$gc") s), resources.requests; Service, HPA, PDB, NetworkPolicy, ServiceAccount not played"
  start_sender kube-gateway-sender "http://$gip:8080/api/v1/write" kube-gateway "$gip:8080"
  wait_until 60 "samples through the gateway pod" received_any '{scenario="kube-gateway"}'
  sleep_until=$((SECONDS + 3))
  while ((SECONDS < sleep_until)); do sleep 0.5; done
  finish_sender kube-gateway
  stop_sender
  [ "$SENT" -gt 0 ] && [ "$SENT" = "$RECEIVED" ] && [ "$FAILED" = 0 ] && [ "$DROPPED" = 0 ] ||
    fail "gateway: sent $SENT, received $RECEIVED, failed $FAILED, dropped $DROPPED"
  ok "host Prometheus -> gateway pod -> TLS stand-in: sender's own count $SENT = receiver's $RECEIVED"
  result "kube gateway: samples sent $SENT (sender's TSDB), received $RECEIVED, failed $FAILED, dropped $DROPPED"

  podman kube down "$out" >/dev/null 2> >(grep -v 'systemd connection' >&2) || fail "podman kube down $out"
  podman kube down "$gout" >/dev/null 2> >(grep -v 'systemd connection' >&2) || fail "podman kube down $gout"
  [ -z "$(podman pod ps -q --filter name=prometheus-pod)$(podman pod ps -q --filter name=amp-rw-proxy-pod)" ] || fail "pods left after kube down"
  rm -f "$out" "$gout"
  ok "podman kube down: pods removed"
  if podman volume exists prometheus-config; then
    podman volume rm -f prometheus-config >/dev/null
    note "podman kube down left the volume it made for the ConfigMap (prometheus-config); removed"
  fi
}

# ---------------------------------------------------------------------------------------------
scenario_failover() {
  log "failover: three replicas behind HAProxy; one SIGKILLed, one restarted with SIGTERM, while Prometheus writes"
  local ports=() i
  for i in 1 2 3; do
    ports+=("$(free_port)")
    run_proxy "amp-ct-gw-$i" "${ports[-1]}" -v "$tls/bundle.crt:/etc/ssl/certs/ca-certificates.crt:ro" \
      -e "AMP_RW_PROXY_UPSTREAM_URL=https://$GW:$AMP_SLOW/workspaces/ws-ct/api/v1/remote_write"
  done
  for i in 1 2 3; do wait_until 30 "amp-ct-gw-$i ready" is_ready "http://127.0.0.1:${ports[$((i - 1))]}"; done
  local lb stats
  lb="$(free_port)"
  stats="$(free_port)"
  {
    echo "# Load balancer of the failover scenario (written by deploy/containers.sh)."
    echo "global"
    echo "  maxconn 1000"
    echo "defaults"
    echo "  mode http"
    echo "  timeout connect 2s"
    echo "  timeout client 60s"
    echo "  timeout server 60s"
    echo "  retries 3"
    echo "  option redispatch"
    echo "  retry-on conn-failure empty-response response-timeout"
    echo "frontend lb"
    echo "  bind 127.0.0.1:$lb"
    echo "  default_backend proxies"
    echo "frontend stats"
    echo "  bind 127.0.0.1:$stats"
    echo "  stats enable"
    echo "  stats uri /stats"
    echo "backend proxies"
    echo "  balance roundrobin"
    echo "  option httpchk GET /-/ready"
    echo "  http-check expect status 200"
    echo "  default-server inter 500ms fall 1 rise 2"
    for i in 1 2 3; do echo "  server gw$i 127.0.0.1:${ports[$((i - 1))]} check"; done
  } >"$WORK/lb.cfg"
  haproxy -db -f "$WORK/lb.cfg" >"$WORK/lb.log" 2>&1 &
  pids+=($!)
  wait_until 10 "HAProxy up" curl -sf -o /dev/null "http://127.0.0.1:$stats/stats;csv"
  SCRAPE_INTERVAL=200ms start_sender failover-sender "http://127.0.0.1:$lb/api/v1/write" failover \
    "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}"
  sent_at_least() { [ "$(metric "$SENDER_URL" prometheus_remote_storage_samples_total)" -ge "$1" ]; }
  progress() { # waits until the sender has sent $1 more samples
    local want=$(($(metric "$SENDER_URL" prometheus_remote_storage_samples_total) + $1))
    wait_until 60 "$1 more samples sent" sent_at_least "$want"
  }
  progress 5000
  # Kill gw1 while HAProxy has a request on it (current sessions > 0), so one is lost in flight.
  in_flight_at_gw1() {
    curl -s --max-time 2 "http://127.0.0.1:$stats/stats;csv" |
      awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i } $1 == "proxies" && $2 == "gw1" && $col["scur"] > 0 { f = 1 } END { exit !f }'
  }
  local caught="with a request in flight"
  local until_caught=$((SECONDS + 30))
  until in_flight_at_gw1; do
    if ((SECONDS >= until_caught)); then caught="(no request caught in flight within 30 s)"; break; fi
  done
  podman kill --signal KILL amp-ct-gw-1 >/dev/null 2> >(grep -v 'systemd connection' >&2)
  ok "amp-ct-gw-1 killed (SIGKILL) mid-run $caught"
  progress 5000
  local t_stop stop_ms
  t_stop="$(date +%s%N)"
  podman stop -t 30 amp-ct-gw-2 >/dev/null 2> >(grep -v 'systemd connection' >&2)
  stop_ms=$((($(date +%s%N) - t_stop) / 1000000))
  [ "$(podman inspect --format '{{.State.ExitCode}}' amp-ct-gw-2)" = 0 ] || fail "amp-ct-gw-2: exit code after SIGTERM is not 0"
  ok "amp-ct-gw-2 stopped with SIGTERM: drained and exited 0 after ${stop_ms} ms (amp-ct-gw-3 alone meanwhile)"
  podman start amp-ct-gw-2 >/dev/null 2> >(grep -v 'systemd connection' >&2)
  wait_until 30 "amp-ct-gw-2 ready again" is_ready "http://127.0.0.1:${ports[1]}"
  podman start amp-ct-gw-1 >/dev/null 2> >(grep -v 'systemd connection' >&2)
  wait_until 30 "amp-ct-gw-1 ready again" is_ready "http://127.0.0.1:${ports[0]}"
  ok "both restarted and ready"
  progress 5000
  finish_sender failover
  stop_sender
  curl -s "http://127.0.0.1:$stats/stats;csv" >"$WORK/lb-stats.csv"
  local lbsum
  lbsum="$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i } $1 == "proxies" && $2 ~ /^gw/ { printf "%s %s requests %s 5xx %s retried %s redispatched; ", $2, $col["req_tot"], $col["hrsp_5xx"], $col["wretr"], $col["wredis"] }' "$WORK/lb-stats.csv")"
  local lost=$((SENT - RECEIVED))
  [ "$lost" = 0 ] || fail "failover lost $lost samples (sender $SENT, receiver $RECEIVED)"
  [ "$FAILED" = 0 ] && [ "$DROPPED" = 0 ] || fail "sender failed $FAILED, dropped $DROPPED samples"
  ok "sender's own count $SENT = receiver's $RECEIVED: 0 lost; failed 0, dropped 0, retried $RETRIED; HAProxy: $lbsum"
  result "failover: samples sent $SENT (sender's TSDB), received $RECEIVED, lost 0, failed 0, dropped 0, retried $RETRIED; gw1 SIGKILLed $caught, gw2 SIGTERM drain ${stop_ms} ms; HAProxy: $lbsum"
  for i in 1 2 3; do podman rm -f -t 0 "amp-ct-gw-$i" >/dev/null 2> >(grep -v 'systemd connection' >&2); done
}

for s in "${scenarios[@]}"; do "scenario_$s"; done

log "summary"
{
  echo "# deploy/containers.sh results ($(date -u +%Y-%m-%dT%H:%MZ), podman $(podman --version | awk '{print $3}'))"
  echo
  for r in "${results[@]}"; do echo "- $r"; done
  echo "- deploy/containers.sh ${scenarios[*]}: $((SECONDS - started)) s"
} | tee "$WORK/results.md"
echo "deploy/containers.sh: all scenarios passed: ${scenarios[*]}"
