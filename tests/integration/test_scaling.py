"""Several workers and several gateways on one broker: workers compete for
the websocket.* queues, and a killed one loses nothing; each gateway gets one
copy of an event for its own members."""

import asyncio

from conftest import handshake_status, jwt_for, open_client, recv_text, run, subscribe

CLIENTS = 200
ROUNDS = 5


async def open_many(gw, n, user_base=1000, limit=100):
    sem = asyncio.Semaphore(limit)

    async def one(i):
        async with sem:
            return await open_client(gw, user=user_base + i)
    return await asyncio.gather(*(one(i) for i in range(n)))


async def close_all(clients):
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def test_two_workers_share_the_load(cluster):
    w1 = cluster.worker()
    w2 = cluster.worker()
    gw = cluster.gateway()
    before = cluster.broker.connections(cluster.vhost)

    async def main():
        clients = await open_many(gw, CLIENTS)
        for r in range(ROUNDS):
            replies = await asyncio.gather(
                *(subscribe(ws, {"jobs": [f"r{r}"]}) for ws in clients))
            assert all(rep["groups_current"] == [f"jobs-r{r}"] for _, rep in replies)
        await close_all(clients)
    run(main())

    # Bytes the broker delivered to each worker's AMQP connection(s).
    after = cluster.broker.connections(cluster.vhost)
    got = {}
    for wk in (w1, w2):
        ports = wk.amqp_ports(cluster.broker.port)
        assert ports, f"{wk.name} has no connection to the broker"
        got[wk.name] = sum(after.get(p, 0) - before.get(p, 0) for p in ports)
    total = sum(got.values())
    assert total > 0, got
    for name, n in got.items():
        assert n >= total * 0.2, f"{name} got {n} of {total} bytes of work: {got}"


def test_killed_worker_loses_no_subscription_request(cluster):
    w1 = cluster.worker()
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        clients = await open_many(gw, CLIENTS)
        replies_seen = 0
        killed = asyncio.Event()

        async def client(i, ws):
            nonlocal replies_seen
            for r in range(ROUNDS):
                group = f"c{i}_{r}"
                errors, reply = await subscribe(ws, {"jobs": [group]}, timeout=30)
                assert errors == [], errors
                assert reply["groups_current"] == [f"jobs-{group}"], (i, r, reply)
                replies_seen += 1
                if replies_seen == CLIENTS * ROUNDS // 3 and not killed.is_set():
                    killed.set()
                    w1.kill()  # SIGKILL, mid-stream: others are in flight now
        await asyncio.gather(*(client(i, ws) for i, ws in enumerate(clients)))
        assert killed.is_set()
        await close_all(clients)
    run(main(), timeout=180)


def test_two_gateways_each_deliver_one_copy_to_their_members(cluster):
    cluster.worker()
    gw1 = cluster.gateway()
    gw2 = cluster.gateway()

    async def main():
        a1 = await open_client(gw1, user=1)
        a2 = await open_client(gw1, user=2)
        b1 = await open_client(gw2, user=3)
        for ws in (a1, a2, b1):
            await subscribe(ws, {"jobs": ["status_changed"]})
        consumers = cluster.broker.history_consumers(cluster.vhost)
        assert consumers == 2, f"expected one stream consumer per gateway: {consumers}"
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", '{"event": 1}')
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", '{"sentinel": 1}')
        for ws in (a1, a2, b1):
            assert await recv_text(ws) == '{"event": 1}'
            assert await recv_text(ws) == '{"sentinel": 1}', "a second copy arrived"
        await close_all([a1, a2, b1])
    run(main())


def test_gateway_answers_503_without_workers(cluster):
    gw = cluster.gateway("--gateway.connect_timeout=500ms")
    assert run(handshake_status(gw.url(token=jwt_for(7)))) == 503
