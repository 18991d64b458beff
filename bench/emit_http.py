#!/usr/bin/python3
"""emit_http.py - events/s through emitd's HTTP API, against a running
stack (make run, or any emitd on a broker).

Owns: two measurements, each for --seconds over --connections keep-alive
connections (one thread each, Python's http.client):
  single  POST /emit?group=G, one event per request
  batch   POST /emit/batch, --batch events per request
and the printed figures: requests/s, events/s (confirmed by the broker,
from the answers' "emitted"), latency p50/p99 of a request. Any answer but
200 fails the run (exit 1): a figure counts only confirmed events.

  bench/emit_http.py [--url http://127.0.0.1:8052] [--key KEY | --key-file F]
                     [--group bench-emit] [--seconds 5] [--connections 1,8]
                     [--batch 100] [--json]

Defaults come from .run/env (make run writes EMIT_URL and EMIT_KEY there)
when present. The group needs no subscriber: the broker confirms an event
routed to no queue (or only to the history stream) as fast as any.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_env():
    env = {}
    path = ROOT / ".run" / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
    return env


def worker(url, key, path, body, deadline, out):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    lat, events, errors = [], 0, []
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        lat.append(time.perf_counter() - t0)
        if r.status != 200:
            errors.append((r.status, data[:200]))
            break
        events += json.loads(data)["emitted"]
    conn.close()
    out.append((lat, events, errors))


def measure(args, mode, connections):
    group = urllib.parse.quote(args.group)
    if mode == "single":
        path, body = f"/emit?group={group}", json.dumps({"bench": "x" * 64}).encode()
    else:
        evs = [{"group": args.group, "event": {"bench": i, "pad": "x" * 64}}
               for i in range(args.batch)]
        path, body = "/emit/batch", json.dumps({"events": evs}).encode()
    out = []
    deadline = time.monotonic() + args.seconds
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(args.url, args.key, path, body, deadline, out))
               for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = sorted(x for o in out for x in o[0])
    errors = [e for o in out for e in o[2]]
    if errors:
        sys.exit(f"emit_http: {mode} x{connections}: answer {errors[0]}")
    events = sum(o[1] for o in out)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else lat * 99
    return {"mode": mode, "connections": connections,
            "batch": 1 if mode == "single" else args.batch,
            "requests_per_s": round(len(lat) / elapsed), "events_per_s": round(events / elapsed),
            "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}


def main():
    env = run_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("EMIT_URL", env.get("EMIT_URL",
                                                                       "http://127.0.0.1:8052")))
    ap.add_argument("--key", default=os.environ.get("EMIT_KEY", env.get("EMIT_KEY")))
    ap.add_argument("--key-file", help="emitd's key file: its first key")
    ap.add_argument("--group", default="bench-emit")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", default="1,8")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args()
    if args.key_file:
        args.key = Path(args.key_file).read_text().split()[1]
    if not args.key:
        sys.exit("emit_http: no key (--key, --key-file, EMIT_KEY or .run/env)")
    rows = [measure(args, mode, int(n)) for mode in ("single", "batch")
            for n in args.connections.split(",")]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"{'mode':<7} {'conns':>5} {'batch':>5} {'req/s':>8} {'events/s':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    for r in rows:
        print(f"{r['mode']:<7} {r['connections']:>5} {r['batch']:>5} {r['requests_per_s']:>8} "
              f"{r['events_per_s']:>9} {r['p50_ms']:>7} {r['p99_ms']:>7}")


if __name__ == "__main__":
    main()
