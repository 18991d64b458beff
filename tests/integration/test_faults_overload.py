"""Overload (issue 3, item 5): full websocket.* queues answer 503 to a
handshake and 1013 to a client message at once; without any worker a
handshake gets 503 after connect_timeout, and service comes back by itself
when a worker starts.

Every daemon of this module declares the queues with x-max-length 5 (its
vhost is its own, so no other module's queues clash)."""

import asyncio
import signal
import time

import websockets

from conftest import connect, handshake_status, jwt_for, open_client, run
from faults import Amqp, records, wait_queue

LIMIT = "--amqp.queue_max_length=5"
SUB = '{"groups": {"jobs": ["status_changed"]}}'


def purge(cluster):
    for q in ("websocket.connect", "websocket.receive", "websocket.disconnect"):
        cluster.broker.ctl("purge_queue", "-p", cluster.vhost, q)


def fill(cluster, queue, n=5):
    amqp = Amqp(cluster)
    try:
        for i in range(n):
            amqp.publish(queue, '{"filler": %d}' % i)
    finally:
        amqp.close()
    wait_queue(cluster, queue, ready=n)


async def timed_status(url):
    t0 = time.monotonic()
    status = await handshake_status(url)
    return status, time.monotonic() - t0


def test_full_queues_refuse_at_once_then_recover(cluster):
    wk = cluster.worker(LIMIT)
    gw = cluster.gateway(LIMIT, "--gateway.connect_timeout=10s")
    url = gw.url(token=jwt_for(7))

    async def main():
        ws = await open_client(gw)
        wk.kill(signal.SIGTERM)
        await asyncio.to_thread(fill, cluster, "websocket.connect")
        await asyncio.to_thread(fill, cluster, "websocket.receive")
        status, took = await timed_status(url)
        print(f"handshake with websocket.connect full: {status} in {took * 1000:.1f} ms")
        assert status == 503 and took < 2.0, "not refused at once (connect_timeout is 10 s)"
        t0 = time.monotonic()
        await ws.send(SUB)
        try:
            msg = await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError(f"expected close 1013, got {msg!r}")
        except websockets.ConnectionClosed as e:
            print(f"client message with websocket.receive full: close {e.code} "
                  f"in {(time.monotonic() - t0) * 1000:.1f} ms")
            assert e.code == 1013, e
        assert records(gw, "publish_refused"), gw.tail()
        # Room again (the backlog drained): service is back, nothing restarted.
        await asyncio.to_thread(purge, cluster)
        await asyncio.to_thread(cluster.worker, LIMIT)
        ws = await open_client(gw)
        await ws.close()
    run(main())


def test_no_worker_means_503_after_connect_timeout_then_recovery(cluster):
    purge(cluster)
    gw = cluster.gateway(LIMIT, "--gateway.connect_timeout=1s")
    url = gw.url(token=jwt_for(7))

    async def main():
        status, took = await timed_status(url)
        print(f"handshake without workers: {status} after {took * 1000:.0f} ms")
        assert status == 503 and 0.9 <= took <= 3.0, (status, took)
        await asyncio.to_thread(cluster.worker, LIMIT)
        t0 = time.monotonic()
        while True:  # the first worker may still be draining stale connects
            try:
                ws = await connect(url)
                break
            except websockets.InvalidStatusCode as e:
                assert e.status_code == 503 and time.monotonic() - t0 < 10, e
        print(f"accepted {time.monotonic() - t0:.3f}s after the worker was ready")
        await ws.close()
    run(main())
