"""Every limit, tested at its bound: exactly the limit passes, one more is
refused the documented way (docs/OPERATIONS.md lists them). One worker
serves the module (echo on, worker.max_groups=3); each test starts the
gateway whose limit it tests."""

import json
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import jwt_for, open_client, run, send_request, subscribe, wait_until
from rawws import (BINARY, CLOSE, PING, PONG, TEXT, RawConn, RawWS, finish_module_cluster,
                   frame, metric, module_cluster, scrape, upgrade_request, ws_path)

MAX_GROUPS = 3


@pytest.fixture(scope="module")
def cluster_m(broker, vhost, request, tmp_path_factory):
    c = module_cluster(broker, vhost, request, tmp_path_factory)
    c.wk = c.worker("--worker.echo=true", f"--worker.max_groups={MAX_GROUPS}")
    yield c
    finish_module_cluster(c)


@pytest.fixture
def gateway(cluster_m):
    """gateway(*flags): a gateway for this test only, stopped (and checked
    for sanitizer reports) at its end."""
    started = []

    def start(*flags):
        gw = cluster_m.gateway("--gateway.echo=true", *flags)
        started.append(gw)
        return gw
    yield start
    for gw in started:
        problem = gw.stop()
        gw.expected_exit = True  # stopped here; the module's stop skips it
        assert problem is None, problem


@pytest.fixture
def stopped_worker(cluster_m):
    """stop(): SIGSTOP the module's worker until the end of the test."""
    wk = cluster_m.wk
    stopped = []

    def stop():
        wk.proc.send_signal(signal.SIGSTOP)
        stopped.append(True)
    yield stop
    if stopped:
        wk.proc.send_signal(signal.SIGCONT)


def echo_ws(gw, **kw):
    return RawWS(gw.port, ws_path(token=jwt_for(1)), **kw)


def metrics(gw):
    port = getattr(gw, "metrics_port", None)
    return scrape(port) if port else None


def settle_connections(gw, n=0):
    """Until the gateway holds n sockets (readiness probes closed)."""
    if metrics(gw) is not None:
        wait_until(lambda: metric(metrics(gw), "wsgw_gateway_connections") == n, 10,
                   f"{n} open connections on {gw.name}")


def close_code(ws):
    code = ws.expect_close(skip_data=True)[0]
    assert ws.finish_close(), "the TCP connection stayed open after the close"
    return code


# ---- message and frame size ------------------------------------------------

SIZE_FLAGS = ("--gateway.max_message=1000", "--gateway.max_frame=600")


def test_frame_of_exactly_max_frame_is_echoed(gateway):
    gw = gateway(*SIZE_FLAGS)
    with echo_ws(gw) as ws:
        assert ws.echo(BINARY, b"f" * 600) == (BINARY, b"f" * 600)


def test_frame_one_byte_over_max_frame_is_closed_with_1009(gateway):
    gw = gateway(*SIZE_FLAGS)
    with echo_ws(gw) as ws:
        ws.send_frame(BINARY, b"f" * 601)
        assert close_code(ws) == 1009


def test_frame_header_announcing_a_huge_frame_is_closed_with_1009_at_once(gateway):
    gw = gateway(*SIZE_FLAGS)
    with echo_ws(gw) as ws:
        # the header and the first bytes of a 1 TiB payload: refused before
        # any room is made for it
        ws.send(bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"mask" + b"p" * 100)
        assert close_code(ws) == 1009


def test_message_of_exactly_max_message_in_fragments_is_echoed(gateway):
    gw = gateway(*SIZE_FLAGS)
    with echo_ws(gw) as ws:
        ws.send(frame(TEXT, b"m" * 600, fin=False) + frame(0, b"m" * 400))
        assert ws.recv_message() == (TEXT, b"m" * 1000)


def test_message_one_byte_over_max_message_is_closed_with_1009(gateway):
    gw = gateway(*SIZE_FLAGS)
    with echo_ws(gw) as ws:
        ws.send(frame(TEXT, b"m" * 600, fin=False) + frame(0, b"m" * 401))
        assert close_code(ws) == 1009


def test_the_default_message_limit_is_16_kib_and_echo_limits_stay_on_the_echo_route(gateway):
    """Defaults sized for subscription requests (16 KiB); the larger
    echo_max_message of make run and the conformance tests applies to
    /websocket/echo only."""
    gw = gateway("--gateway.echo_max_message=1MiB")
    with echo_ws(gw) as ws:
        assert ws.echo(BINARY, b"e" * 100_000) == (BINARY, b"e" * 100_000)
    with RawWS(gw.port, ws_path("/websocket/", token=jwt_for(1))) as ws:
        ws.send_frame(TEXT, b"m" * (16 * 1024 + 1))
        assert close_code(ws) == 1009
    with RawWS(gw.port, ws_path("/websocket/", token=jwt_for(1))) as ws:
        ws.send(frame(TEXT, b"m" * 10_000, fin=False) + frame(0, b"m" * 6_385))
        assert close_code(ws) == 1009


# ---- message rate ----------------------------------------------------------

RATE = 5

# One write carries all the messages, so the gateway handles them in one
# read callback, at one loop time: in one rate window whatever the clock.


def test_max_rate_messages_at_once_are_all_echoed(gateway):
    gw = gateway(f"--gateway.max_rate={RATE}")
    msgs = [b"r%d" % i for i in range(RATE)]
    with echo_ws(gw) as ws:
        ws.send(b"".join(frame(TEXT, m) for m in msgs))
        assert [ws.recv_message()[1] for _ in msgs] == msgs
        ws.send_frame(PING, b"still open")
        assert ws.read_frame().opcode == PONG


def test_one_message_over_max_rate_is_closed_with_1008(gateway):
    gw = gateway(f"--gateway.max_rate={RATE}")
    before = metrics(gw)
    with echo_ws(gw) as ws:
        ws.send(b"".join(frame(TEXT, b"r%d" % i) for i in range(RATE + 1)))
        assert close_code(ws) == 1008
    assert "event=conn_rate_limited" in gw.log()
    if before is not None:
        name = "wsgw_gateway_rate_limit_closes_total"
        assert metric(metrics(gw), name) == metric(before, name) + 1


# ---- messages waiting behind the one with a worker ------------------------

PENDING = 4


def test_max_pending_messages_behind_one_in_flight_are_all_echoed(gateway):
    gw = gateway(f"--gateway.max_pending={PENDING}")
    msgs = [b"p%d" % i for i in range(1 + PENDING)]  # one with the worker, PENDING queued
    with echo_ws(gw) as ws:
        ws.send(b"".join(frame(TEXT, m) for m in msgs))
        assert [ws.recv_message()[1] for _ in msgs] == msgs


def test_empty_messages_queued_behind_one_in_flight_are_echoed(gateway):
    """wslay hands an empty message over as a NULL pointer: queuing one must
    not touch it (UBSan stopped the sanitizer build here once)."""
    gw = gateway(f"--gateway.max_pending={PENDING}")
    msgs = [b"first", b"", b"", b"last"]
    with echo_ws(gw) as ws:
        ws.send(b"".join(frame(TEXT, m) for m in msgs))
        assert [ws.recv_message()[1] for _ in msgs] == msgs


def test_one_message_over_max_pending_is_closed_with_1008(gateway):
    gw = gateway(f"--gateway.max_pending={PENDING}")
    with echo_ws(gw) as ws:
        ws.send(b"".join(frame(TEXT, b"p%d" % i) for i in range(2 + PENDING)))
        assert close_code(ws) == 1008


def test_max_pending_with_the_worker_stopped(gateway, stopped_worker):
    gw = gateway(f"--gateway.max_pending={PENDING}", "--gateway.reply_timeout=30s")
    with echo_ws(gw) as ws:
        stopped_worker()
        for i in range(1 + PENDING):  # one at a time: none is answered
            ws.send_frame(TEXT, b"w%d" % i)
        ws.send_frame(PING, b"sync")  # every message before it was read
        assert ws.read_frame().opcode == PONG
        ws.send_frame(TEXT, b"one too many")
        assert close_code(ws) == 1008


# ---- connections -----------------------------------------------------------

def test_exactly_max_connections_are_accepted_and_one_more_gets_503(gateway):
    gw = gateway("--gateway.max_connections=3")
    settle_connections(gw)
    conns = [echo_ws(gw) for _ in range(3)]
    try:
        with RawConn(gw.port) as extra:
            extra.send(upgrade_request(ws_path(token=jwt_for(1)))[0])
            resp = extra.read_http()
            assert resp.status == 503 and resp.header("connection") == "close"
            assert extra.at_eof()
    finally:
        for ws in conns:
            ws.close()


def test_a_closed_connection_frees_its_slot(gateway):
    gw = gateway("--gateway.max_connections=2")
    settle_connections(gw)
    with echo_ws(gw):
        first = echo_ws(gw)
        first.send_frame(CLOSE, b"\x03\xe8")
        assert first.expect_close()[0] == 1000 and first.at_eof()
        first.close()
        settle_connections(gw, 1)
        with echo_ws(gw) as again:
            assert again.echo(TEXT, b"room again") == (TEXT, b"room again")


def test_exactly_max_per_client_are_accepted_and_one_more_gets_503(gateway):
    gw = gateway("--gateway.max_per_client=2")
    settle_connections(gw)
    with echo_ws(gw), echo_ws(gw), RawConn(gw.port) as extra:
        extra.send(upgrade_request(ws_path(token=jwt_for(1)))[0])
        resp = extra.read_http()
        assert resp.status == 503 and resp.header("connection") == "close"
        assert extra.at_eof()
    assert re.search(r"event=client_limit id=\d+ client=127\.0\.0\.1", gw.log())


# ---- worker deadlines --------------------------------------------------------

def test_no_worker_answering_the_connect_is_503_after_connect_timeout(gateway, stopped_worker):
    gw = gateway("--gateway.connect_timeout=500ms")
    stopped_worker()
    with RawConn(gw.port) as conn:
        start = time.monotonic()
        conn.send(upgrade_request(ws_path(token=jwt_for(1)))[0])
        resp = conn.read_http()
        elapsed = time.monotonic() - start
        assert resp.status == 503 and resp.header("connection") == "close"
        assert 0.45 <= elapsed < 3, elapsed
        assert conn.at_eof()
    assert "event=connect_timeout" in gw.log()


def test_no_worker_answering_a_message_gets_an_error_after_reply_timeout(gateway,
                                                                          stopped_worker):
    gw = gateway("--gateway.reply_timeout=500ms")
    with echo_ws(gw) as ws:
        stopped_worker()
        start = time.monotonic()
        ws.send_frame(TEXT, b"anyone?")
        assert ws.recv_message() == (TEXT, b'{"error": "no worker answered in time"}')
        assert time.monotonic() - start >= 0.45


def test_late_reply_after_reply_timeout_is_dropped(gateway, cluster_m):
    gw = gateway("--gateway.reply_timeout=500ms")
    wk = cluster_m.wk
    with echo_ws(gw) as ws:
        wk.proc.send_signal(signal.SIGSTOP)
        try:
            ws.send_frame(TEXT, b"late")
            assert ws.recv_message()[1] == b'{"error": "no worker answered in time"}'
        finally:
            wk.proc.send_signal(signal.SIGCONT)
        # the worker now answers "late" too, to nobody; the next message is
        # the one in flight, and only its echo comes
        assert ws.echo(TEXT, b"next") == (TEXT, b"next")


# ---- unsent bytes to a slow reader ----------------------------------------

def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sanitized(pid):
    return "libasan" in Path(f"/proc/{pid}/maps").read_text()


def test_slow_reader_is_closed_with_1008_and_its_memory_returned(gateway, cluster_m):
    queue_cap = 256 * 1024
    # The history ring keeps recent events on purpose (history.memory): kept
    # small here, so what is measured is what the reader's queue held.
    gw = gateway(f"--gateway.max_send_queue={queue_cap}", "--history.memory=1MiB")
    event = json.dumps({"status": "running", "pad": "x" * 4000})
    n_events = 4000  # 16 MB: far more than the cap and the kernel buffers
    ws = RawWS(gw.port, ws_path("/websocket/", jwt_for(7)), rcvbuf=4096)
    with ws:
        assert json.loads(ws.recv_message()[1]) == {"accept": True, "user": 7}
        ws.send_frame(TEXT, json.dumps({"groups": {"jobs": ["status_changed"]}}))
        assert "groups_current" in json.loads(ws.recv_message()[1])
        rss_before = rss_kib(gw.pid)
        emitter = cluster_m.pika_emitter()
        try:
            for _ in range(n_events):  # the client reads nothing meanwhile
                emitter.emit("jobs-status_changed", event)
        finally:
            emitter.close()
        wait_until(lambda: "event=conn_slow" in gw.log(), 30, "the gateway to give up on the reader")
        # what was written before the cap, then the close
        code = None
        while code is None:
            f = ws.read_frame(timeout=10)
            if f.opcode == CLOSE:
                code = f.close_code()[0]
            else:
                assert f.opcode == TEXT and f.payload == event.encode()
        assert code == 1008
        assert ws.finish_close()
    m = metrics(gw)
    if m is not None:
        assert metric(m, "wsgw_gateway_slow_closes_total") == 1
        settle_connections(gw)
    if not sanitized(gw.pid):  # ASan keeps freed memory in quarantine
        grown = rss_kib(gw.pid) - rss_before
        assert grown < 8 * 1024, f"gatewayd kept {grown} KiB after dropping the reader"


# ---- groups per connection and group names (worker.max_groups) -----------

def test_exactly_max_groups_are_joined(cluster_m):
    async def main():
        ws = await open_client(gw_plain(cluster_m))
        errors, reply = await subscribe(ws, {"jobs": ["a", "b", "c"]})
        assert errors == [] and reply["groups_current"] == ["jobs-a", "jobs-b", "jobs-c"]
        await ws.close()
    run(main())


def test_one_group_over_max_groups_is_refused_and_changes_nothing(cluster_m):
    async def main():
        ws = await open_client(gw_plain(cluster_m))
        await subscribe(ws, {"jobs": ["a", "b"]})
        assert await send_request(ws, json.dumps({"groups": {"jobs": ["a", "b", "c", "d"]}})) \
            == {"error": "too many groups"}
        errors, reply = await subscribe(ws, {"jobs": ["a", "b"]})  # the old set, unchanged
        assert reply == {"groups_current": ["jobs-a", "jobs-b"], "groups_joined": [],
                         "groups_left": []}
        await ws.close()
    run(main())


def test_duplicates_count_towards_max_groups(cluster_m):
    async def main():
        ws = await open_client(gw_plain(cluster_m))
        assert await send_request(ws, json.dumps({"groups": {"jobs": ["a"] * 4}})) \
            == {"error": "too many groups"}
        await ws.close()
    run(main())


@pytest.mark.parametrize("value,group", [
    ("v" * 64, "jobs-" + "v" * 64),
    ("A.b:c_9", "jobs-A.b:c_9"),
    (0, "jobs-0"),
    (2 ** 53 - 1, f"jobs-{2 ** 53 - 1}"),
], ids=["64-chars", "charset", "zero", "2^53-1"])
def test_valid_group_value_is_joined(cluster_m, value, group):
    async def main():
        ws = await open_client(gw_plain(cluster_m))
        errors, reply = await subscribe(ws, {"jobs": [value]})
        assert errors == [] and reply["groups_current"] == [group]
        await ws.close()
    run(main())


@pytest.mark.parametrize("value", ["v" * 65, "", "a-b", "a b", "é", "a/b", -1, 2 ** 53,
                                   2 ** 54, 1.5, True, None, ["x"]],
                         ids=["65-chars", "empty", "dash", "space", "non-ascii", "slash",
                              "negative", "2^53", "2^54", "fraction", "bool", "null", "list"])
def test_invalid_group_value_is_refused_and_changes_nothing(cluster_m, value):
    async def main():
        ws = await open_client(gw_plain(cluster_m))
        await subscribe(ws, {"jobs": ["kept"]})
        assert await send_request(ws, json.dumps({"groups": {"jobs": ["ok", value]}})) \
            == {"error": "invalid group name"}
        _, reply = await subscribe(ws, {"jobs": ["kept"]})
        assert reply["groups_joined"] == [] and reply["groups_left"] == []
        await ws.close()
    run(main())


def gw_plain(cluster_m):
    """The module's gateway with default limits (started once)."""
    if not hasattr(cluster_m, "plain"):
        cluster_m.plain = cluster_m.gateway()
    return cluster_m.plain
