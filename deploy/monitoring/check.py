"""Structural checks of deploy/monitoring/ that promtool and kubernetes-validate cannot make
(called by deploy/monitoring/test.sh; each subcommand exits 1 with one line per problem).

  check.py dashboard-rules DASHBOARD OUT   write every dashboard expression into a rule file
                                           (Grafana variables replaced) for `promtool check rules`
  check.py dashboard DASHBOARD             panels: data source, targets, layout
  check.py rendered RENDER RULES OUT CORE  the kustomize output: Prometheus Operator objects
                                           against the fields of their CRDs, the PrometheusRule's
                                           groups equal to RULES (written to OUT for promtool),
                                           and the non-CRD objects written to CORE for
                                           kubernetes-validate
  check.py wiring RENDER.yaml DEPLOY_K8S   the monitors select what deploy/kubernetes/ runs
"""

import json
import re
import sys
from pathlib import Path

import yaml

problems = []


def fail(msg):
    problems.append(msg)


def done():
    for p in problems:
        print(f"deploy/monitoring/check.py: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


# Grafana's variables, replaced by what Prometheus would see.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def grafana_to_promql(expr):
    for k, v in VARIABLES.items():
        expr = expr.replace(k, v)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def dashboard_rules(dash_path, out):
    dash = json.loads(Path(dash_path).read_text())
    rules = []
    for p in panels(dash):
        for t in p.get("targets", []):
            rules.append({"record": f"dashboard:panel_{len(rules)}", "expr": grafana_to_promql(t["expr"])})
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["query"])
            rules.append({"record": f"dashboard:variable_{v['name']}", "expr": grafana_to_promql(m.group(1))})
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    print(f"{len(rules)} dashboard expressions")


def dashboard(dash_path):
    dash = json.loads(Path(dash_path).read_text())
    if not dash.get("uid"):
        fail("dashboard: no uid (links and provisioning need a stable one)")
    names = {v["name"] for v in dash["templating"]["list"]}
    if names != {"datasource", "job", "instance", "route"}:
        fail(f"dashboard: variables {sorted(names)}")
    used = set()
    cells = {}
    titles = set()
    for p in panels(dash):
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            fail(f"panel {p['title']!r} is wider than the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    fail(f"panel {p['title']!r} overlaps {cells[(x, y)]!r}")
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        if p["title"] in titles:
            fail(f"two panels titled {p['title']!r}")
        titles.add(p["title"])
        if p.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"panel {p['title']!r} does not use the $datasource variable")
        if not p.get("description"):
            fail(f"panel {p['title']!r} has no description")
        if not p.get("targets"):
            fail(f"panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            used.update(re.findall(r"\$(\w+)", t["expr"]))
    for v in ("job", "instance", "route"):
        if v not in used:
            fail(f"variable ${v} is used by no panel")
    print(f"{len(titles)} panels")


# The fields of the Prometheus Operator CRDs (monitoring.coreos.com/v1) these files use, with
# their types; anything else is an error (a misspelt key is silently dropped by a cluster that
# prunes unknown fields, which is exactly the mistake to catch here).
RELABEL = {"sourceLabels": list, "separator": str, "targetLabel": str, "regex": str,
           "modulus": int, "replacement": str, "action": str}
ENDPOINT = {"port": str, "path": str, "interval": str, "scrapeTimeout": str, "scheme": str,
            "honorLabels": bool, "relabelings": [RELABEL], "metricRelabelings": [RELABEL]}
SELECTOR = {"matchLabels": dict, "matchExpressions": list}
SPECS = {
    "ServiceMonitor": {"selector": SELECTOR, "endpoints": [ENDPOINT], "jobLabel": str,
                       "namespaceSelector": {"any": bool, "matchNames": list}},
    "PodMonitor": {"selector": SELECTOR, "podMetricsEndpoints": [ENDPOINT], "jobLabel": str,
                   "namespaceSelector": {"any": bool, "matchNames": list}},
    "PrometheusRule": {"groups": [{"name": str, "interval": str, "rules": [
        {"record": str, "alert": str, "expr": str, "for": str, "labels": dict, "annotations": dict}]}]},
}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_fields(where, value, shape):
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return fail(f"{where}: expected a mapping")
        for k, v in value.items():
            if k not in shape:
                fail(f"{where}: unknown field {k!r} (known: {', '.join(shape)})")
            else:
                check_fields(f"{where}.{k}", v, shape[k])
    elif isinstance(shape, list):
        if not isinstance(value, list) or not value:
            return fail(f"{where}: expected a non-empty list")
        for i, v in enumerate(value):
            check_fields(f"{where}[{i}]", v, shape[0])
    elif not isinstance(value, shape):
        fail(f"{where}: expected {shape.__name__}, got {type(value).__name__}")
    elif where.endswith((".interval", ".scrapeTimeout", ".for")) and not DURATION.match(value):
        fail(f"{where}: {value!r} is not a Prometheus duration")


def rendered(render_path, rules_path, out, core_out):
    docs = [d for d in yaml.safe_load_all(Path(render_path).read_text()) if d]
    plain = yaml.safe_load(Path(rules_path).read_text())["groups"]
    kinds = {}
    others = []
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        where = f"{kind}/{name}"
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind not in SPECS:
            others.append(d)
            continue
        if d.get("apiVersion") != "monitoring.coreos.com/v1":
            fail(f"{where}: apiVersion {d.get('apiVersion')!r}")
        if set(d) - {"apiVersion", "kind", "metadata", "spec"}:
            fail(f"{where}: unexpected top-level keys {sorted(set(d) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name or "") or len(name) > 63:
            fail(f"{where}: not a valid object name")
        if d["metadata"].get("namespace") != "monitoring":
            fail(f"{where}: namespace {d['metadata'].get('namespace')!r}, want monitoring")
        check_fields(f"{where}.spec", d.get("spec"), SPECS[kind])
        for ep in d["spec"].get("endpoints", []) + d["spec"].get("podMetricsEndpoints", []):
            for r in ep.get("relabelings", []):
                if "targetLabel" in r and not LABEL_NAME.match(r["targetLabel"]):
                    fail(f"{where}: relabeling targetLabel {r['targetLabel']!r}")
            if ep.get("path") != "/metrics":
                fail(f"{where}: endpoint path {ep.get('path')!r}, the proxy serves /metrics")
        if kind == "PrometheusRule":
            for g in d["spec"]["groups"]:
                for r in g["rules"]:
                    if ("record" in r) == ("alert" in r):
                        fail(f"{where}: rule in {g['name']} needs exactly one of record/alert")
            if d["spec"]["groups"] != plain:
                fail(f"{where}: its groups differ from {rules_path} (run generate.py)")
            Path(out).write_text(yaml.safe_dump({"groups": d["spec"]["groups"]}, sort_keys=False))
    for want in ("PrometheusRule", "ServiceMonitor", "PodMonitor"):
        if kinds.get(want) != 1:
            fail(f"{render_path}: {kinds.get(want, 0)} {want} objects, want 1")
    # The non-CRD objects, for kubernetes-validate.
    Path(core_out).write_text(yaml.safe_dump_all(others, sort_keys=False) if others else "")
    print(", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))


def wiring(render_path, k8s_dir):
    docs = [d for d in yaml.safe_load_all(Path(render_path).read_text()) if d]
    manifests = []
    for f in sorted(Path(k8s_dir).rglob("*.yaml")):
        try:
            manifests += [(f, d) for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]
        except yaml.YAMLError:
            pass
    for d in docs:
        if d["kind"] == "ServiceMonitor":
            want = d["spec"]["selector"]["matchLabels"]
            ports = {ep["port"] for ep in d["spec"]["endpoints"]}
            services = [
                (f, m) for f, m in manifests
                if m.get("kind") == "Service"
                and want.items() <= (m.get("metadata", {}).get("labels") or {}).items()
            ]
            if not services:
                fail(f"ServiceMonitor selects {want}, but no Service under {k8s_dir} has those labels")
            for f, m in services:
                named = {p.get("name") for p in m["spec"].get("ports", [])}
                if not ports <= named:
                    fail(f"ServiceMonitor scrapes port(s) {sorted(ports)}, {f} names {sorted(named)}")
            print(f"ServiceMonitor -> {', '.join(str(f) for f, _ in services)}")
        if d["kind"] == "PodMonitor":
            ports = {ep["port"] for ep in d["spec"]["podMetricsEndpoints"]}
            found = []
            # The kube-prometheus-stack values (Helm values, not a manifest): its sidecar container.
            for f, m in manifests:
                spec = (m.get("prometheus") or {}).get("prometheusSpec") or {}
                for c in spec.get("containers", []):
                    named = {p.get("name") for p in c.get("ports", [])}
                    if ports <= named:
                        found.append(f"{f} container {c['name']}")
                    listen = {e["name"]: e.get("value") for e in c.get("env", [])}.get("AMP_RW_PROXY_LISTEN", "")
                    if ports <= named and not listen.startswith("0.0.0.0:"):
                        fail(f"{f}: the sidecar listens on {listen!r}; a PodMonitor reaches only 0.0.0.0")
            if not found:
                fail(f"PodMonitor scrapes port {sorted(ports)}, which no kube-prometheus-stack sidecar under {k8s_dir} names")
            print(f"PodMonitor -> {', '.join(found)}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"dashboard-rules": dashboard_rules, "dashboard": dashboard, "rendered": rendered, "wiring": wiring}[cmd](*args)
    done()
