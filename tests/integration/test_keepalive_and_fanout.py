"""Keepalive, the slow-client close and the fanout's completeness, each in
seconds (issue 11: bugs planted one at a time that `make test` let through).

Owns: the gateway's side of keepalive (a ping goes out after
gateway.ping_interval of client silence; a pong keeps the connection; a
client silent for gateway.ping_timeout is cut: TCP closed without a close
frame, 1006, one conn_timeout record, wsgw_gateway_ping_timeouts_total + 1),
the close 1008 of a slow client coming right behind what the kernel already
holds (the frames still queued in the gateway are dropped, not sent first),
and every byte of a stream of numbered events reaching each client in order;
wsgw.2's heartbeat text beside each ping (none on the old protocol).

The clients are raw sockets (rawws.RawWS, faults.RawReader): a websocket
library would answer the gateway's pings by itself and read on its own.
Must not: take more than a few seconds per test (they run in `make test`,
twice: normal and sanitizer builds).
"""

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import jwt_for, wait_until
from faults import ParallelRead, RawReader, first_difference, records, text_frame
from rawws import CLOSE, PING, PONG, TEXT, RawWS, frame, ws_path
from test_metrics import Scrape

GROUP = "jobs-status_changed"
SUBSCRIBE = json.dumps({"groups": {"jobs": ["status_changed"]}})
# gatewayd checks its deadlines on a 100 ms tick (gw_server.c GW_TICK_MS).
# A cut is at once (the socket is closed in the tick); a ping is only queued
# there and written in the loop's check phase, which libuv reaches after its
# next poll: up to a tick later when no other I/O wakes the loop.
TICK = 0.1
# What a busy machine (or ASan) may add to a deadline on top of that.
SLACK = 0.35
# How much earlier than the gateway's clock a deadline may look: its clock
# starts at the 101, the client's once the accept message has arrived.
EARLY = 0.15


def open_raw(gw, user=7, **kw):
    """A raw websocket on the events route after its accept message; the
    gateway's silence clock starts at the 101 (gw_conn_upgrade)."""
    ws = RawWS(gw.port, ws_path("/websocket/", jwt_for(user)), **kw)
    assert json.loads(ws.recv_message()[1]) == {"accept": True, "user": user}
    return ws


def quiet_scrape(gw):
    """The gateway's metrics once it has no connection left (so that closes
    still under way are counted before, not during, what a test measures)."""
    return wait_until(lambda: (m := Scrape(gw.metrics_port))("wsgw_gateway_connections") == 0
                      and m, 10, "the gateway to have no connection", interval=0.1)


# ---- keepalive ---------------------------------------------------------------

def test_silent_client_is_cut_at_ping_timeout_with_1006(cluster):
    """A client that never answers pings: the gateway pings it once, then
    closes the TCP connection ping_timeout after the last byte it received,
    without a close frame (nobody is there to read one)."""
    interval, timeout = 0.3, 1.0
    cluster.worker()
    gw = cluster.gateway(f"--gateway.ping_interval={int(interval * 1000)}ms",
                         f"--gateway.ping_timeout={int(timeout * 1000)}ms",
                         "--log.level=debug")  # conn_closed and its code are debug records
    before = quiet_scrape(gw)  # the readiness probe's connection is counted
    ws = open_raw(gw)
    t0 = time.monotonic()  # the 101 and the accept came with nothing after: silence
    with ws:
        pings = 0
        try:
            while True:
                left = t0 + timeout + TICK + SLACK + 0.5 - time.monotonic()
                f = ws.read_frame(timeout=max(left, 0.01))
                assert f.opcode == PING, f"expected only pings, got {f!r}"
                pings += 1
        except EOFError:
            cut = time.monotonic() - t0
        except TimeoutError:
            pytest.fail(f"still connected {time.monotonic() - t0:.2f}s after the last client "
                        f"byte (ping_timeout {timeout}s; {pings} ping(s) unanswered)")
        print(f"cut {cut:.3f}s after the last client byte (ping_timeout {timeout}s), "
              f"{pings} ping(s) unanswered before")
        assert pings == 1, f"{pings} pings: one is due at ping_interval, then only the cut"
        assert timeout - EARLY <= cut <= timeout + TICK + SLACK, cut
    (rec,) = wait_until(lambda: records(gw, "conn_timeout"), 5, "the conn_timeout record")
    closed = wait_until(lambda: [r for r in records(gw, "conn_closed") if r["id"] == rec["id"]],
                        5, "the conn_closed record of the timed-out connection")
    assert closed[0]["code"] == "1006", closed
    after = quiet_scrape(gw)
    assert after("wsgw_gateway_ping_timeouts_total") \
        - before("wsgw_gateway_ping_timeouts_total") == 1
    assert after("wsgw_gateway_connections_closed_total", reason="abnormal") \
        - before("wsgw_gateway_connections_closed_total", reason="abnormal") == 1


def test_wsgw2_heartbeat_text_comes_with_each_ping_and_never_on_the_old_protocol(cluster):
    """wsgw.2 (docs/PROTOCOL.md, "Heartbeat"): a browser cannot see pings, so
    each keepalive ping to a wsgw.2 connection comes right after the text
    {"heartbeat": N}, N = ping_interval in ms, and again after each pong's
    ping_interval of silence. An old-protocol connection on the same gateway
    gets the pings alone, byte for byte as before."""
    interval, timeout = 0.3, 3.0
    cluster.worker()
    gw = cluster.gateway(f"--gateway.ping_interval={int(interval * 1000)}ms",
                         f"--gateway.ping_timeout={int(timeout * 1000)}ms")
    v2 = RawWS(gw.port, ws_path("/websocket/", jwt_for(7)),
               headers={"Sec-WebSocket-Protocol": "wsgw.2"})
    old = open_raw(gw)
    with v2, old:
        assert v2.response.header("sec-websocket-protocol") == "wsgw.2"
        assert json.loads(v2.recv_message()[1]) == {"accept": True, "user": 7}
        for round_ in range(3):
            f = v2.read_frame(timeout=interval + 2 * TICK + SLACK)
            assert f.opcode == TEXT and json.loads(f.payload) == {"heartbeat": int(interval * 1000)}, \
                f"round {round_}: expected the heartbeat text first, got {f!r}"
            p = v2.read_frame(timeout=1.0)
            assert p.opcode == PING, f"round {round_}: the ping after the heartbeat, got {p!r}"
            v2.send(frame(PONG, p.payload))
            f = old.read_frame(timeout=interval + 2 * TICK + SLACK)
            assert f.opcode == PING, f"old protocol, round {round_}: only pings, got {f!r}"
            old.send(frame(PONG, f.payload))


def test_ping_after_ping_interval_and_a_pong_keeps_the_connection(cluster):
    """The first ping comes ping_interval after the last client byte (plus
    up to two ticks: TICK); a client that answers every ping with its pong stays
    connected well past ping_timeout and can still subscribe."""
    interval, timeout = 0.3, 0.8
    cluster.worker()
    gw = cluster.gateway(f"--gateway.ping_interval={int(interval * 1000)}ms",
                         f"--gateway.ping_timeout={int(timeout * 1000)}ms")
    ws = open_raw(gw)
    t0 = time.monotonic()
    with ws:
        try:
            f = ws.read_frame(timeout=interval + 2 * TICK + SLACK)
        except (TimeoutError, EOFError) as e:
            pytest.fail(f"no ping {time.monotonic() - t0:.2f}s after the last client byte "
                        f"(ping_interval {interval}s): {e}")
        first = time.monotonic() - t0
        assert f.opcode == PING, f
        assert interval - EARLY <= first <= interval + 2 * TICK + SLACK, first
        # Three ping_timeouts of answering: never cut, and pinged again each
        # time the silence after a pong reaches ping_interval.
        end = time.monotonic() + 3 * timeout
        pings = 1
        ws.send(frame(PONG, f.payload))  # masked, as a client's frames are
        while time.monotonic() < end:
            try:
                f = ws.read_frame(timeout=interval + 2 * TICK + SLACK)
            except EOFError:
                pytest.fail(f"cut after {time.monotonic() - t0:.2f}s although it answered "
                            f"{pings} ping(s)")
            except TimeoutError:
                pytest.fail(f"no ping within ping_interval of pong {pings}")
            assert f.opcode == PING, f
            ws.send(frame(PONG, f.payload))
            pings += 1
        print(f"first ping after {first:.3f}s; {pings} pings answered over "
              f"{time.monotonic() - t0:.2f}s")
        ws.send_frame(TEXT, SUBSCRIBE)
        while (f := ws.read_frame(timeout=5)).opcode == PING:  # pings go on meanwhile
            ws.send(frame(PONG, f.payload))
        assert f.opcode == TEXT, f
        assert json.loads(f.payload)["groups_current"] == [GROUP], f
    assert not records(gw, "conn_timeout")


# ---- the slow client's close -------------------------------------------------

# gw_send.c writes at most this many queued frames per writev (GW_IOV_MAX):
# the frames of a write in progress are the only queued ones a close may
# come behind.
WRITE_FRAMES = 64


def kernel_held(ws, gw_port):
    """Bytes of the connection that the gateway has handed to the kernel and
    the client has not read: the gateway socket's send queue (unsent and
    unacknowledged) plus the client socket's receive queue (/proc/net/tcp)."""
    cport = ws.sock.getsockname()[1]
    tx = rx = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        lport, rport = (int(a.split(":")[1], 16) for a in f[1:3])
        txq, rxq = (int(q, 16) for q in f[4].split(":"))
        if (lport, rport) == (gw_port, cport):
            tx = txq
        elif (lport, rport) == (cport, gw_port):
            rx = rxq
    assert tx is not None and rx is not None, "the connection is not in /proc/net/tcp"
    return tx + rx


def settled(measure, timeout=5.0):
    """measure()'s value once two readings 100 ms apart agree."""
    deadline = time.monotonic() + timeout
    last = measure()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now, last = last, measure()
        if now == last:
            return last
    pytest.fail(f"{measure} did not settle within {timeout}s")


def test_slow_client_gets_1008_right_behind_what_the_kernel_holds(cluster):
    """A client that stops reading while a flood goes to its group: once its
    queue in the gateway would pass max_send_queue it is closed 1008 at
    once, and the frames still queued are dropped: the close frame comes
    right behind what the kernel already holds (and a write in progress),
    so a client that reads no more than that still gets it. Queued behind
    the 256 KiB instead, it would reach the client only once it caught up."""
    cap = 256 * 1024
    cluster.worker()
    gw = cluster.gateway(f"--gateway.max_send_queue={cap}")
    # A small window and small segments: the kernels hold ~100 KiB, not the
    # megabytes loopback's send buffer grows to (rawws.RawConn, mss).
    ws = open_raw(gw, rcvbuf=4096, mss=1000)
    ws.send_frame(TEXT, SUBSCRIBE)
    assert json.loads(ws.recv_message()[1])["groups_current"] == [GROUP]
    n, first, pad = 10_000, 2_000, "x" * 80
    events = [json.dumps({"n": i, "pad": pad}) for i in range(n)]
    size = len(text_frame(events[-1].encode()))  # the largest frame
    emitted = sum(len(text_frame(e.encode())) for e in events)
    # First what fills the kernels and part of the queue (under the cap even
    # if the kernels took nothing): the client is now a reader that lags.
    cluster.emit_stdin(GROUP, events[:first])
    assert sum(len(text_frame(e.encode())) for e in events[:first]) < cap
    lagging = settled(lambda: kernel_held(ws, gw.port))
    assert lagging > 0 and not records(gw, "conn_slow"), lagging
    # Then the rest: the queue passes the cap.
    failed = []

    def emit_rest():
        try:
            cluster.emit_stdin(GROUP, events[first:])
        except BaseException as e:  # pytest.fail too: reported by the test below
            failed.append(e)
    t0 = time.monotonic()
    emitter = threading.Thread(target=emit_rest)
    emitter.start()
    try:
        (slow,) = wait_until(lambda: records(gw, "conn_slow"), 10, "the conn_slow record",
                             interval=0.01)
        took = time.monotonic() - t0
    finally:
        emitter.join(60)
    assert not failed, failed
    # The client has read nothing since the subscription: what it can get
    # now is what the kernel holds, steady once the gateway is blocked.
    held = settled(lambda: kernel_held(ws, gw.port))
    budget = held + WRITE_FRAMES * size  # what a client still slow reads
    with ws:
        got, code = 0, None
        while code is None:
            f = ws.read_frame(timeout=5)
            if f.opcode == CLOSE:
                code = f.close_code()[0]
                break
            assert f.opcode == TEXT, f
            got += len(text_frame(f.payload))
            assert got <= budget, (
                f"no close within the {held} bytes the kernel held and a write of "
                f"{WRITE_FRAMES} frames: the close waited behind the unsent queue "
                f"(conn_slow unsent={slow['unsent']})")
        print(f"kernel held {lagging} before the overflow; conn_slow {took:.2f}s after it "
              f"began (unsent={slow['unsent']}); kernel held {held} then; {got} bytes "
              f"before the close; {emitted} emitted")
        assert code == 1008
        assert got < emitted / 4, "the frames queued after the cap were sent"
        assert ws.finish_close(), "the gateway kept the TCP connection after the close"
    assert took < 5, f"conn_slow came {took:.2f}s after the overflow began"


# ---- fanout completeness -------------------------------------------------------

def test_every_event_reaches_every_client_complete_and_in_order(cluster):
    """20,000 numbered events to three clients: each client's byte stream
    is exactly the 20,000 frames in order (one lost delivery in a thousand
    shows up as a difference)."""
    cluster.worker()
    gw = cluster.gateway()
    n_events, n_clients = 20_000, 3
    events = [f'{{"n":{i}}}' for i in range(n_events)]
    expected = b"".join(text_frame(e.encode()) for e in events)
    readers = [RawReader(gw.port, 100 + i) for i in range(n_clients)]
    reading = ParallelRead(readers, len(expected), time.monotonic() + 60)
    t0 = time.monotonic()
    cluster.emit_stdin(GROUP, events)  # returns once the broker has them all
    results = reading.join(time.monotonic() + 5)
    took = time.monotonic() - t0
    for r in readers:  # a reader still waiting has lost bytes: end its wait
        with contextlib.suppress(OSError):
            r.sock.shutdown(socket.SHUT_RDWR)
    results = reading.join(time.monotonic() + 5)
    for r in readers:
        r.close()
    bad = [i for i, r in enumerate(results) if r != expected]
    for i in bad:
        r = results[i]
        print(f"client {i}: " + (first_difference(r, expected) if isinstance(r, bytes)
                                 else repr(r)))
    print(f"{n_events} events x {n_clients} clients in {took:.2f}s")
    assert not bad, f"{len(bad)} of {n_clients} clients did not get every event in order"
