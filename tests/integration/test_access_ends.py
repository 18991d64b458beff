"""Access that ends (issue 13, part 3): a credential's expiry closes the
connection unless the client refreshes it, and operators or the application
can end a user's access at once (kicks).

Owns: the refresh window (a connection whose token expired is closed 4401 at
exp + auth.leeway + gateway.refresh_window; events keep flowing inside the
window; {"token": ...} of the same user moves the expiry, before or inside the
window; another user's or an invalid token is refused with an error text and
moves nothing), kicks by user across two gateways (history on and off) and by
connection (4403; other users untouched), `chanctl kick`'s exit status and
messages (3, "nobody", with the history on: kicks go to websocket.control), the
application's path (the kick message published with pika by a user with the
emitter's permissions, to websocket.control and the old way to
websocket.groups, each delivered once), and what is never a kick (a message
without the header on a control key, the header on a group, a client
subscribing to a control key).

Real clients (Python websockets), short settings: each test takes a few
seconds. Times are wall-clock: the token's exp is in Unix seconds.
"""

import asyncio
import json
import os
import subprocess
import time
import urllib.parse

import pika
import pika.exceptions
import pytest
import websockets

from conftest import (CONTROL_EXCHANGE, GROUPS_EXCHANGE, HISTORY_OFF, SAN_ENV, binary, connect,
                      jwt_for, recv_json, run, sanitizer_report, send_request, subscribe,
                      wait_until)
from test_metrics import Scrape

GROUP = "jobs-status_changed"
LEEWAY = 1      # --auth.leeway, seconds
WINDOW = 2      # --gateway.refresh_window, seconds
# The gateway's 100 ms tick, a close handshake, a busy (sanitizer) machine.
SLACK = 1.2


def chanctl(*args, timeout=60):
    """Runs chanctl; returns (exit status, stdout, stderr)."""
    proc = subprocess.run([binary("chanctl"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **SAN_ENV})
    report = sanitizer_report(proc.stderr)
    if report:
        pytest.fail(f"chanctl: sanitizer report:\n{report}")
    return proc.returncode, proc.stdout, proc.stderr


def expiring_stack(cluster, *gw_extra):
    cluster.worker(f"--auth.leeway={LEEWAY}s")
    return cluster.gateway(f"--gateway.refresh_window={WINDOW}s", *gw_extra)


async def open_with(gw, token, user):
    ws = await connect(gw.url("/websocket/", token))
    accept = await recv_json(ws, what="the accept message")
    assert accept == {"accept": True, "user": user}, accept  # byte for byte as before
    return ws


async def closed_with(ws, timeout):
    """Waits for the gateway's close; returns (code, when), failing on a
    message or no close in time."""
    try:
        msg = await asyncio.wait_for(ws.recv(), timeout)
        pytest.fail(f"expected a close, got {msg!r}")
    except websockets.ConnectionClosed as e:
        return e.code, time.time()
    except asyncio.TimeoutError:
        pytest.fail(f"no close within {timeout}s")


def user_bound(cluster, user, gateways):
    """Waits until `gateways` gateways have bound every user's control key
    (wsgw!user.*, one binding per gateway process, queued at broker-up; not
    one per user since issue 17): a kick sent before would not reach that
    gateway. `user` is kept for the callers' sake: no binding names it."""
    del user
    key = "wsgw!user.*"
    wait_until(lambda: len(cluster.broker.group_bindings(cluster.vhost, key)) == gateways, 10,
               f"{gateways} binding(s) of {key}", interval=0.1)


async def until(t):
    await asyncio.sleep(max(0.0, t - time.time()))


# ---- expiry and refresh ---------------------------------------------------------

def test_expired_token_is_closed_4401_after_leeway_and_window_events_flow_meanwhile(cluster):
    gw = expiring_stack(cluster)
    em = cluster.pika_emitter()

    async def body():
        exp = int(time.time()) + 2
        ws = await open_with(gw, jwt_for(7, exp=exp), 7)
        _, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == [GROUP]
        # Inside the window (after exp + leeway): events still arrive.
        await until(exp + LEEWAY + 0.4)
        em.emit(GROUP, '{"n": 1}')
        assert await recv_json(ws, what="an event inside the window") == {"n": 1}
        code, when = await closed_with(ws, WINDOW + SLACK + 2)
        assert code == 4401
        assert ws.close_reason == "credential expired"
        end = exp + LEEWAY + WINDOW
        assert end - 0.5 <= when <= end + SLACK, (when - end)

    try:
        run(body())
    finally:
        em.close()
    assert Scrape(gw.metrics_port)("wsgw_gateway_expiry_closes_total") == 1
    assert Scrape(gw.metrics_port)("wsgw_gateway_connections_closed_total",
                                   reason="expired") == 1


def test_refresh_in_the_window_or_before_expiry_keeps_the_connection(cluster):
    gw = expiring_stack(cluster)
    em = cluster.pika_emitter()

    async def body():
        exp = int(time.time()) + 2
        late = await open_with(gw, jwt_for(7, exp=exp), 7)    # refreshes in the window
        early = await open_with(gw, jwt_for(7, exp=exp), 7)   # refreshes before expiry
        for ws in (late, early):
            await subscribe(ws, {"jobs": ["status_changed"]})
        new_exp = int(time.time()) + 60
        await early.send(json.dumps({"token": jwt_for(7, exp=new_exp)}))
        assert await recv_json(early, what="the refresh answer") == \
            {"refreshed": True, "expires": new_exp + LEEWAY}
        await until(exp + LEEWAY + 0.5)
        await late.send(json.dumps({"token": jwt_for(7, exp=new_exp)}))
        assert await recv_json(late, what="the refresh answer") == \
            {"refreshed": True, "expires": new_exp + LEEWAY}
        # Past where the first token's access would have ended: both open,
        # both receiving.
        await until(exp + LEEWAY + WINDOW + SLACK)
        em.emit(GROUP, '{"n": 2}')
        for ws in (late, early):
            assert await recv_json(ws, what="an event after the old deadline") == {"n": 2}
            _, reply = await subscribe(ws, {"jobs": ["status_changed"]})
            assert reply["groups_current"] == [GROUP]
            await ws.close()

    try:
        run(body())
    finally:
        em.close()
    assert Scrape(gw.metrics_port)("wsgw_gateway_refreshes_total") == 2
    assert Scrape(gw.metrics_port)("wsgw_gateway_expiry_closes_total") == 0
    w = Scrape(cluster.daemons[0].metrics_port)  # the worker
    assert w("wsgw_worker_refreshes_total", result="accepted") == 2


def test_refresh_with_another_users_or_an_invalid_token_is_refused_and_does_not_extend(cluster):
    gw = expiring_stack(cluster)

    async def body():
        exp = int(time.time()) + 2
        ws = await open_with(gw, jwt_for(7, exp=exp), 7)
        later = int(time.time()) + 60
        await ws.send(json.dumps({"token": jwt_for(8, exp=later)}))
        assert await recv_json(ws) == {"error": "token refused: another user"}
        await ws.send(json.dumps({"token": jwt_for(7, exp=later, secret="x" * 40)}))
        msg = await recv_json(ws)
        assert msg["error"].startswith("token refused: "), msg
        await ws.send(json.dumps({"token": 42}))
        assert await recv_json(ws) == {"error": "token refused: token must be a string"}
        await ws.send(json.dumps({"token": jwt_for(7, exp=later), "groups": {}}))
        assert (await recv_json(ws))["error"].startswith("token refused: a refresh takes only")
        # An old client's message is answered as before.
        await ws.send(json.dumps({"groups": {"jobs": ["status_changed"]}, "tokn": 1}))
        assert await recv_json(ws) == {"error": "unknown key: tokn"}
        code, when = await closed_with(ws, LEEWAY + WINDOW + SLACK + 3)
        assert code == 4401
        assert when <= exp + LEEWAY + WINDOW + SLACK

    run(body())
    assert Scrape(gw.metrics_port)("wsgw_gateway_refreshes_total") == 0
    w = Scrape(cluster.daemons[0].metrics_port)  # the worker
    assert w("wsgw_worker_refreshes_total", result="refused") == 4
    assert w("wsgw_worker_refreshes_total", result="accepted") == 0


# ---- kicks ------------------------------------------------------------------------

@pytest.mark.parametrize("history", ["on", "off"])
def test_kick_by_user_closes_every_connection_of_the_user_on_every_gateway(cluster, history):
    """With the history on or off alike: control keys are bound on
    websocket.control, so "nobody" (3) is told either way."""
    cluster.worker()
    off = (HISTORY_OFF,) if history == "off" else ()
    a = cluster.gateway("--gateway.group_linger=0", *off)
    b = cluster.gateway("--gateway.group_linger=0", *off)
    em = cluster.pika_emitter()
    url = cluster.amqp_url

    async def body():
        a7 = await open_with(a, jwt_for(7), 7)
        b7 = await open_with(b, jwt_for(7), 7)
        a8 = await open_with(a, jwt_for(8), 8)
        for ws in (a7, b7, a8):
            await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(user_bound, cluster, "7", 2)
        rc, out, err = await asyncio.to_thread(chanctl, "kick", "--user", "7",
                                               f"--amqp.url={url}")
        assert rc == 0, (out, err)
        assert out == "kicked user 7 (its gateways close every connection of it with 4403)\n"
        for ws in (a7, b7):
            code, _ = await closed_with(ws, 5)
            assert code == 4403 and ws.close_reason == "access revoked"
        em.emit(GROUP, '{"n": 3}')
        assert await recv_json(a8, what="user 8's event after the kick") == {"n": 3}
        # Nobody of user 7 left anywhere (no lingering): chanctl says so, 3.
        def nobody():
            rc, out, err = chanctl("kick", "--user", "7", f"--amqp.url={url}")
            return rc == 3 and err == ("chanctl: kick user 7: no gateway holds a "
                                       "connection of that user\n")
        await asyncio.to_thread(wait_until, nobody, 10, "user 7's bindings to go")
        await a8.close()

    try:
        run(body())
    finally:
        em.close()
    for gw in (a, b):
        m = Scrape(gw.metrics_port)
        assert m("wsgw_gateway_kick_closes_total") == 1
        assert m("wsgw_gateway_connections_closed_total", reason="revoked") == 1


def test_kick_by_connection_closes_that_one_only(cluster):
    cluster.worker()
    gw = cluster.gateway()
    url = cluster.amqp_url

    async def body():
        first = await open_with(gw, jwt_for(7), 7)
        channel = wait_until(lambda: [l for l in gw.log().splitlines() if "conn_open" in l],
                             5, "the conn_open record")[-1].split("channel=")[1].split()[0]
        assert channel.startswith("websocket.send.amq.gen-") and "!" in channel
        second = await open_with(gw, jwt_for(7), 7)
        rc, out, err = await asyncio.to_thread(chanctl, "kick", "--conn", channel,
                                               f"--amqp.url={url}")
        assert rc == 0, (out, err)
        assert out == f"kicked connection {channel} (its gateways close it with 4403)\n"
        code, _ = await closed_with(first, 5)
        assert code == 4403
        _, reply = await subscribe(second, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == [GROUP]
        # Without the prefix: the same; a connection that is not there (its
        # gateway answers nothing) or a gateway that is gone: 3; nonsense: 2.
        queue = channel[len("websocket.send."):].split("!")[0]
        rc, _, err = await asyncio.to_thread(chanctl, "kick", "--conn", f"{queue}!999999",
                                             f"--amqp.url={url}")
        assert rc == 3 and "it is closed, or its gateway is gone" in err, err
        rc, _, err = await asyncio.to_thread(chanctl, "kick", "--conn", "amq.gen-gone!1",
                                             f"--amqp.url={url}")
        assert rc == 3 and "its gateway is gone" in err, err
        rc, _, err = await asyncio.to_thread(chanctl, "kick", "--conn", "17",
                                             f"--amqp.url={url}")
        assert rc == 2 and "--conn: expected websocket.send.QUEUE!ID" in err, err
        rc, _, err = await asyncio.to_thread(chanctl, "kick", f"--amqp.url={url}")
        assert rc == 2 and err.startswith("usage: chanctl kick"), err
        await second.close()

    run(body())


def test_kick_on_a_vhost_no_gateway_ever_ran_names_the_missing_exchange(broker):
    """Kicks go to websocket.control, which gateways (and setup.sh) declare:
    before any of them ran (a vhost of its own: the module's has had
    gateways), chanctl says that exchange is missing (1), no crash, no false
    "kicked"."""
    name = f"t_kick_bare_{os.getpid()}"
    broker.ctl("add_vhost", name)
    try:
        broker.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        rc, out, err = chanctl("kick", "--user", "7", f"--amqp.url={broker.url(name)}")
        assert rc == 1 and out == "", (out, err)
        assert err.startswith("chanctl: kick user 7: ") and "websocket.control" in err, err
    finally:
        broker.ctl("delete_vhost", name)


def emitter_user(cluster, broker):
    """A broker user with the emitter's permissions (deploy/rabbitmq/setup.sh):
    write on websocket.groups and websocket.control only."""
    name, pw = f"emitter-{cluster.vhost}", "emitter-pw"
    broker.ctl("add_user", name, pw)
    broker.ctl("set_permissions", "-p", cluster.vhost, name, "^$",
               "^websocket\\.(groups|control)$", "^$")
    parts = urllib.parse.urlsplit(cluster.amqp_url)
    return parts._replace(netloc=f"{name}:{pw}@{parts.hostname}:{parts.port}").geturl()


def test_the_application_kicks_with_the_emitters_permissions(cluster, broker):
    cluster.worker()
    gw = cluster.gateway()
    url = emitter_user(cluster, broker)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    kick = pika.BasicProperties(headers={"x-wsgw-control": "kick"})

    def publish(key, body=b"", props=None, exchange=GROUPS_EXCHANGE):
        ch.basic_publish(exchange=exchange, routing_key=key, body=body,
                         properties=props or pika.BasicProperties(), mandatory=True)

    async def body():
        a7 = await open_with(gw, jwt_for(7), 7)
        b7 = await open_with(gw, jwt_for(7), 7)
        c8 = await open_with(gw, jwt_for(8), 8)
        for ws in (a7, b7, c8):
            await subscribe(ws, {"jobs": ["status_changed"]})
        await asyncio.to_thread(user_bound, cluster, "7", 1)
        # Never a kick: no header on the user's key (and never delivered);
        # the header on a group (not delivered either); a client asking for
        # the key.
        publish("wsgw!user.7", b'{"n": 0}')
        publish(GROUP, b'{"n": -1}', kick)
        msg = await send_request(c8, json.dumps({"groups": {"wsgw!user": ["7"]}}))
        assert msg == {"error": "invalid group name"}, msg
        publish(GROUP, b'{"n": 4}')
        for ws in (a7, b7, c8):  # the first event each gets: nothing before it
            assert await recv_json(ws, what="the plain event") == {"n": 4}
        # By connection: the reply channel as the body, to the gateway's key,
        # the old way (on websocket.groups: it still arrives, once).
        channel = [l for l in gw.log().splitlines() if "conn_open" in l and "user=7" in l]
        channel = channel[-2].split("channel=")[1].split()[0]  # a7's
        queue = channel[len("websocket.send."):].split("!")[0]
        publish(f"wsgw!gw.{queue}", channel.encode(), kick)
        code, _ = await closed_with(a7, 5)
        assert code == 4403
        # By user, the documented way: websocket.control with a reply_to
        # (direct reply-to, which the emitter's permissions allow): a gateway
        # that closed connections answers; every gateway hears every user's
        # kick, so silence, not a return, tells "nobody".
        answers = []
        ch.basic_consume("amq.rabbitmq.reply-to",
                         lambda _c, _m, _p, b: answers.append(json.loads(b)), auto_ack=True)
        asking = pika.BasicProperties(headers={"x-wsgw-control": "kick"},
                                      reply_to="amq.rabbitmq.reply-to")
        publish("wsgw!user.7", b"", asking, exchange=CONTROL_EXCHANGE)
        code, _ = await closed_with(b7, 5)
        assert code == 4403
        deadline = time.monotonic() + 5
        while not answers and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        assert answers == [{"kicked": 1, "key": "wsgw!user.7"}], answers
        publish("wsgw!user.999", b"", asking, exchange=CONTROL_EXCHANGE)  # routed
        conn.process_data_events(time_limit=1.5)
        assert len(answers) == 1, answers  # nobody held user 999: no answer
        publish("wsgw!user.999", b"", kick)  # routed: to the stream
        publish(GROUP, b'{"n": 5}')
        assert await recv_json(c8, what="user 8's event") == {"n": 5}
        await c8.close()

    try:
        run(body())
    finally:
        conn.close()
    m = Scrape(gw.metrics_port)
    assert m("wsgw_gateway_kick_closes_total") == 2
    # each once, user 999's two too (every gateway hears every user's kick)
    assert m("wsgw_gateway_kicks_total") == 4


# ---- the application's credential (issue 13: a refresh the connect hook decides) ----

def test_application_session_expires_and_an_api_token_refreshes_it(cluster, django_app):
    """Admitted by the application's session cookie, whose session the
    application says ends in 3 s: the connection is closed 4401 at that end
    plus the window unless it refreshes. A refresh with an API token of the
    same user (Bearer, asked of the connect hook) keeps it open and keeps
    its events; another user's token, or one the application does not know,
    is refused and moves nothing."""
    from djangoapp import GATEWAY_ARGS
    cluster.worker(*django_app.worker_args())
    gw = cluster.gateway(*GATEWAY_ARGS, f"--gateway.refresh_window={WINDOW}s")
    alice = django_app.login("alice")
    mine, bobs = django_app.create_token("alice"), django_app.create_token("bob")

    async def go():
        ends = django_app.expire_session(alice, 3)
        kept = await connect(gw.url(), django_app.ws_headers(alice, gw))
        dropped = await connect(gw.url(), django_app.ws_headers(alice, gw))
        for ws in (kept, dropped):
            assert (await recv_json(ws))["user"] == 7
            assert (await subscribe(ws, {"jobs": ["status_changed"]},
                                    xrftoken=alice["csrftoken"]))[0] == []
        for token, why in ((bobs, "another user"), ("not-a-key", "refused by the application")):
            assert await send_request(kept, json.dumps({"token": token})) == \
                {"error": f"token refused: {why}"}
        reply = await send_request(kept, json.dumps({"token": mine}))
        assert reply["refreshed"] is True and reply["expires"] > ends + WINDOW, reply
        # The unrefreshed one closes at ends + window; the refreshed one stays.
        await asyncio.sleep(max(0.0, ends + WINDOW + SLACK - time.time()))
        try:
            await asyncio.wait_for(dropped.recv(), 3)
        except websockets.ConnectionClosed:
            pass
        assert dropped.close_code == 4401, dropped.close_code
        await asyncio.to_thread(cluster.emit, GROUP, '{"after": true}')
        assert await recv_json(kept) == {"after": True}
        await kept.close()
    run(go(), timeout=60)


def test_a_kick_answers_only_at_direct_reply_to(cluster):
    """A kick whose reply_to names an ordinary queue (the kicker's own, here;
    a work queue would be worse) still kicks, but no gateway publishes there;
    chanctl (direct reply-to) still tells a user held (0: two connections
    closed, one answer) from one nobody holds (3)."""
    cluster.worker()
    gw = cluster.gateway()
    conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_url))
    ch = conn.channel()
    mine = ch.queue_declare("", exclusive=True).method.queue

    async def body():
        a = await open_with(gw, jwt_for(7), 7)
        await asyncio.to_thread(user_bound, cluster, "7", 1)
        ch.basic_publish(CONTROL_EXCHANGE, "wsgw!user.7", b"", pika.BasicProperties(
            headers={"x-wsgw-control": "kick"}, reply_to=mine))
        code, _ = await closed_with(a, 5)
        assert code == 4403
        await asyncio.sleep(0.5)
        method, _, _ = ch.basic_get(mine, auto_ack=True)
        assert method is None, "a gateway published into a queue the kicker named"
        b1 = await open_with(gw, jwt_for(8), 8)
        b2 = await open_with(gw, jwt_for(8), 8)
        rc, out, err = await asyncio.to_thread(chanctl, "kick", "--user", "8",
                                               f"--amqp.url={cluster.amqp_url}")
        assert rc == 0, (out, err)
        for ws in (b1, b2):
            assert (await closed_with(ws, 5))[0] == 4403
        rc, _, err = await asyncio.to_thread(chanctl, "kick", "--user", "9",
                                             f"--amqp.url={cluster.amqp_url}")
        assert rc == 3 and "no gateway holds a connection of that user" in err, err

    try:
        run(body())
    finally:
        conn.close()
