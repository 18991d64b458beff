"""Write coalescing (issue 17, gateway.write_delay): the events of a trickle
share socket writes, in order and within the delay; replies do not wait for
it; a connection that goes while its events wait costs nothing (ASan runs
this too)."""

import asyncio
import json
import re
import statistics
import time
import urllib.request

from conftest import open_client, recv_json, run, subscribe

GROUP = "jobs-status_changed"


def writes(gw):
    text = urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics",
                                  timeout=5).read().decode()
    return int(re.search(r"^wsgw_gateway_socket_writes_total (\d+)$", text, re.M).group(1))


def trickle(cluster, gw, n, every_s):
    """n events, every_s apart, to one subscribed client: (socket writes they
    took, the latest delay from emit to arrival in seconds)."""
    async def main():
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        emitter = await asyncio.to_thread(cluster.pika_emitter)
        sent = {}
        try:
            w0 = await asyncio.to_thread(writes, gw)

            def emit_all():
                for i in range(n):
                    sent[i] = time.monotonic()
                    emitter.emit(GROUP, json.dumps({"i": i}))
                    time.sleep(every_s)
            task = asyncio.create_task(asyncio.to_thread(emit_all))
            late = 0.0
            for i in range(n):
                ev = await recv_json(ws, 10, f"event {i}")
                assert ev == {"i": i}, ev  # in order, none lost
                late = max(late, time.monotonic() - sent[i])
            await task
            w1 = await asyncio.to_thread(writes, gw)
        finally:
            emitter.close()
        await ws.close()
        return w1 - w0, late
    return run(main())


def test_a_trickle_shares_writes_within_the_delay(cluster):
    """20 events 20 ms apart: written as they come without a delay (one
    write each, or nearly), a few writes with 100 ms (five events each);
    each within a second of its emit either way."""
    cluster.worker()
    now = cluster.gateway("--gateway.write_delay=0")
    w_now, late_now = trickle(cluster, now, 20, 0.02)
    later = cluster.gateway("--gateway.write_delay=100ms")
    w_later, late_later = trickle(cluster, later, 20, 0.02)
    print(f"writes: {w_now} without a delay, {w_later} with 100 ms; "
          f"latest arrival {late_now * 1000:.0f} / {late_later * 1000:.0f} ms")
    assert w_now >= 15, w_now
    assert w_later <= 8, w_later
    assert late_later < 1.0 and late_now < 1.0


def test_replies_do_not_wait_for_the_delay(cluster):
    """With write_delay at its largest (100 ms), a subscription's reply
    still comes as soon as the worker answers (median of 10 round trips
    well under the delay)."""
    cluster.worker()
    gw = cluster.gateway("--gateway.write_delay=100ms")

    async def main():
        ws = await open_client(gw)
        times = []
        for i in range(10):
            t0 = time.monotonic()
            await subscribe(ws, {"jobs": ["status_changed"] if i % 2 else ["summary"]})
            times.append(time.monotonic() - t0)
        await ws.close()
        return statistics.median(times)
    median = run(main())
    print(f"reply round trip, median: {median * 1000:.1f} ms")
    assert median < 0.08, median


def test_connections_that_go_while_their_events_wait(cluster):
    """50 clients drop (no close handshake) while an event waits for them:
    the gateway writes nobody's freed memory and goes on serving."""
    cluster.worker()
    gw = cluster.gateway("--gateway.write_delay=100ms")

    async def main():
        clients = [await open_client(gw, user=100 + i) for i in range(50)]
        for ws in clients:
            await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(cluster.emit, GROUP, '{"x": 1}')
        for ws in clients:
            ws.transport.abort()
        await asyncio.sleep(0.3)  # past the delay: the timer ran over them
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(cluster.emit, GROUP, '{"x": 2}')
        assert await recv_json(ws, 10, "the next event") == {"x": 2}
        await ws.close()
    run(main())
    assert gw.alive()
