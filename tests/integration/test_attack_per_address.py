"""One address against everyone's handshakes (issue 12, item 7): without
a per-address bound, one address could hold every handshake slot (a
slowloris of half-sent heads) or fill websocket.connect while workers lag.
With the defaults (gateway.max_handshakes_per_client 64,
gateway.max_per_client 1000, trusted_proxies this host) it holds its share
and another address gets in. Each test opens the attack's sockets itself
and reads the gateway's answers; the other address is 127.0.0.2, or a
different X-Forwarded-For behind the trusted loopback proxy."""

import re
import signal
import socket
import time

import pytest

from conftest import jwt_for
from rawws import finish_module_cluster, module_cluster, upgrade_request

HANDSHAKES = 64  # the default gateway.max_handshakes_per_client
PER_CLIENT = 1000  # the default gateway.max_per_client


@pytest.fixture(scope="module")
def cluster_m(broker, vhost, request, tmp_path_factory):
    c = module_cluster(broker, vhost, request, tmp_path_factory)
    c.wk = c.worker()
    yield c
    finish_module_cluster(c)


@pytest.fixture
def gateway(cluster_m):
    started = []

    def start(*flags):
        gw = cluster_m.gateway(*flags, address_limits=True)
        started.append(gw)
        return gw
    yield start
    for gw in started:
        problem = gw.stop()
        gw.expected_exit = True
        assert problem is None, problem


def sock_from(port, source="127.0.0.1"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                 source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def status_within(s, seconds):
    """The HTTP status the gateway answered on s, or None when it answered
    nothing within `seconds` (the connection is still waiting)."""
    s.settimeout(seconds)
    try:
        data = s.recv(4096)
    except socket.timeout:
        return None
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    return int(m.group(1)) if m else -1


def statuses_within(socks, seconds):
    """status_within for many sockets at once, waiting `seconds` in all."""
    out = [None] * len(socks)
    deadline = time.monotonic() + seconds
    left = set(range(len(socks)))
    while left and time.monotonic() < deadline:
        for i in list(left):
            socks[i].setblocking(False)
            try:
                data = socks[i].recv(4096)
            except BlockingIOError:
                continue
            finally:
                socks[i].setblocking(True)
            m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
            out[i] = int(m.group(1)) if m else -1
            left.discard(i)
        time.sleep(0.02)
    return out


def handshake(port, source="127.0.0.1", forwarded=None):
    s = sock_from(port, source)
    head, _ = upgrade_request(f"/websocket/?token={jwt_for(1)}",
                              headers={"X-Forwarded-For": forwarded} if forwarded else None)
    t0 = time.monotonic()
    s.sendall(head)
    status = status_within(s, 10)
    return s, status, time.monotonic() - t0


def test_one_address_holds_no_more_than_its_share_of_half_sent_heads(gateway):
    """Directly exposed (no trusted proxy): 300 sockets from one address
    each send half a request head and stop. The first 64 wait for their
    handshake_timeout; the rest get 503 at once. A client from another
    address still upgrades."""
    gw = gateway("--gateway.trusted_proxies=")
    held = []
    try:
        for _ in range(300):
            s = sock_from(gw.port)
            s.sendall(b"GET /websocket/ HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        statuses = statuses_within(held, 1.0)
        waiting = statuses.count(None)
        print(f"half-sent heads: {waiting} held, {statuses.count(503)} refused 503")
        assert waiting == HANDSHAKES and statuses.count(503) == 300 - HANDSHAKES, statuses
        probe, status, took = handshake(gw.port, source="127.0.0.2")
        probe.close()
        print(f"another address's handshake: {status} in {took * 1000:.1f} ms")
        assert status == 101
        assert re.search(r"event=client_limit id=\d+ client=127\.0\.0\.1 "
                         r"limit=max_handshakes_per_client", gw.log())
    finally:
        for s in held:
            s.close()


def test_one_address_cannot_fill_the_connect_queue(gateway, cluster_m):
    """Workers lag (SIGSTOP): one address behind the proxy sends 100 whole
    handshakes; 64 go to websocket.connect and 36 get 503 at once, while a
    second address's handshake is still queued for a worker, not refused."""
    gw = gateway()
    cluster_m.wk.proc.send_signal(signal.SIGSTOP)
    socks = []
    try:
        head, _ = upgrade_request(f"/websocket/?token={jwt_for(1)}",
                                  headers={"X-Forwarded-For": "203.0.113.7"})
        for _ in range(100):
            s = sock_from(gw.port)
            s.sendall(head)
            socks.append(s)
        refused = statuses_within(socks, 1.0).count(503)
        print(f"one address, 100 handshakes with workers stopped: {refused} refused")
        assert refused == 100 - HANDSHAKES, refused
        probe = sock_from(gw.port)
        other, _ = upgrade_request(f"/websocket/?token={jwt_for(2)}",
                                   headers={"X-Forwarded-For": "198.51.100.1"})
        probe.sendall(other)
        socks.append(probe)
        assert status_within(probe, 1.0) is None, "the other address was refused"
    finally:
        cluster_m.wk.proc.send_signal(signal.SIGCONT)
        for s in socks:
            s.close()


def test_the_default_per_address_bound_counts_the_forwarded_address(gateway):
    """Behind the proxy on this host (trusted by default), 1000 websockets
    from one forwarded address are accepted and the next is refused; another
    forwarded address is not; an address that only claims a forwarded
    address (not a trusted proxy) is counted as itself."""
    gw = gateway()
    open_ = []
    try:
        for batch in range(PER_CLIENT // 50):
            pending = []
            for _ in range(50):
                s = sock_from(gw.port)
                head, _ = upgrade_request(f"/websocket/?token={jwt_for(1)}",
                                          headers={"X-Forwarded-For": "203.0.113.7"})
                s.sendall(head)
                pending.append(s)
            assert [status_within(s, 10) for s in pending] == [101] * 50, batch
            open_ += pending
        s, status, _ = handshake(gw.port, forwarded="203.0.113.7")
        open_.append(s)
        assert status == 503
        s, status, _ = handshake(gw.port, forwarded="198.51.100.1")
        open_.append(s)
        assert status == 101
        assert re.search(r"event=client_limit id=\d+ client=203\.0\.113\.7 "
                         r"limit=max_per_client", gw.log())
    finally:
        for s in open_:
            s.close()


def test_an_untrusted_peer_cannot_choose_its_address(gateway):
    """Not a trusted proxy: its X-Forwarded-For is ignored, so a new claimed
    address per connection does not buy more connections."""
    gw = gateway("--gateway.trusted_proxies=", "--gateway.max_per_client=5")
    socks = []
    try:
        statuses = []
        for i in range(6):
            s, status, _ = handshake(gw.port, forwarded=f"198.51.100.{i + 1}")
            socks.append(s)
            statuses.append(status)
        assert statuses == [101] * 5 + [503], statuses
    finally:
        for s in socks:
            s.close()
