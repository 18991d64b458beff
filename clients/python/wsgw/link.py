"""wsgw.link - one broker connection with one channel in confirm mode.

Owns: publishing without waiting and tracking each publish's confirm
(delivery tag -> the event's index in the call), the wait for confirms with
a bound, telling a refusal (nack, channel closed by the broker) from a lost
connection, and dropping the connection. Must not: decide about retrying
(wsgw.emitter does), or be used by two threads at once (pika's connection
is not thread-safe; the emitter guarantees one user at a time).

Why below pika's BlockingChannel: its basic_publish in confirm mode waits for
each confirm with no time limit, so a batch would cost one round trip per
event and a stalled broker would hang the caller. We use the channel's own
(asynchronous) object, `BlockingChannel._impl`, which pika 1.x has always
had, and drive its I/O with BlockingConnection.process_data_events.
"""

import time

import pika
import pika.exceptions
import pika.spec

_PROPS = pika.BasicProperties(content_type="application/json", delivery_mode=1)


def _noop():
    pass


class LinkError(Exception):
    """The connection could not be made (the emitter says BrokerUnavailable)."""


class Link:
    """conn, channel, pending confirms. `broken` once the connection or the
    channel is gone or a wait timed out: the link must then be dropped."""

    def __init__(self, params, timeout):
        self.timeout = timeout
        self.pending = {}      # delivery tag -> index, in tag order
        self.nacked = []       # indexes the broker nacked
        self.tag = 0           # the last delivery tag used
        self.broken = None     # why this link may not be used again
        self.refusal = None    # (reply_code, text) when the broker closed the channel
        self.last_used = time.monotonic()
        try:
            self.conn = pika.BlockingConnection(params)
        except pika.exceptions.AMQPError as e:
            raise LinkError(_describe(e)) from None
        except OSError as e:
            raise LinkError(str(e)) from None
        try:
            self.ch = self.conn.channel()
            self.impl = getattr(self.ch, "_impl")
            self.impl.add_on_close_callback(self._on_channel_closed)
            selected = []

            def on_select_ok(_frame):
                selected.append(True)
                self.conn.call_later(0, _noop)  # wake the wait (see _on_confirm)
            self.impl.confirm_delivery(ack_nack_callback=self._on_confirm,
                                       callback=on_select_ok)
            if not self._wait(lambda: selected, time.monotonic()):
                raise LinkError(f"confirm.select: {self.broken or 'no answer in time'}")
        except (pika.exceptions.AMQPError, AttributeError) as e:
            self.abort()
            raise LinkError(f"opening the channel: {_describe(e)}") from None
        except LinkError:
            self.abort()
            raise

    # -- broker callbacks (run inside process_data_events, on our thread)
    def _on_confirm(self, frame):
        method = frame.method
        nack = isinstance(method, pika.spec.Basic.Nack)
        tag = method.delivery_tag
        if method.multiple:
            while self.pending:
                first = next(iter(self.pending))
                if first > tag:
                    break
                idx = self.pending.pop(first)
                if nack:
                    self.nacked.append(idx)
        else:
            idx = self.pending.pop(tag, None)
            if nack and idx is not None:
                self.nacked.append(idx)
        self.last_progress = time.monotonic()
        # Wake process_data_events: it returns at once when a timer of the
        # BlockingConnection fires, not when a channel callback runs.
        self.conn.call_later(0, _noop)

    def _on_channel_closed(self, _channel, reason):
        code = getattr(reason, "reply_code", None)
        text = getattr(reason, "reply_text", str(reason))
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            self.refusal = (code, text)
            self.broken = self.broken or f"channel closed: {text} ({code})"
        else:  # the connection went, taking the channel with it
            self.broken = self.broken or f"connection lost: {_describe(reason)}"
        try:
            self.conn.call_later(0, _noop)
        except Exception:  # the connection is going too
            pass

    # -- I/O
    def _wait(self, done, since):
        """Runs I/O until done() or no confirm came for `timeout` seconds
        since max(since, the last confirm). False when not done."""
        self.last_progress = since
        while not done():
            if self.broken:
                return False
            left = max(self.last_progress, since) + self.timeout - time.monotonic()
            if left <= 0:
                self.broken = f"no confirm within {self.timeout:g} s"
                return False
            try:
                self.conn.process_data_events(time_limit=left)
            except pika.exceptions.AMQPError as e:
                self.broken = self.broken or f"connection lost: {_describe(e)}"
                return False
        return True

    def alive(self):
        """Reads what is waiting (a close, an EOF, a heartbeat) without
        blocking. False when the connection or channel is gone."""
        if self.broken or not self.conn.is_open or not self.impl.is_open:
            return False
        try:
            self.conn.process_data_events(time_limit=0)
        except pika.exceptions.AMQPError as e:
            self.broken = f"connection lost: {_describe(e)}"
        return not self.broken and self.conn.is_open and self.impl.is_open

    def publish(self, exchange, group, body, index):
        """Sends one event (no wait). Raises pika's error when the channel or
        connection is already closed: then nothing was sent."""
        self.impl.basic_publish(exchange=exchange, routing_key=group, body=body,
                                properties=_PROPS)
        self.tag += 1
        self.pending[self.tag] = index
        self.last_used = time.monotonic()

    def wait_below(self, n):
        """Until fewer than n confirms are outstanding (the window)."""
        return self._wait(lambda: len(self.pending) < n, time.monotonic())

    def wait_all(self):
        return self._wait(lambda: not self.pending, time.monotonic())

    def take_outcome(self):
        """(unconfirmed indexes, nacked indexes) of the call; resets both."""
        left, nacked = list(self.pending.values()), self.nacked
        self.pending, self.nacked = {}, []
        return left, nacked

    def close(self):
        """Politely when healthy or just refused (the broker answered, and
        logs no error); otherwise abort."""
        if (self.broken and not self.refusal) or self.pending:
            self.abort()
            return
        try:
            self.conn.close()
        except Exception:
            self.abort()

    def abort(self):
        """Drops the TCP connection without waiting for the broker (which may
        be stalled: a polite close would wait for it without a bound)."""
        self.broken = self.broken or "closed"
        conn = getattr(self, "conn", None)
        impl = getattr(conn, "_impl", None)
        try:
            if impl is not None and not conn.is_closed:
                # pika 1.x's own way to drop the stream with a reason.
                impl._terminate_stream(pika.exceptions.StreamLostError(
                    f"dropped by wsgw: {self.broken}"))
                conn.process_data_events(time_limit=0)
        except Exception:  # expected: the abort surfaces as a lost stream
            pass


def _describe(e):
    """pika nests the cause (AMQPConnectionError(AMQPConnectorSocketConnectError(
    ConnectionRefusedError(...)))): name the innermost, which says why."""
    for _ in range(5):
        inner = getattr(e, "exception", None)
        if not isinstance(inner, BaseException) and e.args and \
                isinstance(e.args[-1], BaseException):
            inner = e.args[-1]
        if not isinstance(inner, BaseException):
            break
        e = inner
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
