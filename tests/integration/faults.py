"""Helpers of the fault-injection tests (tests/integration/test_faults_*.py).

Owns: what several fault tests need beyond conftest: daemons started with a
hand-made command line, reading log records by event and level, the broker's
queue counters, a direct AMQP connection that plays a crashing worker or
sends channel messages, and timing helpers. Must not: start brokers (the
broker-outage tests own their private node).
"""

import json
import os
import re
import time
from pathlib import Path

import pika
import pytest

from conftest import SAN_ENV, SECRET, Daemon, binary, wait_until

# Tests that take minutes run only in `make test-faults` (WSGW_FAULTS=1).
SLOW = pytest.mark.skipif(os.environ.get("WSGW_FAULTS") != "1",
                          reason="slow fault test: run with `make test-faults`")

# Under ASan a process's memory and speed say little about ours.
SANITIZED = "build-san" in os.environ.get("WSGW_BUILD", "")


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


__all__ = ["SLOW", "SANITIZED", "SAN_ENV", "SECRET", "records", "complaints",
           "wait_record", "start_daemon", "worker_argv", "queue_stats", "wait_queue",
           "Amqp", "receive_message", "write_secret", "proc_rss_kib"]
