"""A ping flood (issue 12, item 1): one client sends empty pings as fast as it
can while it reads what it is owed at 200 KB/s. Every pong is a frame the
gateway owes it; before, pongs bypassed max_send_queue and the gateway kept
reading, so one connection took gatewayd from 29 MB to 1.3 GB in 7 s.

Now the gateway stops reading a socket whose unsent bytes pass a high-water
mark (a client that does not read cannot make us read more), counts what it
owes against max_send_queue, and closes a client that pings faster than
max_rate per second (1008). Bound shown here: 10 s of the attack grow
gatewayd's RSS by less than 2 x max_send_queue, and a probe client on the
same process gets every event, each within 100 ms of its emit.

About 12 s. Normal build only: RSS under ASan measures the sanitizer.
"""

import os
import socket
import threading
import time

import pytest

from faults import SANITIZED, RawReader, proc_rss_kib, records

pytestmark = pytest.mark.skipif(SANITIZED, reason="RSS figures need the normal build")

MIB = 1024 * 1024
GROUP = "jobs-status_changed"
ATTACK_S = 10


def masked_pings(n):
    """n empty client pings, masked (a client must mask)."""
    one = bytes([0x89, 0x80]) + os.urandom(4)
    return one * n


def flood(reader, stop, stats):
    """Pings at full speed from one thread, reads 20 KB every 100 ms from
    another: 200 KB/s, far below what the pongs would need."""
    sock = reader.sock
    sock.settimeout(0.5)
    batch = masked_pings(10_000)

    def send():
        while not stop.is_set():
            try:
                sock.sendall(batch)
                stats["sent"] += len(batch)
            except (TimeoutError, socket.timeout):
                continue  # the gateway stopped reading us: backpressure
            except OSError:
                return  # closed by the gateway

    def read():
        while not stop.is_set():
            try:
                chunk = sock.recv(20_000)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if not chunk:
                stats["closed"] = True
                return
            stats["read"] += len(chunk)
            stats["tail"] = (stats.get("tail", b"") + chunk)[-64:]
            time.sleep(0.1)
    threads = [threading.Thread(target=send), threading.Thread(target=read)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("defence", ["ping_rate", "backpressure"])
def test_ping_flood_keeps_memory_bounded_and_others_served(cluster, defence):
    """ping_rate: the defaults, the flooder is closed 1008 within a second.
    backpressure: a ping rate no flood reaches, so that only the read pause
    and the owed-bytes bound stand between the flood and memory."""
    cap = 1 * MIB
    cluster.worker()
    rate = [] if defence == "ping_rate" else ["--gateway.max_rate=1000000"]
    gw = cluster.gateway(f"--gateway.max_send_queue={cap}", "--gateway.ping_interval=10m",
                         "--gateway.ping_timeout=20m", *rate)
    probe = RawReader(gw.port, 2)
    attacker = RawReader(gw.port, 1)
    emitter = cluster.pika_emitter()
    baseline = proc_rss_kib(gw.pid)
    peak = baseline
    stop = threading.Event()
    stats = {"sent": 0, "read": 0, "closed": False}
    threads = flood(attacker, stop, stats)
    latencies = []
    probe.sock.settimeout(5)
    t_end = time.monotonic() + ATTACK_S
    n = 0
    try:
        while time.monotonic() < t_end:
            sent_at = time.monotonic()
            text = f'{{"n":{n}}}'.encode()
            emitter.emit(GROUP, text.decode())
            got = probe.frame()  # the probe reads each event as it comes
            latencies.append(time.monotonic() - sent_at)
            assert got == text, (got, text)
            peak = max(peak, proc_rss_kib(gw.pid))
            n += 1
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        emitter.close()
        probe.close()
        attacker.close()
    growth_mib = (peak - baseline) / 1024
    latencies.sort()
    worst = latencies[-1]
    print(f"\nping flood ({defence}) {ATTACK_S}s: attacker sent {stats['sent'] / MIB:.1f} MiB of pings, "
          f"read {stats['read'] / 1024:.0f} KiB, closed={stats['closed']}; gatewayd RSS "
          f"{baseline / 1024:.1f} MiB -> peak {peak / 1024:.1f} MiB (+{growth_mib:.1f}, bound "
          f"{2 * cap / MIB:.0f}); probe: {len(latencies)} events, worst {worst * 1000:.1f} ms")
    assert growth_mib < 2 * cap / MIB, f"RSS grew {growth_mib:.1f} MiB under a ping flood"
    assert worst < 0.1, f"the probe waited {worst * 1000:.0f} ms for an event"
    if defence == "ping_rate":
        assert records(gw, "conn_control_flood"), "the flooding client was never closed"
