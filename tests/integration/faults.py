"""Helpers of the fault-injection tests (tests/integration/test_faults_*.py).

Owns: what several fault tests need beyond conftest: daemons started with a
hand-made command line, reading log records by event and level, the broker's
queue counters, a direct AMQP connection that plays a crashing worker or
sends channel messages, timing helpers, a websocket reader on a raw socket
for streams too long for a Python websocket library, a TCP proxy in front of
the broker that cuts or stalls what it carries, a backend emitting numbered
events through a failover, and a private RabbitMQ node
(module-scoped) for the tests that stop, kill or freeze one. Must not:
stop, kill or freeze the suite's shared node (other modules use it).
"""

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pika
import pytest

from conftest import (BROKER_SH, SAN_ENV, SECRET, Broker, Daemon, PikaEmitter, binary, jwt_for,
                      wait_until)

# Tests that take minutes run only in `make test-faults` (WSGW_FAULTS=1).
SLOW = pytest.mark.skipif(os.environ.get("WSGW_FAULTS") != "1",
                          reason="slow fault test: run with `make test-faults`")

# Under ASan a process's memory and speed say little about ours.
SANITIZED = "build-san" in os.environ.get("WSGW_BUILD", "")


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory):
    """A RabbitMQ node of the module's own, with the vhost "faults": these
    tests may stop, kill and freeze it."""
    state = tmp_path_factory.mktemp("fault-broker")
    subprocess.run([str(BROKER_SH), "start", str(state)], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    try:
        b = Broker(state)
        b.ctl("add_vhost", "faults")
        b.ctl("set_permissions", "-p", "faults", "guest", ".*", ".*", ".*")
        yield b
    finally:
        pid = vm_pid(state)
        if pid:  # a frozen node cannot stop
            os.kill(pid, signal.SIGCONT)
        subprocess.run([str(BROKER_SH), "stop", str(state)], check=False, timeout=60,
                       stdout=subprocess.DEVNULL)


def vm_pid(state):
    """The Erlang VM's pid of the node in state (None when it is not running)."""
    try:
        return int((Path(state) / "node.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def frozen(broker):
    """SIGSTOP the node for the block: its sockets stay open and nothing
    answers, as with a broker stalled by a disk or a long GC."""
    pid = vm_pid(broker.dir)
    assert pid, "the broker is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def records(daemon, event=None, levels=None):
    """The daemon's log records ({key: value}), optionally only those of one
    event and of the given levels."""
    out = []
    for line in daemon.log().splitlines():
        if not line.startswith("ts="):
            continue
        rec = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))
        rec = {k: v.strip('"') for k, v in rec.items()}
        if event and rec.get("event") != event:
            continue
        if levels and rec.get("level") not in levels:
            continue
        out.append(rec)
    return out


def complaints(daemon, allowed=()):
    """warn and error records, except the events in allowed."""
    return [r for r in records(daemon, levels=("warn", "error"))
            if r.get("event") not in allowed]


def wait_record(daemon, event, timeout=20, count=1):
    """Waits until the daemon logged event (count times); returns the records."""
    def seen():
        if not daemon.alive() and not daemon.expected_exit:
            pytest.fail(f"{daemon.name} exited while waiting for {event}:\n{daemon.tail()}")
        recs = records(daemon, event)
        return recs if len(recs) >= count else None
    return wait_until(seen, timeout, f"{daemon.name} to log event={event} x{count}")


def start_daemon(cluster, name, argv):
    """A daemon with exactly argv, stopped and checked with the cluster."""
    n = len(cluster.daemons) + 1
    d = Daemon(f"{name}#{n}", argv, cluster.log_dir / f"{name}-{n}.log")
    cluster.daemons.append(d)
    return d


def worker_argv(cluster, *extra):
    return [binary("workerd"), f"--amqp.url={cluster.amqp_url}", "--log.level=info", *extra]


def queue_stats(cluster):
    """{queue: (ready, unacked)} of the cluster's vhost."""
    rows = cluster.broker.table("list_queues", "-p", cluster.vhost, "name",
                                "messages_ready", "messages_unacknowledged")
    return {name: (int(r), int(u)) for name, r, u in rows}


def wait_queue(cluster, queue, ready=None, unacked=None, timeout=20):
    def ok():
        r, u = queue_stats(cluster).get(queue, (0, 0))
        return (ready is None or r == ready) and (unacked is None or u == unacked)
    wait_until(ok, timeout, f"{queue} to hold ready={ready} unacked={unacked} "
               f"(now {queue_stats(cluster).get(queue)})", interval=0.2)


class Amqp:
    """A direct AMQP client on the cluster's vhost (pika, blocking)."""

    def __init__(self, cluster):
        self.conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_url))
        self.ch = self.conn.channel()

    def reply_queue(self):
        """A server-named exclusive queue, like a gateway's."""
        return self.ch.queue_declare("", exclusive=True, auto_delete=True).method.queue

    def publish(self, queue, body, headers=None):
        self.ch.basic_publish("", queue, body if isinstance(body, bytes) else body.encode(),
                              pika.BasicProperties(content_type="application/json",
                                                   delivery_mode=1, headers=headers))

    def get(self, queue, timeout=10, ack=True):
        """The next message of queue: (properties, body) or None at timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, props, body = self.ch.basic_get(queue, auto_ack=False)
            if method:
                if ack:
                    self.ch.basic_ack(method.delivery_tag)
                return props, body
            time.sleep(0.05)
        return None

    def take_and_crash(self, queue, timeout=10):
        """Takes one message without acking it and dies, as a worker killed
        mid-message does: RabbitMQ requeues it as redelivered. Returns its
        body."""
        got = self.get(queue, timeout, ack=False)
        assert got, f"no message in {queue} within {timeout}s"
        self.conn.close()
        return got[1]

    def close(self):
        if self.conn.is_open:
            self.conn.close()


def take_channel_messages(cluster, queue, count, timeout=20):
    """Takes (acks) what queue holds until count channel messages came, a
    batch (docs/PROTOCOL.md, "Batches") counting as its items; returns
    their bodies. Fails at timeout with what came."""
    amqp = Amqp(cluster)
    items = []
    try:
        deadline = time.monotonic() + timeout
        while len(items) < count and time.monotonic() < deadline:
            got = amqp.get(queue, timeout=max(0.1, deadline - time.monotonic()))
            if not got:
                break
            props, body = got
            n = (props.headers or {}).get("x-wsgw-batch")
            parts = body.decode().split("\n")
            if n:
                assert parts[-1] == "" and len(parts) == n + 1, (n, body[:200])
                items += parts[:-1]
            else:
                items.append(body.decode())
    finally:
        amqp.close()
    assert len(items) == count, f"{queue}: {len(items)} channel messages, not {count}"
    return items


def receive_message(reply_queue, conn_id, order, text, user=7):
    """A websocket.receive channel message as a gateway writes it."""
    return json.dumps({"reply_channel": f"websocket.send.{reply_queue}!{conn_id}",
                       "path": "/websocket/", "order": order, "text": text,
                       "session": {"user": user}, "groups": []})


def write_secret(path, value):
    Path(path).write_text(value + "\n")
    os.chmod(path, 0o600)


def proc_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def text_frame(payload):
    """A server's unmasked text frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 65536:
        head = bytes([0x81, 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 127]) + struct.pack("!Q", n)
    return head + payload


def masked_text(payload):
    """A client's masked text frame (payload under 126 bytes)."""
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + body


class RawReader:
    """A websocket client on a plain socket: handshake, subscribe to
    subscription (one group, named group), then read(n) bytes of the stream
    (or not read at all: a slow client). Checking the byte stream against
    the expected frames is exact and costs nothing per frame, where a Python
    websocket library parsing millions of frames would be the bottleneck."""

    def __init__(self, port, user, rcvbuf=None, subscription=None,
                 group="jobs-status_changed"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /websocket/?token={jwt_for(user)} HTTP/1.1\r\n"
                           "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.frame()  # the accept text
        sub = subscription or {"groups": {"jobs": ["status_changed"]}}
        self.sock.sendall(masked_text(json.dumps(sub).encode()))
        reply = json.loads(self.frame())
        assert reply["groups_current"] == [group], reply

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def frame(self):
        """One text frame's payload (small frames only: the set-up)."""
        while len(self.buf) < 2 or len(self.buf) < 2 + (self.buf[1] & 0x7F):
            self._fill()
        assert self.buf[0] == 0x81 and self.buf[1] < 126, self.buf[:4]
        n = self.buf[1]
        payload, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
        return payload

    def read_exact(self, n, deadline):
        """n bytes of the stream, or what came before the deadline or EOF."""
        out = [self.buf]
        have = len(self.buf)
        self.buf = b""
        while have < n:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(min(1 << 20, n - have))
            except TimeoutError:  # what came so far tells what is missing
                break
            if not chunk:
                break
            out.append(chunk)
            have += len(chunk)
        data = b"".join(out)
        self.buf = data[n:]
        return data[:n]

    def close(self):
        self.sock.close()


class ParallelRead:
    """Each reader's next n bytes (RawReader.read_exact), on a thread per
    reader, started at once; a reader's exception stands in its place."""

    def __init__(self, readers, n, deadline):
        self.results = [None] * len(readers)

        def one(i):
            try:
                self.results[i] = readers[i].read_exact(n, deadline)
            except Exception as e:  # reported per client by the caller
                self.results[i] = e
        self.threads = [threading.Thread(target=one, args=(i,)) for i in range(len(readers))]
        for t in self.threads:
            t.start()

    def join(self, until):
        """Waits for the readers until the monotonic time `until`; returns
        the results (None where a reader is still reading)."""
        for t in self.threads:
            t.join(max(0.1, until - time.monotonic()))
        return self.results


def first_difference(got, expected):
    """A line saying where got stops matching expected (for a failure)."""
    at = next((k for k in range(min(len(got), len(expected))) if got[k] != expected[k]),
              min(len(got), len(expected)))
    return (f"{len(got)} of {len(expected)} bytes, first difference at {at}: "
            f"{got[max(0, at - 20):at + 20]!r}")


__all__ = ["private_broker", "vm_pid", "frozen", "text_frame", "masked_text", "RawReader",
           "ParallelRead",
           "first_difference", "SLOW", "SANITIZED", "SAN_ENV", "SECRET", "records", "complaints",
           "wait_record", "start_daemon", "worker_argv", "queue_stats", "wait_queue",
           "Amqp", "receive_message", "write_secret", "proc_rss_kib"]


class BrokerProxy:
    """A TCP proxy to the broker on 127.0.0.1:port. cut() closes every
    connection it carries and refuses new ones until restore(); stall()
    stops forwarding (the connections stay open: a broker that hangs, or with
    to_broker=False only the broker's answers stop) until flow(); `held`
    counts the chunks held back by a stall."""

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.open = True
        self.socks = []
        self.closing = False
        self.flowing = {True: threading.Event(), False: threading.Event()}  # by from_broker
        for e in self.flowing.values():
            e.set()
        self.held = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, amqp_url, broker_port):
        """amqp_url (of the broker on broker_port) through this proxy."""
        return amqp_url.replace(f":{broker_port}/", f":{self.port}/")

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                if not self.open:
                    c.close()
                    continue
                try:
                    u = socket.create_connection(self.target, timeout=5)
                except OSError:
                    c.close()
                    continue
                self.socks += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, True), daemon=True).start()

    def _pipe(self, a, b, from_broker):
        flowing = self.flowing[from_broker]
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if not flowing.is_set():
                    self.held += 1
                    flowing.wait()
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.open = False
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        with self.lock:
            self.open = True

    def stall(self, to_broker=True):
        self.flowing[True].clear()
        if to_broker:
            self.flowing[False].clear()

    def flow(self):
        for e in self.flowing.values():
            e.set()

    def close(self):
        self.closing = True
        self.cut()
        self.flow()
        self.lsock.close()


class SeqEmitter:
    """A backend emitting {"seq": n} to every group of names every `every`
    s from a thread, with confirms. An event the broker refuses or
    could not confirm (a node failing over) is published again before the
    next: "at least once" from the backend, so a duplicate on the page
    would be the gateway's or the SDK's doing only if the seq repeats
    without a refusal (retries counts them)."""

    def __init__(self, url, names, every):
        self.url, self.names, self.every = url, names, every
        self.last, self.retries = 0, 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _publish(self, emitter, group, text):
        while True:
            try:
                emitter = emitter or PikaEmitter(self.url)
                emitter.emit(group, text)
                return emitter
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                self.retries += 1
            except pika.exceptions.AMQPError:
                self.retries += 1
                emitter = None
            time.sleep(0.1)

    def _run(self):
        emitter = None
        while not self._stop.is_set():
            n = self.last + 1
            for g in self.names:
                emitter = self._publish(emitter, g, json.dumps({"seq": n}))
            self.last = n
            time.sleep(self.every)
        if emitter:
            try:
                emitter.close()
            except pika.exceptions.AMQPError:
                pass

    async def wait_past(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while self.last < n:
            assert time.monotonic() < deadline, f"the emitter did not reach {n} ({self.last})"
            await asyncio.sleep(0.02)

    def finish(self):
        self._stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the emitter did not stop"
        return self.last
