"""Group membership lives in the gateway. With the event history off its
bindings on the broker follow it (docs/PROTOCOL.md, "Topology"): bound while
at least one member of a group is connected, unbound group_linger after the
last one leaves (1 s here; the default 10 s, and the linger itself, are
test_attack_churn.py's). With the history on (the default) the gateway binds
no group at all: every event comes from the stream."""

import asyncio

import pytest

from conftest import (HISTORY_OFF, nothing_arrives, open_client, recv_text,
                      run, subscribe, wait_until)

GROUP = "jobs-status_changed"


@pytest.fixture
def stack(cluster):
    cluster.worker(ready=False)
    cluster.gw = cluster.gateway("--gateway.group_linger=1s", HISTORY_OFF)
    return cluster


def bound(stack, group=GROUP):
    return stack.broker.group_bindings(stack.vhost, group)


def test_subscription_binds_the_gateway_queue(stack):
    async def main():
        ws = await open_client(stack.gw)
        assert bound(stack) == []
        await subscribe(ws, {"jobs": ["status_changed"]})
        bindings = bound(stack)
        assert len(bindings) == 1 and bindings[0][0].startswith("amq.gen-"), bindings
        await ws.close()
    run(main())


def test_binding_stays_while_one_member_remains(stack):
    async def main():
        a = await open_client(stack.gw, user=1)
        b = await open_client(stack.gw, user=2)
        await subscribe(a, {"jobs": ["status_changed"]})
        await subscribe(b, {"jobs": ["status_changed"]})
        await a.close()
        # The gateway has seen a's close once a later event reaches b alone.
        await asyncio.to_thread(stack.emit, GROUP, '{"after": "a left"}')
        assert await recv_text(b, what="the event after a left") == '{"after": "a left"}'
        for _ in range(5):  # and it stays: checked over a short, bounded window
            assert len(bound(stack)) == 1, "the binding went while b is still a member"
            await asyncio.sleep(0.1)
        await b.close()
    run(main())


def test_binding_disappears_when_the_last_member_disconnects(stack):
    async def main():
        a = await open_client(stack.gw, user=1)
        b = await open_client(stack.gw, user=2)
        await subscribe(a, {"jobs": ["status_changed"]})
        await subscribe(b, {"jobs": ["status_changed"]})
        assert len(bound(stack)) == 1
        await a.close()
        await b.close()
    run(main())
    wait_until(lambda: bound(stack) == [], 10,
               f"the binding of {GROUP} to go after its last member disconnected")


def test_binding_disappears_when_the_last_member_leaves_the_group(stack):
    async def main():
        ws = await open_client(stack.gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        await subscribe(ws, {"jobs": ["summary"]})
        await asyncio.to_thread(wait_until, lambda: bound(stack) == [], 10,
                                f"the binding of {GROUP} to go after its member left it")
        assert len(bound(stack, "jobs-summary")) == 1
        await ws.close()
    run(main())


def test_disconnected_member_gets_nothing_and_others_get_one_copy(stack):
    async def main():
        a = await open_client(stack.gw, user=1)
        b = await open_client(stack.gw, user=2)
        await subscribe(a, {"jobs": ["status_changed"]})
        await subscribe(b, {"jobs": ["status_changed"]})
        await a.close()
        await asyncio.to_thread(stack.emit, GROUP, '{"n": 1}')
        await asyncio.to_thread(stack.emit, GROUP, '{"n": 2}')
        assert await recv_text(b) == '{"n": 1}'
        assert await recv_text(b) == '{"n": 2}'
        await nothing_arrives(b, 0.3)
        await b.close()
    run(main())


def test_with_the_history_a_subscription_binds_nothing(cluster):
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(cluster.emit, GROUP, '{"via": "stream"}')
        assert await recv_text(ws, what="the event") == '{"via": "stream"}'
        assert cluster.broker.group_bindings(cluster.vhost) == []
        assert cluster.broker.history_consumers(cluster.vhost) == 1
        await ws.close()
    run(main())


def test_a_dead_gateway_leaves_no_bindings(cluster):
    cluster.worker()
    gw = cluster.gateway(HISTORY_OFF)

    async def main():
        ws = await open_client(gw)
        await subscribe(ws, {"jobs": ["status_changed"]})
        assert len(cluster.broker.group_bindings(cluster.vhost, GROUP)) == 1
        gw.kill()
        try:
            await ws.close()
        except Exception:
            pass
    run(main())
    wait_until(lambda: cluster.broker.group_bindings(cluster.vhost, GROUP) == [], 15,
               "the killed gateway's bindings to vanish with its queue")
