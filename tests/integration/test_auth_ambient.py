"""Issue 12, items 5, 6 and 8, end to end: each attack the review ran, and
what AWX's own clients send, which must keep working.

5. A token in a cookie is ambient authority: a page on another site got the
   browser to connect with it and joined job_events-42. It now needs an
   allowed Origin (by default the Host's own); two different csrftoken
   cookies are refused; query and Bearer tokens need no Origin.
6. User 5000000000000001 was refused its own control group and given
   ...000's: ids now travel as exact digits; ids past 2^53-1 are refused.
(Item 8, the secret length, and the shared allowed_origins setting need
daemons of their own: test_auth_settings.py.)
"""

import asyncio
import json
import time

import pytest

from conftest import (connect, handshake_status, jwt_for, make_jwt, recv_json, recv_text, run,
                      send_request, subscribe, wait_until)
from authclient import joined, own_origin, refusals
from rawws import finish_module_cluster, module_cluster

BIG = 5000000000000001  # above 2^52: a double's 15 digits print it as 5e+15
EVIL = "https://evil.example.net"


@pytest.fixture(scope="module")
def stack_m(broker, vhost, request, tmp_path_factory):
    c = module_cluster(broker, vhost, request, tmp_path_factory)
    c.wk = c.worker()
    c.gw = c.gateway()
    yield c
    finish_module_cluster(c)


# ---- 5: cross-site websocket hijacking ---------------------------------------

def test_cross_site_page_with_the_cookie_token_is_refused(stack_m):
    """The review's attack: a page on another site opens the socket; the
    browser adds the victim's cookies and the page's own Origin. Before:
    101, and the page joined job_events-42."""
    token = jwt_for(7, objects={"job_events": [42]})
    for cookies in (f"token={token}", f"token={token}; csrftoken=abc"):
        assert run(handshake_status(stack_m.gw.url(),
                                    {"Cookie": cookies, "Origin": EVIL})) == 403
    wait_until(lambda: len(refusals(stack_m.wk, "cookie token from a disallowed Origin")) >= 2,
               10, "the worker to log both refusals")


def test_cookie_token_without_origin_is_refused(stack_m):
    token = jwt_for(7)
    assert run(handshake_status(stack_m.gw.url(), {"Cookie": f"token={token}"})) == 403
    wait_until(lambda: refusals(stack_m.wk, "cookie token without Origin"), 10,
               "the worker to log the refusal")


def test_cookie_token_from_the_hosts_own_origin_joins_with_its_xrftoken(stack_m):
    token = jwt_for(7, objects={"job_events": [42]})
    headers = {"Cookie": f"token={token}; csrftoken=abc", "Origin": own_origin(stack_m.gw)}

    async def main():
        async with connect(stack_m.gw.url(), headers) as ws:
            assert await recv_json(ws) == {"accept": True, "user": 7}
            assert await send_request(ws, json.dumps({"groups": {"job_events": [42]}})) \
                == {"error": "xrftoken mismatch"}
            errors, reply = await subscribe(ws, {"job_events": [42]}, xrftoken="abc")
            assert errors == [] and reply["groups_current"] == ["job_events-42"]
    run(main())


def test_query_and_bearer_tokens_are_not_ambient(stack_m):
    # Any Origin, or none: whoever holds the token may use it.
    async def main():
        accept, _, reply = await joined(stack_m.gw.url(token=jwt_for(8)), {"Origin": EVIL},
                                        {"jobs": ["status_changed"]})
        assert accept["user"] == 8 and reply["groups_current"] == ["jobs-status_changed"]
        accept, _, reply = await joined(stack_m.gw.url(),
                                        {"Authorization": f"Bearer {jwt_for(9)}"},
                                        {"jobs": ["status_changed"]})
        assert accept["user"] == 9 and reply["groups_current"] == ["jobs-status_changed"]
    run(main())


def test_two_different_csrftoken_cookies_are_refused(stack_m):
    """A sibling subdomain plants a csrftoken of its own choosing (which one
    the browser sends first is not up to the site): refused. The same value
    twice (cookies for two paths) is fine."""
    url = stack_m.gw.url(token=jwt_for(7))
    assert run(handshake_status(url, {"Cookie": "csrftoken=planted; csrftoken=real"})) == 403
    wait_until(lambda: refusals(stack_m.wk, "conflicting csrftoken cookies"), 10,
               "the worker to log the refusal")

    async def main():
        accept, errors, reply = await joined(url, {"Cookie": "csrftoken=real; csrftoken=real"},
                                             {"jobs": ["a"]}, xrftoken="real")
        assert accept["user"] == 7 and reply["groups_current"] == ["jobs-a"]
    run(main())


def test_two_different_token_cookies_are_refused(stack_m):
    """A sibling subdomain plants its own token cookie, to have the victim's
    page connect (and type) as the planter: refused, whichever comes first."""
    headers = {"Cookie": f"token={jwt_for(66)}; token={jwt_for(7)}",
               "Origin": own_origin(stack_m.gw)}
    assert run(handshake_status(stack_m.gw.url(), headers)) == 403
    wait_until(lambda: refusals(stack_m.wk, "conflicting token cookies"), 10,
               "the worker to log the refusal")


def test_awxkit_2019_wsclient_keeps_working(stack_m):
    """awxkit's WSClient(token=...) (2019, over websocket-client): the token
    as a quoted cookie with a trailing ';', websocket-client's default
    Origin http://HOST[:PORT] naming the Host it connects to, no csrftoken
    cookie, and "xrftoken": null in every request, as these bytes."""
    token = jwt_for(7, objects={"job_events": [42]})
    headers = {"Cookie": f'token="{token}";', "Origin": own_origin(stack_m.gw)}

    async def main():
        async with connect(stack_m.gw.url(), headers) as ws:
            assert await recv_text(ws) == '{"accept": true, "user": 7}'
            await ws.send(json.dumps({"groups": {"jobs": ["status_changed", "summary"],
                                                 "job_events": [42]},
                                      "xrftoken": None}))
            assert json.loads(await recv_text(ws)) == {
                "groups_current": ["job_events-42", "jobs-status_changed", "jobs-summary"],
                "groups_joined": ["job_events-42", "jobs-status_changed", "jobs-summary"],
                "groups_left": []}
            await ws.send(json.dumps({"groups": {}, "xrftoken": None}))
            assert json.loads(await recv_text(ws))["groups_current"] == []
    run(main())


# ---- 6: ids above 2^53 ------------------------------------------------------

def test_user_id_above_2_52_gets_its_own_control_group_only(stack_m):
    """Before: the gateway re-printed the session's user 5000000000000001 as
    5e+15, so the user was refused its own group and joined ...000's."""
    async def main():
        async with connect(stack_m.gw.url(token=jwt_for(BIG))) as ws:
            assert await recv_text(ws) == f'{{"accept": true, "user": {BIG}}}'
            errors, reply = await subscribe(ws, {"control": [f"limit_reached_{BIG - 1}"]})
            assert errors == [{"error": "access denied to channel control for resource id "
                                        f"limit_reached_{BIG - 1}"}]
            assert reply["groups_current"] == []
            errors, reply = await subscribe(ws, {"control": [f"limit_reached_{BIG}"]})
            assert errors == [] and reply["groups_current"] == [f"control-limit_reached_{BIG}"]
            # The gateway reads every event from the history: the membership
            # counts from the reply on, no binding to wait for.
            await asyncio.to_thread(stack_m.emit, f"control-limit_reached_{BIG}", '{"n": 1}')
            assert await recv_json(ws) == {"n": 1}
    run(main())


def test_object_grant_above_2_52_covers_that_id_only(stack_m):
    async def main():
        token = jwt_for(7, objects={"job_events": [BIG]})
        async with connect(stack_m.gw.url(token=token)) as ws:
            await recv_json(ws)
            errors, reply = await subscribe(ws, {"job_events": [BIG - 1, BIG, str(BIG + 1)]})
            assert reply["groups_current"] == [f"job_events-{BIG}"]
            assert len(errors) == 2
    run(main())


@pytest.mark.parametrize("claims", [{"sub": "9007199254740992"}, {"sub": 9007199254740993},
                                    {"sub": "123456789012345678"},
                                    {"objects": {"job_events": [9007199254740993]}},
                                    {"objects": {"job_events": [1.5]}}],
                         ids=["sub-2^53", "sub-number-2^53+1", "sub-18-digits",
                              "object-2^53+1", "object-fraction"])
def test_ids_that_do_not_fit_are_refused_at_the_token_check(stack_m, claims):
    token = make_jwt({"sub": "7", "exp": int(time.time()) + 600, **claims})
    assert run(handshake_status(stack_m.gw.url(token=token))) == 403
