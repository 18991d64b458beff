"""The event history's stream as the gateway's source of events (issue 14,
item 4): a gateway cut off from the broker resumes where it stopped, and
one whose stream was recreated starts over, says so, and goes on.

The cut: the gateway reaches the broker through a TCP proxy of this test,
which closes every connection it carries and refuses new ones until told
otherwise (the worker, the emitter and rabbitmqctl go straight to the
broker). Shown:

- 1,000 events emitted while a gateway is cut off reach its connected
  old-protocol clients after it reconnects: all of them, in order, once,
  and the events after them too;
- the stream deleted while the gateway reads it (basic.cancel): it
  reconnects, finds nothing at its offset in the new stream, logs a reset
  after history.resume_timeout and delivers new events;
- the stream deleted and recreated longer while the gateway is cut off:
  at its offset it finds another message (another digest), logs a reset at
  once and delivers new events, none of the new stream's older ones;
- retention passing while a gateway is cut off: it logs and counts the gap
  and delivers what is left, in order.
"""

import asyncio
import json
import os
import time

import pika
import pytest

from conftest import (GROUPS_EXCHANGE, HISTORY_BINDING, HISTORY_STREAM, Cluster, _log_dir,
                      open_client, recv_json, run, running, subscribe)
from faults import BrokerProxy, records, wait_record
from test_metrics import Scrape

GROUP = "jobs-status_changed"
FAST = ("--amqp.heartbeat=2s", "--history.resume_timeout=2s")


def proxied_url(cluster, proxy):
    return proxy.url(cluster.amqp_url, cluster.broker.port)


def emit_many(cluster, texts):
    """Each text to GROUP, confirmed, on one connection."""
    conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for t in texts:
        ch.basic_publish(exchange=GROUPS_EXCHANGE, routing_key=GROUP, body=t.encode())
    conn.close()


async def receive(ws, n, timeout=30):
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(n)]


def start(cluster, proxy, *extra):
    cluster.worker()
    return cluster.gateway(f"--amqp.url={proxied_url(cluster, proxy)}", *FAST, *extra)


def test_a_gateway_cut_off_delivers_what_it_missed_in_order(cluster):
    proxy = BrokerProxy(cluster.broker.port)
    try:
        gw = start(cluster, proxy)

        async def main():
            clients = [await open_client(gw, user=i) for i in (1, 2, 3)]
            for ws in clients:
                await subscribe(ws, {"jobs": ["status_changed"]})
            await asyncio.to_thread(emit_many, cluster, ['{"n": 0}'])
            for ws in clients:
                assert await receive(ws, 1) == [{"n": 0}]
            proxy.cut()
            await asyncio.to_thread(wait_record, gw, "amqp_down")
            missed = [json.dumps({"n": i}) for i in range(1, 1001)]
            await asyncio.to_thread(emit_many, cluster, missed)
            t0 = time.monotonic()
            proxy.restore()
            got = await asyncio.gather(*(receive(ws, 1000, 60) for ws in clients))
            took = time.monotonic() - t0
            for g in got:
                assert [m["n"] for m in g] == list(range(1, 1001))
            await asyncio.to_thread(emit_many, cluster, ['{"n": 1001}'])
            for ws in clients:  # live again, and nothing twice in between
                assert await receive(ws, 1) == [{"n": 1001}]
            print(f"\n1000 events missed while cut off: delivered {took:.2f} s after the "
                  "proxy let the gateway back")
            for ws in clients:
                await ws.close()
        run(main())
        assert len(records(gw, "hist_resume")) == 1
        assert len(records(gw, "hist_reset")) == 1  # the first start only
        assert not records(gw, "hist_gap")
        m = Scrape(gw.metrics_port)
        assert m("wsgw_gateway_history_resumes_total") == 1
        assert m("wsgw_gateway_history_resets_total") == 1
        assert m("wsgw_gateway_history_gaps_total") == 0
        assert m("wsgw_gateway_history_messages_total") >= 1002
        assert m("wsgw_gateway_history_offset") >= 1002
    finally:
        proxy.close()


def test_stream_deleted_under_a_gateway_resets_and_goes_on(cluster):
    proxy = BrokerProxy(cluster.broker.port)
    try:
        gw = start(cluster, proxy)

        async def main():
            ws = await open_client(gw)
            await subscribe(ws, {"jobs": ["status_changed"]})
            await asyncio.to_thread(emit_many, cluster, [json.dumps({"n": i}) for i in range(20)])
            assert [m["n"] for m in await receive(ws, 20)] == list(range(20))
            cluster.broker.ctl("delete_queue", "-p", cluster.vhost, HISTORY_STREAM)
            # Cancelled, reconnected at offset 20+ of a stream that has 1
            # message (our marker): nothing comes; the deadline says reset.
            rec = (await asyncio.to_thread(wait_record, gw, "hist_reset", 20, 2))[1]
            assert rec["reason"] == "resume timeout", rec
            await asyncio.to_thread(wait_record, gw, "hist_live", 20, 2)
            await asyncio.to_thread(emit_many, cluster, ['{"n": "new"}'])
            assert await receive(ws, 1) == [{"n": "new"}]
            await ws.close()
        run(main())
        assert records(gw, "amqp_consumer_cancelled")
    finally:
        proxy.close()


def declare_stream(cluster):
    """The stream as a gateway declares it by default, bound with '#'."""
    conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_url))
    ch = conn.channel()
    ch.queue_declare(HISTORY_STREAM, durable=True, arguments={
        "x-queue-type": "stream", "x-max-age": "86400s",
        "x-max-length-bytes": 1 << 30, "x-stream-max-segment-size-bytes": 64 << 20})
    ch.queue_bind(HISTORY_STREAM, GROUPS_EXCHANGE, HISTORY_BINDING)
    conn.close()


def test_stream_recreated_while_cut_off_resets_at_once(cluster):
    proxy = BrokerProxy(cluster.broker.port)
    try:
        gw = start(cluster, proxy)

        async def main():
            ws = await open_client(gw)
            await subscribe(ws, {"jobs": ["status_changed"]})
            await asyncio.to_thread(emit_many, cluster, ['{"n": "before"}'])
            assert await receive(ws, 1) == [{"n": "before"}]
            proxy.cut()
            await asyncio.to_thread(wait_record, gw, "amqp_down")
            cluster.broker.ctl("delete_queue", "-p", cluster.vhost, HISTORY_STREAM)
            await asyncio.to_thread(declare_stream, cluster)
            old = [json.dumps({"n": f"old{i}"}) for i in range(50)]  # past the offset we hold
            await asyncio.to_thread(emit_many, cluster, old)
            proxy.restore()
            rec = (await asyncio.to_thread(wait_record, gw, "hist_reset", 20, 2))[1]
            assert rec["reason"] == "recreated", rec
            await asyncio.to_thread(wait_record, gw, "hist_live", 20, 2)
            await asyncio.to_thread(emit_many, cluster, ['{"n": "new"}'])
            # The recreated stream's older events were preload: not delivered.
            assert await receive(ws, 1) == [{"n": "new"}]
            await ws.close()
        run(main())
    finally:
        proxy.close()


def test_history_off_reads_no_stream(cluster):
    cluster.worker()
    gw = cluster.gateway("--history.enabled=false")

    async def main():
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(emit_many, cluster, ['{"n": 1}'])
        assert await recv_json(ws) == {"n": 1}
        await ws.close()
    run(main())
    assert cluster.broker.history_consumers(cluster.vhost) == 0
    assert not records(gw, "hist_live")


@pytest.fixture
def small_cluster(broker, request, tmp_path):
    """A vhost of its own: its stream is declared small (retention bites),
    and a stream's arguments must match every declare."""
    name = f"t_history_small_{os.getpid()}"
    broker.ctl("add_vhost", name)
    broker.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        with running(Cluster(broker, name, _log_dir(request, tmp_path)), request) as c:
            yield c
    finally:
        broker.ctl("delete_vhost", name)


def test_retention_past_a_cut_off_gateway_is_a_gap(small_cluster):
    """64 KiB kept in 8 KiB segments; 300 KiB emitted while the gateway is
    cut off: the oldest are gone when it comes back. It logs the gap,
    counts it, and delivers what is left, in order, then live."""
    cluster = small_cluster
    proxy = BrokerProxy(cluster.broker.port)
    try:
        gw = start(cluster, proxy, "--history.max_bytes=64KiB", "--history.segment_bytes=8KiB")
        pad = "x" * 1000

        async def main():
            ws = await open_client(gw)
            await subscribe(ws, {"jobs": ["status_changed"]})
            await asyncio.to_thread(emit_many, cluster, ['{"n": -1}'])
            assert await receive(ws, 1) == [{"n": -1}]
            proxy.cut()
            await asyncio.to_thread(wait_record, gw, "amqp_down")
            await asyncio.to_thread(emit_many, cluster, [json.dumps({"n": i, "pad": pad})
                                                         for i in range(300)])
            proxy.restore()
            gap = (await asyncio.to_thread(wait_record, gw, "hist_gap", 20))[0]
            await asyncio.to_thread(emit_many, cluster, ['{"n": 300}'])
            got = []
            while not got or got[-1] != 300:
                got += [m["n"] for m in await receive(ws, 1)]
            assert got == list(range(got[0], 301)) and got[0] > 0, got[:5]
            print(f"\nretention while cut off: {gap['lost']} messages lost, "
                  f"events {got[0]}..299 delivered after the gap")
            await ws.close()
        run(main())
        m = Scrape(gw.metrics_port)
        assert m("wsgw_gateway_history_gaps_total") == 1
        assert m("wsgw_gateway_history_gap_messages_total") > 0
    finally:
        proxy.close()


def test_a_consumer_that_retention_overtakes_is_resumed(small_cluster):
    """RabbitMQ 3.10 may stop delivering to a stream consumer whose segment
    retention deleted under it (seen here about one flood in ten): the
    connection stays healthy and nothing comes, ever. The gateway's watch
    (history.check_interval) publishes its marker after a second of
    silence, and when not even that comes back it resumes at the last
    offset it read: the lost messages are a gap, the rest flows. Rounds of
    8 MiB floods through a 1 MiB stream, each followed by one event to a
    group a client is in: every such event arrives within 15 s, in order."""
    cluster = small_cluster
    cluster.worker()
    gw = cluster.gateway("--history.memory=256KiB", "--history.max_bytes=1MiB",
                         "--history.segment_bytes=256KiB", "--history.check_interval=1s",
                         "--history.resume_timeout=2s")
    pad = "x" * 2048
    rounds = 8 if os.environ.get("WSGW_FAULTS") == "1" else 3

    async def main():
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["summary"]})
        for r in range(rounds):
            await asyncio.to_thread(cluster.emit_stdin, GROUP,
                                    [json.dumps({"n": i, "pad": pad}) for i in range(4000)])
            await asyncio.to_thread(cluster.emit, "jobs-summary", json.dumps({"round": r}))
            t0 = time.monotonic()
            assert await receive(ws, 1, timeout=15) == [{"round": r}], r
            print(f"round {r}: the event after the flood in {time.monotonic() - t0:.2f} s")
        await ws.close()
    run(main(), timeout=60 + 40 * rounds)
    m = Scrape(gw.metrics_port)
    stalls = m("wsgw_gateway_history_stalls_total")
    print(f"\n{rounds} floods: {stalls:.0f} stalled consumptions found and resumed, "
          f"{m('wsgw_gateway_history_gap_messages_total'):.0f} messages reported lost")
    assert stalls == len(records(gw, "hist_stalled"))
