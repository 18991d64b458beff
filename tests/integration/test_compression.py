"""permessage-deflate (RFC 7692; issue 16) against the real gateway, worker
and broker. Clients: Python websockets 10.4 (offers the extension by
default), and raw sockets (rawws) for the bytes a library hides: RSV1, the
compressed payloads, offers and frames no library would send.

Shows:
- (a) websockets gets the extension answered exactly as the spec says and
  receives AWX-like job events (stdout lines with ANSI colour codes,
  0.5-4 KB, made by awx_events below) intact, each after the one before
  it in its kept window; a raw client asking server_no_context_takeover
  gets them with RSV1 set and a payload that inflates alone (zlib, raw,
  00 00 ff ff appended) to the exact text, the metrics counting exactly
  those bytes; events under min_size (and one that does not shrink) come
  plain; each event is compressed once per process however many
  subscribers get it (compressions_total +1, compressed_messages_sent_total
  +1 per compressed delivery), history on or off, and once in each process
  with gateway.processes=2; a 400 KB event comes in one compressed frame
  with a 64-bit length; compression.level 9 works, outside 1..9 the
  gateway does not start.
- (b) compression off (the default): an offer gets no extension, frames
  carry no RSV1, a client's RSV1 gets 1002 (also when on but not
  negotiated), /metrics has no compression family.
- (c) negotiation, read off the 101 of raw handshakes: which offers are
  accepted (the answer, exactly) and declined (no header, still 101), in
  one header or several; server_max_window_bits below 15 is answered and
  that client is sent plain messages; a client compressing with the
  smaller window it asked for (client_max_window_bits=9) is read.
- (d) context takeover: to a client that asked server_no_context_takeover
  two identical events are two identical payloads, each inflatable alone;
  to one that did not, the second comes compressed after the first (under
  a third of the bytes, exact in its kept window); client messages
  compressed alone are read, one that leans on the previous message's
  window is not (1007).
- (e) the decompression bound: a zip bomb gets 1009 and never memory, a
  message of exactly max_message once inflated is accepted (on the echo
  route, exactly echo_max_message); fragmented and BFINAL-ended messages
  are read; invalid deflate data and compressed invalid UTF-8 get 1007,
  RSV1 on a continuation or a control frame and RSV2/RSV3 1002. Under load
  (50 connections, 20 bombs each) the peak RSS stays bounded, the gateway
  serves a client after, and every bomb is counted in
  decompression_refusals_total.
- (f) wsgw.2 (history on): envelopes come compressed, also the ones a
  client recovers after reconnecting with its positions.
- (g) wss://: a compressed event arrives intact over TLS.

About 20 s (the negotiation cases share one gateway; the rest start their
own). The RSS bound is checked on the normal build only.
"""

import asyncio
import base64
import json
import random
import ssl
import threading
import time
import zlib

import pytest
import websockets

from conftest import HISTORY_OFF, jwt_for, open_client, recv_text, run, subscribe, wait_until
from faults import SANITIZED, proc_rss_kib
from rawws import (BINARY, CONT, PING, PONG, RSV1, TEXT, RawWS, deflate, finish_module_cluster,
                   frame, inflate, metric, module_cluster, scrape, ws_path)
from test_tls import _tls_handshake_ok, wss_url
from test_tls import certs  # noqa: F401  (a fixture: a certificate for 127.0.0.1)
from wsgw2 import SUBPROTOCOL, Tracker, open_v2, subscription_request

GROUP = "jobs-status_changed"
GROUPS = {"jobs": ["status_changed"]}
ON = "--compression.enabled=true"
MIN_SIZE = 256  # compression.min_size's default
MAX_MESSAGE = 16 * 1024  # gateway.max_message's default
# The gateway's answer to an offer it takes: it keeps its context (events
# may be compressed after the group's previous one), the client may not.
ANSWER = "permessage-deflate; client_no_context_takeover"
# ... and to an offer asking server_no_context_takeover: every message alone.
ALONE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
# What websockets 10.4 and Chromium offer.
OFFER = "permessage-deflate; client_max_window_bits"
OFFER_ALONE = "permessage-deflate; server_no_context_takeover; client_max_window_bits"
EXT = "Sec-WebSocket-Extensions"

Z_METRICS = ("compressed_messages_sent", "compressions", "compressions_chained",
             "compression_input_bytes",
             "compression_output_bytes", "compression_not_smaller", "decompressions",
             "decompression_refusals", "messages_sent")


# ---- AWX-like job events -----------------------------------------------------

_COLOURS = ("\x1b[0;32m", "\x1b[0;33m", "\x1b[1;31m", "\x1b[0;36m", "\x1b[0;35m", "\x1b[1;30m")
_RESET = "\x1b[0m"
_TASKS = ("Gathering Facts", "install packages", "template nginx.conf", "ensure service running",
          "copy release tarball", "run database migrations", "debug")
_STATES = ("ok", "changed", "skipping", "failed", "ok", "ok")


def awx_event(n, size, rng, job=42):
    """One job event as AWX emits it: JSON whose stdout holds colour-coded
    Ansible lines, grown line by line to at least `size` bytes."""
    task = rng.choice(_TASKS)
    lines = [f"\r\nTASK [{task}] " + "*" * rng.randint(20, 60)]
    ev = {"id": 90000 + n, "type": "job_event", "event": "runner_on_ok", "counter": n,
          "job": job, "uuid": "%032x" % rng.getrandbits(128),
          "created": f"2026-12-07T15:{n // 60 % 60:02d}:{n % 60:02d}.{rng.randint(0, 999999):06d}Z",
          "host_name": f"web-{rng.randint(1, 40):02d}.example.com", "stdout": "",
          "start_line": 3 * n, "end_line": 3 * n + 2,
          "event_data": {"play": "deploy site", "task": task, "role": "webserver",
                         "task_action": rng.choice(("apt", "template", "service", "command")),
                         "res": {"changed": rng.random() < 0.4}}}
    while True:
        ev["stdout"] = "\r\n".join(lines)
        text = json.dumps(ev)
        if len(text) >= size:
            return text
        state = rng.choice(_STATES)
        colour = _COLOURS[_STATES.index(state) % len(_COLOURS)]
        host = f"web-{rng.randint(1, 40):02d}.example.com"
        item = rng.choice(("", f" => (item={rng.choice(('nginx', 'postgresql', 'redis'))})"))
        extra = "" if state != "failed" else \
            f' => {{"msg": "non-zero return code", "rc": {rng.randint(1, 127)}}}'
        lines.append(f"{colour}{state}: [{host}]{item}{extra}{_RESET}")


def awx_events(count, seed, lo=500, hi=3900):
    """count job events of 0.5-4 KB (sizes drawn between lo and hi), the
    same for a seed."""
    rng = random.Random(seed)
    texts = [awx_event(i + 1, rng.randint(lo, hi), rng) for i in range(count)]
    assert all(lo <= len(t.encode()) <= 4096 for t in texts), [len(t) for t in texts]
    return texts


def padded_event(size, fill="x"):
    """A JSON event of exactly `size` bytes that compresses well."""
    base = '{"stdout":""}'
    text = '{"stdout":"' + fill * (size - len(base)) + '"}'
    assert len(text) == size
    return text


# ---- helpers -------------------------------------------------------------------

def zgateway(cluster, *extra, compression=True):
    """A worker and a gateway (compression on unless told), ready."""
    cluster.worker(ready=False)
    return cluster.gateway(*((ON,) if compression else ()), *extra)


def counters(gw, port=None):
    """The compression counters (and messages_sent) of the gateway (or of
    the process whose metrics listen on port)."""
    samples = scrape(port or gw.metrics_port)
    assert samples is not None, "the gateway's /metrics did not answer"
    return {k: metric(samples, f"wsgw_gateway_{k}_total") for k in Z_METRICS}


def grew(before, after):
    return {k: after[k] - before[k] for k in Z_METRICS}


def raw_client(gw, offer=OFFER, user=7, headers=None, path="/websocket/"):
    """A raw websocket on the real route, its accept message read. offer:
    one Sec-WebSocket-Extensions value, or None for no header."""
    h = list(headers or [])
    if offer is not None:
        h.append((EXT, offer))
    ws = RawWS(gw.port, ws_path(path, jwt_for(user)), headers=h)
    op, data = recv_data(ws)
    assert (op, json.loads(data)) == (TEXT, {"accept": True, "user": user})
    return ws


def recv_data(ws, timeout=10):
    """The next data message (opcode, payload: inflated when compressed),
    answering the gateway's keepalive pings on the way."""
    deadline = time.monotonic() + timeout
    while True:
        while not ws.buf:
            ws._fill(deadline)
        if ws.buf[0] & 0x0F != PING:
            return ws.recv_message(max(0.1, deadline - time.monotonic()))
        ws.send_frame(PONG, ws.read_frame().payload)


def raw_subscribe(ws, groups=GROUPS, compress=False, pad=0):
    """A subscription request (compressed alone when asked, `pad` spaces
    after the JSON); returns the reply."""
    req = (json.dumps({"groups": groups}) + " " * pad).encode()
    ws.send_frame(TEXT, deflate(req) if compress else req, rsv=RSV1 if compress else 0)
    op, data = recv_data(ws)
    reply = json.loads(data)
    assert "groups_current" in reply, reply
    return reply


def take(ws, n, timeout=15):
    """The next n data messages: [(text, came compressed, payload as sent)]."""
    out = []
    for _ in range(n):
        op, data = recv_data(ws, timeout)
        assert op == TEXT
        out.append((data.decode(), ws.last_compressed, ws.last_wire))
    return out


def refused_with(ws, code, reason=None):
    """The gateway closes with code (and reason), then ends the TCP
    connection once the close is answered."""
    got, why = ws.expect_close(skip_data=True)
    assert got == code, (got, why)
    if reason is not None:
        assert why == reason, why
    assert ws.finish_close(), "the gateway kept the TCP connection open"


# ---- (a) real clients, the compressed payload, once per event ----------------

def test_websockets_gets_the_exact_answer_and_job_events_intact(cluster):
    """Python websockets offers permessage-deflate by itself; the 101
    answers it with exactly ANSWER (one header), the library accepts it
    (it keeps one decoder; it must not keep its own context) and the 30
    job events it receives are the emitted texts; every one was sent
    compressed: the first alone, the 29 others after the one before it
    (its window ends with it), each compression made once."""
    gw = zgateway(cluster)
    texts = awx_events(30, seed=1)

    async def main():
        ws = await open_client(gw)
        assert ws.request_headers.get_all(EXT) == [OFFER], "not the offer this test is about"
        assert ws.response_headers.get_all(EXT) == [ANSWER]
        (ext,) = ws.extensions
        assert ext.name == "permessage-deflate"
        assert not ext.remote_no_context_takeover and ext.local_no_context_takeover
        await subscribe(ws, GROUPS)
        before = counters(gw)
        await asyncio.to_thread(cluster.emit_stdin, GROUP, texts)
        assert [await recv_text(ws, what=f"event {i + 1}") for i in range(len(texts))] == texts
        d = grew(before, counters(gw))
        assert d["compressed_messages_sent"] == len(texts), d
        assert d["compressions"] == 1 and d["compressions_chained"] == len(texts) - 1, d
        assert d["compression_input_bytes"] == len(texts[0].encode()), d
        await ws.close()
    run(main())


def test_raw_client_sees_rsv1_and_payloads_that_inflate_to_the_text(cluster):
    """An offer asking server_no_context_takeover on a raw socket: each job
    event comes as one frame with RSV1 whose payload, with 00 00 ff ff
    appended, inflates alone to the exact text, fewer bytes than the text;
    the metrics count exactly those bytes. Events under min_size (255 bytes) come plain, min_size
    itself (256) compressed; plain messages (accept, reply) have no RSV1."""
    gw = zgateway(cluster)
    texts = awx_events(20, seed=2)
    small = ['{"n": 1}', padded_event(MIN_SIZE - 1)]
    at_min = padded_event(MIN_SIZE)
    with raw_client(gw, offer=OFFER_ALONE) as ws:
        assert ws.response.header_all(EXT) == [ALONE]
        assert raw_subscribe(ws)["groups_current"] == [GROUP] and not ws.last_compressed
        before = counters(gw)
        cluster.emit_stdin(GROUP, texts + small + [at_min])
        got = take(ws, len(texts) + len(small) + 1)
        after = counters(gw)
    assert [t for t, _, _ in got] == texts + small + [at_min]
    for text, compressed, wire in got[:len(texts)]:
        assert compressed, f"a {len(text)}-byte event came plain"
        assert inflate(wire) == text.encode()
        assert len(wire) < len(text.encode())
    assert [c for _, c, _ in got[len(texts):]] == [False, False, True]
    d = grew(before, after)
    zipped = [x for x in got if x[1]]
    assert d["compressions"] == d["compressed_messages_sent"] == len(zipped), d
    assert d["compression_input_bytes"] == sum(len(t.encode()) for t, _, _ in zipped), d
    assert d["compression_output_bytes"] == sum(len(w) for _, _, w in zipped), d
    assert d["messages_sent"] == len(got), d
    ratio = sum(len(t.encode()) for t in texts) / sum(len(w) for _, _, w in got[:len(texts)])
    print(f"{len(texts)} job events: {ratio:.2f}x fewer payload bytes compressed")


@pytest.mark.parametrize("history", ["history on", "history off"])
def test_one_compression_per_event_whatever_the_subscribers(cluster, history):
    """5 subscribers that negotiated compression, one that offered nothing
    and one with server_max_window_bits=10 (sent plain): each job event is
    compressed once (compressions +1, or compressions_chained +1 after the
    first: every compressing client's window ends with the event before)
    and sent compressed 5 times
    (compressed_messages_sent +5) and 7 times in all; the 5 compressed
    payloads are the same bytes. With the history off events come another
    way (the gateway's own queue, not the stream): the same."""
    gw = zgateway(cluster, *([HISTORY_OFF] if history == "history off" else []))
    texts = awx_events(3, seed=3)
    zipped = [raw_client(gw, user=10 + i) for i in range(5)]
    plain = [raw_client(gw, offer=None, user=20),
             raw_client(gw, offer="permessage-deflate; server_max_window_bits=10", user=21)]
    try:
        for ws in zipped + plain:
            raw_subscribe(ws)
        for i, text in enumerate(texts):
            before = counters(gw)
            cluster.emit(GROUP, text)
            got = [take(ws, 1)[0] for ws in zipped + plain]
            d = grew(before, counters(gw))
            # one compression per event: alone for the first, then after the
            # one before it, the window every one of the 5 ends with
            assert d["compressions"] + d["compressions_chained"] == 1, (i, d)
            assert d["compressions_chained"] == (i > 0), (i, d)
            assert d["compressed_messages_sent"] == 5, (i, d)
            assert d["messages_sent"] == 7, (i, d)
            assert all(t == text for t, _, _ in got)
            assert [c for _, c, _ in got] == [True] * 5 + [False] * 2
            assert len({w for _, _, w in got[:5]}) == 1, "one compressed frame, shared"
    finally:
        for ws in zipped + plain:
            ws.close()


def test_once_per_event_in_each_gateway_process(cluster):
    """gateway.processes=2, clients spread over both by the kernel (at
    least 2 on each): each process compresses each of 3 events once and
    sends it compressed to each of its own clients."""
    from test_processes import connections, start
    cluster.worker()
    gw = start(cluster, 2, ON)
    clients = []
    try:
        while (len(clients) < 60 and
               min(connections(gw, i) or 0 for i in range(2)) < 2):
            clients.append(raw_client(gw, user=200 + len(clients)))
        per = [connections(gw, i) for i in range(2)]
        assert min(per) >= 2, f"the kernel put {per} of {len(clients)} clients on each process"
        for ws in clients:
            raw_subscribe(ws)
        before = [counters(gw, port) for port in gw.metrics_ports]
        texts = awx_events(3, seed=12)
        cluster.emit_stdin(GROUP, texts)
        for ws in clients:
            assert [(t, c) for t, c, _ in take(ws, 3)] == [(t, True) for t in texts]
        for i, port in enumerate(gw.metrics_ports):
            d = grew(before[i], counters(gw, port))
            assert d["compressions"] + d["compressions_chained"] == 3, (i, d)
            assert d["compressed_messages_sent"] == 3 * per[i], (i, per, d)
    finally:
        for ws in clients:
            ws.close()


def test_an_event_that_does_not_shrink_is_sent_plain(cluster):
    """With min_size 0 a 2-byte event is compressed, comes out no smaller,
    and goes plain (compression_not_smaller +1, compressions +0)."""
    gw = zgateway(cluster, "--compression.min_size=0")
    with raw_client(gw) as ws:
        raw_subscribe(ws)
        before = counters(gw)
        cluster.emit(GROUP, "12")
        assert take(ws, 1) == [("12", False, b"12")]
        d = grew(before, counters(gw))
    assert d["compression_not_smaller"] == 1 and d["compressions"] == 0, d
    assert d["compressed_messages_sent"] == 0, d


def test_large_events_compressed_with_a_64_bit_length(cluster):
    """An event of 400 KB that compresses to over 64 KiB (base64 of random
    bytes) comes compressed in one frame with the 64-bit length form,
    twice (the compression scratch grows and shrinks back between), and
    inflates to the exact text."""
    gw = zgateway(cluster)
    big = json.dumps({"stdout": base64.b64encode(random.Random(11).randbytes(300000)).decode()})
    with raw_client(gw) as ws:
        raw_subscribe(ws)
        cluster.emit_stdin(GROUP, [big, big])
        for text, compressed, wire in take(ws, 2, timeout=30):
            assert text == big and compressed
            assert 0xFFFF < len(wire) < len(big)


@pytest.mark.parametrize("level", ["0", "10", "fast"])
def test_compression_level_outside_1_to_9_fails_at_start(cluster, level):
    """compression.level is zlib's 1..9: anything else stops the gateway
    at start, naming the setting."""
    gw = cluster.gateway(ON, f"--compression.level={level}", ready=False)
    gw.proc.wait(timeout=20)
    gw.expected_exit = True
    assert gw.proc.returncode != 0
    assert "invalid value for compression.level" in gw.log(), gw.tail()


def test_level_9_events_intact(cluster):
    """compression.level=9: job events still come compressed and intact."""
    gw = zgateway(cluster, "--compression.level=9")
    texts = awx_events(5, seed=13)
    with raw_client(gw) as ws:
        raw_subscribe(ws)
        cluster.emit_stdin(GROUP, texts)
        assert [(t, c) for t, c, _ in take(ws, 5)] == [(t, True) for t in texts]


# ---- (b) compression off -----------------------------------------------------

def test_compression_off_answers_no_extension_and_refuses_rsv1(cluster):
    """The default: websockets' offer gets no Sec-WebSocket-Extensions and
    nothing negotiated; events come without RSV1 (rawws fails on an RSV bit
    not negotiated); a client's RSV1 frame is closed 1002; /metrics has no
    compression family."""
    gw = zgateway(cluster, compression=False)
    text = awx_events(1, seed=4)[0]

    async def main():
        ws = await open_client(gw)
        assert ws.request_headers.get_all(EXT) == [OFFER]
        assert ws.response_headers.get_all(EXT) == [] and ws.extensions == []
        await subscribe(ws, GROUPS)
        with raw_client(gw) as raw:
            assert raw.response.header_all(EXT) == [] and not raw.pmd
            raw_subscribe(raw)
            await asyncio.to_thread(cluster.emit, GROUP, text)
            assert take(raw, 1) == [(text, False, text.encode())]
            assert await recv_text(ws) == text
            raw.send_frame(TEXT, deflate(json.dumps({"groups": GROUPS})), rsv=RSV1)
            refused_with(raw, 1002)
        await ws.close()
    run(main())
    samples = scrape(gw.metrics_port)
    assert not [k for k in samples if "compress" in k[0]], "compression metrics while off"


def test_rsv1_without_the_extension_is_a_protocol_error_with_compression_on(cluster):
    """On a gateway with compression on, a client that did not offer the
    extension (or whose offers were all declined) may not send RSV1:
    1002."""
    gw = zgateway(cluster)
    for offer in (None, "permessage-deflate; server_max_window_bits=16"):
        with raw_client(gw, offer=offer) as ws:
            assert ws.response.header_all(EXT) == []
            ws.send_frame(TEXT, deflate(json.dumps({"groups": GROUPS})), rsv=RSV1)
            refused_with(ws, 1002)


# ---- (c) negotiation ---------------------------------------------------------

@pytest.fixture(scope="module")
def zgw(broker, vhost, request, tmp_path_factory):
    """One gateway with compression on (and a worker) for the negotiation
    cases: each is a handshake, and the answer only depends on the offer.
    On a vhost of its own: its worker, alive to the module's end, must not
    take the work of the other tests' workers (the echo route's)."""
    own = vhost + "_neg"
    broker.ctl("add_vhost", own)
    broker.ctl("set_permissions", "-p", own, "guest", ".*", ".*", ".*")
    c = module_cluster(broker, own, request, tmp_path_factory)
    try:
        c.worker(ready=False)
        c.gw = c.gateway(ON)
        yield c
    finally:
        try:
            finish_module_cluster(c)
        finally:
            broker.ctl("delete_vhost", own)


def bits(n):
    return f"{ANSWER}; server_max_window_bits={n}"


# (Sec-WebSocket-Extensions values, in order, one header each; the answer or None)
NEGOTIATION = [
    (["permessage-deflate"], ANSWER),
    (["permessage-deflate; client_max_window_bits"], ANSWER),
    (["permessage-deflate; client_max_window_bits=10"], ANSWER),
    (["permessage-deflate; client_max_window_bits=8"], ANSWER),
    (["permessage-deflate; client_max_window_bits=16"], None),
    (["permessage-deflate; client_max_window_bits=7"], None),
    (["permessage-deflate; server_no_context_takeover"], ALONE),
    (["permessage-deflate; client_no_context_takeover; server_no_context_takeover"], ALONE),
    (["permessage-deflate; server_max_window_bits=10"], bits(10)),
    (["permessage-deflate; server_max_window_bits=8"], bits(8)),
    (["permessage-deflate; server_max_window_bits=15"], bits(15)),
    (["permessage-deflate; server_max_window_bits=9; client_max_window_bits"], bits(9)),
    (["permessage-deflate; server_max_window_bits"], None),
    (["permessage-deflate; server_max_window_bits=7"], None),
    (["permessage-deflate; server_max_window_bits=16"], None),
    (["permessage-deflate; server_max_window_bits=010"], None),
    (["permessage-deflate; server_max_window_bits=-9"], None),
    (["permessage-deflate; server_max_window_bits, permessage-deflate"], ANSWER),
    (["permessage-deflate; server_max_window_bits=7, "
      "permessage-deflate; server_max_window_bits=12"], bits(12)),
    (["permessage-deflate; foo"], None),
    (["permessage-deflate; foo=1, permessage-deflate; client_max_window_bits"], ANSWER),
    (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
    (["permessage-deflate; client_max_window_bits; client_max_window_bits=9"], None),
    (["permessage-deflate; server_no_context_takeover=1"], None),
    (["permessage-deflate; client_no_context_takeover=true"], None),
    (["permessage-deflate; bogus", "permessage-deflate; client_max_window_bits"], ANSWER),
    (["permessage-deflate; server_max_window_bits=16", "permessage-deflate; "
      "server_max_window_bits=11"], bits(11)),
    (["x-webkit-deflate-frame, permessage-deflate"], ANSWER),
    (["foo; bar=1; baz, permessage-deflate; server_max_window_bits=9"], bits(9)),
    (["foo", "permessage-deflate"], ANSWER),
    (['permessage-deflate; server_max_window_bits="12"'], bits(12)),
    (['permessage-deflate; client_max_window_bits="10"'], ANSWER),
    (['permessage-deflate; server_max_window_bits="1 2"'], None),
    (['permessage-deflate; server_max_window_bits=""'], None),
    ([", , permessage-deflate"], ANSWER),
    (["permessage-deflate; ;;=="], None),
    (["permessage-deflate; server_max_window_bits=\"12"], None),
    (["permessage-deflate; ;;==, permessage-deflate"], None),
    (["permessage-deflate; ;;==", "permessage-deflate"], ANSWER),
    (["deflate-frame"], None),
    ([""], None),
]


@pytest.mark.parametrize("offers,answer", NEGOTIATION,
                         ids=[" | ".join(o) or "empty" for o, _ in NEGOTIATION])
def test_negotiation(zgw, offers, answer):
    """The 101 carries exactly one Sec-WebSocket-Extensions header with
    the answer when an offer is taken, none otherwise; either way the
    handshake succeeds and the connection works (the accept message)."""
    ws = RawWS(zgw.gw.port, ws_path("/websocket/", jwt_for(7)),
               headers=[(EXT, o) for o in offers])
    with ws:
        assert ws.response.status == 101
        assert ws.response.header_all(EXT) == ([answer] if answer else [])
        assert json.loads(recv_data(ws)[1]) == {"accept": True, "user": 7}


def test_server_max_window_bits_under_15_gets_plain_events_and_may_send_compressed(zgw):
    """server_max_window_bits=10 is answered, yet that client is sent every
    event plain (the shared compressed frame used a 32 KiB window); what it
    sends compressed is read. A client asking for 15 beside it gets the
    same events compressed."""
    texts = awx_events(4, seed=5)
    low = raw_client(zgw.gw, offer="permessage-deflate; server_max_window_bits=10")
    full = raw_client(zgw.gw, offer="permessage-deflate; server_max_window_bits=15", user=8)
    with low, full:
        assert low.response.header_all(EXT) == [bits(10)] and low.pmd
        assert raw_subscribe(low, compress=True)["groups_current"] == [GROUP]
        raw_subscribe(full)
        zgw.emit_stdin(GROUP, texts)
        got = take(low, len(texts))
        assert [(t, c) for t, c, _ in got] == [(t, False) for t in texts]
        got = take(full, len(texts))
        assert [(t, c) for t, c, _ in got] == [(t, True) for t in texts]


def test_client_max_window_bits_client_compresses_with_a_small_window(zgw):
    """client_max_window_bits=9 is accepted and left out of the answer; the
    client then compresses with a 512-byte window, which the gateway's
    32 KiB inflater reads."""
    ws = raw_client(zgw.gw, offer="permessage-deflate; client_max_window_bits=9")
    with ws:
        assert ws.response.header_all(EXT) == [ANSWER]
        c = zlib.compressobj(6, zlib.DEFLATED, -9)
        req = json.dumps({"groups": GROUPS, "pad": "x" * 2000}).encode()
        z = c.compress(req) + c.flush(zlib.Z_SYNC_FLUSH)
        ws.send_frame(TEXT, z[:-4], rsv=RSV1)
        # the reply to a request with an unknown key: read, then refused
        assert json.loads(recv_data(ws)[1]) == {"error": "unknown key: pad"}


# ---- (d) context takeover ------------------------------------------------------

def test_context_takeover_rules_both_ways(cluster):
    """Server to client, a client that asked server_no_context_takeover:
    the same large event twice comes as two identical payloads, each of
    which inflates with a fresh inflater. A client that did not ask (the
    gateway keeps its context): the second comes compressed after the
    first, a few back-references, unreadable alone and exact in the
    client's kept window (rawws keeps one inflater). Client to server: two
    messages compressed alone both get their replies; a second message
    compressed with the first one's window (a client ignoring
    client_no_context_takeover) cannot be read: 1007."""
    gw = zgateway(cluster)
    text = awx_events(1, seed=6, lo=3000)[0]
    alone, kept = raw_client(gw, offer=OFFER_ALONE), raw_client(gw, user=8)
    try:
        assert alone.response.header_all(EXT) == [ALONE]
        assert kept.response.header_all(EXT) == [ANSWER]
        for ws in (alone, kept):
            raw_subscribe(ws, compress=True)
            assert raw_subscribe(ws, {"jobs": ["status_changed", "summary"]},
                                 compress=True)["groups_joined"] == ["jobs-summary"]
        before = counters(gw)
        cluster.emit_stdin(GROUP, [text, text])
        (t1, c1, w1), (t2, c2, w2) = take(alone, 2)
        assert t1 == t2 == text and c1 and c2
        assert w1 == w2
        assert inflate(w1) == inflate(w2) == text.encode()
        (k1, d1, v1), (k2, d2, v2) = take(kept, 2)
        assert k1 == k2 == text and d1 and d2
        assert v1 == w1, "the first: the twin alone, shared with the other client"
        assert len(v2) * 3 < len(v1), (len(v1), len(v2))
        with pytest.raises(zlib.error):
            inflate(v2)  # it refers back into the first
        d = grew(before, counters(gw))
        # event 2: alone for the first client, after event 1 for the second
        assert d["compressions"] == 2 and d["compressions_chained"] == 1, d

        # one compressor for both messages: the second leans on the first
        req = json.dumps({"groups": GROUPS}).encode()
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        first = z.compress(req) + z.flush(zlib.Z_SYNC_FLUSH)
        second = z.compress(req) + z.flush(zlib.Z_SYNC_FLUSH)
        with pytest.raises(zlib.error):
            inflate(second[:-4])  # the test's premise: unreadable alone
        kept.send_frame(TEXT, first[:-4], rsv=RSV1)
        assert "groups_current" in json.loads(recv_data(kept)[1])
        kept.send_frame(TEXT, second[:-4], rsv=RSV1)
        refused_with(kept, 1007, "invalid compressed data")
    finally:
        alone.close()
        kept.close()


# ---- (e) the decompression bound -----------------------------------------------

def bomb(size, level=9):
    """size zero bytes, compressed alone: about size / 1000 bytes."""
    return deflate(b"\0" * size, level)


def test_zip_bomb_gets_1009_and_exactly_max_message_is_accepted(cluster):
    """On the real route (max_message 16 KiB): 1 KiB that inflates to
    1 MiB of zeros is closed 1009 "message too big" and counted; a
    subscription request padded with spaces to exactly 16,384 bytes once
    inflated gets its reply, and one byte more is 1009."""
    gw = zgateway(cluster)
    z = bomb(1 << 20)
    assert len(z) < 1100
    before = counters(gw)
    with raw_client(gw) as ws:
        ws.send_frame(TEXT, z, rsv=RSV1)
        refused_with(ws, 1009, "message too big")
    d = grew(before, counters(gw))
    assert d["decompression_refusals"] == 1 and d["decompressions"] == 0, d

    pad = MAX_MESSAGE - len(json.dumps({"groups": GROUPS}))
    before = counters(gw)
    with raw_client(gw) as ws:
        assert raw_subscribe(ws, compress=True, pad=pad)["groups_current"] == [GROUP]
        ws.send_frame(TEXT, deflate(json.dumps({"groups": GROUPS}) + " " * (pad + 1)), rsv=RSV1)
        refused_with(ws, 1009, "message too big")
    d = grew(before, counters(gw))
    assert d["decompressions"] == 1 and d["decompression_refusals"] == 1, d


def test_echo_route_decompresses_within_echo_max_message(cluster):
    """On /websocket/echo the bound is gateway.echo_max_message (32 KiB
    here, twice the real route's): a compressed text of exactly 32 KiB once
    inflated, and a binary one, come back intact (and compressed again);
    32 KiB + 1 is 1009."""
    cluster.worker("--worker.echo=true", ready=False)
    gw = cluster.gateway(ON, "--gateway.echo=true", "--gateway.echo_max_message=32KiB")
    limit = 32 * 1024
    text = "".join(awx_events(20, seed=10)).encode()[:limit]
    assert len(text) == limit
    path = ws_path("/websocket/echo", jwt_for(1))
    with RawWS(gw.port, path, headers={EXT: OFFER}) as ws:
        assert ws.response.header_all(EXT) == [ANSWER]
        ws.send_frame(TEXT, deflate(text), rsv=RSV1)
        assert recv_data(ws) == (TEXT, text) and ws.last_compressed
        blob = bytes(range(256)) * 40
        ws.send_frame(BINARY, deflate(blob), rsv=RSV1)
        assert recv_data(ws) == (BINARY, blob) and ws.last_compressed
        ws.send_frame(TEXT, deflate(text + b" "), rsv=RSV1)
        refused_with(ws, 1009, "message too big")


def test_fragmented_and_final_block_messages_are_read(cluster):
    """A compressed message in three fragments (RSV1 on the first only, a
    ping between them answered) and one ended by a final block (BFINAL,
    RFC 7692 7.2.3.4) are read; an empty compressed message gets the
    answer an empty plain one gets; a bomb in fragments is refused like a
    whole one."""
    gw = zgateway(cluster)
    req = deflate(json.dumps({"groups": GROUPS}))
    with raw_client(gw) as ws:
        a, b = len(req) // 3, 2 * len(req) // 3
        ws.send(frame(TEXT, req[:a], fin=False, rsv=RSV1) + frame(PING, b"between")
                + frame(CONT, req[a:b], fin=False) + frame(CONT, req[b:]))
        f = ws.read_frame()
        assert (f.opcode, f.payload, f.rsv) == (PONG, b"between", 0)
        assert json.loads(recv_data(ws)[1])["groups_current"] == [GROUP]
        # an empty compressed message is an empty message
        ws.send_frame(TEXT, b"", rsv=RSV1)
        assert json.loads(recv_data(ws)[1]) == {"error": "invalid JSON"}
        ws.send_frame(TEXT, deflate(json.dumps({"groups": {"jobs": ["summary"]}}), final=True),
                      rsv=RSV1)
        assert json.loads(recv_data(ws)[1])["groups_current"] == ["jobs-summary"]
        z = bomb(4 << 20)
        ws.send(frame(TEXT, z[:1000], fin=False, rsv=RSV1) + frame(CONT, z[1000:]))
        refused_with(ws, 1009, "message too big")


@pytest.mark.parametrize("case", ["invalid deflate", "invalid stored block",
                                  "data after the final block", "invalid UTF-8 text"])
def test_unreadable_compressed_messages_get_1007(cluster, case):
    """Not deflate data (a reserved block type; a stored block whose
    length check fails; bytes after a final block), or text that is not
    UTF-8 once inflated: 1007."""
    gw = zgateway(cluster)
    payload, opcode, reason = {
        "invalid deflate": (b"\x07\xff\xff\xff", TEXT, "invalid compressed data"),
        "invalid stored block": (b"\x00\x05\x00\x00\x00hello", TEXT, "invalid compressed data"),
        "data after the final block": (deflate('{"groups": {}}', final=True) + b"\x00junk",
                                       TEXT, "invalid compressed data"),
        "invalid UTF-8 text": (deflate(b'{"groups": "\xff\xfe"}'), TEXT, "invalid UTF-8"),
    }[case]
    with raw_client(gw) as ws:
        ws.send_frame(opcode, payload, rsv=RSV1)
        refused_with(ws, 1007, reason)


@pytest.mark.parametrize("case", ["RSV1 on a continuation", "RSV1 on a ping", "RSV1 on a pong",
                                  "RSV2 on a text frame", "RSV1+RSV3 on a text frame"])
def test_misplaced_reserved_bits_get_1002(cluster, case):
    """With the extension negotiated, RSV1 is allowed on a data message's
    first frame only, and RSV2/RSV3 nowhere: anything else is 1002."""
    gw = zgateway(cluster)
    req = deflate(json.dumps({"groups": GROUPS}))
    data = {
        "RSV1 on a continuation": frame(TEXT, req[:5], fin=False, rsv=RSV1)
        + frame(CONT, req[5:], rsv=RSV1),
        "RSV1 on a ping": frame(PING, b"hello", rsv=RSV1),
        "RSV1 on a pong": frame(PONG, b"hello", rsv=RSV1),
        "RSV2 on a text frame": frame(TEXT, req, rsv=2),
        "RSV1+RSV3 on a text frame": frame(TEXT, req, rsv=RSV1 | 1),
    }[case]
    with raw_client(gw) as ws:
        ws.send(data)
        refused_with(ws, 1002)


# Under load: every connection sends a bomb that inflates to ~60 MiB (a
# gateway that inflated before checking would hold that much at once) on a
# gateway whose max_message is 64 KiB (the bombs must fit in it compressed).
LOAD_CONNS, LOAD_BOMBS = 50, 20
LOAD_LIMITS = ("--gateway.max_message=64KiB", "--gateway.max_frame=64KiB")
# What the attack may add to the RSS: 50 partial messages of 64 KiB
# (3.2 MiB), the inflater's scratch (64 KiB + 1, freed after each message),
# wslay contexts and read buffers (~20 KiB a connection: 1 MiB), with room
# for the allocator's slack: 20 MiB, a third of one bomb inflated.
RSS_BOUND_KIB = 20 * 1024


def test_zip_bombs_under_load_keep_memory_bounded(cluster):
    """50 connections each send 20 bombs in a row (each ~60 KB inflating to
    60 MiB of zeros), reconnecting after every 1009: all 1,000 are refused
    1009, decompression_refusals_total counts exactly 1,000, the gateway's
    peak RSS (VmHWM, reset before the attack) stays under RSS_BOUND_KIB over
    the baseline, and afterwards it serves a websockets client a
    compressed event intact."""
    gw = zgateway(cluster, *LOAD_LIMITS)
    z = bomb(60 << 20)
    assert len(z) < 64 * 1024, len(z)
    event = awx_events(1, seed=7)[0]

    # baseline: one normal client served, the peak reset to the RSS now
    with raw_client(gw) as ws:
        raw_subscribe(ws, compress=True)
    baseline = proc_rss_kib(gw.pid)
    with open(f"/proc/{gw.pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (Linux 4.0)
    before = counters(gw)
    codes, errors, rss = [], [], []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            rss.append(proc_rss_kib(gw.pid))
            time.sleep(0.01)

    def attacker(i):
        try:
            for _ in range(LOAD_BOMBS):
                with raw_client(gw, offer="permessage-deflate", user=100 + i) as ws:
                    ws.send_frame(BINARY, z, rsv=RSV1)
                    code, why = ws.expect_close(timeout=30)
                    codes.append(code)
                    ws.finish_close()
        except Exception as e:  # reported below, with the others
            errors.append(repr(e))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=attacker, args=(i,)) for i in range(LOAD_CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    took = time.monotonic() - t0
    stop.set()
    sampler.join()
    hwm = _vm(gw.pid, "VmHWM")
    after = counters(gw)
    print(f"{len(codes)} bombs refused in {took:.1f}s; RSS baseline {baseline} KiB, "
          f"peak {hwm} KiB (+{hwm - baseline}), sampled max {max(rss)} KiB, "
          f"end {proc_rss_kib(gw.pid)} KiB")
    if not SANITIZED:  # under ASan the RSS measures the sanitizer
        assert hwm - baseline < RSS_BOUND_KIB, (baseline, hwm)
    assert not errors, errors[:5]
    assert codes == [1009] * (LOAD_CONNS * LOAD_BOMBS), sorted(set(codes))
    d = grew(before, after)
    assert d["decompression_refusals"] == LOAD_CONNS * LOAD_BOMBS, d
    assert d["decompressions"] == 0, d
    assert gw.alive()

    async def main():
        ws = await open_client(gw)
        await subscribe(ws, GROUPS)
        before = counters(gw)
        await asyncio.to_thread(cluster.emit, GROUP, event)
        assert await recv_text(ws) == event
        assert grew(before, counters(gw))["compressed_messages_sent"] == 1
        await ws.close()
    run(main())


def _vm(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


# ---- (f) wsgw.2 and recovery ---------------------------------------------------

class ZV2:
    """A wsgw.2 client on a raw socket with permessage-deflate: every
    message checked by wsgw2.Tracker, each event's RSV1 kept."""

    def __init__(self, gw, user=7, name=None):
        self.ws = RawWS(gw.port, ws_path("/websocket/", jwt_for(user)), timeout=30,
                        headers={"Sec-WebSocket-Protocol": SUBPROTOCOL, EXT: OFFER})
        assert self.ws.response.header("sec-websocket-protocol") == SUBPROTOCOL
        assert self.ws.response.header_all(EXT) == [ANSWER]
        self.t = Tracker(name or f"zv2-{user}")
        self.compressed = []  # per event, in order
        assert json.loads(recv_data(self.ws)[1]) == {"accept": True, "user": user}

    def next(self):
        op, data = recv_data(self.ws, 30)
        kind, value = self.t.take(json.loads(data))
        if kind == "event":
            self.compressed.append(self.ws.last_compressed)
        return kind, value

    def subscribe(self, groups, positions=None):
        self.t.pending = True
        self.ws.send_frame(TEXT, deflate(json.dumps(subscription_request(groups, positions))),
                           rsv=RSV1)
        while True:
            kind, value = self.next()
            if kind == "reply":
                return value

    def take(self, n):
        got = []
        while len(got) < n:
            kind, value = self.next()
            assert kind in ("event", "notice"), (kind, value)
            if kind == "event":
                got.append(value)
        return got

    def close(self):
        self.ws.close()


def test_wsgw2_envelopes_come_compressed_and_recovery_too(cluster):
    """A raw wsgw.2 client with compression gets 6 job events as envelopes
    with RSV1, texts intact; it goes away, 12 more are emitted, it comes
    back naming its positions: recovery "ok" and the 12 missed envelopes,
    all compressed, intact, in order, then live ones. A websockets wsgw.2
    client that stayed gets all 20 intact."""
    gw = zgateway(cluster)
    texts = awx_events(20, seed=8)

    async def main():
        witness = await open_v2(gw, user=2, name="witness")
        assert witness.ws.response_headers.get_all(EXT) == [ANSWER]
        await witness.subscribe(GROUPS)
        c1 = await asyncio.to_thread(ZV2, gw)
        r = await asyncio.to_thread(c1.subscribe, GROUPS)
        assert "recovery" not in r
        await asyncio.to_thread(cluster.emit_stdin, GROUP, texts[:6])
        got = await asyncio.to_thread(c1.take, 6)
        assert [e.text for e in got] == texts[:6] and c1.compressed == [True] * 6
        kept = dict(c1.t.positions)
        c1.close()
        await asyncio.to_thread(cluster.emit_stdin, GROUP, texts[6:18])
        c2 = await asyncio.to_thread(ZV2, gw)
        r = await asyncio.to_thread(c2.subscribe, GROUPS, kept)
        assert r["recovery"] == {GROUP: "ok"}, r
        got = await asyncio.to_thread(c2.take, 12)
        assert [e.text for e in got] == texts[6:18]
        await asyncio.to_thread(cluster.emit_stdin, GROUP, texts[18:])
        got = await asyncio.to_thread(c2.take, 2)
        assert [e.text for e in got] == texts[18:]
        assert c2.compressed == [True] * 14
        assert not c2.t.notices, c2.t.notices
        c2.close()
        got = await witness.take(20)
        assert [e.text for e in got] == texts
        await witness.close()
    run(main())


# ---- (g) TLS -----------------------------------------------------------------

def test_compressed_event_over_wss(cluster, certs):  # noqa: F811
    """gatewayd serving wss:// itself with compression on: websockets
    negotiates the extension over TLS and a 4 KB job event arrives intact
    (compressed: compressed_messages_sent +1)."""
    cert, key = certs
    cluster.worker()
    gw = cluster.gateway(ON, f"--gateway.tls_cert={cert}", f"--gateway.tls_key={key}",
                         ready=False)
    ctx = ssl.create_default_context(cafile=str(cert))
    wait_until(lambda: _tls_handshake_ok(gw.port, ctx), 20, "the TLS listener")
    wait_until(lambda: "broker_up" in gw.log(), 20, "the gateway's broker connection")
    text = awx_events(1, seed=9, lo=3800)[0]

    async def main():
        async with websockets.connect(wss_url(gw, 7), ssl=ctx, ping_interval=None,
                                      max_size=None) as ws:
            assert ws.response_headers.get_all(EXT) == [ANSWER]
            assert [e.name for e in ws.extensions] == ["permessage-deflate"]
            assert json.loads(await recv_text(ws)) == {"accept": True, "user": 7}
            await subscribe(ws, GROUPS)
            before = counters(gw)
            await asyncio.to_thread(cluster.emit, GROUP, text)
            assert await recv_text(ws) == text
            assert grew(before, counters(gw))["compressed_messages_sent"] == 1
    run(main())
