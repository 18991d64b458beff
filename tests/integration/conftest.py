"""Fixtures and helpers of the integration suite.

Owns: starting the daemons (gatewayd, workerd) as subprocesses against a
private RabbitMQ node, one vhost per test module, websocket client helpers,
token minting, emitting (chanctl and pika), and the sanitizer check: a test
fails when a daemon or chanctl it ran wrote a sanitizer report.

Environment:
  WSGW_BUILD       folder with gatewayd, workerd, chanctl (default: build/)
  WSGW_BROKER_DIR  a node started by tests/lib/broker.sh (its DIR/env is
                   read); without it the session starts its own node
  WSGW_LOG_DIR     where daemon logs go (default: pytest's temporary folder)
  WSGW_LOG_LEVEL   the daemons' --log.level (default: info)

Run alone: /usr/bin/python3 -m pytest tests/integration
"""

import asyncio
import contextlib
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pika
import pytest
import websockets

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("WSGW_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
BROKER_SH = ROOT / "tests" / "lib" / "broker.sh"

LOG_LEVEL = os.environ.get("WSGW_LOG_LEVEL", "info")
SECRET = "integration-test-secret-0123456789abcdef"
GROUPS_EXCHANGE = "websocket.groups"
CONTROL_EXCHANGE = "websocket.control"  # kicks (docs/PROTOCOL.md)
WORK_QUEUES = ("websocket.connect", "websocket.receive", "websocket.disconnect")
# The event history (issue 14): every gateway reads this stream, bound to
# the groups exchange with '#', unless started with HISTORY_OFF.
HISTORY_STREAM = "websocket.history"
HISTORY_BINDING = "#"
HISTORY_OFF = "--history.enabled=false"
HISTORY_PREFETCH = "2000"  # history.prefetch's default

# What a sanitizer writes when it finds something (ASan, LSan, UBSan).
SANITIZER_REPORT = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
    r"SUMMARY: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)")

SAN_ENV = {
    "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
    "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
}


def _raise_nofile_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


_raise_nofile_limit()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it is truthy; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def binary(name):
    path = BUILD / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build it first (make, or make SAN=1)")
    return str(path)


def sanitizer_report(text):
    """The first lines of a sanitizer report found in text, or None."""
    m = SANITIZER_REPORT.search(text)
    if not m:
        return None
    start = text.rfind("\n", 0, max(0, m.start() - 2000)) + 1
    return text[start:m.start() + 4000]


# ---------------------------------------------------------------- tokens

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, secret=SECRET, header=None):
    """An HS256 JWT built here, independent of the C code (for expired,
    badly signed or otherwise unusual tokens)."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode())
                     + "." + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)


def jwt_for(user, secret=SECRET, ttl=3600, **claims):
    return make_jwt({"sub": str(user), "exp": int(time.time()) + ttl, **claims}, secret)


def mint_token(user, secret=SECRET, *extra):
    """A token from `chanctl token`, the tool backends and `make run` use."""
    out = run_tool(["token", "--user", str(user), f"--auth.secret={secret}", *extra])
    token = out.strip()
    assert token.count(".") == 2, f"chanctl token printed {out!r}, not a JWT"
    return token


def write_token_file(path, tokens):
    """Writes a dev static token file: one `TOKEN USER_ID` per line."""
    lines = ["# dev tokens: TOKEN USER_ID"]
    lines += [f"{tok} {user}" for tok, user in tokens.items()]
    Path(path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- tools

def run_tool(args, stdin=None, timeout=60):
    """Runs chanctl with args; fails the test on a non-zero exit or a
    sanitizer report, returns its stdout."""
    env = {**os.environ, **SAN_ENV}
    proc = subprocess.run([binary("chanctl"), *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env)
    report = sanitizer_report(proc.stderr)
    if report:
        pytest.fail(f"chanctl {args[0]}: sanitizer report:\n{report}")
    if proc.returncode != 0:
        pytest.fail(f"chanctl {' '.join(args)} exited {proc.returncode}\n"
                    f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout


# ---------------------------------------------------------------- broker

class Broker:
    """The private RabbitMQ node and rabbitmqctl against it."""

    def __init__(self, state_dir):
        self.dir = Path(state_dir)
        env = {}
        for line in (self.dir / "env").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
        self.port = int(env["AMQP_PORT"])

    def url(self, vhost):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def ctl(self, *args):
        proc = subprocess.run([str(BROKER_SH), "ctl", str(self.dir), *args],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            pytest.fail(f"rabbitmqctl {' '.join(args)} exited {proc.returncode}: "
                        f"{proc.stdout} {proc.stderr}")
        return proc.stdout

    def table(self, *args):
        """Rows of a rabbitmqctl list_* command, header row dropped."""
        out = self.ctl(*args, "--no-table-headers")
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    def group_bindings(self, vhost, group=None):
        """(queue, group) of every binding on the groups exchange; without a
        group, the gateways' control keys and the history stream's '#' are
        left out. A control key (wsgw!user.N, wsgw!gw.QUEUE: docs/PROTOCOL.md,
        "Kicking connections") as the group: its bindings on the control
        exchange, where gateways bind them."""
        rows = self.table("list_bindings", "-p", vhost,
                          "source_name", "destination_name", "routing_key")
        if group is not None and group.startswith("wsgw!"):
            return sorted((dest, key) for src, dest, key in rows
                          if src == CONTROL_EXCHANGE and key == group)
        return sorted((dest, key) for src, dest, key in rows
                      if src == GROUPS_EXCHANGE and (key == group if group is not None
                                                     else not key.startswith("wsgw!")
                                                     and key != HISTORY_BINDING))

    def consumers(self, vhost):
        """{queue name: consumer count} of the vhost's queues."""
        return {name: int(n) for name, n in self.table("list_queues", "-p", vhost,
                                                       "name", "consumers")}

    def history_consumers(self, vhost):
        """Gateway processes reading the history stream: channels with two
        consumers (the gateway's own queue and the stream) and the stream
        consumer's prefetch (history.prefetch, 2000). RabbitMQ 3.10 says it
        no better: list_consumers leaves out a stream's consumers, and
        list_queues keeps counting them after their connection closed."""
        rows = self.table("list_channels", "vhost", "consumer_count", "prefetch_count")
        return sum(1 for v, n, prefetch in rows
                   if v == vhost and n == "2" and prefetch == HISTORY_PREFETCH)

    def connections(self, vhost):
        """{client port: bytes the broker sent} for the vhost's connections."""
        rows = self.table("list_connections", "vhost", "peer_port", "send_oct")
        return {int(port): int(sent) for v, port, sent in rows if v == vhost}


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    state = os.environ.get("WSGW_BROKER_DIR")
    if state and (Path(state) / "env").exists():
        yield Broker(state)
        return
    state = tmp_path_factory.mktemp("broker")
    subprocess.run([str(BROKER_SH), "start", str(state)], check=True)
    try:
        yield Broker(state)
    finally:
        subprocess.run([str(BROKER_SH), "stop", str(state)], check=False)


@pytest.fixture(scope="module")
def vhost(broker, request):
    """A fresh vhost for the test module: its queues, exchange and bindings
    are its own."""
    name = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", request.module.__name__)[-40:] \
        + f"_{os.getpid()}"
    broker.ctl("add_vhost", name)
    broker.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    broker.ctl("delete_vhost", name)


# ---------------------------------------------------------------- daemons

def _log_dir(request, tmp_path):
    base = os.environ.get("WSGW_LOG_DIR")
    if not base:
        return tmp_path
    d = Path(base) / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.nodeid)[-120:]
    d.mkdir(parents=True, exist_ok=True)
    return d


class Daemon:
    """One gatewayd or workerd subprocess; stdout and stderr go to a file."""

    def __init__(self, name, argv, log_path):
        self.name = name
        self.argv = argv
        self.log_path = Path(log_path)
        self.expected_exit = False
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **SAN_ENV})

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace")

    def kill(self, sig=signal.SIGKILL):
        """Kills on purpose: the exit is not an error."""
        self.expected_exit = True
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL after timeout. Returns a problem or None."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                return f"{self.name} did not stop within {timeout}s of SIGTERM"
            rc = self.proc.returncode
            self._log.close()
            if rc != 0:  # 0: it shut down cleanly (and LeakSanitizer ran)
                return f"{self.name} exited {rc} on SIGTERM"
            return None
        self._log.close()
        rc = self.proc.returncode
        if not self.expected_exit:
            return f"{self.name} exited on its own with status {rc} during the test"
        return None

    def tail(self, n=60):
        lines = self.log().splitlines()
        return "\n".join(lines[-n:])


# Every test client connects from 127.0.0.1, where a deployment has one
# address per user: the per-address limits are off unless a test names one
# of them or asks for the defaults (address_limits=True, as
# test_attack_per_address.py does).
ONE_ADDRESS_FLAGS = ("--gateway.max_per_client=0", "--gateway.max_handshakes_per_client=0")


class Gateway(Daemon):
    def __init__(self, name, log_path, amqp_url, extra, address_limits=False):
        names = ("--gateway.max_per_client=", "--gateway.max_handshakes_per_client=")
        if not address_limits and not any(f.startswith(names) for f in extra):
            extra = (*ONE_ADDRESS_FLAGS, *extra)
        self.port = free_port()
        self.metrics_port = free_port()  # /metrics, /healthz, /readyz
        argv = [binary("gatewayd"), f"--gateway.listen=127.0.0.1:{self.port}",
                f"--gateway.metrics_listen=127.0.0.1:{self.metrics_port}",
                f"--amqp.url={amqp_url}", "--gateway.connect_timeout=5s",
                # One process unless a test asks for more (test_processes.py):
                # the default, one per core, would differ between machines.
                "--gateway.processes=1",
                f"--log.level={LOG_LEVEL}", *extra]
        super().__init__(name, argv, log_path)

    def url(self, path="/websocket/", token=None, query=None):
        q = query if query is not None else (f"token={token}" if token else "")
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?{q}" if q else "")

    def _status(self, request, timeout):
        """Status code of the answer to one raw HTTP request, or None when
        nothing answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.sendall(request.encode())
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return None
        m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        return int(m.group(1)) if m else None

    def http_status(self, path="/", timeout=2.0):
        """Status code of a plain HTTP GET (no upgrade)."""
        return self._status(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Connection: close\r\n\r\n", timeout)

    def upgrade_status(self, timeout=10.0):
        """Status of a websocket handshake with a valid token: 101 once a
        worker accepted it."""
        key = base64.b64encode(os.urandom(16)).decode()
        return self._status(f"GET /websocket/?token={jwt_for(1)} HTTP/1.1\r\n"
                            "Host: 127.0.0.1\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n", timeout)


class Worker(Daemon):
    def __init__(self, name, log_path, amqp_url, extra):
        self.metrics_port = free_port()  # /metrics, /healthz, /readyz
        argv = [binary("workerd"), f"--amqp.url={amqp_url}", f"--auth.secret={SECRET}",
                f"--worker.metrics_listen=127.0.0.1:{self.metrics_port}",
                f"--log.level={LOG_LEVEL}", *extra]
        super().__init__(name, argv, log_path)

    def amqp_ports(self, broker_port):
        """Local ports of this process's TCP connections to the broker."""
        inodes = set()
        fd_dir = Path(f"/proc/{self.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                local, remote, inode = f[1], f[2], f[9]
                if inode in inodes and int(remote.split(":")[1], 16) == broker_port:
                    ports.add(int(local.split(":")[1], 16))
        return ports


# ---- systemd's side of sd_notify ---------------------------------------------

class NotifySocket:
    """What systemd listens on: a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, "KEY=value") in arrival order

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            now = time.monotonic()
            self.messages += [(now, line) for line in data.decode().split("\n") if line]

    def wait_for(self, line, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(m == line for _, m in self.messages):
                return
            self.drain(0.1)
        pytest.fail(f"no {line} from {what} within {timeout}s; got {self.messages}")

    def count(self, line):
        return sum(1 for _, m in self.messages if m == line)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    ns = NotifySocket(tmp_path / "notify.sock")
    # Daemons started while these are set see systemd's environment:
    # a 1 s watchdog means a ping every 0.5 s.
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    yield ns
    ns.close()


class Cluster:
    """The daemons of one test, all on one vhost. Everything started here is
    stopped at the end of the test, and its log checked for sanitizer
    reports."""

    def __init__(self, broker, vhost, log_dir):
        self.broker = broker
        self.vhost = vhost
        self.amqp_url = broker.url(vhost)
        self.log_dir = log_dir
        self.daemons = []
        self._n = itertools.count(1)

    def gateway(self, *extra, ready=True, address_limits=False):
        n = next(self._n)
        gw = Gateway(f"gatewayd#{n}", self.log_dir / f"gatewayd-{n}.log", self.amqp_url, extra,
                     address_limits)
        self.daemons.append(gw)
        if ready:
            self.wait_gateway(gw)
        return gw

    def worker(self, *extra, ready=True):
        n = next(self._n)
        before = self.broker.consumers(self.vhost).get("websocket.connect", 0) if ready else 0
        wk = Worker(f"workerd#{n}", self.log_dir / f"workerd-{n}.log", self.amqp_url, extra)
        self.daemons.append(wk)
        if ready:
            self.wait_workers(before + 1, wk)
        return wk

    def wait_gateway(self, gw, timeout=20):
        """Ready = the port accepts and an HTTP request gets an answer, then:
        with a worker running, a websocket handshake is accepted; without
        one, the gateway's own queue is on the broker."""
        def answers():
            if not gw.alive():
                pytest.fail(f"{gw.name} exited with {gw.proc.returncode}:\n{gw.tail()}")
            return gw.http_status("/") is not None
        wait_until(answers, timeout, f"{gw.name} to answer HTTP on port {gw.port}")
        if any(isinstance(d, Worker) and d.alive() for d in self.daemons):
            wait_until(lambda: gw.upgrade_status() == 101, timeout,
                       f"{gw.name} to accept a websocket handshake", interval=0.1)
        else:
            wait_until(lambda: self._gateway_queue_count() >= self._gateway_count(),
                       timeout, f"{gw.name} to declare its queue on the broker",
                       interval=0.2)

    def _gateway_count(self):
        return sum(isinstance(d, Gateway) and d.alive() for d in self.daemons)

    def _gateway_queue_count(self):
        """Server-named exclusive queues with a consumer: live gateways."""
        rows = self.broker.table("list_queues", "-p", self.vhost, "name", "exclusive",
                                 "consumers")
        return sum(1 for name, excl, consumers in rows
                   if name.startswith("amq.gen-") and excl == "true" and int(consumers) > 0)

    def wait_workers(self, count, wk=None, timeout=20):
        """Until count consumers read each websocket.* queue."""
        def consuming():
            if wk is not None and not wk.alive():
                pytest.fail(f"{wk.name} exited with {wk.proc.returncode}:\n{wk.tail()}")
            consumers = self.broker.consumers(self.vhost)
            return all(consumers.get(q, 0) >= count for q in WORK_QUEUES)
        wait_until(consuming, timeout, f"{count} worker(s) consuming {', '.join(WORK_QUEUES)}",
                   interval=0.2)

    def stop(self):
        problems = []
        for d in reversed(self.daemons):
            try:
                problem = d.stop()
                if problem:
                    problems.append(problem + "\n" + d.tail())
                report = sanitizer_report(d.log())
                if report:
                    problems.append(f"{d.name} wrote a sanitizer report ({d.log_path}):\n{report}")
            except Exception as e:  # stop the others all the same
                if d.alive():
                    d.proc.kill()
                problems.append(f"{d.name}: stopping it failed: {e!r}")
        return problems

    def print_logs(self):
        for d in self.daemons:
            print(f"\n---- {d.name}: {' '.join(d.argv)}\n---- log {d.log_path} (last 60 lines)")
            print(d.tail())

    # -- emitting
    def emit(self, group, text):
        """One event through `chanctl emit GROUP JSON`."""
        run_tool(["emit", group, text, f"--amqp.url={self.amqp_url}"])

    def emit_stdin(self, group, lines):
        """Events through `chanctl emit --stdin GROUP`, one per line."""
        run_tool(["emit", "--stdin", group, f"--amqp.url={self.amqp_url}"],
                 stdin="".join(line + "\n" for line in lines))

    def pika_emitter(self):
        return PikaEmitter(self.amqp_url)


class PikaEmitter:
    """A Python backend emitting as docs/PROTOCOL.md tells it to: with
    publisher confirms, unless confirm=False (a test that emits while part
    of a cluster is cut off, where the broker nacks events it could not
    copy to the cut-off gateway's queue though every other gateway got
    them)."""

    def __init__(self, url, confirm=True):
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()
        if confirm:
            self.ch.confirm_delivery()  # each publish returns once the broker has it

    def emit(self, group, text):
        self.ch.basic_publish(exchange=GROUPS_EXCHANGE, routing_key=group,
                              body=text.encode(),
                              properties=pika.BasicProperties(content_type="application/json",
                                                              delivery_mode=1))

    def close(self):
        self.conn.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@contextlib.contextmanager
def running(c, request):
    """Yields the Cluster c; at the end stops every daemon it started, prints
    their logs when the test failed or a daemon misbehaved, and fails the
    test on a problem at stop (a sanitizer report, a non-zero exit)."""
    try:
        yield c
    finally:
        problems = c.stop()
        call = getattr(request.node, "rep_call", None)
        if problems or (call is not None and call.failed):
            c.print_logs()
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def cluster(broker, vhost, request, tmp_path):
    """Start daemons with cluster.gateway() / cluster.worker()."""
    with running(Cluster(broker, vhost, _log_dir(request, tmp_path)), request) as c:
        yield c


@pytest.fixture
def stack(cluster):
    """One workerd and one gatewayd, ready."""
    cluster.worker(ready=False)
    cluster.gw = cluster.gateway()  # ready once a handshake is accepted
    return cluster


# ---------------------------------------------------------------- clients

def run(coro, timeout=120):
    """Runs a test's coroutine with an overall deadline."""
    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"test coroutine did not finish within {timeout}s")
    return asyncio.run(bounded())


def connect(url, headers=None, **kw):
    """websockets.connect with the suite's defaults: no client pings, no
    size limit, a bounded handshake."""
    kw.setdefault("open_timeout", 15)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    return websockets.connect(url, extra_headers=headers or {}, **kw)


async def recv_text(ws, timeout=10, what="a message"):
    try:
        msg = await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        pytest.fail(f"no message within {timeout}s while waiting for {what}")
    except websockets.ConnectionClosed as e:
        pytest.fail(f"connection closed ({e.code} {e.reason!r}) while waiting for {what}")
    assert isinstance(msg, str), f"expected a text message, got binary {msg!r}"
    return msg


async def recv_json(ws, timeout=10, what="a JSON message"):
    text = await recv_text(ws, timeout, what)
    try:
        return json.loads(text)
    except ValueError:
        pytest.fail(f"expected JSON while waiting for {what}, got {text!r}")


async def open_client(gw, user=7, token=None, path="/websocket/", **kw):
    """Connects with a valid token and reads the accept message."""
    ws = await connect(gw.url(path, token or jwt_for(user)), **kw)
    accept = await recv_json(ws, what="the accept message")
    assert accept == {"accept": True, "user": user}, accept
    return ws


async def subscribe(ws, groups, xrftoken=None, timeout=10):
    """Sends a subscription request. Returns (errors, reply): the error
    messages that came before the groups_* reply, and that reply."""
    req = {"groups": groups}
    if xrftoken is not None:
        req["xrftoken"] = xrftoken
    await ws.send(json.dumps(req))
    errors = []
    while True:
        msg = await recv_json(ws, timeout, f"the reply to {req}")
        if "groups_current" in msg:
            return errors, msg
        errors.append(msg)


async def send_request(ws, text, timeout=10):
    """Sends raw text and returns the next message (an error reply)."""
    await ws.send(text)
    return await recv_json(ws, timeout, f"the reply to {text!r}")


async def handshake_status(url, headers=None):
    """The HTTP status a refused handshake got (websockets raises
    InvalidStatusCode); fails the test when the upgrade succeeds."""
    try:
        ws = await connect(url, headers)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    pytest.fail(f"the handshake to {url} succeeded; expected a refusal")


async def nothing_arrives(ws, within=0.5):
    """Asserts no message arrives within a short, bounded window."""
    try:
        msg = await asyncio.wait_for(ws.recv(), within)
    except asyncio.TimeoutError:
        return
    pytest.fail(f"unexpected message: {msg!r}")


# The test application (tests/app, Django) as a real server: the fixture
# django_app (tests/integration/djangoapp.py).
from djangoapp import DjangoApp, django_app, django_app_db  # noqa: E402,F401
