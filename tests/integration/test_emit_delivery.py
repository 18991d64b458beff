"""The end of a stream arrives (issue 19): what an emitter was told is sent
reaches every subscriber, with nothing emitted after it to push it along.

The stall seen in `make test-faults` (every client stopped at the same
event, the last ~100 of 100,000 never delivered, `chanctl emit` exited 0)
came from the emitter's end: it closed its channel with a 2 s timeout, and
a broker still busy with the publishes before the close (flow control, a
slow disk, a long GC) missed it; the connection was then dropped with the
last publishes unprocessed, and RabbitMQ discards those. The broker stall is
injected here (SIGSTOP of a private node, right after the emitter has
written its last events), so the window is hit every run, not one run in
three.

Each step now says what it guarantees (docs/ARCHITECTURE.md, "What each
step guarantees"): `chanctl emit` and chan_emit wait for the broker's
publisher confirms and exit 1 when any event was not confirmed; the
gateway's AMQP thread, stopped at its backlog bound, is woken when the loop
has drained, so what it holds goes out without a later event.

About 40 s (a private broker of its own, since these tests freeze it).
"""

import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import SAN_ENV, Cluster, binary, sanitizer_report
from faults import (ParallelRead, RawReader, first_difference, frozen,  # noqa: F401
                    private_broker, text_frame)
from test_metrics import Scrape

GROUP = "jobs-status_changed"
CLIENTS = 10


@pytest.fixture
def fcluster(private_broker, request, tmp_path):  # noqa: F811 (the fixture)
    from conftest import _log_dir, running
    with running(Cluster(private_broker, "faults", _log_dir(request, tmp_path)), request) as c:
        yield c


def numbered(start, stop):
    return [f'{{"n":{i}}}' for i in range(start, stop)]


def frames(events):
    return b"".join(text_frame(e.encode()) for e in events)


class Emitter:
    """`chanctl emit --stdin GROUP` fed line by line by the test."""

    def __init__(self, cluster, *extra):
        self.proc = subprocess.Popen(
            [binary("chanctl"), "emit", "--stdin", GROUP, f"--amqp.url={cluster.amqp_url}",
             *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **SAN_ENV})

    def write(self, events):
        self.proc.stdin.write("".join(e + "\n" for e in events).encode())
        self.proc.stdin.flush()

    def end_input(self):
        """Closes stdin: the emitter then makes sure of its events and exits."""
        self.t_end = time.monotonic()
        self.proc.stdin.close()

    def write_and_end(self, events):
        """Writes events, then ends the input, from a thread of its own: an
        emitter waiting for the broker stops reading its input, and the test
        must go on meanwhile. Returns the thread."""
        def feed():
            try:
                self.write(events)
                self.end_input()
            except BrokenPipeError:  # it exited early: finish() reports how
                pass
        t = threading.Thread(target=feed)
        t.start()
        return t

    def exited_within(self, seconds):
        try:
            self.proc.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def finish(self, timeout=60):
        """Returns (exit status, stderr, seconds since the input ended)."""
        if not self.proc.stdin.closed:
            self.end_input()
        self.proc.wait(timeout)
        err = self.proc.stderr.read()
        err = err.decode(errors="replace")
        report = sanitizer_report(err)
        assert not report, f"chanctl: sanitizer report:\n{report}"
        return self.proc.returncode, err, time.monotonic() - self.t_end


def read_all(readers, expected, seconds):
    """Each reader's next len(expected) bytes, read in parallel."""
    deadline = time.monotonic() + seconds
    return ParallelRead(readers, len(expected), deadline).join(deadline + 5)


def assert_complete(results, expected):
    bad = [i for i, r in enumerate(results) if r != expected]
    detail = "; ".join(f"client {i}: {first_difference(results[i], expected)}" for i in bad[:3])
    assert not bad, f"{len(bad)} of {len(results)} clients did not get every event: {detail}"


def test_events_emitted_into_a_stalled_broker_all_arrive(fcluster):
    """The broker freezes for 4 s just as the emitter has written its last
    events: longer than the old 2 s close timeout. The emitter must not exit
    while the broker cannot have confirmed anything, must exit 0 once it
    has every confirm, and then every client gets every event, the last
    ones included."""
    fcluster.worker()
    gw = fcluster.gateway()
    readers = [RawReader(gw.port, 100 + i) for i in range(CLIENTS)]
    try:
        first, rest = numbered(0, 2_000), numbered(2_000, 22_000)
        em = Emitter(fcluster)
        em.write(first)
        assert_complete(read_all(readers, frames(first), 30), frames(first))
        with frozen(fcluster.broker):
            feeder = em.write_and_end(rest)
            exited_frozen = em.exited_within(4)
        feeder.join(30)
        rc, err, _ = em.finish()
        assert not exited_frozen, (f"chanctl exited {rc} while the broker was frozen: it cannot "
                                   f"have known its events arrived ({err.strip()})")
        assert rc == 0, f"chanctl exited {rc}: {err}"
        results = read_all(readers, frames(rest), 30)
        print("\nchanctl waited for the frozen broker's confirms, then exited 0")
        assert_complete(results, frames(rest))
    finally:
        for r in readers:
            r.close()


def test_emit_fails_when_the_broker_does_not_confirm_in_time(fcluster):
    """An emitter that cannot get its events confirmed says so: exit 1 and
    the count, within its --timeout, never exit 0."""
    fcluster.worker()
    gw = fcluster.gateway()
    reader = RawReader(gw.port, 7)
    try:
        em = Emitter(fcluster, "--timeout=2")
        em.write(numbered(0, 1))
        assert_complete(read_all([reader], frames(numbered(0, 1)), 30), frames(numbered(0, 1)))
        with frozen(fcluster.broker):
            em.write_and_end(numbered(1, 1_001)).join(30)
            rc, err, took = em.finish(timeout=30)
        print(f"\nchanctl: exit {rc} after {took:.1f}s: {err.strip()}")
        assert rc == 1, f"chanctl exited {rc} with 1,000 events unconfirmed: {err}"
        assert "not confirmed" in err and "1000 of 1001" in err, err
        assert took < 10, f"chanctl took {took:.1f}s with --timeout=2"
    finally:
        reader.close()


def test_events_held_at_the_gateway_backlog_bound_go_out(fcluster):
    """With the smallest AMQP backlog (64 KiB), a gateway that was stopped
    while 4 MB of events queued up for it (a long pause: swap, a debugger,
    SIGSTOP here) reads them far faster than its loop can deliver them: its
    AMQP thread stops at the bound again and again, and each time the loop
    has drained it must wake the thread, so that the last events go out with
    no later event to push them."""
    fcluster.worker()
    # A 5-minute heartbeat: the AMQP thread's own poll timeout (half of it)
    # would otherwise hide a lost wake-up as a few seconds' delay.
    gw = fcluster.gateway("--gateway.amqp_backlog=64KiB", "--amqp.heartbeat=300s")
    readers = [RawReader(gw.port, 200 + i) for i in range(CLIENTS)]
    pad = "x" * 180
    events = [f'{{"n":{i},"pad":"{pad}"}}' for i in range(20_000)]
    try:
        gw.proc.send_signal(signal.SIGSTOP)
        try:
            em = Emitter(fcluster)
            em.write_and_end(events).join(30)
            rc, err, _ = em.finish()
        finally:
            gw.proc.send_signal(signal.SIGCONT)
        assert rc == 0, f"chanctl exited {rc}: {err}"
        results = read_all(readers, frames(events), 30)
        pauses = Scrape(gw.metrics_port)("wsgw_gateway_amqp_read_pauses_total")
        print(f"\nthe AMQP thread stopped at the bound {pauses:.0f} times")
        assert_complete(results, frames(events))
        assert pauses > 0, "the burst never reached the backlog bound: this test tests nothing"
    finally:
        for r in readers:
            r.close()
