#!/usr/bin/env python3
"""Per-request cost of the proxy for A/B comparisons on a busy machine (see benches/bench.py for
the full comparison). Starts the same peers as bench.py (moto's STS, an nginx `return 204`
sink) and the proxy with --worker-threads 1, then for each body:

  --mode callgrind (default): runs the proxy under valgrind's callgrind with instrumentation
      off, warms it up, switches instrumentation on for exactly --requests requests (hey -n) and
      reports user-space instructions per request (Ir / requests). Repeatable to ~0.1% whatever
      else the machine runs; kernel work (the two loopback hops) is not counted. Leaves the
      profile in target/bench/callgrind.<body>.out for callgrind_annotate.
  --mode strace: system calls per request (strace -c -f attached for --requests requests).
  --mode perf: perf record -e cpu-clock (a software clock: works without hardware counters)
      for --requests requests, kernel included; report in target/bench/perf.<body>.data.
  --mode rss: wrk with 16 connections for 3 s per body, then the proxy's RSS, again after
      --settle idle seconds, and peak RSS.
  --mode cpu: runs the release binary natively and reports CPU µs per request (utime+stime
      from /proc, kernel included) over --requests requests, best of --repeat; with --load wrk,
      over --duration seconds of bench.py's saturating load instead.

  target/bench-venv/bin/python benches/profile.py --bodies 16KB,200KB --requests 3000

--routes N runs the proxy with a routes file of N routes instead (requests to the last one): the
route lookup's cost in instructions, which wall-clock CPU figures cannot resolve to 5 %.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import tls  # noqa: E402

ROOT = bench.ROOT
OUT = bench.OUT


def hey_n(url, body_file, n, workers):
    r = subprocess.run(
        ["hey", "-n", str(n), "-c", str(workers), "-m", "POST", "-D", str(body_file),
         "-T", "application/x-protobuf", "-H", "Content-Encoding: snappy",
         "-H", "X-Prometheus-Remote-Write-Version: 0.1.0", "-H", "User-Agent: Prometheus/2.42.0", url],
        capture_output=True, text=True, check=True,
    )
    codes = dict((c, int(k)) for c, k in __import__("re").findall(r"\[(\d+)\]\s+(\d+) responses", r.stdout))
    if set(codes) != {"204"}:
        raise RuntimeError(f"unexpected answers: {codes}\n{r.stdout}")
    return codes["204"]


def control(pid, port, *command):
    """callgrind_control: valgrind only sees the command when the program runs, so the idle
    proxy is poked with health checks (a few hundred instructions each) until it has."""
    c = subprocess.Popen(["callgrind_control", *command, str(pid)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    while c.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=5).read()
        except OSError:
            pass
        time.sleep(0.05)
    if c.returncode != 0:
        raise RuntimeError(f"callgrind_control {command} failed")


def cpu(pid):
    """(user, system) CPU seconds of `pid`, and its minor page faults."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / bench.CLK_TCK, int(fields[12]) / bench.CLK_TCK, int(fields[7])


def load(args, url, body):
    """Sends the load and returns how many requests were answered (all 204, or it raises):
    hey -n --requests (unsaturated), or wrk for --duration seconds (bench.py's saturating
    load, so figures compare with its table)."""
    if args.load == "wrk":
        r = bench.wrk(url, body["path"], args.duration, 16, 2)
        if r["non2xx"] or r["socket_errors"]:
            raise RuntimeError(f"unexpected answers under wrk: {r}")
        return r["requests"]
    return hey_n(url, body["path"], args.requests, args.workers)


def report_cpu(args, name, body, url, proc, what, extra_us=0.0):
    best = None
    for _ in range(args.repeat):
        c0 = [cpu(pid) for pid in proc.pids()]
        n = load(args, url, body)
        c1 = [cpu(pid) for pid in proc.pids()]
        d = [sum(b[i] - a[i] for a, b in zip(c0, c1)) for i in range(3)]
        us = [d[0] / n * 1e6, d[1] / n * 1e6, d[2] / n]
        best = us if best is None or sum(us[:2]) < sum(best[:2]) else best
    floor = f"; + SHA-256 {extra_us:.1f} = floor {best[0] + best[1] + extra_us:.1f} µs" if extra_us else ""
    print(f"{args.label} {what} {name} ({body['bytes']} B): {best[0] + best[1]:.1f} CPU µs/request "
          f"(user {best[0]:.1f} + system {best[1]:.1f}; best of {args.repeat} x {n if args.load == 'wrk' else args.requests}); "
          f"{best[2]:.1f} page faults/request{floor}", flush=True)


def callgrind_total(path):
    totals = [int(line.split()[1]) for line in Path(path).read_text().splitlines()
              if line.startswith("totals:")]
    if not totals:
        raise RuntimeError(f"no totals in {path}")
    return totals[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["callgrind", "cpu", "strace", "perf", "rss"], default="callgrind")
    ap.add_argument("--worker-threads", default="1")
    ap.add_argument("--body-file", action="append", default=[], help="extra body files (name = file name)")
    ap.add_argument("--bodies", default="16KB,200KB")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=4, help="concurrent hey workers")
    ap.add_argument("--load", choices=["hey", "wrk"], default="hey",
                    help="cpu, perf and strace modes: hey -n --requests (unsaturated) or wrk for --duration "
                         "(saturating, as bench.py)")
    ap.add_argument("--duration", type=int, default=5, help="with --load wrk: seconds per run")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="rss mode: seconds idle before RSS is read again (allocators return memory late)")
    ap.add_argument("--repeat", type=int, default=3, help="cpu mode: runs per body (best is reported)")
    ap.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    ap.add_argument("--proxy", default=str(ROOT / "target/release/amp-rw-proxy"))
    ap.add_argument("--label", default="", help="printed with the results")
    ap.add_argument("--upstream", choices=["plain", "tls-h1", "tls-h2"], default="plain",
                    help="the sink: plain http://, or TLS (benches/tls.py's sink) offering http/1.1 or also h2; "
                         "cpu mode's nginx then proxies over TLS too")
    ap.add_argument("--sha256-bench", default=str(ROOT / "target/release/examples/sha256_cost"))
    ap.add_argument("--routes", type=int, default=0,
                    help="run the proxy with a routes file of this many routes (one role each, as benches/tls.py) "
                         "and send to the last one; 0: one workspace from the command line")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="amp-profile-")
    procs = []
    try:
        bodies = bench.make_bodies([b for b in args.bodies.split(",")])
        for f in args.body_file:
            bodies[Path(f).name] = {"path": Path(f), "bytes": Path(f).stat().st_size}
        moto = bench.Proc("moto", [args.python, str(ROOT / "tests/peers/moto_sts.py"), "--external-id", "bench"])
        procs.append(moto)
        info = bench.read_announcement(OUT / "moto.log")
        sink_port = bench.free_port()
        if args.upstream == "plain":
            sink = bench.Proc("nginx-sink", ["nginx", "-c", str(bench.nginx_conf(tmp, sink_port, 1))])
            procs.append(sink)
            bench.wait_http(f"http://127.0.0.1:{sink_port}/")
            scheme, ca = "http", []
        else:
            certs = tls.make_certs(tmp)
            block = tls.tls_sink_block(sink_port, certs, args.upstream == "tls-h2")
            sink = bench.Proc("nginx-tls-sink", ["nginx", "-c", str(tls.nginx_conf(tmp, 1, block))])
            procs.append(sink)
            tls.wait_https(f"https://127.0.0.1:{sink_port}/", certs["ca"])
            scheme, ca = "https", ["--upstream-ca-file", str(certs["ca"])]
            if args.upstream == "tls-h2":
                ca.append("--upstream-http2")
        port = bench.free_port()
        if args.routes:
            routes = Path(tmp) / "routes.toml"
            routes.write_text(tls.routes_file(args.routes, f"{scheme}://127.0.0.1:{sink_port}", info["role_arn"]))
            target = ["--config", str(routes)]
            path = f"/team-{args.routes - 1}/api/v1/write"
        else:
            target = ["--upstream-url", f"{scheme}://127.0.0.1:{sink_port}/workspaces/ws-bench/api/v1/remote_write",
                      "--region", "us-east-1", "--role-arn", info["role_arn"], "--external-id", "bench"]
            path = "/api/v1/write"
        cmd = [
            args.proxy, "--listen", f"127.0.0.1:{port}", *target,
            "--sts-endpoint", info["url"], "--worker-threads", args.worker_threads, "--drain-delay", "0s", *ca,
        ]
        if args.mode == "callgrind":
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={OUT}/callgrind.%p.out"] + cmd
        proxy = bench.Proc("profile-proxy", cmd, env=bench.proxy_env(info, tmp))
        procs.append(proxy)
        bench.wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=120)
        url = f"http://127.0.0.1:{port}{path}"
        for name, body in bodies.items():
            hey_n(url, body["path"], 200, args.workers)  # warm-up: connections, buffers
            if args.mode == "callgrind":
                pid = proxy.p.pid
                control(pid, port, "-z")
                control(pid, port, "-i", "on")
                n = hey_n(url, body["path"], args.requests, args.workers)
                control(pid, port, "-i", "off")
                control(pid, port, "-d")
                dumps = sorted(OUT.glob(f"callgrind.{pid}.out.*"), key=os.path.getmtime)
                dest = OUT / f"callgrind.{name}.out"
                shutil.move(dumps[-1], dest)
                ir = callgrind_total(dest)
                print(f"{args.label} {name} ({body['bytes']} B): {ir / n:,.0f} instructions/request "
                      f"(callgrind, {n} requests)", flush=True)
            elif args.mode == "perf":
                data = OUT / f"perf.{name}.data"
                pr = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "5000", "-g", "-o", str(data),
                                       "-p", str(proxy.p.pid)], stderr=subprocess.DEVNULL)
                time.sleep(1)
                load(args, url, body)
                pr.send_signal(2)
                pr.wait()
                print(f"{args.label} {name}: perf report --no-children -i {data}", flush=True)
            elif args.mode == "rss":
                r = bench.wrk(url, body["path"], 3, 16, 2)
                rss = proxy.status_kib('VmRSS') / 1024
                time.sleep(args.settle)
                print(f"{args.label} {name}: {r['requests']} requests, RSS {rss:.1f} MiB, "
                      f"{args.settle:g} s later {proxy.status_kib('VmRSS') / 1024:.1f} MiB, "
                      f"peak {proxy.status_kib('VmHWM') / 1024:.1f} MiB", flush=True)
            elif args.mode == "strace":
                out = OUT / f"strace.{name}.txt"
                st = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(proxy.p.pid)])
                time.sleep(1)
                n = load(args, url, body)
                st.terminate()
                st.wait()
                print(f"{args.label} {name}: system calls per request ({n} requests):")
                for line in out.read_text().splitlines()[2:]:
                    f = line.split()
                    if len(f) >= 5 and f[3].isdigit():
                        print(f"  {f[-1]:<16} {int(f[3]) / n:6.2f}  ({f[1]} s)")
            else:
                report_cpu(args, name, body, url, proxy, "amp-rw-proxy")
        if args.mode == "cpu":
            # The same load through nginx as a reverse proxy (1 worker), for the floor: the
            # issue's target is the proxy within 1.1x of nginx + SHA-256 of the body.
            ngx_port = bench.free_port()
            if args.upstream == "plain":
                conf = bench.nginx_conf(tmp, ngx_port, 1, f"127.0.0.1:{sink_port}")
            else:
                conf = tls.nginx_conf(tmp, 1, tls.tls_proxy_block(ngx_port, sink_port, certs))
            ngx = bench.Proc("profile-nginx", ["nginx", "-c", str(conf)])
            procs.append(ngx)
            bench.wait_http(f"http://127.0.0.1:{ngx_port}/")
            sha = bench.sha256_costs(bodies, args.sha256_bench)
            for name, body in bodies.items():
                hey_n(f"http://127.0.0.1:{ngx_port}/api/v1/write", body["path"], 200, args.workers)
                report_cpu(args, name, body, f"http://127.0.0.1:{ngx_port}/api/v1/write", ngx, "nginx",
                           extra_us=sha[name] * 1e6)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
