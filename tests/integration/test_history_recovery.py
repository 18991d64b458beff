"""Protocol wsgw.2 and recovery from the history (issue 14; docs/PROTOCOL.md,
"Protocol wsgw.2"): negotiation next to the old protocol on one gateway,
positions in every reply, a client that reconnects to another gateway
process gets what it missed and then live without a duplicate or a gap,
bad, foreign, future and expired positions, the history deleted under the
gateways, a slow wsgw.2 reader that catches up (or is told what it lost,
or is closed with slow_client=close), and 1,000 clients recovering at once.

Every test has a vhost of its own (wsgw2.own_vhost): its own stream.
Clients are the websockets library (wsgw2.Client) or, for a client that
stops reading, a raw socket (wsgw2.RawV2).
"""

import asyncio
import json
import time

import pika
import pytest

from conftest import (PikaEmitter, connect, jwt_for, open_client, recv_json, recv_text, run,
                      send_request, subscribe, wait_until)
from rawws import RawWS, ws_path
from wsgw2 import (HISTORY_ROOMY, HISTORY_SMALL, SUBPROTOCOL, RawV2, Ticker, assert_exact,
                   numbered, numbers, offset_of, open_v2, tag_of, valid_position)
from wsgw2 import own_vhost  # noqa: F401  (a fixture: vhost below uses it)

G1, G2 = "jobs-status_changed", "jobs-summary"
NOISE = "schedules-changed"   # emitted to, joined by nobody
BOTH = {"jobs": ["status_changed", "summary"]}
HISTORY_STREAM = "websocket.history"


@pytest.fixture
def vhost(own_vhost):
    return own_vhost


def emit_all(cluster, group_texts):
    em = cluster.pika_emitter()
    try:
        for g, text in group_texts:
            em.emit(g, text)
    finally:
        em.close()


# ---- (a) negotiation ---------------------------------------------------------

TEXTS = ['{"status": "running", "id": 1}',
         'not JSON at all',
         'quotes " and \\ backslash, newline\nand tab\t and \x01 control',
         'unicode \u00e9 \u2603 \U0001d11e',
         '{"a":[1,2,{"b":null}],"c":"</script>"}']


def test_wsgw2_and_the_old_protocol_side_by_side_on_one_gateway(cluster):
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        v2 = await open_v2(gw, user=7)
        # wsgw.2 among others: the gateway names it.
        v2b = await open_v2(gw, user=8, protocols=("chat", SUBPROTOCOL))
        old = await open_client(gw, user=9)
        # Listing only an unknown protocol: no header, the old protocol.
        other = await connect(gw.url(token=jwt_for(10)), subprotocols=["chat"])
        assert other.subprotocol is None
        assert await recv_json(other) == {"accept": True, "user": 10}
        for c in (v2, v2b):
            errors, reply = await c.subscribe({"jobs": ["status_changed"]})
            assert errors == [] and "recovery" not in reply, reply
            assert set(reply) == {"groups_current", "groups_joined", "groups_left",
                                  "positions"}, reply
        for ws in (old, other):
            errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
            # byte for byte the old reply: no positions
            assert reply == {"groups_current": [G1], "groups_joined": [G1],
                             "groups_left": []}, reply
        await asyncio.to_thread(emit_all, cluster, [(G1, t) for t in TEXTS])
        for ws in (old, other):
            assert [await recv_text(ws) for _ in TEXTS] == TEXTS
        for c in (v2, v2b):
            evs = await c.take(len(TEXTS))
            assert [e.text for e in evs] == TEXTS
            assert {e.group for e in evs} == {G1}
        # The same event has the same position on every connection.
        assert [e.position for e in v2.events] == [e.position for e in v2b.events]
        # positions is not a key of the old protocol.
        for ws in (old, other):
            req = json.dumps({"groups": {"jobs": ["summary"]}, "positions": {}})
            assert await send_request(ws, req) == {"error": "unknown key: positions"}
        await asyncio.gather(v2.close(), v2b.close(), old.close(), other.close())
    run(main())

    # The 101 itself: the header names wsgw.2 when listed, is absent otherwise.
    with RawWS(gw.port, ws_path("/websocket/", jwt_for(7)),
               headers={"Sec-WebSocket-Protocol": f"chat, {SUBPROTOCOL}"}) as ws:
        assert ws.response.header("sec-websocket-protocol") == SUBPROTOCOL
    with RawWS(gw.port, ws_path("/websocket/", jwt_for(7))) as ws:
        assert ws.response.header("sec-websocket-protocol") is None


def test_with_history_off_wsgw2_is_not_chosen(cluster):
    cluster.worker()
    gw = cluster.gateway("--history.enabled=false")

    async def main():
        ws = await connect(gw.url(token=jwt_for(7)), subprotocols=[SUBPROTOCOL])
        assert ws.subprotocol is None, "wsgw.2 chosen with the history off"
        assert await recv_json(ws) == {"accept": True, "user": 7}
        await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(cluster.emit, G1, '{"plain": 1}')
        assert await recv_text(ws) == '{"plain": 1}'
        await ws.close()
        # A browser that offers subprotocols fails a 101 that names none:
        # offering wsgw.1 too gets it answered, and the old protocol.
        ws = await connect(gw.url(token=jwt_for(7)), subprotocols=[SUBPROTOCOL, "wsgw.1"])
        assert ws.subprotocol == "wsgw.1", ws.subprotocol
        assert await recv_json(ws) == {"accept": True, "user": 7}
        await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(cluster.emit, G1, '{"plain": 2}')
        assert await recv_text(ws) == '{"plain": 2}'
        await ws.close()
    run(main())


def test_wsgw1_names_the_old_protocol_and_wsgw2_wins_when_offered_too(cluster):
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        ws = await connect(gw.url(token=jwt_for(7)), subprotocols=["wsgw.1", SUBPROTOCOL])
        assert ws.subprotocol == SUBPROTOCOL, ws.subprotocol
        await ws.close()
        ws = await connect(gw.url(token=jwt_for(7)), subprotocols=["wsgw.1"])
        assert ws.subprotocol == "wsgw.1", ws.subprotocol
        assert await recv_json(ws) == {"accept": True, "user": 7}
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert "positions" not in reply, reply
        await asyncio.to_thread(cluster.emit, G1, '{"plain": 3}')
        assert await recv_text(ws) == '{"plain": 3}'
        await ws.close()
    run(main())


# ---- (b) positions in every reply --------------------------------------------

def test_every_reply_carries_a_position_for_every_current_group(cluster):
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        c = await open_v2(gw)
        _, r1 = await c.subscribe({"jobs": ["status_changed", "summary"], "schedules": "x"})
        assert set(r1["positions"]) == {G1, G2, "schedules"}
        await asyncio.to_thread(emit_all, cluster, [(G1, numbered(G1, 1)), (G2, numbered(G2, 1))])
        e1, e2 = await c.take(2)
        # an event comes after the reply's position of its group
        for e in (e1, e2):
            assert e.offset > offset_of(r1["positions"][e.group]), (e, r1)
        _, r2 = await c.subscribe({"jobs": ["summary"], "inventories": ["status_changed"]})
        assert r2["groups_left"] == [G1, "schedules"]
        assert set(r2["positions"]) == {G2, "inventories-status_changed"}
        # nothing new in G2: not before what the client already has
        assert offset_of(r2["positions"][G2]) >= e2.offset
        _, r3 = await c.subscribe({})
        assert r3["positions"] == {}
        # an error reply carries nothing of the kind
        errors, reply = await c.request('{"groups": ')
        assert errors == [{"error": "invalid JSON"}] and reply is None
        await c.close()
    run(main())


# ---- (c) reconnecting to another gateway process -----------------------------

def test_reconnect_to_another_gateway_gets_the_missed_1000_then_live(cluster):
    """A client on gateway 1 is gone 5 s while 1,000 events are emitted to
    its two groups (and more to a group it is not in), then reconnects to
    gateway 2 with its positions while events keep coming: it gets every
    event after its last one exactly once, in order, then live, with no
    gap or duplicate at the seam. A witness that stays on gateway 1 sees
    the same events at the same positions."""
    cluster.worker()
    gw1 = cluster.gateway()
    gw2 = cluster.gateway()
    ticker = Ticker(cluster.amqp_url, [G1, G2, NOISE], rate=300)  # 200/s to the client's groups
    missed = 1000

    async def main():
        witness = await open_v2(gw1, user=2, name="witness")
        await witness.subscribe(BOTH)
        c1 = await open_v2(gw1, user=7, name="before")
        _, r = await c1.subscribe(BOTH)
        assert "recovery" not in r
        ticker.start()
        await c1.take(100)
        await c1.close()
        at_close = ticker.total([G1, G2])
        kept = dict(c1.positions)
        last = {g: (numbers(c1.events, g) or [0])[-1] for g in (G1, G2)}
        t0 = time.monotonic()
        await asyncio.to_thread(ticker.wait_total, at_close + missed, [G1, G2], 30)
        away = time.monotonic() - t0
        c2 = await open_v2(gw2, user=7, name="after")
        _, r = await c2.subscribe(BOTH, positions=kept)
        assert r["recovery"] == {G1: "ok", G2: "ok"}, r
        assert r["positions"] == kept, "a recovered group's reply position is the client's own"
        await asyncio.sleep(2)  # events keep coming across the seam
        final = ticker.stop()
        done = lambda t: all(numbers(t.events, g)[-1:] == [final[g]] for g in (G1, G2))  # noqa
        await c2.until(done, 60, "every event up to the last emitted")
        await witness.until(done, 60, "every event up to the last emitted")
        print(f"away {away:.1f}s; {at_close} events before the close, "
              f"{sum(final[g] for g in (G1, G2)) - sum(last.values())} after the client's last, "
              f"final {final}")
        for g in (G1, G2):
            assert_exact(numbers(c1.events, g) + numbers(c2.events, g), 1, final[g],
                         f"{g} across the reconnect")
            assert_exact(numbers(witness.events, g), 1, final[g], f"{g} at the witness")
        assert not c2.t.notices, c2.t.notices
        assert sum(final[g] - last[g] for g in (G1, G2)) >= missed
        seen = {(e.group, e.n()): e.position for e in witness.events}
        for e in c2.events:
            assert seen[(e.group, e.n())] == e.position, \
                f"gateway 2 gave {e} another position than gateway 1 ({seen[(e.group, e.n())]})"
        await asyncio.gather(c2.close(), witness.close())
    try:
        run(main(), timeout=180)
    finally:
        if ticker.is_alive():
            ticker.stop()


def test_recovery_with_nothing_missed_replays_nothing(cluster):
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        c1 = await open_v2(gw)
        await c1.subscribe(BOTH)
        await asyncio.to_thread(emit_all, cluster, [(G1, numbered(G1, 1))])
        await c1.take(1)
        kept = dict(c1.positions)
        await c1.close()
        c2 = await open_v2(gw)
        _, r = await c2.subscribe(BOTH, positions=kept)
        assert r["recovery"] == {G1: "ok", G2: "ok"} and r["positions"] == kept, r
        await c2.quiet(1.0)
        await asyncio.to_thread(emit_all, cluster, [(G2, numbered(G2, 1))])
        (e,) = await c2.take(1)
        assert (e.group, e.n()) == (G2, 1)
        await c2.close()
    run(main())


# ---- (d) bad positions -------------------------------------------------------

GARBAGE = ["", "garbage", "12", "-0123456789ab", "01-0123456789ab", "1-0123456789AB",
           "1-0123456789a", "1-0123456789abc", " 1-0123456789ab", "1-0123456789ab ",
           "1_0123456789ab", "+1-0123456789ab", "99999999999999999999-0123456789ab",
           "9223372036854775808-0123456789ab", "1-0123456789ag", 12, None, True, [], {}]


def test_malformed_positions_refuse_the_request_as_a_whole(cluster):
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        c = await open_v2(gw)
        await c.subscribe({"jobs": ["summary"]})
        for bad in GARBAGE:
            errors, reply = await c.request({"groups": BOTH, "positions": {G1: bad}})
            assert (errors, reply) == ([{"error": f"invalid position for {G1}"}], None), bad
        for bad in ([], "x", 1, None, [[G1, "1-0123456789ab"]]):
            errors, reply = await c.request({"groups": BOTH, "positions": bad})
            assert (errors, reply) == ([{"error": "positions must be an object"}], None), bad
        errors, reply = await c.request({"groups": {"jobs": ["summary"]},
                                         "positions": {G1: "1-0123456789ab"}})
        assert (errors, reply) == ([{"error": f"position for a group not requested: {G1}"}],
                                   None)
        # none of that changed the membership
        _, r = await c.subscribe({"jobs": ["summary"]})
        assert r["groups_joined"] == [] and r["groups_left"] == [], r
        # a refused group's position is dropped: no recovery for it
        errors, r = await c.subscribe({"jobs": ["summary"], "job_events": [42]},
                                      positions={G2: r["positions"][G2],
                                                 "job_events-42": r["positions"][G2]})
        assert errors == [{"error": "access denied to channel job_events for resource id 42"}]
        assert r["recovery"] == {G2: "ok"}, r
        await c.close()
    run(main())


def test_foreign_future_and_made_up_positions_are_unknown(cluster):
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        c = await open_v2(gw)
        await c.subscribe(BOTH)
        await asyncio.to_thread(emit_all, cluster, [(g, numbered(g, i)) for i in range(1, 4)
                                                    for g in (G1, G2)])
        await c.take(6)
        p1, p2 = c.positions[G1], c.positions[G2]
        bad = {
            "foreign": p1,                                          # G1's, named for G2
            "future": f"{offset_of(p2) + 1_000_000}-{tag_of(p2)}",  # ahead of the history
            "next": f"{offset_of(p2) + 1}-{tag_of(p2)}",            # the offset after the tip
            "retagged": f"{offset_of(p2)}-{int(tag_of(p2), 16) ^ 1:012x}",  # made up
        }
        for why, pos in bad.items():
            d = await open_v2(gw, name=why)
            _, r = await d.subscribe(BOTH, positions={G1: p1, G2: pos})
            assert r["recovery"] == {G1: "ok", G2: "unknown"}, (why, r)
            assert r["positions"][G1] == p1
            assert valid_position(r["positions"][G2]) and r["positions"][G2] != pos, (why, r)
            # live from the reply's position: nothing replayed, new events arrive
            await d.quiet(0.5)
            await asyncio.to_thread(cluster.emit, G2, numbered(G2, 100))
            (e,) = await d.take(1)
            assert (e.group, e.n()) == (G2, 100)
            await c.take(1)
            await d.close()
        await c.close()
    run(main())


def test_a_position_older_than_the_history_is_expired(cluster):
    """The gateway keeps 256 KiB and the stream 1 MiB (HISTORY_SMALL); after
    8 MiB more the first event's position is expired."""
    cluster.worker()
    gw = cluster.gateway(*HISTORY_SMALL)

    async def main():
        c = await open_v2(gw)
        await c.subscribe(BOTH)
        await asyncio.to_thread(emit_all, cluster, [(G1, numbered(G1, 1))])
        await c.take(1)
        old = dict(c.positions)
        await c.close()
        n = 4000
        await asyncio.to_thread(cluster.emit_stdin, G1,
                                [numbered(G1, i, pad=2048) for i in range(2, n + 2)])
        w = await open_v2(gw, name="probe")  # the gateway has read all of it
        await w.subscribe({"jobs": ["summary"]})
        await asyncio.to_thread(cluster.emit, G2, numbered(G2, 1))
        await w.take(1)
        await w.close()
        d = await open_v2(gw)
        _, r = await d.subscribe(BOTH, positions=old)
        assert r["recovery"] == {G1: "expired", G2: "expired"}, r
        assert offset_of(r["positions"][G1]) > offset_of(old[G1]) + n, r
        await d.quiet(1.0)  # nothing of the old events
        await asyncio.to_thread(cluster.emit, G1, numbered(G1, n + 2))
        (e,) = await d.take(1)
        assert e.n() == n + 2
        await d.close()
    run(main(), timeout=180)


# ---- (e) the history deleted and recreated -----------------------------------

def test_history_deleted_under_the_gateway(cluster):
    """The stream is deleted while clients are connected: the gateway
    recreates it; positions of the old history are unknown; a connected
    wsgw.2 client is told (notice, "unknown"); events flow again to old and
    new protocol clients; positions of the new history recover."""
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        v2 = await open_v2(gw)
        await v2.subscribe({"jobs": ["status_changed"]})
        old = await open_client(gw, user=8)
        await subscribe(old, {"jobs": ["status_changed"]})
        await asyncio.to_thread(emit_all, cluster, [(G1, numbered(G1, i)) for i in range(1, 21)])
        evs = await v2.take(20)
        for _ in range(20):
            await recv_text(old)
        early, late = evs[4].position, evs[-1].position

        def delete():
            conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_url))
            conn.channel().queue_delete(HISTORY_STREAM)
            conn.close()
        await asyncio.to_thread(delete)
        # Probes until one arrives: those emitted while the stream is gone,
        # or before the gateway reads the new one live, are lost.
        em = await asyncio.to_thread(PikaEmitter, cluster.amqp_url)
        n, got = 1000, None
        deadline = time.monotonic() + 60
        while got is None:
            assert time.monotonic() < deadline, "no event within 60s of deleting the stream"
            n += 1
            await asyncio.to_thread(em.emit, G1, numbered(G1, n))
            try:
                got = await asyncio.wait_for(old.recv(), 0.5)
            except asyncio.TimeoutError:
                pass
        first = json.loads(got)["n"]
        # then 40 more, so that the new stream passes the old positions' offsets
        for i in range(n + 1, n + 41):
            await asyncio.to_thread(em.emit, G1, numbered(G1, i))
        await asyncio.to_thread(em.close)
        rest = [json.loads(await recv_text(old))["n"] for _ in range(n + 40 - first)]
        assert [first] + rest == list(range(first, n + 41)), "the old client after recreation"
        await v2.until(lambda t: t.events and t.events[-1].n() == n + 40, 30, "the new events")
        # log: the reply, 20 events, then the notice, then the new events
        kinds = [k for k, _ in v2.t.log]
        assert kinds[:21] == ["reply"] + ["event"] * 20, kinds[:22]
        assert kinds[21] == "notice" and v2.t.log[21][1]["recovery"] == {G1: "unknown"}, \
            f"want a notice that G1's events were lost, before the new events: {v2.t.log[21:23]}"
        assert kinds[22:] == ["event"] * (len(kinds) - 22), kinds[21:]
        assert numbers(v2.events[20:], G1) == list(range(first, n + 41)), \
            "the wsgw.2 client after recreation"
        for pos in (early, late):
            d = await open_v2(gw, name="old-position")
            _, r = await d.subscribe({"jobs": ["status_changed"]}, positions={G1: pos})
            assert r["recovery"] == {G1: "unknown"}, (pos, r)
            await d.quiet(0.5)
            await d.close()
        # a position of the new history recovers
        mid = v2.events[-11].position
        d = await open_v2(gw, name="new-position")
        _, r = await d.subscribe({"jobs": ["status_changed"]}, positions={G1: mid})
        assert r["recovery"] == {G1: "ok"}, r
        assert numbers(await d.take(10), G1) == list(range(n + 31, n + 41))
        await asyncio.gather(d.close(), v2.close(), old.close())
    run(main(), timeout=120)


# ---- (f) a slow wsgw.2 reader ------------------------------------------------

SLOW_QUEUE = "--gateway.max_send_queue=64KiB"
FLOOD, PAD = 4000, 2048  # 8 MiB: far past the queue and the kernel buffers


def flood_and_wait(cluster, gw, start=1):
    """Emits FLOOD numbered events to G1 and waits until a fast wsgw.2
    reader on gw got them all (the gateway has dealt with each)."""
    async def fast():
        c = await open_v2(gw, user=2, name="fast")
        await c.subscribe({"jobs": ["status_changed"]})
        await asyncio.to_thread(cluster.emit_stdin, G1, [numbered(G1, i, PAD) for i in
                                                         range(start, start + FLOOD)])
        await c.until(lambda t: t.events and t.events[-1].n() == start + FLOOD - 1, 90,
                      "the whole flood")
        # A Python reader is no match for the gateway either: with a small
        # history it falls out too, and is told; otherwise it gets all.
        if not c.t.notices:
            assert_exact(numbers(c.events, G1), start, start + FLOOD - 1, "the fast reader")
        await c.close()
    run(fast(), timeout=120)


def read_all(slow, last, timeout=90):
    """Reads the slow client's messages until the event numbered last."""
    deadline = time.monotonic() + timeout
    while not (slow.t.events and slow.t.events[-1].n() == last):
        assert time.monotonic() < deadline, f"not all read in {timeout}s: {slow.t.log[-2:]}"
        kind, value = slow.next(timeout=30)
        assert kind != "close", f"the slow wsgw.2 reader was closed with {value}"


def test_slow_wsgw2_reader_catches_up_from_the_history(cluster):
    """Over max_send_queue a wsgw.2 client is not closed: once it reads
    again it gets every event, in order, once (the history holds them all)."""
    cluster.worker()
    gw = cluster.gateway(SLOW_QUEUE, *HISTORY_ROOMY)
    slow = RawV2(gw.port, user=7, rcvbuf=4096, mss=1024)
    try:
        slow.subscribe({"jobs": ["status_changed"]})
        flood_and_wait(cluster, gw)
        read_all(slow, FLOOD)  # fails on a close frame
        assert_exact(numbers(slow.t.events, G1), 1, FLOOD, "the slow reader")
        assert not [x for x in slow.t.notices if "expired" in x["recovery"].values()], \
            slow.t.notices
        cluster.emit(G1, numbered(G1, FLOOD + 1))
        kind, e = slow.next()
        assert kind == "event" and e.n() == FLOOD + 1
    finally:
        slow.close()


def test_slow_wsgw2_reader_out_of_the_history_gets_a_notice(cluster):
    """The same with a history of 256 KiB / 1 MiB against 8 MiB: the reader
    falls out of it, gets a notice that G1 expired at the gap, and every
    event otherwise, in order, once."""
    cluster.worker()
    gw = cluster.gateway(SLOW_QUEUE, *HISTORY_SMALL)
    slow = RawV2(gw.port, user=7, rcvbuf=4096, mss=1024)
    try:
        slow.subscribe({"jobs": ["status_changed"]})
        flood_and_wait(cluster, gw)
        read_all(slow, FLOOD)
        expired = [x for x in slow.t.notices if x["recovery"] == {G1: "expired"}]
        assert expired, f"no notice of the lost events: notices {slow.t.notices}"
        # Between notices each run is gapless; the gaps are at notices only.
        runs, cur = [], []
        for kind, value in slow.t.log:
            if kind == "event":
                cur.append(value.n())
            elif kind == "notice":
                runs.append(cur)
                cur = []
        runs.append(cur)
        flat = [n for r in runs for n in r]
        assert flat == sorted(set(flat)) and flat[0] == 1 and flat[-1] == FLOOD, \
            "events out of order or duplicated"
        for r in runs:
            if r:
                assert r == list(range(r[0], r[-1] + 1)), f"a gap without a notice in {r[:5]}..."
        assert len(flat) < FLOOD, "every event arrived, yet a notice said some expired"
        print(f"slow reader: {len(flat)} of {FLOOD} events, {len(slow.t.notices)} notice(s)")
    finally:
        slow.close()


def test_slow_wsgw2_reader_is_closed_1008_with_slow_client_close(cluster):
    cluster.worker()
    gw = cluster.gateway(SLOW_QUEUE, "--gateway.slow_client=close", *HISTORY_ROOMY)
    slow = RawV2(gw.port, user=7, rcvbuf=4096, mss=1024)
    try:
        slow.subscribe({"jobs": ["status_changed"]})
        # No fast reader here: with slow_client=close any reader is cut at
        # 64 KiB behind, as on the old protocol.
        cluster.emit_stdin(G1, [numbered(G1, i, PAD) for i in range(1, FLOOD + 1)])
        wait_until(lambda: "event=conn_slow" in gw.log(), 30, "the gateway to give up on it")
        while True:
            kind, value = slow.next(timeout=30)
            if kind == "close":
                assert value == 1008
                break
            assert kind == "event"
        assert_exact(numbers(slow.t.events, G1), 1, len(slow.t.events), "before the close")
    finally:
        slow.close()


# ---- (g) the storm -----------------------------------------------------------

def test_1000_clients_recover_at_once(cluster):
    """1,000 wsgw.2 clients of a gateway that dies reconnect at once to
    another with their positions: every one gets every event it missed,
    once, in order, then a live one."""
    cluster.worker()
    gw1 = cluster.gateway()
    gw2 = cluster.gateway()
    n_clients, live, missed = 1000, 10, 50  # per group

    async def main():
        sem = asyncio.Semaphore(50)

        async def first(i):
            async with sem:
                c = await open_v2(gw1, user=1000 + i, open_timeout=60)
                await c.subscribe(BOTH, timeout=30)
                return c
        clients = await asyncio.gather(*(first(i) for i in range(n_clients)))
        await asyncio.to_thread(emit_all, cluster, [(g, numbered(g, i)) for i in
                                                    range(1, live + 1) for g in (G1, G2)])
        await asyncio.gather(*(c.take(2 * live, 120) for c in clients))
        kept = [dict(c.positions) for c in clients]
        gw1.kill()
        await asyncio.gather(*(c.ws.wait_closed() for c in clients))
        await asyncio.to_thread(emit_all, cluster, [(g, numbered(g, i)) for i in
                                                    range(live + 1, live + missed + 1)
                                                    for g in (G1, G2)])
        t0 = time.monotonic()

        async def again(i):
            c = await open_v2(gw2, user=1000 + i, open_timeout=120, name=f"storm{i}")
            _, r = await c.subscribe(BOTH, positions=kept[i], timeout=120)
            assert r["recovery"] == {G1: "ok", G2: "ok"}, r
            await c.take(2 * missed, 120)
            return c
        back = await asyncio.gather(*(again(i) for i in range(n_clients)))
        took = time.monotonic() - t0
        await asyncio.to_thread(emit_all, cluster, [(G1, numbered(G1, live + missed + 1))])
        for c in back:
            (e,) = await c.take(1, 60)
            assert e.n() == live + missed + 1
            for g in (G1, G2):
                assert_exact(numbers(c.events, g), live + 1, live + missed + (g == G1),
                             f"{c.t.name} {g}")
        print(f"{n_clients} clients reconnected and recovered {2 * missed} events each "
              f"in {took:.2f}s")
        await asyncio.gather(*(c.close() for c in back))
    run(main(), timeout=400)
