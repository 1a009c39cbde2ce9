#!/usr/bin/env python3
"""Many senders at a steady total rate, like a fleet of Prometheus servers: --connections
keep-alive HTTP/1.1 connections, each POSTing the body every connections/rate seconds, their
phases spread evenly (hey's rate limit starts every worker on the same tick, so 1,000 workers
send in bursts of 1,000). Prints one JSON line: requests, status codes, errors, p50/p99 ms.

  paced.py URL BODY_FILE --connections 1000 --rate 500 --duration 10
"""

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def sender(i, args, head, body, t_start, t_count, t_end, lat, codes, errors, sent):
    interval = args.connections / args.rate
    u = urlsplit(args.url)
    # Connect with a spread too, so the connects do not all land at once.
    await asyncio.sleep(interval * i / args.connections)
    try:
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
    except OSError:
        errors.append("connect")
        return
    n = 0
    while True:
        due = t_start + interval * (i / args.connections + n)
        if due >= t_end:
            break
        n += 1
        sent[0] += 1
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        t0 = time.monotonic()
        try:
            writer.write(head + body)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if length:
                await reader.readexactly(length)
            code = status.split()[1].decode() if len(status.split()) > 1 else "none"
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors.append("io")
            break
        if t0 >= t_count:  # the first round (upstream connections opening) is not counted
            lat.append(time.monotonic() - t0)
            codes[code] = codes.get(code, 0) + 1
    writer.close()


async def main_async(args):
    body = open(args.body, "rb").read()
    u = urlsplit(args.url)
    head = (f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/x-protobuf\r\n"
            f"Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n"
            f"User-Agent: Prometheus/2.42.0\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    lat, codes, errors, sent = [], {}, [], [0]
    interval = args.connections / args.rate
    t_start = time.monotonic() + interval + 0.5  # every sender connected first
    t_count = t_start + interval
    t_end = t_count + args.duration
    await asyncio.gather(*(sender(i, args, head, body, t_start, t_count, t_end, lat, codes, errors, sent)
                           for i in range(args.connections)))
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else None)
    return {"requests": len(lat), "sent": sent[0], "codes": codes, "socket_errors": len(errors), "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "rate": args.rate, "connections": args.connections}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("body")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--rate", type=float, required=True, help="requests/s over all connections")
    ap.add_argument("--duration", type=float, default=10)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
