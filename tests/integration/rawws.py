"""A raw-socket websocket client for the conformance and edge tests.

Owns: building client frames byte by byte (masking, opcodes, RSV bits,
FIN, 7/16/64-bit lengths), writing them whole, in chunks or one byte at a
time, sending the first frame in the same TCP write as the upgrade request,
and reading the server's frames strictly (RFC 6455 section 5: a server
frame is never masked, has no RSV bit, uses a known opcode and the shortest
length encoding; a control frame is final and at most 125 bytes; a close
payload is empty or a valid code plus UTF-8). With permessage-deflate
negotiated (RFC 7692) RSV1 is allowed on the first frame of a data message
only; such a message is inflated alone when the server answered
server_no_context_takeover (so each must read alone), else with the
connection's one inflater, kept across messages as RFC 7692 7.2.2 says
(deflate/inflate below).

Nothing here uses the websocket library under test: every byte the server
sees is built below, and every byte it answers is checked below.
"""

import base64
import hashlib
import os
import re
import socket
import struct
import time
import zlib

import pytest

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CONTROL = (CLOSE, PING, PONG)
KNOWN = (CONT, TEXT, BINARY, CLOSE, PING, PONG)
RSV1 = 4  # the rsv argument of frame(): "compressed" under permessage-deflate

# RFC 7692 7.2.1: the end of every flushed message, removed by the sender.
DEFLATE_TAIL = b"\x00\x00\xff\xff"


def deflate(data, level=6, final=False):
    """data as one permessage-deflate message, compressed alone (a fresh
    raw deflate stream): sync-flushed with its 4-octet tail removed, or
    ended by a final block (BFINAL, RFC 7692 7.2.3.4) with final=True."""
    if isinstance(data, str):
        data = data.encode()
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    if final:
        return c.compress(data) + c.flush(zlib.Z_FINISH)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(DEFLATE_TAIL)
    return out[:-4]


def inflate(payload):
    """One compressed message, inflated with a fresh raw inflater (no
    context from earlier messages); fails on data zlib cannot read."""
    d = zlib.decompressobj(-15)
    out = d.decompress(payload + DEFLATE_TAIL)
    if d.unused_data not in (b"", DEFLATE_TAIL):  # bytes after a final block
        raise ProtocolViolation(f"compressed message with {d.unused_data!r} after its end")
    return out


class ProtocolViolation(AssertionError):
    """The server sent something RFC 6455 forbids."""


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    def close_code(self):
        """(code, reason) of a close frame; (None, "") when it has no body."""
        if len(self.payload) < 2:
            return None, ""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:].decode()

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return f"Frame(fin={self.fin}, rsv={self.rsv}, opcode={self.opcode:#x}, payload={p!r})"


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, length_bits=None):
    """One client frame. length_bits forces the 7, 16 or 64-bit length form
    (default: the shortest, as RFC 6455 requires)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
    bits = length_bits or (7 if n <= 125 else 16 if n <= 0xFFFF else 64)
    m = 0x80 if mask else 0
    if bits == 7:
        assert n <= 125
        head += bytes([m | n])
    elif bits == 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + xor_mask(payload, key)


def xor_mask(data, key):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def upgrade_request(path, host="127.0.0.1", headers=None, key=None):
    """A valid upgrade request head (bytes) and the key it carries."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    # a dict, or (name, value) pairs for a header sent more than once
    for name, value in (headers.items() if isinstance(headers, dict) else headers or ()):
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class HttpResponse:
    def __init__(self, status, headers, body, fields=()):
        self.status, self.headers, self.body = status, headers, body
        self.fields = list(fields)  # (lower-case name, value) of every line, in order

    def header(self, name):
        return self.headers.get(name.lower())

    def header_all(self, name):
        """Every value of a header sent once or more, in order."""
        return [v for n, v in self.fields if n == name.lower()]


class RawConn:
    """One TCP connection to the gateway, read with deadlines."""

    def __init__(self, port, timeout=10.0, rcvbuf=None, mss=None):
        """rcvbuf: a small receive buffer (set before connecting, so the
        advertised window stays small) for slow-reader tests. mss: the
        segment size this end announces; a small one keeps the server's
        send buffer small too (Linux sizes it from the segment size: with
        loopback's 64 KiB segments it takes megabytes a slow reader never
        reads)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.pmd = False  # permessage-deflate negotiated: RSV1 allowed (RawWS)

    # -- writing
    def send(self, data, chunk=None, pause=0.0):
        """Writes data at once, or in pieces of `chunk` bytes; `pause` spaces
        the pieces out so that the server reads them separately (pacing, not
        synchronisation: nothing waits on it)."""
        if not chunk:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i:i + chunk])
            if pause:
                time.sleep(pause)

    def send_frame(self, *args, **kw):
        chunk = kw.pop("chunk", None)
        pause = kw.pop("pause", 0.0)
        self.send(frame(*args, **kw), chunk, pause)

    def try_send(self, data):
        """Writes what the peer may already have closed: True if it went."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    # -- reading
    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from the server in time") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_http(self, timeout=None):
        """One HTTP response head (and its Content-Length body)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0] + " ")
        if not m:
            raise ProtocolViolation(f"not an HTTP/1.1 status line: {lines[0]!r}")
        headers, fields = {}, []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            fields.append((name.strip().lower(), value.strip()))
        body = b""
        if "content-length" in headers:
            body = self.read_exact(int(headers["content-length"]), deadline)
        return HttpResponse(int(m.group(1)), headers, body, fields)

    def at_eof(self, timeout=5.0):
        """True once the server closed its side (FIN or reset) within timeout;
        bytes still arriving before that are discarded."""
        deadline = time.monotonic() + timeout
        self.buf = b""
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                return True
            except TimeoutError:
                return False
            self.buf = b""

    def read_frame(self, timeout=None):
        """One server frame, checked strictly."""
        deadline = time.monotonic() + (timeout or self.timeout)
        b0, b1 = self.read_exact(2, deadline)
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF
        if b1 & 0x80:
            raise ProtocolViolation("the server masked a frame")
        if rsv and not (self.pmd and rsv == RSV1 and opcode in (TEXT, BINARY)):
            # RFC 7692 6: RSV1 on a data message's first frame, nowhere else
            raise ProtocolViolation(f"the server set RSV bits {rsv} on opcode {opcode:#x}"
                                    + ("" if self.pmd else " (no extension negotiated)"))
        if opcode not in KNOWN:
            raise ProtocolViolation(f"the server used reserved opcode {opcode:#x}")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
            if n <= 125:
                raise ProtocolViolation("16-bit length for a short payload")
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
            if n <= 0xFFFF or n >> 63:
                raise ProtocolViolation("64-bit length for a short payload")
        if opcode in CONTROL and (n > 125 or not fin):
            raise ProtocolViolation("control frame fragmented or over 125 bytes")
        f = Frame(fin, rsv, opcode, self.read_exact(n, deadline))
        if opcode == CLOSE:
            if len(f.payload) == 1:
                raise ProtocolViolation("close frame with a 1-byte body")
            if len(f.payload) >= 2:
                code = struct.unpack("!H", f.payload[:2])[0]
                if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
                    raise ProtocolViolation(f"the server sent close code {code}")
                try:
                    f.payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolViolation("close reason is not UTF-8") from None
        return f

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RawWS(RawConn):
    """A websocket after a successful upgrade."""

    def __init__(self, port, path, headers=None, first=b"", timeout=10.0, rcvbuf=None,
                 mss=None):
        """Connects and upgrades; `first` (already framed bytes) goes in the
        same write as the request head."""
        super().__init__(port, timeout, rcvbuf, mss)
        request, key = upgrade_request(path, headers=headers)
        self.send(request + first)
        self.response = self.read_http()
        if self.response.status != 101:
            raise AssertionError(f"upgrade refused: {self.response.status}")
        if self.response.header("sec-websocket-accept") != accept_for(key):
            raise ProtocolViolation("wrong Sec-WebSocket-Accept")
        ext = self.response.header_all("sec-websocket-extensions")
        self.pmd = any(v.split(";")[0].strip() == "permessage-deflate" for v in ext)
        # the server compresses every message alone only when it said so
        self.pmd_alone = any("server_no_context_takeover" in v for v in ext)
        self.inflater = zlib.decompressobj(-15)  # the kept window otherwise
        self.messages_in = 0
        self.last_compressed = False  # the last recv_message's had RSV1
        self.last_wire = b""          # ... and its payload as it came

    def recv_message(self, timeout=None):
        """The next data message (opcode, payload), reassembled (and
        inflated when it came compressed: last_compressed tells, last_wire
        keeps the payload as sent); a control frame in between fails, so
        tests see every ping/pong they expect."""
        f = self.read_frame(timeout)
        if f.opcode in CONTROL:
            raise AssertionError(f"expected a data frame, got {f!r}")
        if f.opcode == CONT:
            raise ProtocolViolation("the server started a message with a continuation")
        opcode, data, compressed = f.opcode, f.payload, bool(f.rsv & RSV1)
        while not f.fin:
            f = self.read_frame(timeout)
            if f.opcode != CONT:
                raise ProtocolViolation(f"expected a continuation, got {f!r}")
            data += f.payload
        self.last_compressed, self.last_wire = compressed, data
        if compressed:
            data = inflate(data) if self.pmd_alone else self.inflate_kept(data)
        if opcode == TEXT:
            data.decode("utf-8")  # a server must send valid UTF-8
        return opcode, data

    def inflate_kept(self, payload):
        """A compressed message through the connection's kept inflater: it
        may refer back into what earlier ones decompressed to."""
        out = self.inflater.decompress(payload + DEFLATE_TAIL)
        if self.inflater.eof:  # a final block would end the connection's stream
            raise ProtocolViolation("a final block with the server's context kept")
        return out

    def echo(self, opcode, payload, timeout=None):
        """Sends one message and returns what came back."""
        self.send_frame(opcode, payload)
        return self.recv_message(timeout)

    def expect_close(self, timeout=None, skip_data=False):
        """Reads up to the server's close frame; returns (code, reason).
        With skip_data, data messages before it are ignored (echoes of what
        was sent before the violation)."""
        while True:
            f = self.read_frame(timeout)
            if f.opcode == CLOSE:
                return f.close_code()
            if not skip_data or f.opcode in (PING, PONG):
                raise AssertionError(f"expected a close frame, got {f!r}")

    def finish_close(self, code=1000, timeout=5.0):
        """Answers the server's close and asserts it then closes the TCP
        connection within timeout."""
        self.try_send(frame(CLOSE, close_payload(code)))
        return self.at_eof(timeout)


def ws_path(path="/websocket/echo", token=None):
    return f"{path}?token={token}" if token else path


# The echo route with room for Autobahn's category 9 (16 MiB messages, as
# fast as the client sends): what the conformance modules run against. The
# echo_* limits apply to /websocket/echo only; the real route keeps its own.
ECHO_GATEWAY_ARGS = ("--gateway.echo=true", "--gateway.echo_max_message=16MiB",
                     "--gateway.echo_max_send_queue=64MiB",
                     "--gateway.echo_max_rate=100000", "--gateway.echo_max_pending=1000")
ECHO_WORKER_ARGS = ("--worker.echo=true",)


# ---------------------------------------------------------------- helpers

def http_exchange(port, request, timeout=5.0):
    """Sends raw request bytes on a new connection; returns the response and
    the connection (to check what follows, e.g. EOF)."""
    conn = RawConn(port, timeout)
    conn.send(request)
    return conn.read_http(timeout), conn


def scrape(port, timeout=5.0):
    """{(name, labels-text): value} from a Prometheus /metrics endpoint, or
    None when nothing answers there."""
    try:
        resp, conn = http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                         b"Connection: close\r\n\r\n", timeout)
        conn.close()
    except (OSError, EOFError, TimeoutError, ProtocolViolation):
        return None
    if resp.status != 200:
        return None
    samples = {}
    for line in resp.body.decode().splitlines():
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples


def metric(samples, name, labels=""):
    """One sample's value (0 when absent); labels as written, e.g.
    'result="http_error"'."""
    return samples.get((name, "{" + labels + "}" if labels else ""), 0.0)


def module_cluster(broker, vhost, request, tmp_path_factory):
    """A conftest.Cluster for a whole test module (daemons started once,
    stopped, and checked for sanitizer reports, at the module's end)."""
    from conftest import Cluster  # the suite's harness, not a library
    base = os.environ.get("WSGW_LOG_DIR")
    if base:
        log_dir = os.path.join(base, re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.nodeid)[-120:])
        os.makedirs(log_dir, exist_ok=True)
    else:
        log_dir = str(tmp_path_factory.mktemp("daemons"))
    from pathlib import Path
    return Cluster(broker, vhost, Path(log_dir))


def finish_module_cluster(cluster):
    import pytest
    problems = cluster.stop()
    if problems:
        cluster.print_logs()
        pytest.fail("\n\n".join(problems), pytrace=False)


# ---- shared by the conformance modules (test_conformance_*.py) -----------

@pytest.fixture(scope="module")
def gw(broker, vhost, request, tmp_path_factory):
    """A gateway and a worker with the echo route on, for the module."""
    c = module_cluster(broker, vhost, request, tmp_path_factory)
    c.worker(*ECHO_WORKER_ARGS, ready=False)
    yield c.gateway(*ECHO_GATEWAY_ARGS)
    finish_module_cluster(c)


def open_ws(gw, first=b"", timeout=10.0):
    """A raw connection to the echo route; `first` rides in the same TCP
    write as the upgrade request."""
    from conftest import jwt_for
    return RawWS(gw.port, ws_path(token=jwt_for(1)), first=first, timeout=timeout)


def assert_fails_with(ws, code):
    """The server closes with `code`, then closes the TCP connection once
    the close is answered."""
    assert ws.expect_close(skip_data=True)[0] == code
    assert ws.finish_close(), "the server kept the TCP connection open"
