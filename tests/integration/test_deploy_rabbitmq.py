"""deploy/rabbitmq/setup.sh against the private broker: vhost, three users,
least-privilege permissions.

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
"""

import asyncio
import os
import subprocess

import pika
import pika.exceptions
import pytest

from conftest import BROKER_SH, ROOT, open_client, recv_text, run, run_tool, subscribe

SETUP = ROOT / "deploy" / "rabbitmq" / "setup.sh"


def setup_sh(broker, vhost, prefix, secrets, *extra):
    env = {**os.environ, "RABBITMQCTL": f"{BROKER_SH} ctl {broker.dir}"}
    proc = subprocess.run([str(SETUP), "--vhost", vhost, "--prefix", prefix,
                           "--secrets", str(secrets), "--host", f"127.0.0.1:{broker.port}", *extra],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


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
        for role in ("gateway", "worker", "emitter"):
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

    def consume(self, queue):
        return refused(lambda: self.channel().basic_consume(queue, lambda *a: None))

    def publish(self, exchange, key, body=b"{}"):
        return refused(lambda: self.channel().basic_publish(exchange, key, body))

    def close(self):
        if self.conn.is_open:
            self.conn.close()


def test_setup_script_users_work_and_are_confined(cluster, provisioned):
    vhost, prefix, secrets = provisioned
    urls = read_urls(secrets)
    # The daemons as the script's users, with the URLs it wrote.
    for role in ("gateway", "worker", "emitter"):
        assert urls[role].startswith(f"amqp://{prefix}{role}:")
    # Before any daemon: the exchange is there (the script declared it)
    # and the emitter user can publish to it with chanctl emit.
    rows = cluster.broker.table("list_exchanges", "-p", vhost, "name", "type", "durable")
    assert ["websocket.groups", "direct", "true"] in [list(r) for r in rows], rows
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
        await ws.close()
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
            "websocket.groups", "direct", durable=True)) == 403
        assert refused(lambda: emitter.channel().exchange_declare(
            "websocket.groups", "fanout", durable=False)) == 403
        assert refused(lambda: emitter.channel().exchange_delete("websocket.groups")) == 403
        assert refused(lambda: emitter.channel().exchange_declare(
            "websocket.groups", passive=True)) is None
        # gateway: may not read the workers' queues.
        for q in ("websocket.receive", "websocket.connect", "websocket.disconnect"):
            assert gateway.consume(q) == 403, q
        assert gateway.publish("websocket.groups", "jobs-status_changed") == 403
        # worker: may not read a gateway's queue or bind to the groups exchange.
        queues = [row[0] for row in cluster.broker.table("list_queues", "-p", vhost, "name")]
        gw_queue = next(q for q in queues if q.startswith("amq.gen-"))
        assert worker.consume(gw_queue) == 403
        if "websocket.dead" in queues:  # poison messages: for administrators only
            assert worker.consume("websocket.dead") == 403
        assert refused(lambda: worker.channel().queue_bind(
            "websocket.receive", "websocket.groups", "jobs-status_changed")) == 403
        assert worker.publish("websocket.groups", "jobs-status_changed") == 403
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
            "websocket.groups", "direct", durable=True)) == 403
        assert refused(lambda: e.channel().exchange_delete("websocket.groups")) == 403
    finally:
        e.close()


def test_setup_script_refuses_unknown_argument():
    proc = subprocess.run([str(SETUP), "--bogus"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr
