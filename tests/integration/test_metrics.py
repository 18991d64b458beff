"""The admin endpoints of both daemons (docs/OPERATIONS.md, "Metrics"):
/metrics in the Prometheus text format, counters that move by exactly what
real traffic did, /healthz and /readyz following the broker, HTTP edge cases,
and logs that are key=value lines without any token or secret."""

import asyncio
import math
import re
import socket
import threading
import time

import pytest

from conftest import (SECRET, connect, free_port, handshake_status, jwt_for, make_jwt,
                      open_client, recv_text, run, subscribe, wait_until)

# ---------------------------------------------------------------- HTTP

def http(port, path="/metrics", method="GET", raw=None, timeout=5.0):
    """(status, headers, body) of one request; the server closes after it."""
    request = raw if raw is not None else (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.1 (\d{3}) .+", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert int(headers["content-length"]) == len(body) or method == "HEAD", headers
    return int(m.group(1)), headers, body.decode()


def answers(port):
    try:
        return http(port, "/healthz", timeout=1.0)[0] == 200
    except OSError:
        return False


# ---------------------------------------------------------------- exposition

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
VALUE = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|NaN)"
SAMPLE = re.compile(rf"({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? ({VALUE})")
HELP = re.compile(rf"# HELP ({NAME}) .+")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")


def parse_exposition(text):
    """Strict reader of the text format 0.0.4: every line must parse, every
    sample belong to a family declared (HELP then TYPE) before it, no series
    twice, histogram buckets cumulative and ending in +Inf == _count.
    Returns {(name, ((label, value), ...)): float}."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families, samples = {}, {}
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            m = HELP.fullmatch(line)
            assert m, f"bad HELP line {line!r}"
            assert m.group(1) not in families, f"family {m.group(1)} declared twice"
            families[m.group(1)] = None
            continue
        if line.startswith("# TYPE "):
            m = TYPE.fullmatch(line)
            assert m and m.group(1) in families, f"TYPE without HELP: {line!r}"
            families[m.group(1)] = m.group(2)
            continue
        m = SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and families.get(name[:-len(suffix)]) == "histogram":
                family = name[:-len(suffix)]
        assert family in families, f"sample {name} of an undeclared family"
        pairs = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
        key = (name, pairs)
        assert key not in samples, f"series {key} twice"
        v = float(value)
        if families[family] == "counter" or name.endswith(("_bucket", "_count")):
            assert v >= 0 and v == int(v), f"{name} is not a non-negative integer"
        samples[key] = v
    for family, kind in families.items():
        if kind == "histogram":
            check_histogram(family, samples)
    return samples


def check_histogram(family, samples):
    series = {}
    for (name, labels), v in samples.items():
        if name == family + "_bucket":
            rest = tuple(p for p in labels if p[0] != "le")
            le = dict(labels)["le"]
            series.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), v))
    assert series, f"histogram {family} has no buckets"
    for rest, buckets in series.items():
        buckets.sort()
        assert buckets[-1][0] == math.inf, f"{family}{rest}: no +Inf bucket"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{family}{rest}: buckets not cumulative"
        assert samples[(family + "_count", rest)] == counts[-1]
        assert (family + "_sum", rest) in samples


class Scrape:
    def __init__(self, port):
        status, headers, body = http(port)
        assert status == 200
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        self.samples = parse_exposition(body)

    def __call__(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        for (n, pairs), v in self.samples.items():
            if n == name and tuple(sorted(pairs)) == key[1]:
                return v
        pytest.fail(f"no series {name}{labels}")


def delta(before, after, name, **labels):
    return after(name, **labels) - before(name, **labels)


def settled(gw, wk):
    """Scrapes once the gateway has no connection and the worker has seen a
    disconnect for every connect (the readiness probes' handshakes)."""
    def quiet():
        g, w = Scrape(gw.metrics_port), Scrape(wk.metrics_port)
        if g("wsgw_gateway_connections") != 0:
            return None
        if w("wsgw_worker_messages_total", kind="connect") != \
                w("wsgw_worker_messages_total", kind="disconnect"):
            return None
        return g, w
    return wait_until(quiet, 15, "both daemons to settle", interval=0.1)


# ---------------------------------------------------------------- traffic

def test_counters_follow_one_client_session(stack):
    gw = stack.gw
    wk = next(d for d in stack.daemons if d is not gw)
    g0, w0 = settled(gw, wk)

    async def session():
        ws = await open_client(gw, user=7)
        _, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == ["jobs-status_changed"]
        mid = Scrape(gw.metrics_port)
        assert mid("wsgw_gateway_connections") == 1
        # The group, and the user's control key (wsgw!user.7: kicks) that
        # every accepted connection is in.
        assert mid("wsgw_gateway_groups") == 2
        assert mid("wsgw_gateway_group_members") == 2
        await asyncio.to_thread(stack.emit, "jobs-status_changed", '{"n": 1}')
        assert await recv_text(ws, what="the event") == '{"n": 1}'
        await ws.close()
    run(session())
    g1, w1 = settled(gw, wk)

    # gateway: one connection, one handshake, one message in; out: the
    # accept text, the subscription reply and the event.
    assert delta(g0, g1, "wsgw_gateway_connections_opened_total") == 1
    assert delta(g0, g1, "wsgw_gateway_connections_closed_total", reason="normal") == 1
    assert delta(g0, g1, "wsgw_gateway_handshakes_total", result="accepted") == 1
    assert delta(g0, g1, "wsgw_gateway_handshakes_total", result="rejected") == 0
    assert delta(g0, g1, "wsgw_gateway_messages_received_total") == 1
    assert delta(g0, g1, "wsgw_gateway_messages_sent_total") == 3
    assert delta(g0, g1, "wsgw_gateway_group_messages_total") == 1
    assert delta(g0, g1, "wsgw_gateway_group_deliveries_total") == 1
    assert delta(g0, g1, "wsgw_gateway_bytes_received_total") > 0
    assert delta(g0, g1, "wsgw_gateway_bytes_sent_total") > 0
    assert delta(g0, g1, "wsgw_gateway_worker_reply_seconds_count", kind="connect") == 1
    assert delta(g0, g1, "wsgw_gateway_worker_reply_seconds_count", kind="receive") == 1
    assert delta(g0, g1, "wsgw_gateway_worker_reply_seconds_sum", kind="receive") > 0
    assert delta(g0, g1, "wsgw_gateway_reply_timeouts_total") == 0
    assert delta(g0, g1, "wsgw_gateway_slow_closes_total") == 0
    assert g1("wsgw_gateway_groups") == 0 and g1("wsgw_gateway_group_members") == 0
    assert g1("wsgw_gateway_amqp_up") == 1
    assert g1("wsgw_gateway_amqp_reconnects_total") == 0

    # worker: connect, receive, disconnect; two replies (no reply to a
    # disconnect); one accepted token, one applied subscription.
    for kind in ("connect", "receive", "disconnect"):
        assert delta(w0, w1, "wsgw_worker_messages_total", kind=kind) == 1, kind
    assert delta(w0, w1, "wsgw_worker_replies_total") == 2
    assert delta(w0, w1, "wsgw_worker_auth_accepted_total") == 1
    assert delta(w0, w1, "wsgw_worker_subscriptions_total", result="applied") == 1
    assert delta(w0, w1, "wsgw_worker_subscriptions_total", result="refused") == 0
    assert delta(w0, w1, "wsgw_worker_handle_seconds_count") == 3
    assert w1("wsgw_worker_amqp_up") == 1
    assert sum(v for (n, _), v in w1.samples.items() if n == "wsgw_worker_errors_total") == 0


def test_refused_handshakes_by_reason(stack):
    gw = stack.gw
    wk = next(d for d in stack.daemons if d is not gw)
    g0, w0 = settled(gw, wk)
    expired = make_jwt({"sub": "7", "exp": int(time.time()) - 3600})

    async def attempts():
        assert await handshake_status(gw.url(query="")) == 403
        assert await handshake_status(gw.url(token=expired)) == 403
        assert await handshake_status(gw.url(token=jwt_for(7, secret="wrong-secret"))) == 403
        assert await handshake_status(gw.url(query="token=%zz")) == 403
    run(attempts())
    assert gw.http_status("/nowhere") == 404
    g1, w1 = settled(gw, wk)

    assert delta(g0, g1, "wsgw_gateway_handshakes_total", result="rejected") == 4
    assert delta(g0, g1, "wsgw_gateway_handshakes_total", result="http_error") == 1
    assert delta(g0, g1, "wsgw_gateway_handshakes_total", result="accepted") == 0
    assert delta(g0, g1, "wsgw_gateway_connections_closed_total", reason="http") == 5
    assert delta(w0, w1, "wsgw_worker_auth_rejected_total", reason="missing") == 1
    assert delta(w0, w1, "wsgw_worker_auth_rejected_total", reason="expired") == 1
    assert delta(w0, w1, "wsgw_worker_auth_rejected_total", reason="invalid") == 1
    assert delta(w0, w1, "wsgw_worker_auth_rejected_total", reason="malformed") == 1
    assert delta(w0, w1, "wsgw_worker_auth_accepted_total") == 0


# ---------------------------------------------------------------- readiness

class Forwarder:
    """A TCP relay from a local port to the broker, switched on and off by
    the test: the daemons see a broker that appears and vanishes."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = target_port
        self.listener = None
        self.socks = []
        self.lock = threading.Lock()

    def start(self):
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        """Closes the port and cuts every relayed connection."""
        if self.listener:
            # shutdown wakes the thread blocked in accept(); close alone
            # would leave the port accepting until the next connection.
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def status(port, path):
    return http(port, path)[0]


def test_readyz_follows_the_broker(cluster):
    fwd = Forwarder(cluster.broker.port)
    url = f"amqp://guest:guest@127.0.0.1:{fwd.port}/{cluster.vhost}"
    # Nothing listens on fwd.port yet: both daemons run without a broker.
    gw = cluster.gateway(f"--amqp.url={url}", "--amqp.heartbeat=2s", ready=False)
    wk = cluster.worker(f"--amqp.url={url}", "--amqp.heartbeat=2s", ready=False)
    try:
        for d in (gw, wk):
            wait_until(lambda: answers(d.metrics_port), 20, f"{d.name} to answer /healthz")
            assert status(d.metrics_port, "/readyz") == 503
        assert http(gw.metrics_port, "/readyz")[2] == "not ready: broker unavailable\n"
        assert Scrape(gw.metrics_port)("wsgw_gateway_amqp_up") == 0
        w = wait_until(lambda: (s := Scrape(wk.metrics_port))(
            "wsgw_worker_amqp_connect_failures_total") > 0 and s, 20, "a failed attempt")
        assert w("wsgw_worker_amqp_up") == 0

        fwd.start()
        for d in (gw, wk):
            wait_until(lambda: status(d.metrics_port, "/readyz") == 200, 30,
                       f"{d.name} to be ready once the broker is reachable", interval=0.2)
        assert Scrape(gw.metrics_port)("wsgw_gateway_amqp_up") == 1
        assert Scrape(wk.metrics_port)("wsgw_worker_amqp_up") == 1
        assert gw.upgrade_status() == 101

        fwd.stop()
        for d in (gw, wk):
            wait_until(lambda: status(d.metrics_port, "/readyz") == 503, 30,
                       f"{d.name} to be unready once the broker is gone", interval=0.2)
            assert status(d.metrics_port, "/healthz") == 200

        fwd.start()
        for d in (gw, wk):
            wait_until(lambda: status(d.metrics_port, "/readyz") == 200, 30,
                       f"{d.name} to be ready again", interval=0.2)
        assert Scrape(gw.metrics_port)("wsgw_gateway_amqp_reconnects_total") == 1
        assert Scrape(wk.metrics_port)("wsgw_worker_amqp_reconnects_total") == 1
    finally:
        fwd.stop()


def raw_websocket(gw):
    """An upgraded socket that will never answer a close frame: it keeps a
    gateway draining for its linger time (2 s)."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall((f"GET /websocket/?token={jwt_for(7)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "the gateway closed during the handshake"
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    return s


def test_readyz_503_while_shutting_down(stack):
    gw = stack.gw
    s = raw_websocket(gw)
    try:
        assert status(gw.metrics_port, "/readyz") == 200
        gw.proc.send_signal(15)
        wait_until(lambda: status(gw.metrics_port, "/readyz") == 503, 2,
                   "readyz 503 on SIGTERM", interval=0.02)
        assert http(gw.metrics_port, "/readyz")[2] == "not ready: shutting down\n"
    finally:
        s.close()
    gw.proc.wait(timeout=20)
    gw.expected_exit = True
    assert gw.proc.returncode == 0


# ---------------------------------------------------------------- HTTP edges

@pytest.mark.parametrize("daemon", ["gateway", "worker"])
def test_admin_http_edges(stack, daemon):
    d = stack.gw if daemon == "gateway" else next(x for x in stack.daemons if x is not stack.gw)
    port = d.metrics_port
    assert http(port, "/healthz")[2] == "ok\n"
    assert http(port, "/readyz")[:3:2] == (200, "ready\n")
    assert status(port, "/metrics?ignored=1") == 200
    assert status(port, "/") == 404
    assert status(port, "/metrics/extra") == 404
    code, headers, _ = http(port, "/metrics", method="POST")
    assert code == 405 and headers["allow"] == "GET, HEAD"
    code, headers, body = http(port, "/metrics", method="HEAD")
    assert code == 200 and body == "" and int(headers["content-length"]) > 1000
    assert http(port, raw=b"NOT HTTP AT ALL\r\n\r\n")[0] == 400
    assert http(port, raw=b"GET /" + b"a" * 1000 + b" HTTP/1.1\r\n\r\n")[0] == 414
    huge = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 8000 + b"\r\n\r\n"
    assert http(port, raw=huge)[0] == 431
    # A client that connects and says nothing is cut off; the endpoint
    # meanwhile serves others.
    # (The worker serves one client at a time, 5 s each at most: one.)
    idle = [socket.create_connection(("127.0.0.1", port))
            for _ in range(3 if daemon == "gateway" else 1)]
    try:
        if daemon == "gateway":
            assert status(port, "/healthz") == 200
        for s in idle:
            s.settimeout(10)
            assert s.recv(100) == b"", "an idle admin connection was not closed"
    finally:
        for s in idle:
            s.close()
    assert status(port, "/healthz") == 200


def test_metrics_off_and_bad_address(cluster):
    # Empty: off, and the daemon runs.
    gw = cluster.gateway("--gateway.metrics_listen=", ready=False)
    wait_until(lambda: gw.http_status("/") is not None, 20, "the gateway to answer")
    assert "event=metrics_off" in gw.log()
    assert not answers(gw.metrics_port)
    # A taken port is fatal at start: an operator learns at once.
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        bad = cluster.gateway(f"--gateway.metrics_listen=127.0.0.1:{taken.getsockname()[1]}",
                              ready=False)
        bad.proc.wait(timeout=20)
        bad.expected_exit = True
        assert bad.proc.returncode == 1
        assert "event=metrics_listen_failed" in bad.log()
    finally:
        taken.close()
    wk = cluster.worker("--worker.metrics_listen=localhost:1", ready=False)
    wk.proc.wait(timeout=20)
    wk.expected_exit = True
    assert wk.proc.returncode == 2
    assert "worker.metrics_listen" in wk.log()


# ---------------------------------------------------------------- logs

LOG_LINE = re.compile(r'ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warn|error) '
                      r'prog=(gatewayd|workerd) event=[a-z_]+'
                      r'(?: [a-z_]+=(?:"[^"\n]*"|[^ "\n]*))*')


def test_logs_are_key_value_lines_without_tokens(cluster):
    wk = cluster.worker("--log.level=debug", ready=False)
    gw = cluster.gateway("--log.level=debug")
    good = jwt_for(7)
    bad = jwt_for(8, secret="not-the-secret")
    in_cookie, in_header = jwt_for(9), jwt_for(10)
    static_like = "s3cr3t-t0ken-value-that-must-not-appear"

    async def traffic():
        ws = await open_client(gw, user=7, token=good)
        await subscribe(ws, {"jobs": ["status_changed"]}, xrftoken="whatever")
        await ws.close()
        assert await handshake_status(gw.url(token=bad)) == 403
        assert await handshake_status(gw.url(query=f"a=1&token={static_like}&b=2")) == 403
        for headers, user in (({"Cookie": f"token={in_cookie}",
                                "Origin": f"http://127.0.0.1:{gw.port}"}, 9),
                              ({"Authorization": f"Bearer {in_header}"}, 10)):
            ws = await connect(gw.url(), headers)
            assert (await recv_text(ws)).startswith('{"accept": true')
            await ws.close()
    run(traffic())
    settled(gw, wk)

    for d in (gw, wk):
        text = d.log()
        assert "level=debug" in text, f"{d.name} did not log at debug level"
        for secret in (good, bad, in_cookie, in_header, static_like, SECRET,
                       good.split(".")[2], bad.split(".")[2]):
            assert secret not in text, f"{d.name} logged a token or secret"
        for line in text.splitlines():
            assert LOG_LINE.fullmatch(line), f"{d.name}: not a key=value log line: {line!r}"
