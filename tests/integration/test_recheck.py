"""Issue 13, part 3: grants the application gave (the subscribe hook) are
re-checked every auth.recheck_interval. A revoked grant, or a credential
the application no longer accepts (logout), removes the group from the
connection, and the client gets the text a refused entry gets; grants of
a token's objects claim are not re-checked; with the application down the
groups are kept (docs/PROTOCOL.md, "Re-checking grants").

Runs against the real Django test application (djangoapp.py), with a 1 s
interval so that each removal shows within a few seconds.
"""

import asyncio
import json

import pytest

from conftest import jwt_for, recv_json, run, subscribe, wait_until
from test_hooks import DENIED, browser, hooked
from test_metrics import Scrape

FAST = "--auth.recheck_interval=1s"


async def silent(ws, seconds):
    """Fails if a message arrives within seconds."""
    try:
        msg = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    pytest.fail(f"expected nothing, got {msg!r}")


def test_revoked_grant_is_left_within_the_interval(cluster, django_app):
    c = hooked(cluster, django_app, FAST)
    a, b = django_app.create_job("revoked"), django_app.create_job("kept")
    django_app.grant("alice", a)
    django_app.grant("alice", b)
    cookies = django_app.login("alice")

    async def go():
        ws, _ = await browser(c.gw, django_app, cookies)
        errors, reply = await subscribe(ws, {"job_events": [a, b], "jobs": ["status"]},
                                        xrftoken=cookies["csrftoken"])
        assert errors == []
        assert reply["groups_current"] == sorted([f"job_events-{a}", f"job_events-{b}",
                                                  "jobs-status"])
        # Re-checks that find every grant still there say nothing.
        await silent(ws, 2.5)
        django_app.revoke("alice", a)
        # Within the interval (plus a re-check's round trip): the refusal text.
        assert await recv_json(ws, timeout=5) == {"error": DENIED.format(a)}
        # a's events no longer arrive; b's and the non-object group's do.
        c.emit(f"job_events-{a}", '{"revoked": 1}')
        c.emit(f"job_events-{b}", '{"kept": 1}')
        c.emit("jobs-status", '{"status": 1}')
        assert await recv_json(ws) == {"kept": 1}
        assert await recv_json(ws) == {"status": 1}
        # The client's own view agrees: a is gone, asking again is refused.
        errors, reply = await subscribe(ws, {"job_events": [a, b], "jobs": ["status"]},
                                        xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(a)}]
        assert reply["groups_joined"] == [] and reply["groups_left"] == []
        await ws.close()

    run(go())
    rechecks = [x for x in django_app.calls("subscribe")
                if x["body"] == {"user": 7, "channel": "job_events", "ids": sorted([a, b])}]
    assert len(rechecks) >= 3  # the first subscription, then re-checks of both ids
    s = Scrape(c.wk.metrics_port)
    assert s("wsgw_worker_rechecks_total", result="revoked") == 1
    assert s("wsgw_worker_rechecks_total", result="kept") >= 1
    assert s("wsgw_worker_recheck_removed_total") == 1
    gs = Scrape(c.gw.metrics_port)
    assert gs("wsgw_gateway_rechecks_total") >= 2
    assert gs("wsgw_gateway_recheck_leaves_total") == 1


def test_logout_leaves_the_object_groups_within_the_interval(cluster, django_app):
    c = hooked(cluster, django_app, FAST)
    a, b = django_app.create_job(), django_app.create_job()
    django_app.grant("alice", a)
    django_app.grant("alice", b)
    cookies = django_app.login("alice")

    async def go():
        ws, _ = await browser(c.gw, django_app, cookies)
        errors, reply = await subscribe(ws, {"job_events": [a, b], "jobs": ["status"]},
                                        xrftoken=cookies["csrftoken"])
        assert errors == [] and len(reply["groups_current"]) == 3
        django_app.logout(cookies)
        # The application answers 401 to the session: every id it granted goes.
        got = [await recv_json(ws, timeout=5), await recv_json(ws, timeout=5)]
        assert sorted(got, key=json.dumps) == sorted(
            [{"error": DENIED.format(a)}, {"error": DENIED.format(b)}], key=json.dumps)
        c.emit(f"job_events-{a}", '{"a": 1}')
        c.emit(f"job_events-{b}", '{"b": 1}')
        c.emit("jobs-status", '{"status": 1}')
        assert await recv_json(ws) == {"status": 1}
        # Nothing is held by the application's grant now: no more re-checks.
        n = len(django_app.calls("subscribe"))
        await silent(ws, 2.5)
        assert len(django_app.calls("subscribe")) == n
        # Asking again is refused: the cache does not hand the ids back.
        errors, reply = await subscribe(ws, {"job_events": [a], "jobs": ["status"]},
                                        xrftoken=cookies["csrftoken"])
        assert errors == [{"error": DENIED.format(a)}]
        assert reply["groups_current"] == ["jobs-status"]
        await ws.close()

    run(go())
    assert any(x["status"] == 401 for x in django_app.calls("subscribe"))


def test_application_down_during_a_recheck_keeps_the_groups(cluster, django_app):
    """Decided: fail open for grants already held, as events keep flowing
    to open connections while the application is down (part 1)."""
    c = hooked(cluster, django_app, FAST, "--auth.hook_breaker_failures=2",
               "--auth.hook_breaker_cooldown=60s")
    job = django_app.create_job()
    django_app.grant("alice", job)
    cookies = django_app.login("alice")

    async def go():
        ws, _ = await browser(c.gw, django_app, cookies)
        errors, _ = await subscribe(ws, {"job_events": [job]}, xrftoken=cookies["csrftoken"])
        assert errors == []
        django_app.stop()
        s = Scrape(c.wk.metrics_port)
        # Failed calls, then the open breaker: each re-check keeps the group.
        wait_until(lambda: Scrape(c.wk.metrics_port)("wsgw_worker_rechecks_total",
                                                     result="unavailable") >= 3,
                   10, "three re-checks without the application")
        await silent(ws, 0.1)  # the client was told nothing
        c.emit(f"job_events-{job}", '{"still": "here"}')
        assert await recv_json(ws) == {"still": "here"}
        assert s("wsgw_worker_recheck_removed_total") == 0
        await ws.close()

    run(go())
    s = Scrape(c.wk.metrics_port)
    assert s("wsgw_worker_hook_errors_total", kind="breaker_open") >= 1


def test_token_objects_claim_is_not_rechecked(cluster, django_app):
    """A JWT with an objects claim, and the session cookie: job a by the
    token, job b by the application. Both revoked in the application: only
    b goes (the token is the grant; its expiry ends it)."""
    c = hooked(cluster, django_app, FAST)
    a, b = django_app.create_job(), django_app.create_job()
    django_app.grant("alice", b)
    cookies = django_app.login("alice")
    token = jwt_for(7, objects={"job_events": [a]})

    async def go():
        from conftest import connect
        ws = await connect(c.gw.url("/websocket/", token), django_app.ws_headers(cookies, c.gw))
        assert await recv_json(ws) == {"accept": True, "user": 7}
        errors, reply = await subscribe(ws, {"job_events": [a, b]},
                                        xrftoken=cookies["csrftoken"])
        assert errors == [] and len(reply["groups_current"]) == 2
        django_app.revoke("alice", b)
        assert await recv_json(ws, timeout=5) == {"error": DENIED.format(b)}
        c.emit(f"job_events-{b}", '{"b": 1}')
        c.emit(f"job_events-{a}", '{"a": 1}')
        assert await recv_json(ws) == {"a": 1}
        await silent(ws, 2.5)  # a stays, and is never asked about
        await ws.close()

    run(go())
    for x in django_app.calls("subscribe"):
        assert a not in x["body"]["ids"]
