"""emitd: the HTTP emit API (docs/PROTOCOL.md, "Emitting over HTTP").

Shows, against a real broker, gatewayd, workerd and emitd, with Python
websockets clients subscribed through the gateway: POST /emit and POST
/emit/batch deliver exactly the bytes the backend sent, to every group
named, in order, over keep-alive connections (pipelined too); every 4xx
the API names, with its headers; 503 while the broker is unreachable, and
200 again once it is back; a broker that stops answering gives 503 after
emit.timeout; the bounds hold under attack: a huge body (413 without
reading it), a slowloris (closed after emit.request_timeout while others
are served), more connections than emit.max_connections (503 and close),
emit.max_pending over all requests together; a SIGHUP reloads the keys.
"""

import http.client
import json
import os
import signal
import socket
import threading
import time

import pytest

from conftest import (Daemon, binary, free_port, open_client, recv_text, run,
                      subscribe, wait_until, nothing_arrives, LOG_LEVEL)
from faults import BrokerProxy
from test_deploy_rabbitmq import As, provisioned  # noqa: F401 (a fixture)

KEY = "k" * 8 + "-emit-test-key-0123456789abcdefghij"
OTHER_KEY = "o" * 8 + "-other-test-key-0123456789abcdefghij"


class Emitd(Daemon):
    def __init__(self, name, log_path, amqp_url, key_file, extra):
        self.port = free_port()
        argv = [binary("emitd"), f"--amqp.url={amqp_url}", f"--emit.key_file={key_file}",
                f"--emit.listen=127.0.0.1:{self.port}", f"--log.level={LOG_LEVEL}", *extra]
        super().__init__(name, argv, log_path)

    def conn(self, timeout=15):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path):
        c = self.conn(5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def ready(self):
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def metric(self, name):
        """A sample's value; None when the scrape is refused (a test at
        emit.max_connections)."""
        try:
            status, body = self.get("/metrics")
        except OSError:
            return None
        if status != 200:
            return None
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        raise AssertionError(f"no metric {name}")


def start_emitd(cluster, tmp_path, *extra, amqp_url=None, ready=True, keys=None):
    key_file = tmp_path / f"keys-{len(cluster.daemons)}"
    key_file.write_text(keys if keys is not None else f"backend {KEY}\n")
    key_file.chmod(0o600)
    em = Emitd(f"emitd#{len(cluster.daemons) + 1}", tmp_path / f"emitd-{len(cluster.daemons)}.log",
               amqp_url or cluster.amqp_url, key_file, extra)
    em.key_file = key_file
    cluster.daemons.append(em)
    if ready:
        def up():
            if not em.alive():
                pytest.fail(f"emitd exited {em.proc.returncode}:\n{em.tail()}")
            return em.ready()
        wait_until(up, 20, "emitd /readyz 200")
    return em


def post(conn, path, body, key=KEY, headers=None):
    """One request on conn (kept alive); (status, headers, parsed body)."""
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    conn.request("POST", path, body=body if isinstance(body, bytes) else body.encode(), headers=h)
    r = conn.getresponse()
    data = r.read()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = data
    return r.status, r, parsed


GROUPS = {"jobs": ["status_changed", "summary"]}


async def subscribed(gw, groups=None, user=7):
    ws = await open_client(gw, user)
    errors, reply = await subscribe(ws, groups or GROUPS)
    assert not errors, errors
    return ws


# ---------------------------------------------------------------- delivery

def test_single_and_batch_deliver_the_exact_bytes(stack, tmp_path):
    em = start_emitd(stack, tmp_path)

    async def scenario():
        a = await subscribed(stack.gw, {"jobs": ["status_changed"]})
        b = await subscribed(stack.gw, {"jobs": ["summary"], "schedules": ["changed"]}, user=8)
        conn = em.conn()
        # Odd spacing, escapes, a float and non-ASCII: none of it re-serialized.
        single = '{ "status" : "running",\n "n": 2.50, "s": "\\u00e9\u00e9\\"" }'
        st, _, body = post(conn, "/emit?group=jobs-status_changed&group=jobs-summary", single)
        assert (st, body) == (200, {"emitted": 2})
        assert await recv_text(a) == single
        assert await recv_text(b) == single
        batch = ('{"events": [{"groups": ["jobs-status_changed", "schedules-changed"],'
                 ' "event": {"x" : [1, 1e3, null]}},'
                 ' {"group": "jobs-summary", "event": "just a string"},'
                 ' {"groups": ["jobs-summary"], "event":[ ]}]}')
        st, _, body = post(conn, "/emit/batch", batch)
        assert (st, body) == (200, {"emitted": 4})
        assert await recv_text(a) == '{"x" : [1, 1e3, null]}'
        assert [await recv_text(b) for _ in range(3)] == \
            ['{"x" : [1, 1e3, null]}', '"just a string"', '[ ]']
        # Many on one keep-alive connection, in order.
        for i in range(50):
            st, _, body = post(conn, "/emit?group=jobs-status_changed", json.dumps({"i": i}))
            assert (st, body) == (200, {"emitted": 1})
        assert [json.loads(await recv_text(a))["i"] for _ in range(50)] == list(range(50))
        st, _, body = post(conn, "/emit/batch", '{"events": []}')
        assert (st, body) == (200, {"emitted": 0})
        conn.close()
        await nothing_arrives(b)
        await a.close()
        await b.close()

    run(scenario())
    assert em.metric("wsgw_emit_events_total") == 2 + 4 + 50


def test_pipelined_requests_are_answered_in_order(stack, tmp_path):
    em = start_emitd(stack, tmp_path)

    async def scenario():
        ws = await subscribed(stack.gw)
        reqs = b""
        for i in range(5):
            body = json.dumps({"p": i}).encode()
            reqs += (f"POST /emit?group=jobs-summary HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
                     ).encode() + body
        reqs += b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", em.port), timeout=10) as s:
            s.sendall(reqs)  # all at once: one read holds several requests
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 6, data
        assert data.count(b'{"emitted":1}') == 5 and data.endswith(b"ok\n"), data
        assert [json.loads(await recv_text(ws))["p"] for _ in range(5)] == list(range(5))
        await ws.close()

    run(scenario())


# ---------------------------------------------------------------- refusals

def test_every_refusal_is_precise(stack, tmp_path):
    em = start_emitd(stack, tmp_path, "--emit.max_events=3", "--emit.max_body=4KiB")

    async def scenario():
        ws = await subscribed(stack.gw)
        conn = em.conn()

        def error(path, body, status, key=KEY, headers=None):
            st, r, b = post(conn, path, body, key, headers)
            assert st == status, (path, body, st, b)
            assert isinstance(b, dict) and set(b) == {"error"}, b
            return r, b["error"]

        g = "/emit?group=jobs-summary"
        # 400s, each naming what is wrong; the connection stays usable.
        assert 'invalid group name "bad group!"' in error("/emit?group=bad%20group!", "{}", 400)[1]
        assert error("/emit", "{}", 400)[1].startswith("no group")
        assert error(g, "{nope}", 400)[1].startswith("body is not JSON")
        assert error(g, "", 400)[1].startswith("body is empty")
        assert error(g, b'"\xff"', 400)[1] == "body is not valid UTF-8"
        assert error(g + "&other=1", "{}", 400)[1].startswith('unknown query parameter "other"')
        assert "named twice" in error(g + "&group=jobs-summary", "{}", 400)[1]
        assert error("/emit/batch", '{"events": [{"groups": ["jobs-summary"], "event": 1},'
                     ' {"groups": ["jobs-summary"]}]}', 400)[1] == 'events[1]: no "event"'
        assert error("/emit/batch", '{"events": [{"groups": [], "event": 1}]}',
                     400)[1] == "events[0]: no group"
        assert error("/emit/batch", '{"events": [{"groups": ["a b"], "event": 1}]}',
                     400)[1].startswith('events[0]: invalid group name "a b"')
        assert error("/emit/batch", '{"events": [7]}', 400)[1].startswith("events[0]: must be")
        assert error("/emit/batch", '{"evts": []}', 400)[1].startswith('unknown or repeated member')
        assert error("/emit/batch", '[1]', 400)[1].startswith("body must be an object")
        # 401: missing and wrong key, with the challenge.
        r, why = error(g, "{}", 401, key=None)
        assert r.getheader("WWW-Authenticate") == 'Bearer realm="wsgw-emit"'
        assert why.startswith("missing API key")
        r, why = error(g, "{}", 401, key="x" * 40)
        assert r.getheader("WWW-Authenticate") and why == "wrong API key"
        error(g, "{}", 401, key=KEY[:-1])
        # 404, 405 with Allow.
        error("/emits", "{}", 404)
        conn.request("GET", "/emit?group=jobs-summary")
        r = conn.getresponse()
        r.read()
        assert r.status == 405 and r.getheader("Allow") == "POST"
        conn.request("DELETE", "/metrics")
        r = conn.getresponse()
        r.read()
        assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
        # 413: too many messages (an event to two groups counts two), too big.
        assert error("/emit?group=jobs-summary&group=a&group=b&group=c", "{}",
                     413)[1].startswith("too many events")
        batch = {"events": [{"groups": ["jobs-summary", "b"], "event": 1},
                            {"groups": ["c", "d"], "event": 2}]}
        error("/emit/batch", json.dumps(batch), 413)
        r, why = error(g, json.dumps({"x": "y" * 5000}), 413)
        assert why.startswith("body larger than emit.max_body")
        conn.close()
        # None of it reached a client; a good request still does.
        conn = em.conn()
        assert post(conn, g, '{"ok": 1}')[0] == 200
        assert await recv_text(ws) == '{"ok": 1}'
        conn.close()
        await ws.close()

    run(scenario())
    _, body = em.get("/metrics")
    assert 'wsgw_emit_requests_total{code="401"} 3' in body.decode()


def test_sighup_reloads_the_keys(stack, tmp_path):
    em = start_emitd(stack, tmp_path)
    conn = em.conn()
    assert post(conn, "/emit?group=jobs-summary", "{}", key=OTHER_KEY)[0] == 401
    em.key_file.write_text(f"other {OTHER_KEY}\n")
    em.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "event=reloaded" in em.log(), 10, "emitd to reload its keys")
    assert post(conn, "/emit?group=jobs-summary", "{}", key=OTHER_KEY)[0] == 200
    assert post(conn, "/emit?group=jobs-summary", "{}", key=KEY)[0] == 401
    # A file that no longer parses changes nothing.
    em.key_file.write_text("other short\n")
    em.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "event=reload_failed" in em.log(), 10, "emitd to refuse the keys")
    assert post(conn, "/emit?group=jobs-summary", "{}", key=OTHER_KEY)[0] == 200
    conn.close()


def test_start_refuses_a_bad_key_file(cluster, tmp_path):
    for text, why in (("a short\n", "shorter than 32"), ("", "no keys")):
        kf = tmp_path / "k"
        kf.write_text(text)
        kf.chmod(0o600)
        p = os.popen(f"{binary('emitd')} --emit.key_file={kf} --check-config 2>&1")
        out = p.read()
        assert p.close() is not None and why in out, out
    kf.write_text(f"a {KEY}\n")
    kf.chmod(0o644)  # readable by others: refused
    p = os.popen(f"{binary('emitd')} --emit.key_file={kf} --check-config 2>&1")
    out = p.read()
    assert p.close() is not None and "readable by other users" in out, out


# ---------------------------------------------------------------- the broker


@pytest.fixture
def proxy(cluster):
    p = BrokerProxy(cluster.broker.port)
    yield p
    p.close()


def via(cluster, proxy):
    return proxy.url(cluster.amqp_url, cluster.broker.port)


def test_broker_outage_is_503_then_recovers(stack, tmp_path, proxy):
    em = start_emitd(stack, tmp_path, amqp_url=via(stack, proxy))

    async def scenario():
        ws = await subscribed(stack.gw)
        conn = em.conn()
        assert post(conn, "/emit?group=jobs-summary", '{"n": 1}')[0] == 200
        assert await recv_text(ws) == '{"n": 1}'
        proxy.cut()
        wait_until(lambda: not em.ready(), 15, "/readyz to say not ready")
        t0 = time.monotonic()
        st, r, body = post(conn, "/emit/batch", json.dumps(
            {"events": [{"groups": ["jobs-summary", "jobs-status_changed"], "event": 2}]}))
        assert st == 503 and r.getheader("Retry-After") == "1", (st, body)
        assert body["confirmed"] == 0 and body["unconfirmed"] == 2, body
        assert "broker" in body["error"], body
        assert time.monotonic() - t0 < 2, "a broker known to be down must answer at once"
        proxy.restore()
        wait_until(em.ready, 20, "emitd to reconnect")
        assert post(conn, "/emit?group=jobs-summary", '{"n": 3}')[0] == 200
        assert await recv_text(ws) == '{"n": 3}'
        conn.close()
        await ws.close()

    run(scenario())
    assert em.metric("wsgw_emit_amqp_connects_total") >= 2


def test_a_silent_broker_is_503_after_the_timeout(stack, tmp_path, proxy):
    em = start_emitd(stack, tmp_path, "--emit.timeout=3s", "--emit.max_pending=10",
                     amqp_url=via(stack, proxy))
    proxy.stall(to_broker=False)  # the broker's answers stop arriving
    results = {}

    def slow():
        c = em.conn()
        results["a"] = post(c, "/emit/batch", json.dumps(
            {"events": [{"groups": [f"jobs-g{i}"], "event": i} for i in range(8)]}))
        c.close()

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: em.metric("wsgw_emit_pending") == 8, 5, "8 messages pending")
    # max_pending counts every request: 8 + 3 > 10 is refused at once, unsent.
    conn = em.conn()
    st, _, body = post(conn, "/emit?group=jobs-a&group=jobs-b&group=jobs-c", "{}")
    assert st == 503 and body == {
        "error": "not sent: too many events waiting for the broker (emit.max_pending)",
        "confirmed": 0, "unconfirmed": 3}, body
    t.join(10)
    st, _, body = results["a"]
    assert st == 503 and body["confirmed"] == 0 and body["unconfirmed"] == 8, body
    assert "no confirm" in body["error"], body
    proxy.flow()
    wait_until(em.ready, 20, "emitd to reconnect")
    assert post(conn, "/emit?group=jobs-a", "{}")[0] == 200
    conn.close()


# ---------------------------------------------------------------- bounds

def test_a_huge_body_is_refused_unread(stack, tmp_path):
    em = start_emitd(stack, tmp_path)
    with socket.create_connection(("127.0.0.1", em.port), timeout=10) as s:
        s.sendall(f"POST /emit?group=jobs-a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}"
                  f"\r\nContent-Length: {1 << 30}\r\n\r\n".encode())
        s.sendall(b"x" * 65536)
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert b"Connection: close" in head
    # Chunked, no length: cut at max_body.
    with socket.create_connection(("127.0.0.1", em.port), timeout=10) as s:
        s.sendall(f"POST /emit?group=jobs-a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}"
                  "\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"10000\r\n" + b"y" * 65536 + b"\r\n"
        got = b""
        try:
            for _ in range(40):  # 2.5 MiB, over the 1 MiB default
                s.sendall(chunk)
        except OSError:
            pass
        s.settimeout(5)
        try:
            while b"\r\n\r\n" not in got:
                data = s.recv(4096)
                if not data:
                    break
                got += data
        except OSError:
            pass
        assert got.startswith(b"HTTP/1.1 413 "), got
    assert em.alive()


def test_slowloris_is_closed_while_others_are_served(stack, tmp_path):
    em = start_emitd(stack, tmp_path, "--emit.request_timeout=2s")
    s = socket.create_connection(("127.0.0.1", em.port), timeout=10)
    s.sendall(b"POST /emit?group=jobs-a HTTP/1.1\r\n")
    t0 = time.monotonic()
    closed = None
    conn = em.conn()
    while time.monotonic() - t0 < 8:
        try:
            s.sendall(b"X")  # a byte of a header, every 0.2 s
        except OSError:
            closed = time.monotonic() - t0
            break
        assert post(conn, "/emit?group=jobs-a", "{}")[0] == 200
        s.settimeout(0.2)
        try:
            data = s.recv(4096)
            if data:
                assert data.startswith(b"HTTP/1.1 408 "), data
            closed = time.monotonic() - t0
            break
        except socket.timeout:
            pass
    assert closed is not None and 1.5 < closed < 4, closed
    s.close()
    conn.close()
    assert em.metric("wsgw_emit_timeouts_total") == 1


def test_connections_over_the_limit_are_refused(stack, tmp_path):
    em = start_emitd(stack, tmp_path, "--emit.max_connections=20")
    socks = [socket.create_connection(("127.0.0.1", em.port), timeout=10) for _ in range(19)]
    wait_until(lambda: em.metric("wsgw_emit_connections") == 19 + 1, 5, "20 connections")
    # The 20th, proven open by an answer on it.
    last = socket.create_connection(("127.0.0.1", em.port), timeout=10)
    last.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert last.recv(4096).startswith(b"HTTP/1.1 200 ")
    socks.append(last)
    # Any more get 503 and a close.
    extra = [socket.create_connection(("127.0.0.1", em.port), timeout=10) for _ in range(5)]
    for s in extra:
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 503 ") and b"max_connections" in data, data
        assert s.recv(4096) == b""
        s.close()
    for s in socks[:10]:
        s.close()
    wait_until(lambda: em.metric("wsgw_emit_connections") == 10 + 1, 5, "closed ones to go")
    conn = em.conn()
    assert post(conn, "/emit?group=jobs-a", "{}")[0] == 200
    conn.close()
    for s in socks[10:]:
        s.close()
    assert em.metric("wsgw_emit_connections_refused_total") >= 5


def test_many_clients_at_once(stack, tmp_path):
    """100 keep-alive clients, 20 requests each, all in flight together:
    every event arrives once, and the broker rounds are fewer than the
    requests (group commit)."""
    em = start_emitd(stack, tmp_path)

    async def scenario():
        ws = await subscribed(stack.gw)
        errors = []

        def client(i):
            c = em.conn()
            try:
                for k in range(20):
                    st, _, _ = post(c, "/emit?group=jobs-summary", json.dumps([i, k]))
                    if st != 200:
                        errors.append(st)
            finally:
                c.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        got = set()
        while len(got) < 2000:
            got.add(await recv_text(ws, timeout=30))
        for t in threads:
            t.join()
        assert not errors
        assert got == {json.dumps([i, k]) for i in range(100) for k in range(20)}
        await nothing_arrives(ws)
        await ws.close()

    run(scenario())
    assert em.metric("wsgw_emit_broker_rounds_total") < 2000


# ---------------------------------------------------------------- least privilege

def test_emitd_runs_as_the_setup_scripts_emitd_user(cluster, provisioned, tmp_path):
    """deploy/rabbitmq/setup.sh's emitd user: enough for emitd (events
    arrive), nothing more: no kicks on either exchange, no markers, no
    other exchange, no reading, no declaring."""
    vhost, prefix, secrets = provisioned
    url = (secrets / "emitd-amqp.url").read_text().strip()
    assert url.startswith(f"amqp://{prefix}emitd:")
    cluster.vhost = vhost
    cluster.amqp_url = (secrets / "worker-amqp.url").read_text().strip()
    cluster.worker()
    cluster.amqp_url = (secrets / "gateway-amqp.url").read_text().strip()
    gw = cluster.gateway()
    em = start_emitd(cluster, tmp_path, amqp_url=url)

    async def scenario():
        ws = await subscribed(gw)
        conn = em.conn()
        assert post(conn, "/emit?group=jobs-summary", '{"as": "emitd"}')[0] == 200
        assert await recv_text(ws) == '{"as": "emitd"}'
        conn.close()
        await ws.close()

    run(scenario())
    assert "ACCESS_REFUSED" not in em.log()
    me = As(url)
    try:
        assert me.publish("websocket.groups", "jobs-status_changed") is None
        assert me.publish("websocket.groups", "wsgw!user.7") == 403
        assert me.publish("websocket.groups", "wsgw!mark.x") == 403
        assert me.publish("websocket.control", "wsgw!user.7") == 403
        assert me.publish("", "websocket.connect") == 403
        assert me.consume("websocket.connect") == 403
    finally:
        me.close()
