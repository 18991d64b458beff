"""The test application (tests/app) against the hook contract of
docs/PROTOCOL.md, "Application hooks", over real HTTP, before any workerd
talks to it: a browser's login gives the sessionid the connect hook
recognises, logout ends it, the subscribe hook filters ids by the grant
table, and the test controls (delay, stop/start) do what the gateway tests
rely on."""

import concurrent.futures
import http.client
import json
import socket
import statistics
import time

import pytest

from djangoapp import DjangoApp


def cookie(cookies):
    return {"Cookie": DjangoApp.cookie_header(cookies)}


def test_login_sets_django_session_and_csrf_cookies(django_app):
    cookies = django_app.login("alice")
    assert set(cookies) == {"sessionid", "csrftoken"}
    assert len(cookies["csrftoken"]) >= 32


def test_login_with_a_wrong_password_or_without_csrf_token_fails(django_app):
    with pytest.raises(Exception, match="login as 'alice' failed: 401"):
        django_app.login("alice", "wrong")
    # Django's CSRF protection is on: a form POST without the token is refused.
    status, _, _ = django_app._request(
        "POST", "/accounts/login/", b"username=alice&password=alice-password",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403


def test_connect_hook_answers_the_session_user_and_its_expiry(django_app):
    cookies = django_app.login("alice")
    before = time.time()
    status, answer = django_app.connect_hook(
        {**cookie(cookies), "X-Forwarded-For": "203.0.113.9", "Origin": "http://127.0.0.1"},
        {"path": "/websocket/", "client": "203.0.113.9"})
    assert status == 200, answer
    assert answer["user"] == 7
    assert answer["session"] == {"name": "alice"}
    # Django's default session age (two weeks) from the login.
    assert abs(answer["expires"] - (before + 14 * 24 * 3600)) < 30
    # Another user, another id; only the sessionid is needed.
    status, answer = django_app.connect_hook({"Cookie": "sessionid="
                                              + django_app.login("bob")["sessionid"]})
    assert (status, answer["user"]) == (200, 8)


def test_connect_hook_expires_follows_the_session(django_app):
    cookies = django_app.login("alice")
    ends = django_app.expire_session(cookies, 120)
    status, answer = django_app.connect_hook(cookie(cookies))
    assert (status, answer["expires"]) == (200, ends)
    django_app.expire_session(cookies, -1)  # ended: Django no longer knows it
    status, answer = django_app.connect_hook(cookie(cookies))
    assert status == 401, answer


@pytest.mark.parametrize("headers", [{}, {"Cookie": "sessionid=nosuchsession"},
                                     {"Cookie": "csrftoken=abc"}])
def test_connect_hook_without_a_valid_session_is_401_json_not_a_redirect(django_app, headers):
    status, answer = django_app.connect_hook(headers)
    assert status == 401
    assert answer == {"error": "not authenticated"}


def test_hooks_take_post_only(django_app):
    cookies = django_app.login("alice")
    for path in ("/wsgw/connect", "/wsgw/subscribe"):
        status, _, _ = django_app._request("GET", path, headers=cookie(cookies))
        assert status == 405


def test_logout_ends_the_session_for_both_hooks(django_app):
    cookies = django_app.login("alice")
    job = django_app.create_job()
    django_app.grant("alice", job)
    assert django_app.subscribe_hook(cookie(cookies), 7, "job_events", [job]) == \
        (200, {"allowed": [job]})
    django_app.logout(cookies)
    assert django_app.connect_hook(cookie(cookies))[0] == 401
    assert django_app.subscribe_hook(cookie(cookies), 7, "job_events", [job])[0] == 401


def test_subscribe_hook_allows_granted_ids_only(django_app):
    alice = cookie(django_app.login("alice"))
    j1, j2, j3 = (django_app.create_job(f"job {i}") for i in range(3))
    django_app.grant("alice", j1)
    django_app.grant("bob", j2)  # bob's grant is not alice's
    assert django_app.subscribe_hook(alice, 7, "job_events", [j1, j2, j3, 999999]) == \
        (200, {"allowed": [j1]})
    # A grant made now counts at once; a revoked one no longer does.
    django_app.grant("alice", j3)
    assert django_app.subscribe_hook(alice, 7, "job_events", [j3, j1]) == \
        (200, {"allowed": [j1, j3]})
    django_app.revoke("alice", j1)
    assert django_app.subscribe_hook(alice, 7, "job_events", [j1, j3]) == \
        (200, {"allowed": [j3]})
    # The user as a decimal string; every job channel; nothing elsewhere.
    assert django_app.subscribe_hook(alice, "7", "workflow_events", [j3]) == \
        (200, {"allowed": [j3]})
    assert django_app.subscribe_hook(alice, 7, "not_a_job_channel", [j3]) == \
        (200, {"allowed": []})
    assert django_app.subscribe_hook(alice, 7, "job_events", []) == (200, {"allowed": []})


def test_subscribe_hook_superuser_sees_every_existing_job(django_app):
    admin = cookie(django_app.login("admin"))
    job = django_app.create_job()
    assert django_app.subscribe_hook(admin, 1, "job_events", [job, job + 1000]) == \
        (200, {"allowed": [job]})


def test_subscribe_hook_refuses_another_users_id(django_app):
    alice = cookie(django_app.login("alice"))
    job = django_app.create_job()
    django_app.grant("bob", job)
    status, answer = django_app.subscribe_hook(alice, 8, "job_events", [job])
    assert status == 403, answer


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"user": 7, "channel": "job_events"}',
                                  b'{"user": 7, "channel": "job_events", "ids": ["42"]}',
                                  b'{"user": 7, "channel": "job_events", "ids": [true]}',
                                  b'{"user": 0, "channel": "job_events", "ids": [1]}',
                                  b'{"user": 7, "channel": 5, "ids": [1]}'])
def test_subscribe_hook_refuses_a_malformed_request_with_400(django_app, body):
    alice = cookie(django_app.login("alice"))
    status, _, _ = django_app._request("POST", "/wsgw/subscribe", body,
                                       headers={**alice, "Content-Type": "application/json"})
    assert status == 400


def test_bearer_token_is_a_credential_too(django_app):
    key = django_app.create_token("bob", ttl=600)
    before = time.time()
    status, answer = django_app.connect_hook({"Authorization": f"Bearer {key}"})
    assert status == 200 and answer["user"] == 8, answer
    assert abs(answer["expires"] - (before + 600)) < 30
    job = django_app.create_job()
    django_app.grant("bob", job)
    assert django_app.subscribe_hook({"Authorization": f"Bearer {key}"}, 8, "job_events",
                                     [job]) == (200, {"allowed": [job]})
    assert django_app.connect_hook({"Authorization": "Bearer nosuchtoken"})[0] == 401
    expired = django_app.create_token("bob", ttl=-1)
    assert django_app.connect_hook({"Authorization": f"Bearer {expired}"})[0] == 401


def test_calls_record_what_the_hooks_were_sent(django_app):
    cookies = django_app.login("alice")
    django_app.reset_calls()
    django_app.connect_hook({**cookie(cookies), "X-Forwarded-For": "203.0.113.9"},
                            {"path": "/websocket/", "client": "203.0.113.9"})
    django_app.subscribe_hook(cookie(cookies), 7, "job_events", [1])
    connect, subscribe = django_app.calls()
    assert connect["hook"] == "connect" and connect["status"] == 200
    assert connect["headers"]["X-Wsgw-Hook"] == "connect"
    assert connect["headers"]["X-Forwarded-For"] == "203.0.113.9"
    assert f"sessionid={cookies['sessionid']}" in connect["headers"]["Cookie"]
    assert connect["body"] == {"path": "/websocket/", "client": "203.0.113.9"}
    assert subscribe["body"] == {"user": 7, "channel": "job_events", "ids": [1]}
    assert django_app.calls("subscribe") == [subscribe]


def test_set_hook_makes_a_hook_fail(django_app):
    cookies = django_app.login("alice")
    django_app.set_hook(["connect"], status=500, body="oops")
    assert django_app.connect_hook(cookie(cookies)) == (500, "oops")
    assert django_app.subscribe_hook(cookie(cookies), 7, "job_events", [])[0] == 200
    django_app.set_hook(status=200, body='{"allowed": "garbage"}')
    assert django_app.subscribe_hook(cookie(cookies), 7, "job_events", []) == \
        (200, {"allowed": "garbage"})
    django_app.set_hook()
    assert django_app.connect_hook(cookie(cookies))[0] == 200


def test_delay_slows_each_call_but_calls_run_concurrently(django_app):
    cookies = django_app.login("alice")
    django_app.set_delay(400)
    django_app.reset_calls()
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: django_app.connect_hook(cookie(cookies)), range(4)))
    elapsed = time.monotonic() - t0
    assert all(status == 200 for status, _ in results), results
    assert 0.4 <= elapsed < 1.2, f"4 concurrent calls of 400 ms took {elapsed:.2f}s"
    assert django_app.in_flight_max() >= 2
    django_app.set_delay(0)
    t0 = time.monotonic()
    assert django_app.connect_hook(cookie(cookies))[0] == 200
    assert time.monotonic() - t0 < 0.3


def test_stop_refuses_connections_and_start_keeps_the_data(django_app):
    cookies = django_app.login("alice")
    job = django_app.create_job()
    django_app.grant("alice", job)
    django_app.stop()
    assert not django_app.alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", django_app.port), timeout=2).close()
    django_app.start()  # same port, same database: the session is still valid
    assert django_app.connect_hook(cookie(cookies))[1]["user"] == 7
    assert django_app.subscribe_hook(cookie(cookies), 7, "job_events", [job]) == \
        (200, {"allowed": [job]})


def test_origin_is_checked_when_the_site_lists_its_origins(tmp_path, django_app_db):
    app = DjangoApp(tmp_path / "app", env={"WSGW_APP_ALLOWED_ORIGINS": "https://awx.example.com"},
                    template=django_app_db)
    app.start()
    try:
        cookies = cookie(app.login("alice"))
        assert app.connect_hook({**cookies, "Origin": "https://awx.example.com"})[0] == 200
        assert app.connect_hook(cookies)[0] == 200  # no Origin: not a browser
        assert app.connect_hook({**cookies, "Origin": "https://evil.example"})[0] == 403
        assert app.subscribe_hook({**cookies, "Origin": "https://evil.example"},
                                  7, "job_events", [])[0] == 403
    finally:
        app.stop()


def test_calls_on_a_kept_alive_connection_are_not_held_by_nagle(django_app):
    """workerd reuses its connections: on one, each answer must come at once
    (without TCP_NODELAY Django's server made every call wait ~40 ms for
    the client's delayed ACK)."""
    cookies = django_app.login("alice")
    body = json.dumps({"user": 7, "channel": "job_events", "ids": [1]})
    conn = http.client.HTTPConnection("127.0.0.1", django_app.port, timeout=10)
    times = []
    try:
        for _ in range(21):
            t0 = time.monotonic()
            conn.request("POST", "/wsgw/subscribe", body,
                         {**cookie(cookies), "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200
            times.append(time.monotonic() - t0)
    finally:
        conn.close()
    assert statistics.median(times) < 0.025, f"median {statistics.median(times) * 1000:.1f} ms"
