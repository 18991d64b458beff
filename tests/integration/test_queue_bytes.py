"""The websocket.* queues are bounded in bytes as well as in messages
(issue 12, item 3): amqp.queue_max_bytes is declared as x-max-length-bytes
with reject-publish, so a backlog of large messages is refused by the
broker however few they are (a client message then gets close 1013).

Queues declared before the setting existed have no such argument and
RabbitMQ refuses a redeclare with other arguments (406): the daemon's error
says what to do, and amqp.queue_max_bytes=0 declares exactly as before.

Each test has its own vhost (a module of its own), so no other module's
queues clash with the arguments declared here."""

import asyncio
import signal
import time

import websockets

from conftest import open_client, run, wait_until
from faults import Amqp, queue_stats

QUEUES = ("websocket.connect", "websocket.receive", "websocket.disconnect")
BYTES = 4096
LIMIT = f"--amqp.queue_max_bytes={BYTES}"
SUB = '{"groups": {"jobs": ["status_changed"]}}'


def queue_arguments(cluster):
    """{queue: its arguments as rabbitmqctl prints them}."""
    rows = cluster.broker.table("list_queues", "-p", cluster.vhost, "name", "arguments")
    return {name: args for name, args in rows}


def delete_queues(cluster):
    for q in QUEUES:
        cluster.broker.ctl("delete_queue", "-p", cluster.vhost, q)


def test_queues_declare_max_length_bytes_and_refuse_past_it(cluster):
    wk = cluster.worker(LIMIT)
    gw = cluster.gateway(LIMIT)
    args = queue_arguments(cluster)
    for q in QUEUES:
        assert f"{{\"x-max-length-bytes\",{BYTES}}}" in args[q], (q, args[q])
        assert "reject-publish" in args[q], (q, args[q])

    def fill():
        """Three bodies of 2000 bytes: the third would pass 4096 bytes and
        is refused, though the queue holds 2 messages of 100000 allowed;
        so is anything more, the gateway's publish included."""
        amqp = Amqp(cluster)
        try:
            for _ in range(3):
                amqp.publish("websocket.receive", '{"filler": "%s"}' % ("x" * 1986))
        finally:
            amqp.close()
        wait_until(lambda: queue_stats(cluster)["websocket.receive"][0] >= 2, 10,
                   "websocket.receive to hold 2 messages")
        time.sleep(0.5)
        return queue_stats(cluster)["websocket.receive"][0]

    async def main():
        ws = await open_client(gw)
        wk.kill(signal.SIGTERM)
        held = await asyncio.to_thread(fill)
        assert held == 2, f"websocket.receive holds {held} messages of 2000 bytes"
        await ws.send(SUB)  # the gateway's publish is refused too: 1013
        try:
            msg = await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError(f"expected close 1013, got {msg!r}")
        except websockets.ConnectionClosed as e:
            assert e.code == 1013, e
    run(main())


def test_queues_from_before_the_setting_get_a_clear_error_or_keep_working(cluster):
    delete_queues(cluster)
    old = cluster.gateway("--amqp.queue_max_bytes=0")  # as an older build declares
    assert "x-max-length-bytes" not in queue_arguments(cluster)["websocket.connect"]
    new = cluster.worker(ready=False)  # the default: 128MiB
    hint = "need it set to 0, else recreate them"
    wait_until(lambda: "PRECONDITION_FAILED" in new.log() and hint in new.log(), 20,
               "the worker to log the refused redeclare with what to do")
    new.kill(signal.SIGTERM)
    cluster.worker("--amqp.queue_max_bytes=0")  # the documented way to keep the queues

    async def main():
        ws = await open_client(old)
        await ws.close()
    run(main())
