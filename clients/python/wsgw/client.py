"""wsgw.client - a small wsgw.2 subscriber for scripts (asyncio, websockets).

Owns: one websocket at a time to a gateway (several URLs are tried in turn
on each reconnect), the desired subscription (re-sent after every
reconnect, with the position of each group already seen), the positions, the
dead-connection rule (heartbeat: 2*N + 5 s of silence after a heartbeat of N
ms, 65 s before the first), the reconnect policy by close code, and a bounded
queue of what the script has not read yet. Must not: drop or duplicate an
event silently (a gap the gateway reports becomes a Gap item; an event at a
position already seen is a duplicate and is dropped), or grow without bound
(a full queue stops reading: the gateway then pauses this client and
replays from its history, docs/PROTOCOL.md, "A slow reader is not cut off").

    from wsgw.client import Subscriber, Event, Gap
    async with Subscriber("ws://127.0.0.1:8080/websocket/", {"job_events": [42]},
                          token=jwt) as sub:
        async for item in sub:
            if isinstance(item, Gap):   # events were lost: refetch the group's state
                ...
            else:                       # Event(group, position, text); item.data() parses it
                ...
"""

import asyncio
import json
import random
import urllib.parse
from typing import NamedTuple

import websockets

PROTOCOL = "wsgw.2"
RETRYABLE = ("too many subscription changes, try again later",
             "server busy, try again later", "no worker answered in time",
             "access check unavailable, try again later")
RETRIES = 5  # of one subscription after a retryable error, then Stopped("request")
STOP_CODES = {4403: "kicked", 1002: "protocol", 1003: "protocol", 1007: "protocol",
              1009: "protocol", 1010: "protocol"}
FIRST_HEARTBEAT_S = 65.0


class Event(NamedTuple):
    group: str
    position: str
    text: str

    def data(self):
        return json.loads(self.text)


class Gap(NamedTuple):
    """Events of group were lost ("expired" or "unknown"): refetch its state."""
    group: str
    status: str


class Stopped(Exception):
    """The subscriber stopped for good: why is "kicked", "auth", "protocol",
    "closed", or "request" (the gateway refused the subscription: message)."""

    def __init__(self, why, message=""):
        self.why = why
        super().__init__(f"{why}: {message}" if message else why)


def group_names(groups):
    """The group names a subscription's groups object asks for."""
    names = set()
    for key, value in groups.items():
        if isinstance(value, list):
            names.update(f"{key}-{item}" for item in value)
        elif not isinstance(value, dict):
            names.add(key)
    return names


class Subscriber:
    """Subscriber(url or [urls], groups, token=None, headers=None,
    xrftoken=None, queue_max=10000, backoff=(0.25, 30.0, 2.0)).

    token: a string, or a callable (plain or async) returning one, asked
    again before each reconnect after an authentication failure (4401, or a
    handshake refused with 401/403). Iterate it for Event and Gap items;
    iteration ends with Stopped when it stops for good (close() ends it
    quietly)."""

    def __init__(self, url, groups, token=None, headers=None, xrftoken=None,
                 queue_max=10000, backoff=(0.25, 30.0, 2.0)):
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls or not 1 <= queue_max <= 1_000_000:
            raise ValueError("need at least one URL and 1 <= queue_max <= 1,000,000")
        self.groups = groups
        self.token, self.headers, self.xrftoken = token, dict(headers or {}), xrftoken
        self.backoff = backoff
        self.positions = {}       # group -> position of its last event / reply / notice
        self.user = None
        self.protocol = ""
        self.connects = 0         # successful opens (a test sees the reconnects)
        self.refused = []         # the last reply's entry refusals
        self._queue = asyncio.Queue(queue_max)
        self._stop_event = asyncio.Event()
        self._retries = 0
        self._task = None
        self._ws = None
        self._stopped = None      # Stopped, once stopped
        self._token_value = None

    # -- the script's side
    async def __aenter__(self):
        self.start()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def start(self):
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._queue.empty() and self._stopped is not None:
            if self._stopped.why == "closed":
                raise StopAsyncIteration
            raise self._stopped
        if not self._queue.empty():
            return self._queue.get_nowait()
        get = asyncio.ensure_future(self._queue.get())
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        return await self.__anext__()   # stopped, and nothing left to read

    async def next(self, timeout=None):
        """The next item, waiting at most timeout seconds (asyncio.TimeoutError)."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def close(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._stop("closed")

    # -- the connection's side
    def _stop(self, why, message=""):
        """Stops for good; what is queued can still be read first."""
        if self._stopped is None:
            self._stopped = Stopped(why, message)
            self._stop_event.set()

    async def _fresh_token(self, renew):
        if callable(self.token):
            if renew or self._token_value is None:
                value = self.token()
                self._token_value = await value if asyncio.iscoroutine(value) else value
            return self._token_value
        return self.token

    def _url(self, n, token):
        url = self.urls[n % len(self.urls)]
        if token:
            url += ("&" if "?" in url else "?") + "token=" + urllib.parse.quote(token, safe="")
        return url

    def _delay(self, attempt):
        initial, most, factor = self.backoff
        return random.uniform(0, min(most, initial * factor ** attempt))

    async def _run(self):
        attempt, renew = 0, False
        try:
            while True:
                token = await self._fresh_token(renew)
                renew = False
                try:
                    ws = await websockets.connect(
                        self._url(self.connects + attempt, token), subprotocols=[PROTOCOL],
                        extra_headers=self.headers, open_timeout=15, close_timeout=5,
                        ping_interval=None, max_size=16 << 20, max_queue=64)
                except websockets.InvalidStatusCode as e:
                    if e.status_code in (401, 403):
                        if not callable(self.token):
                            return self._stop("auth", f"handshake refused: {e.status_code}")
                        renew = True
                    await asyncio.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                    await asyncio.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                self.connects += 1
                code = await self._serve(ws)
                if code is None:   # a subscription reply came: a good connection
                    attempt = 0
                    continue
                why = STOP_CODES.get(code[0])
                if why:
                    return self._stop(why, f"closed {code[0]} {code[1]}")
                if code[0] == 4401:
                    if not callable(self.token):
                        return self._stop("auth", "credential expired (4401)")
                    renew = True
                if code[0] == -1:   # the gateway refused the subscription itself
                    return self._stop("request", code[1])
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must end iteration, not hang it
            self._stop("closed", f"internal error: {e!r}")

    async def _serve(self, ws):
        """One connection: greeting, subscription, then events until it ends.
        Returns None when it ended after a reply, else (code, reason);
        (-1, message) for a refused subscription."""
        self._ws = ws
        self.protocol = ws.subprotocol or ""
        silence = FIRST_HEARTBEAT_S
        replied = False
        try:
            await self._send_subscription(ws)
            while True:
                try:
                    text = await asyncio.wait_for(ws.recv(), silence)
                except asyncio.TimeoutError:  # dead by the heartbeat rule: drop it
                    ws.transport.abort()
                    return None if replied else (4000, "no heartbeat")
                try:
                    msg = json.loads(text)
                except ValueError:
                    msg = None
                if isinstance(msg, dict) and "heartbeat" in msg and len(msg) == 1:
                    silence = 2 * msg["heartbeat"] / 1000 + 5
                    continue
                outcome = await self._handle(ws, msg, text)
                if outcome == "reply":
                    replied = True
                elif outcome is not None:
                    return outcome
        except websockets.ConnectionClosed as e:
            if replied and e.code not in STOP_CODES and e.code != 4401:
                return None
            return (e.code, e.reason)
        finally:
            self._ws = None
            if ws.open:
                await ws.close()

    async def _send_subscription(self, ws):
        request = {"groups": self.groups}
        if self.xrftoken is not None:
            request["xrftoken"] = self.xrftoken
        if self.protocol == PROTOCOL:
            wanted = group_names(self.groups)
            known = {g: p for g, p in self.positions.items() if g in wanted}
            if known:
                request["positions"] = known
        self.refused = []
        await ws.send(json.dumps(request))

    async def _handle(self, ws, msg, text):
        if isinstance(msg, dict) and "accept" in msg:
            self.user = msg.get("user")
            return None
        if isinstance(msg, dict) and "groups_current" in msg:
            # The reply says where each current group is served from: that
            # is the position (the client rule of docs/PROTOCOL.md).
            self._retries = 0
            await self._gaps(msg)
            self.positions = dict(msg.get("positions") or {})
            return "reply"
        if isinstance(msg, dict) and "recovery" in msg:   # a notice
            await self._gaps(msg)
            positions = msg.get("positions") or {}
            for group in msg["recovery"]:
                if group not in positions:   # no history yet: forget it
                    self.positions.pop(group, None)
            self.positions.update(positions)
            return None
        if isinstance(msg, dict) and set(msg) == {"group", "position", "text"}:
            if self.positions.get(msg["group"]) == msg["position"]:
                return None   # a duplicate (the gateway promises none: a belt)
            self.positions[msg["group"]] = msg["position"]
            await self._queue.put(Event(msg["group"], msg["position"], msg["text"]))
            return None
        if isinstance(msg, dict) and "error" in msg and len(msg) == 1:
            error = str(msg["error"])
            if error.startswith("access denied to channel"):
                self.refused.append(error)
            elif error in RETRYABLE and self._retries < RETRIES:
                self._retries += 1
                await asyncio.sleep(self._delay(self._retries))
                await self._send_subscription(ws)
            else:
                return (-1, error)
            return None
        if self.protocol != PROTOCOL:   # the old protocol: any other message is an event
            await self._queue.put(Event("", "", text))
        return None

    async def _gaps(self, msg):
        for group, status in (msg.get("recovery") or {}).items():
            if status != "ok":
                await self._queue.put(Gap(group, status))
