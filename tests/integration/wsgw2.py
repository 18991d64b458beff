"""Client side of protocol wsgw.2 for the history tests (docs/PROTOCOL.md,
"Protocol wsgw.2"; issue 14).

Owns: connecting with the subprotocol wsgw.2 (and failing the test when the
101 does not choose it), the subscription request with "positions", telling
apart the four kinds of message a wsgw.2 client gets (events
{"group","position","text"}, the subscription reply, notices, errors) and
checking each against the protocol, the position per group kept by the
client rule, a numbered-event emitter thread, checks of numbered sequences,
and a vhost of each test's own (its own stream websocket.history). Must not:
start daemons (conftest's Cluster does) or know how the gateway stores its
history.

The client rule (spec, "Client rule"): a group's position is that of the
last message that named one for it, in the order the connection delivered
them: an event's position, or a reply's or notice's.
"""

import asyncio
import json
import os
import re
import threading
import time

import pytest

from conftest import PikaEmitter, connect, jwt_for, recv_json
from rawws import CLOSE, PING, PONG, TEXT, RawWS, ws_path

SUBPROTOCOL = "wsgw.2"
# chan_pos_parse: 1-19 digits without a leading zero (except "0"), fitting
# 63 bits, "-", 12 lowercase hex digits.
POSITION = re.compile(r"(0|[1-9][0-9]{0,18})-[0-9a-f]{12}\Z")
RECOVERY_STATES = ("ok", "expired", "unknown")
EVENT_KEYS = {"group", "position", "text"}

# The gateway's history made small, so that what a test emits passes it:
# the gateway keeps 256 KiB, the stream 1 MiB in segments of 256 KiB (the
# broker drops whole old segments). Tests that must overrun it emit 8 MiB.
HISTORY_SMALL = ("--history.memory=256KiB", "--history.max_bytes=1MiB",
                 "--history.segment_bytes=256KiB",
                 # Retention overtakes the gateway's consumer here, which
                 # RabbitMQ 3.10 may leave stalled: the watch resumes it soon.
                 "--history.check_interval=1s")
# Room for everything a test emits (16 MiB at most).
HISTORY_ROOMY = ("--history.memory=64MiB",)


def valid_position(p):
    return isinstance(p, str) and POSITION.match(p) is not None and int(p.split("-")[0]) < 2**63


def offset_of(p):
    return int(p.split("-", 1)[0])


def tag_of(p):
    return p.split("-", 1)[1]


class Event:
    __slots__ = ("group", "position", "text")

    def __init__(self, group, position, text):
        self.group, self.position, self.text = group, position, text

    @property
    def offset(self):
        return offset_of(self.position)

    def n(self):
        """The number a Ticker put in the event."""
        return json.loads(self.text)["n"]

    def __repr__(self):
        return f"Event({self.group}, {self.position}, {self.text[:60]!r})"


class Tracker:
    """What one wsgw.2 connection received, checked message by message, and
    its positions by the client rule."""

    def __init__(self, name):
        self.name = name
        self.positions = {}   # group -> position (client rule)
        self.current = None   # groups_current of the last reply (None: none yet)
        self.events = []      # every Event, in arrival order
        self.notices = []     # every notice, in arrival order
        self.heartbeats = []  # the N of every {"heartbeat": N}
        self.replies = []
        self.errors = []
        self.log = []         # (kind, message) in arrival order
        self.pending = False  # a request was sent and its answer has not come

    def take(self, msg):
        """Classifies one parsed message; returns (kind, value) with kind in
        event, reply, notice, error. Fails the test on anything else."""
        where = f"{self.name}: {msg!r}"
        assert isinstance(msg, dict), f"not a JSON object: {where}"
        if set(msg) == EVENT_KEYS:
            ev = Event(msg["group"], msg["position"], msg["text"])
            assert isinstance(ev.group, str) and isinstance(ev.text, str), where
            assert valid_position(ev.position), f"event with an invalid position: {where}"
            assert self.current is not None, f"an event before any subscription reply: {where}"
            assert self.pending or ev.group in self.current, \
                f"an event of a group the connection is not in ({sorted(self.current)}): {where}"
            prev = self.positions.get(ev.group)
            if prev is not None and ev.group in self.current:
                assert ev.offset > offset_of(prev), \
                    f"event position not after the group's last one ({prev}): {where}"
            self.positions[ev.group] = ev.position
            self.events.append(ev)
            self.log.append(("event", ev))
            return "event", ev
        if set(msg) == {"heartbeat"}:
            assert isinstance(msg["heartbeat"], int) and msg["heartbeat"] > 0, where
            self.heartbeats.append(msg["heartbeat"])
            return "heartbeat", msg
        if "groups_current" in msg:
            self._check_reply(msg, where)
            self.current = set(msg["groups_current"])
            self.pending = False
            self.positions = dict(msg["positions"])
            self.replies.append(msg)
            self.log.append(("reply", msg))
            return "reply", msg
        if "recovery" in msg:
            assert set(msg) == {"recovery", "positions"}, f"notice with other keys: {where}"
            rec, pos = msg["recovery"], msg["positions"]
            assert isinstance(rec, dict) and isinstance(pos, dict), where
            assert all(v in RECOVERY_STATES for v in rec.values()), where
            assert all(valid_position(p) for p in pos.values()), where
            assert self.current is not None and set(pos) <= self.current, \
                f"notice about groups the connection is not in: {where}"
            for g in rec:  # a group the notice names but cannot place: forget it
                self.positions.pop(g, None)
            self.positions.update(pos)
            self.notices.append(msg)
            self.log.append(("notice", msg))
            return "notice", msg
        if "error" in msg:
            assert set(msg) == {"error"}, where
            self.errors.append(msg)
            if _whole_request_error(msg):
                self.pending = False
            self.log.append(("error", msg))
            return "error", msg
        pytest.fail(f"a message that is none of event, reply, notice, error: {where}")

    @staticmethod
    def _check_reply(msg, where):
        assert "positions" in msg, f"a wsgw.2 subscription reply without positions: {where}"
        pos = msg["positions"]
        assert isinstance(pos, dict), where
        assert set(pos) == set(msg["groups_current"]), \
            f"reply positions are not exactly the current groups: {where}"
        for g, p in pos.items():
            assert valid_position(p), f"reply position of {g} is invalid: {where}"
        if "recovery" in msg:
            assert isinstance(msg["recovery"], dict), where
            assert all(v in RECOVERY_STATES for v in msg["recovery"].values()), where
            assert set(msg["recovery"]) <= set(msg["groups_current"]), where

    def of(self, group):
        return [e for e in self.events if e.group == group]


def subscription_request(groups, positions=None, xrftoken=None, **extra):
    req = {"groups": groups}
    if positions is not None:
        req["positions"] = positions
    if xrftoken is not None:
        req["xrftoken"] = xrftoken
    req.update(extra)
    return req


class Client:
    """A wsgw.2 connection with the websockets library (asyncio)."""

    def __init__(self, ws, name):
        self.ws = ws
        self.t = Tracker(name)

    @property
    def positions(self):
        return self.t.positions

    @property
    def events(self):
        return self.t.events

    async def next(self, timeout=10, what="a message"):
        return self.t.take(await recv_json(self.ws, timeout, f"{self.t.name}: {what}"))

    async def request(self, req, timeout=10):
        """Sends a request (dict or raw text); returns (errors, reply or
        None): the errors up to the reply, or the one whole-request error.
        Events that arrive meanwhile are kept as usual."""
        self.t.pending = True
        await self.ws.send(req if isinstance(req, str) else json.dumps(req))
        errors = []
        while True:
            kind, value = await self.next(timeout, f"the reply to {req}")
            if kind == "reply":
                return errors, value
            if kind == "error":
                errors.append(value)
                if _whole_request_error(value):
                    return errors, None

    async def subscribe(self, groups, positions=None, timeout=10, **extra):
        errors, reply = await self.request(subscription_request(groups, positions, **extra),
                                           timeout)
        assert reply is not None, f"{self.t.name}: the request was refused: {errors}"
        return errors, reply

    async def take(self, n, timeout=30):
        """The next n events (notices are kept in the tracker)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{self.t.name}: {len(got)} of {n} events within {timeout}s")
            kind, value = await self.next(left, f"event {len(got) + 1} of {n}")
            if kind == "event":
                got.append(value)
            elif kind not in ("notice", "heartbeat"):
                pytest.fail(f"{self.t.name}: unexpected {kind} while reading events: {value}")
        return got

    async def until(self, done, timeout=60, what="the events"):
        """Reads until done(tracker) is true."""
        deadline = time.monotonic() + timeout
        while not done(self.t):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{self.t.name}: timed out after {timeout}s waiting for {what}; "
                            f"last: {self.t.log[-3:]}")
            await self.next(left, what)

    async def quiet(self, within=0.5):
        """Asserts nothing arrives within a short window."""
        try:
            msg = await asyncio.wait_for(self.ws.recv(), within)
        except asyncio.TimeoutError:
            return
        pytest.fail(f"{self.t.name}: unexpected message: {msg!r}")

    async def close(self):
        await self.ws.close()


def _whole_request_error(err):
    """Errors of a request as a whole: the error is the only message."""
    return not err["error"].startswith("access denied")


async def open_v2(gw, user=7, token=None, protocols=(SUBPROTOCOL,), name=None, **kw):
    """Connects listing protocols; asserts the 101 chose wsgw.2 and reads the
    accept message. Returns a Client."""
    ws = await connect(gw.url(token=token or jwt_for(user)), subprotocols=list(protocols), **kw)
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close()
        pytest.fail(f"the 101 chose subprotocol {ws.subprotocol!r}, not {SUBPROTOCOL!r}, "
                    f"though the client listed {list(protocols)} (gateway on port {gw.port})")
    c = Client(ws, name or f"user{user}@{gw.port}")
    accept = await recv_json(ws, what="the accept message")
    assert accept == {"accept": True, "user": user}, accept
    return c


class RawV2:
    """A wsgw.2 connection on a plain socket (rawws.RawWS): for a client that
    stops reading (a small receive buffer, nothing read by anyone)."""

    def __init__(self, port, user=7, rcvbuf=None, mss=None, name=None):
        self.ws = RawWS(port, ws_path("/websocket/", jwt_for(user)),
                        headers={"Sec-WebSocket-Protocol": SUBPROTOCOL},
                        rcvbuf=rcvbuf, mss=mss, timeout=30)
        chosen = self.ws.response.header("sec-websocket-protocol")
        assert chosen == SUBPROTOCOL, f"the 101 chose subprotocol {chosen!r}, not {SUBPROTOCOL!r}"
        self.t = Tracker(name or f"raw-user{user}@{port}")
        self.close_code = None
        accept = json.loads(self.ws.recv_message()[1])
        assert accept == {"accept": True, "user": user}, accept

    def send(self, req):
        self.t.pending = True
        self.ws.send_frame(TEXT, json.dumps(req))

    def next(self, timeout=30):
        """(kind, value) of the next message; ("close", code) at the close."""
        f = self.ws.read_frame(timeout)
        while f.opcode == PING:  # the gateway's keepalive: answer, as a client must
            self.ws.send_frame(PONG, f.payload)
            f = self.ws.read_frame(timeout)
        if f.opcode == CLOSE:
            self.close_code = f.close_code()[0]
            return "close", self.close_code
        assert f.opcode == TEXT and f.fin, f"{self.t.name}: unexpected frame {f!r}"
        return self.t.take(json.loads(f.payload))

    def subscribe(self, groups, positions=None):
        self.send(subscription_request(groups, positions))
        while True:
            kind, value = self.next()
            if kind == "reply":
                return value
            assert kind == "event", f"{self.t.name}: {kind} {value} before the reply"

    def close(self):
        self.ws.close()


# ---- numbered events ---------------------------------------------------------

def numbered(group, n, pad=0):
    return json.dumps({"g": group, "n": n, "pad": "x" * pad}, separators=(",", ":"))


class Ticker(threading.Thread):
    """Emits numbered events (numbered() texts, 1, 2, ... per group) round
    robin over groups, with publisher confirms, at up to `rate` events per
    second in all, until stop()."""

    def __init__(self, amqp_url, groups, rate, pad=0):
        super().__init__(daemon=True)
        self.url, self.groups, self.rate, self.pad = amqp_url, list(groups), rate, pad
        self.sent = {g: 0 for g in self.groups}
        self.error = None
        self._stop_flag = threading.Event()

    def run(self):
        try:
            em = PikaEmitter(self.url)
            t0, i = time.monotonic(), 0
            while not self._stop_flag.is_set():
                g = self.groups[i % len(self.groups)]
                em.emit(g, numbered(g, self.sent[g] + 1, self.pad))
                self.sent[g] += 1
                i += 1
                ahead = t0 + i / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            em.close()
        except Exception as e:  # reported by stop()
            self.error = e

    def total(self, groups=None):
        return sum(self.sent[g] for g in (groups or self.groups))

    def wait_total(self, count, groups=None, timeout=60):
        deadline = time.monotonic() + timeout
        while self.total(groups) < count:
            assert self.error is None, f"the emitter failed: {self.error!r}"
            assert time.monotonic() < deadline, \
                f"the emitter sent {self.total(groups)} of {count} within {timeout}s"
            time.sleep(0.01)

    def stop(self):
        """Stops; returns {group: the last number emitted}."""
        self._stop_flag.set()
        self.join(30)
        assert self.error is None, f"the emitter failed: {self.error!r}"
        return dict(self.sent)


def numbers(events, group):
    return [e.n() for e in events if e.group == group]


def assert_exact(ns, first, last, what):
    """ns must be exactly first..last: no gap, no duplicate, in order."""
    want = list(range(first, last + 1))
    if ns == want:
        return
    dups = len(ns) - len(set(ns))
    missing = sorted(set(want) - set(ns))
    at = next((i for i in range(min(len(ns), len(want))) if ns[i] != want[i]),
              min(len(ns), len(want)))
    pytest.fail(f"{what}: got {len(ns)} events, want {first}..{last} ({len(want)}); "
                f"{dups} duplicates, {len(missing)} missing (first {missing[:5]}), "
                f"first difference at index {at}: got {ns[max(0, at - 3):at + 3]}")


# ---- a vhost of the test's own ---------------------------------------------

@pytest.fixture
def own_vhost(broker, request):
    """A fresh vhost for one test, deleted after it: every test gets its own
    websocket.history stream (a stream's size settings are fixed when it is
    declared, and what one test emitted must not be another's history).
    A module uses it as its `vhost`: `vhost = own_vhost` does not work (the
    names differ), so it defines `def vhost(own_vhost): return own_vhost`."""
    name = "h_" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[-40:] + f"_{os.getpid()}"
    broker.ctl("add_vhost", name)
    broker.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    broker.ctl("delete_vhost", name)
