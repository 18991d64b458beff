"""What of a browser's request reaches the broker (issue 12, item 9): the
gateway forwards only the headers and cookies workers use, and a
websocket.connect message that ends in websocket.dead keeps no credential.
Both read what really sits in RabbitMQ, with pika."""

import json
import signal

from conftest import jwt_for
from faults import Amqp, wait_queue, wait_record
from rawws import RawConn, upgrade_request

JAR = "sessionid=SECRET-session; token={token}; csrftoken=abc; remember_me=SECRET-remember"


def test_workers_get_only_the_headers_and_cookies_they_use(cluster):
    """No worker runs, so the connect message waits in its queue and is read
    off the broker as a worker would get it."""
    first = cluster.worker()  # declares the queues
    first.kill(signal.SIGTERM)
    gw = cluster.gateway(ready=False)
    wait_record(gw, "broker_up")
    token = jwt_for(7)
    head, _ = upgrade_request("/websocket/", host="ui.example", headers={
        "Origin": "https://ui.example",
        "Cookie": JAR.format(token=token),
        "Authorization": f"Bearer {token}",
        "X-Api-Key": "SECRET-api-key",
        "User-Agent": "SECRET-agent",
    })
    amqp = Amqp(cluster)
    try:
        with RawConn(gw.port) as conn:
            conn.send(head)
            got = amqp.get("websocket.connect")
            assert got, "no websocket.connect message reached the broker"
        body = got[1].decode()
        assert "SECRET" not in body, body
        headers = dict(json.loads(body)["headers"])
        assert headers == {"host": "ui.example", "origin": "https://ui.example",
                           "cookie": f"token={token}; csrftoken=abc",
                           "authorization": f"Bearer {token}"}, headers
    finally:
        amqp.close()


def connect_message(reply_queue, token):
    """A websocket.connect as a gateway forwarding everything wrote it (an
    older gateway, or gateway.forward_headers widened)."""
    return json.dumps({
        "reply_channel": f"websocket.send.{reply_queue}!3", "path": "/websocket/",
        "query_string": f"token={token}&tab=SECRET-tab",
        "headers": [["host", "ui.example"], ["cookie", JAR.format(token=token)],
                    ["authorization", f"Bearer {token}"]],
        "client": ["203.0.113.9", 50123], "server": ["127.0.0.1", 8051], "order": 0})


def test_a_dead_lettered_connect_message_keeps_no_credentials(cluster):
    """A connect message that crashed workers max_deliveries times: its copy
    in websocket.dead keeps where it came from and what it asked, not the
    token, the cookies or the query's values."""
    first = cluster.worker("--worker.max_deliveries=3")
    first.kill(signal.SIGTERM)
    amqp = Amqp(cluster)
    try:
        token = jwt_for(7)
        body = connect_message(amqp.reply_queue(), token)
        amqp.publish("websocket.connect", body, headers={"x-wsgw-deliveries": 3})
        Amqp(cluster).take_and_crash("websocket.connect")
        wk = cluster.worker("--worker.max_deliveries=3")
        wait_record(wk, "message_dead_lettered")
        wait_queue(cluster, "websocket.dead", ready=1)
        props, dead = amqp.get("websocket.dead")
        text = dead.decode()
        assert token not in text and "SECRET" not in text, text
        assert props.headers["x-wsgw-queue"] == "websocket.connect", props.headers
        msg = json.loads(text)
        assert msg["query_string"] == "token=(redacted)&tab=(redacted)", msg
        assert dict(msg["headers"]) == {"host": "ui.example", "cookie": "(redacted)",
                                        "authorization": "(redacted)"}, msg
        assert msg["client"] == ["203.0.113.9", 50123] and msg["path"] == "/websocket/"
    finally:
        amqp.close()
