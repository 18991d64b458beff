"""gatewayd with gateway.processes > 1: N gateway processes share one port
(SO_REUSEPORT), each with its own broker queue and clients, under a
supervisor that restarts a crashed or stuck one, forwards signals and
speaks for all of them to systemd."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import websockets

from conftest import binary, free_port, open_client, recv_text, run, subscribe, wait_until
from rawws import metric, scrape

CLIENTS = 40  # all 40 hashed onto one of two listeners: odds 2**-39


def free_port_run(n):
    """A port p with p .. p+n-1 all free (child i's metrics on p + i)."""
    for _ in range(200):
        p = free_port()
        if p + n > 65535:
            continue
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                s.bind(("127.0.0.1", p + i))
                socks.append(s)
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail(f"no run of {n} free ports")


def start(cluster, n, *extra, ready=True):
    """A supervised gatewayd with n processes; .metrics_ports[i] is child i's."""
    base = free_port_run(n)
    gw = cluster.gateway(f"--gateway.processes={n}",
                         f"--gateway.metrics_listen=127.0.0.1:{base}", *extra, ready=False)
    gw.metrics_ports = [base + i for i in range(n)]
    if ready:
        wait_until(lambda: "event=processes_ready" in gw.log() or not gw.alive(), 20,
                   "every gateway process to be ready")
        assert gw.alive(), gw.tail()
    return gw


def children(gw):
    """{index: pid} of the supervisor's live children, from /proc."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != gw.pid:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
        except (OSError, IndexError, ValueError):
            continue
        for a in argv:
            m = re.fullmatch(r"--gateway\.process_index=(\d+)", a)
            if m:
                out[int(m.group(1))] = int(pid)
    return out


def connections(gw, i):
    samples = scrape(gw.metrics_ports[i])
    return None if samples is None else metric(samples, "wsgw_gateway_connections")


async def open_subscribed(gw, n, group="jobs-status_changed"):
    clients = await asyncio.gather(*(open_client(gw, user=100 + i) for i in range(n)))
    await asyncio.gather(*(subscribe(ws, {"jobs": ["status_changed"]}) for ws in clients))
    return clients


async def close_all(clients):
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def test_processes_share_the_port_and_each_serves_its_own_clients(cluster):
    cluster.worker()
    # history.shared=0: each process its own stream consumer (the shared
    # one: test_shared_history.py)
    gw = start(cluster, 2, "--history.shared=0")
    assert sorted(children(gw)) == [0, 1]

    async def main():
        clients = await open_subscribed(gw, CLIENTS)
        per = [connections(gw, i) for i in (0, 1)]
        print(f"\nconnections per process: {per}")
        assert sum(per) == CLIENTS and min(per) >= 1, per
        # One stream consumer per process, each reading every event: the
        # process fans out to its own clients; no group is bound.
        assert cluster.broker.history_consumers(cluster.vhost) == 2
        assert cluster.broker.group_bindings(cluster.vhost) == []
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", '{"n": 1}')
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", '{"sentinel": 1}')
        for ws in clients:
            assert await recv_text(ws) == '{"n": 1}'
            assert await recv_text(ws) == '{"sentinel": 1}', "a second copy arrived"
        await close_all(clients)
    run(main())


def test_default_is_one_process_per_core(cluster):
    cluster.worker()
    gw = start(cluster, 1, "--gateway.processes=0", ready=False)  # the later flag wins
    cores = len(os.sched_getaffinity(0))
    if cores == 1:
        assert children(gw) == {}  # one core: no supervisor, as before
    else:
        wait_until(lambda: len(children(gw)) == cores, 10, f"{cores} processes")
        assert f"event=processes_starting n={cores} " in gw.log()


def test_killed_process_is_restarted_and_the_others_keep_their_clients(cluster):
    cluster.worker()
    gw = start(cluster, 2)

    async def main():
        clients = await open_subscribed(gw, CLIENTS)
        on_1 = connections(gw, 1)
        victim = children(gw)[1]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        # Its clients lose their connection; the others keep theirs.
        for _ in range(50):
            if sum(ws.closed for ws in clients) >= on_1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # and no more than those
        closed = [ws for ws in clients if ws.closed]
        alive = [ws for ws in clients if not ws.closed]
        assert len(closed) == on_1, (len(closed), on_1)
        wait_until(lambda: children(gw).get(1, victim) != victim, 10, "a new process 1")
        wait_until(lambda: gw.log().count("event=process_ready index=1 ") == 2, 10,
                   "the new process 1 to be ready")
        print(f"\nprocess 1 back and ready after {time.monotonic() - t0:.2f}s; "
              f"{len(alive)} clients of process 0 kept")
        # Those who lost it reconnect, to whichever process the kernel picks.
        again = await open_subscribed(gw, len(closed))
        await asyncio.to_thread(cluster.emit, "jobs-status_changed", '{"after": 1}')
        for ws in alive + again:
            assert await recv_text(ws) == '{"after": 1}'
        await close_all(alive + again)
    run(main())


def test_stuck_process_is_killed_and_restarted(cluster):
    cluster.worker()
    gw = start(cluster, 2, "--gateway.process_watchdog=1s")
    stuck = children(gw)[0]
    os.kill(stuck, signal.SIGSTOP)
    t0 = time.monotonic()
    wait_until(lambda: f"event=process_stuck index=0 pid={stuck} " in gw.log(), 5,
               "the supervisor to notice the stuck process")
    noticed = time.monotonic() - t0
    wait_until(lambda: gw.log().count("event=process_ready index=0 ") == 2, 10,
               "a new process 0 to be ready")
    print(f"\nstuck process noticed after {noticed:.2f}s (watchdog 1 s), "
          f"replaced after {time.monotonic() - t0:.2f}s")
    assert 0.8 <= noticed <= 3.0, noticed
    assert children(gw)[0] != stuck
    assert gw.upgrade_status() == 101


def test_sigterm_closes_every_process_clients_with_1001(cluster):
    cluster.worker()
    gw = start(cluster, 2, "--gateway.shutdown_spread=200ms")

    async def main():
        clients = await open_subscribed(gw, 20)
        pids = children(gw).values()
        gw.proc.send_signal(signal.SIGTERM)
        codes = []
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            codes.append(ws.close_code)
        assert codes == [1001] * 20, codes
        return pids
    pids = run(main())
    gw.expected_exit = True
    assert gw.stop() is None
    assert gw.proc.returncode == 0
    assert all(not os.path.exists(f"/proc/{p}") for p in pids), "a child outlived its supervisor"
    assert gw.log().count("event=shutdown_begin") == 2


def test_sighup_reloads_every_process(cluster):
    gw = start(cluster, 2)
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(re.findall(r"prog=gatewayd\.\d event=reload ", gw.log())) == 2, 5,
               "both processes to reload")
    assert gw.alive()


def test_supervisor_killed_outright_takes_its_processes_down(cluster):
    cluster.worker()
    gw = start(cluster, 2)
    pids = list(children(gw).values())

    async def main():
        ws = await open_client(gw)
        gw.kill(signal.SIGKILL)
        # The children drain (PR_SET_PDEATHSIG gives them SIGTERM): 1001.
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1001
    run(main())
    gw.expected_exit = True
    wait_until(lambda: all(not os.path.exists(f"/proc/{p}") for p in pids), 10,
               "the orphaned processes to exit")


def test_process_that_cannot_start_stops_the_supervisor(cluster):
    # A plain listener (no SO_REUSEPORT) already holds the port: the children
    # cannot bind, and restarting them would fail the same way.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        gw = start(cluster, 2, f"--gateway.listen=127.0.0.1:{port}", ready=False)
        gw.expected_exit = True
        wait_until(lambda: not gw.alive(), 10, "the supervisor to give up")
        assert gw.proc.returncode == 1
        log = gw.log()
        assert "event=listen_failed" in log and "event=process_failed_to_start" in log
        assert "event=process_started" in log and "event=process_restart_scheduled" not in log
    finally:
        holder.close()


def test_supervisor_speaks_for_its_processes_to_systemd(cluster, notify, monkeypatch):
    with monkeypatch.context() as m:  # the worker must not talk on our socket
        m.delenv("NOTIFY_SOCKET")
        cluster.worker(ready=False)
    gw = start(cluster, 2, ready=False)
    notify.wait_for("READY=1", 15, "the supervisor")
    log = gw.log()
    # READY=1 only once every process is ready, and only once: the children
    # talk to the supervisor's private socket, never to systemd's.
    assert log.count("event=process_ready ") == 2, log
    assert any(m == f"STATUS=2 gateway processes on 127.0.0.1:{gw.port}"
               for _, m in notify.messages), notify.messages
    before = notify.count("WATCHDOG=1")
    notify.drain(2.0)
    assert notify.count("WATCHDOG=1") - before >= 3, notify.messages
    assert notify.count("READY=1") == 1
    gw.expected_exit = True
    assert gw.stop() is None
    notify.drain(0.2)
    assert notify.count("STOPPING=1") == 1, notify.messages


def test_supervisor_is_not_ready_while_a_process_is_not(cluster, notify):
    gw = start(cluster, 2, "--amqp.url=amqp://guest:guest@127.0.0.1:1/", ready=False)
    notify.drain(2.5)
    assert notify.count("READY=1") == 0, notify.messages
    assert notify.count("WATCHDOG=1") >= 3, notify.messages
    assert len(children(gw)) == 2
    gw.expected_exit = True
    assert gw.stop() is None


def test_check_config_refuses_metrics_ports_that_do_not_fit():
    bad = subprocess.run([binary("gatewayd"), "--gateway.processes=3",
                          "--gateway.metrics_listen=127.0.0.1:65534", "--check-config"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "no room for 3 processes" in bad.stderr, bad.stderr
    good = subprocess.run([binary("gatewayd"), "--gateway.processes=3",
                           "--gateway.metrics_listen=127.0.0.1:65533", "--check-config"],
                          capture_output=True, text=True, timeout=30)
    assert good.returncode == 0 and good.stdout.strip() == "config ok", good.stderr
