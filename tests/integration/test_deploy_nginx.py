"""The shipped nginx site (deploy/nginx/) in front of real gateways: a real
Debian nginx with deploy/nginx/wsgw.conf and its proxy snippet, changed
only in ports, upstream servers and paths (tests/e2e/nginx.py).

Shows: the upgrade through nginx works on /websocket and /websocket/ and
events flow; an upstream of two gateways spreads connections and a group
event reaches members on both; a 403 from the gateway reaches the client as
403; the gateway reports the real client address (X-Forwarded-For from a
trusted proxy only, and a client's own forged header does not count); the
idle timeout of the site outlives the gateway's pings; the TLS site
(wsgw-tls.conf) serves wss://; the site's access log never holds a token
(no query string, no Cookie, Authorization or Referer); the per-address
limits bite (an address over the open-connection or the handshake-rate
limit gets 429, another address at the same time does not); compression
(permessage-deflate) is negotiated through it; the site and
snippet load in Debian's own nginx.conf layout (nginx -t).
"""

import asyncio
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import (ROOT, connect, handshake_status, jwt_for, open_client, recv_json,
                      recv_text, run, subscribe, wait_until)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from nginx import Nginx  # noqa: E402

# Clients connect from this loopback address, nginx (and the trusted
# proxy) from 127.0.0.1: the gateway must tell them apart.
CLIENT_ADDR = "127.0.0.2"
TRUST = "--gateway.trusted_proxies=127.0.0.1"


@pytest.fixture
def nginx_for(tmp_path):
    started = []

    def start(gateways, **kw):
        ng = Nginx(tmp_path / f"nginx{len(started)}", [g.port for g in gateways], **kw)
        started.append(ng)
        return ng
    yield start
    for ng in started:
        ng.stop()


def ws_url(ng, path="/websocket/", token=None, scheme="ws"):
    url = ng.url(path, scheme)
    return url + (f"?token={token}" if token else "")


def connecting_lines(gw, since=0):
    """(client, peer, forwarded) of each conn_connecting log line, from the
    since-th on (the fixture's own readiness handshake comes first)."""
    return re.findall(r"event=conn_connecting id=\d+ client=(\S+) peer=(\S+) forwarded=(\d)",
                      gw.log())[since:]


async def wait_bound(cluster, group, n_queues, timeout=10):
    """Was: until n_queues gateway queues are bound to group. With the event
    history a gateway binds no group (it reads every event from the stream)
    and a membership counts from the subscription reply on: nothing to wait
    for."""


def test_upgrade_through_nginx_and_events_flow(cluster, nginx_for):
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST)
    ng = nginx_for([gw])

    async def main():
        for path in ("/websocket", "/websocket/"):
            ws = await connect(ws_url(ng, path, jwt_for(7)), local_addr=(CLIENT_ADDR, 0))
            assert await recv_json(ws, what="the accept message") == {"accept": True, "user": 7}
            errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
            assert errors == [] and reply["groups_current"] == ["jobs-status_changed"]
            await wait_bound(cluster, "jobs-status_changed", 1)
            event = json.dumps({"path": path, "status": "running"})
            await asyncio.to_thread(cluster.emit, "jobs-status_changed", event)
            assert await recv_text(ws, what="the event through nginx") == event
            await ws.close()
    run(main())
    # nginx logged the two upgrades as 101s, without their ?token=.
    assert len(re.findall(r'"GET /websocket/? HTTP/1.1" 101 ', ng.access_log())) == 2


def test_compression_negotiated_through_nginx(cluster, nginx_for):
    """With compression on, the shipped site passes the offer and the answer
    through: Python websockets behind nginx negotiates permessage-deflate,
    gets a job event intact, and the gateway counts it sent compressed."""
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST, "--compression.enabled=true")
    ng = nginx_for([gw])
    event = json.dumps({"type": "job_event", "stdout": "\u001b[0;32mok: [web-1]\u001b[0m\r\n" * 40})

    async def main():
        ws = await connect(ws_url(ng, "/websocket/", jwt_for(7)), local_addr=(CLIENT_ADDR, 0))
        ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        assert ext == "permessage-deflate; client_no_context_takeover", ext
        assert await recv_json(ws, what="the accept message") == {"accept": True, "user": 7}
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert errors == [], errors
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", event)
        assert await recv_text(ws, what="the compressed event through nginx") == event
        await ws.close()
    run(main())
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=5).read().decode()
    sent = re.search(r"^wsgw_gateway_compressed_messages_sent_total (\d+)$", metrics, re.M)
    assert sent and int(sent.group(1)) >= 1, metrics


def test_two_gateways_behind_one_nginx(cluster, nginx_for):
    cluster.worker(ready=False)
    gws = [cluster.gateway(TRUST), cluster.gateway(TRUST)]
    base = [len(connecting_lines(g)) for g in gws]
    ng = nginx_for(gws)

    async def main():
        clients = []
        for _ in range(4):
            ws = await connect(ws_url(ng, token=jwt_for(9)))
            assert (await recv_json(ws))["accept"] is True
            await subscribe(ws, {"jobs": ["summary"]})
            clients.append(ws)
        # least_conn with every connection still open: both gateways hold some.
        per_gw = [len(connecting_lines(g, b)) for g, b in zip(gws, base)]
        assert all(n >= 1 for n in per_gw) and sum(per_gw) == 4, per_gw
        await wait_bound(cluster, "jobs-summary", 2)
        await asyncio.to_thread(cluster.emit, "jobs-summary", '{"n": 1}')
        for ws in clients:
            assert await recv_text(ws, what="the event on every member") == '{"n": 1}'
            await ws.close()
    run(main())


def test_gateway_403_reaches_client_as_403(cluster, nginx_for):
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST)
    base = len(connecting_lines(gw))
    ng = nginx_for([gw])

    async def main():
        assert await handshake_status(ws_url(ng, token="not-a-token")) == 403
        assert await handshake_status(ws_url(ng, token=jwt_for(7, secret="wrong-secret"))) == 403
        # No token at all: 403 as well, from the gateway, not nginx's own page.
        assert await handshake_status(ws_url(ng)) == 403
    run(main())
    assert len(re.findall(r'"GET /websocket/\S* HTTP/1.1" 403 ', ng.access_log())) == 3
    assert len(connecting_lines(gw, base)) == 3  # the gateway itself refused them


def test_gateway_logs_real_client_address(cluster, nginx_for):
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST)
    base = len(connecting_lines(gw))
    ng = nginx_for([gw])

    async def main():
        # Through nginx: the address nginx saw, not nginx's own.
        ws = await connect(ws_url(ng, token=jwt_for(7)), local_addr=(CLIENT_ADDR, 0))
        await recv_json(ws)
        await ws.close()
        # Through nginx with a forged header: nginx appends the real
        # address, and only that last hop is believed.
        ws = await connect(ws_url(ng, token=jwt_for(7)), {"X-Forwarded-For": "6.6.6.6"},
                           local_addr=(CLIENT_ADDR, 0))
        await recv_json(ws)
        await ws.close()
        # Straight to the gateway from an untrusted address: the header is
        # ignored whatever it says.
        ws = await connect(gw.url(token=jwt_for(7)), {"X-Forwarded-For": "6.6.6.6"},
                           local_addr=(CLIENT_ADDR, 0))
        await recv_json(ws)
        await ws.close()
    run(main())
    lines = connecting_lines(gw, base)
    assert len(lines) == 3, gw.log()
    (c1, p1, f1), (c2, p2, f2), (c3, p3, f3) = lines
    assert c1 == f"{CLIENT_ADDR}:0" and p1.startswith("127.0.0.1:") and f1 == "1"
    assert c2 == f"{CLIENT_ADDR}:0" and f2 == "1"
    assert c3.startswith(f"{CLIENT_ADDR}:") and c3 == p3 and f3 == "0"
    assert "client=6.6.6.6" not in gw.log()


def test_untrusted_nginx_is_not_believed(cluster, nginx_for):
    """Without nginx's address in gateway.trusted_proxies the header counts
    for nothing (the default trusts this host, so the list here names
    another)."""
    cluster.worker(ready=False)
    gw = cluster.gateway("--gateway.trusted_proxies=10.9.8.7")
    base = len(connecting_lines(gw))
    ng = nginx_for([gw])

    async def main():
        ws = await connect(ws_url(ng, token=jwt_for(7)), local_addr=(CLIENT_ADDR, 0))
        await recv_json(ws)
        await ws.close()
    run(main())
    ((client, peer, forwarded),) = connecting_lines(gw, base)
    assert client.startswith("127.0.0.1:") and client == peer and forwarded == "0"


def test_idle_websocket_outlives_proxy_read_timeout(cluster, nginx_for):
    """The site's timeout must exceed the gateway's ping interval: scaled
    down here (ping every 1 s, nginx gives up after 3 s of upstream
    silence), an idle client stays connected for 5 s because the pings keep
    the upstream side busy."""
    cluster.worker(ready=False)
    gw = cluster.gateway("--gateway.ping_interval=1s", "--gateway.ping_timeout=4s")
    ng = nginx_for([gw], overrides={r"proxy_read_timeout \d+s;": "proxy_read_timeout 3s;"})

    async def main():
        ws = await open_client_via(ng)
        await asyncio.sleep(5)
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == ["jobs-status_changed"]
        await ws.close()
    run(main())


async def open_client_via(ng, scheme="ws", **kw):
    ws = await connect(ws_url(ng, token=jwt_for(7), scheme=scheme), **kw)
    assert await recv_json(ws, what="the accept message") == {"accept": True, "user": 7}
    return ws


def test_tls_site_serves_wss(cluster, nginx_for, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST)
    ng = nginx_for([gw], site="wsgw-tls.conf", tls=(cert, key))
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False

    async def main():
        ws = await open_client_via(ng, scheme="wss", ssl=ctx)
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == ["jobs-status_changed"]
        await ws.close()
    run(main())
    # Plain HTTP on the same site is redirected to https.
    req = urllib.request.Request(f"http://127.0.0.1:{ng.http_port}/websocket/")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(NoRedirect).open(req, timeout=5)
    assert e.value.code == 301
    assert e.value.headers["Location"].startswith("https://")


SECRET_MARK = "SECRETTOKENMARK"


def raw_handshake(ng, src, token=None, headers=(), keep=False):
    """(status, socket or None) of one websocket handshake through nginx
    from source address src; the socket is kept open after a 101 if keep."""
    s = socket.create_connection(("127.0.0.1", ng.port), timeout=10, source_address=(src, 0))
    q = f"?token={token}" if token else ""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    s.sendall((f"GET /websocket/{q} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    status = int(m.group(1)) if m else None
    if keep and status == 101:
        return status, s
    s.close()
    return status, None


def test_access_log_holds_no_token(cluster, nginx_for):
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST)
    ng = nginx_for([gw])
    # A token the worker accepts, one it refuses, in the query; the same
    # mark in Cookie, Authorization and Referer; the demo page with it.
    good = jwt_for(7)
    status, sock = raw_handshake(ng, CLIENT_ADDR, good, keep=True)
    assert status == 101
    sock.close()
    assert raw_handshake(ng, CLIENT_ADDR, SECRET_MARK + "x")[0] == 403
    headers = [("Cookie", f"token={SECRET_MARK}c; csrftoken=abc"),
               ("Authorization", f"Bearer {SECRET_MARK}a"),
               ("Referer", f"http://127.0.0.1/wsgw-demo/?token={SECRET_MARK}r")]
    assert raw_handshake(ng, CLIENT_ADDR, SECRET_MARK + "q", headers)[0] == 403
    req = urllib.request.Request(ng.url(f"/wsgw-demo/?token={SECRET_MARK}d"),
                                 headers=dict(headers))
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    # nginx writes a request's line after its answer: wait for the last one.
    wait_until(lambda: '"GET /wsgw-demo/ HTTP/1.1" 200 ' in ng.access_log(), 5,
               "nginx to log the demo page")
    log = ng.access_log()
    assert SECRET_MARK not in log and good not in log and "token" not in log, log
    # ... and still says what happened.
    assert len(re.findall(r'^127\.0\.0\.2 \[.*\] "GET /websocket/ HTTP/1.1" 101 ', log, re.M)) == 1
    assert len(re.findall(r'"GET /websocket/ HTTP/1.1" 403 ', log)) == 2
    assert '"GET /wsgw-demo/ HTTP/1.1" 200 ' in log


def snippet_value(pattern):
    text = (ROOT / "deploy/nginx/snippets/wsgw-proxy.conf").read_text()
    m = re.search(pattern, text, re.M)
    assert m, pattern
    return int(m.group(1))


def test_per_address_connection_limit(cluster, nginx_for):
    """With the shipped numbers: an address holding limit_conn websockets
    gets 429 for one more; another address at the same moment gets 101."""
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST)
    ng = nginx_for([gw])
    limit = snippet_value(r"^limit_conn wsgw_conn (\d+);")
    burst = snippet_value(r"^limit_req zone=wsgw_req burst=(\d+) nodelay;")
    assert 8 <= limit <= 1000
    held = []
    try:
        for i in range(limit):
            if i > burst - 2:
                time.sleep(0.25)  # under the handshake rate (5/s) past the burst
            status, sock = raw_handshake(ng, CLIENT_ADDR, jwt_for(100 + i), keep=True)
            assert status == 101, (i, status, ng.error_log())
            held.append(sock)
        time.sleep(0.3)
        assert raw_handshake(ng, CLIENT_ADDR, jwt_for(99))[0] == 429
        assert raw_handshake(ng, "127.0.0.3", jwt_for(98))[0] == 101
        # One closed: the address is under the limit again.
        held.pop().close()
        wait_until(lambda: raw_handshake(ng, CLIENT_ADDR, jwt_for(97))[0] == 101, 5,
                   "a slot freed by a close", interval=0.3)
    finally:
        for sock in held:
            sock.close()
    assert re.search(r'^127\.0\.0\.2 \[.*\] "GET /websocket/ HTTP/1.1" 429 ', ng.access_log(),
                     re.M)


def test_per_address_handshake_rate(cluster, nginx_for):
    """A reconnect loop without backoff: past the burst, 429; a second
    address is served meanwhile; after a pause the first is served again."""
    cluster.worker(ready=False)
    gw = cluster.gateway(TRUST)
    ng = nginx_for([gw])
    burst = snippet_value(r"^limit_req zone=wsgw_req burst=(\d+) nodelay;")
    # No token: a request nginx lets through gets the gateway's 403, one
    # it stops gets nginx's 429.
    statuses = [raw_handshake(ng, CLIENT_ADDR)[0] for _ in range(burst + 40)]
    assert set(statuses) == {403, 429}, statuses
    passed = statuses.count(403)
    assert burst + 1 <= passed <= burst + 1 + 20, statuses  # 5/s refill while it ran
    assert statuses[:burst + 1] == [403] * (burst + 1)
    assert raw_handshake(ng, "127.0.0.3")[0] == 403
    time.sleep(1.0)
    assert raw_handshake(ng, CLIENT_ADDR)[0] == 403


def test_site_loads_in_debians_nginx_layout(tmp_path):
    """Debian's own /etc/nginx/nginx.conf (it includes sites-enabled/* in
    the http context), with the shipped site and snippet installed as
    DEPLOY.md says and the default site removed: nginx -t accepts both
    sites (zones, log format, map and upstream are legal where they land)."""
    etc = tmp_path / "etc/nginx"
    shutil.copytree("/etc/nginx", etc, symlinks=True)
    logs = tmp_path / "log"
    logs.mkdir()
    ssl_dir = tmp_path / "ssl"
    (ssl_dir / "certs").mkdir(parents=True)
    (ssl_dir / "private").mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=events.example.com",
                    "-keyout", str(ssl_dir / "private/events.example.com.key"),
                    "-out", str(ssl_dir / "certs/events.example.com.pem")],
                   check=True, capture_output=True, timeout=60)
    shutil.copy(ROOT / "deploy/nginx/snippets/wsgw-proxy.conf", etc / "snippets/")
    conf = (etc / "nginx.conf").read_text()
    conf = conf.replace("/etc/nginx/", f"{etc}/").replace("/var/log/nginx/", f"{logs}/")
    (etc / "nginx.conf").write_text(conf.replace("/run/nginx.pid", f"{tmp_path}/nginx.pid"))
    for site in ("wsgw.conf", "wsgw-tls.conf"):
        for f in (etc / "sites-enabled").iterdir():
            f.unlink()
        text = (ROOT / "deploy/nginx" / site).read_text()
        text = text.replace("/etc/ssl/", f"{ssl_dir}/").replace("/var/log/nginx/", f"{logs}/")
        (etc / "sites-available/wsgw").write_text(text)
        (etc / "sites-enabled/wsgw").symlink_to("../sites-available/wsgw")
        # The prefix Debian's nginx was built with: modules-enabled/ loads
        # modules by paths relative to it.
        proc = subprocess.run(["/usr/sbin/nginx", "-t", "-p", "/usr/share/nginx/", "-c",
                               str(etc / "nginx.conf")],
                              capture_output=True, text=True, timeout=30)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "test is successful" in out, (site, out)
