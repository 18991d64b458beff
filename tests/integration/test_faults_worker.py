"""Worker faults (issue 3, items 2-4): a worker killed mid-message loses
nothing, a redelivered message is harmless, a poison message ends in
websocket.dead after max_deliveries, replies to a vanished gateway are
dropped quietly, SIGTERM finishes and exits 0, SIGHUP reloads secrets
without dropping anyone."""

import asyncio
import json
import signal
import time
import urllib.request

from conftest import (free_port, handshake_status, jwt_for, open_client, recv_json, run,
                      subscribe)
from faults import (Amqp, complaints, queue_stats, receive_message, records,
                    start_daemon, wait_queue, wait_record, worker_argv,
                    write_secret)

SUB = json.dumps({"groups": {"jobs": ["status_changed"]}})


def test_redelivered_message_is_counted_and_handled_once_more(cluster):
    """A worker crashed holding the message: the next one puts a copy with
    x-wsgw-deliveries=2 back and handles it: one reply, no loss."""
    first = cluster.worker("--worker.max_deliveries=3")  # declares everything
    first.kill(signal.SIGTERM)
    amqp = Amqp(cluster)
    try:
        rq = amqp.reply_queue()
        amqp.publish("websocket.receive", receive_message(rq, 1, 1, SUB))
        Amqp(cluster).take_and_crash("websocket.receive")
        wait_queue(cluster, "websocket.receive", ready=1, unacked=0)
        wk = cluster.worker("--worker.max_deliveries=3")
        rec = wait_record(wk, "message_redelivered")[0]
        assert (rec["queue"], rec["deliveries"]) == ("websocket.receive", "2"), rec
        got = amqp.get(rq)
        assert got, "no reply to the redelivered message"
        reply = json.loads(got[1])
        assert reply["order"] == 1 and reply["groups"] == ["jobs-status_changed"], reply
        assert amqp.get(rq, timeout=1) is None, "the message was handled twice"
        wait_queue(cluster, "websocket.receive", ready=0, unacked=0)
        assert queue_stats(cluster)["websocket.dead"] == (0, 0)
    finally:
        amqp.close()


def test_poison_message_goes_to_websocket_dead_after_max_deliveries(cluster):
    """A copy already handled max_deliveries times comes back once more: it
    is moved to websocket.dead with its origin, logged and counted, and
    nobody handles it again."""
    first = cluster.worker("--worker.max_deliveries=3")
    first.kill(signal.SIGTERM)
    amqp = Amqp(cluster)
    try:
        rq = amqp.reply_queue()
        body = receive_message(rq, 9, 1, SUB)
        # The third copy, as workers put it back; this worker dies on it too.
        amqp.publish("websocket.receive", body, headers={"x-wsgw-deliveries": 3})
        Amqp(cluster).take_and_crash("websocket.receive")
        port = free_port()
        wk = cluster.worker("--worker.max_deliveries=3",
                            f"--worker.metrics_listen=127.0.0.1:{port}")
        rec = wait_record(wk, "message_dead_lettered")[0]
        assert rec["level"] == "error", rec
        assert (rec["queue"], rec["deliveries"], rec["stored"],
                rec["dead_lettered_total"]) == ("websocket.receive", "3", "1", "1"), rec
        wait_queue(cluster, "websocket.dead", ready=1)
        props, dead = amqp.get("websocket.dead")
        assert dead.decode() == body, "the dead letter is not the message"
        assert props.headers["x-wsgw-deliveries"] == 4, props.headers
        assert props.headers["x-wsgw-queue"] == "websocket.receive", props.headers
        assert amqp.get(rq, timeout=1) is None, "the poison message was handled"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert "\nwsgw_worker_dead_lettered_total 1\n" in metrics.read().decode()
        wait_queue(cluster, "websocket.receive", ready=0, unacked=0)
        # The worker goes on: a fresh message is answered.
        amqp.publish("websocket.receive", receive_message(rq, 10, 1, SUB))
        assert amqp.get(rq), "the worker stopped answering after a dead letter"
    finally:
        amqp.close()


def test_worker_killed_holding_a_message_loses_nothing(cluster):
    """SIGSTOP a worker so a subscription request sits unacked in it, then
    SIGKILL it: the other worker gets the message and the client its reply."""
    w1 = cluster.worker()
    gw = cluster.gateway()

    async def main():
        ws = await open_client(gw)
        w1.proc.send_signal(signal.SIGSTOP)
        await ws.send(SUB)
        await asyncio.to_thread(wait_queue, cluster, "websocket.receive", 0, 1)
        w2 = await asyncio.to_thread(cluster.worker)
        w1.kill(signal.SIGKILL)
        t0 = time.monotonic()
        reply = await recv_json(ws, timeout=15, what="the reply after the kill")
        print(f"reply {time.monotonic() - t0:.3f}s after SIGKILL")
        assert reply["groups_current"] == ["jobs-status_changed"], reply
        assert records(w2, "message_redelivered"), "w2 did not see a redelivery"
        await ws.close()
    run(main())


def test_duplicate_message_is_harmless(cluster):
    """The same websocket.receive handled twice (what a crash between the
    reply and the ack produces): the gateway applies the first reply, drops
    the second by its order, and the client sees one reply."""
    cluster.worker()
    gw = cluster.gateway()
    wk = cluster.daemons[0]

    async def main():
        ws = await open_client(gw)
        wk.kill(signal.SIGTERM)  # now the test plays the worker's queue
        await ws.send(SUB)
        amqp = Amqp(cluster)
        try:
            _, body = await asyncio.to_thread(amqp.get, "websocket.receive")
            amqp.publish("websocket.receive", body)
            amqp.publish("websocket.receive", body)
        finally:
            amqp.close()
        await asyncio.to_thread(cluster.worker)
        reply = await recv_json(ws, what="the reply to the duplicated request")
        assert reply["groups_current"] == ["jobs-status_changed"], reply
        errors, again = await subscribe(ws, {"jobs": ["status_changed"]})
        assert errors == [] and again["groups_joined"] == [], again
        await ws.close()
    run(main())


def test_replies_to_a_vanished_gateway_are_dropped_quietly(cluster):
    """1,000 messages whose reply queue does not exist (its gateway
    crashed): the worker answers into the void without a warning and keeps
    serving."""
    wk = cluster.worker()
    amqp = Amqp(cluster)
    try:
        for i in range(1000):
            amqp.publish("websocket.receive",
                         receive_message("amq.gen-gone-gateway", i + 1, 1, SUB))
        wait_queue(cluster, "websocket.receive", ready=0, unacked=0, timeout=60)
        rq = amqp.reply_queue()
        amqp.publish("websocket.receive", receive_message(rq, 1, 1, SUB))
        assert amqp.get(rq), "the worker stopped answering"
    finally:
        amqp.close()
    assert wk.alive()
    # A disconnect the previous test's client caused can still be unacked
    # on the module's vhost when its worker stops: this worker then gets it
    # again at start (seen once under ASan). Not what this test is about.
    noise = [r for r in complaints(wk) if not (r.get("event") == "message_redelivered" and
                                               r.get("queue") != "websocket.receive")]
    assert noise == [], noise[:5]


def test_worker_sigterm_loses_nothing_and_exits_0(cluster):
    """SIGTERM a worker while 50 clients subscribe in a loop: it exits 0
    within seconds, every request is answered (by it or the other worker)."""
    w1 = cluster.worker()
    cluster.worker()
    gw = cluster.gateway()

    async def main():
        clients = [await open_client(gw, user=100 + i) for i in range(50)]
        stop_at = asyncio.Event()

        async def client(i, ws):
            for r in range(6):
                if r == 2 and i == 0:
                    stop_at.set()
                errors, reply = await subscribe(ws, {"jobs": [f"t{i}_{r}"]}, timeout=20)
                assert reply["groups_current"] == [f"jobs-t{i}_{r}"], reply

        async def terminate():
            await stop_at.wait()
            t0 = time.monotonic()
            w1.proc.send_signal(signal.SIGTERM)
            rc = await asyncio.to_thread(w1.proc.wait, 10)
            print(f"workerd exited {rc} {time.monotonic() - t0:.3f}s after SIGTERM")
            assert rc == 0
        await asyncio.gather(terminate(), *(client(i, ws) for i, ws in enumerate(clients)))
        await asyncio.gather(*(ws.close() for ws in clients))
    run(main())
    w1.expected_exit = True
    assert records(w1, "worker_stop"), w1.tail()


def test_sighup_reloads_secret_without_dropping_anyone(cluster, tmp_path):
    """The secret file is rotated and workerd gets SIGHUP: the old token is
    refused from then on, the new one accepted, a client connected before
    keeps its connection and is still served. An invalid config is refused
    with a log line and changes nothing."""
    old, new = "old-secret-0123456789abcdef012345", "new-secret-0123456789abcdef012345"
    secret_file = tmp_path / "secret"
    write_secret(secret_file, old)
    conf = tmp_path / "workerd.ini"
    conf.write_text(f"[auth]\nsecret_file = {secret_file}\n[groups]\njobs = open\n")
    wk = start_daemon(cluster, "workerd", worker_argv(cluster, f"--config={conf}"))
    cluster.wait_workers(1, wk)
    gw = cluster.gateway(ready=False)
    cluster.wait_gateway(gw)

    async def main():
        ws = await open_client(gw, token=jwt_for(7, secret=old))
        write_secret(secret_file, new)
        wk.proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(wait_record, wk, "reload")
        assert await handshake_status(gw.url(token=jwt_for(7, secret=old))) == 403
        ws2 = await open_client(gw, token=jwt_for(8, secret=new), user=8)
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == ["jobs-status_changed"], "old client not served"
        # A broken file: refused, the running settings stay.
        conf.write_text("[auth]\ntoken_file = /nonexistent/tokens\n")
        wk.proc.send_signal(signal.SIGHUP)
        rec = (await asyncio.to_thread(wait_record, wk, "reload_failed"))[0]
        assert rec["kept"] == "running_settings", rec
        ws3 = await open_client(gw, token=jwt_for(9, secret=new), user=9)
        for c in (ws, ws2, ws3):
            await c.close()
    run(main())
    assert wk.alive()
