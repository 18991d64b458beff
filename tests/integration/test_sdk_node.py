"""The JavaScript SDK (clients/js) in Node against the real stack (issue 15,
spec section 3): clients/js/test/node/client.mjs runs a WsgwClient with the
npm `ws` package as its WebSocket and prints one JSON line per thing it
reports; these tests drive it (stdin commands), break the stack under it
(SIGKILL a gateway, kick, expire its token, black-hole its TCP) and check
what it printed: replies, refusals, events complete, in order, no
duplicates, and how it reconnected or stopped.

Owns: the NodeClient driver and a TCP proxy that can stop forwarding. Must
not: test the SDK's logic in isolation (clients/js/test/unit does, against a
fake WebSocket).

Needs node (>= 18; $WSGW_NODE names another binary) and
clients/js/node_modules (tests/lib/deps.sh runs `npm ci`); skipped when
either is missing.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import HISTORY_OFF, ROOT, SECRET, binary, jwt_for, run, wait_until
from test_metrics import Scrape
from wsgw2 import HISTORY_SMALL, numbered, open_v2
from wsgw2 import own_vhost  # noqa: F401  (a fixture: vhost below uses it)

JS = ROOT / "clients" / "js"
CLIENT = JS / "test" / "node" / "client.mjs"
NODE = os.environ.get("WSGW_NODE") or shutil.which("node")  # WSGW_NODE: e.g. a Node 18

pytestmark = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "ws").is_dir(),
    reason="node or clients/js/node_modules missing (tests/lib/deps.sh installs them)")

G1, G42 = "jobs-status_changed", "job_events-42"
FAST = {"initial": 100, "max": 1000, "factor": 2}


@pytest.fixture
def vhost(own_vhost):
    return own_vhost


class NodeClient:
    """One client.mjs process: its JSON lines in self.lines (a reader thread),
    commands written to its stdin."""

    def __init__(self, cfg):
        self.proc = subprocess.Popen([NODE, str(CLIENT), json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"type": "unparsed", "line": line}
            obj["at"] = time.monotonic()
            with self._lock:
                self.lines.append(obj)

    def snapshot(self, type_=None):
        with self._lock:
            return [x for x in self.lines if type_ is None or x["type"] == type_]

    def send(self, cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def summary(self):
        """The lines but events, and how many events: for failure messages."""
        lines = self.snapshot()
        return [x for x in lines if x["type"] != "event"][-20:] + \
            [f"{sum(x['type'] == 'event' for x in lines)} events"]

    def _alive(self, what):
        if self.proc.poll() is not None:
            pytest.fail(f"client.mjs exited ({self.proc.returncode}) waiting for {what}:\n"
                        f"{self.proc.stderr.read()}\nlines: {self.summary()}")

    def _until(self, check, timeout, what):
        """wait_until with the lines as they are when it gives up."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}; "
                            f"lines: {self.summary()}")
            time.sleep(0.05)

    def wait(self, pred, timeout, what):
        """The first line satisfying pred (among all so far, then new ones)."""
        found = []

        def check():
            self._alive(what)
            found[:] = [x for x in self.snapshot() if pred(x)][:1]
            return bool(found)
        self._until(check, timeout, what)
        return found[0]

    def nth(self, type_, n, timeout, what):
        """The n-th line of a type (1-based), waiting for it."""
        def check():
            self._alive(what)
            return len(self.snapshot(type_)) >= n
        self._until(check, timeout, what)
        return self.snapshot(type_)[n - 1]

    def events(self, group):
        return [x for x in self.snapshot("event") if x["group"] == group]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return err


@pytest.fixture
def node_clients():
    made = []

    def make(cfg):
        c = NodeClient(cfg)
        made.append(c)
        return c
    yield make
    for c in made:
        err = c.close()
        print(err)
        assert "Error" not in err, f"client.mjs wrote to stderr:\n{err}"


def numbers(events):
    return [e["data"]["n"] for e in events]


def emit_numbered(cluster, group, start, count):
    em = cluster.pika_emitter()
    try:
        for n in range(start, start + count):
            em.emit(group, json.dumps({"n": n}))
    finally:
        em.close()


# ---- subscribe, refusals, events ------------------------------------------------

def test_subscribe_refusals_and_events_in_order(cluster, node_clients):
    cluster.worker()
    gw = cluster.gateway()
    c = node_clients({"urls": [gw.url()], "token": jwt_for(7, objects={"job_events": [42]}),
                      "subscribe": {"jobs": ["status_changed"], "job_events": [42, 43]}})
    reply = c.nth("reply", 1, 15, "the subscription reply")
    assert reply["current"] == [G42, G1] and reply["joined"] == [G42, G1]
    assert reply["left"] == [] and reply["recovery"] == {}
    assert reply["refused"] == ["access denied to channel job_events for resource id 43"]
    assert set(reply["positions"]) == {G42, G1}
    opened = c.snapshot("state")
    assert [s["state"] for s in opened] == ["connecting", "open"]
    assert opened[-1]["protocol"] == "wsgw.2" and reply["user"] == 7  # from the greeting

    emit_numbered(cluster, G1, 0, 50)
    emit_numbered(cluster, G42, 0, 50)
    wait_until(lambda: len(c.events(G1)) >= 50 and len(c.events(G42)) >= 50, 15,
               "100 events")
    assert numbers(c.events(G1)) == list(range(50))
    assert numbers(c.events(G42)) == list(range(50))
    assert c.events(G1)[0]["text"] == '{"n": 0}'  # the emitted text exactly

    # Replace semantics: the new set replaces the old one.
    c.send({"subscribe": {"jobs": ["status_changed"]}})
    reply = c.nth("subscribed", 2, 15, "the second reply")
    assert reply["current"] == [G1] and reply["left"] == [G42] and reply["refused"] == []
    c.send({"positions": True})
    assert set(c.nth("positions", 1, 5, "positions")["positions"]) == {G1}


def test_old_protocol_events_are_raw_and_no_heartbeat(cluster, node_clients):
    cluster.worker()
    gw = cluster.gateway("--gateway.ping_interval=300ms")
    c = node_clients({"urls": [gw.url()], "token": jwt_for(7), "protocol": None,
                      "subscribe": {"jobs": ["status_changed"]}})
    reply = c.nth("reply", 1, 15, "the subscription reply")
    assert reply["current"] == [G1] and reply["positions"] == {} and reply["recovery"] == {}
    assert c.snapshot("state")[-1]["protocol"] == ""
    emit_numbered(cluster, G1, 0, 5)
    wait_until(lambda: len(c.snapshot("event")) >= 5, 10, "5 events")
    evs = c.snapshot("event")
    assert [(e["group"], e["position"], e["data"]["n"]) for e in evs] == \
        [(None, None, n) for n in range(5)]
    # Pings every 300 ms, never a heartbeat text: it would be an event here.
    time.sleep(1.5)
    assert c.snapshot("heartbeat") == [] and len(c.snapshot("event")) == 5
    assert [s["state"] for s in c.snapshot("state")] == ["connecting", "open"]


def test_try_again_later_is_retried_after_a_backoff(cluster, node_clients):
    """The gateway's allowance of group changes (burst 11, 5 per second, as
    in test_attack_churn): after a swap overdraws it, the next request is
    answered "too many subscription changes, try again later"; the SDK sends
    it again after its backoff delay (fixed jitter: 1.8 s, then 3.6 s) and
    the promise resolves once the allowance refilled."""
    cluster.worker()
    gw = cluster.gateway("--gateway.group_changes_burst=11", "--gateway.group_changes_rate=5",
                         HISTORY_OFF)
    c = node_clients({"urls": [gw.url()], "token": jwt_for(7), "random": 0.9,
                      "backoff": {"initial": 1000, "max": 4000, "factor": 2},
                      "subscribe": {"jobs": [f"a{i}" for i in range(10)]}})
    assert len(c.nth("reply", 1, 15, "ten groups")["current"]) == 10
    c.send({"subscribe": {"jobs": ["b"]}})  # 11 changes: applied, overdrawn
    assert c.nth("reply", 2, 15, "the swap")["current"] == ["jobs-b"]
    c.send({"subscribe": {"jobs": ["c"]}})
    reply = c.nth("reply", 3, 20, "the request the gateway first refused")
    assert reply["current"] == ["jobs-c"] and reply["left"] == ["jobs-b"]
    assert c.snapshot("rejected") == []
    # History off: no wsgw.2; the gateway names wsgw.1 (the old protocol),
    # which the SDK offers after wsgw.2 (ws, like browsers, fails a 101 that
    # names none of the offered subprotocols).
    states = c.snapshot("state")
    assert [s["state"] for s in states] == ["connecting", "open"], states
    assert states[-1]["protocol"] == ""
    refusals = Scrape(gw.metrics_port)("wsgw_gateway_subscription_refusals_total",
                                       reason="changes")
    assert refusals >= 1, refusals


# ---- a gateway SIGKILLed under the client ---------------------------------------

class Ticker:
    """Emits {"n": i} to a group every `every` seconds from a thread until
    stopped; self.sent counts what the broker confirmed."""

    def __init__(self, cluster, group, every=0.02):
        self.cluster, self.group, self.every = cluster, group, every
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        em = self.cluster.pika_emitter()
        try:
            while not self._stop.is_set():
                em.emit(self.group, json.dumps({"n": self.sent}))
                self.sent += 1
                time.sleep(self.every)
        finally:
            em.close()

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return self.sent


def assert_complete(events, count):
    got = numbers(events)
    assert got == list(range(count)), \
        f"{len(got)} events; missing {sorted(set(range(count)) - set(got))[:10]}, " \
        f"duplicates {len(got) - len(set(got))}, in order {got == sorted(got)}"
    positions = [e["position"] for e in events]
    assert len(set(positions)) == len(positions)


def test_gateway_sigkilled_recovery_ok_complete_no_duplicates(cluster, node_clients):
    cluster.worker()
    a = cluster.gateway()
    b = cluster.gateway()
    c = node_clients({"urls": [a.url(), b.url()], "token": jwt_for(7), "backoff": FAST,
                      "subscribe": {"jobs": ["status_changed"]}})
    c.nth("reply", 1, 15, "the subscription reply")
    ticker = Ticker(cluster, G1)
    try:
        wait_until(lambda: len(c.events(G1)) >= 20, 15, "20 events before the kill")
        c.send({"url": 1})  # the next connection goes to gateway b
        a.kill(signal.SIGKILL)
        a.proc.wait(10)
        again = c.nth("subscribed", 2, 20, "the reply after reconnecting to gateway b")
        assert again["recovery"] == {G1: "ok"}, again
        assert again["current"] == [G1]
        seen = len(c.events(G1))
        wait_until(lambda: len(c.events(G1)) >= seen + 20, 15, "live events on gateway b")
    finally:
        sent = ticker.stop()
    wait_until(lambda: len(c.events(G1)) >= sent, 15, f"all {sent} events")
    assert_complete(c.events(G1), sent)
    states = [s["state"] for s in c.snapshot("state")]
    assert states == ["connecting", "open", "waiting", "connecting", "open"], states
    assert c.snapshot("gap") == []


# ---- kicked: stops for good -----------------------------------------------------

def user_bound(cluster, user):
    """The gateway's binding of every user's control key (wsgw!user.*, at
    broker-up): a kick before it reaches nobody."""
    del user
    key = "wsgw!user.*"
    wait_until(lambda: len(cluster.broker.group_bindings(cluster.vhost, key)) == 1, 10,
               f"the binding of {key}", interval=0.1)


def test_kick_4403_stops_without_reconnecting(cluster, node_clients):
    cluster.worker()
    gw = cluster.gateway()
    c = node_clients({"urls": [gw.url()], "token": jwt_for(7), "backoff": FAST,
                      "subscribe": {"jobs": ["status_changed"]}})
    c.nth("reply", 1, 15, "the subscription reply")
    user_bound(cluster, 7)
    subprocess.run([binary("chanctl"), "kick", "--user", "7", f"--amqp.url={cluster.amqp_url}"],
                   check=True, capture_output=True, timeout=30)
    stopped = c.nth("stopped", 1, 10, "the stop after the kick")
    assert stopped["why"] == "kicked" and stopped["code"] == 4403
    assert stopped["reason"] == "access revoked"
    # Longer than the backoff's cap: no new connection.
    c.send({"subscribe": {"jobs": ["status_changed"]}})
    rejected = c.nth("rejected", 1, 5, "subscribe() after the stop")
    assert rejected["code"] == "stopped"
    time.sleep(1.5)  # what must not happen: a reconnect within the backoff cap (1 s)
    assert [s["state"] for s in c.snapshot("state")] == ["connecting", "open", "stopped"]


def test_static_token_refused_handshake_stops_auth(cluster, node_clients):
    cluster.worker()
    gw = cluster.gateway()
    expired = jwt_for(7, ttl=-3600)
    c = node_clients({"urls": [gw.url()], "token": expired, "backoff": FAST,
                      "subscribe": {"jobs": ["status_changed"]}})
    stopped = c.nth("stopped", 1, 10, "the stop after a 403")
    assert stopped["why"] == "auth"
    assert c.nth("rejected", 1, 5, "the pending subscribe")["code"] == "stopped"


# ---- the credential: refreshed in band; 4401 -> a fresh token -> reconnect ------

LEEWAY, WINDOW = 1, 2


def test_token_refreshed_in_band_before_exp(cluster, node_clients):
    cluster.worker(f"--auth.leeway={LEEWAY}s")
    gw = cluster.gateway(f"--gateway.refresh_window={WINDOW}s")
    c = node_clients({"urls": [gw.url()], "backoff": FAST,
                      "mint": {"secret": SECRET, "user": 7, "ttl": 3},
                      "subscribe": {"jobs": ["status_changed"]}})
    c.nth("reply", 1, 15, "the subscription reply")
    ticker = Ticker(cluster, G1, every=0.05)
    try:
        # ttl 3 s: refreshed at half its life; 3 refreshes take ~5 s, past
        # the first token's exp + leeway + window (6 s from its minting).
        c.nth("refreshed", 3, 20, "three refreshes")
        time.sleep(0.5)
        c.nth("refreshed", 4, 10, "a fourth refresh")
    finally:
        sent = ticker.stop()
    wait_until(lambda: len(c.events(G1)) >= sent, 15, f"all {sent} events")
    assert_complete(c.events(G1), sent)
    assert [s["state"] for s in c.snapshot("state")] == ["connecting", "open"]
    assert all(r["expires"] > time.time() - 10 for r in c.snapshot("refreshed"))


def test_4401_gets_a_fresh_token_and_reconnects_with_recovery(cluster, node_clients):
    cluster.worker(f"--auth.leeway={LEEWAY}s")
    gw = cluster.gateway(f"--gateway.refresh_window={WINDOW}s")
    # Call 1 connects (ttl 2 s); call 2 (the refresh, at 1 s) is refused, and
    # its retry comes 10 s later: the gateway closes 4401 at 2 + 1 + 2 s first.
    c = node_clients({"urls": [gw.url()], "backoff": FAST,
                      "mint": {"secret": SECRET, "user": 7, "ttl": 2, "bad": [2]},
                      "subscribe": {"jobs": ["status_changed"]}})
    c.nth("reply", 1, 15, "the subscription reply")
    ticker = Ticker(cluster, G1, every=0.05)
    try:
        waiting = c.wait(lambda x: x["type"] == "state" and x["state"] == "waiting", 15,
                         "the 4401 close")
        assert waiting["code"] == 4401 and waiting["reason"] == "credential expired"
        again = c.nth("subscribed", 2, 15, "the reply after reconnecting")
        assert again["recovery"] == {G1: "ok"}
        minted = c.snapshot("minted")
        assert [m["bad"] for m in minted[:3]] == [False, True, False], minted
    finally:
        sent = ticker.stop()
    wait_until(lambda: len(c.events(G1)) >= sent, 15, f"all {sent} events")
    assert_complete(c.events(G1), sent)
    assert c.snapshot("refreshed") == [] or c.snapshot("refreshed")[0]["at"] > waiting["at"]


# ---- a dead connection: the heartbeat rule ------------------------------------

class FreezableProxy:
    """A TCP proxy to a gateway; freeze() makes every connection open so far
    stop forwarding (both ways, sockets kept open: a black hole, as a dead NAT
    entry is), while new connections pass."""

    def __init__(self, port):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen_before = 0  # connections numbered below this are frozen
        self.count = 0
        self.socks = []
        self.blocked = False  # new connections are closed at once
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self):
        return f"ws://127.0.0.1:{self.port}/websocket/"

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            n = self.count
            self.count += 1
            self.socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(n, src, dst), daemon=True).start()

    def _pump(self, n, src, dst):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if n < self.frozen_before:
                return  # frozen: stop reading; the kernel buffers, then the window closes
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def freeze(self):
        self.frozen_before = self.count

    def cut(self):
        """Closes every connection (the client sees its socket end) and
        refuses new ones until unblocked."""
        self.blocked = True
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.listener.close()
        for s in self.socks:
            s.close()


PING_MS = 1000


def test_dead_connection_by_heartbeat_reconnects_within_2n_plus_5s(cluster, node_clients):
    """The heartbeat rule with the default heartbeatTimeout (65 s): only the
    gateway's {"heartbeat": N} can make the SDK give up on a black-holed
    connection within 2N + 5 s, and keep a healthy idle one."""
    cluster.worker()
    gw = cluster.gateway(f"--gateway.ping_interval={PING_MS}ms", "--gateway.ping_timeout=60s")
    proxy = FreezableProxy(gw.port)
    try:
        c = node_clients({"urls": [proxy.url()], "token": jwt_for(7), "backoff": FAST,
                          "subscribe": {"jobs": ["status_changed"]}})
        c.nth("reply", 1, 15, "the subscription reply")
        emit_numbered(cluster, G1, 0, 10)
        wait_until(lambda: len(c.events(G1)) >= 10, 10, "10 events")
        hb = c.nth("heartbeat", 3, 10, "three heartbeats")
        assert hb["n"] == PING_MS
        # A healthy idle connection outlives 2N + 5 s: heartbeats keep it.
        time.sleep((2 * PING_MS + 5000) / 1000 + 1)
        assert [s["state"] for s in c.snapshot("state")] == ["connecting", "open"]
        proxy.freeze()
        frozen_at = time.monotonic()
        emit_numbered(cluster, G1, 10, 10)  # sent into the black hole
        waiting = c.wait(lambda x: x["type"] == "state" and x["state"] == "waiting", 20,
                         "the SDK to declare the connection dead")
        assert waiting["code"] == 4000 and waiting["reason"] == "heartbeat timeout"
        # Dead 2N + 5 s after the last message, which came about N (a
        # heartbeat's period; up to 2N on a busy machine) before the freeze.
        took = waiting["at"] - frozen_at
        limit = (2 * PING_MS + 5000) / 1000
        assert limit - 2 * PING_MS / 1000 - 1 <= took <= limit + 0.5, took
        again = c.nth("subscribed", 2, 15, "the reply after reconnecting")
        assert again["recovery"] == {G1: "ok"}
        wait_until(lambda: len(c.events(G1)) >= 20, 10, "the 10 events missed in the hole")
        assert_complete(c.events(G1), 20)
        assert c.snapshot("gap") == []
    finally:
        proxy.close()


# ---- a gap: away for longer than the history keeps ------------------------------

def test_away_past_the_history_gives_a_gap_then_live(cluster, node_clients):
    """The gateway keeps 256 KiB (HISTORY_SMALL); while the client cannot
    connect, 8 MiB go to its group: back, its position is expired, the SDK
    reports a gap (the page refetches) and goes on live without a replay."""
    cluster.worker()
    gw = cluster.gateway(*HISTORY_SMALL)
    proxy = FreezableProxy(gw.port)
    try:
        c = node_clients({"urls": [proxy.url()], "token": jwt_for(7), "backoff": FAST,
                          "subscribe": {"jobs": ["status_changed"]}})
        c.nth("reply", 1, 15, "the subscription reply")
        cluster.emit(G1, numbered(G1, 1))
        c.nth("event", 1, 10, "the first event")
        proxy.cut()
        c.wait(lambda x: x["type"] == "state" and x["state"] == "waiting", 10, "the cut")
        n = 4000
        cluster.emit_stdin(G1, [numbered(G1, i, pad=2048) for i in range(2, n + 2)])

        async def probe():  # until the gateway has read all of it
            w = await open_v2(gw, name="probe")
            await w.subscribe({"jobs": ["summary"]})
            await asyncio.to_thread(cluster.emit, "jobs-summary", numbered("jobs-summary", 1))
            await w.take(1)
            await w.close()
        run(probe())
        proxy.blocked = False
        gap = c.nth("gap", 1, 20, "the gap")
        assert gap == {"type": "gap", "group": G1, "status": "expired", "at": gap["at"]}
        again = c.nth("subscribed", 2, 10, "the reply after reconnecting")
        assert again["recovery"] == {G1: "expired"}
        cluster.emit(G1, numbered(G1, n + 2))
        c.nth("event", 2, 10, "the live event")
        time.sleep(0.5)  # what must not come: a replay of the lost events
        assert [e["data"]["n"] for e in c.events(G1)] == [1, n + 2]
    finally:
        proxy.close()
