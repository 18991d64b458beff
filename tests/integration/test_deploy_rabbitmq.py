"""deploy/rabbitmq/setup.sh against the private broker: vhost, three users,
least-privilege permissions, the topology (websocket.groups a topic exchange,
the history stream bound to it with '#', websocket.control bound to it with
the control keys' patterns).

Shows: the daemons run with the users it creates (a client connects,
subscribes and gets an event that `chanctl emit` published as the emitter
user, which also works before any daemon ran: the script declares the
exchange); the emitter can publish to websocket.groups but cannot delete or
redeclare it (403 ACCESS_REFUSED: that would drop every gateway's
bindings; a passive declare, which chanctl emit does, is allowed), cannot consume
websocket.connect, cannot publish to the default exchange (so cannot inject
into websocket.* or a gateway's queue) nor to another exchange; the gateway
user cannot consume websocket.receive (nor connect/disconnect); the worker
user cannot bind or read a gateway's queue; a second run keeps the
passwords (the URLs still work) and is quiet about existing objects.
The history: the emitter cannot declare, delete, bind or consume the stream
nor publish a gateway's marker key; the gateway can consume it and publish
its marker but no event. Kicks: the emitter publishes them to
websocket.control (`chanctl kick` as the emitter user: 0 with the user
connected, 3 for a user nobody holds, history on), but no marker or group
name there; the gateway and the worker publish nothing there. An older
broker (websocket.groups direct) is
refused unchanged without --migrate and upgraded with it; a stream with
other arguments is refused unchanged.
"""

import asyncio
import json
import os
import subprocess
import time

import pika
import pika.exceptions
import pytest
import websockets

from conftest import (BROKER_SH, ROOT, SAN_ENV, binary, open_client, recv_text, run, run_tool,
                      subscribe, wait_until)

SETUP = ROOT / "deploy" / "rabbitmq" / "setup.sh"
STREAM = "websocket.history"
# The spec's defaults (history.max_age 24h, max_bytes 1 GiB, segment_bytes
# 64 MiB, replicas 0: not set), as the gateways declare them.
STREAM_ARGS = {"x-queue-type": "stream", "x-max-age": "86400s",
               "x-max-length-bytes": 2**30, "x-stream-max-segment-size-bytes": 64 * 2**20}


def setup_sh(broker, vhost, prefix, secrets, *extra, rc=0):
    env = {**os.environ, "RABBITMQCTL": f"{BROKER_SH} ctl {broker.dir}"}
    proc = subprocess.run([str(SETUP), "--vhost", vhost, "--prefix", prefix,
                           "--secrets", str(secrets), "--host", f"127.0.0.1:{broker.port}", *extra],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return proc.stdout if rc == 0 else proc.stderr


def topology(broker, vhost):
    """(type of websocket.groups or None, {queue: (type, arguments text)},
    [(source, destination, key)])"""
    x = {r[0]: r[1] for r in broker.table("list_exchanges", "-p", vhost, "name", "type")}
    q = {r[0]: (r[1], r[2]) for r in broker.table("list_queues", "-p", vhost, "name", "type",
                                                  "arguments")}
    b = [(r[0], r[1], r[2]) for r in broker.table("list_bindings", "-p", vhost, "source_name",
                                                   "destination_name", "routing_key")]
    return x.get("websocket.groups"), q, b


def assert_control_topology(broker, vhost):
    """websocket.control: a durable topic exchange, bound as a destination of
    websocket.groups for both control key prefixes (a kick sent there still
    arrives)."""
    rows = broker.table("list_exchanges", "-p", vhost, "name", "type", "durable")
    assert ["websocket.control", "topic", "true"] in [list(r) for r in rows], rows
    bindings = broker.table("list_bindings", "-p", vhost, "source_name", "destination_name",
                            "destination_kind", "routing_key")
    for key in ("wsgw!user.*", "wsgw!gw.#"):
        assert ["websocket.groups", "websocket.control", "exchange", key] in \
            [list(r) for r in bindings], bindings


def chanctl_kick(user, url_file):
    """`chanctl kick --user USER` as the user of url_file: (status, stderr)."""
    proc = subprocess.run([binary("chanctl"), "kick", "--user", str(user),
                           f"--amqp.url_file={url_file}"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **SAN_ENV})
    return proc.returncode, proc.stderr


def assert_history_topology(broker, vhost):
    assert_control_topology(broker, vhost)
    xtype, queues, bindings = topology(broker, vhost)
    assert xtype == "topic", xtype
    assert queues[STREAM][0] == "stream", queues
    args = queues[STREAM][1]
    for k, v in STREAM_ARGS.items():
        assert f'{{"{k}",{v if isinstance(v, int) else chr(34) + v + chr(34)}}}' in args, args
    assert "x-initial-cluster-size" not in args, args
    assert ("websocket.groups", STREAM, "#") in bindings, bindings


def old_broker(broker, vhost):
    """A vhost as every broker set up before the history holds it: the
    groups exchange is direct."""
    doc = {"vhosts": [{"name": vhost}], "exchanges": [{
        "name": "websocket.groups", "vhost": vhost, "type": "direct", "durable": True,
        "auto_delete": False, "internal": False, "arguments": {}}]}
    subprocess.run([str(BROKER_SH), "ctl", str(broker.dir), "import_definitions",
                    "--format", "json"], input=json.dumps(doc), text=True, check=True,
                   capture_output=True, timeout=60)


def read_urls(secrets):
    return {r: (secrets / f"{r}-amqp.url").read_text().strip()
            for r in ("gateway", "worker", "emitter")}


@pytest.fixture
def provisioned(broker, tmp_path):
    """setup.sh run into a fresh vhost; yields (vhost, prefix, secrets)."""
    prefix = f"t{os.getpid()}-"
    vhost = f"t{os.getpid()}_deploy"
    secrets = tmp_path / "secrets"
    out = setup_sh(broker, vhost, prefix, secrets)
    assert f"vhost {vhost}: created" in out
    for f in secrets.iterdir():
        assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"
    try:
        yield vhost, prefix, secrets
    finally:
        broker.ctl("delete_vhost", vhost)
        for role in ("gateway", "worker", "emitter", "emitd"):
            broker.ctl("delete_user", prefix + role)


def refused(fn):
    """The broker's reply code when fn is refused (403 ACCESS_REFUSED), or
    None when it was allowed."""
    try:
        fn()
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as e:
        return e.reply_code
    return None


class As:
    """A pika connection as one user; a fresh channel per attempt, since a
    refusal closes the channel."""

    def __init__(self, url):
        self.conn = pika.BlockingConnection(pika.URLParameters(url))

    def channel(self):
        ch = self.conn.channel()
        ch.confirm_delivery()  # a refused publish then raises here, not later
        return ch

    def consume(self, queue, prefetch=None, arguments=None):
        def attempt():
            ch = self.channel()
            if prefetch:  # a stream consumer needs one (406 without)
                ch.basic_qos(prefetch_count=prefetch)
            ch.basic_consume(queue, lambda *a: None, arguments=arguments)
        return refused(attempt)

    def publish(self, exchange, key, body=b"{}"):
        return refused(lambda: self.channel().basic_publish(exchange, key, body))

    def close(self):
        if self.conn.is_open:
            self.conn.close()


def stream_keys(who, until, timeout=10):
    """The routing keys of the stream from its first message up to the one
    with key `until` (RabbitMQ needs a prefetch to consume a stream). The
    channel is closed, not cancelled: pika's cancel would nack the rest,
    which a stream refuses by closing the connection."""
    ch = who.conn.channel()
    ch.basic_qos(prefetch_count=100)
    keys = []

    def got(ch_, method, _props, _body):
        keys.append(method.routing_key)
        ch_.basic_ack(method.delivery_tag)
    ch.basic_consume(STREAM, got, arguments={"x-stream-offset": "first"})
    deadline = time.monotonic() + timeout
    while until not in keys and time.monotonic() < deadline:
        who.conn.process_data_events(time_limit=0.1)
    ch.close()
    return keys[:keys.index(until) + 1] if until in keys else keys


def test_setup_script_users_work_and_are_confined(cluster, provisioned):
    vhost, prefix, secrets = provisioned
    urls = read_urls(secrets)
    # The daemons as the script's users, with the URLs it wrote.
    for role in ("gateway", "worker", "emitter"):
        assert urls[role].startswith(f"amqp://{prefix}{role}:")
    # Before any daemon: the exchange is there (the script declared it)
    # and the emitter user can publish to it with chanctl emit.
    rows = cluster.broker.table("list_exchanges", "-p", vhost, "name", "type", "durable")
    assert ["websocket.groups", "topic", "true"] in [list(r) for r in rows], rows
    assert_history_topology(cluster.broker, vhost)
    run_tool(["emit", "jobs-status_changed", '{"early": true}',
              f"--amqp.url_file={secrets}/emitter-amqp.url"])
    cluster.vhost = vhost  # the fixture's readiness checks look here
    cluster.amqp_url = urls["worker"]
    wk = cluster.worker()
    cluster.amqp_url = urls["gateway"]
    gw = cluster.gateway()  # ready: a handshake was accepted

    async def main():
        ws = await open_client(gw, user=7)
        errors, reply = await subscribe(ws, {"jobs": ["status_changed"]})
        assert reply["groups_current"] == ["jobs-status_changed"]
        await asyncio.to_thread(run_tool, ["emit", "jobs-status_changed", '{"via": "emitter"}',
                                           f"--amqp.url_file={secrets}/emitter-amqp.url"])
        assert await recv_text(ws, what="the event from the emitter user") == '{"via": "emitter"}'
        # Kicks as the emitter user, to websocket.control: nobody holds user
        # 999 (3, though the history takes every key of websocket.groups);
        # user 7's connection is closed (0).
        emitter_url = secrets / "emitter-amqp.url"
        rc, err = await asyncio.to_thread(chanctl_kick, 999, emitter_url)
        assert rc == 3 and "no gateway holds" in err, err
        await asyncio.to_thread(wait_until, lambda: cluster.broker.group_bindings(
            vhost, "wsgw!user.*"), 10, "the users' control keys")
        rc, err = await asyncio.to_thread(chanctl_kick, 7, emitter_url)
        assert rc == 0, err
        try:
            await asyncio.wait_for(ws.recv(), 5)
            pytest.fail("a message instead of the kick's close")
        except websockets.ConnectionClosed as e:
            assert e.code == 4403, e.code
    run(main())
    assert wk.alive() and gw.alive()
    assert "ACCESS_REFUSED" not in gw.log() + wk.log()

    emitter, gateway, worker = As(urls["emitter"]), As(urls["gateway"]), As(urls["worker"])
    try:
        # emitter: only the groups exchange.
        assert emitter.publish("websocket.groups", "jobs-status_changed") is None
        assert emitter.consume("websocket.connect") == 403
        assert emitter.consume("websocket.receive") == 403
        assert emitter.publish("", "websocket.connect") == 403      # default exchange
        assert emitter.publish("amq.topic", "anything") == 403
        assert emitter.publish("amq.direct", "websocket.connect") == 403
        # ... and may not redeclare or delete the exchange the gateways'
        # bindings hang on; a passive declare (chanctl emit's) needs nothing.
        assert refused(lambda: emitter.channel().exchange_declare(
            "websocket.groups", "topic", durable=True)) == 403
        assert refused(lambda: emitter.channel().exchange_declare(
            "websocket.groups", "fanout", durable=False)) == 403
        assert refused(lambda: emitter.channel().exchange_delete("websocket.groups")) == 403
        assert refused(lambda: emitter.channel().exchange_declare(
            "websocket.groups", passive=True)) is None
        # ... nor touch or read the history: declare, delete, bind, consume.
        assert refused(lambda: emitter.channel().queue_declare(
            STREAM, durable=True, arguments=STREAM_ARGS)) == 403
        assert refused(lambda: emitter.channel().queue_declare(STREAM, durable=True)) == 403
        assert refused(lambda: emitter.channel().queue_delete(STREAM)) == 403
        assert refused(lambda: emitter.channel().queue_bind(
            STREAM, "websocket.groups", "jobs-status_changed")) == 403
        assert emitter.consume(STREAM, prefetch=10, arguments={"x-stream-offset": "first"}) == 403
        # ... nor pass for a gateway's marker (wsgw!mark.QUEUE), while
        # kicks (wsgw!user.N, wsgw!gw.QUEUE) stay the emitter's.
        assert emitter.publish("websocket.groups", "wsgw!mark.amq.gen-x", b"amq.gen-x") == 403
        assert emitter.publish("websocket.groups", "wsgw!user.7", b"") is None
        # websocket.control: kicks only; no marker, no event; not its to
        # redeclare, delete or bind from.
        assert emitter.publish("websocket.control", "wsgw!user.7", b"") is None
        assert emitter.publish("websocket.control", "wsgw!gw.amq.gen-x", b"1") is None
        assert emitter.publish("websocket.control", "wsgw!mark.amq.gen-x", b"amq.gen-x") == 403
        assert emitter.publish("websocket.control", "jobs-status_changed") == 403
        assert refused(lambda: emitter.channel().exchange_declare(
            "websocket.control", "topic", durable=True)) == 403
        assert refused(lambda: emitter.channel().exchange_delete("websocket.control")) == 403
        assert refused(lambda: emitter.channel().queue_bind(
            STREAM, "websocket.control", "wsgw!user.7")) == 403
        # gateway: may not read the workers' queues.
        for q in ("websocket.receive", "websocket.connect", "websocket.disconnect"):
            assert gateway.consume(q) == 403, q
        assert gateway.publish("websocket.groups", "jobs-status_changed") == 403
        assert gateway.publish("websocket.groups", "wsgw!user.7") == 403  # no kicks either
        assert gateway.publish("websocket.control", "wsgw!user.7") == 403
        assert gateway.publish("websocket.control", "wsgw!gw.amq.gen-x") == 403
        assert gateway.publish("websocket.control", "wsgw!mark.amq.gen-x") == 403
        # ... but it publishes its markers and reads the history.
        assert gateway.publish("websocket.groups", "wsgw!mark.amq.gen-x", b"amq.gen-x") is None
        assert stream_keys(gateway, "wsgw!mark.amq.gen-x"), "the marker is in the stream"
        # worker: may not read a gateway's queue or bind to the groups exchange.
        queues = [row[0] for row in cluster.broker.table("list_queues", "-p", vhost, "name")]
        gw_queue = next(q for q in queues if q.startswith("amq.gen-"))
        assert worker.consume(gw_queue) == 403
        if "websocket.dead" in queues:  # poison messages: for administrators only
            assert worker.consume("websocket.dead") == 403
        assert refused(lambda: worker.channel().queue_bind(
            "websocket.receive", "websocket.groups", "jobs-status_changed")) == 403
        assert worker.publish("websocket.groups", "jobs-status_changed") == 403
        assert worker.publish("websocket.control", "wsgw!user.7") == 403
        assert worker.consume(STREAM, prefetch=10) == 403
        assert refused(lambda: worker.channel().queue_delete(STREAM)) == 403
    finally:
        for c in (emitter, gateway, worker):
            c.close()


    # A second run (with the old --emitter-no-declare, now the default and
    # ignored): idempotent (passwords kept, the vhost left alone), and the
    # emitter still may publish but not declare or delete the exchange.
    out = setup_sh(cluster.broker, vhost, prefix, secrets, "--emitter-no-declare")
    assert f"vhost {vhost}: exists" in out and "created" not in out
    assert read_urls(secrets) == urls
    e = As(urls["emitter"])
    try:
        assert e.publish("websocket.groups", "jobs-status_changed") is None
        assert refused(lambda: e.channel().exchange_declare(
            "websocket.groups", "topic", durable=True)) == 403
        assert refused(lambda: e.channel().exchange_delete("websocket.groups")) == 403
        assert refused(lambda: e.channel().queue_delete(STREAM)) == 403
    finally:
        e.close()
    assert_history_topology(cluster.broker, vhost)


def test_setup_script_migrates_an_older_broker(broker, tmp_path):
    """A broker set up before the history (websocket.groups direct): refused
    without --migrate, with nothing changed; --migrate recreates the exchange
    as topic with the stream bound, the users work; a second --migrate finds
    nothing to do; other stream arguments are refused, nothing changed."""
    prefix, vhost = f"m{os.getpid()}-", f"m{os.getpid()}_deploy"
    secrets = tmp_path / "secrets"
    old_broker(broker, vhost)
    try:
        err = setup_sh(broker, vhost, prefix, secrets, rc=1)
        assert "is a direct exchange" in err and "--migrate" in err and "Nothing was changed" in err
        xtype, queues, _ = topology(broker, vhost)
        assert xtype == "direct" and STREAM not in queues
        assert prefix + "emitter" not in [r[0] for r in broker.table("list_users")]

        out = setup_sh(broker, vhost, prefix, secrets, "--migrate")
        assert "direct deleted (--migrate)" in out, out
        assert_history_topology(broker, vhost)
        urls = read_urls(secrets)
        emitter, gateway = As(urls["emitter"]), As(urls["gateway"])
        try:
            run_tool(["emit", "jobs-migrated", '{"after": "migrate"}',
                      f"--amqp.url_file={secrets}/emitter-amqp.url"])
            assert emitter.publish("websocket.groups", "jobs-migrated") is None
            assert stream_keys(gateway, "jobs-migrated") == ["jobs-migrated"]
        finally:
            emitter.close()
            gateway.close()

        out = setup_sh(broker, vhost, prefix, secrets, "--migrate")
        assert "topic, nothing to migrate" in out and "deleted" not in out, out
        assert read_urls(secrets) == urls

        err = setup_sh(broker, vhost, prefix, secrets, "--history-max-age", "1h", rc=1)
        assert "exists with the arguments" in err and '"x-max-age": "3600s"' in err, err
        assert_history_topology(broker, vhost)
    finally:
        broker.ctl("delete_vhost", vhost)
        for role in ("gateway", "worker", "emitter"):
            subprocess.run([str(BROKER_SH), "ctl", str(broker.dir), "delete_user", prefix + role],
                           capture_output=True, timeout=60)


def test_setup_script_without_history(broker, tmp_path):
    """--no-history: no stream, and the gateway user gets nothing on it."""
    prefix, vhost = f"n{os.getpid()}-", f"n{os.getpid()}_deploy"
    secrets = tmp_path / "secrets"
    try:
        setup_sh(broker, vhost, prefix, secrets, "--no-history")
        xtype, queues, bindings = topology(broker, vhost)
        assert xtype == "topic" and STREAM not in queues, (xtype, queues)
        rows = {r[0]: r[1:] for r in broker.table("list_permissions", "-p", vhost)}
        assert "history" not in " ".join(rows[prefix + "gateway"]), rows
        assert "websocket\\.groups" not in rows[prefix + "gateway"][1], rows
        # The control exchange and its bindings are there all the same (kicks
        # do not depend on the history); the gateway writes it to bind it.
        assert_control_topology(broker, vhost)
        assert "websocket\\.control" in rows[prefix + "gateway"][1], rows
    finally:
        broker.ctl("delete_vhost", vhost)
        for role in ("gateway", "worker", "emitter"):
            subprocess.run([str(BROKER_SH), "ctl", str(broker.dir), "delete_user", prefix + role],
                           capture_output=True, timeout=60)


def test_setup_script_refuses_unknown_argument():
    proc = subprocess.run([str(SETUP), "--bogus"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr


def test_setup_script_reads_a_listing_whole(tmp_path):
    """A listing whose reader leaves early kills rabbitmqctl (":terminated",
    non-zero): the script reads each listing whole before searching it, so
    an existing vhost (listed first, with 2,000 more after it) is found and
    its direct exchange refused, not taken for a new broker. A stand-in CLI
    (it never reaches a broker: the script stops before changing anything)
    makes the early exit certain; against the real CLI it was 1 try in 20."""
    cli = tmp_path / "ctl"
    cli.write_text("""#!/bin/bash
trap 'echo :terminated >&2; exit 70' PIPE
case $1 in
  list_vhosts) echo old_vhost; sleep 0.3
               for i in $(seq 2000); do echo "v$i" || { echo :terminated >&2; exit 70; }; done ;;
  list_exchanges) printf 'websocket.groups\\tdirect\\n' ;;
  list_queues) ;;
  *) echo "stand-in: $1 must not be reached" >&2; exit 99 ;;
esac
""")
    cli.chmod(0o755)
    proc = subprocess.run([str(SETUP), "--vhost", "old_vhost", "--prefix", "x-",
                           "--secrets", str(tmp_path / "secrets"), "--host", "127.0.0.1:1"],
                          env={**os.environ, "RABBITMQCTL": str(cli)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "vhost old_vhost: exists" in proc.stdout, proc.stdout
    assert "is a direct exchange" in proc.stderr and "must not be reached" not in proc.stderr
