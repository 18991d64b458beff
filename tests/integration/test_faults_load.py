"""Load faults (issue 3, items 5 and 6): a flood to a group with one client
that never reads must not grow the gateway past max_send_queue per slow
client (that one is closed 1008, the fast one gets everything), and 100,000
numbered events reach 100 clients complete and in order.

The receiving clients here are raw sockets (faults.RawReader): Python
parsing ten million frames one by one would be the bottleneck, not the
gateway. They check the byte stream, which is exact: a server frame of a
text is 0x81, its length, the text.

Slow (a minute or two): run by `make test-faults`, on the normal build
(RSS under ASan measures the sanitizer).
"""

import asyncio
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import SAN_ENV, binary, open_client, recv_text, run, subscribe
from faults import (SANITIZED, SLOW, ParallelRead, RawReader, first_difference, proc_rss_kib,
                    records, text_frame)

pytestmark = [SLOW, pytest.mark.skipif(SANITIZED, reason="memory and speed figures "
                                       "need the normal build")]

GROUP = "jobs-status_changed"
MIB = 1024 * 1024


def test_100000_events_to_100_clients_complete_and_in_order(cluster):
    cluster.worker()
    gw = cluster.gateway("--gateway.ping_interval=10m", "--gateway.ping_timeout=20m")
    n_events, n_clients = 100_000, 100
    events = [f'{{"n":{i}}}' for i in range(n_events)]
    expected = b"".join(text_frame(e.encode()) for e in events)
    readers = [RawReader(gw.port, 100 + i) for i in range(n_clients)]
    deadline = time.monotonic() + 180
    reading = ParallelRead(readers, len(expected), deadline)
    t0 = time.monotonic()
    cluster.emit_stdin(GROUP, events)
    emitted = time.monotonic() - t0
    results = reading.join(deadline)
    took = time.monotonic() - t0
    for r in readers:
        r.close()
    bad = [i for i, r in enumerate(results) if r != expected]
    for i in bad[:3]:
        r = results[i]
        if isinstance(r, bytes):  # where the stream first differs: the missing event
            print(f"client {i}: {first_difference(r, expected)}")
        else:
            print(f"client {i}: {r!r}")
    print(f"\n{n_events} events x {n_clients} clients: emitted in {emitted:.2f}s, "
          f"all delivered in {took:.2f}s ({n_events * n_clients / took:,.0f} deliveries/s)")
    assert not bad, f"{len(bad)} of {n_clients} clients did not get every event in order"
    assert not records(gw, "conn_slow"), "a reading client was closed as slow"


def test_flood_with_a_slow_client_keeps_memory_bounded(cluster):
    """10,000 events/s of 1 KiB for 5 s (50 MiB) to a group with a client
    that never reads and one that reads everything."""
    cap = 4 * MIB
    cluster.worker()
    ring = 8 * MIB  # the history the gateway keeps on purpose, counted in the bound
    gw = cluster.gateway(f"--gateway.max_send_queue={cap}", "--gateway.ping_interval=10m",
                         "--gateway.ping_timeout=20m", f"--history.memory={ring}")
    rate, seconds, size = 10_000, 5, 1024
    total = rate * seconds
    slow = RawReader(gw.port, 2, rcvbuf=64 * 1024)  # then never reads
    # ... until the gateway gives up on it: then it reads what is left, which
    # must end with close 1008 (the gateway waits only so long for a reader
    # that does not read).
    slow_data = []

    def drain_slow():
        deadline = time.monotonic() + 60
        while not records(gw, "conn_slow") and time.monotonic() < deadline:
            time.sleep(0.05)
        slow.sock.settimeout(10)
        while True:
            chunk = slow.sock.recv(1 << 20)
            if not chunk:
                break
            slow_data.append(chunk)
    drainer = threading.Thread(target=drain_slow)
    drainer.start()

    async def main():
        fast = await open_client(gw, user=1, max_queue=None)
        await subscribe(fast, {"jobs": ["status_changed"]})
        baseline = proc_rss_kib(gw.pid)
        peak = baseline
        got = 0
        stop = asyncio.Event()

        async def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, proc_rss_kib(gw.pid))
                await asyncio.sleep(0.05)

        async def receive():
            nonlocal got
            for i in range(total):
                text = await recv_text(fast, 30, f"event {i} on the fast client")
                assert text.startswith(f'{{"n":{i},'), (i, text[:40])
                got += 1

        def emit():
            pad = "x" * (size - 40)
            proc = subprocess.Popen([binary("chanctl"), "emit", "--stdin", GROUP,
                                     f"--amqp.url={cluster.amqp_url}"],
                                    stdin=subprocess.PIPE, env={**os.environ, **SAN_ENV})
            t0 = time.monotonic()
            batch = rate // 10  # every 100 ms
            for b in range(total // batch):
                lines = "".join(f'{{"n":{b * batch + k},"p":"{pad}"}}\n' for k in range(batch))
                proc.stdin.write(lines.encode())
                proc.stdin.flush()
                time.sleep(max(0.0, t0 + (b + 1) * 0.1 - time.monotonic()))
            proc.stdin.close()
            assert proc.wait(60) == 0
            return time.monotonic() - t0
        sampler = asyncio.create_task(sample())
        emit_s, _ = await asyncio.gather(asyncio.to_thread(emit), receive())
        stop.set()
        await sampler
        growth_mib = (peak - baseline) / 1024
        bound_mib = cap / MIB * 1 + ring / MIB * 2 + 24  # one slow client, the ring + margin
        print(f"\nflood {total} x {size} B in {emit_s:.2f}s: gatewayd RSS {baseline / 1024:.1f} MiB "
              f"-> peak {peak / 1024:.1f} MiB (+{growth_mib:.1f}, bound +{bound_mib:.0f}); "
              f"fast client got {got}")
        assert growth_mib <= bound_mib, f"RSS grew {growth_mib:.1f} MiB"
        assert got == total
        await fast.close()
    run(main(), timeout=180)
    slow_recs = records(gw, "conn_slow")
    assert len(slow_recs) == 1, slow_recs
    drainer.join(30)
    tail = b"".join(slow_data)[-200:]
    assert re.search(rb"\x88[\x02-\x7d]\x03\xf0", tail), f"no close 1008 at the end: {tail!r}"
    slow.close()
