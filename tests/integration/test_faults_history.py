"""Gateway SIGKILL with wsgw.2 clients (issue 14, item 6): clients of a
gateway killed mid-stream reconnect to the survivor with their positions
and, across the kill, get every event once and in order. Twice: the dead
gateway is restarted and then the survivor is killed, so the clients move
back.

Slow (continuous emission for half a minute): run by `make test-faults`.
"""

import asyncio
import json
import time

import pytest
import websockets

from conftest import run
from faults import SLOW
from wsgw2 import Ticker, assert_exact, numbers, open_v2
from wsgw2 import own_vhost  # noqa: F401  (a fixture: vhost below uses it)

pytestmark = SLOW

G1, G2 = "jobs-status_changed", "jobs-summary"
NOISE = "schedules-changed"
BOTH = {"jobs": ["status_changed", "summary"]}
CLIENTS = 50


@pytest.fixture
def vhost(own_vhost):
    return own_vhost


class Follower:
    """One user's wsgw.2 client across connections: reads events, and when
    its gateway dies reconnects to a live one with its positions."""

    def __init__(self, user):
        self.user = user
        self.conns = []       # a wsgw2.Client per connection
        self.last = {G1: 0, G2: 0}
        self.final = None     # {group: last number emitted}, once the emitter stopped
        self.reconnects = []  # seconds from the close to the recovered reply

    async def connect(self, gw, positions=None):
        c = await open_v2(gw, user=self.user, name=f"user{self.user}#{len(self.conns)}",
                          open_timeout=60)
        _, r = await c.subscribe(BOTH, positions=positions, timeout=30)
        if positions is not None:
            assert r["recovery"] == {G1: "ok", G2: "ok"}, (c.t.name, r)
        self.conns.append(c)

    def done(self):
        return self.final is not None and all(self.last[g] == self.final[g] for g in (G1, G2))

    async def follow(self, live_gateway):
        """Reads until it has the last events; when its connection closes
        before, reconnects to live_gateway() with its positions."""
        while True:
            c = self.conns[-1]
            try:
                while not self.done():
                    try:
                        msg = await asyncio.wait_for(c.ws.recv(), 1)
                    except asyncio.TimeoutError:
                        continue
                    kind, value = c.t.take(json.loads(msg))
                    if kind == "event":
                        self.last[value.group] = value.n()
                    else:
                        assert kind == "notice", (c.t.name, kind, value)
                return
            except websockets.ConnectionClosed:
                pass
            t0 = time.monotonic()
            while True:  # as a real client: the gateway it picks may be the one dying
                try:
                    await self.connect(live_gateway(), dict(c.positions))
                    break
                except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake,
                        websockets.ConnectionClosed):  # refused, 503, cut mid-handshake
                    assert time.monotonic() - t0 < 30, f"user{self.user}: no gateway in 30 s"
                    await asyncio.sleep(0.2)
            self.reconnects.append(time.monotonic() - t0)

    def events(self):
        return [e for c in self.conns for e in c.events]


def test_gateway_sigkill_clients_recover_on_the_survivor(cluster):
    cluster.worker()
    gws = [cluster.gateway(), cluster.gateway()]
    ticker = Ticker(cluster.amqp_url, [G1, G2, NOISE], rate=150)  # 100/s to the clients' groups
    followers = [Follower(100 + i) for i in range(CLIENTS)]

    def alive():
        return next(gw for gw in reversed(gws) if gw.alive())

    async def main():
        for i, f in enumerate(followers):
            await f.connect(gws[i % 2])
        ticker.start()
        tasks = [asyncio.create_task(f.follow(alive)) for f in followers]
        for round_ in (0, 1):
            await asyncio.sleep(3)
            victim = gws[round_]
            await asyncio.to_thread(victim.kill)  # SIGKILL mid-stream
            print(f"round {round_}: killed {victim.name} at {ticker.total()} events")
            await asyncio.sleep(3)
            if round_ == 0:  # restarted: the next kill moves everyone there
                gws[0] = await asyncio.to_thread(cluster.gateway)
        await asyncio.sleep(2)
        final = await asyncio.to_thread(ticker.stop)
        for f in followers:
            f.final = final
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        moves = [len(f.conns) - 1 for f in followers]
        worst = max((x for f in followers for x in f.reconnects), default=0)
        print(f"{CLIENTS} clients, final {final}; moves per client {min(moves)}-{max(moves)}; "
              f"slowest reconnect and recovery {worst:.2f}s")
        assert min(moves) >= 1, "a client never lost its gateway"
        for f in followers:
            for g in (G1, G2):
                assert_exact(numbers(f.events(), g), 1, final[g], f"user{f.user} {g}")
            assert not [c.t.notices for c in f.conns if c.t.notices], \
                f"user{f.user} was told of lost events"
        await asyncio.gather(*(f.conns[-1].close() for f in followers))
    try:
        run(main(), timeout=300)
    finally:
        if ticker.is_alive():
            ticker.stop()
