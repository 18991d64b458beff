"""The HTTP edge of the gateway: every request head that is not a valid
websocket upgrade gets a complete HTTP error response (status line,
Content-Length body, Connection: close), then the socket is closed, and the
refusal is counted (/metrics) and logged (event=http_error status=N)."""

import re
import select
import time

import pytest

from conftest import jwt_for, wait_until
from rawws import (CLOSE, TEXT, RawConn, RawWS, finish_module_cluster, frame, metric,
                   module_cluster, scrape, upgrade_request)

MAX_HEAD = 2048
MAX_HEADERS = 12
HANDSHAKE_TIMEOUT_S = 1.0
ORIGINS = "https://awx.example.com,https://ops.example.com"
HANDSHAKES = "wsgw_gateway_handshakes_total"


@pytest.fixture(scope="module")
def gw(broker, vhost, request, tmp_path_factory):
    c = module_cluster(broker, vhost, request, tmp_path_factory)
    c.worker(ready=False)
    yield c.gateway(f"--gateway.max_head={MAX_HEAD}", f"--gateway.max_headers={MAX_HEADERS}",
                    f"--gateway.handshake_timeout={int(HANDSHAKE_TIMEOUT_S * 1000)}ms",
                    f"--gateway.allowed_origins={ORIGINS}")
    finish_module_cluster(c)


def path(token=None):
    return f"/websocket/?token={token or jwt_for(7)}"


def request_head(headers=None, method="GET", target=None, extra_lines=()):
    """An upgrade request with changes: headers maps a name to a value, or
    to None to leave that header out."""
    base = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    base.update(headers or {})
    lines = [f"{method} {target or path()} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in base.items() if v is not None]
    lines += list(extra_lines)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Counted:
    """Counter and log-line deltas around one refused request."""

    def __init__(self, gw, result, log_event):
        self.gw, self.result, self.log_event = gw, result, log_event

    def __enter__(self):
        self.metrics_before = self._metrics()
        self.log_before = self._lines()
        return self

    def _lines(self):
        return len(re.findall(self.log_event, self.gw.log())) if self.log_event else 0

    def _metrics(self):
        port = getattr(self.gw, "metrics_port", None)
        return scrape(port) if port else None

    def __exit__(self, exc_type, *rest):
        if exc_type:
            return False
        if self.metrics_before is not None:
            label = f'result="{self.result}"'
            wait_until(lambda: metric(self._metrics() or {}, HANDSHAKES, label)
                       == metric(self.metrics_before, HANDSHAKES, label) + 1,
                       5, f"{HANDSHAKES}{{{label}}} to count the refusal")
        if self.log_event:
            wait_until(lambda: self._lines() == self.log_before + 1,
                       5, f"a log line matching {self.log_event!r}")
        return False


def refused(gw, data, status, result="http_error", log_event="default"):
    """Sends data; asserts a complete `status` response, Connection: close,
    EOF after it, one more counted refusal and one more log line."""
    if log_event == "default":
        log_event = rf"event=http_error id=\d+ status={status}\b"
    with Counted(gw, result, log_event), RawConn(gw.port) as conn:
        conn.send(data)
        resp = conn.read_http()
        assert resp.status == status, resp.status
        assert resp.header("connection") == "close"
        assert int(resp.header("content-length")) == len(resp.body)
        assert conn.at_eof(), "the socket stayed open after the error response"
        return resp


def upgraded(gw, data):
    with RawConn(gw.port) as conn:
        conn.send(data)
        return conn.read_http().status


# ---- request head size and count -----------------------------------------

def test_head_with_exactly_max_headers_is_accepted(gw):
    extra = {f"X-Extra-{i}": "v" for i in range(MAX_HEADERS - 5)}  # 5 are needed
    assert upgraded(gw, request_head(extra)) == 101


def test_one_header_over_max_headers_is_431(gw):
    extra = {f"X-Extra-{i}": "v" for i in range(MAX_HEADERS - 4)}
    refused(gw, request_head(extra), 431)


def test_head_of_exactly_max_head_bytes_is_accepted(gw):
    head = request_head({"X-Pad": ""})
    head = request_head({"X-Pad": "p" * (MAX_HEAD - len(head))})
    assert len(head) == MAX_HEAD
    assert upgraded(gw, head) == 101


def test_header_value_larger_than_max_head_is_431(gw):
    refused(gw, request_head({"X-Big": "b" * MAX_HEAD}), 431)


def test_huge_url_is_431(gw):
    refused(gw, request_head(target="/websocket/?" + "a" * (MAX_HEAD + 1)), 431)


def test_huge_method_is_400(gw):
    refused(gw, b"X" * (MAX_HEAD * 2) + b" / HTTP/1.1\r\n\r\n", 400)


def test_head_trickled_past_max_head_without_ending_is_431(gw):
    data = b"GET /websocket/ HTTP/1.1\r\nX-Slow: " + b"s" * (MAX_HEAD + 10)
    with Counted(gw, "http_error", r"event=http_error id=\d+ status=431"), \
            RawConn(gw.port) as conn:
        conn.send(data, chunk=512, pause=0.01)
        resp = conn.read_http()
        assert resp.status == 431 and resp.header("connection") == "close"
        assert conn.at_eof()


# ---- upgrade headers -----------------------------------------------------

def test_missing_key_is_400(gw):
    refused(gw, request_head({"Sec-WebSocket-Key": None}), 400)


@pytest.mark.parametrize("key", ["short==", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=",
                                 "dGhlIHNhbXBsZSBub25j!Q==", "dGhlIHNhbXBsZSBub25jZQ==AA"])
def test_invalid_key_is_400(gw, key):
    refused(gw, request_head({"Sec-WebSocket-Key": key}), 400)


def test_missing_version_is_426_naming_version_13(gw):
    resp = refused(gw, request_head({"Sec-WebSocket-Version": None}), 426)
    assert resp.header("sec-websocket-version") == "13"


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", ""])
def test_other_version_is_426_naming_version_13(gw, version):
    resp = refused(gw, request_head({"Sec-WebSocket-Version": version}), 426)
    assert resp.header("sec-websocket-version") == "13"


@pytest.mark.parametrize("missing", ["Upgrade", "Connection"])
def test_missing_upgrade_header_is_400(gw, missing):
    refused(gw, request_head({missing: None}), 400)


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "OPTIONS", "DELETE"])
def test_method_other_than_get_is_405_allowing_get(gw, method):
    resp = refused(gw, request_head(method=method, extra_lines=["Content-Length: 0"]), 405)
    assert resp.header("allow") == "GET"


def test_other_path_is_404(gw):
    refused(gw, request_head(target="/api/v2/"), 404)


def test_http_1_0_request_without_upgrade_headers_is_400(gw):
    refused(gw, b"GET /websocket/ HTTP/1.0\r\n\r\n", 400)


# ---- not HTTP/1.1 at all -------------------------------------------------

def test_http2_preface_is_400(gw):
    refused(gw, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400)


def test_tls_client_hello_is_400(gw):
    refused(gw, bytes.fromhex("16030100a5010000a10303") + bytes(range(64)), 400)


@pytest.mark.parametrize("data", [b"\x00\x01\x02\xff\r\n\r\n", b"hello\r\n\r\n",
                                  b"GET /websocket/ HTTP/1.1\nHost: x\n\n",
                                  b"GET /websocket/ HTTP/1.1\r\nHost : x\r\n\r\n"],
                         ids=["binary", "word", "bare-lf", "space-before-colon"])
def test_garbage_is_400(gw, data):
    refused(gw, data, 400)


# ---- after the head ------------------------------------------------------

def test_garbage_pipelined_after_the_upgrade_is_a_websocket_protocol_error(gw):
    # whatever follows the head is websocket data: 'G' (0x47) has RSV bits set
    head, _ = upgrade_request(path())
    with RawConn(gw.port) as conn:
        conn.send(head + b"GET /again HTTP/1.1\r\n\r\n")
        assert conn.read_http().status == 101
        greeting = conn.read_frame()
        assert greeting.opcode == TEXT  # {"accept": true, ...}
        f = conn.read_frame()
        assert f.opcode == CLOSE and f.close_code()[0] == 1002
        assert conn.at_eof()


def test_frame_pipelined_after_the_upgrade_is_processed(gw):
    ws = RawWS(gw.port, path(), first=frame(TEXT, b"{}"))
    with ws:
        assert ws.recv_message()[1] == b'{"accept": true, "user": 7}'
        assert ws.recv_message()[1] == b'{"error": "groups must be an object"}'


# ---- slowloris -------------------------------------------------------------

def test_head_not_complete_within_handshake_timeout_is_408(gw):
    with Counted(gw, "timeout", None), RawConn(gw.port) as conn:
        start = time.monotonic()
        conn.send(b"GET /websocket/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        # one byte every 100 ms does not extend the deadline
        while not select.select([conn.sock], [], [], 0.1)[0]:
            assert time.monotonic() - start < HANDSHAKE_TIMEOUT_S + 3, "no 408 in time"
            conn.try_send(b"z")
        resp = conn.read_http()
        elapsed = time.monotonic() - start
        assert resp.status == 408 and resp.header("connection") == "close"
        assert HANDSHAKE_TIMEOUT_S - 0.05 <= elapsed < HANDSHAKE_TIMEOUT_S + 2, elapsed
        assert conn.at_eof()


def test_silent_client_is_408_after_handshake_timeout(gw):
    with RawConn(gw.port) as conn:
        resp = conn.read_http(timeout=HANDSHAKE_TIMEOUT_S + 3)
        assert resp.status == 408
        assert conn.at_eof()


# ---- Origin allow-list ---------------------------------------------------

@pytest.mark.parametrize("origin", ["https://awx.example.com", "https://ops.example.com"])
def test_listed_origin_is_accepted(gw, origin):
    assert upgraded(gw, request_head({"Origin": origin})) == 101


def test_absent_origin_is_accepted(gw):
    # non-browser clients send none
    assert upgraded(gw, request_head()) == 101


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://awx.example.com",
                                    "https://awx.example.com.evil.net", "null", ""])
def test_unlisted_origin_is_403(gw, origin):
    refused(gw, request_head({"Origin": origin}), 403, result="origin_refused",
            log_event=r"event=origin_refused id=\d+")
