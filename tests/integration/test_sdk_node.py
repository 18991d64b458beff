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

Needs node (>= 18) and clients/js/node_modules (tests/lib/deps.sh runs
`npm ci`); skipped when either is missing.
"""

import json
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import ROOT, SECRET, binary, jwt_for, wait_until
from wsgw2 import own_vhost  # noqa: F401  (a fixture: vhost below uses it)

JS = ROOT / "clients" / "js"
CLIENT = JS / "test" / "node" / "client.mjs"
NODE = shutil.which("node")

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
            obj = json.loads(line)
            obj["at"] = time.monotonic()
            with self._lock:
                self.lines.append(obj)

    def snapshot(self, type_=None):
        with self._lock:
            return [x for x in self.lines if type_ is None or x["type"] == type_]

    def send(self, cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def wait(self, pred, timeout, what):
        """The first line satisfying pred (among all so far, then new ones)."""
        found = []

        def check():
            if self.proc.poll() is not None:
                pytest.fail(f"client.mjs exited ({self.proc.returncode}) waiting for {what}:\n"
                            f"{self.proc.stderr.read()}\nlines: {self.snapshot()}")
            for x in self.snapshot():
                if pred(x):
                    found.append(x)
                    return True
            return False
        wait_until(check, timeout, f"{what}; lines so far: {self.snapshot()[-20:]}")
        return found[0]

    def nth(self, type_, n, timeout, what):
        wait_until(lambda: len(self.snapshot(type_)) >= n, timeout,
                   f"{what}; lines so far: {self.snapshot()[-20:]}")
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
    reply = c.nth("reply", 2, 15, "the second reply")
    assert reply["current"] == [G1] and reply["left"] == [G42] and reply["refused"] == []
    c.send({"positions": True})
    assert set(c.nth("positions", 1, 5, "positions")["positions"]) == {G1}


def test_old_protocol_events_are_raw(cluster, node_clients):
    cluster.worker()
    gw = cluster.gateway()
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
