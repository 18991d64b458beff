"""wss:// served by gatewayd itself (gateway.tls_cert / tls_key): a real
TLS client (Python's ssl + websockets) subscribes and receives events, and
a client that breaks the TLS handshake disturbs no one else."""

import asyncio
import json
import socket
import ssl
import subprocess

import pytest
import websockets

from conftest import jwt_for, recv_json, run, subscribe, wait_until


@pytest.fixture
def certs(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def _tls_handshake_ok(port, ctx):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.version()
    except (OSError, ssl.SSLError):
        return None


@pytest.fixture
def tls_stack(cluster, certs):
    cert, key = certs
    cluster.worker()
    gw = cluster.gateway(f"--gateway.tls_cert={cert}", f"--gateway.tls_key={key}", ready=False)
    ctx = ssl.create_default_context(cafile=str(cert))
    wait_until(lambda: _tls_handshake_ok(gw.port, ctx), 20, "the TLS listener")
    wait_until(lambda: "broker_up" in gw.log(), 20, "the gateway's broker connection")
    return gw, ctx


def wss_url(gw, user):
    return f"wss://localhost:{gw.port}/websocket/?token={jwt_for(user)}"


def _s_client(port, *args):
    """openssl s_client with a client willing to go as low as asked
    (SECLEVEL=0), so that a refusal is the server's."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-cipher", "ALL:@SECLEVEL=0", *args],
                       input=b"", capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace")


def test_tls_1_2_and_1_3_only(tls_stack):
    gw, ctx = tls_stack
    assert _tls_handshake_ok(gw.port, ctx) == "TLSv1.3"
    rc, out = _s_client(gw.port, "-tls1_2")
    assert rc == 0 and "Protocol  : TLSv1.2" in out and "ECDHE" in out, out
    for old in ("-tls1", "-tls1_1"):
        rc, out = _s_client(gw.port, old)
        assert rc != 0, f"{old} was accepted:\n{out}"


def test_tls_1_2_without_ecdhe_aead_is_refused(tls_stack):
    gw, _ = tls_stack
    rc, out = _s_client(gw.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    assert rc != 0, f"a CBC suite was accepted:\n{out}"


def test_wss_subscribe_and_receive_events(tls_stack, cluster):
    gw, ctx = tls_stack

    async def main():
        async with websockets.connect(wss_url(gw, 7), ssl=ctx, ping_interval=None,
                                      max_size=None) as ws:
            assert await recv_json(ws) == {"accept": True, "user": 7}
            _, reply = await subscribe(ws, {"jobs": ["status_changed"]})
            assert reply["groups_current"] == ["jobs-status_changed"]
            # larger than one TLS record (16 KiB): many records, one message
            body = json.dumps({"status": "running", "pad": "é" * 70000}, ensure_ascii=False)
            await asyncio.to_thread(cluster.emit_stdin, "jobs-status_changed", [body])
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == json.loads(body)
    run(main())


def test_bad_tls_handshake_does_not_disturb_others(tls_stack, cluster):
    gw, ctx = tls_stack

    async def main():
        async with websockets.connect(wss_url(gw, 8), ssl=ctx, ping_interval=None) as ws:
            await recv_json(ws)
            await subscribe(ws, {"jobs": ["summary"]})
            # plain HTTP, then garbage, to the TLS port: each is cut off alone
            for junk in (b"GET /websocket HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello"):
                with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
                    s.sendall(junk)
                    assert s.recv(100) == b""  # closed, nothing sent in clear
            await asyncio.to_thread(cluster.emit, "jobs-summary", '{"n": 1}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"n": 1}
    run(main())
    assert "tls_failed" in gw.log()


def test_missing_key_fails_fast(cluster, certs):
    cert, _ = certs
    gw = cluster.gateway(f"--gateway.tls_cert={cert}", ready=False)
    gw.proc.wait(timeout=20)
    gw.expected_exit = True
    assert gw.proc.returncode != 0
    assert "tls_key" in gw.log()
