"""Gateway faults (issue 3, items 3-4): a crashed gateway leaves no queue,
binding (with the event history it binds no group at all) or noise behind and its clients move to another gateway; SIGTERM
drains with 1001 spread over the window and exits 0; SIGHUP reloads the
Origin list without dropping anyone."""

import asyncio
import json
import signal
import time

from conftest import (connect, handshake_status, jwt_for, open_client, recv_json,
                      recv_text, run, subscribe, wait_until)
from faults import complaints, queue_stats, records, take_channel_messages, wait_record

GROUP = "jobs-status_changed"
CLIENTS = 20


def gateway_queues(cluster):
    rows = cluster.broker.table("list_queues", "-p", cluster.vhost, "name")
    return {r[0] for r in rows if r[0].startswith("amq.gen-")}


def test_gateway_crash_leaves_nothing_and_clients_move(cluster):
    wk = cluster.worker()
    gw1 = cluster.gateway()
    gw2 = cluster.gateway()

    async def main():
        clients = [await open_client(gw1, user=10 + i) for i in range(CLIENTS)]
        for ws in clients:
            await subscribe(ws, {"jobs": ["status_changed"]})
        assert cluster.broker.group_bindings(cluster.vhost) == []  # the history
        dead_queue = records(gw1, "amqp_up")[-1]["queue"]
        assert dead_queue in gateway_queues(cluster)
        # Requests in flight when it dies: their replies go to a queue that
        # is about to vanish.
        for ws in clients:
            await ws.send(json.dumps({"groups": {"jobs": ["summary"]}}))
        t0 = time.monotonic()
        gw1.kill(signal.SIGKILL)
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1006, ws.close_code
        await asyncio.to_thread(
            wait_until, lambda: dead_queue not in gateway_queues(cluster), 15,
            "the dead gateway's queue to vanish", 0.2)
        print(f"queue gone {time.monotonic() - t0:.2f}s after SIGKILL")
        # The clients come back on the other gateway and resubscribe.
        moved = [await open_client(gw2, user=10 + i) for i in range(CLIENTS)]
        for ws in moved:
            await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(cluster.emit, GROUP, '{"after": "crash"}')
        for ws in moved:
            assert await recv_text(ws) == '{"after": "crash"}'
        await asyncio.gather(*(ws.close() for ws in moved))
    run(main())
    assert complaints(wk) == [], complaints(wk)[:5]


def test_sigterm_drains_with_1001_spread_and_exits_0(cluster):
    cluster.worker()
    gw = cluster.gateway("--gateway.shutdown_spread=2s", "--gateway.shutdown_timeout=6s")
    n = 100

    async def main():
        sem = asyncio.Semaphore(50)

        async def one(i):
            async with sem:
                return await open_client(gw, user=1000 + i)
        clients = await asyncio.gather(*(one(i) for i in range(n)))
        for ws in clients:
            await subscribe(ws, {"jobs": ["status_changed"]})
        # Without a worker the disconnects stay in their queue: countable.
        cluster.daemons[0].kill(signal.SIGTERM)
        closed = []

        async def watch(ws):
            await ws.wait_closed()
            closed.append((time.monotonic(), ws.close_code))
        watchers = [asyncio.create_task(watch(ws)) for ws in clients]
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*watchers), 10)
        rc = await asyncio.to_thread(gw.proc.wait, 10)
        exit_s = time.monotonic() - t0
        gw.expected_exit = True
        times = sorted(t - t0 for t, _ in closed)
        print(f"closes from {times[0]:.3f}s to {times[-1]:.3f}s; exit {rc} after {exit_s:.3f}s")
        assert {code for _, code in closed} == {1001}
        assert times[-1] - times[0] >= 1.2, "the closes were not spread over the window"
        assert times[-1] <= 3.0, "the closes took longer than the spread"
        assert rc == 0 and exit_s <= 6.5
        with_pending = await asyncio.to_thread(queue_stats, cluster)
        print(f"websocket.disconnect: {with_pending['websocket.disconnect']}")
        # Batches of them, as one pass of the AMQP thread had them.
        left = await asyncio.to_thread(take_channel_messages, cluster, "websocket.disconnect", n)
        assert all(json.loads(m)["code"] == 1001 for m in left), left[:3]
        assert not gateway_queues(cluster), "the gateway's queue outlived it"
    run(main())


def test_sighup_reloads_allowed_origins_without_dropping_anyone(cluster, tmp_path):
    cluster.worker()
    conf = tmp_path / "gatewayd.ini"
    conf.write_text("[gateway]\nallowed_origins = https://a.example\n")
    gw = cluster.gateway(f"--config={conf}", ready=False)
    wait_record(gw, "broker_up")
    token = jwt_for(7)

    async def main():
        a = await connect(gw.url(token=token), {"Origin": "https://a.example"})
        assert (await recv_json(a))["accept"] is True
        await subscribe(a, {"jobs": ["status_changed"]})
        conf.write_text("[gateway]\nallowed_origins = https://b.example\n")
        gw.proc.send_signal(signal.SIGHUP)
        rec = (await asyncio.to_thread(wait_record, gw, "reload"))[0]
        assert rec["allowed_origins"] == "https://b.example", rec
        assert await handshake_status(gw.url(token=token), {"Origin": "https://a.example"}) == 403
        b = await connect(gw.url(token=token), {"Origin": "https://b.example"})
        assert (await recv_json(b))["accept"] is True
        # The client from before is untouched: pings, events, requests.
        await asyncio.wait_for(await a.ping(), 5)
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", '{"still": "here"}')
        assert await recv_text(a) == '{"still": "here"}'
        conf.write_text("[gateway]\nno_such_key = 1\n")
        gw.proc.send_signal(signal.SIGHUP)
        rec = (await asyncio.to_thread(wait_record, gw, "reload_failed"))[0]
        assert rec["kept"] == "running_settings"
        c = await connect(gw.url(token=token), {"Origin": "https://b.example"})
        assert (await recv_json(c))["accept"] is True
        for ws in (a, b, c):
            await ws.close()
    run(main())
    assert gw.alive()


def test_no_error_storm_when_a_client_vanishes_mid_request(cluster):
    """Clients that drop while their request is with a worker: the late
    replies find no connection and are dropped without a warning."""
    wk = cluster.worker()
    gw = cluster.gateway()

    async def main():
        for i in range(30):
            ws = await open_client(gw, user=i + 1)
            await ws.send(json.dumps({"groups": {"jobs": [f"x{i}"]}}))
            ws.transport.abort()  # gone without a close frame
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["summary"]})
        await ws.close()
    run(main())
    assert complaints(wk) == [], complaints(wk)[:5]
    assert [r for r in complaints(gw) if r["event"] not in ("reply_timeout",)] == []

