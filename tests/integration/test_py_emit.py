"""The Python package wsgw (clients/python) against a real broker, gatewayd
and workerd, with real websocket clients receiving what it emitted.

Owns: the checks of Emitter / emit / wsgw.django's promises: exact bytes for
every payload kind, order, ValueError with nothing sent, Refused for a broker
refusal, BrokerUnavailable and Unconfirmed in an outage (through a proxy that
stalls or cuts the connection: the suite's broker is shared and must not be
stopped), recovery with the same Emitter, one connection reused, several
threads, and the Django helper called from the test application. Must not:
stop the shared broker.
"""

import asyncio
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import ROOT, connect, jwt_for, open_client, recv_json, recv_text, run, \
    subscribe, wait_until
from djangoapp import APP_DIR, GATEWAY_ARGS, DjangoApp
from faults import BrokerProxy
from test_history_resume import proxied_url

PY_CLIENT = ROOT / "clients" / "python"
sys.path.insert(0, str(PY_CLIENT))
from wsgw import BrokerUnavailable, EmitError, Emitter, Refused, Unconfirmed  # noqa: E402

GROUP = "jobs-status_changed"
JOB = 42
EVENTS = f"job_events-{JOB}"
TOKEN_OBJECTS = {"job_events": [JOB]}
SUBSCRIPTION = {"jobs": ["status_changed"], "job_events": [JOB]}
DEAD_URL = "amqp://guest:guest@127.0.0.1:1/%2F"  # nothing listens on port 1


async def client(gw):
    ws = await open_client(gw, token=jwt_for(7, objects=TOKEN_OBJECTS))
    errors, reply = await subscribe(ws, SUBSCRIPTION)
    assert errors == [] and sorted(reply["groups_current"]) == [EVENTS, GROUP], (errors, reply)
    return ws


async def texts(ws, n, what="events"):
    return [await recv_text(ws, what=f"{what} ({i + 1} of {n})") for i in range(n)]


def emitter_connections(cluster):
    """Broker connections of this process's Emitters on the vhost (they name
    themselves "wsgw-python pid N")."""
    rows = cluster.broker.table("list_connections", "vhost", "client_properties")
    mark = f'"wsgw-python pid {os.getpid()}"'
    return sum(1 for vhost, props in rows if vhost == cluster.vhost and mark in props)


def sentinel():
    return json.dumps({"sentinel": uuid.uuid4().hex})


async def next_is(ws, expected, what):
    """The next message is expected: nothing was delivered before it."""
    got = await recv_text(ws, what=what)
    assert got == expected, f"{what}: got {got!r} first"


def test_every_payload_kind_arrives_exactly(stack):
    e = Emitter(stack.amqp_url, timeout=10)
    odd = '{"status":  "running", "msg":"caf\u00e9 \\u00e9 \u2603 \U0001F600","a":[1 ,2]}'
    cases = [
        ({"status": "running", "unified_job_id": 42}, '{"status":"running","unified_job_id":42}'),
        ([1, "two", None], '[1,"two",null]'),
        ({"msg": "caf\u00e9 \u2603 \U0001F600"}, '{"msg":"caf\u00e9 \u2603 \U0001F600"}'),
        (odd, odd),                                   # str: its exact text
        (odd.encode(), odd),                          # bytes: exactly these
        (bytearray(b'{"b": 1}'), '{"b": 1}'),
        ("  [] ", "  [] "),
    ]

    async def main():
        ws = await client(stack.gw)
        for payload, expected in cases:
            await asyncio.to_thread(e.emit, GROUP, payload)
            await next_is(ws, expected, f"the event of {payload!r}")
        await ws.close()
    try:
        run(main())
    finally:
        e.close()


def test_emit_many_keeps_order_per_group_and_reuses_one_connection(stack):
    e = Emitter(stack.amqp_url, timeout=10, window=64)  # 500 events pass the window
    batch = [(GROUP if i % 3 else EVENTS, {"n": i}) for i in range(500)]

    async def main():
        ws = await client(stack.gw)
        def emit_all():  # one thread: one connection (per_thread)
            assert e.emit_many(batch) == 500
            for i in range(20):
                e.emit(EVENTS, {"one": i})
        await asyncio.to_thread(emit_all)
        # 21 calls, one connection: reused, not one per call.
        assert emitter_connections(stack) == 1
        got = [json.loads(t) for t in await texts(ws, 520)]
        for group in (GROUP, EVENTS):
            sent = [p for g, p in batch if g == group]
            if group == EVENTS:
                sent += [{"one": i} for i in range(20)]
            assert [m for m in got if m in sent] == sent
        assert len(got) == 520
        await ws.close()
    try:
        run(main())
    finally:
        e.close()
    wait_until(lambda: emitter_connections(stack) == 0, 10, "the emitter's connection to close")


BAD = [
    ("bad group", {"a": 1}),
    ("", {"a": 1}),
    ("x" * 129, {"a": 1}),
    ("jobs-*", {"a": 1}),
    (None, {"a": 1}),
    (GROUP, "not json"),
    (GROUP, ""),
    (GROUP, '{"a": 1} trailing'),
    (GROUP, "NaN"),
    (GROUP, b'{"a": "\xff"}'),
    (GROUP, "{\"a\": \"\ud800\"}"),
    (GROUP, {"a": float("nan")}),
    (GROUP, {"a": "\udfff"}),
]


def test_invalid_input_raises_value_error_and_sends_nothing(stack):
    e = Emitter(stack.amqp_url, timeout=10)

    async def main():
        ws = await client(stack.gw)
        for group, payload in BAD:
            with pytest.raises(ValueError):
                e.emit(group, payload)
            # A batch with one bad event: none of it is sent.
            with pytest.raises(ValueError):
                e.emit_many([(GROUP, {"before": 1}), (group, payload), (GROUP, {"after": 1})])
        end = sentinel()
        await asyncio.to_thread(e.emit, GROUP, end)
        await next_is(ws, end, "the sentinel after the invalid calls")
        await ws.close()
    try:
        run(main())
    finally:
        e.close()
    with pytest.raises(ValueError, match="WSGW_AMQP_URL"):
        Emitter("")
    with pytest.raises(ValueError, match="amqp"):
        Emitter("http://127.0.0.1:5672/")


def test_a_refusal_is_refused_and_the_emitter_goes_on(stack):
    user, password = f"pyemit_ro_{os.getpid()}", uuid.uuid4().hex
    stack.broker.ctl("add_user", user, password)
    try:
        # May read and configure nothing, write nothing: publishing is refused.
        stack.broker.ctl("set_permissions", "-p", stack.vhost, user, "^$", "^$", ".*")
        url = stack.amqp_url.replace("guest:guest", f"{user}:{password}")
        e = Emitter(url, timeout=10)
        with pytest.raises(Refused) as info:
            e.emit(GROUP, {"a": 1})
        assert info.value.reply_code == 403 and "ACCESS_REFUSED" in str(info.value)
        assert info.value.failed == [0] and info.value.confirmed == 0
        with pytest.raises(Refused):  # a new channel, refused again
            e.emit_many([(GROUP, {"a": 1}), (GROUP, {"a": 2})])
        e.close()
    finally:
        stack.broker.ctl("delete_user", user)

    e = Emitter(stack.amqp_url, timeout=10, exchange="websocket.nonexistent")
    with pytest.raises(Refused) as info:
        e.emit(GROUP, {"a": 1})
    assert info.value.reply_code == 404 and "no exchange" in str(info.value)
    assert isinstance(info.value, EmitError)
    e.close()


def test_outage_unavailable_unconfirmed_then_recovery_with_the_same_emitter(stack):
    proxy = BrokerProxy(stack.broker.port)
    e = Emitter(proxied_url(stack, proxy), timeout=2, connect_timeout=2)

    # One thread for every call: per_thread keeps one connection per thread,
    # and the cases below are about that one connection.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def call(fn, *args):
        return asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def main():
        ws = await client(stack.gw)
        first = sentinel()
        await call(e.emit, GROUP, first)
        await next_is(ws, first, "the first event")

        # The broker stalls: no confirm within the timeout.
        proxy.stall()
        stalled = json.dumps({"stalled": 1})
        t0 = time.monotonic()
        with pytest.raises(Unconfirmed) as info:
            await call(e.emit, GROUP, stalled)
        assert 1.5 < time.monotonic() - t0 < 10
        assert info.value.failed == [0] and "no confirm within 2 s" in str(info.value)

        # Down: nothing accepts the connection.
        proxy.cut()
        proxy.flow()
        with pytest.raises(BrokerUnavailable) as info:
            await call(e.emit, GROUP, {"down": 1})
        assert info.value.failed == [0]
        with pytest.raises(BrokerUnavailable):
            await call(e.emit_many, [(GROUP, {"down": 2}), (GROUP, {"down": 3})])

        # Back: the same emitter works again; the unconfirmed event was not
        # re-sent (it may have arrived once at most: the proxy dropped it).
        proxy.restore()
        back = sentinel()
        await call(e.emit, GROUP, back)
        got = [await recv_text(ws, what="the event after the outage")]
        while got[-1] != back:
            got.append(await recv_text(ws, what="the event after the outage"))
        assert got[:-1] in ([], [stalled]), got

        # The connection is lost while idle: the next emit reconnects once,
        # before publishing, and raises nothing.
        proxy.cut()
        proxy.restore()
        again = sentinel()
        await call(e.emit, GROUP, again)
        await next_is(ws, again, "the event after a lost idle connection")

        # Lost while waiting for the confirm: Unconfirmed, not re-sent.
        proxy.stall()
        proxy.held = 0
        waiting = json.dumps({"waiting": 1})
        fut = call(e.emit, GROUP, waiting)
        await asyncio.to_thread(wait_until, lambda: proxy.held > 0, 10,
                                "the proxy to hold the publish")
        proxy.cut()
        proxy.flow()
        with pytest.raises(Unconfirmed) as info:
            await fut
        assert "connection lost" in str(info.value), str(info.value)
        proxy.restore()
        last = sentinel()
        await call(e.emit, GROUP, last)
        await next_is(ws, last, "the event after the loss (the lost one not re-sent)")
        await ws.close()
    try:
        run(main())
    finally:
        pool.shutdown()
        e.close()
        proxy.close()


@pytest.mark.parametrize("per_thread", [True, False], ids=["per_thread", "locked"])
def test_eight_threads_each_event_once_in_thread_order(stack, per_thread):
    threads, each = 8, 150
    e = Emitter(stack.amqp_url, timeout=20, per_thread=per_thread)
    errors = []
    start = threading.Barrier(threads)
    done = threading.Barrier(threads + 1)  # the threads (and their connections) still live
    release = threading.Event()

    def emitter(t):
        try:
            start.wait()
            for i in range(each):
                if i % 50 == 49:
                    e.emit_many([(GROUP, {"t": t, "i": i})])
                else:
                    e.emit(GROUP, {"t": t, "i": i})
        except Exception as x:  # reported by the test below
            errors.append(repr(x))
        done.wait(30)
        release.wait(30)

    async def main():
        ws = await client(stack.gw)
        workers = [threading.Thread(target=emitter, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        got = [json.loads(x) for x in await texts(ws, threads * each, "the threads' events")]
        await asyncio.to_thread(done.wait, 30)
        conns = emitter_connections(stack)
        release.set()
        assert conns == (threads if per_thread else 1), conns
        for w in workers:
            await asyncio.to_thread(w.join, 30)
        assert errors == []
        for t in range(threads):
            assert [m["i"] for m in got if m["t"] == t] == list(range(each)), t
        await ws.close()
    try:
        run(main())
    finally:
        release.set()
        e.close()


def test_module_level_emit_from_a_script_that_exits_at_once(stack):
    """emit() with $WSGW_AMQP_URL: the default emitter; the event is
    confirmed before the script exits."""
    code = ("import wsgw, sys\n"
            "wsgw.emit(sys.argv[1], {'from': 'script'})\n"
            "wsgw.emit_many([(sys.argv[1], '{\"n\": 1}'), (sys.argv[1], b'{\"n\": 2}')])\n")

    async def main():
        ws = await client(stack.gw)
        env = {**os.environ, "WSGW_AMQP_URL": stack.amqp_url, "PYTHONPATH": str(PY_CLIENT)}
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code, GROUP],
                                       env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert await texts(ws, 3) == ['{"from":"script"}', '{"n": 1}', '{"n": 2}']
        env["WSGW_AMQP_URL"] = DEAD_URL
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code, GROUP],
                                       env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "wsgw.errors.BrokerUnavailable" in proc.stderr
        assert "Connection refused" in proc.stderr, proc.stderr
        await ws.close()
    run(main())


# ---------------------------------------------------------------- Django

def _app(tmp_path, django_app_db, amqp_url):
    env = {"PYTHONPATH": str(PY_CLIENT), "WSGW_APP_AMQP_URL": amqp_url,
           # settings.WSGW_AMQP_URL wins over the environment's
           "WSGW_AMQP_URL": DEAD_URL}
    return DjangoApp(tmp_path / "app", template=django_app_db, env=env).start()


def test_django_emit_channel_notification_from_the_application(cluster, tmp_path,
                                                               django_app_db):
    app = _app(tmp_path, django_app_db, cluster.amqp_url)
    try:
        cluster.worker(*app.worker_args())
        gw = cluster.gateway(*GATEWAY_ARGS)
        job = app.create_job("deploy web")
        app.grant("alice", job)
        cookies = app.login("alice")

        async def main():
            ws = await connect(gw.url(), app.ws_headers(cookies, gw))
            assert (await recv_json(ws))["user"] == 7
            errors, _ = await subscribe(ws, {"jobs": ["status_changed"], "job_events": [job]},
                                        xrftoken=cookies["csrftoken"])
            assert errors == []
            out = await asyncio.to_thread(app._manage, "emitjob", str(job), "--status",
                                          "running", "--events", "3")
            assert out.strip() == "emitted 4"
            status = await recv_json(ws, what="the status change")
            created = status.pop("created")
            assert status == {"group_name": "jobs", "unified_job_id": job, "status": "running",
                              "name": "deploy web", "elapsed": "1.50"}
            assert created.startswith("20") and "T" in created  # DjangoJSONEncoder's ISO
            events = [await recv_json(ws, what="a job event") for _ in range(3)]
            assert events == [{"job": job, "counter": k, "event": "runner_on_ok",
                               "stdout": f"ok: [host{k}] \u2713",
                               "group_name": "job_events"} for k in (1, 2, 3)]

            # The broker unreachable: the command fails loudly, logged and raised.
            env = {**app.env, "WSGW_APP_AMQP_URL": DEAD_URL}
            proc = await asyncio.to_thread(
                subprocess.run, [sys.executable, "manage.py", "emitjob", str(job)],
                cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode != 0
            assert "wsgw: emitting to jobs-status_changed failed" in proc.stderr, proc.stderr
            assert "BrokerUnavailable" in proc.stderr
            await ws.close()
        run(main())
    finally:
        app.stop()


def test_django_helper_adds_group_name_only_when_missing(stack):
    """Called in-process as AWX's code calls it (settings configured here)."""
    code = (
        "import django, sys\n"
        "from django.conf import settings\n"
        "settings.configure(WSGW_AMQP_URL=sys.argv[1])\n"
        "django.setup()\n"
        "import datetime, decimal, uuid\n"
        "from wsgw.django import emit_channel_notification as e\n"
        "e('jobs-status_changed', {'status': 'ok'})\n"
        "e('jobs-status_changed', {'group_name': 'mine', 'at': datetime.date(2026, 1, 2),\n"
        "  'd': decimal.Decimal('2.5'), 'u': uuid.UUID(int=1)})\n"
        "e('jobs-status_changed', '{\"text\": \"as is\"}')\n"
        "try:\n"
        "    e('jobs status', {})\n"
        "except ValueError:\n"
        "    print('ValueError')\n")

    async def main():
        ws = await client(stack.gw)
        env = {**os.environ, "PYTHONPATH": str(PY_CLIENT), "WSGW_AMQP_URL": DEAD_URL}
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code,
                                                        stack.amqp_url],
                                       env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout == "ValueError\n", proc.stderr
        assert await texts(ws, 3) == [
            '{"status": "ok", "group_name": "jobs"}',
            '{"group_name": "mine", "at": "2026-01-02", "d": "2.5", '
            '"u": "00000000-0000-0000-0000-000000000001"}',
            '{"text": "as is"}']
        await ws.close()
    run(main())


def test_a_finished_thread_closes_its_connection(stack):
    """per_thread: a server with a thread per request leaves no connection
    behind per finished thread."""
    e = Emitter(stack.amqp_url, timeout=10)
    try:
        for i in range(4):
            t = threading.Thread(target=e.emit, args=(GROUP, {"thread": i}))
            t.start()
            t.join()
        wait_until(lambda: emitter_connections(stack) == 0, 10,
                   "the finished threads' connections to close")
        e.emit(GROUP, {"main": 1})
        assert emitter_connections(stack) == 1
    finally:
        e.close()


# ---------------------------------------------------------------- wsgw.client

def test_client_recovers_across_a_killed_gateway_then_stops_on_a_kick(cluster):
    """wsgw.client.Subscriber on two gateways: the one it is on is SIGKILLed
    while events keep coming; it reconnects to the other with its positions
    and gets every event once, in order; a kick (4403) stops it."""
    from wsgw.client import Event, Stopped, Subscriber
    from conftest import run_tool
    cluster.worker()
    gw1, gw2 = cluster.gateway(), cluster.gateway()
    e = Emitter(cluster.amqp_url, timeout=10, per_thread=False)

    async def read(sub, n):
        got = []
        while len(got) < n:
            item = await sub.next(timeout=20)
            assert isinstance(item, Event), f"not an event: {item!r}"
            got.append(item)
        return got

    async def main():
        sub = Subscriber([gw1.url(), gw2.url()], SUBSCRIPTION,
                         token=jwt_for(7, objects=TOKEN_OBJECTS))
        async with sub:
            # The reply sets a position for every current group.
            await asyncio.to_thread(wait_until, lambda: EVENTS in sub.positions, 20,
                                    "the subscription reply")
            await asyncio.to_thread(e.emit_many, [(EVENTS, {"n": i}) for i in range(100)])
            got = await read(sub, 100)
            gw1.kill()  # SIGKILL: no close frame, 1006 on the client
            await asyncio.to_thread(e.emit_many, [(EVENTS, {"n": i}) for i in range(100, 200)])
            got += await read(sub, 100)
            assert [json.loads(ev.text)["n"] for ev in got] == list(range(200))
            assert all(ev.group == EVENTS for ev in got)
            assert len({ev.position for ev in got}) == 200
            assert sub.connects == 2 and sub.protocol == "wsgw.2" and sub.user == 7

            # The events came from the history, which needs no binding; the
            # kick needs gw2's binding of every user's control key, queued at
            # its broker-up (a kick before it: exit 3).
            queue = re.search(r"event=broker_up queue=(\S+)", gw2.log()).group(1)
            await asyncio.to_thread(
                wait_until, lambda: (queue, "wsgw!user.*") in
                cluster.broker.group_bindings(cluster.vhost, "wsgw!user.*"), 10,
                "gw2's binding of wsgw!user.*", 0.1)
            await asyncio.to_thread(run_tool, ["kick", "--user", "7",
                                               f"--amqp.url={cluster.amqp_url}"])
            with pytest.raises(Stopped) as info:
                while True:
                    await sub.next(timeout=20)
            assert info.value.why == "kicked"
    try:
        run(main())
    finally:
        e.close()


def test_an_idle_emitter_dropped_by_the_broker_reconnects_before_publishing(stack):
    """pika answers heartbeats only inside a call: the broker drops an idle
    emitter (heartbeat 2 s here, 60 s by default); the next emit reconnects
    once and succeeds."""
    e = Emitter(stack.amqp_url + "?heartbeat=2", timeout=10)

    async def main():
        ws = await client(stack.gw)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # one connection
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(pool, e.emit, GROUP, {"before": "idle"})
            assert json.loads(await recv_text(ws)) == {"before": "idle"}
            await asyncio.to_thread(wait_until, lambda: emitter_connections(stack) == 0, 30,
                                    "the broker to drop the idle emitter")
            await loop.run_in_executor(pool, e.emit, GROUP, {"after": "idle"})
            await next_is(ws, '{"after":"idle"}', "the event after the drop")
            assert emitter_connections(stack) == 1
        finally:
            pool.shutdown()
        await ws.close()
    try:
        run(main())
    finally:
        e.close()
