"""The whole benchmark, as `bash benches/run.sh` runs it: the plain-HTTP comparison
(benches/bench.py) and then the TLS upstream and growth series (benches/tls.py), chosen with
--sections. Both modules are libraries of this entry point, so neither imports the other's caller.
"""

import argparse
import sys

import bench
import tls

ROOT = bench.ROOT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--python", default=str(ROOT / ".venv/bin/python"), help="venv with moto (tests/peers)")
    ap.add_argument("--proxy", default=str(ROOT / "target/release/amp-rw-proxy"))
    ap.add_argument("--sha256-bench", default=str(ROOT / "target/release/examples/sha256_cost"))
    ap.add_argument("--payload-bench", default=str(ROOT / "target/release/examples/payload_cost"))
    ap.add_argument("--quick", action="store_true", help="3 s per run (for iterating; the figures are rougher)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target of benches/tls.py is missed")
    ap.add_argument("--sections", default="plain,tls,senders,bodies,routes",
                    help="plain: this file's comparison over http://; the rest: benches/tls.py")
    tls.add_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.duration = 3
    sections = args.sections.split(",")
    if "plain" in sections:
        bench.plain(args)
    args.only = ",".join(s for s in sections if s != "plain")
    if args.only:
        misses = [t for t, ok in tls.run(args) if ok is False]
        print(f"{len(misses)} target(s) missed" if misses else "all targets met", flush=True)
        if misses and args.strict:
            return 1


if __name__ == "__main__":
    sys.exit(main())
