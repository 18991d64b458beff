"""Tiny fragments (issue 12, item 2): a client sends a large message as
1-byte fragments and never finishes it. wslay, buffering, allocated a
chunk and a queue cell per fragment: a 1 MiB message cost about 94 MB of
heap on one connection, four connections 373 MB, held while they trickled.

Now gw_ws reassembles data messages itself, into one buffer per connection
that doubles as it fills (heap at most twice the payload, whatever the
fragment size), charged to a process-wide budget (gateway.max_partial_total)
that refuses a message which would pass it with close 1013.

Bounds shown here: four connections each holding a 1 MiB partial message
made of 1-byte fragments grow gatewayd's RSS by less than 3x the payload
held, and a probe client on the same process gets every event within
250 ms (parsing 28 MiB of 1-byte frames is CPU work the probe shares a
loop with; on a 2-core machine shared with other jobs single events took
up to 130 ms, with the old code too); once the budget is spent the next partial message is closed 1013,
counted in /metrics and logged, and its bytes come back when connections
close.

About 15 s. Normal build only: RSS under ASan measures the sanitizer.
"""

import re
import threading
import time
import urllib.request

import pytest

from faults import SANITIZED, RawReader, proc_rss_kib, records

pytestmark = pytest.mark.skipif(SANITIZED, reason="RSS figures need the normal build")

MIB = 1024 * 1024
KIB = 1024
GROUP = "jobs-status_changed"
LIMITS = ("--gateway.max_message=1MiB", "--gateway.max_frame=1MiB",
          "--gateway.ping_interval=10m", "--gateway.ping_timeout=20m")


def masked(opcode, payload, fin=False):
    """A client frame (payload under 126 bytes), masked with a fixed key:
    the gateway unmasks whatever the key, and repeating it keeps the
    attack cheap to build."""
    key = b"\x11\x22\x33\x44"
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + key + body


def partial_message(size, fragment):
    """A binary message's first `size` bytes as fragments of `fragment`
    bytes, without the final one: the gateway must hold it all."""
    first = masked(0x2, b"x" * fragment)
    rest = masked(0x0, b"x" * fragment)
    return first + rest * (size // fragment - 1)


def send_in_background(readers, data):
    """Each reader sends data from its own thread (7 MiB of 1-byte
    fragments each takes a while); returns the threads."""
    def send(r):
        try:
            r.sock.settimeout(60)
            r.sock.sendall(data)
        except OSError:
            pass  # closed by the gateway: the test says whether it should be
    threads = [threading.Thread(target=send, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    return threads


def metric(gw, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return int(m.group(1))


def close_code(reader, timeout=10):
    """The code of the close frame the gateway sends next (small frames)."""
    reader.sock.settimeout(timeout)
    buf = reader.buf
    while True:
        while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
            n = buf[1] & 0x7F
            if buf[0] == 0x88:
                return int.from_bytes(buf[2:4], "big")
            buf = buf[2 + n:]
        chunk = reader.sock.recv(65536)
        if not chunk:
            raise EOFError("closed without a close frame")
        buf += chunk


def probe_events(emitter, probe, seconds):
    """Emits an event every 100 ms for `seconds`; returns the latencies."""
    latencies = []
    probe.sock.settimeout(5)
    t_end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < t_end:
        sent_at = time.monotonic()
        text = f'{{"n":{n}}}'.encode()
        emitter.emit(GROUP, text.decode())
        got = probe.frame()
        latencies.append(time.monotonic() - sent_at)
        assert got == text, (got, text)
        n += 1
        time.sleep(0.1)
    return latencies


def test_one_byte_fragments_keep_heap_within_a_multiple_of_the_payload(cluster):
    conns, size = 4, 1 * MIB
    cluster.worker()
    gw = cluster.gateway(*LIMITS)
    probe = RawReader(gw.port, 2)
    attackers = [RawReader(gw.port, 10 + i) for i in range(conns)]
    emitter = cluster.pika_emitter()
    baseline = proc_rss_kib(gw.pid)
    data = partial_message(size, 1)
    threads = send_in_background(attackers, data)
    peak = baseline
    try:
        latencies = []
        while any(t.is_alive() for t in threads):
            latencies += probe_events(emitter, probe, 0.5)
            peak = max(peak, proc_rss_kib(gw.pid))
        for t in threads:
            t.join(60)
        latencies += probe_events(emitter, probe, 2)  # with everything held
        peak = max(peak, proc_rss_kib(gw.pid))
        held = metric(gw, "wsgw_gateway_partial_message_bytes")
    finally:
        emitter.close()
        probe.close()
        for a in attackers:
            a.close()
    growth = (peak - baseline) / 1024
    worst = max(latencies)
    print(f"\nfragments: {conns} x {size / MIB:.0f} MiB in 1-byte fragments "
          f"({len(data) / MIB:.0f} MiB on the wire each); gatewayd RSS {baseline / 1024:.1f} MiB "
          f"-> peak {peak / 1024:.1f} MiB (+{growth:.1f}, bound {3 * conns * size / MIB:.0f}); "
          f"held {held / MIB:.1f} MiB; probe: {len(latencies)} events, worst {worst * 1000:.1f} ms")
    assert not records(gw, "conn_partial_budget"), "the default budget refused 4 MiB"
    assert held == conns * size, f"the budget holds {held} bytes, not the {conns} messages"
    assert growth < 3 * conns * size / MIB, f"RSS grew {growth:.1f} MiB for {conns} MiB held"
    assert worst < 0.25, f"the probe waited {worst * 1000:.0f} ms for an event"


def test_spent_budget_closes_the_next_partial_message_with_1013(cluster):
    cluster.worker()
    gw = cluster.gateway(*LIMITS, "--gateway.max_partial_total=1MiB")
    probe = RawReader(gw.port, 2)
    emitter = cluster.pika_emitter()
    first, second = RawReader(gw.port, 10), RawReader(gw.port, 11)
    try:
        # 700 KiB in 100-byte fragments: the buffer doubles to 1 MiB, all of it.
        first.sock.sendall(partial_message(700 * KIB, 100))
        first.sock.sendall(masked(0x9, b"sync", fin=True))  # its pong: all of the above was read
        assert close_code_or_pong(first) == "pong"
        assert metric(gw, "wsgw_gateway_partial_message_bytes") == MIB
        second.sock.sendall(partial_message(10 * KIB, 100))
        assert close_code(second) == 1013
        assert metric(gw, "wsgw_gateway_partial_budget_closes_total") == 1
        assert records(gw, "conn_partial_budget")
        assert max(probe_events(emitter, probe, 1)) < 0.25  # others are served
        first.close()  # its partial message goes with it
        deadline = time.monotonic() + 5
        while metric(gw, "wsgw_gateway_partial_message_bytes") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(gw, "wsgw_gateway_partial_message_bytes") == 0
        third = RawReader(gw.port, 12)
        third.sock.sendall(partial_message(10 * KIB, 100) + masked(0x0, b"!", fin=True))
        reply = third.frame()  # the whole message went to a worker: its answer
        assert reply, "no answer to a message sent once the budget was free"
        third.close()
        assert metric(gw, "wsgw_gateway_partial_budget_closes_total") == 1
    finally:
        emitter.close()
        probe.close()
        first.close()
        second.close()


def close_code_or_pong(reader, timeout=10):
    """'pong' when the next frame is a pong, else the close code."""
    reader.sock.settimeout(timeout)
    while len(reader.buf) < 2 or len(reader.buf) < 2 + (reader.buf[1] & 0x7F):
        reader._fill()
    op, n = reader.buf[0] & 0x0F, reader.buf[1] & 0x7F
    frame, reader.buf = reader.buf[:2 + n], reader.buf[2 + n:]
    return "pong" if op == 0xA else int.from_bytes(frame[2:4], "big")

