"""One reader of the history stream per host (history.shared, issue 17):
with gateway.processes > 1, process 0 alone consumes the stream and the
others read its copy in shared memory, so the broker serves each event
once per host instead of once per process. A process the copy cannot
serve (it fell behind the ring, process 0 died or lost the broker) reads
the broker itself, from its last offset, and comes back later; its
clients see every event once, in order, throughout."""

import asyncio
import json
import os
import signal
import time

from conftest import recv_text, run, wait_until
from rawws import metric, scrape
from test_processes import children, close_all, connections, open_subscribed, start

CLIENTS = 40  # spread over two processes: all on one has odds 2**-39
GROUP = "jobs-status_changed"


def gauge(gw, i, name):
    samples = scrape(gw.metrics_ports[i])
    return None if samples is None else metric(samples, name)


def shared(gw, i):
    return gauge(gw, i, "wsgw_gateway_history_shared")


def emit_seq(cluster, first, n):
    cluster.emit_stdin(GROUP, [json.dumps({"seq": k}) for k in range(first, first + n)])


async def expect_seq(clients, first, n, timeout=30):
    """Every client gets seq first .. first+n-1, each once, in order."""
    async def one(ws):
        for k in range(first, first + n):
            got = json.loads(await recv_text(ws, timeout=timeout, what=f"seq {k}"))
            assert got == {"seq": k}, (got, k)
    await asyncio.gather(*(one(ws) for ws in clients))


def settle_on_ring(cluster, gw):
    """Events flow until process 1 reads the ring and the broker counts
    one stream consumer (process 0's); returns the next seq."""
    seq = [0]

    def on_ring():
        if shared(gw, 1) == 1 and cluster.broker.history_consumers(cluster.vhost) == 1:
            return True
        emit_seq(cluster, seq[0], 1)
        seq[0] += 1
        return False
    wait_until(on_ring, 20, "process 1 to read process 0's copy", interval=0.2)
    return seq[0]


def test_one_stream_consumer_serves_every_process(cluster):
    cluster.worker()
    gw = start(cluster, 2)
    assert sorted(children(gw)) == [0, 1]

    async def main():
        clients = await open_subscribed(gw, CLIENTS)
        per = [connections(gw, i) for i in (0, 1)]
        assert sum(per) == CLIENTS and min(per) >= 1, per
        seq = await asyncio.to_thread(settle_on_ring, cluster, gw)
        await expect_seq(clients, 0, seq)
        read_before = gauge(gw, 1, "wsgw_gateway_history_messages_total")
        # 2,000 events while the broker has one stream consumer: process
        # 1's clients get them from the copy, every one, in order
        await asyncio.to_thread(emit_seq, cluster, seq, 2000)
        await expect_seq(clients, seq, 2000)
        assert cluster.broker.history_consumers(cluster.vhost) == 1
        assert shared(gw, 1) == 1 and shared(gw, 0) == 0
        assert gauge(gw, 1, "wsgw_gateway_history_messages_total") - read_before >= 2000
        assert gauge(gw, 1, "wsgw_gateway_history_gaps_total") == 0
        print(f"\nclients per process {per}; process 1 on the ring after {seq} events")
        await close_all(clients)
    run(main())


def test_process_0_killed_its_siblings_read_the_broker_and_lose_nothing(cluster):
    cluster.worker()
    gw = start(cluster, 2)

    async def main():
        clients = await open_subscribed(gw, CLIENTS)
        seq = await asyncio.to_thread(settle_on_ring, cluster, gw)
        await expect_seq(clients, 0, seq)
        writer = children(gw)[0]
        # events flow while process 0 dies: the supervisor tells process 1,
        # which resumes on the broker from the last offset it read
        emitting = asyncio.create_task(asyncio.to_thread(emit_seq, cluster, seq, 3000))
        await asyncio.sleep(0.05)
        os.kill(writer, signal.SIGKILL)
        await emitting
        alive = [ws for ws in clients if not ws.closed]
        # process 0's clients lose their connection; process 1's keep
        # theirs and miss nothing
        for _ in range(50):
            if len([ws for ws in clients if ws.closed]) >= 1:
                break
            await asyncio.sleep(0.1)
        alive = [ws for ws in clients if not ws.closed]
        assert 1 <= len(alive) < CLIENTS, len(alive)
        wait_until(lambda: shared(gw, 1) == 0, 10, "process 1 back on the broker")
        log = gw.log()
        assert "event=hist_shared_left" in log, gw.tail()
        assert gauge(gw, 1, "wsgw_gateway_history_gaps_total") == 0
        # a new process 0 comes; process 1 returns to its copy
        wait_until(lambda: children(gw).get(0, writer) != writer, 10, "a new process 0")
        wait_until(lambda: gw.log().count("event=process_ready index=0 ") == 2, 20,
                   "the new process 0 to be ready")
        again = await asyncio.to_thread(settle_on_ring, cluster, gw)
        assert gauge(gw, 1, "wsgw_gateway_history_shared_enters_total") >= 2
        # every client of process 1 got the whole run across the kill,
        # seq .. seq+2999, then the settle's events 0 .. again-1
        await expect_seq(alive, seq, 3000)
        await expect_seq(alive, 0, again)
        await close_all(alive)
    run(main())


def test_reader_overtaken_by_the_writer_falls_back_without_loss(cluster):
    """A ring of 64 KiB and process 1 stopped (SIGSTOP) while 1,500 events
    of 200 bytes (300 KiB) pass: the writer laps it; woken, it finds its
    place overwritten, reads the broker from its last offset, and its
    clients get every event once, in order. The ring's memory does not
    grow for a slow reader: it is overtaken instead."""
    cluster.worker()
    gw = start(cluster, 2, "--history.shared=64KiB")

    async def main():
        clients = await open_subscribed(gw, CLIENTS)
        seq = await asyncio.to_thread(settle_on_ring, cluster, gw)
        await expect_seq(clients, 0, seq)
        reader = children(gw)[1]
        leaves = gauge(gw, 1, "wsgw_gateway_history_shared_leaves_total")
        pad = "x" * 190
        os.kill(reader, signal.SIGSTOP)
        try:
            await asyncio.to_thread(
                cluster.emit_stdin, GROUP,
                [json.dumps({"seq": k, "pad": pad}) for k in range(seq, seq + 1500)])
            time.sleep(0.3)
        finally:
            os.kill(reader, signal.SIGCONT)

        async def one(ws):
            for k in range(seq, seq + 1500):
                got = json.loads(await recv_text(ws, timeout=30, what=f"seq {k}"))
                assert got["seq"] == k, (got["seq"], k)
        await asyncio.gather(*(one(ws) for ws in clients))
        assert gauge(gw, 1, "wsgw_gateway_history_shared_leaves_total") > leaves
        assert "reason=\"overtaken\"" in gw.log() or "reason=\"ring ended\"" in gw.log()
        assert gauge(gw, 1, "wsgw_gateway_history_gaps_total") == 0
        # and it comes back to the ring once it has caught up
        await asyncio.to_thread(settle_on_ring, cluster, gw)
        await close_all(clients)
    run(main())


def test_shared_off_every_process_reads_the_broker(cluster):
    cluster.worker()
    gw = start(cluster, 2, "--history.shared=0")

    async def main():
        clients = await open_subscribed(gw, CLIENTS)
        await asyncio.to_thread(emit_seq, cluster, 0, 200)
        await expect_seq(clients, 0, 200)
        assert cluster.broker.history_consumers(cluster.vhost) == 2
        assert shared(gw, 1) == 0 and gauge(gw, 1, "wsgw_gateway_history_shared_enters_total") == 0
        await close_all(clients)
    run(main())

