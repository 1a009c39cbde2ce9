#!/usr/bin/env python3
"""The path users run: a TLS upstream, many senders, many routes (issue 17). Run by
benches/suite.py (so by `bash benches/run.sh`) after the plain-HTTP comparison; alone:

  target/bench-venv/bin/python benches/tls.py [--quick] [--only tls,senders,bodies,routes]

Peers: moto's STS, and an nginx TLS sink (`listen ... ssl`, `return 204`, RSA-2048 certificate
for 127.0.0.1 from a throw-away CA made here with openssl; the proxy trusts it through
--upstream-ca-file), once offering HTTP/1.1 only and once also h2 by ALPN.

  tls      16 KB / 200 KB / 1 MB bodies, wrk -c16 -t2, one worker each:
           direct    wrk -> TLS sink (https)
           nginx     wrk -> nginx reverse proxy (proxy_pass https://, keepalive 64, session reuse,
                     certificate verified) -> TLS sink — the baseline
           amp-rw-proxy h1 / h2: --worker-threads 1, the TLS sink without / with h2 in ALPN
           Floor = nginx's CPU per request + SHA-256 of the body (aws-lc-rs).
  senders  16 -> 256 -> 1,000 concurrent connections (wrk), 16 KB bodies, the proxy as a gateway
           (default threads, one per core): req/s, p99, RSS under load (median of samples over
           the second half of the run), peak RSS, errors, for h1 and h2 upstream; then 1,000
           paced senders (benches/tools/paced.rs, native, phases spread) at half of the 1,000-connection
           saturation rate, through the proxy, direct to a plain sink and through nginx doing
           the same job (TLS reverse proxy, one worker per core): errors, steady RSS, the added
           p99, and from the proxy's own histograms the share of requests over 2 ms in all and in
           its upstream call; then 1,000 paced senders of 200 KB bodies at 1,000 req/s (memory of
           busy senders' full batches).
  bodies   200 -> 2,000 -> 10,000 -> 50,000 series x 10 labels, one sample each, 1 thread:
           CPU per request and per sample, the proxy against the nginx floor.
  routes   1 -> 10 -> 100 routes in a routes file (--config), one role each (same moto role,
           own cache): startup time (spawn to /-/ready 200), RSS, AssumeRole calls (moto's
           data.json), CPU per 16 KB request on the last route, 1 thread; and for 1 and 100
           routes the instructions per request under callgrind (benches/profile.py), which
           decide the 5 % target.

CPU per request is utime + stime of the process (and nginx's workers) from /proc over the
requests wrk reports. Every table row records the 1-minute load average when it ran: the
machine is shared, so CPU time per request is the figure to compare, not req/s.
Writes target/bench/tls.md, tls.json and tls.png, senders.png, bodies.png, routes.png.
"""

import argparse
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

ROOT = bench.ROOT
OUT = bench.OUT

# The issue's targets (benchmark checks, reported PASS/MISS; never timed tests).
TARGET_FLOOR = {"16KB": 0.75, "200KB": 0.5, "1MB": 0.5}
TARGET_RSS_1000_MIB = 64
TARGET_ADDED_P99_MS = 2.0
TARGET_ROUTES_CPU = 0.05

SENDERS = [16, 256, 1000]
BODY_SERIES = [200, 2000, 10000, 50000]
ROUTES = [1, 10, 100]
# 1,000 senders of 200 KB (2,000-sample) bodies: one batch per sender per second.
PACED_BIG_RATE = 1000


# Rounds of the A/B comparisons (tls, routes): the cheapest of each is reported. The routes
# compare like with like (one hash-map get apart) against a 5 % target, under the ±15 % that one
# 10 s round moves on this shared machine: one round per route count, each first once.
ROUNDS = 2
ROUTE_ROUNDS = len(ROUTES)


def cheapest(rows, keys):
    """One row per `keys` (first-seen order): the one with the least CPU per request, with every
    round's CPU µs/request kept in `cpu_us_rounds`."""
    out = {}
    for r in rows:
        k = tuple(r.get(x) for x in keys)
        rounds = out[k]["cpu_us_rounds"] if k in out else []
        rounds.append(round(r["cpu_ms_per_req"] * 1000, 1))
        if k not in out or r["cpu_ms_per_req"] < out[k]["cpu_ms_per_req"]:
            out[k] = r
        out[k]["cpu_us_rounds"] = rounds
    return list(out.values())


def load1():
    return float(Path("/proc/loadavg").read_text().split()[0])


# --------------------------------------------------------------------------------------------
# Certificates and nginx

def make_certs(d):
    """A CA and an RSA-2048 server certificate for 127.0.0.1 / localhost signed by it."""
    d = Path(d)

    def run(*a):
        subprocess.run(a, check=True, capture_output=True, cwd=d)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=amp-rw-proxy bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "sink.key", "-out", "sink.csr",
        "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "sink.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "sink.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": d / "ca.pem", "cert": d / "sink.pem", "key": d / "sink.key"}


def nginx_conf(tmp, workers, http_block):
    d = Path(tempfile.mkdtemp(dir=tmp))
    for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (d / sub).mkdir()
    conf = f"""
daemon off;
master_process on;
user root;
worker_processes {workers};
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_max_body_size 64m;
  client_body_buffer_size 8m;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  {http_block}
}}
"""
    path = d / "nginx.conf"
    path.write_text(conf)
    return path


def tls_sink_block(port, certs, h2):
    """The TLS sink. Over HTTP/1.1 `return 204` still reads (and discards) the whole body, as
    keep-alive needs; over h2 nginx answers at once and resets the stream (NO_ERROR), so a
    client would never send more than the 64 KB initial window of a larger body. The h2 sink
    therefore reads the body by buffering it for a local `return 204` (proxy_request_buffering),
    so both sinks take every byte."""
    tls = (f"ssl_certificate {certs['cert']}; ssl_certificate_key {certs['key']}; "
           "ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:sink:10m;")
    if not h2:
        return f"server {{ listen 127.0.0.1:{port} ssl; {tls} location / {{ return 204; }} }}"
    inner = bench.free_port()
    return (f"upstream inner {{ server 127.0.0.1:{inner}; keepalive 64; }} "
            f"server {{ listen 127.0.0.1:{inner}; location / {{ return 204; }} }} "
            f"server {{ listen 127.0.0.1:{port} ssl http2; {tls} location / {{ proxy_pass http://inner; "
            "proxy_http_version 1.1; proxy_set_header Connection \"\"; } }")


def tls_proxy_block(port, sink_port, certs):
    return (f"upstream sink {{ server 127.0.0.1:{sink_port}; keepalive 64; }} "
            f"server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass https://sink; proxy_http_version 1.1; "
            "proxy_set_header Connection \"\"; proxy_ssl_session_reuse on; proxy_ssl_verify on; "
            f"proxy_ssl_trusted_certificate {certs['ca']}; proxy_ssl_name localhost; }} }}")


def wait_https(url, ca, timeout=30.0):
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                if r.status in (200, 204):
                    return
        except Exception as e:  # noqa: BLE001 — not yet
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready: {last}")


# --------------------------------------------------------------------------------------------
# Load with memory sampled during the run

def wrk_sampled(proc, url, body_file, duration, connections, threads=2):
    """bench.wrk, plus the process's RSS sampled every 0.25 s while it runs: `rss_load_mib` is
    the median of the samples over the second half (steady under load), `rss_max_mib` their max."""
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.wait(0.25):
            samples.append((time.time(), proc.status_kib("VmRSS") / 1024))

    t0 = time.time()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    (user0, kernel0) = proc.cpu_split()
    try:
        r = bench.wrk(url, body_file, duration, connections, threads)
    finally:
        (user1, kernel1) = proc.cpu_split()
        stop.set()
        th.join()
    half = [m for t, m in samples if t >= t0 + duration / 2] or [m for _, m in samples] or [0.0]
    r["cpu_ms_per_req"] = 1000 * (user1 - user0 + kernel1 - kernel0) / max(r["requests"], 1)
    # The kernel's share (both sockets' TCP, the copies in and out): what no change in the
    # proxy's own code can remove.
    r["kernel_ms_per_req"] = 1000 * (kernel1 - kernel0) / max(r["requests"], 1)
    r["rss_load_mib"] = statistics.median(half)
    r["rss_max_mib"] = max(half)
    r["load1"] = load1()
    return r


PACED = ROOT / "target/release/examples/paced"


def paced(url, body_file, rate, duration, connections, ca=None):
    """benches/tools/paced.rs: `connections` keep-alive senders at `rate` requests/s in all
    (`ca`: the CA file for an https:// URL)."""
    cmd = [str(PACED), url, str(body_file), "--connections", str(connections), "--rate", f"{rate:.1f}",
           "--duration", str(duration)]
    if ca:
        cmd += ["--ca-file", str(ca)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def cpu_ticks():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


# Above this share of the machine's CPU in use during a paced run, the load generator, nginx
# and the proxy queue behind each other on the 2 cores, and a p99 says more about the machine
# than about the proxy.
MACHINE_BUSY_LIMIT = 0.8


def duration_buckets(port):
    """The proxy's own latency histograms from /metrics, summed over labels: {(name, le): count}
    for amp_rw_proxy_request_duration_seconds (head received to answer sent) and
    amp_rw_proxy_upstream_request_duration_seconds (its call to the upstream)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for m in re.finditer(r'^amp_rw_proxy_(upstream_request|request)_duration_seconds_bucket\{([^}]*)\} (\S+)$', text, re.M):
        key = (m.group(1), re.search(r'le="([^"]+)"', m.group(2)).group(1))
        out[key] = out.get(key, 0) + float(m.group(3))
    return out


def share_over(before, after, le):
    """Share of the requests between two scrapes that took longer than `le` seconds, in all and in
    the upstream call: where the proxy's own time would show, apart from the upstream's."""
    def share(name):
        total = after[(name, "+Inf")] - before.get((name, "+Inf"), 0)
        fast = after[(name, le)] - before.get((name, le), 0)
        return 1 - fast / total if total else None
    return {"request": share("request"), "upstream": share("upstream_request")}


def warmed_paced_sampled(proc, url, body_file, rate, duration, connections):
    """paced_sampled() after a first paced run of 5 s, not counted: it lets an upstream pool reach
    what this rate needs (h1: a TLS connection per request in flight), as a fleet's would."""
    paced(url, body_file, rate, 5, connections)
    return paced_sampled(proc, url, body_file, rate, duration, connections)


def paced_sampled(proc, url, body_file, rate, duration, connections):
    """paced() with the process's RSS sampled (median over the second half of the run) and CPU."""
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.wait(0.25):
            samples.append((time.time(), proc.status_kib("VmRSS") / 1024))

    t0 = time.time()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    cpu0 = proc.cpu_seconds()
    busy0, all0 = cpu_ticks()
    try:
        r = paced(url, body_file, rate, duration, connections)
    finally:
        cpu1 = proc.cpu_seconds()
        busy1, all1 = cpu_ticks()
        stop.set()
        th.join()
    r["machine_busy"] = (busy1 - busy0) / max(all1 - all0, 1)
    total = time.time() - t0
    half = [m for t, m in samples if t >= t0 + total / 2] or [0.0]
    n = r["requests"]
    r.update(rss_load_mib=statistics.median(half), rss_max_mib=max(half),
             errors=n - int(r["codes"].get("204", 0)) + r["socket_errors"],
             cpu_ms_per_req=1000 * (cpu1 - cpu0) / max(r["sent"], 1))
    return r


class Bench:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.procs = []
        self.rows = {"tls": [], "senders": [], "bodies": [], "routes": []}

    def start(self, name, cmd, env=None):
        p = bench.Proc(name, cmd, env=env)
        self.procs.append(p)
        return p

    def stop(self, p):
        p.stop()
        self.procs.remove(p)

    def proxy(self, name, upstream_port, threads=None, extra=(), config=None, h2=False):
        """The proxy against the sink on `upstream_port`; `h2`: with --upstream-http2 (against the
        sink that offers h2)."""
        port = bench.free_port()
        cmd = [self.args.proxy, "--listen", f"127.0.0.1:{port}",
               "--sts-endpoint", self.moto["url"], "--upstream-ca-file", str(self.certs["ca"]),
               "--drain-delay", "0s", *extra]
        if h2:
            cmd.append("--upstream-http2")
        if config:
            cmd += ["--config", str(config)]
        else:
            cmd += ["--region", "us-east-1",
                    "--upstream-url", f"https://127.0.0.1:{upstream_port}/workspaces/ws-bench/api/v1/remote_write",
                    "--role-arn", self.moto["role_arn"], "--external-id", "bench"]
        if threads:
            cmd += ["--worker-threads", str(threads)]
        t0 = time.time()
        p = self.start(name, cmd, env=bench.proxy_env(self.moto, self.tmp))
        bench.wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=120)
        p.startup_s = time.time() - t0
        p.port = port
        return p

    def nginx(self, name, workers, block, wait_url=None):
        p = self.start(name, ["nginx", "-c", str(nginx_conf(self.tmp, workers, block))])
        if wait_url:
            if wait_url.startswith("https"):
                wait_https(wait_url, self.certs["ca"])
            else:
                bench.wait_http(wait_url)
        return p

    def measure(self, series, proc, url, body, connections, duration, **labels):
        bench.wrk(url, body["path"], 1, min(connections, 64), 2)  # warm-up: connections, TLS sessions
        if connections > 64:
            # Long enough for every upstream connection to be opened (TLS handshakes) before
            # the measured run: steady state for a gateway whose senders stay connected.
            bench.wrk(url, body["path"], max(3, duration // 2), connections, 2)
        r = wrk_sampled(proc, url, body["path"], duration, connections)
        time.sleep(bench.SETTLE_S)
        row = {**labels, "body": body["name"], "bytes": body["bytes"], "samples": body["samples"],
               "connections": connections, **r, "samples_per_s": r["rps"] * body["samples"],
               "cpu_us_per_sample": 1000 * r["cpu_ms_per_req"] / body["samples"],
               "rss_after_mib": proc.status_kib("VmRSS") / 1024, "peak_rss_mib": proc.status_kib("VmHWM") / 1024,
               "errors": r["non2xx"] + r["socket_errors"]}
        self.rows[series].append(row)
        print(json.dumps(row), flush=True)
        return row


def route_instructions(args, routes, proto):
    """Instructions per 16 KB request to the last of `routes` routes (benches/profile.py --mode
    callgrind, 2,000 requests, TLS sink), or None if the profile fails."""
    r = subprocess.run([sys.executable, str(ROOT / "benches/profile.py"), "--mode", "callgrind", "--bodies", "16KB",
                        "--requests", "2000", "--upstream", f"tls-{proto}", "--routes", str(routes),
                        "--proxy", args.proxy, "--python", args.python, "--sha256-bench", args.sha256_bench],
                       capture_output=True, text=True)
    m = re.search(r"([\d,]+) instructions/request", r.stdout)
    print(f"callgrind, {routes} routes: {m.group(0) if m else r.stderr[-500:]}", flush=True)
    return int(m.group(1).replace(",", "")) if m else None


def routes_file(n, upstream, role_arn):
    """A routes file of `n` routes, /team-<i>/api/v1/write to workspace ws-<i> at `upstream`, one
    role each (the same moto role, each with its own credentials cache)."""
    return "".join(
        f'[[route]]\nname = "team-{i}"\npath = "/team-{i}/api/v1/write"\n'
        f'upstream_url = "{upstream}/workspaces/ws-{i}/api/v1/remote_write"\n'
        f'region = "us-east-1"\nrole_arn = "{role_arn}"\nexternal_id = "bench"\n'
        f'session_name = "bench-team-{i}"\n\n' for i in range(n))


def bodies(names_series):
    """name -> body facts; 16KB/200KB/1MB are bench.py's bodies, `Ns` are N series x 10 labels."""
    out = {}
    for name in names_series:
        if name.endswith("s") and name[:-1].isdigit():
            series, labels = int(name[:-1]), 10
        else:
            _, series, labels = next(b for b in bench.BODIES if b[0] == name)
        raw = bench.write_request(series, labels, seed=series)
        body = bench.snappy(raw)
        path = OUT / f"body-{name}.bin"
        path.write_bytes(body)
        out[name] = {"name": name, "path": path, "bytes": len(body), "decoded_bytes": len(raw),
                     "series": series, "labels": labels, "samples": series}
    return out


# --------------------------------------------------------------------------------------------

def run(args):
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="amp-bench-tls-")
    b = Bench(args, tmp)
    only = set(args.only.split(","))
    dur = args.duration
    try:
        b.certs = make_certs(tmp)
        moto = b.start("moto-tls", [args.python, str(ROOT / "tests/peers/moto_sts.py"), "--external-id", "bench"])
        b.moto = bench.read_announcement(OUT / "moto-tls.log")
        moto_url = b.moto["url"]
        h1_port, h2_port = bench.free_port(), bench.free_port()
        sink_h1 = b.nginx("nginx-tls-sink-h1", 1, tls_sink_block(h1_port, b.certs, False), f"https://127.0.0.1:{h1_port}/")
        b.nginx("nginx-tls-sink-h2", 1, tls_sink_block(h2_port, b.certs, True), f"https://127.0.0.1:{h2_port}/")
        sinks = {"h1": h1_port, "h2": h2_port}
        default_proto = args.default_upstream

        tls_bodies = bodies(["16KB", "200KB", "1MB"])
        sha = bench.sha256_costs(tls_bodies, args.sha256_bench)
        for name, v in sha.items():
            tls_bodies[name]["sha256_s"] = v
        for name, v in bench.probe_costs(tls_bodies, args.aes_gcm_bench).items():
            tls_bodies[name]["aes_gcm_s"] = v

        if "tls" in only:
            for name, body in tls_bodies.items():
                b.measure("tls", sink_h1, f"https://127.0.0.1:{h1_port}/api/v1/write", body, 16, dur,
                          target="direct (TLS sink)", threads=1)
            port = bench.free_port()
            ngx = b.nginx("nginx-tls-proxy", 1, tls_proxy_block(port, h1_port, b.certs), f"http://127.0.0.1:{port}/")
            # nginx, h1 and h2 alternate per body, ROUNDS times, and the cheapest round of each is
            # kept: load drifts on the shared machine hit all three alike, and a burst of someone
            # else's compile inflates one round, not the figure.
            proxies = {proto: b.proxy(f"amp-rw-proxy-tls-{proto}", sinks[proto], threads=1,
                                      h2=proto == "h2") for proto in ("h1", "h2")}
            for body in tls_bodies.values():
                for _ in range(ROUNDS):
                    b.measure("tls", ngx, f"http://127.0.0.1:{port}/api/v1/write", body, 16, dur,
                              target="nginx (TLS upstream)", threads=1)
                    for proto in ("h1", "h2"):
                        p = proxies[proto]
                        b.measure("tls", p, f"http://127.0.0.1:{p.port}/api/v1/write", body, 16, dur,
                                  target=f"amp-rw-proxy (TLS, {proto} upstream)", threads=1, proto=proto)
            b.stop(ngx)
            for p in proxies.values():
                b.stop(p)
            b.rows["tls"] = cheapest(b.rows["tls"], ("target", "body"))

        if "senders" in only:
            body = tls_bodies["16KB"]
            # Both upstream protocols (h1: one upstream connection per request in flight; h2: all
            # requests multiplexed on one), the default one first, then its half-saturation run.
            for proto in [default_proto] + [x for x in ("h1", "h2") if x != default_proto]:
                def gateway(name, proto=proto):
                    """The proxy as a gateway (one thread per core) to this protocol's sink."""
                    return b.proxy(f"amp-rw-proxy-{name}-{proto}", sinks[proto],
                                   extra=["--max-in-flight-requests", "2048"], h2=proto == "h2")
                p = gateway("senders")
                idle = p.status_kib("VmRSS") / 1024
                for c in SENDERS:
                    row = b.measure("senders", p, f"http://127.0.0.1:{p.port}/api/v1/write", body, c, dur,
                                    target="amp-rw-proxy", threads=os.cpu_count(), proto=proto)
                    row["rss_idle_mib"] = idle
                if c == SENDERS[-1]:  # after the 1,000-connection run, for both protocols (targets: --default-upstream)
                    # 1,000 senders at half of the 1,000-connection saturation rate: errors, RSS
                    # held while they stay connected, and the p99 added over a plain `return 204`
                    # sink hit directly at the same rate and concurrency (the TLS hop counts as added).
                    # A fresh proxy: the saturated runs leave up to 1,000 pooled upstream
                    # connections (h1), which a fleet at this rate never opens.
                    b.stop(p)
                    p = gateway("paced")
                    paced_idle = p.status_kib("VmRSS") / 1024
                    sat = next(r["rps"] for r in b.rows["senders"] if r["proto"] == default_proto and r["connections"] == SENDERS[-1])
                    rate, c, hdur = sat / 2, SENDERS[-1], max(dur, 5)
                    plain_port = bench.free_port()
                    plain = b.nginx("nginx-plain-sink", 1, f"server {{ listen 127.0.0.1:{plain_port}; location / {{ return 204; }} }}",
                                    f"http://127.0.0.1:{plain_port}/")
                    direct = paced(f"http://127.0.0.1:{plain_port}/api/v1/write", body["path"], rate, hdur, c)
                    b.stop(plain)
                    if proto == default_proto:
                        # nginx doing the same job (TLS reverse proxy, one worker per core, as
                        # the proxy's threads) under the same senders: what any TLS hop on these
                        # shared cores adds, the p99 baseline of a proxy.
                        nport = bench.free_port()
                        ngx = b.nginx("nginx-tls-proxy-paced", os.cpu_count(), tls_proxy_block(nport, sinks["h1"], b.certs),
                                      f"http://127.0.0.1:{nport}/")
                        b.paced_nginx = warmed_paced_sampled(ngx, f"http://127.0.0.1:{nport}/api/v1/write", body["path"],
                                                             rate, hdur, c)
                        b.stop(ngx)
                    # The warm-up of warmed_paced_sampled(), with the histograms read in between.
                    url = f"http://127.0.0.1:{p.port}/api/v1/write"
                    paced(url, body["path"], rate, 5, c)
                    before = duration_buckets(p.port)
                    through = paced_sampled(p, url, body["path"], rate, hdur, c)
                    through["over_2ms"] = share_over(before, duration_buckets(p.port), "0.002")
                    lat = {"rate": rate, "connections": c, "proto": proto, "direct": direct, "proxy": through,
                           "rss_idle_mib": paced_idle,
                           "load1": load1(), "added_p99_ms": through["p99_ms"] - direct["p99_ms"]}
                    print(json.dumps(lat), flush=True)
                    b.paced = getattr(b, "paced", []) + [lat]
                    if proto == default_proto:
                        b.latency = lat
                        # The same fleet sending full 2,000-sample batches (200 KB), one per
                        # sender per second: the memory a gateway needs for busy Prometheus
                        # servers (every connection's read buffer fills to its cap).
                        big = tls_bodies["200KB"]
                        b.stop(p)
                        p = gateway("paced-200KB")
                        big_idle = p.status_kib("VmRSS") / 1024
                        b.paced_big = {"rate": PACED_BIG_RATE, "connections": c, "proto": proto, "body": big["name"],
                                       "rss_idle_mib": big_idle,
                                       "proxy": warmed_paced_sampled(p, f"http://127.0.0.1:{p.port}/api/v1/write",
                                                                     big["path"], PACED_BIG_RATE, hdur, c)}
                        print(json.dumps(b.paced_big), flush=True)
                b.stop(p)

        if "bodies" in only:
            series_bodies = bodies([f"{n}s" for n in BODY_SERIES])
            for name, v in bench.sha256_costs(series_bodies, args.sha256_bench).items():
                series_bodies[name]["sha256_s"] = v
            port = bench.free_port()
            ngx = b.nginx("nginx-tls-proxy-bodies", 1, tls_proxy_block(port, h1_port, b.certs), f"http://127.0.0.1:{port}/")
            # 16 x 5 MB bodies in flight exceed the default --max-in-flight-bytes (64 MiB).
            p = b.proxy("amp-rw-proxy-bodies", sinks[default_proto], threads=1, extra=["--max-in-flight-bytes", "256MiB"],
                        h2=default_proto == "h2")
            for body in series_bodies.values():
                b.measure("bodies", ngx, f"http://127.0.0.1:{port}/api/v1/write", body, 16, dur,
                          target="nginx (TLS upstream)", threads=1, sha256_us=body["sha256_s"] * 1e6)
                b.measure("bodies", p, f"http://127.0.0.1:{p.port}/api/v1/write", body, 16, dur,
                          target="amp-rw-proxy", threads=1, proto=default_proto, sha256_us=body["sha256_s"] * 1e6)
            b.stop(ngx)
            b.stop(p)

        if "routes" in only:
            body = tls_bodies["16KB"]
            started = {}
            for n in ROUTES:
                cfg = Path(tmp) / f"routes-{n}.toml"
                cfg.write_text(routes_file(n, f"https://127.0.0.1:{sinks[default_proto]}", b.moto["role_arn"]))
                before = bench.assumed_roles(moto_url)
                p = b.proxy(f"amp-rw-proxy-routes-{n}", None, threads=1, config=cfg, h2=default_proto == "h2")
                started[n] = (p, before, p.status_kib("VmRSS") / 1024, bench.assumed_roles(moto_url) - before)
            # The route counts alternate, ROUTE_ROUNDS times; the cheapest round of each is kept. Any
            # AssumeRole made during the runs (none expected: 1 h credentials) is counted against
            # every route count, as moto cannot say which proxy made it.
            after_startups = bench.assumed_roles(moto_url)
            for rnd in range(ROUTE_ROUNDS):
                # The order turns every round: the first proxy measured in a round cost 10-15 %
                # more, whichever route count it had (the previous proxy's upstream connections
                # still open at the sink), so each count goes first once.
                for n in ROUTES[rnd % len(ROUTES):] + ROUTES[:rnd % len(ROUTES)]:
                    p, before, rss_ready, sts_startup = started[n]
                    row = b.measure("routes", p, f"http://127.0.0.1:{p.port}/team-{n - 1}/api/v1/write", body, 16, dur,
                                    target="amp-rw-proxy", threads=1, proto=default_proto, routes=n)
                    row.update(startup_s=p.startup_s, rss_ready_mib=rss_ready, sts_calls_startup=sts_startup,
                               sts_calls=sts_startup + bench.assumed_roles(moto_url) - after_startups)
            for p, *_ in started.values():
                b.stop(p)
            b.rows["routes"] = cheapest(b.rows["routes"], ("routes",))
            # CPU time per request moves by 10 % between rounds here, twice the 5 % target, so
            # the verdict comes from user-space instructions per request under callgrind
            # (benches/profile.py; repeatable to ~0.3 %), for the fewest and the most routes.
            if shutil.which("valgrind"):
                b.route_instructions = {n: route_instructions(args, n, default_proto) for n in (ROUTES[0], ROUTES[-1])}
    finally:
        for p in reversed(b.procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(b, tls_bodies, args)


# --------------------------------------------------------------------------------------------

def fmt(v, d):
    return "" if v is None else f"{v:.{d}f}"


def verdict(ok):
    return "INCONCLUSIVE" if ok is None else "PASS" if ok else "MISS"


def report(b, tls_bodies, args):
    rows = b.rows
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores, "
             f"{bench.platform_line()}; uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}; "
             f"{args.duration} s per wrk run, loopback, TLS sink = nginx 1 worker, RSA-2048, TLS 1.3.", ""]
    targets = []

    def find(series, **kw):
        return next((r for r in rows[series] if all(r.get(k) == v for k, v in kw.items())), None)

    if rows["tls"]:
        lines += ["### TLS upstream (wrk -c16 -t2, one worker / thread each)", "",
                  "| body | bytes | target | req/s | p50 ms | p99 ms | CPU µs/req | of it kernel µs | rounds | floor µs (nginx + SHA-256) | / floor | RSS under load MiB | peak RSS MiB | errors | load1 |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows["tls"]:
            ngx = find("tls", target="nginx (TLS upstream)", body=r["body"])
            floor = ngx["cpu_ms_per_req"] * 1000 + tls_bodies[r["body"]]["sha256_s"] * 1e6 if ngx else None
            r["floor_us"] = floor
            ratio = r["cpu_ms_per_req"] * 1000 / floor if floor and r["target"].startswith("amp") else None
            r["floor_ratio"] = ratio
            lines.append(f"| {r['body']} | {r['bytes']} | {r['target']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['cpu_ms_per_req'] * 1000:.1f} | {fmt(r.get('kernel_ms_per_req', 0) * 1000, 1)} | "
                         f"{' / '.join(map(str, r.get('cpu_us_rounds', [])))} | "
                         f"{fmt(floor, 1)} | {fmt(ratio, 2)} | {r['rss_load_mib']:.1f} | "
                         f"{r['peak_rss_mib']:.1f} | {r['errors']} | {r['load1']:.2f} |")
        lines.append("")
        for body, limit in TARGET_FLOOR.items():
            for proto in ("h1", "h2"):
                r = find("tls", proto=proto, body=body)
                if r and r.get("floor_ratio"):
                    # Errors mean the CPU figure is not that of forwarding.
                    targets.append((f"TLS CPU per request, {body}, {proto} upstream: {r['cpu_ms_per_req'] * 1000:.1f} µs = "
                                    f"{r['floor_ratio']:.2f}x of the floor {r['floor_us']:.1f} µs (floor/ours "
                                    f"{1 / r['floor_ratio']:.2f}; target <= {limit}x)"
                                    + (f"; {r['errors']} errors, not a forwarding figure" if r["errors"] else ""),
                                    None if r["errors"] else r["floor_ratio"] <= limit))
        for body, limit in TARGET_FLOOR.items():
            r = find("tls", proto="h1", body=body)
            if r and r.get("floor_us") and "kernel_ms_per_req" in r:
                # What the proxy would cost with no code of its own at all: the kernel's share it
                # was measured with, the SHA-256 SigV4 needs (the floor's own figure) and the
                # AES-GCM every byte to the workspace needs (benches/tools/aes_gcm_cost.rs).
                sha_us, aes_us = tls_bodies[body]["sha256_s"] * 1e6, tls_bodies[body]["aes_gcm_s"] * 1e6
                bound = (r["kernel_ms_per_req"] * 1000 + sha_us + aes_us) / r["floor_us"]
                b.bounds = getattr(b, "bounds", {}) | {body: bound}
                lines.append(f"- {body}: the kernel ({r['kernel_ms_per_req'] * 1000:.1f} µs), SHA-256 ({sha_us:.1f} µs) "
                             f"and AES-256-GCM of the body ({aes_us:.1f} µs) alone are {bound:.2f}x of the floor, "
                             f"against the target {limit}x: the rest of the proxy's work (hyper, rustls's framing "
                             f"and copies, the signer, tokio) is {r['floor_ratio'] - bound:.2f}x"
                             + ("; the target is below what the kernel, the hash and the encryption take by "
                                "themselves" if bound >= limit else
                                f", and the target leaves {limit - bound:.2f}x ({(limit - bound) * r['floor_us']:.1f} µs) for it"))
        for body in tls_bodies:
            h1, h2 = find("tls", proto="h1", body=body), find("tls", proto="h2", body=body)
            if h1 and h2:
                lines.append(f"- {body}: h2 upstream costs {h2['cpu_ms_per_req'] / h1['cpu_ms_per_req'] * 100 - 100:+.0f} % CPU "
                             f"per request against h1 ({h2['cpu_ms_per_req'] * 1000:.1f} vs {h1['cpu_ms_per_req'] * 1000:.1f} µs)")
        lines.append("")

    if rows["senders"]:
        lines += ["### Senders (16 KB bodies, wrk saturating, TLS upstream, proxy with one thread per core, --max-in-flight-requests 2048)", "",
                  "| upstream | connections | req/s | samples/s | p50 ms | p99 ms | CPU µs/req | RSS idle MiB | RSS under load MiB | RSS after MiB | peak RSS MiB | errors | load1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows["senders"]:
            lines.append(f"| {r['proto']} | {r['connections']} | {r['rps']:.0f} | {r['samples_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['cpu_ms_per_req'] * 1000:.1f} | {r['rss_idle_mib']:.1f} | {r['rss_load_mib']:.1f} | {r['rss_after_mib']:.1f} | "
                         f"{r['peak_rss_mib']:.1f} | {r['errors']} | {r['load1']:.2f} |")
        dflt = [r for r in rows["senders"] if r["proto"] == rows["senders"][0]["proto"]]
        r16, r1000 = dflt[0], dflt[-1]
        per1000 = (r1000["rss_load_mib"] - r16["rss_load_mib"]) / (r1000["connections"] - r16["connections"]) * 1000
        b.memory_per_1000 = per1000
        lines += ["", f"- memory per 1,000 senders, saturated (RSS under load, 1,000 vs 16 connections): {per1000:.1f} MiB"]
        lat = getattr(b, "latency", None)
        if lat:
            pr = lat["proxy"]
            lines.append(f"- {lat['connections']} senders at half of that saturation ({lat['rate']:.0f} req/s in all, "
                         f"benches/tools/paced.rs, {lat['proto']} upstream): "
                         f"{pr['requests']} requests, {pr['errors']} errors, RSS {pr['rss_load_mib']:.1f} MiB (median over "
                         f"the second half), CPU {pr['cpu_ms_per_req'] * 1000:.1f} µs/request; p99 direct to a plain sink "
                         f"{lat['direct']['p99_ms']:.2f} ms, through the proxy (TLS upstream) {pr['p99_ms']:.2f} ms "
                         f"(load1 {lat['load1']:.2f}; the machine's 2 cores {pr.get('machine_busy', 0) * 100:.0f} % busy)")
            ngx = getattr(b, "paced_nginx", None)
            if ngx:
                lines.append(f"- nginx doing the same job (TLS reverse proxy to the same sink, {os.cpu_count()} workers) under the "
                             f"same senders: p50 {ngx['p50_ms']:.2f} ms, p99 {ngx['p99_ms']:.2f} ms, {ngx['errors']} errors, "
                             f"CPU {ngx['cpu_ms_per_req'] * 1000:.1f} µs/request (machine {ngx.get('machine_busy', 0) * 100:.0f} % busy); "
                             f"the proxy: p50 {pr['p50_ms']:.2f} ms, p99 {pr['p99_ms']:.2f} ms")
            over = pr.get("over_2ms")
            if over and over["request"] is not None:
                lines.append(f"- the proxy's own histograms over that run: {over['request'] * 100:.2f} % of requests took over 2 ms "
                             f"from head received to answer sent, {over['upstream'] * 100:.2f} % in the call to the upstream "
                             f"alone (amp_rw_proxy_request_duration_seconds, amp_rw_proxy_upstream_request_duration_seconds)")
            for o in getattr(b, "paced", []):
                if o is not lat:
                    lines.append(f"- the same with {o['proto']} upstream: {o['proxy']['errors']} errors, RSS "
                                 f"{o['proxy']['rss_load_mib']:.1f} MiB (idle {o['rss_idle_mib']:.1f}), CPU "
                                 f"{o['proxy']['cpu_ms_per_req'] * 1000:.1f} µs/request, p99 {o['proxy']['p99_ms']:.2f} ms "
                                 f"(direct {o['direct']['p99_ms']:.2f} ms; machine {o['proxy'].get('machine_busy', 0) * 100:.0f} % busy)")
            b.memory_per_1000_half = (pr["rss_load_mib"] - lat["rss_idle_mib"]) * 1000 / lat["connections"]
            lines.append(f"- memory per 1,000 senders at half saturation (RSS under load minus idle RSS): "
                         f"{b.memory_per_1000_half:.1f} MiB")
            big = getattr(b, "paced_big", None)
            if big:
                bp = big["proxy"]
                b.memory_per_1000_big = (bp["rss_load_mib"] - big["rss_idle_mib"]) * 1000 / big["connections"]
                lines.append(f"- {big['connections']} senders of {big['body']} bodies (2,000 samples) at {big['rate']} req/s in all "
                             f"({big['proto']} upstream, a fresh proxy): {bp['requests']} requests, {bp['errors']} errors, RSS "
                             f"{bp['rss_load_mib']:.1f} MiB (idle {big['rss_idle_mib']:.1f}; {b.memory_per_1000_big:.1f} MiB per "
                             f"1,000 such senders), CPU {bp['cpu_ms_per_req'] * 1000:.1f} µs/request, p99 {bp['p99_ms']:.2f} ms "
                             f"(machine {bp.get('machine_busy', 0) * 100:.0f} % busy)")
            targets.append((f"1,000 senders at half saturation: {pr['errors']} errors (target 0)", pr["errors"] == 0))
            targets.append((f"1,000 senders at half saturation: steady RSS {pr['rss_load_mib']:.1f} MiB "
                            f"(target <= {TARGET_RSS_1000_MIB} MiB)", pr["rss_load_mib"] <= TARGET_RSS_1000_MIB))
            # A baseline slower than the proxy means the machine's load, not the proxy, set both p99s.
            busy = pr.get("machine_busy", 0)
            saturated = busy > MACHINE_BUSY_LIMIT
            ngx_added = f"; nginx doing the same job adds {ngx['p99_ms'] - lat['direct']['p99_ms']:.2f} ms" if ngx else ""
            targets.append((f"added p99 at half saturation, {lat['connections']} connections: {lat['added_p99_ms']:.2f} ms "
                            f"over a plain sink hit directly (target <= {TARGET_ADDED_P99_MS} ms{ngx_added}; machine {busy * 100:.0f} % busy during the run"
                            + (", so the load generator, nginx and the proxy queued behind each other: not a proxy "
                               "figure" if saturated else "") + ")",
                            None if lat["added_p99_ms"] < 0 or saturated else lat["added_p99_ms"] <= TARGET_ADDED_P99_MS))
        else:
            targets.append((f"1,000 connections saturated: {r1000['errors']} errors (target 0)", r1000["errors"] == 0))
        lines.append("")

    if rows["bodies"]:
        lines += ["### Body size (N series x 10 labels, 1 sample each; wrk -c16, 1 worker / thread, TLS upstream)", "",
                  "| series | bytes | target | req/s | samples/s | p99 ms | CPU µs/req | CPU ns/sample | / floor | peak RSS MiB | errors | load1 |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows["bodies"]:
            ngx = find("bodies", target="nginx (TLS upstream)", body=r["body"])
            floor = ngx["cpu_ms_per_req"] * 1000 + r["sha256_us"]
            r["floor_us"] = floor
            ratio = r["cpu_ms_per_req"] * 1000 / floor if r["target"] == "amp-rw-proxy" else None
            r["floor_ratio"] = ratio
            lines.append(f"| {r['samples']} | {r['bytes']} | {r['target']} | {r['rps']:.0f} | {r['samples_per_s']:.0f} | {r['p99_ms']:.2f} | "
                         f"{r['cpu_ms_per_req'] * 1000:.1f} | {r['cpu_us_per_sample'] * 1000:.0f} | {fmt(ratio, 2)} | "
                         f"{r['peak_rss_mib']:.1f} | {r['errors']} | {r['load1']:.2f} |")
        lines.append("")

    if rows["routes"]:
        lines += ["### Routes (routes file, one role each; 16 KB bodies on the last route, wrk -c16, 1 thread)", "",
                  "| routes | startup s | RSS ready MiB | RSS under load MiB | AssumeRole calls at startup | after the runs | CPU µs/req | rounds | req/s | errors | load1 |",
                  "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        for r in rows["routes"]:
            lines.append(f"| {r['routes']} | {r['startup_s']:.2f} | {r['rss_ready_mib']:.1f} | {r['rss_load_mib']:.1f} | "
                         f"{r['sts_calls_startup']} | {r['sts_calls']} | {r['cpu_ms_per_req'] * 1000:.1f} | "
                         f"{' / '.join(map(str, r.get('cpu_us_rounds', [])))} | {r['rps']:.0f} | "
                         f"{r['errors']} | {r['load1']:.2f} |")
        r1, rn = rows["routes"][0], rows["routes"][-1]
        d = rn["cpu_ms_per_req"] / r1["cpu_ms_per_req"] - 1
        ins = getattr(b, "route_instructions", {})
        i1, i_n = ins.get(r1["routes"]), ins.get(rn["routes"])
        if i1 and i_n:
            di = i_n / i1 - 1
            lines.append(f"- instructions per 16 KB request (callgrind, benches/profile.py --routes): {r1['routes']} route "
                         f"{i1:,}, {rn['routes']} routes {i_n:,}")
            targets.append((f"CPU per request with {rn['routes']} routes vs 1: {di * 100:+.2f} % in instructions per request "
                            f"(callgrind; CPU time {d * 100:+.1f} %, which moves by 10 % between rounds here; target "
                            f"within {TARGET_ROUTES_CPU * 100:.0f} %)", abs(di) <= TARGET_ROUTES_CPU))
        else:
            targets.append((f"CPU per request with {rn['routes']} routes vs 1: {d * 100:+.1f} % (target within "
                            f"{TARGET_ROUTES_CPU * 100:.0f} %; no callgrind figure)", abs(d) <= TARGET_ROUTES_CPU))
        ok = all(r["sts_calls"] == r["routes"] for r in rows["routes"])
        targets.append(("AssumeRole calls = routes (1 h credentials, one lifetime): "
                        + ", ".join(f"{r['routes']} routes -> {r['sts_calls']}" for r in rows["routes"]), ok))
        lines.append("")

    lines += ["### Targets (issue 17)", ""] + [f"- {t}: {verdict(ok)}" for t, ok in targets]
    text = "\n".join(lines) + "\n"
    (OUT / "tls.md").write_text(text)
    (OUT / "tls.json").write_text(json.dumps({"rows": rows, "latency": getattr(b, "latency", None),
                                              "paced": getattr(b, "paced", None),
                                              "paced_nginx": getattr(b, "paced_nginx", None),
                                              "route_instructions_per_request": getattr(b, "route_instructions", None),
                                              "bounds_kernel_sha256_aes_gcm": getattr(b, "bounds", None),
                                              "paced_200KB": getattr(b, "paced_big", None),
                                              "memory_per_1000_200KB_mib": getattr(b, "memory_per_1000_big", None),
                                              "memory_per_1000_mib": getattr(b, "memory_per_1000", None),
                                              "memory_per_1000_half_saturation_mib": getattr(b, "memory_per_1000_half", None),
                                              "targets": [{"target": t, "pass": ok} for t, ok in targets]},
                                             indent=1, default=str))
    print(text)
    plots(rows)
    return targets


def plots(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if rows["tls"]:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        names = list(dict.fromkeys(r["body"] for r in rows["tls"]))
        targets = list(dict.fromkeys(r["target"] for r in rows["tls"]))
        w = 0.8 / len(targets)
        for i, t in enumerate(targets):
            rs = [next((r for r in rows["tls"] if r["target"] == t and r["body"] == n), None) for n in names]
            xs = [j + (i - len(targets) / 2 + 0.5) * w for j in range(len(names))]
            axes[0].bar(xs, [r["rps"] if r else 0 for r in rs], w, label=t)
            axes[1].bar(xs, [r["cpu_ms_per_req"] * 1000 if r else 0 for r in rs], w, label=t)
        floors = [next((r["floor_us"] for r in rows["tls"] if r["body"] == n and r.get("floor_us")), None) for n in names]
        axes[1].scatter(range(len(names)), floors, marker="_", s=900, color="black", label="floor (nginx + SHA-256)", zorder=3)
        for ax, title in [(axes[0], "requests/s"), (axes[1], "CPU µs per request (lower is better)")]:
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names)
            ax.set_title(title)
            ax.set_yscale("log")
        axes[1].legend(fontsize=8)
        fig.suptitle("TLS upstream, 16 connections, 1 worker / thread")
        fig.tight_layout()
        fig.savefig(OUT / "tls.png", dpi=100)
        plt.close(fig)

    if rows["senders"]:
        fig, axes = plt.subplots(1, 4, figsize=(16, 4))
        for proto in dict.fromkeys(r["proto"] for r in rows["senders"]):
            rs = [r for r in rows["senders"] if r["proto"] == proto]
            xs = [r["connections"] for r in rs]
            axes[0].plot(xs, [r["rps"] for r in rs], "o-", label=f"{proto} upstream")
            axes[1].plot(xs, [r["p99_ms"] for r in rs], "o-", label=f"{proto} p99")
            axes[1].plot(xs, [r["p50_ms"] for r in rs], "o--", label=f"{proto} p50")
            axes[2].plot(xs, [r["cpu_ms_per_req"] * 1000 for r in rs], "o-", label=f"{proto} upstream")
            axes[3].plot(xs, [r["rss_load_mib"] for r in rs], "o-", label=f"{proto} under load")
        axes[3].axhline(TARGET_RSS_1000_MIB, color="red", lw=0.8, label="64 MiB")
        for ax, title in zip(axes, ["requests/s", "latency ms (saturated)", "CPU µs per request", "RSS MiB"]):
            ax.set_title(title)
            ax.legend(fontsize=7)
        xs = SENDERS
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("concurrent connections")
            ax.set_xticks(xs)
            ax.set_xticklabels([str(x) for x in xs])
        fig.suptitle("Senders: 16 KB bodies, TLS upstream")
        fig.tight_layout()
        fig.savefig(OUT / "senders.png", dpi=100)
        plt.close(fig)

    if rows["bodies"]:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for t in dict.fromkeys(r["target"] for r in rows["bodies"]):
            rs = [r for r in rows["bodies"] if r["target"] == t]
            xs = [r["samples"] for r in rs]
            axes[0].plot(xs, [r["cpu_ms_per_req"] * 1000 for r in rs], "o-", label=t)
            axes[1].plot(xs, [r["cpu_us_per_sample"] * 1000 for r in rs], "o-", label=t)
        rs = [r for r in rows["bodies"] if r["target"] == "amp-rw-proxy"]
        axes[0].plot([r["samples"] for r in rs], [r["floor_us"] for r in rs], "k--", label="floor (nginx + SHA-256)")
        axes[0].set_title("CPU µs per request")
        axes[1].set_title("CPU ns per sample")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("series per request (1 sample each)")
            ax.legend(fontsize=8)
        fig.suptitle("Body size, TLS upstream, 16 connections, 1 worker / thread")
        fig.tight_layout()
        fig.savefig(OUT / "bodies.png", dpi=100)
        plt.close(fig)

    if rows["routes"]:
        rs = rows["routes"]
        xs = [r["routes"] for r in rs]
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
        axes[0].plot(xs, [r["startup_s"] for r in rs], "o-")
        axes[0].set_title("startup to ready, s")
        axes[1].plot(xs, [r["rss_ready_mib"] for r in rs], "o-", label="ready")
        axes[1].plot(xs, [r["rss_load_mib"] for r in rs], "o--", label="under load")
        axes[1].set_title("RSS MiB")
        axes[1].legend()
        axes[2].plot(xs, [r["sts_calls"] for r in rs], "o-")
        axes[2].set_title("AssumeRole calls")
        axes[3].plot(xs, [r["cpu_ms_per_req"] * 1000 for r in rs], "o-")
        axes[3].set_ylim(bottom=0)
        axes[3].set_title("CPU µs per 16 KB request")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("routes")
            ax.set_xticks(xs)
            ax.set_xticklabels([str(x) for x in xs])
        fig.tight_layout()
        fig.savefig(OUT / "routes.png", dpi=100)
        plt.close(fig)


def add_args(ap):
    ap.add_argument("--aes-gcm-bench", default=str(ROOT / "target/release/examples/aes_gcm_cost"),
                    help="the AES-256-GCM cost probe (benches/tools/aes_gcm_cost.rs)")
    ap.add_argument("--default-upstream", choices=["h1", "h2"], default="h1",
                    help="the upstream protocol of the senders, bodies and routes series (h1: the proxy's "
                         "default, the cheaper one, see the tls table; h2: --upstream-http2)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="3 s runs")
    ap.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    ap.add_argument("--proxy", default=str(ROOT / "target/release/amp-rw-proxy"))
    ap.add_argument("--sha256-bench", default=str(ROOT / "target/release/examples/sha256_cost"))
    ap.add_argument("--only", default="tls,senders,bodies,routes", help="sections to run")
    add_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.duration = 3
    run(args)


if __name__ == "__main__":
    sys.exit(main())
