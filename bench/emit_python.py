#!/usr/bin/env python3
"""emit_python.py - events/s of the Python emitter (clients/python, wsgw).

    bench/emit_python.py AMQP_URL [--count N] [--size BYTES] [--group G]
                         [--threads T] [--runs R] [--modes one,batch100,threads]

Rows (each the median of R runs, 3 by default):
  one         Emitter.emit one by one: publish, wait for the confirm, next
  batch100    Emitter.emit_many in batches of 100 (publish 100, wait for all)
  threads     T threads (8) each emitting N/T one by one, twice: one
              connection per thread (per_thread=True, the default) and one
              shared connection under a lock (per_thread=False)

Each event is {"seq":K,"t":NS,"pad":"x..."} padded to --size bytes (200), to
group --group (bench-py, which nobody subscribes: the broker's routing and
confirm are measured, not the gateways). Prints one line per row:
  PY_EMIT mode=one count=N seconds=S rate=R
and a Markdown table at the end for docs/BENCHMARKS.md.

Owns: nothing but its own Emitters (closed at the end). Must not: declare or
delete anything on the broker (the groups exchange must exist: any gateway
or worker that ran on the vhost declared it, or deploy/rabbitmq/setup.sh).
"""

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python"))
from wsgw import Emitter  # noqa: E402


def body(seq, size):
    head = f'{{"seq":{seq},"t":{time.time_ns()},"pad":"'
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def run_one(url, group, count, size):
    with Emitter(url) as e:
        e.emit(group, body(0, size))  # connect outside the clock
        t0 = time.perf_counter()
        for k in range(1, count + 1):
            e.emit(group, body(k, size))
        return time.perf_counter() - t0


def run_batch(url, group, count, size, batch=100):
    with Emitter(url) as e:
        e.emit(group, body(0, size))
        t0 = time.perf_counter()
        for start in range(1, count + 1, batch):
            e.emit_many([(group, body(k, size))
                         for k in range(start, min(count + 1, start + batch))])
        return time.perf_counter() - t0


def run_threads(url, group, count, size, threads, per_thread):
    each = count // threads
    errors = []
    with Emitter(url, per_thread=per_thread) as e:
        ready = threading.Barrier(threads + 1)

        def worker():
            try:
                e.emit(group, body(0, size))  # connect before the clock
                ready.wait()
                for k in range(1, each + 1):
                    e.emit(group, body(k, size))
            except Exception as x:  # reported after the join
                errors.append(repr(x))
                ready.abort()
        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        ready.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"emit_python: a thread failed: {errors[0]}")
    return elapsed, each * threads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--group", default="bench-py")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="one,batch100,threads")
    a = ap.parse_args()
    if a.count < a.threads or a.count <= 0 or a.runs <= 0 or not 32 <= a.size <= 1 << 20:
        ap.error("need --count >= --threads > 0, --runs > 0, --size 32..1MiB")
    rows = []

    def row(name, fn):
        results = []
        for _ in range(a.runs):
            out = fn()
            seconds, n = out if isinstance(out, tuple) else (out, a.count)
            results.append((n / seconds, seconds, n))
        rate, seconds, n = sorted(results)[len(results) // 2]
        print(f"PY_EMIT mode={name} count={n} seconds={seconds:.3f} rate={rate:.0f}",
              flush=True)
        rows.append((name, n, rate, statistics.pstdev(r for r, _, _ in results)))

    modes = a.modes.split(",")
    if "one" in modes:
        row("one", lambda: run_one(a.url, a.group, a.count, a.size))
    if "batch100" in modes:
        row("batch100", lambda: run_batch(a.url, a.group, a.count, a.size))
    if "threads" in modes:
        for per_thread, label in ((True, "per_thread"), (False, "locked")):
            row(f"threads{a.threads}-{label}",
                lambda: run_threads(a.url, a.group, a.count, a.size, a.threads, per_thread))
    print(f"\n| Python emitter ({a.size}-byte events, median of {a.runs}) | events | events/s |")
    print("|---|---|---|")
    for name, n, rate, dev in rows:
        print(f"| {name} | {n} | {rate:,.0f} (sd {dev:,.0f}) |")


if __name__ == "__main__":
    main()
