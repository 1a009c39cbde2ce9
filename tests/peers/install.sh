#!/usr/bin/env bash
# Installs the third-party peers the end-to-end suite (tests/e2e.rs) runs against, idempotently:
#   - Prometheus 2.42 from Debian (sender and receiver, remote-write 1.0)
#   - Prometheus 3.x from Debian sid, unpacked under target/peers/ (remote-write 2.0)
#   - a Python venv in .venv/ with moto (STS) and botocore (the independent SigV4 verifier)
#   - Debian's tinyproxy, the forward proxy of tests/egress.rs
# Prints the environment the tests read (AMP_E2E_*), also written to target/peers/env.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peers="$root/target/peers"
mkdir -p "$peers"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing Debian's prometheus" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The package starts a system service on some machines; the tests run their own instances.
if command -v service >/dev/null 2>&1; then $sudo service prometheus stop >/dev/null 2>&1 || true; fi

if ! command -v tinyproxy >/dev/null 2>&1; then
  echo "installing Debian's tinyproxy" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends tinyproxy >/dev/null
  # The package may start a system service; the tests run their own instances.
  if command -v service >/dev/null 2>&1; then $sudo service tinyproxy stop >/dev/null 2>&1 || true; fi
fi

prom3="$peers/prometheus3/usr/bin/prometheus"
if [ ! -x "$prom3" ]; then
  echo "fetching Prometheus 3.x from Debian sid (unpacked, the system's apt sources untouched)" >&2
  d="$peers/apt-sid"
  mkdir -p "$d/lists/partial" "$d/parts" "$d/debs"
  # The archive this machine's apt already uses (its sources, classic or deb822); none → one line, exit 1.
  mirror=$(bash "$root/tests/peers/debian-mirror.sh")
  echo "deb $mirror sid main" > "$d/sources.list"
  o=(-o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/parts" -o "Dir::State::Lists=$d/lists"
     -o "Dir::Cache::archives=$d/debs" -o "Debug::NoLocking=1")
  $sudo apt-get "${o[@]}" update -qq
  (cd "$d/debs" && apt-get "${o[@]}" download prometheus >/dev/null)
  rm -rf "$peers/prometheus3"
  dpkg-deb -x "$d/debs"/prometheus_*.deb "$peers/prometheus3"
fi

venv="$root/.venv"
if ! "$venv/bin/python" -c 'import moto, botocore, boto3' >/dev/null 2>&1; then
  echo "creating $venv with moto and botocore" >&2
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's own python3 needs python3-venv for this.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/peers/requirements.txt"
fi

{
  echo "AMP_E2E_PROMETHEUS=$(command -v prometheus)"
  echo "AMP_E2E_PROMETHEUS3=$prom3"
  echo "AMP_E2E_PYTHON=$venv/bin/python"
} | tee "$peers/env"
"$(command -v prometheus)" --version 2>&1 | head -1 >&2
"$prom3" --version 2>&1 | head -1 >&2
