#!/usr/bin/env bash
# Tests deploy/monitoring/ without a cluster or a Grafana:
#
#   bash deploy/monitoring/test.sh        (from any directory; root or sudo for apt)
#
#   1. generated files up to date: generate.py --check (PrometheusRule, dashboard JSON,
#      metric-names.txt are what the rule file and the dashboard code produce)
#   2. rules: `promtool check rules` and `promtool test rules` (alerts that fire and must not)
#      with promtool 2.42 (Debian bookworm) and 3.5 (Debian sid, unpacked, not installed)
#   3. dashboard: every query and variable parses as PromQL (promtool check rules, both
#      versions), panel layout, data source and variables (check.py dashboard)
#   4. Kubernetes: `kubectl kustomize` of kubernetes/ and of this directory; the Prometheus
#      Operator objects checked field by field against their CRDs (kubernetes-validate has no
#      CRD schemas), the rendered PrometheusRule's groups equal the rule file and pass promtool
#      and the same unit tests, the ConfigMap passes kubernetes-validate --strict, and the
#      monitors select what deploy/kubernetes/ runs (check.py wiring)
# The metric-name cross-check against a running proxy is tests/metric_names.rs (cargo test).
#
# Installs when missing: apt kubectl is expected on the image (fails naming it otherwise);
# promtool from Debian's prometheus package (bookworm) and promtool package (sid), unpacked
# under target/monitoring/; target/monitoring/venv with the pinned PyYAML and
# grafana-foundation-sdk (and kubernetes-validate unless deploy/validate.sh's venv has it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$ROOT/target/monitoring"
mkdir -p "$WORK"
PIP_PINS=(PyYAML==6.0.3 "grafana-foundation-sdk==1769699998!10.1.0")
K8S_VERSIONS=(1.29 1.33 1.37)

started=$SECONDS
step() { printf '\n=== deploy/monitoring/test.sh: %s (%ss)\n' "$*" $((SECONDS - started)); }
die() { printf 'deploy/monitoring/test.sh: FAIL: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

step "tools"
command -v kubectl >/dev/null || die "kubectl not found (it comes with the machine image; see ../shared/PEERS.md)"
command -v python3 >/dev/null || die "python3 not found"

# promtool 2.42: the system's, else unpacked from Debian's prometheus package (not installed,
# so no service starts), as deploy/validate.sh does.
PROMTOOL2="$(command -v promtool || true)"
if [ -z "$PROMTOOL2" ]; then
  PROMTOOL2="$WORK/prometheus-deb/usr/bin/promtool"
  if [ ! -x "$PROMTOOL2" ]; then
    echo "unpacking promtool from Debian's prometheus package"
    "${SUDO[@]}" apt-get update -qq
    rm -rf "$WORK/prometheus-deb" "$WORK/debs2" && mkdir -p "$WORK/debs2"
    (cd "$WORK/debs2" && apt-get download prometheus >/dev/null 2>&1)
    dpkg-deb -x "$WORK"/debs2/prometheus_*.deb "$WORK/prometheus-deb"
  fi
fi
# promtool 3.x: sid ships it as its own package; fetched with a private sid source list (the
# system's apt sources untouched), like tests/peers/install.sh fetches Prometheus 3.
PROMTOOL3="$WORK/promtool3/usr/bin/promtool"
if [ ! -x "$PROMTOOL3" ]; then
  echo "fetching promtool 3.x from Debian sid (unpacked)"
  # tests/peers/install.sh's sid lists when it has fetched them (CI runs it first), else our own.
  d="$ROOT/target/peers/apt-sid"
  own=0
  if ! ls "$d"/lists/*sid*Packages* >/dev/null 2>&1; then d="$WORK/apt-sid"; own=1; fi
  mkdir -p "$d/lists/partial" "$d/parts" "$d/debs"
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -f "$d/sources.list" ] || echo "deb ${mirror:-http://deb.debian.org/debian} sid main" >"$d/sources.list"
  o=(-o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/parts"
     -o "Dir::State::Lists=$d/lists" -o "Dir::Cache::archives=$d/debs" -o "Debug::NoLocking=1")
  if [ "$own" = 1 ]; then "${SUDO[@]}" apt-get "${o[@]}" update -qq; fi
  rm -rf "$WORK/debs3" && mkdir -p "$WORK/debs3"
  (cd "$WORK/debs3" && apt-get "${o[@]}" download promtool >/dev/null 2>&1) ||
    die "cannot download Debian sid's promtool package"
  rm -rf "$WORK/promtool3"
  dpkg-deb -x "$WORK"/debs3/promtool_*.deb "$WORK/promtool3"
  if [ "$own" = 1 ]; then rm -rf "$d/lists"; fi   # package lists, not needed once unpacked
fi
"$PROMTOOL2" --version 2>&1 | head -1
"$PROMTOOL3" --version 2>&1 | head -1

VENV="$WORK/venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" 2>/dev/null || {
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$VENV"
  }
fi
KV="$ROOT/target/deploy-venv/bin/kubernetes-validate"
pins=("${PIP_PINS[@]}")
if [ ! -x "$KV" ]; then
  pins+=(kubernetes-validate==1.37.0)
  KV="$VENV/bin/kubernetes-validate"
fi
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "${pins[*]}" ]; then
  echo "pip install ${pins[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" >"$VENV/.pins"
fi
PY="$VENV/bin/python"

step "1. generated files are up to date"
"$PY" "$HERE/generate.py" --check

step "2. rules: promtool check rules and test rules (2.42 and 3.5)"
for P in "$PROMTOOL2" "$PROMTOOL3"; do
  "$P" check rules --lint=all --lint-fatal "$HERE/rules/amp-rw-proxy.rules.yml"
  (cd "$HERE/tests" && "$P" test rules amp-rw-proxy.test.yml)
done

step "3. dashboard: queries parse as PromQL, layout, data source, variables"
"$PY" "$HERE/check.py" dashboard-rules "$HERE/dashboards/amp-rw-proxy.json" "$WORK/dashboard.rules.yml"
for P in "$PROMTOOL2" "$PROMTOOL3"; do "$P" check rules "$WORK/dashboard.rules.yml" >/dev/null; done
"$PY" "$HERE/check.py" dashboard "$HERE/dashboards/amp-rw-proxy.json"

step "4. Kubernetes: kubectl kustomize, CRD fields, rendered rules, kubernetes-validate, wiring"
for dir in "$HERE/kubernetes" "$HERE"; do
  name=$(basename "$dir")
  kubectl kustomize "$dir" >"$WORK/$name.render.yaml"
  "$PY" "$HERE/check.py" rendered "$WORK/$name.render.yaml" "$HERE/rules/amp-rw-proxy.rules.yml" \
    "$WORK/$name.rules.yml" "$WORK/$name.core.yaml"
  # The rendered PrometheusRule's rules, through promtool and the same unit tests.
  sed "s#../rules/amp-rw-proxy.rules.yml#$WORK/$name.rules.yml#" "$HERE/tests/amp-rw-proxy.test.yml" \
    >"$WORK/$name.test.yml"
  for P in "$PROMTOOL2" "$PROMTOOL3"; do
    "$P" check rules "$WORK/$name.rules.yml" >/dev/null
    (cd "$HERE/tests" && "$P" test rules "$WORK/$name.test.yml" >/dev/null) ||
      die "the rendered PrometheusRule of $dir fails the unit tests"
  done
  # The objects with a schema (the dashboard ConfigMap of the top-level kustomization).
  if [ "$dir" = "$HERE" ] && ! grep -q '^kind: ConfigMap' "$WORK/$name.core.yaml"; then
    die "kubectl kustomize $dir rendered no dashboard ConfigMap"
  fi
  if [ -s "$WORK/$name.core.yaml" ]; then
    for v in "${K8S_VERSIONS[@]}"; do "$KV" --strict -k "$v" --quiet "$WORK/$name.core.yaml"; done
    echo "kubernetes-validate --strict (${K8S_VERSIONS[*]}): $(grep -c '^kind:' "$WORK/$name.core.yaml") object(s)"
  fi
done
"$PY" "$HERE/check.py" wiring "$WORK/monitoring.render.yaml" "$ROOT/deploy/kubernetes"

step "passed"
