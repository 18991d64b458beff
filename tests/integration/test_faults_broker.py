"""Broker outages (issue 3, item 1), against a private RabbitMQ node that
these tests stop, kill and freeze (never the suite's shared one).

With 500 clients connected and subscribed, the node is stopped (or killed
with SIGKILL) for 10 s and started again on the same ports and data: the
gateway keeps every client open, answers new handshakes 503 at once and
pings on time meanwhile, then reconnects, resumes reading the event history
where it stopped (no reset), and every client gets the events emitted after
recovery; the worker reconnects and serves. A frozen
node (SIGSTOP: the socket stays open, nothing answers) is noticed through
the heartbeat alone.

Slow (a minute each): run by `make test-faults`.
"""

import asyncio
import datetime
import os
import signal
import subprocess
import time

import pytest

from conftest import (BROKER_SH, Cluster, handshake_status, jwt_for, open_client,
                      recv_text, run, subscribe)
from faults import SLOW, private_broker, records, vm_pid, wait_record  # noqa: F401 (fixture)

pytestmark = SLOW

CLIENTS = 500
OUTAGE_S = 10
HEARTBEAT = "--amqp.heartbeat=2s"
GROUP = "jobs-status_changed"


@pytest.fixture
def pcluster(private_broker, request, tmp_path):
    from conftest import _log_dir, running
    with running(Cluster(private_broker, "faults", _log_dir(request, tmp_path)), request) as c:
        yield c


def broker_sh(verb, broker):
    t0 = time.monotonic()
    subprocess.run([str(BROKER_SH), verb, str(broker.dir)], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def epoch(rec):
    """A log record's ts as seconds since the epoch."""
    ts = datetime.datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.replace(tzinfo=datetime.timezone.utc).timestamp()


async def open_many(gw, n):
    sem = asyncio.Semaphore(50)

    async def one(i):
        async with sem:
            ws = await open_client(gw, user=10000 + i)
            await subscribe(ws, {"jobs": ["status_changed"]}, timeout=30)
            return ws
    return await asyncio.gather(*(one(i) for i in range(n)))


async def expect_all(clients, texts, timeout=30):
    async def one(ws):
        return [await recv_text(ws, timeout, "an event after recovery") for _ in texts]
    got = await asyncio.gather(*(one(ws) for ws in clients))
    bad = [i for i, g in enumerate(got) if g != texts]
    assert not bad, f"{len(bad)} clients missed events, e.g. #{bad[0]}: {got[bad[0]]}"


class Pinger:
    """Pings one open client every 200 ms and keeps the slowest round trip:
    the gateway's loop must stay responsive whatever the broker does."""

    def __init__(self, ws):
        self.ws, self.worst, self.count, self._task = ws, 0.0, 0, None

    async def _run(self):
        while True:
            t0 = time.monotonic()
            await asyncio.wait_for(await self.ws.ping(), 5)
            self.worst = max(self.worst, time.monotonic() - t0)
            self.count += 1
            await asyncio.sleep(0.2)

    def start(self):
        self._task = asyncio.create_task(self._run())

    async def stop(self):
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def outage_handshakes(gw, until):
    """Handshakes during the outage: every one 503; returns the latencies."""
    latencies = []
    while time.monotonic() < until:
        t0 = time.monotonic()
        status = await handshake_status(gw.url(token=jwt_for(1)))
        latencies.append(time.monotonic() - t0)
        assert status == 503, f"handshake during the outage got {status}"
        await asyncio.sleep(0.25)
    return latencies


def run_outage(cluster, down_verb):
    wk = cluster.worker(HEARTBEAT)
    gw = cluster.gateway(HEARTBEAT, "--gateway.connect_timeout=3s")
    figures = {}

    async def main():
        clients = await open_many(gw, CLIENTS)
        probe = await open_client(gw, user=1)  # will send during the outage
        await asyncio.to_thread(cluster.emit, GROUP, '{"before": true}')
        await expect_all(clients, ['{"before": true}'])
        pinger = Pinger(clients[0])
        pinger.start()
        t_down = time.time()
        figures["down_cmd_s"] = await asyncio.to_thread(broker_sh, down_verb, cluster.broker)
        down = (await asyncio.to_thread(wait_record, gw, "amqp_down"))[0]
        figures["gw_detect_s"] = epoch(down) - t_down
        # Outage: clients stay, handshakes are refused at once, a client
        # message is closed 1013.
        until = time.monotonic() + OUTAGE_S - figures["down_cmd_s"]
        await probe.send('{"groups": {"jobs": ["summary"]}}')
        try:
            await asyncio.wait_for(probe.recv(), 5)
            raise AssertionError("a client message during the outage was answered")
        except Exception as e:  # ConnectionClosed
            assert getattr(e, "code", None) == 1013, repr(e)
        lat = await outage_handshakes(gw, until)
        figures["outage_503_ms"] = (min(lat) * 1000, max(lat) * 1000, len(lat))
        assert max(lat) < 0.5, f"503 took up to {max(lat):.3f}s"
        assert all(ws.open for ws in clients), "clients were dropped during the outage"
        t_up = time.time()
        figures["restart_cmd_s"] = await asyncio.to_thread(broker_sh, "restart", cluster.broker)
        up = (await asyncio.to_thread(wait_record, gw, "broker_up", 60, 2))[1]
        figures["gw_reconnect_s"] = epoch(up) - t_up
        # Live again on the history stream, resumed where it stopped.
        await asyncio.to_thread(wait_record, gw, "hist_live", 60, 2)
        figures["live_s"] = time.time() - t_up
        await pinger.stop()
        figures["worst_ping_ms"] = (pinger.worst * 1000, pinger.count)
        assert pinger.worst < 0.5, f"a ping took {pinger.worst:.3f}s during the outage"
        events = [f'{{"after": {i}}}' for i in range(3)]
        await asyncio.to_thread(cluster.emit_stdin, GROUP, events)
        await expect_all(clients, events)
        figures["events_after_s"] = time.time() - t_up
        # The worker is back too: a new client is accepted and served.
        await asyncio.to_thread(wait_record, wk, "broker_connected", 60, 2)
        ws = await open_client(gw, user=2)
        _, reply = await subscribe(ws, {"jobs": ["summary"]})
        assert reply["groups_current"] == ["jobs-summary"]
        await asyncio.gather(*(c.close() for c in clients + [ws]))
    run(main(), timeout=240)
    print(f"\n{down_verb}: {figures}")
    assert len(records(gw, "amqp_down")) == 1
    assert len(records(gw, "hist_resume")) == 1, "the gateway did not resume"
    assert len(records(gw, "hist_reset")) == 1, "the history was reset (first start only)"
    return figures


def test_broker_stopped_10s_with_500_clients(pcluster):
    run_outage(pcluster, "stop")


def test_broker_killed_and_restarted_with_500_clients(pcluster):
    run_outage(pcluster, "kill")


def test_frozen_broker_is_noticed_by_heartbeat(pcluster):
    """SIGSTOP: no FIN, no RST, just silence. Both daemons must give up on
    the connection within two heartbeat intervals (2 s here) and come back
    after SIGCONT."""
    wk = pcluster.worker(HEARTBEAT)
    gw = pcluster.gateway(HEARTBEAT)
    pid = vm_pid(pcluster.broker.dir)
    assert pid
    t0 = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        down = wait_record(gw, "amqp_down", timeout=15)[0]
        wk_down = wait_record(wk, "broker_lost", timeout=15)[0]
    finally:
        os.kill(pid, signal.SIGCONT)
    gw_s, wk_s = epoch(down) - t0, epoch(wk_down) - t0
    print(f"\nfrozen broker noticed: gatewayd {gw_s:.2f}s ({down['reason']}), "
          f"workerd {wk_s:.2f}s ({wk_down['reason']})")
    assert gw_s <= 5.0 and wk_s <= 7.0
    wait_record(gw, "broker_up", 60, 2)
    wait_record(wk, "broker_connected", 60, 2)

    async def main():
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        await ws.close()
    run(main())
