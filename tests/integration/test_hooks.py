"""Issue 13, parts 1 and 2, end to end: workerd asks the application (the
Django test application of tests/app, a real server: djangoapp.py) who
connects and which job ids a user may see, through auth.connect_url and
auth.subscribe_url (docs/PROTOCOL.md, "Application hooks"); many deliveries
wait for it at once while the others are answered at once.

The worker also keeps its token secret (the suite's default), so these run
the combined mode: a valid JWT admits as before, anything else is asked.
"""

import asyncio
import json
import signal
import time

import pytest
import websockets

from conftest import (connect, handshake_status, jwt_for, open_client, recv_json, run, subscribe,
                      wait_until)
from djangoapp import GATEWAY_ARGS
from faults import start_daemon, wait_record, worker_argv
from test_metrics import Scrape

DENIED = "access denied to channel job_events for resource id {}"
UNAVAILABLE = {"error": "access check unavailable, try again later"}


def hooked(cluster, app, *extra, gateway_extra=()):
    """A worker with both hooks on the application, and a gateway that
    forwards Django's session cookie."""
    cluster.wk = cluster.worker(*app.worker_args(), *extra)
    cluster.gw = cluster.gateway(*GATEWAY_ARGS, *gateway_extra)
    return cluster


async def browser(gw, app, cookies):
    """A page of the gateway's origin with the session cookies: connected,
    the accept message read."""
    ws = await connect(gw.url(), app.ws_headers(cookies, gw))
    return ws, await recv_json(ws, what="the accept message")


def test_login_cookie_connects_as_that_user(cluster, django_app):
    c = hooked(cluster, django_app)
    alice, bob = django_app.login("alice"), django_app.login("bob")

    async def go():
        for cookies, uid in ((alice, 7), (bob, 8)):
            ws, accept = await browser(c.gw, django_app, cookies)
            assert accept == {"accept": True, "user": uid}
            await ws.close()
        # No session: the application answers 401, the client gets 403.
        assert await handshake_status(c.gw.url(), {"Origin": f"http://127.0.0.1:{c.gw.port}",
                                                   "Cookie": "sessionid=nosuchsession"}) == 403
        # Cookies without an allowed Origin are refused before anyone is asked.
        n = len(django_app.calls("connect"))
        assert await handshake_status(c.gw.url(), {"Cookie": django_app.cookie_header(alice)}) == 403
        assert len(django_app.calls("connect")) == n
        # A valid JWT still admits without the application (combined mode).
        ws = await open_client(c.gw, user=42)
        await ws.close()
        assert len(django_app.calls("connect")) == n

    run(go())
    call = django_app.calls("connect")[0]
    h = {k.lower(): v for k, v in call["headers"].items()}
    assert h["x-wsgw-hook"] == "connect"
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["origin"] == f"http://127.0.0.1:{c.gw.port}"
    assert f"sessionid={alice['sessionid']}" in h["cookie"]
    assert call["body"] == {"path": "/websocket/", "client": "127.0.0.1"}


def test_subscription_asks_the_application_and_events_follow(cluster, django_app):
    c = hooked(cluster, django_app)
    mine, theirs = django_app.create_job("mine"), django_app.create_job("theirs")
    django_app.grant("alice", mine)
    cookies = django_app.login("alice")

    async def go():
        ws, _ = await browser(c.gw, django_app, cookies)
        errors, reply = await subscribe(ws, {"job_events": [mine, theirs], "jobs": ["status"]},
                                        xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(theirs)}]
        assert reply["groups_current"] == sorted([f"job_events-{mine}", "jobs-status"])
        c.emit(f"job_events-{mine}", '{"event": 1}')
        assert await recv_json(ws) == {"event": 1}
        # The same request again: answered from the cache, no call.
        n = len(django_app.calls("subscribe"))
        errors, reply = await subscribe(ws, {"job_events": [mine, theirs], "jobs": ["status"]},
                                        xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(theirs)}]
        assert reply["groups_joined"] == [] and reply["groups_left"] == []
        assert len(django_app.calls("subscribe")) == n
        await ws.close()

    run(go())
    calls = django_app.calls("subscribe")
    assert len(calls) == 1
    assert calls[0]["body"] == {"user": 7, "channel": "job_events", "ids": [mine, theirs]}
    h = {k.lower(): v for k, v in calls[0]["headers"].items()}
    assert h["x-wsgw-hook"] == "subscribe" and f"sessionid={cookies['sessionid']}" in h["cookie"]
    s = Scrape(c.wk.metrics_port)
    assert s("wsgw_worker_grant_cache_lookups_total", result="hit") == 2
    assert s("wsgw_worker_grant_cache_lookups_total", result="miss") == 2


def test_logout_refuses_the_next_subscription(cluster, django_app):
    c = hooked(cluster, django_app)
    a, b = django_app.create_job(), django_app.create_job()
    django_app.grant("alice", a)
    django_app.grant("alice", b)
    cookies = django_app.login("alice")

    async def go():
        ws, _ = await browser(c.gw, django_app, cookies)
        errors, reply = await subscribe(ws, {"job_events": [a]}, xrftoken=cookies["csrftoken"])
        assert errors == [] and reply["groups_current"] == [f"job_events-{a}"]
        django_app.logout(cookies)
        # b was never asked about: the application is, and its 401 refuses it.
        errors, reply = await subscribe(ws, {"job_events": [a, b]}, xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(b)}]
        assert reply["groups_current"] == [f"job_events-{a}"]  # a: cached until its TTL
        await ws.close()

    run(go())
    assert django_app.calls("subscribe")[-1]["status"] == 401


def test_a_job_created_after_connect_is_followed_once_granted(cluster, django_app):
    # Refusals cached for 0 s: a grant counts at the very next request.
    c = hooked(cluster, django_app, "--auth.grant_cache_deny_ttl=0")
    cookies = django_app.login("alice")

    async def go():
        ws, _ = await browser(c.gw, django_app, cookies)
        job = django_app.create_job("launched after connect")
        errors, _ = await subscribe(ws, {"job_events": [job]}, xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(job)}]
        django_app.grant("alice", job)
        errors, reply = await subscribe(ws, {"job_events": [job]}, xrftoken=cookies["csrftoken"])
        assert errors == [] and reply["groups_joined"] == [f"job_events-{job}"]
        c.emit(f"job_events-{job}", '{"stdout": "hello"}')
        assert await recv_json(ws) == {"stdout": "hello"}
        await ws.close()

    run(go())


def test_application_down_503_for_new_connections_events_keep_flowing(cluster, django_app):
    c = hooked(cluster, django_app, "--auth.hook_breaker_failures=2",
               "--auth.hook_breaker_cooldown=60s")
    job = django_app.create_job()
    django_app.grant("alice", job)
    cookies = django_app.login("alice")

    async def go():
        ws, _ = await browser(c.gw, django_app, cookies)
        await subscribe(ws, {"job_events": [job]}, xrftoken=cookies["csrftoken"])
        django_app.stop()
        headers = django_app.ws_headers(cookies, c.gw)
        for _ in range(3):  # refused connection, refused, then the breaker fails fast
            t0 = time.monotonic()
            assert await handshake_status(c.gw.url(), headers) == 503
            assert time.monotonic() - t0 < 3
        # The connection admitted before keeps receiving its events.
        c.emit(f"job_events-{job}", '{"still": "here"}')
        assert await recv_json(ws) == {"still": "here"}
        # A subscription that needs the application: an error, membership kept.
        await ws.send(json.dumps({"groups": {"job_events": [job, job + 1]},
                                  "xrftoken": cookies["csrftoken"]}))
        assert await recv_json(ws) == UNAVAILABLE
        c.emit(f"job_events-{job}", '{"after": "error"}')
        assert await recv_json(ws) == {"after": "error"}
        # Tokens do not need the application.
        ws2 = await open_client(c.gw, user=9)
        await ws2.close()
        await ws.close()

    run(go())
    s = Scrape(c.wk.metrics_port)
    assert s("wsgw_worker_hook_errors_total", kind="connect") >= 2
    assert s("wsgw_worker_hook_errors_total", kind="breaker_open") >= 1
    assert s("wsgw_worker_hook_breaker_state") == 1


def test_slow_application_does_not_delay_token_clients(cluster, django_app):
    """20 subscriptions wait 200 ms each for the application, all at once;
    a JWT client's subscription meanwhile is answered at once."""
    c = hooked(cluster, django_app)
    jobs = [django_app.create_job() for _ in range(20)]
    sessions = []
    for i in range(20):
        name = f"user{i}"
        django_app.create_user(name, "pw-" + name)
        django_app.grant(name, jobs[i])
        sessions.append(django_app.login(name, "pw-" + name))

    async def slow(ws, cookies, job):
        t0 = time.monotonic()
        errors, reply = await subscribe(ws, {"job_events": [job]}, xrftoken=cookies["csrftoken"])
        assert errors == [] and reply["groups_current"] == [f"job_events-{job}"]
        return time.monotonic() - t0

    async def go():
        clients = [(await browser(c.gw, django_app, s))[0] for s in sessions]
        fast = await open_client(c.gw, user=5, token=jwt_for(5, objects={"job_events": [1]}))
        await subscribe(fast, {"jobs": ["status"]})
        # A first round at once opens the 20 connections to the application
        # that the measured round reuses (runserver's listen backlog is 5:
        # a burst of new connections waits out SYN retries).
        await asyncio.gather(*(subscribe(ws, {"job_events": [10**6 + i]},
                                         xrftoken=s["csrftoken"])
                               for i, (ws, s) in enumerate(zip(clients, sessions))))
        django_app.reset_calls()
        django_app.set_hook(hooks=["subscribe"], delay_ms=200)
        waiting = [asyncio.ensure_future(slow(ws, s, j))
                   for ws, s, j in zip(clients, sessions, jobs)]
        # The 20 reach the application (which holds each 200 ms) first.
        await asyncio.sleep(0.08)
        t0 = time.monotonic()
        errors, reply = await subscribe(fast, {"jobs": ["summary"], "job_events": [1]})
        fast_s = time.monotonic() - t0
        slow_s = await asyncio.gather(*waiting)
        for ws in clients + [fast]:
            await ws.close()
        return errors, reply, fast_s, slow_s

    errors, reply, fast_s, slow_s = run(go())
    assert errors == [] and reply["groups_current"] == ["job_events-1", "jobs-summary"]
    print(f"token client: {fast_s * 1000:.1f} ms; hook clients: "
          f"{min(slow_s) * 1000:.0f}-{max(slow_s) * 1000:.0f} ms")
    assert min(slow_s) >= 0.2
    assert fast_s < 0.1, f"the token client waited {fast_s * 1000:.0f} ms"
    assert django_app.in_flight_max() >= 20


def test_application_answers_that_break_the_contract_are_errors_not_refusals(cluster, django_app):
    c = hooked(cluster, django_app, "--auth.hook_breaker_failures=100",
               "--auth.grant_cache_deny_ttl=0")
    cookies = django_app.login("alice")
    job = django_app.create_job()
    django_app.grant("alice", job)

    async def go():
        headers = django_app.ws_headers(cookies, c.gw)
        for status, body in ((500, "oops"), (200, '{"user": 0}'), (200, '{"user": 1e300}'),
                             (302, ""), (200, '{"user": "007"}')):
            django_app.set_hook(hooks=["connect"], status=status, body=body)
            assert await handshake_status(c.gw.url(), headers) == 503, (status, body)
        django_app.set_hook()
        ws, accept = await browser(c.gw, django_app, cookies)
        assert accept["user"] == 7
        for body in ('{"allowed": [1.5]}', '{"allowed": "all"}', '{"allowed": ["042"]}',
                     '{"allowed": [9007199254740993]}', '[]'):
            django_app.set_hook(hooks=["subscribe"], status=200, body=body)
            await ws.send(json.dumps({"groups": {"job_events": [job]},
                                      "xrftoken": cookies["csrftoken"]}))
            assert await recv_json(ws) == UNAVAILABLE, body
        # An id not asked for grants nothing (the asked one is refused).
        django_app.set_hook(hooks=["subscribe"], status=200, body='{"allowed": [9999999]}')
        errors, reply = await subscribe(ws, {"job_events": [job]}, xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(job)}] and reply["groups_current"] == []
        django_app.set_hook()
        errors, reply = await subscribe(ws, {"job_events": [job]}, xrftoken=cookies["csrftoken"])
        assert errors == [] and reply["groups_current"] == [f"job_events-{job}"]
        await ws.close()

    run(go())
    s = Scrape(c.wk.metrics_port)
    assert s("wsgw_worker_hook_errors_total", kind="invalid") >= 8
    assert s("wsgw_worker_hook_errors_total", kind="status") >= 2


def test_application_only_mode_needs_no_secret(cluster, django_app):
    """No secret and no token file: the application alone admits; a token
    is then just an unknown credential."""
    cluster.wk = cluster.worker("--auth.secret=", *django_app.worker_args(subscribe=False))
    cluster.gw = cluster.gateway(*GATEWAY_ARGS, ready=False)
    cookies = django_app.login("bob")

    async def go():
        wait_until(lambda: cluster.gw.http_status("/") is not None, 20, "the gateway")
        ws, accept = await browser(cluster.gw, django_app, cookies)
        assert accept == {"accept": True, "user": 8}
        # No subscribe hook: object channels follow the grants only (none).
        errors, _ = await subscribe(ws, {"job_events": [1]}, xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(1)}]
        await ws.close()
        assert await handshake_status(cluster.gw.url(token=jwt_for(7))) == 403

    run(go())


def test_sighup_turns_the_hooks_on_and_off(cluster, django_app, tmp_path):
    """The URLs come from the config file: a reload applies them between two
    deliveries (and empties the grant cache); a job in flight is unaffected."""
    conf = tmp_path / "workerd.ini"
    conf.write_text(f"[auth]\nsecret = {'s' * 32}\n")
    wk = start_daemon(cluster, "workerd", worker_argv(cluster, f"--config={conf}"))
    cluster.wait_workers(1, wk)
    gw = cluster.gateway(*GATEWAY_ARGS, ready=False)
    wait_until(lambda: gw.http_status("/") is not None, 20, "the gateway")
    cookies = django_app.login("alice")
    headers = django_app.ws_headers(cookies, gw)

    async def status():
        try:
            ws = await connect(gw.url(), headers)
        except websockets.InvalidStatusCode as e:
            return e.status_code
        accept = await recv_json(ws)
        await ws.close()
        return accept["user"]

    assert run(status()) == 403  # tokens only: a cookie is no credential
    conf.write_text(f"[auth]\nsecret = {'s' * 32}\nconnect_url = {django_app.connect_url}\n")
    wk.proc.send_signal(signal.SIGHUP)
    wait_record(wk, "reload")
    assert run(status()) == 7
    conf.write_text(f"[auth]\nsecret = {'s' * 32}\n")
    wk.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len([1 for line in wk.log().splitlines() if "event=reload " in line]) >= 2,
               10, "the second reload")
    assert run(status()) == 403


def test_hook_bounds_hold_against_a_flooding_application_and_client(cluster, django_app):
    """The two bounds of the hook client, attacked. An application that
    answers 1 MiB (auth.hook_max_response 64 KiB): the call fails at the
    bound, the client gets 503, the worker's memory does not take the
    answer. Twelve handshakes at once against a slow application with
    auth.hook_max_in_flight 2: never more than two calls reach the
    application, the handshakes past the bound are answered 503 at once
    (the hook client refuses them busy), and a token client is served
    meanwhile, not behind them."""
    from faults import SANITIZED, proc_rss_kib
    c = hooked(cluster, django_app, "--auth.hook_max_in_flight=2",
               "--auth.hook_breaker_failures=1000")
    cookies = django_app.login("alice")
    headers = django_app.ws_headers(cookies, c.gw)

    async def go():
        rss0 = proc_rss_kib(c.wk.proc.pid)
        django_app.set_hook(hooks=["connect"], status=200,
                            body='{"user": 7, "session": {"x": "' + "a" * (1 << 20) + '"}}')
        for _ in range(3):
            assert await handshake_status(c.gw.url(), headers) == 503
        grown = proc_rss_kib(c.wk.proc.pid) - rss0
        print(f"worker RSS after three 1 MiB answers: +{grown} KiB")
        # RSS figures need the normal build (ASan keeps freed memory).
        assert SANITIZED or grown < 1024, grown
        django_app.set_hook(hooks=["connect"], delay_ms=300)
        django_app.reset_calls()
        flood = asyncio.gather(*(asyncio.wait_for(handshake_or_status(c.gw.url(), headers), 15)
                                 for _ in range(12)))
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        ws = await open_client(c.gw, user=9)  # a token: no hook, served meanwhile
        took = time.monotonic() - t0
        await ws.close()
        results = await flood
        print(f"12 handshakes, 2 slots: {results}; token client in {took * 1000:.0f} ms; "
              f"calls at once at most {django_app.in_flight_max()}")
        assert django_app.in_flight_max() <= 2
        assert all(r in (101, 503) for r, _ in results) and took < 0.25, (results, took)
        assert sum(r == 503 and t < 0.25 for r, t in results) >= 8, results
        assert sum(r == 101 for r, _ in results) >= 2, results
        django_app.set_hook()
    run(go(), timeout=60)
    assert Scrape(c.wk.metrics_port)("wsgw_worker_hook_errors_total", kind="too_large") >= 3


async def handshake_or_status(url, headers):
    """(101 or the refusal status, seconds taken)."""
    t0 = time.monotonic()
    try:
        ws = await connect(url, headers)
    except websockets.InvalidStatusCode as e:
        return e.status_code, time.monotonic() - t0
    await ws.close()
    return 101, time.monotonic() - t0
