"""The shipped nginx site (deploy/nginx/) in front of real gateways: a real
Debian nginx with deploy/nginx/wsgw.conf and its proxy snippet, changed
only in ports, upstream servers and paths (tests/e2e/nginx.py).

Shows: the upgrade through nginx works on /websocket and /websocket/ and
events flow; an upstream of two gateways spreads connections and a group
event reaches members on both; a 403 from the gateway reaches the client as
403; the gateway reports the real client address (X-Forwarded-For from a
trusted proxy only, and a client's own forged header does not count); the
idle timeout of the site outlives the gateway's pings; the TLS site
(wsgw-tls.conf) serves wss://.
"""

import asyncio
import json
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import (connect, handshake_status, jwt_for, open_client, recv_json, recv_text, run,
                      subscribe, wait_until)

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
    """Until n_queues gateway queues are bound to group: the events emitted
    next are routed to all of them."""
    def bound():
        return len(cluster.broker.group_bindings(cluster.vhost, group)) >= n_queues
    await asyncio.to_thread(wait_until, bound, timeout, f"{n_queues} binding(s) of {group}")


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
    # nginx logged the two upgrades as 101s.
    assert len(re.findall(r'"GET /websocket/?\?token=\S+ HTTP/1.1" 101 ', ng.access_log())) == 2


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
