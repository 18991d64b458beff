"""Batches of channel messages and replies (issue 17, docs/PROTOCOL.md,
"Batches"): a burst of clients goes to the workers in batches and comes back
in batches, every client answered; amqp_batch=1 sends the old form only; a
worker answers a batch with one batch, drops a malformed one whole, splits a
redelivered one so that each message is counted (and dead-lettered) alone;
a gateway drops a malformed reply batch and goes on."""

import asyncio
import json
import re
import signal
import urllib.request

import pika

from conftest import open_client, recv_json, run, subscribe, wait_until
from faults import Amqp, receive_message, records, wait_record

SUB = json.dumps({"groups": {"jobs": ["status_changed"]}})
BATCH = "x-wsgw-batch"


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, f"{name} is not in the metrics"
    return int(m.group(1))


def publish_batch(amqp, queue, items, count=None):
    body = "".join(i + "\n" for i in items).encode()
    amqp.ch.basic_publish("", queue, body, pika.BasicProperties(
        content_type="application/x-ndjson", delivery_mode=1,
        headers={BATCH: len(items) if count is None else count}))


async def burst(gw, n, then=None):
    """n clients connect and subscribe at once; every one is answered; then
    then() runs (before any client leaves: a disconnect would be counted
    by the gateway before the worker reads it)."""
    async def one(i):
        ws = await open_client(gw, user=1000 + i)
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert not errors, errors
        return ws, reply
    done = await asyncio.gather(*(one(i) for i in range(n)))
    for ws, reply in done:
        assert reply["groups_current"] == ["jobs-status_changed"], reply
    if then:
        await asyncio.to_thread(then)
    await asyncio.gather(*(ws.close() for ws, _ in done))


def test_a_burst_of_clients_goes_through_in_batches(stack):
    """300 clients at once: each is accepted and subscribed; the gateway
    published fewer AMQP messages than channel messages, the worker read
    the batches and answered them in batches, and the gateway read those."""
    wk = next(d for d in stack.daemons if d.name.startswith("workerd"))
    run(burst(stack.gw, 300, lambda: check(stack.gw.metrics_port, wk.metrics_port)))
    assert not records(wk, "message_dropped") and not records(stack.gw, "reply_batch_dropped")


def check(gp, wp):
    out, items = (metric(gp, "wsgw_gateway_amqp_batches_published_total"),
                  metric(gp, "wsgw_gateway_amqp_batched_messages_total"))
    print(f"gateway: {items} messages in {out} batches")
    assert out > 0 and items >= 2 * out, (out, items)
    assert metric(wp, "wsgw_worker_batches_total") == out
    assert metric(wp, "wsgw_worker_batched_messages_total") == items
    rb = metric(wp, "wsgw_worker_reply_batches_total")
    assert rb > 0 and metric(gp, "wsgw_gateway_amqp_reply_batches_total") == rb
    assert (metric(gp, "wsgw_gateway_amqp_batched_replies_total") ==
            metric(wp, "wsgw_worker_batched_replies_total"))


def test_amqp_batch_1_sends_every_message_alone(cluster):
    """amqp_batch = 1: the form of before batches, which a worker of before
    them reads: no batch either way."""
    wk = cluster.worker()
    gw = cluster.gateway("--gateway.amqp_batch=1")
    run(burst(gw, 200))
    assert metric(gw.metrics_port, "wsgw_gateway_amqp_batches_published_total") == 0
    assert metric(wk.metrics_port, "wsgw_worker_batches_total") == 0
    assert metric(wk.metrics_port, "wsgw_worker_reply_batches_total") == 0
    assert metric(wk.metrics_port, r'wsgw_worker_messages_total\{kind="receive"\}') >= 200


def test_worker_answers_a_batch_with_one_batch(cluster):
    """Four messages in one batch, one of them undecodable: three replies,
    in one AMQP message, in order; the bad one is dropped and logged."""
    wk = cluster.worker()
    amqp = Amqp(cluster)
    try:
        rq = amqp.reply_queue()
        items = [receive_message(rq, 1, 1, SUB), receive_message(rq, 2, 1, SUB), "{}",
                 receive_message(rq, 3, 1, SUB)]
        publish_batch(amqp, "websocket.receive", items)
        props, body = amqp.get(rq)
        assert props.headers[BATCH] == 3, props.headers
        assert props.content_type == "application/x-ndjson"
        lines = body.decode().split("\n")
        assert lines[-1] == "" and len(lines) == 4, body
        replies = [json.loads(x) for x in lines[:3]]
        assert [r["reply_channel"].rsplit("!", 1)[1] for r in replies] == ["1", "2", "3"]
        assert all(json.loads(r["text"][0])["groups_current"] == ["jobs-status_changed"]
                   for r in replies), replies
        assert amqp.get(rq, timeout=0.5) is None, "more than one reply message"
        assert len(records(wk, "message_dropped")) == 1
    finally:
        amqp.close()


def test_malformed_batch_is_dropped_whole(cluster):
    """A header that does not match the body, or is no number: nothing of
    the batch is handled; the worker goes on with the next message."""
    wk = cluster.worker()
    amqp = Amqp(cluster)
    try:
        rq = amqp.reply_queue()
        two = [receive_message(rq, 1, 1, SUB), receive_message(rq, 2, 1, SUB)]
        publish_batch(amqp, "websocket.receive", two, count=3)
        publish_batch(amqp, "websocket.receive", two, count="two")
        amqp.ch.basic_publish("", "websocket.receive", (two[0] + "\n" + two[1]).encode(),
                              pika.BasicProperties(headers={BATCH: 2}))  # no last newline
        wait_record(wk, "message_dropped", count=3)
        reasons = [r["reason"] for r in records(wk, "message_dropped")]
        assert all(r.startswith("batch: ") for r in reasons), reasons
        assert amqp.get(rq, timeout=1) is None, "a malformed batch was half handled"
        amqp.publish("websocket.receive", receive_message(rq, 5, 1, SUB))
        assert amqp.get(rq), "the worker stopped answering after a malformed batch"
    finally:
        amqp.close()


def test_redelivered_batch_is_split(cluster):
    """A worker died holding a batch: the next one puts each message back
    alone with its count (x-wsgw-deliveries=2) and answers each once; a
    poison message among them then goes to websocket.dead alone."""
    first = cluster.worker("--worker.max_deliveries=2")
    first.kill(signal.SIGTERM)
    amqp = Amqp(cluster)
    try:
        rq = amqp.reply_queue()
        publish_batch(amqp, "websocket.receive",
                      [receive_message(rq, 1, 1, SUB), receive_message(rq, 2, 1, SUB)])
        Amqp(cluster).take_and_crash("websocket.receive")
        wk = cluster.worker("--worker.max_deliveries=2")
        recs = wait_record(wk, "message_redelivered", count=2)
        assert [r["deliveries"] for r in recs] == ["2", "2"], recs
        got = [amqp.get(rq) for _ in range(2)]
        assert all(g is not None for g in got), got
        for props, body in got:
            assert not (props.headers or {}).get(BATCH), "a split copy came back as a batch"
        ids = sorted(json.loads(body)["reply_channel"].rsplit("!", 1)[1] for _, body in got)
        assert ids == ["1", "2"]
        assert amqp.get(rq, timeout=0.5) is None, "a message was answered twice"
    finally:
        amqp.close()


def test_gateway_drops_a_malformed_reply_batch(stack):
    """A reply batch whose header does not match its body: dropped whole and
    logged; the gateway goes on answering handshakes."""
    rows = stack.broker.table("list_queues", "-p", stack.vhost, "name", "exclusive")
    (queue,) = [n for n, excl in rows if n.startswith("amq.gen-") and excl == "true"]
    amqp = Amqp(stack)
    try:
        publish_batch(amqp, queue, ['{"reply_channel": "x"}'], count=2)
        rec = wait_record(stack.gw, "reply_batch_dropped")[0]
        assert "1 items, header says 2" in rec["reason"], rec
    finally:
        amqp.close()

    async def main():
        ws = await open_client(stack.gw)
        assert (await subscribe(ws, {"jobs": ["status_changed"]}))[1]["groups_current"]
        await ws.close()
    run(main())
