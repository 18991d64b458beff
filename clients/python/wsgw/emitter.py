"""wsgw.emitter - Emitter: publish events to wsgw groups with publisher
confirms, reusing a connection, safe from several threads.

Owns: the broker addresses (one amqp URL or several, comma-separated, as
amqp.url), which connection a call uses (one per thread by default, or one
shared under a lock), the reconnect rule, and turning a call's confirms into
its result or exception. Must not: re-send an event whose confirm is unknown
(clients would see it twice), or hold more than `window` events unconfirmed.

The reconnect rule: before publishing, a connection found gone (closed by
the broker, an idle connection the broker dropped for missed heartbeats, a
network error) is replaced, once; if that fails, BrokerUnavailable and
nothing was sent. Once an event is published its connection is never
swapped under it: a loss while waiting is Unconfirmed.

Threads (measured, bench/emit_python.py, clients/python/README.md): with
per_thread=True (default) each thread has its own connection, so threads
wait for their confirms in parallel. 8 threads emitting one by one through a
link with 2 ms round trip: 1,919 events/s, against 328/s for one connection
shared under a lock (whose holder waits a round trip per event while the
others queue); on loopback (0.1 ms) both are CPU-bound at about 5,000/s.
The cost: one broker connection per emitting thread (a thread pool of 32
makes up to 32); per_thread=False keeps one connection for the process.
"""

import os
import random
import threading
import weakref

import pika

from .errors import BrokerUnavailable, EmitError, Refused, Unconfirmed
from .events import encode
from .link import Link, LinkError

GROUPS_EXCHANGE = "websocket.groups"
WINDOW = 8192  # unconfirmed events at most, per connection (as proto/chan_emit.h)


class _ThreadLink:
    """The per-thread link's holder, kept only in the thread's local storage:
    when the thread ends, CPython drops that storage and this closes the
    link politely (a server with a thread per request, like Django's
    runserver, would otherwise leave a broker connection per finished
    thread until the garbage collector found it)."""

    __slots__ = ("link", "pid")

    def __init__(self, link):
        self.link = link
        self.pid = os.getpid()

    def __del__(self):
        link = self.link
        # In a forked child (its copies of other threads' storage are dropped
        # at fork) the socket is the parent's: a Close sent on it would end
        # the parent's connection.
        if link is not None and self.pid == os.getpid():
            self.link = None
            link.close()


def _split_urls(url):
    urls = [u.strip() for u in (url or "").split(",") if u.strip()]
    if not urls:
        raise ValueError("no broker URL: pass Emitter(url) or set WSGW_AMQP_URL "
                         "(amqp://user:password@host:5672/vhost)")
    for u in urls:
        if not u.startswith(("amqp://", "amqps://")):
            raise ValueError(f"not an amqp:// or amqps:// URL: {u.split('@')[-1]!r}")
    return urls


class Emitter:
    """Emitter(url=None, timeout=30, per_thread=True, exchange="websocket.groups",
    connect_timeout=10, window=8192).

    url: "amqp://user:pass@host:5672/vhost" or several such, comma-separated
    (a cluster: connect to a random one first, then the others); None: the
    environment variable WSGW_AMQP_URL. timeout: seconds without any confirm
    after which the waiting events are Unconfirmed (also the longest a
    blocked broker may hold a publish). Connects on first use.
    """

    def __init__(self, url=None, timeout=30.0, per_thread=True, exchange=GROUPS_EXCHANGE,
                 connect_timeout=10.0, window=WINDOW):
        if url is None:
            url = os.environ.get("WSGW_AMQP_URL", "")
        if not (timeout > 0 and connect_timeout > 0 and 1 <= window <= 65535):
            raise ValueError("timeout and connect_timeout must be > 0, window 1-65535")
        self._urls = _split_urls(url)
        self._timeout = float(timeout)
        self._connect_timeout = float(connect_timeout)
        self._exchange = exchange
        self._window = int(window)
        self._per_thread = per_thread
        self._closed = False
        self._pid = os.getpid()
        self._guard = threading.Lock()      # the registry and the shared link
        self._local = threading.local()     # per_thread: .holder (a _ThreadLink)
        self._shared = None                 # not per_thread: the one link
        self._use = threading.Lock()        # not per_thread: one user at a time
        self._links = weakref.WeakSet()     # every live link, for close()

    # -- public
    def emit(self, group, payload):
        """Publishes one event and waits for the broker's confirm. payload:
        dict/list (sent as compact JSON), str (its exact text, must be JSON)
        or bytes (exactly these, UTF-8 JSON). ValueError for invalid input
        (nothing sent); EmitError subclasses otherwise."""
        self._run([(group, encode(group, payload))])

    def emit_many(self, events):
        """events: iterable of (group, payload). Every event is checked first
        (one invalid: ValueError, none sent), then all are published in order
        and every confirm awaited. Returns the number emitted."""
        bodies = [(g, encode(g, p)) for g, p in events]
        if bodies:
            self._run(bodies)
        return len(bodies)

    def _emit_encoded(self, group, body):
        """For wsgw.django: body already serialized by us (not re-parsed)."""
        self._run([(group, encode(group, body, check=False))])

    def close(self):
        """Closes every connection of this emitter (call it when no thread is
        emitting). Further calls raise EmitError."""
        with self._guard:
            self._closed = True
            links, self._shared = list(self._links), None
            self._links = weakref.WeakSet()
        for link in links:
            link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- connections
    def _params(self):
        urls = self._urls[:]
        start = random.randrange(len(urls))
        params = []
        for u in urls[start:] + urls[:start]:
            p = pika.URLParameters(u)
            p.socket_timeout = self._connect_timeout
            p.stack_timeout = self._connect_timeout
            p.blocked_connection_timeout = self._timeout
            p.connection_attempts = 1
            # Shown by rabbitmqctl list_connections client_properties / the UI.
            p.client_properties = {"connection_name": f"wsgw-python pid {os.getpid()}"}
            params.append(p)
        return params

    def _current(self):
        if self._per_thread:
            holder = getattr(self._local, "holder", None)
            return holder.link if holder is not None else None
        return self._shared

    def _set_current(self, link):
        if self._per_thread:
            holder = getattr(self._local, "holder", None)
            if holder is not None:
                holder.link = None  # dropped by the caller, not closed twice
            self._local.holder = _ThreadLink(link) if link is not None else None
        else:
            self._shared = link
        if link is not None:
            with self._guard:
                self._links.add(link)

    def _ready_link(self):
        """A usable link: the current one if alive, else one new connection
        (the reconnect-once rule). Raises BrokerUnavailable."""
        if os.getpid() != self._pid:
            # Forked: the parent's sockets are not ours to use or close.
            self._pid, self._local, self._shared = os.getpid(), threading.local(), None
            self._links = weakref.WeakSet()
        link = self._current()
        if link is not None and not link.alive():
            link.close()
            link = None
        if link is None:
            self._set_current(None)
            try:
                link = Link(self._params(), self._timeout)
            except LinkError as e:
                raise BrokerUnavailable(f"cannot connect to the broker: {e}",
                                        0, []) from None
            self._set_current(link)
        return link

    # -- one call
    def _run(self, bodies):
        if self._closed:
            raise EmitError("the emitter is closed")
        if self._per_thread:
            self._publish(bodies)
        else:
            with self._use:
                self._publish(bodies)

    def _publish(self, bodies):
        try:
            link = self._ready_link()
        except BrokerUnavailable as e:
            e.failed = list(range(len(bodies)))
            raise
        sent = 0
        try:
            for group, body in bodies:
                if len(link.pending) >= self._window and not link.wait_below(self._window):
                    break
                link.publish(self._exchange, group, body, sent)
                sent += 1
            else:
                link.wait_all()
        except pika.exceptions.AMQPError as e:  # closed under us: the rest unsent
            link.broken = link.broken or f"connection lost: {e!r}"
        except BaseException:
            # Interrupted (KeyboardInterrupt, a signal handler's exception):
            # this call's confirms are still due on the link and would be
            # taken for the next call's, so the link goes with it.
            link.broken = link.broken or "interrupted"
            link.close()
            self._set_current(None)
            raise
        left, nacked = link.take_outcome()
        failed = sorted(left + nacked + list(range(sent, len(bodies))))
        if link.broken:
            link.close()
            self._set_current(None)
        if not failed:
            return
        self._raise(link, failed, nacked, len(bodies))

    @staticmethod
    def _raise(link, failed, nacked, n):
        confirmed = n - len(failed)
        assert confirmed >= 0
        if link.refusal:
            code, text = link.refusal
            raise Refused(f"the broker refused: {text} ({code})", confirmed, failed, code)
        if nacked:
            raise Refused(f"nacked by the broker ({len(nacked)} events)", confirmed, failed)
        raise Unconfirmed(link.broken or "not confirmed", confirmed, failed)
