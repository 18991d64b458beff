"""Two hosts behind nginx, one of them cut off the network (issue 6, part 4).

Network namespaces play the hosts (tests/lib/netns.sh): host A (SUBNET.1)
and host B (SUBNET.2) each run a RabbitMQ node, gatewayd and workerd; a
third namespace (SUBNET.3) runs only a RabbitMQ node, the tie-breaker that
leaves the survivor a majority. The three nodes form one cluster with long
node names (name@address), net_ticktime 5 s and pause_minority. A real nginx
in the root namespace (SUBNET.254 on the bridge) runs the shipped site file
and proxy snippet as they are (proxy_connect_timeout, `proxy_next_upstream
error timeout`, nginx's default max_fails=1 fail_timeout=10s); only the
upstream block is generated: both gateways. Every daemon gets the URLs of all
three nodes and amqp.queue_type=quorum.

Placed for the worst case: the leaders of all four quorum queues workerd
declares (websocket.connect, .receive, .disconnect and .dead) and of the
gateways' history stream are on B's node, and A's gateway and worker are connected to B's node too (started again
until they land there), so the cut takes away everything A's daemons hold on
the broker. A's worker must declare all four again on a surviving node to
come back: websocket.dead too, which used to be a classic queue with B's node
as its home, whose declare failed while B was out of reach.

Shown, before the cut: clients through nginx land on both gateways and an
event reaches every one. Then B's veth goes down in the root namespace: its
packets are dropped, no RST, no ICMP (a partition, not a crash). Host A goes
on serving: its clients stay connected; events emitted every 200 ms from the
cut on reach all of them within seconds, in order, every one: none is lost
across the cut (issue 14, item 4: A's gateway reads the event history, a
stream replicated on the three nodes, and resumes where it stopped; the
backend publishes with confirms and publishes again what the broker
refused); their subscription
requests, sent once A's worker is back on a surviving node, are answered (by
A's worker: B's is cut off; why not sooner: see the requests below); new
connections through nginx succeed: the first one nginx sends to B waits for the
snippet's proxy_connect_timeout, then goes on to A, and nginx marks B down,
so the next ones go straight to A. The figures are printed (pytest -s).

Needs root (network namespaces, a bridge). Slow (~1 min): `make test-faults`.
"""

import asyncio
import concurrent.futures
import datetime
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pika
import pytest

from conftest import (BROKER_SH, HISTORY_STREAM, LOG_LEVEL, ROOT, SECRET, Broker, Cluster, Daemon, PikaEmitter,
                      _log_dir, binary, connect, jwt_for, recv_json, run, running, wait_until)
from faults import SLOW, records, wait_record
from test_faults_broker import epoch

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from nginx import Nginx  # noqa: E402

pytestmark = [SLOW, pytest.mark.skipif(os.geteuid() != 0,
                                       reason="network namespaces need root")]

NETNS_SH = ROOT / "tests" / "lib" / "netns.sh"
TAG = "wsgwh"  # namespaces wsgwh-h1..3, bridge wsgwh-br
SUBNET = os.environ.get("WSGW_HOSTS_SUBNET", "10.231.0")
A, B, T = 1, 2, 3  # host numbers: namespace TAG-hN, address SUBNET.N
HOST_NAME = {A: "A", B: "B", T: "tie-breaker"}
ROOT_IP = f"{SUBNET}.254"  # the root namespace (nginx) on the bridge
AMQP_PORT, DIST_PORT = 5672, 25672  # the same in every namespace
GW_PORT, GW_METRICS, WK_METRICS = 8051, 9151, 9152
NET_TICKTIME = 5
VHOST = "hosts"
OPTS = ("--amqp.heartbeat=2s", "--amqp.queue_type=quorum")
# The event history's stream on all three nodes: it survives B's node.
GW_OPTS = ("--history.replicas=3",)
GROUP = "jobs-status_changed"
CLIENTS = 10  # through nginx before the cut: least_conn puts 5 on each gateway
EMIT_EVERY = 0.2
WORK_QUEUES = ("websocket.connect", "websocket.receive", "websocket.disconnect")
# Every queue workerd declares when it connects: it must redeclare all of
# them on a surviving node before it consumes again.
WORKER_QUEUES = WORK_QUEUES + ("websocket.dead",)
SNIPPET = ROOT / "deploy" / "nginx" / "snippets" / "wsgw-proxy.conf"


def ip(host):
    return f"{SUBNET}.{host}"


def netns(*args, timeout=120):
    proc = subprocess.run([str(NETNS_SH), args[0], TAG, *map(str, args[1:])],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"netns.sh {' '.join(map(str, args))} exited {proc.returncode}:\n"
                    f"{proc.stdout}{proc.stderr}")
    return proc.stdout


class Node(Broker):
    """A RabbitMQ node of the cluster, in its host's namespace."""

    def __init__(self, host, state_dir):
        super().__init__(state_dir)
        env = dict(line.split("=", 1) for line in (self.dir / "env").read_text().splitlines()
                   if "=" in line)
        self.host, self.ip, self.name = host, env["NODE_IP"], env["NODENAME"]

    def url(self, vhost):
        return f"amqp://guest:guest@{self.ip}:{self.port}/{vhost}"

    def saw_down(self, other):
        """When this node's log says the other node went down (epoch), or None."""
        path = self.dir / "log" / "node.log"
        pattern = re.compile(r"^(\S+ \S+) \[\w+\] <[^>]*> node '" + re.escape(other.name)
                             + r"' down", re.M)
        m = pattern.search(path.read_text(errors="replace")) if path.exists() else None
        return datetime.datetime.fromisoformat(m.group(1)).timestamp() if m else None


def _interrupted(signum, frame):
    # `make test-faults` ends a run that overstays with SIGTERM: turn it into
    # KeyboardInterrupt, on which pytest still runs the fixtures' teardown
    # (the namespaces must go, and the nodes and daemons inside them).
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """{host number: Node}: three namespaces, a node in each, clustered."""
    # The tag and subnet are fixed: one run on this machine at a time.
    lock = open(Path(tempfile.gettempdir()) / f"wsgw-netns-{TAG}.lock", "w")
    deadline = time.monotonic() + 600
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail(f"another run has held {lock.name} for 10 minutes")
            time.sleep(1)
    state = tmp_path_factory.mktemp("hosts")
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        netns("up", SUBNET, 3)
        yield start_cluster(state)
    finally:
        # Everything still running in the namespaces (nodes, epmd, daemons
        # a failed test left) is killed by pid, then the links go.
        subprocess.run([str(NETNS_SH), "down", TAG], timeout=120, check=False)
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(state, ignore_errors=True)
        lock.close()


def start_cluster(state):
    cookie = secrets.token_hex(20).upper()
    dirs = {h: state / f"node{h}" for h in (A, B, T)}
    conf = f"net_ticktime = {NET_TICKTIME}\ncluster_partition_handling = pause_minority"
    starts = {}
    for h, d in dirs.items():  # in parallel: each takes several seconds
        env = {**os.environ, "BROKER_COOKIE": cookie, "BROKER_IP": ip(h),
               "BROKER_NODE_HOST": ip(h), "BROKER_AMQP_PORT": str(AMQP_PORT),
               "BROKER_DIST_PORT": str(DIST_PORT), "BROKER_CONF": conf}
        starts[h] = subprocess.Popen([str(NETNS_SH), "exec", TAG, str(h), str(BROKER_SH),
                                      "start", str(d)], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    failed = []
    for h, p in starts.items():
        out, _ = p.communicate(timeout=180)
        if p.returncode != 0:
            failed.append(f"node of host {HOST_NAME[h]}:\n{out}")
    if failed:
        pytest.fail("\n".join(failed))
    for h in (B, T):  # rabbitmqctl from the root namespace reaches them all
        proc = subprocess.run([str(BROKER_SH), "join", str(dirs[h]), str(dirs[A])],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.fail(f"joining host {HOST_NAME[h]}'s node: {proc.stdout}{proc.stderr}")
    nodes = {h: Node(h, d) for h, d in dirs.items()}
    nodes[A].ctl("add_vhost", VHOST)
    nodes[A].ctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    return nodes


@pytest.fixture
def hcluster(hosts, request, tmp_path):
    c = Cluster(hosts[A], VHOST, _log_dir(request, tmp_path))
    c.amqp_url = ",".join(hosts[h].url(VHOST) for h in (A, B, T))
    with running(c, request):
        yield c


def start_on(c, host, name, argv):
    """A daemon inside host's namespace (netns.sh exec replaces itself with
    it: the pid is the daemon's), stopped and checked with the cluster."""
    n = len(c.daemons) + 1
    d = Daemon(f"{name}@{HOST_NAME[host]}#{n}", [str(NETNS_SH), "exec", TAG, str(host), *argv],
               c.log_dir / f"{name}-{HOST_NAME[host]}-{n}.log")
    c.daemons.append(d)
    return d


def gateway_on(c, host, url=None):
    return start_on(c, host, "gatewayd", [
        binary("gatewayd"), f"--gateway.listen={ip(host)}:{GW_PORT}",
        f"--gateway.metrics_listen={ip(host)}:{GW_METRICS}", "--gateway.processes=1",
        f"--gateway.trusted_proxies={ROOT_IP}", f"--amqp.url={url or c.amqp_url}",
        # A's worker is back on a live node ~12 s after the cut here (see
        # the figures); a client message waits for it up to this long.
        "--gateway.reply_timeout=30s", f"--log.level={LOG_LEVEL}", *OPTS, *GW_OPTS])


def worker_on(c, host, url=None):
    return start_on(c, host, "workerd", [
        binary("workerd"), f"--amqp.url={url or c.amqp_url}", f"--auth.secret={SECRET}",
        f"--worker.metrics_listen={ip(host)}:{WK_METRICS}", f"--log.level={LOG_LEVEL}", *OPTS])


UP_EVENT = {"gatewayd": "amqp_up", "workerd": "broker_connected"}


def node_ip(daemon, nth=-1):
    """The address of the node the daemon's nth up record names."""
    kind = "gatewayd" if "gatewayd" in daemon.name else "workerd"
    return records(daemon, UP_EVENT[kind])[nth]["node"].rsplit(":", 1)[0]


def placed_on(c, start, host, node, tries=30):
    """A daemon started on host, connected to node: the start node is random
    (1 in 3), so start again until it is there."""
    for _ in range(tries):
        d = start(c, host)
        kind = "gatewayd" if "gatewayd" in d.name else "workerd"
        wait_record(d, UP_EVENT[kind], 20)
        if node_ip(d) == node.ip:
            return d
        d.kill(signal.SIGTERM)
    pytest.fail(f"{tries} starts in a row did not land on {node.name}")


def leaders(node):
    """{queue: host of its leader} of the queues workerd declares and of the
    gateways' history stream."""
    rows = node.table("list_queues", "-p", VHOST, "name", "leader")
    return {q: HOST_NAME[int(lead.rsplit(".", 1)[1])] for q, lead in rows
            if q in WORKER_QUEUES + (HISTORY_STREAM,)}


def queue_types(node):
    rows = node.table("list_queues", "-p", VHOST, "name", "type")
    return {q: kind for q, kind in rows if q in WORKER_QUEUES}


def connect_timeout():
    """The shipped snippet's proxy_connect_timeout, in seconds."""
    m = re.search(r"^proxy_connect_timeout (\d+)s;", SNIPPET.read_text(), re.M)
    assert m, f"no proxy_connect_timeout in seconds in {SNIPPET.name}"
    return int(m.group(1))


def worker_counter(host, name, label):
    """A counter of the worker on host (its /metrics, through the bridge)."""
    with urllib.request.urlopen(f"http://{ip(host)}:{WK_METRICS}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf'^{name}\{{[^}}]*{label}[^}}]*\}} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


class HostsNginx(Nginx):
    """tests/e2e/nginx.py's nginx with an upstream of gateways on other
    hosts: the shipped proxy snippet as it is, and the shipped site file with
    these servers, one plain line each as an operator writes them (nginx's
    defaults apply: max_fails=1, fail_timeout=10s)."""

    def __init__(self, workdir, upstreams):
        self.upstreams = upstreams
        super().__init__(workdir, [])

    def _site(self, site, upstream_ports, tls):
        text = (ROOT / "deploy/nginx" / site).read_text()
        servers = "".join(f"    server {a};\n" for a in self.upstreams)
        text, n = re.subn(r"(upstream wsgw_gateways \{\n(?:\s*least_conn;\n)?)"
                          r"\s*server 127\.0\.0\.1:8051;\n", lambda m: m.group(1) + servers, text)
        assert n == 1, "the upstream block of the site file changed shape"
        text = re.sub(r"^\s*listen \[::\]:\d+.*\n", "", text, flags=re.M)
        text, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{self.port};", text)
        assert n == 1
        return text.replace("alias /usr/local/share/wsgw/demo/;", f"alias {ROOT}/deploy/demo/;")

    def attempts_on(self, upstream):
        """Error-log lines of nginx failing to reach upstream (host:port)."""
        log = self.dir / "logs" / "error.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if "[error]" in line
                and f'upstream: "http://{upstream}/' in line and "connecting to upstream" in line]


def client_addr(k):
    """Each client its own loopback source address: the gateway logs it
    (X-Forwarded-For from nginx), which tells which gateway has it."""
    return f"127.0.1.{k}"


def clients_of(gw):
    return set(re.findall(r"event=conn_connecting id=\d+ client=(127\.0\.1\.\d+):\d+ ",
                          gw.log()))


async def open_via(ng, k):
    ws = await connect(f"ws://127.0.0.1:{ng.port}/websocket/?token={jwt_for(30000 + k)}",
                       local_addr=(client_addr(k), 0))
    accept = await recv_json(ws, 15, "the accept message")
    assert accept == {"accept": True, "user": 30000 + k}, accept
    return ws


async def request(ws, groups, timeout=30):
    """Sends a subscription request; returns the reply. Events that arrive
    first are skipped; anything else (an error) fails the test."""
    await ws.send(json.dumps({"groups": groups}))
    while True:
        msg = await recv_json(ws, timeout, f"the reply to {groups}")
        if "groups_current" in msg:
            return msg
        assert "seq" in msg, f"error before the reply to {groups}: {msg}"


async def next_event(ws, seq, timeout=15):
    """Waits for the event {"seq": seq}, skipping older ones."""
    while True:
        msg = await recv_json(ws, timeout, f"event {seq}")
        assert "seq" in msg, f"not an event: {msg}"
        if msg["seq"] == seq:
            return time.time()


async def collect(ws, got):
    """Appends (seq, arrival time) of each event until cancelled."""
    while True:
        msg = json.loads(await ws.recv())
        got.append((msg["seq"], time.time()))


class Emitter:
    """A backend on host A: pika to A's node, one thread for all publishes,
    with confirms, as docs/PROTOCOL.md tells a backend to: an event the
    broker refuses (the history's leader was on B's node: until a new one
    is elected) is published again, in order, before the next one."""

    def __init__(self, url):
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.url, self.pika, self.sent, self.retries = url, None, {}, 0

    def _emit(self, text):
        while True:
            try:
                if self.pika is None:
                    self.pika = PikaEmitter(self.url)
                self.pika.emit(GROUP, text)
                return
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                self.retries += 1
                time.sleep(0.1)
            except pika.exceptions.AMQPError:  # the connection went: a new one
                self.retries += 1
                self.pika = None
                time.sleep(0.1)

    async def emit(self, seq):
        loop = asyncio.get_running_loop()
        t = time.time()
        await loop.run_in_executor(self.pool, self._emit, json.dumps({"seq": seq}))
        self.sent[seq] = t
        return t

    def close(self):
        if self.pika:
            self.pool.submit(self.pika.close).result(timeout=10)
        self.pool.shutdown()


def test_host_cut_off_the_network(hcluster, hosts, tmp_path):
    c, nodes = hcluster, hosts
    figures, placement = {}, {}

    # A quorum queue's first leader is the node its declarer is connected to:
    # the first worker, which knows only B's node, declares all four there
    # (the vhost is new: nothing was declared in it before; gatewayd declares
    # none of these). Their type shows this workerd's websocket.dead is quorum.
    first = worker_on(c, B, url=nodes[B].url(VHOST))
    wait_record(first, "broker_connected", 30)
    first.kill(signal.SIGTERM)
    # Likewise the history stream: its leader on B's node too.
    first_gw = gateway_on(c, B, url=nodes[B].url(VHOST))
    wait_record(first_gw, "hist_live", 30)
    first_gw.kill(signal.SIGTERM)
    assert queue_types(nodes[A]) == {q: "quorum" for q in WORKER_QUEUES}, \
        "workerd did not declare its queues quorum (built before websocket.dead was?)"
    placement["leaders"] = leaders(nodes[A])
    assert placement["leaders"] == {q: "B" for q in WORKER_QUEUES + (HISTORY_STREAM,)}, \
        placement

    wk_b = worker_on(c, B)
    gw_b = gateway_on(c, B)
    wk_a = placed_on(c, worker_on, A, nodes[B])
    gw_a = placed_on(c, gateway_on, A, nodes[B])
    wait_record(wk_b, "broker_connected", 20)
    wait_record(gw_b, "amqp_up", 20)
    c.wait_workers(2)
    for name, d in (("gw_a", gw_a), ("wk_a", wk_a), ("gw_b", gw_b), ("wk_b", wk_b)):
        placement[name] = "node " + HOST_NAME[int(node_ip(d).rsplit(".", 1)[1])]
    print(f"\nplacement before the cut: {placement}")

    ng = HostsNginx(tmp_path / "nginx", [f"{ip(A)}:{GW_PORT}", f"{ip(B)}:{GW_PORT}"])
    emitter = Emitter(nodes[A].url(VHOST))
    applied = ("wsgw_worker_subscriptions_total", 'result="applied"')

    async def main():
        # (a) Clients through nginx land on both hosts; an event reaches all.
        clients = []
        for k in range(1, CLIENTS + 1):  # one at a time: least_conn alternates
            ws = await open_via(ng, k)
            reply = await request(ws, {"jobs": ["status_changed"]})
            assert reply["groups_current"] == [GROUP], reply
            clients.append(ws)
        on_a, on_b = clients_of(gw_a), clients_of(gw_b)
        a_clients = [ws for k, ws in enumerate(clients, 1) if client_addr(k) in on_a]
        b_clients = [ws for k, ws in enumerate(clients, 1) if client_addr(k) in on_b]
        assert len(a_clients) + len(b_clients) == CLIENTS and a_clients and b_clients, \
            (sorted(on_a), sorted(on_b))
        figures["clients_before_cut"] = {"A": len(a_clients), "B": len(b_clients)}

        # No binding to wait for: both gateways read every event from the
        # history, and a membership counts from the reply on.
        t0 = await emitter.emit(0)
        arrivals = await asyncio.gather(*(next_event(ws, 0) for ws in clients))
        figures["event_before_cut_ms"] = round((max(arrivals) - t0) * 1000, 1)

        # nginx's least_conn gives a new handshake to the gateway with the
        # fewest connections: B's clients that leave now make that B, so the
        # first new connection after the cut is the one nginx tries on B.
        while len(b_clients) >= len(a_clients):
            await b_clients.pop().close()
        figures["clients_at_cut"] = {"A": len(a_clients), "B": len(b_clients)}

        # (b) The cut: B's link goes down; nothing tells anyone.
        subs_before = await asyncio.to_thread(worker_counter, A, *applied)
        await asyncio.to_thread(netns, "cut", B)
        t_cut = time.time()
        got = [[] for _ in a_clients]
        tasks = [asyncio.create_task(collect(ws, g)) for ws, g in zip(a_clients, got)]
        seq = 1
        while not all(g for g in got):
            for t in tasks:
                if t.done():
                    t.result()  # a client closed: its exception fails the test
            assert time.time() - t_cut < 30, \
                f"no event on {sum(not g for g in got)} of A's clients 30 s after the cut"
            await emitter.emit(seq)
            seq += 1
            await asyncio.sleep(EMIT_EVERY)
        resumed = time.time()
        while time.time() - resumed < 2:  # the flow goes on, every event
            await emitter.emit(seq)
            seq += 1
            await asyncio.sleep(EMIT_EVERY)
        await asyncio.sleep(1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        last = seq - 1

        for g in got:  # every event since the cut, in order, once: none lost
            seqs = [s for s, _ in g]
            assert seqs == list(range(1, last + 1)), \
                f"events lost, twice or out of order across the cut: {seqs}"
        figures["events_resumed_s"] = round(max(g[0][1] for g in got) - t_cut, 3)
        figures["events_after_cut"] = f"{last}, none lost (sent every {EMIT_EVERY}s)"
        figures["emitter_retries"] = emitter.retries
        # Latency of the events emitted once the flow was back.
        lat = [max(t for g in got for s, t in g if s == n) - emitter.sent[n]
               for n in range(1, last + 1) if emitter.sent[n] >= resumed]
        figures["event_latency_after_resume_ms"] = round(max(lat) * 1000, 1)
        assert all(ws.open for ws in a_clients), "A's clients were dropped"

        # Subscription requests of A's clients, sent once A's worker is back
        # on a surviving node: answered. Not sooner: a client message that
        # A's gateway publishes in the seconds before that (A's worker comes
        # back exactly 7 s, net_setuptime, after A's gateway: the survivors
        # are still trying to reach B's node) is sometimes refused by the
        # broker 7 s after the gateway came back (basic.nack: the client
        # gets close 1013), and then each later message through that
        # gateway to websocket.receive is refused the same way, still 35 s
        # after the cut. RabbitMQ 3.10's quorum queue client makes an rpc to
        # the node of the leader it knows on a channel's first publish to a
        # queue (rabbit_fifo_client:enqueue/3), and keeps that leader when
        # the rpc fails. Sent 3 s after the events came back (before the
        # worker), the requests failed so in 15 of 35 runs here (5 of 5 with
        # the old workerd and its classic websocket.dead on the tie-breaker);
        # waiting until `list_queues leader` no longer named B was not
        # enough (4 of 9 failed).
        await asyncio.to_thread(
            wait_until, lambda: len(records(wk_a, "broker_connected")) >= 2, 30,
            "A's worker to be back on a surviving node", interval=0.1)
        t0 = time.time()
        replies = await asyncio.gather(
            *(request(ws, {"jobs": ["status_changed", "summary"]}) for ws in a_clients))
        figures["requests_sent_after_cut_s"] = round(t0 - t_cut, 3)
        figures["requests_answered_after_cut_s"] = round(time.time() - t_cut, 3)
        assert all(sorted(r["groups_current"]) == [GROUP, "jobs-summary"] for r in replies), \
            replies

        # New connections through nginx, one at a time: all land on A. The
        # first goes to B (fewest connections), waits proxy_connect_timeout
        # there and goes on to A; nginx then holds B down (max_fails=1) and
        # sends the next ones straight to A. Timed: the handshake, up to the
        # accept message (A's worker is back by now: it answered above).
        n_new = 4
        new, took = [], []
        for k in range(CLIENTS + 1, CLIENTS + 1 + n_new):
            t0 = time.time()
            ws = await open_via(ng, k)
            took.append(round(time.time() - t0, 3))
            reply = await request(ws, {"jobs": ["status_changed"]})
            assert reply["groups_current"] == [GROUP], reply
            new.append(ws)
        landed = {client_addr(k) for k in range(CLIENTS + 1, CLIENTS + 1 + n_new)}
        assert landed <= clients_of(gw_a), "a new connection did not reach host A's gateway"
        tried_b = ng.attempts_on(f"{ip(B)}:{GW_PORT}")
        assert tried_b, "nginx never tried host B: the failover was not exercised"
        figures["new_connection_first_s"] = took[0]
        figures["new_connections_next_s"] = took[1:]
        figures["nginx_tries_on_b"] = len(tried_b)
        figures["nginx_b_error"] = re.sub(r"^.*?\[error\] \S+ \*\d+ ", "", tried_b[0])[:60]

        # A last event reaches every client on A, old and new.
        t0 = await emitter.emit("final")
        arrivals = await asyncio.gather(*(next_event(ws, "final") for ws in a_clients + new))
        figures["final_event_ms"] = round((max(arrivals) - t0) * 1000, 1)
        assert all(ws.open for ws in a_clients + new)

        figures["cut_to_now_s"] = round(time.time() - t_cut, 3)
        await asyncio.gather(*(ws.close() for ws in a_clients + new))
        for ws in b_clients:  # their upstream is unreachable: no close handshake
            ws.transport.abort()
        return t_cut, len(a_clients) + n_new, subs_before

    try:
        t_cut, requests, subs_before = run(main(), timeout=240)
    finally:
        emitter.close()
        ng.stop()

    # When each party noticed the cut.
    def since_cut(recs):
        return round(min(epoch(r) for r in recs) - t_cut, 3) if recs else None
    noticed = {
        "gw_a_amqp_down_s": since_cut(records(gw_a, "amqp_down")),
        "wk_a_broker_lost_s": since_cut(records(wk_a, "broker_lost")
                                        + records(wk_a, "broker_closed")),
        "node_a_sees_b_down_s": round(nodes[A].saw_down(nodes[B]) - t_cut, 3),
        "node_t_sees_b_down_s": round(nodes[T].saw_down(nodes[B]) - t_cut, 3),
        "gw_a_amqp_up_again_s": since_cut(records(gw_a, "amqp_up")[1:]),
        "wk_a_connected_again_s": since_cut(records(wk_a, "broker_connected")[1:]),
    }
    placement["after_cut"] = {"gw_a": "node " + HOST_NAME[int(node_ip(gw_a).rsplit(".", 1)[1])],
                              "wk_a": "node " + HOST_NAME[int(node_ip(wk_a).rsplit(".", 1)[1])],
                              "leaders": leaders(nodes[A])}
    subs = worker_counter(A, *applied) - subs_before
    figures["a_worker_requests_applied"] = subs
    print("\nhost B cut off the network (veth down, no RST):")
    print(f"  placement after the cut: {placement['after_cut']}")
    for k, v in {**noticed, **figures}.items():
        print(f"  {k}: {v}")
    assert subs >= requests, f"A's worker applied {subs} requests; {requests} were answered"
    # Not the 5 s of the per-gateway queues: with the history's leader on B's
    # node, A's gateway waits for the survivors to elect a new one (RabbitMQ
    # 3.10 consumes a stream only from a replica on the node it is connected
    # to, and refuses until that replica runs again) and its reconnects take
    # net_setuptime (7 s) each meanwhile: 19 s measured, nothing lost.
    assert figures["events_resumed_s"] < 30, figures
    # nginx's side of the cut: B never answers (no RST, no ICMP), so the one
    # handshake it tried there waited the whole proxy_connect_timeout, and
    # with B marked down it tried no other.
    limit = connect_timeout()
    assert figures["nginx_tries_on_b"] == 1, figures
    assert "timed out" in figures["nginx_b_error"], figures
    assert limit - 0.1 <= figures["new_connection_first_s"] < limit + 1, (limit, figures)
    assert max(figures["new_connections_next_s"]) < 0.5, figures
